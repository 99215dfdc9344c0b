//! The built-in circuits and their statements.
//!
//! - `chain`: one segment of `H^n(seed)` with `H(x) = Poseidon([x])`. Public inputs
//!   `[index, state_in, state_out]`, proving `state_out = H^steps(state_in)`. A chain job
//!   of `m` segments links segment `i`'s `state_out` to segment `i + 1`'s `state_in`; the
//!   bound `index` keeps a proof of one segment from standing in for another that
//!   happens to share its states.
//! - `preimage`: knowledge of `x` with `Poseidon([x]) = digest`. Public input `[digest]`,
//!   private `[x]`. A batch job is many independent statements of it.

use ark_r1cs_std::{fields::fp::FpVar, prelude::*};
use ark_relations::{
    gr1cs::{ConstraintSynthesizer, ConstraintSystem, ConstraintSystemRef, SynthesisError},
    lc,
};
use serde::{Deserialize, Serialize};

use crate::{field::serde_fr_vec, poseidon, Fr};

/// Which relation a circuit proves, with its shape parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CircuitSpec {
    /// One segment of an iterated Poseidon hash chain, `steps` hashes long.
    Chain { steps: u32 },
    /// Knowledge of a Poseidon preimage.
    Preimage,
    /// A client's circom circuit with a snarkjs zkey (see [`crate::circom`]). Its
    /// statements carry circom input JSON; their public signals are what the
    /// pool's run of the witness generator computed.
    Circom { constraints: u64, public: u32 },
    /// Only a verifying key (a snarkjs `verification_key.json`): the pool checks
    /// proofs of it (`POST /v1/circuits/{id}/verify`) but has no prover for it, so
    /// it takes no jobs.
    VerifyOnly { public: u32 },
}

/// Default hashes per chain segment: about 13.6k constraints, ~0.45 s to prove on 2 cores.
pub const DEFAULT_CHAIN_STEPS: u32 = 64;

/// The inputs of one proof: public inputs in the circuit's order, and the private
/// inputs the prover needs (empty when the public ones determine the witness).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(with = "serde_fr_vec", default)]
    pub public: Vec<Fr>,
    #[serde(with = "serde_fr_vec", default, skip_serializing_if = "Vec::is_empty")]
    pub private: Vec<Fr>,
    /// circom circuits only: the input signals, as circom input JSON
    /// (`{"a": "3", "b": ["1", "2"]}`). A client gives only this; the pool fills
    /// `public` from its own run of the witness generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

impl Statement {
    /// A statement of a built-in circuit.
    pub fn new(public: Vec<Fr>, private: Vec<Fr>) -> Self {
        Statement {
            public,
            private,
            input: None,
        }
    }
}

/// Why a statement cannot be proven with a circuit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The statement has the wrong number of public inputs for the circuit.
    #[error("{circuit} takes {expected} public input(s), the statement has {got}")]
    PublicArity {
        circuit: &'static str,
        expected: usize,
        got: usize,
    },
    /// The statement has the wrong number of private inputs for the circuit.
    #[error("{circuit} takes {expected} private input(s), the statement has {got}")]
    PrivateArity {
        circuit: &'static str,
        expected: usize,
        got: usize,
    },
    /// The inputs do not satisfy the relation, so no valid proof exists.
    #[error("statement is not satisfiable: {0}")]
    Unsatisfiable(String),
}

impl CircuitSpec {
    /// The built-in name (`chain`, `preimage`), which jobs may use instead of an id.
    pub fn name(&self) -> &'static str {
        match self {
            CircuitSpec::Chain { .. } => "chain",
            CircuitSpec::Preimage => "preimage",
            CircuitSpec::Circom { .. } => "circom",
            CircuitSpec::VerifyOnly { .. } => "verify_only",
        }
    }

    pub fn public_inputs(&self) -> usize {
        match self {
            CircuitSpec::Chain { .. } => 3,
            CircuitSpec::Preimage => 1,
            CircuitSpec::Circom { public, .. } | CircuitSpec::VerifyOnly { public } => {
                *public as usize
            }
        }
    }

    pub fn private_inputs(&self) -> usize {
        match self {
            CircuitSpec::Chain { .. }
            | CircuitSpec::Circom { .. }
            | CircuitSpec::VerifyOnly { .. } => 0,
            CircuitSpec::Preimage => 1,
        }
    }

    /// The chain segment statement `[index, state_in, H^steps(state_in)]`.
    pub fn chain_statement(steps: u32, index: u64, state_in: Fr) -> Statement {
        Statement::new(
            vec![
                Fr::from(index),
                state_in,
                poseidon::iterate(state_in, steps as u64),
            ],
            vec![],
        )
    }

    /// A chain's segment statements from `seed`, `segments` of `steps` hashes each,
    /// linked (segment i's output is segment i+1's input), and the chain's output.
    /// This executes the chain natively (about 27 us per hash in release).
    pub fn chain_statements(steps: u32, seed: Fr, segments: u64) -> (Vec<Statement>, Fr) {
        let mut state = seed;
        let statements = (0..segments)
            .map(|i| {
                let s = Self::chain_statement(steps, i, state);
                state = s.public[2];
                s
            })
            .collect();
        (statements, state)
    }

    /// The preimage statement `[Poseidon([x])]` with private `[x]`.
    pub fn preimage_statement(x: Fr) -> Statement {
        Statement::new(vec![poseidon::hash(&[x])], vec![x])
    }

    /// Checks the statement's shape and that it is satisfiable, natively (fast:
    /// microseconds per hash), so the pool never hands out work that cannot succeed.
    pub fn check(&self, s: &Statement) -> Result<(), StatementError> {
        if let CircuitSpec::VerifyOnly { .. } = self {
            return Err(StatementError::Unsatisfiable(
                "this circuit is verify-only (registered from a verifying key): the pool has no prover for it, so it takes no jobs; check proofs of it with POST /v1/circuits/{id}/verify".into(),
            ));
        }
        if let CircuitSpec::Circom { .. } = self {
            // Satisfiability needs the circuit's witness generator: the pool's
            // registry runs it (`circuits::Circuit::evaluate`).
            if s.input.is_none() {
                return Err(StatementError::Unsatisfiable(
                    "a circom statement needs \"input\": the circuit's input signals as circom input JSON".into(),
                ));
            }
            if s.public.is_empty() {
                return Ok(());
            }
        } else if s.input.is_some() {
            return Err(StatementError::Unsatisfiable(format!(
                "\"input\" is for circom circuits; {} takes \"public\" and \"private\"",
                self.name()
            )));
        }
        if s.public.len() != self.public_inputs() {
            return Err(StatementError::PublicArity {
                circuit: self.name(),
                expected: self.public_inputs(),
                got: s.public.len(),
            });
        }
        if s.private.len() != self.private_inputs() {
            return Err(StatementError::PrivateArity {
                circuit: self.name(),
                expected: self.private_inputs(),
                got: s.private.len(),
            });
        }
        match self {
            CircuitSpec::Chain { steps } => {
                if poseidon::iterate(s.public[1], *steps as u64) != s.public[2] {
                    return Err(StatementError::Unsatisfiable(format!(
                        "state_out is not H^{steps}(state_in)"
                    )));
                }
            }
            CircuitSpec::Preimage => {
                if poseidon::hash(&[s.private[0]]) != s.public[0] {
                    return Err(StatementError::Unsatisfiable(
                        "digest is not Poseidon([preimage])".into(),
                    ));
                }
            }
            CircuitSpec::Circom { .. } | CircuitSpec::VerifyOnly { .. } => {}
        }
        Ok(())
    }

    /// The circuit with the statement's values assigned (for proving).
    pub fn with_statement(&self, s: &Statement) -> Circuit {
        Circuit {
            spec: *self,
            public: Some(s.public.clone()),
            private: Some(s.private.clone()),
        }
    }

    /// The circuit with no values (for key generation and constraint counting).
    pub fn blank(&self) -> Circuit {
        Circuit {
            spec: *self,
            public: None,
            private: None,
        }
    }

    /// The number of R1CS constraints: the unit of work credited per proof.
    pub fn constraints(&self) -> u64 {
        match self {
            CircuitSpec::Circom { constraints, .. } => return *constraints,
            CircuitSpec::VerifyOnly { .. } => return 0,
            _ => {}
        }
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_mode(ark_relations::gr1cs::SynthesisMode::Setup);
        self.blank()
            .generate_constraints(cs.clone())
            .expect("built-in circuits synthesise in setup mode");
        cs.finalize();
        cs.num_constraints() as u64
    }
}

/// A built-in circuit, with or without an assignment.
#[derive(Clone)]
pub struct Circuit {
    spec: CircuitSpec,
    public: Option<Vec<Fr>>,
    private: Option<Vec<Fr>>,
}

impl Circuit {
    fn input(&self, cs: &ConstraintSystemRef<Fr>, i: usize) -> Result<FpVar<Fr>, SynthesisError> {
        FpVar::new_input(cs.clone(), || {
            self.public
                .as_ref()
                .and_then(|p| p.get(i).copied())
                .ok_or(SynthesisError::AssignmentMissing)
        })
    }

    fn witness(&self, cs: &ConstraintSystemRef<Fr>, i: usize) -> Result<FpVar<Fr>, SynthesisError> {
        FpVar::new_witness(cs.clone(), || {
            self.private
                .as_ref()
                .and_then(|p| p.get(i).copied())
                .ok_or(SynthesisError::AssignmentMissing)
        })
    }
}

impl ConstraintSynthesizer<Fr> for Circuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        match self.spec {
            CircuitSpec::Chain { steps } => {
                let index = self.input(&cs, 0)?;
                let state_in = self.input(&cs, 1)?;
                let state_out = self.input(&cs, 2)?;
                // Bind `index` with a constraint of its own, so it is part of the
                // statement under any R1CS-to-QAP reduction, not only libsnark's.
                if let FpVar::Var(v) = &index {
                    let var = v.variable;
                    cs.enforce_r1cs_constraint(
                        || lc!() + var,
                        || lc!() + ark_relations::gr1cs::Variable::One,
                        || lc!() + var,
                    )?;
                }
                let mut state = state_in;
                for _ in 0..steps {
                    state = poseidon::hash_var(&[state])?;
                }
                state.enforce_equal(&state_out)
            }
            CircuitSpec::Preimage => {
                let digest = self.input(&cs, 0)?;
                let x = self.witness(&cs, 0)?;
                poseidon::hash_var(&[x])?.enforce_equal(&digest)
            }
            // A circom circuit's constraints are in its r1cs, not synthesised here:
            // `crate::circom` proves it from the matrices.
            CircuitSpec::Circom { .. } | CircuitSpec::VerifyOnly { .. } => {
                Err(SynthesisError::Unsatisfiable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn satisfied(spec: CircuitSpec, s: &Statement) -> bool {
        let cs = ConstraintSystem::<Fr>::new_ref();
        spec.with_statement(s)
            .generate_constraints(cs.clone())
            .unwrap();
        cs.is_satisfied().unwrap()
    }

    #[test]
    fn chain_segment_is_satisfied_only_by_the_true_output() {
        let spec = CircuitSpec::Chain { steps: 3 };
        let mut s = CircuitSpec::chain_statement(3, 0, Fr::from(7u64));
        assert!(spec.check(&s).is_ok());
        assert!(satisfied(spec, &s));
        s.public[2] += Fr::from(1u64);
        assert!(matches!(
            spec.check(&s),
            Err(StatementError::Unsatisfiable(_))
        ));
        assert!(!satisfied(spec, &s));
    }

    #[test]
    fn preimage_is_satisfied_only_by_the_preimage() {
        let spec = CircuitSpec::Preimage;
        let mut s = CircuitSpec::preimage_statement(Fr::from(99u64));
        assert!(satisfied(spec, &s));
        s.private[0] = Fr::from(98u64);
        assert!(spec.check(&s).is_err());
        assert!(!satisfied(spec, &s));
    }

    #[test]
    fn arity_errors_name_the_circuit_and_counts() {
        let s = Statement::new(vec![Fr::from(1u64)], vec![]);
        let e = CircuitSpec::Chain { steps: 1 }.check(&s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "chain takes 3 public input(s), the statement has 1"
        );
    }

    #[test]
    fn constraint_counts_grow_with_steps() {
        let one = CircuitSpec::Chain { steps: 1 }.constraints();
        let two = CircuitSpec::Chain { steps: 2 }.constraints();
        // One Poseidon width-2 permutation: 8 full rounds x 2 S-boxes + 56 partial = 72
        // S-boxes of 3 constraints, less the first one, which acts on the constant 0 + c.
        assert_eq!(two - one, 71 * 3);
        // One hash plus the digest equality.
        assert_eq!(CircuitSpec::Preimage.constraints(), 213 + 1);
        // 64 hashes, the index binding and the output equality.
        assert_eq!(CircuitSpec::Chain { steps: 64 }.constraints(), 64 * 213 + 2);
    }
}
