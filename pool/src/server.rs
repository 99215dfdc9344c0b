//! The running pool: the hub that owns every part ([`Pool`], fields private,
//! each part reached through its accessor), [`start`] (storage, circuits,
//! recovery, the accept loops) and the sweep, with graceful shutdown.
//!
//! Not here: what the parts do. Sessions (`session`), the share path (`share`),
//! a job's life (`lifecycle`), dispatch (`dispatch`), the HTTP API (`http`).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use payouts::Signer;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};
use zk::CircuitSpec;

use crate::{
    aggregation::Aggregation,
    bans::{self, BanTable, Target},
    circuits::{CircuitRecord, Registry},
    config::Config,
    dispatch::Dispatch,
    ledger::Ledger,
    lifecycle::{self, Jobs},
    limits::Limits,
    metrics::Metrics,
    scheduler::SchedConfig,
    session::{Authorized, Sessions},
    share::Shares,
    storage::open_store,
    store::Store,
    verifier::{Verifier, MAX_BATCH_PROOFS},
};

/// Every part of a running pool. Parts talk to each other through these
/// accessors; none reaches into another's fields.
pub struct Pool {
    config: Config,
    store: Arc<dyn Store>,
    ledger: Arc<dyn Ledger>,
    /// Signs a receipt for every accepted share.
    signer: Signer,
    circuits: Registry,
    dispatch: Dispatch,
    jobs: Jobs,
    sessions: Sessions,
    shares: Shares,
    verifier: Verifier,
    aggregation: Option<Aggregation>,
    bans: BanTable,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Base URL of the HTTP API as miners reach it.
    public_url: String,
    /// The stratum URL miners are told to connect to (`zkminer --pool`).
    stratum_url: String,
    shutdown: CancellationToken,
    /// This process as a node of a cluster on PostgreSQL (`storage.url`).
    cluster: Option<crate::cluster::Cluster>,
    /// The stratum port's TLS acceptor, when `stratum.tls_cert` is set.
    tls: Option<stratum::tls::TlsAcceptor>,
    /// The HTTP API's TLS acceptor, when `http.tls_cert` is set.
    http_tls: Option<stratum::tls::TlsAcceptor>,
}

impl Pool {
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
    pub fn ledger(&self) -> &dyn Ledger {
        self.ledger.as_ref()
    }
    pub fn signer(&self) -> &Signer {
        &self.signer
    }
    pub fn circuits(&self) -> &Registry {
        &self.circuits
    }
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }
    pub fn shares(&self) -> &Shares {
        &self.shares
    }
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
    /// `None` when `[aggregation] enabled = false`.
    pub fn aggregation(&self) -> Option<&Aggregation> {
        self.aggregation.as_ref()
    }
    pub fn bans(&self) -> &BanTable {
        &self.bans
    }
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    pub fn public_url(&self) -> &str {
        &self.public_url
    }
    /// `stratum.public_url`, or the address the stratum server listens on.
    pub fn stratum_url(&self) -> &str {
        &self.stratum_url
    }
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
    /// `None` on sled; on PostgreSQL, this process's part in the cluster.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.cluster.as_ref()
    }
    pub fn tls(&self) -> Option<&stratum::tls::TlsAcceptor> {
        self.tls.as_ref()
    }
    pub fn http_tls(&self) -> Option<&stratum::tls::TlsAcceptor> {
        self.http_tls.as_ref()
    }

    /// The built-in circuits of this configuration.
    pub fn builtins(config: &Config) -> Vec<CircuitSpec> {
        vec![
            CircuitSpec::Chain {
                steps: config.circuits.chain_steps,
            },
            CircuitSpec::Preimage,
        ]
    }

    /// What a session's invalid work counts against (see `bans`).
    pub fn ban_targets(&self, who: &Authorized) -> Vec<Target> {
        bans::targets(&who.worker, who.ip, who.verified, self.config.bans.per_ip)
    }

    /// A circuit as a user names it: an id, or a name (see `circuits`).
    pub fn circuit(&self, id_or_name: &str) -> Option<Arc<crate::circuits::Circuit>> {
        self.circuits.resolve(id_or_name)
    }

    /// Gives back the tasks of parked sessions nobody resumed by `now`.
    fn release_parked(&self, now: Instant) {
        for p in self.sessions.due(now) {
            let tasks = self.dispatch.with(|s| s.remove_session(p.key));
            if !tasks.is_empty() {
                info!(worker = %p.worker, tasks = tasks.len(), "session not resumed in time; its tasks are re-queued");
            }
        }
    }
}

/// Why the pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be opened.
    #[error("cannot open data directory {path}: {detail}")]
    Storage { path: String, detail: String },
    /// The PostgreSQL database named by `storage.url` cannot be used.
    #[error(
        "cannot use the PostgreSQL database at {url} (storage.url): {detail}. Check that the \
         server is running and reachable from here and that the URL's user, password and \
         database are right (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE), or leave \
         storage.url out to use the embedded sled store"
    )]
    Database {
        /// The URL, its password hidden.
        url: String,
        detail: String,
    },
    /// The built-in circuits cannot be set up.
    #[error(transparent)]
    Registry(#[from] crate::circuits::RegistryError),
    #[error("cannot read local address: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key cannot be used.
    #[error("stratum TLS: {0}")]
    Tls(#[from] stratum::tls::TlsError),
    #[error(transparent)]
    Aggregation(#[from] crate::aggregation::AggregationError),
}

/// A pool that is serving; drop-safe, stop it with [`RunningPool::shutdown`].
pub struct RunningPool {
    pub state: Arc<Pool>,
    pub stratum_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Circuits whose keys were generated at this start.
    pub created_circuits: Vec<CircuitRecord>,
    tasks: TaskTracker,
    join: JoinHandle<()>,
}

impl RunningPool {
    /// Stops accepting, tells miners to reconnect, drains, flushes; bounded by `grace`.
    pub async fn shutdown(self, grace: Duration) {
        self.state.shutdown.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            warn!("sessions did not finish within the grace period; closing them");
        }
        let _ = self.join.await;
        if let Err(e) = self.state.store.flush().await {
            error!(error = %e, "final flush failed");
        }
        info!("pool stopped");
    }

    /// Resolves when the pool is told to stop from elsewhere (never, unless shut down).
    pub fn token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }
}

/// `zkpool setup`: opens (or creates) the data directory and sets up the built-in
/// circuits' keys where they have none. Returns every circuit and which were
/// created now.
/// The registry over the stored circuits, with the built-in circuits' keys
/// generated (and stored, flushed) where missing; the records it created.
async fn open_circuits(
    store: &dyn Store,
    config: &Config,
    storage: &dyn Fn(String) -> StartError,
) -> Result<(Registry, Vec<CircuitRecord>), StartError> {
    let stored = store.circuits().await.map_err(|e| storage(e.to_string()))?;
    let (builtins, keys) = (Pool::builtins(config), config.storage.data_dir.join("keys"));
    let (circuits, created) =
        tokio::task::spawn_blocking(move || Registry::open(stored, keys, &builtins))
            .await
            .expect("circuit setup does not panic")?;
    for c in &created {
        store
            .put_circuit(c)
            .await
            .map_err(|e| storage(e.to_string()))?;
    }
    store.flush().await.map_err(|e| storage(e.to_string()))?;
    Ok((circuits, created))
}

pub async fn setup(
    config: &Config,
) -> Result<(Vec<CircuitRecord>, Vec<CircuitRecord>), StartError> {
    let data = config.storage.data_dir.clone();
    let storage = |detail: String| StartError::Storage {
        path: data.display().to_string(),
        detail,
    };
    std::fs::create_dir_all(&data).map_err(|e| storage(e.to_string()))?;
    let store = open_store(config).await?;
    let (circuits, created) = open_circuits(store.store(), config, &storage).await?;
    let all = circuits.all().iter().map(|c| c.record.clone()).collect();
    Ok((all, created))
}

/// Opens storage, sets up circuits, recovers unfinished jobs and starts serving
/// stratum on `stratum` and HTTP on `http`.
pub async fn start(
    config: Config,
    stratum: TcpListener,
    http: TcpListener,
) -> Result<RunningPool, StartError> {
    let data = config.storage.data_dir.clone();
    let storage = |detail: String| StartError::Storage {
        path: data.display().to_string(),
        detail,
    };
    std::fs::create_dir_all(&data).map_err(|e| storage(e.to_string()))?;
    let opened = open_store(&config).await?;
    let shared_db = match &opened {
        crate::storage::OpenStore::Pg(s) => Some(s.pool().clone()),
        crate::storage::OpenStore::Sled(_) => None,
    };
    let (store, ledger) = opened.with_ledger(&config).await?;
    let tls = match (&config.stratum.tls_cert, &config.stratum.tls_key) {
        (Some(cert), Some(key)) => Some(stratum::tls::acceptor(cert, key)?),
        _ => None,
    };
    let http_tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(stratum::tls::acceptor(cert, key)?),
        _ => None,
    };
    let signer = Signer::from_seed(
        store
            .receipt_seed()
            .await
            .map_err(|e| storage(e.to_string()))?,
    );
    let (circuits, created) = open_circuits(store.as_ref(), &config, &storage).await?;
    for c in &created {
        info!(circuit = %c.name, id = %c.id, constraints = c.constraints, "generated Groth16 keys");
    }
    let agg = config.aggregation.clone();
    let aggregation = tokio::task::spawn_blocking(move || Aggregation::load(&agg))
        .await
        .expect("loading the SRS does not panic")?;

    let stratum_addr = stratum.local_addr()?;
    let http_addr = http.local_addr()?;
    let scheme = if http_tls.is_some() { "https" } else { "http" };
    let public_url = config
        .http
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| {
            let ip = if http_addr.ip().is_unspecified() {
                "127.0.0.1".to_owned()
            } else {
                http_addr.ip().to_string()
            };
            format!("{scheme}://{ip}:{}", http_addr.port())
        });
    let stratum_url = config.stratum.public_url.clone().unwrap_or_else(|| {
        let scheme = if tls.is_some() {
            "stratum+ssl"
        } else {
            "stratum+tcp"
        };
        // Miners reach the stratum port at the host they reach the API at.
        match config.http.public_url.as_deref().and_then(url_host) {
            Some(host) => format!("{scheme}://{host}:{}", stratum_addr.port()),
            None => {
                let ip = if stratum_addr.ip().is_unspecified() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    stratum_addr.ip()
                };
                format!("{scheme}://{}", SocketAddr::new(ip, stratum_addr.port()))
            }
        }
    });
    let sched = SchedConfig {
        target_task: Duration::from_secs_f64(config.scheduler.target_task_secs),
        lease_min: Duration::from_secs_f64(config.scheduler.lease_min_secs),
        max_per_task: config.scheduler.max_statements_per_task,
        tasks_per_session: config.scheduler.tasks_per_session,
        max_attempts: config.scheduler.max_attempts,
        backup_after: Duration::from_secs_f64(config.scheduler.backup_after_secs.max(0.0)),
    };
    let metrics = Arc::new(Metrics::new());
    let cluster = match (shared_db, &config.storage.url) {
        (Some(db), Some(url)) => Some(
            crate::cluster::Cluster::join(
                db,
                url,
                Duration::from_secs_f64(config.storage.node_lease_secs),
                &stratum_url,
                &public_url,
                metrics.clone(),
            )
            .await
            .map_err(|e| StartError::Database {
                url: crate::config::redact_url(url),
                detail: format!("joining the cluster: {e}"),
            })?,
        ),
        _ => None,
    };
    let (verifier, verifier_task) =
        Verifier::new(config.verifier_threads(), MAX_BATCH_PROOFS, metrics.clone());
    let verifier_task = if config.verifier.batch {
        verifier_task
    } else {
        warn!("verifier.batch = false: verifying proof by proof (a measuring baseline, slower)");
        verifier_task.one_by_one()
    };
    tokio::spawn(verifier_task.run());
    let pool = Arc::new(Pool {
        verifier,
        aggregation,
        store,
        ledger,
        signer,
        circuits,
        dispatch: Dispatch::new(sched),
        jobs: Jobs::default(),
        sessions: Sessions::new(),
        shares: Shares::default(),
        bans: BanTable::new(config.ban_policy()),
        limits: Limits::new(&config.limits, config.preparing()),
        metrics,
        public_url,
        stratum_url,
        shutdown: CancellationToken::new(),
        cluster,
        tls,
        http_tls,
        config,
    });
    if pool.cluster.is_some() {
        // Task ids are the job's and a number: each process numbers from its own
        // random point, so a task id names one lease across all of them.
        let from = rand::random::<u64>() >> 16;
        pool.dispatch.with(|s| s.number_tasks_from(from));
    }
    let recovered = lifecycle::recover(&pool)
        .await
        .map_err(|e| storage(e.to_string()))?;
    if recovered > 0 {
        info!(jobs = recovered, "recovered unfinished jobs");
    }

    let tasks = TaskTracker::new();
    if pool.cluster.is_some() {
        tasks.spawn(crate::cluster::run(pool.clone()));
    }
    let sweeper = tasks.spawn(sweep(pool.clone()));
    let http_task = tasks.spawn(crate::http::serve(pool.clone(), http));
    let accept = tasks.spawn(crate::session::accept_loop(
        pool.clone(),
        stratum,
        tasks.clone(),
    ));
    if pool.config.payouts.auto_interval_secs > 0 {
        info!(
            every_secs = pool.config.payouts.auto_interval_secs,
            hook = ?pool.config.payouts.hook,
            threshold = pool.config.payouts.threshold,
            "automatic payouts on"
        );
        tasks.spawn(crate::autopay::run(pool.clone()));
    }
    let join = tokio::spawn(async move {
        let _ = tokio::join!(sweeper, http_task, accept);
    });
    info!(stratum = %stratum_addr, http = %http_addr, "pool serving");
    Ok(RunningPool {
        state: pool,
        stratum_addr,
        http_addr,
        created_circuits: created,
        tasks,
        join,
    })
}

/// Every sweep interval: ends expired leases (their sessions get `mining.cancel`,
/// the statements go to other sessions), gives back unresumed sessions' tasks,
/// marks urgent jobs, fails and expires jobs, forgets idle rate-limit state, and
/// dispatches (the safety net for a task taken back from a full session queue).
async fn sweep(pool: Arc<Pool>) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        pool.config.scheduler.sweep_interval_secs,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = pool.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let expired = pool.dispatch.with(|s| s.expire(Instant::now()));
        for t in &expired {
            warn!(task = %t.id, worker = %t.worker, "lease expired; statements re-queued");
        }
        pool.dispatch.send_cancels(&expired, "lease expired");
        pool.release_parked(Instant::now());
        lifecycle::mark_urgent(&pool);
        lifecycle::fail_exhausted(&pool);
        lifecycle::expire_due(&pool).await;
        pool.limits.forget_idle();
        pool.dispatch.dispatch();
    }
}

/// The host of an `http(s)://HOST[:PORT][/...]` URL (an IPv6 host keeps its
/// brackets): `None` when there is no host.
fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let host = if authority.starts_with('[') {
        &authority[..=authority.find(']')?]
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn the_host_of_a_public_url_is_found_with_or_without_port_and_path() {
        assert_eq!(url_host("https://pool.example:8443/"), Some("pool.example"));
        assert_eq!(url_host("http://pool.example"), Some("pool.example"));
        assert_eq!(
            url_host("http://[2001:db8::1]:8080/x"),
            Some("[2001:db8::1]")
        );
        assert_eq!(url_host("http://:8080"), None);
        assert_eq!(url_host("pool.example"), None);
    }
}
