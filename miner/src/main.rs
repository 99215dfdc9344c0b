//! `zkminer`: point a rig at a zkpool.
use std::{path::PathBuf, sync::Arc, time::Duration};

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Prove for a zkpool: zkminer --pool stratum+tcp://HOST:3333 --worker ADDR.RIG
#[derive(Parser, Debug)]
#[command(version, about, subcommand_negates_reqs = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The pool, as stratum+tcp://HOST:PORT. Repeat it (or separate with commas) to
    /// list failover pools, in order of preference.
    #[arg(long, env = "ZKMINER_POOL", value_delimiter = ',')]
    pool: Vec<String>,
    /// Payout account and rig name, as ADDR.RIG.
    #[arg(long, env = "ZKMINER_WORKER")]
    worker: Option<String>,
    /// A TOML file with these settings (see deploy/zkminer.toml); flags win over it.
    #[arg(long, env = "ZKMINER_CONFIG")]
    config: Option<PathBuf>,
    /// Worker password, if the pool asks for one.
    #[arg(long, env = "ZKMINER_PASSWORD")]
    password: Option<String>,
    /// Proving threads; default: every core.
    #[arg(long)]
    threads: Option<usize>,
    /// A PEM file of CA certificates to trust for stratum+ssl:// pools (besides
    /// the built-in Mozilla roots): a pool with its own CA or a self-signed one.
    #[arg(long, env = "ZKMINER_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Where proving keys and receipts are kept [default: ./zkminer-cache].
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// An external prover for circom circuits, run through `sh -c` with {zkey},
    /// {wtns}, {proof} and {public} replaced by file paths, e.g.
    /// 'snarkjs groth16 prove {zkey} {wtns} {proof} {public}' (or rapidsnark).
    /// Its proofs are verified before they are submitted; when it fails, the
    /// built-in prover proves that statement instead.
    #[arg(long, env = "ZKMINER_PROVER_CMD")]
    prover_cmd: Option<String>,
    /// Seconds between status lines; 0 turns them off [default: 5].
    #[arg(long)]
    status_interval: Option<u64>,
    /// MiB of precomputed prover tables the rig may hold (built once per key,
    /// cached beside it); 0 turns precomputation off and arkworks proves as
    /// before [default: 1024].
    #[arg(long, value_name = "MIB")]
    precompute_mem: Option<u64>,
    /// Where circom witnesses are computed: `compiled` (the module compiled
    /// to machine code: 6-9x faster, so the next statement's witness takes
    /// that much less CPU from the current proof) or `interpreted` (no
    /// compiler: up to 75 MiB less memory while a key loads, about 20 MiB
    /// less while proving)
    /// [default: compiled].
    #[arg(long, value_name = "ENGINE")]
    witness_engine: Option<String>,
    /// Serve a read-only JSON monitoring API (GET /v1/summary, GET /v1/health)
    /// on this address, e.g. 127.0.0.1:4080 (port 0: any free port; the
    /// address is printed). Off unless given. It has no authentication: an
    /// address other than loopback also needs --http-allow-remote.
    #[arg(long, value_name = "ADDR", env = "ZKMINER_HTTP")]
    http: Option<std::net::SocketAddr>,
    /// Let --http listen on an address other than loopback (anyone who can reach
    /// it can read this rig's figures).
    #[arg(long)]
    http_allow_remote: bool,
    /// Measure this rig on each built-in circuit, without a pool, and exit.
    #[arg(long)]
    benchmark: bool,
    /// Seconds to prove each circuit for with --benchmark.
    #[arg(long, default_value_t = 5)]
    benchmark_secs: u64,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Check the pool's signed receipts in the cache directory against the credit
    /// lists and settlements the pool publishes; exit 1 on any difference.
    Audit {
        /// The receipt log; default: receipts.jsonl in --cache-dir.
        #[arg(long)]
        receipts: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    miner::process::exit_quietly_on_closed_pipe();
    tracing_subscriber::fmt()
        .with_env_filter({
            let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
            let spec = if spec.contains("r1cs") {
                spec
            } else {
                format!("{spec},{}", zk::QUIET_ARKWORKS)
            };
            tracing_subscriber::EnvFilter::new(spec)
        })
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    // A build for CPUs with BMI2/ADX refuses other CPUs before any proving.
    if let Err(e) = zk::prover::cpu::check() {
        eprintln!("zkminer: {e}");
        return std::process::ExitCode::from(2);
    }
    let file = match &args.config {
        Some(p) => match miner::config::MinerFile::load(p) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("zkminer: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        None => miner::config::MinerFile::default(),
    };
    let cache_dir = args
        .cache_dir
        .clone()
        .or(file.cache_dir.clone())
        .unwrap_or_else(|| PathBuf::from("./zkminer-cache"));
    if let Some(Command::Audit { receipts }) = args.command {
        let path = receipts.unwrap_or_else(|| cache_dir.join("receipts.jsonl"));
        return match miner::receipts::audit(&path).await {
            Ok(report) => {
                for l in &report.lines {
                    println!("{l}");
                }
                println!(
                    "{} receipt(s), {} job(s) settled, {} pending: {}",
                    report.receipts,
                    report.jobs_settled,
                    report.jobs_pending,
                    if report.problems.is_empty() {
                        "everything matches".to_owned()
                    } else {
                        format!("{} problem(s)", report.problems.len())
                    }
                );
                if report.problems.is_empty() {
                    std::process::ExitCode::SUCCESS
                } else {
                    std::process::ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("zkminer audit: {e:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    let threads = args.threads.or(file.threads).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let precompute_mem = args
        .precompute_mem
        .or(file.precompute_mem_mib)
        .unwrap_or(DEFAULT_PRECOMPUTE_MIB)
        << 20;
    let witness_engine: zk::circom::witness::Engine = match args
        .witness_engine
        .clone()
        .or(file.witness_engine.clone())
        .map(|e| e.parse())
        .transpose()
    {
        Ok(e) => e.unwrap_or_default(),
        Err(e) => {
            eprintln!("zkminer: --witness-engine: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.benchmark {
        println!(
            "zkminer {} benchmark | Groth16/BN254 | {threads} threads | {} | precomputation budget {} MiB",
            env!("CARGO_PKG_VERSION"),
            zk::prover::cpu::describe(),
            precompute_mem >> 20
        );
        return match tokio::task::spawn_blocking(move || {
            miner::bench::run(
                threads,
                Duration::from_secs(args.benchmark_secs.max(1)),
                precompute_mem,
            )
        })
        .await
        {
            Ok(Ok(lines)) => {
                for l in lines {
                    println!("{l}");
                }
                std::process::ExitCode::SUCCESS
            }
            Ok(Err(e)) => {
                eprintln!("zkminer: benchmark failed: {e}");
                std::process::ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("zkminer: benchmark failed: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    let pool_list = if args.pool.is_empty() {
        file.pools.clone()
    } else {
        args.pool.clone()
    };
    if pool_list.is_empty() {
        eprintln!(
            "zkminer: no pool: give --pool stratum+tcp://HOST:PORT (or pools = [...] in --config)"
        );
        return std::process::ExitCode::from(2);
    }
    let pools = match pool_list
        .iter()
        .map(|p| miner::parse_pool_url(p))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zkminer: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let Some(worker) = args.worker.clone().or(file.worker.clone()) else {
        eprintln!(
            "zkminer: no worker: give --worker ADDR.RIG (or worker = \"ADDR.RIG\" in --config)"
        );
        return std::process::ExitCode::from(2);
    };
    // The README and examples write ADDR.RIG for "your account, a rig": mining
    // under the literal ADDR would credit work to nobody the user knows.
    if worker.split('.').next() == Some("ADDR") {
        eprintln!(
            "zkminer: worker {worker:?} names the placeholder account ADDR: give your payout account, as --worker ACCOUNT.RIG (or worker = \"ACCOUNT.RIG\" in --config)"
        );
        return std::process::ExitCode::from(2);
    }
    let shown: Vec<String> = pools.iter().map(ToString::to_string).collect();
    let prover_cmd = args.prover_cmd.or(file.prover_cmd);
    let prover = if precompute_mem == 0 {
        "arkworks (Groth16/BN254)".to_owned()
    } else {
        format!(
            "zkpool (Groth16/BN254, tables up to {} MiB)",
            precompute_mem >> 20
        )
    };
    let backend = match &prover_cmd {
        Some(cmd) => format!("{prover}, circom circuits via `{cmd}`"),
        None => prover,
    };
    println!(
        "zkminer {} | pool {} | worker {worker} | backend {backend} | {threads} threads | circuits: chain, preimage, circom",
        env!("CARGO_PKG_VERSION"),
        shown.join(", then ")
    );
    let shutdown = CancellationToken::new();
    let stats = Arc::new(miner::Stats::default());
    if let Some(addr) = args.http.or(file.http) {
        let allow_remote = args.http_allow_remote || file.http_allow_remote.unwrap_or(false);
        if !addr.ip().is_loopback() && !allow_remote {
            eprintln!(
                "zkminer: --http {addr} is not a loopback address, and the monitoring API has no authentication: use 127.0.0.1:PORT, or add --http-allow-remote (http_allow_remote = true in --config) to serve it to your network"
            );
            return std::process::ExitCode::from(2);
        }
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("zkminer: cannot listen on --http {addr}: {e}");
                return std::process::ExitCode::from(2);
            }
        };
        let bound = listener.local_addr().unwrap_or(addr);
        if !bound.ip().is_loopback() {
            eprintln!(
                "zkminer: warning: the monitoring API on {bound} has no authentication; anyone who can reach it can read this rig's figures"
            );
        }
        println!("zkminer: monitoring API on http://{bound} (GET /v1/summary, GET /v1/health)");
        let rig = miner::api::RigInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            worker: worker.clone(),
            pools: shown.clone(),
            threads,
        };
        let (stats, stop) = (stats.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = miner::api::serve(listener, rig, stats, stop).await {
                tracing::error!(error = %e, "the monitoring API stopped");
            }
        });
    }
    let cfg = miner::MinerConfig {
        pools,
        worker,
        password: args.password.or(file.password),
        threads,
        cache_dir,
        status_interval: Duration::from_secs(
            args.status_interval
                .or(file.status_interval_secs)
                .unwrap_or(5),
        ),
        max_backoff: Duration::from_secs(30),
        tls_ca: args.tls_ca.or(file.tls_ca),
        prover_cmd,
        precompute_mem,
        witness_engine,
    };
    let stop = shutdown.clone();
    tokio::spawn(async move {
        miner::process::wait_for_signal().await;
        stop.cancel();
    });
    match miner::run(cfg, stats, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zkminer: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The default precomputation budget: enough for every table of a 2^16-constraint
/// circom circuit (about 400 MiB) and most of a 2^18 one's.
const DEFAULT_PRECOMPUTE_MIB: u64 = 1024;

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of zkminer and its subcommands says what it is in `--help`.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = vec![];
        let cmd = super::Args::command();
        cmd.clone().debug_assert();
        walk(&cmd, "zkminer", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
