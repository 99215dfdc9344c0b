//! `zkminer --benchmark`: this rig's proving speed on each built-in circuit, with no
//! pool. Keys come from a local setup and are decoded from their bytes before use,
//! as a miner's downloaded keys are (a key fresh out of setup proves measurably
//! slower; see BENCHMARKS.md).

use std::time::{Duration, Instant};

use zk::{circuits::DEFAULT_CHAIN_STEPS, CircuitKeys, CircuitSpec, Fr, KeyError};

/// One line per circuit: proofs/s and constraints/s over at least `each` of proving.
pub fn run(threads: usize, each: Duration) -> Result<Vec<String>, KeyError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .stack_size(16 << 20)
        .build()
        .map_err(|e| KeyError::Synthesis(format!("cannot start prover threads: {e}")))?;
    let mut lines = vec![];
    for spec in [
        CircuitSpec::Chain {
            steps: DEFAULT_CHAIN_STEPS,
        },
        CircuitSpec::Preimage,
    ] {
        let fresh = CircuitKeys::setup_seeded(spec, 1)?;
        let bytes = fresh.pk_bytes();
        let keys = CircuitKeys::from_pk_bytes(spec, &bytes, &zk::sha256_hex(&bytes))?;
        let statement = match spec {
            CircuitSpec::Chain { steps } => CircuitSpec::chain_statement(steps, 0, Fr::from(1u64)),
            CircuitSpec::Preimage => CircuitSpec::preimage_statement(Fr::from(1u64)),
            CircuitSpec::Circom { .. } | CircuitSpec::VerifyOnly { .. } => {
                unreachable!("only the built-in circuits are benchmarked")
            }
        };
        pool.install(|| keys.prove(&statement))?; // warm-up
        let started = Instant::now();
        let mut proofs = 0u64;
        while started.elapsed() < each || proofs < 2 {
            pool.install(|| keys.prove(&statement))?;
            proofs += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        let constraints = spec.constraints();
        lines.push(format!(
            "{:<9} {constraints:>6} constraints | {:>8.2} proofs/s | {:>9.0} constraints/s | {proofs} proofs in {secs:.1} s",
            spec.name(),
            proofs as f64 / secs,
            (proofs * constraints) as f64 / secs
        ));
    }
    Ok(lines)
}
