//! Jobs: what a client asks for, how it is validated and recorded, and how its
//! verified proofs are assembled into a result.

use serde::{Deserialize, Serialize};
use zk::{
    field::parse_fr,
    result::{ChainClaim, JobMode, ResultEntry},
    CircuitSpec, JobResult, ProofBytes, Statement,
};

use crate::circuits::{now_ms, Circuit};

/// `POST /v1/jobs` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// A built-in circuit name (`chain`, `preimage`) or a circuit id.
    pub circuit: String,
    /// Chain mode: prove `H^(segments x steps)(seed)` as linked segments.
    #[serde(default)]
    pub chain: Option<ChainRequest>,
    /// Batch mode: independent statements.
    #[serde(default)]
    pub statements: Option<Vec<Statement>>,
    /// Reward for the whole job, in the smallest unit. Default 0.
    #[serde(default)]
    pub reward: u64,
    /// Seconds from submission until the job expires. Default 86400.
    #[serde(default)]
    pub deadline_secs: Option<u64>,
    /// The submitting client's name. Default `anonymous`.
    #[serde(default)]
    pub client: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainRequest {
    /// Decimal field element the chain starts from.
    pub seed: String,
    /// Number of segments (proofs).
    pub segments: u64,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted; statements are waiting for or being proven.
    Running,
    /// Every statement has a verified proof and the result is stored.
    Completed,
    /// The deadline passed first. Verified proofs stay stored and credited.
    Expired,
    /// The client (or the operator) cancelled it. Verified proofs stay stored and
    /// credited; the reward not earned is refunded.
    Cancelled,
    /// A statement failed `scheduler.max_attempts` times (`failure` says which and
    /// why). Verified proofs stay stored and credited; the rest is refunded.
    Failed,
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub client: String,
    pub circuit_id: String,
    pub circuit_name: String,
    pub spec: CircuitSpec,
    pub mode: JobMode,
    pub statements: Vec<Statement>,
    pub chain: Option<ChainClaim>,
    pub reward: u64,
    pub work_per_proof: u64,
    pub created_ms: u64,
    pub deadline_ms: u64,
    pub state: JobState,
    #[serde(default)]
    pub completed_ms: Option<u64>,
    /// Why a failed job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl JobRecord {
    pub fn total_work(&self) -> u64 {
        self.work_per_proof * self.statements.len() as u64
    }
}

/// A verified proof as stored, with who proved it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredProof {
    pub proof: ProofBytes,
    pub worker: String,
    pub task: String,
    pub at_ms: u64,
}

/// Why a job request was refused (HTTP 4xx).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The body is not a valid job request.
    #[error("{0}")]
    BadRequest(String),
    /// The named circuit is not registered.
    #[error("unknown circuit {0:?}: GET /v1/circuits lists the registered ones (built-in names: chain, preimage)")]
    UnknownCircuit(String),
    /// No client API key, or a key the pool does not know (HTTP 401).
    #[error("{0}")]
    Unauthorized(String),
    /// The key does not allow this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The client's balance cannot cover the reward (HTTP 402).
    #[error("client {client:?} has {have} but the job's reward is {need}: {missing} more is needed (ask the operator to deposit it: `zkpool clients deposit {client} {missing}`)", missing = need - have)]
    PaymentRequired {
        client: String,
        have: u64,
        need: u64,
    },
    /// The pool failed (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

pub const DEFAULT_DEADLINE_SECS: u64 = 86_400;

/// Runs a circom statement's input through the circuit's witness generator and
/// checks every constraint, so no task is handed out that cannot be proven, and
/// fills in the public signals the proofs are verified against. A client may
/// give `public` too; it must then equal what the circuit computes.
fn evaluate_circom(c: &zk::circom::CircomCircuit, s: &mut zk::Statement) -> Result<(), String> {
    let input = s
        .input
        .as_ref()
        .ok_or("a circom statement needs \"input\"")?;
    let witness = c.witness(input).map_err(|e| e.to_string())?;
    let public = c.public_signals(&witness);
    if !s.public.is_empty() && s.public != public {
        return Err(format!(
            "\"public\" differs from the public signals the circuit computes from \"input\" ({}); leave it out to use them",
            public.iter().map(zk::field::fr_to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    s.public = public;
    Ok(())
}

fn new_job_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// Validates a request against its circuit and builds the job. CPU-bound for long
/// chains (the pool executes the chain natively to cut it into segments): run it
/// off the async workers.
pub fn build(
    req: JobRequest,
    circuit: &Circuit,
    max_statements: usize,
) -> Result<JobRecord, JobError> {
    let spec = circuit.record.spec;
    let (mode, statements, chain) = match (req.chain, req.statements) {
        (Some(_), Some(_)) => return Err(JobError::BadRequest("give either \"chain\" or \"statements\", not both".into())),
        (None, None) => {
            return Err(JobError::BadRequest(
                "missing field: a job needs \"chain\": {\"seed\", \"segments\"} (chain mode) or \"statements\": [...] (batch mode)".into(),
            ))
        }
        (Some(c), None) => {
            let CircuitSpec::Chain { steps } = spec else {
                return Err(JobError::BadRequest(format!("chain mode needs a chain circuit; {} is {}", circuit.record.id, spec.name())));
            };
            if c.segments == 0 || c.segments as usize > max_statements {
                return Err(JobError::BadRequest(format!("chain.segments must be 1..={max_statements}, got {}", c.segments)));
            }
            let seed = parse_fr(&c.seed).map_err(|e| JobError::BadRequest(format!("chain.seed: {e}")))?;
            let (statements, output) = CircuitSpec::chain_statements(steps, seed, c.segments);
            let claim = ChainClaim { seed, output, segments: c.segments, steps_per_segment: steps };
            (JobMode::Chain, statements, Some(claim))
        }
        (None, Some(mut statements)) => {
            if statements.is_empty() || statements.len() > max_statements {
                return Err(JobError::BadRequest(format!("statements must number 1..={max_statements}, got {}", statements.len())));
            }
            for (i, s) in statements.iter_mut().enumerate() {
                spec.check(s).map_err(|e| JobError::BadRequest(format!("statements[{i}]: {e}")))?;
                if let Some(c) = &circuit.circom {
                    evaluate_circom(c, s).map_err(|e| JobError::BadRequest(format!("statements[{i}]: {e}")))?;
                }
            }
            (JobMode::Batch, statements, None)
        }
    };
    let now = now_ms();
    let client = req.client.unwrap_or_else(|| "anonymous".into());
    if client.is_empty() || client.len() > 64 {
        return Err(JobError::BadRequest(
            "client must be 1-64 characters".into(),
        ));
    }
    Ok(JobRecord {
        id: new_job_id(),
        client,
        circuit_id: circuit.record.id.clone(),
        circuit_name: circuit.record.name.clone(),
        spec,
        mode,
        statements,
        chain,
        reward: req.reward,
        work_per_proof: circuit.record.constraints,
        created_ms: now,
        deadline_ms: now + req.deadline_secs.unwrap_or(DEFAULT_DEADLINE_SECS) * 1000,
        state: JobState::Running,
        completed_ms: None,
        failure: None,
    })
}

/// Why a result could not be assembled (a pool fault, never the client's).
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// A statement has no stored proof.
    #[error("job {job}: statement {index} has no verified proof")]
    Missing { job: String, index: u64 },
    /// The assembled result fails its own checks.
    #[error("job {job}: assembled result is inconsistent: {source}")]
    Inconsistent {
        job: String,
        source: zk::ResultError,
    },
}

/// Builds the job's result from one verified proof per statement, and checks its
/// structure (key, links, digest).
pub fn assemble(
    job: &JobRecord,
    circuit: &Circuit,
    proofs: Vec<(u64, StoredProof)>,
) -> Result<JobResult, AssembleError> {
    let mut by_index: Vec<Option<ProofBytes>> = vec![None; job.statements.len()];
    for (i, p) in proofs {
        if let Some(slot) = by_index.get_mut(i as usize) {
            *slot = Some(p.proof);
        }
    }
    let entries = by_index
        .into_iter()
        .zip(&job.statements)
        .enumerate()
        .map(|(i, (p, s))| {
            p.map(|proof| ResultEntry {
                public: s.public.clone(),
                proof,
            })
            .ok_or(AssembleError::Missing {
                job: job.id.clone(),
                index: i as u64,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let result = JobResult::new(
        job.id.clone(),
        job.spec,
        job.mode,
        &circuit.verifier,
        job.chain.clone(),
        entries,
    );
    result
        .check_structure()
        .map_err(|source| AssembleError::Inconsistent {
            job: job.id.clone(),
            source,
        })?;
    Ok(result)
}
