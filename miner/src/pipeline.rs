//! Witnesses ahead of the prover: while statement `k` of a task is proven on the
//! prover threads, statement `k + 1`'s witness (circom's wasm generator, or the
//! built-in circuit's synthesis: single-threaded work) is computed on a thread
//! of its own, so it fills the gaps the prover leaves instead of running before
//! every proof.

use std::sync::Arc;

use tokio::sync::mpsc;
use zk::{prover::Witness, CircuitKeys, KeyError, Statement};

/// The witnesses of a task's statements, in order, computed one ahead.
pub struct Witnesses {
    rx: mpsc::Receiver<Result<Witness, KeyError>>,
}

impl Witnesses {
    /// Starts computing the witnesses of `statements` (in order). The channel
    /// holds one finished witness: with the one being computed, the thread is
    /// at most two statements ahead of the prover, and it stops when this is
    /// dropped (a cancelled task).
    pub fn start(keys: Arc<CircuitKeys>, statements: Vec<Statement>) -> Self {
        let (tx, rx) = mpsc::channel(1);
        // A thread named `witness` (not tokio's blocking pool), so `top -H`
        // and the per-thread CPU a benchmark reads tell it from the prover's
        // and the network's. If it cannot start, the channel closes at once,
        // `next` is `None`, and the session computes each witness itself.
        let started = std::thread::Builder::new()
            .name("witness".into())
            .spawn(move || {
                for s in statements {
                    if tx.is_closed() || tx.blocking_send(keys.witness(&s)).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start a witness thread; computing witnesses before each proof");
        }
        Witnesses { rx }
    }

    /// The next statement's witness; `None` once all were handed out (or the
    /// thread died, which the caller treats as a failed witness).
    pub async fn next(&mut self) -> Option<Result<Witness, KeyError>> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zk::{CircuitSpec, Fr};

    #[tokio::test]
    async fn witnesses_come_in_order_and_prove() {
        let keys = Arc::new(CircuitKeys::setup_seeded(CircuitSpec::Preimage, 3).unwrap());
        keys.use_engine(None);
        let statements: Vec<_> = (0..4u64)
            .map(|i| CircuitSpec::preimage_statement(Fr::from(i)))
            .collect();
        let mut w = Witnesses::start(keys.clone(), statements.clone());
        for s in &statements {
            let witness = w.next().await.unwrap().unwrap();
            assert_eq!(witness.public(), &s.public[..]);
            let proof = keys.prove_witness(&witness).unwrap();
            keys.verifier.verify(&s.public, &proof).unwrap();
        }
        assert!(w.next().await.is_none());
    }
}
