//! What needs no running pool: `verify` (a result file), `verify-gnark`,
//! `verify-snarkjs`, `export snarkjs`, `setup` (the built-in circuits' keys in
//! a data directory) and `migrate` (a PostgreSQL database's schema).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::ValueEnum;
use serde_json::Value;

use crate::serve::{load_config, STORAGE_URL_ENV};

#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ExportFormat {
    /// verification_key.json, proof-N.json and public-N.json, as snarkjs writes them.
    Snarkjs,
}

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Config file whose storage.url names the database.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The database (overrides storage.url):
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
    #[arg(long, env = STORAGE_URL_ENV, hide_env_values = true)]
    storage_url: Option<String>,
    /// Also copy a pool's embedded sled database into it: the pool's
    /// storage.data_dir (stop that pool first, and run this as its user). The
    /// database must be empty; the sled database is left as it was.
    #[arg(long, value_name = "DATA_DIR")]
    from_sled: Option<PathBuf>,
}

/// `zkpool migrate`: brings a PostgreSQL database's schema up to date (as
/// `zkpool serve` does when it starts) and says what it applied.
pub async fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let config = load_config(a.config.as_deref(), None, a.storage_url)?;
    let Some(url) = config.storage.url.as_deref() else {
        anyhow::bail!(
            "no database to migrate: give --storage-url postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE \
             (or {STORAGE_URL_ENV}), or a --config whose [storage] url is set; the embedded sled \
             store needs no migrations"
        );
    };
    let shown = pool::config::redact_url(url);
    let store = pool::store::PgStore::connect(url).await.with_context(|| {
        format!(
            "cannot connect to the PostgreSQL database at {shown}: check that it is running and \
             that the URL's user, password and database are right"
        )
    })?;
    let done = store
        .migrate()
        .await
        .with_context(|| format!("migrating the PostgreSQL database at {shown}"))?;
    if done.applied.is_empty() {
        println!(
            "nothing to apply: {shown} is already at schema version {} (the latest this zkpool knows)",
            done.version
        );
    } else {
        for name in &done.applied {
            println!("applied {name}");
        }
        println!("{shown} is now at schema version {}", done.version);
    }
    if let Some(dir) = a.from_sled.as_deref() {
        let copied = pool::import::sled_into_postgres(dir, &store)
            .await
            .with_context(|| {
                format!(
                    "copying the sled pool in {} into {shown}: nothing was committed",
                    dir.display()
                )
            })?;
        println!(
            "copied from {}: {} circuits, {} jobs ({} running), {} proofs, {} results, \
             {} proven statements, {} clients, {} worker tokens, {}, {} ledger entries \
             (replayed: the same books as the sled ledger's)",
            dir.join("db").display(),
            copied.circuits,
            copied.jobs,
            copied.running,
            copied.proofs,
            copied.results,
            copied.proven,
            copied.clients,
            copied.worker_tokens,
            if copied.receipt_key {
                "the receipt signing key"
            } else {
                "no receipt key (none made yet)"
            },
            copied.ledger_entries
        );
        println!(
            "next: start the pool with this database as its [storage] url (or --storage-url) and \
             the same storage.data_dir, which keeps the circuits' key files; the sled database in \
             {} is no longer used and can be archived",
            dir.join("db").display()
        );
    }
    Ok(())
}

pub async fn setup(a: SetupArgs) -> anyhow::Result<()> {
    let config = load_config(a.config.as_deref(), a.data, None)?;
    let (all, created) = pool::server::setup(&config).await?;
    for c in all {
        let new = created.iter().any(|r| r.id == c.id);
        println!(
            "{} {:<9} id {} | {} constraints | proving key {} ({} bytes)",
            if new { "generated" } else { "existing " },
            c.name,
            c.id,
            c.constraints,
            c.proving_key_hash,
            c.proving_key_bytes
        );
    }
    println!("note: keys come from a single-party setup on this machine; whoever holds this data directory could forge proofs.");
    Ok(())
}

pub fn verify(path: &Path, pin: Option<&str>) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("zkpool verify: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let result: zk::JobResult = match serde_json::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            // Say what the file is when it is something else of ours (a job
            // request, an aggregate) rather than serde's view of the mismatch.
            let what = match serde_json::from_str::<Value>(&text) {
                Ok(v) if v["format"].as_str().is_some_and(|f| f.starts_with("zkpool-aggregate/")) => {
                    "it is an aggregate: check it with --aggregate-only".to_owned()
                }
                Ok(v) if v.get("circuit").is_some() && v.get("entries").is_none() => {
                    "it looks like a job request; a result is what GET /v1/jobs/{id}/result (or zkpool client result ID) returns".to_owned()
                }
                _ => e.to_string(),
            };
            eprintln!(
                "INVALID: {} is not a zkpool result file: {what}",
                path.display()
            );
            return ExitCode::from(1);
        }
    };
    verify_result(&result, pin)
}

/// Checks a result here against the circuit `pin` names (or, with `None`, only
/// against the key inside it); prints OK or INVALID.
pub fn verify_result(result: &zk::JobResult, pin: Option<&str>) -> ExitCode {
    let checked = match pin {
        Some(id) => result.verify_pinned(id),
        None => result.verify(),
    };
    match checked {
        Ok(n) => {
            println!(
                "OK: {n} proofs verified | job {} | circuit {} ({}) | digest {}",
                result.job_id,
                result.circuit.name(),
                result.circuit_id,
                result.digest
            );
            if pin.is_none() {
                println!("UNPINNED: the proofs hold under the verifying key inside the file; that this key is circuit {} of your pool, only --circuit-id checks", result.circuit_id);
            }
            if let Some(c) = &result.chain {
                println!(
                    "chain: H^{}(seed) = {} (seed {})",
                    c.segments * c.steps_per_segment as u64,
                    zk::field::fr_to_string(&c.output),
                    zk::field::fr_to_string(&c.seed)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("INVALID: {e}");
            ExitCode::from(1)
        }
    }
}

/// `zkpool verify --aggregate-only`: checks a result's (or an aggregate file's)
/// aggregate against the circuit and SRS pinned (`None` with `--any-key`: the
/// ones inside the file). Exit 0 OK, 1 INVALID, 2 unreadable or unpinned.
pub fn verify_aggregate(
    path: &Path,
    circuit: Option<&str>,
    srs: Option<&str>,
    insecure_ok: bool,
) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("zkpool verify: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let format = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["format"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let file = if format.starts_with("zkpool-result/") {
        serde_json::from_str::<zk::JobResult>(&text)
            .map_err(|e| e.to_string())
            .and_then(|r| r.aggregate_file().map_err(|e| e.to_string()))
    } else {
        serde_json::from_str::<zk::result::AggregateFile>(&text).map_err(|e| e.to_string())
    };
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            println!(
                "INVALID: {} is not a zkpool result or aggregate with an aggregate: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
    };
    let pinned = circuit.is_some();
    if pinned && srs.is_none() {
        eprintln!("zkpool verify --aggregate-only: name the SRS you trust with --srs-id (your pool's is aggregation.srs_id in GET /v1/status), or --any-key to check against the key and SRS inside the file (which proves nothing about them)");
        return ExitCode::from(2);
    }
    match file.verify(circuit.unwrap_or(&file.circuit_id), srs) {
        Ok(c) if c.insecure_srs && !insecure_ok => {
            println!("INVALID: the aggregate is made under the INSECURE test SRS {}, whose secrets are public: anyone can forge it, so it proves nothing (the pool names no ceremonies in [aggregation] ptau). Check the proofs instead (without --aggregate-only), or pass --insecure-srs for a demo", c.srs_id);
            ExitCode::from(1)
        }
        Ok(c) => {
            println!(
                "OK: {} statements checked by {} aggregate proof(s) | job {} | circuit {} ({}) | SRS {}",
                c.statements,
                c.parts,
                file.job_id,
                file.circuit.name(),
                file.circuit_id,
                c.srs_id
            );
            if c.insecure_srs {
                println!("INSECURE SRS: its secrets are public; this check proves nothing to you");
            }
            if !pinned {
                println!("UNPINNED: checked against the key and SRS inside the file; only --circuit-id and --srs-id say they are the ones you trust");
            }
            if let Some(chain) = &file.chain {
                println!(
                    "chain: H^{}(seed) = {} (seed {})",
                    chain.segments * chain.steps_per_segment as u64,
                    zk::field::fr_to_string(&chain.output),
                    zk::field::fr_to_string(&chain.seed)
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("INVALID: {e}");
            ExitCode::from(1)
        }
    }
}

pub fn read_json(p: &Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", p.display()))
}

/// The three files of an offline proof check, however they were given.
#[derive(Debug)]
pub struct ProofFiles {
    pub vk: PathBuf,
    pub proof: PathBuf,
    pub public: PathBuf,
}

/// The order of the older, positional form of a verify command.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    /// gnark's: VK PROOF PUBLIC.
    VkProofPublic,
    /// snarkjs's (`snarkjs groth16 verify`): VK PUBLIC PROOF.
    VkPublicProof,
}

impl ProofFiles {
    /// The files from `--vk`, `--proof` and `--public`, or else from the three
    /// positional `files` in `order`. clap has made sure that exactly one of the
    /// two forms was given, complete.
    pub fn pick(
        vk: Option<PathBuf>,
        proof: Option<PathBuf>,
        public: Option<PathBuf>,
        files: Vec<PathBuf>,
        order: Order,
    ) -> Self {
        if let (Some(vk), Some(proof), Some(public)) = (vk, proof, public) {
            return ProofFiles { vk, proof, public };
        }
        let [vk, b, c]: [PathBuf; 3] = files
            .try_into()
            .expect("clap requires either all three flags or three positional files");
        let (proof, public) = match order {
            Order::VkProofPublic => (b, c),
            Order::VkPublicProof => (c, b),
        };
        ProofFiles { vk, proof, public }
    }
}

/// Exit 0: the proof verifies; 1: it does not (printed as `INVALID: reason`); an
/// error (exit 2): a file cannot be read or decoded, named in the message.
pub fn verify_snarkjs(f: &ProofFiles) -> anyhow::Result<ExitCode> {
    let vk = zk::snarkjs::vk_from_json(&read_json(&f.vk)?).with_context(|| {
        format!(
            "{} is not a snarkjs verification key (verification_key.json)",
            f.vk.display()
        )
    })?;
    let public = zk::snarkjs::public_from_json(&read_json(&f.public)?).with_context(|| {
        format!(
            "{} is not snarkjs public signals (public.json: an array of decimal strings)",
            f.public.display()
        )
    })?;
    let proof = zk::snarkjs::proof_from_json(&read_json(&f.proof)?).with_context(|| {
        format!(
            "{} is not a snarkjs Groth16 proof (proof.json)",
            f.proof.display()
        )
    })?;
    match vk.verify(&public, &proof) {
        Ok(()) => {
            println!("OK: the proof verifies ({} public signals)", public.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ zk::VerifyError::Malformed(_)) => {
            Err(anyhow::Error::new(e)
                .context(format!("{} is not a usable proof", f.proof.display())))
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// As [`verify_snarkjs`], for gnark's binary key and proof.
pub fn verify_gnark(f: &ProofFiles) -> anyhow::Result<ExitCode> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let key = zk::gnark::decode_vk(&read(&f.vk)?).with_context(|| {
        format!(
            "{} is not a gnark BN254 verifying key (VerifyingKey.WriteTo)",
            f.vk.display()
        )
    })?;
    let proof = zk::gnark::decode_proof(&read(&f.proof)?).with_context(|| {
        format!(
            "{} is not a gnark BN254 Groth16 proof (Proof.WriteRawTo or WriteTo)",
            f.proof.display()
        )
    })?;
    let inputs: Vec<String> = serde_json::from_slice(&read(&f.public)?).with_context(|| {
        format!(
            "{} is not a JSON array of decimal strings (the public inputs)",
            f.public.display()
        )
    })?;
    let inputs = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            zk::field::parse_fr(x).with_context(|| format!("{}: input {i}", f.public.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match key.verify_decoded(&inputs, &proof) {
        Ok(()) => {
            println!(
                "OK: gnark proof verifies with {} public input(s)",
                inputs.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn export_snarkjs(path: &Path, out: &Path) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let result: zk::JobResult = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a zkpool result file", path.display()))?;
    // Export only what checks out: a snarkjs user should not have to find out later.
    let n = result.verify().map_err(|e| {
        anyhow::anyhow!("{} does not verify ({e}); nothing exported", path.display())
    })?;
    let key = zk::VerifierKey::from_bytes(&hex::decode(&result.verifying_key)?)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let write = |name: String, v: &Value| -> anyhow::Result<()> {
        let p = out.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v)?)
            .with_context(|| format!("cannot write {}", p.display()))
    };
    write("verification_key.json".into(), &zk::snarkjs::vk_json(&key))?;
    for (i, e) in result.entries.iter().enumerate() {
        write(
            format!("proof-{i}.json"),
            &zk::snarkjs::proof_json(&e.proof)?,
        )?;
        write(
            format!("public-{i}.json"),
            &zk::snarkjs::public_json(&e.public),
        )?;
    }
    println!(
        "wrote verification_key.json and {n} proof-N.json/public-N.json pairs to {}",
        out.display()
    );
    println!(
        "check one with: snarkjs groth16 verify {} {} {}",
        out.join("verification_key.json").display(),
        out.join("public-0.json").display(),
        out.join("proof-0.json").display()
    );
    Ok(())
}
