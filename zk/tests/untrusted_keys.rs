//! Every reader of an untrusted key (snarkjs `verification_key.json`, gnark
//! `VerifyingKey.WriteTo`, arkworks' compressed key, a circom upload's zkey) is fed
//! degenerate and random keys: none is accepted. A degenerate key is one a forger
//! can make to accept proofs nobody computed; each kind below is one the review
//! of issue 12 (or the Groth16 literature) names.

use ark_bn254::{Bn254, G1Affine, G2Affine};
use ark_ec::{AffineRepr, CurveGroup};
use ark_groth16::{Proof, ProvingKey, VerifyingKey};
use ark_serialize::CanonicalSerialize;
use proptest::prelude::*;
use serde_json::{json, Value};
use zk::{
    circom::CircomCircuit, gnark, snarkjs, CircuitKeys, CircuitSpec, Fr, KeyError, ProofBytes,
    VerifierKey,
};

const R1CS: &[u8] = include_bytes!("fixtures/circom/mul.r1cs");
const WASM: &[u8] = include_bytes!("fixtures/circom/mul.wasm");
const ZKEY: &[u8] = include_bytes!("fixtures/circom/mul.zkey");
const GNARK_VK: &[u8] = include_bytes!("fixtures/gnark/vk.bin");

fn good_vk() -> VerifyingKey<Bn254> {
    // Three public inputs: room for repeated and opposite input points.
    CircuitKeys::setup_seeded(CircuitSpec::Chain { steps: 1 }, 7)
        .unwrap()
        .verifier
        .vk
}

/// The ways a verifying key can be degenerate, applied to a real key.
#[derive(Debug, Clone, Copy)]
enum Degenerate {
    AlphaZero,
    BetaZero,
    GammaZero,
    DeltaZero,
    DeltaIsGamma,
    InputZero(usize),
    InputRepeated(usize),
    InputNegated(usize),
}

fn degenerate() -> impl Strategy<Value = Degenerate> {
    prop_oneof![
        Just(Degenerate::AlphaZero),
        Just(Degenerate::BetaZero),
        Just(Degenerate::GammaZero),
        Just(Degenerate::DeltaZero),
        Just(Degenerate::DeltaIsGamma),
        (0usize..4).prop_map(Degenerate::InputZero),
        (1usize..4).prop_map(Degenerate::InputRepeated),
        (1usize..4).prop_map(Degenerate::InputNegated),
    ]
}

fn apply(vk: &mut VerifyingKey<Bn254>, d: Degenerate) {
    match d {
        Degenerate::AlphaZero => vk.alpha_g1 = G1Affine::zero(),
        Degenerate::BetaZero => vk.beta_g2 = G2Affine::zero(),
        Degenerate::GammaZero => vk.gamma_g2 = G2Affine::zero(),
        Degenerate::DeltaZero => vk.delta_g2 = G2Affine::zero(),
        Degenerate::DeltaIsGamma => vk.delta_g2 = vk.gamma_g2,
        Degenerate::InputZero(i) => vk.gamma_abc_g1[i] = G1Affine::zero(),
        Degenerate::InputRepeated(i) => vk.gamma_abc_g1[i] = vk.gamma_abc_g1[i - 1],
        Degenerate::InputNegated(i) => vk.gamma_abc_g1[i] = -vk.gamma_abc_g1[i - 1],
    }
}

fn compressed(vk: &VerifyingKey<Bn254>) -> Vec<u8> {
    let mut out = vec![];
    vk.serialize_compressed(&mut out).unwrap();
    out
}

/// snarkjs JSON for any key, degenerate ones included (the crate's writer takes
/// only keys that passed its checks).
fn snarkjs_json(vk: &VerifyingKey<Bn254>) -> Value {
    fn fq(x: &ark_bn254::Fq) -> String {
        x.to_string()
    }
    fn g1(p: &G1Affine) -> Value {
        match p.xy() {
            Some((x, y)) => json!([fq(&x), fq(&y), "1"]),
            None => json!(["0", "1", "0"]),
        }
    }
    fn g2(p: &G2Affine) -> Value {
        match p.xy() {
            Some((x, y)) => json!([[fq(&x.c0), fq(&x.c1)], [fq(&y.c0), fq(&y.c1)], ["1", "0"]]),
            None => json!([["0", "0"], ["1", "0"], ["0", "0"]]),
        }
    }
    json!({
        "protocol": "groth16", "curve": "bn128",
        "nPublic": vk.gamma_abc_g1.len() - 1,
        "vk_alpha_1": g1(&vk.alpha_g1), "vk_beta_2": g2(&vk.beta_g2),
        "vk_gamma_2": g2(&vk.gamma_g2), "vk_delta_2": g2(&vk.delta_g2),
        "IC": vk.gamma_abc_g1.iter().map(g1).collect::<Vec<_>>(),
    })
}

#[test]
fn the_real_keys_pass_every_reader() {
    let vk = good_vk();
    VerifierKey::from_bytes(&compressed(&vk)).unwrap();
    snarkjs::vk_from_json(&snarkjs_json(&vk)).unwrap();
    gnark::decode_vk(GNARK_VK).unwrap();
    let (c, pk) = CircomCircuit::load(R1CS, WASM, ZKEY).unwrap();
    CircomCircuit::check_proving_key(&pk).unwrap();
    let usage = c.self_test(&pk, &json!({"a": "3", "b": "11"})).unwrap();
    assert!(usage.fuel > 0 && usage.memory > 0, "{usage:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Each degenerate kind, through the arkworks and snarkjs readers.
    #[test]
    fn degenerate_verifying_keys_are_refused_by_every_reader(d in degenerate()) {
        let mut vk = good_vk();
        apply(&mut vk, d);
        let e = VerifierKey::from_bytes(&compressed(&vk)).unwrap_err();
        prop_assert!(matches!(e, KeyError::Degenerate(_)), "{d:?}: {e}");
        let e = snarkjs::vk_from_json(&snarkjs_json(&vk)).unwrap_err().to_string();
        prop_assert!(e.contains("degenerate"), "{d:?}: {e}");
        prop_assert!(VerifierKey::new(vk).is_err());
    }

    /// Random bytes and random JSON never make a key (and never panic).
    #[test]
    fn random_keys_are_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..800),
        numbers in proptest::collection::vec("[0-9]{1,78}", 12..20),
    ) {
        prop_assert!(VerifierKey::from_bytes(&bytes).is_err());
        prop_assert!(gnark::decode_vk(&bytes).is_err());
        let n = |i: usize| numbers[i % numbers.len()].clone();
        let g2 = |i: usize| json!([[n(i), n(i + 1)], [n(i + 2), n(i + 3)], ["1", "0"]]);
        let v = json!({"protocol": "groth16", "curve": "bn128",
            "vk_alpha_1": [n(0), n(1), "1"], "vk_beta_2": g2(2), "vk_gamma_2": g2(6),
            "vk_delta_2": g2(10), "IC": [[n(3), n(4), "1"], [n(5), n(7), "1"]]});
        prop_assert!(snarkjs::vk_from_json(&v).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A zkey with bytes changed anywhere is refused, or is (by the checks that
    /// registration runs) the very same key: a changed key is never taken.
    #[test]
    fn a_changed_zkey_is_never_accepted_as_another_key(
        flips in proptest::collection::vec((0usize..1 << 20, 1u8..=255), 1..4),
        random in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        prop_assert!(zk::circom::Zkey::parse(&random).is_err());
        let (_, good) = CircomCircuit::load(R1CS, WASM, ZKEY).unwrap();
        let mut bent = ZKEY.to_vec();
        for (at, x) in &flips {
            let i = at % bent.len();
            bent[i] ^= x;
        }
        let sample = json!({"a": "3", "b": "11"});
        let accepted = CircomCircuit::load(R1CS, WASM, &bent)
            .ok()
            .filter(|(_, pk)| CircomCircuit::check_proving_key(pk).is_ok())
            .filter(|(c, pk)| c.self_test(pk, &sample).is_ok());
        if let Some((_, pk)) = accepted {
            prop_assert!(pk == good, "a changed zkey was accepted as a different key");
        }
    }
}

/// gnark's encoding: identity points (compressed infinity is flag `01`, all else
/// zero), gamma copied over delta, an input point repeated, and a G1 copy of delta
/// that is not the G2 one.
#[test]
fn degenerate_gnark_keys_are_refused() {
    let (alpha, beta2, gamma2, delta1, delta2, k0) =
        (0..32, 64..128, 128..192, 192..224, 224..288, 292..324);
    let infinity = |len: usize| {
        let mut v = vec![0u8; len];
        v[0] = 0x40;
        v
    };
    let mutate = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = GNARK_VK.to_vec();
        f(&mut b);
        gnark::decode_vk(&b).unwrap_err().to_string()
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alpha identity",
            mutate(&|b| b.splice(alpha.clone(), infinity(32)).for_each(drop)),
        ),
        (
            "beta identity",
            mutate(&|b| b.splice(beta2.clone(), infinity(64)).for_each(drop)),
        ),
        (
            "delta = gamma",
            mutate(&|b| {
                let g = b[gamma2.clone()].to_vec();
                b.splice(delta2.clone(), g).for_each(drop);
            }),
        ),
        (
            "K[1] = K[0]",
            mutate(&|b| {
                let k = b[k0.clone()].to_vec();
                b.splice(k0.end..k0.end + 32, k).for_each(drop);
            }),
        ),
        (
            "K[0] identity",
            mutate(&|b| b.splice(k0.clone(), infinity(32)).for_each(drop)),
        ),
        (
            "delta in G1 is alpha",
            mutate(&|b| {
                let a = b[alpha.clone()].to_vec();
                b.splice(delta1.clone(), a).for_each(drop);
            }),
        ),
    ];
    for (what, e) in cases {
        assert!(
            e.contains("degenerate") || e.contains("not the same scalar"),
            "{what}: {e}"
        );
    }
}

/// A circom upload's proving key is checked against its verifying key: points
/// zeroed or swapped are caught by the key check or by proving the sample.
#[test]
fn a_proving_key_that_is_not_its_verifying_keys_is_refused() {
    let (c, good) = CircomCircuit::load(R1CS, WASM, ZKEY).unwrap();
    let sample = json!({"a": "3", "b": "11"});
    let refused = |what: &str, f: &dyn Fn(&mut ProvingKey<Bn254>)| {
        let mut pk = good.clone();
        f(&mut pk);
        let e = CircomCircuit::check_proving_key(&pk)
            .and_then(|_| c.self_test(&pk, &sample).map(|_| ()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused"), "{what}: {e}");
    };
    refused("delta in G1 is beta", &|pk| pk.delta_g1 = pk.beta_g1);
    refused("delta equals gamma", &|pk| pk.vk.delta_g2 = pk.vk.gamma_g2);
    let b = good.b_g1_query.iter().position(|p| !p.is_zero()).unwrap();
    refused("a B point zeroed in G1", &|pk| {
        pk.b_g1_query[b] = G1Affine::zero()
    });
    refused("a B point doubled in G1", &|pk| {
        pk.b_g1_query[b] = (pk.b_g1_query[b] + pk.b_g1_query[b]).into_affine()
    });
    refused("an H point zeroed", &|pk| pk.h_query[0] = G1Affine::zero());
    // The points a proof of the sample uses: caught by proving it.
    for i in 0..good.a_query.len() {
        if !good.a_query[i].is_zero() {
            refused(&format!("A point {i} zeroed"), &|pk| {
                pk.a_query[i] = G1Affine::zero()
            });
        }
    }
    for j in 0..good.l_query.len() {
        refused(&format!("L point {j} zeroed"), &|pk| {
            pk.l_query[j] = G1Affine::zero()
        });
    }
}

/// A proof with an identity point is refused before any pairing, whatever key.
#[test]
fn proofs_with_identity_points_are_refused() {
    let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 3).unwrap();
    let s = CircuitSpec::preimage_statement(Fr::from(4u64));
    let good = keys.prove(&s).unwrap().decode().unwrap();
    for (name, p) in [
        (
            "A",
            Proof::<Bn254> {
                a: G1Affine::zero(),
                ..good.clone()
            },
        ),
        (
            "B",
            Proof {
                b: G2Affine::zero(),
                ..good.clone()
            },
        ),
        (
            "C",
            Proof {
                c: G1Affine::zero(),
                ..good.clone()
            },
        ),
        (
            "all",
            Proof {
                a: G1Affine::zero(),
                b: G2Affine::zero(),
                c: G1Affine::zero(),
            },
        ),
    ] {
        let bytes = ProofBytes::encode(&p);
        let e = keys
            .verifier
            .verify(&s.public, &bytes)
            .unwrap_err()
            .to_string();
        assert!(e.contains("identity point"), "{name}: {e}");
        assert!(
            keys.verifier.verify_decoded(&s.public, &p).is_err(),
            "{name}"
        );
    }
}

/// A 32-byte module whose start function loops forever is stopped by the fuel
/// bound of a circuit this small, in a fraction of a second.
#[test]
fn a_generator_that_loops_forever_is_stopped_quickly() {
    let looping: &[u8] = include_bytes!("fixtures/circom/loop.wasm");
    let t = std::time::Instant::now();
    let e = CircomCircuit::load(R1CS, looping, ZKEY)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("fuel"), "{e}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        t.elapsed()
    );
}
