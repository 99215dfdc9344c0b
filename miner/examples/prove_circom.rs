//! Prove-only timing of a circom circuit with zkpool's provers, the key loaded
//! once, for BENCHMARKS.md: the same `.r1cs`, `.wasm`, `.zkey` and input that
//! rapidsnark and snarkjs are measured on.
//!
//! ```text
//! cargo run --release -p zkpool-miner --example prove_circom -- \
//!     C.r1cs C.wasm C.zkey input.json MODE [threads] [rounds] [tables file]
//! ```
//! MODE: `arkworks` (ark-groth16, as zkminer proves with precomputation off),
//! `arkworks-copy` (the same, copying the matrices per proof as zkpool did
//! before issue 17), `engine` (zkpool's prover without tables), `tables:MiB`
//! (with tables within that budget, read from or written to the tables file).
//! It also times the witness (circom's wasm compiled, as a rig runs it) and
//! checks every proof.
//! With `PHASES=1` it then times each phase of the prover alone; with `MEM=1`
//! it prints the resident memory after each loading step. It lives in the miner
//! crate so that memory is measured with zkminer's allocator setting
//! ([`miner::memory`]: memory given back after loading); `ALLOC=default`
//! leaves glibc as it comes, to compare.

use std::time::Instant;

use ark_groth16::Groth16;
use ark_std::UniformRand;
use zk::{
    circom::qap::CircomReduction, prover::Tables, Bn254, CircuitKeys, CircuitSpec, Fr, ProofBytes,
    Statement,
};

/// The steps ark-groth16's prover takes (`create_proof_with_assignment`), timed
/// one by one with the same calls.
fn arkworks_phases(keys: &CircuitKeys, full: &[Fr], copy: bool) -> Vec<(&'static str, f64)> {
    use ark_ec::VariableBaseMSM;
    use ark_ff::PrimeField;
    use ark_groth16::r1cs_to_qap::R1CSToQAP;
    let c = keys.circom.as_ref().expect("a circom key");
    let pk = &keys.pk;
    let mut out = vec![];
    let t = Instant::now();
    let copies;
    let matrices: &[_] = if copy {
        copies = [c.r1cs.a().clone(), c.r1cs.b().clone()];
        &copies
    } else {
        &c.r1cs.ab
    };
    if copy {
        out.push(("copying A and B", t.elapsed().as_secs_f64()));
    }
    let t = Instant::now();
    let h =
        CircomReduction::witness_map_from_matrices::<Fr, ark_poly::GeneralEvaluationDomain<Fr>>(
            matrices,
            c.public_inputs() + 1,
            c.r1cs.constraints(),
            full,
        )
        .expect("the witness map");
    out.push(("witness map (A·w, B·w, FFTs)", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let h: Vec<_> = h.iter().map(|x| x.into_bigint()).collect();
    let w: Vec<_> = full.iter().map(|x| x.into_bigint()).collect();
    out.push(("out of Montgomery form", t.elapsed().as_secs_f64()));
    let inputs = c.public_inputs() + 1;
    let g1 = |what, bases: &[ark_bn254::G1Affine], s: &[_], out: &mut Vec<_>| {
        let t = Instant::now();
        let _ = std::hint::black_box(ark_bn254::G1Projective::msm_bigint(bases, s));
        out.push((what, t.elapsed().as_secs_f64()));
    };
    g1("MSM A (G1)", &pk.a_query[1..], &w[1..], &mut out);
    g1("MSM B1 (G1)", &pk.b_g1_query[1..], &w[1..], &mut out);
    let t = Instant::now();
    let _ = std::hint::black_box(ark_bn254::G2Projective::msm_bigint(
        &pk.b_g2_query[1..],
        &w[1..],
    ));
    out.push(("MSM B2 (G2)", t.elapsed().as_secs_f64()));
    g1("MSM L (G1)", &pk.l_query, &w[inputs..], &mut out);
    g1("MSM H (G1)", &pk.h_query, &h, &mut out);
    out
}

/// zkpool's circom prover before issue 17: ark-groth16 with copies of A and B.
fn prove_copying(keys: &CircuitKeys, full: &[Fr]) -> Result<ProofBytes, String> {
    let c = keys.circom.as_ref().expect("a circom key");
    let mut rng = rand::rngs::OsRng;
    let proof = Groth16::<Bn254, CircomReduction>::create_proof_with_reduction_and_matrices(
        &keys.pk,
        Fr::rand(&mut rng),
        Fr::rand(&mut rng),
        &[c.r1cs.a().clone(), c.r1cs.b().clone()],
        c.public_inputs() + 1,
        c.r1cs.constraints(),
        full,
    )
    .map_err(|e| e.to_string())?;
    Ok(ProofBytes::encode(&proof))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let tuned = std::env::var("ALLOC").map_or(true, |v| v != "default");
    if a.len() < 6 {
        return Err("usage: prove_circom C.r1cs C.wasm C.zkey input.json MODE [threads] [rounds] [tables file]".into());
    }
    // WITNESS=interpreted: the rig's low-memory choice.
    let witness_engine: zk::circom::witness::Engine = std::env::var("WITNESS")
        .unwrap_or_else(|_| "compiled".into())
        .parse()?;
    let threads: usize = a.get(6).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let rounds: usize = a.get(7).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .stack_size(16 << 20)
        .build()?;
    let t = Instant::now();
    // The three files as one bundle on disk, loaded as a rig loads its cached
    // bundle (section by section, never whole in memory).
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("circuit.pk");
    let hash = {
        use sha2::{Digest, Sha256};
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut hasher = Sha256::new();
        {
            let mut put = |b: &[u8]| -> std::io::Result<()> {
                hasher.update(b);
                out.write_all(b)
            };
            put(b"zkpc")?;
            put(&1u32.to_le_bytes())?;
            for f in &a[1..4] {
                put(&std::fs::metadata(f)?.len().to_le_bytes())?;
                let mut r = std::fs::File::open(f)?;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = std::io::Read::read(&mut r, &mut buf)?;
                    if n == 0 {
                        break;
                    }
                    put(&buf[..n])?;
                }
            }
        }
        out.flush()?;
        hex::encode(hasher.finalize())
    };
    mem("bundle written");
    let (constraints, public) = zk::circom::R1cs::counts_from_file(a[1].as_ref())?;
    let spec = CircuitSpec::Circom {
        constraints: constraints as u64,
        public: public as u32,
    };
    let keys = pool.install(|| CircuitKeys::from_pk_file(spec, &path, &hash, witness_engine))?;
    if tuned {
        // As the rig's key cache does after loading a key.
        miner::memory::give_back();
    }
    mem("from_pk_file");
    eprintln!("load {:.2} s", t.elapsed().as_secs_f64());

    let input: serde_json::Value = serde_json::from_slice(&std::fs::read(&a[4])?)?;
    let c = keys.circom.clone().expect("a circom key");
    eprintln!(
        "witness generator: {:?}, field arithmetic {}",
        c.generator.engine(),
        if c.generator.native_field_ops() {
            "native"
        } else {
            "in wasm"
        }
    );
    let (full, used) = c.generator.calculate_metered(&input)?;
    mem("witness");
    eprintln!(
        "witness used {} fuel of {}",
        used.fuel,
        c.generator.limits().fuel
    );
    let statement = Statement {
        public: c.public_signals(&full),
        private: vec![],
        input: Some(input),
    };
    let mode = a[5].as_str();
    match mode {
        "arkworks" | "arkworks-copy" => keys.use_arkworks(),
        "engine" => keys.use_engine(None),
        m if m.starts_with("tables:") => {
            let budget: u64 = m["tables:".len()..].parse::<u64>()? << 20;
            let plan = keys.table_plan(budget);
            let file = a.get(8).ok_or("tables mode needs a tables file")?;
            let t = Instant::now();
            let read = std::fs::File::open(file)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    Tables::read(&keys.pk, &hash, &plan, &mut std::io::BufReader::new(f))
                        .map_err(|e| e.to_string())
                });
            let tables = match read {
                Ok(t) => t,
                Err(why) => {
                    eprintln!("building tables ({why})");
                    let tables = pool.install(|| Tables::build(&keys.pk, &hash, &plan))?;
                    eprintln!("built {plan} in {:.1} s", t.elapsed().as_secs_f64());
                    let w = Instant::now();
                    let mut f = std::io::BufWriter::new(std::fs::File::create(file)?);
                    tables.write(&mut f)?;
                    drop(f);
                    eprintln!("wrote them in {:.1} s", w.elapsed().as_secs_f64());
                    tables
                }
            };
            eprintln!("tables ready in {:.1} s: {plan}", t.elapsed().as_secs_f64());
            keys.use_engine(Some(std::sync::Arc::new(tables)));
        }
        other => return Err(format!("unknown mode {other}").into()),
    }

    // The peak so far is the loading's (the files, the bundle and the decoded
    // key side by side); from here on, the proving's own (Linux: writing 5 to
    // clear_refs resets the peak the kernel keeps).
    let load_peak = peak_kib();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut best_w = f64::MAX;
    let mut best_p = f64::MAX;
    let mut all = vec![];
    for round in 0..rounds {
        let t = Instant::now();
        let w = keys.witness(&statement)?;
        let tw = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let proof = if mode == "arkworks-copy" {
            pool.install(|| prove_copying(&keys, &full))?
        } else {
            pool.install(|| keys.prove_witness(&w))?
        };
        let tp = t.elapsed().as_secs_f64();
        keys.verifier.verify(&statement.public, &proof)?;
        println!("round {round}: witness {tw:.3} s, prove {tp:.3} s");
        best_w = best_w.min(tw);
        best_p = best_p.min(tp);
        all.push(tp);
    }
    if std::env::var_os("PHASES").is_some() {
        let w = keys.witness(&statement)?;
        let phases = if mode.starts_with("arkworks") {
            pool.install(|| arkworks_phases(&keys, &full, mode == "arkworks-copy"))
        } else {
            pool.install(|| keys.prove_phases(&w))?
        };
        let t = Instant::now();
        c.witness(statement.input.as_ref().expect("an input"))?;
        let witness = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = c.r1cs.unsatisfied(&full);
        let check = t.elapsed().as_secs_f64();
        println!("phases ({mode}, {threads} threads), each alone:");
        println!("  {witness:>7.3} s  witness (wasm), of which {check:.3} s checking it against the r1cs");
        for (what, secs) in phases {
            println!("  {secs:>7.3} s  {what}");
        }
    }
    all.sort_by(|x, y| x.total_cmp(y));
    println!(
        "{mode} {threads} threads: prove best {best_p:.3} s, median {:.3} s; witness best {best_w:.3} s; engine failures {}; peak MiB loading {}, proving {}",
        all[all.len() / 2],
        keys.engine_failures(),
        load_peak.map_or("?".into(), |k| (k / 1024).to_string()),
        peak_kib().map_or("?".into(), |k| (k / 1024).to_string()),
    );
    Ok(())
}

/// The process's peak resident memory (VmHWM), KiB; `None` off Linux.
fn peak_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mem(at: &str) {
    if std::env::var_os("MEM").is_some() {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let f = |k: &str| {
            s.lines()
                .find(|l| l.starts_with(k))
                .unwrap_or("")
                .to_owned()
        };
        eprintln!(
            "{at}: {} {} ({} {} {})",
            f("VmRSS"),
            f("VmHWM"),
            f("RssAnon"),
            f("RssFile"),
            f("RssShmem")
        );
    }
}
