//! Differential tests: this prover against arkworks, on random circuits and
//! witnesses, with arkworks keys and snarkjs-layout keys, with and without
//! tables. With the same randomness `r`, `s` a Groth16 proof is a function of
//! the key and the witness, so the two provers must produce the same bytes.

use std::sync::Arc;

use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{AdditiveGroup, CurveGroup, VariableBaseMSM};
use ark_ff::{BigInteger, One, PrimeField, UniformRand, Zero};
use ark_groth16::{r1cs_to_qap::LibsnarkReduction, Groth16, ProvingKey};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystemRef, LinearCombination, Matrix, SynthesisError, Variable,
};
use ark_snark::SNARK;
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::msm::{self, Digits, Layout};
use super::*;
use crate::circom::qap::CircomReduction;
use crate::VerifierKey;

/// Scalars that exercise the digit code: zero, one, minus one, small and
/// small negative values, values around r/2, and random ones.
fn edge_scalars(rng: &mut StdRng, n: usize) -> Vec<Fr> {
    let half = Fr::from_bigint(msm_half()).unwrap();
    let fixed = [
        Fr::zero(),
        Fr::one(),
        -Fr::one(),
        Fr::from(2u64),
        -Fr::from(2u64),
        Fr::from(u64::MAX),
        -Fr::from(u64::MAX),
        half,
        half + Fr::one(),
        half - Fr::one(),
    ];
    (0..n)
        .map(|i| {
            if i % 3 == 0 {
                fixed[(i / 3) % fixed.len()]
            } else {
                Fr::rand(rng)
            }
        })
        .collect()
}

fn msm_half() -> ark_ff::BigInt<4> {
    let mut m = Fr::MODULUS;
    m.div2();
    m
}

#[test]
fn digits_add_up_to_the_scalar() {
    let mut rng = StdRng::seed_from_u64(1);
    let scalars = edge_scalars(&mut rng, 90);
    let big: Vec<_> = scalars.iter().map(|s| s.into_bigint()).collect();
    for c in [2, 3, 7, 12, 13, 16, 17, 20] {
        let d = Digits::new(&big, c, Layout::PointMajor);
        for (i, s) in scalars.iter().enumerate() {
            let mut sum = Fr::zero();
            for j in (0..d.windows).rev() {
                for _ in 0..c {
                    sum.double_in_place();
                }
                let code = d.codes[i * d.windows + j];
                if code != 0 {
                    let m = Fr::from((code >> 1) as u64);
                    assert!(code >> 1 <= 1 << (c - 1));
                    sum += if code & 1 == 1 { -m } else { m };
                }
            }
            assert_eq!(sum, *s, "c = {c}, scalar {i}");
        }
        let w = Digits::new(&big, c, Layout::WindowMajor);
        for i in 0..scalars.len() {
            for j in 0..d.windows {
                assert_eq!(w.codes[j * scalars.len() + i], d.codes[i * d.windows + j]);
            }
        }
    }
}

#[test]
fn msms_agree_with_arkworks_in_both_groups() {
    let mut rng = StdRng::seed_from_u64(2);
    for n in [0usize, 1, 2, 7, 100, 700] {
        let s = edge_scalars(&mut rng, n + 3);
        let big: Vec<_> = s.iter().map(|x| x.into_bigint()).collect();
        let mut g1: Vec<G1Affine> = (0..n)
            .map(|_| G1Projective::rand(&mut rng).into_affine())
            .collect();
        let g2: Vec<G2Affine> = (0..n)
            .map(|_| G2Projective::rand(&mut rng).into_affine())
            .collect();
        if n > 4 {
            // The identity, and repeated points (doublings in the buckets).
            g1[1] = G1Affine::identity();
            g1[3] = g1[2];
            g1[4] = -g1[2];
        }
        for first in [0usize, 3] {
            let want1 = G1Projective::msm_bigint(&g1, &big[first..first + n]);
            let want2 = G2Projective::msm_bigint(&g2, &big[first..first + n]);
            for c in [3u32, 8, msm::variable_window(n)] {
                let wm = Digits::new(&big, c, Layout::WindowMajor);
                assert_eq!(msm::msm_variable(&g1, &wm, first, n), want1, "n {n} c {c}");
                assert_eq!(msm::msm_variable(&g2, &wm, first, n), want2, "n {n} c {c}");
                let pm = Digits::new(&big, c, Layout::PointMajor);
                let t1 = tables::build_table(&g1, c, pm.windows);
                let t2 = tables::build_table(&g2, c, pm.windows);
                assert_eq!(msm::msm_fixed(&t1, &pm, first, n), want1, "n {n} c {c}");
                assert_eq!(msm::msm_fixed(&t2, &pm, first, n), want2, "n {n} c {c}");
                let glv = Digits::new_glv(&big, c);
                let t1 = tables::build_table(&g1, c, glv.windows);
                assert_eq!(
                    msm::msm_fixed_glv(&t1, &glv, first, n),
                    want1,
                    "GLV n {n} c {c}"
                );
            }
        }
    }
}

/// A random satisfiable R1CS: `inputs` public inputs, then constraints whose A
/// and B rows are random sparse combinations of earlier wires and whose C row
/// names one new wire, set to the product (scaled by a random coefficient).
struct RandomR1cs {
    public: usize,
    wires: usize,
    a: Matrix<Fr>,
    b: Matrix<Fr>,
    c: Matrix<Fr>,
    witness: Vec<Fr>,
}

fn random_r1cs(rng: &mut StdRng, public: usize, constraints: usize) -> RandomR1cs {
    let mut w = vec![Fr::one()];
    for _ in 0..public + 2 {
        w.push(if rng.gen_bool(0.3) {
            Fr::from(rng.gen_range(0u64..3))
        } else {
            Fr::rand(rng)
        });
    }
    let (mut a, mut b, mut c) = (vec![], vec![], vec![]);
    let row = |rng: &mut StdRng, w: &[Fr]| -> Vec<(Fr, usize)> {
        let k = rng.gen_range(0..4);
        (0..k)
            .map(|_| {
                let coef = match rng.gen_range(0..3) {
                    0 => Fr::one(),
                    1 => -Fr::one(),
                    _ => Fr::rand(rng),
                };
                (coef, rng.gen_range(0..w.len()))
            })
            .collect()
    };
    for _ in 0..constraints {
        let ra = row(rng, &w);
        let rb = row(rng, &w);
        let eval = |r: &[(Fr, usize)]| r.iter().map(|(c, i)| *c * w[*i]).sum::<Fr>();
        let product = eval(&ra) * eval(&rb);
        let k = if rng.gen_bool(0.5) {
            Fr::one()
        } else {
            Fr::rand(rng)
        };
        w.push(product / k);
        c.push(vec![(k, w.len() - 1)]);
        a.push(ra);
        b.push(rb);
    }
    RandomR1cs {
        public,
        wires: w.len(),
        a,
        b,
        c,
        witness: w,
    }
}

/// The random R1CS as arkworks constraints, wire `i` as variable `i`.
struct Replay<'a>(&'a RandomR1cs, bool);

impl ConstraintSynthesizer<Fr> for Replay<'_> {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let (r, with_values) = (self.0, self.1);
        let value = |i: usize| {
            if with_values {
                Ok(r.witness[i])
            } else {
                Err(SynthesisError::AssignmentMissing)
            }
        };
        let mut vars = vec![Variable::One];
        for i in 1..=r.public {
            vars.push(cs.new_input_variable(|| value(i))?);
        }
        for i in r.public + 1..r.wires {
            vars.push(cs.new_witness_variable(|| value(i))?);
        }
        let lc = |row: &[(Fr, usize)]| {
            LinearCombination(row.iter().map(|(c, w)| (*c, vars[*w])).collect())
        };
        for i in 0..r.a.len() {
            cs.enforce_r1cs_constraint(|| lc(&r.a[i]), || lc(&r.b[i]), || lc(&r.c[i]))?;
        }
        Ok(())
    }
}

fn tables_for(pk: &ProvingKey<Bn254>, c: u32, glv: bool) -> Tables {
    let plan = TablePlan {
        tables: BaseList::ALL
            .iter()
            .map(|&l| TableSpec::new(l, l.len_in(pk), c, glv && l != BaseList::B2))
            .collect(),
    };
    Tables::build(pk, "test", &plan).unwrap()
}

#[test]
fn random_circuits_prove_as_arkworks_does_with_both_reductions() {
    let mut rng = StdRng::seed_from_u64(3);
    for round in 0..6 {
        let public = rng.gen_range(0..4);
        let constraints = rng.gen_range(1..60);
        let r1cs = random_r1cs(&mut rng, public, constraints);
        let public_values = r1cs.witness[1..=public].to_vec();
        let (r, s) = (Fr::rand(&mut rng), Fr::rand(&mut rng));
        let inputs = public + 1;

        // arkworks' own layout and reduction.
        let (pk, vk) = Groth16::<Bn254, LibsnarkReduction>::circuit_specific_setup(
            Replay(&r1cs, false),
            &mut rng,
        )
        .unwrap();
        let want =
            Groth16::<Bn254>::create_proof_with_reduction(Replay(&r1cs, true), &pk, r, s).unwrap();
        let matrices = [r1cs.a.clone(), r1cs.b.clone(), r1cs.c.clone()];
        let verifier = VerifierKey::new(vk).unwrap();
        let c = 3 + round as u32;
        for t in [
            None,
            Some(tables_for(&pk, c, false)),
            Some(tables_for(&pk, c, true)),
        ] {
            let got = prove(
                &pk,
                t.as_ref(),
                &Relation {
                    matrices: Matrices::Libsnark {
                        matrices: &matrices,
                    },
                    num_inputs: inputs,
                    num_constraints: r1cs.a.len(),
                },
                &r1cs.witness,
                r,
                s,
            )
            .unwrap();
            assert_eq!(got, want, "round {round}, libsnark, tables {}", t.is_some());
            verifier.verify_decoded(&public_values, &got).unwrap();
        }

        // snarkjs's layout and reduction (the public signals as extra A rows).
        let (pk, vk) = Groth16::<Bn254, CircomReduction>::circuit_specific_setup(
            Replay(&r1cs, false),
            &mut rng,
        )
        .unwrap();
        let want = Groth16::<Bn254, CircomReduction>::create_proof_with_reduction_and_matrices(
            &pk,
            r,
            s,
            &matrices[..2],
            inputs,
            r1cs.a.len(),
            &r1cs.witness,
        )
        .unwrap();
        let verifier = VerifierKey::new(vk).unwrap();
        for t in [
            None,
            Some(tables_for(&pk, c, false)),
            Some(tables_for(&pk, c, true)),
        ] {
            let got = prove(
                &pk,
                t.as_ref(),
                &Relation {
                    matrices: Matrices::Circom {
                        a: &r1cs.a,
                        b: &r1cs.b,
                    },
                    num_inputs: inputs,
                    num_constraints: r1cs.a.len(),
                },
                &r1cs.witness,
                r,
                s,
            )
            .unwrap();
            assert_eq!(got, want, "round {round}, circom, tables {}", t.is_some());
            verifier.verify_decoded(&public_values, &got).unwrap();
        }
    }
}

fn mul_keys() -> CircuitKeys {
    let bundle = crate::circom::Bundle {
        r1cs: include_bytes!("../../tests/fixtures/circom/mul.r1cs"),
        wasm: include_bytes!("../../tests/fixtures/circom/mul.wasm"),
        zkey: include_bytes!("../../tests/fixtures/circom/mul.zkey"),
    }
    .encode();
    let hash = crate::sha256_hex(&bundle);
    CircuitKeys::from_pk_bytes(
        CircuitSpec::Circom {
            constraints: 5,
            public: 2,
        },
        &bundle,
        &hash,
    )
    .unwrap()
}

fn mul_statement() -> Statement {
    Statement {
        public: vec![Fr::from(3u64.pow(5) * 11), Fr::from(11u64)],
        private: vec![],
        input: Some(serde_json::json!({"a": "3", "b": "11"})),
    }
}

/// The engine on a snarkjs zkey and on built-in keys makes arkworks' proof,
/// with and without tables, through the public API.
#[test]
fn keys_prove_the_same_proof_with_either_prover() {
    let mut rng = StdRng::seed_from_u64(4);
    let mul = mul_keys();
    let preimage = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 5).unwrap();
    let chain = CircuitKeys::setup_seeded(CircuitSpec::Chain { steps: 2 }, 6).unwrap();
    let cases = [
        (&mul, mul_statement()),
        (&preimage, CircuitSpec::preimage_statement(Fr::from(7u64))),
        (&chain, CircuitSpec::chain_statement(2, 3, Fr::from(8u64))),
    ];
    for (keys, st) in cases {
        let (r, s) = (Fr::rand(&mut rng), Fr::rand(&mut rng));
        let w = keys.witness(&st).unwrap();
        let want = keys.prove_arkworks(&w, r, s).unwrap();
        keys.use_engine(None);
        let w = keys.witness(&st).unwrap();
        let full = keys.assignment(&w).unwrap();
        let got = keys.prove_engine(&full, None, r, s).unwrap();
        assert_eq!(ProofBytes::encode(&got), want, "{:?}", keys.spec);
        let t = Tables::build(&keys.pk, "k", &keys.table_plan(u64::MAX)).unwrap();
        assert_eq!(t.plan.tables.len(), 5);
        let got = keys.prove_engine(&full, Some(&t), r, s).unwrap();
        assert_eq!(ProofBytes::encode(&got), want, "{:?}", keys.spec);
        keys.use_engine(Some(Arc::new(t)));
        let p = keys.prove(&st).unwrap();
        keys.verifier.verify(&st.public, &p).unwrap();
        assert_eq!(keys.engine_failures(), 0);
    }
}

/// A table that does not belong to the key makes proofs that do not verify:
/// the prover notices, proves again with arkworks, and stops using it.
#[test]
fn a_wrong_table_is_caught_and_the_key_goes_back_to_arkworks() {
    let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 7).unwrap();
    let other = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 8).unwrap();
    let wrong = Tables::build(&other.pk, "k", &other.table_plan(u64::MAX)).unwrap();
    keys.use_engine(Some(Arc::new(wrong)));
    let st = CircuitSpec::preimage_statement(Fr::from(9u64));
    let p = keys.prove(&st).unwrap();
    keys.verifier.verify(&st.public, &p).unwrap();
    assert_eq!(keys.engine_failures(), 1);
    assert_eq!(keys.engine(), None);
    // An unsatisfiable statement is not the engine's fault.
    let other_keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 9).unwrap();
    other_keys.use_engine(None);
    let mut bad = st.clone();
    bad.private[0] += Fr::one();
    let p = other_keys.prove(&bad).unwrap();
    assert!(other_keys.verifier.verify(&bad.public, &p).is_err());
    assert_eq!(other_keys.engine_failures(), 0);
    assert_eq!(other_keys.engine(), Some(0));
}

#[test]
fn tables_files_round_trip_and_refuse_damage() {
    let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 10).unwrap();
    let plan = keys.table_plan(u64::MAX);
    let t = Tables::build(&keys.pk, "key-a", &plan).unwrap();
    let mut bytes = vec![];
    t.write(&mut bytes).unwrap();
    let back = Tables::read(&keys.pk, "key-a", &plan, &mut bytes.as_slice()).unwrap();
    assert_eq!(back.bytes(), t.bytes());
    let st = CircuitSpec::preimage_statement(Fr::from(11u64));
    keys.use_engine(Some(Arc::new(back)));
    let p = keys.prove(&st).unwrap();
    keys.verifier.verify(&st.public, &p).unwrap();
    assert_eq!(keys.engine_failures(), 0);

    let read = |b: &[u8], key: &str, plan: &TablePlan| {
        Tables::read(&keys.pk, key, plan, &mut &b[..])
            .err()
            .expect("refused")
            .to_string()
    };
    assert!(read(&bytes, "key-b", &plan).contains("key key-a"));
    let smaller = keys.table_plan(plan.bytes() / 2);
    assert!(read(&bytes, "key-a", &smaller).contains("another memory budget"));
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 4;
    let e = read(&flipped, "key-a", &plan);
    assert!(e.contains("corrupt"), "{e}");
    assert!(read(&bytes[..bytes.len() - 1], "key-a", &plan).contains("cannot read"));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(read(&longer, "key-a", &plan).contains("corrupt"));
    assert!(read(b"not a tables file at all", "key-a", &plan).contains("not a zkpool tables file"));
    // A consistent file for another key: the hash holds, the spot check does not.
    let other = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 11).unwrap();
    let e = Tables::read(&other.pk, "key-a", &plan, &mut bytes.as_slice())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("does not match the proving key"), "{e}");
}

/// A rig's circom key (read from its bundle file, without C) cannot check a
/// witness against the constraints, so when a proof of ours does not verify
/// arkworks proves it again and decides: its proof verifying means ours was
/// wrong (counted, back to arkworks); not verifying means the witness was.
#[test]
fn a_rig_without_c_tells_a_wrong_table_from_a_wrong_witness() {
    let bundle = crate::circom::Bundle {
        r1cs: include_bytes!("../../tests/fixtures/circom/mul.r1cs"),
        wasm: include_bytes!("../../tests/fixtures/circom/mul.wasm"),
        zkey: include_bytes!("../../tests/fixtures/circom/mul.zkey"),
    }
    .encode();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mul.pk");
    std::fs::write(&path, &bundle).unwrap();
    let spec = CircuitSpec::Circom {
        constraints: 5,
        public: 2,
    };
    let load = || {
        CircuitKeys::from_pk_file(
            spec,
            &path,
            &crate::sha256_hex(&bundle),
            crate::circom::witness::Engine::Compiled,
        )
        .unwrap()
    };
    let keys = load();
    assert!(keys.circom.as_ref().unwrap().r1cs.c.is_none());
    let e = CircuitKeys::from_pk_file(
        spec,
        &path,
        &"0".repeat(64),
        crate::circom::witness::Engine::Compiled,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("hash"), "{e}");
    let st = mul_statement();

    // A wrong witness: the engine is not blamed, the proof does not verify.
    keys.use_engine(None);
    let good = keys.witness(&st).unwrap();
    let mut full = good.full.clone().unwrap();
    *full.last_mut().unwrap() += Fr::one();
    let bad = Witness {
        public: good.public.clone(),
        full: Some(full),
        statement: None,
    };
    let p = keys.prove_witness(&bad).unwrap();
    assert!(keys.verifier.verify(&st.public, &p).is_err());
    assert_eq!((keys.engine_failures(), keys.engine()), (0, Some(0)));

    // A wrong table: caught, the proof made again verifies, arkworks from now on.
    let mut tampered = Tables::build(&keys.pk, "k", &keys.table_plan(u64::MAX)).unwrap();
    tampered.corrupt_for_test();
    let keys = load();
    keys.use_engine(Some(Arc::new(tampered)));
    let p = keys.prove_witness(&good).unwrap();
    keys.verifier.verify(&st.public, &p).unwrap();
    assert_eq!((keys.engine_failures(), keys.engine()), (1, None));
}
