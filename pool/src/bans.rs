//! Escalating bans for invalid work. No I/O and no clock: every call takes `now`.
//!
//! Who is banned is who can be told apart. A worker name is public (it is on the
//! dashboard and in credit lists), so anyone can authorize under it: a name alone
//! is banned only when its account is protected by a worker token (the session
//! proved it owns the name). Otherwise the ban is on the name *at the address it
//! misbehaved from* ([`Target::WorkerAt`]), so an impostor elsewhere bans only
//! himself, and a rig behind the same NAT under another name keeps mining. Renaming
//! does not escape it: once `names_per_ip` different names from one address are
//! banned within the window, the address is banned ([`Target::Ip`]).
//!
//! Policy (from `[bans]`): each invalid submit is counted against the session's
//! targets; until `invalid_threshold` of them fall within `window`, a rejection
//! carries a warning saying how many remain. At the threshold the target is banned
//! for `ban`; each further ban of the same target doubles (10 min, 20 min, 40 min,
//! ..., capped at a day). A ban is checked at authorize and at every submit, is
//! visible to the operator (`GET /v1/bans`) and can be lifted (`DELETE
//! /v1/bans/{target}`).

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
    /// Different names banned from one address within `window` that ban the
    /// address; 0: never.
    pub names_per_ip: usize,
}

const MAX_BAN: Duration = Duration::from_secs(86_400);

/// What a ban applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A worker name whose account has a worker token (the session proved it).
    Worker(String),
    /// A worker name as used from one address (names without a token).
    WorkerAt(String, IpAddr),
    Ip(IpAddr),
}

impl Target {
    /// `worker:NAME`, `worker:NAME@ADDR` or `ip:ADDR`, as the operator API names targets.
    pub fn key(&self) -> String {
        match self {
            Target::Worker(w) => format!("worker:{w}"),
            Target::WorkerAt(w, ip) => format!("worker:{w}@{ip}"),
            Target::Ip(ip) => format!("ip:{ip}"),
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        match s.split_once(':') {
            Some(("worker", w)) if !w.is_empty() => match w.rsplit_once('@') {
                Some((name, ip)) if !name.is_empty() => ip
                    .parse()
                    .ok()
                    .map(|ip| Target::WorkerAt(name.to_owned(), ip)),
                Some(_) => None,
                None => Some(Target::Worker(w.to_owned())),
            },
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
    /// Per address: when each name was last banned from it.
    names: HashMap<IpAddr, HashMap<String, Instant>>,
}

impl Bans {
    pub fn new(policy: BanPolicy) -> Self {
        Bans {
            policy,
            records: HashMap::new(),
            names: HashMap::new(),
        }
    }

    fn ban(&mut self, t: &Target, now: Instant) -> Duration {
        let r = self.records.entry(t.clone()).or_default();
        let length = (self.policy.ban * 2u32.saturating_pow(r.bans)).min(MAX_BAN);
        r.bans += 1;
        r.until = Some(now + length);
        r.invalid.clear();
        length
    }

    /// A name banned from `ip`: bans the address too once enough names were.
    fn name_banned(&mut self, name: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.policy.names_per_ip == 0 {
            return None;
        }
        let window = self.policy.window;
        let names = self.names.entry(ip).or_default();
        names.retain(|_, at| now.saturating_duration_since(*at) <= window);
        names.insert(name.to_owned(), now);
        if names.len() < self.policy.names_per_ip {
            return None;
        }
        names.clear();
        Some(self.ban(&Target::Ip(ip), now))
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
                let mut length = self.ban(t, now);
                if let Target::WorkerAt(name, ip) = t {
                    if let Some(ip_ban) = self.name_banned(name, *ip, now) {
                        length = length.max(ip_ban);
                    }
                }
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
            names_per_ip: 2,
        }
    }

    fn at(w: &str, ip: &str) -> Vec<Target> {
        vec![Target::WorkerAt(w.into(), ip.parse().unwrap())]
    }

    /// An impostor using alice's name from another address bans only alice-at-his-
    /// address; alice (and a neighbour of the impostor under another name) mine on.
    /// A second name banned from the impostor's address bans the address.
    #[test]
    fn names_without_a_token_are_banned_per_address_and_renaming_bans_the_address() {
        let mut b = Bans::new(policy());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.strike(&at("alice.rig1", "10.0.0.66"), t0);
        }
        assert!(b.banned(&at("alice.rig1", "10.0.0.66"), t0).is_some());
        assert!(b.banned(&at("alice.rig1", "10.0.0.1"), t0).is_none());
        let neighbour = [
            at("bob.rig1", "10.0.0.66"),
            vec![Target::Ip("10.0.0.66".parse().unwrap())],
        ]
        .concat();
        assert!(b.banned(&neighbour, t0).is_none());
        for _ in 0..3 {
            b.strike(&at("mallory.x", "10.0.0.66"), t0);
        }
        assert_eq!(
            b.banned(&neighbour, t0).map(|(t, _)| t),
            Some(Target::Ip("10.0.0.66".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("worker:alice.rig1@10.0.0.66"),
            Some(Target::WorkerAt(
                "alice.rig1".into(),
                "10.0.0.66".parse().unwrap()
            ))
        );
        assert_eq!(Target::parse("worker:@10.0.0.66"), None);
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
