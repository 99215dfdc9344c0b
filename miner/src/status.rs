//! What the miner is doing, for its status line and its monitoring API: a plain
//! state machine fed events (connecting, connected, a task started, a proof made,
//! a share answered, the connection lost, a ban) with the time they happened.
//!
//! It does no I/O and reads no clock: every event and every question takes `now`
//! (and, for what is shown as a time of day, the wall-clock time of `now`), so its
//! rates, state transitions and formatting are tested with made-up times. The
//! session and the reconnect loop feed it; [`crate::Stats::monitor`] holds it.

use std::{
    collections::{BTreeSet, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

/// The windows the proving rate is averaged over, as xmrig shows hashrate.
pub const WINDOWS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(15 * 60),
];

/// What the miner is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Opening a connection to the pool and handshaking.
    Connecting,
    /// Connected and authorized, with no task to prove.
    Idle,
    /// Connected and proving a task.
    Proving,
    /// The connection is lost; the next attempt is at `retry_at`.
    Disconnected { retry_at: Instant },
    /// The pool refused this worker for invalid work; it says for how long
    /// (when it does), and the miner waits that long before trying again.
    Banned { until: Option<Instant> },
    /// The connection to one pool is lost and the next pool in the list is tried.
    FailingOver { to: String },
}

impl State {
    /// The state as one word, for the API and for scripts.
    pub fn word(&self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Idle => "idle",
            State::Proving => "proving",
            State::Disconnected { .. } => "disconnected",
            State::Banned { .. } => "banned",
            State::FailingOver { .. } => "failing-over",
        }
    }
}

/// Proofs and work made in one second of the miner's life.
#[derive(Debug, Clone, Copy)]
struct Second {
    /// Whole seconds since the monitor started.
    at: u64,
    proofs: u64,
    work: u64,
}

/// The miner's state and figures. Events are methods named for what happened.
#[derive(Debug)]
pub struct Monitor {
    started: Instant,
    state: State,
    /// The pool connected to (or being connected to).
    pool: Option<String>,
    /// Tasks the prover holds (being proven or waiting for it).
    busy: u32,
    /// Per-second proof and work counts over the longest window, oldest first.
    seconds: VecDeque<Second>,
    proofs: u64,
    work: u64,
    accepted_shares: u64,
    accepted_proofs: u64,
    accepted_work: u64,
    rejected: u64,
    last_submit: Option<Instant>,
    /// Round trip of the last answered submit or ping.
    latency: Option<Duration>,
    last_error: Option<String>,
    /// Hashes of the proving keys loaded in this process.
    keys: BTreeSet<String>,
    /// Time the prover threads stood waiting for a witness.
    witness_wait: Duration,
    /// Tasks whose witnesses were being computed before the prover reached
    /// them (while the previous task's last proof ran).
    witnessed_ahead: u64,
}

impl Monitor {
    pub fn new(now: Instant) -> Self {
        Monitor {
            started: now,
            state: State::Connecting,
            pool: None,
            busy: 0,
            seconds: VecDeque::new(),
            proofs: 0,
            work: 0,
            accepted_shares: 0,
            accepted_proofs: 0,
            accepted_work: 0,
            rejected: 0,
            last_submit: None,
            latency: None,
            last_error: None,
            keys: BTreeSet::new(),
            witness_wait: Duration::ZERO,
            witnessed_ahead: 0,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    // ---- events ------------------------------------------------------------

    /// A connection to `pool` is being opened. After a lost connection to another
    /// pool this is the failover, and stays shown as one until it connects.
    pub fn connecting(&mut self, pool: &str) {
        self.pool = Some(pool.to_owned());
        if !matches!(&self.state, State::FailingOver { to } if to == pool) {
            self.state = State::Connecting;
        }
    }

    /// Handshake done: the pool is ours.
    pub fn connected(&mut self, pool: &str) {
        self.pool = Some(pool.to_owned());
        self.state = if self.busy > 0 {
            State::Proving
        } else {
            State::Idle
        };
    }

    /// The prover took a task.
    pub fn task_started(&mut self) {
        self.busy += 1;
        if self.state == State::Idle {
            self.state = State::Proving;
        }
    }

    /// The prover is done with a task (proven, skipped or abandoned).
    pub fn task_finished(&mut self) {
        self.busy = self.busy.saturating_sub(1);
        if self.busy == 0 && self.state == State::Proving {
            self.state = State::Idle;
        }
    }

    /// The prover waited `d` for a statement's witness before proving it.
    pub fn witness_waited(&mut self, d: Duration) {
        self.witness_wait += d;
    }

    /// The prover reached a task whose witnesses were already being computed.
    pub fn witnessed_ahead(&mut self) {
        self.witnessed_ahead += 1;
    }

    /// A proof of `work` constraints was made.
    pub fn proved(&mut self, work: u64, now: Instant) {
        self.proofs += 1;
        self.work += work;
        let at = self.second(now);
        match self.seconds.back_mut() {
            Some(s) if s.at == at => {
                s.proofs += 1;
                s.work += work;
            }
            _ => self.seconds.push_back(Second {
                at,
                proofs: 1,
                work,
            }),
        }
        let longest = WINDOWS[WINDOWS.len() - 1].as_secs();
        while self.seconds.front().is_some_and(|s| s.at + longest <= at) {
            self.seconds.pop_front();
        }
    }

    /// The pool accepted a share of `proofs` proofs worth `work`, answering
    /// `round_trip` after it was sent.
    pub fn accepted(&mut self, proofs: u64, work: u64, round_trip: Duration, now: Instant) {
        self.accepted_shares += 1;
        self.accepted_proofs += proofs;
        self.accepted_work += work;
        self.last_submit = Some(now);
        self.latency = Some(round_trip);
    }

    /// The pool rejected a share, saying `why`.
    pub fn rejected(&mut self, why: &str, now: Instant) {
        self.rejected += 1;
        self.last_submit = Some(now);
        self.last_error = Some(format!("share rejected: {why}"));
    }

    /// A ping was answered after `round_trip`.
    pub fn pinged(&mut self, round_trip: Duration) {
        self.latency = Some(round_trip);
    }

    /// A proving key (by hash) is loaded and ready.
    pub fn key_loaded(&mut self, hash: &str) {
        self.keys.insert(hash.to_owned());
    }

    /// Something went wrong that the miner carries on from.
    pub fn error(&mut self, what: String) {
        self.last_error = Some(what);
    }

    /// The connection is lost (`why`); the next attempt is `retry_in` from `now`.
    pub fn lost(&mut self, why: &str, retry_in: Duration, now: Instant) {
        self.last_error = Some(why.to_owned());
        self.state = State::Disconnected {
            retry_at: now + retry_in,
        };
    }

    /// The connection is lost (`why`) and the next pool, `to`, is tried at once.
    pub fn failing_over(&mut self, why: &str, to: &str) {
        self.last_error = Some(why.to_owned());
        self.state = State::FailingOver { to: to.to_owned() };
    }

    /// The pool refused this worker as banned (`why`), for `for_` when it said.
    pub fn banned(&mut self, why: &str, for_: Option<Duration>, now: Instant) {
        self.last_error = Some(why.to_owned());
        self.state = State::Banned {
            until: for_.map(|d| now + d),
        };
    }

    // ---- questions ---------------------------------------------------------

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.started).as_secs()
    }

    /// Proofs per second and work per second over the last `window`. A miner up
    /// for less than the window is averaged over its uptime (at least a second),
    /// so a fresh rig shows its speed at once rather than a fraction of it.
    pub fn rate(&self, window: Duration, now: Instant) -> (f64, f64) {
        let at = self.second(now);
        let span = window.as_secs();
        let (proofs, work) = self
            .seconds
            .iter()
            .rev()
            .take_while(|s| s.at + span > at)
            .fold((0, 0), |(p, w), s| (p + s.proofs, w + s.work));
        // The seconds counted run from the start of second `at - span + 1` to
        // `now`: the window less the part of the current second still to come.
        let elapsed = now.saturating_duration_since(self.started);
        let covered = if elapsed >= window {
            window - Duration::from_secs(1)
                + Duration::from_nanos(u64::from(elapsed.subsec_nanos()))
        } else {
            elapsed
        };
        let secs = covered.as_secs_f64().max(1.0);
        (proofs as f64 / secs, work as f64 / secs)
    }

    /// The state as a phrase, with what it waits for.
    pub fn describe(&self, now: Instant, wall: SystemTime) -> String {
        match &self.state {
            State::Connecting => "connecting".to_owned(),
            State::Idle => "connected, idle (no task)".to_owned(),
            State::Proving => "proving".to_owned(),
            State::Disconnected { retry_at } => format!(
                "disconnected (retrying in {})",
                secs(round_up(retry_at.saturating_duration_since(now)))
            ),
            State::Banned { until: Some(until) } => format!(
                "banned (until {})",
                time_of_day(wall + until.saturating_duration_since(now))
            ),
            State::Banned { until: None } => "banned".to_owned(),
            State::FailingOver { to } => format!("failing over to {to}"),
        }
    }

    /// The status line: time, state, pool, uptime, rates over 10 s / 60 s / 15 min,
    /// shares, latency and the last submit. With `colour` (a terminal, and no
    /// `NO_COLOR`), the state is green when proving, yellow when idle or
    /// connecting and red otherwise, and rejections are red when there are any.
    pub fn status_line(
        &self,
        worker: &str,
        now: Instant,
        wall: SystemTime,
        colour: bool,
    ) -> String {
        let paint = |code: &str, text: String| {
            if colour {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text
            }
        };
        let state_colour = match self.state {
            State::Proving => "1;32",
            State::Idle | State::Connecting | State::FailingOver { .. } => "1;33",
            State::Disconnected { .. } | State::Banned { .. } => "1;31",
        };
        let rates: Vec<(f64, f64)> = WINDOWS.iter().map(|w| self.rate(*w, now)).collect();
        let rejected = format!("rejected {}", self.rejected);
        format!(
            "[{}] {worker} {} | pool {} | up {} | {} proofs/s {} work/s (10s/60s/15m) | accepted {} shares ({} proofs) | {} | latency {} | last submit {}",
            time_of_day(wall),
            paint(state_colour, self.describe(now, wall)),
            self.pool.as_deref().unwrap_or("—"),
            secs(now.saturating_duration_since(self.started)),
            paint("1", rates.iter().map(|r| format!("{:.2}", r.0)).collect::<Vec<_>>().join("/")),
            rates.iter().map(|r| format!("{:.0}", r.1)).collect::<Vec<_>>().join("/"),
            self.accepted_shares,
            self.accepted_proofs,
            if self.rejected > 0 { paint("31", rejected) } else { rejected },
            self.latency.map_or("—".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)),
            self.last_submit.map_or("—".to_owned(), |t| format!("{} ago", secs(now.saturating_duration_since(t)))),
        )
    }

    /// The figures the monitoring API serves.
    pub fn summary(&self, now: Instant, wall: SystemTime) -> Summary {
        let rate = |pick: fn((f64, f64)) -> f64| Windows {
            s10: pick(self.rate(WINDOWS[0], now)),
            s60: pick(self.rate(WINDOWS[1], now)),
            m15: pick(self.rate(WINDOWS[2], now)),
        };
        let unix_ms = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        Summary {
            state: self.state.word(),
            state_detail: self.describe(now, wall),
            pool: self.pool.clone(),
            retry_in_secs: match &self.state {
                State::Disconnected { retry_at } => {
                    Some(round_up(retry_at.saturating_duration_since(now)).as_secs())
                }
                _ => None,
            },
            banned_until_ms: match &self.state {
                State::Banned { until: Some(u) } => {
                    Some(unix_ms(wall + u.saturating_duration_since(now)))
                }
                _ => None,
            },
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            proofs_per_s: rate(|r| r.0),
            work_per_s: rate(|r| r.1),
            proofs: self.proofs,
            work: self.work,
            accepted_shares: self.accepted_shares,
            accepted_proofs: self.accepted_proofs,
            accepted_work: self.accepted_work,
            rejected: self.rejected,
            last_submit_secs_ago: self
                .last_submit
                .map(|t| now.saturating_duration_since(t).as_secs()),
            latency_ms: self.latency.map(|d| d.as_secs_f64() * 1e3),
            last_error: self.last_error.clone(),
            keys_loaded: self.keys.len(),
            witness_wait_secs: self.witness_wait.as_secs_f64(),
            tasks_witnessed_ahead: self.witnessed_ahead,
        }
    }
}

/// A rate over the three windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Windows {
    #[serde(rename = "10s")]
    pub s10: f64,
    #[serde(rename = "60s")]
    pub s60: f64,
    #[serde(rename = "15m")]
    pub m15: f64,
}

/// The monitor's part of `GET /v1/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// connecting, idle, proving, disconnected, banned or failing-over.
    pub state: &'static str,
    /// The state as the status line says it.
    pub state_detail: String,
    pub pool: Option<String>,
    pub retry_in_secs: Option<u64>,
    /// Unix milliseconds.
    pub banned_until_ms: Option<u64>,
    pub uptime_secs: u64,
    pub proofs_per_s: Windows,
    pub work_per_s: Windows,
    pub proofs: u64,
    pub work: u64,
    pub accepted_shares: u64,
    pub accepted_proofs: u64,
    pub accepted_work: u64,
    pub rejected: u64,
    /// `None` before the first answered submit.
    pub last_submit_secs_ago: Option<u64>,
    /// Round trip of the last answered submit or ping.
    pub latency_ms: Option<f64>,
    pub last_error: Option<String>,
    /// Proving keys (circuits) loaded.
    pub keys_loaded: usize,
    /// Seconds the prover threads stood waiting for witnesses: high against
    /// the proving time means witness generation is this rig's bottleneck.
    pub witness_wait_secs: f64,
    /// Tasks whose witnesses were computed while the task before them was
    /// still proving, so their first proof started without waiting.
    pub tasks_witnessed_ahead: u64,
}

/// `d` rounded up to whole seconds: a retry 0.4 s away is "in 1s", not "in 0s".
fn round_up(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// `1h02m`, `4m05s`, `7s`.
fn secs(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `2024-05-01 12:03:04Z`: UTC, so that rigs in different zones agree.
pub fn time_of_day(t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (s / 86_400, s % 86_400);
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar),
    // counting in 400-year eras that start on 0000-03-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The ban's length in a pool's refusal ("… banned for 60 more s …", "…: banned
/// for 60 s").
pub fn ban_length(message: &str) -> Option<Duration> {
    let rest = &message[message.find("banned for ")? + "banned for ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    /// 2024-05-01 12:00:00 UTC.
    fn wall() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_714_564_800)
    }

    #[test]
    fn wall_clock_times_are_utc_dates() {
        assert_eq!(time_of_day(UNIX_EPOCH), "1970-01-01 00:00:00Z");
        assert_eq!(time_of_day(wall()), "2024-05-01 12:00:00Z");
        // A leap day, and the last second of a year.
        assert_eq!(
            time_of_day(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00Z"
        );
        assert_eq!(
            time_of_day(UNIX_EPOCH + Duration::from_secs(1_735_689_599)),
            "2024-12-31 23:59:59Z"
        );
    }

    #[test]
    fn rates_are_averaged_over_each_window() {
        let t0 = Instant::now();
        let mut m = Monitor::new(t0);
        // Two proofs a second (of 100 constraints each) for the first 120 s.
        for i in 0..240 {
            m.proved(100, at(t0, i as f64 * 0.5));
        }
        let now = at(t0, 120.0);
        let (p10, w10) = m.rate(WINDOWS[0], now);
        assert!((p10 - 2.0).abs() < 0.11, "{p10}");
        assert!((w10 - 200.0).abs() < 11.0, "{w10}");
        assert!((m.rate(WINDOWS[1], now).0 - 2.0).abs() < 0.05);
        // 15 min not yet up: averaged over the 120 s there were.
        assert!((m.rate(WINDOWS[2], now).0 - 2.0).abs() < 0.02);
        // Then nothing for 30 s: the 10 s rate is zero, the 60 s one halved, the
        // 15 min one averaged over the 150 s so far.
        let later = at(t0, 150.0);
        assert_eq!(m.rate(WINDOWS[0], later), (0.0, 0.0));
        assert!((m.rate(WINDOWS[1], later).0 - 1.0).abs() < 0.05);
        assert!((m.rate(WINDOWS[2], later).0 - 240.0 / 150.0).abs() < 0.01);
        // After 15 min more everything has left every window, and the seconds
        // kept are only those the longest window covers.
        let much_later = at(t0, 150.0 + 900.0);
        assert_eq!(m.rate(WINDOWS[2], much_later), (0.0, 0.0));
        m.proved(1, much_later);
        assert_eq!(m.seconds.len(), 1);
        // A first proof half a second after start counts as a proof a second.
        let mut fresh = Monitor::new(t0);
        fresh.proved(5, at(t0, 0.5));
        assert_eq!(fresh.rate(WINDOWS[0], at(t0, 0.5)), (1.0, 5.0));
    }

    #[test]
    fn states_follow_the_connection_and_the_prover() {
        let t0 = Instant::now();
        let mut m = Monitor::new(t0);
        assert_eq!(m.state(), &State::Connecting);
        m.connecting("stratum+tcp://a:1");
        m.connected("stratum+tcp://a:1");
        assert_eq!(m.state(), &State::Idle);
        m.task_started();
        m.task_started();
        assert_eq!(m.state(), &State::Proving);
        m.task_finished();
        assert_eq!(m.state(), &State::Proving, "one task still held");
        m.task_finished();
        assert_eq!(m.state(), &State::Idle);
        // Lost while proving: disconnected, and the prover's tasks ending do not
        // make it look connected.
        m.task_started();
        m.lost("connection closed", Duration::from_secs(4), at(t0, 10.0));
        m.task_finished();
        assert_eq!(m.state().word(), "disconnected");
        assert_eq!(
            m.describe(at(t0, 11.0), wall()),
            "disconnected (retrying in 3s)"
        );
        let s = m.summary(at(t0, 11.0), wall());
        assert_eq!(
            (s.retry_in_secs, s.last_error.as_deref()),
            (Some(3), Some("connection closed"))
        );
        assert_eq!(
            m.describe(at(t0, 13.6), wall()),
            "disconnected (retrying in 1s)"
        );
        // Reconnecting to the same pool is "connecting"; failing over names the
        // next pool until it answers.
        m.connecting("stratum+tcp://a:1");
        assert_eq!(m.state(), &State::Connecting);
        m.failing_over("connection closed", "stratum+tcp://b:2");
        m.connecting("stratum+tcp://b:2");
        assert_eq!(m.describe(t0, wall()), "failing over to stratum+tcp://b:2");
        m.connected("stratum+tcp://b:2");
        assert_eq!(m.state(), &State::Idle);
        // Banned for 90 s at 12:00:10.
        m.banned(
            "a.r is banned for 90 more s after repeated invalid proofs",
            Some(Duration::from_secs(90)),
            at(t0, 10.0),
        );
        assert_eq!(
            m.describe(at(t0, 10.0), wall() + Duration::from_secs(10)),
            "banned (until 2024-05-01 12:01:40Z)"
        );
        assert_eq!(
            m.summary(at(t0, 10.0), wall() + Duration::from_secs(10))
                .banned_until_ms,
            Some((1_714_564_800 + 100) * 1000)
        );
    }

    #[test]
    fn the_status_line_says_the_state_first_and_nothing_it_does_not_know() {
        let t0 = Instant::now();
        let mut m = Monitor::new(t0);
        m.connecting("stratum+tcp://pool:3333");
        m.connected("stratum+tcp://pool:3333");
        assert_eq!(
            m.status_line("alice.rig1", at(t0, 65.0), wall(), false),
            "[2024-05-01 12:00:00Z] alice.rig1 connected, idle (no task) | pool stratum+tcp://pool:3333 | up 1m05s \
             | 0.00/0.00/0.00 proofs/s 0/0/0 work/s (10s/60s/15m) | accepted 0 shares (0 proofs) | rejected 0 \
             | latency — | last submit —"
        );
        m.task_started();
        // Two proofs a second from 55 s to 65 s.
        for i in 0..20 {
            m.proved(1000, at(t0, 55.0 + i as f64 * 0.5));
        }
        m.accepted(20, 20_000, Duration::from_micros(3_120), at(t0, 60.0));
        let line = m.status_line("alice.rig1", at(t0, 65.0), wall(), false);
        assert!(
            line.starts_with("[2024-05-01 12:00:00Z] alice.rig1 proving | pool stratum+tcp://pool:3333 | up 1m05s | 2.00/0.34/0.31 proofs/s 2000/339/308 work/s"),
            "{line}"
        );
        assert!(
            line.ends_with(
                "accepted 1 shares (20 proofs) | rejected 0 | latency 3.1 ms | last submit 5s ago"
            ),
            "{line}"
        );
        // Colour: the state and rejections, only when asked for.
        m.rejected("stale task", at(t0, 66.0));
        let c = m.status_line("alice.rig1", at(t0, 66.0), wall(), true);
        assert!(c.contains("\x1b[1;32mproving\x1b[0m"), "{c:?}");
        assert!(c.contains("\x1b[31mrejected 1\x1b[0m"), "{c:?}");
        assert!(!m
            .status_line("alice.rig1", at(t0, 66.0), wall(), false)
            .contains('\x1b'));
        m.lost("connection closed", Duration::from_secs(8), at(t0, 70.0));
        let c = m.status_line("alice.rig1", at(t0, 70.0), wall(), true);
        assert!(
            c.contains("\x1b[1;31mdisconnected (retrying in 8s)\x1b[0m"),
            "{c:?}"
        );
    }

    #[test]
    fn ban_lengths_are_read_from_the_pools_messages() {
        assert_eq!(
            ban_length("alice.rig1 is banned for 60 more s after repeated invalid proofs; wait"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            ban_length("proof 3 does not verify; too many invalid submits: banned for 300 s"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(ban_length("banned"), None);
    }
}
