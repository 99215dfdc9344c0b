//! Aggregation end to end: a completed job's result carries its aggregate, the
//! pool serves it alone, and a client checks it with `zkpool verify
//! --aggregate-only` pinned to the circuit and to the SRS the pool publishes; a
//! changed input, proof or SRS is refused; a pool that does not aggregate says so.

use std::{path::PathBuf, time::Duration};

use serde_json::Value;
use zkpool_tests::*;

use super::{chain_job, cli, completed, job_result};

fn ptau(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../zk/tests/fixtures/ptau")
        .join(name)
}

/// `zkpool verify FILE --aggregate-only` with these pins.
fn verify_aggregate(path: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut all = vec![
        "verify",
        path.to_str().expect("UTF-8 temp path"),
        "--aggregate-only",
    ];
    all.extend_from_slice(args);
    cli("zkpool", "", &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_checks_one_aggregate_per_run_instead_of_every_proof() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    // Two real (small, test) ceremonies, runs of 8: a 10-segment chain makes two
    // aggregates, the second padded.
    std::fs::write(
        &cfg,
        test_config(
            &dir.path().join("data"),
            &format!(
                "[aggregation]\nptau = [{:?}, {:?}]\nrun = 8\n",
                ptau("ceremony_a.ptau"),
                ptau("ceremony_b.ptau")
            ),
        ),
    )?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let status = pool.api.get("/v1/status").await?;
    let agg = &status["aggregation"];
    assert_eq!(agg["enabled"], true, "{status}");
    assert_eq!(agg["insecure_srs"], false, "{status}");
    assert_eq!(agg["run"], 8, "{status}");
    let srs_id = agg["srs_id"].as_str().expect("an SRS id").to_owned();

    let _miner = MinerProcess::start(
        pool.stratum,
        "agg.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("miner.log"),
    )?;
    let id = pool.api.post("/v1/jobs", &chain_job(10)).await?["id"]
        .as_str()
        .expect("job id")
        .to_owned();
    completed(&pool.api, &id, Duration::from_secs(180)).await?;

    let result = job_result(&pool.api, &id).await?;
    assert_eq!(result.format, "zkpool-result/3");
    let circuit = result.circuit_id.clone();
    assert_eq!(
        result.verify_pinned(&circuit),
        Ok(10),
        "the proofs still check"
    );
    let parts: Vec<(u64, u64)> = result
        .aggregate
        .as_ref()
        .expect("a completed job's result carries its aggregate")
        .parts
        .iter()
        .map(|p| (p.first, p.count))
        .collect();
    assert_eq!(parts, vec![(0, 8), (8, 2)]);

    // The aggregate alone, as the client downloads it, checked by the real binary.
    let aggregate: Value = pool.api.get(&format!("/v1/jobs/{id}/aggregate")).await?;
    assert!(
        aggregate.get("entries").is_none(),
        "no Groth16 proofs in it"
    );
    let path = dir.path().join("aggregate.json");
    std::fs::write(&path, serde_json::to_string(&aggregate)?)?;
    let (ok, out) = verify_aggregate(&path, &["--circuit-id", &circuit, "--srs-id", &srs_id]);
    assert!(ok, "{out}");
    assert!(
        out.contains("OK: 10 statements checked by 2 aggregate proof(s)"),
        "{out}"
    );
    assert!(!out.contains("INSECURE"), "{out}");
    // The full result file checks the same way.
    let full = dir.path().join("result.json");
    std::fs::write(&full, serde_json::to_string(&result)?)?;
    let (ok, out) = verify_aggregate(&full, &["--circuit-id", &circuit, "--srs-id", &srs_id]);
    assert!(ok, "{out}");

    // Refused: a changed public input (a chain link), a changed byte of an
    // aggregate proof, a swapped part, another SRS pinned, no SRS named.
    let refused = |v: &Value, name: &str| -> anyhow::Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_string(v)?)?;
        let (ok, out) = verify_aggregate(&p, &["--circuit-id", &circuit, "--srs-id", &srs_id]);
        assert!(!ok, "{name} was accepted: {out}");
        Ok(out)
    };
    let mut v = aggregate.clone();
    v["public_inputs"][9][2] = Value::String("12345".into());
    assert!(refused(&v, "output.json")?.contains("INVALID: chain link broken"));
    let mut v = aggregate.clone();
    let proof = v["aggregate"]["parts"][1]["proof"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = format!(
        "{}{}",
        &proof[..proof.len() - 1],
        if proof.ends_with('0') { '1' } else { '0' }
    );
    v["aggregate"]["parts"][1]["proof"] = Value::String(flipped);
    assert!(refused(&v, "byte.json")?.contains("INVALID: aggregate: part 1"));
    let mut v = aggregate.clone();
    v["aggregate"]["parts"].as_array_mut().unwrap().swap(0, 1);
    assert!(refused(&v, "swapped.json")?.contains("INVALID"));
    let (ok, out) = verify_aggregate(
        &path,
        &["--circuit-id", &circuit, "--srs-id", &"ab".repeat(32)],
    );
    assert!(!ok && out.contains("not the expected"), "{out}");
    let (ok, out) = verify_aggregate(&path, &["--circuit-id", &circuit]);
    assert!(!ok && out.contains("--srs-id"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_does_not_aggregate_says_so_and_a_bad_srs_config_is_named() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    // One ceremony is not an SRS: serve refuses to start and names the key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        test_config(
            &dir.path().join("bad"),
            &format!("[aggregation]\nptau = [{:?}]\n", ptau("ceremony_a.ptau")),
        ),
    )?;
    let (ok, out) = cli("zkpool", "", &["serve", "--config", bad.to_str().unwrap()]);
    assert!(!ok && out.contains("aggregation.ptau"), "{out}");

    let cfg = dir.path().join("pool.toml");
    std::fs::write(
        &cfg,
        test_config(&dir.path().join("data"), "[aggregation]\nenabled = false\n"),
    )?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    assert_eq!(
        pool.api.get("/v1/status").await?["aggregation"]["enabled"],
        false
    );
    let _miner = MinerProcess::start(
        pool.stratum,
        "plain.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("miner.log"),
    )?;
    let id = pool.api.post("/v1/jobs", &chain_job(2)).await?["id"]
        .as_str()
        .expect("job id")
        .to_owned();
    completed(&pool.api, &id, Duration::from_secs(120)).await?;
    let result = job_result(&pool.api, &id).await?;
    assert!(result.aggregate.is_none());
    assert_eq!(result.verify_pinned(&result.circuit_id.clone()), Ok(2));
    let e = pool
        .api
        .get(&format!("/v1/jobs/{id}/aggregate"))
        .await
        .expect_err("no aggregate to serve")
        .to_string();
    assert!(
        e.contains("404") && e.contains("carries no aggregate"),
        "{e}"
    );
    Ok(())
}
