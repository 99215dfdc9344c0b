//! Ledger throughput: durable share credits per second.
//!
//! - `credit_only`: append a credit to the journal (no flush): the CPU cost.
//! - `credit_then_flush_each`: credit, then flush before the next (one durable
//!   credit at a time: the worst case, a single miner submitting in a loop).
//! - `concurrent_64`: 64 tasks each crediting and flushing, as 64 sessions'
//!   submits do in the pool; sled writes everything pending at each flush, so
//!   concurrent flushes share the disk write (group commit).
//!
//! Every run writes to a fresh on-disk database in a temporary directory.
//! `cargo bench -p zkpool-payouts --bench ledger`

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payouts::{Ledger, Policy, ShareCredit};

static NEXT: AtomicU64 = AtomicU64::new(0);

fn credit(worker: usize) -> ShareCredit {
    let first = NEXT.fetch_add(1, Ordering::Relaxed);
    ShareCredit {
        worker: format!("miner{worker}.rig1"),
        job: "bench-job".into(),
        task: format!("t{first}"),
        first_statement: first,
        proofs: 1,
        work: 13_634,
        at_ms: 1_700_000_000_000 + first,
        escrow_only: false,
    }
}

fn open() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    (dir, Ledger::open(&db).unwrap())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let policy = Policy::default();
    let mut g = c.benchmark_group("ledger");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));

    let (_d, l) = open();
    g.bench_function("credit_only", |b| {
        b.iter(|| l.credit(&credit(0), &policy).unwrap())
    });

    let (_d, l) = open();
    g.bench_function("credit_then_flush_each", |b| {
        b.iter(|| {
            l.credit(&credit(0), &policy).unwrap();
            rt.block_on(l.flush()).unwrap();
        })
    });

    {
        let tasks = 64usize;
        let (_d, l) = open();
        g.bench_with_input(
            BenchmarkId::new("concurrent", tasks),
            &tasks,
            |b, &tasks| {
                b.iter_custom(|iters| {
                    // `iters` durable credits spread over `tasks` tasks.
                    let per = (iters as usize).div_ceil(tasks);
                    let started = Instant::now();
                    rt.block_on(async {
                        let mut hs = vec![];
                        for t in 0..tasks {
                            let l = l.clone();
                            hs.push(tokio::spawn(async move {
                                for _ in 0..per {
                                    let c = credit(t);
                                    let l2 = l.clone();
                                    tokio::task::spawn_blocking(move || {
                                        l2.credit(&c, &Policy::default()).unwrap()
                                    })
                                    .await
                                    .unwrap();
                                    l.flush().await.unwrap();
                                }
                            }));
                        }
                        for h in hs {
                            h.await.unwrap();
                        }
                    });
                    started
                        .elapsed()
                        .mul_f64(iters as f64 / (per * tasks) as f64)
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
