//! The share path: a `mining.submit` becomes a credited share in three steps.
//!
//! 1. [`admit`] — no I/O: the session's bans, then the submit against the task
//!    leased to it (cheap checks before any pairing).
//! 2. [`verify`] — the proofs, decoded with validation and checked on the
//!    verifier's threads; invalid work strikes the session's ban targets.
//! 3. [`record`] — each statement claimed (a statement is paid once on a pool),
//!    the proofs stored, the share credited, all durable before the answer, which
//!    carries the pool's signed receipt.
//!
//! Every way a submit earns nothing is a [`Rejection`], answered on the wire with
//! its code and counted; none is an error of the pool's own except `Storage`.

use std::{sync::Arc, time::Instant};

use dashmap::DashMap;
use payouts::{LedgerError, ShareCredit};
use stratum::{ErrorCode, RpcError, Submit, SubmitResult};
use tracing::{error, info, warn};
use zk::ProofBytes;

use crate::{
    bans::{Strike, Target},
    circuits::now_ms,
    jobs::{JobRecord, StoredProof},
    ledger::ShareOutcome,
    lifecycle, metrics,
    scheduler::{Scheduler, SessionKey, Task, TaskReject},
    server::Pool,
    session::Authorized,
    store::statement_key,
};

/// Why a submit earned nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The worker, or its address, is banned (the session is closed).
    Banned(String),
    /// The task is not leased to this session (unknown, expired, cancelled or
    /// finished), or its job ended.
    Stale(String),
    /// The proofs are not exactly the task's statements.
    WrongStatements(String),
    /// The job's circuit is not registered.
    UnknownCircuit(String),
    /// The verifier is not taking work (the pool is shutting down).
    Busy(String),
    /// Proofs did not verify; `failures` names each, `banned` when this submit
    /// got the session banned.
    Invalid {
        message: String,
        failures: Vec<String>,
        banned: bool,
    },
    /// A statement was proven before this submit (another job, or a copied
    /// proof): a statement is paid once.
    AlreadyProven(String),
    /// The pool could not store or pay the share; nothing is credited and its
    /// statements are re-queued.
    Storage(String),
}

impl Rejection {
    /// The wire's error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Rejection::Banned(_) => ErrorCode::Banned,
            Rejection::Stale(_) | Rejection::AlreadyProven(_) => ErrorCode::StaleTask,
            Rejection::WrongStatements(_) => ErrorCode::WrongStatement,
            Rejection::UnknownCircuit(_) => ErrorCode::UnknownCircuit,
            Rejection::Busy(_) => ErrorCode::Busy,
            Rejection::Invalid { banned: true, .. } => ErrorCode::Banned,
            Rejection::Invalid { .. } => ErrorCode::InvalidProof,
            Rejection::Storage(_) => ErrorCode::Internal,
        }
    }

    /// The wire's error.
    pub fn into_rpc(self) -> RpcError {
        let code = self.code();
        match self {
            Rejection::Invalid {
                message, failures, ..
            } => {
                let mut e = RpcError::new(code, message);
                e.data = Some(serde_json::json!({ "failures": failures }));
                e
            }
            Rejection::Banned(m)
            | Rejection::Stale(m)
            | Rejection::WrongStatements(m)
            | Rejection::UnknownCircuit(m)
            | Rejection::Busy(m)
            | Rejection::AlreadyProven(m)
            | Rejection::Storage(m) => RpcError::new(code, m),
        }
    }
}

impl From<TaskReject> for Rejection {
    fn from(e: TaskReject) -> Self {
        match e {
            TaskReject::Stale(_) => Rejection::Stale(e.to_string()),
            TaskReject::WrongStatements { .. } => Rejection::WrongStatements(e.to_string()),
        }
    }
}

/// Step 1, no I/O: refuses a banned session (`ban`, what the ban table says of
/// it) and a submit that is not exactly a task leased to it; returns the task.
pub fn admit(
    ban: Option<String>,
    sched: &Scheduler,
    session: SessionKey,
    submit: &Submit,
) -> Result<Task, Rejection> {
    if let Some(message) = ban {
        return Err(Rejection::Banned(message));
    }
    let indices: Vec<u64> = submit.proofs.iter().map(|p| p.index).collect();
    Ok(sched.check_submit(session, &submit.task, &indices)?)
}

/// What the share path keeps between submits: the statements a submit in
/// flight is storing a proof of (a second submit of one of them meanwhile is
/// refused: its proof would be paid twice), and refused submits per worker since
/// the pool started (for its page).
#[derive(Default)]
pub struct Shares {
    claims: DashMap<String, ()>,
    rejected: DashMap<String, u64>,
    /// Jobs with a completed task whose share is being stored, and how many.
    storing: DashMap<String, usize>,
}

/// A completed task's share being stored (see [`Shares::wait_stored`]).
struct Storing<'a> {
    storing: &'a DashMap<String, usize>,
    job: String,
}

impl Drop for Storing<'_> {
    fn drop(&mut self) {
        self.storing.remove_if_mut(&self.job, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// One submit's claims, given back when dropped (the share is stored, with its
/// statements' proven marks, or it is not stored at all).
struct Claim<'a> {
    claims: &'a DashMap<String, ()>,
    held: Vec<String>,
}

impl Shares {
    fn storing(&self, job: &str) -> Storing<'_> {
        *self.storing.entry(job.to_owned()).or_default() += 1;
        Storing {
            storing: &self.storing,
            job: job.to_owned(),
        }
    }

    /// Waits (at most `limit`) until no share of `job` is being stored: a job
    /// is settled after the shares whose tasks completed before it did are
    /// in the ledger, so none of them comes after its settlement (and is
    /// refused as too late, the work unpaid).
    pub async fn wait_stored(&self, job: &str, limit: std::time::Duration) {
        let deadline = Instant::now() + limit;
        while self.storing.contains_key(job) && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    fn begin(&self) -> Claim<'_> {
        Claim {
            claims: &self.claims,
            held: vec![],
        }
    }

    fn count_rejected(&self, worker: &str) {
        *self.rejected.entry(worker.to_owned()).or_default() += 1;
    }

    /// Refused submits of a worker, or of every rig of an account.
    pub fn rejected(&self, name: &str) -> u64 {
        self.rejected
            .iter()
            .filter(|e| e.key() == name || payouts::worker_addr(e.key()) == name)
            .map(|e| *e.value())
            .sum()
    }
}

impl Claim<'_> {
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

/// A submit, through the three steps; counted by verdict (and per worker when refused).
pub async fn submit(
    pool: &Arc<Pool>,
    session: SessionKey,
    who: &Authorized,
    submit: Submit,
) -> Result<SubmitResult, RpcError> {
    let outcome = handle(pool, session, who, submit).await;
    let verdict = match &outcome {
        Ok(_) => "accepted",
        Err(r) => metrics::verdict(r.code()),
    };
    pool.metrics().shares.with_label_values(&[verdict]).inc();
    outcome.map_err(|r| {
        pool.shares().count_rejected(&who.worker);
        r.into_rpc()
    })
}

async fn handle(
    pool: &Arc<Pool>,
    session: SessionKey,
    who: &Authorized,
    submit: Submit,
) -> Result<SubmitResult, Rejection> {
    let targets = pool.ban_targets(who);
    let ban = pool.bans().refusal(&targets, who.ip);
    let task = pool.dispatch().read(|s| admit(ban, s, session, &submit))?;
    let job = pool
        .jobs()
        .active(&task.job)
        .ok_or_else(|| Rejection::Stale(format!("job {} is no longer active", task.job)))?;
    let proofs = verify(pool, session, who, &targets, &task, &job, &submit).await?;
    record(pool, session, who, task, job, proofs).await
}

/// Step 2: decodes and verifies the submit's proofs. Invalid work sends the task
/// back (avoiding this worker), counts against the ban targets, and may fail the
/// job (a statement out of attempts).
pub async fn verify(
    pool: &Arc<Pool>,
    session: SessionKey,
    who: &Authorized,
    targets: &[Target],
    task: &Task,
    job: &JobRecord,
    submit: &Submit,
) -> Result<Vec<(u64, ProofBytes)>, Rejection> {
    let circuit = pool.circuits().get(&job.circuit_id).ok_or_else(|| {
        Rejection::UnknownCircuit(format!("circuit {} is not registered", job.circuit_id))
    })?;
    let mut proofs = Vec::with_capacity(submit.proofs.len());
    let mut failures = vec![];
    for p in &submit.proofs {
        match ProofBytes::from_hex(&p.proof) {
            Ok(b) => proofs.push((p.index, b)),
            Err(e) => failures.push(format!("statement {}: {e}", p.index)),
        }
    }
    if failures.is_empty() {
        let items = proofs
            .iter()
            .map(|(i, b)| (job.statements[*i as usize].public.clone(), b.clone()))
            .collect();
        let verdicts = pool
            .verifier()
            .verify(&circuit.record.id, circuit.verifier.clone(), items)
            .await
            .map_err(|e| Rejection::Busy(format!("{e}; reconnect and submit again")))?;
        failures = proofs
            .iter()
            .zip(verdicts)
            .filter_map(|((i, _), v)| v.err().map(|e| format!("statement {i}: {e}")))
            .collect();
    }
    if failures.is_empty() {
        return Ok(proofs);
    }
    pool.dispatch().with(|s| s.fail(session, &task.id));
    lifecycle::fail_exhausted(pool);
    warn!(worker = %who.worker, task = %task.id, first = %failures[0], "proofs rejected");
    let summary = format!(
        "{} of {} proofs rejected; {}",
        failures.len(),
        submit.proofs.len(),
        failures[0]
    );
    Err(match pool.bans().strike(targets) {
        Strike::Warned { remaining } => Rejection::Invalid {
            message: format!(
                "{summary} (warning: {remaining} more invalid submit(s) within {} s ban this worker{})",
                pool.config().bans.window_secs,
                if who.verified { "" } else { " at this address" }
            ),
            failures,
            banned: false,
        },
        Strike::Banned { for_ } => {
            pool.metrics().bans.inc();
            warn!(worker = %who.worker, ip = %who.ip, secs = for_.as_secs(), "banned for invalid work");
            Rejection::Invalid {
                message: format!(
                    "{summary}; too many invalid submits: banned for {} s",
                    for_.as_secs()
                ),
                failures,
                banned: true,
            }
        }
    })
}

/// Step 3: claims the task's statements, completes the task, stores its proofs
/// and credits the share (durably), and answers with a signed receipt.
pub async fn record(
    pool: &Arc<Pool>,
    session: SessionKey,
    who: &Authorized,
    task: Task,
    job: Arc<JobRecord>,
    proofs: Vec<(u64, ProofBytes)>,
) -> Result<SubmitResult, Rejection> {
    let store = pool.store();
    // A statement is proven once on this pool, whatever the job: claim each of
    // the task's statements (a statement proven before, or claimed by a submit in
    // flight, is taken). The claim is held in memory until the share is stored,
    // and written with it.
    let keys: Vec<String> = proofs
        .iter()
        .map(|(i, _)| statement_key(&job.circuit_id, &job.statements[*i as usize].public))
        .collect();
    let mut claim = pool.shares().begin();
    let mut taken = vec![];
    let proven = match store.proven_among(&keys).await {
        Ok(p) => p,
        Err(e) => {
            pool.dispatch().with(|s| s.release(session, &task.id));
            error!(error = %e, task = %task.id, "cannot read proven statements; statements re-queued");
            return Err(Rejection::Storage(
                "the pool could not store this share; the task was re-queued, nothing is credited"
                    .into(),
            ));
        }
    };
    for (k, (i, _)) in keys.iter().zip(&proofs) {
        if proven.contains(k) || !claim.take(k) {
            taken.push(*i);
        }
    }
    if !taken.is_empty() {
        drop(claim);
        return Err(already_proven(pool, session, &task, &job, &taken).await);
    }
    let storing = pool.shares().storing(&job.id);
    let completion = pool
        .dispatch()
        .with(|s| s.complete(session, &task.id, Instant::now()))?;
    let at_ms = now_ms();
    let stored: Vec<(u64, StoredProof)> = proofs
        .into_iter()
        .map(|(i, proof)| {
            (
                i,
                StoredProof {
                    proof,
                    worker: who.worker.to_string(),
                    task: task.id.clone(),
                    at_ms,
                    cached: false,
                },
            )
        })
        .collect();
    let work = job.work_per_proof.saturating_mul(task.count);
    let credit = ShareCredit {
        worker: who.worker.to_string(),
        job: job.id.to_string(),
        task: task.id.to_string(),
        first_statement: task.first,
        proofs: task.count,
        work,
        at_ms,
        escrow_only: !job.pooled,
    };
    let timer = pool.metrics().share_store_seconds.start_timer();
    let persisted = persist(pool, &job, &stored, &credit, &keys).await;
    timer.observe_duration();
    if pool.cluster().is_some() {
        // The give-back's mark of a shared job's share being stored.
        pool.dispatch()
            .with(|s| s.share_stored(&job.id, task.first));
    }
    let credited = match persisted {
        Ok(c) => c,
        Err(NotStored::Taken(taken)) => {
            // Another pool process stored proofs of these statements first
            // (it claimed them after this one's claim had lapsed): they are
            // done, the rest of the task is proven again, nothing is credited.
            drop(claim);
            let entry = entry_as_stored(pool, &job).await;
            let job_done = pool.dispatch().with(|s| {
                s.reopen(&task, Some(entry));
                s.mark_done(&job.id, &taken)
            });
            if job_done {
                let (pool, id) = (pool.clone(), job.id.clone());
                tokio::spawn(async move { lifecycle::finish(&pool, &id).await });
            }
            info!(task = %task.id, statements = ?taken, "statements proven on another pool process first; not credited");
            return Err(Rejection::AlreadyProven(format!(
                "statement(s) {taken:?} of task {} were proven on another of this pool's processes first (this one's claim on them had lapsed): a statement is paid once; nothing is credited and the task is withdrawn",
                task.id
            )));
        }
        Err(NotStored::Ended(why)) => {
            // The job ended and was settled (on another pool process, or by
            // an expiry here while this share was verified): crediting it
            // now would be work acknowledged and never paid. Nothing is
            // credited or marked proven, and the ended job is not taken back.
            // On sled the proofs stay: the job may have completed with them
            // in its result (PostgreSQL stored none, in one transaction).
            info!(task = %task.id, job = %job.id, "a verified share came after its job was settled; not credited");
            return Err(Rejection::Stale(why));
        }
        Err(NotStored::Failed(why)) => {
            // On PostgreSQL nothing of the share was stored (its proofs,
            // credit and marks are one transaction); what is stored under
            // these statements is another process's.
            if !pool.ledger().stores_proofs() {
                for k in &keys {
                    let _ = store.unmark_proven(k).await;
                }
                let indices: Vec<u64> = task.indices().collect();
                let _ = store.remove_proofs(&job.id, &indices).await;
            }
            let entry = entry_as_stored(pool, &job).await;
            pool.dispatch().with(|s| s.reopen(&task, Some(entry)));
            return Err(Rejection::Storage(why));
        }
    };
    drop(claim);
    drop(storing);
    if let Some(twin) = &completion.cancelled {
        info!(task = %task.id, twin = %twin.id, worker = %twin.worker, "the first of a task and its backup finished; the other is cancelled");
        pool.dispatch().send_cancels(
            std::slice::from_ref(twin),
            "its twin lease (a backup) finished first",
        );
    }
    if let Some(c) = pool.cluster() {
        c.announce(crate::cluster::Event::Proofs {
            job: job.id.clone(),
            first: task.first,
            count: task.count,
        })
        .await;
    }
    pool.metrics().proofs_credited.inc_by(task.count);
    pool.metrics().work_credited.inc_by(work);
    pool.metrics()
        .rates
        .record(crate::circuits::now_ms(), &task.worker, task.count, work);
    if completion.job_done {
        let (pool, id) = (pool.clone(), job.id.clone());
        tokio::spawn(async move { lifecycle::finish(&pool, &id).await });
    }
    let receipt = pool.signer().sign(credited.receipt);
    Ok(SubmitResult {
        accepted: task.count as u32,
        work,
        receipt: Some(serde_json::to_value(&receipt).expect("receipts serialise")),
    })
}

/// The job as the scheduler takes it back when a completed task's share was
/// not stored (`Scheduler::reopen`): what is stored is done.
async fn entry_as_stored(pool: &Pool, job: &JobRecord) -> crate::scheduler::JobEntry {
    let done = pool
        .store()
        .job_proofs(&job.id)
        .await
        .map(|v| v.into_iter().map(|(i, _)| i).collect())
        .unwrap_or_default();
    lifecycle::entry(pool.config(), job, done)
}

/// Why a verified share was not stored.
enum NotStored {
    /// Another pool process stored proofs of these statements first.
    Taken(Vec<u64>),
    /// The job was settled before the share was recorded; the message for
    /// the miner.
    Ended(String),
    /// A storage fault; the message for the miner.
    Failed(String),
}

impl From<String> for NotStored {
    fn from(why: String) -> Self {
        NotStored::Failed(why)
    }
}

/// Stores a share: its proofs, then its credit, then its statements' proven
/// marks, then one flush. sled recovers a prefix of its log, so a credit that
/// survives a crash always has its proofs (see `lifecycle::recover`), and a
/// proven mark always its credit (`recover` writes the marks of credited proofs
/// a crash cut off). The error is the message for the miner.
async fn persist(
    pool: &Pool,
    job: &JobRecord,
    stored: &[(u64, StoredProof)],
    credit: &ShareCredit,
    keys: &[String],
) -> Result<payouts::Credited, NotStored> {
    let stored_msg =
        "the pool could not store this share; the task was re-queued, nothing is credited";
    let store = pool.store();
    let policy = lifecycle::policy_for(pool.config(), job);
    let refused = |e: LedgerError| {
        match e {
        LedgerError::JobSettled { job } => NotStored::Ended(format!(
            "job {job} ended and was settled before this share was recorded: nothing is credited, and no more work on it is wanted"
        )),
        LedgerError::Insufficient { have, need, .. } => {
            error!(task = %credit.task, have, need, "PPS funds cannot pay a verified share; add funds with `zkpool funds add`");
            NotStored::Failed(format!("the pool's PPS funds ({have}) cannot pay this share ({need}); the task was re-queued and nothing is credited: tell the operator"))
        }
        e => {
            error!(error = %e, task = %credit.task, "could not credit a verified share; statements re-queued");
            NotStored::Failed(stored_msg.to_owned())
        }
    }
    };
    // On PostgreSQL the proofs, the credit and the marks are one transaction;
    // on sled the proofs go first (see the function's doc).
    let atomic = pool.ledger().stores_proofs();
    let credited = if atomic {
        let records = stored
            .iter()
            .map(|(i, p)| (*i, serde_json::to_string(p).expect("proofs serialise")))
            .collect();
        let marks = keys
            .iter()
            .zip(stored)
            .map(|(k, (_, p))| (k.clone(), p.proof.0.clone()))
            .collect();
        match pool
            .ledger()
            .credit_with_proofs(credit, &policy, records, marks)
            .await
        {
            Some(Ok(ShareOutcome::Credited(c))) => c,
            Some(Ok(ShareOutcome::Taken(taken))) => return Err(NotStored::Taken(taken)),
            Some(Err(e)) => return Err(refused(e)),
            None => unreachable!("a ledger that stores proofs takes them with the credit"),
        }
    } else {
        let taken = store.claim_proofs(&job.id, stored).await.map_err(|e| {
            error!(error = %e, task = %credit.task, "could not store a verified share; statements re-queued");
            stored_msg.to_owned()
        })?;
        if !taken.is_empty() {
            return Err(NotStored::Taken(taken));
        }
        pool.ledger()
            .credit(credit, &policy)
            .await
            .map_err(refused)?
    };
    if !credited.new {
        warn!(job = %job.id, first = credit.first_statement, "share was already in the ledger; not credited twice");
    }
    // On PostgreSQL the marks went in with the credit.
    if !atomic {
        for (k, (_, p)) in keys.iter().zip(stored) {
            store.mark_proven(k, &p.proof).await.map_err(|e| {
                error!(error = %e, task = %credit.task, "could not mark statements proven");
                stored_msg.to_owned()
            })?;
        }
    }
    store.flush().await.map_err(|e| {
        error!(error = %e, task = %credit.task, "could not flush a share; statements re-queued");
        stored_msg.to_owned()
    })?;
    Ok(credited)
}

/// A submit whose statements (some of them) were proven meanwhile: the task goes
/// back without blame, the proven statements are filled from the proofs the pool
/// has, the rest are proven again; nothing is credited.
async fn already_proven(
    pool: &Arc<Pool>,
    session: SessionKey,
    task: &Task,
    job: &JobRecord,
    taken: &[u64],
) -> Rejection {
    let store = pool.store();
    let mut filled = vec![];
    for &i in taken {
        let k = statement_key(&job.circuit_id, &job.statements[i as usize].public);
        if let Ok(Some(proof)) = store.proven(&k).await {
            filled.push((i, StoredProof::cached(proof)));
        }
    }
    let stored = store.put_proofs(&job.id, &filled).await.is_ok() && store.flush().await.is_ok();
    let indices: Vec<u64> = filled.iter().map(|(i, _)| *i).collect();
    let job_done = pool.dispatch().with(|s| {
        s.release(session, &task.id);
        stored && s.mark_done(&job.id, &indices)
    });
    if job_done {
        let (pool, id) = (pool.clone(), job.id.clone());
        tokio::spawn(async move { lifecycle::finish(&pool, &id).await });
    }
    info!(task = %task.id, statements = ?taken, "statements proven before the submit (another job, or a copied proof); not credited");
    Rejection::AlreadyProven(format!(
        "statement(s) {taken:?} of task {} were proven before this submit (by another job with the same statement, or this is a copy of someone else's proof): a statement is paid once; nothing is credited and the task is withdrawn",
        task.id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bans::{BanPolicy, Bans},
        scheduler::{JobEntry, SchedConfig},
    };
    use std::{collections::BTreeSet, time::Duration};
    use stratum::SubmittedProof;

    fn sched() -> (Scheduler, Task) {
        let mut s = Scheduler::new(SchedConfig {
            target_task: Duration::from_secs(10),
            lease_min: Duration::from_secs(60),
            max_per_task: 8,
            tasks_per_session: 1,
            max_attempts: 5,
            backup_after: Duration::ZERO,
        });
        s.add_job(JobEntry {
            id: "j".into(),
            circuit_id: "c".into(),
            circuit_name: "chain".into(),
            deadline_ms: u64::MAX,
            created_ms: 0,
            total: 1,
            done: BTreeSet::new(),
            max_per_task: 8,
            client: "c".into(),
            allow: None,
            shared: false,
        });
        s.add_session(1, stratum::Worker::parse("alice.rig1").unwrap(), None);
        let task = s.poll_assignments(Instant::now()).remove(0);
        (s, task)
    }

    fn submit(task: &str, indices: &[u64]) -> Submit {
        Submit {
            task: task.into(),
            proofs: indices
                .iter()
                .map(|&index| SubmittedProof {
                    index,
                    proof: "00".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn admit_takes_exactly_the_sessions_task_and_refuses_the_banned() {
        let (s, task) = sched();
        assert_eq!(
            admit(None, &s, 1, &submit(&task.id, &[0])),
            Ok(task.clone())
        );
        // Another session's, an unknown task, the wrong statements.
        let r = admit(None, &s, 2, &submit(&task.id, &[0])).unwrap_err();
        assert_eq!(r.code(), ErrorCode::StaleTask, "{r:?}");
        let r = admit(None, &s, 1, &submit("nope", &[0])).unwrap_err();
        assert_eq!(r.code(), ErrorCode::StaleTask);
        let r = admit(None, &s, 1, &submit(&task.id, &[0, 0])).unwrap_err();
        assert_eq!(r.code(), ErrorCode::WrongStatement, "{r:?}");
        let r = admit(None, &s, 1, &submit(&task.id, &[1])).unwrap_err();
        assert_eq!(r.code(), ErrorCode::WrongStatement);
        // A ban comes first: no lease is even looked at.
        let r = admit(
            Some("banned for 60 more s".into()),
            &s,
            1,
            &submit(&task.id, &[0]),
        )
        .unwrap_err();
        assert_eq!(r, Rejection::Banned("banned for 60 more s".into()));
        assert_eq!(r.into_rpc().kind(), Some(ErrorCode::Banned));
    }

    #[test]
    fn a_session_is_refused_once_its_name_at_its_address_is_banned() {
        let mut b = Bans::new(BanPolicy {
            invalid_threshold: 2,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(600),
            names_per_ip: 0,
        });
        let now = Instant::now();
        let who = Authorized {
            worker: stratum::Worker::parse("alice.rig1").unwrap(),
            ip: "10.0.0.1".parse().unwrap(),
            verified: false,
        };
        let t = crate::bans::targets(&who.worker, who.ip, who.verified, false);
        assert!(b.banned(&t, now).is_none());
        b.strike(&t, now);
        assert_eq!(
            b.strike(&t, now),
            Strike::Banned {
                for_: Duration::from_secs(600)
            }
        );
        let (s, task) = sched();
        let ban = b
            .banned(&t, now)
            .map(|(who, _)| format!("{} is banned", who.key()));
        let r = admit(ban, &s, 1, &submit(&task.id, &[0])).unwrap_err();
        assert_eq!(
            r,
            Rejection::Banned("worker:alice.rig1@10.0.0.1 is banned".into())
        );
    }

    #[test]
    fn invalid_work_carries_its_failures_and_a_ban_its_code() {
        let r = Rejection::Invalid {
            message: "1 of 1 proofs rejected".into(),
            failures: vec!["statement 0: malformed".into()],
            banned: false,
        };
        assert_eq!(r.code(), ErrorCode::InvalidProof);
        let e = r.into_rpc();
        assert_eq!(e.data.unwrap()["failures"][0], "statement 0: malformed");
        let banned = Rejection::Invalid {
            message: "banned".into(),
            failures: vec![],
            banned: true,
        };
        assert_eq!(banned.code(), ErrorCode::Banned);
    }

    /// A job is settled only after the shares of its completed tasks are
    /// stored: the wait ends when the last of them is, and at once for
    /// another job.
    #[tokio::test]
    async fn settling_waits_for_the_shares_being_stored_of_that_job_only() {
        let shares = std::sync::Arc::new(Shares::default());
        let (a, b) = (shares.storing("j"), shares.storing("j"));
        let other = std::time::Duration::from_secs(5);
        let started = Instant::now();
        shares.wait_stored("k", other).await;
        assert!(started.elapsed() < other, "another job does not wait");
        let s2 = shares.clone();
        let waiter = tokio::spawn(async move {
            s2.wait_stored("j", std::time::Duration::from_secs(30))
                .await;
            Instant::now()
        });
        tokio::task::yield_now().await;
        drop(a);
        let dropped_last = Instant::now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "one share of j is still being stored"
        );
        let last = Instant::now();
        drop(b);
        let done = waiter.await.unwrap();
        assert!(done >= last && done >= dropped_last);
        assert!(!shares.storing.contains_key("j"), "nothing left behind");
    }
}
