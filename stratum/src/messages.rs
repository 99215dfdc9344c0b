//! Every method of `zkpool/1` as a typed message, and the line encodings of the
//! two directions.
//!
//! - miner -> pool: requests (with an `id`): `mining.subscribe`, `mining.authorize`,
//!   `mining.submit`, `mining.progress`, `mining.ping`.
//! - pool -> miner: responses to those, and notifications (no `id`):
//!   `mining.notify`, `mining.set_target`, `mining.cancel`, `client.reconnect`.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};

use crate::types::*;

// ---- miner -> pool ------------------------------------------------------------

/// `mining.subscribe`: open a session and say what the rig can do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// Software and version, e.g. `zkminer/0.1.0`.
    pub agent: String,
    /// Must be `zkpool/1`.
    pub protocol: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// The `resume` token of a previous session of this rig: after `mining.authorize`
    /// as the same worker, that session's leased tasks are this one's (and are
    /// notified again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

/// What a rig can prove and with what.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Prover backends, e.g. `["arkworks"]`.
    #[serde(default)]
    pub backends: Vec<String>,
    /// Circuit kinds (`chain`, `preimage`) or circuit ids the rig can prove; empty means every built-in kind.
    #[serde(default)]
    pub circuits: Vec<String>,
    /// Proving threads.
    #[serde(default)]
    pub threads: u32,
}

/// `mining.authorize`: name the worker (`ADDR.RIG`) the session's work is credited to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorize {
    pub worker: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// One proof in a submit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmittedProof {
    /// The statement's index within the job.
    pub index: u64,
    /// Hex of the arkworks-compressed proof (128 bytes).
    pub proof: String,
}

/// `mining.submit`: proofs for every statement of a task, in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submit {
    pub task: TaskId,
    pub proofs: Vec<SubmittedProof>,
}

/// `mining.progress`: statements of a task proven so far; renews the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    pub task: TaskId,
    pub done: u32,
}

/// `mining.ping`: keepalive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {}

/// A miner's request.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Subscribe(Subscribe),
    Authorize(Authorize),
    Submit(Submit),
    Progress(Progress),
    Ping(Ping),
}

impl Call {
    pub fn method(&self) -> &'static str {
        match self {
            Call::Subscribe(_) => "mining.subscribe",
            Call::Authorize(_) => "mining.authorize",
            Call::Submit(_) => "mining.submit",
            Call::Progress(_) => "mining.progress",
            Call::Ping(_) => "mining.ping",
        }
    }

    /// Writes the request line (no newline), its params serialised in place.
    fn write<W: std::io::Write>(&self, id: &Id, w: W) -> serde_json::Result<()> {
        let method = self.method();
        match self {
            Call::Subscribe(p) => request(w, id, method, p),
            Call::Authorize(p) => request(w, id, method, p),
            Call::Submit(p) => request(w, id, method, p),
            Call::Progress(p) => request(w, id, method, p),
            Call::Ping(p) => request(w, id, method, p),
        }
    }
}

/// Results of the requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeResult {
    pub session: SessionId,
    pub protocol: String,
    /// The longest line the pool accepts, newline excluded.
    pub max_line: usize,
    /// Send `mining.ping` (or anything) at least this often; silence for the idle timeout closes the session.
    pub ping_interval_secs: u64,
    pub idle_timeout_secs: u64,
    /// A secret token: give it as `resume` when reconnecting, within
    /// `resume_secs`, to keep this session's leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    #[serde(default)]
    pub resume_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizeResult {
    pub worker: String,
}

/// The answer to an accepted submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitResult {
    /// Proofs verified and credited.
    pub accepted: u32,
    /// Work credited: constraints per proof x proofs.
    pub work: u64,
    /// The pool's signed receipt for the credit (see PROTOCOL.md, "Receipts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressResult {
    /// Seconds from now until the renewed lease expires.
    pub lease_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingResult {
    /// Pool time, Unix milliseconds.
    pub time_ms: u64,
}

// ---- pool -> miner ------------------------------------------------------------

/// Where to fetch a proving key and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// Hex SHA-256 of the key's bytes; a download that hashes otherwise is refused.
    pub hash: String,
    /// HTTP URL of the key.
    pub url: String,
    pub size: u64,
}

/// One statement of a task. Field elements are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireStatement {
    pub index: u64,
    pub public: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<String>,
    /// circom circuits: the input signals as circom input JSON, from which the
    /// miner computes the witness (`public` holds the signals it must yield).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// `mining.notify`: a task leased to this session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    pub task: TaskId,
    pub job: JobId,
    pub circuit: CircuitId,
    /// The circuit's description, e.g. `{"kind":"chain","steps":64}`.
    pub spec: Value,
    pub key: KeyRef,
    pub statements: Vec<WireStatement>,
    /// Seconds until the lease expires unless renewed by `mining.progress` or a submit.
    pub lease_secs: u64,
    /// Work credited per verified proof (the circuit's constraint count).
    pub work_per_proof: u64,
}

/// `mining.set_target`: how long the pool wants a task to take on this rig.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTarget {
    /// Milliseconds a task should take on this rig.
    pub target_task_ms: u64,
}

/// `mining.cancel`: stop work on these tasks; proofs for them will not be credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    pub tasks: Vec<TaskId>,
    pub reason: String,
}

/// `client.reconnect`: the pool is going away; reconnect after `wait_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reconnect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub wait_secs: u64,
}

/// A pool notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    Notify(Notify),
    SetTarget(SetTarget),
    Cancel(Cancel),
    Reconnect(Reconnect),
}

impl Notification {
    pub fn method(&self) -> &'static str {
        match self {
            Notification::Notify(_) => "mining.notify",
            Notification::SetTarget(_) => "mining.set_target",
            Notification::Cancel(_) => "mining.cancel",
            Notification::Reconnect(_) => "client.reconnect",
        }
    }

    /// Writes the notification line (no newline), its params serialised in place.
    fn write<W: std::io::Write>(&self, w: W) -> serde_json::Result<()> {
        let method = self.method();
        match self {
            Notification::Notify(p) => notification(w, method, p),
            Notification::SetTarget(p) => notification(w, method, p),
            Notification::Cancel(p) => notification(w, method, p),
            Notification::Reconnect(p) => notification(w, method, p),
        }
    }
}

/// A response to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// `None` only for an answer to a line whose id could not be read.
    pub id: Option<Id>,
    pub outcome: Result<Value, RpcError>,
}

impl Response {
    pub fn ok<T: Serialize>(id: Id, result: &T) -> Self {
        Response {
            id: Some(id),
            outcome: Ok(serde_json::to_value(result).expect("results serialise to JSON")),
        }
    }

    pub fn err(id: Option<Id>, error: RpcError) -> Self {
        Response {
            id,
            outcome: Err(error),
        }
    }
}

// ---- the two directions -------------------------------------------------------

/// What a miner sends: a request.
#[derive(Debug, Clone, PartialEq)]
pub struct ToPool {
    pub id: Id,
    pub call: Call,
}

/// What a pool sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ToMiner {
    Response(Response),
    Notification(Notification),
}

/// A line that is not a valid message, with what is needed to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    /// The request's id, when it could be read.
    pub id: Option<Id>,
    pub error: RpcError,
}

/// Encoding to and decoding from one line (without its newline).
/// Why a line from the "pool" is refused when it is an HTTP response: the miner
/// was pointed at the pool's HTTP port.
pub const NOT_STRATUM: &str = "this address answers in HTTP: it is the pool's HTTP port (the API and dashboard), not its stratum port; use the stratum+tcp://HOST:PORT the pool prints when it starts (port 3333 by default)";

pub trait Wire: Sized {
    /// Writes the line, without its newline, straight into `w`: no intermediate
    /// JSON tree (a `mining.notify` is encoded once per leased task, 10,000 of
    /// them in a burst).
    fn write_line<W: std::io::Write>(&self, w: W) -> std::io::Result<()>;
    fn from_line(line: &str) -> Result<Self, Malformed>;

    fn to_line(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_line(&mut out)
            .expect("writing to a Vec cannot fail and messages serialise to JSON");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

/// The three JSON-RPC 2.0 envelopes of outgoing lines, borrowing their parts and
/// written in this field order.
#[derive(Serialize)]
struct RequestLine<'a, P: Serialize> {
    jsonrpc: &'static str,
    id: &'a Id,
    method: &'static str,
    params: &'a P,
}

#[derive(Serialize)]
struct NotificationLine<'a, P: Serialize> {
    jsonrpc: &'static str,
    method: &'static str,
    params: &'a P,
}

/// `id` is written even when absent (`null`): the answer to a line whose id could
/// not be read.
#[derive(Serialize)]
struct ResponseLine<'a> {
    jsonrpc: &'static str,
    id: &'a Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a RpcError>,
}

fn request<P: Serialize, W: std::io::Write>(
    w: W,
    id: &Id,
    method: &'static str,
    params: &P,
) -> serde_json::Result<()> {
    serde_json::to_writer(
        w,
        &RequestLine {
            jsonrpc: "2.0",
            id,
            method,
            params,
        },
    )
}

fn notification<P: Serialize, W: std::io::Write>(
    w: W,
    method: &'static str,
    params: &P,
) -> serde_json::Result<()> {
    serde_json::to_writer(
        w,
        &NotificationLine {
            jsonrpc: "2.0",
            method,
            params,
        },
    )
}

#[derive(Deserialize)]
struct RawMessage {
    jsonrpc: Option<String>,
    #[serde(default)]
    id: Option<Value>,
    method: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

fn parse_raw(line: &str) -> Result<RawMessage, Malformed> {
    let value: Value = serde_json::from_str(line).map_err(|e| Malformed {
        id: None,
        error: RpcError::new(
            ErrorCode::ParseError,
            format!("parse error: {e}; each line must be one JSON-RPC 2.0 object"),
        ),
    })?;
    let id = value
        .get("id")
        .and_then(|v| serde_json::from_value::<Id>(v.clone()).ok());
    let raw: RawMessage = serde_json::from_value(value).map_err(|e| Malformed {
        id: id.clone(),
        error: RpcError::new(ErrorCode::InvalidRequest, format!("invalid request: {e}")),
    })?;
    if raw.jsonrpc.as_deref() != Some("2.0") {
        return Err(Malformed {
            id,
            error: RpcError::new(
                ErrorCode::InvalidRequest,
                "invalid request: \"jsonrpc\" must be \"2.0\"",
            ),
        });
    }
    Ok(raw)
}

fn read_id(raw: &RawMessage) -> Result<Option<Id>, Malformed> {
    match &raw.id {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value::<Id>(v.clone())
            .map(Some)
            .map_err(|_| Malformed {
                id: None,
                error: RpcError::new(
                    ErrorCode::InvalidRequest,
                    "invalid request: \"id\" must be a non-negative integer or a string",
                ),
            }),
    }
}

fn params<T: DeserializeOwned>(
    id: &Option<Id>,
    method: &str,
    p: Option<Value>,
) -> Result<T, Malformed> {
    let p = match p {
        None | Some(Value::Null) => json!({}),
        Some(p) => p,
    };
    serde_json::from_value(p).map_err(|e| Malformed {
        id: id.clone(),
        error: RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {method}: {e}"),
        ),
    })
}

impl Wire for ToPool {
    fn write_line<W: std::io::Write>(&self, w: W) -> std::io::Result<()> {
        Ok(self.call.write(&self.id, w)?)
    }

    fn from_line(line: &str) -> Result<Self, Malformed> {
        let raw = parse_raw(line)?;
        let id = read_id(&raw)?;
        let Some(method) = raw.method.as_deref() else {
            return Err(Malformed {
                id,
                error: RpcError::new(ErrorCode::InvalidRequest, "invalid request: no \"method\""),
            });
        };
        let Some(req_id) = id.clone() else {
            return Err(Malformed {
                id: None,
                error: RpcError::new(
                    ErrorCode::InvalidRequest,
                    format!("invalid request: {method} needs an \"id\""),
                ),
            });
        };
        let call = match method {
            "mining.subscribe" => Call::Subscribe(params(&id, method, raw.params)?),
            "mining.authorize" => Call::Authorize(params(&id, method, raw.params)?),
            "mining.submit" => Call::Submit(params(&id, method, raw.params)?),
            "mining.progress" => Call::Progress(params(&id, method, raw.params)?),
            "mining.ping" => Call::Ping(params(&id, method, raw.params)?),
            other => {
                return Err(Malformed {
                    id,
                    error: RpcError::new(
                        ErrorCode::MethodNotFound,
                        format!("method not found: {other:?}"),
                    ),
                })
            }
        };
        Ok(ToPool { id: req_id, call })
    }
}

impl Wire for ToMiner {
    fn write_line<W: std::io::Write>(&self, w: W) -> std::io::Result<()> {
        Ok(match self {
            ToMiner::Response(Response { id, outcome }) => serde_json::to_writer(
                w,
                &ResponseLine {
                    jsonrpc: "2.0",
                    id,
                    result: outcome.as_ref().ok(),
                    error: outcome.as_ref().err(),
                },
            ),
            ToMiner::Notification(n) => n.write(w),
        }?)
    }

    fn from_line(line: &str) -> Result<Self, Malformed> {
        if line.starts_with("HTTP/") {
            // A miner pointed at the pool's HTTP port: its answer to our JSON.
            return Err(Malformed {
                id: None,
                error: RpcError::new(ErrorCode::InvalidRequest, NOT_STRATUM),
            });
        }
        let raw = parse_raw(line)?;
        let id = read_id(&raw)?;
        if let Some(method) = raw.method.as_deref() {
            let n = match method {
                "mining.notify" => Notification::Notify(params(&id, method, raw.params)?),
                "mining.set_target" => Notification::SetTarget(params(&id, method, raw.params)?),
                "mining.cancel" => Notification::Cancel(params(&id, method, raw.params)?),
                "client.reconnect" => Notification::Reconnect(params(&id, method, raw.params)?),
                other => {
                    return Err(Malformed {
                        id,
                        error: RpcError::new(
                            ErrorCode::MethodNotFound,
                            format!("unknown notification {other:?}"),
                        ),
                    })
                }
            };
            return Ok(ToMiner::Notification(n));
        }
        let outcome = match (raw.result, raw.error) {
            (_, Some(e)) => Err(e),
            (Some(r), None) => Ok(r),
            (None, None) => Ok(Value::Null),
        };
        Ok(ToMiner::Response(Response { id, outcome }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_answer_is_named_as_one() {
        let e = ToMiner::from_line("HTTP/1.1 400 Bad Request\r").unwrap_err();
        assert_eq!(e.error.message, NOT_STRATUM);
    }
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ._\\-\"\\\\\u{e9}\u{1F600}]{0,24}"
    }

    fn id() -> impl Strategy<Value = Id> {
        prop_oneof![any::<u64>().prop_map(Id::Num), text().prop_map(Id::Str)]
    }

    fn call() -> impl Strategy<Value = Call> {
        prop_oneof![
            (
                text(),
                text(),
                proptest::collection::vec(text(), 0..3),
                proptest::collection::vec(text(), 0..3),
                any::<u32>()
            )
                .prop_map(|(agent, protocol, backends, circuits, threads)| {
                    Call::Subscribe(Subscribe {
                        agent,
                        protocol,
                        capabilities: Capabilities {
                            backends,
                            circuits,
                            threads,
                        },
                        resume: None,
                    })
                }),
            (text(), proptest::option::of(text()))
                .prop_map(|(worker, password)| Call::Authorize(Authorize { worker, password })),
            (
                text(),
                proptest::collection::vec((any::<u64>(), "[0-9a-f]{0,256}"), 0..8)
            )
                .prop_map(|(t, ps)| Call::Submit(Submit {
                    task: TaskId(t),
                    proofs: ps
                        .into_iter()
                        .map(|(index, proof)| SubmittedProof { index, proof })
                        .collect()
                })),
            (text(), any::<u32>()).prop_map(|(t, done)| Call::Progress(Progress {
                task: TaskId(t),
                done
            })),
            Just(Call::Ping(Ping {})),
        ]
    }

    fn statement() -> impl Strategy<Value = WireStatement> {
        (
            any::<u64>(),
            proptest::collection::vec("[0-9]{1,77}", 0..4),
            proptest::collection::vec("[0-9]{1,77}", 0..2),
        )
            .prop_map(|(index, public, private)| WireStatement {
                input: None,
                index,
                public,
                private,
            })
    }

    fn notification() -> impl Strategy<Value = Notification> {
        prop_oneof![
            (
                text(),
                text(),
                "[0-9a-f]{64}",
                proptest::collection::vec(statement(), 0..5),
                any::<u64>(),
                any::<u64>(),
                any::<u32>()
            )
                .prop_map(
                    |(t, j, c, statements, lease_secs, work_per_proof, steps)| Notification::Notify(
                        Notify {
                            task: TaskId(t),
                            job: JobId(j),
                            circuit: CircuitId(c.clone()),
                            spec: json!({"kind": "chain", "steps": steps}),
                            key: KeyRef {
                                hash: c,
                                url: "http://127.0.0.1:1/k".into(),
                                size: lease_secs
                            },
                            statements,
                            lease_secs,
                            work_per_proof,
                        }
                    )
                ),
            any::<u64>()
                .prop_map(|target_task_ms| Notification::SetTarget(SetTarget { target_task_ms })),
            (proptest::collection::vec(text(), 0..4), text()).prop_map(|(ts, reason)| {
                Notification::Cancel(Cancel {
                    tasks: ts.into_iter().map(TaskId).collect(),
                    reason,
                })
            }),
            (
                proptest::option::of(text()),
                proptest::option::of(any::<u16>()),
                any::<u64>()
            )
                .prop_map(|(host, port, wait_secs)| Notification::Reconnect(
                    Reconnect {
                        host,
                        port,
                        wait_secs
                    }
                )),
        ]
    }

    /// The envelope is written field by field, not through a JSON tree: pin what
    /// each kind of line looks like on the wire.
    #[test]
    fn lines_have_json_rpc_envelopes() {
        let req = ToPool {
            id: Id::Num(7),
            call: Call::Ping(Ping {}),
        };
        assert_eq!(
            req.to_line(),
            r#"{"jsonrpc":"2.0","id":7,"method":"mining.ping","params":{}}"#
        );
        let note = ToMiner::Notification(Notification::SetTarget(SetTarget {
            target_task_ms: 30_000,
        }));
        assert_eq!(
            note.to_line(),
            r#"{"jsonrpc":"2.0","method":"mining.set_target","params":{"target_task_ms":30000}}"#
        );
        // An answer to a line whose id could not be read carries "id": null.
        let err = ToMiner::Response(Response::err(
            None,
            RpcError::new(ErrorCode::ParseError, "parse error"),
        ));
        let v: Value = serde_json::from_str(&err.to_line()).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v.get("id").is_some_and(Value::is_null), "{v}");
        assert!(v.get("result").is_none() && v["error"]["message"] == "parse error");
        let ok = ToMiner::Response(Response::ok(Id::Str("a".into()), &json!({"x": 1})));
        assert_eq!(
            ok.to_line(),
            r#"{"jsonrpc":"2.0","id":"a","result":{"x":1}}"#
        );
    }

    proptest! {
        #[test]
        fn requests_round_trip(id in id(), call in call()) {
            let m = ToPool { id, call };
            let line = m.to_line();
            prop_assert!(!line.contains('\n'));
            prop_assert_eq!(ToPool::from_line(&line).unwrap(), m);
        }

        #[test]
        fn notifications_round_trip(n in notification()) {
            let m = ToMiner::Notification(n);
            prop_assert_eq!(ToMiner::from_line(&m.to_line()).unwrap(), m);
        }

        #[test]
        fn responses_round_trip(id in id(), ok in any::<bool>(), code in any::<i32>(), msg in text()) {
            let m = if ok {
                ToMiner::Response(Response::ok(id, &SubmitResult { accepted: 3, work: 42, receipt: None }))
            } else {
                ToMiner::Response(Response::err(Some(id), RpcError::new(ErrorCode::Other, msg).with_code(code)))
            };
            prop_assert_eq!(ToMiner::from_line(&m.to_line()).unwrap(), m);
        }

        /// Any line at all decodes to a message or to a Malformed with an answerable
        /// error; it never panics.
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,300}") {
            let _ = ToPool::from_line(&line);
            let _ = ToMiner::from_line(&line);
        }
    }

    impl RpcError {
        fn with_code(mut self, code: i32) -> Self {
            self.code = code;
            self
        }
    }

    #[test]
    fn malformed_lines_get_the_right_codes_and_keep_their_id() {
        let e = ToPool::from_line("{not json").unwrap_err();
        assert_eq!((e.id, e.error.kind()), (None, Some(ErrorCode::ParseError)));

        let e = ToPool::from_line(r#"{"jsonrpc":"2.0","id":7,"method":"mining.fly","params":{}}"#)
            .unwrap_err();
        assert_eq!(
            (e.id, e.error.kind()),
            (Some(Id::Num(7)), Some(ErrorCode::MethodNotFound))
        );

        let e = ToPool::from_line(
            r#"{"jsonrpc":"2.0","id":"a","method":"mining.submit","params":{"task":1}}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.id, e.error.kind()),
            (Some(Id::Str("a".into())), Some(ErrorCode::InvalidParams))
        );
        assert!(
            e.error.message.contains("mining.submit"),
            "{}",
            e.error.message
        );

        let e = ToPool::from_line(r#"{"id":1,"method":"mining.ping"}"#).unwrap_err();
        assert_eq!(e.error.kind(), Some(ErrorCode::InvalidRequest));
    }

    #[test]
    fn hand_written_example_lines_decode() {
        let line = r#"{"jsonrpc":"2.0","id":1,"method":"mining.subscribe","params":{"agent":"zkminer/0.1.0","protocol":"zkpool/1","capabilities":{"backends":["arkworks"],"circuits":[],"threads":2}}}"#;
        assert!(matches!(
            ToPool::from_line(line).unwrap().call,
            Call::Subscribe(_)
        ));
        let ping = r#"{"jsonrpc":"2.0","id":9,"method":"mining.ping"}"#;
        assert_eq!(ToPool::from_line(ping).unwrap().call, Call::Ping(Ping {}));
    }
}

#[cfg(test)]
mod protocol_md {
    use super::*;

    /// Every example line in PROTOCOL.md (`> ` from the miner, `< ` from the pool)
    /// decodes as the message it claims to be, so the spec cannot drift from the code.
    #[test]
    fn every_example_line_in_protocol_md_decodes() {
        let text = include_str!("../../PROTOCOL.md");
        let (mut to_pool, mut to_miner) = (0, 0);
        for line in text.lines() {
            if let Some(l) = line.strip_prefix("> {") {
                let l = format!("{{{l}");
                if l.starts_with("{this") {
                    assert!(ToPool::from_line(&l).is_err());
                    continue;
                }
                // "...(256 hex digits)" abbreviates a proof; decode the shape anyway.
                ToPool::from_line(&l).unwrap_or_else(|e| panic!("{l}: {e:?}"));
                to_pool += 1;
            } else if let Some(l) = line.strip_prefix("< {") {
                let l = format!("{{{l}");
                ToMiner::from_line(&l).unwrap_or_else(|e| panic!("{l}: {e:?}"));
                to_miner += 1;
            }
        }
        assert!(
            to_pool >= 5 && to_miner >= 9,
            "examples found: {to_pool} to pool, {to_miner} to miner"
        );
    }
}
