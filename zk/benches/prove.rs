//! Bare ark-groth16 proving of the built-in circuits: the baseline the miner's
//! end-to-end throughput is compared against (see BENCHMARKS.md).
use criterion::{criterion_group, criterion_main, Criterion};

use zk::{circuits::DEFAULT_CHAIN_STEPS, CircuitKeys, CircuitSpec, Fr};

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
        let s = match spec {
            CircuitSpec::Chain { steps } => CircuitSpec::chain_statement(steps, 0, Fr::from(1u64)),
            CircuitSpec::Preimage => CircuitSpec::preimage_statement(Fr::from(1u64)),
        };
        g.bench_function(
            format!("{}/{}-constraints", spec.name(), spec.constraints()),
            |b| b.iter(|| keys.prove(&s).unwrap()),
        );
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 1).unwrap();
    let s = CircuitSpec::preimage_statement(Fr::from(1u64));
    let p = keys.prove(&s).unwrap();
    c.bench_function("verify/one-proof-validated", |b| {
        b.iter(|| keys.verifier.verify(&s.public, &p).unwrap())
    });
}

criterion_group!(benches, prove, verify);
criterion_main!(benches);
