//! `zkpool-bench`: the load harness. Simulated miners on loopback speak the real
//! protocol to a real `zkpool serve` process and submit pre-made proofs (valid,
//! and a chosen share of invalid ones) without proving.
//!
//! Phase 1 (sessions): N sessions connect and authorize and stay idle; the pool's
//! RSS per session is measured. Notify latency (task ready -> miner has it,
//! p50/p99) is then measured three ways: a burst (a job with one statement per
//! session, all ready at once, with the pool's and the harness's CPU during it);
//! steady load (50 jobs of N/100 statements, one every 50 ms); and the burst's
//! floor on this machine (the same readers fed by a bare writer process on plain
//! loopback sockets, no pool).
//! Phase 2 (throughput): M sessions submit for S seconds on a job of distinct
//! statements, each proven ahead (`--proofs`, kept under `--cache` with the
//! set-up pool data directory every pool starts from, so the first run proves for
//! minutes and later ones start at once); verified proofs/s, submit → reply
//! latency and the pool's CPU are measured. With `--baseline` phase 2 runs again
//! on a pool that verifies proof by proof (`verifier.batch = false`), and the
//! ratio is reported.
//!
//!
//! With `--storage-url postgres://USER@HOST:PORT/DB` (a role that may create
//! databases): phase 2 runs `--rounds` times on sled and on PostgreSQL,
//! alternating, each pool on a fresh database holding the template's circuits,
//! and reports the ratio of the medians; and phase 1 becomes the cluster's
//! notify latency: its sessions on one pool process, its jobs posted to another
//! on the same database (how long a job posted on A takes to reach a miner on B).
//!
//! It stops by itself: bounded in sessions, seconds and statements. It raises its
//! open-file limit, as `zkpool serve` does.
//!
//! `cargo build --release --bins && ./target/release/zkpool-bench --sessions 10000 --miners 64 --seconds 20 --baseline`

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zkpool_tests::{test_config_with, PoolProcess};

#[derive(Parser, Debug)]
#[command(about = "Load harness: simulated miners against a real zkpool serve")]
struct Args {
    /// Idle sessions to hold in phase 1 (0 skips the phase).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Submitting sessions in phase 2 (0 skips the phase).
    #[arg(long, default_value_t = 64)]
    miners: usize,
    /// Seconds of submitting in phase 2.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Share of submits that carry an invalid proof (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    invalid: f64,
    /// Run phase 2 again with proof-by-proof verification and report the ratio.
    #[arg(long)]
    baseline: bool,
    /// Phase 3: this share of the submitting sessions misbehave (every proof they
    /// send is invalid; when banned they reconnect under a new name), each from an
    /// address of its own (127.0.0.2, ...), against a pool with the default ban
    /// policy (per worker and per address); the honest throughput is reported as a
    /// ratio of a clean run in the same invocation.
    #[arg(long, default_value_t = 0.0)]
    misbehaving: f64,
    /// Distinct pre-proven statements in phase 2's job: more than the window
    /// verifies (the report warns when the job ran out).
    #[arg(long, default_value_t = 80_000)]
    proofs: usize,
    /// Where the set-up template pool and its proofs are kept between runs.
    #[arg(long, default_value = "target/zkpool-bench-cache")]
    cache: PathBuf,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A PostgreSQL server (a role that may create databases): phase 2 on sled
    /// and on PostgreSQL, alternating; phase 1 across two pool processes.
    #[arg(long)]
    storage_url: Option<String>,
    /// Rounds of phase 2 on each storage with `--storage-url`.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Internal: run as the bare socket writer of phase 1's floor measurement.
    #[arg(long, hide = true)]
    bare_writer: Option<usize>,
}

/// Proofs as zkminer submits them: uncompressed.
fn uncompressed(p: &zk::ProofBytes) -> String {
    p.to_uncompressed().expect("a fresh proof decodes").to_hex()
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

/// The process's user + system CPU seconds.
fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

/// This process's user + system CPU seconds.
fn self_cpu_secs() -> anyhow::Result<f64> {
    cpu_secs(std::process::id())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The `[bans]` of a pool measured for throughput: nothing the harness sends
/// bans anyone (its invalid proofs are part of what is measured).
const NO_BANS: &str = "[bans]\ninvalid_threshold = 1000000000\nper_ip = false\n";

/// The set-up data directory every pool starts from (its keys fit the cached proofs).
static TEMPLATE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn start_pool(dir: &Path, batch: bool, max_sessions: usize) -> anyhow::Result<PoolProcess> {
    start_pool_with(dir, batch, max_sessions, NO_BANS)
}

/// A pool with the default ban policy: 5 invalid submits in 10 minutes ban the
/// worker and its address.
fn start_defended_pool(dir: &Path, max_sessions: usize) -> anyhow::Result<PoolProcess> {
    start_pool_with(dir, true, max_sessions, "")
}

fn start_pool_with(
    dir: &Path,
    batch: bool,
    max_sessions: usize,
    bans: &str,
) -> anyhow::Result<PoolProcess> {
    start_pool_on(dir, batch, max_sessions, bans, None)
}

/// A pool on PostgreSQL database `url` (see [`postgres_database`]), or on sled.
fn start_pool_on(
    dir: &Path,
    batch: bool,
    max_sessions: usize,
    bans: &str,
    url: Option<&str>,
) -> anyhow::Result<PoolProcess> {
    std::fs::create_dir_all(dir)?;
    if let Some(t) = TEMPLATE.get() {
        copy_dir(&t.join("data"), &dir.join("data"))?;
    }
    let cfg = dir.join("pool.toml");
    let config = test_config_with(
        &dir.join("data"),
        &format!(
            "max_sessions = {}\nmax_sessions_per_ip = {}\nidle_timeout_secs = 600\nhandshake_timeout_secs = 60",
            max_sessions + 100,
            max_sessions + 100
        ),
        "max_body_bytes = 536870912\nmax_job_statements = 2000000",
        "max_statements_per_task = 64",
        &format!("[verifier]\nbatch = {batch}\n{bans}"),
    );
    let config = match url {
        Some(url) => config.replacen("[storage]\n", &format!("[storage]\nurl = \"{url}\"\n"), 1),
        None => config,
    };
    std::fs::write(&cfg, config)?;
    PoolProcess::start(&cfg, None, &dir.join("pool.log"))
}

/// A new database on the PostgreSQL server at `server` (its URL's database is
/// where `CREATE DATABASE` runs), its schema applied and the template pool's
/// circuits stored in it, so a pool on it has the keys the cached proofs were
/// made with. Returns its URL.
async fn postgres_database(server: &str, label: &str) -> anyhow::Result<String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "bench_{label}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    );
    let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .with_context(|| format!("CREATE DATABASE on {server}"))?;
    let url = zkpool_tests::pg::with_database(server, &name);
    let template = TEMPLATE
        .get()
        .context("the template pool is set up first")?;
    let circuits = {
        let sled = pool::store::SledStore::open(&template.join("data").join("db"))?;
        pool::store::Store::circuits(&sled).await?
    };
    let pg = pool::store::PgStore::open(&url).await?;
    for c in &circuits {
        pool::store::Store::put_circuit(&pg, c).await?;
    }
    Ok(url)
}

/// One raw session: subscribe and authorize; returns the line reader and writer.
async fn session(
    addr: std::net::SocketAddr,
    worker: &str,
) -> anyhow::Result<(
    tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    tokio::net::tcp::OwnedWriteHalf,
)> {
    session_from(addr, worker, None).await
}

/// [`session`] from a chosen loopback source address.
async fn session_from(
    addr: std::net::SocketAddr,
    worker: &str,
    from: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<(
    tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    tokio::net::tcp::OwnedWriteHalf,
)> {
    let s = match from {
        Some(ip) => {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind((ip, 0).into())?;
            sock.connect(addr).await?
        }
        None => tokio::net::TcpStream::connect(addr).await?,
    };
    s.set_nodelay(true)?;
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mining.subscribe\",\"params\":{\"agent\":\"zkpool-bench\",\"protocol\":\"zkpool/1\"}}\n").await?;
    w.write_all(format!("{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"mining.authorize\",\"params\":{{\"worker\":\"{worker}\"}}}}\n").as_bytes()).await?;
    let mut answered = 0;
    while answered < 2 {
        let line = lines
            .next_line()
            .await?
            .context("closed during handshake")?;
        let v: Value = serde_json::from_str(&line)?;
        if v.get("id").is_some() && v.get("method").is_none() {
            if v.get("error").is_some() {
                bail!("handshake refused: {line}");
            }
            answered += 1;
        }
    }
    Ok((lines, w))
}

/// Pre-made proofs: one valid proof for each of `statements` (distinct statements:
/// the pool refuses a job that repeats one, and credits a statement once per
/// pool), and one proof of another statement (well-formed, fails the pairing check).
struct Proofs {
    statements: Vec<zk::Statement>,
    valid: Vec<String>,
    invalid: String,
}

/// The statement of seed `i`: `preimage` of `i`. Seeds below 2^32 are the cached
/// proven statements; phase 1's unproven statements use seeds above that.
fn statement(i: u64) -> zk::Statement {
    zk::CircuitSpec::preimage_statement(zk::Fr::from(i))
}

/// Statements nobody will prove (phase 1 measures notifies only): `n` distinct
/// from `from`.
fn unproven(from: u64, n: usize) -> Vec<zk::Statement> {
    (0..n as u64)
        .map(|i| statement((1 << 32) + from + i))
        .collect()
}

/// Copies a directory tree (a pool's data directory: the sled store and the keys).
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}

/// The pre-proven statements, made once and kept under `cache`: a pool data
/// directory set up once (`cache/template`, copied into every pool this harness
/// starts, so every pool has the same keys) and `cache/proofs.txt` (the key hash,
/// then one uncompressed proof per line, of seeds 0, 1, ...). Proving is about
/// 10 ms per proof and core, so the first run with a large `n` takes minutes.
async fn cached_proofs(cache: &Path, n: usize) -> anyhow::Result<Proofs> {
    let template = cache.join("template");
    let file = cache.join("proofs.txt");
    if !template.join("data").exists() {
        let _ = std::fs::remove_file(&file);
        println!("setting up the template pool in {}", template.display());
        let pool = start_pool_with(&template, true, 10, "")?;
        drop(pool);
    }
    let _ = TEMPLATE.set(template);
    let mut valid: Vec<String> = vec![];
    let mut stored_hash = String::new();
    if let Ok(text) = std::fs::read_to_string(&file) {
        let mut lines = text.lines();
        stored_hash = lines.next().unwrap_or_default().to_owned();
        valid = lines.filter(|l| !l.is_empty()).map(str::to_owned).collect();
    }
    // The key: from a pool started on a copy of the template.
    let scratch = tempfile::tempdir()?;
    let pool = start_pool(&scratch.path().join("p"), true, 10)?;
    let c = pool.api.get("/v1/circuits/preimage").await?;
    let hash = c["proving_key_hash"]
        .as_str()
        .context("key hash")?
        .to_owned();
    if hash != stored_hash {
        valid.clear();
    }
    let url = format!("{}/v1/circuits/preimage/proving-key", pool.api.base());
    let bytes = reqwest::get(&url).await?.bytes().await?;
    drop(pool);
    let have = valid.len();
    let keys = Arc::new(zk::CircuitKeys::from_pk_bytes(
        zk::CircuitSpec::Preimage,
        &bytes,
        &hash,
    )?);
    if have < n {
        println!(
            "proving {} statements for the cache ({} cached)...",
            n - have,
            have
        );
        let started = Instant::now();
        if have == 0 {
            std::fs::write(&file, format!("{hash}\n"))?;
        }
        let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
        // In chunks appended as they are made, so a run stopped half-way keeps
        // what it proved.
        let mut next = have;
        while next < n {
            let end = (next + 1_000).min(n);
            let made: Vec<Vec<String>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|t| {
                        let keys = keys.clone();
                        s.spawn(move || {
                            (next + t..end)
                                .step_by(threads)
                                .map(|i| keys.prove(&statement(i as u64)).map(|p| uncompressed(&p)))
                                .collect::<Result<Vec<_>, _>>()
                        })
                    })
                    .collect();
                hs.into_iter()
                    .map(|h| h.join().expect("prover thread"))
                    .collect::<Result<_, _>>()
            })?;
            let mut text = String::new();
            for i in 0..end - next {
                let p = &made[i % threads][i / threads];
                text.push_str(p);
                text.push('\n');
                valid.push(p.clone());
            }
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&file)?
                .write_all(text.as_bytes())?;
            next = end;
            println!(
                "  {next} of {n} cached ({:.1} proofs/s)",
                (next - have) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    valid.truncate(n);
    let invalid = uncompressed(&keys.prove(&statement(u64::MAX))?);
    Ok(Proofs {
        statements: (0..n as u64).map(statement).collect(),
        valid,
        invalid,
    })
}

async fn post_job(api: &zkpool_tests::Api, statements: &[zk::Statement]) -> anyhow::Result<String> {
    let job = api
        .post(
            "/v1/jobs",
            &json!({"circuit": "preimage", "statements": statements, "deadline_secs": 3600}),
        )
        .await?;
    Ok(job["id"].as_str().context("job id")?.to_owned())
}

/// A notify as a reader saw it: when, and for which job.
type Seen = (Instant, String);

/// Reads every line of a session until it closes; each `mining.notify` is
/// reported with its arrival time and job id.
fn notify_reader(
    mut lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    w: tokio::net::tcp::OwnedWriteHalf,
    out: tokio::sync::mpsc::Sender<Seen>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Holding the write half keeps the session open (a closing session would
        // hand its task to another, which is not what is measured).
        let _w = w;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"mining.notify\"") {
                let at = Instant::now();
                let job = line
                    .split_once("\"job\":\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(id, _)| id.to_owned())
                    .unwrap_or_default();
                if out.send((at, job)).await.is_err() {
                    return;
                }
            }
        }
    })
}

/// Arrival times of the first `n` notifies (of `job`, when given), waiting at most
/// a minute; `at_first` runs when the first one arrives.
async fn collect_notifies(
    rx: &mut tokio::sync::mpsc::Receiver<Seen>,
    n: usize,
    job: Option<&str>,
    mut at_first: impl FnMut() -> Option<()>,
) -> Vec<Instant> {
    let mut arrived = Vec::with_capacity(n);
    let give_up = Instant::now() + Duration::from_secs(60);
    while arrived.len() < n {
        match tokio::time::timeout_at(give_up.into(), rx.recv()).await {
            Ok(Some((at, j))) if job.is_none_or(|want| want == j) => {
                if arrived.is_empty() {
                    at_first();
                }
                arrived.push(at);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    arrived
}

/// Milliseconds from `from` to each time, with p50 / p99 / max.
fn spread(times: &[Instant], from: Instant) -> (f64, f64, f64) {
    let mut v: Vec<f64> = times
        .iter()
        .map(|t| t.saturating_duration_since(from).as_secs_f64() * 1000.0)
        .collect();
    (pct(&mut v, 0.5), pct(&mut v, 0.99), pct(&mut v, 1.0))
}

/// Phase 1: idle sessions, RSS per session, then notify latency two ways: a burst
/// of one task per session at once, and a steady stream of small jobs at a rate
/// far above what the rigs free slots at; last, the same burst written by a bare
/// writer on plain loopback sockets (the floor for the machine and this harness).
async fn phase_sessions(
    n: usize,
    pool: &PoolProcess,
    post_to: &zkpool_tests::Api,
) -> anyhow::Result<Value> {
    let pid = pool.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = rss_kib(pid)?;
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (sem, addr) = (sem.clone(), pool.stratum);
        handles.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await?;
            session(addr, &format!("idle{i}.r")).await
        }));
    }
    let mut conns = Vec::with_capacity(n);
    for h in handles {
        conns.push(h.await??);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = rss_kib(pid)?;
    let sessions_held = pool.api.get("/v1/status").await?["sessions"]
        .as_u64()
        .unwrap_or(0);
    // Room for every notify of the phase (one per session in the burst, as many
    // again in the steady phase), so a reader never waits on the collector.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Seen>(2 * n + 64);
    let readers: Vec<_> = conns
        .into_iter()
        .map(|(lines, w)| notify_reader(lines, w, tx.clone()))
        .collect();
    drop(tx);
    // ZKPOOL_BENCH_PAUSE=S waits S seconds before the burst (time to attach a
    // profiler to the pool: `perf record -g -p PID`).
    if let Some(s) = std::env::var("ZKPOOL_BENCH_PAUSE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("pool pid {pid}: the burst starts in {s} s");
        tokio::time::sleep(Duration::from_secs(s)).await;
    }

    // The burst: one statement per session, all ready at once. CPU of the pool
    // and of this harness is sampled at the first notify and at the last.
    let before_post = Instant::now();
    let burst_job = post_job(post_to, &unproven(0, n)).await?;
    let post_ms = before_post.elapsed().as_secs_f64() * 1000.0;
    let mut cpu_first = None;
    let arrived = collect_notifies(&mut rx, n, Some(&burst_job), || {
        cpu_first = Some((cpu_secs(pid).ok()?, self_cpu_secs().ok()?));
        Some(())
    })
    .await;
    let (pool_burst_cpu, harness_burst_cpu) = match cpu_first {
        Some((p0, h0)) => (cpu_secs(pid)? - p0, self_cpu_secs()? - h0),
        None => (f64::NAN, f64::NAN),
    };
    let first = arrived.iter().min().copied().unwrap_or(before_post);
    let (post_p50, post_p99, _) = spread(&arrived, before_post);
    let (burst_p50, burst_p99, burst_max) = spread(&arrived, first);

    // Steady load: every session still has a free slot. Jobs of `per_job`
    // statements every `every`, for `jobs` jobs: 2,000 tasks/s, while 10,000 rigs
    // on 30-second tasks free about 333 slots/s. Latency of each task from its
    // job's first notify, and from just before its job was posted.
    let (per_job, jobs, every) = ((n / 100).max(1), 50usize, Duration::from_millis(50));
    let mut posted: std::collections::HashMap<String, Instant> = Default::default();
    let mut seen: std::collections::HashMap<String, Vec<Instant>> = Default::default();
    let mut tick = tokio::time::interval(every);
    let mut sent = 0;
    let steady_give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let got: usize = seen.values().map(Vec::len).sum();
        if sent == jobs && got >= jobs * per_job {
            break;
        }
        if Instant::now() > steady_give_up {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if sent < jobs => {
                let t = Instant::now();
                let id = post_job(post_to, &unproven(((1 + sent) * per_job) as u64 * 1_000, per_job)).await?;
                posted.insert(id, t);
                sent += 1;
            }
            Some((at, job)) = rx.recv() => seen.entry(job).or_default().push(at),
        }
    }
    let (mut from_first, mut from_post) = (vec![], vec![]);
    for (job, times) in &seen {
        let Some(&t0) = posted.get(job) else { continue };
        let f = times.iter().min().copied().unwrap_or(t0);
        from_first.extend(
            times
                .iter()
                .map(|t| t.duration_since(f).as_secs_f64() * 1000.0),
        );
        from_post.extend(
            times
                .iter()
                .map(|t| t.saturating_duration_since(t0).as_secs_f64() * 1000.0),
        );
    }
    let steady_notified = from_first.len();
    // Close every session before the floor's connections are opened (the
    // open-file limit holds one set, not two).
    for r in readers {
        r.abort();
        let _ = r.await;
    }
    let floor = raw_socket_floor(n).await?;
    Ok(json!({
        "sessions_requested": n,
        "sessions_held": sessions_held,
        "connect_secs": connect_secs,
        "pool_rss_idle_kib": rss0,
        "pool_rss_with_sessions_kib": rss1,
        "rss_per_session_kib": (rss1.saturating_sub(rss0)) as f64 / n.max(1) as f64,
        "burst": {
            "post_job_ms": post_ms,
            "notified": arrived.len(),
            "from_post_ms_p50": post_p50,
            "from_post_ms_p99": post_p99,
            "from_first_notify_ms_p50": burst_p50,
            "from_first_notify_ms_p99": burst_p99,
            "from_first_notify_ms_max": burst_max,
            "cpu_ms_pool": pool_burst_cpu * 1000.0,
            "cpu_ms_harness": harness_burst_cpu * 1000.0,
        },
        "bare_sockets_burst": floor,
        "steady": {
            "jobs": jobs,
            "statements_per_job": per_job,
            "tasks_per_s": per_job as f64 / every.as_secs_f64(),
            "notified": steady_notified,
            "from_first_notify_ms_p50": pct(&mut from_first.clone(), 0.5),
            "from_first_notify_ms_p99": pct(&mut from_first, 0.99),
            "from_post_ms_p50": pct(&mut from_post.clone(), 0.5),
            "from_post_ms_p99": pct(&mut from_post, 0.99),
        },
    }))
}

/// A `mining.notify` line of the pool's size: one preimage statement, 64-hex ids.
fn bare_notify_line() -> String {
    let h = "ab".repeat(32);
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"mining.notify\",\"params\":{{\"task\":\"{h}\",\"job\":\"bare\",\"circuit\":\"{h}\",\"spec\":{{\"kind\":\"preimage\"}},\"key\":{{\"hash\":\"{h}\",\"url\":\"http://127.0.0.1:8080/v1/circuits/{h}/proving-key\",\"size\":123456}},\"statements\":[{{\"index\":0,\"public\":[\"{d}\"],\"private\":[\"7\"]}}],\"lease_secs\":30,\"work_per_proof\":214}}}}\n",
        d = "1".repeat(77)
    )
}

/// `--bare-writer N`, run as a child process in place of a pool: accepts N loopback
/// connections, prints its port and then "ready", and on a line on stdin writes one
/// notify line to each of them from two tasks (one per core), nothing else.
async fn bare_writer(n: usize) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let mut socks = Vec::with_capacity(n);
    while socks.len() < n {
        let (s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        socks.push(s);
    }
    println!("ready");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    stdin.next_line().await?;
    let line = Arc::new(bare_notify_line());
    let mut halves: Vec<Vec<tokio::net::TcpStream>> = vec![vec![], vec![]];
    for (i, s) in socks.into_iter().enumerate() {
        halves[i % 2].push(s);
    }
    let writers: Vec<_> = halves
        .into_iter()
        .map(|mut half| {
            let line = line.clone();
            tokio::spawn(async move {
                for s in &mut half {
                    s.write_all(line.as_bytes()).await?;
                }
                Ok::<_, std::io::Error>(half)
            })
        })
        .collect();
    let mut keep = vec![];
    for w in writers {
        keep.push(w.await??);
    }
    // Hold the connections until the harness is done reading.
    stdin.next_line().await?;
    Ok(())
}

/// The floor under the burst on this machine: the same `n` readers, connected
/// to a [`bare_writer`] process instead of a pool.
async fn raw_socket_floor(n: usize) -> anyhow::Result<Value> {
    use tokio::process::Command;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--bare-writer", &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let mut stdin = child.stdin.take().context("stdin")?;
    let port: u16 = out
        .next_line()
        .await?
        .context("bare writer: no port")?
        .parse()?;
    // One notify per reader.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Seen>(n + 64);
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let _p = sem.clone().acquire_owned().await?;
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        readers.push(notify_reader(BufReader::new(r).lines(), w, tx.clone()));
    }
    drop(tx);
    anyhow::ensure!(
        out.next_line().await?.as_deref() == Some("ready"),
        "bare writer did not accept every connection"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stdin.write_all(b"go\n").await?;
    let arrived = collect_notifies(&mut rx, n, None, || Some(())).await;
    let _ = stdin.write_all(b"done\n").await;
    for r in readers {
        r.abort();
        let _ = r.await;
    }
    let _ = child.wait().await;
    let first = arrived.iter().min().copied().unwrap_or_else(Instant::now);
    let (p50, p99, max) = spread(&arrived, first);
    Ok(json!({
        "line_bytes": bare_notify_line().len(),
        "notified": arrived.len(),
        "from_first_notify_ms_p50": p50,
        "from_first_notify_ms_p99": p99,
        "from_first_notify_ms_max": max,
    }))
}

/// Phase 3's misbehaving sessions: from `from`, every proof invalid; when closed or
/// refused, reconnect under a new worker name until `stop`. Returns (submits
/// rejected, connections refused at the handshake).
async fn misbehave(
    addr: std::net::SocketAddr,
    from: std::net::Ipv4Addr,
    i: usize,
    invalid: String,
    stop: Instant,
) -> (u64, u64) {
    let (mut rejected, mut refused) = (0u64, 0u64);
    let mut name = 0u64;
    while Instant::now() < stop {
        name += 1;
        let Ok((mut lines, mut w)) =
            session_from(addr, &format!("bad{i}x{name}.r"), Some(from)).await
        else {
            refused += 1;
            // A banned address is refused at once; do not spin on it.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut next_id = 100u64;
        loop {
            let line = match tokio::time::timeout_at(stop.into(), lines.next_line()).await {
                Ok(Ok(Some(l))) => l,
                _ => break,
            };
            let Ok(v) = serde_json::from_str::<Value>(&line) else {
                break;
            };
            if v["method"] == "mining.notify" {
                let p = &v["params"];
                let list: Vec<Value> = p["statements"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| json!({"index": s["index"], "proof": invalid}))
                            .collect()
                    })
                    .unwrap_or_default();
                next_id += 1;
                let msg = json!({"jsonrpc":"2.0","id":next_id,"method":"mining.submit","params":{"task":p["task"],"proofs":list}});
                if w.write_all((msg.to_string() + "\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            } else if v.get("error").is_some() && v.get("id").is_some() {
                rejected += 1;
            }
        }
    }
    (rejected, refused)
}

/// Phase 2: submitting sessions for `secs`.
async fn phase_throughput(
    miners: usize,
    secs: u64,
    invalid: f64,
    proofs: Arc<Proofs>,
    pool: &PoolProcess,
) -> anyhow::Result<Value> {
    phase_throughput_with(miners, 0, secs, invalid, proofs, pool).await
}

/// Phase 2 with `bad` misbehaving sessions beside the `miners` honest ones.
async fn phase_throughput_with(
    miners: usize,
    bad: usize,
    secs: u64,
    invalid: f64,
    proofs: Arc<Proofs>,
    pool: &PoolProcess,
) -> anyhow::Result<Value> {
    let pid = pool.child.id();
    // Every cached statement: enough that the job outlasts the window (the
    // report says so when it did not: `job_exhausted`).
    let job = post_job(&pool.api, &proofs.statements).await?;
    let accepted = Arc::new(AtomicU64::new(0));
    let shares = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let lat: Arc<Mutex<Vec<f64>>> = Arc::default();
    let stop = Instant::now() + Duration::from_secs(secs) + Duration::from_secs(2);
    let window_start = Instant::now() + Duration::from_secs(2);
    let cpu0 = Arc::new(Mutex::new(None::<(f64, Instant, u64)>));
    let mut hs = vec![];
    for i in 0..miners {
        let (addr, proofs, accepted, shares, rejected, lat) = (
            pool.stratum,
            proofs.clone(),
            accepted.clone(),
            shares.clone(),
            rejected.clone(),
            lat.clone(),
        );
        hs.push(tokio::spawn(async move {
            let (mut lines, mut w) = session(addr, &format!("load{i}.r")).await?;
            let mut sent: std::collections::HashMap<u64, Instant> = Default::default();
            let mut next_id = 100u64;
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
            use rand::{Rng, SeedableRng};
            loop {
                let line = match tokio::time::timeout_at(stop.into(), lines.next_line()).await {
                    Ok(Ok(Some(l))) => l,
                    _ => break,
                };
                let v: Value = serde_json::from_str(&line)?;
                if v["method"] == "mining.notify" {
                    let p = &v["params"];
                    let bad = rng.gen_bool(invalid.clamp(0.0, 1.0));
                    let list: Vec<Value> = p["statements"]
                        .as_array()
                        .context("statements")?
                        .iter()
                        .enumerate()
                        .map(|(k, s)| {
                            let proof = if bad && k == 0 {
                                &proofs.invalid
                            } else {
                                match s["index"].as_u64().and_then(|i| proofs.valid.get(i as usize)) {
                                    Some(p) => p,
                                    None => &proofs.invalid,
                                }
                            };
                            json!({"index": s["index"], "proof": proof})
                        })
                        .collect();
                    let id = next_id;
                    next_id += 1;
                    let msg = json!({"jsonrpc":"2.0","id":id,"method":"mining.submit","params":{"task":p["task"],"proofs":list}});
                    sent.insert(id, Instant::now());
                    w.write_all((msg.to_string() + "\n").as_bytes()).await?;
                } else if let Some(id) = v["id"].as_u64() {
                    if let Some(t) = sent.remove(&id) {
                        let now = Instant::now();
                        if now >= window_start {
                            lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                            match v["result"]["accepted"].as_u64() {
                                Some(n) => {
                                    accepted.fetch_add(n, Relaxed);
                                    shares.fetch_add(1, Relaxed);
                                }
                                None => {
                                    if rejected.fetch_add(1, Relaxed) == 0 {
                                        eprintln!("first rejection: {}", v["error"]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let bad_handles: Vec<_> = (0..bad)
        .map(|i| {
            let from = std::net::Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 2 + (i % 250) as u8);
            tokio::spawn(misbehave(
                pool.stratum,
                from,
                i,
                proofs.invalid.clone(),
                stop,
            ))
        })
        .collect();
    // Mark the measuring window's start: CPU and the counters.
    tokio::time::sleep_until(window_start.into()).await;
    *cpu0.lock().unwrap() = Some((cpu_secs(pid)?, Instant::now(), accepted.load(Relaxed)));
    let shares0 = shares.load(Relaxed);
    for h in hs {
        h.await??;
    }
    let (mut bad_rejected, mut bad_refused) = (0, 0);
    for h in bad_handles {
        let (r, f) = h.await?;
        bad_rejected += r;
        bad_refused += f;
    }
    let (c0, t0, a0) = cpu0.lock().unwrap().context("window start")?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(pid)? - c0;
    let proofs_ok = accepted.load(Relaxed) - a0;
    let mut l = lat.lock().unwrap().clone();
    // The job must outlast the window, or the rate is of an idle tail.
    let view = pool.api.get(&format!("/v1/jobs/{job}")).await?;
    let verified_in_job = view["verified"].as_u64().unwrap_or(0);
    if verified_in_job >= proofs.statements.len() as u64 {
        eprintln!(
            "warning: the job's {} statements were all verified before the window closed: \
             the rate is a lower bound; raise --proofs",
            proofs.statements.len()
        );
    }
    Ok(json!({
        "statements_in_job": proofs.statements.len(),
        "verified_in_job": verified_in_job,
        "miners": miners,
        "window_secs": elapsed,
        "verified_proofs": proofs_ok,
        "verified_proofs_per_s": proofs_ok as f64 / elapsed,
        "credited_shares": shares.load(Relaxed) - shares0,
        "credited_shares_per_s": (shares.load(Relaxed) - shares0) as f64 / elapsed,
        "rejected_submits": rejected.load(Relaxed),
        "submit_ms_p50": pct(&mut l, 0.5),
        "submit_ms_p99": pct(&mut l, 0.99),
        "pool_cpu_cores": cpu / elapsed,
        "misbehaving_sessions": bad,
        "misbehaving_submits_rejected": bad_rejected,
        "misbehaving_connects_refused": bad_refused,
    }))
}

/// Verified proofs/s of phase `num` over phase `den`, as the report holds them.
fn throughput_ratio(report: &Value, num: &str, den: &str) -> f64 {
    let rate = |phase: &str| {
        report[phase]["verified_proofs_per_s"]
            .as_f64()
            .unwrap_or(0.0)
    };
    rate(num) / rate(den).max(1e-9)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.bare_writer {
        rlimit::increase_nofile_limit(u64::MAX).ok();
        return bare_writer(n).await;
    }
    if std::env::var_os("ZKPOOL_BIN_DIR").is_none() {
        let exe = std::env::current_exe()?;
        std::env::set_var("ZKPOOL_BIN_DIR", exe.parent().context("exe dir")?);
    }
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    println!("zkpool-bench: open-file limit {nofile}");
    if (nofile as usize) < args.sessions + 100 {
        bail!(
            "the open-file limit ({nofile}) is below --sessions; raise the hard limit (ulimit -Hn)"
        );
    }
    let mut report = json!({ "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) });
    let dir = tempfile::tempdir()?;
    // ZKPOOL_BENCH_KEEP=1 keeps the pools' data and logs for a look afterwards.
    let keep = std::env::var_os("ZKPOOL_BENCH_KEEP").is_some();
    if keep {
        println!("pool data and logs in {}", dir.path().display());
    }
    let proofs = Arc::new(cached_proofs(&args.cache, args.proofs).await?);
    if args.sessions > 0 {
        match &args.storage_url {
            None => {
                let pool = start_pool(&dir.path().join("batch"), true, args.sessions)?;
                println!("phase 1: {} idle sessions...", args.sessions);
                let r = phase_sessions(args.sessions, &pool, &pool.api).await?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                report["sessions"] = r;
            }
            Some(server) => {
                let url = postgres_database(server, "cluster").await?;
                let a = start_pool_on(
                    &dir.path().join("a"),
                    true,
                    args.sessions,
                    NO_BANS,
                    Some(&url),
                )?;
                let b = start_pool_on(
                    &dir.path().join("b"),
                    true,
                    args.sessions,
                    NO_BANS,
                    Some(&url),
                )?;
                println!(
                    "phase 1 (two pool processes on PostgreSQL): {} idle sessions on B, jobs posted to A...",
                    args.sessions
                );
                let r = phase_sessions(args.sessions, &b, &a.api).await?;
                println!("{}", serde_json::to_string_pretty(&r)?);
                report["cluster_sessions"] = r;
            }
        }
    }
    if args.miners > 0 {
        if let Some(server) = &args.storage_url {
            let (mut sled_rates, mut pg_rates) = (vec![], vec![]);
            for round in 0..args.rounds {
                for on_pg in [false, true] {
                    let name = if on_pg { "postgres" } else { "sled" };
                    let url = match on_pg {
                        true => Some(postgres_database(server, "throughput").await?),
                        false => None,
                    };
                    let pool = start_pool_on(
                        &dir.path().join(format!("{name}-{round}")),
                        true,
                        args.miners,
                        NO_BANS,
                        url.as_deref(),
                    )?;
                    println!(
                        "phase 2 ({name}, round {round}): {} submitting sessions for {} s...",
                        args.miners, args.seconds
                    );
                    let r = phase_throughput(
                        args.miners,
                        args.seconds,
                        args.invalid,
                        proofs.clone(),
                        &pool,
                    )
                    .await?;
                    println!("{}", serde_json::to_string_pretty(&r)?);
                    let rate = (
                        r["verified_proofs_per_s"].as_f64().unwrap_or(0.0),
                        r["credited_shares_per_s"].as_f64().unwrap_or(0.0),
                    );
                    if on_pg {
                        pg_rates.push(rate);
                    } else {
                        sled_rates.push(rate);
                    }
                    report[format!("{name}_{round}")] = r;
                }
            }
            let median = |v: &[(f64, f64)], k: usize| {
                let mut x: Vec<f64> = v.iter().map(|r| if k == 0 { r.0 } else { r.1 }).collect();
                pct(&mut x, 0.5)
            };
            let (sp, ss) = (median(&sled_rates, 0), median(&sled_rates, 1));
            let (pp, ps) = (median(&pg_rates, 0), median(&pg_rates, 1));
            report["storage"] = json!({
                "rounds": args.rounds,
                "sled_verified_proofs_per_s": sp,
                "postgres_verified_proofs_per_s": pp,
                "sled_credited_shares_per_s": ss,
                "postgres_credited_shares_per_s": ps,
                "postgres_over_sled_proofs": pp / sp.max(1e-9),
                "postgres_over_sled_shares": ps / ss.max(1e-9),
            });
            println!("{}", serde_json::to_string_pretty(&report["storage"])?);
        }
    }
    if args.miners > 0 && args.storage_url.is_none() {
        let modes: &[bool] = if args.baseline {
            &[true, false]
        } else {
            &[true]
        };
        for &batch in modes {
            let name = if batch { "batched" } else { "one_by_one" };
            let pool = start_pool(&dir.path().join(name), batch, args.miners)?;
            println!(
                "phase 2 ({name}): {} submitting sessions for {} s...",
                args.miners, args.seconds
            );
            let r = phase_throughput(
                args.miners,
                args.seconds,
                args.invalid,
                proofs.clone(),
                &pool,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            report[name] = r;
        }
        if args.baseline {
            let r = throughput_ratio(&report, "batched", "one_by_one");
            report["batched_over_one_by_one"] = json!(r);
            println!("batched / one-by-one verified proofs/s: {r:.2}x");
        }
    }
    if args.misbehaving > 0.0 && args.miners > 0 {
        let bad = ((args.miners as f64) * args.misbehaving.clamp(0.0, 1.0)).round() as usize;
        let honest = args.miners - bad.min(args.miners);
        for (name, bad) in [("defended_clean", 0), ("defended_misbehaving", bad)] {
            let pool = start_defended_pool(&dir.path().join(name), args.miners)?;
            println!(
                "phase 3 ({name}): {honest} honest and {bad} misbehaving sessions for {} s, default bans...",
                args.seconds
            );
            let r = phase_throughput_with(honest, bad, args.seconds, 0.0, proofs.clone(), &pool)
                .await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            report[name] = r;
        }
        let r = throughput_ratio(&report, "defended_misbehaving", "defended_clean");
        report["misbehaving_over_clean"] = json!(r);
        println!(
            "with {:.0} % of sessions misbehaving / clean, verified proofs/s: {r:.2}",
            args.misbehaving * 100.0
        );
    }
    if keep {
        std::mem::forget(dir);
    }
    if let Some(p) = args.json {
        std::fs::write(&p, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
