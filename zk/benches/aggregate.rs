//! SnarkPack aggregation against batch verification of the same proofs, in one run:
//! aggregate time, aggregate size, verification of the aggregate (in memory, and
//! from its bytes with every element validated), and `zk::batch` on the proofs.
//! Run: `cargo bench -p zkpool-zk --bench aggregate`.
//!
//! Proofs of the `preimage` circuit: 64 proven, each re-randomised into 16 distinct
//! valid proofs of the same statement (aggregation and verification cost do not
//! depend on the circuit beyond its number of public inputs).
use ark_ec::CurveGroup;
use ark_ff::{Field, UniformRand};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{rngs::StdRng, SeedableRng};
use zk::{
    aggregate::{aggregate, verify_aggregate, AggregateProof, Srs},
    CircuitKeys, CircuitSpec, Fr, ProofBytes,
};

fn proofs(keys: &CircuitKeys, n: usize) -> Vec<(Vec<Fr>, ProofBytes)> {
    let fresh: Vec<(Vec<Fr>, ProofBytes)> = (0..64u64)
        .map(|i| {
            let s = CircuitSpec::preimage_statement(Fr::from(i + 1));
            let p = keys.prove(&s).unwrap();
            (s.public, p)
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(1);
    let delta = keys.verifier.vk.delta_g2;
    (0..n)
        .map(|i| {
            let (x, p) = &fresh[i % fresh.len()];
            let p = p.decode().unwrap();
            let (s, t) = (Fr::rand(&mut rng), Fr::rand(&mut rng));
            let p = ark_groth16::Proof {
                a: (p.a * s.inverse().unwrap()).into_affine(),
                b: (p.b * s + delta * (s * t)).into_affine(),
                c: (p.c + p.a * t).into_affine(),
            };
            (x.clone(), ProofBytes::encode(&p))
        })
        .collect()
}

fn aggregation(c: &mut Criterion) {
    let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 2).unwrap();
    let all = proofs(&keys, 1024);
    let srs = Srs::insecure_for_tests(1024);
    let mut g = c.benchmark_group("aggregate");
    g.sample_size(10);
    for n in [16usize, 256, 1024] {
        let items = &all[..n];
        let publics: Vec<Vec<Fr>> = items.iter().map(|(x, _)| x.clone()).collect();
        let agg = aggregate(&srs, &keys.verifier, items).unwrap();
        let bytes = agg.to_bytes();
        eprintln!(
            "aggregate of {n} proofs: {} bytes ({} bytes of proofs compressed)",
            bytes.len(),
            128 * n
        );
        g.bench_with_input(BenchmarkId::new("aggregate", n), items, |b, items| {
            b.iter(|| aggregate(&srs, &keys.verifier, items).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("verify", n), &agg, |b, agg| {
            b.iter(|| verify_aggregate(srs.verifier_key(), &keys.verifier, &publics, agg).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("decode+verify", n), &bytes, |b, bytes| {
            b.iter(|| {
                let agg = AggregateProof::from_bytes(bytes).unwrap();
                verify_aggregate(srs.verifier_key(), &keys.verifier, &publics, &agg).unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("batch-verify", n), items, |b, items| {
            b.iter(|| assert!(keys.verifier.verify_batch(items).iter().all(Result::is_ok)))
        });
    }
    g.finish();
}

criterion_group!(benches, aggregation);
criterion_main!(benches);
