//! A job's result: its verified proofs with their public inputs, the verifying key
//! and a digest binding them, in a file anyone can check offline.
//!
//! The file carries the verifying key itself and its id (the key's SHA-256), so a
//! checker needs nothing from the pool: `zkpool verify RESULT.json` recomputes the
//! id from the key, verifies every proof, checks chain links, and recomputes the
//! digest.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    circuits::CircuitSpec,
    field::{fr_to_be_bytes, serde_fr, serde_fr_vec},
    keys::VerifierKey,
    proof::{ProofBytes, VerifyError},
    Fr,
};

/// The format tag of result files written by this version. Version 2 binds the
/// circuit label (`circuit`) into the digest and refuses a chain claim outside
/// chain mode; version 1 files are refused (the pool rebuilds its stored ones).
pub const RESULT_FORMAT: &str = "zkpool-result/2";

/// How a job's statements relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobMode {
    /// Independent statements.
    Batch,
    /// Linked segments of one computation: segment i's output is segment i+1's input.
    Chain,
}

/// One proven statement of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultEntry {
    #[serde(with = "serde_fr_vec")]
    pub public: Vec<Fr>,
    pub proof: ProofBytes,
}

/// The claim of a chain job: `H^(segments x steps)(seed) = output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainClaim {
    #[serde(with = "serde_fr")]
    pub seed: Fr,
    #[serde(with = "serde_fr")]
    pub output: Fr,
    pub segments: u64,
    pub steps_per_segment: u32,
}

/// A finished job's result file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobResult {
    pub format: String,
    pub job_id: String,
    pub circuit_id: String,
    pub circuit: CircuitSpec,
    pub mode: JobMode,
    /// Hex of the arkworks-compressed verifying key; its SHA-256 is `circuit_id`.
    pub verifying_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainClaim>,
    pub entries: Vec<ResultEntry>,
    /// Hex SHA-256 over the circuit id, mode, chain claim and every entry.
    pub digest: String,
}

/// Why a result file does not check out. Each names what to look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// The file is not a result of a format this version reads.
    #[error("unsupported result format {0:?} (this version reads {RESULT_FORMAT:?}; download the result from the pool again)")]
    Format(String),
    /// The mode, the chain claim and the circuit label contradict each other.
    #[error("inconsistent result: {0}")]
    Claims(String),
    /// The key is not the one the checker pinned (`--circuit-id`).
    #[error("the result is for circuit {actual}, not the expected {expected}: its proofs are checked against a key you did not choose, so they prove nothing to you")]
    NotPinned { expected: String, actual: String },
    /// The verifying key cannot be decoded.
    #[error("verifying key is not valid: {0}")]
    Key(String),
    /// The verifying key does not hash to the circuit id.
    #[error("verifying key hashes to {actual}, but the result names circuit {claimed}")]
    KeyId { claimed: String, actual: String },
    /// The result has no proofs.
    #[error("result has no entries")]
    Empty,
    /// One proof failed; `index` is its position in `entries`.
    #[error("entry {index}: {error}")]
    Proof { index: usize, error: VerifyError },
    /// Chain segments do not link up, or do not match the claim.
    #[error("chain link broken: {0}")]
    Chain(String),
    /// The digest does not match the content.
    #[error("digest mismatch: the file says {claimed}, its content hashes to {actual}")]
    Digest { claimed: String, actual: String },
}

impl JobResult {
    /// Builds a result from verified entries and computes its digest.
    pub fn new(
        job_id: String,
        spec: CircuitSpec,
        mode: JobMode,
        verifier: &VerifierKey,
        chain: Option<ChainClaim>,
        entries: Vec<ResultEntry>,
    ) -> Self {
        let mut r = JobResult {
            format: RESULT_FORMAT.to_owned(),
            job_id,
            circuit_id: verifier.id.clone(),
            circuit: spec,
            mode,
            verifying_key: hex::encode(verifier.to_bytes()),
            chain,
            entries,
            digest: String::new(),
        };
        r.digest = r.compute_digest();
        r
    }

    /// The digest over everything a verifier relies on (the key is bound through
    /// its id; the circuit label is bound too, so it cannot be rewritten alone).
    pub fn compute_digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(RESULT_FORMAT.as_bytes());
        h.update(self.job_id.as_bytes());
        h.update([0]);
        h.update(self.circuit_id.as_bytes());
        let label = serde_json::to_vec(&self.circuit).expect("specs serialise");
        h.update((label.len() as u32).to_be_bytes());
        h.update(&label);
        h.update([self.mode as u8]);
        if let Some(c) = &self.chain {
            h.update(fr_to_be_bytes(&c.seed));
            h.update(fr_to_be_bytes(&c.output));
            h.update(c.segments.to_be_bytes());
            h.update(c.steps_per_segment.to_be_bytes());
        }
        h.update((self.entries.len() as u64).to_be_bytes());
        for e in &self.entries {
            h.update((e.public.len() as u32).to_be_bytes());
            for x in &e.public {
                h.update(fr_to_be_bytes(x));
            }
            h.update((e.proof.0.len() as u32).to_be_bytes());
            h.update(&e.proof.0);
        }
        hex::encode(h.finalize())
    }

    /// [`JobResult::verify`] against the circuit the checker expects: the file
    /// carries its own verifying key, so without a pin a forger's key (one that
    /// accepts anything) would check out. `expected` is a circuit id as the pool
    /// publishes it (`GET /v1/circuits`).
    pub fn verify_pinned(&self, expected: &str) -> Result<usize, ResultError> {
        if self.circuit_id != expected {
            return Err(ResultError::NotPinned {
                expected: expected.to_owned(),
                actual: self.circuit_id.clone(),
            });
        }
        self.verify()
    }

    /// Checks the whole result offline; returns the number of proofs verified.
    /// This proves the proofs hold under the key in the file; which circuit that
    /// is, only a pinned id says ([`JobResult::verify_pinned`]).
    pub fn verify(&self) -> Result<usize, ResultError> {
        let verifier = self.check_structure()?;
        for (index, e) in self.entries.iter().enumerate() {
            verifier
                .verify(&e.public, &e.proof)
                .map_err(|error| ResultError::Proof { index, error })?;
        }
        Ok(self.entries.len())
    }

    /// Everything [`JobResult::verify`] checks except the proofs themselves: format,
    /// key and id, digest, chain links. The pool runs this when it assembles a
    /// result from proofs it verified on arrival.
    pub fn check_structure(&self) -> Result<VerifierKey, ResultError> {
        if self.format != RESULT_FORMAT {
            return Err(ResultError::Format(self.format.clone()));
        }
        let vk_bytes = hex::decode(&self.verifying_key)
            .map_err(|e| ResultError::Key(format!("not hex: {e}")))?;
        let verifier =
            VerifierKey::from_bytes(&vk_bytes).map_err(|e| ResultError::Key(e.to_string()))?;
        if verifier.id != self.circuit_id {
            return Err(ResultError::KeyId {
                claimed: self.circuit_id.clone(),
                actual: verifier.id,
            });
        }
        if self.entries.is_empty() {
            return Err(ResultError::Empty);
        }
        let digest = self.compute_digest();
        if digest != self.digest {
            return Err(ResultError::Digest {
                claimed: self.digest.clone(),
                actual: digest,
            });
        }
        match (self.mode, &self.chain, self.circuit) {
            (JobMode::Chain, Some(_), CircuitSpec::Chain { .. }) => self.check_chain()?,
            (JobMode::Batch, None, _) => {}
            (JobMode::Batch, Some(_), _) => {
                return Err(ResultError::Claims(
                    "a batch result carries a chain claim; only a chain result may, and it is then checked".into(),
                ))
            }
            (JobMode::Chain, None, _) => {
                return Err(ResultError::Claims("a chain result without its chain claim".into()))
            }
            (JobMode::Chain, Some(_), other) => {
                return Err(ResultError::Claims(format!(
                    "a chain claim on a {} circuit",
                    other.name()
                )))
            }
        }
        if verifier.public_inputs() != self.circuit.public_inputs() {
            return Err(ResultError::Claims(format!(
                "the circuit label {} takes {} public inputs, its key {}",
                self.circuit.name(),
                self.circuit.public_inputs(),
                verifier.public_inputs()
            )));
        }
        Ok(verifier)
    }

    fn check_chain(&self) -> Result<(), ResultError> {
        let claim = self
            .chain
            .as_ref()
            .ok_or_else(|| ResultError::Chain("chain result has no chain claim".into()))?;
        match self.circuit {
            CircuitSpec::Chain { steps } if steps == claim.steps_per_segment => {}
            other => {
                return Err(ResultError::Chain(format!(
                    "circuit {other:?} does not match the claim's {} steps per segment",
                    claim.steps_per_segment
                )))
            }
        }
        if self.entries.len() as u64 != claim.segments {
            return Err(ResultError::Chain(format!(
                "claim has {} segments, result has {} entries",
                claim.segments,
                self.entries.len()
            )));
        }
        let mut expected_in = claim.seed;
        for (i, e) in self.entries.iter().enumerate() {
            if e.public.len() != 3 {
                return Err(ResultError::Chain(format!(
                    "segment {i} has {} public inputs, not 3",
                    e.public.len()
                )));
            }
            if e.public[0] != Fr::from(i as u64) {
                return Err(ResultError::Chain(format!(
                    "segment {i} is labelled as segment {}",
                    e.public[0]
                )));
            }
            if e.public[1] != expected_in {
                return Err(ResultError::Chain(format!(
                    "segment {i} does not start where segment {} ended",
                    i.wrapping_sub(1) as isize
                )));
            }
            expected_in = e.public[2];
        }
        if expected_in != claim.output {
            return Err(ResultError::Chain(
                "last segment's output is not the claimed output".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CircuitKeys;

    fn chain_result() -> JobResult {
        let spec = CircuitSpec::Chain { steps: 2 };
        let keys = CircuitKeys::setup_seeded(spec, 1).unwrap();
        let seed = Fr::from(3u64);
        let (statements, state) = CircuitSpec::chain_statements(2, seed, 3);
        let entries = statements
            .into_iter()
            .map(|s| ResultEntry {
                proof: keys.prove(&s).unwrap(),
                public: s.public,
            })
            .collect();
        let claim = ChainClaim {
            seed,
            output: state,
            segments: 3,
            steps_per_segment: 2,
        };
        JobResult::new(
            "job1".into(),
            spec,
            JobMode::Chain,
            &keys.verifier,
            Some(claim),
            entries,
        )
    }

    #[test]
    fn a_true_chain_result_verifies_and_survives_json() {
        let r = chain_result();
        assert_eq!(r.verify(), Ok(3));
        let back: JobResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.verify(), Ok(3));
    }

    #[test]
    fn tampering_is_caught_with_a_reason() {
        let r = chain_result();

        let mut swapped = r.clone();
        swapped.entries.swap(0, 1);
        swapped.digest = swapped.compute_digest();
        assert!(matches!(swapped.verify(), Err(ResultError::Chain(_))));

        let mut proof_swapped = r.clone();
        let p0 = proof_swapped.entries[0].proof.clone();
        proof_swapped.entries[0].proof = proof_swapped.entries[1].proof.clone();
        proof_swapped.entries[1].proof = p0;
        proof_swapped.digest = proof_swapped.compute_digest();
        assert!(matches!(
            proof_swapped.verify(),
            Err(ResultError::Proof { index: 0, .. })
        ));

        let mut digest_only = r.clone();
        digest_only.entries[2].proof = r.entries[1].proof.clone();
        assert!(matches!(
            digest_only.verify(),
            Err(ResultError::Digest { .. })
        ));

        let mut other_key = r.clone();
        other_key.circuit_id = "00".repeat(32);
        assert!(matches!(other_key.verify(), Err(ResultError::KeyId { .. })));
    }

    /// The forgery an outsider tried: a genuine chain result switched to batch
    /// mode with a rewritten chain output and a recomputed digest; and a result of
    /// another circuit relabelled `chain`. Neither checks out.
    #[test]
    fn rewritten_claims_and_labels_are_refused() {
        let r = chain_result();

        let mut batch = r.clone();
        batch.mode = JobMode::Batch;
        batch.chain.as_mut().unwrap().output = Fr::from(12345u64);
        batch.digest = batch.compute_digest();
        assert!(
            matches!(batch.verify(), Err(ResultError::Claims(_))),
            "{:?}",
            batch.verify()
        );

        // The label is under the digest: rewriting it alone is caught.
        let mut relabelled = r.clone();
        relabelled.circuit = CircuitSpec::Chain { steps: 3 };
        assert!(matches!(
            relabelled.verify(),
            Err(ResultError::Digest { .. })
        ));

        // A preimage result relabelled as a chain, digest recomputed.
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 2).unwrap();
        let s = CircuitSpec::preimage_statement(Fr::from(5u64));
        let entry = ResultEntry {
            proof: keys.prove(&s).unwrap(),
            public: s.public.clone(),
        };
        let mut other = JobResult::new(
            "job2".into(),
            CircuitSpec::Preimage,
            JobMode::Batch,
            &keys.verifier,
            None,
            vec![entry],
        );
        assert_eq!(other.verify(), Ok(1));
        other.circuit = CircuitSpec::Chain { steps: 2 };
        other.digest = other.compute_digest();
        assert!(matches!(other.verify(), Err(ResultError::Claims(_))));
    }

    /// A result checks out only against the circuit the checker names.
    #[test]
    fn a_pinned_check_refuses_another_circuits_key() {
        let r = chain_result();
        assert_eq!(r.verify_pinned(&r.circuit_id), Ok(3));
        let err = r.verify_pinned(&"ab".repeat(32)).unwrap_err();
        assert!(matches!(err, ResultError::NotPinned { .. }));
        assert!(err.to_string().contains("prove nothing to you"), "{err}");
    }

    #[test]
    fn a_version_1_file_is_refused_by_name() {
        let mut r = chain_result();
        r.format = "zkpool-result/1".into();
        let e = r.verify().unwrap_err().to_string();
        assert!(e.contains("download the result from the pool again"), "{e}");
    }
}
