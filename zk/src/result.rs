//! A job's result: its verified proofs with their public inputs, the verifying key
//! and a digest binding them, in a file anyone can check offline.
//!
//! The file carries the verifying key itself and its id (the key's SHA-256), so a
//! checker needs nothing from the pool: `zkpool verify RESULT.json` recomputes the
//! id from the key, verifies every proof, checks chain links, and recomputes the
//! digest.
//!
//! A completed job's result also carries its **aggregate** ([`ResultAggregate`]):
//! SnarkPack proofs ([`crate::aggregate`]) that fold the job's proofs into one per
//! run of up to the SRS's size, so a checker can verify one small proof against the
//! public inputs instead of every Groth16 proof ([`AggregateFile`],
//! `zkpool verify --aggregate-only`). The aggregate is not in the digest: it binds
//! the verifying key and every public input itself (its transcript), and it is
//! only as good as the SRS the checker pins (`--srs-id`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    aggregate::{aggregate, verify_aggregate, AggregateProof, Srs, SrsVerifierKey},
    circuits::CircuitSpec,
    field::{fr_to_be_bytes, serde_fr, serde_fr_vec},
    keys::VerifierKey,
    proof::{ProofBytes, VerifyError},
    Fr,
};

/// The format tag of result files written by this version. Version 2 bound the
/// circuit label (`circuit`) into the digest and refused a chain claim outside
/// chain mode; version 3 adds the aggregate. Older files are refused by name (the
/// pool rebuilds its stored ones at start).
pub const RESULT_FORMAT: &str = "zkpool-result/3";

/// The format tag of an aggregate alone (`GET /v1/jobs/{id}/aggregate`).
pub const AGGREGATE_FORMAT: &str = "zkpool-aggregate/1";

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
    /// The entries' proofs aggregated; absent when the pool does not aggregate
    /// (`[aggregation] enabled = false`, or more statements than its limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<ResultAggregate>,
}

/// A result's proofs aggregated under one SRS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultAggregate {
    /// Hex of the SRS verifier key ([`SrsVerifierKey::to_bytes`], 197 bytes); its
    /// SHA-256 is the id a checker pins.
    pub srs: String,
    /// Consecutive runs of the entries, in order, covering every entry once.
    pub parts: Vec<AggregatePart>,
}

/// One aggregate proof over entries `first .. first + count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatePart {
    pub first: u64,
    pub count: u64,
    /// Hex of [`AggregateProof::to_bytes`].
    pub proof: String,
}

/// A statement's public inputs, as a result file writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Publics(#[serde(with = "serde_fr_vec")] pub Vec<Fr>);

/// A job's aggregate alone: everything needed to check it, without the Groth16
/// proofs (a few tens of KB however many statements, plus their public inputs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateFile {
    pub format: String,
    pub job_id: String,
    pub circuit_id: String,
    pub circuit: CircuitSpec,
    pub mode: JobMode,
    pub verifying_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainClaim>,
    /// Every statement's public inputs, in order.
    pub public_inputs: Vec<Publics>,
    pub aggregate: ResultAggregate,
}

/// What an aggregate check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateChecked {
    /// Statements covered.
    pub statements: usize,
    /// Aggregate proofs checked.
    pub parts: usize,
    /// The SRS verifier key's id.
    pub srs_id: String,
    /// The SRS is the insecure test SRS, whose secrets are public: the aggregate
    /// proves nothing (the checker refuses it unless told to accept it).
    pub insecure_srs: bool,
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
    /// The result carries no aggregate to check.
    #[error("the result carries no aggregate (the pool that made it does not aggregate, or the job has more statements than its limit): check its proofs instead (without --aggregate-only)")]
    NoAggregate,
    /// The SRS is not the one the checker pinned (`--srs-id`).
    #[error("the aggregate is made under SRS {actual}, not the expected {expected}: under an SRS whose secrets someone knows, aggregates can be forged")]
    SrsNotPinned { expected: String, actual: String },
    /// The aggregate's parts do not cover the statements once, in order, or one
    /// does not verify.
    #[error("aggregate: {0}")]
    Aggregate(String),
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
            aggregate: None,
        };
        r.digest = r.compute_digest();
        r
    }

    /// Aggregates the entries' proofs under `srs`, in runs of up to its size, and
    /// keeps the aggregate in the result. The proofs must verify (the pool's do:
    /// it verified each on arrival); this costs about 14 ms a proof.
    pub fn aggregate_with(&mut self, srs: &Srs) -> Result<(), ResultError> {
        let verifier = self.check_structure()?;
        let mut parts = Vec::new();
        for (i, run) in self.entries.chunks(srs.max_n()).enumerate() {
            let items: Vec<(Vec<Fr>, ProofBytes)> = run
                .iter()
                .map(|e| (e.public.clone(), e.proof.clone()))
                .collect();
            let proof = aggregate(srs, &verifier, &items)
                .map_err(|e| ResultError::Aggregate(e.to_string()))?;
            parts.push(AggregatePart {
                first: (i * srs.max_n()) as u64,
                count: run.len() as u64,
                proof: proof.to_hex(),
            });
        }
        self.aggregate = Some(ResultAggregate {
            srs: hex::encode(srs.verifier_key().to_bytes()),
            parts,
        });
        Ok(())
    }

    /// The aggregate alone, for a checker who wants no Groth16 proofs.
    pub fn aggregate_file(&self) -> Result<AggregateFile, ResultError> {
        let aggregate = self.aggregate.clone().ok_or(ResultError::NoAggregate)?;
        Ok(AggregateFile {
            format: AGGREGATE_FORMAT.to_owned(),
            job_id: self.job_id.clone(),
            circuit_id: self.circuit_id.clone(),
            circuit: self.circuit,
            mode: self.mode,
            verifying_key: self.verifying_key.clone(),
            chain: self.chain.clone(),
            public_inputs: self
                .entries
                .iter()
                .map(|e| Publics(e.public.clone()))
                .collect(),
            aggregate,
        })
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
        let verifier = decode_key(&self.verifying_key, &self.circuit_id)?;
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
        let publics: Vec<&[Fr]> = self.entries.iter().map(|e| e.public.as_slice()).collect();
        check_claims(
            self.mode,
            self.circuit,
            self.chain.as_ref(),
            &verifier,
            &publics,
        )?;
        Ok(verifier)
    }
}

/// The verifying key a file carries (hex), checked to hash to the id it names.
fn decode_key(hex_key: &str, circuit_id: &str) -> Result<VerifierKey, ResultError> {
    let bytes = hex::decode(hex_key).map_err(|e| ResultError::Key(format!("not hex: {e}")))?;
    let verifier = VerifierKey::from_bytes(&bytes).map_err(|e| ResultError::Key(e.to_string()))?;
    if verifier.id != circuit_id {
        return Err(ResultError::KeyId {
            claimed: circuit_id.to_owned(),
            actual: verifier.id,
        });
    }
    Ok(verifier)
}

/// Checks that a chain job's statements link up from the claimed seed to the
/// claimed output, segment by segment, on their public inputs alone.
fn check_chain(
    circuit: CircuitSpec,
    claim: Option<&ChainClaim>,
    publics: &[&[Fr]],
) -> Result<(), ResultError> {
    let claim =
        claim.ok_or_else(|| ResultError::Chain("chain result has no chain claim".into()))?;
    match circuit {
        CircuitSpec::Chain { steps } if steps == claim.steps_per_segment => {}
        other => {
            return Err(ResultError::Chain(format!(
                "circuit {other:?} does not match the claim's {} steps per segment",
                claim.steps_per_segment
            )))
        }
    }
    if publics.len() as u64 != claim.segments {
        return Err(ResultError::Chain(format!(
            "claim has {} segments, result has {} entries",
            claim.segments,
            publics.len()
        )));
    }
    let mut expected_in = claim.seed;
    for (i, public) in publics.iter().enumerate() {
        if public.len() != 3 {
            return Err(ResultError::Chain(format!(
                "segment {i} has {} public inputs, not 3",
                public.len()
            )));
        }
        if public[0] != Fr::from(i as u64) {
            return Err(ResultError::Chain(format!(
                "segment {i} is labelled as segment {}",
                public[0]
            )));
        }
        if public[1] != expected_in {
            return Err(ResultError::Chain(format!(
                "segment {i} does not start where segment {} ended",
                i.wrapping_sub(1) as isize
            )));
        }
        expected_in = public[2];
    }
    if expected_in != claim.output {
        return Err(ResultError::Chain(
            "last segment's output is not the claimed output".into(),
        ));
    }
    Ok(())
}

/// The mode, chain claim and circuit label agree with each other and with the key.
fn check_claims(
    mode: JobMode,
    circuit: CircuitSpec,
    chain: Option<&ChainClaim>,
    verifier: &VerifierKey,
    publics: &[&[Fr]],
) -> Result<(), ResultError> {
    match (mode, chain, circuit) {
        (JobMode::Chain, Some(_), CircuitSpec::Chain { .. }) => {
            check_chain(circuit, chain, publics)?
        }
        (JobMode::Batch, None, _) => {}
        (JobMode::Batch, Some(_), _) => return Err(ResultError::Claims(
            "a batch result carries a chain claim; only a chain result may, and it is then checked"
                .into(),
        )),
        (JobMode::Chain, None, _) => {
            return Err(ResultError::Claims(
                "a chain result without its chain claim".into(),
            ))
        }
        (JobMode::Chain, Some(_), other) => {
            return Err(ResultError::Claims(format!(
                "a chain claim on a {} circuit",
                other.name()
            )))
        }
    }
    if verifier.public_inputs() != circuit.public_inputs() {
        return Err(ResultError::Claims(format!(
            "the circuit label {} takes {} public inputs, its key {}",
            circuit.name(),
            circuit.public_inputs(),
            verifier.public_inputs()
        )));
    }
    Ok(())
}

impl AggregateFile {
    /// Checks the aggregate alone: the verifying key is circuit `circuit` (the
    /// checker's pin), the SRS is `srs` when pinned, the claims and chain links hold
    /// on the public inputs, and every part verifies over its run of statements.
    pub fn verify(
        &self,
        circuit: &str,
        srs: Option<&str>,
    ) -> Result<AggregateChecked, ResultError> {
        if self.format != AGGREGATE_FORMAT {
            return Err(ResultError::Format(self.format.clone()));
        }
        if self.circuit_id != circuit {
            return Err(ResultError::NotPinned {
                expected: circuit.to_owned(),
                actual: self.circuit_id.clone(),
            });
        }
        let verifier = decode_key(&self.verifying_key, &self.circuit_id)?;
        if self.public_inputs.is_empty() {
            return Err(ResultError::Empty);
        }
        let publics: Vec<&[Fr]> = self.public_inputs.iter().map(|p| p.0.as_slice()).collect();
        check_claims(
            self.mode,
            self.circuit,
            self.chain.as_ref(),
            &verifier,
            &publics,
        )?;
        let bad = |m: String| ResultError::Aggregate(m);
        let srs_bytes = hex::decode(&self.aggregate.srs)
            .map_err(|e| bad(format!("SRS key is not hex: {e}")))?;
        let srs_key = SrsVerifierKey::from_bytes(&srs_bytes).map_err(|e| bad(e.to_string()))?;
        if let Some(expected) = srs {
            if !srs_key.id_hex().eq_ignore_ascii_case(expected) {
                return Err(ResultError::SrsNotPinned {
                    expected: expected.to_owned(),
                    actual: srs_key.id_hex(),
                });
            }
        }
        let mut next = 0u64;
        for (i, part) in self.aggregate.parts.iter().enumerate() {
            if part.first != next || part.count == 0 {
                return Err(bad(format!(
                    "part {i} covers statements {}..{}, expected to start at {next}: the parts must cover every statement once, in order",
                    part.first,
                    part.first.saturating_add(part.count)
                )));
            }
            let end = part.first.saturating_add(part.count);
            if end > publics.len() as u64 {
                return Err(bad(format!(
                    "part {i} covers statements up to {end}, there are {}",
                    publics.len()
                )));
            }
            let proof =
                AggregateProof::from_hex(&part.proof).map_err(|e| bad(format!("part {i}: {e}")))?;
            let inputs: Vec<Vec<Fr>> = publics[part.first as usize..end as usize]
                .iter()
                .map(|p| p.to_vec())
                .collect();
            verify_aggregate(&srs_key, &verifier, &inputs, &proof)
                .map_err(|e| bad(format!("part {i} (statements {}..{end}): {e}", part.first)))?;
            next = end;
        }
        if next != publics.len() as u64 {
            return Err(bad(format!(
                "the parts cover {next} of {} statements",
                publics.len()
            )));
        }
        Ok(AggregateChecked {
            statements: publics.len(),
            parts: self.aggregate.parts.len(),
            srs_id: srs_key.id_hex(),
            insecure_srs: srs_key.is_insecure(),
        })
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
    fn an_older_file_is_refused_by_name() {
        for old in ["zkpool-result/1", "zkpool-result/2"] {
            let mut r = chain_result();
            r.format = old.into();
            let e = r.verify().unwrap_err().to_string();
            assert!(e.contains("download the result from the pool again"), "{e}");
        }
    }

    fn aggregated() -> (JobResult, String) {
        let mut r = chain_result();
        // Runs of two: three statements make two parts, the second padded.
        let srs = Srs::insecure_for_tests(2);
        r.aggregate_with(&srs).unwrap();
        (r, srs.verifier_key().id_hex())
    }

    #[test]
    fn an_aggregate_checks_alone_against_the_pinned_circuit_and_srs() {
        let (r, srs) = aggregated();
        assert_eq!(r.verify(), Ok(3), "the proofs still check");
        let a = r.aggregate.as_ref().unwrap();
        assert_eq!(
            a.parts
                .iter()
                .map(|p| (p.first, p.count))
                .collect::<Vec<_>>(),
            vec![(0, 2), (2, 1)]
        );
        let file = r.aggregate_file().unwrap();
        let back: AggregateFile =
            serde_json::from_str(&serde_json::to_string(&file).unwrap()).unwrap();
        let checked = back.verify(&r.circuit_id, Some(&srs)).unwrap();
        assert_eq!((checked.statements, checked.parts), (3, 2));
        assert!(checked.insecure_srs, "the test SRS says it is insecure");
        assert!(matches!(
            back.verify(&"0".repeat(64), Some(&srs)),
            Err(ResultError::NotPinned { .. })
        ));
        assert!(matches!(
            back.verify(&r.circuit_id, Some(&"ab".repeat(32))),
            Err(ResultError::SrsNotPinned { .. })
        ));
        let mut bare = chain_result();
        bare.aggregate = None;
        assert_eq!(bare.aggregate_file(), Err(ResultError::NoAggregate));
    }

    #[test]
    fn a_changed_input_part_or_srs_fails_the_aggregate() {
        let (r, srs) = aggregated();
        let good = r.aggregate_file().unwrap();
        let check = |f: &AggregateFile| f.verify(&r.circuit_id, None);
        // A public input changed where the chain links do not see it (batch mode
        // would not check links at all): the aggregate catches it.
        let mut f = good.clone();
        f.mode = JobMode::Batch;
        f.chain = None;
        assert!(check(&f).is_ok(), "the same statements as a batch verify");
        f.public_inputs[1].0[0] += Fr::from(1u64);
        let e = check(&f).unwrap_err().to_string();
        assert!(e.contains("part 0"), "{e}");
        // A broken chain link is caught on the public inputs.
        let mut f = good.clone();
        f.public_inputs[2].0[1] += Fr::from(1u64);
        assert!(matches!(check(&f), Err(ResultError::Chain(_))));
        // Parts that skip, repeat or fall short of the statements.
        for (first, count) in [(1, 2), (0, 1), (2, 5)] {
            let mut f = good.clone();
            f.aggregate.parts[if first == 0 && count == 1 { 0 } else { 1 }] = AggregatePart {
                first,
                count,
                ..good.aggregate.parts[1].clone()
            };
            assert!(
                matches!(check(&f), Err(ResultError::Aggregate(_))),
                "{first} {count}"
            );
        }
        let mut f = good.clone();
        f.aggregate.parts.pop();
        assert!(check(&f).unwrap_err().to_string().contains("cover 2 of 3"));
        // The parts swapped.
        let mut f = good.clone();
        f.aggregate.parts.swap(0, 1);
        assert!(check(&f).is_err());
        // A byte of a proof changed.
        let mut f = good.clone();
        let mut bytes = hex::decode(&f.aggregate.parts[0].proof).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        f.aggregate.parts[0].proof = hex::encode(bytes);
        assert!(check(&f).is_err());
        // Another SRS (two real ceremonies') does not verify it, and an
        // aggregate made under that SRS is refused where the test SRS is pinned.
        let ceremonies = Srs::from_ptau(
            &mut &include_bytes!("../tests/fixtures/ptau/ceremony_a.ptau")[..],
            "ceremony_a.ptau",
            &mut &include_bytes!("../tests/fixtures/ptau/ceremony_b.ptau")[..],
            "ceremony_b.ptau",
            2,
        )
        .unwrap();
        let mut f = good.clone();
        let mut other = chain_result();
        other.aggregate_with(&ceremonies).unwrap();
        let other = other.aggregate_file().unwrap();
        f.aggregate.srs = other.aggregate.srs.clone();
        assert!(check(&f).is_err());
        let checked = other.verify(&r.circuit_id, None).unwrap();
        assert!(!checked.insecure_srs);
        assert!(matches!(
            other.verify(&r.circuit_id, Some(&srs)),
            Err(ResultError::SrsNotPinned { .. })
        ));
        assert!(check(&good).is_ok());
    }
}
