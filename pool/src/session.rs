//! One task per stratum connection: the handshake (subscribe, then authorize),
//! then requests, outgoing notifications, keepalive and shutdown, in one
//! `select!` loop.
//!
//! A malformed line is answered with its JSON-RPC error and the session goes on;
//! only framing faults (a line over the limit, bytes that are not UTF-8) and
//! timeouts end it. When a session ends for any reason its leased tasks go back to
//! the queue at once.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use dashmap::DashMap;

use futures::{SinkExt, StreamExt};
use stratum::{
    codec::{CodecError, LineCodec},
    AuthorizeResult, Call, ErrorCode, Id, Notification, PingResult, ProgressResult, Reconnect,
    Response, RpcError, SubscribeResult, ToMiner, ToPool, Worker, PROTOCOL_VERSION,
};
use tokio::{
    io::AsyncWriteExt,
    net::TcpListener,
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    time::{sleep_until, Instant},
};
use tokio_util::{codec::Framed, task::TaskTracker};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::{
    circuits::now_ms,
    server::{Authorized, Outbox, PoolState, SessionEntry, TokenCheck, SESSION_QUEUE},
};

/// Accepts connections until shutdown; one task per session, at most
/// `max_sessions` at once (a connection over the cap gets a clear refusal).
pub async fn accept_loop(state: Arc<PoolState>, listener: TcpListener, tasks: TaskTracker) {
    let permits = Arc::new(Semaphore::new(state.config.stratum.max_sessions));
    let per_ip: Arc<DashMap<IpAddr, usize>> = Arc::default();
    // Connections from one address still in their handshake: a peer that opens
    // connections and never authorizes holds at most this many places.
    let handshaking: Arc<DashMap<IpAddr, usize>> = Arc::default();
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = state.shutdown.cancelled() => return,
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
        let tls = state.tls.clone();
        let ip_slot = IpSlot::acquire(&per_ip, peer.ip(), state.config.stratum.max_sessions_per_ip);
        let hs_slot = IpSlot::acquire(
            &handshaking,
            peer.ip(),
            state.config.limits.stratum_handshakes_per_ip,
        );
        let refusal = match (permits.clone().try_acquire_owned(), ip_slot, hs_slot) {
            (Ok(permit), Some(ip_slot), Some(hs_slot)) => {
                state.metrics.connections.inc();
                let span = info_span!("session", %peer, worker = tracing::field::Empty);
                let admission = Admission { _permit: permit, _ip_slot: ip_slot, handshake: Some(hs_slot) };
                let state = state.clone();
                tasks.spawn(
                    async move {
                        match tls {
                            None => run(state, stream, peer, admission).await,
                            // The TLS handshake counts against the handshake timeout.
                            Some(acceptor) => match tokio::time::timeout(state.config.handshake_timeout(), acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => run(state, tls, peer, admission).await,
                                Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                                Err(_) => debug!("TLS handshake timed out"),
                            },
                        }
                    }
                    .instrument(span),
                );
                continue;
            }
            (Err(_), _, _) => format!("pool is full ({} sessions); try again later", state.config.stratum.max_sessions),
            (Ok(_), None, _) => format!(
                "too many sessions from {} (at most {} per address); close some or ask the operator",
                peer.ip(),
                state.config.stratum.max_sessions_per_ip
            ),
            (Ok(_), Some(_), None) => format!(
                "too many connections from {} still in their handshake (at most {}); authorize the open ones first",
                peer.ip(),
                state.config.limits.stratum_handshakes_per_ip
            ),
        };
        let refusal =
            ToMiner::Response(Response::err(None, RpcError::new(ErrorCode::Busy, refusal)));
        tasks.spawn(async move {
            let line = stratum::Wire::to_line(&refusal) + "\n";
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(line.as_bytes()))
                .await;
        });
    }
}

/// What a session holds while it lives: a place under the global cap and one under
/// its address's cap, and until it authorizes a place among its address's
/// handshakes. All are given back when dropped.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    _ip_slot: IpSlot,
    handshake: Option<IpSlot>,
}

/// One session's place in its address's count.
pub struct IpSlot {
    counts: Arc<DashMap<IpAddr, usize>>,
    ip: IpAddr,
}

impl IpSlot {
    /// A place for `ip` if it has fewer than `cap`.
    pub fn acquire(counts: &Arc<DashMap<IpAddr, usize>>, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        let mut n = counts.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        // Remove the entry at zero so the map holds only addresses with sessions.
        self.counts.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

enum Phase {
    New,
    Subscribed {
        circuits: Vec<String>,
        /// The token of the session this one resumes, if any.
        resume: Option<String>,
    },
    Authorized(Authorized),
}

/// A resume token: 128 random bits, so only the rig that was given it can take
/// over its session's leases.
fn new_token() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// Serves one connection until it ends.
pub async fn run<S>(state: Arc<PoolState>, stream: S, peer: SocketAddr, mut admission: Admission)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let key = state
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut framed = Framed::new(
        stream,
        LineCodec::<ToPool, ToMiner>::new(state.config.stratum.max_line),
    );
    let (tx, mut rx) = mpsc::channel::<Outbox>(SESSION_QUEUE);
    let mut phase = Phase::New;
    let mut registered = false;
    let token = new_token();
    let mut resumed: Vec<crate::scheduler::Task> = vec![];
    let handshake = state.config.handshake_timeout();
    let idle = state.config.idle_timeout();
    // Every write has a deadline: a peer that stops reading would otherwise hold
    // its session (and its place) forever, with its timers never reached.
    let write_timeout = state.config.write_timeout();
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
    let mut deadline = Instant::now() + handshake;
    debug!("connected");

    // Both futures live as long as the session: re-creating them on every wakeup
    // registered and dropped a waiter on the pool-wide shutdown token and a timer
    // each time, which a burst of 10,000 notifies paid 10,000 times over.
    let shutdown = state.shutdown.cancelled();
    tokio::pin!(shutdown);
    let timer = sleep_until(deadline);
    tokio::pin!(timer);
    let why = loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => {
                let bye = Notification::Reconnect(Reconnect { host: None, port: None, wait_secs: 5 });
                let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(ToMiner::Notification(bye))).await;
                break "pool shutting down";
            }
            _ = &mut timer => {
                break match phase {
                    Phase::Authorized { .. } => "idle timeout",
                    _ => "handshake timeout",
                };
            }
            Some(out) = rx.recv() => {
                let out = match out {
                    Outbox::Send(m) => m,
                    Outbox::Lease(task) => match state.lease_line(&task) {
                        Some(m) => m,
                        None => continue,
                    },
                };
                if let Err(e) = send!(out) {
                    warn!(error = %e, "write failed");
                    break "write failed";
                }
            }
            item = framed.next() => {
                let reply = match item {
                    None => break "closed by miner",
                    Some(Err(CodecError::LineTooLong { limit })) => {
                        let e = RpcError::new(ErrorCode::Other, format!("line longer than {limit} bytes; closing the connection"));
                        let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(ToMiner::Response(Response::err(None, e)))).await;
                        break "line too long";
                    }
                    Some(Err(CodecError::NotUtf8)) => {
                        let e = RpcError::new(ErrorCode::Other, "line is not UTF-8; closing the connection");
                        let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(ToMiner::Response(Response::err(None, e)))).await;
                        break "not utf-8";
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, "read failed");
                        break "read failed";
                    }
                    Some(Ok(Err(malformed))) => {
                        debug!(error = %malformed.error, "malformed line");
                        state.metrics.malformed_lines.inc();
                        Response::err(malformed.id, malformed.error)
                    }
                    Some(Ok(Ok(req))) => handle(&state, Conn { key, peer, token: &token }, &mut phase, &mut deadline, &mut resumed, req).await,
                };
                if matches!(phase, Phase::Authorized(_)) {
                    deadline = Instant::now() + idle;
                    admission.handshake = None;
                }
                timer.as_mut().reset(deadline);
                let banned = matches!(&reply.outcome, Err(e) if e.kind() == Some(ErrorCode::Banned));
                if let Err(e) = send!(ToMiner::Response(reply)) {
                    warn!(error = %e, "write failed");
                    break "write failed";
                }
                if banned {
                    break "banned";
                }
                if let (false, Phase::Authorized(who)) = (registered, &phase) {
                    // Register for dispatch only after the authorize answer is written,
                    // so the first notify follows it on the wire.
                    state.sessions.insert(key, SessionEntry { tx: tx.clone(), worker: who.worker.clone(), peer });
                    registered = true;
                    // A resumed session's tasks are notified again: the rig may have
                    // restarted, and one that still has them knows them by id.
                    for t in resumed.drain(..) {
                        let _ = tx.try_send(Outbox::Lease(Box::new(t)));
                    }
                    state.dispatch();
                }
            }
        }
    };
    state.sessions.remove(&key);
    let grace = state.config.stratum.resume_grace_secs;
    if let (Phase::Authorized(Authorized { worker, .. }), true) = (
        &phase,
        grace > 0 && why != "banned" && !state.shutdown.is_cancelled(),
    ) {
        let held = state
            .scheduler
            .lock()
            .expect("scheduler lock is never poisoned")
            .park(key);
        if held > 0 {
            state.parked.insert(
                token.clone(),
                crate::server::Parked {
                    key,
                    worker: worker.clone(),
                    until: std::time::Instant::now() + Duration::from_secs(grace),
                },
            );
            info!(
                reason = why,
                tasks = held,
                grace_secs = grace,
                "session closed; its leases wait for the rig to resume"
            );
            return;
        }
    }
    let requeued = state
        .scheduler
        .lock()
        .expect("scheduler lock is never poisoned")
        .remove_session(key);
    if !requeued.is_empty() {
        info!(
            tasks = requeued.len(),
            "session ended with leased tasks; re-queued"
        );
        state.dispatch();
    }
    info!(reason = why, "session closed");
}

/// Who a connection is.
#[derive(Clone, Copy)]
struct Conn<'a> {
    key: u64,
    peer: SocketAddr,
    /// This session's resume token.
    token: &'a str,
}

async fn handle(
    state: &Arc<PoolState>,
    conn: Conn<'_>,
    phase: &mut Phase,
    deadline: &mut Instant,
    resumed: &mut Vec<crate::scheduler::Task>,
    req: ToPool,
) -> Response {
    let Conn { key, peer, token } = conn;
    let id: Id = req.id;
    let outcome: Result<serde_json::Value, RpcError> = match (req.call, &*phase) {
        (Call::Subscribe(s), Phase::New) => {
            if s.protocol != PROTOCOL_VERSION {
                Err(RpcError::new(
                    ErrorCode::Other,
                    format!(
                        "unsupported protocol {:?}; this pool speaks {PROTOCOL_VERSION}",
                        s.protocol
                    ),
                ))
            } else {
                *phase = Phase::Subscribed {
                    circuits: s.capabilities.circuits,
                    resume: s.resume,
                };
                *deadline = Instant::now() + state.config.handshake_timeout();
                debug!(agent = %s.agent, "subscribed");
                Ok(serde_json::to_value(SubscribeResult {
                    session: format!("{key:x}").as_str().into(),
                    protocol: PROTOCOL_VERSION.into(),
                    max_line: state.config.stratum.max_line,
                    ping_interval_secs: state.config.stratum.ping_interval_secs,
                    idle_timeout_secs: state.config.stratum.idle_timeout_secs,
                    resume: Some(token.to_owned()),
                    resume_secs: state.config.stratum.resume_grace_secs,
                })
                .expect("results serialise"))
            }
        }
        (Call::Subscribe(_), _) => Err(RpcError::new(ErrorCode::Other, "already subscribed")),
        (Call::Authorize(a), Phase::Subscribed { circuits, resume }) => {
            let check = Worker::parse(&a.worker)
                .map(|w| (state.token_check(w.as_str(), a.password.as_deref()), w));
            let refuse = |why: String| Err(RpcError::new(ErrorCode::Unauthorized, why));
            match check {
                Err(e) => refuse(e.to_string()),
                Ok((TokenCheck::Missing, worker)) => {
                    warn!(%peer, worker = %worker, "authorize refused: no worker token");
                    let addr = payouts::worker_addr(worker.as_str());
                    refuse(format!(
                        "account {addr} needs its worker token as the password (zkminer --password TOKEN); the operator issues it with `zkpool workers token {addr}`"
                    ))
                }
                Ok((TokenCheck::Wrong, worker)) => {
                    warn!(%peer, worker = %worker, "authorize refused: wrong worker token");
                    let addr = payouts::worker_addr(worker.as_str());
                    refuse(format!(
                        "the password is not account {addr}'s worker token: check --password (a new `zkpool workers token {addr}` replaces the old token)"
                    ))
                }
                Ok((TokenCheck::Fault, _)) => Err(RpcError::new(
                    ErrorCode::Internal,
                    "the pool cannot check worker tokens right now; try again shortly",
                )),
                Ok((verified, worker)) => {
                    let who = Authorized {
                        worker: worker.to_string(),
                        ip: peer.ip(),
                        verified: verified == TokenCheck::Verified,
                    };
                    match state.ban_on(&who) {
                        Some(banned) => Err(RpcError::new(ErrorCode::Banned, banned)),
                        None => {
                            let filter = PoolState::circuit_filter(circuits);
                            let mut sched = state
                                .scheduler
                                .lock()
                                .expect("scheduler lock is never poisoned");
                            sched.add_session_as(
                                key,
                                who.worker.clone(),
                                who.identity(),
                                who.proven_account(),
                                filter,
                            );
                            // Resume: the parked session of this worker with that token.
                            let parked = resume.as_ref().and_then(|t| {
                                state
                                    .parked
                                    .remove_if(t, |_, p| p.worker == worker.as_str())
                                    .map(|(_, p)| p)
                            });
                            if let Some(p) = parked {
                                *resumed = sched.reattach(p.key, key);
                                info!(%peer, tasks = resumed.len(), "resumed a parked session and its leases");
                            }
                            drop(sched);
                            tracing::Span::current().record("worker", worker.as_str());
                            info!(%peer, verified = who.verified, "authorized");
                            *phase = Phase::Authorized(who);
                            Ok(serde_json::to_value(AuthorizeResult {
                                worker: worker.to_string(),
                            })
                            .expect("results serialise"))
                        }
                    }
                }
            }
        }
        (Call::Authorize(_), Phase::New) => Err(RpcError::new(
            ErrorCode::NotSubscribed,
            "send mining.subscribe before mining.authorize",
        )),
        (Call::Authorize(_), Phase::Authorized { .. }) => Err(RpcError::new(
            ErrorCode::Other,
            "already authorized; one worker per connection",
        )),
        (Call::Ping(_), _) => {
            Ok(serde_json::to_value(PingResult { time_ms: now_ms() }).expect("results serialise"))
        }
        (_, Phase::New) => Err(RpcError::new(
            ErrorCode::NotSubscribed,
            "send mining.subscribe first",
        )),
        (_, Phase::Subscribed { .. }) => Err(RpcError::new(
            ErrorCode::Unauthorized,
            "send mining.authorize first",
        )),
        (Call::Submit(s), Phase::Authorized(who)) => {
            let who = who.clone();
            state
                .handle_submit(key, &who, s)
                .await
                .map(|r| serde_json::to_value(r).expect("results serialise"))
        }
        (Call::Progress(p), Phase::Authorized { .. }) => {
            let renewed = state
                .scheduler
                .lock()
                .expect("scheduler lock is never poisoned")
                .renew(key, &p.task.0, std::time::Instant::now());
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
    };
    match outcome {
        Ok(v) => Response {
            id: Some(id),
            outcome: Ok(v),
        },
        Err(e) => Response::err(Some(id), e),
    }
}
