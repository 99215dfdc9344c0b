//! Faults: a killed miner, a killed pool, a crash loop, a statement that fails
//! every attempt, a deadline that passes, and misbehaving miners (bans). Nothing
//! acknowledged is lost and nothing is credited twice.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use zkpool_tests::*;

use super::{
    batch_job, chain_job, completed, err_code, job_result, new_client, on_postgres,
    paying_pool_config, refused_result, sample, worker_work, ADMIN,
};

/// A miner killed mid-task: its leased statements go back to the queue when its
/// connection drops, another miner finishes the job, no statement is credited twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_killed_mid_task_has_its_task_re_leased() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let mut doomed = MinerProcess::start(
        pool.stratum,
        "carol.rig1",
        1,
        &dir.path().join("cache-c"),
        &dir.path().join("carol.log"),
    )?;
    let job = pool.api.post("/v1/jobs", &chain_job(24)).await?;
    let id = job["id"].as_str().unwrap().to_owned();
    // Wait until carol holds a lease and has finished at least one task.
    wait_for(
        "carol to hold a lease after some verified work",
        Duration::from_secs(120),
        async || {
            let v = pool.api.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["leased"].as_u64() > Some(0) && v["verified"].as_u64() > Some(0)).then_some(()))
        },
    )
    .await?;
    doomed.kill();
    let v = pool.api.get(&format!("/v1/jobs/{id}")).await?;
    assert!(
        v["verified"].as_u64() < v["statements"].as_u64(),
        "job must still be running when carol dies: {v}"
    );
    // The pool notices the closed connection and returns carol's leases at once.
    wait_for(
        "carol's leases to return to the queue",
        Duration::from_secs(30),
        async || {
            let v = pool.api.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["leased"] == 0).then_some(()))
        },
    )
    .await?;
    let _dave = MinerProcess::start(
        pool.stratum,
        "dave.rig1",
        2,
        &dir.path().join("cache-d"),
        &dir.path().join("dave.log"),
    )?;
    let done = completed(&pool.api, &id, Duration::from_secs(180)).await?;
    let (c, d) = (
        worker_work(&pool.api, "carol.rig1").await?,
        worker_work(&pool.api, "dave.rig1").await?,
    );
    assert!(c > 0 && d > 0, "carol {c} dave {d}");
    assert_eq!(
        c + d,
        done["total_work"].as_u64().unwrap(),
        "each statement credited exactly once"
    );
    let result = job_result(&pool.api, &id).await?;
    result.verify()?;
    Ok(())
}

/// The pool SIGKILLed right after it acknowledged a share keeps that share: after a
/// restart on the same data directory the acknowledged work is still credited, the
/// statements that were only leased are redone by a miner, and nothing is credited
/// twice. (What the pool promises is that acknowledged work survives; statements it
/// had claimed but not yet flushed and acknowledged may rightly be redone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_killed_right_after_an_ack_keeps_the_acknowledged_work() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let log = dir.path().join("pool.log");
    let mut pool = PoolProcess::start(&cfg, None, &log)?;
    let addrs = (pool.stratum, pool.http);
    let job = pool.api.post("/v1/jobs", &chain_job(6)).await?;
    let id = job["id"].as_str().unwrap().to_owned();

    let mut c = RawConn::connect(pool.stratum).await?;
    let notes = c.handshake("erin.rig1").await?;
    let task = match notes.into_iter().find(|n| n["method"] == "mining.notify") {
        Some(n) => n["params"].clone(),
        None => c.next_notify().await?,
    };
    let proofs = prove_task(&task).await?;
    let n = proofs.len() as u64;
    c.send(&json!({"jsonrpc":"2.0","id":20,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (ack, _) = c.response().await?;
    assert_eq!(ack["result"]["accepted"].as_u64(), Some(n), "{ack}");
    let acked_work = ack["result"]["work"].as_u64().unwrap();
    pool.kill();

    let pool = PoolProcess::start(&cfg, Some(addrs), &log)?;
    assert_eq!(
        worker_work(&pool.api, "erin.rig1").await?,
        acked_work,
        "acknowledged work survives SIGKILL"
    );
    let v = pool.api.get(&format!("/v1/jobs/{id}")).await?;
    assert!(
        v["verified"].as_u64().unwrap() >= n,
        "acknowledged statements stay verified: {v}"
    );
    assert_eq!(v["leased"], 0, "leases do not survive a restart: {v}");
    // The overview's totals are lifetime figures from the books; what this
    // process counted is labelled as since its start.
    let st = pool.api.get("/v1/status").await?;
    assert_eq!(st["proofs_credited"].as_u64(), Some(n), "{st}");
    assert_eq!(st["work_credited"].as_u64(), Some(acked_work), "{st}");
    assert_eq!(st["shares_accepted"], 1, "{st}");
    assert_eq!(st["since_start"]["proofs_credited"], 0, "{st}");
    assert_eq!(st["since_start"]["shares_accepted"], 0, "{st}");

    let _m = MinerProcess::start(
        pool.stratum,
        "fred.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("fred.log"),
    )?;
    let done = completed(&pool.api, &id, Duration::from_secs(180)).await?;
    let fred = worker_work(&pool.api, "fred.rig1").await?;
    assert_eq!(
        acked_work + fred,
        done["total_work"].as_u64().unwrap(),
        "no statement credited twice"
    );
    let result = job_result(&pool.api, &id).await?;
    assert_eq!(result.verify()?, 6);
    Ok(())
}

/// A statement that `scheduler.max_attempts` different identities fail (here:
/// three rigs of three token-protected accounts, each sending an invalid proof)
/// fails its job with the reason, instead of being handed out forever; the job's
/// result then answers 410 with that reason. (Names without a token count as
/// their address: see the adversary's sybil test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_fails_every_attempt_fails_its_job_with_the_reason() -> anyhow::Result<()>
{
    let (pool, _dir) = inproc_pool_with(
        "resume_grace_secs = 0",
        &format!("admin_token = \"{ADMIN}\""),
        "max_attempts = 3",
        "",
    )
    .await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let operator = Api::new(&format!("http://{}", pool.http_addr)).with_token(Some(ADMIN.into()));
    let job = api.post("/v1/jobs", &batch_job(1)).await?;
    let id = job["id"].as_str().unwrap();
    let mut wrong = None;
    for (n, worker) in ["frank.rig1", "gina.rig1", "hank.rig1"]
        .into_iter()
        .enumerate()
    {
        let account = worker.split('.').next().unwrap();
        let token = operator
            .post(&format!("/v1/workers/{account}/token"), &json!({}))
            .await?["token"]
            .as_str()
            .unwrap()
            .to_owned();
        // One rig at a time, so the statement goes to each in turn.
        let mut c = RawConn::connect(pool.stratum_addr).await?;
        let mut notes = c.handshake_with(worker, Some(&token)).await?;
        let task = match notes.pop() {
            Some(n) if n["method"] == "mining.notify" => n["params"].clone(),
            _ => c.next_notify().await?,
        };
        if wrong.is_none() {
            let keys = task_keys(&task).await?;
            wrong = Some(
                keys.prove(&zk::CircuitSpec::preimage_statement(zk::Fr::from(
                    424_242u64,
                )))?
                .to_hex(),
            );
        }
        let index = task["statements"][0]["index"].as_u64().unwrap();
        c.send(
            &json!({"jsonrpc":"2.0","id":n + 10,"method":"mining.submit",
            "params":{"task":task["task"],"proofs":[{"index":index,"proof":wrong}]}}),
        )
        .await?;
        let (r, _) = c.response().await?;
        assert_eq!(err_code(&r), 30, "{worker}: {r}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        let v = api.get(&format!("/v1/jobs/{id}")).await?;
        if v["state"] != "running" || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view["state"], "failed", "{view}");
    let failure = view["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("statement 0 failed on 3 different identities")
            && failure.contains("hank.rig1"),
        "{view}"
    );
    let e = refused_result(&api, id).await?;
    assert!(
        e.contains("HTTP 410") && e.contains("failed (statement 0 failed on 3"),
        "{e}"
    );
    assert_eq!(api.get("/v1/jobs").await?["counts"]["failed"], 1);
    let metrics = api.get_text("/metrics").await?;
    assert_eq!(sample(&metrics, "zkpool_jobs_failed_total"), 1.0);
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Crash loop: the pool is SIGKILLed at random points while jobs run, are settled
/// and paid out, `ZKPOOL_CRASH_ITERATIONS` times (50 by default; `tests/crash-loop.sh`
/// runs more), restarted each time on the same data directory while one miner keeps
/// reconnecting. Each job carries a reward escrowed from a client's deposit, and
/// while the pool lives an operator plans, confirms and voids payout batches, so
/// kills land during settlement and payout confirmation too. After every restart
/// the books balance, every acknowledged deposit, confirmation and void is there,
/// and no batch is confirmed twice. At the end every job the pool accepted (answered
/// 201) completes with a verifying result and is settled; the credited work equals
/// the jobs' total work exactly (nothing lost, nothing credited twice); and the
/// miner's balance + pending + paid is exactly the jobs' rewards minus the fee.
/// The kill points come from a seeded generator; the seed is printed so a failure
/// can be replayed (`ZKPOOL_CRASH_SEED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_loses_nothing_and_credits_or_pays_nothing_twice() -> anyhow::Result<()> {
    crash_loop(false, 50).await
}

/// The same crash loop on PostgreSQL (`[storage] url`, a fresh database on the
/// test server): its records and ledger survive each SIGKILL in the database.
/// 20 kills by default (`ZKPOOL_CRASH_ITERATIONS` sets both loops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_on_postgres_loses_nothing_and_credits_or_pays_nothing_twice(
) -> anyhow::Result<()> {
    crash_loop(true, 20).await
}

/// The crash loop, on sled or on PostgreSQL, `iterations` kills unless
/// `ZKPOOL_CRASH_ITERATIONS` says otherwise.
async fn crash_loop(postgres: bool, iterations: usize) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    let iterations: usize = std::env::var("ZKPOOL_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(iterations);
    let seed: u64 = std::env::var("ZKPOOL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash loop: {iterations} iterations, ZKPOOL_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    if postgres {
        on_postgres(&cfg, "e2e_crash_loop")?;
    }
    let log = dir.path().join("pool.log");
    let first = PoolProcess::start(&cfg, None, &log)?;
    let addrs = (first.stratum, first.http);
    let url = format!("http://{}", first.http);
    let operator = Api::new(&url).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "crashco", 0, "").await?;
    let client = Api::new(&url).with_token(Some(key));
    let _miner = MinerProcess::start(
        first.stratum,
        "kate.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("kate.log"),
    )?;
    let mut pool = first;
    // What the pool acknowledged, and what it may have done without answering.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Acked::default()));
    let mut accepted: Vec<(String, u64)> = vec![];
    for i in 0..iterations {
        // A new job every life; one accepted before a kill must survive it.
        accepted.push(fund_and_submit(&operator, &client, &mut rng, i, &acked).await?);
        // The operator pays out while the pool lives; the kill lands wherever it lands.
        let ops = tokio::spawn(payout_ops(
            Api::new(&url).with_token(Some(ADMIN.into())),
            acked.clone(),
            rng.gen(),
        ));
        // Kill soon after this life's job completes (its settlement and the payouts
        // it allows are being written then), or at a random point if it is slow.
        let (id, _) = accepted.last().unwrap();
        let _ = wait_for("", Duration::from_secs(4), async || {
            let v = operator.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["state"] == "completed").then_some(()))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=300))).await;
        pool.kill();
        ops.abort();
        let _ = ops.await;
        pool = PoolProcess::start(&cfg, Some(addrs), &log)
            .with_context(|| format!("restart {i} (seed {seed})"))?;
        let seen = acked.lock().unwrap().clone();
        check_books(&operator, &seen)
            .await
            .with_context(|| format!("after restart {i} (seed {seed})"))?;
    }
    let mut total = 0;
    let mut rewards = 0;
    for (id, reward) in &accepted {
        let done = completed(&operator, id, Duration::from_secs(300))
            .await
            .with_context(|| format!("job {id} (seed {seed})"))?;
        total += done["total_work"].as_u64().unwrap();
        rewards += reward - reward / 100;
        let result = job_result(&operator, id).await?;
        result.verify().with_context(|| format!("result of {id}"))?;
        wait_for("the settlement", Duration::from_secs(20), async || {
            let v = pool.api.get(&format!("/v1/jobs/{id}/credits")).await?;
            Ok((!v["settlement"].is_null()).then_some(()))
        })
        .await?;
    }
    assert_eq!(
        worker_work(&pool.api, "kate.rig1").await?,
        total,
        "credited work equals the accepted jobs' work (seed {seed})"
    );
    let kate = pool.api.get("/v1/workers/kate").await?;
    let held = ["balance", "pending", "paid"]
        .iter()
        .map(|k| kate[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(
        held, rewards,
        "kate holds exactly the rewards minus the fee: {kate} (seed {seed})"
    );
    let acked = acked.lock().unwrap().clone();
    check_books(&operator, &acked).await?;
    println!(
        "crash loop: {} jobs, {} batches confirmed and {} voided with an answer",
        accepted.len(),
        acked.confirmed.len(),
        acked.voided.len()
    );
    Ok(())
}

/// One life of a crash loop's work: client `crashco` deposits 100,000 through
/// `operator` (acknowledged into `acked`), then submits through `client` a
/// chain job of its own (seed from `life`: a statement proven before is not
/// paid again) with a random reward. Returns the job's id and reward.
pub(super) async fn fund_and_submit(
    operator: &Api,
    client: &Api,
    rng: &mut impl rand::Rng,
    life: usize,
    acked: &std::sync::Mutex<Acked>,
) -> anyhow::Result<(String, u64)> {
    let reference = format!("d{life}");
    let d = operator
        .post(
            "/v1/clients/crashco/deposits",
            &json!({"amount": 100_000, "reference": reference}),
        )
        .await?;
    assert_eq!(d["new"], true);
    acked.lock().unwrap().deposits += 100_000;
    let mut job = chain_job(rng.gen_range(1..=3));
    job["chain"]["seed"] = json!((1000 + life).to_string());
    let reward = rng.gen_range(1_000..=100_000u64);
    job["reward"] = json!(reward);
    let job = client.post("/v1/jobs", &job).await?;
    Ok((job["id"].as_str().context("a job id")?.to_owned(), reward))
}

#[derive(Default, Clone, Debug)]
pub(super) struct Acked {
    pub(super) deposits: u64,
    /// Batches the pool answered "confirmed" for, with the transaction.
    pub(super) confirmed: std::collections::BTreeMap<u64, String>,
    pub(super) voided: std::collections::BTreeSet<u64>,
}

/// Plans a batch, then confirms or voids it, in a loop, recording what the pool
/// acknowledged. Errors (the pool being killed) end the loop.
pub(super) async fn payout_ops(
    api: Api,
    acked: std::sync::Arc<std::sync::Mutex<Acked>>,
    seed: u64,
) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    loop {
        let Ok(v) = api.post("/v1/payouts", &json!({})).await else {
            return;
        };
        let Some(batch) = v["batch"]["id"].as_u64() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if rng.gen_bool(0.7) {
            let tx = format!("tx-{batch}");
            let path = format!("/v1/payouts/{batch}/confirm");
            if api.post(&path, &json!({"tx": tx})).await.is_err() {
                return;
            }
            acked.lock().unwrap().confirmed.insert(batch, tx);
        } else {
            if api
                .post(&format!("/v1/payouts/{batch}/void"), &json!({}))
                .await
                .is_err()
            {
                return;
            }
            acked.lock().unwrap().voided.insert(batch);
        }
    }
}

/// After a restart: the books balance; every acknowledged deposit, confirmation and
/// void is there; no batch was confirmed twice.
pub(super) async fn check_books(api: &Api, acked: &Acked) -> anyhow::Result<()> {
    let books = api.get("/v1/ledger").await?;
    let audit = &books["audit"];
    anyhow::ensure!(audit["balanced"] == true, "books do not balance: {audit}");
    anyhow::ensure!(
        audit["deposited"].as_u64() == Some(acked.deposits),
        "deposited {} but {} acknowledged",
        audit["deposited"],
        acked.deposits
    );
    let payouts = api.get("/v1/payouts").await?;
    let batches = payouts["batches"].as_array().unwrap();
    for (id, tx) in &acked.confirmed {
        let b = batches
            .iter()
            .find(|b| b["id"] == *id)
            .context("acknowledged batch missing")?;
        anyhow::ensure!(
            b["state"] == "confirmed" && b["tx"] == *tx,
            "batch {id} was acknowledged as confirmed: {b}"
        );
    }
    for id in &acked.voided {
        let b = batches
            .iter()
            .find(|b| b["id"] == *id)
            .context("acknowledged batch missing")?;
        anyhow::ensure!(
            b["state"] == "voided",
            "batch {id} was acknowledged as voided: {b}"
        );
    }
    let journal = api.get("/v1/ledger/journal?limit=10000").await?;
    let mut confirms = std::collections::BTreeMap::<u64, usize>::new();
    for e in journal["entries"].as_array().unwrap() {
        if e["kind"] == "confirm" {
            *confirms.entry(e["batch"].as_u64().unwrap()).or_default() += 1;
        }
    }
    anyhow::ensure!(
        confirms.values().all(|&n| n == 1),
        "a batch was confirmed twice: {confirms:?}"
    );
    let paid: u64 = batches
        .iter()
        .filter(|b| b["state"] == "confirmed")
        .map(|b| b["total"].as_u64().unwrap())
        .sum();
    anyhow::ensure!(
        audit["paid"].as_u64() == Some(paid),
        "paid {} but confirmed batches total {paid}",
        audit["paid"]
    );
    Ok(())
}

/// Repeated invalid proofs: a warning, then a ban of the worker at its address,
/// and (with `bans.per_ip`, an operator's choice where rigs do not share
/// addresses) of the address (the connection closes; a renamed worker from the
/// same address is refused too), visible to the operator behind the admin token,
/// until the operator lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_invalid_proofs_ban_the_worker_and_address_until_lifted() -> anyhow::Result<()> {
    const TOKEN: &str = "test-admin-token-0123456789";
    let (pool, _dir) = inproc_pool_with(
        "",
        &format!("admin_token = \"{TOKEN}\""),
        "",
        "[bans]\ninvalid_threshold = 2\nper_ip = true\n",
    )
    .await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    api.post("/v1/jobs", &batch_job(1)).await?;

    let garbage = |id: u64, task: &Value| {
        let index = task["statements"][0]["index"].clone();
        json!({"jsonrpc":"2.0","id":id,"method":"mining.submit","params":{"task":task["task"],"proofs":[{"index":index,"proof":"ab".repeat(128)}]}})
    };
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    let notes = c.handshake("mallory.rig1").await?;
    let task = match notes.into_iter().find(|n| n["method"] == "mining.notify") {
        Some(n) => n["params"].clone(),
        None => c.next_notify().await?,
    };
    c.send(&garbage(30, &task)).await?;
    let (r, _) = c.response().await?;
    assert_eq!(err_code(&r), 30, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("warning: 1 more invalid submit"),
        "{r}"
    );
    let task = c.next_notify().await?;
    c.send(&garbage(31, &task)).await?;
    let (r, _) = c.response().await?;
    assert_eq!(err_code(&r), 33, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("banned for 600 s"),
        "{r}"
    );
    assert!(c.recv().await?.is_none(), "a banned session is closed");

    // The same worker, and another name from the same address, are refused at authorize.
    for worker in ["mallory.rig1", "eve.rig1"] {
        let mut again = RawConn::connect(pool.stratum_addr).await?;
        let e = again.handshake(worker).await.unwrap_err().to_string();
        assert!(
            e.contains("\"code\":33") && e.contains("is banned for"),
            "{worker}: {e}"
        );
    }

    let http = reqwest::Client::new();
    let bans_url = format!("http://{}/v1/bans", pool.http_addr);
    assert_eq!(
        http.get(&bans_url).send().await?.status(),
        401,
        "operator endpoints need the token"
    );
    assert_eq!(
        http.get(&bans_url)
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await?
            .status(),
        401
    );
    let listed: Value = http
        .get(&bans_url)
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let mut targets: Vec<&str> = listed["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        vec!["ip:127.0.0.1", "worker:mallory.rig1@127.0.0.1"],
        "{listed}"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", pool.http_addr))
        .await?
        .text()
        .await?;
    assert_eq!(sample(&metrics, "zkpool_bans_total"), 1.0);
    assert_eq!(sample(&metrics, "zkpool_bans_active"), 2.0);

    // The operator's commands: the same bans as a table, one lifted from the CLI.
    let zkpool = |args: &[&str]| {
        let out = std::process::Command::new(bin("zkpool"))
            .args(args)
            .env("ZKPOOL_URL", format!("http://{}", pool.http_addr))
            .env("ZKPOOL_ADMIN_TOKEN", TOKEN)
            .output()
            .expect("run zkpool");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = zkpool(&["bans", "list"]);
    assert!(
        ok && out.starts_with("target")
            && out
                .lines()
                .any(|l| l.starts_with("worker:mallory.rig1@127.0.0.1 "))
            && out.lines().any(|l| l.starts_with("ip:127.0.0.1 ")),
        "{out}"
    );
    let (ok, out) = zkpool(&["bans", "lift", "worker:mallory.rig1@127.0.0.1"]);
    assert!(ok && out.contains("lifted"), "{out}");
    let (ok, out) = zkpool(&["bans", "lift", "worker:mallory.rig1@127.0.0.1"]);
    assert!(!ok && out.contains("no active ban"), "lifting twice: {out}");
    let r = http
        .delete(format!("{bans_url}/ip:127.0.0.1"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 200, "lift ip:127.0.0.1");
    let (ok, out) = zkpool(&["bans", "list"]);
    assert!(ok && out.contains("no active bans"), "{out}");
    let r = http
        .delete(format!("{bans_url}/nonsense"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let mut back = RawConn::connect(pool.stratum_addr).await?;
    back.handshake("mallory.rig1")
        .await
        .context("authorize after the ban was lifted")?;
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// A job past its deadline expires: the miner holding its task gets `mining.cancel`,
/// the job says `expired` with what was verified, the result endpoint says it has none
/// (410), and a late submit is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_expires_and_its_leases_are_cancelled() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    c.handshake("lena.rig1").await?;
    let mut body = batch_job(2);
    body["deadline_secs"] = json!(1);
    let job = api.post("/v1/jobs", &body).await?;
    let id = job["id"].as_str().unwrap().to_owned();
    let task = c.next_notify().await?;
    assert_eq!(task["job"], job["id"]);
    let cancel = loop {
        let v = c
            .recv()
            .await?
            .context("connection closed before mining.cancel")?;
        if v["method"] == "mining.cancel" {
            break v;
        }
    };
    assert_eq!(cancel["params"]["reason"], "job expired", "{cancel}");
    assert!(
        cancel["params"]["tasks"]
            .as_array()
            .unwrap()
            .contains(&task["task"]),
        "{cancel}"
    );
    let v = wait_for(
        "the job to be stored as expired",
        Duration::from_secs(10),
        async || {
            let v = api.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["state"] == "expired").then_some(v))
        },
    )
    .await?;
    assert_eq!(
        (v["verified"].as_u64(), v["leased"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    let e = refused_result(&api, &id).await?;
    assert!(
        e.contains("410") && e.contains("expired at its deadline with 0 of 2 statements verified"),
        "{e}"
    );
    let proofs = prove_task(&task).await?;
    c.send(&json!({"jsonrpc":"2.0","id":40,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (r, _) = c.response().await?;
    assert_eq!(
        err_code(&r),
        21,
        "a submit for an expired job is stale: {r}"
    );
    // The counter moves just after the expiry is flushed; wait for it, then check it is exactly one.
    let url = format!("http://{}/metrics", pool.http_addr);
    let metrics = wait_for(
        "the expiry on /metrics",
        Duration::from_secs(10),
        async || {
            let text = reqwest::get(&url).await?.text().await?;
            Ok((sample(&text, "zkpool_jobs_expired_total") >= 1.0).then_some(text))
        },
    )
    .await?;
    assert_eq!(sample(&metrics, "zkpool_jobs_expired_total"), 1.0);
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Fault injection: one job, one honest `zkminer` process, and five misbehaving raw
/// clients: one vanishes mid-task, one stalls holding its tasks (its leases expire),
/// one sends garbage lines, one submits garbage proofs, and one replays its own
/// accepted proof for another statement. The job completes with every proof valid,
/// each offender is answered with its reason (and the cheaters are banned), and the
/// credits are exact: the honest miner gets everything but the replayer's one honest
/// task. (Address bans are off here: every client shares 127.0.0.1, like rigs behind NAT.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_despite_vanishing_stalling_garbage_invalid_and_replaying_miners(
) -> anyhow::Result<()> {
    let (pool, dir) = inproc_pool_with(
        "",
        "",
        "lease_min_secs = 2.0",
        "[bans]\ninvalid_threshold = 1\nper_ip = false\n",
    )
    .await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let addr = pool.stratum_addr;
    let first_task = |c: Vec<Value>| {
        c.into_iter()
            .find(|n| n["method"] == "mining.notify")
            .map(|n| n["params"].clone())
    };
    let submit = |id: u64, task: &Value, proofs: &Value| json!({"jsonrpc":"2.0","id":id,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}});

    // Everyone connects before the job exists, so every misbehaving client gets tasks.
    let mut vanisher = RawConn::connect(addr).await?;
    let mut staller = RawConn::connect(addr).await?;
    let mut junk = RawConn::connect(addr).await?;
    let mut cheat = RawConn::connect(addr).await?;
    let mut replayer = RawConn::connect(addr).await?;
    for (c, w) in [
        (&mut vanisher, "van.rig1"),
        (&mut staller, "stall.rig1"),
        (&mut junk, "junk.rig1"),
        (&mut cheat, "cheat.rig1"),
        (&mut replayer, "copy.rig1"),
    ] {
        assert!(first_task(c.handshake(w).await?).is_none());
    }
    let job = api.post("/v1/jobs", &chain_job(16)).await?;
    let id = job["id"].as_str().unwrap().to_owned();

    // Vanish mid-task: its leases return at once.
    vanisher.next_notify().await?;
    drop(vanisher);
    // Stall: take tasks and say nothing (kept open to the end).
    staller.next_notify().await?;
    // Garbage lines: answered with parse errors; the session goes on (and holds its tasks).
    junk.next_notify().await?;
    junk.send_raw(b"}}} not json\n").await?;
    let (r, _) = junk.response().await?;
    assert_eq!(err_code(&r), -32700, "{r}");
    // Garbage proofs: rejected and (threshold 1) banned, connection closed.
    let t = cheat.next_notify().await?;
    let garbage: Vec<Value> = t["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"index": s["index"], "proof": "cd".repeat(128)}))
        .collect();
    cheat.send(&submit(50, &t, &json!(garbage))).await?;
    let (r, _) = cheat.response().await?;
    assert_eq!(err_code(&r), 33, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed proof"),
        "{r}"
    );
    // Replay: prove one task honestly, resubmit it (stale), then replay that proof for another statement.
    let t1 = replayer.next_notify().await?;
    let proofs = prove_task(&t1).await?;
    replayer.send(&submit(60, &t1, &json!(proofs))).await?;
    let (r, _) = replayer.response().await?;
    let honest_copy_work = r["result"]["work"]
        .as_u64()
        .with_context(|| format!("replayer's honest task: {r}"))?;
    replayer.send(&submit(61, &t1, &json!(proofs))).await?;
    let (r, _) = replayer.response().await?;
    assert_eq!(err_code(&r), 21, "a resubmitted task is stale: {r}");
    let t2 = replayer.next_notify().await?;
    let replayed: Vec<Value> = t2["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"index": s["index"], "proof": proofs[0]["proof"]}))
        .collect();
    replayer.send(&submit(62, &t2, &json!(replayed))).await?;
    let (r, _) = replayer.response().await?;
    assert_eq!(err_code(&r), 33, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{r}"
    );

    // The honest miner finishes everything else.
    let _honest = MinerProcess::start(
        addr,
        "honest.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("honest.log"),
    )?;
    let done = completed(&api, &id, Duration::from_secs(120)).await?;
    let result = job_result(&api, &id).await?;
    assert_eq!(result.verify()?, 16, "every proof in the result is valid");
    let total = done["total_work"].as_u64().unwrap();
    assert_eq!(worker_work(&api, "copy.rig1").await?, honest_copy_work);
    assert_eq!(
        worker_work(&api, "honest.rig1").await?,
        total - honest_copy_work,
        "the honest miner is credited the rest, exactly"
    );
    for offender in ["van.rig1", "stall.rig1", "junk.rig1", "cheat.rig1"] {
        assert_eq!(worker_work(&api, offender).await?, 0, "{offender} credited");
    }
    drop((staller, junk));
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
