//! Batch verification: many proofs of one circuit checked with one multi-Miller
//! loop and one final exponentiation, and blame by bisection when a batch fails.
//!
//! For proofs `(A_i, B_i, C_i)` with inputs `x_i` and random 128-bit `r_i`, every
//! proof verifies (except with probability about 2^-128) iff
//!
//! `prod e(r_i A_i, B_i) = e(alpha, beta)^(sum r_i) * e(sum r_i IC(x_i), gamma) * e(sum r_i C_i, delta)`
//!
//! where `IC(x) = gamma_abc[0] + sum_j x_j gamma_abc[j]`; `sum r_i IC(x_i)` is one small
//! MSM over the key's `gamma_abc` with coefficients `(sum r_i, sum r_i x_i1, ...)`.
//! The `r_i` come from the OS CSPRNG, so a prover cannot choose proofs that cancel.
//! Every proof was decoded with full validation (on curve, in subgroup) first: the
//! random-combination argument needs prime-order points.

use ark_bn254::{Bn254, G1Affine, G1Projective};
use ark_ec::{pairing::Pairing, AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{Field, PrimeField, Zero};
use ark_groth16::{Groth16, Proof};
use rand::{rngs::OsRng, Rng};

use crate::{keys::VerifierKey, proof::ProofBytes, Fr, VerifyError};

impl VerifierKey {
    /// Verifies `(public inputs, proof)` pairs together; one verdict per pair, in
    /// order, each exactly what [`VerifierKey::verify`] would say of it alone.
    pub fn verify_batch(&self, items: &[(Vec<Fr>, ProofBytes)]) -> Vec<Result<(), VerifyError>> {
        let mut verdicts: Vec<Result<(), VerifyError>> = vec![Ok(()); items.len()];
        let candidates = self.candidates(items, &mut verdicts);
        self.bisect(&candidates, &mut verdicts);
        verdicts
    }

    /// [`Self::verify_batch`] for items that come in groups (one per submit):
    /// `sizes` splits `items` into consecutive groups. When the whole batch fails,
    /// each group is checked on its own before any bisection, so a bad submit
    /// costs the bisection of its own group, not of everyone's. The verdicts are
    /// the same as `verify_batch`'s.
    pub fn verify_batch_grouped(
        &self,
        items: &[(Vec<Fr>, ProofBytes)],
        sizes: &[usize],
    ) -> Vec<Result<(), VerifyError>> {
        let mut verdicts: Vec<Result<(), VerifyError>> = vec![Ok(()); items.len()];
        let candidates = self.candidates(items, &mut verdicts);
        if sizes.len() <= 1 || candidates.len() <= 1 {
            self.bisect(&candidates, &mut verdicts);
            return verdicts;
        }
        if self.batch_holds(&candidates) {
            return verdicts;
        }
        let mut rest = &candidates[..];
        let mut end = 0;
        for size in sizes {
            end += size;
            let split = rest
                .iter()
                .position(|c| c.index >= end)
                .unwrap_or(rest.len());
            let (group, after) = rest.split_at(split);
            self.bisect(group, &mut verdicts);
            rest = after;
        }
        self.bisect(rest, &mut verdicts);
        verdicts
    }

    /// Decodes every item; those with the wrong input count or a malformed proof get
    /// their verdict here and are left out.
    fn candidates<'a>(
        &self,
        items: &'a [(Vec<Fr>, ProofBytes)],
        verdicts: &mut [Result<(), VerifyError>],
    ) -> Vec<Candidate<'a>> {
        let mut candidates = Vec::with_capacity(items.len());
        for (i, (public, bytes)) in items.iter().enumerate() {
            if public.len() != self.public_inputs() {
                verdicts[i] = Err(VerifyError::InputCount {
                    expected: self.public_inputs(),
                    got: public.len(),
                });
                continue;
            }
            match bytes.decode() {
                Ok(p) => candidates.push(Candidate {
                    index: i,
                    public,
                    proof: p,
                }),
                Err(e) => verdicts[i] = Err(e),
            }
        }
        candidates
    }

    /// Checks a group; on failure splits it in two and checks each half, down to
    /// single proofs, which get the exact single-proof verdict.
    fn bisect(&self, group: &[Candidate<'_>], verdicts: &mut [Result<(), VerifyError>]) {
        match group {
            [] => {}
            [one] => verdicts[one.index] = self.verify_one(one),
            _ if self.batch_holds(group) => {}
            _ => {
                let (left, right) = group.split_at(group.len() / 2);
                self.bisect(left, verdicts);
                self.bisect(right, verdicts);
            }
        }
    }

    fn verify_one(&self, c: &Candidate<'_>) -> Result<(), VerifyError> {
        match Groth16::<Bn254>::verify_proof(&self.pvk, &c.proof, c.public) {
            Ok(true) => Ok(()),
            Ok(false) => Err(VerifyError::Invalid),
            Err(e) => Err(VerifyError::Malformed(e.to_string())),
        }
    }

    fn batch_holds(&self, group: &[Candidate<'_>]) -> bool {
        let mut rng = OsRng;
        let r: Vec<Fr> = group
            .iter()
            .map(|_| {
                let x: u128 = rng.gen();
                Fr::from(x.max(1))
            })
            .collect();
        let gamma_abc = &self.vk.gamma_abc_g1;
        let mut coeffs = vec![Fr::zero(); gamma_abc.len()];
        for (ri, c) in r.iter().zip(group) {
            coeffs[0] += ri;
            for (coeff, x) in coeffs[1..].iter_mut().zip(c.public) {
                *coeff += *ri * x;
            }
        }
        let ic =
            G1Projective::msm(gamma_abc, &coeffs).expect("coefficients match the key's length");
        let cs: Vec<G1Affine> = group.iter().map(|c| c.proof.c).collect();
        let c_sum = G1Projective::msm(&cs, &r).expect("one coefficient per proof");
        let ra: Vec<G1Projective> = group
            .iter()
            .zip(&r)
            .map(|(c, ri)| c.proof.a.mul_bigint(ri.into_bigint()))
            .collect();
        let mut g1: Vec<G1Affine> = G1Projective::normalize_batch(&ra);
        g1.push(ic.into_affine());
        g1.push(c_sum.into_affine());
        let mut g2: Vec<<Bn254 as Pairing>::G2Prepared> =
            group.iter().map(|c| c.proof.b.into()).collect();
        g2.push(self.pvk.gamma_g2_neg_pc.clone());
        g2.push(self.pvk.delta_g2_neg_pc.clone());
        let g1: Vec<<Bn254 as Pairing>::G1Prepared> = g1.into_iter().map(Into::into).collect();
        let Some(lhs) = Bn254::final_exponentiation(Bn254::multi_miller_loop(g1, g2)) else {
            return false;
        };
        let sum_r: Fr = r.iter().sum();
        lhs.0 == self.pvk.alpha_g1_beta_g2.pow(sum_r.into_bigint())
    }
}

struct Candidate<'a> {
    index: usize,
    public: &'a [Fr],
    proof: Proof<Bn254>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CircuitKeys, CircuitSpec};

    fn proofs(n: u64) -> (CircuitKeys, Vec<(Vec<Fr>, ProofBytes)>) {
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 3).unwrap();
        let items = (0..n)
            .map(|i| {
                let s = CircuitSpec::preimage_statement(Fr::from(i + 10));
                let p = keys.prove(&s).unwrap();
                (s.public, p)
            })
            .collect();
        (keys, items)
    }

    #[test]
    fn a_good_batch_passes_whole() {
        let (keys, items) = proofs(9);
        assert!(keys.verifier.verify_batch(&items).iter().all(Result::is_ok));
    }

    /// One bad proof at the first, middle or last position: every good proof is
    /// accepted and exactly the bad one is rejected, with the single-proof reason.
    #[test]
    fn one_bad_proof_is_blamed_wherever_it_is() {
        let (keys, items) = proofs(9);
        for bad in [0, 4, 8] {
            let mut batch = items.clone();
            // A valid proof, but of another statement: only the pairing check can tell.
            batch[bad].0 = items[(bad + 1) % 9].0.clone();
            let verdicts = keys.verifier.verify_batch(&batch);
            for (i, v) in verdicts.iter().enumerate() {
                if i == bad {
                    assert_eq!(v, &Err(VerifyError::Invalid), "position {bad}");
                } else {
                    assert_eq!(
                        v,
                        &Ok(()),
                        "good proof {i} rejected with the bad one at {bad}"
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_and_miscounted_items_are_judged_without_spoiling_the_batch() {
        let (keys, mut items) = proofs(4);
        items[1].1 = ProofBytes(vec![1; 128]);
        items[2].0.push(Fr::from(1u64));
        let v = keys.verifier.verify_batch(&items);
        assert!(v[0].is_ok() && v[3].is_ok());
        assert!(matches!(v[1], Err(VerifyError::Malformed(_))));
        assert_eq!(
            v[2],
            Err(VerifyError::InputCount {
                expected: 1,
                got: 2
            })
        );
    }

    #[test]
    fn grouped_verdicts_are_the_single_verdicts() {
        let (keys, mut items) = proofs(12);
        // Group 1: items 0..3 with a malformed proof; group 2: 3..7 with a proof of
        // another statement; group 3: 7..12, its last proof bad.
        items[1].1 = ProofBytes(vec![7u8; 128]);
        items[4].1 = items[5].1.clone();
        items[11].1 = items[0].1.clone();
        let grouped = keys.verifier.verify_batch_grouped(&items, &[3, 4, 5]);
        let single: Vec<_> = items
            .iter()
            .map(|(p, proof)| keys.verifier.verify(p, proof))
            .collect();
        assert_eq!(grouped, single);
        assert_eq!(grouped, keys.verifier.verify_batch(&items));
        let bad: Vec<usize> = (0..12).filter(|i| grouped[*i].is_err()).collect();
        assert_eq!(bad, vec![1, 4, 11]);
        // All good, and a lone group: the same as verify_batch.
        let (keys, items) = proofs(5);
        assert!(keys
            .verifier
            .verify_batch_grouped(&items, &[2, 3])
            .iter()
            .all(Result::is_ok));
        assert!(keys
            .verifier
            .verify_batch_grouped(&items, &[5])
            .iter()
            .all(Result::is_ok));
    }

    #[test]
    fn two_bad_proofs_in_different_halves_are_both_found() {
        let (keys, mut items) = proofs(8);
        // Swap two proofs (not their statements): both become proofs of the wrong statement.
        let p1 = items[1].1.clone();
        items[1].1 = items[6].1.clone();
        items[6].1 = p1;
        let v = keys.verifier.verify_batch(&items);
        let bad: Vec<usize> = v
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bad, vec![1, 6]);
    }
}
