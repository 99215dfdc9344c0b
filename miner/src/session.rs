//! One connection to the pool: handshake, then tasks in and proofs out.
//!
//! Three activities run at once: this loop (notifications, keepalive, shutdown),
//! the prover loop (one task at a time, every proof on all prover threads), and a
//! submit task per finished task (so the prover never waits on the network).

use std::{
    collections::HashSet,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::{Duration, Instant},
};

use stratum::{
    client::{self, Client, ClientError},
    Authorize, Capabilities, ErrorCode, Notification, Notify, Progress, Submit, SubmittedProof,
    Subscribe, TaskId, PROTOCOL_VERSION,
};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use zk::{field::parse_fr, CircuitKeys, CircuitSpec, Statement};

use crate::{keys::KeyCache, pipeline::Witnesses, MinerConfig, Stats};

/// How a session ended.
pub enum Ended {
    /// Connection trouble: retry with backoff.
    Lost(String),
    /// The pool asked us to come back after a while.
    Reconnect(Duration),
    /// The pool refused the worker: do not retry.
    Refused(String),
    /// The pool refused the worker as banned for invalid work: retry once the
    /// ban (its length is in the message) is over.
    Banned(String),
}

/// Tasks waiting for the prover. The pool leases a few per session; more means
/// the pool is not respecting its own limit, and the loop waits (backpressure).
const TASK_QUEUE: usize = 8;

/// What outlives sessions: the key cache, the receipt log, the prover threads and
/// the TLS connector (when a pool is `stratum+ssl://`).
pub struct Rig {
    pub keys: Arc<KeyCache>,
    pub receipts: Arc<crate::receipts::ReceiptLog>,
    pub prover: Arc<rayon::ThreadPool>,
    pub tls: Option<stratum::tls::TlsConnector>,
    pub external: Option<Arc<crate::external::ExternalProver>>,
    pub resume: Arc<Resume>,
}

pub async fn run_session(
    cfg: &MinerConfig,
    pool: &crate::PoolUrl,
    rig: &Rig,
    stats: &Arc<Stats>,
    shutdown: &CancellationToken,
) -> Ended {
    let Rig {
        keys,
        receipts,
        prover,
        tls,
        external,
        resume,
    } = rig;
    let stream = match tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect((pool.host.as_str(), pool.port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ended::Lost(format!("cannot connect to {pool}: {e}")),
        Err(_) => return Ended::Lost(format!("cannot connect to {pool}: timed out")),
    };
    let _ = stream.set_nodelay(true);
    let (client, mut notes, mut closed) = match (pool.tls, tls.as_ref()) {
        (true, Some(connector)) => {
            match tokio::time::timeout(
                Duration::from_secs(10),
                stratum::tls::connect(connector, &pool.host, stream),
            )
            .await
            {
                Ok(Ok(s)) => client::start(s, stratum::DEFAULT_MAX_LINE),
                Ok(Err(e)) => return Ended::Lost(format!("{pool}: {e}")),
                Err(_) => return Ended::Lost(format!("{pool}: TLS handshake timed out")),
            }
        }
        _ => client::start(stream, stratum::DEFAULT_MAX_LINE),
    };
    stats.connects.fetch_add(1, Relaxed);

    let handshake = async {
        let sub = client
            .subscribe(Subscribe {
                agent: format!("zkminer/{}", env!("CARGO_PKG_VERSION")),
                protocol: PROTOCOL_VERSION.into(),
                capabilities: Capabilities {
                    backends: vec!["arkworks".into()],
                    circuits: vec![],
                    threads: cfg.threads as u32,
                },
                resume: resume.token_for(&pool.to_string()),
            })
            .await?;
        client
            .authorize(Authorize {
                worker: cfg.worker.clone(),
                password: cfg.password.clone(),
            })
            .await?;
        Ok::<_, ClientError>(sub)
    };
    let sub = match tokio::time::timeout(Duration::from_secs(15), handshake).await {
        Err(_) => return Ended::Lost("handshake timed out".into()),
        Ok(Err(ClientError::Rpc { error, .. }))
            if error.kind() == Some(ErrorCode::Unauthorized) =>
        {
            return Ended::Refused(error.message)
        }
        Ok(Err(ClientError::Rpc { error, .. })) if error.kind() == Some(ErrorCode::Banned) => {
            return Ended::Banned(error.message)
        }
        Ok(Err(e)) => return Ended::Lost(format!("handshake failed: {e}")),
        Ok(Ok(sub)) => sub,
    };
    info!(%pool, worker = %cfg.worker, session = %sub.session, "connected and authorized");
    stats.note(|m| m.connected(&pool.to_string()));
    resume.set_token(&pool.to_string(), sub.resume.clone());

    let cancelled: Arc<Mutex<HashSet<TaskId>>> = Arc::default();
    let (task_tx, task_rx) = mpsc::channel::<Notify>(TASK_QUEUE);
    let session_over = CancellationToken::new();
    let prover_loop = tokio::spawn(prove_tasks(
        task_rx,
        Prover {
            client: client.clone(),
            stats: stats.clone(),
            keys: keys.clone(),
            receipts: receipts.clone(),
            threads: prover.clone(),
            external: external.clone(),
            resume: resume.clone(),
        },
        cancelled.clone(),
        session_over.clone(),
    ));

    let mut ping = tokio::time::interval(Duration::from_secs(sub.ping_interval_secs.max(1)));
    ping.tick().await;
    let ended = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ended::Lost("shutting down".into()),
            why = &mut closed => break Ended::Lost(why.unwrap_or_else(|_| "connection closed".into())),
            _ = ping.tick() => {
                let (c, stats) = (client.clone(), stats.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    if c.ping().await.is_ok() {
                        stats.note(|m| m.pinged(sent.elapsed()));
                    }
                });
            }
            note = notes.recv() => match note {
                None => break Ended::Lost("connection closed".into()),
                Some(Notification::Notify(n)) => {
                    debug!(task = %n.task, statements = n.statements.len(), "task");
                    if task_tx.send(n).await.is_err() {
                        break Ended::Lost("prover stopped".into());
                    }
                }
                Some(Notification::Cancel(c)) => {
                    info!(tasks = ?c.tasks, reason = %c.reason, "tasks cancelled by the pool");
                    cancelled.lock().expect("cancel set lock is never poisoned").extend(c.tasks);
                }
                Some(Notification::SetTarget(t)) => debug!(target_ms = t.target_task_ms, "new task target"),
                Some(Notification::Reconnect(r)) => break Ended::Reconnect(Duration::from_secs(r.wait_secs)),
            },
        }
    };
    session_over.cancel();
    drop(task_tx);
    let _ = prover_loop.await;
    ended
}

fn parse_task(n: &Notify) -> Result<(CircuitSpec, Vec<(u64, Statement)>), String> {
    let spec: CircuitSpec = serde_json::from_value(n.spec.clone())
        .map_err(|e| format!("unknown circuit spec {}: {e}", n.spec))?;
    let statements = n
        .statements
        .iter()
        .map(|s| {
            let public = s
                .public
                .iter()
                .map(|x| parse_fr(x))
                .collect::<Result<Vec<_>, _>>()?;
            let private = s
                .private
                .iter()
                .map(|x| parse_fr(x))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((
                s.index,
                Statement {
                    public,
                    private,
                    input: s.input.clone(),
                },
            ))
        })
        .collect::<Result<Vec<_>, zk::FieldError>>()
        .map_err(|e| format!("bad statement: {e}"))?;
    Ok((spec, statements))
}

/// What the prover loop works with, for one session.
struct Prover {
    client: Client,
    stats: Arc<Stats>,
    keys: Arc<KeyCache>,
    receipts: Arc<crate::receipts::ReceiptLog>,
    threads: Arc<rayon::ThreadPool>,
    external: Option<Arc<crate::external::ExternalProver>>,
    resume: Arc<Resume>,
}

async fn prove_tasks(
    mut tasks: mpsc::Receiver<Notify>,
    ctx: Prover,
    cancelled: Arc<Mutex<HashSet<TaskId>>>,
    session_over: CancellationToken,
) {
    let Prover {
        client,
        stats,
        keys,
        receipts,
        threads: prover,
        external,
        resume,
    } = ctx;
    // The task queued behind the one proving, taken from the queue while its
    // last proof ran; with its witnesses already being computed when it needs
    // the same key (see `witnesses_ahead`).
    let mut next: Option<(Notify, Option<Witnesses>)> = None;
    let mut queue_open = true;
    loop {
        let (n, early) = match next.take() {
            Some(x) => x,
            None => match tasks.recv().await {
                Some(n) => (n, None),
                None => break,
            },
        };
        // The monitor shows "proving" while this task is held, whichever way
        // this iteration ends.
        let _busy = Busy::start(&stats);
        let is_cancelled = |t: &TaskId| {
            cancelled
                .lock()
                .expect("cancel set lock is never poisoned")
                .contains(t)
        };
        if is_cancelled(&n.task) || session_over.is_cancelled() {
            continue;
        }
        let submit = |proofs: Vec<SubmittedProof>| {
            spawn_submit(
                client.clone(),
                stats.clone(),
                receipts.clone(),
                resume.clone(),
                crate::receipts::pool_base(&n.key.url),
                n.task.clone(),
                proofs,
            )
        };
        // A task a resumed session was notified again, whose proofs are done.
        if let Some(proofs) = resume.take(&n.task) {
            info!(task = %n.task, proofs = proofs.len(), "submitting the proofs kept from the lost connection");
            submit(proofs);
            continue;
        }
        let (spec, statements) = match parse_task(&n) {
            Ok(v) => v,
            Err(e) => {
                error!(task = %n.task, error = %e, "cannot read task; skipping it (its lease will expire)");
                continue;
            }
        };
        let circuit = match keys.get(&n.key, spec).await {
            Ok(k) => k,
            Err(e) => {
                error!(task = %n.task, error = %e, "cannot get the proving key; skipping task");
                stats.note(|m| {
                    m.error(format!(
                        "cannot get the proving key of task {}: {e}",
                        n.task
                    ))
                });
                continue;
            }
        };
        stats.note(|m| m.key_loaded(&n.key.hash));
        // The key's verifying key must be the circuit the task names, or every
        // proof would be checked against another key and the rig blamed.
        if circuit.verifier.id != n.circuit.0 {
            error!(task = %n.task, circuit = %n.circuit, key_circuit = %circuit.verifier.id,
                "the proving key is for another circuit than the task names; skipping task");
            continue;
        }
        let lease = Duration::from_secs(n.lease_secs.max(3));
        let mut last_progress = Instant::now();
        let mut proofs = Vec::with_capacity(statements.len());
        let mut aborted = false;
        // Witnesses are computed one statement ahead of the prover, except for
        // an external prover, which computes its own.
        let external_proves = external
            .as_ref()
            .is_some_and(|e| e.active() && circuit.circom.is_some());
        // Not for a task the pool already took back: each start is a thread
        // that computes at least one witness.
        let mut ahead = if external_proves || is_cancelled(&n.task) {
            None
        } else if let Some(early) = early {
            stats.note(|m| m.witnessed_ahead());
            Some(early)
        } else {
            Some(Witnesses::start(
                circuit.clone(),
                statements.iter().map(|(_, s)| s.clone()).collect(),
            ))
        };
        let last = statements.len().saturating_sub(1);
        for (done, (index, statement)) in statements.into_iter().enumerate() {
            if is_cancelled(&n.task) || session_over.is_cancelled() {
                aborted = true;
                break;
            }
            let (c, p) = (circuit.clone(), prover.clone());
            let ext = external
                .clone()
                .filter(|e| e.active() && circuit.circom.is_some());
            let (hash, task) = (n.key.hash.clone(), n.task.clone());
            let started = Instant::now();
            let witness = match &mut ahead {
                Some(a) => {
                    let waited = Instant::now();
                    let w = a.next().await;
                    stats.note(|m| m.witness_waited(waited.elapsed()));
                    w
                }
                None => None,
            };
            let mut proving = tokio::task::spawn_blocking(move || {
                if let Some(e) = ext {
                    match e.prove(&c, &hash, &statement) {
                        Ok(proof) => return Ok::<_, zk::KeyError>(proof),
                        Err(why) => warn!(%task, index, error = %why,
                            "the external prover failed; proving this statement with the built-in prover"),
                    }
                }
                let proof = match witness {
                    Some(w) => p.install(|| c.prove_witness(&w?))?,
                    None => p.install(|| c.prove(&statement))?,
                };
                // Check our own proof (about a millisecond) before the pool does: a
                // key that cannot make valid proofs must not get this rig banned.
                // (zkpool's prover checks its proofs too, but falls back to
                // arkworks, whose proofs are only checked here.)
                c.verifier.verify(&statement.public, &proof).map_err(|e| {
                    zk::KeyError::Synthesis(format!(
                        "the proof made with this circuit's proving key does not verify under its verifying key ({e}); not submitting it"
                    ))
                })?;
                Ok(proof)
            });
            // While the task's last proof runs, its witness thread is done: the
            // next task, when the pool has sent it, has its witnesses started
            // now, so its first proof does not wait for one (a task of one or
            // two statements, as large circuits get, would otherwise start each
            // time with the prover threads idle behind a single-threaded witness).
            let proof = loop {
                tokio::select! {
                    r = &mut proving => break r,
                    m = tasks.recv(), if done == last && next.is_none() && queue_open => match m {
                        Some(m) => {
                            let early = ahead
                                .is_some()
                                .then(|| witnesses_ahead(&m, &n, &circuit, &resume, &is_cancelled))
                                .flatten();
                            next = Some((m, early));
                        }
                        None => queue_open = false,
                    },
                }
            };
            match proof {
                Ok(Ok(proof)) => {
                    stats
                        .proving_nanos
                        .fetch_add(started.elapsed().as_nanos() as u64, Relaxed);
                    stats.proofs.fetch_add(1, Relaxed);
                    stats.constraints.fetch_add(n.work_per_proof, Relaxed);
                    stats.note(|m| m.proved(n.work_per_proof, Instant::now()));
                    proofs.push(SubmittedProof {
                        index,
                        // Uncompressed: it spares the pool three square roots per
                        // proof (its verification is CPU-bound), for 128 more bytes.
                        proof: proof.to_uncompressed().unwrap_or(proof).to_hex(),
                    });
                }
                Ok(Err(e)) => {
                    error!(task = %n.task, index, error = %e, "proving failed; skipping task");
                    stats.note(|m| m.error(format!("proving task {} failed: {e}", n.task)));
                    aborted = true;
                    break;
                }
                Err(e) => {
                    error!(task = %n.task, index, error = %e, "prover panicked; skipping task");
                    aborted = true;
                    break;
                }
            }
            // Keep the lease alive on long tasks.
            if last_progress.elapsed() > lease / 3 {
                last_progress = Instant::now();
                let (c, task, done) = (client.clone(), n.task.clone(), done as u32 + 1);
                tokio::spawn(async move {
                    let _ = c.progress(Progress { task, done }).await;
                });
            }
        }
        if aborted {
            continue;
        }
        submit(proofs);
    }
}

/// Starts computing the witnesses of `queued`, the task behind `current`,
/// while `current`'s last proof runs: when it is proven with the same key and
/// circuit (already loaded: a task for another key waits for its own load), is
/// not cancelled, and has no proofs kept from a lost connection. Anything
/// else, including a task that does not parse, is left to the prover loop's
/// usual checks, which also run on a task started here; a task dropped there
/// stops its witness thread.
fn witnesses_ahead(
    queued: &Notify,
    current: &Notify,
    circuit: &Arc<CircuitKeys>,
    resume: &Resume,
    is_cancelled: &impl Fn(&TaskId) -> bool,
) -> Option<Witnesses> {
    if queued.key.hash != current.key.hash
        || queued.circuit != current.circuit
        || queued.spec != current.spec
        || is_cancelled(&queued.task)
        || resume.holds(&queued.task)
    {
        return None;
    }
    let (_, statements) = parse_task(queued).ok()?;
    Some(Witnesses::start(
        circuit.clone(),
        statements.into_iter().map(|(_, s)| s).collect(),
    ))
}

/// A task held by the prover, for the monitor: counted from its creation to its
/// drop.
struct Busy<'a>(&'a Stats);

impl<'a> Busy<'a> {
    fn start(stats: &'a Stats) -> Self {
        stats.note(|m| m.task_started());
        Busy(stats)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.note(|m| m.task_finished());
    }
}

/// Submits a task's proofs and records the outcome. Proofs whose submit the
/// connection dropped under are kept, so a resumed session submits them when the
/// pool notifies the task again, instead of proving it over.
fn spawn_submit(
    c: Client,
    s: Arc<Stats>,
    log: Arc<crate::receipts::ReceiptLog>,
    resume: Arc<Resume>,
    pool: String,
    task: TaskId,
    proofs: Vec<SubmittedProof>,
) {
    tokio::spawn(async move {
        let sent = Instant::now();
        match c
            .submit(Submit {
                task: task.clone(),
                proofs: proofs.clone(),
            })
            .await
        {
            Ok(r) => {
                let round_trip = sent.elapsed();
                s.last_submit_us
                    .store(round_trip.as_micros() as u64, Relaxed);
                s.note(|m| m.accepted(r.accepted as u64, r.work, round_trip, Instant::now()));
                s.accepted_shares.fetch_add(1, Relaxed);
                s.accepted_proofs.fetch_add(r.accepted as u64, Relaxed);
                s.accepted_work.fetch_add(r.work, Relaxed);
                debug!(%task, accepted = r.accepted, work = r.work, "share accepted");
                match r.receipt.map(serde_json::from_value::<payouts::Receipt>) {
                    Some(Ok(receipt)) => {
                        if let Err(e) = log.append(&pool, receipt) {
                            error!(%task, error = %e, path = %log.path().display(), "cannot store the share's receipt");
                        }
                    }
                    Some(Err(e)) => {
                        warn!(%task, error = %e, "the pool's receipt is unreadable")
                    }
                    None => warn!(%task, "the pool sent no receipt for this share"),
                }
            }
            Err(ClientError::Disconnected) => {
                warn!(%task, "disconnected before the submit was answered; keeping the proofs for a resumed session");
                resume.keep(task, proofs);
            }
            Err(e) => {
                s.rejected_shares.fetch_add(1, Relaxed);
                warn!(%task, error = %e, "share rejected");
                let why = match &e {
                    ClientError::Rpc { error, .. } => error.message.clone(),
                    other => other.to_string(),
                };
                s.note(|m| m.rejected(&why, Instant::now()));
            }
        }
    });
}

/// What survives a lost connection to resume the session on the next one: the
/// pool's resume token, and proofs whose submit the connection dropped under.
#[derive(Default)]
pub struct Resume {
    /// (pool, token) of the last session.
    token: Mutex<Option<(String, String)>>,
    unsent: Mutex<std::collections::HashMap<TaskId, (Instant, Vec<SubmittedProof>)>>,
}

impl Resume {
    /// Unsent proofs are kept this long: past it the pool has re-leased the task.
    const KEEP: Duration = Duration::from_secs(300);

    fn keep(&self, task: TaskId, proofs: Vec<SubmittedProof>) {
        let mut u = self.unsent.lock().expect("resume lock is never poisoned");
        u.retain(|_, (at, _)| at.elapsed() < Self::KEEP);
        u.insert(task, (Instant::now(), proofs));
    }

    fn take(&self, task: &TaskId) -> Option<Vec<SubmittedProof>> {
        self.unsent
            .lock()
            .expect("resume lock is never poisoned")
            .remove(task)
            .filter(|(at, _)| at.elapsed() < Self::KEEP)
            .map(|(_, p)| p)
    }

    /// Whether proofs of `task` are kept for a resumed session.
    fn holds(&self, task: &TaskId) -> bool {
        self.unsent
            .lock()
            .expect("resume lock is never poisoned")
            .contains_key(task)
    }

    fn token_for(&self, pool: &str) -> Option<String> {
        self.token
            .lock()
            .expect("resume lock is never poisoned")
            .as_ref()
            .filter(|(p, _)| p == pool)
            .map(|(_, t)| t.clone())
    }

    fn set_token(&self, pool: &str, token: Option<String>) {
        *self.token.lock().expect("resume lock is never poisoned") =
            token.map(|t| (pool.to_owned(), t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zk::Fr;

    /// A task of the preimage circuit: statements for `xs`, the key `hash`.
    fn task(id: &str, hash: &str, keys: &CircuitKeys, xs: &[u64]) -> Notify {
        let statements: Vec<_> = xs
            .iter()
            .map(|&x| {
                let s = CircuitSpec::preimage_statement(Fr::from(x));
                serde_json::json!({
                    "index": x,
                    "public": s.public.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    "private": s.private.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "task": id, "job": "j1", "circuit": keys.verifier.id,
            "spec": CircuitSpec::Preimage, "statements": statements,
            "key": {"hash": hash, "url": "http://127.0.0.1:1/k", "size": 1},
            "lease_secs": 60, "work_per_proof": 1,
        }))
        .expect("a notify")
    }

    #[tokio::test]
    async fn the_next_task_gets_its_witnesses_early_only_for_the_same_key_and_when_still_wanted() {
        let keys = Arc::new(CircuitKeys::setup_seeded(CircuitSpec::Preimage, 3).unwrap());
        keys.use_engine(None);
        let current = task("t1", "aa", &keys, &[1]);
        let queued = task("t2", "aa", &keys, &[2, 3]);
        let resume = Resume::default();
        let none_cancelled = |_: &TaskId| false;

        // Same key: the queued task's own statements, in order, and they prove.
        let mut early = witnesses_ahead(&queued, &current, &keys, &resume, &none_cancelled)
            .expect("started for the same key");
        for x in [2u64, 3] {
            let s = CircuitSpec::preimage_statement(Fr::from(x));
            let w = early.next().await.unwrap().unwrap();
            assert_eq!(w.public(), &s.public[..]);
            let proof = keys.prove_witness(&w).unwrap();
            keys.verifier.verify(&s.public, &proof).unwrap();
        }
        assert!(early.next().await.is_none());

        // Another key: left to its own load.
        let other = task("t3", "bb", &keys, &[4]);
        assert!(witnesses_ahead(&other, &current, &keys, &resume, &none_cancelled).is_none());
        // Cancelled by the pool meanwhile.
        let t2 = queued.task.clone();
        let cancelled = move |t: &TaskId| *t == t2;
        assert!(witnesses_ahead(&queued, &current, &keys, &resume, &cancelled).is_none());
        // Its proofs are kept from a lost connection: they are submitted, not made again.
        resume.keep(queued.task.clone(), vec![]);
        assert!(witnesses_ahead(&queued, &current, &keys, &resume, &none_cancelled).is_none());
        // A statement that does not parse: the prover loop reports it.
        let mut bad = task("t4", "aa", &keys, &[5]);
        bad.statements[0].public[0] = "not a number".into();
        assert!(witnesses_ahead(&bad, &current, &keys, &resume, &none_cancelled).is_none());
    }
}
