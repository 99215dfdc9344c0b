//! The zkpool miner: connects to a pool over `zkpool/1`, fetches and caches proving
//! keys by hash, proves the statements of each task with ark-groth16 on all cores,
//! submits the proofs and keeps going across disconnects (with backoff).
//!
//! - [`keys`]: the proving-key cache (memory and disk), every key checked against its hash.
//! - [`session`]: one connection's life: handshake, tasks in, proofs out, keepalive.
//! - [`run`]: the reconnect loop around sessions.
//!
//! Proving overlaps the network: a task's proofs are submitted from a task of their
//! own while the next task is already being proven, and the pool leases each
//! session a queued task beyond the one in progress.

pub mod bench;
pub mod config;
pub mod external;
pub mod keys;
pub mod pipeline;
pub mod process;
pub mod receipts;
pub mod session;
pub mod tables;

use std::{
    path::PathBuf,
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Where the pool is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUrl {
    pub host: String,
    pub port: u16,
    /// `stratum+ssl://` (or `stratum+tls://`): TLS over the TCP connection.
    pub tls: bool,
}

impl std::fmt::Display for PoolUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "ssl" } else { "tcp" };
        write!(f, "stratum+{scheme}://{}:{}", self.host, self.port)
    }
}

/// Why the miner cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    /// The pool URL is not `stratum+tcp://HOST:PORT` (or none was given).
    #[error("bad pool URL {0:?}: expected stratum+tcp://HOST:PORT or stratum+ssl://HOST:PORT")]
    BadUrl(String),
    /// TLS cannot be set up (the CA file).
    #[error(transparent)]
    Tls(#[from] stratum::tls::TlsError),
    /// The worker name is not `ADDR.RIG`.
    #[error(transparent)]
    BadWorker(#[from] stratum::BadWorker),
    /// The pool refused this worker; retrying would not help.
    #[error("pool refused worker {worker}: {reason}")]
    Refused { worker: String, reason: String },
    /// The key cache directory cannot be used.
    #[error("key cache {path}: {detail}")]
    Cache { path: PathBuf, detail: String },
    /// The external prover template is unusable.
    #[error("{0}")]
    BadProverCmd(String),
}

pub fn parse_pool_url(s: &str) -> Result<PoolUrl, MinerError> {
    let (tls, rest) = match ["stratum+ssl://", "stratum+tls://"]
        .iter()
        .find_map(|p| s.strip_prefix(p))
    {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix("stratum+tcp://").unwrap_or(s)),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| MinerError::BadUrl(s.to_owned()))?;
    let port: u16 = port.parse().map_err(|_| MinerError::BadUrl(s.to_owned()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 || rest.contains('/') {
        return Err(MinerError::BadUrl(s.to_owned()));
    }
    Ok(PoolUrl {
        host: host.to_owned(),
        port,
        tls,
    })
}

/// Miner settings.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// Pools in order of preference; a lost connection moves on to the next one.
    pub pools: Vec<PoolUrl>,
    pub worker: String,
    pub password: Option<String>,
    /// Proving threads (the rayon pool ark-groth16 runs on).
    pub threads: usize,
    pub cache_dir: PathBuf,
    /// How often the status line is printed; zero: never.
    pub status_interval: Duration,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// Extra CA certificates (PEM) trusted for `stratum+ssl://` pools.
    pub tls_ca: Option<PathBuf>,
    /// An external prover command template for circom circuits (see [`external`]).
    pub prover_cmd: Option<String>,
    /// Bytes of precomputed prover tables the rig may hold (see [`tables`]);
    /// zero: precomputation off, arkworks proves as before tables existed.
    pub precompute_mem: u64,
}

/// Counters the status line and callers read.
#[derive(Debug, Default)]
pub struct Stats {
    pub proofs: AtomicU64,
    pub constraints: AtomicU64,
    pub accepted_shares: AtomicU64,
    pub accepted_proofs: AtomicU64,
    pub accepted_work: AtomicU64,
    pub rejected_shares: AtomicU64,
    /// Nanoseconds spent inside the prover.
    pub proving_nanos: AtomicU64,
    /// Round-trip of the last submit, microseconds.
    pub last_submit_us: AtomicU64,
    pub connects: AtomicU64,
}

/// Runs the miner until `shutdown`: connect, mine, reconnect with exponential
/// backoff (1 s doubling up to `max_backoff`, reset after a productive session).
pub async fn run(
    cfg: MinerConfig,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), MinerError> {
    stratum::Worker::parse(&cfg.worker)?;
    std::fs::create_dir_all(&cfg.cache_dir).map_err(|e| MinerError::Cache {
        path: cfg.cache_dir.clone(),
        detail: e.to_string(),
    })?;
    // Keys come over the pool's HTTP API, which may be HTTPS with the same private CA.
    let mut http = reqwest::Client::builder();
    if let Some(ca) = &cfg.tls_ca {
        for cert in stratum::tls::certificates(ca)? {
            let cert = reqwest::Certificate::from_der(&cert).map_err(|e| {
                MinerError::Tls(stratum::tls::TlsError::Config(format!(
                    "{}: {e}",
                    ca.display()
                )))
            })?;
            http = http.add_root_certificate(cert);
        }
    }
    let http = http.build().map_err(|e| {
        MinerError::Tls(stratum::tls::TlsError::Config(format!("HTTP client: {e}")))
    })?;
    let receipt_path = cfg.cache_dir.join("receipts.jsonl");
    let receipts = Arc::new(
        receipts::ReceiptLog::open(receipt_path.clone()).map_err(|e| MinerError::Cache {
            path: receipt_path,
            detail: format!("cannot open the receipt log: {e}"),
        })?,
    );
    let prover = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads.max(1))
            .thread_name(|i| format!("prover-{i}"))
            // Proving nests rayon work; the default 2 MiB stacks are too small (ZK-NOTES trap 6).
            .stack_size(16 << 20)
            .build()
            .map_err(|e| MinerError::Cache {
                path: cfg.cache_dir.clone(),
                detail: format!("cannot start prover threads: {e}"),
            })?,
    );
    let keys = Arc::new(
        keys::KeyCache::with_http(cfg.cache_dir.clone(), http)
            .with_precompute(cfg.precompute_mem, prover.clone()),
    );
    if !cfg.status_interval.is_zero() {
        tokio::spawn(status_loop(
            cfg.worker.clone(),
            stats.clone(),
            cfg.status_interval,
            shutdown.clone(),
        ));
    }
    if cfg.pools.is_empty() {
        return Err(MinerError::BadUrl(String::new()));
    }
    let tls = if cfg.pools.iter().any(|p| p.tls) {
        Some(stratum::tls::connector(cfg.tls_ca.as_deref())?)
    } else {
        None
    };
    let external = match &cfg.prover_cmd {
        Some(t) => Some(Arc::new(
            external::ExternalProver::new(t, &cfg.cache_dir).map_err(MinerError::BadProverCmd)?,
        )),
        None => None,
    };
    let rig = session::Rig {
        keys,
        receipts,
        prover,
        tls,
        external,
        resume: Arc::default(),
    };
    let mut backoff = Duration::from_secs(1);
    let mut current = 0;
    loop {
        let pool = &cfg.pools[current];
        let started = Instant::now();
        let before = stats
            .accepted_shares
            .load(std::sync::atomic::Ordering::Relaxed);
        let outcome = session::run_session(&cfg, pool, &rig, &stats, &shutdown).await;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let wait = match outcome {
            session::Ended::Refused(reason) => {
                return Err(MinerError::Refused {
                    worker: cfg.worker.clone(),
                    reason,
                })
            }
            session::Ended::Reconnect(wait) => {
                info!(%pool, wait_secs = wait.as_secs(), "pool asked us to reconnect");
                backoff = Duration::from_secs(1);
                wait
            }
            session::Ended::Lost(reason) => {
                let productive = stats
                    .accepted_shares
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > before
                    || started.elapsed() > Duration::from_secs(30);
                if productive {
                    backoff = Duration::from_secs(1);
                }
                // Fail over to the next pool at once; back off only after a full round.
                current = (current + 1) % cfg.pools.len();
                if current != 0 {
                    warn!(%pool, %reason, next = %cfg.pools[current], "disconnected; failing over");
                    Duration::ZERO
                } else {
                    warn!(%pool, %reason, retry_in_secs = backoff.as_secs(), "disconnected");
                    let w = backoff;
                    backoff = (backoff * 2).min(cfg.max_backoff);
                    w
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One status line's figures.
pub struct Status {
    pub proofs_per_s: f64,
    pub constraints_per_s: f64,
    pub accepted_shares: u64,
    pub accepted_proofs: u64,
    pub rejected: u64,
    pub last_submit_ms: f64,
}

/// The status line; with `colour` (a terminal, and no `NO_COLOR`), the rate is
/// bold, accepted work green and rejections red when there are any.
pub fn status_line(worker: &str, s: &Status, colour: bool) -> String {
    let paint = |code: &str, text: String| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text
        }
    };
    let rejected = format!("rejected {}", s.rejected);
    format!(
        "[{worker}] {} | {:.0} constraints/s | {} | {} | last submit {:.1} ms",
        paint("1", format!("{:.2} proofs/s", s.proofs_per_s)),
        s.constraints_per_s,
        paint(
            "32",
            format!(
                "accepted {} shares ({} proofs)",
                s.accepted_shares, s.accepted_proofs
            )
        ),
        if s.rejected > 0 {
            paint("31", rejected)
        } else {
            rejected
        },
        s.last_submit_ms,
    )
}

async fn status_loop(
    worker: String,
    stats: Arc<Stats>,
    every: Duration,
    shutdown: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let (mut last_proofs, mut last_constraints, mut last) = (0u64, 0u64, Instant::now());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let proofs = stats.proofs.load(Relaxed);
        let constraints = stats.constraints.load(Relaxed);
        let secs = last.elapsed().as_secs_f64().max(1e-3);
        println!(
            "{}",
            status_line(
                &worker,
                &Status {
                    proofs_per_s: (proofs - last_proofs) as f64 / secs,
                    constraints_per_s: (constraints - last_constraints) as f64 / secs,
                    accepted_shares: stats.accepted_shares.load(Relaxed),
                    accepted_proofs: stats.accepted_proofs.load(Relaxed),
                    rejected: stats.rejected_shares.load(Relaxed),
                    last_submit_ms: stats.last_submit_us.load(Relaxed) as f64 / 1000.0,
                },
                colour,
            )
        );
        (last_proofs, last_constraints, last) = (proofs, constraints, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_status_line_is_coloured_only_on_request() {
        let s = super::Status {
            proofs_per_s: 1.984,
            constraints_per_s: 26991.2,
            accepted_shares: 14,
            accepted_proofs: 41,
            rejected: 0,
            last_submit_ms: 3.12,
        };
        assert_eq!(
            super::status_line("alice.rig1", &s, false),
            "[alice.rig1] 1.98 proofs/s | 26991 constraints/s | accepted 14 shares (41 proofs) | rejected 0 | last submit 3.1 ms"
        );
        let c = super::status_line("alice.rig1", &s, true);
        assert!(
            c.contains("\x1b[32maccepted 14 shares (41 proofs)\x1b[0m"),
            "{c:?}"
        );
        assert!(!c.contains("\x1b[31m"), "no red without rejections: {c:?}");
        let bad = super::Status { rejected: 2, ..s };
        assert!(super::status_line("a.r", &bad, true).contains("\x1b[31mrejected 2\x1b[0m"));
    }

    use super::*;

    #[test]
    fn pool_urls() {
        assert_eq!(
            parse_pool_url("stratum+tcp://pool.example:3333").unwrap(),
            PoolUrl {
                host: "pool.example".into(),
                port: 3333,
                tls: false
            }
        );
        assert_eq!(parse_pool_url("127.0.0.1:1").unwrap().port, 1);
        let ssl = parse_pool_url("stratum+ssl://h:1").unwrap();
        assert!(ssl.tls);
        assert_eq!(ssl.to_string(), "stratum+ssl://h:1");
        for bad in [
            "stratum+tcp://host",
            "stratum+tcp://:3333",
            "stratum+tcp://h:99999",
            "http://h:1/x",
        ] {
            assert!(parse_pool_url(bad).is_err(), "{bad}");
        }
    }
}
