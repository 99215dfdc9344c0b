//! The web dashboard, driven in headless Chromium against a pool with finished and
//! paid work: each page shows what the API says.

use std::{process::Command, time::Duration};

use anyhow::Context;
use serde_json::{json, Value};
use zkpool_tests::*;

use super::{batch_job, chain_job, cli, completed, new_client, paying_pool_config, ADMIN};

/// Headless Chromium (Debian's `chromium`, installed when missing where it can be;
/// `ZKPOOL_CHROMIUM` overrides, see `zkpool_tests::tools`) loads `url`,
/// runs its scripts, and returns the DOM once the dashboard has rendered with data;
/// it also saves a screenshot to `target/dashboard-screenshots/NAME.png`.
fn browse(url: &str, name: &str) -> anyhow::Result<String> {
    let chromium = tools::require("chromium").map_err(anyhow::Error::msg)?;
    let run = |extra: &[String]| -> anyhow::Result<std::process::Output> {
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,1400",
                "--virtual-time-budget=3000",
            ])
            .args(extra)
            .arg(url)
            .output()
            .with_context(|| {
                format!(
                    "cannot run {}: the dashboard test needs headless Chromium",
                    chromium.display()
                )
            })
    };
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir)?;
    for _ in 0..5 {
        let out = run(&["--dump-dom".into()])?;
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains("data-ready=\"1\"") {
            let shot = dir.join(format!("{name}.png"));
            run(&[format!("--screenshot={}", shot.display())])?;
            anyhow::ensure!(shot.exists(), "no screenshot written for {name}");
            return Ok(dom);
        }
    }
    anyhow::bail!("the dashboard at {url} did not render its data")
}

/// The value a dashboard shows under `data-k=KEY` (its raw `data-v`).
fn shown(dom: &str, key: &str) -> Option<String> {
    let at = dom.find(&format!("data-k=\"{key}\" data-v=\""))?;
    let rest = &dom[at + key.len() + 18..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The web dashboard, driven in headless Chromium against a pool that has finished
/// a paid job and a payout: the overview, the job page, the worker page and the
/// operator page each show what the API says (job states and progress, who proved
/// what, the settlement, balances and payouts, the books, batches and clients), the
/// operator page refuses to show anything without the token, and a screenshot of
/// each page is saved in `target/dashboard-screenshots/`. (The miner here is
/// configured by a `zkminer --config` file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_each_page_with_the_pools_data() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let url = format!("http://{}", pool.http);
    let operator = Api::new(&url).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "viewco", 50_000, "v1").await?;
    let client_key = key.clone();
    let client = Api::new(&url).with_token(Some(key));
    let mut body = chain_job(6);
    body.as_object_mut().unwrap().remove("client");
    body["reward"] = json!(30_000);
    let paid = client.post("/v1/jobs", &body).await?;
    let paid_id = paid["id"].as_str().unwrap().to_owned();
    let free = pool.api.post("/v1/jobs", &batch_job(5)).await?;
    let free_id = free["id"].as_str().unwrap().to_owned();
    // The miner runs from a config file (zkminer --config), as deploy/zkminer.toml shows.
    let miner_cfg = dir.path().join("zkminer.toml");
    std::fs::write(
        &miner_cfg,
        format!(
            "pools = [\"stratum+tcp://{}\"]\nworker = \"vera.rig1\"\nthreads = 2\ncache_dir = \"{}\"\nstatus_interval_secs = 1\n",
            pool.stratum,
            dir.path().join("cache").display()
        ),
    )?;
    let _m =
        MinerProcess::start_with_config(&miner_cfg, "vera.rig1", &dir.path().join("vera.log"))?;
    for id in [&paid_id, &free_id] {
        completed(&operator, id, Duration::from_secs(120)).await?;
    }
    wait_for("the settlement", Duration::from_secs(20), async || {
        let v = pool.api.get(&format!("/v1/jobs/{paid_id}/credits")).await?;
        Ok((!v["settlement"].is_null()).then_some(()))
    })
    .await?;
    let batch = operator.post("/v1/payouts", &json!({})).await?["batch"]["id"]
        .as_u64()
        .unwrap();
    operator
        .post(
            &format!("/v1/payouts/{batch}/confirm"),
            &json!({"tx": "0xd00d"}),
        )
        .await?;

    // Overview, as a stranger: the public (free) job only; viewco's is private.
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/");
        move || browse(&u, "overview-public")
    })
    .await??;
    assert!(
        dom.contains(&format!("data-job=\"{free_id}\"")),
        "public job listed"
    );
    assert!(
        !dom.contains(&format!("data-job=\"{paid_id}\"")),
        "a private job is not shown to strangers"
    );
    // Overview, as the operator: both jobs, their states and progress, the recent work.
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/?token={ADMIN}");
        move || browse(&u, "overview")
    })
    .await??;
    assert_eq!(
        shown(&dom, "jobs-completed").as_deref(),
        Some("2"),
        "overview"
    );
    assert_eq!(shown(&dom, "workers-online").as_deref(), Some("1"));
    // The headline rate is the pool's own 1-minute average: the jobs just ran,
    // so it is not zero, and the chart has the minute they ran in.
    let per_s: f64 = shown(&dom, "proofs-per-s")
        .and_then(|v| v.parse().ok())
        .expect("a proving rate shown");
    assert!(per_s > 0.0, "proofs/s while jobs ran: {per_s}");
    assert!(dom.contains("id=\"rate-chart\""), "rate chart shown");
    for id in [&paid_id, &free_id] {
        assert!(
            dom.contains(&format!("data-job=\"{id}\"")),
            "job {id} listed"
        );
    }
    assert!(
        dom.contains("6 / 6") && dom.contains("5 / 5"),
        "progress shown"
    );
    assert!(
        dom.contains("#/workers/vera.rig1"),
        "recent work names the worker"
    );

    // Job page: state, progress, who proved what, the settlement, the result link.
    // viewco's job is private: its page is opened with viewco's key.
    let credits = pool.api.get(&format!("/v1/jobs/{paid_id}/credits")).await?;
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/jobs/{paid_id}?token={}", client_key);
        move || browse(&u, "job")
    })
    .await??;
    assert_eq!(shown(&dom, "state").as_deref(), Some("completed"));
    assert_eq!(shown(&dom, "verified").as_deref(), Some("6"));
    assert_eq!(
        dom.match_indices("data-pos=\"")
            .filter(|(i, _)| dom[i + 10..].starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        credits["credits"].as_array().unwrap().len(),
        "one row per credit"
    );
    let s = &credits["settlement"];
    assert_eq!(
        shown(&dom, "earned"),
        s["earned"].as_u64().map(|v| v.to_string())
    );
    assert_eq!(
        shown(&dom, "part-vera.rig1"),
        s["parts"][0]["amount"].as_u64().map(|v| v.to_string())
    );
    assert_eq!(
        shown(&dom, "root").as_deref(),
        credits["credits_root"].as_str()
    );
    assert!(
        dom.contains(&format!("/v1/jobs/{paid_id}/result")),
        "result download link"
    );

    // The worker list (the overview's "workers online" card links to it): the
    // rig online, with its rate.
    assert!(
        dom.contains("href=\"#/workers\""),
        "workers online links to the list"
    );
    let listed = pool.api.get("/v1/workers").await?;
    assert_eq!(listed["workers"][0]["worker"], "vera.rig1", "{listed}");
    assert!(
        listed["workers"][0]["rates"]["1m"]["proofs_per_s"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{listed}"
    );
    let list = tokio::task::spawn_blocking({
        let u = format!("{url}/#/workers");
        move || browse(&u, "workers")
    })
    .await??;
    assert!(
        list.contains("data-worker=\"vera.rig1\""),
        "the rig is listed"
    );

    // Worker page: balance, pending, paid, work, the payout, the rigs.
    let api_view = pool.api.get("/v1/workers/vera").await?;
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/workers/vera");
        move || browse(&u, "worker")
    })
    .await??;
    let rig_rate: f64 = shown(&dom, "worker-proofs-per-s")
        .and_then(|v| v.parse().ok())
        .expect("the account's proving rate shown");
    assert!(rig_rate > 0.0, "the account's rate: {rig_rate}");
    assert!(
        api_view["rates"]["10m"]["proofs_per_s"].as_f64().unwrap() > 0.0,
        "{api_view}"
    );
    for k in ["balance", "pending", "paid", "work", "proofs", "rejected"] {
        assert_eq!(
            shown(&dom, k),
            api_view[k].as_u64().map(|v| v.to_string()),
            "worker page {k}"
        );
    }
    assert_eq!(
        shown(&dom, &format!("payout-{batch}")),
        api_view["paid"].as_u64().map(|v| v.to_string())
    );
    assert!(dom.contains("#/workers/vera.rig1"), "the rig is listed");
    let bars: usize = shown(&dom, "chart")
        .context("the throughput chart")?
        .parse()?;
    assert!(bars >= 1, "the chart has bars");

    // Operator page: nothing without the token; with it, the books, batches, clients.
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/operator");
        move || browse(&u, "operator-locked")
    })
    .await??;
    assert!(dom.contains("needs the pool's admin token") && shown(&dom, "deposited").is_none());
    let books = operator.get("/v1/ledger").await?;
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/operator?token={ADMIN}");
        move || browse(&u, "operator")
    })
    .await??;
    assert_eq!(shown(&dom, "balanced").as_deref(), Some("yes"));
    assert_eq!(
        shown(&dom, "deposited"),
        books["audit"]["deposited"].as_u64().map(|v| v.to_string())
    );
    assert_eq!(
        shown(&dom, &format!("batch-{batch}")).as_deref(),
        Some("confirmed")
    );
    assert!(dom.contains("0xd00d"), "the batch's transaction");
    assert_eq!(
        shown(&dom, "client-viewco").as_deref(),
        Some("20000"),
        "50,000 deposited - 30,000 escrowed"
    );
    Ok(())
}

/// Runs blocking browser steps on this runtime's thread without stalling it.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The `data-v` of the element `data-k=KEY`, as a page expression (null when absent).
fn value_js(key: &str) -> String {
    format!("(document.querySelector('[data-k=\"{key}\"]')?.dataset.v ?? null)")
}

/// What a miner and an operator meet on the dashboard, clicked through in
/// headless Chromium: while a job runs, the overview (with the "how to connect"
/// box: the stratum URL, terms and the zkminer command), the worker list, the
/// account page and the operator page show non-zero proving rates and are saved
/// as screenshots; a worker the pool has never seen gets a "no such worker" page
/// (and 404 from the API) while an idle rig that is connected gets its page;
/// the operator lifts a ban, plans a batch and voids it (after a confirmation
/// it first declines), plans another and confirms it with a transaction
/// reference, and downloads its CSV; each of those endpoints refuses a caller
/// without the admin token; amounts are shown in the configured unit, on the
/// page and in the CLI's tables (while `--json` keeps integers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_and_operators_use_the_dashboard_while_a_job_runs() -> anyhow::Result<()> {
    use zkpool_tests::browser::Browser;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(
        &cfg,
        test_config_with(
            &dir.path().join("data"),
            "",
            &format!("admin_token = \"{ADMIN}\""),
            "",
            "[payouts]\nthreshold = 1\nunit = \"TZK\"\ndecimals = 4\n[bans]\ninvalid_threshold = 1\n",
        ),
    )?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let url = format!("http://{}", pool.http);
    let operator = Api::new(&url).with_token(Some(ADMIN.into()));
    let stranger = Api::new(&url);

    // A rig that is connected but has done nothing yet has its page; a name the
    // pool has never seen is a 404 that says why, and a malformed one a 400.
    let mut idle = RawConn::connect(pool.stratum).await?;
    idle.handshake("idle.rig1").await?;
    let v = stranger.get("/v1/workers/idle.rig1").await?;
    assert_eq!(
        (v["work"].as_u64(), &v["online"]),
        (Some(0), &json!(["idle.rig1"])),
        "{v}"
    );
    stranger.get("/v1/workers/idle").await?;
    drop(idle);
    let e = stranger.get("/v1/workers/nosuch.rig9").await.unwrap_err();
    assert_eq!(e.status(), Some(reqwest::StatusCode::NOT_FOUND), "{e}");
    assert!(
        e.to_string().contains("never seen") && e.to_string().contains("spelling"),
        "{e}"
    );
    let e = stranger.get("/v1/workers/bad*name").await.unwrap_err();
    assert_eq!(e.status(), Some(reqwest::StatusCode::BAD_REQUEST), "{e}");

    // A paid job big enough to be running while the pages are looked at.
    let key = new_client(&operator, "acme", 1_000_000, "wire-1").await?;
    let client = Api::new(&url).with_token(Some(key));
    let mut body = batch_job(2000);
    body["reward"] = json!(300_000);
    let job = client.post("/v1/jobs", &body).await?;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let mut miner = MinerProcess::start(
        pool.stratum,
        "vera.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("vera.log"),
    )?;
    // A rig that submits a bad proof is banned (bans.invalid_threshold = 1).
    let mut mallory = RawConn::connect(pool.stratum).await?;
    let notes = mallory.handshake("mallory.rig1").await?;
    let task = match notes.into_iter().find(|n| n["method"] == "mining.notify") {
        Some(n) => n["params"].clone(),
        None => mallory.next_notify().await?,
    };
    let index = task["statements"][0]["index"].clone();
    mallory.send(&json!({"jsonrpc":"2.0","id":9,"method":"mining.submit","params":{"task":task["task"],"proofs":[{"index":index,"proof":"ab".repeat(128)}]}})).await?;
    let (r, _) = mallory.response().await?;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("banned"),
        "{r}"
    );
    let ban = "worker:mallory.rig1@127.0.0.1";
    assert!(operator.get("/v1/bans").await?.to_string().contains(ban));

    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    let downloads = dir.path().join("downloads");
    let mut b = blocking(|| Browser::launch(1280, 1400, &downloads))?;
    let minute = Duration::from_secs(90);

    // The overview while the job runs: the pool's rate is not zero, and the
    // connect box says where and how to mine.
    blocking(|| -> anyhow::Result<()> {
        b.goto(&format!("{url}/#/?token={ADMIN}"))?;
        b.wait_for(
            "a non-zero pool rate with the job running",
            minute,
            &format!(
                "Number({}) > 0 && Number({}) >= 1",
                value_js("proofs-per-s"),
                value_js("jobs-running")
            ),
        )?;
        b.screenshot(&shots.join("overview-running.png"))
    })?;
    let stratum_url = format!("stratum+tcp://{}", pool.stratum);
    assert_eq!(
        blocking(|| b.eval(&value_js("stratum-url")))?,
        json!(stratum_url)
    );
    let command = blocking(|| b.eval("document.getElementById('zkminer-command').textContent"))?;
    assert_eq!(
        command,
        json!(format!("zkminer --pool {stratum_url} --worker ADDR.RIG"))
    );
    let terms = blocking(|| b.eval("document.getElementById('connect').innerText"))?;
    let terms = terms.as_str().unwrap_or_default();
    for shown in ["1.00 %", "PROP", "0.0001 TZK"] {
        assert!(
            terms.contains(shown),
            "the connect box shows {shown}: {terms}"
        );
    }
    let status = stranger.get("/v1/status").await?;
    assert_eq!(
        status["connect"]["stratum_url"],
        json!(stratum_url),
        "{status}"
    );

    // The worker list, the account and the operator page, each while the job runs.
    blocking(|| -> anyhow::Result<()> {
        b.goto(&format!("{url}/#/workers"))?;
        b.wait_for(
            "the rig's rate in the list",
            minute,
            &format!("Number({}) > 0", value_js("rate-vera.rig1")),
        )?;
        b.screenshot(&shots.join("workers-running.png"))?;
        b.goto(&format!("{url}/#/workers/vera"))?;
        b.wait_for(
            "the account's rate",
            minute,
            &format!("Number({}) > 0", value_js("worker-proofs-per-s")),
        )?;
        b.screenshot(&shots.join("worker-running.png"))?;
        b.goto(&format!("{url}/#/operator"))?;
        b.wait_for(
            "the operator page with the ban",
            minute,
            &format!(
                "document.querySelector('[data-ban=\"{ban}\"]') && {}",
                value_js("balanced")
            ),
        )?;
        b.screenshot(&shots.join("operator-running.png"))
    })?;
    let running = client.get(&format!("/v1/jobs/{job_id}")).await?;
    assert_eq!(
        running["state"], "running",
        "the screenshots were taken while the job ran: {running}"
    );

    // Cancelling pays the verified part; the rest is refunded.
    client.delete(&format!("/v1/jobs/{job_id}")).await?;
    wait_for("the settlement", Duration::from_secs(30), async || {
        let v = operator.get(&format!("/v1/jobs/{job_id}/credits")).await?;
        Ok((!v["settlement"].is_null()).then_some(()))
    })
    .await?;
    miner.kill();

    // Lift the ban from the page.
    blocking(|| -> anyhow::Result<()> {
        b.click(&format!("[data-act=\"lift\"][data-target=\"{ban}\"]"))?;
        b.wait_for(
            "the ban lifted",
            minute,
            &format!(
                "{} === 'ok' && !document.querySelector('[data-ban=\"{ban}\"]')",
                value_js("op-msg")
            ),
        )?;
        Ok(())
    })?;
    assert_eq!(operator.get("/v1/bans").await?["bans"], json!([]));

    // Plan a batch, decline to void it (nothing happens), then void it.
    let state = |id: u64| value_js(&format!("batch-{id}"));
    let msg = blocking(|| -> anyhow::Result<String> {
        b.click("#op-plan")?;
        b.wait_for(
            "batch 1 planned",
            minute,
            &format!("{} === 'planned'", state(1)),
        )?;
        let asked = b.click_and_answer("[data-act=\"void\"][data-batch=\"1\"]", false)?;
        Ok(asked)
    })?;
    assert!(msg.contains("Void payout batch 1"), "{msg}");
    assert_eq!(
        operator.get("/v1/payouts/1").await?["state"],
        "planned",
        "declined: nothing voided"
    );
    blocking(|| -> anyhow::Result<()> {
        b.click_and_answer("[data-act=\"void\"][data-batch=\"1\"]", true)?;
        b.wait_for(
            "batch 1 voided",
            minute,
            &format!("{} === 'voided'", state(1)),
        )?;
        Ok(())
    })?;

    // Plan another and confirm it: without a transaction reference the page says
    // what is missing; with one, after the confirmation, it is confirmed.
    let (asked, error) = blocking(|| -> anyhow::Result<(String, Value)> {
        b.click("#op-plan")?;
        b.wait_for(
            "batch 2 planned",
            minute,
            &format!("{} === 'planned'", state(2)),
        )?;
        b.click("[data-act=\"confirm\"][data-batch=\"2\"]")?;
        let error = b.wait_for(
            "the missing reference named",
            minute,
            &format!(
                "{} === 'error' && document.getElementById('op-msg').textContent",
                value_js("op-msg")
            ),
        )?;
        b.type_into("#tx-2", "0xfeed")?;
        let asked = b.click_and_answer("[data-act=\"confirm\"][data-batch=\"2\"]", true)?;
        b.wait_for(
            "batch 2 confirmed",
            minute,
            &format!("{} === 'confirmed'", state(2)),
        )?;
        Ok((asked, error))
    })?;
    assert!(
        error
            .as_str()
            .unwrap_or_default()
            .contains("enter the reference"),
        "{error}"
    );
    assert!(
        asked.contains("batch 2") && asked.contains("0xfeed"),
        "{asked}"
    );
    let batch = operator.get("/v1/payouts/2").await?;
    assert_eq!(
        (&batch["state"], &batch["tx"]),
        (&json!("confirmed"), &json!("0xfeed")),
        "{batch}"
    );

    // The CSV link downloads the batch's rows.
    let csv = blocking(|| -> anyhow::Result<String> {
        b.click("[data-act=\"csv\"][data-batch=\"2\"]")?;
        let path = b.downloaded(&downloads, "payout-batch-2.csv", minute)?;
        b.screenshot(&shots.join("operator-actions.png"))?;
        Ok(std::fs::read_to_string(path)?)
    })?;
    let mut rows = vec!["batch,addr,amount".to_owned()];
    for i in batch["items"].as_array().unwrap() {
        rows.push(format!("2,{},{}", i["addr"].as_str().unwrap(), i["amount"]));
    }
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        rows,
        "the downloaded CSV is the batch"
    );
    let total = batch["total"].as_u64().unwrap();
    assert!(total > 0 && total < 10_000_000, "{batch}");
    let total_shown = format!("{} TZK", pool::config::format_amount(total, 4));
    let page = blocking(|| b.eval("document.body.innerText"))?;
    assert!(
        page.as_str().unwrap_or_default().contains(&total_shown),
        "{total_shown} on the operator page"
    );
    // With every balance paid, planning says there is nothing to plan, in the unit.
    let nothing = blocking(|| {
        b.click("#op-plan")?;
        b.wait_for(
            "the nothing-to-plan answer",
            minute,
            "(t => t && t.includes('nothing planned') ? t : null)(document.getElementById('op-msg')?.textContent)",
        )
    })?;
    assert!(
        nothing
            .as_str()
            .unwrap_or_default()
            .contains("threshold (0.0001 TZK)"),
        "{nothing}"
    );

    // A worker the pool has never seen: the page says so, not a page of zeros.
    let unknown = blocking(|| -> anyhow::Result<Value> {
        b.goto(&format!("{url}/#/workers/nosuch.rig9"))?;
        let text = b.wait_for(
            "the no-such-worker message",
            minute,
            "document.getElementById('no-such-worker')?.innerText",
        )?;
        b.screenshot(&shots.join("worker-unknown.png"))?;
        Ok(text)
    })?;
    let unknown = unknown.as_str().unwrap_or_default();
    assert!(
        unknown.contains("No such worker: nosuch.rig9") && unknown.contains("never seen"),
        "{unknown}"
    );

    // A wrong token entered in the page: the pool's refusal is shown.
    let refused = blocking(|| -> anyhow::Result<Value> {
        b.goto(&format!("{url}/#/operator?token=wrong-token"))?;
        b.wait_for(
            "the refusal, and the token asked again",
            minute,
            "document.getElementById('tok') && document.getElementById('op-msg')?.textContent",
        )
    })?;
    let refused = refused.as_str().unwrap_or_default();
    assert!(
        refused.contains("401") && refused.contains("not accepted"),
        "{refused}"
    );
    drop(b);

    // Every operator action needs the token.
    for (what, r) in [
        ("plan", stranger.post("/v1/payouts", &json!({})).await),
        (
            "confirm",
            stranger
                .post("/v1/payouts/1/confirm", &json!({"tx": "x"}))
                .await,
        ),
        (
            "void",
            stranger.post("/v1/payouts/1/void", &json!({})).await,
        ),
        ("csv", stranger.get("/v1/payouts/2?format=csv").await),
        ("lift", stranger.delete(&format!("/v1/bans/{ban}")).await),
    ] {
        let e = r.expect_err(what);
        assert_eq!(
            e.status(),
            Some(reqwest::StatusCode::UNAUTHORIZED),
            "{what}: {e}"
        );
        assert!(e.to_string().contains("admin_token"), "{what}: {e}");
    }

    // The CLI's tables show amounts in the unit; --json keeps the integers.
    let (ok, out) = cli("zkpool", &url, &["payouts", "list"]);
    assert!(
        ok && out.contains(&total_shown) && out.contains("threshold 0.0001 TZK"),
        "{out}"
    );
    let (ok, out) = cli("zkpool", &url, &["ledger"]);
    assert!(
        ok && out.contains("paid out") && out.contains(&total_shown),
        "{out}"
    );
    let (ok, out) = cli("zkpool", &url, &["clients", "list"]);
    let balance = operator.get("/v1/clients/acme").await?["balance"]
        .as_u64()
        .unwrap();
    assert!(
        ok && out.contains(&format!(
            "{} TZK",
            group_thousands(&pool::config::format_amount(balance, 4))
        )),
        "{out}"
    );
    let (ok, out) = cli("zkpool", &url, &["clients", "show", "acme"]);
    assert!(ok && out.contains("30.0000 TZK"), "the job's reward: {out}");
    let (ok, out) = cli("zkpool", &url, &["payouts", "list", "--json"]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["batches"][1]["total"].as_u64(), Some(total), "{v}");
    Ok(())
}

/// `1234567.5` as `1,234,567.5`: how the CLI writes an amount's whole part.
fn group_thousands(plain: &str) -> String {
    let (whole, frac) = plain.split_once('.').unwrap_or((plain, ""));
    let mut out = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if frac.is_empty() {
        out
    } else {
        format!("{out}.{frac}")
    }
}
