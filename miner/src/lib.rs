//! The zkpool miner: connects to a pool over `zkpool/1`, fetches and caches proving
//! keys by hash, proves the statements of each task with ark-groth16 on all cores,
//! submits the proofs and keeps going across disconnects (with backoff).
//!
//! - [`keys`]: the proving-key cache (memory and disk), every key checked against its hash.
//! - [`session`]: one connection's life: handshake, tasks in, proofs out, keepalive.
//! - [`run`]: the reconnect loop around sessions.
//! - [`status`]: what the miner is doing (state, rates, shares), for the status
//!   line and [`api`], the read-only monitoring API (`zkminer --http`).
//!
//! Proving overlaps the network: a task's proofs are submitted from a task of their
//! own while the next task is already being proven, and the pool leases each
//! session a queued task beyond the one in progress.

pub mod api;
pub mod bench;
pub mod config;
pub mod external;
pub mod keys;
pub mod memory;
pub mod pipeline;
pub mod process;
pub mod receipts;
pub mod session;
pub mod status;
pub mod tables;

use std::{
    path::PathBuf,
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::{Duration, Instant, SystemTime},
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
    /// Where circom witnesses are computed: compiled (fast) or interpreted
    /// (less memory).
    pub witness_engine: zk::circom::witness::Engine,
}

/// Counters callers read, and the monitor the status line and the monitoring
/// API read.
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
    /// The state machine behind the status line and `GET /v1/summary`; its lock
    /// is held only to feed it an event or read it, never across an `.await`.
    pub monitor: Mutex<status::Monitor>,
}

impl Default for status::Monitor {
    fn default() -> Self {
        status::Monitor::new(Instant::now())
    }
}

impl Stats {
    /// Feeds the monitor an event.
    pub fn note(&self, event: impl FnOnce(&mut status::Monitor)) {
        event(
            &mut self
                .monitor
                .lock()
                .expect("the monitor lock is never poisoned"),
        );
    }
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
            .with_precompute(cfg.precompute_mem, prover.clone())
            .with_witness_engine(cfg.witness_engine),
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
        stats.note(|m| m.connecting(&pool.to_string()));
        let outcome = session::run_session(&cfg, pool, &rig, &stats, &shutdown).await;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let wait = match outcome {
            session::Ended::Refused(reason) => {
                stats.note(|m| m.error(format!("refused by {pool}: {reason}")));
                return Err(MinerError::Refused {
                    worker: cfg.worker.clone(),
                    reason,
                });
            }
            session::Ended::Reconnect(wait) => {
                info!(%pool, wait_secs = wait.as_secs(), "pool asked us to reconnect");
                stats.note(|m| {
                    m.lost(
                        &format!("{pool} asked us to reconnect"),
                        wait,
                        Instant::now(),
                    )
                });
                backoff = Duration::from_secs(1);
                wait
            }
            session::Ended::Banned(reason) => {
                // Asked again at the usual backoff rather than after the whole ban,
                // so that a ban the operator lifts is noticed within max_backoff.
                let ban = status::ban_length(&reason);
                let wait = backoff;
                warn!(%pool, %reason, retry_in_secs = wait.as_secs(), "banned by the pool");
                stats.note(|m| m.banned(&reason, ban, Instant::now()));
                backoff = (backoff * 2).min(cfg.max_backoff);
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
                    let next = &cfg.pools[current];
                    warn!(%pool, %reason, %next, "disconnected; failing over");
                    stats.note(|m| m.failing_over(&reason, &next.to_string()));
                    Duration::ZERO
                } else {
                    warn!(%pool, %reason, retry_in_secs = backoff.as_secs(), "disconnected");
                    stats.note(|m| m.lost(&reason, backoff, Instant::now()));
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

async fn status_loop(
    worker: String,
    stats: Arc<Stats>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let line = stats
            .monitor
            .lock()
            .expect("the monitor lock is never poisoned")
            .status_line(&worker, Instant::now(), SystemTime::now(), colour);
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
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
