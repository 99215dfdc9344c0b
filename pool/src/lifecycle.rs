//! A job's life on the pool: submitted (validated, escrowed, stored, queued),
//! finished (its result assembled and stored), ended early (expired, cancelled,
//! failed), settled exactly once, and recovered after a restart.
//!
//! Not here: what a job is and how its result is assembled (`jobs`, pure), how
//! its statements are leased (`scheduler`), how a share is credited (`share`).
//!
//! Architecture Invariant: a job is `running`, then `completed` (every statement
//! verified, result stored), `expired`, `cancelled` or `failed`; every ended job
//! is settled exactly once, after its end is stored. Completion wins: a job whose
//! statements are all verified is never expired while its result is assembled.

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
};

use dashmap::DashMap;
use payouts::LedgerError;
use stratum::JobId;
use tracing::{error, info, warn};

use crate::{
    aggregation::Aggregation,
    circuits::now_ms,
    config::Config,
    jobs::{self, JobError, JobRecord, JobRequest, JobState, StoredProof},
    limits::Caller,
    scheduler::JobEntry,
    server::Pool,
    store::{statement_key, StoreError},
};

/// Why a job could not be ended, recovered or settled: the pool's storage, never
/// the client's request.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// A stored result could not be rebuilt.
    #[error(transparent)]
    Assemble(#[from] jobs::AssembleError),
}

/// The running jobs, for the statements a notify carries and a submit is checked
/// against (the store holds every job; this is the working set).
#[derive(Default)]
pub struct Jobs(DashMap<JobId, Arc<JobRecord>>);

impl Jobs {
    pub fn active(&self, id: &str) -> Option<Arc<JobRecord>> {
        self.0.get(id).map(|j| j.clone())
    }

    pub fn running(&self) -> usize {
        self.0.len()
    }

    fn insert(&self, job: JobRecord) {
        self.0.insert(job.id.clone(), Arc::new(job));
    }

    fn remove(&self, id: &str) {
        self.0.remove(id);
    }

    /// (id, deadline, created) of every running job.
    fn deadlines(&self) -> Vec<(JobId, u64, u64)> {
        self.0
            .iter()
            .map(|j| (j.id.clone(), j.deadline_ms, j.created_ms))
            .collect()
    }
}

/// Bytes of a `mining.notify` line around its statements (ids, key reference,
/// framing): what a statement may not take of the line limit.
pub const NOTIFY_OVERHEAD: usize = 2048;

/// What one job may cost the pool to prepare.
pub fn budget(config: &Config) -> jobs::Budget {
    let l = &config.limits;
    jobs::Budget {
        max_statements: config.http.max_job_statements,
        native_hashes: l.job_native_hashes,
        witness_fuel: l.job_witness_fuel,
        max_deadline_secs: l.max_deadline_secs,
        statement_bytes: config.stratum.max_line.saturating_sub(NOTIFY_OVERHEAD),
        min_price_per_mwork: config.payouts.min_price(),
    }
}

/// The payout policy of one job: the pool's, or PROP for a job whose work is not
/// pooled (a client's circuit, or a job below the pool-wide price).
pub fn policy_for(config: &Config, job: &JobRecord) -> payouts::Policy {
    let mut p = config.payouts.policy();
    if !job.pooled {
        p.scheme = payouts::Scheme::Prop;
    }
    p
}

/// Most statements per task for a job: what fits in one line each way.
fn max_per_task(config: &Config, job: &JobRecord) -> usize {
    let widest = job
        .statements
        .iter()
        .map(jobs::wire_size)
        .max()
        .unwrap_or(0);
    // A submitted proof costs ~560 bytes (512 hex digits of an uncompressed proof,
    // as zkminer sends them, plus framing).
    let per = widest.max(576);
    (config.stratum.max_line.saturating_sub(NOTIFY_OVERHEAD) / per).max(1)
}

/// What the scheduler needs to know of a job; `done` its statements with a proof.
pub fn entry(config: &Config, job: &JobRecord, done: BTreeSet<u64>) -> JobEntry {
    JobEntry {
        id: job.id.clone(),
        circuit_id: job.circuit_id.clone(),
        circuit_name: job.circuit_name.clone(),
        deadline_ms: job.deadline_ms,
        created_ms: job.created_ms,
        total: job.statements.len() as u64,
        done,
        max_per_task: max_per_task(config, job),
        client: job.client.clone(),
        allow: job.allow.as_ref().map(|a| a.iter().cloned().collect()),
        // On PostgreSQL, pool processes share the database and its jobs: each
        // proves the statements it claims (see `cluster`).
        shared: config.storage.url.is_some(),
    }
}

/// Validates, escrows its reward, persists (durably) and queues a client's job.
/// `client` is the client the request's API key belongs to, if any; `ip` the
/// address it came from (what a keyless caller is counted as).
pub async fn submit(
    pool: &Arc<Pool>,
    mut req: JobRequest,
    client: Option<String>,
    ip: std::net::IpAddr,
) -> Result<JobRecord, JobError> {
    let config = pool.config();
    match (&client, &req.client) {
        (None, _) if req.reward > 0 => return Err(JobError::Unauthorized(format!(
            "a job with a reward ({}) is paid from a client balance: send Authorization: Bearer <client API key> (the operator creates one with `zkpool clients add NAME`)",
            req.reward
        ))),
        (None, _) if config.payouts.require_client_key => return Err(JobError::Unauthorized(
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
        Some(c) => Caller::Client(c.clone()),
        None => Caller::Address(ip),
    };
    pool.limits()
        .job(&caller)
        .map_err(|e| JobError::TooMany(e.0))?;
    let circuit = pool
        .circuits()
        .resolve(&req.circuit)
        .ok_or_else(|| JobError::UnknownCircuit(req.circuit.clone()))?;
    let preparing = pool
        .limits()
        .prepare(&caller, std::time::Duration::from_secs(30))
        .await
        .map_err(|e| JobError::TooMany(e.0))?;
    let budget = budget(config);
    let job = tokio::task::spawn_blocking(move || jobs::build(req, &circuit, &budget))
        .await
        .map_err(|e| JobError::Internal(format!("job could not be prepared: {e}")))??;
    drop(preparing);
    if job.reward > 0 {
        // Escrow first: if the pool dies before the job is stored, the next start
        // finds an escrow without a job and refunds it.
        pool.ledger()
            .escrow(&job.id, &job.client, job.reward)
            .await
            .map_err(|e| match e {
                LedgerError::Insufficient { have, need, .. } => JobError::PaymentRequired {
                    client: job.client.clone(),
                    have,
                    need,
                },
                e => JobError::Unavailable(format!(
                    "the reward could not be escrowed ({e}); try again"
                )),
            })?;
    }
    let unavailable = |e: StoreError| {
        JobError::Unavailable(format!(
            "the job could not be stored ({e}); any escrow is refunded at the pool's next start: try again"
        ))
    };
    // Statements proven before (on any job) are answered from the pool's proofs
    // at once: never leased, never paid again.
    let cached = cached_statements(pool, &job).await.map_err(unavailable)?;
    let store = pool.store();
    store.put_job(&job).await.map_err(unavailable)?;
    if !cached.is_empty() {
        store
            .put_proofs(&job.id, &cached)
            .await
            .map_err(unavailable)?;
    }
    store.flush().await.map_err(unavailable)?;
    info!(job = %job.id, client = %job.client, circuit = %job.circuit_name, statements = job.statements.len(), proven_before = cached.len(), reward = job.reward, pooled = job.pooled, "job accepted");
    pool.metrics().jobs_accepted.inc();
    pool.jobs().insert(job.clone());
    let entry = entry(config, &job, cached.iter().map(|(i, _)| *i).collect());
    if !pool.dispatch().with(|s| s.add_job(entry)) {
        // Every statement was proven before: the result is ready now.
        finish(pool, &job.id).await;
    } else if let Some(c) = pool.cluster() {
        c.wake();
        c.announce(crate::cluster::Event::Job(job.id.clone())).await;
    }
    Ok(job)
}

/// Takes a running job that another pool process stored into this one's queue
/// (`done`: its statements with a stored proof); see `cluster`. False when
/// every statement is proven already (its result is the finishing process's
/// to assemble).
pub fn adopt(pool: &Pool, job: JobRecord, done: BTreeSet<u64>) -> bool {
    let entry = entry(pool.config(), &job, done);
    let id = job.id.clone();
    pool.jobs().insert(job);
    let open = pool.dispatch().with(|s| s.add_job(entry));
    if open {
        info!(job = %id, "took a job stored by another pool process");
    }
    open
}

/// Drops a job that ended on another pool process: its leases here are
/// cancelled (`reason` tells the sessions why); nothing is stored.
pub fn forget(pool: &Pool, id: &JobId, reason: &str) {
    let cancelled = pool.dispatch().with(|s| s.remove_job(id));
    pool.dispatch().send_cancels(&cancelled, reason);
    if pool.jobs().active(id).is_some() {
        pool.jobs().remove(id);
        info!(job = %id, cancelled = cancelled.len(), "{reason}");
    }
}

/// With several pool processes: tells the others that this one ended job `id`,
/// and frees its claims.
async fn ended_here(pool: &Pool, id: &JobId) {
    if let Some(c) = pool.cluster() {
        c.announce(crate::cluster::Event::Ended(id.clone())).await;
        c.release_job(id).await;
    }
}

/// How long an escrow without a stored job may be a submit still in flight on
/// another pool process (only then is it taken for a crash's leftover).
const IN_FLIGHT_GRACE_MS: u64 = 120_000;

/// The leader's sweep (see `cluster`): settles ended jobs a crash left
/// unsettled and refunds escrows whose job was never stored.
pub async fn leader_sweep(pool: &Arc<Pool>, running: &HashSet<String>, unsettled: &[String]) {
    let swept = async {
        let mut known: HashSet<&str> = running.iter().map(String::as_str).collect();
        known.extend(unsettled.iter().map(String::as_str));
        refund_orphan_escrows(pool, &known).await?;
        for id in unsettled {
            if let Some(job) = pool.store().job(id).await? {
                if job.state != JobState::Running {
                    warn!(job = %id, "an ended job was not settled (its process died); settling it");
                    settle(pool, &job).await;
                }
            }
        }
        Ok::<_, LifecycleError>(())
    }
    .await;
    if let Err(e) = swept {
        warn!(error = %e, "the leader's sweep failed; next sweep");
    }
}

/// Refunds escrows whose job was never stored (a crash between the two):
/// escrows of jobs not in `known` (jobs looked up already) are looked up. With
/// several pool processes, only escrows older than [`IN_FLIGHT_GRACE_MS`]: a
/// younger one may belong to a submit another process is storing now.
async fn refund_orphan_escrows(pool: &Pool, known: &HashSet<&str>) -> Result<(), LifecycleError> {
    let ledger = pool.ledger();
    for (account, amount) in ledger.balances().await? {
        let payouts::Account::Escrow(job) = &account else {
            continue;
        };
        let job = job.as_str();
        if known.contains(job) {
            continue;
        }
        // Ended and settled jobs are not in `jobs`: only a job never stored
        // is missing from the store.
        if pool.store().job(job).await?.is_some() {
            continue;
        }
        let escrow = ledger.journal_entry(&payouts::keys::escrow(job)).await?;
        if pool.cluster().is_some()
            && escrow
                .as_ref()
                .is_some_and(|e| now_ms().saturating_sub(e.at_ms) < IN_FLIGHT_GRACE_MS)
        {
            continue;
        }
        let client = escrow
            .and_then(|e| match e.body {
                payouts::Body::Escrow { client, .. } => Some(client),
                _ => None,
            })
            .unwrap_or_default();
        warn!(%job, amount, %client, "escrow without a stored job; refunding it");
        ledger
            .settle(job, &client, 1, false, &pool.config().payouts.policy())
            .await?;
    }
    Ok(())
}

/// The statements of a new job that are proven already, with their proofs.
async fn cached_statements(
    pool: &Pool,
    job: &JobRecord,
) -> Result<Vec<(u64, StoredProof)>, StoreError> {
    let keys: Vec<String> = job
        .statements
        .iter()
        .map(|s| statement_key(&job.circuit_id, &s.public))
        .collect();
    // Which are proven, in one query where the store can (a PostgreSQL round
    // trip per statement made a 5,000-statement submit take 1.4 s); then the
    // proofs of those only.
    let proven = pool.store().proven_among(&keys).await?;
    let mut out = vec![];
    for (i, key) in keys.iter().enumerate() {
        if !proven.contains(key) {
            continue;
        }
        if let Some(proof) = pool.store().proven(key).await? {
            out.push((i as u64, StoredProof::cached(proof)));
        }
    }
    Ok(out)
}

/// Settles a completed or ended job in the ledger (idempotent) and flushes.
pub async fn settle(pool: &Pool, job: &JobRecord) {
    let completed = job.state == JobState::Completed;
    let ledger = pool.ledger();
    let settled = ledger
        .settle(
            &job.id,
            &job.client,
            job.total_work(),
            completed,
            &policy_for(pool.config(), job),
        )
        .await;
    match settled {
        Ok(s) => {
            if let Err(e) = ledger.flush().await {
                error!(job = %job.id, error = %e, "settlement not flushed; checked again at the next start");
            }
            info!(job = %job.id, earned = s.earned, fee = s.fee, refund = s.refund, workers = s.parts.len(), "job settled");
        }
        Err(e) => error!(job = %job.id, error = %e, "could not settle; retried at the next start"),
    }
}

/// Assembles, checks and stores a job's result once every statement is proven.
pub async fn finish(pool: &Arc<Pool>, job_id: &str) {
    // The shares of tasks that completed before the last are in the ledger
    // first (their stores take milliseconds; the wait is bounded all the same).
    pool.shares()
        .wait_stored(job_id, std::time::Duration::from_secs(30))
        .await;
    let store = pool.store();
    let Some(job) = store.job(job_id).await.ok().flatten() else {
        return;
    };
    if job.state != JobState::Running {
        // Ended already (by another pool process, or an expiry).
        pool.jobs().remove(job_id);
        return;
    }
    let Some(circuit) = pool.circuits().get(&job.circuit_id) else {
        error!(job = %job_id, "cannot assemble: circuit {} is not registered", job.circuit_id);
        return;
    };
    let proofs = match store.job_proofs(&job.id).await {
        Ok(p) => p,
        Err(e) => {
            error!(job = %job_id, error = %e, "cannot read the job's proofs; retried at next start");
            return;
        }
    };
    let assembled = {
        let (job, aggregation) = (job.clone(), pool.aggregation().cloned());
        tokio::task::spawn_blocking(move || {
            let mut result = jobs::assemble(&job, &circuit, proofs)?;
            with_aggregate(aggregation.as_ref(), &mut result);
            Ok::<_, jobs::AssembleError>(result)
        })
        .await
    };
    let result = match assembled {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            error!(job = %job_id, error = %e, "could not assemble the result; retried at next start");
            return;
        }
        Err(e) => {
            error!(job = %job_id, error = %e, "result assembly panicked");
            return;
        }
    };
    let mut job = job;
    job.state = JobState::Completed;
    job.completed_ms = Some(now_ms());
    let stored = async {
        let ended = store.end_job(&job, Some(&result)).await?;
        store.flush().await?;
        Ok::<_, StoreError>(ended)
    }
    .await;
    match stored {
        Ok(true) => {}
        Ok(false) => {
            // Another pool process completed it, or it expired meanwhile.
            pool.jobs().remove(job_id);
            return;
        }
        Err(e) => {
            error!(job = %job_id, error = %e, "result not stored; retried at next start");
            return;
        }
    }
    settle(pool, &job).await;
    pool.jobs().remove(job_id);
    ended_here(pool, &job.id).await;
    let m = pool.metrics();
    m.jobs_completed.inc();
    if let Some(done) = job.completed_ms {
        m.job_seconds
            .observe(done.saturating_sub(job.created_ms) as f64 / 1000.0);
    }
    info!(job = %job_id, proofs = job.statements.len(), "job completed");
}

/// Ends a running job before its result: its leases are cancelled (sessions get
/// `mining.cancel`), it is stored as `state` (expired, cancelled or failed, with
/// `failure` as the reason shown to its client), and it is settled: the verified
/// proofs stay stored and credited and earn their share of the reward, the rest
/// goes back to the client. Returns the job as stored, or `None` when it was not
/// running (finished, or every statement verified and its result being assembled).
pub async fn end(
    pool: &Arc<Pool>,
    id: &JobId,
    state: JobState,
    failure: Option<String>,
) -> Result<Option<JobRecord>, LifecycleError> {
    // Only a job the scheduler still holds is ended here (ending is once).
    let cancelled = pool.dispatch().with(|s| {
        s.progress(id)?;
        Some(s.remove_job(id))
    });
    let Some(cancelled) = cancelled else {
        return Ok(None);
    };
    let reason = match state {
        JobState::Cancelled => "job cancelled",
        JobState::Failed => "job failed",
        _ => "job expired",
    };
    pool.dispatch().send_cancels(&cancelled, reason);
    // A share whose task completed before the job left the scheduler is
    // credited and paid, not refused as late: it is stored before the job is
    // stored as ended (so no other process's sweep settles the job first).
    pool.shares()
        .wait_stored(id, std::time::Duration::from_secs(30))
        .await;
    let store = pool.store();
    let ended = match store.job(id).await? {
        Some(mut job) if job.state == JobState::Running => {
            job.state = state;
            job.completed_ms = Some(now_ms());
            job.failure = failure;
            if !store.end_job(&job, None).await? {
                // Another pool process ended it first.
                pool.jobs().remove(id);
                return Ok(None);
            }
            store.flush().await?;
            ended_here(pool, id).await;
            match state {
                JobState::Expired => pool.metrics().jobs_expired.inc(),
                JobState::Failed => pool.metrics().jobs_failed.inc(),
                _ => {}
            }
            info!(job = %id, cancelled = cancelled.len(), "{reason}");
            settle(pool, &job).await;
            Some(job)
        }
        _ => None,
    };
    pool.jobs().remove(id);
    Ok(ended)
}

/// Expires running jobs whose deadline has passed (see [`end`]). A job whose
/// statements are all verified (its result being assembled) completes instead.
pub async fn expire_due(pool: &Arc<Pool>) {
    let now = now_ms();
    for (id, deadline, _) in pool.jobs().deadlines() {
        if deadline > now {
            continue;
        }
        if let Err(e) = end(pool, &id, JobState::Expired, None).await {
            error!(job = %id, error = %e, "could not expire the job; retried next sweep");
        }
    }
}

/// Marks running jobs whose deadline is within `scheduler.urgent_secs` urgent, so
/// they go before fairness across clients. Only a job that has waited becomes
/// urgent: one born with a deadline inside the window would let anyone jump the
/// fair queue by asking for a short deadline.
pub fn mark_urgent(pool: &Pool) {
    let window = pool.config().scheduler.urgent_secs.saturating_mul(1000);
    let horizon = now_ms().saturating_add(window);
    let marks: Vec<(JobId, bool)> = pool
        .jobs()
        .deadlines()
        .into_iter()
        .map(|(id, deadline, created)| {
            let waited = deadline.saturating_sub(created) > window;
            (id, waited && deadline <= horizon)
        })
        .collect();
    pool.dispatch().with(|s| {
        for (id, urgent) in marks {
            s.set_urgent(&id, urgent);
        }
    });
}

/// Ends, as failed, each job with a statement that used up its attempts.
pub fn fail_exhausted(pool: &Arc<Pool>) {
    let exhausted = pool.dispatch().with(|s| s.take_exhausted());
    for e in exhausted {
        let why = format!(
            "statement {} failed on {} different identities (token-proven accounts or addresses: invalid proofs or expired leases; last {}): the pool's rigs cannot prove it",
            e.statement, e.attempts, e.worker
        );
        warn!(job = %e.job, "{why}; failing the job");
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Err(err) = end(&pool, &e.job, JobState::Failed, Some(why)).await {
                error!(job = %e.job, error = %err, "cannot end the failed job");
            }
        });
    }
}

/// Puts every unfinished job back in the queue after a (re)start, finishes those
/// whose proofs were all stored before a crash, settles ended jobs a crash left
/// unsettled, and refunds an escrow whose job was never stored.
pub async fn recover(pool: &Arc<Pool>) -> Result<usize, LifecycleError> {
    let (store, ledger) = (pool.store(), pool.ledger());
    let mut n = 0;
    let jobs = store.jobs().await?;
    // An escrow whose job was never stored (a crash between the two): refund it.
    refund_orphan_escrows(pool, &jobs.iter().map(|j| j.id.as_str()).collect()).await?;
    for job in &jobs {
        if job.state != JobState::Running {
            // Finished before a crash but perhaps not settled yet.
            if ledger.settlement(&job.id).await?.is_none() {
                settle(pool, job).await;
            }
            upgrade_result(pool, job).await?;
            continue;
        }
        // On sled a share's proofs, credit and proven marks are written one
        // after the other, and a crash can cut between them. On PostgreSQL
        // they are one transaction: nothing to mend.
        if !ledger.stores_proofs() {
            mend_cut_share(store, ledger, job).await?;
        }
        let proofs = store.job_proofs(&job.id).await?;
        let done: BTreeSet<u64> = proofs.into_iter().map(|(i, _)| i).collect();
        let entry = entry(pool.config(), job, done);
        pool.jobs().insert(job.clone());
        n += 1;
        if !pool.dispatch().with(|s| s.add_job(entry)) {
            finish(pool, &job.id).await;
        }
    }
    ledger.flush().await?;
    store.flush().await?;
    Ok(n)
}

/// What a crash between a share's writes left on sled: a proof stored without
/// its credit (neither was acknowledged) is removed, and the statement proven
/// again; a credited proof whose proven mark was cut off gets it back.
pub(crate) async fn mend_cut_share(
    store: &dyn crate::store::Store,
    ledger: &dyn crate::ledger::Ledger,
    job: &JobRecord,
) -> Result<(), LifecycleError> {
    let covered: HashSet<u64> = ledger
        .job_credits(&job.id)
        .await?
        .iter()
        .flat_map(|c| c.first_statement..c.first_statement + c.proofs)
        .collect();
    let orphans: Vec<u64> = store
        .job_proofs(&job.id)
        .await?
        .into_iter()
        .filter(|(i, p)| !p.cached && !covered.contains(i))
        .map(|(i, _)| i)
        .collect();
    if !orphans.is_empty() {
        warn!(job = %job.id, statements = orphans.len(), "proofs stored without a credit; proving them again");
        store.remove_proofs(&job.id, &orphans).await?;
    }
    for (i, p) in store.job_proofs(&job.id).await? {
        if let Some(s) = job.statements.get(i as usize) {
            store
                .mark_proven(&statement_key(&job.circuit_id, &s.public), &p.proof)
                .await?;
        }
    }
    Ok(())
}

/// Rewrites a completed job's stored result in today's format (results of older
/// versions are refused by today's `zkpool verify`), from its stored proofs.
async fn upgrade_result(pool: &Pool, job: &JobRecord) -> Result<(), LifecycleError> {
    let store = pool.store();
    let Some(old) = store.result(&job.id).await? else {
        return Ok(());
    };
    if old.format == zk::result::RESULT_FORMAT {
        return Ok(());
    }
    let Some(circuit) = pool.circuits().get(&job.circuit_id) else {
        warn!(job = %job.id, "cannot upgrade the stored result: its circuit is not registered");
        return Ok(());
    };
    let proofs = store.job_proofs(&job.id).await?;
    let (job_c, aggregation) = (job.clone(), pool.aggregation().cloned());
    let result = tokio::task::spawn_blocking(move || {
        let mut result = jobs::assemble(&job_c, &circuit, proofs)?;
        with_aggregate(aggregation.as_ref(), &mut result);
        Ok::<_, jobs::AssembleError>(result)
    })
    .await
    .expect("assembling a result does not panic")?;
    store.put_result(&job.id, &result).await?;
    info!(job = %job.id, from = %old.format, to = %result.format, "stored result rewritten in today's format");
    Ok(())
}

/// Adds the aggregate when the pool aggregates. A failure (a pool fault: every
/// proof was verified on arrival) is logged and the result goes out with its
/// proofs alone, which a client can still check.
fn with_aggregate(aggregation: Option<&Aggregation>, result: &mut zk::JobResult) {
    if let Some(a) = aggregation {
        if let Err(e) = a.aggregate(result) {
            error!(job = %result.job_id, error = %e, "could not aggregate the result; it carries its proofs only");
        }
    }
}
