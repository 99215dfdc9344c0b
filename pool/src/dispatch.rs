//! The scheduler and the sessions it hands tasks to, behind one handle.
//!
//! [`Dispatch::with`] is the only way to change the scheduler: it runs a closure
//! under the scheduler's lock and, when the scheduler's epoch moved (a change that
//! can make an assignment possible: a job or a session added, a slot freed,
//! statements re-queued), hands the new assignments to their sessions after the
//! lock is released. A closure cannot `.await`, so "never hold the scheduler lock
//! across an await" is a rule the compiler keeps, and "dispatch after every
//! change" is kept by this one place instead of by each caller.
//!
//! Not here: what a session does with a task (it builds and writes its own
//! `mining.notify`, see `session::notify`), and the scheduling rules themselves
//! (`scheduler`, sans-IO).

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    sync::Mutex,
    time::Instant,
};

use dashmap::DashMap;
use stratum::{Notification, ToMiner};
use tokio::sync::mpsc;

use crate::scheduler::{SchedConfig, Scheduler, SessionKey, Task};

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
    pub worker: stratum::Worker,
    pub peer: SocketAddr,
}

/// The scheduler and the authorized sessions.
pub struct Dispatch {
    scheduler: Mutex<Scheduler>,
    sessions: DashMap<SessionKey, SessionEntry>,
}

impl Dispatch {
    pub fn new(cfg: SchedConfig) -> Self {
        Dispatch {
            scheduler: Mutex::new(Scheduler::new(cfg)),
            sessions: DashMap::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.scheduler
            .lock()
            .expect("scheduler lock is never poisoned: no code panics while holding it")
    }

    /// Runs `f` on the scheduler; dispatches afterwards if it changed anything
    /// that can make an assignment possible.
    pub fn with<R>(&self, f: impl FnOnce(&mut Scheduler) -> R) -> R {
        let (r, moved) = {
            let mut s = self.lock();
            let before = s.epoch();
            let r = f(&mut s);
            (r, s.epoch() != before)
        };
        if moved {
            self.dispatch();
        }
        r
    }

    /// Reads the scheduler (progress, counts); never dispatches.
    pub fn read<R>(&self, f: impl FnOnce(&Scheduler) -> R) -> R {
        f(&self.lock())
    }

    /// Offers ready tasks to sessions with free slots. [`Dispatch::with`] calls it
    /// when needed; the sweep calls it every tick as the safety net.
    pub fn dispatch(&self) {
        let tasks = self.lock().poll_assignments(Instant::now());
        let mut undelivered = vec![];
        for task in tasks {
            let (session, id) = (task.session, task.id.clone());
            let delivered = match self.sessions.get(&session) {
                Some(s) => s.tx.try_send(Outbox::Lease(Box::new(task))).is_ok(),
                None => false,
            };
            if !delivered {
                undelivered.push((session, id));
            }
        }
        if !undelivered.is_empty() {
            // The sessions are gone or not reading: take the tasks back; the next
            // dispatch (the session's exit, or any other event) hands them out.
            let mut s = self.lock();
            for (session, id) in undelivered {
                s.release(session, &id);
            }
        }
    }

    /// Registers an authorized session for dispatch (after its authorize answer
    /// is written, so the first notify follows it on the wire).
    pub fn register(&self, key: SessionKey, entry: SessionEntry) {
        self.sessions.insert(key, entry);
        self.dispatch();
    }

    /// Forgets a session's connection (its scheduler slot is the caller's to park
    /// or remove).
    pub fn unregister(&self, key: SessionKey) {
        self.sessions.remove(&key);
    }

    /// Queues a message for a session; false when it is gone or not reading.
    pub fn send(&self, key: SessionKey, msg: Outbox) -> bool {
        self.sessions
            .get(&key)
            .is_some_and(|s| s.tx.try_send(msg).is_ok())
    }

    /// Tells each session to stop work on its tasks among `tasks`: one
    /// `mining.cancel` per session, listing all of them. Best effort: a session
    /// that is gone or not reading loses nothing by missing it (its proofs would
    /// be stale).
    pub fn send_cancels(&self, tasks: &[Task], reason: &str) {
        let mut by_session: BTreeMap<SessionKey, Vec<stratum::TaskId>> = BTreeMap::new();
        for t in tasks {
            by_session
                .entry(t.session)
                .or_default()
                .push(t.id.as_str().into());
        }
        for (session, ids) in by_session {
            let cancel = stratum::Cancel {
                tasks: ids,
                reason: reason.to_owned(),
            };
            self.send(
                session,
                Outbox::Send(ToMiner::Notification(Notification::Cancel(cancel))),
            );
        }
    }

    /// Distinct worker names with an authorized session.
    pub fn workers_online(&self) -> usize {
        self.sessions
            .iter()
            .map(|e| e.worker.clone())
            .collect::<HashSet<_>>()
            .len()
    }

    /// Every worker online with its number of sessions, by name.
    pub fn online_all(&self) -> std::collections::BTreeMap<stratum::Worker, usize> {
        let mut out = std::collections::BTreeMap::new();
        for e in self.sessions.iter() {
            *out.entry(e.worker.clone()).or_insert(0) += 1;
        }
        out
    }

    /// The workers online of an account (`ADDR`) or the worker itself (`ADDR.RIG`).
    pub fn online(&self, name: &str) -> Vec<stratum::Worker> {
        self.sessions
            .iter()
            .filter(|e| e.worker.as_str() == name || e.worker.account() == name)
            .map(|e| e.worker.clone())
            .collect()
    }
}
