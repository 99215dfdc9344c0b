//! Several pool processes on one PostgreSQL database (issue 14). Each
//! `zkpool serve` with `storage.url` set is a **node**: it has its own stratum
//! and HTTP listeners and miners, and shares the jobs, proofs and ledger with
//! the others through the database.
//!
//! - **Leases.** A node is a row of `nodes` whose lease (`until`, in the
//!   database's clock) it renews every second; it lasts `node_lease_secs`.
//! - **Claims.** A shared job's statements wait in the scheduler's `elsewhere`
//!   until this node claims them for its own sessions: chunks of [`CHUNK`]
//!   statements, claimed by inserting `(job, chunk)` into `claims`. A claim
//!   counts while its node's lease does, so a dead node's chunks are claimed by
//!   the others once its lease runs out.
//! - **Giving back.** While another node has sessions, a chunk this node's
//!   sessions do not prove goes back (`Scheduler::give_back`): one with a
//!   lease that lapsed here (ran out, its session left, invalid proofs) once
//!   no task within two of its leases holds any of it, or one with a task past
//!   two of its leases (renewed, never finished; the others then prove it as a
//!   backup would). This node does not claim it again for
//!   [`GIVE_BACK_COOLDOWN`], and sessions that have proven nothing here want
//!   `UNMEASURED_CHUNKS` chunks of a job between them at most. So sessions
//!   that take work and never return it, however many, hold a few chunks of
//!   a job for a lease or two at a time while the other nodes' rigs prove the
//!   rest. Claims only spread the work: a statement is credited once because
//!   its proof is stored under the primary key of `proofs`
//!   (`Store::claim_proofs`), whoever proved it.
//! - **Events.** A job stored, a job ended and a share's proofs stored are
//!   announced on the channel `zkpool` (`NOTIFY`); every node applies the
//!   others' (adopts the job, drops it, marks the statements done). A poll
//!   every [`POLL`] compares this node's jobs and progress with the database:
//!   the safety net for a notification lost while the listening connection was
//!   down.
//! - **The leader.** One node holds the advisory lock [`LEADER_LOCK`] on its
//!   listening connection: it runs automatic payouts and the sweep that
//!   settles ended jobs a crash left unsettled. When it dies its connection
//!   closes, the lock goes, and another node takes it within a second.
//!
//! Ending a job is once (`Store::end_job`, a compare-and-set on its state);
//! settling is once (the ledger's idempotency key `settle/JOB`).

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use deadpool_postgres::Pool as PgPool;
use futures::StreamExt;
use stratum::JobId;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{debug, info, warn};

use crate::{
    lifecycle,
    metrics::Metrics,
    server::Pool,
    store::{pg::engine, StoreError},
};

/// Statements per claim.
pub const CHUNK: u64 = 16;

/// Events queued to send to the other nodes, and received from them, at most
/// (each a line of about 60 bytes); past it an event is dropped and the poll
/// repairs what it said.
const EVENT_QUEUE: usize = 4096;

/// Chunks one claim round looks at per job at most.
const MAX_CHUNKS: usize = 1024;

/// How long a node leaves a chunk it gave back to the other nodes before it
/// may claim the chunk again.
pub const GIVE_BACK_COOLDOWN: Duration = Duration::from_secs(3);

/// How often a node looks for chunks to give back.
const GIVE_BACK_EVERY: Duration = Duration::from_secs(1);

/// How often the claimer looks for jobs that want statements (it is also
/// woken by events: a job adopted, a session added, a task finished).
const TICK: Duration = Duration::from_millis(200);

/// How often the node's lease is renewed.
const RENEW: Duration = Duration::from_secs(1);

/// How often this node's jobs and progress are compared with the database.
pub const POLL: Duration = Duration::from_secs(2);

/// How often the leader sweeps for ended jobs left unsettled.
const LEADER_SWEEP: Duration = Duration::from_secs(10);

/// The notification channel.
const CHANNEL: &str = "zkpool";

/// The advisory lock the leader holds for as long as its listening connection
/// lives ("zkleadr" in ASCII).
pub const LEADER_LOCK: i64 = 0x007a_6b6c_6561_6472;

/// This process as a node of the cluster.
pub struct Cluster {
    node: String,
    url: String,
    /// The addresses its miners and clients reach it at (`/v1/status`).
    stratum: String,
    http: String,
    db: PgPool,
    lease: Duration,
    leader: AtomicBool,
    wake: Notify,
    metrics: Arc<Metrics>,
    /// Events for the other nodes, to the sending task ([`send_events`]).
    outbox: mpsc::Sender<String>,
    outbox_rx: std::sync::Mutex<Option<mpsc::Receiver<String>>>,
    /// Events dropped because the outbox was full, since the last sent.
    dropped: AtomicU64,
    /// Set when other nodes' events may have been missed (the inbox was full,
    /// or the listening connection was re-made): the next round polls.
    missed: AtomicBool,
    /// Jobs completed by other processes' proofs, and since when (see
    /// [`completed_elsewhere`]).
    awaiting: std::sync::Mutex<std::collections::HashMap<JobId, Instant>>,
    /// Circuits other processes registered whose key files are not here
    /// (warned about once).
    unloadable: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Whether another live node had sessions at the last renewal: only then
    /// is a chunk given back (see [`give_back_chunks`]).
    others_have_sessions: AtomicBool,
    /// When this node joined (for logs, and its row).
    started: Instant,
    started_ms: u64,
}

/// A live node as `/v1/status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeView {
    pub id: String,
    /// The stratum URL its miners use.
    pub stratum: String,
    /// Its HTTP API's public URL.
    pub http: String,
    pub started_ms: u64,
    /// Authorized sessions and distinct workers at its last renewal (a second
    /// ago at most).
    pub sessions: u64,
    pub workers: u64,
}

/// An event one node tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A job was stored and is running.
    Job(JobId),
    /// A job ended (completed, expired, cancelled, failed).
    Ended(JobId),
    /// A share's proofs of statements `first .. first + count` were stored.
    Proofs { job: JobId, first: u64, count: u64 },
}

impl Event {
    fn encode(&self, node: &str) -> String {
        match self {
            Event::Job(j) => format!("{node} job {j}"),
            Event::Ended(j) => format!("{node} end {j}"),
            Event::Proofs { job, first, count } => format!("{node} proofs {job} {first} {count}"),
        }
    }

    /// The node that sent a payload and its event; `None` for a payload that
    /// is not one (ignored: anyone with the database's credentials can NOTIFY).
    fn decode(payload: &str) -> Option<(&str, Event)> {
        let mut words = payload.split(' ');
        let node = words.next()?;
        let kind = words.next()?;
        let job = JobId(words.next()?.to_owned());
        let event = match kind {
            "job" => Event::Job(job),
            "end" => Event::Ended(job),
            "proofs" => Event::Proofs {
                job,
                first: words.next()?.parse().ok()?,
                count: words.next()?.parse().ok()?,
            },
            _ => return None,
        };
        words.next().is_none().then_some((node, event))
    }
}

impl Cluster {
    /// Joins the cluster on the database `db` (at `url`, for the listening
    /// connection) as a new node, announcing the addresses its miners and
    /// clients reach it at.
    pub async fn join(
        db: PgPool,
        url: &str,
        lease: Duration,
        stratum: &str,
        http: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let node = format!("n{}", hex::encode(rand::random::<[u8; 6]>()));
        let (outbox, outbox_rx) = mpsc::channel(EVENT_QUEUE);
        let c = Cluster {
            outbox,
            outbox_rx: std::sync::Mutex::new(Some(outbox_rx)),
            dropped: AtomicU64::new(0),
            missed: AtomicBool::new(false),
            node,
            stratum: stratum.to_owned(),
            http: http.to_owned(),
            url: url.to_owned(),
            db,
            lease,
            leader: AtomicBool::new(false),
            wake: Notify::new(),
            metrics,
            unloadable: Default::default(),
            awaiting: Default::default(),
            others_have_sessions: AtomicBool::new(false),
            started: Instant::now(),
            started_ms: crate::circuits::now_ms(),
        };
        c.register().await?;
        info!(node = %c.node, "joined the pool's cluster on PostgreSQL");
        Ok(c)
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether this node holds the leader lock now.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }

    /// Makes the claimer look for wanted statements now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Tells the other nodes, without waiting: events are queued and sent by
    /// one task, those that queued together in one notification. When the
    /// queue is full (the database is slow or away) the event is dropped: the
    /// others' poll finds what it said within [`POLL`]. A failure is logged.
    pub async fn announce(&self, event: Event) {
        if self.outbox.try_send(event.encode(&self.node)).is_err()
            && self.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            warn!("the queue of news for the other pool processes is full; they learn it from their poll instead");
        }
    }

    /// Renews this node's lease, and records its sessions and workers online.
    async fn renew(&self, sessions: u64, workers: u64) -> Result<(), StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let n = conn
            .execute(
                "UPDATE nodes SET until = now() + make_interval(secs => $2), sessions = $3,
                 workers = $4 WHERE id = $1",
                &[
                    &self.node,
                    &self.lease.as_secs_f64(),
                    &(sessions as i64),
                    &(workers as i64),
                ],
            )
            .await?;
        if n == 0 {
            // Removed as dead (the lease ran out while the database was away,
            // and the leader cleared it): back in, with the claims it had lost
            // gone to others.
            self.register().await?;
        }
        let others = conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM nodes WHERE id <> $1 AND until > now() AND sessions > 0)",
                &[&self.node],
            )
            .await?;
        self.others_have_sessions
            .store(others.get::<_, bool>(0), Ordering::Relaxed);
        Ok(())
    }

    /// Adds this node's row (or renews it), with a fresh lease.
    async fn register(&self) -> Result<(), StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        conn.execute(
            "INSERT INTO nodes (id, stratum, http, started_ms, until)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
             ON CONFLICT (id) DO UPDATE SET until = EXCLUDED.until",
            &[
                &self.node,
                &self.stratum,
                &self.http,
                &(self.started_ms as i64),
                &self.lease.as_secs_f64(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Removes nodes whose lease ran out an hour ago and whatever claims they
    /// still hold (each restart is a new node: without this the table grows).
    async fn forget_dead_nodes(&self) -> Result<(), StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        conn.execute(
            "DELETE FROM claims WHERE node IN (
                 SELECT id FROM nodes WHERE until < now() - interval '1 hour')",
            &[],
        )
        .await?;
        conn.execute(
            "DELETE FROM nodes WHERE until < now() - interval '1 hour'",
            &[],
        )
        .await?;
        Ok(())
    }

    /// Every node whose lease is live: what `/v1/status` shows under
    /// `cluster.nodes` (ordered by start).
    pub async fn nodes(&self) -> Result<Vec<NodeView>, StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let rows = conn
            .query(
                "SELECT id, stratum, http, started_ms, sessions, workers FROM nodes
                 WHERE until > now() ORDER BY started_ms, id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| NodeView {
                id: r.get(0),
                stratum: r.get(1),
                http: r.get(2),
                started_ms: r.get::<_, i64>(3) as u64,
                sessions: r.get::<_, i64>(4) as u64,
                workers: r.get::<_, i64>(5) as u64,
            })
            .collect())
    }

    /// Leaves the cluster: this node's claims go back at once.
    async fn leave(&self) {
        let left = async {
            let conn = self.db.get().await.map_err(engine)?;
            conn.execute("DELETE FROM claims WHERE node = $1", &[&self.node])
                .await?;
            conn.execute("DELETE FROM nodes WHERE id = $1", &[&self.node])
                .await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = left {
            warn!(error = %e, "could not leave the cluster; this node's claims go back when its lease runs out");
        }
    }

    /// Forgets an ended job's claims (the node that ended it).
    pub async fn release_job(&self, job: &str) {
        if let Ok(conn) = self.db.get().await {
            if let Err(e) = conn
                .execute("DELETE FROM claims WHERE job = $1", &[&job])
                .await
            {
                debug!(error = %e, %job, "could not remove an ended job's claims");
            }
        }
    }

    /// Drops this node's claims on `chunks` of `job` (given back).
    async fn release(&self, job: &str, chunks: &[u64]) -> Result<(), StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let chunks: Vec<i64> = chunks.iter().map(|&c| c as i64).collect();
        let n = conn
            .execute(
                "DELETE FROM claims WHERE job = $1 AND node = $2 AND chunk = ANY($3)",
                &[&job, &self.node, &chunks],
            )
            .await?;
        self.metrics.cluster_given_back.inc_by(n);
        Ok(())
    }

    /// Claims up to `want` of `candidates` (chunks of `job`) that no live node
    /// holds; returns the chunks now held by this node.
    async fn claim(
        &self,
        job: &str,
        want: usize,
        candidates: &[u64],
    ) -> Result<Vec<u64>, StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let candidates: Vec<i64> = candidates.iter().map(|&c| c as i64).collect();
        let held: BTreeSet<i64> = conn
            .query(
                "SELECT c.chunk FROM claims c JOIN nodes n ON n.id = c.node
                 WHERE c.job = $1 AND c.chunk = ANY($2) AND c.node <> $3 AND n.until > now()",
                &[&job, &candidates, &self.node],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let free: Vec<i64> = candidates
            .into_iter()
            .filter(|c| !held.contains(c))
            .take(want)
            .collect();
        if free.is_empty() {
            return Ok(vec![]);
        }
        // Taken only where no live node holds it (another node may have taken
        // it since the read above); a chunk this node held before is its own.
        let rows = conn
            .query(
                "INSERT INTO claims (job, chunk, node) SELECT $1, c, $2 FROM unnest($3::BIGINT[]) AS c
                 ON CONFLICT (job, chunk) DO UPDATE SET node = EXCLUDED.node
                 WHERE claims.node = EXCLUDED.node OR NOT EXISTS (
                     SELECT 1 FROM nodes n WHERE n.id = claims.node AND n.until > now())
                 RETURNING chunk",
                &[&job, &self.node, &free],
            )
            .await?;
        let claimed: Vec<u64> = rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect();
        self.metrics.cluster_claims.inc_by(claimed.len() as u64);
        Ok(claimed)
    }

    /// The statements of `chunks` of `job` that have a stored proof.
    async fn proven_in(&self, job: &str, chunks: &[u64]) -> Result<Vec<u64>, StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let chunks: Vec<i64> = chunks.iter().map(|&c| c as i64).collect();
        let rows = conn
            .query(
                "SELECT idx FROM proofs WHERE job = $1 AND idx / $2 = ANY($3)",
                &[&job, &(CHUNK as i64), &chunks],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    /// How many proofs each of `jobs` has stored.
    async fn proof_counts(&self, jobs: &[&str]) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let rows = conn
            .query(
                "SELECT job, count(*) FROM proofs WHERE job = ANY($1) GROUP BY job",
                &[&jobs],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    /// The ids of the running jobs.
    async fn running_jobs(&self) -> Result<BTreeSet<String>, StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let rows = conn
            .query("SELECT id FROM jobs WHERE state = 'running'", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The ids of ended jobs the ledger has no settlement of (a process died
    /// between ending one and settling it).
    async fn unsettled_jobs(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let rows = conn
            .query(
                "SELECT j.id FROM jobs j WHERE j.state <> 'running' AND NOT EXISTS (
                     SELECT 1 FROM ledger_journal l WHERE l.key = 'settle/' || j.id)",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every statement of `job` with a stored proof.
    async fn proven_of(&self, job: &str) -> Result<Vec<u64>, StoreError> {
        let conn = self.db.get().await.map_err(engine)?;
        let rows = conn
            .query("SELECT idx FROM proofs WHERE job = $1", &[&job])
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }
}

/// Runs this node until shutdown: the lease, the claimer, the events, the
/// poll and (while it leads) the leader's sweep.
pub async fn run(pool: Arc<Pool>) {
    let Some(c) = pool.cluster() else { return };
    let (events, mut incoming) = mpsc::channel::<String>(EVENT_QUEUE);
    tokio::spawn(listen(pool.clone(), events));
    if let Some(outbox) = c.outbox_rx.lock().expect("never poisoned").take() {
        tokio::spawn(send_events(pool.clone(), outbox));
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut renewed, mut polled, mut swept) = (Instant::now(), Instant::now(), Instant::now());
    let mut gave_back = Instant::now();
    let mut failing = false;
    loop {
        let mut payloads = vec![];
        tokio::select! {
            _ = pool.shutdown().cancelled() => {
                c.leave().await;
                return;
            }
            _ = tick.tick() => {}
            _ = c.wake.notified() => {}
            Some(p) = incoming.recv() => payloads.push(p),
        }
        while let Ok(p) = incoming.try_recv() {
            payloads.push(p);
        }
        let resync = c.missed.swap(false, Ordering::Relaxed);
        for p in payloads.iter().flat_map(|p| p.split('\n')) {
            match Event::decode(p) {
                Some((node, _)) if node == c.node => {}
                Some((_, event)) => {
                    c.metrics.cluster_events.inc();
                    apply(&pool, event).await;
                }
                None => debug!(payload = %p, "not a zkpool event; ignored"),
            }
        }
        // Each round's database work; a failure is told once, and its end.
        let mut round: Result<(), StoreError> = Ok(());
        let mut lease_renewed = false;
        if renewed.elapsed() >= RENEW {
            renewed = Instant::now();
            let (sessions, workers) = (
                pool.dispatch().read(|s| s.sessions()) as u64,
                pool.dispatch().workers_online() as u64,
            );
            let timer = c.metrics.db_seconds.start_timer();
            round = round.and(c.renew(sessions, workers).await);
            timer.observe_duration();
            lease_renewed = round.is_ok();
        }
        if resync || polled.elapsed() >= POLL {
            polled = Instant::now();
            round = round.and(poll(&pool).await);
        }
        if c.is_leader() && swept.elapsed() >= LEADER_SWEEP {
            swept = Instant::now();
            match tokio::try_join!(c.running_jobs(), c.unsettled_jobs(), c.forget_dead_nodes()) {
                Ok((running, unsettled, ())) => {
                    let running: std::collections::HashSet<String> = running.into_iter().collect();
                    lifecycle::leader_sweep(&pool, &running, &unsettled).await
                }
                Err(e) => round = Err(e),
            }
        }
        if round.is_ok() {
            // The give-back scans every live task: once a second, not at
            // every claim round (about 7 ms at 20,000 tasks, BENCHMARKS.md).
            let give_back = gave_back.elapsed() >= GIVE_BACK_EVERY;
            if give_back {
                gave_back = Instant::now();
            }
            round = claim_wanted(&pool, give_back).await;
        } else {
            // No claims without the database: what lapsed here is ready here
            // again, as on one process.
            pool.dispatch()
                .with(|s| s.give_back(CHUNK, Instant::now(), GIVE_BACK_COOLDOWN, false));
        }
        match (round, failing) {
            (Err(e), false) => {
                warn!(error = %e, "the cluster's database work fails (lease, claims, polls): this process keeps its miners and goes on trying; its claims go to other processes if its lease runs out");
                failing = true;
            }
            (Ok(()), true) if lease_renewed => {
                info!("the cluster's database work succeeds again");
                failing = false;
            }
            _ => {}
        }
        finish_overdue(&pool).await;
    }
}

/// Most bytes of one notification's payload (PostgreSQL's limit is 8,000).
const PAYLOAD: usize = 7_000;

/// Sends the queued events: whatever queued while the last notification was
/// sent goes in the next, one event a line.
async fn send_events(pool: Arc<Pool>, mut outbox: mpsc::Receiver<String>) {
    let c = pool.cluster().expect("sending is a cluster's");
    while let Some(first) = outbox.recv().await {
        let mut payloads = vec![first];
        while let Ok(next) = outbox.try_recv() {
            let last = payloads.last_mut().expect("one at least");
            if last.len() + 1 + next.len() <= PAYLOAD {
                last.push('\n');
                last.push_str(&next);
            } else {
                payloads.push(next);
            }
        }
        let sent = async {
            let conn = c.db.get().await.map_err(engine)?;
            for p in &payloads {
                conn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, p])
                    .await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        match sent {
            Ok(()) => {
                let dropped = c.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    info!(dropped, "news for the other pool processes flows again; what was dropped they found by polling");
                }
            }
            Err(e) => {
                warn!(error = %e, "could not tell the other pool processes; they see it at their next poll")
            }
        }
    }
}

/// Applies another node's event.
async fn apply(pool: &Arc<Pool>, event: Event) {
    match event {
        Event::Job(id) => {
            if let Err(e) = adopt(pool, &id).await {
                warn!(job = %id, error = %e, "could not adopt a job another process stored; next poll");
            }
        }
        Event::Ended(id) => lifecycle::forget(pool, &id, "the job ended on another pool process"),
        Event::Proofs { job, first, count } => {
            let indices: Vec<u64> = (first..first.saturating_add(count)).collect();
            proven_elsewhere(pool, job, &indices);
        }
    }
}

/// Statements of `job` another process stored proofs of: done here too, and
/// this process's leases made only of them are cancelled (their rigs could
/// not be paid for them).
fn proven_elsewhere(pool: &Arc<Pool>, job: JobId, indices: &[u64]) {
    let (ended, done) = pool.dispatch().with(|s| {
        let ended = s.end_proven_elsewhere(&job, indices);
        (ended, s.mark_done(&job, indices))
    });
    if !ended.is_empty() {
        pool.dispatch().send_cancels(
            &ended,
            "its statements were proven on another of this pool's processes",
        );
    }
    if done {
        completed_elsewhere(pool, job);
    }
}

/// How long a job whose last statements another process proved is left to that
/// process to finish (assemble, store, settle) before this one does it.
const FINISH_GRACE: Duration = Duration::from_secs(5);

/// A job every statement of which is proven, the last ones by other processes:
/// the process whose share completed it finishes it (assembling and
/// aggregating once, not on every process). Should that process die first,
/// this one finishes it after [`FINISH_GRACE`] (ending a job is once either way).
fn completed_elsewhere(pool: &Pool, job: JobId) {
    let c = pool.cluster().expect("a cluster's");
    c.awaiting
        .lock()
        .expect("never poisoned")
        .entry(job)
        .or_insert_with(Instant::now);
}

/// Finishes the jobs [`completed_elsewhere`] whose grace ran out (a job the
/// other process finished meanwhile is only dropped here).
async fn finish_overdue(pool: &Arc<Pool>) {
    let c = pool.cluster().expect("a cluster's");
    let due: Vec<JobId> = {
        let mut awaiting = c.awaiting.lock().expect("never poisoned");
        let due: Vec<JobId> = awaiting
            .iter()
            .filter(|(_, since)| since.elapsed() >= FINISH_GRACE)
            .map(|(j, _)| j.clone())
            .collect();
        for j in &due {
            awaiting.remove(j);
        }
        due
    };
    // Not in this loop: a slow store must not hold up the lease renewal.
    for job in due {
        let pool = pool.clone();
        tokio::spawn(async move { lifecycle::finish(&pool, &job).await });
    }
}

/// Takes a running job stored by another node into this node's queue.
async fn adopt(pool: &Arc<Pool>, id: &str) -> Result<(), StoreError> {
    if pool.jobs().active(id).is_some() {
        return Ok(());
    }
    let Some(job) = pool.store().job(id).await? else {
        return Ok(());
    };
    if job.state != crate::jobs::JobState::Running {
        return Ok(());
    }
    if pool.circuits().get(&job.circuit_id).is_none() {
        sync_circuits(pool).await?;
    }
    let c = pool.cluster().expect("adopting is a cluster's");
    let done: BTreeSet<u64> = c.proven_of(id).await?.into_iter().collect();
    let id = job.id.clone();
    if lifecycle::adopt(pool, job, done) {
        c.wake();
    } else {
        completed_elsewhere(pool, id);
    }
    Ok(())
}

/// Loads the circuits other processes registered since this one started
/// (their key files are in the shared keys directory).
async fn sync_circuits(pool: &Arc<Pool>) -> Result<(), StoreError> {
    let stored = pool.store().circuits().await?;
    let new: Vec<_> = stored
        .into_iter()
        .filter(|r| pool.circuits().get(&r.id).is_none())
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let p = pool.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        new.into_iter()
            .map(|r| {
                let (id, name) = (r.id.clone(), r.name.clone());
                (id, name, p.circuits().load(r))
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("loading circuits does not panic");
    for (id, name, outcome) in loaded {
        match outcome {
            Ok(true) => {
                info!(circuit = %id, %name, "loaded a circuit another pool process registered")
            }
            Ok(false) => {
                let mut told = pool
                    .cluster()
                    .expect("syncing is a cluster's")
                    .unloadable
                    .lock()
                    .expect("never poisoned");
                if told.insert(id.to_string()) {
                    warn!(circuit = %id, %name, "a circuit another pool process registered has no key file here: give every process the same storage.data_dir (a shared volume); its jobs wait for it");
                }
            }
            Err(e) => {
                warn!(circuit = %id, %name, error = %e, "cannot load a circuit another pool process registered")
            }
        }
    }
    Ok(())
}

/// The safety net: adopts running jobs this node missed, drops jobs that
/// ended elsewhere, and marks statements done that other nodes proved.
async fn poll(pool: &Arc<Pool>) -> Result<(), StoreError> {
    let c = pool.cluster().expect("polling is a cluster's");
    // This node's jobs first: one it adds after this read is stored before it
    // is added, so it is never taken for a job that ended elsewhere.
    sync_circuits(pool).await?;
    let shared = pool.dispatch().read(|s| s.shared_jobs());
    let running = c.running_jobs().await?;
    for id in &running {
        if pool.jobs().active(id).is_none() {
            adopt(pool, id).await?;
        }
    }
    for (id, _) in &shared {
        if !running.contains(id.as_str()) {
            lifecycle::forget(pool, id, "the job ended on another pool process");
        }
    }
    let ids: Vec<&str> = shared
        .iter()
        .filter(|(id, _)| running.contains(id.as_str()))
        .map(|(id, _)| id.as_str())
        .collect();
    for (job, stored) in c.proof_counts(&ids).await? {
        let here = shared
            .iter()
            .find(|(id, _)| id.as_str() == job)
            .map(|(_, d)| *d)
            .unwrap_or(0);
        if stored > here {
            let proven = c.proven_of(&job).await?;
            proven_elsewhere(pool, JobId(job), &proven);
        }
    }
    Ok(())
}

/// Gives back the chunks this node's sessions do not prove
/// (`Scheduler::give_back`) and drops their claims.
async fn give_back_chunks(pool: &Arc<Pool>) -> Result<(), StoreError> {
    let c = pool.cluster().expect("giving back is a cluster's");
    // With no sessions on the other nodes there is nobody to give a chunk
    // to: its statements are ready here again at once, as on one process.
    let others = c.others_have_sessions.load(Ordering::Relaxed);
    let given = pool
        .dispatch()
        .with(|s| s.give_back(CHUNK, Instant::now(), GIVE_BACK_COOLDOWN, others));
    for (job, chunks) in given {
        // Should this fail, the chunks stay claimed by this node, which
        // takes them up again after the cooldown: nothing is lost.
        c.release(&job, &chunks).await?;
        info!(%job, chunks = ?chunks, cooldown_secs = GIVE_BACK_COOLDOWN.as_secs(), "gave back chunks this process's miners do not prove, for the other processes' miners");
    }
    Ok(())
}

/// Gives back (when `give_back`) what this node's sessions do not prove, then
/// claims chunks for the shared jobs its sessions want more of, and makes
/// their unproven statements ready here.
async fn claim_wanted(pool: &Arc<Pool>, give_back: bool) -> Result<(), StoreError> {
    let c = pool.cluster().expect("claiming is a cluster's");
    if give_back {
        give_back_chunks(pool).await?;
    }
    let wanted = pool
        .dispatch()
        .read(|s| s.wanted(CHUNK, MAX_CHUNKS, Instant::now()));
    for (job, want, candidates) in wanted {
        let timer = c.metrics.db_seconds.start_timer();
        let claimed = c.claim(&job, want, &candidates).await;
        timer.observe_duration();
        let claimed = claimed?;
        if claimed.is_empty() {
            continue;
        }
        // A chunk claimed here but not granted (this read failed) is claimed
        // again next round: a node's own claim is its own.
        let proven = c.proven_in(&job, &claimed).await?;
        let proven_set: BTreeSet<u64> = proven.iter().copied().collect();
        let ready: Vec<u64> = claimed
            .iter()
            .flat_map(|ch| ch * CHUNK..(ch + 1) * CHUNK)
            .filter(|i| !proven_set.contains(i))
            .collect();
        debug!(%job, chunks = claimed.len(), statements = ready.len(), "claimed");
        let done = pool.dispatch().with(|s| {
            let done = !proven.is_empty() && s.mark_done(&job, &proven);
            s.grant(&job, ready);
            done
        });
        if done {
            completed_elsewhere(pool, job);
        }
    }
    Ok(())
}

/// The listening connection: forwards the other nodes' events to the node
/// and holds the leader lock while it can. Reconnects when the connection is
/// lost (the lock goes with it, and leadership is given up at once).
async fn listen(pool: Arc<Pool>, events: mpsc::Sender<String>) {
    let c = pool.cluster().expect("listening is a cluster's");
    loop {
        match tokio_postgres::connect(&c.url, NoTls).await {
            Ok((client, mut connection)) => {
                let (lost, mut gone) = oneshot::channel::<()>();
                let forward = events.clone();
                let c2 = pool.clone();
                tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                // Never wait here: the connection is read only
                                // while this loop runs. A full inbox means the
                                // node is behind; it polls instead.
                                if forward.try_send(n.payload().to_owned()).is_err() {
                                    if let Some(c) = c2.cluster() {
                                        c.missed.store(true, Ordering::Relaxed);
                                        c.wake();
                                    }
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(error = %e, "the listening connection to PostgreSQL failed");
                                break;
                            }
                        }
                    }
                    let _ = lost.send(());
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        // Events sent while this node was not listening.
                        c.missed.store(true, Ordering::Relaxed);
                        c.wake();
                        loop {
                            if !c.is_leader() {
                                match client
                                    .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
                                    .await
                                {
                                    Ok(row) if row.get::<_, bool>(0) => {
                                        c.leader.store(true, Ordering::Relaxed);
                                        info!(node = %c.node, after_secs = c.started.elapsed().as_secs(), "this process leads the cluster: it settles left-over jobs and runs automatic payouts");
                                    }
                                    Ok(_) => {}
                                    Err(e) => {
                                        warn!(error = %e, "could not ask for the leader lock");
                                        break;
                                    }
                                }
                            }
                            tokio::select! {
                                _ = pool.shutdown().cancelled() => {
                                    c.leader.store(false, Ordering::Relaxed);
                                    return;
                                }
                                _ = &mut gone => break,
                                _ = tokio::time::sleep(RENEW) => {}
                            }
                        }
                    }
                    Err(e) => warn!(error = %e, "could not LISTEN for the other pool processes"),
                }
                if c.leader.swap(false, Ordering::Relaxed) {
                    warn!(node = %c.node, "lost the listening connection: no longer the leader");
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot open the listening connection to PostgreSQL; retrying");
            }
        }
        tokio::select! {
            _ = pool.shutdown().cancelled() => return,
            _ = tokio::time::sleep(RENEW) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_foreign_payloads_are_refused() {
        let events = [
            Event::Job(JobId("j1".into())),
            Event::Ended(JobId("j2".into())),
            Event::Proofs {
                job: JobId("j3".into()),
                first: 16,
                count: 4,
            },
        ];
        for e in events {
            let text = e.encode("nabc");
            assert_eq!(Event::decode(&text), Some(("nabc", e)));
        }
        for bad in [
            "",
            "n1",
            "n1 job",
            "n1 sing j1",
            "n1 proofs j1 x 4",
            "n1 proofs j1 1",
            "n1 job j1 extra",
        ] {
            assert_eq!(Event::decode(bad), None, "{bad:?}");
        }
    }
}
