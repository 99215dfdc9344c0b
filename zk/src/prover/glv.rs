//! The GLV endomorphism of BN254's G1: `phi(x, y) = (beta * x, y)` is
//! multiplication by a scalar `lambda`, and every scalar `k` splits into
//! `k1 + lambda * k2 (mod r)` with `|k1|, |k2| < 2^128`. A fixed-base table then
//! needs window multiples of each base over 128 bits instead of 254: half the
//! memory for the same additions (the `phi` half of each sum multiplies one x
//! coordinate by `beta` per addition).
//!
//! The split is the usual lattice rounding (arkworks' `GLVConfig` has the short
//! basis), done here in fixed-width integers: a prover splits every scalar of
//! every G1 sum, and arkworks' version allocates big integers for each.

use std::sync::OnceLock;

use ark_bn254::{Fq, Fr};
use ark_ec::scalar_mul::glv::GLVConfig;
use ark_ff::{BigInt, PrimeField};
use num_bigint::{BigInt as Big, BigUint, Sign};

/// Bits of a half's magnitude.
pub(crate) const HALF_BITS: u32 = 128;

/// The basis and rounding constants, derived once from arkworks' parameters.
struct Constants {
    beta: Fq,
    /// `beta_i = (k * g_i + 2^383) >> 384` approximates `k * |b| / r`.
    g: [[u64; 5]; 2],
    /// Signs folded so that `beta_i = sign_i * round(...)`.
    beta_neg: [bool; 2],
    /// The basis `v1 = (a1, b1)`, `v2 = (a2, b2)`: magnitudes and signs.
    a: [(u128, bool); 2],
    b: [(u128, bool); 2],
}

fn constants() -> &'static Constants {
    static C: OnceLock<Constants> = OnceLock::new();
    C.get_or_init(|| {
        let r = BigUint::from(Fr::MODULUS);
        let lambda = BigUint::from(ark_bn254::g1::Config::LAMBDA.into_bigint());
        let mag = |i: usize| -> u128 {
            let b = BigUint::from(ark_bn254::g1::Config::SCALAR_DECOMP_COEFFS[i].1);
            u128::try_from(b).expect("GLV basis entries are below 2^128")
        };
        // Signs such that a + lambda * b = 0 (mod r) for each basis vector,
        // whatever convention the parameters' flags follow.
        let vector = |a: u128, b: u128| -> ((u128, bool), (u128, bool)) {
            let a_big = BigUint::from(a);
            let lb = (&lambda * BigUint::from(b)) % &r;
            if (&a_big + &lb) % &r == BigUint::from(0u8) {
                ((a, false), (b, false))
            } else {
                assert_eq!(
                    (&a_big + &r - &lb) % &r,
                    BigUint::from(0u8),
                    "a GLV basis vector"
                );
                ((a, false), (b, true))
            }
        };
        let (a1, b1) = vector(mag(0), mag(1));
        let (a2, b2) = vector(mag(2), mag(3));
        let signed = |(m, neg): (u128, bool)| {
            Big::from_biguint(if neg { Sign::Minus } else { Sign::Plus }, BigUint::from(m))
        };
        let det = signed(a1) * signed(b2) - signed(a2) * signed(b1);
        let det_neg = det.sign() == Sign::Minus;
        assert_eq!(det.magnitude(), &r, "the GLV basis has determinant +-r");
        // (k, 0) = beta1 * v1 + beta2 * v2 + (k1, k2) with beta1 = k * b2 / det,
        // beta2 = -k * b1 / det, rounded.
        let g = |b: u128| -> [u64; 5] {
            let v: BigUint = ((BigUint::from(b) << 384u32) + (&r >> 1u32)) / &r;
            let d = v.to_u64_digits();
            assert!(d.len() <= 5);
            let mut out = [0u64; 5];
            out[..d.len()].copy_from_slice(&d);
            out
        };
        Constants {
            beta: ark_bn254::g1::Config::ENDO_COEFFS[0],
            g: [g(b2.0), g(b1.0)],
            beta_neg: [b2.1 ^ det_neg, !(b1.1 ^ det_neg)],
            a: [a1, a2],
            b: [b1, b2],
        }
    })
}

/// `beta`, the x-coordinate factor of `phi`.
pub(crate) fn beta() -> Fq {
    constants().beta
}

/// `(k * g + 2^383) >> 384` for `k < 2^256`, `g < 2^320`, as a `u128` (the
/// caller's values keep it below 2^128).
fn round_mul(k: &[u64; 4], g: &[u64; 5]) -> u128 {
    let mut p = [0u64; 9];
    for (i, &ki) in k.iter().enumerate() {
        let mut carry = 0u128;
        for (j, &gj) in g.iter().enumerate() {
            let t = p[i + j] as u128 + ki as u128 * gj as u128 + carry;
            p[i + j] = t as u64;
            carry = t >> 64;
        }
        p[i + 5] = carry as u64;
    }
    // Add 2^383 (bit 63 of limb 5) to round, then take bits 384..512.
    let (l5, c) = p[5].overflowing_add(1 << 63);
    p[5] = l5;
    let (l6, c) = p[6].overflowing_add(c as u64);
    let l7 = p[7].wrapping_add(c as u64);
    ((l7 as u128) << 64) | l6 as u128
}

/// `x * y` as a 256-bit value.
fn mul_128(x: u128, y: u128) -> [u64; 4] {
    let (x0, x1) = (x as u64 as u128, (x >> 64) as u64 as u128);
    let (y0, y1) = (y as u64 as u128, (y >> 64) as u64 as u128);
    let mut out = [0u64; 4];
    let t = x0 * y0;
    out[0] = t as u64;
    let mut carry = t >> 64;
    let mid1 = x0 * y1;
    let mid2 = x1 * y0;
    let t = carry + (mid1 as u64 as u128) + (mid2 as u64 as u128);
    out[1] = t as u64;
    carry = (t >> 64) + (mid1 >> 64) + (mid2 >> 64);
    let t = carry + x1 * y1;
    out[2] = t as u64;
    out[3] = (t >> 64) as u64;
    out
}

/// `acc += v` or `acc -= v`, modulo 2^256.
fn add_signed(acc: &mut [u64; 4], v: &[u64; 4], subtract: bool) {
    let mut carry = 0u128;
    for i in 0..4 {
        let vi = if subtract { !v[i] } else { v[i] } as u128;
        let t = acc[i] as u128 + vi + carry + (subtract && i == 0) as u128;
        acc[i] = t as u64;
        carry = t >> 64;
    }
}

/// A two's complement 256-bit value as (magnitude, negative).
fn sign_magnitude(v: [u64; 4]) -> ([u64; 4], bool) {
    if v[3] >> 63 == 0 {
        return (v, false);
    }
    let mut m = [0u64; 4];
    add_signed(&mut m, &v, true);
    (m, true)
}

/// `k = k1 + lambda * k2 (mod r)`: each half as (magnitude, negative), the
/// magnitudes below 2^128.
pub(crate) fn split(k: &BigInt<4>) -> [([u64; 4], bool); 2] {
    let c = constants();
    let beta = [round_mul(&k.0, &c.g[0]), round_mul(&k.0, &c.g[1])];
    // k1 = k - beta1 * a1 - beta2 * a2; k2 = -beta1 * b1 - beta2 * b2, where
    // beta_i carries the sign `beta_neg[i]`.
    let mut k1 = k.0;
    let mut k2 = [0u64; 4];
    for (((&beta, &neg), (a, a_neg)), (b, b_neg)) in beta.iter().zip(&c.beta_neg).zip(c.a).zip(c.b)
    {
        add_signed(&mut k1, &mul_128(beta, a), !(neg ^ a_neg));
        add_signed(&mut k2, &mul_128(beta, b), !(neg ^ b_neg));
    }
    let out = [sign_magnitude(k1), sign_magnitude(k2)];
    debug_assert!(out.iter().all(|(m, _)| m[2] == 0 && m[3] == 0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::{AffineRepr, CurveGroup};
    use ark_ff::{UniformRand, Zero};
    use rand::{rngs::StdRng, SeedableRng};

    fn value((m, neg): ([u64; 4], bool)) -> Fr {
        let v = Fr::from_bigint(BigInt::new(m)).unwrap();
        if neg {
            -v
        } else {
            v
        }
    }

    #[test]
    fn halves_recombine_and_stay_short() {
        let lambda = ark_bn254::g1::Config::LAMBDA;
        let mut rng = StdRng::seed_from_u64(5);
        let mut ks: Vec<Fr> = (0..2000).map(|_| Fr::rand(&mut rng)).collect();
        ks.extend([Fr::zero(), Fr::from(1u64), -Fr::from(1u64), lambda, -lambda]);
        for k in ks {
            let [h1, h2] = split(&k.into_bigint());
            for (m, _) in [h1, h2] {
                assert!(m[2] == 0 && m[3] == 0, "{k}: a half above 2^128");
            }
            assert_eq!(value(h1) + lambda * value(h2), k);
        }
    }

    #[test]
    fn phi_is_multiplication_by_lambda() {
        let mut rng = StdRng::seed_from_u64(6);
        let p = ark_bn254::G1Projective::rand(&mut rng).into_affine();
        let (x, y) = p.xy().unwrap();
        let phi = ark_bn254::G1Affine::new_unchecked(x * beta(), y);
        assert_eq!(phi, (p * ark_bn254::g1::Config::LAMBDA).into_affine());
    }
}
