//! The spine: two miner processes prove a chain job and a batch job for a pool
//! process; the results verify here and with `zkpool verify`, a tampered one does
//! not, and the credited work adds up to the jobs' work.

use std::time::Duration;

use serde_json::json;
use zkpool_tests::*;

use super::{batch_job, chain_job, cli, completed, worker_work};

/// `zkpool verify FILE --circuit-id ID`, as a client checks a result.
fn zkpool_verify(path: &std::path::Path, circuit: &str) -> (bool, String) {
    cli(
        "zkpool",
        "",
        &[
            "verify",
            path.to_str().expect("UTF-8 temp path"),
            "--circuit-id",
            circuit,
        ],
    )
}

/// The spine: two miner processes prove a 32-segment chain job and a 64-statement
/// batch job for a pool process; results verify in-process and with `zkpool verify`,
/// a tampered result is refused, and credited work adds up to the jobs' work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miner_processes_complete_a_chain_job_and_a_batch_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let _a = MinerProcess::start(
        pool.stratum,
        "alice.rig1",
        1,
        &dir.path().join("cache-a"),
        &dir.path().join("alice.log"),
    )?;
    let _b = MinerProcess::start(
        pool.stratum,
        "bob.rig1",
        1,
        &dir.path().join("cache-b"),
        &dir.path().join("bob.log"),
    )?;

    let chain = pool.api.post("/v1/jobs", &chain_job(32)).await?;
    let batch = pool.api.post("/v1/jobs", &batch_job(64)).await?;
    assert_eq!(chain["statements"], 32);
    assert_eq!(batch["statements"], 64);
    let mut total_work = 0;
    for job in [&chain, &batch] {
        let id = job["id"].as_str().unwrap();
        let v = completed(&pool.api, id, Duration::from_secs(300)).await?;
        assert_eq!(v["verified"], v["statements"]);
        total_work += v["total_work"].as_u64().unwrap();

        let result = pool.api.get(&format!("/v1/jobs/{id}/result")).await?;
        let parsed: zk::JobResult = serde_json::from_value(result.clone())?;
        assert_eq!(
            parsed.verify()?,
            job["statements"].as_u64().unwrap() as usize,
            "every proof verifies"
        );

        let file = dir.path().join(format!("{id}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(&result)?)?;
        let circuit = v["circuit_id"].as_str().unwrap();
        let (ok, out) = zkpool_verify(&file, circuit);
        assert!(
            ok && out.starts_with("OK:"),
            "zkpool verify refused a good result: {out}"
        );

        // Tamper: change one public input of the last entry; keep the JSON valid.
        let mut bad = result.clone();
        let entries = bad["entries"].as_array_mut().unwrap();
        let last = entries.last_mut().unwrap();
        last["public"][0] = json!("12345");
        let tampered = dir.path().join(format!("{id}-tampered.json"));
        std::fs::write(&tampered, serde_json::to_string(&bad)?)?;
        let (ok, out) = zkpool_verify(&tampered, circuit);
        assert!(
            !ok && out.contains("INVALID"),
            "zkpool verify accepted a tampered result: {out}"
        );
    }
    let (a, b) = (
        worker_work(&pool.api, "alice.rig1").await?,
        worker_work(&pool.api, "bob.rig1").await?,
    );
    assert!(a > 0 && b > 0, "both workers credited: alice {a}, bob {b}");
    assert_eq!(
        a + b,
        total_work,
        "credited work equals the jobs' total work"
    );
    let account = pool.api.get("/v1/workers/alice").await?;
    assert_eq!(
        account["work"].as_u64(),
        Some(a),
        "account view sums its rigs"
    );
    Ok(())
}
