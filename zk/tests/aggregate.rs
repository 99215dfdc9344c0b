//! SnarkPack aggregation through the public API, with real Groth16 proofs of the
//! built-in `preimage` circuit.
//!
//! 1,024 fresh proofs would take about 20 s to prove here, so the fixture proves 16
//! distinct statements and re-randomises each proof 64 times
//! (`A/s, s B + s t delta, C + t A` is a uniformly random proof of the same
//! statement, exactly what a fresh proof is): 1,024 distinct valid proofs (that
//! `aggregate` accepts them shows they verify: it refuses proofs that do not).

use std::sync::OnceLock;

use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{Field, UniformRand};
use rand::{rngs::StdRng, SeedableRng};
use zk::{
    aggregate::{aggregate, verify_aggregate, AggregateError, AggregateProof, Srs},
    CircuitKeys, CircuitSpec, Fr, ProofBytes,
};

struct Fixture {
    keys: CircuitKeys,
    /// Another setup of the same circuit: the same shape, another key.
    other_keys: CircuitKeys,
    srs: Srs,
    items: Vec<(Vec<Fr>, ProofBytes)>,
}

const DISTINCT: u64 = 16;

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 21).unwrap();
        let other_keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 22).unwrap();
        let fresh: Vec<(Vec<Fr>, ProofBytes)> = (0..DISTINCT)
            .map(|i| {
                let s = CircuitSpec::preimage_statement(Fr::from(1000 + i));
                let p = keys.prove(&s).unwrap();
                (s.public, p)
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(5);
        let items: Vec<_> = (0..1024)
            .map(|i| {
                let (x, p) = &fresh[i % DISTINCT as usize];
                (x.clone(), rerandomise(&keys, p, &mut rng))
            })
            .collect();
        // No separate check that they verify: `aggregate` refuses proofs that do not.
        Fixture {
            keys,
            other_keys,
            srs: Srs::insecure_for_tests(1024),
            items,
        }
    })
}

fn rerandomise(keys: &CircuitKeys, p: &ProofBytes, rng: &mut StdRng) -> ProofBytes {
    let p = p.decode().unwrap();
    let (s, t) = (Fr::rand(rng), Fr::rand(rng));
    let delta = keys.verifier.vk.delta_g2;
    ProofBytes::encode(&ark_groth16::Proof {
        a: (p.a * s.inverse().unwrap()).into_affine(),
        b: (p.b * s + delta * (s * t)).into_affine(),
        c: (p.c + p.a * t).into_affine(),
    })
}

fn publics(items: &[(Vec<Fr>, ProofBytes)]) -> Vec<Vec<Fr>> {
    items.iter().map(|(x, _)| x.clone()).collect()
}

#[test]
fn aggregates_of_1_2_3_16_100_and_1024_proofs_verify_from_their_bytes() {
    let f = fixture();
    for n in [1usize, 2, 3, 16, 100, 1024] {
        let items = &f.items[..n];
        let agg = aggregate(&f.srs, &f.keys.verifier, items).unwrap();
        let bytes = agg.to_bytes();
        assert_eq!(bytes.len(), AggregateProof::encoded_len(n), "n = {n}");
        let back = AggregateProof::from_bytes(&bytes).unwrap();
        assert_eq!(back, agg);
        assert_eq!(back.statements(), n);
        verify_aggregate(
            f.srs.verifier_key(),
            &f.keys.verifier,
            &publics(items),
            &back,
        )
        .unwrap_or_else(|e| panic!("n = {n}: {e}"));
    }
    // 1,024 proofs: 21,354 bytes, against 131,072 for the proofs themselves.
    assert_eq!(AggregateProof::encoded_len(1024), 21_354);
}

#[test]
fn the_aggregate_checks_statements_in_their_order_and_number() {
    let f = fixture();
    let items = &f.items[..5];
    let agg = aggregate(&f.srs, &f.keys.verifier, items).unwrap();
    let vk = f.srs.verifier_key();
    let mut x = publics(items);
    x.swap(1, 2);
    assert_eq!(
        verify_aggregate(vk, &f.keys.verifier, &x, &agg),
        Err(AggregateError::Invalid)
    );
    assert_eq!(
        verify_aggregate(vk, &f.keys.verifier, &publics(&items[..4]), &agg),
        Err(AggregateError::StatementCount {
            aggregated: 5,
            given: 4
        })
    );
    assert_eq!(
        verify_aggregate(vk, &f.keys.verifier, &[], &agg),
        Err(AggregateError::Empty)
    );
    let mut x = publics(items);
    x[3].push(Fr::from(1u64));
    assert_eq!(
        verify_aggregate(vk, &f.keys.verifier, &x, &agg),
        Err(AggregateError::InputCount {
            index: 3,
            expected: 1,
            got: 2
        })
    );
}

#[test]
fn proofs_of_another_key_are_not_aggregated_and_an_aggregate_holds_only_for_its_key() {
    let f = fixture();
    let s = CircuitSpec::preimage_statement(Fr::from(7u64));
    let other_proof = f.other_keys.prove(&s).unwrap();
    // All of another key's proofs, or one among ours: refused before any round.
    let theirs = vec![(s.public.clone(), other_proof.clone()); 3];
    assert_eq!(
        aggregate(&f.srs, &f.keys.verifier, &theirs),
        Err(AggregateError::ProofsDoNotVerify)
    );
    let mut mixed = f.items[..4].to_vec();
    mixed[2] = (s.public.clone(), other_proof);
    assert_eq!(
        aggregate(&f.srs, &f.keys.verifier, &mixed),
        Err(AggregateError::ProofsDoNotVerify)
    );
    // Their own aggregate verifies under their key only.
    let agg = aggregate(&f.srs, &f.other_keys.verifier, &theirs).unwrap();
    let x = publics(&theirs);
    verify_aggregate(f.srs.verifier_key(), &f.other_keys.verifier, &x, &agg).unwrap();
    assert_eq!(
        verify_aggregate(f.srs.verifier_key(), &f.keys.verifier, &x, &agg),
        Err(AggregateError::Invalid)
    );
    // A key of the chain circuit (three inputs) cannot even read the statements.
    let chain = CircuitKeys::setup_seeded(CircuitSpec::Chain { steps: 1 }, 3).unwrap();
    assert!(matches!(
        verify_aggregate(f.srs.verifier_key(), &chain.verifier, &x, &agg),
        Err(AggregateError::InputCount { index: 0, .. })
    ));
}

#[test]
fn bad_input_is_refused_with_its_reason() {
    let f = fixture();
    assert_eq!(
        aggregate(&f.srs, &f.keys.verifier, &[]),
        Err(AggregateError::Empty)
    );
    let small = Srs::insecure_for_tests(4);
    assert_eq!(
        aggregate(&small, &f.keys.verifier, &f.items[..5]),
        Err(AggregateError::TooMany { n: 5, max: 4 })
    );
    let mut items = f.items[..3].to_vec();
    items[1].1 = ProofBytes(vec![0xAB; 128]);
    assert!(matches!(
        aggregate(&f.srs, &f.keys.verifier, &items),
        Err(AggregateError::MalformedProof { index: 1, .. })
    ));
    let mut items = f.items[..3].to_vec();
    items[2].0.clear();
    assert_eq!(
        aggregate(&f.srs, &f.keys.verifier, &items),
        Err(AggregateError::InputCount {
            index: 2,
            expected: 1,
            got: 0
        })
    );
}

#[test]
fn an_aggregate_verifies_only_under_the_srs_it_was_made_with() {
    let f = fixture();
    let ptau = ptau_srs(16).unwrap();
    let items = &f.items[..16];
    let agg = aggregate(&ptau, &f.keys.verifier, items).unwrap();
    let x = publics(items);
    verify_aggregate(ptau.verifier_key(), &f.keys.verifier, &x, &agg).unwrap();
    assert_eq!(
        verify_aggregate(f.srs.verifier_key(), &f.keys.verifier, &x, &agg),
        Err(AggregateError::Invalid)
    );
    let ours = aggregate(&f.srs, &f.keys.verifier, items).unwrap();
    assert_eq!(
        verify_aggregate(ptau.verifier_key(), &f.keys.verifier, &x, &ours),
        Err(AggregateError::Invalid)
    );
}

// ---- The SRS from two snarkjs ceremonies ----

const CEREMONY_A: &[u8] = include_bytes!("fixtures/ptau/ceremony_a.ptau");
const CEREMONY_B: &[u8] = include_bytes!("fixtures/ptau/ceremony_b.ptau");

fn ptau_srs(max_n: usize) -> Result<Srs, AggregateError> {
    Srs::from_ptau(
        &mut &CEREMONY_A[..],
        "ceremony_a.ptau",
        &mut &CEREMONY_B[..],
        "ceremony_b.ptau",
        max_n,
    )
}

#[test]
fn two_ceremonies_make_an_srs_and_the_insecure_one_says_what_it_is() {
    let srs = ptau_srs(16).unwrap();
    assert_eq!(srs.max_n(), 16);
    let vk = srs.verifier_key();
    assert!(!vk.is_insecure());
    assert!(!format!("{vk:?}").contains("INSECURE"));
    let back = zk::aggregate::SrsVerifierKey::from_bytes(&vk.to_bytes()).unwrap();
    assert_eq!(&back, vk);
    assert_eq!(back.id_hex(), zk::sha256_hex(&vk.to_bytes()));

    let insecure = Srs::insecure_for_tests(2);
    assert!(insecure.verifier_key().is_insecure());
    assert!(format!("{insecure:?}").contains("INSECURE"));
    let back =
        zk::aggregate::SrsVerifierKey::from_bytes(&insecure.verifier_key().to_bytes()).unwrap();
    assert!(back.is_insecure() && format!("{back:?}").contains("INSECURE"));

    // Every flipped byte of a verifier key is refused.
    let bytes = vk.to_bytes();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(
            zk::aggregate::SrsVerifierKey::from_bytes(&bad).is_err(),
            "flip at byte {i} accepted"
        );
    }
}

#[test]
fn unusable_ptau_files_are_refused_naming_the_file_and_the_problem() {
    let err = |a: &[u8], b: &[u8], max_n: usize| -> String {
        Srs::from_ptau(&mut &a[..], "a.ptau", &mut &b[..], "b.ptau", max_n)
            .unwrap_err()
            .to_string()
    };
    let expect = |got: String, file: &str, words: &str| {
        assert!(
            got.starts_with(file) && got.contains(words) || got.contains(words) && file.is_empty(),
            "expected {file:?} and {words:?} in {got:?}"
        )
    };
    // Too small a ceremony: power 5 supports 16.
    expect(err(CEREMONY_A, CEREMONY_B, 32), "a.ptau", "needed");
    // The same ceremony twice.
    expect(err(CEREMONY_A, CEREMONY_A, 4), "", "same secret");
    // Truncated anywhere: in the header, inside section 2 or 3, in a later section.
    for cut in [0, 3, 11, 30, 100, 2_000, 5_000, 9_000, CEREMONY_B.len() - 1] {
        expect(
            err(CEREMONY_A, &CEREMONY_B[..cut], 4),
            "b.ptau",
            "truncated",
        );
    }
    // Trailing bytes, another magic, another version, garbage.
    let mut long = CEREMONY_B.to_vec();
    long.push(0);
    expect(err(CEREMONY_A, &long, 4), "b.ptau", "after the last");
    let mut magic = CEREMONY_A.to_vec();
    magic[..4].copy_from_slice(b"zkey");
    expect(err(&magic, CEREMONY_B, 4), "a.ptau", "not a .ptau file");
    let mut version = CEREMONY_A.to_vec();
    version[4] = 2;
    expect(err(&version, CEREMONY_B, 4), "a.ptau", "version 2");
    expect(
        err(&[0x5a; 5000], CEREMONY_B, 4),
        "a.ptau",
        "not a .ptau file",
    );
    // Another curve's field in the header.
    let mut field = CEREMONY_A.to_vec();
    field[28] ^= 1; // a byte of the modulus (section 1 starts at 12: type, length, n8)
    expect(
        err(&field, CEREMONY_B, 4),
        "a.ptau",
        "not BN254's base field",
    );
    // A G1 power changed: off the curve.
    let g1_start = 12 + 12 + 44 + 12;
    let mut bad = CEREMONY_A.to_vec();
    bad[g1_start + 64 * 3 + 5] ^= 0x10;
    expect(err(&bad, CEREMONY_B, 4), "a.ptau", "G1 power 3");
    // The first power is not the generator.
    let mut bad = CEREMONY_A.to_vec();
    bad.copy_within(g1_start + 64..g1_start + 128, g1_start);
    expect(err(&bad, CEREMONY_B, 4), "a.ptau", "standard generators");
    // A power that is on the curve but not the next power: swap two G1 powers.
    let mut swapped = CEREMONY_B.to_vec();
    let (p2, p3) = (g1_start + 64 * 2, g1_start + 64 * 3);
    let tmp: Vec<u8> = swapped[p2..p2 + 64].to_vec();
    swapped.copy_within(p3..p3 + 64, p2);
    swapped[p3..p3 + 64].copy_from_slice(&tmp);
    expect(
        err(CEREMONY_A, &swapped, 4),
        "b.ptau",
        "not consecutive powers",
    );
    // max_n must be a power of two.
    expect(err(CEREMONY_A, CEREMONY_B, 12), "", "power of two");
}

// ---- Property tests: any change makes verification fail ----

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// The fixed aggregate of the first five proofs (padded to 8) and its bytes.
    fn five() -> &'static (AggregateProof, Vec<u8>) {
        static FIVE: OnceLock<(AggregateProof, Vec<u8>)> = OnceLock::new();
        FIVE.get_or_init(|| {
            let f = fixture();
            let agg = aggregate(&f.srs, &f.keys.verifier, &f.items[..5]).unwrap();
            let bytes = agg.to_bytes();
            (agg, bytes)
        })
    }

    fn check_bytes(bytes: &[u8]) -> Result<(), AggregateError> {
        let f = fixture();
        let agg = AggregateProof::from_bytes(bytes)?;
        verify_aggregate(
            f.srs.verifier_key(),
            &f.keys.verifier,
            &publics(&f.items[..5]),
            &agg,
        )
    }

    #[test]
    fn the_first_and_last_byte_of_every_element_matter() {
        let (_, bytes) = five();
        check_bytes(bytes).unwrap();
        // Header bytes, then both ends of every element (GT 192, G1 32, G2 64).
        let mut positions: Vec<usize> = (0..10).flat_map(|i| [i, i]).collect();
        let mut at = 10;
        let mut elements = vec![192; 5];
        elements.push(32);
        for _ in 0..3 {
            elements.extend([192; 10]);
            elements.extend([32, 32]);
        }
        elements.extend([32, 64, 32, 64, 64, 32, 32, 64, 64, 32, 32]);
        for len in elements {
            positions.extend([at, at + len - 1]);
            at += len;
        }
        assert_eq!(at, bytes.len());
        // The low bit of a first byte, the top (flag) bit of a last byte.
        for (k, i) in positions.into_iter().enumerate() {
            let mask = if k % 2 == 0 { 0x01u8 } else { 0x80 };
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            assert!(
                check_bytes(&bad).is_err(),
                "byte {i} ^ {mask:#x} still verifies"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        #[test]
        fn any_changed_byte_is_refused(at in 0usize..7466, mask in 1u8..=255) {
            let (_, bytes) = five();
            prop_assert_eq!(bytes.len(), 7466);
            let mut bad = bytes.clone();
            bad[at] ^= mask;
            prop_assert!(check_bytes(&bad).is_err());
        }

        #[test]
        fn any_truncation_or_extension_is_refused(len in 0usize..7600) {
            let (_, bytes) = five();
            prop_assume!(len != bytes.len());
            let mut other = bytes.clone();
            other.resize(len, 0);
            prop_assert!(matches!(
                AggregateProof::from_bytes(&other),
                Err(AggregateError::Malformed(_))
            ));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

        #[test]
        fn any_changed_public_input_fails(index in 0usize..5, delta in 1u64..u64::MAX) {
            let f = fixture();
            let (agg, _) = five();
            let mut x = publics(&f.items[..5]);
            x[index][0] += Fr::from(delta);
            prop_assert_eq!(
                verify_aggregate(f.srs.verifier_key(), &f.keys.verifier, &x, agg),
                Err(AggregateError::Invalid)
            );
        }

        #[test]
        fn any_changed_proof_is_refused(index in 0usize..5, swap_with in 5usize..16) {
            // A valid proof of another statement in place of proof `index`.
            let f = fixture();
            let mut items = f.items[..5].to_vec();
            items[index].1 = f.items[swap_with].1.clone();
            prop_assume!(items[index].0 != f.items[swap_with].0);
            prop_assert_eq!(
                aggregate(&f.srs, &f.keys.verifier, &items),
                Err(AggregateError::ProofsDoNotVerify)
            );
        }

        #[test]
        fn any_changed_verifying_key_fails(which in 0usize..5) {
            // Change one element of the key (or take the other setup's key whole).
            let f = fixture();
            let (agg, _) = five();
            let mut vk = f.keys.verifier.vk.clone();
            let g1 = ark_bn254::G1Affine::generator();
            let g2 = ark_bn254::G2Affine::generator();
            match which {
                0 => vk.alpha_g1 = (vk.alpha_g1 + g1).into_affine(),
                1 => vk.beta_g2 = (vk.beta_g2 + g2).into_affine(),
                2 => vk.gamma_g2 = (vk.gamma_g2 + g2).into_affine(),
                3 => vk.delta_g2 = (vk.delta_g2 + g2).into_affine(),
                _ => vk.gamma_abc_g1[1] = (vk.gamma_abc_g1[1] + g1).into_affine(),
            }
            // A key the checks refuse cannot be verified against at all; one
            // they accept must not verify the aggregate.
            if let Ok(changed) = zk::VerifierKey::new(vk) {
                prop_assert_eq!(
                    verify_aggregate(f.srs.verifier_key(), &changed, &publics(&f.items[..5]), agg),
                    Err(AggregateError::Invalid)
                );
            }
        }
    }
}
