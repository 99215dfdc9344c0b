//! The running pool: shared state, dispatch of tasks to sessions, handling of
//! submitted proofs, assembly of results, recovery after a restart, and the
//! accept loops with graceful shutdown.

use std::{
    collections::{BTreeSet, HashSet},
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::{Duration, Instant},
};

use dashmap::DashMap;
use payouts::{Ledger, LedgerError, ShareCredit, Signer};
use stratum::{ErrorCode, Notification, RpcError, Submit, SubmitResult, ToMiner};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};
use zk::{field::fr_to_string, CircuitSpec, ProofBytes};

use crate::{
    bans::{Bans, Strike, Target},
    circuits::{now_ms, Circuit, CircuitRecord, Registry},
    config::Config,
    jobs::{self, JobError, JobRecord, JobRequest, JobState, StoredProof},
    metrics::{self, Metrics},
    scheduler::{JobEntry, SchedConfig, Scheduler, SessionKey, Task, TaskReject},
    store::Store,
    verifier::{Verifier, MAX_BATCH_PROOFS},
};

/// Outgoing messages a session may have queued. When full the session's miner is
/// not reading: a task offered to it is taken back and given to someone else.
pub const SESSION_QUEUE: usize = 32;

/// What is queued for a session's connection.
#[derive(Debug)]
pub enum Outbox {
    /// A message to write as it is.
    Send(ToMiner),
    /// A task leased to the session: the session's own task builds and writes its
    /// `mining.notify`, so a burst of leases is encoded on every core rather than
    /// in the dispatch loop.
    Lease(Box<Task>),
}

/// One connected, authorized session, as dispatch sees it.
pub struct SessionEntry {
    pub tx: mpsc::Sender<Outbox>,
    pub worker: String,
    pub peer: SocketAddr,
}

/// State shared by sessions, the HTTP API and the background loops.
pub struct PoolState {
    pub config: Config,
    pub store: Store,
    pub ledger: Ledger,
    /// Signs a receipt for every accepted share.
    pub signer: Signer,
    pub registry: Registry,
    pub scheduler: Mutex<Scheduler>,
    pub sessions: DashMap<SessionKey, SessionEntry>,
    /// Active jobs, for the statements a notify carries.
    pub jobs: DashMap<String, Arc<JobRecord>>,
    pub verifier: Verifier,
    /// Base URL of the HTTP API as miners reach it.
    pub public_url: String,
    pub shutdown: CancellationToken,
    pub next_session: AtomicU64,
    pub metrics: Arc<Metrics>,
    pub bans: Mutex<Bans>,
    /// The stratum port's TLS acceptor, when `stratum.tls_cert` is set.
    pub tls: Option<stratum::tls::TlsAcceptor>,
    /// The HTTP API's TLS acceptor, when `http.tls_cert` is set.
    pub http_tls: Option<stratum::tls::TlsAcceptor>,
    /// Rejected submits per worker since the pool started.
    pub rejected: DashMap<String, u64>,
    /// Sessions whose connection closed with leased tasks, by resume token, until
    /// a reconnecting rig resumes them or `stratum.resume_grace_secs` pass.
    pub parked: DashMap<String, Parked>,
    /// Request rates and blocking work in flight, per caller (`[limits]`).
    pub limits: crate::limits::Limits,
    /// Statements a submit in flight is storing a proof of: a second submit of one
    /// of them meanwhile is refused (its proof would be paid twice).
    pub claims: DashMap<String, ()>,
}

/// One submit's claims on statements, given back when it is dropped (the share
/// is stored, with its statements' proven marks, or it is not stored at all).
struct Claim<'a> {
    claims: &'a DashMap<String, ()>,
    held: Vec<String>,
}

impl<'a> Claim<'a> {
    fn new(claims: &'a DashMap<String, ()>) -> Self {
        Claim {
            claims,
            held: vec![],
        }
    }

    /// Claims `key`; false when another submit holds it.
    fn take(&mut self, key: &str) -> bool {
        match self.claims.entry(key.to_owned()) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(());
                self.held.push(key.to_owned());
                true
            }
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        for k in &self.held {
            self.claims.remove(k);
        }
    }
}

/// What a `mining.authorize` password says about the worker's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The account has a worker token and this is it: the session is the account.
    Verified,
    /// The account has no token and the pool does not require one: anyone may
    /// use the name, so the session is only its address.
    Open,
    /// The account needs a token and none was given.
    Missing,
    /// A token was given and it is not the account's.
    Wrong,
    /// The token store could not be read: refused.
    Fault,
}

/// Who an authorized session is: the worker name it gave, the address it came
/// from, and whether it proved the name is its own (the account's worker token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub worker: String,
    pub ip: std::net::IpAddr,
    pub verified: bool,
}

impl Authorized {
    /// The account (the worker name before its dot).
    pub fn account(&self) -> &str {
        payouts::worker_addr(&self.worker)
    }

    /// What the session's failures count against: its account when it proved
    /// it, else its address (a name anyone can type counts for nothing).
    pub fn identity(&self) -> String {
        if self.verified {
            format!("account:{}", self.account())
        } else {
            format!("ip:{}", self.ip)
        }
    }

    /// The account the session proved, if any.
    pub fn proven_account(&self) -> Option<String> {
        self.verified.then(|| self.account().to_owned())
    }
}

/// Bytes of a `mining.notify` line around its statements (ids, key reference,
/// framing): what a statement may not take of the line limit.
pub const NOTIFY_OVERHEAD: usize = 2048;

/// A closed session waiting to be resumed.
#[derive(Debug, Clone)]
pub struct Parked {
    pub key: SessionKey,
    pub worker: String,
    pub until: Instant,
}

/// Why the pool could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be opened.
    #[error("cannot open data directory {path}: {detail}")]
    Storage { path: String, detail: String },
    /// The built-in circuits cannot be set up.
    #[error(transparent)]
    Registry(#[from] crate::circuits::RegistryError),
    #[error("cannot read local address: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key cannot be used.
    #[error("stratum TLS: {0}")]
    Tls(#[from] stratum::tls::TlsError),
}

fn lock(s: &Mutex<Scheduler>) -> std::sync::MutexGuard<'_, Scheduler> {
    s.lock()
        .expect("scheduler lock is never poisoned: no code panics while holding it")
}

impl PoolState {
    /// The built-in circuits of this configuration.
    pub fn builtins(config: &Config) -> Vec<CircuitSpec> {
        vec![
            CircuitSpec::Chain {
                steps: config.circuits.chain_steps,
            },
            CircuitSpec::Preimage,
        ]
    }

    /// Distinct worker names with an authorized session.
    pub fn workers_online(&self) -> usize {
        self.sessions
            .iter()
            .map(|e| e.worker.clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    /// Offers ready tasks to sessions with free slots.
    pub fn dispatch(&self) {
        let tasks = lock(&self.scheduler).poll_assignments(Instant::now());
        for task in tasks {
            let (session, id) = (task.session, task.id.clone());
            let delivered = match self.sessions.get(&session) {
                Some(s) => s.tx.try_send(Outbox::Lease(Box::new(task))).is_ok(),
                None => false,
            };
            if !delivered {
                // The session is gone or not reading: take the task back; the next
                // dispatch (the session's exit, or any other event) hands it out.
                lock(&self.scheduler).release(session, &id);
            }
        }
    }

    /// The line for a task a session was handed; `None` (and the task given back
    /// to the scheduler) when its job ended in between.
    pub(crate) fn lease_line(&self, task: &Task) -> Option<ToMiner> {
        match self.notify_for(task) {
            Some(n) => Some(ToMiner::Notification(n)),
            None => {
                lock(&self.scheduler).release(task.session, &task.id);
                None
            }
        }
    }

    pub(crate) fn notify_for(&self, t: &Task) -> Option<Notification> {
        let job = self.jobs.get(&t.job)?.clone();
        let circuit = self.registry.get(&job.circuit_id)?;
        let statements = t
            .indices()
            .map(|i| {
                let s = &job.statements[i as usize];
                stratum::WireStatement {
                    index: i,
                    public: s.public.iter().map(fr_to_string).collect(),
                    private: s.private.iter().map(fr_to_string).collect(),
                    input: s.input.clone(),
                }
            })
            .collect();
        Some(Notification::Notify(stratum::Notify {
            task: t.id.as_str().into(),
            job: job.id.as_str().into(),
            circuit: job.circuit_id.as_str().into(),
            spec: serde_json::to_value(job.spec).expect("specs serialise"),
            key: stratum::KeyRef {
                hash: circuit.record.proving_key_hash.clone(),
                url: format!(
                    "{}/v1/circuits/{}/proving-key",
                    self.public_url, circuit.record.id
                ),
                size: circuit.record.proving_key_bytes,
            },
            statements,
            lease_secs: t.lease.as_secs().max(1),
            work_per_proof: job.work_per_proof,
        }))
    }

    /// Most statements per task for a job: what fits in one line each way.
    fn max_per_task(&self, job: &JobRecord) -> usize {
        let widest = job
            .statements
            .iter()
            .map(jobs::wire_size)
            .max()
            .unwrap_or(0);
        // A submitted proof costs ~560 bytes (512 hex digits of an uncompressed
        // proof, as zkminer sends them, plus framing).
        let per = widest.max(576);
        (self.config.stratum.max_line.saturating_sub(NOTIFY_OVERHEAD) / per).max(1)
    }

    /// What one job may cost the pool to prepare.
    pub fn budget(&self) -> jobs::Budget {
        let l = &self.config.limits;
        jobs::Budget {
            max_statements: self.config.http.max_job_statements,
            native_hashes: l.job_native_hashes,
            witness_fuel: l.job_witness_fuel,
            max_deadline_secs: l.max_deadline_secs,
            statement_bytes: self.config.stratum.max_line.saturating_sub(NOTIFY_OVERHEAD),
            min_price_per_mwork: self.config.payouts.min_price(),
        }
    }

    /// The payout policy of one job: the pool's, or PROP for a job whose work is
    /// not pooled (a client's circuit, or a job below the pool-wide price).
    pub fn policy_for(&self, job: &JobRecord) -> payouts::Policy {
        let mut p = self.config.payouts.policy();
        if !job.pooled {
            p.scheme = payouts::Scheme::Prop;
        }
        p
    }

    fn job_entry(&self, job: &JobRecord, done: BTreeSet<u64>) -> JobEntry {
        JobEntry {
            id: job.id.clone(),
            circuit_id: job.circuit_id.clone(),
            circuit_name: job.circuit_name.clone(),
            deadline_ms: job.deadline_ms,
            created_ms: job.created_ms,
            total: job.statements.len() as u64,
            done,
            max_per_task: self.max_per_task(job),
            client: job.client.clone(),
            allow: job.allow.as_ref().map(|a| a.iter().cloned().collect()),
        }
    }

    /// Validates, escrows its reward, persists (durably) and queues a client's job.
    /// `client` is the client the request's API key belongs to, if any; `ip` the
    /// address it came from (what a keyless caller is counted as).
    pub async fn submit_job(
        self: &Arc<Self>,
        mut req: JobRequest,
        client: Option<String>,
        ip: std::net::IpAddr,
    ) -> Result<JobRecord, JobError> {
        match (&client, &req.client) {
            (None, _) if req.reward > 0 => return Err(JobError::Unauthorized(format!(
                "a job with a reward ({}) is paid from a client balance: send Authorization: Bearer <client API key> (the operator creates one with `zkpool clients add NAME`)",
                req.reward
            ))),
            (None, _) if self.config.payouts.require_client_key => return Err(JobError::Unauthorized(
                "this pool takes jobs from registered clients only: send Authorization: Bearer <client API key> (the operator creates one with `zkpool clients add NAME`)".into(),
            )),
            (None, Some(named)) if named != jobs::ANONYMOUS => return Err(JobError::Unauthorized(format!(
                "a job in the name of client {named:?} needs that client's API key (Authorization: Bearer); leave \"client\" out to submit anonymously"
            ))),
            (Some(id), Some(named)) if id != named => return Err(JobError::Forbidden(format!(
                "the API key belongs to client {id:?}, not {named:?}: leave \"client\" out or name your own"
            ))),
            (Some(id), _) => req.client = Some(id.clone()),
            _ => {}
        }
        let caller = match &client {
            Some(c) => crate::limits::Caller::Client(c.clone()),
            None => crate::limits::Caller::Address(ip),
        };
        self.limits
            .job(&caller)
            .map_err(|e| JobError::TooMany(e.0))?;
        let circuit = self
            .registry
            .resolve(&req.circuit)
            .ok_or_else(|| JobError::UnknownCircuit(req.circuit.clone()))?;
        let preparing = self
            .limits
            .prepare(&caller, std::time::Duration::from_secs(30))
            .await
            .map_err(|e| JobError::TooMany(e.0))?;
        let budget = self.budget();
        let job = tokio::task::spawn_blocking(move || jobs::build(req, &circuit, &budget))
            .await
            .map_err(|e| JobError::Internal(format!("job could not be prepared: {e}")))??;
        drop(preparing);
        if job.reward > 0 {
            // Escrow first: if the pool dies before the job is stored, the next start
            // finds an escrow without a job and refunds it.
            self.ledger
                .escrow(&job.id, &job.client, job.reward)
                .map_err(|e| match e {
                    LedgerError::Insufficient { have, need, .. } => JobError::PaymentRequired {
                        client: job.client.clone(),
                        have,
                        need,
                    },
                    e => JobError::Internal(format!("the reward could not be escrowed: {e}")),
                })?;
        }
        let unavailable = |e: crate::store::StoreError| {
            JobError::Unavailable(format!(
                "the job could not be stored ({e}); nothing was charged for it if its reward is refunded at the pool's next start: try again"
            ))
        };
        // Statements proven before (on any job) are answered from the pool's
        // proofs at once: never leased, never paid again.
        let cached = self.cached_statements(&job).map_err(unavailable)?;
        self.store.put_job(&job).map_err(unavailable)?;
        if !cached.is_empty() {
            self.store
                .put_proofs(&job.id, &cached)
                .map_err(unavailable)?;
        }
        self.store.flush().await.map_err(unavailable)?;
        info!(job = %job.id, client = %job.client, circuit = %job.circuit_name, statements = job.statements.len(), proven_before = cached.len(), reward = job.reward, pooled = job.pooled, "job accepted");
        self.metrics.jobs_accepted.inc();
        self.jobs.insert(job.id.clone(), Arc::new(job.clone()));
        let entry = self.job_entry(&job, cached.iter().map(|(i, _)| *i).collect());
        if !lock(&self.scheduler).add_job(entry) {
            // Every statement was proven before: the result is ready now.
            self.finish_job(&job.id).await;
        }
        self.dispatch();
        Ok(job)
    }

    /// The statements of a new job that are proven already, with their proofs.
    fn cached_statements(
        &self,
        job: &JobRecord,
    ) -> Result<Vec<(u64, StoredProof)>, crate::store::StoreError> {
        let mut out = vec![];
        for (i, s) in job.statements.iter().enumerate() {
            let key = crate::store::statement_key(&job.circuit_id, &s.public);
            if let Some(proof) = self.store.proven(&key)? {
                out.push((i as u64, StoredProof::cached(proof)));
            }
        }
        Ok(out)
    }

    /// Checks, verifies and credits a submit; the answer to send. Rejections are
    /// counted per worker for its page.
    pub async fn handle_submit(
        self: &Arc<Self>,
        key: SessionKey,
        who: &Authorized,
        submit: Submit,
    ) -> Result<SubmitResult, RpcError> {
        let r = self.check_and_credit(key, who, submit).await;
        if r.is_err() {
            *self.rejected.entry(who.worker.clone()).or_default() += 1;
        }
        r
    }

    async fn check_and_credit(
        self: &Arc<Self>,
        key: SessionKey,
        who: &Authorized,
        submit: Submit,
    ) -> Result<SubmitResult, RpcError> {
        let worker = who.worker.as_str();
        // Cheap checks first: a banned worker or address gets no pairing computed.
        let targets = self.ban_targets(who);
        if let Some(e) = self.ban_on(who) {
            return Err(self.reject(ErrorCode::Banned, e));
        }
        let indices: Vec<u64> = submit.proofs.iter().map(|p| p.index).collect();
        let task = lock(&self.scheduler)
            .check_submit(key, &submit.task.0, &indices)
            .map_err(|e| self.reject(task_code(&e), e.to_string()))?;
        let job = self.jobs.get(&task.job).map(|j| j.clone()).ok_or_else(|| {
            self.reject(
                ErrorCode::StaleTask,
                format!("job {} is no longer active", task.job),
            )
        })?;
        let circuit = self.registry.get(&job.circuit_id).ok_or_else(|| {
            self.reject(
                ErrorCode::UnknownCircuit,
                format!("circuit {} is not registered", job.circuit_id),
            )
        })?;

        let mut proofs = Vec::with_capacity(submit.proofs.len());
        let mut decode_failures = vec![];
        for p in &submit.proofs {
            match ProofBytes::from_hex(&p.proof) {
                Ok(b) => proofs.push((p.index, b)),
                Err(e) => decode_failures.push(format!("statement {}: {e}", p.index)),
            }
        }
        let failures = if decode_failures.is_empty() {
            let items = proofs
                .iter()
                .map(|(i, b)| (job.statements[*i as usize].public.clone(), b.clone()))
                .collect();
            let verdicts = self
                .verifier
                .verify(&circuit.record.id, circuit.verifier.clone(), items)
                .await
                .map_err(|e| {
                    self.reject(ErrorCode::Busy, format!("{e}; reconnect and submit again"))
                })?;
            proofs
                .iter()
                .zip(verdicts)
                .filter_map(|((i, _), v)| v.err().map(|e| format!("statement {i}: {e}")))
                .collect()
        } else {
            decode_failures
        };
        if !failures.is_empty() {
            lock(&self.scheduler).fail(key, &task.id);
            self.fail_exhausted_jobs();
            self.dispatch();
            warn!(%worker, task = %task.id, first = %failures[0], "proofs rejected");
            let summary = format!(
                "{} of {} proofs rejected; {}",
                failures.len(),
                indices.len(),
                failures[0]
            );
            let strike = self
                .bans
                .lock()
                .expect("ban lock is never poisoned")
                .strike(&targets, Instant::now());
            let mut e = match strike {
                Strike::Warned { remaining } => self.reject(
                    ErrorCode::InvalidProof,
                    format!(
                        "{summary} (warning: {remaining} more invalid submit(s) within {} s ban this worker{})",
                        self.config.bans.window_secs,
                        if who.verified { "" } else { " at this address" }
                    ),
                ),
                Strike::Banned { for_ } => {
                    self.metrics.bans.inc();
                    warn!(%worker, ip = %who.ip, secs = for_.as_secs(), "banned for invalid work");
                    self.reject(
                        ErrorCode::Banned,
                        format!("{summary}; too many invalid submits: banned for {} s", for_.as_secs()),
                    )
                }
            };
            e.data = Some(serde_json::json!({ "failures": failures }));
            return Err(e);
        }

        // A statement is proven once on this pool, whatever the job: claim each of
        // the task's statements (a statement proven before, or claimed by a submit
        // in flight, is taken). One proven meanwhile (by another job, or this is a
        // copy of a proof someone else made) is not paid again. The claim is held
        // in memory until the share is stored, and written with it.
        let keys: Vec<String> = proofs
            .iter()
            .map(|(i, _)| {
                crate::store::statement_key(&job.circuit_id, &job.statements[*i as usize].public)
            })
            .collect();
        let mut claim = Claim::new(&self.claims);
        let mut taken = vec![];
        for (k, (i, _)) in keys.iter().zip(&proofs) {
            match self.store.proven(k) {
                Ok(None) if claim.take(k) => {}
                Ok(_) => taken.push(*i),
                Err(e) => {
                    lock(&self.scheduler).release(key, &task.id);
                    self.dispatch();
                    error!(error = %e, task = %task.id, "cannot read proven statements; statements re-queued");
                    return Err(self.reject(ErrorCode::Internal, "the pool could not store this share; the task was re-queued, nothing is credited".into()));
                }
            }
        }
        if !taken.is_empty() {
            drop(claim);
            return Err(self.already_proven(key, &task, &job, &taken).await);
        }
        let completion = match lock(&self.scheduler).complete(key, &task.id, Instant::now()) {
            Ok(c) => c,
            Err(e) => return Err(self.reject(task_code(&e), e.to_string())),
        };
        let at_ms = now_ms();
        let stored: Vec<(u64, StoredProof)> = proofs
            .into_iter()
            .map(|(i, proof)| {
                (
                    i,
                    StoredProof {
                        proof,
                        worker: worker.to_owned(),
                        task: task.id.clone(),
                        at_ms,
                        cached: false,
                    },
                )
            })
            .collect();
        let work = job.work_per_proof * task.count;
        let credit = ShareCredit {
            worker: worker.to_owned(),
            job: job.id.clone(),
            task: task.id.clone(),
            first_statement: task.first,
            proofs: task.count,
            work,
            at_ms,
            escrow_only: !job.pooled,
        };
        let proven: Vec<(&String, &ProofBytes)> = keys
            .iter()
            .zip(stored.iter().map(|(_, p)| &p.proof))
            .collect();
        let credited = match self.persist_share(&job, &stored, &credit, &proven).await {
            Ok(c) => Ok(c),
            Err(e) => Err(match e.downcast::<LedgerError>() {
                Ok(LedgerError::Insufficient { have, need, .. }) => {
                    error!(task = %task.id, have, need, "PPS funds cannot pay a verified share; add funds with `zkpool pool fund`");
                    format!("the pool's PPS funds ({have}) cannot pay this share ({need}); the task was re-queued and nothing is credited: tell the operator")
                }
                Ok(e) => {
                    error!(error = %e, task = %task.id, "could not credit a verified share; statements re-queued");
                    "the pool could not store this share; the task was re-queued, nothing is credited".into()
                }
                Err(e) => {
                    error!(error = %e, task = %task.id, "could not store a verified share; statements re-queued");
                    "the pool could not store this share; the task was re-queued, nothing is credited".into()
                }
            }),
        };
        let credited = match credited {
            Ok(c) => c,
            Err(message) => {
                for k in &keys {
                    let _ = self.store.unclaim_proven(k);
                }
                let _ = self.store.remove_proofs(&job.id, task.indices());
                let done = self
                    .store
                    .job_proofs(&job.id)
                    .map(|v| v.into_iter().map(|(i, _)| i).collect())
                    .unwrap_or_default();
                let entry = self.job_entry(&job, done);
                lock(&self.scheduler).reopen(&task, Some(entry));
                self.dispatch();
                return Err(self.reject(ErrorCode::Internal, message));
            }
        };
        if let Some(twin) = &completion.cancelled {
            info!(task = %task.id, twin = %twin.id, worker = %twin.worker, "the first of a task and its backup finished; the other is cancelled");
            self.send_cancels(
                std::slice::from_ref(twin),
                "its twin lease (a backup) finished first",
            );
        }
        self.metrics.shares.with_label_values(&["accepted"]).inc();
        self.metrics.proofs_credited.inc_by(task.count);
        self.metrics.work_credited.inc_by(work);
        self.dispatch();
        if completion.job_done {
            let state = self.clone();
            tokio::spawn(async move { state.finish_job(&job.id).await });
        }
        let receipt = self.signer.sign(credited.receipt);
        Ok(SubmitResult {
            accepted: task.count as u32,
            work,
            receipt: Some(serde_json::to_value(&receipt).expect("receipts serialise")),
        })
    }

    /// A submit whose statements (some of them) were proven meanwhile: the task
    /// goes back without blame, the proven statements are filled from the proofs
    /// the pool has, the rest are proven again; nothing is credited.
    async fn already_proven(
        self: &Arc<Self>,
        key: SessionKey,
        task: &Task,
        job: &JobRecord,
        taken: &[u64],
    ) -> RpcError {
        let mut filled = vec![];
        for &i in taken {
            let k =
                crate::store::statement_key(&job.circuit_id, &job.statements[i as usize].public);
            if let Ok(Some(proof)) = self.store.proven(&k) {
                filled.push((i, StoredProof::cached(proof)));
            }
        }
        let stored =
            self.store.put_proofs(&job.id, &filled).is_ok() && self.store.flush().await.is_ok();
        let job_done = {
            let mut sched = lock(&self.scheduler);
            sched.release(key, &task.id);
            stored && sched.mark_done(&job.id, &filled.iter().map(|(i, _)| *i).collect::<Vec<_>>())
        };
        if job_done {
            let state = self.clone();
            let id = job.id.clone();
            tokio::spawn(async move { state.finish_job(&id).await });
        }
        self.dispatch();
        info!(task = %task.id, statements = ?taken, "statements proven before the submit (another job, or a copied proof); not credited");
        self.reject(
            ErrorCode::StaleTask,
            format!(
                "statement(s) {taken:?} of task {} were proven before this submit (by another job with the same statement, or this is a copy of someone else's proof): a statement is paid once; nothing is credited and the task is withdrawn",
                task.id
            ),
        )
    }

    async fn persist_share(
        &self,
        job: &JobRecord,
        stored: &[(u64, StoredProof)],
        credit: &ShareCredit,
        proven: &[(&String, &ProofBytes)],
    ) -> anyhow::Result<payouts::Credited> {
        // Proofs before the credit, the statements' proven marks after it: sled
        // recovers a prefix of its log, so a credit that survives a crash always
        // has its proofs (see `recover`), and a proven mark always its credit
        // (`recover` writes the marks of credited proofs a crash cut off).
        self.store.put_proofs(&job.id, stored)?;
        let credited = self.ledger.credit(credit, &self.policy_for(job))?;
        if !credited.new {
            warn!(job = %job.id, first = credit.first_statement, "share was already in the ledger; not credited twice");
        }
        for (k, p) in proven {
            self.store.claim_proven(k, p)?;
        }
        self.store.flush().await?;
        Ok(credited)
    }

    /// Settles a completed or expired job in the ledger (idempotent) and flushes.
    pub async fn settle(&self, job: &JobRecord) {
        let completed = job.state == JobState::Completed;
        match self.ledger.settle(
            &job.id,
            &job.client,
            job.total_work(),
            completed,
            &self.policy_for(job),
        ) {
            Ok(s) => {
                if let Err(e) = self.ledger.flush().await {
                    error!(job = %job.id, error = %e, "settlement not flushed; checked again at the next start");
                }
                info!(job = %job.id, earned = s.earned, fee = s.fee, refund = s.refund, workers = s.parts.len(), "job settled");
            }
            Err(e) => {
                error!(job = %job.id, error = %e, "could not settle; retried at the next start")
            }
        }
    }

    /// What `password` says about `worker`'s account (see [`TokenCheck`]).
    pub fn token_check(&self, worker: &str, password: Option<&str>) -> TokenCheck {
        match self
            .store
            .check_worker_token(payouts::worker_addr(worker), password)
        {
            Ok(Some(true)) => TokenCheck::Verified,
            Ok(Some(false)) if password.is_some_and(|p| !p.is_empty()) => TokenCheck::Wrong,
            Ok(Some(false)) => TokenCheck::Missing,
            Ok(None) if self.config.stratum.require_worker_token => TokenCheck::Missing,
            Ok(None) => TokenCheck::Open,
            Err(e) => {
                error!(error = %e, "cannot read worker tokens; refusing authorize");
                TokenCheck::Fault
            }
        }
    }

    /// What a session's invalid work counts against (see `bans`): its name when
    /// it proved the name is its own, else its name at its address; and its
    /// address when `bans.per_ip` is on.
    pub fn ban_targets(&self, who: &Authorized) -> Vec<Target> {
        let mut t = vec![if who.verified {
            Target::Worker(who.worker.clone())
        } else {
            Target::WorkerAt(who.worker.clone(), who.ip)
        }];
        if self.config.bans.per_ip {
            t.push(Target::Ip(who.ip));
        }
        t
    }

    /// The message for a ban on `who` (its targets, or its address), if any.
    pub fn ban_on(&self, who: &Authorized) -> Option<String> {
        let mut targets = self.ban_targets(who);
        if !self.config.bans.per_ip {
            targets.push(Target::Ip(who.ip));
        }
        self.ban_error(&targets)
    }

    /// The message for a banned target among `targets`, if any.
    pub fn ban_error(&self, targets: &[Target]) -> Option<String> {
        let (who, left) = self
            .bans
            .lock()
            .expect("ban lock is never poisoned")
            .banned(targets, Instant::now())?;
        Some(format!(
            "{} is banned for {} more s after repeated invalid proofs; wait, or ask the pool operator",
            who.key(),
            left.as_secs().max(1)
        ))
    }

    fn reject(&self, code: ErrorCode, message: String) -> RpcError {
        self.metrics
            .shares
            .with_label_values(&[metrics::verdict(code)])
            .inc();
        RpcError::new(code, message)
    }

    /// Assembles, checks and stores a job's result once every statement is proven.
    pub async fn finish_job(self: &Arc<Self>, job_id: &str) {
        let Some(job) = self.store.job(job_id).ok().flatten() else {
            return;
        };
        let Some(circuit) = self.registry.get(&job.circuit_id) else {
            error!(job = %job_id, "cannot assemble: circuit {} is not registered", job.circuit_id);
            return;
        };
        let store = self.store.clone();
        let outcome = tokio::task::spawn_blocking(move || -> anyhow::Result<JobRecord> {
            let proofs = store.job_proofs(&job.id)?;
            let result = jobs::assemble(&job, &circuit, proofs)?;
            store.put_result(&job.id, &result)?;
            let mut job = job;
            job.state = JobState::Completed;
            job.completed_ms = Some(now_ms());
            store.put_job(&job)?;
            Ok(job)
        })
        .await;
        match outcome {
            Ok(Ok(job)) => {
                if let Err(e) = self.store.flush().await {
                    error!(job = %job_id, error = %e, "result stored but not flushed");
                }
                self.settle(&job).await;
                self.jobs.remove(job_id);
                self.metrics.jobs_completed.inc();
                if let Some(done) = job.completed_ms {
                    self.metrics
                        .job_seconds
                        .observe(done.saturating_sub(job.created_ms) as f64 / 1000.0);
                }
                info!(job = %job_id, proofs = job.statements.len(), "job completed");
            }
            Ok(Err(e)) => {
                error!(job = %job_id, error = %e, "could not assemble the result; retried at next start")
            }
            Err(e) => error!(job = %job_id, error = %e, "result assembly panicked"),
        }
    }

    /// Tells each session to stop work on its tasks among `tasks`: one `mining.cancel`
    /// per session, listing all of them. Best effort: a session that is gone or not
    /// reading loses nothing by missing it (its proofs would be stale).
    pub fn send_cancels(&self, tasks: &[Task], reason: &str) {
        let mut by_session: std::collections::BTreeMap<SessionKey, Vec<stratum::TaskId>> =
            Default::default();
        for t in tasks {
            by_session
                .entry(t.session)
                .or_default()
                .push(t.id.as_str().into());
        }
        for (session, ids) in by_session {
            if let Some(s) = self.sessions.get(&session) {
                let cancel = stratum::Cancel {
                    tasks: ids,
                    reason: reason.to_owned(),
                };
                let _ =
                    s.tx.try_send(Outbox::Send(ToMiner::Notification(Notification::Cancel(
                        cancel,
                    ))));
            }
        }
    }

    /// Expires running jobs whose deadline has passed (see [`PoolState::end_job`]).
    /// A job whose statements are all verified (its result is being assembled)
    /// completes instead.
    pub async fn expire_due_jobs(self: &Arc<Self>) {
        let now = now_ms();
        let due: Vec<String> = self
            .jobs
            .iter()
            .filter(|j| j.deadline_ms <= now)
            .map(|j| j.id.clone())
            .collect();
        for id in due {
            if let Err(e) = self.end_job(&id, JobState::Expired).await {
                error!(job = %id, error = %e, "could not expire the job; retried next sweep");
            }
        }
    }

    /// Marks running jobs whose deadline is within `scheduler.urgent_secs` urgent,
    /// so they go before fairness across clients.
    pub fn mark_urgent_jobs(&self) {
        let window = self.config.scheduler.urgent_secs.saturating_mul(1000);
        let horizon = now_ms().saturating_add(window);
        // Only a job that has waited becomes urgent: one born with a deadline
        // inside the window would let anyone jump the fair queue by asking for a
        // short deadline.
        let marks: Vec<(String, bool)> = self
            .jobs
            .iter()
            .map(|j| {
                let waited = j.deadline_ms.saturating_sub(j.created_ms) > window;
                (j.key().clone(), waited && j.deadline_ms <= horizon)
            })
            .collect();
        let mut sched = lock(&self.scheduler);
        for (id, urgent) in marks {
            sched.set_urgent(&id, urgent);
        }
    }

    /// Gives back the tasks of parked sessions nobody resumed by `now`.
    pub fn release_parked(&self, now: Instant) {
        let due: Vec<String> = self
            .parked
            .iter()
            .filter(|p| p.until <= now)
            .map(|p| p.key().clone())
            .collect();
        let mut requeued = 0;
        for token in due {
            if let Some((_, p)) = self.parked.remove(&token) {
                let tasks = lock(&self.scheduler).remove_session(p.key);
                if !tasks.is_empty() {
                    info!(worker = %p.worker, tasks = tasks.len(), "session not resumed in time; its tasks are re-queued");
                }
                requeued += tasks.len();
            }
        }
        if requeued > 0 {
            self.dispatch();
        }
    }

    /// Ends, as failed, each job with a statement that used up its attempts.
    fn fail_exhausted_jobs(self: &Arc<Self>) {
        let exhausted = lock(&self.scheduler).take_exhausted();
        for e in exhausted {
            let why = format!(
                "statement {} failed on {} different identities (token-proven accounts or addresses: invalid proofs or expired leases; last {}): the pool's rigs cannot prove it",
                e.statement, e.attempts, e.worker
            );
            warn!(job = %e.job, "{why}; failing the job");
            let state = self.clone();
            tokio::spawn(async move {
                if let Err(err) = state
                    .end_job_because(&e.job, JobState::Failed, Some(why))
                    .await
                {
                    error!(job = %e.job, error = %err, "cannot end the failed job");
                }
            });
        }
    }

    /// Ends a running job before its result: its leases are cancelled (sessions get
    /// `mining.cancel`), it is stored as `state` (expired or cancelled), and it is
    /// settled: the verified proofs stay stored and credited and earn their share
    /// of the reward, the rest goes back to the client. Returns the job as stored,
    /// or `None` when it was not running (finished, or every statement verified and
    /// its result being assembled).
    pub async fn end_job(
        self: &Arc<Self>,
        id: &str,
        state: JobState,
    ) -> anyhow::Result<Option<JobRecord>> {
        self.end_job_because(id, state, None).await
    }

    /// [`Self::end_job`] with the reason stored on the job (shown to its client).
    pub async fn end_job_because(
        self: &Arc<Self>,
        id: &str,
        state: JobState,
        failure: Option<String>,
    ) -> anyhow::Result<Option<JobRecord>> {
        let cancelled = {
            let mut sched = lock(&self.scheduler);
            if sched.progress(id).is_none() {
                return Ok(None);
            }
            sched.remove_job(id)
        };
        let reason = match state {
            JobState::Cancelled => "job cancelled",
            JobState::Failed => "job failed",
            _ => "job expired",
        };
        self.send_cancels(&cancelled, reason);
        let ended = match self.store.job(id)? {
            Some(mut job) if job.state == JobState::Running => {
                job.state = state;
                job.completed_ms = Some(now_ms());
                job.failure = failure;
                self.store.put_job(&job)?;
                self.store.flush().await?;
                match state {
                    JobState::Expired => self.metrics.jobs_expired.inc(),
                    JobState::Failed => self.metrics.jobs_failed.inc(),
                    _ => {}
                }
                info!(job = %id, cancelled = cancelled.len(), "{reason}");
                self.settle(&job).await;
                Some(job)
            }
            _ => None,
        };
        self.jobs.remove(id);
        self.dispatch();
        Ok(ended)
    }

    /// Puts every unfinished job back in the queue after a (re)start, and finishes
    /// those whose proofs were all stored before a crash.
    pub async fn recover(self: &Arc<Self>) -> anyhow::Result<usize> {
        let mut n = 0;
        let jobs = self.store.jobs()?;
        // An escrow whose job was never stored (a crash between the two): refund it.
        let known: HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        for (account, amount) in self.ledger.balances() {
            let Some(job) = account.strip_prefix("escrow:") else {
                continue;
            };
            if known.contains(job) {
                continue;
            }
            let client = self
                .ledger
                .journal_entry(&format!("escrow/{job}"))?
                .and_then(|e| match e.body {
                    payouts::Body::Escrow { client, .. } => Some(client),
                    _ => None,
                })
                .unwrap_or_default();
            warn!(%job, amount, %client, "escrow without a stored job; refunding it");
            self.ledger
                .settle(job, &client, 1, false, &self.config.payouts.policy())?;
        }
        for job in &jobs {
            if job.state != JobState::Running {
                // Finished before a crash but perhaps not settled yet.
                if self.ledger.settlement(&job.id)?.is_none() {
                    self.settle(job).await;
                }
                self.upgrade_result(job)?;
                continue;
            }
            // A proof stored without its credit (the crash hit between the two, and
            // neither was acknowledged): the statement is proven again.
            let covered: HashSet<u64> = self
                .ledger
                .job_credits(&job.id)?
                .iter()
                .flat_map(|c| c.first_statement..c.first_statement + c.proofs)
                .collect();
            let orphans: Vec<u64> = self
                .store
                .job_proofs(&job.id)?
                .into_iter()
                .filter(|(i, p)| !p.cached && !covered.contains(i))
                .map(|(i, _)| i)
                .collect();
            if !orphans.is_empty() {
                warn!(job = %job.id, statements = orphans.len(), "proofs stored without a credit; proving them again");
                self.store.remove_proofs(&job.id, orphans.into_iter())?;
            }
            // Credited proofs whose proven mark a crash cut off get it back.
            for (i, p) in self.store.job_proofs(&job.id)? {
                if let Some(s) = job.statements.get(i as usize) {
                    let k = crate::store::statement_key(&job.circuit_id, &s.public);
                    self.store.claim_proven(&k, &p.proof)?;
                }
            }
            let job = job.clone();
            let done: BTreeSet<u64> = self
                .store
                .job_proofs(&job.id)?
                .into_iter()
                .map(|(i, _)| i)
                .collect();
            let entry = self.job_entry(&job, done);
            self.jobs.insert(job.id.clone(), Arc::new(job.clone()));
            n += 1;
            if !lock(&self.scheduler).add_job(entry) {
                self.finish_job(&job.id).await;
            }
        }
        self.ledger.flush().await?;
        Ok(n)
    }

    /// Rewrites a completed job's stored result in today's format (results of
    /// older versions are refused by today's `zkpool verify`), from its stored proofs.
    fn upgrade_result(&self, job: &JobRecord) -> anyhow::Result<()> {
        let Some(old) = self.store.result(&job.id)? else {
            return Ok(());
        };
        if old.format == zk::result::RESULT_FORMAT {
            return Ok(());
        }
        let Some(circuit) = self.registry.get(&job.circuit_id) else {
            warn!(job = %job.id, "cannot upgrade the stored result: its circuit is not registered");
            return Ok(());
        };
        let result = jobs::assemble(job, &circuit, self.store.job_proofs(&job.id)?)?;
        self.store.put_result(&job.id, &result)?;
        info!(job = %job.id, from = %old.format, to = %result.format, "stored result rewritten in today's format");
        Ok(())
    }

    /// A circuit as a user names it: an id, or a name (see `circuits`).
    pub fn circuit(&self, id_or_name: &str) -> Option<Arc<Circuit>> {
        self.registry.resolve(id_or_name)
    }

    /// Capabilities filter: `None` when the miner named no circuits (all built-ins).
    pub fn circuit_filter(names: &[String]) -> Option<HashSet<String>> {
        if names.is_empty() {
            None
        } else {
            Some(names.iter().cloned().collect())
        }
    }
}

fn task_code(e: &TaskReject) -> ErrorCode {
    match e {
        TaskReject::Stale(_) => ErrorCode::StaleTask,
        TaskReject::WrongStatements { .. } => ErrorCode::WrongStatement,
    }
}

/// A pool that is serving; drop-safe, stop it with [`RunningPool::shutdown`].
pub struct RunningPool {
    pub state: Arc<PoolState>,
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

/// Opens storage, sets up circuits, recovers unfinished jobs and starts serving
/// stratum on `stratum` and HTTP on `http`.
pub async fn start(
    config: Config,
    stratum: TcpListener,
    http: TcpListener,
) -> Result<RunningPool, StartError> {
    let data = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data).map_err(|e| StartError::Storage {
        path: data.display().to_string(),
        detail: e.to_string(),
    })?;
    let store = Store::open(&data.join("db")).map_err(|e| StartError::Storage {
        path: data.display().to_string(),
        detail: format!("{e} (is another zkpool using it?)"),
    })?;
    let ledger =
        Ledger::open_with(&store.db, store.flusher()).map_err(|e| StartError::Storage {
            path: data.display().to_string(),
            detail: e.to_string(),
        })?;
    let tls = match (&config.stratum.tls_cert, &config.stratum.tls_key) {
        (Some(cert), Some(key)) => Some(stratum::tls::acceptor(cert, key)?),
        _ => None,
    };
    let http_tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(stratum::tls::acceptor(cert, key)?),
        _ => None,
    };
    let signer = store.receipt_signer().map_err(|e| StartError::Storage {
        path: data.display().to_string(),
        detail: e.to_string(),
    })?;
    let builtins = PoolState::builtins(&config);
    let (registry, created) = {
        let store = store.clone();
        let keys = data.join("keys");
        tokio::task::spawn_blocking(move || Registry::open(&store, keys, &builtins))
            .await
            .expect("circuit setup does not panic")?
    };
    for c in &created {
        info!(circuit = %c.name, id = %c.id, constraints = c.constraints, "generated Groth16 keys");
    }
    store.flush().await.map_err(|e| StartError::Storage {
        path: data.display().to_string(),
        detail: e.to_string(),
    })?;

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
    let sched = SchedConfig {
        target_task: Duration::from_secs_f64(config.scheduler.target_task_secs),
        lease_min: Duration::from_secs_f64(config.scheduler.lease_min_secs),
        max_per_task: config.scheduler.max_statements_per_task,
        tasks_per_session: config.scheduler.tasks_per_session,
        max_attempts: config.scheduler.max_attempts,
        backup_after: Duration::from_secs_f64(config.scheduler.backup_after_secs.max(0.0)),
    };
    let metrics = Arc::new(Metrics::new());
    let config_bans = config.ban_policy();
    let config_limits = config.limits.clone();
    let preparing = config.preparing();
    let (verifier, verifier_task) =
        Verifier::new(config.verifier_threads(), MAX_BATCH_PROOFS, metrics.clone());
    let verifier_task = if config.verifier.batch {
        verifier_task
    } else {
        warn!("verifier.batch = false: verifying proof by proof (a measuring baseline, slower)");
        verifier_task.one_by_one()
    };
    tokio::spawn(verifier_task.run());
    let state = Arc::new(PoolState {
        verifier,
        config,
        store,
        ledger,
        signer,
        registry,
        scheduler: Mutex::new(Scheduler::new(sched)),
        sessions: DashMap::new(),
        jobs: DashMap::new(),
        public_url,
        shutdown: CancellationToken::new(),
        next_session: AtomicU64::new(1),
        metrics,
        bans: Mutex::new(Bans::new(config_bans)),
        rejected: DashMap::new(),
        parked: DashMap::new(),
        limits: crate::limits::Limits::new(&config_limits, preparing),
        claims: DashMap::new(),
        tls,
        http_tls,
    });
    let recovered = state.recover().await.map_err(|e| StartError::Storage {
        path: data.display().to_string(),
        detail: e.to_string(),
    })?;
    if recovered > 0 {
        info!(jobs = recovered, "recovered unfinished jobs");
    }

    let tasks = TaskTracker::new();
    let sweeper = tasks.spawn(sweep(state.clone()));
    let http_task = tasks.spawn(crate::http::serve(state.clone(), http));
    let accept = tasks.spawn(crate::session::accept_loop(
        state.clone(),
        stratum,
        tasks.clone(),
    ));
    let join = tokio::spawn(async move {
        let _ = tokio::join!(sweeper, http_task, accept);
    });
    info!(stratum = %stratum_addr, http = %http_addr, "pool serving");
    Ok(RunningPool {
        state,
        stratum_addr,
        http_addr,
        created_circuits: created,
        tasks,
        join,
    })
}

/// Ends expired leases every sweep interval: their sessions get `mining.cancel`,
/// the statements go to other sessions.
async fn sweep(state: Arc<PoolState>) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        state.config.scheduler.sweep_interval_secs,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let expired = lock(&state.scheduler).expire(Instant::now());
        for t in &expired {
            warn!(task = %t.id, worker = %t.worker, "lease expired; statements re-queued");
        }
        state.send_cancels(&expired, "lease expired");
        state.release_parked(Instant::now());
        state.mark_urgent_jobs();
        state.fail_exhausted_jobs();
        state.expire_due_jobs().await;
        state.limits.forget_idle();
        // Dispatch every tick, not only after expiries: a task taken back from a
        // full session queue waits for the next event, and this is the latest one.
        state.dispatch();
    }
}
