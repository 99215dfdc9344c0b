//! Aggregation of completed jobs' proofs: the SRS the pool aggregates under, which
//! jobs get an aggregate, and what the pool publishes about it (`/v1/status`).
//!
//! The SRS comes from two `.ptau` files the operator names (`[aggregation] ptau`),
//! or, when none are named, from `zk`'s insecure test SRS, whose secrets are public:
//! aggregates under it prove nothing to a client, and the pool says so at start,
//! in its status and through every check (`zkpool verify --aggregate-only`).

use std::{fs::File, io::BufReader, sync::Arc};

use serde_json::{json, Value};
use tracing::warn;
use zk::{aggregate::Srs, JobResult, ResultError};

use crate::config::AggregationConfig;

/// What the pool aggregates under, and up to which job size.
#[derive(Clone)]
pub struct Aggregation {
    srs: Arc<Srs>,
    max_statements: u64,
    /// One aggregation at a time: each spreads over every core (rayon) and
    /// competes with the verifier, so jobs finishing together queue here.
    one_at_a_time: Arc<std::sync::Mutex<()>>,
}

/// Why the configured SRS cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("aggregation: {0} (set [aggregation] ptau to two .ptau files of independent ceremonies with at least 2 x run powers, or enabled = false)")]
pub struct AggregationError(String);

impl Aggregation {
    /// Loads the configured SRS (blocking: reading a large ceremony takes seconds);
    /// `None` when aggregation is off.
    pub fn load(config: &AggregationConfig) -> Result<Option<Aggregation>, AggregationError> {
        if !config.enabled {
            return Ok(None);
        }
        let srs = match config.ptau.as_slice() {
            [] => {
                warn!(
                    "aggregation uses the INSECURE test SRS (its secrets are public): aggregates prove nothing to clients; name two .ptau files in [aggregation] ptau"
                );
                Srs::insecure_for_tests(config.run)
            }
            [a, b] => {
                let open = |p: &std::path::Path| {
                    File::open(p)
                        .map(BufReader::new)
                        .map_err(|e| AggregationError(format!("cannot read {}: {e}", p.display())))
                };
                Srs::from_ptau(
                    &mut open(a)?,
                    &a.display().to_string(),
                    &mut open(b)?,
                    &b.display().to_string(),
                    config.run,
                )
                .map_err(|e| AggregationError(e.to_string()))?
            }
            other => {
                return Err(AggregationError(format!(
                    "{} ptau files named, two are needed",
                    other.len()
                )))
            }
        };
        Ok(Some(Aggregation {
            srs: Arc::new(srs),
            max_statements: config.max_statements,
            one_at_a_time: Arc::default(),
        }))
    }

    /// Adds the aggregate to a result of a job within the size limit (blocking:
    /// about 14 ms a proof). A larger job's result goes out without one.
    pub fn aggregate(&self, result: &mut JobResult) -> Result<(), ResultError> {
        if result.entries.len() as u64 > self.max_statements {
            return Ok(());
        }
        let _turn = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        result.aggregate_with(&self.srs)
    }

    /// What `/v1/status` says about aggregation: the SRS id a client pins.
    pub fn describe(this: Option<&Aggregation>) -> Value {
        match this {
            None => json!({"enabled": false}),
            Some(a) => {
                let key = a.srs.verifier_key();
                json!({
                    "enabled": true,
                    "srs_id": key.id_hex(),
                    "insecure_srs": key.is_insecure(),
                    "run": a.srs.max_n(),
                    "max_statements": a.max_statements,
                })
            }
        }
    }
}
