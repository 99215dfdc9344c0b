//! A circom circuit proven end to end through a real in-process pool and miner
//! (witness included) against the same miner's prover alone, in one run,
//! alternating, best of `ROUNDS`: the figure issue 17 asks to keep within 5 %.
//!
//! ```text
//! CIRCOM_DIR=/path/with/chain.r1cs,chain_js/chain.wasm,chain.zkey \
//!   [STATEMENTS=8] [ROUNDS=3] [PRECOMPUTE_MIB=1024] \
//!   cargo bench -p zkpool-tests --bench circom_e2e
//! ```
//! The circuit must take one input signal `x` (the Poseidon chains BENCHMARKS.md
//! uses do). Three timings per round, for the same statements:
//! - prove only: `prove_witness` on witnesses computed beforehand;
//! - witness + prove: the miner's prover alone, one statement after the other;
//! - through the pool: from the job's acceptance to `completed` (the pool
//!   evaluates every statement before it accepts the job: that is timed apart).
//!
//! Each is also measured in this process's CPU time (pool, miner and prover all
//! run in it), which the machine's other tenants do not inflate as they do wall
//! time; the time the hypervisor gave other machines (steal) is shown beside it.
//! Through the pool, the CPU is split by thread: the rig's (its `prover-*` and
//! `witness` threads), which a rig with the pool on another machine spends, and
//! the pool's (the pool and both ends of the network), and this bench's polling
//! of the job (its main thread).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use zk::{CircuitKeys, CircuitSpec, Statement};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let Ok(dir) = std::env::var("CIRCOM_DIR") else {
        println!("circom_e2e: set CIRCOM_DIR to a directory with chain.r1cs, chain_js/chain.wasm and chain.zkey (see BENCHMARKS.md)");
        return Ok(());
    };
    let statements = env("STATEMENTS", 8) as usize;
    let rounds = env("ROUNDS", 3) as usize;
    let precompute = env("PRECOMPUTE_MIB", 1024) << 20;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let prover = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(16 << 20)
        .build()?;

    let data = tempfile::tempdir()?;
    let mut config = pool::Config::from_toml(
        &zkpool_tests::test_config(&data.path().join("data"), ""),
        "bench",
    )?;
    config.scheduler.target_task_secs = 10.0;
    // A 2^18 circuit's upload (r1cs, wasm and zkey, base64) is about 350 MB.
    config.limits.circuit_upload_bytes = 1 << 30;
    config.http.max_body_bytes = 1 << 30;
    // The pool evaluates every statement at submission (in its interpreter):
    // at 2^16 a statement's calibrated bound is about 2e9 instructions, so
    // the default budget of 4e9 per job would allow two.
    config.limits.job_witness_fuel = u64::MAX / 2;
    let s = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let h = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let pool = pool::start(config, s, h).await?;
    let api = zkpool_tests::Api::new(&format!("http://{}", pool.http_addr));

    let b64 = |f: &str| -> anyhow::Result<String> {
        use base64::Engine as _;
        Ok(base64::engine::general_purpose::STANDARD.encode(std::fs::read(format!("{dir}/{f}"))?))
    };
    let t = Instant::now();
    let circuit = api
        .post(
            "/v1/circuits",
            &json!({"name": "bench", "r1cs": b64("chain.r1cs")?, "wasm": b64("chain_js/chain.wasm")?, "zkey": b64("chain.zkey")?, "sample": {"x": "1"}}),
        )
        .await?;
    println!("registered in {:.1} s", t.elapsed().as_secs_f64());
    let id = circuit["id"].as_str().unwrap().to_owned();

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
        cache_dir: data.path().join("cache"),
        status_interval: Duration::ZERO,
        max_backoff: Duration::from_secs(1),
        tls_ca: None,
        prover_cmd: None,
        precompute_mem: precompute,
        witness_engine: Default::default(),
    };
    let stats = Arc::new(miner::Stats::default());
    let m = tokio::spawn(miner::run(miner_cfg, stats.clone(), stop.clone()));
    // What the miner's monitor says of its witnesses: seconds the prover threads
    // waited for one, and tasks begun with theirs already under way.
    let witnessing = || {
        let s = stats
            .monitor
            .lock()
            .expect("the monitor lock")
            .summary(Instant::now(), std::time::SystemTime::now());
        (s.witness_wait_secs, s.tasks_witnessed_ahead)
    };

    // The bare side proves with the very key the miner downloads, prepared the
    // same way (its tables are the miner's cache file, once the miner wrote it).
    let record = api.get(&format!("/v1/circuits/{id}")).await?;
    let spec: CircuitSpec = serde_json::from_value(record["spec"].clone())?;
    let hash = record["proving_key_hash"].as_str().unwrap().to_owned();

    // Warm-up: the miner downloads the key, builds its tables, gets measured.
    let job = |from: u64, n: usize| json!({"circuit": id, "statements": (0..n as u64).map(|i| json!({"input": {"x": (from + i).to_string()}})).collect::<Vec<_>>()});
    let warm = api.post("/v1/jobs", &job(1_000_000, 2)).await?;
    wait(&api, warm["id"].as_str().unwrap()).await?;

    // From the miner's cache file, as the miner loaded it (witnesses compiled).
    let keys = CircuitKeys::from_pk_file(
        spec,
        &data.path().join("cache").join(format!("{hash}.pk")),
        &hash,
        Default::default(),
    )?;
    let prepared = prover
        .install(|| miner::tables::prepare(&keys, &hash, &data.path().join("cache"), precompute));
    println!("bare prover: {prepared:?}");

    let (mut best_prove, mut best_both, mut best_pool) = (f64::MAX, f64::MAX, f64::MAX);
    let (mut wall_ratios, mut cpu_ratios, mut rig_ratios) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let from = 1000 * round as u64;
        let st: Vec<Statement> = (0..statements as u64)
            .map(|i| {
                let input = json!({"x": (from + i).to_string()});
                let c = keys.circom.as_ref().expect("a circom key");
                let w = c.witness(&input)?;
                Ok(Statement {
                    public: c.public_signals(&w),
                    private: vec![],
                    input: Some(input),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let witnesses = st
            .iter()
            .map(|s| keys.witness(s))
            .collect::<Result<Vec<_>, _>>()?;
        let prove = measure(async {
            for w in &witnesses {
                prover.install(|| keys.prove_witness(w))?;
            }
            Ok(())
        })
        .await?;
        let both = measure(async {
            for s in &st {
                prover.install(|| keys.prove(s))?;
            }
            Ok(())
        })
        .await?;

        let t = Instant::now();
        let j = api.post("/v1/jobs", &job(from + 500, statements)).await?;
        let accepted = t.elapsed().as_secs_f64();
        let (waited_before, ahead_before) = witnessing();
        let through = measure(wait(&api, j["id"].as_str().unwrap())).await?;
        let (waited_after, ahead_after) = witnessing();
        let pct = |a: f64, b: f64| (a / b - 1.0) * 100.0;
        let rig = through.prover + through.witness;
        println!(
            "round {round}: prove only {:.3}s, witness + prove {:.3}s, through the pool {:.3}s ({:+.1}% on prove only; the job's {statements} statements evaluated at submission in {accepted:.3}s)\n  CPU: prove only {:.2}s, witness + prove {:.2}s ({:+.1}%), through the pool {:.2}s ({:+.1}%): the rig's {:.2}s ({:+.1}%: prover {:.2}s, witness {:.2}s), the pool's and the network's {:.2}s, this bench's polling {:.2}s; steal {:.2}s / {:.2}s / {:.2}s",
            prove.wall, both.wall, through.wall,
            pct(through.wall, prove.wall),
            prove.cpu, both.cpu, pct(both.cpu, prove.cpu),
            through.cpu, pct(through.cpu, prove.cpu),
            rig, pct(rig, prove.cpu), through.prover, through.witness,
            through.cpu - rig - through.main,
            through.main,
            prove.steal, both.steal, through.steal,
        );
        println!(
            "  the miner's prover waited {:.3}s for witnesses; {} task(s) began with their witnesses under way",
            waited_after - waited_before,
            ahead_after - ahead_before
        );
        best_prove = best_prove.min(prove.wall);
        best_both = best_both.min(both.wall);
        best_pool = best_pool.min(through.wall);
        wall_ratios.push(through.wall / prove.wall);
        cpu_ratios.push(through.cpu / prove.cpu);
        rig_ratios.push(rig / prove.cpu);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let m = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        (m - 1.0) * 100.0
    };
    println!(
        "median of the rounds, through the pool on prove only: wall {:+.1}%, CPU {:+.1}%, the rig's CPU {:+.1}%",
        median(&mut wall_ratios),
        median(&mut cpu_ratios),
        median(&mut rig_ratios)
    );
    println!(
        "{} constraints x {statements} proofs, {threads} prover threads, tables budget {} MiB, best of {rounds}:\n  prove only:        {:.3} s/proof\n  witness + prove:   {:.3} s/proof ({:+.1}%)\n  through the pool:  {:.3} s/proof ({:+.1}%)",
        spec.constraints(),
        precompute >> 20,
        best_prove / statements as f64,
        best_both / statements as f64,
        (best_both / best_prove - 1.0) * 100.0,
        best_pool / statements as f64,
        (best_pool / best_prove - 1.0) * 100.0,
    );
    assert_eq!(keys.engine_failures(), 0);
    stop.cancel();
    let _ = m.await;
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// This process's CPU seconds: all of it, and each live thread's (by thread
/// id, with its name).
#[derive(Clone, Default)]
struct Cpu {
    all: f64,
    threads: std::collections::HashMap<String, (String, f64)>,
}

fn cpu_now() -> Cpu {
    let mut cpu = Cpu {
        all: zkpool_tests::stat_cpu_secs(
            &std::fs::read_to_string("/proc/self/stat").unwrap_or_default(),
        ),
        ..Cpu::default()
    };
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("", |(n, _)| n)
            .to_owned();
        let tid = task.file_name().to_string_lossy().into_owned();
        cpu.threads
            .insert(tid, (name, zkpool_tests::stat_cpu_secs(&stat)));
    }
    cpu
}

/// Seconds of CPU the machine lost to other virtual machines (steal), summed
/// over its CPUs, from /proc/stat.
fn steal_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or("");
    cpu.split_whitespace()
        .nth(8)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / 100.0
}

/// What `f` took: wall seconds, and CPU seconds of the whole process, of the
/// miner's prover threads, of its witness threads (ended ones), of this bench's
/// main thread, and steal.
struct Took {
    wall: f64,
    cpu: f64,
    prover: f64,
    witness: f64,
    main: f64,
    steal: f64,
}

async fn measure<F: std::future::Future<Output = anyhow::Result<()>>>(
    f: F,
) -> anyhow::Result<Took> {
    let (t, c, s) = (Instant::now(), cpu_now(), steal_secs());
    f.await?;
    let (wall, d, steal) = (t.elapsed().as_secs_f64(), cpu_now(), steal_secs() - s);
    let main = std::process::id().to_string();
    let (mut prover, mut main_cpu, mut alive) = (0.0, 0.0, 0.0);
    for (tid, (name, secs)) in &d.threads {
        // Each thread alive at the end, from the start (or its birth).
        let grew = secs - c.threads.get(tid).map_or(0.0, |(_, s)| *s);
        alive += grew;
        if name.starts_with("prover-") {
            prover += grew;
        }
        if *tid == main {
            main_cpu += grew;
        }
    }
    Ok(Took {
        wall,
        cpu: d.all - c.all,
        prover,
        main: main_cpu,
        // Threads that ended in between (the miner's `witness` threads, one
        // per task; an idle thread of tokio's blocking pool that retires
        // brings only what it used in between, close to nothing).
        witness: ((d.all - c.all) - alive).max(0.0),
        steal,
    })
}

/// Polls every 20 ms, so polling adds little to the measured time.
async fn wait(api: &zkpool_tests::Api, id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    while api.get(&format!("/v1/jobs/{id}")).await?["state"] != "completed" {
        anyhow::ensure!(Instant::now() < deadline, "job {id} did not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
