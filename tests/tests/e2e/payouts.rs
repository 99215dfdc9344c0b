//! Payouts end to end: miners are paid exactly their work and can audit it,
//! expired and cancelled jobs pay for verified work and refund the rest, and PPS
//! pays shares from the pool's funds.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use zkpool_tests::*;

use super::{batch_job, chain_job, cli, completed, new_client, paying_pool_config, ADMIN};

/// Payouts end to end, driven through the operator CLI: a client account with a
/// deposit; a job refused (402) for a reward the balance cannot cover, then one
/// accepted; two miners do unequal work on it (bob starts late); the settlement
/// gives each exactly its work's share of the reward minus the 1 % fee (checked
/// here by an independent computation, to the unit); both `zkminer audit` runs
/// pass and a receipt with one changed number fails; a payout batch is planned,
/// exported, confirmed once and refused a second confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miners_are_paid_exactly_their_work_and_can_audit_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let url = format!("http://{}", pool.http);

    let (ok, out) = cli("zkpool", &url, &["clients", "add", "acme"]);
    assert!(ok, "{out}");
    let key = out
        .lines()
        .find(|l| l.starts_with("zkc_"))
        .context("API key printed")?
        .trim()
        .to_owned();
    let (ok, out) = cli(
        "zkpool",
        &url,
        &[
            "clients",
            "deposit",
            "acme",
            "1000000",
            "--reference",
            "wire-1",
        ],
    );
    assert!(ok && out.contains("balance now 1.000000 ZKP"), "{out}");
    let (ok, out) = cli(
        "zkpool",
        &url,
        &[
            "clients",
            "deposit",
            "acme",
            "1000000",
            "--reference",
            "wire-1",
        ],
    );
    assert!(
        ok && out.contains("already recorded") && out.contains("balance now 1.000000 ZKP"),
        "a retried deposit is recorded once: {out}"
    );

    let client = Api::new(&url).with_token(Some(key.clone()));
    let mut job = chain_job(32);
    job.as_object_mut().unwrap().remove("client");
    job["reward"] = json!(2_000_000);
    let e = client.post("/v1/jobs", &job).await.unwrap_err().to_string();
    assert!(
        e.contains("402")
            && e.contains("has 1000000 but the job's reward is 2000000: 1000000 more is needed"),
        "{e}"
    );
    let e = pool
        .api
        .post("/v1/jobs", &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("401") && e.contains("client API key"), "{e}");
    job["reward"] = json!(999_999);
    let accepted = client.post("/v1/jobs", &job).await?;
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["client"], "acme");
    let account = client.get("/v1/clients/acme").await?;
    assert_eq!(
        (account["balance"].as_u64(), account["escrow"].as_u64()),
        (Some(1), Some(999_999)),
        "{account}"
    );

    let _a = MinerProcess::start(
        pool.stratum,
        "alice.rig1",
        1,
        &dir.path().join("cache-a"),
        &dir.path().join("alice.log"),
    )?;
    wait_for(
        "alice to prove part of the job",
        Duration::from_secs(120),
        async || {
            let v = client.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["verified"].as_u64().unwrap_or(0) >= 4).then_some(()))
        },
    )
    .await?;
    let _b = MinerProcess::start(
        pool.stratum,
        "bob.rig1",
        1,
        &dir.path().join("cache-b"),
        &dir.path().join("bob.log"),
    )?;
    completed(&client, &id, Duration::from_secs(300)).await?;
    let (ok, out) = cli(
        "zkpool",
        &url,
        &["client", "--api-key", &key, "verify", &id],
    );
    assert!(
        ok && out.contains("OK: 32 proofs verified"),
        "client verify: {out}"
    );
    let credits = wait_for("the settlement", Duration::from_secs(20), async || {
        let v = pool.api.get(&format!("/v1/jobs/{id}/credits")).await?;
        Ok((!v["settlement"].is_null()).then_some(v))
    })
    .await?;

    // Independent check of the split: work per worker from the published credits.
    let mut work = std::collections::BTreeMap::<String, u64>::new();
    for c in credits["credits"].as_array().unwrap() {
        *work
            .entry(c["worker"].as_str().unwrap().to_owned())
            .or_default() += c["work"].as_u64().unwrap();
    }
    let (wa, wb) = (
        work["alice.rig1"],
        work.get("bob.rig1").copied().unwrap_or(0),
    );
    assert!(
        wb > 0 && wa != wb,
        "unequal work by both miners: alice {wa}, bob {wb}"
    );
    let s = &credits["settlement"];
    let fee = 999_999 / 100; // 1 %, rounded down
    let dist = 999_999 - fee;
    let total = (wa + wb) as u128;
    let (fa, fb) = (
        (dist as u128 * wa as u128) / total,
        (dist as u128 * wb as u128) / total,
    );
    let (ra, rb) = (
        (dist as u128 * wa as u128) % total,
        (dist as u128 * wb as u128) % total,
    );
    let left = dist as u128 - fa - fb; // 0 or 1: to the larger remainder (alice on a tie)
    let (pa, pb) = if left == 1 {
        if ra >= rb {
            (fa + 1, fb)
        } else {
            (fa, fb + 1)
        }
    } else {
        (fa, fb)
    };
    assert_eq!(
        (
            s["earned"].as_u64(),
            s["fee"].as_u64(),
            s["refund"].as_u64()
        ),
        (Some(999_999), Some(fee), Some(0)),
        "{s}"
    );
    let parts: std::collections::BTreeMap<String, u64> = s["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["worker"].as_str().unwrap().to_owned(),
                p["amount"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(parts["alice.rig1"] as u128, pa, "{s}");
    assert_eq!(parts["bob.rig1"] as u128, pb, "{s}");
    assert_eq!(pa + pb + fee as u128, 999_999);
    for (w, p) in [("alice", pa), ("bob", pb)] {
        let v = pool.api.get(&format!("/v1/workers/{w}")).await?;
        assert_eq!(v["balance"].as_u64().unwrap() as u128, p, "{v}");
        assert!(!v["recent_shares"].as_array().unwrap().is_empty(), "{v}");
    }

    // Each miner audits its own receipts; a receipt with one changed number fails.
    for cache in ["cache-a", "cache-b"] {
        let cache = dir.path().join(cache);
        let (ok, out) = cli(
            "zkminer",
            &url,
            &["audit", "--cache-dir", cache.to_str().unwrap()],
        );
        assert!(
            ok && out.contains("everything matches") && out.contains("1 job(s) settled"),
            "{out}"
        );
    }
    let receipts = std::fs::read_to_string(dir.path().join("cache-a/receipts.jsonl"))?;
    let mut lines: Vec<Value> = receipts
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let held: u64 = lines
        .iter()
        .map(|l| l["receipt"]["work"].as_u64().unwrap())
        .sum();
    assert_eq!(held, wa, "alice holds a receipt for every credit");
    lines[0]["receipt"]["work"] = json!(lines[0]["receipt"]["work"].as_u64().unwrap() + 1);
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(
        &tampered,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )?;
    let (ok, out) = cli(
        "zkminer",
        &url,
        &["audit", "--receipts", tampered.to_str().unwrap()],
    );
    assert!(
        !ok && out.contains("PROBLEM") && out.contains("altered"),
        "{out}"
    );

    // Payout: plan, export, confirm once.
    let (ok, out) = cli("zkpool", &url, &["payouts", "plan"]);
    assert!(ok && out.contains("batch 1 planned: 2 payment(s)"), "{out}");
    let (ok, csv) = cli(
        "zkpool",
        &url,
        &["payouts", "export", "1", "--format", "csv"],
    );
    assert!(ok, "{csv}");
    assert_eq!(
        csv,
        format!("batch,addr,amount\n1,alice,{pa}\n1,bob,{pb}\n")
    );
    let (ok, out) = cli(
        "zkpool",
        &url,
        &["payouts", "confirm", "1", "--tx", "0xfeed"],
    );
    assert!(ok && out.contains("confirmed with 0xfeed"), "{out}");
    let (ok, out) = cli(
        "zkpool",
        &url,
        &["payouts", "confirm", "1", "--tx", "0xbeef"],
    );
    assert!(
        !ok && out.contains("409") && out.contains("already confirmed with transaction \"0xfeed\""),
        "{out}"
    );
    let (ok, out) = cli("zkpool", &url, &["payouts", "void", "1"]);
    assert!(!ok && out.contains("cannot be voided"), "{out}");
    let v = pool.api.get("/v1/workers/alice").await?;
    assert_eq!(
        (v["balance"].as_u64(), v["paid"].as_u64().map(u128::from)),
        (Some(0), Some(pa)),
        "{v}"
    );
    let (ok, out) = cli("zkpool", &url, &["ledger"]);
    assert!(ok && out.contains("balanced: yes"), "{out}");
    Ok(())
}

/// The operator's commands as an operator meets them: a deposit without a
/// reference is refused (a retry could credit twice); clients, payouts and the
/// books print as tables with dates and amounts in the pool's unit (the default
/// `ZKP` with 6 decimals), `--json` as the API's
/// JSON; issuing a worker token twice is refused unless `--replace` (the first
/// may be in use), and tokens can be listed and revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_print_tables_and_refuse_what_could_double_or_lock_out(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let url = format!("http://{}", pool.http);
    let zkpool = |args: &[&str]| cli("zkpool", &url, args);

    let (ok, out) = zkpool(&["clients", "add", "acme"]);
    assert!(ok, "{out}");
    let (ok, out) = zkpool(&["clients", "deposit", "acme", "5000000"]);
    assert!(!ok && out.contains("--reference"), "{out}");
    assert_eq!(
        Api::new(&url)
            .with_token(Some(ADMIN.into()))
            .get("/v1/clients/acme")
            .await?["balance"],
        0,
        "a refused deposit credits nothing"
    );
    let (ok, out) = zkpool(&[
        "clients",
        "deposit",
        "acme",
        "5000000",
        "--reference",
        "wire-7",
    ]);
    assert!(ok && out.contains("balance now 5.000000 ZKP"), "{out}");

    let (ok, out) = zkpool(&["clients", "list"]);
    let row = out.lines().find(|l| l.starts_with("acme")).unwrap_or("");
    assert!(
        ok && out.starts_with("client") && row.contains("5.000000 ZKP") && row.ends_with(" UTC"),
        "{out}"
    );
    let (ok, out) = zkpool(&["clients", "list", "--json"]);
    let v: Value = serde_json::from_str(&out).with_context(|| out.clone())?;
    assert!(
        ok && v["clients"][0]["created_ms"].as_u64().is_some(),
        "{out}"
    );
    let (ok, out) = zkpool(&["clients", "show", "acme"]);
    assert!(
        ok && out.contains("client acme: balance 5.000000 ZKP, in escrow 0.000000 ZKP")
            && out.contains("no jobs yet"),
        "{out}"
    );
    let (ok, out) = zkpool(&["payouts", "list"]);
    assert!(
        ok && out.contains("threshold 0.000001 ZKP") && out.contains("no payout batches yet"),
        "{out}"
    );
    let (ok, out) = zkpool(&["ledger"]);
    let deposited = out
        .lines()
        .find(|l| l.starts_with("deposited"))
        .unwrap_or("");
    assert!(
        ok && deposited.ends_with(" 5.000000 ZKP")
            && out.contains("balanced: yes")
            && out.contains("client:acme"),
        "{out}"
    );
    let (ok, out) = zkpool(&["ledger", "--json"]);
    let v: Value = serde_json::from_str(&out).with_context(|| out.clone())?;
    assert!(ok && v["audit"]["balanced"] == true, "{out}");

    let token = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("zkw_"))
            .map(str::to_owned)
    };
    let (ok, out) = zkpool(&["workers", "token", "alice"]);
    let first = token(&out);
    assert!(ok && first.is_some(), "{out}");
    let (ok, out) = zkpool(&["workers", "token", "alice"]);
    assert!(
        !ok && out.contains("409")
            && out.contains("already has a worker token")
            && out.contains("--replace"),
        "a second token would lock out alice's rigs: {out}"
    );
    let (ok, out) = zkpool(&["workers", "token", "alice", "--replace"]);
    let second = token(&out);
    assert!(ok && second.is_some() && second != first, "{out}");
    let (ok, out) = zkpool(&["workers", "tokens"]);
    assert!(ok && out.lines().any(|l| l == "alice"), "{out}");
    let (ok, out) = zkpool(&["workers", "revoke", "alice"]);
    assert!(ok && out.contains("revoked"), "{out}");
    let (ok, out) = zkpool(&["workers", "tokens"]);
    assert!(ok && out.contains("no account has a worker token"), "{out}");
    let (ok, out) = zkpool(&["workers", "revoke", "alice"]);
    assert!(!ok && out.contains("has no worker token"), "{out}");

    // Money leaves the books only once per reference, and never more than an
    // account holds: a client's refund, the pool's fees withdrawn.
    let (ok, out) = zkpool(&["clients", "refund", "acme", "1000000"]);
    assert!(!ok && out.contains("--reference"), "{out}");
    let (ok, out) = zkpool(&[
        "clients",
        "refund",
        "acme",
        "1000000",
        "--reference",
        "refund-1",
    ]);
    assert!(
        ok && out.starts_with("refunded 1.000000 ZKP to acme")
            && out.contains("balance now 4.000000 ZKP"),
        "{out}"
    );
    let (ok, out) = zkpool(&[
        "clients",
        "refund",
        "acme",
        "1000000",
        "--reference",
        "refund-1",
    ]);
    assert!(
        ok && out.starts_with("already recorded") && out.contains("balance now 4.000000 ZKP"),
        "a retried refund pays once: {out}"
    );
    let (ok, out) = zkpool(&[
        "clients",
        "refund",
        "acme",
        "4000001",
        "--reference",
        "refund-2",
    ]);
    assert!(
        !ok && out.contains("client:acme holds 4000000 but 4000001 is needed"),
        "{out}"
    );
    let (ok, out) = zkpool(&[
        "funds",
        "withdraw",
        "1",
        "--from",
        "fees",
        "--reference",
        "fees-1",
    ]);
    assert!(
        !ok && out.contains("pool:fees holds 0"),
        "no fees yet: {out}"
    );
    // Only the operator moves money out: no token, no refund or withdrawal; a
    // stranger's attempt changes nothing.
    let stranger = Api::new(&url);
    for (path, body) in [
        (
            "/v1/clients/acme/refunds",
            json!({"amount": 1, "reference": "x-1"}),
        ),
        (
            "/v1/pool/withdrawals",
            json!({"from": "funds", "amount": 1, "reference": "x-2"}),
        ),
    ] {
        let e = stranger.post(path, &body).await.unwrap_err().to_string();
        assert!(e.contains("401"), "{path}: {e}");
    }
    let e = Api::new(&url)
        .with_token(Some(ADMIN.into()))
        .post(
            "/v1/pool/withdrawals",
            &json!({"from": "miner:alice", "amount": 1, "reference": "x-3"}),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("400") && e.contains("must be \"fees\"") && e.contains("refunds"),
        "{e}"
    );
    let (ok, out) = zkpool(&["ledger"]);
    let withdrawn = out
        .lines()
        .find(|l| l.starts_with("withdrawn and refunded"))
        .unwrap_or("");
    assert!(
        ok && withdrawn.ends_with(" 1.000000 ZKP") && out.contains("balanced: yes"),
        "{out}"
    );
    Ok(())
}

/// An expired job pays for the work verified before its deadline and refunds the
/// rest: 1 of 2 statements proven earns half the escrow (minus the fee, all to the
/// one worker), and the other half goes back to the client's balance. The receipt
/// the miner got is the one published in the job's credit list. A job its client
/// cancels before any proof refunds its whole reward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_cancelled_jobs_pay_for_verified_work_and_refund_the_rest() -> anyhow::Result<()>
{
    let (pool, _dir) = inproc_pool_with("", &format!("admin_token = \"{ADMIN}\""), "", "").await?;
    let base = format!("http://{}", pool.http_addr);
    let operator = Api::new(&base).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "shortco", 1000, "w").await?;
    let client = Api::new(&base).with_token(Some(key.clone()));
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    c.handshake("lena.rig1").await?;
    let mut body = batch_job(2);
    body.as_object_mut().unwrap().remove("client");
    body["reward"] = json!(1000);
    body["deadline_secs"] = json!(3);
    let job = client.post("/v1/jobs", &body).await?;
    let id = job["id"].as_str().unwrap().to_owned();
    let task = c.next_notify().await?;
    assert_eq!(
        task["statements"].as_array().unwrap().len(),
        1,
        "an unmeasured rig gets one statement"
    );
    let proofs = prove_task(&task).await?;
    c.send(&json!({"jsonrpc":"2.0","id":50,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (r, _) = c.response().await?;
    let receipt = r["result"]["receipt"].clone();
    assert_eq!(receipt["position"], 0, "{r}");
    let credits = wait_for(
        "the expiry's settlement",
        Duration::from_secs(15),
        async || {
            let v = client.get(&format!("/v1/jobs/{id}/credits")).await?;
            Ok((!v["settlement"].is_null()).then_some(v))
        },
    )
    .await?;
    assert_eq!(credits["state"], "expired");
    let s = &credits["settlement"];
    assert_eq!(
        (
            s["completed"].as_bool(),
            s["earned"].as_u64(),
            s["fee"].as_u64(),
            s["refund"].as_u64()
        ),
        (Some(false), Some(500), Some(5), Some(500)),
        "{s}"
    );
    assert_eq!(s["parts"][0]["worker"], "lena.rig1");
    assert_eq!(s["parts"][0]["amount"], 495);
    let published = &credits["credits"][0];
    for field in [
        "worker",
        "job",
        "task",
        "first_statement",
        "proofs",
        "work",
        "at_ms",
        "position",
    ] {
        assert_eq!(
            published[field], receipt[field],
            "{field}: {published} vs {receipt}"
        );
    }
    let account = client.get("/v1/clients/shortco").await?;
    assert_eq!(
        (account["balance"].as_u64(), account["escrow"].as_u64()),
        (Some(500), Some(0)),
        "{account}"
    );
    let e = Api::new(&base)
        .get("/v1/clients/shortco")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("401"), "a client account needs its key: {e}");

    // A cancelled job refunds everything not earned: here, all of it.
    let mut body = batch_job(3);
    body.as_object_mut().unwrap().remove("client");
    body["reward"] = json!(400);
    let job = client.post("/v1/jobs", &body).await?;
    let url = format!("{base}/v1/jobs/{}", job["id"].as_str().unwrap());
    let http = reqwest::Client::new();
    // Without its client's key a private job is not there to cancel.
    assert_eq!(http.delete(&url).send().await?.status(), 404);
    let r = http.delete(&url).bearer_auth(&key).send().await?;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v["job"]["state"], "cancelled", "{v}");
    assert_eq!(
        (
            v["settlement"]["refund"].as_u64(),
            v["settlement"]["earned"].as_u64()
        ),
        (Some(400), Some(0)),
        "{v}"
    );
    let r = http.delete(&url).bearer_auth(&key).send().await?;
    assert_eq!(r.status(), 409, "a cancelled job cannot be cancelled again");
    let account = client.get("/v1/clients/shortco").await?;
    assert_eq!(account["balance"].as_u64(), Some(500), "{account}");
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// PPS through the pool: a verified share is paid at once from the pool's funds;
/// when the funds cannot cover it the submit is refused with the reason (nothing
/// credited, the statement re-queued), and once the operator adds funds the same
/// statement is proven, credited and paid. The job's reward then goes to the pool's
/// funds, and an outside reward is refused (it is PPLNS-only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pps_pays_shares_from_pool_funds_and_refuses_what_they_cannot_cover() -> anyhow::Result<()>
{
    let (pool, _dir) = inproc_pool_with(
        "",
        &format!("admin_token = \"{ADMIN}\""),
        "",
        "[payouts]\nscheme = \"pps\"\npps_price_per_mwork = 2000000\n",
    )
    .await?;
    let base = format!("http://{}", pool.http_addr);
    let operator = Api::new(&base).with_token(Some(ADMIN.into()));
    operator
        .post(
            "/v1/pool/funds",
            &json!({"amount": 100, "reference": "float-1"}),
        )
        .await?;
    let key = new_client(&operator, "ppsco", 5000, "d").await?;
    let mut body = batch_job(1);
    body.as_object_mut().unwrap().remove("client");
    body["reward"] = json!(5000);
    let job = Api::new(&base)
        .with_token(Some(key))
        .post("/v1/jobs", &body)
        .await?;
    let id = job["id"].as_str().unwrap().to_owned();

    let mut c = RawConn::connect(pool.stratum_addr).await?;
    c.handshake("pia.rig1").await?;
    let task = c.next_notify().await?;
    let proofs = prove_task(&task).await?;
    c.send(&json!({"jsonrpc":"2.0","id":60,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (r, _) = c.response().await?;
    // 214 work x 2 per unit = 428 > 100 in the funds.
    let msg = r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("PPS funds (100) cannot pay this share (428)")
            && msg.contains("nothing is credited"),
        "{r}"
    );
    assert_eq!(
        pool.state.ledger().totals("pia.rig1").await?.0.work,
        0,
        "nothing credited"
    );

    operator
        .post(
            "/v1/pool/funds",
            &json!({"amount": 1000, "reference": "float-2"}),
        )
        .await?;
    let task = c.next_notify().await?;
    let proofs = prove_task(&task).await?;
    c.send(&json!({"jsonrpc":"2.0","id":61,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (r, _) = c.response().await?;
    assert_eq!(r["result"]["accepted"], 1, "{r}");
    completed(&operator, &id, Duration::from_secs(30)).await?;
    let v = Api::new(&base).get("/v1/workers/pia").await?;
    assert_eq!(v["balance"], 428, "paid at once: {v}");
    wait_for("the settlement", Duration::from_secs(10), async || {
        let v = Api::new(&base)
            .get(&format!("/v1/jobs/{id}/credits"))
            .await?;
        Ok((!v["settlement"].is_null()).then_some(()))
    })
    .await?;
    let books = operator.get("/v1/ledger").await?;
    // 1,100 in, 428 paid to pia, then the job's 5,000 reward.
    assert_eq!(books["audit"]["funds"], 1100 - 428 + 5000, "{books}");
    assert_eq!(books["audit"]["balanced"], true);
    let e = operator
        .post("/v1/rewards", &json!({"amount": 10, "reference": "r"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("409") && e.contains("shared by PPLNS"), "{e}");
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Automatic payouts through the operator's hook: a hook that fails leaves its
/// batch planned (it may have paid in part) and no new batch is planned while it
/// waits; once the operator voids it, the next run pays every due balance
/// through the hook, which got the batch as CSV, and the batch is confirmed with
/// the reference the hook printed. The books balance throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_payouts_pay_through_the_hook_and_never_plan_past_a_failed_batch(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let hook = d.join("pay.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ -e '{0}/fail' ]; then echo 'the payment node is unreachable' >&2; exit 3; fi\ncat > '{0}/paid-'\"$ZKPOOL_BATCH\".csv\necho 'sending...'\necho \"tx-$ZKPOOL_BATCH-$ZKPOOL_BATCH_TOTAL\"\n",
            d.display()
        ),
    )?;
    std::fs::write(d.join("fail"), "")?;
    let cfg = d.join("pool.toml");
    std::fs::write(
        &cfg,
        test_config_with(
            &d.join("data"),
            "",
            &format!("admin_token = \"{ADMIN}\""),
            "",
            &format!(
                "[payouts]\nthreshold = 1\nauto_interval_secs = 1\nhook = [\"/bin/sh\", {:?}]\n",
                hook.display().to_string()
            ),
        ),
    )?;
    let log = d.join("pool.log");
    let pool = PoolProcess::start(&cfg, None, &log)?;
    let url = format!("http://{}", pool.http);
    let operator = Api::new(&url).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "acme", 10_000, "wire-1").await?;
    let client = Api::new(&url).with_token(Some(key));
    let mut job = batch_job(2);
    job["reward"] = json!(10_000);
    let id = client.post("/v1/jobs", &job).await?["id"]
        .as_str()
        .context("job id")?
        .to_owned();
    let _m = MinerProcess::start(
        pool.stratum,
        "alice.rig1",
        1,
        &d.join("cache"),
        &d.join("miner.log"),
    )?;
    completed(&client, &id, Duration::from_secs(120)).await?;

    // The failing hook: batch 1 planned, not confirmed, and the runs after it wait.
    let batches = |v: &Value| v["batches"].as_array().cloned().unwrap_or_default();
    let first = wait_for("batch 1 planned", Duration::from_secs(30), async || {
        let v = operator.get("/v1/payouts").await?;
        Ok(batches(&v).first().cloned())
    })
    .await?;
    assert_eq!(first["state"], "planned", "{first}");
    let due = first["total"].as_u64().context("total")?;
    assert!(due > 0 && first["items"][0]["addr"] == "alice", "{first}");
    wait_for(
        "a later run to wait on batch 1",
        Duration::from_secs(30),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            Ok((text.contains("the payout hook did not confirm batch 1")
                && text.contains("the payment node is unreachable")
                && text.contains("automatic payouts wait: batch 1 is planned"))
            .then_some(()))
        },
    )
    .await?;
    let v = operator.get("/v1/payouts").await?;
    assert_eq!(
        batches(&v).len(),
        1,
        "nothing new planned past a failed batch: {v}"
    );
    assert!(!d.join("paid-1.csv").exists());

    // The operator checks, voids it and fixes the hook: the next run pays.
    let (ok, out) = cli("zkpool", &url, &["payouts", "void", "1"]);
    assert!(ok, "{out}");
    std::fs::remove_file(d.join("fail"))?;
    let second = wait_for("batch 2 confirmed", Duration::from_secs(30), async || {
        let v = operator.get("/v1/payouts").await?;
        Ok(batches(&v)
            .into_iter()
            .find(|b| b["id"] == 2 && b["state"] == "confirmed"))
    })
    .await?;
    assert_eq!(second["tx"], format!("tx-2-{due}"), "{second}");
    assert_eq!(second["total"], due);
    assert_eq!(
        std::fs::read_to_string(d.join("paid-2.csv"))?,
        format!("batch,addr,amount\n2,alice,{due}\n"),
        "the hook got the batch as CSV"
    );
    let alice = operator.get("/v1/workers/alice").await?;
    assert_eq!(
        (alice["balance"].as_u64(), alice["paid"].as_u64()),
        (Some(0), Some(due)),
        "{alice}"
    );
    let (ok, out) = cli("zkpool", &url, &["ledger"]);
    assert!(ok && out.contains("balanced: yes"), "{out}");
    Ok(())
}
