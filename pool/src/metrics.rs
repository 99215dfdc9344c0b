//! Prometheus metrics, in a registry owned by the pool (never the global one), served
//! on `GET /metrics`. Labels take a fixed, small set of values (a share's verdict);
//! nothing is labelled per worker, so cardinality stays bounded however many miners
//! connect. Gauges of current state (sessions, workers online, leased tasks, pending
//! statements, running jobs, verifier queue) are read from the pool at scrape time,
//! so they cannot drift.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use stratum::ErrorCode;

pub struct Metrics {
    pub registry: Registry,
    pub sessions: IntGauge,
    /// Distinct worker names with an authorized session.
    pub workers_online: IntGauge,
    pub tasks_leased: IntGauge,
    /// Statements of running jobs waiting for a worker (not leased, not verified).
    pub statements_pending: IntGauge,
    pub jobs_running: IntGauge,
    pub jobs_accepted: IntCounter,
    pub jobs_completed: IntCounter,
    pub jobs_expired: IntCounter,
    pub jobs_failed: IntCounter,
    pub job_seconds: Histogram,
    /// Submits by verdict: `accepted` or the reason they were rejected.
    pub shares: IntCounterVec,
    pub proofs_credited: IntCounter,
    pub work_credited: IntCounter,
    pub verify_batches: IntCounter,
    pub verify_submits: IntCounter,
    pub verify_proofs: IntCounter,
    pub verify_batch_proofs: Histogram,
    pub verify_seconds: Histogram,
    pub verify_queue: IntGauge,
    pub connections: IntCounter,
    pub malformed_lines: IntCounter,
    pub bans: IntCounter,
    pub bans_active: IntGauge,
    /// The books by kind of account, read from the ledger at each scrape.
    pub ledger: IntGaugeVec,
    pub ledger_balanced: IntGauge,
    pub payout_batches_planned: IntGauge,
    pub payout_oldest_planned_seconds: IntGauge,
    /// Time to store a verified share (its proofs, its credit, its proven
    /// marks): the storage's latency as a miner feels it, on either backend.
    pub share_store_seconds: Histogram,
    /// Ledger transactions committed (PostgreSQL: several credits share one).
    pub ledger_commits: IntCounter,
    /// With several pool processes on PostgreSQL: 1 while this one leads.
    pub cluster_leader: IntGauge,
    /// Chunks of statements this process claimed for its sessions.
    pub cluster_claims: IntCounter,
    /// Chunks this process gave back because a lease of them ran out here.
    pub cluster_given_back: IntCounter,
    /// Events from the other processes applied here.
    pub cluster_events: IntCounter,
    /// Round trips of this process's cluster queries (lease, claims, polls).
    pub db_seconds: Histogram,
    /// When this process started (ms since the epoch): the counters above count
    /// from here.
    started_ms: u64,
    /// Proving rate over windows, for the pool, each account and each rig.
    pub rates: crate::rates::Rates,
}

/// Every value the `account` label of `zkpool_ledger_amount` takes.
pub const LEDGER_ACCOUNTS: [&str; 8] = [
    "deposited",
    "clients",
    "escrow",
    "miners",
    "pending",
    "paid",
    "fees",
    "funds",
];

/// Every value the `verdict` label takes.
pub const VERDICTS: [&str; 9] = [
    "accepted",
    "stale",
    "wrong_statement",
    "invalid_proof",
    "unknown_circuit",
    "banned",
    "busy",
    "internal",
    "other",
];

/// The `verdict` label of a rejection.
pub fn verdict(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::StaleTask => "stale",
        ErrorCode::WrongStatement => "wrong_statement",
        ErrorCode::InvalidProof => "invalid_proof",
        ErrorCode::UnknownCircuit => "unknown_circuit",
        ErrorCode::Banned => "banned",
        ErrorCode::Busy => "busy",
        ErrorCode::Internal => "internal",
        _ => "other",
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
            r.register(Box::new(m.clone()))
                .expect("metric names are unique");
            m
        }
        let gauge = |name: &str, help: &str| {
            reg(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let counter = |name: &str, help: &str| {
            reg(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            reg(
                &registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                    .expect("valid metric"),
            )
        };
        let m = Metrics {
            sessions: gauge("zkpool_sessions", "Authorized stratum sessions."),
            workers_online: gauge(
                "zkpool_workers_online",
                "Distinct workers (ADDR.RIG) with an authorized session.",
            ),
            tasks_leased: gauge("zkpool_tasks_leased", "Tasks leased to sessions now."),
            statements_pending: gauge(
                "zkpool_statements_pending",
                "Statements of running jobs waiting for a worker: neither leased nor verified.",
            ),
            jobs_running: gauge(
                "zkpool_jobs_running",
                "Jobs accepted and not yet completed.",
            ),
            jobs_accepted: counter("zkpool_jobs_accepted_total", "Jobs accepted over HTTP."),
            jobs_completed: counter(
                "zkpool_jobs_completed_total",
                "Jobs whose result was assembled.",
            ),
            jobs_expired: counter(
                "zkpool_jobs_expired_total",
                "Jobs whose deadline passed before their result.",
            ),
            jobs_failed: counter(
                "zkpool_jobs_failed_total",
                "Jobs failed because scheduler.max_attempts different identities (token-proven accounts or addresses) failed one of their statements.",
            ),
            job_seconds: histogram(
                "zkpool_job_seconds",
                "Seconds from a job's acceptance to its result.",
                prometheus::exponential_buckets(1.0, 2.0, 16).expect("valid buckets"),
            ),
            shares: reg(
                &registry,
                IntCounterVec::new(
                    Opts::new("zkpool_shares_total", "Submits by verdict."),
                    &["verdict"],
                )
                .expect("valid metric"),
            ),
            proofs_credited: counter(
                "zkpool_proofs_credited_total",
                "Verified proofs credited to workers.",
            ),
            work_credited: counter(
                "zkpool_work_credited_total",
                "Work (constraints) credited to workers.",
            ),
            verify_batches: counter("zkpool_verify_batches_total", "Verification batches run."),
            verify_submits: counter("zkpool_verify_submits_total", "Submits verified."),
            verify_proofs: counter(
                "zkpool_verify_proofs_total",
                "Proofs verified (valid or not).",
            ),
            verify_batch_proofs: histogram(
                "zkpool_verify_batch_proofs",
                "Proofs per verification batch.",
                prometheus::exponential_buckets(1.0, 2.0, 11).expect("valid buckets"),
            ),
            verify_seconds: histogram(
                "zkpool_verify_seconds",
                "Seconds to verify one batch.",
                prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets"),
            ),
            verify_queue: gauge(
                "zkpool_verify_queue",
                "Submits waiting for a verification thread.",
            ),
            connections: counter(
                "zkpool_stratum_connections_total",
                "Stratum connections accepted.",
            ),
            malformed_lines: counter(
                "zkpool_malformed_lines_total",
                "Stratum lines answered with a JSON-RPC error.",
            ),
            bans: counter(
                "zkpool_bans_total",
                "Bans issued for invalid work (a worker and its address count once).",
            ),
            bans_active: gauge("zkpool_bans_active", "Workers and addresses banned now."),
            ledger: reg(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "zkpool_ledger_amount",
                        "The ledger's totals by kind of account, in the smallest unit.",
                    ),
                    &["account"],
                )
                .expect("valid metric"),
            ),
            ledger_balanced: gauge(
                "zkpool_ledger_balanced",
                "1 when deposits equal the sum of every account, 0 otherwise.",
            ),
            payout_batches_planned: gauge(
                "zkpool_payout_batches_planned",
                "Payout batches planned and neither confirmed nor voided.",
            ),
            payout_oldest_planned_seconds: gauge(
                "zkpool_payout_oldest_planned_seconds",
                "Age of the oldest planned payout batch (0 when none).",
            ),
            rates: crate::rates::Rates::default(),
            share_store_seconds: histogram(
                "zkpool_share_store_seconds",
                "Time to store a verified share durably: its proofs, its credit (group-committed) and its proven marks.",
                vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0],
            ),
            ledger_commits: counter(
                "zkpool_ledger_commits_total",
                "Ledger transactions committed by this process (PostgreSQL; several credits share one).",
            ),
            cluster_leader: gauge(
                "zkpool_cluster_leader",
                "1 while this process leads the pool processes on one database (settles left-over jobs, runs automatic payouts).",
            ),
            cluster_claims: counter(
                "zkpool_cluster_claims_total",
                "Chunks of statements this process claimed for its own sessions.",
            ),
            cluster_given_back: counter(
                "zkpool_cluster_given_back_total",
                "Chunks this process gave back to the others because a lease of them ran out here (idle or stalling rigs).",
            ),
            cluster_events: counter(
                "zkpool_cluster_events_total",
                "Events (jobs stored, ended, proofs stored) from the other pool processes applied here.",
            ),
            db_seconds: histogram(
                "zkpool_db_seconds",
                "Round trips of this process's cluster queries to PostgreSQL (lease renewal, claims, polls).",
                vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0],
            ),
            registry,
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        for v in VERDICTS {
            // Export every verdict from the start, so rates and alerts see zeros, not gaps.
            m.shares.with_label_values(&[v]);
        }
        for a in LEDGER_ACCOUNTS {
            m.ledger.with_label_values(&[a]);
        }
        m
    }

    /// Reads the books into the ledger gauges.
    pub async fn observe_ledger(
        &self,
        ledger: &dyn crate::ledger::Ledger,
        now_ms: u64,
    ) -> Result<(), payouts::LedgerError> {
        let a = ledger.audit().await?;
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        for (name, v) in LEDGER_ACCOUNTS.iter().zip([
            a.deposited,
            a.clients,
            a.escrow,
            a.miners,
            a.pending,
            a.paid,
            a.fees,
            a.funds,
        ]) {
            self.ledger.with_label_values(&[name]).set(clamp(v));
        }
        self.ledger_balanced.set(a.balanced as i64);
        let planned: Vec<u64> = ledger
            .batches()
            .await?
            .into_iter()
            .filter(|b| b.state == payouts::BatchState::Planned)
            .map(|b| b.planned_ms)
            .collect();
        self.payout_batches_planned.set(planned.len() as i64);
        self.payout_oldest_planned_seconds.set(
            planned
                .iter()
                .min()
                .map_or(0, |&t| clamp(now_ms.saturating_sub(t) / 1000)),
        );
        Ok(())
    }

    /// When this process started, ms since the epoch.
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Submits rejected for any reason.
    pub fn shares_rejected(&self) -> u64 {
        VERDICTS[1..]
            .iter()
            .map(|v| self.shares.with_label_values(&[v]).get())
            .sum()
    }

    pub fn shares_accepted(&self) -> u64 {
        self.shares.with_label_values(&["accepted"]).get()
    }

    /// The registry in Prometheus' text format.
    /// The text exposition. `amounts`: include the books' balances by account
    /// (`zkpool_ledger_amount`), which only the operator's scrape may see.
    pub fn encode(&self, amounts: bool) -> String {
        let mut families = self.registry.gather();
        if !amounts {
            families.retain(|f| f.name() != "zkpool_ledger_amount");
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_is_exported_from_the_start() {
        let m = Metrics::new();
        let text = m.encode(true);
        for v in VERDICTS {
            assert!(
                text.contains(&format!("zkpool_shares_total{{verdict=\"{v}\"}} 0")),
                "{v} missing:\n{text}"
            );
        }
        assert!(text.contains("# TYPE zkpool_verify_seconds histogram"));
    }
}
