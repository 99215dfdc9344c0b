//! Proof verification off the async workers, batched across submits.
//!
//! Sessions send their proofs to one verifier task through a bounded queue and wait
//! for their verdicts. The verifier takes a free verification thread *first* and only
//! then drains whatever is waiting (up to `max_batch` proofs), groups it by circuit,
//! and checks each group as one batch (one multi-Miller loop and one final
//! exponentiation; a bad proof is found by bisection and spoils nothing else, see
//! `zk::batch`). So an idle pool verifies a submit at once, and a busy one verifies
//! everything that queued while its threads were busy in one go: batch size adapts to
//! load without a timer.
//!
//! Backpressure: when the queue is full, sessions wait to enqueue, and a waiting session
//! reads no further lines from its miner.

use std::{collections::HashMap, sync::Arc, time::Instant};

use tokio::sync::{mpsc, oneshot, Semaphore};
use zk::{Fr, ProofBytes, VerifierKey, VerifyError};

use crate::metrics::Metrics;

/// Submits waiting for a verification thread. Full means the pool is verifying as
/// fast as it can: sessions wait (and so do their miners).
pub const QUEUE: usize = 1024;

/// Most proofs in one batch: big enough for the batch speed-up (3.2x at 1024, see
/// BENCHMARKS.md), small enough that one batch takes about half a second.
pub const MAX_BATCH_PROOFS: usize = 1024;

/// The verifier is gone: the pool is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the verifier has stopped (the pool is shutting down)")]
pub struct VerifierGone;

struct Request {
    circuit: String,
    key: Arc<VerifierKey>,
    items: Vec<(Vec<Fr>, ProofBytes)>,
    reply: oneshot::Sender<Vec<Result<(), VerifyError>>>,
}

/// The handle sessions use.
#[derive(Clone)]
pub struct Verifier {
    tx: mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
}

/// The verifier's loop; run it with `tokio::spawn(task.run())`.
pub struct VerifierTask {
    rx: mpsc::Receiver<Request>,
    threads: usize,
    max_batch: usize,
    metrics: Arc<Metrics>,
    /// Proof by proof instead of batched (the baseline for measurements).
    one_by_one: bool,
}

impl Verifier {
    pub fn new(
        threads: usize,
        max_batch: usize,
        metrics: Arc<Metrics>,
    ) -> (Verifier, VerifierTask) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Verifier {
                tx,
                metrics: metrics.clone(),
            },
            VerifierTask {
                rx,
                threads: threads.max(1),
                max_batch: max_batch.max(1),
                metrics,
                one_by_one: false,
            },
        )
    }

    /// Verifies each `(public inputs, proof)` pair of one circuit; one verdict each, in order.
    pub async fn verify(
        &self,
        circuit: &str,
        key: Arc<VerifierKey>,
        items: Vec<(Vec<Fr>, ProofBytes)>,
    ) -> Result<Vec<Result<(), VerifyError>>, VerifierGone> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                circuit: circuit.to_owned(),
                key,
                items,
                reply,
            })
            .await
            .map_err(|_| VerifierGone)?;
        rx.await.map_err(|_| VerifierGone)
    }

    /// Submits waiting in the queue now.
    pub fn queued(&self) -> usize {
        let n = QUEUE - self.tx.capacity();
        self.metrics.verify_queue.set(n as i64);
        n
    }
}

impl VerifierTask {
    /// Verifies proof by proof instead of in batches (for measuring the difference).
    pub fn one_by_one(mut self) -> Self {
        self.one_by_one = true;
        self.max_batch = 1;
        self
    }

    pub async fn run(mut self) {
        let permits = Arc::new(Semaphore::new(self.threads));
        while let Some(first) = self.rx.recv().await {
            // Wait for a thread before draining: whatever queues meanwhile joins this batch.
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the verifier semaphore is never closed");
            let mut proofs = first.items.len();
            let mut batch = vec![first];
            while proofs < self.max_batch {
                match self.rx.try_recv() {
                    Ok(r) => {
                        proofs += r.items.len();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            let m = self.metrics.clone();
            m.verify_batches.inc();
            m.verify_submits.inc_by(batch.len() as u64);
            m.verify_proofs.inc_by(proofs as u64);
            m.verify_batch_proofs.observe(proofs as f64);
            let one_by_one = self.one_by_one;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let started = Instant::now();
                if one_by_one {
                    for r in batch {
                        let verdicts = r.items.iter().map(|(p, b)| r.key.verify(p, b)).collect();
                        let _ = r.reply.send(verdicts);
                    }
                } else {
                    verify_requests(batch);
                }
                m.verify_seconds.observe(started.elapsed().as_secs_f64());
            });
        }
    }
}

/// Verifies a drained batch: one `verify_batch` per circuit, verdicts split back per request.
fn verify_requests(batch: Vec<Request>) {
    let mut groups: HashMap<String, Vec<Request>> = HashMap::new();
    for r in batch {
        groups.entry(r.circuit.clone()).or_default().push(r);
    }
    for requests in groups.into_values() {
        let key = requests[0].key.clone();
        let mut lens = Vec::with_capacity(requests.len());
        let mut replies = Vec::with_capacity(requests.len());
        let mut all = Vec::new();
        for r in requests {
            lens.push(r.items.len());
            all.extend(r.items);
            replies.push(r.reply);
        }
        let n = all.len();
        let mut verdicts = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            key.verify_batch_grouped(&all, &lens)
        }))
        // A panic inside the verifier is a verdict against the input, not a crash of the pool.
        .unwrap_or_else(|_| {
            vec![
                Err(VerifyError::Malformed(
                    "the verifier failed on this batch".into()
                ));
                n
            ]
        })
        .into_iter();
        for (len, reply) in lens.into_iter().zip(replies) {
            let _ = reply.send(verdicts.by_ref().take(len).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zk::{CircuitKeys, CircuitSpec};

    fn request_items(keys: &CircuitKeys, from: u64, n: u64) -> Vec<(Vec<Fr>, ProofBytes)> {
        (from..from + n)
            .map(|i| {
                let s = CircuitSpec::preimage_statement(Fr::from(i));
                let proof = keys.prove(&s).unwrap();
                (s.public, proof)
            })
            .collect()
    }

    /// Submits that queue while the verifier is busy are verified together in one
    /// batch, and a bad proof in one submit (first, middle or last of the batch)
    /// rejects exactly that proof: every other submit gets all-good verdicts.
    #[tokio::test]
    async fn queued_submits_share_one_batch_and_a_bad_proof_spoils_nothing_else() {
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 9).unwrap();
        let key = Arc::new(keys.verifier.clone());
        for bad_request in [0usize, 2, 4] {
            let (verifier, task) = Verifier::new(1, MAX_BATCH_PROOFS, Arc::default());
            let mut waiting = vec![];
            for r in 0..5usize {
                let mut items = request_items(&keys, 10 * r as u64, 3);
                if r == bad_request {
                    // A valid proof, of another statement.
                    items[1].1 = items[2].1.clone();
                }
                let (v, k) = (verifier.clone(), key.clone());
                waiting.push(tokio::spawn(async move { v.verify("c", k, items).await }));
            }
            // The verifier is not running yet: wait until all five submits are queued.
            while verifier.queued() < 5 {
                tokio::task::yield_now().await;
            }
            tokio::spawn(task.run());
            for (r, w) in waiting.into_iter().enumerate() {
                let verdicts = w.await.unwrap().unwrap();
                let expect: Vec<Result<(), VerifyError>> = (0..3)
                    .map(|i| {
                        if r == bad_request && i == 1 {
                            Err(VerifyError::Invalid)
                        } else {
                            Ok(())
                        }
                    })
                    .collect();
                assert_eq!(
                    verdicts, expect,
                    "request {r} with the bad proof in request {bad_request}"
                );
            }
            assert_eq!(
                verifier.metrics.verify_batches.get(),
                1,
                "five queued submits, one batch"
            );
            assert_eq!(verifier.metrics.verify_proofs.get(), 15);
        }
    }

    #[tokio::test]
    async fn submits_for_different_circuits_in_one_batch_are_checked_with_their_own_keys() {
        let a = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 1).unwrap();
        let b = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 2).unwrap();
        let (verifier, task) = Verifier::new(1, MAX_BATCH_PROOFS, Arc::default());
        let (va, vb) = (verifier.clone(), verifier.clone());
        let (ka, kb) = (Arc::new(a.verifier.clone()), Arc::new(b.verifier.clone()));
        let (ia, ib) = (request_items(&a, 0, 2), request_items(&b, 0, 2));
        let wrong_key = kb.clone();
        let ia2 = ia.clone();
        let ha = tokio::spawn(async move { va.verify("a", ka, ia).await });
        let hb = tokio::spawn(async move { vb.verify("b", kb, ib).await });
        let v3 = verifier.clone();
        let hc = tokio::spawn(async move { v3.verify("b", wrong_key, ia2).await });
        while verifier.queued() < 3 {
            tokio::task::yield_now().await;
        }
        tokio::spawn(task.run());
        assert!(ha.await.unwrap().unwrap().iter().all(Result::is_ok));
        assert!(hb.await.unwrap().unwrap().iter().all(Result::is_ok));
        assert!(
            hc.await
                .unwrap()
                .unwrap()
                .iter()
                .all(|v| *v == Err(VerifyError::Invalid)),
            "proofs of circuit a under b's key"
        );
    }

    #[tokio::test]
    async fn a_stopped_verifier_says_so() {
        let (verifier, task) = Verifier::new(1, 8, Arc::default());
        drop(task);
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 1).unwrap();
        let r = verifier
            .verify("c", Arc::new(keys.verifier.clone()), vec![])
            .await;
        assert_eq!(r, Err(VerifierGone));
    }
}
