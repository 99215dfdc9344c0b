//! A session's handshake and admission, as state machines with no I/O and no
//! clock (every call takes `now`), tested like the scheduler: which connections
//! are admitted ([`Caps`]), `mining.subscribe` then `mining.authorize` (worker
//! name, worker token, bans) and the deadlines that close a silent connection
//! ([`Handshake`]).
//!
//! Not here: reading and writing lines (`session`), looking up a worker's token
//! or bans (the caller does, and passes the answers in).

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use stratum::{
    Authorize, AuthorizeResult, ErrorCode, RpcError, Subscribe, SubscribeResult, Worker,
    PROTOCOL_VERSION,
};

/// Who an authorized session is: the worker name it gave, the address it came
/// from, and whether it proved the name is its own (the account's worker token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub worker: Worker,
    pub ip: IpAddr,
    pub verified: bool,
}

impl Authorized {
    /// The account (the worker name before its dot).
    pub fn account(&self) -> &str {
        self.worker.account()
    }

    /// What the session's failures count against: its account when it proved
    /// it, else its address (a name anyone can type counts for nothing).
    pub fn identity(&self) -> String {
        if self.verified {
            format!("account:{}", self.account())
        } else {
            format!("ip:{}", self.ip)
        }
    }

    /// The account the session proved, if any.
    pub fn proven_account(&self) -> Option<String> {
        self.verified.then(|| self.account().to_owned())
    }
}

/// What a `mining.authorize` password says about the worker's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The account has a worker token and this is it: the session is the account.
    Verified,
    /// The account has no token and the pool does not require one: anyone may
    /// use the name, so the session is only its address.
    Open,
    /// The account needs a token and none was given.
    Missing,
    /// A token was given and it is not the account's.
    Wrong,
    /// The token store could not be read: refused.
    Fault,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The miner closed the connection.
    Closed,
    /// Authorized, then silent for the idle timeout.
    Idle,
    /// Not subscribed and authorized in time.
    HandshakeTimeout,
    /// A line over the limit.
    LineTooLong,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// The connection failed under a read.
    ReadFailed,
    /// A write failed or timed out (the miner reads nothing).
    WriteFailed,
    /// Banned for invalid work: its leases are not kept for it.
    Banned,
    /// The pool is shutting down (miners are told to reconnect).
    Shutdown,
}

impl Exit {
    pub fn as_str(self) -> &'static str {
        match self {
            Exit::Closed => "closed by miner",
            Exit::Idle => "idle timeout",
            Exit::HandshakeTimeout => "handshake timeout",
            Exit::LineTooLong => "line too long",
            Exit::NotUtf8 => "not utf-8",
            Exit::ReadFailed => "read failed",
            Exit::WriteFailed => "write failed",
            Exit::Banned => "banned",
            Exit::Shutdown => "pool shutting down",
        }
    }

    /// Whether the session's leases wait for the rig to resume them.
    pub fn resumable(self) -> bool {
        !matches!(self, Exit::Banned | Exit::Shutdown)
    }
}

/// The handshake's settings (from `[stratum]`).
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    pub max_line: usize,
    pub ping_interval: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub resume_grace: Duration,
}

/// Where a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    New,
    Subscribed {
        /// Circuits the rig named (ids or names); empty: every one.
        circuits: Vec<String>,
        /// The token of the session this one resumes, if any.
        resume: Option<String>,
    },
    Authorized(Authorized),
}

/// One connection's handshake.
#[derive(Debug)]
pub struct Handshake {
    phase: Phase,
    deadline: Instant,
    session: u64,
    /// This session's resume token.
    token: String,
    cfg: HandshakeConfig,
}

fn err(code: ErrorCode, message: impl Into<String>) -> RpcError {
    RpcError::new(code, message)
}

impl Handshake {
    pub fn new(session: u64, token: String, cfg: HandshakeConfig, now: Instant) -> Self {
        Handshake {
            phase: Phase::New,
            deadline: now + cfg.handshake_timeout,
            session,
            token,
            cfg,
        }
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// This session's resume token (given at subscribe).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn authorized(&self) -> Option<&Authorized> {
        match &self.phase {
            Phase::Authorized(a) => Some(a),
            _ => None,
        }
    }

    /// When the connection is closed unless something arrives.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The deadline passed: why the session ends.
    pub fn timed_out(&self) -> Exit {
        match self.phase {
            Phase::Authorized(_) => Exit::Idle,
            _ => Exit::HandshakeTimeout,
        }
    }

    /// A line arrived: an authorized session's idle timer starts again.
    pub fn heard(&mut self, now: Instant) {
        if let Phase::Authorized(_) = self.phase {
            self.deadline = now + self.cfg.idle_timeout;
        }
    }

    /// `mining.subscribe`.
    pub fn subscribe(&mut self, s: Subscribe, now: Instant) -> Result<SubscribeResult, RpcError> {
        if self.phase != Phase::New {
            return Err(err(ErrorCode::Other, "already subscribed"));
        }
        if s.protocol != PROTOCOL_VERSION {
            return Err(err(
                ErrorCode::Other,
                format!(
                    "unsupported protocol {:?}; this pool speaks {PROTOCOL_VERSION}",
                    s.protocol
                ),
            ));
        }
        self.phase = Phase::Subscribed {
            circuits: s.capabilities.circuits,
            resume: s.resume,
        };
        self.deadline = now + self.cfg.handshake_timeout;
        Ok(SubscribeResult {
            session: format!("{:x}", self.session).as_str().into(),
            protocol: PROTOCOL_VERSION.into(),
            max_line: self.cfg.max_line,
            ping_interval_secs: self.cfg.ping_interval.as_secs(),
            idle_timeout_secs: self.cfg.idle_timeout.as_secs(),
            resume: Some(self.token.clone()),
            resume_secs: self.cfg.resume_grace.as_secs(),
        })
    }

    /// `mining.authorize`, first step: the worker name, if this connection may
    /// authorize now. The caller then looks up the name's token and bans.
    pub fn authorize_name(&self, a: &Authorize) -> Result<Worker, RpcError> {
        match self.phase {
            Phase::New => Err(err(
                ErrorCode::NotSubscribed,
                "send mining.subscribe before mining.authorize",
            )),
            Phase::Authorized(_) => Err(err(
                ErrorCode::Other,
                "already authorized; one worker per connection",
            )),
            Phase::Subscribed { .. } => {
                Worker::parse(&a.worker).map_err(|e| err(ErrorCode::Unauthorized, e.to_string()))
            }
        }
    }

    /// `mining.authorize`, second step: with what the worker's token and the ban
    /// table say. `ban` is asked about the session it would be.
    pub fn authorize(
        &mut self,
        worker: &Worker,
        ip: IpAddr,
        token: TokenCheck,
        ban: impl FnOnce(&Authorized) -> Option<String>,
        now: Instant,
    ) -> Result<(AuthorizeResult, &Authorized), RpcError> {
        let addr = worker.account();
        let who = match token {
            TokenCheck::Missing => return Err(err(
                ErrorCode::Unauthorized,
                format!("account {addr} needs its worker token as the password (zkminer --password TOKEN); the operator issues it with `zkpool workers token {addr}`"),
            )),
            TokenCheck::Wrong => return Err(err(
                ErrorCode::Unauthorized,
                format!("the password is not account {addr}'s worker token: check --password (a new `zkpool workers token {addr}` replaces the old token)"),
            )),
            TokenCheck::Fault => return Err(err(
                ErrorCode::Internal,
                "the pool cannot check worker tokens right now; try again shortly",
            )),
            TokenCheck::Verified | TokenCheck::Open => Authorized {
                worker: worker.clone(),
                ip,
                verified: token == TokenCheck::Verified,
            },
        };
        if let Some(banned) = ban(&who) {
            return Err(err(ErrorCode::Banned, banned));
        }
        self.phase = Phase::Authorized(who);
        self.deadline = now + self.cfg.idle_timeout;
        let who = self.authorized().expect("authorized just above");
        Ok((
            AuthorizeResult {
                worker: worker.to_string(),
            },
            who,
        ))
    }

    /// The refusal for a call that needs an authorized session, if this is not one.
    pub fn require_authorized(&self) -> Result<&Authorized, RpcError> {
        match &self.phase {
            Phase::Authorized(a) => Ok(a),
            Phase::New => Err(err(ErrorCode::NotSubscribed, "send mining.subscribe first")),
            Phase::Subscribed { .. } => {
                Err(err(ErrorCode::Unauthorized, "send mining.authorize first"))
            }
        }
    }

    /// The circuits and resume token the rig gave at subscribe.
    pub fn subscribed(&self) -> Option<(&[String], Option<&str>)> {
        match &self.phase {
            Phase::Subscribed { circuits, resume } => Some((circuits, resume.as_deref())),
            _ => None,
        }
    }
}

/// Connection caps (from `[stratum]` and `[limits]`): sessions overall, sessions
/// per address, and connections per address still in their handshake.
#[derive(Debug)]
pub struct Caps {
    max_sessions: usize,
    per_ip: usize,
    handshakes_per_ip: usize,
    sessions: usize,
    by_ip: HashMap<IpAddr, usize>,
    handshaking: HashMap<IpAddr, usize>,
}

/// Why a connection was refused; the message is sent to it before it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("pool is full ({0} sessions); try again later")]
    Full(usize),
    #[error(
        "too many sessions from {0} (at most {1} per address); close some or ask the operator"
    )]
    PerIp(IpAddr, usize),
    #[error("too many connections from {0} still in their handshake (at most {1}); authorize the open ones first")]
    Handshakes(IpAddr, usize),
}

impl Caps {
    pub fn new(max_sessions: usize, per_ip: usize, handshakes_per_ip: usize) -> Self {
        Caps {
            max_sessions,
            per_ip,
            handshakes_per_ip,
            sessions: 0,
            by_ip: HashMap::new(),
            handshaking: HashMap::new(),
        }
    }

    /// A new connection from `ip`: admitted (and counted) or refused.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        if self.sessions >= self.max_sessions {
            return Err(Refusal::Full(self.max_sessions));
        }
        if self.by_ip.get(&ip).copied().unwrap_or(0) >= self.per_ip {
            return Err(Refusal::PerIp(ip, self.per_ip));
        }
        if self.handshaking.get(&ip).copied().unwrap_or(0) >= self.handshakes_per_ip {
            return Err(Refusal::Handshakes(ip, self.handshakes_per_ip));
        }
        self.sessions += 1;
        *self.by_ip.entry(ip).or_default() += 1;
        *self.handshaking.entry(ip).or_default() += 1;
        Ok(())
    }

    /// A connection from `ip` authorized: it leaves the handshake count.
    pub fn authorized(&mut self, ip: IpAddr) {
        dec(&mut self.handshaking, ip);
    }

    /// A connection from `ip` closed (`authorized`: whether it had authorized).
    pub fn closed(&mut self, ip: IpAddr, authorized: bool) {
        self.sessions = self.sessions.saturating_sub(1);
        dec(&mut self.by_ip, ip);
        if !authorized {
            dec(&mut self.handshaking, ip);
        }
    }
}

/// Counts down, forgetting an address at zero (the maps hold only live ones).
fn dec(m: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = m.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            m.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HandshakeConfig {
        HandshakeConfig {
            max_line: 65536,
            ping_interval: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            resume_grace: Duration::from_secs(10),
        }
    }

    fn subscribe(protocol: &str) -> Subscribe {
        serde_json::from_value(serde_json::json!({"agent": "t", "protocol": protocol})).unwrap()
    }

    fn authorize(worker: &str) -> Authorize {
        Authorize {
            worker: worker.into(),
            password: None,
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn code(e: &RpcError) -> Option<ErrorCode> {
        e.kind()
    }

    #[test]
    fn subscribe_then_authorize_with_deadlines() {
        let t0 = Instant::now();
        let mut h = Handshake::new(7, "tok".into(), cfg(), t0);
        assert_eq!(h.deadline(), t0 + Duration::from_secs(10));
        assert_eq!(h.timed_out(), Exit::HandshakeTimeout);
        // Nothing but subscribe works first.
        let e = h.authorize_name(&authorize("alice.rig1")).unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::NotSubscribed));
        let e = h.require_authorized().unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::NotSubscribed));
        let e = h.subscribe(subscribe("zkpool/0"), t0).unwrap_err();
        assert!(e.message.contains("unsupported protocol"), "{e:?}");

        let t1 = t0 + Duration::from_secs(3);
        let r = h.subscribe(subscribe(PROTOCOL_VERSION), t1).unwrap();
        assert_eq!(
            (r.session.0.as_str(), r.resume.as_deref()),
            ("7", Some("tok"))
        );
        assert_eq!(
            h.deadline(),
            t1 + Duration::from_secs(10),
            "another 10 s to authorize"
        );
        assert!(h.subscribe(subscribe(PROTOCOL_VERSION), t1).is_err());
        let e = h.require_authorized().unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::Unauthorized));
        // A name that is not ADDR.RIG.
        let e = h.authorize_name(&authorize("no-dot")).unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::Unauthorized));

        let w = h.authorize_name(&authorize("alice.rig1")).unwrap();
        let t2 = t1 + Duration::from_secs(1);
        let (r, who) = h.authorize(&w, IP, TokenCheck::Open, |_| None, t2).unwrap();
        assert_eq!(r.worker, "alice.rig1");
        assert_eq!(
            who.identity(),
            "ip:10.0.0.1",
            "a name without a token is its address"
        );
        assert_eq!(h.deadline(), t2 + Duration::from_secs(120));
        assert_eq!(h.timed_out(), Exit::Idle);
        h.heard(t2 + Duration::from_secs(60));
        assert_eq!(h.deadline(), t2 + Duration::from_secs(180));
        let e = h.authorize_name(&authorize("bob.rig1")).unwrap_err();
        assert!(e.message.contains("already authorized"), "{e:?}");
    }

    #[test]
    fn tokens_and_bans_decide_authorize() {
        let t0 = Instant::now();
        let new = || {
            let mut h = Handshake::new(1, "t".into(), cfg(), t0);
            h.subscribe(subscribe(PROTOCOL_VERSION), t0).unwrap();
            h
        };
        let w = Worker::parse("alice.rig1").unwrap();
        for (check, expected, says) in [
            (
                TokenCheck::Missing,
                ErrorCode::Unauthorized,
                "needs its worker token",
            ),
            (
                TokenCheck::Wrong,
                ErrorCode::Unauthorized,
                "is not account alice's worker token",
            ),
            (
                TokenCheck::Fault,
                ErrorCode::Internal,
                "cannot check worker tokens",
            ),
        ] {
            let mut h = new();
            let e = h.authorize(&w, IP, check, |_| None, t0).unwrap_err();
            assert_eq!(code(&e), Some(expected));
            assert!(e.message.contains(says), "{check:?}: {e:?}");
            assert!(h.authorized().is_none());
        }
        // With its token the session is the account; a ban on it refuses.
        let mut h = new();
        let (_, who) = h
            .authorize(&w, IP, TokenCheck::Verified, |_| None, t0)
            .unwrap();
        assert_eq!(who.identity(), "account:alice");
        assert_eq!(who.proven_account().as_deref(), Some("alice"));
        let mut h = new();
        let e = h
            .authorize(
                &w,
                IP,
                TokenCheck::Verified,
                |who| {
                    who.verified
                        .then(|| "worker:alice.rig1 is banned".to_owned())
                },
                t0,
            )
            .unwrap_err();
        assert_eq!(code(&e), Some(ErrorCode::Banned));
        assert!(h.authorized().is_none());
    }

    #[test]
    fn caps_count_sessions_addresses_and_handshakes() {
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut c = Caps::new(3, 2, 1);
        c.admit(IP).unwrap();
        assert_eq!(c.admit(IP), Err(Refusal::Handshakes(IP, 1)));
        c.authorized(IP);
        c.admit(IP).unwrap();
        assert_eq!(c.admit(IP), Err(Refusal::PerIp(IP, 2)));
        c.admit(other).unwrap();
        assert_eq!(c.admit("10.0.0.3".parse().unwrap()), Err(Refusal::Full(3)));
        // Closing gives every place back, the handshake's too.
        c.closed(IP, false);
        c.admit(IP).unwrap();
        assert!(c.admit(IP).is_err());
        c.closed(IP, true);
        c.closed(IP, false);
        c.closed(other, false);
        assert!(
            c.by_ip.is_empty() && c.handshaking.is_empty() && c.sessions == 0,
            "{c:?}"
        );
        assert!(Refusal::Full(3).to_string().contains("pool is full"));
    }
}
