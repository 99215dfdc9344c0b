//! zk benchmarks: proving the built-in circuits with ark-groth16 (the baseline,
//! and zkminer's prover with precomputation off) and with zkpool's prover
//! without and with tables (1 GiB budget), and single vs batch verification.
//! Run: `cargo bench -p zkpool-zk --bench prove`.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zk::{circuits::DEFAULT_CHAIN_STEPS, CircuitKeys, CircuitSpec, Fr, ProofBytes};

fn prove(c: &mut Criterion) {
    let mut g = c.benchmark_group("prove");
    g.sample_size(10);
    for spec in [
        CircuitSpec::Chain {
            steps: DEFAULT_CHAIN_STEPS,
        },
        CircuitSpec::Preimage,
    ] {
        let keys = CircuitKeys::setup_seeded(spec, 1).unwrap();
        // Prove with a key decoded from bytes, as a miner does.
        let bytes = keys.pk_bytes();
        let keys = CircuitKeys::from_pk_bytes(spec, &bytes, &zk::sha256_hex(&bytes)).unwrap();
        let s = match spec {
            CircuitSpec::Chain { steps } => CircuitSpec::chain_statement(steps, 0, Fr::from(1u64)),
            CircuitSpec::Preimage => CircuitSpec::preimage_statement(Fr::from(1u64)),
            CircuitSpec::Circom { .. } | CircuitSpec::VerifyOnly { .. } => {
                unreachable!("only the built-in circuits are benchmarked")
            }
        };
        let name = format!("{}/{}-constraints", spec.name(), spec.constraints());
        keys.use_arkworks();
        g.bench_function(format!("{name}/arkworks"), |b| {
            b.iter(|| keys.prove(&s).unwrap())
        });
        keys.use_engine(None);
        g.bench_function(format!("{name}/zkpool"), |b| {
            b.iter(|| keys.prove(&s).unwrap())
        });
        let hash = zk::sha256_hex(&bytes);
        let tables = zk::prover::Tables::build(&keys.pk, &hash, &keys.table_plan(1 << 30)).unwrap();
        keys.use_engine(Some(std::sync::Arc::new(tables)));
        g.bench_function(format!("{name}/zkpool-tables"), |b| {
            b.iter(|| keys.prove(&s).unwrap())
        });
        assert_eq!(keys.engine_failures(), 0);
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 2).unwrap();
    let distinct: Vec<(Vec<Fr>, ProofBytes)> = (0..64u64)
        .map(|i| {
            let s = CircuitSpec::preimage_statement(Fr::from(i));
            let p = keys.prove(&s).unwrap();
            (s.public, p)
        })
        .collect();
    let mut g = c.benchmark_group("verify");
    g.sample_size(10);
    for n in [1usize, 16, 256, 1024] {
        let items: Vec<_> = distinct.iter().cycle().take(n).cloned().collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("one-by-one", n), &items, |b, items| {
            b.iter(|| {
                items
                    .iter()
                    .all(|(x, p)| keys.verifier.verify(x, p).is_ok())
            })
        });
        g.bench_with_input(BenchmarkId::new("batch", n), &items, |b, items| {
            b.iter(|| keys.verifier.verify_batch(items).iter().all(Result::is_ok))
        });
    }
    g.finish();
}

criterion_group!(benches, prove, verify);
criterion_main!(benches);
