//! What one caller may make the pool spend: request rates per address and per
//! client, and the blocking work (job preparation, circuit registration) in
//! flight at once, overall and per caller. Every bound comes from `[limits]`.
//!
//! Not here: the per-job CPU budget (`jobs::Budget`, checked before the work is
//! done), body sizes (per route, in `http`), and connection caps and timeouts
//! (in `http` and `session`).

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;

/// Who is asking: a client (by its API key) or, without a key, an address. Rates
/// and work in flight are counted per caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    Client(String),
    Address(IpAddr),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Client(c) => write!(f, "client {c}"),
            Caller::Address(ip) => write!(f, "address {ip}"),
        }
    }
}

/// A refusal: too fast, or too much in flight. Answered with HTTP 429.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TooMany(pub String);

/// The pool's rate limiters and its cap on blocking work.
pub struct Limits {
    requests: DefaultKeyedRateLimiter<IpAddr>,
    jobs: DefaultKeyedRateLimiter<Caller>,
    circuits: DefaultKeyedRateLimiter<Caller>,
    preparing: Arc<Semaphore>,
    per_caller: usize,
    in_flight: Arc<Mutex<HashMap<Caller, usize>>>,
}

fn nonzero(n: u64) -> NonZeroU32 {
    NonZeroU32::new(n.clamp(1, u32::MAX as u64) as u32).expect("clamped to at least 1")
}

fn wait_message(what: &str, who: &str, wait: Duration) -> TooMany {
    TooMany(format!(
        "too many {what} from {who}: try again in {:.1} s (the pool's [limits] set the rate)",
        wait.as_secs_f64().max(0.1)
    ))
}

impl Limits {
    pub fn new(cfg: &LimitsConfig, preparing: usize) -> Self {
        let per_sec = cfg.http_requests_per_second as u64;
        let jobs = Quota::with_period(Duration::from_secs(60) / cfg.jobs_per_minute.max(1))
            .expect("a positive period")
            .allow_burst(nonzero(cfg.jobs_burst as u64));
        let circuits = Quota::with_period(Duration::from_secs(3600) / cfg.circuits_per_hour.max(1))
            .expect("a positive period")
            .allow_burst(nonzero(5));
        Limits {
            requests: RateLimiter::keyed(
                Quota::per_second(nonzero(per_sec)).allow_burst(nonzero(per_sec * 4)),
            ),
            jobs: RateLimiter::keyed(jobs),
            circuits: RateLimiter::keyed(circuits),
            preparing: Arc::new(Semaphore::new(preparing.max(1))),
            per_caller: cfg.preparing_per_caller.max(1),
            in_flight: Arc::default(),
        }
    }

    /// One HTTP request from `ip`.
    pub fn request(&self, ip: IpAddr) -> Result<(), TooMany> {
        self.requests.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait_message("requests", &ip.to_string(), wait)
        })
    }

    /// One job submission by `caller`.
    pub fn job(&self, caller: &Caller) -> Result<(), TooMany> {
        self.jobs.check_key(caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait_message("jobs", &caller.to_string(), wait)
        })
    }

    /// One circuit registration by `caller`.
    pub fn circuit(&self, caller: &Caller) -> Result<(), TooMany> {
        self.circuits.check_key(caller).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait_message("circuit registrations", &caller.to_string(), wait)
        })
    }

    /// A place for one piece of blocking work of `caller`: refused at once when the
    /// caller already has `preparing_per_caller` in flight; otherwise waits (up to
    /// `wait`) for a free place among all callers' work.
    pub async fn prepare(&self, caller: &Caller, wait: Duration) -> Result<Preparing, TooMany> {
        {
            let mut m = self
                .in_flight
                .lock()
                .expect("in-flight lock is never poisoned");
            let n = m.entry(caller.clone()).or_default();
            if *n >= self.per_caller {
                return Err(TooMany(format!(
                    "{caller} has {} request(s) still being prepared; wait for the answer before sending another",
                    *n
                )));
            }
            *n += 1;
        }
        let slot = Slot {
            caller: caller.clone(),
            in_flight: self.in_flight.clone(),
        };
        match tokio::time::timeout(wait, self.preparing.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Preparing {
                _permit: permit,
                _slot: slot,
            }),
            _ => Err(TooMany(format!(
                "the pool is busy preparing other requests; try again in a few seconds (waited {} s)",
                wait.as_secs()
            ))),
        }
    }

    /// Forgets limiter state of callers idle long enough to be back at full burst.
    pub fn forget_idle(&self) {
        self.requests.retain_recent();
        self.jobs.retain_recent();
        self.circuits.retain_recent();
    }
}

/// A caller's count of work in flight, given back when dropped.
struct Slot {
    caller: Caller,
    in_flight: Arc<Mutex<HashMap<Caller, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self
            .in_flight
            .lock()
            .expect("in-flight lock is never poisoned");
        if let Some(n) = m.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.caller);
            }
        }
    }
}

/// A place for one piece of blocking work; hold it until the work is done.
pub struct Preparing {
    _permit: OwnedSemaphorePermit,
    _slot: Slot,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LimitsConfig {
        LimitsConfig {
            jobs_per_minute: 60,
            jobs_burst: 2,
            preparing_per_caller: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = Limits::new(&cfg(), 2);
        let c = Caller::Client("acme".into());
        assert!(l.job(&c).is_ok());
        assert!(l.job(&c).is_ok());
        let e = l.job(&c).unwrap_err();
        assert!(e.0.contains("too many jobs from client acme"), "{e}");
        // Another caller has its own budget.
        assert!(l.job(&Caller::Client("other".into())).is_ok());
    }

    #[tokio::test]
    async fn one_preparation_per_caller_and_a_cap_over_all() {
        let l = Limits::new(&cfg(), 1);
        let a = Caller::Address("10.0.0.1".parse().unwrap());
        let b = Caller::Address("10.0.0.2".parse().unwrap());
        let held = l.prepare(&a, Duration::from_millis(10)).await.unwrap();
        let e = l
            .prepare(&a, Duration::from_millis(10))
            .await
            .err()
            .unwrap();
        assert!(e.0.contains("still being prepared"), "{e}");
        // b has no work in flight, but the one place is taken.
        let e = l
            .prepare(&b, Duration::from_millis(10))
            .await
            .err()
            .unwrap();
        assert!(e.0.contains("busy"), "{e}");
        drop(held);
        let _again = l.prepare(&b, Duration::from_millis(10)).await.unwrap();
        // a's failed attempts left nothing counted against it: it waits only for the place.
        let e = l
            .prepare(&a, Duration::from_millis(10))
            .await
            .err()
            .unwrap();
        assert!(e.0.contains("busy"), "{e}");
    }
}
