//! What the pool/miner path costs on top of proving: the same chain statements proven
//! (1) by a bare loop over `CircuitKeys::prove` (with the miner's prover and tables) and
//! (2) through a real in-process pool
//! and miner (notify, prove, submit, verify, durable credit, result assembly), in one
//! run, alternating, best of `ROUNDS`. Run: `cargo bench -p zkpool-tests --bench miner_overhead`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use zk::{circuits::DEFAULT_CHAIN_STEPS, CircuitKeys, CircuitSpec, Fr};

const SEGMENTS: u64 = 24;
const ROUNDS: usize = 4;
/// The miner's precomputation budget (its default); the bare side gets the
/// same tables.
const PRECOMPUTE_MIB: u64 = 1024;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let spec = CircuitSpec::Chain {
        steps: DEFAULT_CHAIN_STEPS,
    };
    let constraints = spec.constraints();
    let prover = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(16 << 20)
        .build()?;

    let dir2 = tempfile::tempdir()?;
    let mut config = pool::Config::from_toml(
        &zkpool_tests::test_config(&dir2.path().join("data"), ""),
        "bench",
    )?;
    // The harness config uses short chains; this bench uses the default circuit.
    config.circuits.chain_steps = DEFAULT_CHAIN_STEPS;
    config.scheduler.target_task_secs = 10.0;
    let s = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let h = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let pool = pool::start(config, s, h).await?;
    let api = zkpool_tests::Api::new(&format!("http://{}", pool.http_addr));
    let stop = CancellationToken::new();
    let miner_cfg = miner::MinerConfig {
        pools: vec![miner::PoolUrl {
            host: "127.0.0.1".into(),
            port: pool.stratum_addr.port(),
            tls: false,
        }],
        worker: "bench.rig1".into(),
        password: None,
        threads,
        cache_dir: dir2.path().join("cache"),
        status_interval: Duration::ZERO,
        max_backoff: Duration::from_secs(1),
        tls_ca: None,
        prover_cmd: None,
        precompute_mem: PRECOMPUTE_MIB << 20,
        witness_engine: Default::default(),
    };
    let m = tokio::spawn(miner::run(
        miner_cfg,
        Arc::new(miner::Stats::default()),
        stop.clone(),
    ));

    // The bare loop proves with the very key the miner downloads, decoded the same way.
    let circuit = api.get("/v1/circuits/chain").await?;
    let key_url = format!(
        "http://{}/v1/circuits/{}/proving-key",
        pool.http_addr,
        circuit["id"].as_str().unwrap()
    );
    let key_bytes = reqwest::get(&key_url).await?.bytes().await?;
    let keys = CircuitKeys::from_pk_bytes(
        spec,
        &key_bytes,
        circuit["proving_key_hash"].as_str().unwrap(),
    )?;

    // Warm-up: the miner downloads and loads the key, and is measured by the scheduler.
    let warm = api
        .post(
            "/v1/jobs",
            &json!({"circuit": "chain", "chain": {"seed": "9", "segments": 4}}),
        )
        .await?;
    wait(&api, warm["id"].as_str().unwrap()).await?;
    // The same prover as the miner's: its tables, from the file the miner wrote.
    let prepared = prover.install(|| {
        miner::tables::prepare(
            &keys,
            circuit["proving_key_hash"].as_str().unwrap(),
            &dir2.path().join("cache"),
            PRECOMPUTE_MIB << 20,
        )
    });
    println!("bare prover: {prepared:?}");

    let (mut best_bare, mut best_pool) = (f64::MAX, f64::MAX);
    for round in 0..ROUNDS {
        let seed = Fr::from(100 + round as u64);
        let (statements, _) = CircuitSpec::chain_statements(DEFAULT_CHAIN_STEPS, seed, SEGMENTS);
        let t = Instant::now();
        for s in &statements {
            prover.install(|| keys.prove(s))?;
        }
        let bare = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let job = api.post("/v1/jobs", &json!({"circuit": "chain", "chain": {"seed": (200 + round).to_string(), "segments": SEGMENTS}})).await?;
        wait(&api, job["id"].as_str().unwrap()).await?;
        let through_pool = t.elapsed().as_secs_f64();
        println!(
            "round {round}: bare {bare:.3}s, through the pool {through_pool:.3}s ({:+.1}%)",
            (through_pool / bare - 1.0) * 100.0
        );
        best_bare = best_bare.min(bare);
        best_pool = best_pool.min(through_pool);
    }
    let work = (SEGMENTS * constraints) as f64;
    println!(
        "chain circuit, {constraints} constraints x {SEGMENTS} proofs, {threads} prover threads, best of {ROUNDS}:\n  bare prover:      {:.0} constraints/s ({:.3}s)\n  pool + miner:     {:.0} constraints/s ({:.3}s)\n  path overhead:    {:.1}%",
        work / best_bare,
        best_bare,
        work / best_pool,
        best_pool,
        (best_pool / best_bare - 1.0) * 100.0
    );
    stop.cancel();
    let _ = m.await;
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Polls every 20 ms, so polling adds little to the measured time.
async fn wait(api: &zkpool_tests::Api, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while api.get(&format!("/v1/jobs/{id}")).await?["state"] != "completed" {
        anyhow::ensure!(Instant::now() < deadline, "job {id} did not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
