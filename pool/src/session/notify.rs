//! The `mining.notify` of a leased task: its statements, the circuit and where
//! to fetch its proving key. Built by the session that writes it, so a burst of
//! leases is encoded on every core rather than in the dispatch loop.

use stratum::{KeyRef, Notification, Notify};

use crate::{circuits::CircuitRecord, jobs, jobs::JobRecord, scheduler::Task};

/// The notification for `task` of `job`, whose circuit is `circuit`; miners fetch
/// its key from `public_url`.
pub fn notify(
    task: &Task,
    job: &JobRecord,
    circuit: &CircuitRecord,
    public_url: &str,
) -> Notification {
    let statements = task
        .indices()
        .map(|i| jobs::wire_statement(i, &job.statements[i as usize]))
        .collect();
    Notification::Notify(Notify {
        task: task.id.as_str().into(),
        job: job.id.as_str().into(),
        circuit: job.circuit_id.as_str().into(),
        spec: serde_json::to_value(job.spec).expect("specs serialise"),
        key: KeyRef {
            hash: circuit.proving_key_hash.clone(),
            url: format!("{public_url}/v1/circuits/{}/proving-key", circuit.id),
            size: circuit.proving_key_bytes,
        },
        statements,
        lease_secs: task.lease.as_secs().max(1),
        work_per_proof: job.work_per_proof,
    })
}
