//! Proof verification off the async workers, on a bounded blocking pool.
//!
//! A submit's proofs are verified together on one blocking thread, as one batch
//! (one multi-Miller loop and one final exponentiation; bisection finds any bad
//! proof, see `zk::batch`); at most
//! `threads` submits verify at once. A session waits for its verdict before it
//! reads its next line, so a pool that cannot keep up slows its miners down
//! (backpressure) instead of queueing without bound.

use std::sync::Arc;

use tokio::sync::Semaphore;
use zk::{Fr, ProofBytes, VerifierKey, VerifyError};

#[derive(Clone)]
pub struct Verifier {
    permits: Arc<Semaphore>,
}

impl Verifier {
    pub fn new(threads: usize) -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Verifies each `(public inputs, proof)` pair against `key`; one verdict each, in order.
    pub async fn verify(
        &self,
        key: VerifierKey,
        items: Vec<(Vec<Fr>, ProofBytes)>,
    ) -> Vec<Result<(), VerifyError>> {
        let n = items.len();
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the verifier semaphore is never closed");
        match tokio::task::spawn_blocking(move || key.verify_batch(&items)).await {
            Ok(v) => v,
            // A panic inside the verifier is a verdict against the input, not a crash of the pool.
            Err(e) => vec![
                Err(VerifyError::Malformed(format!(
                    "verifier failed on this proof: {e}"
                )));
                n
            ],
        }
    }
}
