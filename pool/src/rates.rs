//! Proving rate, as pools show hashrate: verified proofs and work per second over
//! the last minute, ten minutes and hour, computed by the pool for the pool, each
//! account and each rig, and the pool's proofs per minute over the last hour for
//! a chart.
//!
//! Shares arrive every few seconds per rig, so the difference of two counter reads
//! a few seconds apart is mostly zero. Each window is an exponentially weighted
//! average with that window as its time constant instead: every credited share
//! adds `amount / tau` to it and it decays by `exp(-dt / tau)`, so it reads as a
//! rate at any moment and needs a few numbers per key, not a history. Sans-IO: the
//! caller passes the time.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use serde_json::{json, Value};

/// The windows, in seconds, and their names.
pub const WINDOWS: [(u64, &str); 3] = [(60, "1m"), (600, "10m"), (3600, "1h")];

/// Minutes of per-minute history kept for the chart.
const HISTORY_MINUTES: usize = 60;

/// A key idle this long (ms) is forgotten at the next prune.
const FORGET_MS: u64 = 2 * 3600 * 1000;

/// One key's averages: proofs and work per second for each window.
#[derive(Debug, Clone, Default)]
struct Average {
    /// The first share: a window longer than the time since then is scaled up,
    /// as if it covered only that time (no warm-up ramp).
    since_ms: Option<u64>,
    at_ms: u64,
    proofs: [f64; 3],
    work: [f64; 3],
}

impl Average {
    fn decayed(&self, now_ms: u64) -> Average {
        let dt = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        let mut a = self.clone();
        for (i, (tau, _)) in WINDOWS.iter().enumerate() {
            let k = (-dt / *tau as f64).exp();
            a.proofs[i] *= k;
            a.work[i] *= k;
        }
        a.at_ms = now_ms.max(self.at_ms);
        a
    }

    fn add(&mut self, now_ms: u64, proofs: u64, work: u64) {
        *self = self.decayed(now_ms);
        self.since_ms.get_or_insert(now_ms);
        for (i, (tau, _)) in WINDOWS.iter().enumerate() {
            self.proofs[i] += proofs as f64 / *tau as f64;
            self.work[i] += work as f64 / *tau as f64;
        }
    }

    fn json(&self, now_ms: u64) -> Value {
        let a = self.decayed(now_ms);
        // Seen for `seen` seconds (at least 30, so one early share is no spike): a window
        // holds 1 - exp(-seen / tau) of a steady rate's weight so far.
        let seen = self.since_ms.map_or(0.0, |s| {
            (now_ms.saturating_sub(s) as f64 / 1000.0).max(30.0)
        });
        let mut out = serde_json::Map::new();
        for (i, (tau, name)) in WINDOWS.iter().enumerate() {
            let weight = 1.0 - (-seen / *tau as f64).exp();
            let scale = if weight > 0.0 { 1.0 / weight } else { 0.0 };
            out.insert(
                (*name).to_owned(),
                json!({"proofs_per_s": round(a.proofs[i] * scale), "work_per_s": round(a.work[i] * scale)}),
            );
        }
        Value::Object(out)
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Default)]
struct Inner {
    pool: Average,
    by_name: HashMap<String, Average>,
    /// (minute start ms, proofs, work), oldest first.
    minutes: VecDeque<(u64, u64, u64)>,
    updates: u64,
}

/// The pool's rates; cheap to update from the share path.
#[derive(Default)]
pub struct Rates(Mutex<Inner>);

impl Rates {
    /// Counts a credited share of `worker` (`ADDR.RIG`) at `now_ms`.
    pub fn record(&self, now_ms: u64, worker: &str, proofs: u64, work: u64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.pool.add(now_ms, proofs, work);
        g.by_name
            .entry(worker.to_owned())
            .or_default()
            .add(now_ms, proofs, work);
        if let Some((account, _)) = worker.split_once('.') {
            g.by_name
                .entry(account.to_owned())
                .or_default()
                .add(now_ms, proofs, work);
        }
        let minute = now_ms - now_ms % 60_000;
        match g.minutes.back_mut() {
            Some(m) if m.0 == minute => {
                m.1 += proofs;
                m.2 += work;
            }
            _ => g.minutes.push_back((minute, proofs, work)),
        }
        while g.minutes.len() > HISTORY_MINUTES {
            g.minutes.pop_front();
        }
        g.updates += 1;
        if g.updates.is_multiple_of(4096) {
            g.by_name
                .retain(|_, a| now_ms.saturating_sub(a.at_ms) < FORGET_MS);
        }
    }

    /// The pool's rates, and its proofs and work per minute over the last hour
    /// (minutes without a share included, as zeros), oldest first.
    pub fn pool_json(&self, now_ms: u64) -> (Value, Value) {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now_minute = now_ms - now_ms % 60_000;
        let history: Vec<Value> = (0..HISTORY_MINUTES as u64)
            .rev()
            .map(|back| {
                let start = now_minute.saturating_sub(back * 60_000);
                let (proofs, work) = g
                    .minutes
                    .iter()
                    .find(|m| m.0 == start)
                    .map_or((0, 0), |m| (m.1, m.2));
                json!({"minute_ms": start, "proofs": proofs, "work": work})
            })
            .collect();
        (g.pool.json(now_ms), Value::Array(history))
    }

    /// A rig's (`ADDR.RIG`) or an account's (`ADDR`) rates; zeros when unknown.
    pub fn json_for(&self, now_ms: u64, name: &str) -> Value {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.by_name
            .get(name)
            .cloned()
            .unwrap_or_default()
            .json(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(v: &Value, window: &str) -> f64 {
        v[window]["proofs_per_s"].as_f64().unwrap()
    }

    #[test]
    fn a_steady_rig_reads_its_rate_in_every_window() {
        let r = Rates::default();
        // 2 proofs every 5 s (0.4/s) for two hours.
        let mut t = 1_000_000;
        for _ in 0..(2 * 3600 / 5) {
            t += 5_000;
            r.record(t, "alice.rig1", 2, 428);
        }
        let (pool, history) = r.pool_json(t);
        for w in ["1m", "10m", "1h"] {
            let got = rate(&pool, w);
            assert!((got - 0.4).abs() < 0.05, "{w}: {got}");
        }
        assert!(
            (pool["10m"]["work_per_s"].as_f64().unwrap() - 85.6).abs() < 8.0,
            "{pool}"
        );
        assert!((rate(&r.json_for(t, "alice"), "10m") - 0.4).abs() < 0.05);
        assert!((rate(&r.json_for(t, "alice.rig1"), "1h") - 0.4).abs() < 0.05);
        assert_eq!(rate(&r.json_for(t, "bob"), "1m"), 0.0);
        // The last full minute holds 12 shares of 2 proofs.
        let minutes = history.as_array().unwrap();
        assert_eq!(minutes.len(), 60);
        assert_eq!(minutes[58]["proofs"], 24, "{:?}", &minutes[58]);
    }

    #[test]
    fn a_rig_that_stops_fades_fastest_in_the_short_window() {
        let r = Rates::default();
        let mut t = 0;
        for _ in 0..720 {
            t += 5_000;
            r.record(t, "a.r", 1, 1);
        }
        // Five minutes of silence.
        let later = t + 300_000;
        let v = r.json_for(later, "a.r");
        assert!(rate(&v, "1m") < 0.01 * 0.2, "{v}");
        assert!(rate(&v, "10m") > 0.1 && rate(&v, "10m") < 0.2, "{v}");
        assert!(rate(&v, "1h") > 0.17, "{v}");
        // The chart shows the silent minutes as zeros.
        let (_, history) = r.pool_json(later);
        assert_eq!(history.as_array().unwrap()[59]["proofs"], 0);
    }
}
