//! The web dashboard, driven in headless Chromium against a pool with finished and
//! paid work: each page shows what the API says.

use std::{process::Command, time::Duration};

use anyhow::Context;
use serde_json::json;
use zkpool_tests::*;

use super::{batch_job, chain_job, completed, new_client, paying_pool_config, ADMIN};

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
