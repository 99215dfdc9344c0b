//! The miner's half of a connection: typed calls matched to their responses by id,
//! and a bounded stream of pool notifications.
//!
//! One reader task and one writer task own the socket halves. Calls may be made
//! concurrently from many tasks ([`Client`] is cheap to clone). The notification
//! channel is bounded: when the miner stops consuming it, the reader stops reading
//! and TCP backpressure reaches the pool. Consume notifications in a task of their
//! own, never only between calls, or a full channel would hold back responses.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{mpsc, oneshot},
};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::{codec::LineCodec, messages::*, types::*};

/// Capacity of the notification channel (tasks arrive a few at a time).
pub const NOTIFICATION_CAPACITY: usize = 64;
/// Capacity of the outgoing line queue; a full queue makes callers wait.
pub const OUTGOING_CAPACITY: usize = 64;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The connection closed before the answer came.
    #[error("connection to the pool closed")]
    Disconnected,
    /// The pool answered with an error.
    #[error("pool refused {method}: {error}")]
    Rpc {
        method: &'static str,
        error: RpcError,
    },
    /// The pool's answer did not have the expected shape.
    #[error("unexpected result for {method}: {detail}")]
    BadResult {
        method: &'static str,
        detail: String,
    },
}

/// Calls waiting for their response. `closed` is set, under the same lock, when the
/// reader ends, so a call made after that fails at once instead of waiting forever.
#[derive(Default)]
struct PendingCalls {
    closed: bool,
    waiters: HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>,
}

type Pending = Arc<Mutex<PendingCalls>>;

/// A handle for making calls on one connection.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<ToPool>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

/// Why the connection ended, reported once by the reader task.
pub type Closed = oneshot::Receiver<String>;

/// Starts the reader and writer tasks on `stream`; returns the call handle, the
/// notifications, and a receiver that says why the connection closed.
pub fn start<S>(stream: S, max_line: usize) -> (Client, mpsc::Receiver<Notification>, Closed)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let (tx, mut out_rx) = mpsc::channel::<ToPool>(OUTGOING_CAPACITY);
    let (note_tx, note_rx) = mpsc::channel(NOTIFICATION_CAPACITY);
    let (closed_tx, closed_rx) = oneshot::channel();
    let pending: Pending = Arc::default();

    tokio::spawn(async move {
        let mut sink = FramedWrite::new(write, LineCodec::<ToMiner, ToPool>::new(max_line));
        while let Some(msg) = out_rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });

    let reader_pending = pending.clone();
    tokio::spawn(async move {
        let mut frames = FramedRead::new(read, LineCodec::<ToMiner, ToPool>::new(max_line));
        let why = loop {
            match frames.next().await {
                None => break "pool closed the connection".to_owned(),
                Some(Err(e)) => break format!("connection failed: {e}"),
                Some(Ok(Err(malformed)))
                    if malformed.error.message == crate::messages::NOT_STRATUM =>
                {
                    // Every call waiting (the handshake) fails with why, not with
                    // a bare "closed".
                    let waiters = std::mem::take(
                        &mut reader_pending
                            .lock()
                            .expect("pending map lock is never poisoned")
                            .waiters,
                    );
                    for (_, w) in waiters {
                        let _ = w.send(Err(malformed.error.clone()));
                    }
                    break crate::messages::NOT_STRATUM.to_owned();
                }
                Some(Ok(Err(malformed))) => {
                    // The pool sent a line we cannot read; nothing to answer it with.
                    tracing::warn!(error = %malformed.error, "unreadable line from pool");
                }
                Some(Ok(Ok(ToMiner::Notification(n)))) => {
                    if note_tx.send(n).await.is_err() {
                        break "notification receiver dropped".to_owned();
                    }
                }
                Some(Ok(Ok(ToMiner::Response(r)))) => {
                    let waiter = match r.id {
                        Some(Id::Num(n)) => reader_pending
                            .lock()
                            .expect("pending map lock is never poisoned")
                            .waiters
                            .remove(&n),
                        _ => None,
                    };
                    match waiter {
                        Some(w) => {
                            let _ = w.send(r.outcome);
                        }
                        None => {
                            tracing::warn!(id = ?r.id, outcome = ?r.outcome, "response to no pending call")
                        }
                    }
                }
            }
        };
        // Dropping the waiters answers every pending call with Disconnected.
        {
            let mut p = reader_pending
                .lock()
                .expect("pending map lock is never poisoned");
            p.closed = true;
            p.waiters.clear();
        }
        let _ = closed_tx.send(why);
    });

    (
        Client {
            tx,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
        },
        note_rx,
        closed_rx,
    )
}

impl Client {
    /// Sends `call` and waits for its result, decoded as `R`.
    pub async fn call<R: DeserializeOwned>(&self, call: Call) -> Result<R, ClientError> {
        let method = call.method();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self
                .pending
                .lock()
                .expect("pending map lock is never poisoned");
            if p.closed {
                return Err(ClientError::Disconnected);
            }
            p.waiters.insert(id, tx);
        }
        if self
            .tx
            .send(ToPool {
                id: Id::Num(id),
                call,
            })
            .await
            .is_err()
        {
            self.pending
                .lock()
                .expect("pending map lock is never poisoned")
                .waiters
                .remove(&id);
            return Err(ClientError::Disconnected);
        }
        match rx.await {
            Err(_) => Err(ClientError::Disconnected),
            Ok(Err(error)) => Err(ClientError::Rpc { method, error }),
            Ok(Ok(v)) => serde_json::from_value(v).map_err(|e| ClientError::BadResult {
                method,
                detail: e.to_string(),
            }),
        }
    }

    pub async fn subscribe(&self, s: Subscribe) -> Result<SubscribeResult, ClientError> {
        self.call(Call::Subscribe(s)).await
    }

    pub async fn authorize(&self, a: Authorize) -> Result<AuthorizeResult, ClientError> {
        self.call(Call::Authorize(a)).await
    }

    pub async fn submit(&self, s: Submit) -> Result<SubmitResult, ClientError> {
        self.call(Call::Submit(s)).await
    }

    pub async fn progress(&self, p: Progress) -> Result<ProgressResult, ClientError> {
        self.call(Call::Progress(p)).await
    }

    pub async fn ping(&self) -> Result<PingResult, ClientError> {
        self.call(Call::Ping(Ping {})).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A scripted pool on a duplex pipe: answers a ping, then pushes a notification.
    #[tokio::test]
    async fn calls_are_matched_to_responses_and_notifications_flow() {
        let (ours, theirs) = tokio::io::duplex(4096);
        let (client, mut notes, closed) = start(ours, 4096);
        let pool = tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(theirs);
            let mut lines = BufReader::new(r).lines();
            let line = lines.next_line().await.unwrap().unwrap();
            let req = ToPool::from_line(&line).unwrap();
            assert_eq!(req.call, Call::Ping(Ping {}));
            let resp = ToMiner::Response(Response::ok(req.id, &PingResult { time_ms: 5 }));
            let note = ToMiner::Notification(Notification::SetTarget(SetTarget {
                target_task_ms: 2500,
            }));
            w.write_all(format!("{}\n{}\n", note.to_line(), resp.to_line()).as_bytes())
                .await
                .unwrap();
        });
        assert_eq!(client.ping().await.unwrap(), PingResult { time_ms: 5 });
        assert_eq!(
            notes.recv().await.unwrap(),
            Notification::SetTarget(SetTarget {
                target_task_ms: 2500
            })
        );
        pool.await.unwrap();
        assert_eq!(closed.await.unwrap(), "pool closed the connection");
        assert_eq!(client.ping().await, Err(ClientError::Disconnected));
    }
}
