//! One task per stratum connection: admission, the handshake (subscribe, then
//! authorize), then requests, outgoing notifications, keepalive and shutdown, in
//! one `select!` loop. The decisions are made by sans-IO machines
//! ([`handshake`]); this file reads and writes lines.
//!
//! A malformed line is answered with its JSON-RPC error and the session goes on;
//! only framing faults (a line over the limit, bytes that are not UTF-8),
//! timeouts and bans end it. Every write has a deadline. When a session ends its
//! leased tasks wait for the rig to resume them (`stratum.resume_grace_secs`), or
//! go back to the queue at once.

pub mod handshake;
pub mod notify;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::Duration,
};

use dashmap::DashMap;
use futures::{SinkExt, StreamExt};
use stratum::{
    codec::{CodecError, LineCodec},
    Call, ErrorCode, Id, Notification, PingResult, ProgressResult, Reconnect, Response, RpcError,
    ToMiner, ToPool,
};
use tokio::{
    io::AsyncWriteExt,
    net::TcpListener,
    sync::mpsc,
    time::{sleep_until, Instant},
};
use tokio_util::{codec::Framed, task::TaskTracker};
use tracing::{debug, info, info_span, warn, Instrument};

pub use handshake::{Authorized, Exit, TokenCheck};

use crate::{
    circuits::now_ms,
    dispatch::{Outbox, SessionEntry, SESSION_QUEUE},
    scheduler::{SessionKey, Task},
    server::Pool,
    share,
};
use handshake::{Caps, Handshake, HandshakeConfig};

/// A closed session waiting to be resumed.
#[derive(Debug, Clone)]
pub struct Parked {
    pub key: SessionKey,
    pub worker: stratum::Worker,
    pub until: std::time::Instant,
}

/// Sessions whose connection closed with leased tasks, by resume token, until a
/// reconnecting rig resumes them or `stratum.resume_grace_secs` pass; and the
/// numbering of sessions.
#[derive(Default)]
pub struct Sessions {
    parked: DashMap<String, Parked>,
    next: AtomicU64,
}

impl Sessions {
    pub fn new() -> Self {
        Sessions {
            parked: DashMap::new(),
            next: AtomicU64::new(1),
        }
    }

    fn next_key(&self) -> SessionKey {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The parked session of `worker` with resume `token`, taken out.
    fn resume(&self, token: &str, worker: &stratum::Worker) -> Option<Parked> {
        self.parked
            .remove_if(token, |_, p| p.worker == *worker)
            .map(|(_, p)| p)
    }

    /// Parked sessions nobody resumed by `now`, taken out.
    pub fn due(&self, now: std::time::Instant) -> Vec<Parked> {
        let tokens: Vec<String> = self
            .parked
            .iter()
            .filter(|p| p.until <= now)
            .map(|p| p.key().clone())
            .collect();
        tokens
            .into_iter()
            .filter_map(|t| self.parked.remove(&t).map(|(_, p)| p))
            .collect()
    }
}

/// A resume token: 128 random bits, so only the rig that was given it can take
/// over its session's leases.
fn new_token() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// Accepts connections until shutdown; one task per session, admitted by the
/// connection caps (a refused connection gets the reason before it is closed).
pub async fn accept_loop(pool: Arc<Pool>, listener: TcpListener, tasks: TaskTracker) {
    let config = pool.config();
    let caps = Arc::new(Mutex::new(Caps::new(
        config.stratum.max_sessions,
        config.stratum.max_sessions_per_ip,
        config.limits.stratum_handshakes_per_ip,
    )));
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = pool.shutdown().cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let admitted = caps
            .lock()
            .expect("caps lock is never poisoned")
            .admit(peer.ip());
        match admitted {
            Ok(()) => {
                pool.metrics().connections.inc();
                let span = info_span!("session", %peer, worker = tracing::field::Empty);
                let admission = Admission {
                    caps: caps.clone(),
                    ip: peer.ip(),
                    authorized: false,
                };
                let pool = pool.clone();
                tasks.spawn(
                    async move {
                        match pool.tls().cloned() {
                            None => run(pool, stream, peer, admission).await,
                            // The TLS handshake counts against the handshake timeout.
                            Some(acceptor) => match tokio::time::timeout(
                                pool.config().handshake_timeout(),
                                acceptor.accept(stream),
                            )
                            .await
                            {
                                Ok(Ok(tls)) => run(pool, tls, peer, admission).await,
                                Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                                Err(_) => debug!("TLS handshake timed out"),
                            },
                        }
                    }
                    .instrument(span),
                );
            }
            Err(refusal) => {
                let refusal = ToMiner::Response(Response::err(
                    None,
                    RpcError::new(ErrorCode::Busy, refusal.to_string()),
                ));
                tasks.spawn(async move {
                    let line = stratum::Wire::to_line(&refusal) + "\n";
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        stream.write_all(line.as_bytes()),
                    )
                    .await;
                });
            }
        }
    }
}

/// A session's places under the connection caps, given back when dropped.
pub struct Admission {
    caps: Arc<Mutex<Caps>>,
    ip: IpAddr,
    authorized: bool,
}

impl Admission {
    fn authorized(&mut self) {
        if !self.authorized {
            self.authorized = true;
            self.caps
                .lock()
                .expect("caps lock is never poisoned")
                .authorized(self.ip);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.caps
            .lock()
            .expect("caps lock is never poisoned")
            .closed(self.ip, self.authorized);
    }
}

/// Serves one connection until it ends.
pub async fn run<S>(pool: Arc<Pool>, stream: S, peer: SocketAddr, mut admission: Admission)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let config = pool.config();
    let key = pool.sessions().next_key();
    let mut framed = Framed::new(
        stream,
        LineCodec::<ToPool, ToMiner>::new(config.stratum.max_line),
    );
    let (tx, mut rx) = mpsc::channel::<Outbox>(SESSION_QUEUE);
    let mut hs = Handshake::new(
        key,
        new_token(),
        HandshakeConfig {
            max_line: config.stratum.max_line,
            ping_interval: Duration::from_secs(config.stratum.ping_interval_secs),
            handshake_timeout: config.handshake_timeout(),
            idle_timeout: config.idle_timeout(),
            resume_grace: Duration::from_secs(config.stratum.resume_grace_secs),
        },
        Instant::now().into_std(),
    );
    let mut registered = false;
    let mut resumed: Vec<Task> = vec![];
    // Every write has a deadline: a peer that stops reading would otherwise hold
    // its session (and its place) forever, with its timers never reached.
    let write_timeout = config.write_timeout();
    macro_rules! send {
        ($msg:expr) => {
            match tokio::time::timeout(write_timeout, framed.send($msg)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "the miner read nothing for {} s",
                    write_timeout.as_secs()
                )),
            }
        };
    }
    debug!("connected");

    // Both futures live as long as the session: re-creating them on every wakeup
    // registered and dropped a waiter on the pool-wide shutdown token and a timer
    // each time, which a burst of 10,000 notifies paid 10,000 times over.
    let shutdown = pool.shutdown().cancelled();
    tokio::pin!(shutdown);
    let timer = sleep_until(Instant::from_std(hs.deadline()));
    tokio::pin!(timer);
    let why = loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                let bye = Notification::Reconnect(Reconnect { host: None, port: None, wait_secs: 5 });
                let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(ToMiner::Notification(bye))).await;
                break Exit::Shutdown;
            }
            _ = &mut timer => break hs.timed_out(),
            Some(out) = rx.recv() => {
                let out = match out {
                    Outbox::Send(m) => m,
                    Outbox::Lease(task) => match lease_line(&pool, &task) {
                        Some(m) => m,
                        None => continue,
                    },
                };
                if let Err(e) = send!(out) {
                    warn!(error = %e, "write failed");
                    break Exit::WriteFailed;
                }
            }
            item = framed.next() => {
                let reply = match item {
                    None => break Exit::Closed,
                    Some(Err(CodecError::LineTooLong { limit })) => {
                        let e = RpcError::new(ErrorCode::Other, format!("line longer than {limit} bytes; closing the connection"));
                        let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(ToMiner::Response(Response::err(None, e)))).await;
                        break Exit::LineTooLong;
                    }
                    Some(Err(CodecError::NotUtf8)) => {
                        let e = RpcError::new(ErrorCode::Other, "line is not UTF-8; closing the connection");
                        let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(ToMiner::Response(Response::err(None, e)))).await;
                        break Exit::NotUtf8;
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "read failed");
                        break Exit::ReadFailed;
                    }
                    Some(Ok(Err(malformed))) => {
                        debug!(error = %malformed.error, "malformed line");
                        pool.metrics().malformed_lines.inc();
                        Response::err(malformed.id, malformed.error)
                    }
                    Some(Ok(Ok(req))) => handle(&pool, key, peer, &mut hs, &mut resumed, req).await,
                };
                hs.heard(Instant::now().into_std());
                if hs.authorized().is_some() {
                    admission.authorized();
                }
                timer.as_mut().reset(Instant::from_std(hs.deadline()));
                let banned = matches!(&reply.outcome, Err(e) if e.kind() == Some(ErrorCode::Banned));
                if let Err(e) = send!(ToMiner::Response(reply)) {
                    warn!(error = %e, "write failed");
                    break Exit::WriteFailed;
                }
                if banned {
                    break Exit::Banned;
                }
                if let (false, Some(who)) = (registered, hs.authorized()) {
                    // Registered for dispatch only after the authorize answer is
                    // written, so the first notify follows it on the wire. A resumed
                    // session's tasks are notified again: the rig may have restarted,
                    // and one that still has them knows them by id.
                    for t in resumed.drain(..) {
                        let _ = tx.try_send(Outbox::Lease(Box::new(t)));
                    }
                    pool.dispatch().register(key, SessionEntry { tx: tx.clone(), worker: who.worker.clone(), peer });
                    registered = true;
                }
            }
        }
    };
    pool.dispatch().unregister(key);
    close(&pool, key, &hs, why);
}

/// What a closed session leaves: its leases wait for the rig to resume them
/// (`stratum.resume_grace_secs`), or go back to the queue at once.
fn close(pool: &Pool, key: SessionKey, hs: &Handshake, why: Exit) {
    let grace = pool.config().stratum.resume_grace_secs;
    if let (Some(who), true) = (
        hs.authorized(),
        grace > 0 && why.resumable() && !pool.shutdown().is_cancelled(),
    ) {
        let held = pool.dispatch().with(|s| s.park(key));
        if held > 0 {
            pool.sessions().parked.insert(
                hs.token().to_owned(),
                Parked {
                    key,
                    worker: who.worker.clone(),
                    until: std::time::Instant::now() + Duration::from_secs(grace),
                },
            );
            info!(
                reason = why.as_str(),
                tasks = held,
                grace_secs = grace,
                "session closed; its leases wait for the rig to resume"
            );
            return;
        }
    }
    let requeued = pool.dispatch().with(|s| s.remove_session(key));
    if !requeued.is_empty() {
        info!(
            tasks = requeued.len(),
            "session ended with leased tasks; re-queued"
        );
    }
    info!(reason = why.as_str(), "session closed");
}

/// The line for a task a session was handed; `None` (and the task given back to
/// the scheduler) when its job ended in between.
fn lease_line(pool: &Pool, task: &Task) -> Option<ToMiner> {
    let built = pool.jobs().active(&task.job).and_then(|job| {
        let circuit = pool.circuits().get(&job.circuit_id)?;
        Some(notify::notify(
            task,
            &job,
            &circuit.record,
            pool.public_url(),
        ))
    });
    match built {
        Some(n) => Some(ToMiner::Notification(n)),
        None => {
            pool.dispatch().with(|s| s.release(task.session, &task.id));
            None
        }
    }
}

/// Answers one request.
async fn handle(
    pool: &Arc<Pool>,
    key: SessionKey,
    peer: SocketAddr,
    hs: &mut Handshake,
    resumed: &mut Vec<Task>,
    req: ToPool,
) -> Response {
    let id: Id = req.id;
    let outcome: Result<serde_json::Value, RpcError> = match req.call {
        Call::Subscribe(s) => {
            let agent = s.agent.clone();
            hs.subscribe(s, std::time::Instant::now()).map(|r| {
                debug!(%agent, "subscribed");
                serde_json::to_value(r).expect("results serialise")
            })
        }
        Call::Authorize(a) => authorize(pool, key, peer, hs, resumed, a).await,
        Call::Ping(_) => {
            Ok(serde_json::to_value(PingResult { time_ms: now_ms() }).expect("results serialise"))
        }
        Call::Submit(s) => match hs.require_authorized() {
            Err(e) => Err(e),
            Ok(who) => {
                let who = who.clone();
                share::submit(pool, key, &who, s)
                    .await
                    .map(|r| serde_json::to_value(r).expect("results serialise"))
            }
        },
        Call::Progress(p) => match hs.require_authorized() {
            Err(e) => Err(e),
            Ok(_) => {
                let renewed = pool
                    .dispatch()
                    .with(|s| s.renew(key, &p.task, std::time::Instant::now()));
                match renewed {
                    Some(lease) => Ok(serde_json::to_value(ProgressResult {
                        lease_secs: lease.as_secs().max(1),
                    })
                    .expect("results serialise")),
                    None => Err(RpcError::new(
                        ErrorCode::StaleTask,
                        format!("task {} is not leased to this session", p.task),
                    )),
                }
            }
        },
    };
    match outcome {
        Ok(v) => Response {
            id: Some(id),
            outcome: Ok(v),
        },
        Err(e) => Response::err(Some(id), e),
    }
}

/// What `password` says about `worker`'s account (see [`TokenCheck`]).
pub async fn token_check(pool: &Pool, worker: &str, password: Option<&str>) -> TokenCheck {
    match pool
        .store()
        .check_worker_token(payouts::worker_addr(worker), password)
        .await
    {
        Ok(Some(true)) => TokenCheck::Verified,
        Ok(Some(false)) if password.is_some_and(|p| !p.is_empty()) => TokenCheck::Wrong,
        Ok(Some(false)) => TokenCheck::Missing,
        Ok(None) if pool.config().stratum.require_worker_token => TokenCheck::Missing,
        Ok(None) => TokenCheck::Open,
        Err(e) => {
            tracing::error!(error = %e, "cannot read worker tokens; refusing authorize");
            TokenCheck::Fault
        }
    }
}

/// `mining.authorize`: the handshake decides, with the worker's token and bans
/// looked up here; an authorized session joins the scheduler (resuming a parked
/// one of the same worker if it gave its token).
async fn authorize(
    pool: &Arc<Pool>,
    key: SessionKey,
    peer: SocketAddr,
    hs: &mut Handshake,
    resumed: &mut Vec<Task>,
    a: stratum::Authorize,
) -> Result<serde_json::Value, RpcError> {
    let worker = hs.authorize_name(&a)?;
    let (circuits, resume) = hs
        .subscribed()
        .map(|(c, r)| (c.to_vec(), r.map(str::to_owned)))
        .unwrap_or_default();
    let token = token_check(pool, worker.as_str(), a.password.as_deref()).await;
    let (answer, who) = match hs.authorize(
        &worker,
        peer.ip(),
        token,
        |who| pool.bans().refusal(&pool.ban_targets(who), who.ip),
        std::time::Instant::now(),
    ) {
        Ok(r) => r,
        Err(e) => {
            if matches!(token, TokenCheck::Missing | TokenCheck::Wrong) {
                warn!(%peer, worker = %worker, "authorize refused: {}", e.message);
            }
            return Err(e);
        }
    };
    // Capabilities: `None` when the miner named no circuits (all of them).
    let filter = (!circuits.is_empty()).then(|| circuits.iter().cloned().collect());
    let who = who.clone();
    *resumed = pool.dispatch().with(|s| {
        s.add_session_as(
            key,
            who.worker.clone(),
            who.identity(),
            who.proven_account(),
            filter,
        );
        // Resume: the parked session of this worker with that token.
        match resume
            .as_deref()
            .and_then(|t| pool.sessions().resume(t, &who.worker))
        {
            Some(p) => s.reattach(p.key, key),
            None => vec![],
        }
    });
    if !resumed.is_empty() {
        info!(%peer, tasks = resumed.len(), "resumed a parked session and its leases");
    }
    tracing::Span::current().record("worker", who.worker.as_str());
    info!(%peer, verified = who.verified, "authorized");
    Ok(serde_json::to_value(answer).expect("results serialise"))
}
