//! circomlib-compatible Poseidon over BN254, natively and as an R1CS gadget.
//!
//! Parameters come from arkworks' Grain LFSR (`find_poseidon_ark_and_mds`) with
//! circomlib's round counts (8 full rounds; 56 partial rounds for width 2, 57 for
//! width 3), which reproduces circomlib's round constants and MDS matrix exactly.
//! The permutation is written here rather than taken from arkworks' sponge because
//! circomlib's `Poseidon(n)` outputs `state[0]` after one permutation of
//! `[0, inputs...]`, while the arkworks sponge squeezes `state[1]`.

use std::sync::OnceLock;

use ark_crypto_primitives::sponge::poseidon::find_poseidon_ark_and_mds;
use ark_r1cs_std::{fields::fp::FpVar, prelude::*};
use ark_relations::gr1cs::SynthesisError;

use crate::Fr;

const FULL_ROUNDS: usize = 8;
/// circomlib's partial round counts, indexed by width - 2.
const PARTIAL_ROUNDS: [usize; 2] = [56, 57];

/// Round constants and MDS matrix of one Poseidon width.
pub struct Params {
    pub width: usize,
    pub partial_rounds: usize,
    /// `ark[round][i]`.
    pub ark: Vec<Vec<Fr>>,
    /// `mds[i][j]`: new_state[i] = sum_j mds[i][j] * state[j].
    pub mds: Vec<Vec<Fr>>,
}

impl Params {
    fn generate(width: usize) -> Self {
        let partial_rounds = PARTIAL_ROUNDS[width - 2];
        let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(
            254,
            width - 1,
            FULL_ROUNDS as u64,
            partial_rounds as u64,
            0,
        );
        Params {
            width,
            partial_rounds,
            ark,
            mds,
        }
    }

    fn is_full(&self, round: usize) -> bool {
        round < FULL_ROUNDS / 2 || round >= FULL_ROUNDS / 2 + self.partial_rounds
    }

    fn rounds(&self) -> usize {
        FULL_ROUNDS + self.partial_rounds
    }
}

/// The parameters for `n` inputs (width `n + 1`); supported: 1 and 2 inputs.
pub fn params(inputs: usize) -> &'static Params {
    static P1: OnceLock<Params> = OnceLock::new();
    static P2: OnceLock<Params> = OnceLock::new();
    match inputs {
        1 => P1.get_or_init(|| Params::generate(2)),
        2 => P2.get_or_init(|| Params::generate(3)),
        n => panic!("poseidon with {n} inputs is not configured (1 or 2 are)"),
    }
}

fn pow5(x: Fr) -> Fr {
    let x2 = x * x;
    x2 * x2 * x
}

/// circomlib `Poseidon(inputs.len())` of `inputs`.
pub fn hash(inputs: &[Fr]) -> Fr {
    let p = params(inputs.len());
    let mut state = Vec::with_capacity(p.width);
    state.push(Fr::from(0u64));
    state.extend_from_slice(inputs);
    let mut next = vec![Fr::from(0u64); p.width];
    for r in 0..p.rounds() {
        for (s, c) in state.iter_mut().zip(&p.ark[r]) {
            *s += c;
        }
        if p.is_full(r) {
            state.iter_mut().for_each(|s| *s = pow5(*s));
        } else {
            state[0] = pow5(state[0]);
        }
        for (i, n) in next.iter_mut().enumerate() {
            *n = state.iter().zip(&p.mds[i]).map(|(s, m)| *s * m).sum();
        }
        std::mem::swap(&mut state, &mut next);
    }
    state[0]
}

/// `H^steps(x)` with `H(x) = Poseidon([x])`: the chain circuit's computation.
pub fn iterate(mut x: Fr, steps: u64) -> Fr {
    for _ in 0..steps {
        x = hash(&[x]);
    }
    x
}

fn pow5_var(x: &FpVar<Fr>) -> Result<FpVar<Fr>, SynthesisError> {
    let x2 = x.square()?;
    let x4 = x2.square()?;
    Ok(x4 * x)
}

/// The same permutation as [`hash`] in constraints: 3 constraints per S-box.
pub fn hash_var(inputs: &[FpVar<Fr>]) -> Result<FpVar<Fr>, SynthesisError> {
    let p = params(inputs.len());
    let mut state = Vec::with_capacity(p.width);
    state.push(FpVar::Constant(Fr::from(0u64)));
    state.extend_from_slice(inputs);
    for r in 0..p.rounds() {
        for (s, c) in state.iter_mut().zip(&p.ark[r]) {
            *s = &*s + *c;
        }
        if p.is_full(r) {
            for s in state.iter_mut() {
                *s = pow5_var(s)?;
            }
        } else {
            state[0] = pow5_var(&state[0])?;
        }
        state = (0..p.width)
            .map(|i| {
                state
                    .iter()
                    .zip(&p.mds[i])
                    .fold(FpVar::Constant(Fr::from(0u64)), |acc, (s, m)| acc + s * *m)
            })
            .collect();
    }
    Ok(state.swap_remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::parse_fr;

    /// Values from circomlibjs 0.1.7 (see ZK-NOTES.md); the interop test in
    /// `tests/` checks many more against circomlibjs itself.
    #[test]
    fn matches_circomlib_check_values() {
        let one = Fr::from(1u64);
        let two = Fr::from(2u64);
        assert_eq!(
            hash(&[one]),
            parse_fr(
                "18586133768512220936620570745912940619677854269274689475585506675881198879027"
            )
            .unwrap()
        );
        assert_eq!(
            hash(&[one, two]),
            parse_fr(
                "7853200120776062878684798364095072458815029376092732009249414926327459813530"
            )
            .unwrap()
        );
    }

    #[test]
    fn gadget_agrees_with_native_hash() {
        use ark_relations::gr1cs::ConstraintSystem;
        let cs = ConstraintSystem::<Fr>::new_ref();
        let x = Fr::from(12345u64);
        let xv = FpVar::new_witness(cs.clone(), || Ok(x)).unwrap();
        let out = hash_var(&[xv]).unwrap();
        assert_eq!(out.value().unwrap(), hash(&[x]));
        assert!(cs.is_satisfied().unwrap());
    }
}
