//! zkminer's status as a rig manager and its owner see it: the monitoring API
//! (`zkminer --http`) and the status line, against a real pool process, before a
//! job, once its proofs are accepted, and after the pool is gone.

use std::{path::Path, time::Duration};

use serde_json::Value;
use zkpool_tests::*;

use super::{batch_job, completed};

/// `GET {base}{path}`: the status code and the JSON body.
async fn get(base: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::get(format!("{base}{path}")).await?;
    Ok((r.status().as_u16(), r.json().await?))
}

/// Waits for a line of the miner's output that contains every one of `parts`.
async fn printed(log: &Path, parts: &[&str]) -> anyhow::Result<String> {
    wait_for(
        &format!("a line with {parts:?} in {}", log.display()),
        Duration::from_secs(60),
        async || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            Ok(text
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_owned))
        },
    )
    .await
}

/// A rig with `--http 127.0.0.1:0` prints where its API is; the summary says
/// connected and idle with nothing accepted before a job, then the accepted
/// share with a non-zero 10 s rate and the pool's latency, then "disconnected"
/// with the retry once the pool process is killed; /v1/health follows, and the
/// status lines say the same states in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_miner_reports_its_state_through_its_api_and_its_status_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    // One statement per task: the job below is four tasks, the second leased
    // while the first proves (two per session), as a large circuit's are.
    std::fs::write(
        &cfg,
        test_config_with(
            &dir.path().join("data"),
            "",
            "",
            "max_statements_per_task = 1",
            "",
        ),
    )?;
    let mut pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let pool_url = format!("stratum+tcp://{}", pool.stratum);
    let log = dir.path().join("miner.log");
    let cache = dir.path().join("cache");
    let _miner = MinerProcess::spawn(
        &[
            "--pool",
            &pool_url,
            "--worker",
            "carol.rig1",
            "--threads",
            "1",
            "--status-interval",
            "1",
            "--cache-dir",
            cache.to_str().expect("UTF-8 temp path"),
            "--http",
            "127.0.0.1:0",
        ],
        "carol.rig1",
        &log,
    )?;
    let line = printed(&log, &["monitoring API on http://"]).await?;
    let api = line
        .split("monitoring API on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("an address follows")
        .to_owned();

    // Before any job: connected to our pool and idle, nothing accepted, no submit.
    let idle = wait_for(
        "the miner to be connected and idle",
        Duration::from_secs(60),
        async || {
            let (_, v) = get(&api, "/v1/summary").await?;
            Ok((v["state"] == "idle").then_some(v))
        },
    )
    .await?;
    assert_eq!(idle["worker"], "carol.rig1", "{idle}");
    assert_eq!(idle["version"], env!("CARGO_PKG_VERSION"), "{idle}");
    assert_eq!(idle["pool"], pool_url.as_str(), "{idle}");
    assert_eq!(idle["threads"], 1, "{idle}");
    assert_eq!(idle["state_detail"], "connected, idle (no task)", "{idle}");
    assert_eq!(
        (&idle["accepted_shares"], &idle["rejected"]),
        (&0.into(), &0.into()),
        "{idle}"
    );
    assert!(
        idle["last_submit_secs_ago"].is_null(),
        "no submit yet: {idle}"
    );
    assert_eq!(idle["proofs_per_s"]["10s"], 0.0, "{idle}");
    assert_eq!(get(&api, "/v1/health").await?.0, 200);
    printed(
        &log,
        &[
            "carol.rig1 connected, idle (no task)",
            &format!("pool {pool_url}"),
            "last submit —",
        ],
    )
    .await?;

    // A job: the summary taken as the first share is accepted has a rate.
    let job = pool.api.post("/v1/jobs", &batch_job(4)).await?;
    let proven = wait_for(
        "an accepted share in the summary",
        Duration::from_secs(300),
        async || {
            let (_, v) = get(&api, "/v1/summary").await?;
            Ok((v["accepted_shares"].as_u64() > Some(0)).then_some(v))
        },
    )
    .await?;
    assert!(
        proven["proofs_per_s"]["10s"].as_f64() > Some(0.0),
        "{proven}"
    );
    assert!(proven["work_per_s"]["10s"].as_f64() > Some(0.0), "{proven}");
    assert!(proven["accepted_proofs"].as_u64() > Some(0), "{proven}");
    assert!(proven["latency_ms"].as_f64() > Some(0.0), "{proven}");
    assert!(proven["last_submit_secs_ago"].is_u64(), "{proven}");
    assert_eq!(proven["keys_loaded"], 1, "{proven}");
    assert!(
        proven["state"] == "idle" || proven["state"] == "proving",
        "{proven}"
    );
    completed(
        &pool.api,
        job["id"].as_str().expect("a job id"),
        Duration::from_secs(300),
    )
    .await?;
    // The second task was queued behind the first, for the same key: its
    // witness was computed while the first one's proof ran.
    let (_, done) = get(&api, "/v1/summary").await?;
    assert!(
        done["tasks_witnessed_ahead"].as_u64() >= Some(1),
        "the next task's witnesses start during the last proof of the one before: {done}"
    );
    assert!(
        done["witness_wait_secs"].as_f64() > Some(0.0),
        "the first task's first witness is waited for: {done}"
    );
    let line = printed(&log, &["carol.rig1 ", " ago", "accepted "]).await?;
    assert!(!line.contains("accepted 0 shares"), "{line}");

    // The pool is gone: disconnected, retrying, and the health check fails.
    pool.kill();
    let gone = wait_for(
        "the miner to say it is disconnected",
        Duration::from_secs(60),
        async || {
            let (_, v) = get(&api, "/v1/summary").await?;
            Ok((v["state"] == "disconnected").then_some(v))
        },
    )
    .await?;
    assert!(
        gone["state_detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("disconnected (retrying in ")),
        "{gone}"
    );
    assert!(gone["retry_in_secs"].is_u64(), "{gone}");
    assert!(gone["last_error"].is_string(), "{gone}");
    assert!(
        gone["accepted_shares"].as_u64() > Some(0),
        "totals survive: {gone}"
    );
    let (code, health) = get(&api, "/v1/health").await?;
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["ok"], false, "{health}");
    printed(&log, &["carol.rig1 disconnected (retrying in "]).await?;
    Ok(())
}
