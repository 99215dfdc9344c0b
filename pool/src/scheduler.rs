//! The scheduler: which statements are ready, leased or done, and which session
//! gets which task. It has no I/O and reads no clock: every call takes `now`, so
//! it is tested deterministically.
//!
//! - A **task** is a contiguous run of one job's ready statements, leased to one
//!   session until `expires_at`. Its size is chosen per worker from that worker's
//!   measured statements/second on that circuit (EWMA), so a task takes about
//!   `target_task` on it (the proving analogue of vardiff), capped by the job's
//!   fair share of eligible sessions (so the tail of a job spreads out) and by the
//!   per-task limit derived from the line limit.
//! - Jobs are served fairly across clients, earliest deadline first within a
//!   client: the next task goes to the client with the fewest statements in flight,
//!   so one big client cannot starve the others. A job the server marks urgent
//!   (its deadline is near, [`Scheduler::set_urgent`]) goes before all of that,
//!   earliest deadline first.
//! - Sessions are served round-robin, one task per session per round, each up to
//!   `tasks_per_session` tasks at once (one proving, the rest queued on the rig).
//! - A statement whose proof was invalid, or whose lease ran out, is not leased
//!   again to a worker that failed it while another eligible session exists.
//! - A statement that `max_attempts` *different identities* failed is reported by
//!   [`Scheduler::take_exhausted`] and its job is ended as failed (the pool does
//!   not hand out forever work its rigs cannot do). An identity is what a session
//!   proved it is: its account when it authorized with the account's worker token,
//!   otherwise its address. Worker names are free to invent, so counting names let
//!   five made-up names from one socket fail anyone's job; counting identities, not
//!   failures, also keeps one or two stalling rigs from failing it by taking and
//!   dropping the same statement over and over.
//! - A job may name the accounts allowed to prove it (its statements' private
//!   inputs go to the rigs that do); only sessions that proved they are one of
//!   those accounts get its tasks.
//!
//! - **Backup leases**: at the tail of a job (nothing pending), a free session
//!   gets a copy of a task that has run more than twice its worker's expected time
//!   (and at least `backup_after`). The first verified proof wins; the other lease
//!   is cancelled (`mining.cancel`) and a submit for it afterwards is stale and not
//!   credited. If one of the two fails or expires, the other carries on alone.
//!
//! Architecture Invariant: every statement of an active job is in exactly one of
//! `pending`, a live task (or a task and its backup), or done; leases are
//! memory-only (see `store`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    time::{Duration, Instant},
};

use stratum::{CircuitId, JobId, TaskId, Worker};

/// Scheduling parameters (from `[scheduler]` in the config).
#[derive(Debug, Clone)]
pub struct SchedConfig {
    pub target_task: Duration,
    pub lease_min: Duration,
    pub max_per_task: usize,
    pub tasks_per_session: usize,
    /// Different workers whose attempt at a statement failed (invalid proofs,
    /// expired leases) after which its job fails; 0: never.
    pub max_attempts: u32,
    /// The least time a task runs before it may get a backup lease; zero: never.
    pub backup_after: Duration,
}

/// A statement that failed `attempts` times: its job should end as failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    pub job: JobId,
    pub statement: u64,
    pub attempts: u32,
    /// The worker that failed it last.
    pub worker: Worker,
}

/// How many chunks of a shared job this process's sessions that have proven
/// nothing of its circuit here want between them, at most ([`Scheduler::wanted`]).
pub const UNMEASURED_CHUNKS: u64 = 4;

/// A shared job's task renewed past this many of its leases, never finished,
/// is overdue: its chunk is given back for the other processes to prove too
/// ([`Scheduler::give_back`]).
const OVERDUE_LEASES: u32 = 2;

/// How long a completed task's chunk counts as held after its completion,
/// while its share is stored ([`Scheduler::give_back`]); a store takes
/// milliseconds, and one that fails reopens the task.
const STORING_GRACE: Duration = Duration::from_secs(30);

/// How a job ranks for the next task: (urgent ? 0 : 1, deadline or the client's
/// statements in flight, deadline, creation); lower goes first.
type Rank = (u8, u64, u64, u64);

/// A session's handle in the scheduler.
pub type SessionKey = u64;

/// A lease of statements `first .. first + count` of `job` to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub job: JobId,
    pub circuit: CircuitId,
    pub session: SessionKey,
    pub worker: Worker,
    pub first: u64,
    pub count: u64,
    pub leased_at: Instant,
    pub lease: Duration,
    pub expires_at: Instant,
    /// A backup lease of a straggling task.
    pub backup: bool,
    /// The job's client (for fairness across clients).
    pub client: String,
    /// Who the session proved it is (see the module doc): what a failure counts against.
    pub identity: String,
}

impl Task {
    pub fn indices(&self) -> std::ops::Range<u64> {
        self.first..self.first + self.count
    }
}

/// What the scheduler needs to know of a job.
#[derive(Debug, Clone)]
pub struct JobEntry {
    pub id: JobId,
    pub circuit_id: CircuitId,
    pub circuit_name: String,
    pub deadline_ms: u64,
    pub created_ms: u64,
    pub total: u64,
    /// Statements that already have a verified proof.
    pub done: BTreeSet<u64>,
    /// Most statements per task for this job (from the line limit).
    pub max_per_task: usize,
    /// Who submitted the job: tasks are shared fairly across clients.
    pub client: String,
    /// Accounts allowed to prove it (sessions that authorized with that
    /// account's worker token); `None`: every session.
    pub allow: Option<BTreeSet<String>>,
    /// The job is shared with other pool processes on one database: its
    /// statements wait in `elsewhere` until this process claims them for its
    /// own sessions ([`Scheduler::grant`], see `cluster`).
    pub shared: bool,
}

#[derive(Debug)]
struct JobQueue {
    entry: JobEntry,
    pending: BTreeSet<u64>,
    /// Statements of a shared job this process has not claimed (another
    /// process may be proving them): not leased here until granted.
    elsewhere: BTreeSet<u64>,
    done: u64,
    /// Statement -> workers whose proof of it was invalid or whose lease ran out.
    avoid: HashMap<u64, HashSet<Worker>>,
    /// Statement -> identities that failed it (what exhausts its attempts).
    attempts: HashMap<u64, HashSet<String>>,
    /// A statement of this job used up its attempts (reported once).
    exhausted: bool,
    /// Statements of a shared job whose lease lapsed here (ran out, its
    /// session went away, its proofs were invalid): they wait elsewhere, and
    /// their chunks go back to the other processes ([`Scheduler::give_back`]).
    lapsed: BTreeSet<u64>,
    /// Chunks of a shared job given back, and until when this process does
    /// not claim them again (another process's sessions get them first).
    cooling: HashMap<u64, Instant>,
    /// Live tasks past two of their leases (renewed, not finished) whose chunks
    /// were given back already.
    overdue_given: HashSet<TaskId>,
    /// Tasks of a shared job completed here whose shares may still be being
    /// stored (first statement -> count, when): their chunks are not given
    /// back meanwhile, or another process could prove them again.
    storing: BTreeMap<u64, (u64, Instant)>,
    /// Its deadline is near: served before fairness, earliest deadline first.
    urgent: bool,
}

impl JobQueue {
    fn failed_by(&self, i: u64, worker: &Worker) -> bool {
        self.avoid.get(&i).is_some_and(|w| w.contains(worker))
    }
}

#[derive(Debug)]
struct SessionSlot {
    worker: Worker,
    /// Who the session proved it is (see the module doc).
    identity: String,
    /// The account whose worker token the session gave, if any.
    account: Option<String>,
    /// Circuit ids or names this session can prove; `None`: all.
    circuits: Option<HashSet<String>>,
    tasks: BTreeSet<TaskId>,
    last_done: Option<Instant>,
    /// The connection closed and the session waits to be resumed: its tasks stay
    /// leased (and still expire), it gets no new work and counts as no prover.
    parked: bool,
}

impl SessionSlot {
    fn supports(&self, job: &JobEntry) -> bool {
        let allowed = job
            .allow
            .as_ref()
            .is_none_or(|allow| self.account.as_ref().is_some_and(|a| allow.contains(a)));
        allowed
            && self.circuits.as_ref().is_none_or(|c| {
                c.contains(job.circuit_id.as_str()) || c.contains(&job.circuit_name)
            })
    }
}

/// Why a submit does not match a live task of the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskReject {
    /// Unknown task, not this session's, expired or already finished.
    #[error("task {0} is not leased to this session (unknown, expired, cancelled or finished)")]
    Stale(TaskId),
    /// The submitted statement indices are not exactly the task's.
    #[error("task {task} covers statements {first}..{end}; the submit has {detail}")]
    WrongStatements {
        task: TaskId,
        first: u64,
        end: u64,
        detail: String,
    },
}

/// The outcome of completing a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub task: Task,
    /// The job has a verified proof for every statement now.
    pub job_done: bool,
    /// The task's twin (its backup, or the task it backed up), taken back: its
    /// session should be told to stop.
    pub cancelled: Option<Task>,
}

/// Progress of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobProgress {
    pub total: u64,
    pub done: u64,
    pub leased: u64,
    pub pending: u64,
}

pub struct Scheduler {
    cfg: SchedConfig,
    jobs: BTreeMap<JobId, JobQueue>,
    tasks: HashMap<TaskId, Task>,
    sessions: BTreeMap<SessionKey, SessionSlot>,
    /// Statements per second, per (worker, circuit id).
    rates: HashMap<(Worker, CircuitId), f64>,
    next_task: u64,
    /// Session after which the next round-robin pass starts.
    cursor: SessionKey,
    /// Sessions with a free task slot: dispatch looks only at these, so an event
    /// that frees one slot costs O(free sessions), not O(all sessions) (with
    /// 10,000 sessions the full scan made mass reconnects quadratic).
    free: BTreeSet<SessionKey>,
    /// Sessions that named no circuits (they prove every job), and those that did.
    unfiltered: usize,
    filtered: BTreeSet<SessionKey>,
    /// Statements that used up their attempts, not yet taken by the server.
    exhausted: Vec<Exhausted>,
    /// A task and its backup, each mapped to the other.
    twins: HashMap<TaskId, TaskId>,
    /// When live tasks were last scanned for stragglers: at most once a second,
    /// because the scan is O(live tasks) and dispatch runs on every submit.
    last_backup_scan: Option<Instant>,
    /// Statements in live tasks, per client.
    in_flight: HashMap<String, u64>,
    /// Bumped by every change that can make an assignment possible: a job or a
    /// session added, a slot freed, statements re-queued, a worker blamed (the
    /// avoid rule relaxes once every eligible worker failed a statement), a session
    /// gone (fewer eligible sessions relaxes it too).
    epoch: u64,
    /// The epoch and time of the last pass that found statements pending and could
    /// assign none of them (every free session unable or not allowed to take
    /// them). Until the epoch moves, or a second passes, dispatch skips the pass:
    /// at 10,000 idle sessions it costs milliseconds under the lock, and dispatch
    /// runs on every submit.
    stalled: Option<(u64, Instant)>,
    /// Passes made over the free sessions (for tests and diagnostics).
    passes: u64,
}

impl Scheduler {
    pub fn new(cfg: SchedConfig) -> Self {
        Scheduler {
            cfg,
            jobs: BTreeMap::new(),
            tasks: HashMap::new(),
            sessions: BTreeMap::new(),
            rates: HashMap::new(),
            next_task: 1,
            cursor: 0,
            free: BTreeSet::new(),
            unfiltered: 0,
            filtered: BTreeSet::new(),
            exhausted: Vec::new(),
            twins: HashMap::new(),
            last_backup_scan: None,
            in_flight: HashMap::new(),
            epoch: 0,
            stalled: None,
            passes: 0,
        }
    }

    /// Adds a job; its statements not in `entry.done` become ready. Returns false
    /// when every statement is already done (the caller assembles it).
    pub fn add_job(&mut self, entry: JobEntry) -> bool {
        let mut pending: BTreeSet<u64> = (0..entry.total)
            .filter(|i| !entry.done.contains(i))
            .collect();
        let done = entry.total - pending.len() as u64;
        let open = !pending.is_empty();
        let elsewhere = if entry.shared {
            std::mem::take(&mut pending)
        } else {
            BTreeSet::new()
        };
        self.epoch += 1;
        if open {
            self.jobs.insert(
                entry.id.clone(),
                JobQueue {
                    entry,
                    pending,
                    elsewhere,
                    done,
                    avoid: HashMap::new(),
                    attempts: HashMap::new(),
                    exhausted: false,
                    lapsed: BTreeSet::new(),
                    cooling: HashMap::new(),
                    overdue_given: HashSet::new(),
                    storing: BTreeMap::new(),
                    urgent: false,
                },
            );
        }
        open
    }

    /// Numbers the next tasks from `n`: pool processes sharing a database each
    /// start at a random point, so no two hand out the same task id.
    pub fn number_tasks_from(&mut self, n: u64) {
        self.next_task = n;
    }

    /// Marks a job urgent (its deadline is near) or not; see the module doc.
    pub fn set_urgent(&mut self, job: &JobId, urgent: bool) {
        if let Some(q) = self.jobs.get_mut(job) {
            q.urgent = urgent;
        }
    }

    fn count_in_flight(&mut self, client: &str, add: u64, remove: u64) {
        let n = self.in_flight.entry(client.to_owned()).or_default();
        *n = (*n + add).saturating_sub(remove);
        if *n == 0 {
            self.in_flight.remove(client);
        }
    }

    /// A job's progress (a lookup: any id or the string a request carries).
    pub fn progress(&self, job: &str) -> Option<JobProgress> {
        let q = self.jobs.get(job)?;
        let pending = (q.pending.len() + q.elsewhere.len()) as u64;
        Some(JobProgress {
            total: q.entry.total,
            done: q.done,
            leased: q.entry.total - q.done - pending,
            pending,
        })
    }

    /// Makes statements of a shared job this process claimed ready here (those
    /// still waiting elsewhere; others are left alone). Returns how many.
    pub fn grant(&mut self, job: &str, indices: impl IntoIterator<Item = u64>) -> u64 {
        let Some(q) = self.jobs.get_mut(job) else {
            return 0;
        };
        let mut n = 0;
        for i in indices {
            if q.elsewhere.remove(&i) {
                q.pending.insert(i);
                n += 1;
            }
        }
        if n > 0 {
            self.epoch += 1;
        }
        n
    }

    /// The shared jobs that want more statements claimed for this process's
    /// sessions: each with how many chunks of `chunk` statements it wants, and
    /// candidate chunks (those holding statements that wait elsewhere, in
    /// order; more than wanted, since other processes hold some), at most
    /// `max_chunks`. A job wants statements while its ready ones here are
    /// fewer than its eligible sessions here take at once (each session's
    /// measured task size times its task slots), and at least one chunk; a job
    /// no session here can prove wants none. A chunk given back
    /// ([`Scheduler::give_back`]) is no candidate until its cooldown ends.
    pub fn wanted(
        &self,
        chunk: u64,
        max_chunks: usize,
        now: Instant,
    ) -> Vec<(JobId, usize, Vec<u64>)> {
        let chunk = chunk.max(1);
        let mut out = vec![];
        if self.sessions.is_empty() {
            return out;
        }
        // What the eligible sessions take at once: for jobs without an allow
        // list the same for every job of a circuit (and per-task cap), so a pass
        // costs O(sessions x circuits), not O(sessions x jobs).
        // Sessions that have proven nothing of the circuit here count for
        // UNMEASURED_CHUNKS chunks together at most: any number of made-up
        // names cannot make this process claim a whole job and sit on it.
        let takes = |q: &JobQueue, per_task: u64| {
            let slots = self.cfg.tasks_per_session.max(1) as u64;
            let (mut measured, mut unmeasured) = (0u64, 0u64);
            let mut eligible = false;
            for s in self.sessions.values() {
                if s.parked || !s.supports(&q.entry) {
                    continue;
                }
                eligible = true;
                match self
                    .rates
                    .get(&(s.worker.clone(), q.entry.circuit_id.clone()))
                {
                    Some(rate) => {
                        let size =
                            (rate * self.cfg.target_task.as_secs_f64()).ceil().max(1.0) as u64;
                        measured = measured.saturating_add(size.min(per_task) * slots);
                    }
                    None => unmeasured = unmeasured.saturating_add(slots),
                }
            }
            let unmeasured = unmeasured.min(UNMEASURED_CHUNKS * chunk);
            eligible.then_some(measured.saturating_add(unmeasured))
        };
        let mut by_circuit: HashMap<(CircuitId, u64), Option<u64>> = HashMap::new();
        for (id, q) in &self.jobs {
            if q.elsewhere.is_empty() || q.exhausted {
                continue;
            }
            let per_task = q.entry.max_per_task.min(self.cfg.max_per_task).max(1) as u64;
            let target = match q.entry.allow {
                Some(_) => takes(q, per_task),
                None => *by_circuit
                    .entry((q.entry.circuit_id.clone(), per_task))
                    .or_insert_with(|| takes(q, per_task)),
            };
            let Some(target) = target else {
                continue;
            };
            let have = q.pending.len() as u64;
            let target = target.max(chunk);
            if have >= target {
                continue;
            }
            let want = (target - have).div_ceil(chunk) as usize;
            // Every candidate up to `max_chunks`, not the first few: the
            // free chunks may lie past many that other processes hold.
            let limit = max_chunks.max(1);
            let mut chunks: Vec<u64> = vec![];
            let mut i = q.elsewhere.first().copied();
            while let Some(at) = i {
                let c = at / chunk;
                let range = c * chunk..(c + 1) * chunk;
                let giving_back = q.cooling.get(&c).is_some_and(|until| *until > now)
                    || q.lapsed.range(range.clone()).next().is_some();
                if !giving_back {
                    chunks.push(c);
                    if chunks.len() >= limit {
                        break;
                    }
                }
                i = q.elsewhere.range(range.end..).next().copied();
            }
            out.push((id.clone(), want, chunks));
        }
        out
    }

    /// Gives back the chunks (of `chunk` statements) of shared jobs that this
    /// process's sessions do not prove: chunks with statements whose lease
    /// lapsed here ([`Scheduler::expire`], a session removed, invalid
    /// proofs), and chunks of live tasks past two of their leases (renewed and
    /// never finished: the other processes may then prove them too, as a
    /// backup lease would, and the first stored proof is paid). A chunk goes
    /// once no task within two of its leases holds any of it and no share of it
    /// is being stored here; its ready statements go back to waiting
    /// elsewhere, and this process does not want it again for `cooldown`.
    /// Returns the chunks per job, for the caller to drop its claims.
    ///
    /// With `others_waiting` false (no other process has sessions) nothing is
    /// given back: lapsed statements are ready here again at once, and chunks
    /// given back before may be claimed again.
    pub fn give_back(
        &mut self,
        chunk: u64,
        now: Instant,
        cooldown: Duration,
        others_waiting: bool,
    ) -> Vec<(JobId, Vec<u64>)> {
        let chunk = chunk.max(1);
        let mut out = vec![];
        let mut moved = false;
        if !others_waiting {
            for q in self.jobs.values_mut() {
                for i in std::mem::take(&mut q.lapsed) {
                    if q.elsewhere.remove(&i) {
                        q.pending.insert(i);
                        moved = true;
                    }
                }
                q.cooling.clear();
                q.storing
                    .retain(|_, (_, at)| now.saturating_duration_since(*at) < STORING_GRACE);
            }
            if moved {
                self.epoch += 1;
            }
            return out;
        }
        let chunks_of = |first: u64, count: u64| first / chunk..=(first + count.max(1) - 1) / chunk;
        let is_overdue = |t: &Task| now >= t.leased_at + t.lease * OVERDUE_LEASES;
        // Overdue tasks not handled yet (the time first: most tasks are not).
        let mut overdue: HashMap<&JobId, Vec<&Task>> = HashMap::new();
        for t in self.tasks.values() {
            if !is_overdue(t) {
                continue;
            }
            if self
                .jobs
                .get(&t.job)
                .is_some_and(|q| q.entry.shared && !q.overdue_given.contains(&t.id))
            {
                overdue.entry(&t.job).or_default().push(t);
            }
        }
        // The chunks that may go, per job: lapsed statements', overdue tasks',
        // and what is ready where nobody here can prove the job any more.
        let mut candidates: HashMap<JobId, BTreeSet<u64>> = HashMap::new();
        for (id, q) in &self.jobs {
            if !q.entry.shared {
                continue;
            }
            let mut c: BTreeSet<u64> = q.lapsed.iter().map(|i| i / chunk).collect();
            for t in overdue.get(id).into_iter().flatten() {
                c.extend(chunks_of(t.first, t.count));
            }
            if !q.pending.is_empty()
                && !self
                    .sessions
                    .values()
                    .any(|s| !s.parked && s.supports(&q.entry))
            {
                c.extend(q.pending.iter().map(|i| i / chunk));
            }
            if !c.is_empty() {
                candidates.insert(id.clone(), c);
            }
        }
        // What holds a candidate chunk here: a task within two of its leases
        // (one scan, only when something may go), or a share being stored.
        let mut held: HashSet<(&JobId, u64)> = HashSet::new();
        if !candidates.is_empty() {
            for t in self.tasks.values() {
                let Some(c) = candidates.get(&t.job) else {
                    continue;
                };
                if is_overdue(t) {
                    continue;
                }
                for ch in chunks_of(t.first, t.count) {
                    if c.contains(&ch) {
                        held.insert((&t.job, ch));
                    }
                }
            }
        }
        let max_task = self.cfg.max_per_task.max(1) as u64;
        for (id, q) in self.jobs.iter_mut() {
            if !q.entry.shared {
                continue;
            }
            q.cooling.retain(|_, until| *until > now);
            q.overdue_given.retain(|t| self.tasks.contains_key(t));
            q.storing
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < STORING_GRACE);
            let Some(candidates) = candidates.remove(id) else {
                continue;
            };
            let storing = |c: u64| {
                q.storing
                    .range(c.saturating_mul(chunk).saturating_sub(max_task)..(c + 1) * chunk)
                    .any(|(first, (count, _))| first + count > c * chunk)
            };
            // An overdue task goes with all its chunks or waits.
            let late: Vec<&Task> = overdue
                .get(id)
                .into_iter()
                .flatten()
                .copied()
                .filter(|t| {
                    chunks_of(t.first, t.count).all(|c| !held.contains(&(id, c)) && !storing(c))
                })
                .collect();
            let mut given = vec![];
            for c in candidates {
                if held.contains(&(id, c)) || storing(c) {
                    continue;
                }
                let overdue_here = late
                    .iter()
                    .any(|t| chunks_of(t.first, t.count).contains(&c));
                let range = c * chunk..(c + 1) * chunk;
                let lapsed: Vec<u64> = q.lapsed.range(range.clone()).copied().collect();
                let ready: Vec<u64> = q.pending.range(range.clone()).copied().collect();
                let waiting = q.elsewhere.range(range.clone()).next().is_some();
                if !overdue_here && lapsed.is_empty() && ready.is_empty() {
                    // Only an overdue task that must wait for another chunk.
                    continue;
                }
                for i in lapsed {
                    q.lapsed.remove(&i);
                }
                for i in &ready {
                    q.pending.remove(i);
                    q.elsewhere.insert(*i);
                    moved = true;
                }
                if overdue_here || waiting || !ready.is_empty() {
                    q.cooling.insert(c, now + cooldown);
                    given.push(c);
                }
            }
            q.overdue_given.extend(late.iter().map(|t| t.id.clone()));
            if !given.is_empty() {
                out.push((id.clone(), given));
            }
        }
        if moved {
            self.epoch += 1;
        }
        out
    }

    /// A share of `job` from statement `first` was stored (or was not, and its
    /// task reopened): its chunk no longer counts as being stored.
    pub fn share_stored(&mut self, job: &JobId, first: u64) {
        if let Some(q) = self.jobs.get_mut(job) {
            q.storing.remove(&first);
        }
    }

    /// Statements of `job` another pool process stored proofs of: this
    /// process's live tasks made only of them are ended (their proofs could
    /// not be paid) and returned, for their sessions to be told to stop; the
    /// statements count as done. Ready ones are left to [`Scheduler::mark_done`].
    pub fn end_proven_elsewhere(&mut self, job: &JobId, indices: &[u64]) -> Vec<Task> {
        let Some(q) = self.jobs.get(job) else {
            return vec![];
        };
        // Most often the statements were waiting elsewhere (another process
        // claimed them): no lease here to look for among all the tasks.
        if indices
            .iter()
            .all(|i| q.elsewhere.contains(i) || q.pending.contains(i))
        {
            return vec![];
        }
        let proven: BTreeSet<u64> = indices.iter().copied().collect();
        let ids: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.job == *job && t.indices().all(|i| proven.contains(&i)))
            .map(|t| t.id.clone())
            .collect();
        let mut ended = vec![];
        for id in ids {
            let twin = self.twins.remove(&id);
            if let Some(twin) = &twin {
                self.twins.remove(twin);
            }
            let Some(t) = self.take(&id) else { continue };
            // A twin still live holds the same statements: they are counted
            // done once, when the last of the two goes.
            let twin_live = twin.as_ref().is_some_and(|tw| self.tasks.contains_key(tw));
            if !twin_live {
                if let Some(q) = self.jobs.get_mut(job) {
                    q.done += t.count;
                }
            }
            ended.push(t);
        }
        ended
    }

    /// Requeues a task whose lease lapsed (ran out, its session went away, or
    /// its proofs were invalid): a shared job's statements wait elsewhere, not
    /// here, so the next pass does not lease them to this process's next
    /// staller before their chunk is given back ([`Scheduler::give_back`]).
    fn lapse(&mut self, t: Task) -> Task {
        let t = self.requeue(t);
        if let Some(q) = self.jobs.get_mut(&t.job).filter(|q| q.entry.shared) {
            for i in t.indices() {
                if q.pending.remove(&i) {
                    q.elsewhere.insert(i);
                    q.lapsed.insert(i);
                }
            }
        }
        t
    }

    /// The shared jobs this process holds, with their statements not yet done
    /// here (for comparing with the database).
    pub fn shared_jobs(&self) -> Vec<(JobId, u64)> {
        self.jobs
            .iter()
            .filter(|(_, q)| q.entry.shared)
            .map(|(id, q)| (id.clone(), q.done))
            .collect()
    }

    /// Adds a session whose identity is its worker name (tests and benchmarks;
    /// the pool uses [`Scheduler::add_session_as`]).
    pub fn add_session(
        &mut self,
        key: SessionKey,
        worker: Worker,
        circuits: Option<HashSet<String>>,
    ) {
        let identity = worker.to_string();
        self.add_session_as(key, worker, identity, None, circuits)
    }

    /// Adds an authorized session: `identity` is what its failures count against,
    /// `account` the account whose worker token it gave (if any).
    pub fn add_session_as(
        &mut self,
        key: SessionKey,
        worker: Worker,
        identity: String,
        account: Option<String>,
        circuits: Option<HashSet<String>>,
    ) {
        if circuits.is_some() {
            self.filtered.insert(key);
        } else {
            self.unfiltered += 1;
        }
        self.epoch += 1;
        self.free.insert(key);
        if let Some(old) = self.sessions.insert(
            key,
            SessionSlot {
                worker,
                identity,
                account,
                circuits,
                tasks: BTreeSet::new(),
                last_done: None,
                parked: false,
            },
        ) {
            // A key is never reused; if it were, forget the old slot's counts.
            if old.circuits.is_none() {
                self.unfiltered -= 1;
            }
        }
    }

    /// Removes a session; its tasks go back to the queue and are returned.
    pub fn remove_session(&mut self, key: SessionKey) -> Vec<Task> {
        let Some(slot) = self.sessions.remove(&key) else {
            return vec![];
        };
        self.epoch += 1;
        self.free.remove(&key);
        if !slot.parked {
            if slot.circuits.is_some() {
                self.filtered.remove(&key);
            } else {
                self.unfiltered -= 1;
            }
        }
        let tasks: Vec<Task> = slot
            .tasks
            .iter()
            .filter_map(|t| self.tasks.remove(t))
            .collect();
        tasks.into_iter().map(|t| self.lapse(t)).collect()
    }

    /// Parks a session whose connection closed, so a reconnecting miner can
    /// [`Scheduler::reattach`] its leases; returns how many tasks it holds. The
    /// caller removes it (requeueing the tasks) if nobody resumes it in time.
    pub fn park(&mut self, key: SessionKey) -> usize {
        let Some(slot) = self.sessions.get_mut(&key) else {
            return 0;
        };
        if !slot.parked {
            slot.parked = true;
            self.epoch += 1;
            self.free.remove(&key);
            if slot.circuits.is_some() {
                self.filtered.remove(&key);
            } else {
                self.unfiltered -= 1;
            }
        }
        slot.tasks.len()
    }

    /// Moves a parked session's live tasks to `new`, a session of the same worker;
    /// the parked one is gone afterwards. Returns the moved tasks.
    pub fn reattach(&mut self, parked: SessionKey, new: SessionKey) -> Vec<Task> {
        let same_worker = match (self.sessions.get(&parked), self.sessions.get(&new)) {
            (Some(p), Some(n)) => p.parked && p.worker == n.worker,
            _ => false,
        };
        if !same_worker {
            return vec![];
        }
        let old = self.sessions.remove(&parked).expect("checked above");
        self.epoch += 1;
        let mut moved = vec![];
        for id in old.tasks {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.session = new;
                moved.push(t.clone());
            }
        }
        let slot = self.sessions.get_mut(&new).expect("checked above");
        slot.tasks.extend(moved.iter().map(|t| t.id.clone()));
        if slot.tasks.len() >= self.cfg.tasks_per_session {
            self.free.remove(&new);
        }
        moved
    }

    /// Moves on every change that can make an assignment possible (see the
    /// field): what `Dispatch::with` watches to know when to dispatch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Connected sessions (parked ones excluded).
    pub fn sessions(&self) -> usize {
        self.sessions.len() - self.parked()
    }

    /// Parked sessions, waiting to be resumed.
    pub fn parked(&self) -> usize {
        self.sessions.values().filter(|s| s.parked).count()
    }

    pub fn live_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Statements waiting for a worker, over every job.
    pub fn pending_statements(&self) -> usize {
        self.jobs.values().map(|q| q.pending.len()).sum()
    }

    /// Puts an ended task's statements back in the queue, unless its twin still
    /// covers them.
    fn requeue(&mut self, t: Task) -> Task {
        if let Some(twin) = self.twins.remove(&t.id) {
            self.twins.remove(&twin);
            if self.tasks.contains_key(&twin) {
                return t;
            }
        }
        if let Some(q) = self.jobs.get_mut(&t.job) {
            q.pending.extend(t.indices());
            self.epoch += 1;
        }
        t
    }

    /// Sessions able to prove `job`: O(sessions that named circuits).
    fn eligible_sessions(&self, job: &JobEntry) -> usize {
        let named = self
            .filtered
            .iter()
            .filter(|k| self.sessions.get(k).is_some_and(|s| s.supports(job)))
            .count();
        (self.unfiltered + named).max(1)
    }

    /// Statements per task for `worker` on `job` now.
    fn size_for(&self, worker: &Worker, q: &JobQueue) -> u64 {
        let by_rate = match self
            .rates
            .get(&(worker.clone(), q.entry.circuit_id.clone()))
        {
            Some(rate) => (rate * self.cfg.target_task.as_secs_f64()).floor().max(1.0) as u64,
            // Unmeasured: one statement, which measures the rig quickly.
            None => 1,
        };
        let fair = (q.pending.len() as u64)
            .div_ceil(self.eligible_sessions(&q.entry) as u64)
            .max(1);
        by_rate
            .min(fair)
            .min(q.entry.max_per_task.min(self.cfg.max_per_task) as u64)
            .max(1)
    }

    fn lease_for(&self, worker: &Worker, circuit: &CircuitId, count: u64) -> Duration {
        let expected = match self.rates.get(&(worker.clone(), circuit.clone())) {
            Some(rate) if *rate > 0.0 => {
                Duration::from_secs_f64((count as f64 / rate).min(86_400.0))
            }
            _ => self.cfg.target_task,
        };
        (expected * 3).max(self.cfg.lease_min)
    }

    /// Leases ready statements to sessions with free slots; returns the new tasks.
    pub fn poll_assignments(&mut self, now: Instant) -> Vec<Task> {
        let mut out = vec![];
        if let Some((epoch, at)) = self.stalled {
            if epoch == self.epoch && now.saturating_duration_since(at) < Duration::from_secs(1) {
                out.extend(self.backups(now));
                return out;
            }
        }
        self.stalled = None;
        // Passes over the free sessions until a pass assigns nothing or nothing is
        // left to assign. The second check matters at scale: a small job handed to
        // 10,000 idle sessions used to be followed by two fruitless passes over all
        // of them.
        while self.any_pending() {
            self.passes += 1;
            let keys: Vec<SessionKey> = self
                .free
                .range(self.cursor + 1..)
                .chain(self.free.range(..=self.cursor))
                .copied()
                .collect();
            let mut assigned = false;
            for key in keys {
                if let Some(task) = self.assign_one(key, now) {
                    self.cursor = key;
                    let drained = self
                        .jobs
                        .get(&task.job)
                        .is_none_or(|q| q.pending.is_empty());
                    out.push(task);
                    assigned = true;
                    if drained && !self.any_pending() {
                        break;
                    }
                }
            }
            if !assigned {
                // Statements wait that no free session may take now.
                self.stalled = Some((self.epoch, now));
                break;
            }
        }
        out.extend(self.backups(now));
        out
    }

    /// Passes made over the free sessions so far.
    pub fn passes(&self) -> u64 {
        self.passes
    }

    /// Whether any job has a statement waiting for a worker.
    fn any_pending(&self) -> bool {
        self.jobs.values().any(|q| !q.pending.is_empty())
    }

    /// Backup leases for straggling tasks at the tail of their jobs, one per free
    /// session at most, never to the straggler's own worker.
    fn backups(&mut self, now: Instant) -> Vec<Task> {
        let mut out = vec![];
        if self.cfg.backup_after.is_zero()
            || self.free.is_empty()
            || self
                .last_backup_scan
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            return out;
        }
        self.last_backup_scan = Some(now);
        let mut stragglers: Vec<&Task> = self
            .tasks
            .values()
            .filter(|t| !t.backup && !self.twins.contains_key(&t.id))
            .filter(|t| self.jobs.get(&t.job).is_some_and(|q| q.pending.is_empty()))
            .filter(|t| {
                let expected = self.lease_for(&t.worker, &t.circuit, t.count) / 3;
                now.saturating_duration_since(t.leased_at)
                    >= (expected * 2).max(self.cfg.backup_after)
            })
            .collect();
        // The longest-running first.
        stragglers.sort_by_key(|t| (t.leased_at, t.id.clone()));
        let stragglers: Vec<Task> = stragglers.into_iter().cloned().collect();
        for t in stragglers {
            let Some(key) = self.free.iter().copied().find(|k| {
                self.sessions.get(k).is_some_and(|s| {
                    s.worker != t.worker
                        && s.tasks.len() < self.cfg.tasks_per_session
                        && self.jobs.get(&t.job).is_some_and(|q| s.supports(&q.entry))
                })
            }) else {
                continue;
            };
            let worker = self.sessions[&key].worker.clone();
            let identity = self.sessions[&key].identity.clone();
            let lease = self.lease_for(&worker, &t.circuit, t.count);
            self.count_in_flight(&t.client, t.count, 0);
            let id = TaskId(format!("{}-{}", t.job, self.next_task));
            self.next_task += 1;
            let backup = Task {
                id: id.clone(),
                session: key,
                worker,
                identity,
                leased_at: now,
                lease,
                expires_at: now + lease,
                backup: true,
                ..t.clone()
            };
            let slot = self.sessions.get_mut(&key).expect("found above");
            slot.tasks.insert(id.clone());
            if slot.tasks.len() >= self.cfg.tasks_per_session {
                self.free.remove(&key);
            }
            self.twins.insert(t.id.clone(), id.clone());
            self.twins.insert(id.clone(), t.id.clone());
            self.tasks.insert(id, backup.clone());
            out.push(backup);
        }
        out
    }

    fn assign_one(&mut self, key: SessionKey, now: Instant) -> Option<Task> {
        let slot = self.sessions.get(&key)?;
        if slot.tasks.len() >= self.cfg.tasks_per_session {
            return None;
        }
        let worker = &slot.worker;
        // Earliest deadline first, then oldest, among jobs this session can prove
        // that have a statement it may take.
        let mut best: Option<(Rank, &JobQueue, u64)> = None;
        for q in self.jobs.values() {
            if q.pending.is_empty() || !slot.supports(&q.entry) {
                continue;
            }
            // Avoid workers that failed a statement while some eligible session
            // has not failed it yet (sessions stand in for workers here).
            let eligible = self.eligible_sessions(&q.entry);
            let Some(first) = q.pending.iter().copied().find(|i| {
                !q.failed_by(*i, worker) || q.avoid.get(i).map_or(0, HashSet::len) >= eligible
            }) else {
                continue;
            };
            // Urgent jobs first (earliest deadline), then the client with the
            // fewest statements in flight, then earliest deadline, then oldest.
            let rank = if q.urgent {
                (0, q.entry.deadline_ms, 0, q.entry.created_ms)
            } else {
                let flying = self.in_flight.get(&q.entry.client).copied().unwrap_or(0);
                (1, flying, q.entry.deadline_ms, q.entry.created_ms)
            };
            if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
                best = Some((rank, q, first));
            }
        }
        let (_, q, first) = best?;
        let worker = worker.clone();
        let size = self.size_for(&worker, q);
        let mut count = 1;
        while count < size
            && q.pending.contains(&(first + count))
            && !q.failed_by(first + count, &worker)
        {
            count += 1;
        }
        let job = q.entry.id.clone();
        let circuit = q.entry.circuit_id.clone();
        let client = q.entry.client.clone();
        let identity = slot.identity.clone();
        let lease = self.lease_for(&worker, &circuit, count);
        self.count_in_flight(&client, count, 0);
        let id = TaskId(format!("{job}-{}", self.next_task));
        self.next_task += 1;
        let q = self.jobs.get_mut(&job).expect("job chosen above exists");
        for i in first..first + count {
            q.pending.remove(&i);
        }
        let task = Task {
            id: id.clone(),
            job,
            circuit,
            session: key,
            worker,
            first,
            count,
            leased_at: now,
            lease,
            expires_at: now + lease,
            backup: false,
            client,
            identity,
        };
        let slot = self.sessions.get_mut(&key).expect("session checked above");
        slot.tasks.insert(id.clone());
        if slot.tasks.len() >= self.cfg.tasks_per_session {
            self.free.remove(&key);
        }
        self.tasks.insert(id, task.clone());
        Some(task)
    }

    /// The live task `id` of `session`, if the submitted indices are exactly its statements.
    pub fn check_submit(
        &self,
        session: SessionKey,
        id: &TaskId,
        indices: &[u64],
    ) -> Result<Task, TaskReject> {
        let t = match self.tasks.get(id) {
            Some(t) if t.session == session => t,
            _ => return Err(TaskReject::Stale(id.clone())),
        };
        let wrong = |detail: String| TaskReject::WrongStatements {
            task: id.clone(),
            first: t.first,
            end: t.first + t.count,
            detail,
        };
        if indices.len() as u64 != t.count {
            return Err(wrong(format!(
                "{} proofs for {} statements",
                indices.len(),
                t.count
            )));
        }
        let mut seen = HashSet::new();
        for i in indices {
            if !t.indices().contains(i) {
                return Err(wrong(format!("statement {i}, which is not in the task")));
            }
            if !seen.insert(*i) {
                return Err(wrong(format!("statement {i} twice")));
            }
        }
        Ok(t.clone())
    }

    /// Marks a verified task's statements done. Fails if the lease ended meanwhile.
    pub fn complete(
        &mut self,
        session: SessionKey,
        id: &TaskId,
        now: Instant,
    ) -> Result<Completion, TaskReject> {
        match self.tasks.get(id) {
            Some(t) if t.session == session => {}
            _ => return Err(TaskReject::Stale(id.clone())),
        }
        let task = self.tasks.remove(id).expect("checked above");
        self.count_in_flight(&task.client, 0, task.count);
        self.epoch += 1;
        if let Some(slot) = self.sessions.get_mut(&session) {
            slot.tasks.remove(id);
            self.free.insert(session);
            // With queued tasks, a task's proving starts when the previous one ends.
            let start = slot
                .last_done
                .map_or(task.leased_at, |d| d.max(task.leased_at));
            slot.last_done = Some(now);
            let secs = now
                .saturating_duration_since(start)
                .as_secs_f64()
                .max(0.001);
            let observed = task.count as f64 / secs;
            let rate = self
                .rates
                .entry((task.worker.clone(), task.circuit.clone()))
                .or_insert(observed);
            *rate = 0.5 * *rate + 0.5 * observed;
        }
        // The first verified proof wins: the twin lease ends here.
        let cancelled = self.twins.remove(&task.id).and_then(|twin| {
            self.twins.remove(&twin);
            self.take(&twin)
        });
        let q = self
            .jobs
            .get_mut(&task.job)
            .expect("a live task's job is active");
        q.done += task.count;
        let job_done = q.done == q.entry.total;
        if job_done {
            self.jobs.remove(&task.job);
        } else if q.entry.shared {
            q.storing.insert(task.first, (task.count, now));
        }
        Ok(Completion {
            task,
            job_done,
            cancelled,
        })
    }

    /// Marks ready statements of a job done without a task (their proofs came
    /// from statements proven before, or another pool process proved them);
    /// statements not ready (leased, or done) are left alone. Returns whether the job is now done (it is then removed).
    pub fn mark_done(&mut self, job: &JobId, indices: &[u64]) -> bool {
        let Some(q) = self.jobs.get_mut(job) else {
            return false;
        };
        for i in indices {
            if q.pending.remove(i) || q.elsewhere.remove(i) {
                q.done += 1;
            }
        }
        let done = q.done == q.entry.total;
        if done {
            self.jobs.remove(job);
        }
        self.epoch += 1;
        done
    }

    /// Undoes [`Scheduler::complete`] when its result could not be stored.
    pub fn reopen(&mut self, task: &Task, entry: Option<JobEntry>) {
        self.epoch += 1;
        match self.jobs.get_mut(&task.job) {
            Some(q) => {
                q.done -= task.count;
                q.storing.remove(&task.first);
                // A shared job's chunk may have been given back meanwhile:
                // claimed again before it is proven here.
                if q.entry.shared {
                    q.elsewhere.extend(task.indices());
                } else {
                    q.pending.extend(task.indices());
                }
            }
            None => {
                if let Some(mut e) = entry {
                    for i in task.indices() {
                        e.done.remove(&i);
                    }
                    self.add_job(e);
                }
            }
        }
    }

    /// Takes a live task out of the task table and out of its session's slots.
    fn take(&mut self, id: &TaskId) -> Option<Task> {
        let t = self.tasks.remove(id)?;
        self.count_in_flight(&t.client, 0, t.count);
        self.epoch += 1;
        if let Some(slot) = self.sessions.get_mut(&t.session) {
            slot.tasks.remove(id);
            if !slot.parked {
                self.free.insert(t.session);
            }
        }
        Some(t)
    }

    /// [`Scheduler::take`], only if the task is leased to `session`.
    fn take_own(&mut self, session: SessionKey, id: &TaskId) -> Option<Task> {
        if self.tasks.get(id)?.session != session {
            return None;
        }
        self.take(id)
    }

    /// Marks a task's statements to avoid the worker that failed them; a statement
    /// that `max_attempts` different identities failed is reported, once per job.
    fn blame(&mut self, t: &Task) {
        let Some(q) = self.jobs.get_mut(&t.job) else {
            return;
        };
        self.epoch += 1;
        for i in t.indices() {
            q.avoid.entry(i).or_default().insert(t.worker.clone());
            let failed_by = q.attempts.entry(i).or_default();
            failed_by.insert(t.identity.clone());
            let n = failed_by.len() as u32;
            if self.cfg.max_attempts > 0 && n >= self.cfg.max_attempts && !q.exhausted {
                q.exhausted = true;
                self.exhausted.push(Exhausted {
                    job: t.job.clone(),
                    statement: i,
                    attempts: n,
                    worker: t.worker.clone(),
                });
            }
        }
    }

    /// Statements that used up their attempts since the last call.
    pub fn take_exhausted(&mut self) -> Vec<Exhausted> {
        std::mem::take(&mut self.exhausted)
    }

    /// A task whose proofs were invalid: its statements go back to the queue,
    /// marked to avoid this worker.
    pub fn fail(&mut self, session: SessionKey, id: &TaskId) -> Option<Task> {
        let t = self.take_own(session, id)?;
        self.blame(&t);
        Some(self.lapse(t))
    }

    /// Gives a task back without blame (it could not be delivered to its session).
    pub fn release(&mut self, session: SessionKey, id: &TaskId) -> Option<Task> {
        let t = self.take_own(session, id)?;
        Some(self.requeue(t))
    }

    /// Removes a job (it expired or was cancelled); returns its live tasks, whose
    /// sessions should be told to stop.
    pub fn remove_job(&mut self, job: &JobId) -> Vec<Task> {
        if self.jobs.remove(job).is_none() {
            return vec![];
        }
        let ids: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.job == *job)
            .map(|t| t.id.clone())
            .collect();
        for id in &ids {
            self.twins.remove(id);
        }
        ids.iter().filter_map(|id| self.take(id)).collect()
    }

    /// Extends a live task's lease; returns the new lease length.
    pub fn renew(&mut self, session: SessionKey, id: &TaskId, now: Instant) -> Option<Duration> {
        let t = self.tasks.get_mut(id).filter(|t| t.session == session)?;
        t.expires_at = now + t.lease;
        Some(t.lease)
    }

    /// Ends every lease that expired by `now`; returns those tasks (their statements
    /// are ready again; a shared job's wait elsewhere until their chunk is given
    /// back, [`Scheduler::lapse`]). A lease that ran out is a failure too: its
    /// statements avoid that worker.
    pub fn expire(&mut self, now: Instant) -> Vec<Task> {
        let expired: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.expires_at <= now)
            .map(|t| t.id.clone())
            .collect();
        expired
            .iter()
            .filter_map(|id| {
                let t = self.take(id)?;
                self.blame(&t);
                Some(self.lapse(t))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str) -> Worker {
        Worker::parse(name).expect("a valid worker name")
    }

    fn cfg() -> SchedConfig {
        SchedConfig {
            target_task: Duration::from_secs(10),
            lease_min: Duration::from_secs(60),
            max_per_task: 64,
            tasks_per_session: 2,
            max_attempts: 5,
            backup_after: Duration::from_secs(10),
        }
    }

    fn job(id: &str, total: u64, deadline_ms: u64) -> JobEntry {
        JobEntry {
            id: id.into(),
            circuit_id: "c1".into(),
            circuit_name: "chain".into(),
            deadline_ms,
            created_ms: 0,
            total,
            done: BTreeSet::new(),
            max_per_task: 1000,
            client: "c".into(),
            allow: None,
            shared: false,
        }
    }

    /// A scheduler (`cfg`) with a shared job "j" of `total` statements, of which
    /// `granted` are claimed here, and one session per name in `workers`
    /// (keys 1, 2, ...).
    fn shared_here(
        cfg: SchedConfig,
        total: u64,
        granted: std::ops::Range<u64>,
        workers: &[&str],
    ) -> Scheduler {
        let mut s = Scheduler::new(cfg);
        let mut j = job("j", total, 10);
        j.shared = true;
        s.add_job(j);
        for (k, name) in workers.iter().enumerate() {
            s.add_session(k as u64 + 1, w(name), None);
        }
        s.grant("j", granted);
        s
    }

    /// Drives sessions that finish every task instantly-ish until the job is done;
    /// checks every statement was leased and completed exactly once.
    #[test]
    fn every_statement_is_done_exactly_once_across_sessions() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 50, 10));
        for k in 1..=3 {
            s.add_session(k, w(&format!("w.r{k}")), None);
        }
        let mut seen = vec![0u32; 50];
        let mut now = t0;
        let mut done = false;
        let mut per_session = HashMap::new();
        while !done {
            let tasks = s.poll_assignments(now);
            assert!(!tasks.is_empty(), "scheduler stalled");
            now += Duration::from_millis(500);
            for t in tasks {
                for i in t.indices() {
                    seen[i as usize] += 1;
                }
                *per_session.entry(t.session).or_insert(0) += t.count;
                done = s.complete(t.session, &t.id, now).unwrap().job_done;
            }
        }
        assert!(seen.iter().all(|n| *n == 1), "{seen:?}");
        assert_eq!(
            per_session.len(),
            3,
            "work spread over all sessions: {per_session:?}"
        );
        assert!(
            s.progress("j").is_none(),
            "completed job leaves the scheduler"
        );
    }

    /// A job shared with other pool processes: nothing is leased here until
    /// statements are granted (claimed); it wants claims only while a session
    /// here can prove it, in chunks past its ready statements; statements
    /// proven elsewhere are done here too, and the job completes on them.
    #[test]
    fn a_shared_job_leases_only_what_is_granted_and_completes_with_work_done_elsewhere() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        let mut j = job("j", 40, 10);
        j.shared = true;
        assert!(s.add_job(j));
        assert_eq!(s.progress("j").unwrap().pending, 40);
        assert!(
            s.wanted(16, 64, t0).is_empty(),
            "no session here: no claims"
        );
        s.add_session(1, w("w.r1"), None);
        assert!(s.poll_assignments(t0).is_empty(), "nothing granted yet");
        let wanted = s.wanted(16, 64, t0);
        assert_eq!(wanted.len(), 1);
        let (id, want, chunks) = &wanted[0];
        assert_eq!((id.as_str(), *want), ("j", 1));
        assert_eq!(chunks, &[0, 1, 2], "candidates: every chunk with work left");
        // Chunk 1 granted here; chunks 0 and 2 proven by other processes.
        assert_eq!(s.grant("j", 16..32), 16);
        assert_eq!(s.grant("j", 16..32), 0, "granted once");
        assert!(
            s.wanted(16, 64, t0).is_empty(),
            "16 ready: enough for one rig"
        );
        let mut leased = vec![];
        let mut now = t0;
        let mut done = false;
        for _ in 0..100 {
            for t in s.poll_assignments(now) {
                assert!(t.indices().all(|i| (16..32).contains(&i)), "{t:?}");
                leased.extend(t.indices());
                done |= s.complete(t.session, &t.id, now).unwrap().job_done;
            }
            now += Duration::from_millis(100);
            if leased.len() == 16 {
                break;
            }
        }
        assert_eq!(leased.len(), 16);
        assert!(!done, "24 statements are still elsewhere");
        assert!(!s.mark_done(&"j".into(), &(0..16).collect::<Vec<_>>()));
        assert_eq!(s.progress("j").unwrap().done, 32);
        assert!(s.mark_done(&"j".into(), &(32..40).collect::<Vec<_>>()));
        assert!(s.progress("j").is_none(), "completed");
    }

    /// Stalling sessions here cannot sit on a shared job's chunks: a chunk
    /// whose lease ran out is given back once no lease here holds any of it,
    /// with its ready statements, and is not wanted here again until the
    /// cooldown ends; a job's own other chunks are left alone.
    #[test]
    fn a_shared_jobs_chunk_whose_lease_ran_out_is_given_back_and_cools_down() {
        // Chunks 0 and 1 claimed here; chunk 2 is another process's.
        let cfg = SchedConfig {
            max_per_task: 4,
            ..cfg()
        };
        let mut s = shared_here(cfg, 48, 0..32, &["idle.r1", "idle.r2"]);
        let t0 = Instant::now();
        let first = s.poll_assignments(t0);
        assert_eq!(first.len(), 4, "two slots per session: {first:?}");
        assert!(first.iter().all(|t| t.first < 16), "{first:?}");
        // Session 2 proves its tasks; session 1's lease runs out.
        let mut later = t0 + Duration::from_secs(1);
        for t in first.iter().filter(|t| t.session == 2) {
            s.complete(2, &t.id, later).unwrap();
        }
        let cooldown = Duration::from_secs(10);
        assert!(
            s.give_back(16, later, cooldown, true).is_empty(),
            "nothing ran out yet"
        );
        later = first[0].expires_at;
        let expired = s.expire(later);
        assert_eq!(expired.len(), 2);
        let stalled: Vec<u64> = expired.iter().flat_map(|t| t.indices()).collect();
        // Not leased again here while the chunk is given back, even by a rig
        // that has not failed them.
        s.add_session(3, w("other.r1"), None);
        for t in s.poll_assignments(later) {
            assert!(
                !stalled.contains(&t.first),
                "{t:?} leases a statement whose lease just ran out"
            );
        }
        // Sessions 2 and 3 took more of chunk 0: it is given back when their
        // leases end, and meanwhile not claimed again here.
        let live: Vec<Task> = s.tasks.values().cloned().collect();
        assert!(live.iter().any(|t| t.first < 16), "{live:?}");
        assert!(s.give_back(16, later, cooldown, true).is_empty());
        assert!(s
            .wanted(16, 64, later)
            .iter()
            .all(|(_, _, c)| !c.contains(&0)));
        for t in &live {
            s.complete(t.session, &t.id, later).unwrap();
        }
        assert!(
            s.give_back(16, later, cooldown, true).is_empty(),
            "shares of chunk 0 may still be being stored"
        );
        let later = later + STORING_GRACE;
        let given = s.give_back(16, later, cooldown, true);
        assert_eq!(given, vec![(JobId::from("j"), vec![0])]);
        let q = &s.jobs[&JobId::from("j")];
        assert!(stalled.iter().all(|i| q.elsewhere.contains(i)));
        assert!(
            q.pending.range(0..16).next().is_none(),
            "nothing of chunk 0 ready here"
        );
        assert!(!q.pending.is_empty(), "chunk 1 is still this process's");
        // Not wanted back during the cooldown (chunk 2 is), then wanted again.
        let wanted = |s: &Scheduler, now| {
            s.wanted(16, 64, now)
                .into_iter()
                .flat_map(|(_, _, c)| c)
                .collect::<Vec<u64>>()
        };
        let s2 = {
            // Drain what is ready so the job wants more.
            let mut now = later;
            for _ in 0..20 {
                for t in s.poll_assignments(now) {
                    s.complete(t.session, &t.id, now).unwrap();
                }
                now += Duration::from_millis(10);
            }
            now
        };
        assert_eq!(wanted(&s, s2), vec![2]);
        assert_eq!(wanted(&s, later + cooldown), vec![0, 2]);
        assert!(s.give_back(16, later + cooldown, cooldown, true).is_empty());
        assert!(
            s.jobs[&JobId::from("j")].cooling.is_empty(),
            "the cooldown is forgotten"
        );
    }

    /// The cheaper ways to sit on a shared job's chunk are given back too: a
    /// session that renews its lease for ever (its chunk goes once the task
    /// is past two of its leases, once, while the task stays leased as a
    /// straggler with a backup), and one that takes its tasks and leaves
    /// (they lapse: not leased here again to a fresh name). A task whose
    /// share could not be stored is reopened as waiting elsewhere.
    #[test]
    fn renewing_for_ever_or_leaving_with_tasks_gives_a_shared_chunk_back_too() {
        let cfg = SchedConfig {
            max_per_task: 4,
            tasks_per_session: 1,
            ..cfg()
        };
        let mut s = shared_here(cfg, 32, 0..32, &["renews.r1", "leaves.r1"]);
        let t0 = Instant::now();
        let tasks = s.poll_assignments(t0);
        assert_eq!(tasks.len(), 2, "{tasks:?}");
        let renewing = tasks.iter().find(|t| t.session == 1).unwrap().clone();
        let leaving = tasks.iter().find(|t| t.session == 2).unwrap().clone();
        assert_eq!(renewing.first / 16, leaving.first / 16, "both in chunk 0");
        let cooldown = Duration::from_secs(3);
        // Session 2 goes away with its task: the statement lapses.
        s.remove_session(2);
        s.add_session(3, w("fresh.r1"), None);
        let mut now = t0 + Duration::from_secs(1);
        for t in s.poll_assignments(now) {
            assert_ne!(
                t.first, leaving.first,
                "{t:?}: a lapsed statement leased again here"
            );
            // The fresh name takes another statement of chunk 0 and proves it;
            // its share is stored.
            s.complete(t.session, &t.id, now).unwrap();
        }
        // Chunk 0 is held while the renewing task is within two of its leases.
        assert!(s.give_back(16, now, cooldown, true).is_empty());
        // Renewed past its first lease, never finished: chunk 0 goes, once.
        for _ in 0..5 {
            now += renewing.lease / 2;
            assert!(s.renew(1, &renewing.id, now).is_some());
        }
        assert!(now >= renewing.leased_at + renewing.lease * OVERDUE_LEASES);
        let now = now.max(t0 + STORING_GRACE + Duration::from_secs(1));
        assert_eq!(
            s.give_back(16, now, cooldown, true),
            vec![(JobId::from("j"), vec![0])]
        );
        assert!(
            s.give_back(16, now + cooldown, cooldown, true).is_empty(),
            "once per task"
        );
        assert!(
            s.tasks.contains_key(&renewing.id),
            "still leased: it may yet finish"
        );
        let q = &s.jobs[&JobId::from("j")];
        assert!(q.elsewhere.contains(&leaving.first));
        assert!(q.pending.range(0..16).next().is_none());
        // A share that could not be stored: its statements wait elsewhere.
        let more = s.poll_assignments(now);
        let t = more.first().expect("chunk 1 is still leased here").clone();
        s.complete(t.session, &t.id, now).unwrap();
        s.reopen(&t, None);
        let q = &s.jobs[&JobId::from("j")];
        assert!(t
            .indices()
            .all(|i| q.elsewhere.contains(&i) && !q.pending.contains(&i)));
    }

    /// A process whose rigs left for another keeps nothing it cannot prove:
    /// its ready statements go back. Leases here on statements another
    /// process proved are ended (their rigs cannot be paid) and counted done.
    /// A stored share's chunk is free to go at once.
    #[test]
    fn rigs_gone_give_back_what_is_ready_and_statements_proven_elsewhere_end_their_leases() {
        let cfg = SchedConfig {
            max_per_task: 4,
            tasks_per_session: 1,
            ..cfg()
        };
        let mut s = shared_here(cfg, 32, 0..32, &["a.r1", "b.r1"]);
        let t0 = Instant::now();
        let tasks = s.poll_assignments(t0);
        let (t1, t2) = (tasks[0].clone(), tasks[1].clone());
        let cooldown = Duration::from_secs(3);
        // Another process stored proofs of t1's statements: its lease ends.
        let ended = s.end_proven_elsewhere(&JobId::from("j"), &t1.indices().collect::<Vec<_>>());
        assert_eq!(
            ended.iter().map(|t| &t.id).collect::<Vec<_>>(),
            vec![&t1.id]
        );
        assert!(!s.tasks.contains_key(&t1.id));
        assert_eq!(s.progress("j").unwrap().done, t1.count);
        assert!(s
            .end_proven_elsewhere(&JobId::from("j"), &[t2.first + 100])
            .is_empty());
        // t2 is proven here; its share is stored: chunk 0 is not held for it.
        s.complete(2, &t2.id, t0).unwrap();
        s.share_stored(&JobId::from("j"), t2.first);
        // Both rigs leave: chunks 0 and 1 go back, with what is ready.
        s.remove_session(1);
        s.remove_session(2);
        let given = s.give_back(16, t0, cooldown, true);
        assert_eq!(given, vec![(JobId::from("j"), vec![0, 1])]);
        let q = &s.jobs[&JobId::from("j")];
        assert!(q.pending.is_empty(), "nothing left ready here");
        assert_eq!(q.elsewhere.len() as u64 + t1.count + t2.count, 32);
    }

    /// Sessions that have proven nothing here want a few chunks between them,
    /// however many there are; a measured rig wants what it proves in a task
    /// round. Candidates are every chunk waiting elsewhere (up to the cap),
    /// not the first few, which other processes may hold.
    #[test]
    fn unproven_sessions_want_a_few_chunks_between_them_and_every_chunk_is_a_candidate() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        let mut j = job("j", 16 * 100, 10);
        j.shared = true;
        s.add_job(j);
        for k in 0..200 {
            s.add_session(k, w(&format!("sybil{k}.x")), None);
        }
        let wanted = s.wanted(16, 1024, t0);
        let (_, want, candidates) = &wanted[0];
        assert_eq!(
            *want as u64, UNMEASURED_CHUNKS,
            "not 200 sessions x 2 slots"
        );
        assert_eq!(candidates.len(), 100, "every chunk is a candidate");
        assert_eq!(s.wanted(16, 10, t0)[0].2.len(), 10, "up to the cap");
        // A measured rig proving 16 statements a second wants 160 x 2 more.
        s.add_session(500, w("honest.r1"), None);
        s.rates.insert((w("honest.r1"), "c1".into()), 16.0);
        let (_, want, _) = &s.wanted(16, 1024, t0)[0];
        assert_eq!(*want as u64, UNMEASURED_CHUNKS + 2 * 64 / 16);
    }

    /// With no other process's sessions to give a chunk to, statements whose
    /// lease ran out are ready here again at once, as on one process.
    #[test]
    fn with_nobody_elsewhere_a_stalled_chunk_stays_and_its_statements_are_ready_again() {
        let mut s = shared_here(cfg(), 16, 0..16, &["idle.r1"]);
        let t0 = Instant::now();
        let first = s.poll_assignments(t0);
        let later = first[0].expires_at;
        let mut stalled: Vec<u64> = s.expire(later).iter().flat_map(|t| t.indices()).collect();
        stalled.sort();
        assert_eq!(stalled.len(), 2);
        assert!(s
            .give_back(16, later, Duration::from_secs(3), false)
            .is_empty());
        s.add_session(2, w("other.r1"), None);
        let mut again: Vec<u64> = s
            .poll_assignments(later)
            .iter()
            .filter(|t| t.session == 2)
            .flat_map(|t| t.indices())
            .collect();
        again.sort();
        assert_eq!(again, stalled, "the other rig here takes them at once");
    }

    #[test]
    fn task_size_follows_measured_rate_and_fair_share() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 1000, 10));
        s.add_session(1, w("w.r1"), None);
        let first = s.poll_assignments(t0);
        assert_eq!(
            first.iter().map(|t| t.count).collect::<Vec<_>>(),
            vec![1, 1],
            "unmeasured rig gets single statements"
        );
        // Two statements in one second: 2/s, so 20 per 10 s task.
        s.complete(1, &first[0].id, t0 + Duration::from_millis(500))
            .unwrap();
        s.complete(1, &first[1].id, t0 + Duration::from_millis(1000))
            .unwrap();
        let next = s.poll_assignments(t0 + Duration::from_secs(1));
        assert_eq!(next[0].count, 20);
        // A second session halves the fair share near the end of a small job.
        let mut s = Scheduler::new(cfg());
        s.add_job(job("k", 4, 10));
        s.add_session(1, w("w.r1"), None);
        s.add_session(2, w("w.r2"), None);
        s.rates.insert((w("w.r1"), "c1".into()), 100.0);
        let tasks = s.poll_assignments(t0);
        assert_eq!(tasks.iter().find(|t| t.session == 1).unwrap().count, 2);
    }

    #[test]
    fn a_dropped_session_returns_its_tasks_to_others() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 2, 10));
        s.add_session(1, w("a.r"), None);
        let tasks = s.poll_assignments(t0);
        assert_eq!(tasks.len(), 2);
        assert_eq!(s.remove_session(1).len(), 2);
        assert_eq!(s.progress("j").unwrap().pending, 2);
        s.add_session(2, w("b.r"), None);
        let again = s.poll_assignments(t0);
        assert_eq!(again.iter().map(|t| t.count).sum::<u64>(), 2);
        assert!(again.iter().all(|t| t.session == 2));
        assert!(matches!(
            s.complete(1, &tasks[0].id, t0),
            Err(TaskReject::Stale(_))
        ));
    }

    #[test]
    fn leases_expire_unless_renewed() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 2, 10));
        s.add_session(1, w("a.r"), None);
        let tasks = s.poll_assignments(t0);
        let lease = tasks[0].lease;
        assert_eq!(
            lease,
            Duration::from_secs(60),
            "lease_min bounds an unmeasured rig's lease"
        );
        // Renew the first task half-way; only the second expires.
        assert_eq!(s.renew(1, &tasks[0].id, t0 + lease / 2), Some(lease));
        let expired = s.expire(t0 + lease);
        assert_eq!(
            expired.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
            vec![tasks[1].id.clone()]
        );
        assert!(s.expire(t0 + lease + lease / 4).is_empty());
        assert_eq!(s.expire(t0 + lease + lease / 2).len(), 1);
        assert_eq!(s.progress("j").unwrap().pending, 2);
    }

    /// A statement that fails on every rig (here: each lets its lease run out or
    /// sends an invalid proof) is tried on each worker once before any twice, and
    /// after `max_attempts` different workers failed it its job is reported as
    /// exhausted, once. Repeated failures by the same workers do not count.
    #[test]
    fn a_statement_out_of_attempts_exhausts_its_job_once() {
        let mut s = Scheduler::new(cfg());
        let mut now = Instant::now();
        s.add_job(job("j", 1, 10));
        // Two stalling rigs, failing it again and again: never exhausted.
        s.add_session(1, w("w1.r"), None);
        s.add_session(2, w("w2.r"), None);
        for _ in 0..10 {
            let t = s.poll_assignments(now).remove(0);
            now += t.lease;
            assert_eq!(s.expire(now).len(), 1);
        }
        assert!(s.take_exhausted().is_empty());
        for k in 3..=5 {
            s.add_session(k, w(&format!("w{k}.r")), None);
        }
        let mut workers = vec![];
        for attempt in 3..=5u32 {
            let t = s.poll_assignments(now).remove(0);
            workers.push(t.worker.clone());
            if attempt % 2 == 0 {
                s.fail(t.session, &t.id).unwrap();
            } else {
                now += t.lease;
                assert_eq!(s.expire(now).len(), 1);
            }
            let exhausted = s.take_exhausted();
            if attempt < 5 {
                assert!(exhausted.is_empty(), "attempt {attempt}");
            } else {
                assert_eq!(
                    exhausted,
                    vec![Exhausted {
                        job: "j".into(),
                        statement: 0,
                        attempts: 5,
                        worker: t.worker.clone()
                    }]
                );
            }
        }
        // The three new workers, each tried once, before any failed one again.
        let tried: BTreeSet<_> = workers.iter().map(|w| w.as_str()).collect();
        assert_eq!(
            tried,
            BTreeSet::from(["w3.r", "w4.r", "w5.r"]),
            "{workers:?}"
        );
        // Reported once, even if it keeps failing.
        let t = s.poll_assignments(now).remove(0);
        s.fail(t.session, &t.id).unwrap();
        assert!(s.take_exhausted().is_empty());
    }

    /// Five made-up names from one address are one identity: their expired
    /// leases never exhaust a statement. Five token-proven accounts do.
    #[test]
    fn attempts_count_identities_not_names() {
        let mut s = Scheduler::new(cfg());
        let mut now = Instant::now();
        s.add_job(job("j", 1, 10));
        for k in 1..=5 {
            s.add_session_as(
                k,
                w(&format!("sybil{k}.r")),
                "ip:10.0.0.9".into(),
                None,
                None,
            );
        }
        for _ in 0..10 {
            let t = s.poll_assignments(now).remove(0);
            now += t.lease;
            assert_eq!(s.expire(now).len(), 1);
            assert!(
                s.take_exhausted().is_empty(),
                "one address fails a job alone"
            );
        }
        for k in 1..=5 {
            s.remove_session(k);
        }
        for k in 6..=10 {
            s.add_session_as(
                k,
                w(&format!("acct{k}.r")),
                format!("account:acct{k}"),
                Some(format!("acct{k}")),
                None,
            );
        }
        // The address counted once already; four proven accounts make five.
        let mut exhausted = vec![];
        for _ in 0..4 {
            let t = s.poll_assignments(now).remove(0);
            s.fail(t.session, &t.id).unwrap();
            exhausted.extend(s.take_exhausted());
        }
        assert_eq!(exhausted.len(), 1, "{exhausted:?}");
        assert_eq!(exhausted[0].attempts, 5);
    }

    /// A job with an allow-list goes only to sessions that proved one of its accounts.
    #[test]
    fn an_allow_listed_job_goes_only_to_its_accounts() {
        let mut s = Scheduler::new(cfg());
        let now = Instant::now();
        let mut private = job("private", 2, 10);
        private.allow = Some(BTreeSet::from(["alice".to_owned()]));
        s.add_job(private);
        // Named alice, but without her token: not her.
        s.add_session_as(1, w("alice.fake"), "ip:10.0.0.9".into(), None, None);
        assert!(s.poll_assignments(now).is_empty());
        s.add_session_as(
            2,
            w("bob.r"),
            "account:bob".into(),
            Some("bob".into()),
            None,
        );
        assert!(s.poll_assignments(now).is_empty());
        s.add_session_as(
            3,
            w("alice.r"),
            "account:alice".into(),
            Some("alice".into()),
            None,
        );
        let tasks = s.poll_assignments(now);
        assert!(!tasks.is_empty());
        assert!(tasks.iter().all(|t| t.session == 3), "{tasks:?}");
    }

    /// At a job's tail, a task running past twice its expected time gets a backup
    /// on another worker; the first verified proof wins and the other lease ends.
    #[test]
    fn a_straggler_gets_a_backup_and_the_first_proof_wins() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 2, 10));
        s.add_session(1, w("slow.r"), None);
        s.add_session(2, w("fast.r"), None);
        let first = s.poll_assignments(t0);
        assert_eq!(first.len(), 2, "one statement each: {first:?}");
        let slow = first.iter().find(|t| t.session == 1).unwrap().clone();
        let fast = first.iter().find(|t| t.session == 2).unwrap().clone();
        s.complete(2, &fast.id, t0 + Duration::from_secs(1))
            .unwrap();
        // Unmeasured, the slow rig is expected to take lease/3 = 20 s: no backup
        // before twice that.
        assert!(s.poll_assignments(t0 + Duration::from_secs(39)).is_empty());
        let backups = s.poll_assignments(t0 + Duration::from_secs(40));
        assert_eq!(backups.len(), 1);
        let b = &backups[0];
        assert!(
            b.backup && b.session == 2 && b.indices() == slow.indices(),
            "{b:?}"
        );
        assert_eq!(s.progress("j").unwrap().pending, 0);
        // Only one backup per task, whatever the clock says.
        assert!(s.poll_assignments(t0 + Duration::from_secs(100)).is_empty());
        let done = s.complete(2, &b.id, t0 + Duration::from_secs(42)).unwrap();
        assert!(done.job_done);
        assert_eq!(done.cancelled.map(|t| t.id), Some(slow.id.clone()));
        assert_eq!(
            s.check_submit(1, &slow.id, &[slow.first]),
            Err(TaskReject::Stale(slow.id.clone())),
            "the loser's late proof is stale, not credited"
        );
        assert_eq!(s.live_tasks(), 0);
    }

    /// When one of the twins fails or its session leaves, the other carries on
    /// alone (nothing goes back to the queue); when both end, the statements do.
    #[test]
    fn a_backup_that_fails_leaves_the_original_alone() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 1, 10));
        s.add_session(1, w("slow.r"), None);
        let orig = s.poll_assignments(t0).remove(0);
        s.add_session(2, w("other.r"), None);
        let b = s.poll_assignments(t0 + Duration::from_secs(45)).remove(0);
        assert!(b.backup);
        s.fail(2, &b.id).unwrap();
        assert_eq!(
            s.progress("j").unwrap().pending,
            0,
            "the original still covers it"
        );
        assert_eq!(s.remove_session(1).len(), 1);
        assert_eq!(s.progress("j").unwrap().pending, 1, "now nobody does");
        assert!(s.live_tasks() == 0 && orig.count == 1);
    }

    #[test]
    fn no_backups_before_the_tail_to_the_same_worker_or_when_off() {
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(1000);
        // Statements still pending: free sessions get those, not backups.
        let mut s = Scheduler::new(SchedConfig {
            tasks_per_session: 1,
            ..cfg()
        });
        s.add_job(job("j", 3, 10));
        s.add_session(1, w("a.r"), None);
        s.poll_assignments(t0);
        s.add_session(2, w("b.r"), None);
        let got = s.poll_assignments(late);
        assert!(got.iter().all(|t| !t.backup), "{got:?}");
        // Another session of the same worker never backs up its own task.
        let mut s = Scheduler::new(cfg());
        s.add_job(job("j", 1, 10));
        s.add_session(1, w("a.r"), None);
        s.poll_assignments(t0);
        s.add_session(2, w("a.r"), None);
        assert!(s.poll_assignments(late).is_empty());
        // Switched off.
        let mut s = Scheduler::new(SchedConfig {
            backup_after: Duration::ZERO,
            ..cfg()
        });
        s.add_job(job("j", 1, 10));
        s.add_session(1, w("a.r"), None);
        s.poll_assignments(t0);
        s.add_session(2, w("b.r"), None);
        assert!(s.poll_assignments(late).is_empty());
    }

    /// A parked session keeps its leases but gets no new work; a new session of
    /// the same worker takes them over; another worker cannot.
    #[test]
    fn a_parked_session_keeps_its_leases_for_a_resuming_session_of_its_worker() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 4, 10));
        s.add_session(1, w("a.r"), None);
        let held = s.poll_assignments(t0);
        assert_eq!(held.len(), 2);
        assert_eq!(s.park(1), 2);
        // Parked: nothing new for it, and its statements stay leased.
        s.add_session(2, w("b.r"), None);
        let b = s.poll_assignments(t0);
        assert!(b.iter().all(|t| t.session == 2), "{b:?}");
        assert_eq!(s.progress("j").unwrap().leased, 4);
        // Another worker cannot take the leases over.
        assert!(s.reattach(1, 2).is_empty());
        s.add_session(3, w("a.r"), None);
        let moved = s.reattach(1, 3);
        assert_eq!(
            moved
                .iter()
                .map(|t| (t.id.clone(), t.session))
                .collect::<Vec<_>>(),
            held.iter().map(|t| (t.id.clone(), 3)).collect::<Vec<_>>()
        );
        // The resumed session submits them as its own; the old key is gone.
        assert!(s.check_submit(3, &held[0].id, &[held[0].first]).is_ok());
        assert!(s.complete(3, &held[0].id, t0).is_ok());
        assert!(s.remove_session(1).is_empty());
        assert_eq!((s.sessions(), s.parked()), (2, 0));
    }

    /// A parked session nobody resumes: its leases expire as usual, and removing
    /// it requeues what is left.
    #[test]
    fn an_unresumed_parked_session_gives_its_tasks_back() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 2, 10));
        s.add_session(1, w("a.r"), None);
        let held = s.poll_assignments(t0);
        s.park(1);
        assert_eq!(s.remove_session(1).len(), held.len());
        assert_eq!(s.progress("j").unwrap().pending, 2);
        s.add_session(2, w("b.r"), None);
        assert_eq!(s.poll_assignments(t0).len(), 2);
    }

    /// A big client's job, with the earlier deadline, does not starve a small
    /// client's later job: the next free slot goes to the client with the fewest
    /// statements in flight. An urgent job goes before both.
    #[test]
    fn clients_share_the_rigs_and_urgent_jobs_go_first() {
        let mut s = Scheduler::new(SchedConfig {
            tasks_per_session: 1,
            ..cfg()
        });
        let t0 = Instant::now();
        let big = JobEntry {
            client: "big".into(),
            allow: None,
            shared: false,
            ..job("big-job", 100, 10)
        };
        s.add_job(big);
        for k in 1..=3 {
            s.add_session(k, w(&format!("w{k}.r")), None);
        }
        assert!(s.poll_assignments(t0).iter().all(|t| t.client == "big"));
        let small = JobEntry {
            client: "small".into(),
            allow: None,
            shared: false,
            ..job("small-job", 4, 20)
        };
        s.add_job(small);
        // One rig frees up: the small client (nothing in flight) gets it, though
        // the big client's job has the earlier deadline and has work left.
        let t = s.tasks.values().find(|t| t.session == 1).unwrap().clone();
        s.complete(1, &t.id, t0 + Duration::from_secs(1)).unwrap();
        let next = s.poll_assignments(t0 + Duration::from_secs(1));
        assert_eq!(
            next.iter().map(|t| t.client.as_str()).collect::<Vec<_>>(),
            vec!["small"]
        );
        // An urgent job of the big client goes before fairness.
        let rush = JobEntry {
            client: "big".into(),
            allow: None,
            shared: false,
            ..job("rush-job", 2, 5)
        };
        s.add_job(rush);
        s.set_urgent(&"rush-job".into(), true);
        let t = s.tasks.values().find(|t| t.session == 2).unwrap().clone();
        s.complete(2, &t.id, t0 + Duration::from_secs(2)).unwrap();
        let next = s.poll_assignments(t0 + Duration::from_secs(2));
        assert_eq!(
            next.iter().map(|t| t.job.as_str()).collect::<Vec<_>>(),
            vec!["rush-job"]
        );
    }

    #[test]
    fn no_attempt_cap_when_max_attempts_is_zero() {
        let mut s = Scheduler::new(SchedConfig {
            max_attempts: 0,
            ..cfg()
        });
        let now = Instant::now();
        s.add_job(job("j", 1, 10));
        s.add_session(1, w("w.r"), None);
        for _ in 0..20 {
            let t = s.poll_assignments(now).remove(0);
            s.fail(1, &t.id).unwrap();
        }
        assert!(s.take_exhausted().is_empty());
    }

    #[test]
    fn expired_statements_go_to_another_worker_first() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 1, 10));
        s.add_session(1, w("slow.r"), None);
        let t = s.poll_assignments(t0).remove(0);
        s.add_session(2, w("other.r"), None);
        let later = t0 + t.lease;
        assert_eq!(s.expire(later).len(), 1);
        let again = s.poll_assignments(later);
        assert_eq!(again.iter().map(|t| t.session).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn failed_statements_go_to_another_worker_first() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 1, 10));
        s.add_session(1, w("bad.r"), None);
        let t = s.poll_assignments(t0).remove(0);
        s.add_session(2, w("good.r"), None);
        s.fail(1, &t.id).unwrap();
        let again = s.poll_assignments(t0);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].session, 2);
    }

    #[test]
    fn earliest_deadline_first_and_capabilities_are_respected() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("late", 1, 100));
        s.add_job(job("soon", 1, 50));
        let mut other = job("other-circuit", 1, 1);
        other.circuit_id = "c2".into();
        other.circuit_name = "preimage".into();
        s.add_job(other);
        s.add_session(1, w("a.r"), Some(["chain".to_owned()].into()));
        let tasks = s.poll_assignments(t0);
        assert_eq!(
            tasks.iter().map(|t| t.job.as_str()).collect::<Vec<_>>(),
            vec!["soon", "late"]
        );
    }

    /// Statements that no free session may take leave dispatch idle (no pass over
    /// the sessions) until something changes; here a session that can take them
    /// joins, and gets them at once.
    #[test]
    fn a_stalled_queue_is_not_rescanned_until_something_changes() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        for k in 1..=100 {
            s.add_session(
                k,
                w(&format!("p{k}.r")),
                Some(["preimage".to_owned()].into()),
            );
        }
        s.add_job(job("j", 3, 10));
        assert!(s.poll_assignments(t0).is_empty());
        let first = s.passes();
        assert!(first >= 1);
        // Nothing changed: the events that call dispatch cost no pass.
        for i in 0..50 {
            assert!(s.poll_assignments(t0 + Duration::from_millis(i)).is_empty());
        }
        assert_eq!(s.passes(), first);
        // A second later it looks again: the safety net for a change nobody marked.
        let later = t0 + Duration::from_secs(2);
        assert!(s.poll_assignments(later).is_empty());
        assert_eq!(s.passes(), first + 1);
        // A session that proves every circuit joins: the statements go to it now.
        s.add_session(500, w("c.r"), None);
        let tasks = s.poll_assignments(later);
        assert!(!tasks.is_empty());
        assert!(tasks.iter().all(|t| t.session == 500));
    }

    #[test]
    fn a_removed_job_takes_its_leases_with_it() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("gone", 4, 10));
        s.add_job(job("kept", 4, 20));
        s.add_session(1, w("a.r"), None);
        let leased = s.poll_assignments(t0);
        assert!(leased.iter().any(|t| t.job == "gone"));
        let cancelled = s.remove_job(&"gone".into());
        assert_eq!(
            cancelled.len(),
            leased.iter().filter(|t| t.job == "gone").count()
        );
        assert!(s.progress("gone").is_none());
        assert!(matches!(
            s.complete(1, &cancelled[0].id, t0),
            Err(TaskReject::Stale(_))
        ));
        // The freed slots go to the remaining job.
        assert!(s.poll_assignments(t0).iter().all(|t| t.job == "kept"));
        assert!(s.remove_job(&"gone".into()).is_empty());
    }

    #[test]
    fn submits_must_match_the_task_exactly() {
        let mut s = Scheduler::new(cfg());
        let t0 = Instant::now();
        s.add_job(job("j", 10, 10));
        s.add_session(1, w("a.r"), None);
        s.rates.insert((w("a.r"), "c1".into()), 0.3);
        let t = s.poll_assignments(t0).remove(0);
        assert_eq!(t.count, 3);
        assert!(s.check_submit(1, &t.id, &[0, 1, 2]).is_ok());
        assert!(matches!(
            s.check_submit(1, &t.id, &[0, 1]),
            Err(TaskReject::WrongStatements { .. })
        ));
        assert!(matches!(
            s.check_submit(1, &t.id, &[0, 1, 1]),
            Err(TaskReject::WrongStatements { .. })
        ));
        assert!(matches!(
            s.check_submit(1, &t.id, &[0, 1, 5]),
            Err(TaskReject::WrongStatements { .. })
        ));
        assert!(matches!(
            s.check_submit(2, &t.id, &[0, 1, 2]),
            Err(TaskReject::Stale(_))
        ));
    }
}
