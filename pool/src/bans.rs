//! Escalating bans for invalid work, per worker and per IP address (so renaming the
//! worker does not help). No I/O and no clock: every call takes `now`.
//!
//! Policy (from `[bans]`): each invalid submit is counted against the worker and the
//! address; until `invalid_threshold` of them fall within `window`, a rejection carries
//! a warning saying how many remain. At the threshold the target is banned for
//! `ban`; each further ban of the same target doubles (10 min, 20 min, 40 min, ...,
//! capped at a day). A ban is checked at authorize and at every submit, is visible to
//! the operator (`GET /v1/bans`) and can be lifted (`DELETE /v1/bans/{target}`).

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::Serialize;

/// Ban policy.
#[derive(Debug, Clone)]
pub struct BanPolicy {
    pub invalid_threshold: usize,
    pub window: Duration,
    pub ban: Duration,
}

const MAX_BAN: Duration = Duration::from_secs(86_400);

/// What a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Worker(String),
    Ip(IpAddr),
}

impl Target {
    /// `worker:NAME` or `ip:ADDR`, as the operator API names targets.
    pub fn key(&self) -> String {
        match self {
            Target::Worker(w) => format!("worker:{w}"),
            Target::Ip(ip) => format!("ip:{ip}"),
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        match s.split_once(':') {
            Some(("worker", w)) if !w.is_empty() => Some(Target::Worker(w.to_owned())),
            Some(("ip", ip)) => ip.parse().ok().map(Target::Ip),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    invalid: VecDeque<Instant>,
    bans: u32,
    until: Option<Instant>,
}

/// The outcome of counting one invalid submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strike {
    /// Not banned yet: `remaining` more invalid submits within the window ban.
    Warned { remaining: usize },
    /// Banned now, for `for_` (the longest of the targets' bans).
    Banned { for_: Duration },
}

/// An active ban, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BanView {
    pub target: String,
    pub remaining_secs: u64,
    pub bans: u32,
}

pub struct Bans {
    policy: BanPolicy,
    records: HashMap<Target, Record>,
}

impl Bans {
    pub fn new(policy: BanPolicy) -> Self {
        Bans {
            policy,
            records: HashMap::new(),
        }
    }

    /// Seconds left of the first active ban among `targets`.
    pub fn banned(&self, targets: &[Target], now: Instant) -> Option<(Target, Duration)> {
        targets.iter().find_map(|t| {
            let until = self.records.get(t)?.until?;
            (until > now).then(|| (t.clone(), until - now))
        })
    }

    /// Counts one invalid submit against every target.
    pub fn strike(&mut self, targets: &[Target], now: Instant) -> Strike {
        let mut banned_for: Option<Duration> = None;
        let mut remaining = usize::MAX;
        for t in targets {
            let r = self.records.entry(t.clone()).or_default();
            while r
                .invalid
                .front()
                .is_some_and(|at| now.saturating_duration_since(*at) > self.policy.window)
            {
                r.invalid.pop_front();
            }
            r.invalid.push_back(now);
            if r.invalid.len() >= self.policy.invalid_threshold {
                let length = (self.policy.ban * 2u32.saturating_pow(r.bans)).min(MAX_BAN);
                r.bans += 1;
                r.until = Some(now + length);
                r.invalid.clear();
                banned_for = Some(banned_for.map_or(length, |b| b.max(length)));
            } else {
                remaining = remaining.min(self.policy.invalid_threshold - r.invalid.len());
            }
        }
        match banned_for {
            Some(for_) => Strike::Banned { for_ },
            None => Strike::Warned { remaining },
        }
    }

    /// Lifts a ban (the escalation history stays). Returns whether one was active.
    pub fn lift(&mut self, target: &Target, now: Instant) -> bool {
        match self.records.get_mut(target) {
            Some(r) if r.until.is_some_and(|u| u > now) => {
                r.until = None;
                true
            }
            _ => false,
        }
    }

    /// Active bans, longest first.
    pub fn active(&self, now: Instant) -> Vec<BanView> {
        let mut v: Vec<BanView> = self
            .records
            .iter()
            .filter_map(|(t, r)| {
                let until = r.until.filter(|u| *u > now)?;
                Some(BanView {
                    target: t.key(),
                    remaining_secs: (until - now).as_secs().max(1),
                    bans: r.bans,
                })
            })
            .collect();
        v.sort_by(|a, b| {
            b.remaining_secs
                .cmp(&a.remaining_secs)
                .then(a.target.cmp(&b.target))
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BanPolicy {
        BanPolicy {
            invalid_threshold: 3,
            window: Duration::from_secs(600),
            ban: Duration::from_secs(600),
        }
    }

    fn targets(w: &str) -> Vec<Target> {
        vec![
            Target::Worker(w.into()),
            Target::Ip("10.0.0.1".parse().unwrap()),
        ]
    }

    #[test]
    fn warn_then_ban_then_longer_ban() {
        let mut b = Bans::new(policy());
        let t0 = Instant::now();
        let t = targets("m.r1");
        assert_eq!(b.strike(&t, t0), Strike::Warned { remaining: 2 });
        assert_eq!(b.strike(&t, t0), Strike::Warned { remaining: 1 });
        assert_eq!(
            b.strike(&t, t0),
            Strike::Banned {
                for_: Duration::from_secs(600)
            }
        );
        assert!(b.banned(&t, t0 + Duration::from_secs(599)).is_some());
        assert!(b.banned(&t, t0 + Duration::from_secs(600)).is_none());
        // The second ban is twice as long.
        let t1 = t0 + Duration::from_secs(700);
        b.strike(&t, t1);
        b.strike(&t, t1);
        assert_eq!(
            b.strike(&t, t1),
            Strike::Banned {
                for_: Duration::from_secs(1200)
            }
        );
    }

    #[test]
    fn strikes_outside_the_window_are_forgotten() {
        let mut b = Bans::new(policy());
        let t0 = Instant::now();
        let t = targets("m.r1");
        b.strike(&t, t0);
        b.strike(&t, t0);
        assert_eq!(
            b.strike(&t, t0 + Duration::from_secs(601)),
            Strike::Warned { remaining: 2 }
        );
    }

    #[test]
    fn a_renamed_worker_on_the_same_address_is_still_banned() {
        let mut b = Bans::new(policy());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.strike(&targets("m.r1"), t0);
        }
        let (who, _) = b
            .banned(&targets("other.name"), t0)
            .expect("the address is banned");
        assert_eq!(who, Target::Ip("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_lifted_ban_ends_and_is_listed_until_then() {
        let mut b = Bans::new(policy());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.strike(&targets("m.r1"), t0);
        }
        assert_eq!(b.active(t0).len(), 2);
        assert!(b.lift(&Target::parse("worker:m.r1").unwrap(), t0));
        assert!(
            !b.lift(&Target::parse("worker:m.r1").unwrap(), t0),
            "already lifted"
        );
        assert_eq!(
            b.active(t0)
                .iter()
                .map(|v| v.target.as_str())
                .collect::<Vec<_>>(),
            vec!["ip:10.0.0.1"]
        );
        assert_eq!(Target::parse("nope"), None);
    }
}
