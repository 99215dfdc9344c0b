//! What one dispatch costs the scheduler (under its lock) with 10,000 idle
//! sessions: handing out a small job, and the case where statements wait that no
//! free session may take (every session named other circuits), first pass and the
//! events after it; and a cluster node's claim round over as many live tasks.
//! Run: `cargo bench -p zkpool-pool --bench dispatch`.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pool::scheduler::{JobEntry, SchedConfig, Scheduler};

const SESSIONS: u64 = 10_000;

fn job(id: &str, circuit_name: &str, total: u64) -> JobEntry {
    JobEntry {
        id: id.into(),
        circuit_id: format!("{circuit_name}-id").into(),
        circuit_name: circuit_name.into(),
        deadline_ms: 1,
        created_ms: 0,
        total,
        done: BTreeSet::new(),
        max_per_task: 1000,
        client: "c".into(),
        allow: None,
        shared: false,
    }
}

/// A scheduler with `SESSIONS` idle sessions, each proving only `circuit`.
fn idle_pool(circuit: Option<&str>) -> Scheduler {
    let mut s = Scheduler::new(SchedConfig {
        target_task: Duration::from_secs(30),
        lease_min: Duration::from_secs(60),
        max_per_task: 256,
        tasks_per_session: 2,
        max_attempts: 5,
        backup_after: Duration::from_secs(10),
    });
    for k in 1..=SESSIONS {
        let circuits = circuit.map(|c| [c.to_owned()].into());
        s.add_session(
            k,
            stratum::Worker::parse(&format!("w{k}.rig")).expect("valid worker"),
            circuits,
        );
    }
    s
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch_10k_idle_sessions");
    let t0 = Instant::now();
    g.bench_function("hand_out_100_statements", |b| {
        b.iter_batched(
            || {
                let mut s = idle_pool(None);
                s.add_job(job("small", "chain", 100));
                s
            },
            |mut s| {
                let tasks = s.poll_assignments(t0);
                assert_eq!(tasks.len(), 100);
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("nobody_can_take_first_pass", |b| {
        b.iter_batched(
            || {
                let mut s = idle_pool(Some("preimage"));
                s.add_job(job("stuck", "chain", 100));
                s
            },
            |mut s| {
                assert!(s.poll_assignments(t0).is_empty());
                s
            },
            BatchSize::LargeInput,
        )
    });
    let mut stalled = idle_pool(Some("preimage"));
    stalled.add_job(job("stuck", "chain", 100));
    assert!(stalled.poll_assignments(t0).is_empty());
    let passes = stalled.passes();
    g.bench_function("nobody_can_take_next_events", |b| {
        b.iter(|| assert!(stalled.poll_assignments(t0).is_empty()))
    });
    assert_eq!(
        stalled.passes(),
        passes,
        "the stalled queue was scanned again"
    );
    g.finish();
}

/// A cluster node's claim round (every 200 ms, under the scheduler lock) with
/// 10,000 sessions holding 20,000 live tasks of one shared job: what it wants
/// to claim, and giving back (a lease lapsed here, so the round scans every
/// live task for what still holds its chunk).
fn claim_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("cluster_claim_round_10k_sessions");
    let t0 = Instant::now();
    let mut s = idle_pool(None);
    let mut shared = job("shared", "chain", 1_000_000);
    shared.shared = true;
    shared.max_per_task = 1;
    s.add_job(shared);
    s.grant("shared", 0..20_000);
    let leased = s.poll_assignments(t0);
    assert_eq!(leased.len(), 20_000);
    g.bench_function("wanted", |b| {
        b.iter(|| assert_eq!(s.wanted(16, 1024, t0).len(), 1))
    });
    // One lapsed statement keeps the give-back scanning every round (its
    // chunk stays held by live tasks, so it is never given back).
    let lapsed = &leased[0];
    s.remove_session(lapsed.session);
    let later = t0 + Duration::from_secs(1);
    g.bench_function("give_back_scan", |b| {
        b.iter(|| {
            assert!(s
                .give_back(16, later, Duration::from_secs(3), true)
                .is_empty())
        })
    });
    g.finish();
}

criterion_group!(benches, bench, claim_round);
criterion_main!(benches);
