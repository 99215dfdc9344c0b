//! The pairing target group GT (the order-r subgroup of `F_{p^12}^*`): a compact
//! canonical encoding, validated decoding, and products of many pairings.
//!
//! **Encoding.** `F_{p^12} = F_{p^6}[w] / (w^2 - v)`. Every element `g = g0 + g1 w` of
//! GT is unitary (`g * conj(g) = 1`, i.e. `g0^2 - v g1^2 = 1`), and every unitary
//! `g != ±1` is `(c + w) / (c - w)` for exactly one `c = (1 + g0) / g1` in `F_{p^6}`
//! (torus-based compression). So an element is sent as `c`: 6 base-field
//! coordinates, 192 bytes instead of 384. `c = 0` would decode to `-1`, which is not
//! in GT (GT has odd order), so `c = 0` is free to stand for the identity.
//!
//! **Membership.** Decoding ends with a subgroup test, so the verifier never works with
//! an element outside GT: first `g` is in the cyclotomic subgroup
//! (`g^(p^4) * g = g^(p^2)`), then `g^p = g^(6 x^2)`, which for BN curves is
//! `g^r = 1` because `p - 6x^2 = r` exactly (`p = 36x^4 + 36x^3 + 24x^2 + 6x + 1`,
//! `r = 36x^4 + 36x^3 + 18x^2 + 6x + 1`). Two Frobenius maps and a 127-bit
//! cyclotomic exponentiation instead of a 254-bit one.

use ark_bn254::{Bn254, Fq, Fq12, Fq12Config, Fq6, G1Affine, G2Affine};
use ark_ec::{
    bn::BnConfig,
    pairing::{MillerLoopOutput, Pairing},
    AffineRepr,
};
use ark_ff::{
    fields::fp12_2over3over2::Fp12Config, AdditiveGroup, BigInt, CyclotomicMultSubgroup, Field,
    One, PrimeField, Zero,
};
use rayon::prelude::*;

type G2Prepared = <Bn254 as Pairing>::G2Prepared;

/// Bytes of one encoded GT element.
pub(crate) const GT_LEN: usize = 192;

const X: u64 = <ark_bn254::Config as BnConfig>::X[0];
const SIX_X_SQUARED: u128 = 6 * (X as u128) * (X as u128);
const SIX_X_SQUARED_LIMBS: [u64; 2] = [SIX_X_SQUARED as u64, (SIX_X_SQUARED >> 64) as u64];

/// The canonical encoding of an element of GT.
pub(crate) fn encode(g: &Fq12) -> [u8; GT_LEN] {
    let mut out = [0u8; GT_LEN];
    if g.is_one() {
        return out;
    }
    let g1_inv =
        g.c1.inverse()
            .expect("an element of GT other than 1 has a non-zero w coefficient (the module doc)");
    let c = (Fq6::one() + g.c0) * g1_inv;
    let coords = [c.c0.c0, c.c0.c1, c.c1.c0, c.c1.c1, c.c2.c0, c.c2.c1];
    for (chunk, x) in out.chunks_exact_mut(32).zip(coords) {
        chunk.copy_from_slice(&fq_to_le(&x));
    }
    out
}

/// Decodes an element of GT: canonical coordinates, then the subgroup test.
pub(crate) fn decode(bytes: &[u8]) -> Result<Fq12, String> {
    if bytes.len() != GT_LEN {
        return Err(format!(
            "a GT element is {GT_LEN} bytes, got {}",
            bytes.len()
        ));
    }
    let mut coords = [Fq::zero(); 6];
    for (x, chunk) in coords.iter_mut().zip(bytes.chunks_exact(32)) {
        *x = fq_from_le(chunk)
            .ok_or("a GT coordinate is not below the base field modulus (non-canonical)")?;
    }
    let c = Fq6::new(
        ark_bn254::Fq2::new(coords[0], coords[1]),
        ark_bn254::Fq2::new(coords[2], coords[3]),
        ark_bn254::Fq2::new(coords[4], coords[5]),
    );
    if c.is_zero() {
        return Ok(Fq12::one());
    }
    // g = (c + w) / (c - w) = ((c^2 + v) + 2c w) / (c^2 - v); c^2 != v because v is
    // not a square in F_{p^6} (w, its square root, lies outside).
    let v = Fq12Config::NONRESIDUE;
    let c2 = c.square();
    let inv = (c2 - v)
        .inverse()
        .expect("c^2 - v is never zero: v is not a square in F_p^6");
    let g = Fq12::new((c2 + v) * inv, c.double() * inv);
    if !is_in_gt(&g) {
        return Err("a GT element is not in the order-r subgroup of F_p^12".into());
    }
    Ok(g)
}

/// Whether `g` is in GT, the order-r subgroup (see the module doc).
pub(crate) fn is_in_gt(g: &Fq12) -> bool {
    if g.is_zero() {
        return false;
    }
    let mut p2 = *g;
    p2.frobenius_map_in_place(2);
    let mut p4 = p2;
    p4.frobenius_map_in_place(2);
    if p4 * g != p2 {
        return false;
    }
    let mut p1 = *g;
    p1.frobenius_map_in_place(1);
    p1 == g.cyclotomic_exp(SIX_X_SQUARED_LIMBS)
}

/// 32 little-endian bytes of a base-field element's canonical value.
fn fq_to_le(x: &Fq) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_exact_mut(8).zip(x.into_bigint().0) {
        chunk.copy_from_slice(&limb.to_le_bytes());
    }
    out
}

/// A base-field element from 32 little-endian bytes; `None` when not below `p`.
fn fq_from_le(bytes: &[u8]) -> Option<Fq> {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        *limb = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
    }
    Fq::from_bigint(BigInt::new(limbs))
}

/// Indices handled per step of [`pairing_products`]: bounds the prepared G2 points
/// held at once (about 17 KB each: 6.5 MB for a round's six vectors) while leaving
/// enough Miller loops to spread over threads. 32 and 128 measured the same at
/// n = 1,024 (within this machine's noise).
const CHUNK: usize = 64;
/// Indices per Miller loop within a chunk: each loop pays 63 squarings of its own,
/// so longer is cheaper, shorter spreads better over threads.
const LOOP: usize = 32;

/// One product of pairings: terms `(g1, k)` pair `g1[i]` with `g2[k][i]` for every
/// index `i`.
pub(crate) type Product<'a> = Vec<(&'a [G1Affine], usize)>;

/// Computes several products of pairings over the same `len` indices and the same
/// G2 vectors `g2`, each G2 point prepared once per call however many products use
/// it: Miller loops over runs of indices, multiplied up, then one final
/// exponentiation per product. Identity points contribute nothing.
pub(crate) fn pairing_products(
    len: usize,
    g2: &[&[G2Affine]],
    products: &[Product<'_>],
) -> Vec<Fq12> {
    debug_assert!(g2.iter().all(|v| v.len() >= len));
    debug_assert!(products
        .iter()
        .all(|p| p.iter().all(|(g1, k)| g1.len() >= len && *k < g2.len())));
    let mut acc = vec![Fq12::one(); products.len()];
    let mut start = 0;
    while start < len {
        let end = (start + CHUNK).min(len);
        let prepared: Vec<Vec<G2Prepared>> = g2
            .par_iter()
            .map(|v| v[start..end].par_iter().map(G2Prepared::from).collect())
            .collect();
        let runs: Vec<(usize, usize)> = (start..end)
            .step_by(LOOP)
            .map(|s| (s, (s + LOOP).min(end)))
            .collect();
        let partial: Vec<Fq12> = (0..products.len() * runs.len())
            .into_par_iter()
            .map(|task| {
                let (terms, (s, e)) = (&products[task / runs.len()], runs[task % runs.len()]);
                let pairs: Vec<(&G1Affine, &G2Prepared)> = terms
                    .iter()
                    .flat_map(|(g1, k)| g1[s..e].iter().zip(&prepared[*k][s - start..e - start]))
                    .collect();
                miller_loop(&pairs)
            })
            .collect();
        for (task, f) in partial.into_iter().enumerate() {
            acc[task / runs.len()] *= f;
        }
        start = end;
    }
    acc.into_par_iter()
        .map(|f| {
            Bn254::final_exponentiation(MillerLoopOutput(f))
                .expect("a product of Miller loops is never zero")
                .0
        })
        .collect()
}

/// The Miller loop of a product of pairings, one accumulator for all of them (so
/// one squaring per step, not one per pair), borrowing prepared points instead of
/// consuming them as arkworks' `multi_miller_loop` does. The optimal-ate loop over
/// BN254's `6x + 2`: per digit, a square and the doubling line of every pair, then
/// the addition line where the digit is non-zero; then the two Frobenius lines.
/// `G2Prepared` holds exactly these lines, in this order. BN254's twist is of D type
/// (lines are sparse at 0, 3, 4) and its `x` is positive (no final conjugation):
/// both are asserted at compile time, and a test pins the result to arkworks' own.
fn miller_loop(pairs: &[(&G1Affine, &G2Prepared)]) -> Fq12 {
    let mut lines: Vec<(&G1Affine, std::slice::Iter<'_, EllCoeff>)> = pairs
        .iter()
        .filter(|(p, q)| !p.is_zero() && !q.is_zero())
        .map(|(p, q)| (*p, q.ell_coeffs.iter()))
        .collect();
    let mut f = Fq12::one();
    let mut step = |f: &mut Fq12| {
        for (p, coeffs) in lines.iter_mut() {
            let c = coeffs
                .next()
                .expect("a prepared point has one line per step of the loop");
            let mut c0 = c.0;
            c0.mul_assign_by_fp(&p.y);
            let mut c1 = c.1;
            c1.mul_assign_by_fp(&p.x);
            f.mul_by_034(&c0, &c1, &c.2);
        }
    };
    let digits = <ark_bn254::Config as BnConfig>::ATE_LOOP_COUNT;
    for i in (1..digits.len()).rev() {
        if i != digits.len() - 1 {
            f.square_in_place();
        }
        step(&mut f);
        if digits[i - 1] != 0 {
            step(&mut f);
        }
    }
    step(&mut f);
    step(&mut f);
    f
}

type EllCoeff = ark_ec::bn::g2::EllCoeff<ark_bn254::Config>;

const _: () = assert!(
    matches!(
        <ark_bn254::Config as BnConfig>::TWIST_TYPE,
        ark_ec::bn::TwistType::D
    ),
    "miller_loop evaluates D-type lines"
);
const _: () = assert!(
    !<ark_bn254::Config as BnConfig>::X_IS_NEGATIVE,
    "miller_loop does not conjugate for a negative x"
);

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::{AffineRepr, CurveGroup, PrimeGroup};
    use ark_ff::UniformRand;
    use num_bigint::BigUint;
    use rand::{rngs::StdRng, SeedableRng};

    fn random_gt(rng: &mut StdRng) -> Fq12 {
        let a = ark_bn254::G1Projective::rand(rng).into_affine();
        let b = ark_bn254::G2Projective::rand(rng).into_affine();
        Bn254::pairing(a, b).0
    }

    #[test]
    fn p_minus_six_x_squared_is_r() {
        let p: BigUint = Fq::MODULUS.into();
        let r: BigUint = ark_bn254::Fr::MODULUS.into();
        assert_eq!(p - BigUint::from(SIX_X_SQUARED), r);
    }

    #[test]
    fn pairing_outputs_round_trip_and_pass_the_membership_test() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..8 {
            let g = random_gt(&mut rng);
            assert!(is_in_gt(&g));
            assert_eq!(decode(&encode(&g)).unwrap(), g);
        }
        assert_eq!(encode(&Fq12::one()), [0u8; GT_LEN]);
        assert_eq!(decode(&[0u8; GT_LEN]).unwrap(), Fq12::one());
        let gen = ark_ec::pairing::PairingOutput::<Bn254>::generator().0;
        assert_eq!(decode(&encode(&gen)).unwrap(), gen);
    }

    #[test]
    fn the_membership_test_is_exactly_order_r() {
        let mut rng = StdRng::seed_from_u64(2);
        let r = ark_bn254::Fr::MODULUS;
        for _ in 0..4 {
            // A random element, a unitary one (f^(p^6 - 1)), a cyclotomic one (the easy
            // part of the final exponentiation): none of them is in GT, and the test
            // agrees with g^r == 1 on each.
            let f = Fq12::rand(&mut rng);
            let mut conj = f;
            conj.conjugate_in_place();
            let unitary = conj * f.inverse().unwrap();
            let mut cyclo = unitary;
            cyclo.frobenius_map_in_place(2);
            cyclo *= unitary;
            for g in [f, unitary, cyclo] {
                assert!(!is_in_gt(&g));
                assert_eq!(is_in_gt(&g), g.pow(r).is_one());
            }
            // The cyclotomic element decodes from its compressed form to itself, and
            // that is refused.
            let g1_inv = cyclo.c1.inverse().unwrap();
            let c = (Fq6::one() + cyclo.c0) * g1_inv;
            let mut bytes = [0u8; GT_LEN];
            let coords = [c.c0.c0, c.c0.c1, c.c1.c0, c.c1.c1, c.c2.c0, c.c2.c1];
            for (chunk, x) in bytes.chunks_exact_mut(32).zip(coords) {
                chunk.copy_from_slice(&fq_to_le(&x));
            }
            assert!(decode(&bytes).unwrap_err().contains("order-r subgroup"));
        }
    }

    #[test]
    fn non_canonical_coordinates_are_refused() {
        let mut rng = StdRng::seed_from_u64(3);
        let g = random_gt(&mut rng);
        let mut bytes = encode(&g);
        // Add p to the first coordinate: the same value mod p, not canonical.
        let p: BigUint = Fq::MODULUS.into();
        let x = BigUint::from_bytes_le(&bytes[..32]) + p;
        let le = x.to_bytes_le();
        if le.len() <= 32 {
            bytes[..32].fill(0);
            bytes[..le.len()].copy_from_slice(&le);
            assert!(decode(&bytes).unwrap_err().contains("non-canonical"));
        }
        assert!(decode(&[0xff; GT_LEN])
            .unwrap_err()
            .contains("non-canonical"));
        assert!(decode(&[0u8; 10]).is_err());
    }

    #[test]
    fn pairing_products_match_arkworks() {
        let mut rng = StdRng::seed_from_u64(4);
        let len = 150; // more than one chunk, and runs of several lengths
        let a: Vec<G1Affine> = (0..len)
            .map(|_| ark_bn254::G1Projective::rand(&mut rng).into_affine())
            .collect();
        let mut b: Vec<G2Affine> = (0..len)
            .map(|_| ark_bn254::G2Projective::rand(&mut rng).into_affine())
            .collect();
        let c: Vec<G1Affine> = (0..len)
            .map(|_| ark_bn254::G1Projective::rand(&mut rng).into_affine())
            .collect();
        b[5] = G2Affine::zero();
        let d: Vec<G2Affine> = (0..len)
            .map(|_| ark_bn254::G2Projective::rand(&mut rng).into_affine())
            .collect();
        let got = pairing_products(
            len,
            &[&b, &d],
            &[vec![(&a, 0)], vec![(&a, 1), (&c, 0)], vec![]],
        );
        let want0 = Bn254::multi_pairing(a.clone(), b.clone()).0;
        let want1 = Bn254::multi_pairing(
            a.iter().chain(&c).copied().collect::<Vec<_>>(),
            d.iter().chain(&b).copied().collect::<Vec<_>>(),
        )
        .0;
        assert_eq!(got, vec![want0, want1, Fq12::one()]);
    }
}
