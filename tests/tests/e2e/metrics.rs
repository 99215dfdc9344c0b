//! `/metrics` as Prometheus scrapes it: counters move as shares are verified and
//! add up to the job.

use std::time::Duration;

use zkpool_tests::*;

use super::{chain_job, completed, sample};

/// `/metrics` during a job shows the counters moving as shares are verified, and
/// after it they add up to the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_shares_are_verified() -> anyhow::Result<()> {
    let (pool, dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let url = format!("http://{}/metrics", pool.http_addr);
    let scrape = || async { anyhow::Ok(reqwest::get(&url).await?.text().await?) };
    let accepted = "zkpool_shares_total{verdict=\"accepted\"}";

    let before = scrape().await?;
    assert_eq!(sample(&before, accepted), 0.0);
    assert_eq!(sample(&before, "zkpool_sessions"), 0.0);
    assert_eq!(sample(&before, "zkpool_workers_online"), 0.0);
    assert_eq!(sample(&before, "zkpool_statements_pending"), 0.0);

    // The job first, with no miner yet: all its statements wait.
    let job = api.post("/v1/jobs", &chain_job(16)).await?;
    let id = job["id"].as_str().unwrap().to_owned();
    let queued = scrape().await?;
    assert_eq!(
        sample(&queued, "zkpool_statements_pending"),
        16.0,
        "{queued}"
    );
    assert_eq!(sample(&queued, "zkpool_tasks_leased"), 0.0);
    let _m = MinerProcess::start(
        pool.stratum_addr,
        "jill.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("jill.log"),
    )?;
    // The accepted counter moves once a share is durably credited (just before the
    // miner's answer); the job's `verified` count moves a little earlier, when the
    // statements are claimed. Wait on the metric itself.
    let during = wait_for(
        "the first accepted share on /metrics",
        Duration::from_secs(60),
        async || {
            let text = scrape().await?;
            Ok((sample(&text, accepted) >= 1.0).then_some(text))
        },
    )
    .await?;
    assert!(sample(&during, accepted) >= 1.0, "{during}");
    assert_eq!(sample(&during, "zkpool_sessions"), 1.0);
    assert_eq!(sample(&during, "zkpool_workers_online"), 1.0);
    assert_eq!(sample(&during, "zkpool_jobs_running"), 1.0);
    assert!(sample(&during, "zkpool_verify_batches_total") >= 1.0);
    let credited_during = sample(&during, "zkpool_proofs_credited_total");

    let done = completed(&api, &id, Duration::from_secs(120)).await?;
    // The job reads as completed once its state is stored; the completion counter and
    // the running gauge follow a moment later, after the flush. Wait for them.
    let after = wait_for(
        "the completion on /metrics",
        Duration::from_secs(10),
        async || {
            let text = scrape().await?;
            Ok((sample(&text, "zkpool_jobs_completed_total") == 1.0).then_some(text))
        },
    )
    .await?;
    assert_eq!(sample(&after, "zkpool_proofs_credited_total"), 16.0);
    assert!(
        credited_during < 16.0,
        "scraped during the job: {credited_during} of 16 credited"
    );
    assert_eq!(
        sample(&after, "zkpool_work_credited_total"),
        done["total_work"].as_f64().unwrap()
    );
    assert_eq!(sample(&after, "zkpool_jobs_completed_total"), 1.0);
    assert_eq!(sample(&after, "zkpool_jobs_running"), 0.0);
    assert_eq!(sample(&after, "zkpool_statements_pending"), 0.0);
    assert!(sample(&after, "zkpool_verify_seconds_count") >= 1.0);
    assert_eq!(
        sample(&after, "zkpool_shares_total{verdict=\"invalid_proof\"}"),
        0.0
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
