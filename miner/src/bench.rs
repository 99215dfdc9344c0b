//! `zkminer --benchmark`: this rig's proving speed on each built-in circuit, with no
//! pool. Keys come from a local setup and are decoded from their bytes before use,
//! as a miner's downloaded keys are (a key fresh out of setup proves measurably
//! slower; see BENCHMARKS.md).
//!
//! Each circuit is proven three ways, as a rig can run: arkworks (precomputation
//! off), zkpool's prover without tables, and zkpool's prover with the tables the
//! precomputation budget buys, whose one-off cost (time and memory) is shown.

use std::time::{Duration, Instant};

use zk::{circuits::DEFAULT_CHAIN_STEPS, prover::Tables, CircuitKeys, CircuitSpec, Fr, KeyError};

/// Proofs per second of `keys` over at least `each` (and two proofs).
fn rate(
    pool: &rayon::ThreadPool,
    keys: &CircuitKeys,
    statement: &zk::Statement,
    each: Duration,
) -> Result<(f64, u64, f64), KeyError> {
    pool.install(|| keys.prove(statement))?; // warm-up
    let started = Instant::now();
    let mut proofs = 0u64;
    while started.elapsed() < each || proofs < 2 {
        let p = pool.install(|| keys.prove(statement))?;
        keys.verifier
            .verify(&statement.public, &p)
            .map_err(|e| KeyError::Synthesis(format!("a benchmark proof does not verify: {e}")))?;
        proofs += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((proofs as f64 / secs, proofs, secs))
}

/// Lines per circuit: proofs/s and constraints/s over at least `each` of
/// proving with each prover, and the tables' cost within `precompute` bytes.
pub fn run(threads: usize, each: Duration, precompute: u64) -> Result<Vec<String>, KeyError> {
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
        let hash = zk::sha256_hex(&bytes);
        let keys = CircuitKeys::from_pk_bytes(spec, &bytes, &hash)?;
        let statement = match spec {
            CircuitSpec::Chain { steps } => CircuitSpec::chain_statement(steps, 0, Fr::from(1u64)),
            CircuitSpec::Preimage => CircuitSpec::preimage_statement(Fr::from(1u64)),
            CircuitSpec::Circom { .. } | CircuitSpec::VerifyOnly { .. } => {
                unreachable!("only the built-in circuits are benchmarked")
            }
        };
        let constraints = spec.constraints();
        let line = |what: &str, (r, proofs, secs): (f64, u64, f64), extra: &str| {
            format!(
                "{:<9} {constraints:>6} constraints | {what:<15} | {r:>8.2} proofs/s | {:>9.0} constraints/s | {proofs} proofs in {secs:.1} s{extra}",
                spec.name(),
                r * constraints as f64,
            )
        };
        keys.use_arkworks();
        let ark = rate(&pool, &keys, &statement, each)?;
        lines.push(line("arkworks", ark, ""));
        keys.use_engine(None);
        let plain = rate(&pool, &keys, &statement, each)?;
        lines.push(line(
            "zkpool",
            plain,
            &format!(" | {:.2}x arkworks", plain.0 / ark.0),
        ));
        let plan = keys.table_plan(precompute);
        if plan.tables.is_empty() {
            lines.push(format!(
                "{:<9} {:>6}             | zkpool + tables | none fit the precomputation budget ({} MiB)",
                spec.name(),
                "",
                precompute >> 20
            ));
            continue;
        }
        let started = Instant::now();
        let tables = pool
            .install(|| Tables::build(&keys.pk, &hash, &plan))
            .map_err(|e| KeyError::Synthesis(e.to_string()))?;
        let build = started.elapsed().as_secs_f64();
        keys.use_engine(Some(std::sync::Arc::new(tables)));
        let with = rate(&pool, &keys, &statement, each)?;
        lines.push(line(
            "zkpool + tables",
            with,
            &format!(
                " | {:.2}x arkworks | one-off: {build:.1} s to build {plan}",
                with.0 / ark.0
            ),
        ));
        if keys.engine_failures() > 0 {
            return Err(KeyError::Synthesis(
                "zkpool's prover made a proof that did not verify; arkworks took over".into(),
            ));
        }
    }
    Ok(lines)
}
