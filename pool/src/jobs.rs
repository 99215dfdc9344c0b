//! Jobs: what a client asks for, how it is validated and recorded, and how its
//! verified proofs are assembled into a result.

use serde::{Deserialize, Serialize};
use zk::{
    field::parse_fr,
    result::{ChainClaim, JobMode, ResultEntry},
    CircuitSpec, JobResult, ProofBytes, Statement,
};

use stratum::{CircuitId, JobId, TaskId};

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
    /// The submitting client's name: the API key's client, which this may only
    /// repeat. Without a key (a pool that takes anonymous jobs): `anonymous`.
    #[serde(default)]
    pub client: Option<String>,
    /// Anyone may see the job, its progress and its result. Default false: only
    /// its client's API key (or the operator) may; anonymous jobs are public.
    #[serde(default)]
    pub public: bool,
    /// The accounts allowed to prove it: only rigs that authorize with one of
    /// these accounts' worker tokens get its statements (their private inputs
    /// included). Default: any rig.
    #[serde(default)]
    pub workers: Option<Vec<String>>,
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
    pub id: JobId,
    pub client: String,
    pub circuit_id: CircuitId,
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
    /// Its work joins the pool-wide schemes (PPS, PPLNS): its circuit is the
    /// pool's own and it pays at least `payouts.min_price_per_mwork`. Otherwise its
    /// miners are paid from its own reward only (see `Credit is only as good as
    /// what backs it` in ARCHITECTURE.md).
    #[serde(default = "yes")]
    pub pooled: bool,
    /// Visible to anyone (see [`JobRequest::public`]).
    #[serde(default)]
    pub public: bool,
    /// Accounts allowed to prove it; `None`: any rig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

impl JobRecord {
    pub fn total_work(&self) -> u64 {
        self.work_per_proof
            .saturating_mul(self.statements.len() as u64)
    }

    /// Whether anyone may see it: marked public, or submitted without a key.
    pub fn is_public(&self) -> bool {
        self.public || self.client == ANONYMOUS
    }
}

/// The client of jobs submitted without an API key.
pub const ANONYMOUS: &str = "anonymous";

/// What one job may make the pool compute before it is accepted (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub max_statements: usize,
    /// Native Poseidon hashes (chain execution, statement checks).
    pub native_hashes: u64,
    /// wasm instructions to evaluate circom statements.
    pub witness_fuel: u64,
    /// Longest deadline, seconds.
    pub max_deadline_secs: u64,
    /// Largest statement on the wire (it must fit a `mining.notify` line).
    pub statement_bytes: usize,
    /// A job's work joins PPS/PPLNS at this price or above (units per Mwork).
    pub min_price_per_mwork: u64,
}

/// Native hashes to check one statement of `spec` (what chain execution and
/// batch checks cost the pool).
fn native_cost(spec: CircuitSpec) -> u64 {
    match spec {
        CircuitSpec::Chain { steps } => steps as u64,
        CircuitSpec::Preimage => 1,
        CircuitSpec::Circom { .. } | CircuitSpec::VerifyOnly { .. } => 0,
    }
}

/// A statement as it travels in `mining.notify`: its size decides whether it fits a line.
pub fn wire_statement(index: u64, s: &Statement) -> stratum::WireStatement {
    stratum::WireStatement {
        index,
        public: s.public.iter().map(zk::field::fr_to_string).collect(),
        private: s.private.iter().map(zk::field::fr_to_string).collect(),
        input: s.input.clone(),
    }
}

/// Bytes a statement takes in a `mining.notify` line.
pub fn wire_size(s: &Statement) -> usize {
    serde_json::to_vec(&wire_statement(u64::MAX, s))
        .expect("statements serialise")
        .len()
}

/// A verified proof as stored, with who proved it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredProof {
    pub proof: ProofBytes,
    /// The worker credited (empty for a cached proof).
    pub worker: String,
    /// The task it came in (empty for a cached proof).
    pub task: TaskId,
    pub at_ms: u64,
    /// Taken from the pool's proofs of statements already proven (another job
    /// proved the same statement): nobody is credited for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
}

/// Why a job request was refused (HTTP 4xx).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The body is not a valid job request.
    #[error("{0}")]
    BadRequest(String),
    /// The job would cost the pool more than one job may (`[limits]`).
    #[error("{0}")]
    TooExpensive(String),
    /// Too many requests, or a previous one still being prepared (HTTP 429).
    #[error("{0}")]
    TooMany(String),
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
    /// The pool's storage failed: try again (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

pub const DEFAULT_DEADLINE_SECS: u64 = 86_400;

/// Runs a circom statement's input through the circuit's witness generator and
/// checks every constraint, so no task is handed out that cannot be proven, and
/// fills in the public signals the proofs are verified against. A client may
/// give `public` too; it must then equal what the circuit computes.
/// Computes a circom statement's witness from its input, checks it, and fills
/// in its public signals; returns the fuel that took, or `None` when `fuel`
/// (below the circuit's own bound: what the job's budget has left) ran out.
fn evaluate_circom(
    c: &zk::circom::CircomCircuit,
    s: &mut zk::Statement,
    fuel: u64,
) -> Result<Option<u64>, String> {
    let input = s
        .input
        .as_ref()
        .ok_or("a circom statement needs \"input\"")?;
    let (witness, usage) = match c.witness_within(input, fuel) {
        Ok(v) => v,
        Err(e) if e.ran_out_of_fuel() && fuel < c.generator.limits().fuel => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let public = c.public_signals(&witness);
    if !s.public.is_empty() && s.public != public {
        return Err(format!(
            "\"public\" differs from the public signals the circuit computes from \"input\" ({}); leave it out to use them",
            public.iter().map(zk::field::fr_to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    s.public = public;
    Ok(Some(usage.fuel))
}

fn new_job_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// Validates a request against its circuit and builds the job. CPU-bound for long
/// chains (the pool executes the chain natively to cut it into segments): run it
/// off the async workers. Every cost is checked against `budget` before it is
/// spent.
pub fn build(req: JobRequest, circuit: &Circuit, budget: &Budget) -> Result<JobRecord, JobError> {
    let max_statements = budget.max_statements;
    let spec = circuit.record.spec;
    if let CircuitSpec::VerifyOnly { .. } = spec {
        return Err(JobError::BadRequest(format!(
            "circuit {} is verify-only (the pool has no proving key for it): it takes no jobs",
            circuit.record.id
        )));
    }
    let deadline_secs = req.deadline_secs.unwrap_or(DEFAULT_DEADLINE_SECS);
    if deadline_secs == 0 || deadline_secs > budget.max_deadline_secs {
        return Err(JobError::BadRequest(format!(
            "deadline_secs must be 1..={}, got {deadline_secs}",
            budget.max_deadline_secs
        )));
    }
    let too_costly = |what: String| {
        JobError::TooExpensive(format!(
            "{what}; split the work into smaller jobs (or ask the operator to raise [limits])"
        ))
    };
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
            let hashes = c.segments.saturating_mul(steps as u64);
            if hashes > budget.native_hashes {
                return Err(too_costly(format!(
                    "a chain of {} segments of {steps} hashes is {hashes} hashes for the pool to run, more than the {} one job may ask ({} segments)",
                    c.segments, budget.native_hashes, budget.native_hashes / steps.max(1) as u64
                )));
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
            let n = statements.len() as u64;
            let hashes = n.saturating_mul(native_cost(spec));
            if hashes > budget.native_hashes {
                return Err(too_costly(format!(
                    "checking {n} statements is {hashes} hashes for the pool, more than the {} one job may ask",
                    budget.native_hashes
                )));
            }
            // The witness budget is charged what the statements spend, as they
            // run. Before: each statement's bound (four times the sample's
            // fuel), so a circuit of 2^18 constraints could have no job at all.
            // A job the circuit's sample says cannot fit is refused at once.
            let over_witness_budget = |per: u64| {
                too_costly(format!(
                    "evaluating a statement of this circuit takes about {per} wasm instructions at the pool, and one job may ask {} in all: at most {} statements per job, {n} given",
                    budget.witness_fuel,
                    budget.witness_fuel / per.max(1)
                ))
            };
            if let Some(c) = &circuit.circom {
                let per = c.generator.limits().expected_fuel();
                if n.saturating_mul(per) > budget.witness_fuel {
                    return Err(over_witness_budget(per));
                }
            }
            // Sizes first: a statement that cannot travel in one line is refused
            // before anything runs (its `input` is the client's, and long).
            for (i, s) in statements.iter().enumerate() {
                let size = wire_size(s);
                if size > budget.statement_bytes {
                    return Err(JobError::BadRequest(format!(
                        "statements[{i}] is {size} bytes on the wire; a statement may be at most {} (it must fit one stratum line with its proof)",
                        budget.statement_bytes
                    )));
                }
            }
            {
                // In waves, each only as wide as the budget left can pay at
                // every statement's bound; when not even one bound is left, one
                // statement runs with what is left as its bound. So statements
                // dearer than the sample (a client's own module may make them
                // so) never make the pool spend more than the budget.
                use rayon::prelude::*;
                let bound = circuit.circom.as_ref().map(|c| c.generator.limits().fuel.max(1));
                let (mut spent, mut done) = (0u64, 0usize);
                while done < statements.len() {
                    let left = statements.len() - done;
                    let budget_left = budget.witness_fuel.saturating_sub(spent);
                    let (wave, fuel) = match bound {
                        Some(b) if budget_left / b == 0 => (1, budget_left),
                        Some(b) => (((budget_left / b) as usize).min(left), b),
                        None => (left, 0),
                    };
                    let fuel = statements[done..done + wave]
                        .par_iter_mut()
                        .enumerate()
                        .map(|(j, s)| {
                            let bad = |e: String| JobError::BadRequest(format!("statements[{}]: {e}", done + j));
                            spec.check(s).map_err(|e| bad(e.to_string()))?;
                            match &circuit.circom {
                                Some(c) => evaluate_circom(c, s, fuel).map_err(bad),
                                None => Ok(Some(0)),
                            }
                        })
                        .try_reduce(|| Some(0), |a, b| Ok(a.zip(b).map(|(a, b)| a.saturating_add(b))))?;
                    let Some(fuel) = fuel else {
                        let per = match done {
                            0 => circuit.circom.as_ref().map_or(1, |c| c.generator.limits().expected_fuel()),
                            _ => spent / done as u64,
                        };
                        return Err(over_witness_budget(per));
                    };
                    spent = spent.saturating_add(fuel);
                    done += wave;
                    debug_assert!(spent <= budget.witness_fuel);
                }
            }
            let mut seen = std::collections::HashMap::with_capacity(statements.len());
            for (i, s) in statements.iter().enumerate() {
                if let Some(j) = seen.insert(&s.public, i) {
                    return Err(JobError::BadRequest(format!(
                        "statements[{i}] has the same public inputs as statements[{j}]: it is the same statement, and is proven once; leave the copy out"
                    )));
                }
            }
            (JobMode::Batch, statements, None)
        }
    };
    let now = now_ms();
    let client = req.client.unwrap_or_else(|| ANONYMOUS.into());
    if client.is_empty() || client.len() > 64 {
        return Err(JobError::BadRequest(
            "client must be 1-64 characters".into(),
        ));
    }
    let allow = match req.workers {
        None => None,
        Some(list) if list.is_empty() => {
            return Err(JobError::BadRequest(
                "workers: an empty allow-list lets no rig prove the job; leave it out for any rig"
                    .into(),
            ))
        }
        Some(list) => {
            for a in &list {
                if a.contains('.') || stratum::Worker::parse(&format!("{a}.x")).is_err() {
                    return Err(JobError::BadRequest(format!(
                        "workers: {a:?} is not an account (ADDR, the part of a worker name before the dot)"
                    )));
                }
            }
            Some(list)
        }
    };
    let n = statements.len() as u64;
    // Work is the circuit's constraint count for the pool's own circuits. For a
    // client's circuit the count is the client's to choose (empty rows count), so
    // its work is weighed by what the job pays instead.
    let pool_circuit = circuit.record.owner.is_none();
    let work_per_proof = if pool_circuit {
        circuit.record.constraints
    } else {
        (req.reward / n).max(1)
    };
    let total_work = work_per_proof.saturating_mul(n) as u128;
    let pays = req.reward as u128 * 1_000_000 >= total_work * budget.min_price_per_mwork as u128;
    Ok(JobRecord {
        id: JobId(new_job_id()),
        client,
        circuit_id: circuit.record.id.clone(),
        circuit_name: circuit.record.name.clone(),
        spec,
        mode,
        statements,
        chain,
        reward: req.reward,
        work_per_proof,
        created_ms: now,
        deadline_ms: now.saturating_add(deadline_secs * 1000),
        state: JobState::Running,
        completed_ms: None,
        failure: None,
        pooled: pool_circuit && pays,
        public: req.public,
        allow,
    })
}

/// Why a result could not be assembled (a pool fault, never the client's).
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// A statement has no stored proof.
    #[error("job {job}: statement {index} has no verified proof")]
    Missing { job: JobId, index: u64 },
    /// The assembled result fails its own checks.
    #[error("job {job}: assembled result is inconsistent: {source}")]
    Inconsistent { job: JobId, source: zk::ResultError },
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
        job.id.to_string(),
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

impl StoredProof {
    pub fn bytes(&self) -> ProofBytes {
        self.proof.clone()
    }

    /// A statement's proof taken from the pool's proofs of statements proven
    /// before: nobody's work on this job, nobody credited.
    pub fn cached(proof: ProofBytes) -> Self {
        StoredProof {
            proof,
            worker: String::new(),
            task: TaskId(String::new()),
            at_ms: crate::circuits::now_ms(),
            cached: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::circuits::CircuitRecord;

    fn fixture(name: &str) -> Vec<u8> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../zk/tests/fixtures/circom");
        std::fs::read(dir.join(name)).expect("the circom fixture")
    }

    /// Statements dearer than the circuit's sample (a client's own module may
    /// make them so) pass the up-front estimate, and are then charged what they
    /// spend as they run: the job is refused when the budget runs out, in waves
    /// one wide when less than one bound is left to pay.
    #[test]
    fn statements_dearer_than_the_sample_are_stopped_by_what_they_spend() {
        let (mut mul, pk) = zk::circom::CircomCircuit::load(
            &fixture("mul.r1cs"),
            &fixture("mul.wasm"),
            &fixture("mul.zkey"),
        )
        .unwrap();
        mul.self_test(&pk, &json!({"a": "3", "b": "11"})).unwrap();
        // A statement's fuel once the module is warm (the sample's first run
        // also pays the interpreter's translation of each function it calls).
        let per = mul
            .witness_metered(&json!({"a": "3", "b": "11"}))
            .unwrap()
            .1
            .fuel;
        // Bounds of twice a statement's fuel: below the four times a calibration
        // gives, so the sample's cost they imply is under half the real one.
        let memory = mul.generator.limits().memory;
        mul.generator.set_limits(zk::circom::witness::Limits {
            fuel: 2 * per,
            memory,
        });
        assert!(mul.generator.limits().expected_fuel() < per / 2);
        let verifier = zk::VerifierKey::new(pk.vk.clone()).unwrap();
        let circuit = Circuit {
            record: CircuitRecord {
                id: CircuitId(verifier.id.clone()),
                name: "mul".into(),
                spec: CircuitSpec::Circom {
                    constraints: mul.constraints(),
                    public: mul.public_inputs() as u32,
                },
                constraints: mul.constraints(),
                public_inputs: mul.public_inputs(),
                proving_key_hash: "00".into(),
                proving_key_bytes: 0,
                verifying_key: String::new(),
                created_ms: 0,
                owner: None,
                witness_limits: Some(mul.generator.limits()),
            },
            verifier: Arc::new(verifier),
            circom: Some(Arc::new(mul)),
        };
        let budget = Budget {
            max_statements: 100,
            native_hashes: 1 << 20,
            witness_fuel: per * 5 / 2,
            max_deadline_secs: 86_400,
            statement_bytes: 1 << 16,
            min_price_per_mwork: 0,
        };
        let job = |n: u64| -> JobRequest {
            serde_json::from_value(json!({"circuit": "mul", "statements": (0..n)
                .map(|i| json!({"input": {"a": (i + 2).to_string(), "b": "11"}}))
                .collect::<Vec<_>>()}))
            .unwrap()
        };
        // Two statements' work fits two and a half.
        assert!(build(job(2), &circuit, &budget).is_ok());
        // Five: the first two run one at a time, the third is stopped by the
        // half statement's fuel the budget has left, and the job is refused
        // there (two and a half statements' fuel spent, not five).
        let e = build(job(5), &circuit, &budget).unwrap_err().to_string();
        assert!(
            e.contains(&format!("about {per} wasm instructions"))
                && e.contains("at most 2 statements per job, 5 given"),
            "{e}"
        );
    }
}
