//! Making an aggregate: commitments, the claimed products, `log2 n` GIPA rounds of
//! TIPP and MIPP with shared challenges, and KZG openings of the folded keys.
//!
//! Work for `n` proofs (padded): about `21 n` pairings in multi-Miller loops (7 n for
//! the commitments and `Z_AB`, `7 m` in a round of length `m`), `3 n` G2 and `6 n` G1
//! scalar multiplications for rescaling and folding, and four MSMs of size `n` to
//! `2n` for the openings. All of it runs on rayon's pool (every core); callers on an
//! async runtime run it on their blocking pool.

use ark_bn254::{Bn254, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{
    pairing::Pairing, scalar_mul::glv::GLVConfig, AffineRepr, CurveGroup, VariableBaseMSM,
};
use ark_ff::{batch_inversion, Field, Zero};
use ark_groth16::Proof;
use rayon::prelude::*;

use super::{
    format::{AggregateProof, Final, Round},
    gt::{pairing_products, Product},
    kzg,
    srs::Srs,
    verifier::{
        aggregated_inputs, check_input_counts, groth16_holds, powers, statement_transcript,
    },
    AggregateError,
};
use crate::{keys::VerifierKey, proof::ProofBytes};

/// Aggregates `(public inputs, proof)` pairs, all proofs of the circuit of `vk`,
/// into one [`AggregateProof`] that [`super::verify_aggregate`] checks against the
/// same public inputs in the same order.
///
/// Every proof is decoded with full validation. The aggregated Groth16 equation is
/// checked as soon as its value is known (with the first round's pairings, about half
/// of the work), so proofs that do not all verify (another key's, a wrong
/// statement's) are refused with [`AggregateError::ProofsDoNotVerify`] instead of
/// becoming an aggregate that fails later; callers are expected to have verified the
/// proofs already (`zk::batch` says which one is bad). `n` is padded to a power of
/// two, which must not exceed [`Srs::max_n`].
pub fn aggregate(
    srs: &Srs,
    vk: &VerifierKey,
    items: &[(Vec<Fr>, ProofBytes)],
) -> Result<AggregateProof, AggregateError> {
    let proofs = items
        .par_iter()
        .enumerate()
        .map(|(index, (_, bytes))| {
            bytes.decode().map_err(|e| AggregateError::MalformedProof {
                index,
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let publics: Vec<&[Fr]> = items.iter().map(|(x, _)| x.as_slice()).collect();
    prove(srs, vk, &publics, &proofs, true)
}

/// The prover proper. For tests, `check_inputs: false` skips the early Groth16 check
/// (to show the verifier refusing what an unchecked prover makes), and `proofs` may
/// be longer than `publics` (up to the padded length) to fill the padding slots.
pub(crate) fn prove(
    srs: &Srs,
    vk: &VerifierKey,
    publics: &[&[Fr]],
    proofs: &[Proof<Bn254>],
    check_inputs: bool,
) -> Result<AggregateProof, AggregateError> {
    let n = publics.len();
    if n == 0 {
        return Err(AggregateError::Empty);
    }
    let n_pad = n.next_power_of_two();
    if n_pad > srs.max_n() {
        return Err(AggregateError::TooMany {
            n,
            max: srs.max_n(),
        });
    }
    assert!(
        (n..=n_pad).contains(&proofs.len()),
        "one proof per statement (tests may add padding)"
    );
    check_input_counts(vk, publics)?;
    let mut t = statement_transcript(srs.verifier_key(), vk, publics);

    // The vectors, padded with the identity proof (the module doc says why that is sound).
    let mut a: Vec<G1Affine> = padded(
        n_pad,
        proofs.iter().map(|p| p.a).collect(),
        G1Affine::zero(),
    );
    let b: Vec<G2Affine> = padded(
        n_pad,
        proofs.iter().map(|p| p.b).collect(),
        G2Affine::zero(),
    );
    let mut c: Vec<G1Affine> = padded(
        n_pad,
        proofs.iter().map(|p| p.c).collect(),
        G1Affine::zero(),
    );
    let [v_a, v_b] = srs.v(n_pad);
    let [w_a, w_b] = srs.w(n_pad);

    // Commitments: com_AB = (e(A, v_a) e(w_a, B), e(A, v_b) e(w_b, B)), com_C = (e(C, v_a), e(C, v_b)).
    let com = pairing_products(
        n_pad,
        &[v_a, v_b, &b],
        &[
            vec![(&a, 0), (w_a, 2)],
            vec![(&a, 1), (w_b, 2)],
            vec![(&c, 0)],
            vec![(&c, 1)],
        ],
    );
    let com_ab = [com[0], com[1]];
    let com_c = [com[2], com[3]];
    AggregateProof::absorb_commitments(&mut t, &com_ab, &com_c);
    let r = t.challenge(b"r");
    let r_inv = r.inverse().expect("challenges are non-zero");

    // B carries r^i, so w carries r^-i: e(w_i r^-i, r^i B_i) = e(w_i, B_i) leaves
    // com_AB unchanged, and TIPP then proves Z_AB = prod e(A_i, r^i B_i).
    let r_pow = powers(r, n_pad);
    let r_inv_pow = powers(r_inv, n_pad);
    let mut b = scale_g2(&b, &r_pow);
    let mut w = [scale_g1(w_a, &r_inv_pow), scale_g1(w_b, &r_inv_pow)];
    let mut v = [v_a.to_vec(), v_b.to_vec()];
    let mut r_vec = r_pow;
    let z_c = G1Projective::msm(&c, &r_vec)
        .expect("one power per C")
        .into_affine();

    let (ic, sum_r) = aggregated_inputs(vk, publics, &r_vec[..n]);
    let mut z_ab = None;
    let mut rounds = Vec::with_capacity(n_pad.trailing_zeros() as usize);
    let mut xs = Vec::with_capacity(rounds.capacity());
    while a.len() > 1 {
        let half = a.len() / 2;
        let round = {
            let (a_l, a_r) = a.split_at(half);
            let (c_l, c_r) = c.split_at(half);
            let (b_l, b_r) = b.split_at(half);
            let (va_l, va_r) = v[0].split_at(half);
            let (vb_l, vb_r) = v[1].split_at(half);
            let (wa_l, wa_r) = w[0].split_at(half);
            let (wb_l, wb_r) = w[1].split_at(half);
            // G2 vectors: 0 B_L, 1 B_R, 2 v_a,L, 3 v_a,R, 4 v_b,L, 5 v_b,R.
            let mut products: Vec<Product<'_>> = vec![
                vec![(a_r, 0)],
                vec![(a_l, 1)],
                vec![(a_r, 2), (wa_r, 0)],
                vec![(a_r, 4), (wb_r, 0)],
                vec![(a_l, 3), (wa_l, 1)],
                vec![(a_l, 5), (wb_l, 1)],
                vec![(c_r, 2)],
                vec![(c_r, 4)],
                vec![(c_l, 3)],
                vec![(c_l, 5)],
            ];
            if z_ab.is_none() {
                // The first round also computes Z_AB = e(A_L, B_L) e(A_R, B_R), with the same
                // prepared points.
                products.push(vec![(a_l, 0), (a_r, 1)]);
            }
            let g = pairing_products(half, &[b_l, b_r, va_l, va_r, vb_l, vb_r], &products);
            if z_ab.is_none() {
                z_ab = Some(start_rounds(
                    &mut t,
                    vk,
                    ic,
                    sum_r,
                    g[10],
                    z_c,
                    check_inputs,
                )?);
            }
            let (z_c_l, z_c_r) = rayon::join(
                || G1Projective::msm(c_r, &r_vec[..half]),
                || G1Projective::msm(c_l, &r_vec[half..]),
            );
            Round {
                z_ab_l: g[0],
                z_ab_r: g[1],
                tipp_l: [g[2], g[3]],
                tipp_r: [g[4], g[5]],
                mipp_l: [g[6], g[7]],
                mipp_r: [g[8], g[9]],
                z_c_l: z_c_l.expect("lengths match").into_affine(),
                z_c_r: z_c_r.expect("lengths match").into_affine(),
            }
        };
        round.absorb(&mut t);
        rounds.push(round);
        let x = t.challenge(b"x");
        let x_inv = x.inverse().expect("challenges are non-zero");
        xs.push(x);
        // A' = A_L + x A_R, B' = B_L + x^-1 B_R, C' = C_L + x C_R, v' = v_L + x^-1 v_R,
        // w' = w_L + x w_R, r' = r_L + x^-1 r_R.
        a = fold_g1(&a, x);
        c = fold_g1(&c, x);
        w = [fold_g1(&w[0], x), fold_g1(&w[1], x)];
        b = fold_g2(&b, x_inv);
        v = [fold_g2(&v[0], x_inv), fold_g2(&v[1], x_inv)];
        r_vec = (0..half)
            .map(|i| r_vec[i] + x_inv * r_vec[half + i])
            .collect();
    }
    let z_ab = match z_ab {
        Some(z) => z,
        None => {
            let z = Bn254::pairing(a[0], b[0]).0;
            start_rounds(&mut t, vk, ic, sum_r, z, z_c, check_inputs)?
        }
    };

    // Open the folded keys at z.
    let mut last = Final {
        a: a[0],
        b: b[0],
        c: c[0],
        v: [v[0][0], v[1][0]],
        w: [w[0][0], w[1][0]],
        open_v: [G2Affine::zero(); 2],
        open_w: [G1Affine::zero(); 2],
    };
    last.absorb_folded(&mut t);
    let z = t.challenge(b"z");
    let mut x_inv = xs.clone();
    batch_inversion(&mut x_inv);
    let f_v = kzg::quotient(&kzg::product_coefficients(&kzg::v_factors(&x_inv)), z);
    let mut f_w = vec![Fr::zero(); n_pad];
    f_w.extend(kzg::product_coefficients(&kzg::w_factors(&xs, r_inv)));
    let f_w = kzg::quotient(&f_w, z);
    let g2_powers = srs.g2_powers(f_v.len());
    let g1_powers = srs.g1_powers(f_w.len());
    let ((ov_a, ov_b), (ow_a, ow_b)) = rayon::join(
        || {
            rayon::join(
                || G2Projective::msm(g2_powers[0], &f_v),
                || G2Projective::msm(g2_powers[1], &f_v),
            )
        },
        || {
            rayon::join(
                || G1Projective::msm(g1_powers[0], &f_w),
                || G1Projective::msm(g1_powers[1], &f_w),
            )
        },
    );
    let lengths = "quotients are sized to the powers";
    last.open_v = [
        ov_a.expect(lengths).into_affine(),
        ov_b.expect(lengths).into_affine(),
    ];
    last.open_w = [
        ow_a.expect(lengths).into_affine(),
        ow_b.expect(lengths).into_affine(),
    ];
    Ok(AggregateProof {
        n: u32::try_from(n).expect("n <= max_n <= 2^24"),
        com_ab,
        com_c,
        z_ab,
        z_c,
        rounds,
        last,
    })
}

/// Checks the aggregated Groth16 equation (unless told not to) and absorbs the
/// claimed products.
fn start_rounds(
    t: &mut super::transcript::Transcript,
    vk: &VerifierKey,
    ic: G1Affine,
    sum_r: Fr,
    z_ab: ark_bn254::Fq12,
    z_c: G1Affine,
    check_inputs: bool,
) -> Result<ark_bn254::Fq12, AggregateError> {
    if check_inputs && !groth16_holds(vk, ic, sum_r, &z_ab, z_c) {
        return Err(AggregateError::ProofsDoNotVerify);
    }
    AggregateProof::absorb_products(t, &z_ab, &z_c);
    Ok(z_ab)
}

fn padded<T: Clone>(n_pad: usize, v: Vec<T>, zero: T) -> Vec<T> {
    let mut v = v;
    v.resize(n_pad, zero);
    v
}

// Scalar multiplications with the GLV endomorphism, which arkworks 0.6 applies to
// BN254's G1 only for projective inputs and to G2 not at all: about twice as fast.

fn mul_g1(p: &G1Affine, s: Fr) -> G1Projective {
    <ark_bn254::g1::Config as GLVConfig>::glv_mul_projective(p.into_group(), s)
}

fn mul_g2(p: &G2Affine, s: Fr) -> G2Projective {
    <ark_bn254::g2::Config as GLVConfig>::glv_mul_projective(p.into_group(), s)
}

fn scale_g1(points: &[G1Affine], s: &[Fr]) -> Vec<G1Affine> {
    let p: Vec<G1Projective> = points
        .par_iter()
        .zip(s)
        .map(|(p, s)| mul_g1(p, *s))
        .collect();
    G1Projective::normalize_batch(&p)
}

fn scale_g2(points: &[G2Affine], s: &[Fr]) -> Vec<G2Affine> {
    let p: Vec<G2Projective> = points
        .par_iter()
        .zip(s)
        .map(|(p, s)| mul_g2(p, *s))
        .collect();
    G2Projective::normalize_batch(&p)
}

/// `v_L + x v_R`.
fn fold_g1(v: &[G1Affine], x: Fr) -> Vec<G1Affine> {
    let (l, r) = v.split_at(v.len() / 2);
    let p: Vec<G1Projective> = l.par_iter().zip(r).map(|(l, r)| mul_g1(r, x) + l).collect();
    G1Projective::normalize_batch(&p)
}

fn fold_g2(v: &[G2Affine], x: Fr) -> Vec<G2Affine> {
    let (l, r) = v.split_at(v.len() / 2);
    let p: Vec<G2Projective> = l.par_iter().zip(r).map(|(l, r)| mul_g2(r, x) + l).collect();
    G2Projective::normalize_batch(&p)
}
