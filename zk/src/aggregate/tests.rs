//! Tests of the internals: every part of an in-memory aggregate is bound by the
//! verifier, a prover that skips its input check still cannot get invalid proofs
//! (or proofs hidden in the padding) past the verifier, and the fixture ceremonies'
//! powers are powers.

use ark_bn254::{Bn254, Fq12, G1Affine, G2Affine};
use ark_ec::{pairing::Pairing, AffineRepr, CurveGroup};
use ark_groth16::Proof;

use super::*;
use crate::{CircuitKeys, CircuitSpec, Fr};

struct Setup {
    keys: CircuitKeys,
    other: CircuitKeys,
    srs: Srs,
    /// Statements 1..=6 and their proofs.
    publics: Vec<Vec<Fr>>,
    proofs: Vec<Proof<Bn254>>,
}

fn setup() -> &'static Setup {
    static SETUP: std::sync::OnceLock<Setup> = std::sync::OnceLock::new();
    SETUP.get_or_init(|| {
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 11).unwrap();
        let other = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 12).unwrap();
        let (publics, proofs) = (1..=6u64)
            .map(|i| {
                let s = CircuitSpec::preimage_statement(Fr::from(i));
                let p = keys.prove(&s).unwrap().decode().unwrap();
                (s.public, p)
            })
            .unzip();
        Setup {
            keys,
            other,
            srs: Srs::insecure_for_tests(8),
            publics,
            proofs,
        }
    })
}

fn check(s: &Setup, n: usize, agg: &AggregateProof) -> Result<(), AggregateError> {
    verify_aggregate(s.srs.verifier_key(), &s.keys.verifier, &s.publics[..n], agg)
}

fn unchecked(s: &Setup, n: usize, proofs: &[Proof<Bn254>]) -> AggregateProof {
    let publics: Vec<&[Fr]> = s.publics[..n].iter().map(Vec::as_slice).collect();
    prover::prove(&s.srs, &s.keys.verifier, &publics, proofs, false).unwrap()
}

#[test]
fn every_part_of_an_aggregate_is_bound() {
    let s = setup();
    let agg = unchecked(s, 3, &s.proofs[..3]);
    check(s, 3, &agg).unwrap();
    // Change one element at a time to another valid element of its group.
    let gt = |g: &mut Fq12| *g *= Bn254::pairing(G1Affine::generator(), G2Affine::generator()).0;
    let g1 = |p: &mut G1Affine| *p = (*p + G1Affine::generator()).into_affine();
    let g2 = |p: &mut G2Affine| *p = (*p + G2Affine::generator()).into_affine();
    type Change = Box<dyn Fn(&mut AggregateProof)>;
    let mut changes: Vec<(String, Change)> = vec![
        ("com_ab.0".into(), Box::new(move |a| gt(&mut a.com_ab[0]))),
        ("com_ab.1".into(), Box::new(move |a| gt(&mut a.com_ab[1]))),
        ("com_c.0".into(), Box::new(move |a| gt(&mut a.com_c[0]))),
        ("com_c.1".into(), Box::new(move |a| gt(&mut a.com_c[1]))),
        ("z_ab".into(), Box::new(move |a| gt(&mut a.z_ab))),
        ("z_c".into(), Box::new(move |a| g1(&mut a.z_c))),
        ("a".into(), Box::new(move |a| g1(&mut a.last.a))),
        ("b".into(), Box::new(move |a| g2(&mut a.last.b))),
        ("c".into(), Box::new(move |a| g1(&mut a.last.c))),
    ];
    for k in 0..2 {
        changes.push((format!("v.{k}"), Box::new(move |a| g2(&mut a.last.v[k]))));
        changes.push((format!("w.{k}"), Box::new(move |a| g1(&mut a.last.w[k]))));
        changes.push((
            format!("open_v.{k}"),
            Box::new(move |a| g2(&mut a.last.open_v[k])),
        ));
        changes.push((
            format!("open_w.{k}"),
            Box::new(move |a| g1(&mut a.last.open_w[k])),
        ));
    }
    for j in 0..agg.rounds.len() {
        for k in 0..2 {
            changes.push((
                format!("round {j} tipp_l.{k}"),
                Box::new(move |a| gt(&mut a.rounds[j].tipp_l[k])),
            ));
            changes.push((
                format!("round {j} tipp_r.{k}"),
                Box::new(move |a| gt(&mut a.rounds[j].tipp_r[k])),
            ));
            changes.push((
                format!("round {j} mipp_l.{k}"),
                Box::new(move |a| gt(&mut a.rounds[j].mipp_l[k])),
            ));
            changes.push((
                format!("round {j} mipp_r.{k}"),
                Box::new(move |a| gt(&mut a.rounds[j].mipp_r[k])),
            ));
        }
        changes.push((
            format!("round {j} z_ab_l"),
            Box::new(move |a| gt(&mut a.rounds[j].z_ab_l)),
        ));
        changes.push((
            format!("round {j} z_ab_r"),
            Box::new(move |a| gt(&mut a.rounds[j].z_ab_r)),
        ));
        changes.push((
            format!("round {j} z_c_l"),
            Box::new(move |a| g1(&mut a.rounds[j].z_c_l)),
        ));
        changes.push((
            format!("round {j} z_c_r"),
            Box::new(move |a| g1(&mut a.rounds[j].z_c_r)),
        ));
    }
    assert_eq!(changes.len(), 5 + 1 + 3 + 8 + 12 * agg.rounds.len());
    for (name, change) in &changes {
        let mut bad = agg.clone();
        change(&mut bad);
        assert_eq!(check(s, 3, &bad), Err(AggregateError::Invalid), "{name}");
        // And through the bytes, where the change is a valid encoding.
        let back = AggregateProof::from_bytes(&bad.to_bytes()).unwrap();
        assert_eq!(check(s, 3, &back), Err(AggregateError::Invalid), "{name}");
    }
    // A round dropped or added.
    let mut fewer = agg.clone();
    fewer.rounds.pop();
    assert!(matches!(
        check(s, 3, &fewer),
        Err(AggregateError::Malformed(_))
    ));
}

#[test]
fn an_unchecked_prover_cannot_pass_off_invalid_proofs() {
    let s = setup();
    // Proofs under another key of the same circuit.
    let theirs: Vec<Proof<Bn254>> = (1..=4u64)
        .map(|i| {
            let st = CircuitSpec::preimage_statement(Fr::from(i));
            s.other.prove(&st).unwrap().decode().unwrap()
        })
        .collect();
    let agg = unchecked(s, 4, &theirs);
    assert_eq!(check(s, 4, &agg), Err(AggregateError::Invalid));
    // One proof of the wrong statement among good ones, at each position.
    for bad in 0..5 {
        let mut proofs = s.proofs[..5].to_vec();
        proofs[bad] = s.proofs[5].clone();
        assert_eq!(
            check(s, 5, &unchecked(s, 5, &proofs)),
            Err(AggregateError::Invalid),
            "bad proof at {bad}"
        );
    }
}

#[test]
fn the_padding_neither_hides_a_bad_proof_nor_takes_anything_but_the_identity() {
    let s = setup();
    // Statements 1..=3 (padded to 4): the good proof of statement 3 sits in the
    // padding slot, a proof of statement 6 in its place.
    let proofs = [
        s.proofs[0].clone(),
        s.proofs[1].clone(),
        s.proofs[5].clone(),
        s.proofs[2].clone(),
    ];
    assert_eq!(
        check(s, 3, &unchecked(s, 3, &proofs)),
        Err(AggregateError::Invalid)
    );
    // Good proofs, and a valid proof (of statement 4) in the padding slot: the
    // verifier counts no statement there, so it does not balance.
    let mut proofs = s.proofs[..4].to_vec();
    assert_eq!(
        check(s, 3, &unchecked(s, 3, &proofs)),
        Err(AggregateError::Invalid)
    );
    // The identity in the slot (what `aggregate` puts there) verifies.
    proofs[3] = Proof {
        a: G1Affine::zero(),
        b: G2Affine::zero(),
        c: G1Affine::zero(),
    };
    check(s, 3, &unchecked(s, 3, &proofs)).unwrap();
    check(s, 3, &unchecked(s, 3, &proofs[..3])).unwrap();
}

#[test]
fn the_fixture_ceremonies_hold_consecutive_powers() {
    for (name, bytes) in [
        (
            "a",
            &include_bytes!("../../tests/fixtures/ptau/ceremony_a.ptau")[..],
        ),
        (
            "b",
            &include_bytes!("../../tests/fixtures/ptau/ceremony_b.ptau")[..],
        ),
    ] {
        let p = ptau::read_powers(&mut &bytes[..], name, 63, 32).unwrap();
        assert_eq!((p.g1.len(), p.g2.len()), (63, 32));
        let (g, h) = (p.g1[0], p.g2[0]);
        assert_eq!((g, h), (G1Affine::generator(), G2Affine::generator()));
        // e(tau^i g, tau h) = e(tau^(i+1) g, h) for every G1 power ...
        for i in 0..p.g1.len() - 1 {
            assert_eq!(
                Bn254::pairing(p.g1[i], p.g2[1]),
                Bn254::pairing(p.g1[i + 1], h),
                "ceremony {name}, G1 power {i}"
            );
        }
        // ... and e(tau g, tau^i h) = e(g, tau^(i+1) h) for every G2 power.
        for i in 0..p.g2.len() - 1 {
            assert_eq!(
                Bn254::pairing(p.g1[1], p.g2[i]),
                Bn254::pairing(g, p.g2[i + 1]),
                "ceremony {name}, G2 power {i}"
            );
        }
        // Asking for one power more than the file has is refused.
        let e = ptau::read_powers(&mut &bytes[..], name, 64, 32)
            .err()
            .unwrap();
        assert!(e.to_string().contains("63 G1 powers"), "{e}");
    }
}
