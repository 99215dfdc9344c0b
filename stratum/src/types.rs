//! Wire value newtypes and error codes.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Maps keyed by the id are looked up by the `&str` a request carries;
        /// hashing and ordering are the string's, as `Borrow` requires.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        /// Read access as the string it is (storage and logs take `&str`); the
        /// other way needs the type, so a bare string cannot pass for an id.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_newtype!(
    /// A task: one lease of a contiguous slice of a job's statements to one session.
    TaskId
);
string_newtype!(
    /// A job, as the HTTP API names it.
    JobId
);
string_newtype!(
    /// A circuit: the hex SHA-256 of its compressed verifying key.
    CircuitId
);
string_newtype!(
    /// A connection's session, assigned by the pool at subscribe.
    SessionId
);

/// A JSON-RPC request id: a number or a string, echoed in the response.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Num(u64),
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A worker name, `ADDR.RIG`: the payout account, a dot, and a rig label.
/// Equality, hashing and order are the name's (the dot follows from it), so maps
/// keyed by workers are looked up by `&str` too.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Worker {
    name: String,
    dot: usize,
}

impl PartialEq for Worker {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Worker {}

impl std::hash::Hash for Worker {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl PartialOrd for Worker {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Worker {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

impl std::ops::Deref for Worker {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::borrow::Borrow<str> for Worker {
    fn borrow(&self) -> &str {
        &self.name
    }
}

/// Why a worker name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("worker {0:?} is not ADDR.RIG: an account and a rig label of 1-64 characters each from [A-Za-z0-9_-], joined by one dot")]
pub struct BadWorker(pub String);

impl Worker {
    pub fn parse(s: &str) -> Result<Self, BadWorker> {
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        match s.split_once('.') {
            Some((addr, rig)) if ok_part(addr) && ok_part(rig) => Ok(Worker {
                name: s.to_owned(),
                dot: addr.len(),
            }),
            _ => Err(BadWorker(s.chars().take(140).collect())),
        }
    }

    /// The payout account.
    pub fn account(&self) -> &str {
        &self.name[..self.dot]
    }

    /// The rig label.
    pub fn rig(&self) -> &str {
        &self.name[self.dot + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl TryFrom<String> for Worker {
    type Error = BadWorker;
    fn try_from(s: String) -> Result<Self, BadWorker> {
        Worker::parse(&s)
    }
}

impl From<Worker> for String {
    fn from(w: Worker) -> String {
        w.name
    }
}

impl fmt::Display for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Error codes: Stratum's family (20-25), zkpool's proof codes (30-35) and
/// JSON-RPC's own (-32xxx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    /// Anything else; the message says what.
    Other = 20,
    /// The task is unknown, finished, cancelled or its lease expired.
    StaleTask = 21,
    /// This proof was already submitted and credited.
    Duplicate = 22,
    /// The request needs a successful `mining.authorize` first, or the worker is refused.
    Unauthorized = 24,
    /// The request needs `mining.subscribe` first.
    NotSubscribed = 25,
    /// A proof did not verify (or is not a valid encoding of a proof).
    InvalidProof = 30,
    /// The proofs do not match the statements of the task (count or indices).
    WrongStatement = 31,
    /// The circuit is not registered with the pool.
    UnknownCircuit = 32,
    /// The worker or address is banned for repeated invalid work.
    Banned = 33,
    /// The pool is shutting down or over capacity; try again later or elsewhere.
    Busy = 34,
    /// The line is not JSON.
    ParseError = -32700,
    /// The JSON is not a JSON-RPC 2.0 request.
    InvalidRequest = -32600,
    /// No such method.
    MethodNotFound = -32601,
    /// The method's params are missing or wrongly shaped.
    InvalidParams = -32602,
    /// The pool failed internally; the work is not lost, retry.
    Internal = -32603,
}

impl ErrorCode {
    pub fn from_i32(code: i32) -> Option<Self> {
        use ErrorCode::*;
        [
            Other,
            StaleTask,
            Duplicate,
            Unauthorized,
            NotSubscribed,
            InvalidProof,
            WrongStatement,
            UnknownCircuit,
            Banned,
            Busy,
            ParseError,
            InvalidRequest,
            MethodNotFound,
            InvalidParams,
            Internal,
        ]
        .into_iter()
        .find(|c| *c as i32 == code)
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code: code as i32,
            message: message.into(),
            data: None,
        }
    }

    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_i32(self.code)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool keys its maps by these types and looks them up by the `&str` a
    /// request carries: hashing and order must be the string's, or a lookup of a
    /// live task would miss it.
    #[test]
    fn typed_ids_are_found_by_their_string() {
        use std::collections::{BTreeMap, HashMap};
        let w = Worker::parse("alice.rig1").unwrap();
        let by_worker: HashMap<Worker, u32> = [(w.clone(), 7)].into();
        assert_eq!(by_worker.get("alice.rig1"), Some(&7));
        assert_eq!(by_worker.get("alice.rig2"), None);
        let tasks: HashMap<TaskId, u32> = [(TaskId::from("job-1"), 1)].into();
        assert_eq!(tasks.get("job-1"), Some(&1));
        let jobs: BTreeMap<JobId, u32> = [(JobId::from("b"), 2), (JobId::from("a"), 1)].into();
        assert_eq!(jobs.get("a"), Some(&1));
        assert_eq!(
            jobs.keys().map(|j| j.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // A worker serializes as its name and refuses a bad one on the way in.
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"alice.rig1\"");
        assert!(serde_json::from_str::<Worker>("\"no-dot\"").is_err());
        assert_eq!(serde_json::to_string(&JobId::from("j")).unwrap(), "\"j\"");
    }

    #[test]
    fn worker_names() {
        let w = Worker::parse("alice.rig1").unwrap();
        assert_eq!((w.account(), w.rig()), ("alice", "rig1"));
        for bad in ["alice", ".rig", "alice.", "a.b.c", "al ice.rig", "a.b\n"] {
            assert!(Worker::parse(bad).is_err(), "{bad:?}");
        }
    }
}
