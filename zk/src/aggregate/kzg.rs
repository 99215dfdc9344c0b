//! The polynomials behind the folded commitment keys, and their KZG openings.
//!
//! GIPA round `j` (of `l`) splits vectors of length `2^(l-j)` at `2^(l-1-j)` and folds
//! `v' = v_L + x_j^-1 v_R`, `w' = w_L + x_j w_R`. Unrolled, the last key is a sum of
//! the first keys with coefficient `prod_{b in bits(i)} y_b` on index `i`, where bit `b`
//! belongs to round `l-1-b`; since `v_i = a^i h`, the folded `v` is `f_v(a) h` for
//!
//! `f_v(X) = prod_{b<l} (1 + x_(l-1-b)^-1 X^(2^b))`,
//!
//! and, with the prover's `w` rescaled by `r^-i` (so that `B_i` can carry `r^i`),
//! the folded `w` is `F_w(a) g` for `F_w(X) = X^n prod_{b<l} (1 + x_(l-1-b) r^(-2^b) X^(2^b))`.
//! Both are product forms: the verifier evaluates them in `O(l)`; the prover expands
//! them to `O(n)` coefficients and opens them at `z` by one MSM over the powers.

use ark_bn254::Fr;
use ark_ff::{Field, One, Zero};

/// The factors `y_b` of `f_v`: round challenges inverted, lowest bit (last round) first.
pub(crate) fn v_factors(x_inv: &[Fr]) -> Vec<Fr> {
    x_inv.iter().rev().copied().collect()
}

/// The factors `y_b` of `F_w / X^n`: `x_(l-1-b) * r^(-2^b)`.
pub(crate) fn w_factors(x: &[Fr], r_inv: Fr) -> Vec<Fr> {
    let mut pow = r_inv;
    x.iter()
        .rev()
        .map(|x| {
            let y = *x * pow;
            pow.square_in_place();
            y
        })
        .collect()
}

/// Coefficients (lowest degree first) of `prod_b (1 + y_b X^(2^b))`: `2^len(ys)` of them.
pub(crate) fn product_coefficients(ys: &[Fr]) -> Vec<Fr> {
    let mut c = Vec::with_capacity(1 << ys.len());
    c.push(Fr::one());
    for y in ys {
        for i in 0..c.len() {
            let t = c[i] * y;
            c.push(t);
        }
    }
    c
}

/// `prod_b (1 + y_b t^(2^b))`.
pub(crate) fn product_eval(ys: &[Fr], t: Fr) -> Fr {
    let mut acc = Fr::one();
    let mut pow = t;
    for y in ys {
        acc *= Fr::one() + *y * pow;
        pow.square_in_place();
    }
    acc
}

/// `(f(X) - f(z)) / (X - z)` by synthetic division; `f` lowest degree first.
pub(crate) fn quotient(f: &[Fr], z: Fr) -> Vec<Fr> {
    if f.len() <= 1 {
        return Vec::new();
    }
    let mut q = vec![Fr::zero(); f.len() - 1];
    let mut carry = Fr::zero();
    for i in (1..f.len()).rev() {
        carry = f[i] + z * carry;
        q[i - 1] = carry;
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ff::UniformRand;
    use rand::{rngs::StdRng, SeedableRng};

    fn eval(coeffs: &[Fr], t: Fr) -> Fr {
        coeffs.iter().rev().fold(Fr::zero(), |acc, c| acc * t + c)
    }

    #[test]
    fn expansion_evaluation_and_division_agree() {
        let mut rng = StdRng::seed_from_u64(7);
        for l in 0..6 {
            let ys: Vec<Fr> = (0..l).map(|_| Fr::rand(&mut rng)).collect();
            let c = product_coefficients(&ys);
            assert_eq!(c.len(), 1 << l);
            let (t, z) = (Fr::rand(&mut rng), Fr::rand(&mut rng));
            assert_eq!(eval(&c, t), product_eval(&ys, t));
            // f(t) - f(z) = (t - z) q(t)
            let q = quotient(&c, z);
            assert_eq!(eval(&c, t) - eval(&c, z), (t - z) * eval(&q, t));
        }
    }

    #[test]
    fn the_factors_match_folding_step_by_step() {
        // Fold the vector (s^i r^-i) as the prover folds w, and (s^i) as it folds v,
        // and compare with the product forms at s.
        let mut rng = StdRng::seed_from_u64(8);
        let l = 4;
        let n = 1usize << l;
        let (s, r) = (Fr::rand(&mut rng), Fr::rand(&mut rng));
        let r_inv = r.inverse().unwrap();
        let x: Vec<Fr> = (0..l).map(|_| Fr::rand(&mut rng)).collect();
        let x_inv: Vec<Fr> = x.iter().map(|x| x.inverse().unwrap()).collect();
        let mut v: Vec<Fr> = (0..n).map(|i| s.pow([i as u64])).collect();
        let mut w: Vec<Fr> = (0..n)
            .map(|i| s.pow([(n + i) as u64]) * r_inv.pow([i as u64]))
            .collect();
        for j in 0..l {
            let half = v.len() / 2;
            v = (0..half).map(|i| v[i] + x_inv[j] * v[half + i]).collect();
            w = (0..half).map(|i| w[i] + x[j] * w[half + i]).collect();
        }
        assert_eq!(v[0], product_eval(&v_factors(&x_inv), s));
        assert_eq!(
            w[0],
            s.pow([n as u64]) * product_eval(&w_factors(&x, r_inv), s)
        );
    }
}
