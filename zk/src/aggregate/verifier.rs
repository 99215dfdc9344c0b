//! Verification of an aggregate, and the parts the prover shares with it (the
//! statement transcript, the aggregated Groth16 equation).
//!
//! The verifier replays the transcript, then checks, for the challenges `x_j`:
//!
//! 1. MIPP in G1: `Z_C + sum_j (x_j Z_L,j + x_j^-1 Z_R,j) = f_v(r) C`, exactly.
//! 2. Five GT equations, each `X * prod_j L_j^(x_j) R_j^(x_j^-1)` = its final pairing
//!    product (`com_AB`: `e(A, v) e(w, B)` per secret; `Z_AB`: `e(A, B)`; `com_C`:
//!    `e(C, v)` per secret); the Groth16 equation
//!    `Z_AB = e(alpha, beta)^(sum_{i<n} r^i) e(IC, gamma) e(Z_C, delta)`; and four KZG
//!    openings: the folded keys of secret `s` (`a` or `b`) are `f_v(s) h` and
//!    `F_w(s) g` (see `kzg`), checked at the point `z` against `s g` and `s h`.
//!
//! The equations of (2) are combined with fresh random 128-bit weights from the OS
//! CSPRNG into one GT multi-exponentiation on one side and one multi-Miller loop of
//! ten pairs and one final exponentiation on the other. An `AggregateProof` is made
//! only by `aggregate` or by decoding, which checks every GT element to be in the
//! prime-order subgroup, so a false equation survives the random combination with
//! probability at most 2^-128.

use ark_bn254::{Bn254, Fr, G1Affine, G1Projective};
use ark_ec::{
    pairing::{MillerLoopOutput, Pairing, PairingOutput},
    AffineRepr, CurveGroup, VariableBaseMSM,
};
use ark_ff::{batch_inversion, CyclotomicMultSubgroup, Field, One, PrimeField, Zero};
use ark_serialize::CanonicalSerialize;
use rand::{rngs::OsRng, Rng};

use super::{
    format::AggregateProof, kzg, srs::SrsVerifierKey, transcript::Transcript, AggregateError,
};
use crate::keys::VerifierKey;

type G2Prepared = <Bn254 as Pairing>::G2Prepared;

/// The transcript's protocol tag: names the scheme, the curve and this format version.
const PROTOCOL: &[u8] = b"zkpool/aggregate/snarkpack-groth16-bn254/v1";

/// Every statement must have exactly the key's number of inputs (ark-groth16 0.6
/// does not check, and the transcript framing relies on it).
pub(crate) fn check_input_counts(
    vk: &VerifierKey,
    publics: &[&[Fr]],
) -> Result<(), AggregateError> {
    let expected = vk.public_inputs();
    match publics.iter().position(|x| x.len() != expected) {
        Some(index) => Err(AggregateError::InputCount {
            index,
            expected,
            got: publics[index].len(),
        }),
        None => Ok(()),
    }
}

/// The transcript up to the commitments: tag, SRS id, Groth16 verifying key, `n`,
/// and every public input of every statement.
pub(crate) fn statement_transcript(
    srs: &SrsVerifierKey,
    vk: &VerifierKey,
    publics: &[&[Fr]],
) -> Transcript {
    let mut t = Transcript::new(PROTOCOL);
    t.absorb(b"srs", &srs.id());
    t.absorb(b"groth16 vk", &crate::keys::vk_bytes(&vk.vk));
    t.absorb_u64(b"n", publics.len() as u64);
    let mut inputs = Vec::with_capacity(publics.len() * vk.public_inputs() * 32);
    for x in publics.iter().flat_map(|x| x.iter()) {
        x.serialize_compressed(&mut inputs)
            .expect("serialising into a Vec cannot fail");
    }
    t.absorb(b"public inputs", &inputs);
    t
}

/// `1, r, r^2, ..., r^(n-1)`.
pub(crate) fn powers(r: Fr, n: usize) -> Vec<Fr> {
    std::iter::successors(Some(Fr::one()), |p| Some(*p * r))
        .take(n)
        .collect()
}

/// `sum_{i<n} r^i IC(x_i)` (one MSM over the key's `gamma_abc`) and `sum_{i<n} r^i`.
pub(crate) fn aggregated_inputs(
    vk: &VerifierKey,
    publics: &[&[Fr]],
    r_powers: &[Fr],
) -> (G1Affine, Fr) {
    let gamma_abc = &vk.vk.gamma_abc_g1;
    let mut coefficients = vec![Fr::zero(); gamma_abc.len()];
    for (ri, x) in r_powers.iter().zip(publics) {
        coefficients[0] += ri;
        for (c, xj) in coefficients[1..].iter_mut().zip(x.iter()) {
            *c += *ri * xj;
        }
    }
    let ic =
        G1Projective::msm(gamma_abc, &coefficients).expect("one coefficient per gamma_abc point");
    (ic.into_affine(), coefficients[0])
}

/// The aggregated Groth16 equation on its own (the prover's check of its inputs):
/// `Z_AB = e(alpha, beta)^sum_r e(IC, gamma) e(Z_C, delta)`.
pub(crate) fn groth16_holds(
    vk: &VerifierKey,
    ic: G1Affine,
    sum_r: Fr,
    z_ab: &ark_bn254::Fq12,
    z_c: G1Affine,
) -> bool {
    let inverse_rhs = Bn254::multi_pairing(
        [ic, z_c],
        [
            vk.pvk.gamma_g2_neg_pc.clone(),
            vk.pvk.delta_g2_neg_pc.clone(),
        ],
    );
    *z_ab * inverse_rhs.0 == vk.pvk.alpha_g1_beta_g2.cyclotomic_exp(sum_r.into_bigint())
}

/// Checks an aggregate against the statements' public inputs (one `Vec` per
/// statement, in the order they were aggregated), the Groth16 verifying key they
/// were proven under, and the SRS verifier key it was made with.
///
/// Cost: `O(n)` field operations and hashing for the public inputs, one MSM over
/// the key's `gamma_abc`, and `O(log n)` group work (one GT multi-exponentiation
/// of `6 + 10 log n` elements, one 10-pair Miller loop, one final exponentiation).
/// Decoding with [`AggregateProof::from_bytes`], which checks every GT element's
/// subgroup, costs about as much again. Figures in BENCHMARKS.md.
pub fn verify_aggregate(
    srs: &SrsVerifierKey,
    vk: &VerifierKey,
    public_inputs: &[Vec<Fr>],
    proof: &AggregateProof,
) -> Result<(), AggregateError> {
    let n = public_inputs.len();
    if n == 0 {
        return Err(AggregateError::Empty);
    }
    if proof.statements() != n {
        return Err(AggregateError::StatementCount {
            aggregated: proof.statements(),
            given: n,
        });
    }
    let n_pad = n.next_power_of_two();
    if proof.rounds.len() != n_pad.trailing_zeros() as usize {
        return Err(AggregateError::Malformed(format!(
            "{} rounds for {n} statements",
            proof.rounds.len()
        )));
    }
    let publics: Vec<&[Fr]> = public_inputs.iter().map(Vec::as_slice).collect();
    check_input_counts(vk, &publics)?;

    // Replay the transcript.
    let mut t = statement_transcript(srs, vk, &publics);
    AggregateProof::absorb_commitments(&mut t, &proof.com_ab, &proof.com_c);
    let r = t.challenge(b"r");
    AggregateProof::absorb_products(&mut t, &proof.z_ab, &proof.z_c);
    let x: Vec<Fr> = proof
        .rounds
        .iter()
        .map(|round| {
            round.absorb(&mut t);
            t.challenge(b"x")
        })
        .collect();
    let last = &proof.last;
    last.absorb_folded(&mut t);
    let z = t.challenge(b"z");
    let mut x_inv = x.clone();
    batch_inversion(&mut x_inv);
    let r_inv = r.inverse().expect("challenges are non-zero");

    // 1. MIPP's inner product, in G1: Z_C folded = f_v(r) C.
    let v_factors = kzg::v_factors(&x_inv);
    let mut bases = vec![proof.z_c, last.c];
    let mut scalars = vec![Fr::one(), -kzg::product_eval(&v_factors, r)];
    for (j, round) in proof.rounds.iter().enumerate() {
        bases.extend([round.z_c_l, round.z_c_r]);
        scalars.extend([x[j], x_inv[j]]);
    }
    if !G1Projective::msm(&bases, &scalars)
        .expect("one scalar per base")
        .is_zero()
    {
        return Err(AggregateError::Invalid);
    }

    // 2. Everything else, randomly combined.
    let (ic, sum_r) = aggregated_inputs(vk, &publics, &powers(r, n));
    let mut rng = OsRng;
    let rho: [Fr; 10] = std::array::from_fn(|_| Fr::from(rng.gen::<u128>().max(1)));
    let [r_tab, r_uab, r_zab, r_tc, r_uc, r_g16, r_kv0, r_kv1, r_kw0, r_kw1] = rho;

    // GT side: each committed value folded by the round challenges, weighted.
    let mut gt_bases: Vec<PairingOutput<Bn254>> = Vec::with_capacity(6 + 10 * x.len());
    let mut gt_scalars: Vec<Fr> = Vec::with_capacity(gt_bases.capacity());
    let mut fold =
        |start: &ark_bn254::Fq12, weight: Fr, terms: &dyn Fn(usize) -> [ark_bn254::Fq12; 2]| {
            gt_bases.push(PairingOutput(*start));
            gt_scalars.push(weight);
            for j in 0..x.len() {
                let [l, rr] = terms(j);
                gt_bases.extend([PairingOutput(l), PairingOutput(rr)]);
                gt_scalars.extend([weight * x[j], weight * x_inv[j]]);
            }
        };
    let rounds = &proof.rounds;
    fold(&proof.com_ab[0], r_tab, &|j| {
        [rounds[j].tipp_l[0], rounds[j].tipp_r[0]]
    });
    fold(&proof.com_ab[1], r_uab, &|j| {
        [rounds[j].tipp_l[1], rounds[j].tipp_r[1]]
    });
    fold(&proof.z_ab, r_zab, &|j| {
        [rounds[j].z_ab_l, rounds[j].z_ab_r]
    });
    fold(&proof.com_c[0], r_tc, &|j| {
        [rounds[j].mipp_l[0], rounds[j].mipp_r[0]]
    });
    fold(&proof.com_c[1], r_uc, &|j| {
        [rounds[j].mipp_l[1], rounds[j].mipp_r[1]]
    });
    // Groth16: Z_AB^rho * e(alpha, beta)^(-rho sum_r) = e(IC, gamma)^rho e(Z_C, delta)^rho.
    gt_bases.push(PairingOutput(proof.z_ab));
    gt_scalars.push(r_g16);
    gt_bases.push(PairingOutput(vk.pvk.alpha_g1_beta_g2));
    gt_scalars.push(-(r_g16 * sum_r));
    let lhs = PairingOutput::<Bn254>::msm(&gt_bases, &gt_scalars).expect("one scalar per base");

    // Pairing side, one G1 combination per G2 point.
    let g = G1Affine::generator();
    let [g_a, g_b] = srs.g_powers();
    let f_v_z = kzg::product_eval(&v_factors, z);
    let f_w_z = z.pow([n_pad as u64]) * kzg::product_eval(&kzg::w_factors(&x, r_inv), z);
    let a = last.a.into_group();
    let c = last.c.into_group();
    let g1: [G1Projective; 10] = [
        // v_a: e(A, v_a)^rho_T e(C, v_a)^rho_TC, and KZG's e(-g, v_a)
        a * r_tab + c * r_tc - g * r_kv0,
        a * r_uab + c * r_uc - g * r_kv1,
        // B: e(w_a, B)^rho_T e(w_b, B)^rho_U e(A, B)^rho_Z
        last.w[0] * r_tab + last.w[1] * r_uab + a * r_zab,
        // gamma, delta (negated in the prepared key)
        ic * (-r_g16),
        proof.z_c * (-r_g16),
        // KZG of v: e(a g - z g, pi_v) = e(g, v - f_v(z) h)
        (g_a.into_group() - g * z) * r_kv0,
        (g_b.into_group() - g * z) * r_kv1,
        // h: KZG of v's constant term, and of w: e(pi_w, a h - z h) = e(w - F_w(z) g, h)
        g * ((r_kv0 + r_kv1) * f_v_z)
            + (g * f_w_z - last.open_w[0] * z - last.w[0]) * r_kw0
            + (g * f_w_z - last.open_w[1] * z - last.w[1]) * r_kw1,
        last.open_w[0] * r_kw0,
        last.open_w[1] * r_kw1,
    ];
    let g1 = G1Projective::normalize_batch(&g1);
    let [h, h_a, h_b] = srs.h_prepared.clone();
    let g2: [G2Prepared; 10] = [
        last.v[0].into(),
        last.v[1].into(),
        last.b.into(),
        vk.pvk.gamma_g2_neg_pc.clone(),
        vk.pvk.delta_g2_neg_pc.clone(),
        last.open_v[0].into(),
        last.open_v[1].into(),
        h,
        h_a,
        h_b,
    ];
    let rhs = Bn254::final_exponentiation(MillerLoopOutput(Bn254::multi_miller_loop(g1, g2).0))
        .expect("a Miller loop output is never zero");
    if lhs != rhs {
        return Err(AggregateError::Invalid);
    }
    Ok(())
}
