//! The `zkpool` command line: `serve`, `setup`, `demo`, `verify` and `client`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{circuits::Registry, config::Config, server::PoolState, store::Store};

/// zkpool: a mining pool for zero-knowledge proofs.
#[derive(Parser, Debug)]
#[command(name = "zkpool", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pool: stratum for miners, HTTP for clients and key downloads.
    Serve(ServeArgs),
    /// Generate (or show) the Groth16 keys of the built-in circuits in a data directory.
    Setup(SetupArgs),
    /// Start a throw-away pool with two miners, run a chain job and a batch job, show the results.
    Demo(DemoArgs),
    /// Check a result file offline: exit 0 if every proof and link holds for the
    /// circuit you name, 1 with the reason if not, 2 if you name none.
    Verify {
        /// A result file, as returned by GET /v1/jobs/{id}/result.
        result: PathBuf,
        /// The circuit the result must be for: its id (GET /v1/circuits on your pool
        /// lists them). A result carries its own verifying key, so without this it
        /// could be checked against a key a forger made.
        #[arg(long, required_unless_present = "any_key")]
        circuit_id: Option<String>,
        /// Check only that the proofs hold under the key inside the file (which
        /// proves nothing about which circuit that is).
        #[arg(long)]
        any_key: bool,
    },
    /// Verify a gnark BN254 Groth16 proof: exit 0 if valid, 1 with the reason if not.
    VerifyGnark {
        /// The verifying key as gnark's VerifyingKey.WriteTo wrote it.
        vk: PathBuf,
        /// The proof as gnark's Proof.WriteRawTo (or WriteTo) wrote it.
        proof: PathBuf,
        /// The public inputs: a JSON array of decimal strings, in order.
        public: PathBuf,
    },
    /// Verify a snarkjs Groth16 proof (bn128) offline: exit 0 if valid, 1 with the reason if not.
    VerifySnarkjs {
        /// verification_key.json, as `snarkjs zkey export verificationkey` writes it.
        vk: PathBuf,
        /// public.json: the public signals.
        public: PathBuf,
        /// proof.json.
        proof: PathBuf,
    },
    /// circom circuits on a running pool: register one (its .r1cs, .wasm and .zkey), list them.
    Circuits {
        #[command(flatten)]
        op: OperatorArgs,
        /// A client API key, to register as a client rather than as the operator.
        #[arg(long, env = "ZKPOOL_API_KEY", global = true, hide_env_values = true)]
        api_key: Option<String>,
        #[command(subcommand)]
        command: CircuitsCommand,
    },
    /// Write a result's proofs in another format, e.g. for `snarkjs groth16 verify`.
    Export {
        format: ExportFormat,
        /// A result file.
        result: PathBuf,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Talk to a running pool's HTTP API as a client.
    Client {
        /// The pool's HTTP API.
        #[arg(
            long,
            env = "ZKPOOL_URL",
            default_value = "http://127.0.0.1:8080",
            global = true
        )]
        url: String,
        /// The client's API key (`zkpool clients add` prints it); jobs with a reward need it.
        #[arg(long, env = "ZKPOOL_API_KEY", global = true, hide_env_values = true)]
        api_key: Option<String>,
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Operator: client accounts and their deposits.
    Clients {
        #[command(flatten)]
        op: OperatorArgs,
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Operator: the pool's own funds, which pay PPS shares.
    Funds {
        #[command(flatten)]
        op: OperatorArgs,
        #[command(subcommand)]
        command: FundsCommand,
    },
    /// Operator: rewards earned outside the pool, shared by PPLNS.
    Rewards {
        #[command(flatten)]
        op: OperatorArgs,
        #[command(subcommand)]
        command: RewardsCommand,
    },
    /// Operator: payout batches (plan, export, confirm, void).
    Payouts {
        #[command(flatten)]
        op: OperatorArgs,
        #[command(subcommand)]
        command: PayoutsCommand,
    },
    /// Operator: worker tokens (rigs authorize with their account's token).
    Workers {
        #[command(flatten)]
        op: OperatorArgs,
        #[command(subcommand)]
        command: WorkersCommand,
    },
    /// Operator: the books (totals by kind of account, and whether they balance).
    Ledger {
        #[command(flatten)]
        op: OperatorArgs,
        /// Also print the journal from this entry on.
        #[arg(long)]
        journal_from: Option<u64>,
    },
}

/// How an operator command reaches the pool.
#[derive(clap::Args, Debug)]
struct OperatorArgs {
    /// The pool's HTTP API.
    #[arg(
        long,
        env = "ZKPOOL_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// http.admin_token from the pool's config.
    #[arg(
        long,
        env = "ZKPOOL_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    admin_token: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ClientsCommand {
    /// Create a client account; prints its API key (shown once).
    Add { id: String },
    /// Credit a client's balance (smallest units). Idempotent on --reference.
    Deposit {
        id: String,
        amount: u64,
        /// The payment's reference (a retry with the same one is recorded once).
        #[arg(long)]
        reference: Option<String>,
    },
    /// A client's balance, escrow and jobs.
    Show { id: String },
    /// Every client with its balance.
    List,
}

#[derive(Subcommand, Debug)]
enum CircuitsCommand {
    /// Register a circom circuit (--r1cs, --wasm, --zkey), or a verify-only one
    /// (--vk); prints its id, constraints and public signals.
    Add {
        /// A name for it (unique on the pool); jobs may use it instead of the id.
        name: String,
        /// The constraints: `circom C.circom --r1cs`.
        #[arg(long, requires_all = ["wasm", "zkey"], conflicts_with = "vk")]
        r1cs: Option<PathBuf>,
        /// The witness generator: `C_js/C.wasm` from `circom C.circom --wasm`.
        #[arg(long, requires_all = ["r1cs", "zkey"])]
        wasm: Option<PathBuf>,
        /// The Groth16 proving key: `snarkjs groth16 setup` (and contributions).
        #[arg(long, requires_all = ["r1cs", "wasm"])]
        zkey: Option<PathBuf>,
        /// A sample statement's circom input (e.g. input.json): the pool proves it
        /// with the zkey, with its own randomness, to check the keys before any rig
        /// is given the circuit.
        #[arg(long, requires = "r1cs")]
        input: Option<PathBuf>,
        /// Only a snarkjs verification_key.json: a verify-only circuit (no jobs;
        /// proofs are checked with `zkpool circuits verify`).
        #[arg(long, required_unless_present = "r1cs")]
        vk: Option<PathBuf>,
    },
    /// Check a snarkjs proof against a registered circuit on the pool.
    Verify {
        /// Circuit id or name.
        circuit: String,
        /// public.json
        public: PathBuf,
        /// proof.json
        proof: PathBuf,
    },
    /// Every circuit the pool knows, built-in and registered.
    List,
}

#[derive(Subcommand, Debug)]
enum WorkersCommand {
    /// Issue (or replace) the token an account's rigs must give as their password.
    Token { addr: String },
}

#[derive(Subcommand, Debug)]
enum FundsCommand {
    /// Add to the pool's funds (PPS pays shares from them).
    Add {
        amount: u64,
        #[arg(long)]
        reference: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum RewardsCommand {
    /// Record a reward and share it over the last N units of work (PPLNS).
    Add {
        amount: u64,
        /// Where it came from (the idempotency key), e.g. the network payment's id.
        #[arg(long)]
        reference: String,
    },
}

#[derive(Subcommand, Debug)]
enum PayoutsCommand {
    /// Reserve every balance at or over the threshold into a new batch.
    Plan {
        /// Overrides payouts.threshold.
        #[arg(long)]
        threshold: Option<u64>,
    },
    /// Balances due and every batch.
    List,
    /// Write a batch for execution elsewhere.
    Export {
        batch: u64,
        #[arg(long, value_enum, default_value = "csv")]
        format: BatchFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Record that a batch was paid (at most once).
    Confirm {
        batch: u64,
        /// The payment's transaction reference.
        #[arg(long)]
        tx: String,
    },
    /// Cancel a planned batch: its amounts go back to the balances.
    Void { batch: u64 },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum BatchFormat {
    Csv,
    Json,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Config file (TOML); every key is optional, see deploy/pool.toml.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Stratum listen address (overrides stratum.listen).
    #[arg(long)]
    stratum_listen: Option<std::net::SocketAddr>,
    /// HTTP listen address (overrides http.listen).
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
}

#[derive(clap::Args, Debug)]
struct SetupArgs {
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    /// Segments of the chain job.
    #[arg(long, default_value_t = 16)]
    chain_segments: u64,
    /// Statements of the batch job.
    #[arg(long, default_value_t = 32)]
    batch_statements: u64,
    /// Write the two result files into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
enum ClientCommand {
    /// Submit a job from a JSON file (see deploy/examples/) and optionally wait for it.
    Submit {
        job: PathBuf,
        /// Wait for the job to complete, showing progress.
        #[arg(long)]
        wait: bool,
        /// With --wait: write the result here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a job's state and progress.
    Status { id: String },
    /// Fetch a completed job's result.
    Result {
        id: String,
        /// Write it here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a job's result here: a job id, whose result is fetched and checked
    /// locally against the circuit the job names; or a result file, with
    /// --circuit-id (exit 0 if every proof and link holds).
    Verify {
        job_or_file: String,
        /// The circuit the result must be for (needed for a file).
        #[arg(long)]
        circuit_id: Option<String>,
    },
    /// Show your client account: balance, escrow, jobs (needs --api-key).
    Account { id: String },
    /// Print an example job for a built-in circuit.
    Example {
        kind: ExampleKind,
        /// Segments (chain) or statements (batch).
        #[arg(long, default_value_t = 32)]
        count: u64,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ExportFormat {
    /// verification_key.json, proof-N.json and public-N.json, as snarkjs writes them.
    Snarkjs,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ExampleKind {
    Chain,
    Batch,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(
        cli.command,
        Command::Demo(_)
            | Command::Verify { .. }
            | Command::Client { .. }
            | Command::Clients { .. }
            | Command::Funds { .. }
            | Command::Rewards { .. }
            | Command::Payouts { .. }
            | Command::Ledger { .. }
            | Command::Workers { .. }
            | Command::Circuits { .. }
            | Command::VerifySnarkjs { .. }
    ) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(default_level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let outcome = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve(a).await.map(|_| ExitCode::SUCCESS),
            Command::Setup(a) => setup(a).await.map(|_| ExitCode::SUCCESS),
            Command::Demo(a) => demo(a).await.map(|_| ExitCode::SUCCESS),
            Command::Verify {
                result,
                circuit_id,
                any_key,
            } => Ok(verify(&result, if any_key { None } else { circuit_id.as_deref() })),
            Command::VerifyGnark { vk, proof, public } => verify_gnark(&vk, &proof, &public),
            Command::VerifySnarkjs { vk, public, proof } => verify_snarkjs(&vk, &public, &proof),
            Command::Circuits {
                op,
                api_key,
                command,
            } => circuits_cmd(op, api_key, command).await,
            Command::Export {
                format: ExportFormat::Snarkjs,
                result,
                out,
            } => export_snarkjs(&result, &out).map(|_| ExitCode::SUCCESS),
            Command::Client {
                url,
                api_key,
                command,
            } => client(&url, api_key, command).await,
            Command::Clients { op, command } => clients(op, command).await,
            Command::Funds { op, command } => funds(op, command).await,
            Command::Rewards { op, command } => rewards(op, command).await,
            Command::Payouts { op, command } => payouts_cmd(op, command).await,
            Command::Ledger { op, journal_from } => ledger(op, journal_from).await,
            Command::Workers {
                op,
                command: WorkersCommand::Token { addr },
            } => {
                let v = operator(op)?
                    .post(&format!("/v1/workers/{addr}/token"), &json!({}))
                    .await?;
                println!("worker token for {addr} (shown once; its rigs run zkminer --password <token>):");
                println!("{}", v["token"].as_str().unwrap_or("?"));
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zkpool: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `RUST_LOG` if set, else `default`; arkworks' spans are silenced either way
/// unless `RUST_LOG` names them.
pub fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
    let spec = if spec.contains("r1cs") {
        spec
    } else {
        format!("{spec},{}", zk::QUIET_ARKWORKS)
    };
    tracing_subscriber::EnvFilter::new(spec)
}

fn load_config(path: Option<&Path>, data: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut c = match path {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(d) = data {
        c.storage.data_dir = d;
    }
    Ok(c)
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {what} on {addr} (in use? change it with --{what}-listen)")
    })
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let mut config = load_config(a.config.as_deref(), a.data)?;
    if let Some(s) = a.stratum_listen {
        config.stratum.listen = s;
    }
    if let Some(h) = a.http_listen {
        config.http.listen = h;
    }
    // One socket per miner: raise the soft open-file limit to the hard one, so a
    // pool can hold thousands of sessions without an operator's ulimit.
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(0)
        }
    };
    let stratum = bind(config.stratum.listen, "stratum").await?;
    let http = bind(config.http.listen, "http").await?;
    let pool = crate::start(config, stratum, http).await?;
    println!(
        "zkpool {} serving: stratum+{}://{} | {}://{}",
        env!("CARGO_PKG_VERSION"),
        if pool.state.tls.is_some() {
            "ssl"
        } else {
            "tcp"
        },
        pool.stratum_addr,
        if pool.state.http_tls.is_some() {
            "https"
        } else {
            "http"
        },
        pool.http_addr
    );
    for c in pool.state.registry.all() {
        println!(
            "  circuit {:<9} {} ({} constraints)",
            c.record.name, c.record.id, c.record.constraints
        );
    }
    println!("  open files: up to {open_files} (about that many miner sessions)");
    let token = pool.token();
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = token.cancelled() => {}
    }
    println!("shutting down: miners are told to reconnect, work in flight is drained");
    pool.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn setup(a: SetupArgs) -> anyhow::Result<()> {
    let config = load_config(a.config.as_deref(), a.data)?;
    let data = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let store = Store::open(&data.join("db"))
        .with_context(|| format!("cannot open {} (is a pool running on it?)", data.display()))?;
    let builtins = PoolState::builtins(&config);
    let s = store.clone();
    let (registry, created) =
        tokio::task::spawn_blocking(move || Registry::open(&s, data.join("keys"), &builtins))
            .await??;
    store.flush().await?;
    for c in registry.all() {
        let new = created.iter().any(|r| r.id == c.record.id);
        println!(
            "{} {:<9} id {} | {} constraints | proving key {} ({} bytes)",
            if new { "generated" } else { "existing " },
            c.record.name,
            c.record.id,
            c.record.constraints,
            c.record.proving_key_hash,
            c.record.proving_key_bytes
        );
    }
    println!("note: keys come from a single-party setup on this machine; whoever holds this data directory could forge proofs.");
    Ok(())
}

fn verify(path: &Path, pin: Option<&str>) -> ExitCode {
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
            eprintln!(
                "INVALID: {} is not a zkpool result file: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
    };
    verify_result(&result, pin)
}

/// Checks a result here against the circuit `pin` names (or, with `None`, only
/// against the key inside it); prints OK or INVALID.
fn verify_result(result: &zk::JobResult, pin: Option<&str>) -> ExitCode {
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

fn read_json(p: &Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", p.display()))
}

fn verify_snarkjs(vk: &Path, public: &Path, proof: &Path) -> anyhow::Result<ExitCode> {
    let vk = zk::snarkjs::vk_from_json(&read_json(vk)?)
        .with_context(|| format!("{}: not a usable verification key", vk.display()))?;
    let public = zk::snarkjs::public_from_json(&read_json(public)?)
        .with_context(|| format!("{}: not usable public signals", public.display()))?;
    let proof = zk::snarkjs::proof_from_json(&read_json(proof)?)
        .with_context(|| format!("{}: not a usable proof", proof.display()))?;
    match vk.verify(&public, &proof) {
        Ok(()) => {
            println!("OK: the proof verifies ({} public signals)", public.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

async fn circuits_cmd(
    op: OperatorArgs,
    api_key: Option<String>,
    command: CircuitsCommand,
) -> anyhow::Result<ExitCode> {
    let api = Api::new(&op.url).with_token(op.admin_token.or(api_key));
    match command {
        CircuitsCommand::List => {
            let list = api.get("/v1/circuits").await?;
            println!(
                "{:<64}  {:<12} {:>11} {:>6}",
                "id", "name", "constraints", "public"
            );
            for c in list.as_array().into_iter().flatten() {
                println!(
                    "{:<64}  {:<12} {:>11} {:>6}",
                    c["id"].as_str().unwrap_or("?"),
                    c["name"].as_str().unwrap_or("?"),
                    c["constraints"],
                    c["public_inputs"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CircuitsCommand::Verify {
            circuit,
            public,
            proof,
        } => {
            let body = json!({"proof": read_json(&proof)?, "public": read_json(&public)?});
            match api
                .post(&format!("/v1/circuits/{circuit}/verify"), &body)
                .await
            {
                Ok(_) => {
                    println!("OK: the proof verifies");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("INVALID: {e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        CircuitsCommand::Add {
            name,
            r1cs,
            wasm,
            zkey,
            input,
            vk,
        } => {
            use base64::Engine as _;
            let file = |p: &Path| -> anyhow::Result<String> {
                let bytes =
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
                Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
            };
            let body = match (r1cs, wasm, zkey, input, vk) {
                (Some(r), Some(w), Some(z), Some(i), None) => {
                    json!({"name": name, "r1cs": file(&r)?, "wasm": file(&w)?, "zkey": file(&z)?, "sample": read_json(&i)?})
                }
                (Some(_), Some(_), Some(_), None, None) => anyhow::bail!("give --input FILE too: one statement's circom input (your input.json), which the pool proves with the zkey to check its keys"),
                (None, None, None, None, Some(vk)) => json!({"name": name, "verification_key": read_json(&vk)?}),
                _ => anyhow::bail!("give --r1cs, --wasm, --zkey and --input (a circom circuit), or --vk alone (a verify-only circuit)"),
            };
            let c = api.post("/v1/circuits", &body).await?;
            println!(
                "circuit {} ({}): {} constraints (work per proof), {} public signals",
                c["id"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?"),
                c["constraints"],
                c["public_inputs"]
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify_gnark(vk: &Path, proof: &Path, public: &Path) -> anyhow::Result<ExitCode> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let (vk_bytes, proof_bytes) = (read(vk)?, read(proof)?);
    let inputs: Vec<String> = serde_json::from_slice(&read(public)?).with_context(|| {
        format!(
            "{} is not a JSON array of decimal strings",
            public.display()
        )
    })?;
    let inputs = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            zk::field::parse_fr(x).with_context(|| format!("{}: input {i}", public.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match zk::gnark::verify(&vk_bytes, &proof_bytes, &inputs) {
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

fn export_snarkjs(path: &Path, out: &Path) -> anyhow::Result<()> {
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
    println!("check one with: snarkjs groth16 verify {0}/verification_key.json {0}/public-0.json {0}/proof-0.json", out.display());
    Ok(())
}

/// A thin HTTP client for the pool's API with errors that carry the pool's message.
pub struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    /// An API at `base`; for an HTTPS pool with a private CA or a self-signed
    /// certificate, `ZKPOOL_TLS_CA` names the PEM file to trust (see also
    /// [`Api::with_ca`]).
    pub fn new(base: &str) -> Self {
        let api = Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            token: None,
        };
        match std::env::var_os("ZKPOOL_TLS_CA") {
            Some(ca) => {
                let path = PathBuf::from(ca);
                match Api::new_plain(base).with_ca(&path) {
                    Ok(a) => Api { token: None, ..a },
                    Err(e) => {
                        eprintln!("zkpool: ZKPOOL_TLS_CA: {e:#}; not trusting it");
                        api
                    }
                }
            }
            None => api,
        }
    }

    fn new_plain(base: &str) -> Self {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same API, also trusting the CA certificates in the PEM file `ca`.
    pub fn with_ca(mut self, ca: &Path) -> anyhow::Result<Self> {
        let mut b = reqwest::Client::builder();
        for der in stratum::tls::certificates(ca)? {
            b = b.add_root_certificate(reqwest::Certificate::from_der(&der)?);
        }
        self.http = b.build()?;
        Ok(self)
    }

    /// The same API, sending `Authorization: Bearer <token>` (an admin token or a
    /// client API key).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// GET returning the body as text (CSV exports).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.base);
        let r = self
            .auth(self.http.get(&url))
            .send()
            .await
            .with_context(|| format!("cannot reach the pool at {url}"))?;
        if !r.status().is_success() {
            return self
                .decode(&format!("GET {path}"), r)
                .await
                .map(|v| v.to_string());
        }
        Ok(r.text().await?)
    }

    async fn decode(&self, what: &str, r: reqwest::Response) -> anyhow::Result<Value> {
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            bail!("{what}: HTTP {status}: {msg}");
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let r = self
            .auth(self.http.get(&url))
            .send()
            .await
            .with_context(|| format!("cannot reach the pool at {url}"))?;
        self.decode(&format!("GET {path}"), r).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let r = self
            .auth(self.http.post(&url))
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the pool at {url}"))?;
        self.decode(&format!("POST {path}"), r).await
    }

    /// Polls a job until it completes; calls `each` with its view every poll.
    pub async fn wait(
        &self,
        id: &str,
        timeout: Duration,
        mut each: impl FnMut(&Value),
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get(&format!("/v1/jobs/{id}")).await?;
            each(&v);
            if v["state"] == "completed" {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!(
                    "job {id} did not complete within {}s: {}/{} verified",
                    timeout.as_secs(),
                    v["verified"],
                    v["statements"]
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn progress_line(v: &Value) -> String {
    let total = v["statements"].as_u64().unwrap_or(0).max(1);
    let done = v["verified"].as_u64().unwrap_or(0);
    let width = 30;
    let filled = (done * width / total) as usize;
    format!(
        "{} {:<8} [{}{}] {done}/{total} verified",
        v["id"].as_str().unwrap_or("?"),
        v["circuit"].as_str().unwrap_or("?"),
        "#".repeat(filled),
        "-".repeat(width as usize - filled)
    )
}

async fn client(url: &str, key: Option<String>, cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let api = Api::new(url).with_token(key);
    match cmd {
        ClientCommand::Submit { job, wait, out } => {
            let text = std::fs::read_to_string(&job)
                .with_context(|| format!("cannot read {}", job.display()))?;
            let body: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", job.display()))?;
            let v = api.post("/v1/jobs", &body).await?;
            let id = v["id"]
                .as_str()
                .context("pool answered without a job id")?
                .to_owned();
            println!(
                "job {id} accepted: {} statements of {} ({} work)",
                v["statements"], v["circuit"], v["total_work"]
            );
            if wait {
                let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
                let mut last = String::new();
                api.wait(&id, Duration::from_secs(86_400), |v| {
                    let line = progress_line(v);
                    if line != last {
                        if tty {
                            print!("\r{line}");
                            let _ = std::io::Write::flush(&mut std::io::stdout());
                        } else {
                            println!("{line}");
                        }
                        last = line;
                    }
                })
                .await?;
                if tty {
                    println!();
                }
                let result = api.get(&format!("/v1/jobs/{id}/result")).await?;
                if let Some(out) = out {
                    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
                    println!(
                        "result written to {}; check it with: zkpool verify {} --circuit-id {}",
                        out.display(),
                        out.display(),
                        v["circuit_id"].as_str().unwrap_or("ID")
                    );
                }
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
        }
        ClientCommand::Status { id } => {
            let v = api.get(&format!("/v1/jobs/{id}")).await?;
            println!("{}", progress_line(&v));
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ClientCommand::Result { id, out } => {
            let v = api.get(&format!("/v1/jobs/{id}/result")).await?;
            let text = serde_json::to_string_pretty(&v)?;
            match out {
                Some(p) => std::fs::write(&p, text)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => println!("{text}"),
            }
        }
        ClientCommand::Verify {
            job_or_file,
            circuit_id,
        } => {
            let path = Path::new(&job_or_file);
            if path.exists() {
                let Some(id) = circuit_id else {
                    anyhow::bail!("name the circuit the result must be for: --circuit-id ID (GET /v1/circuits lists them)");
                };
                return Ok(verify(path, Some(&id)));
            }
            // A job id: the job's record on the pool names its circuit.
            let job = api.get(&format!("/v1/jobs/{job_or_file}")).await?;
            let id = match circuit_id {
                Some(id) => id,
                None => job["circuit_id"]
                    .as_str()
                    .context("the pool's job record names no circuit")?
                    .to_owned(),
            };
            let v = api.get(&format!("/v1/jobs/{job_or_file}/result")).await?;
            let result: zk::JobResult =
                serde_json::from_value(v).context("the pool's answer is not a zkpool result")?;
            return Ok(verify_result(&result, Some(&id)));
        }
        ClientCommand::Account { id } => {
            let v = api.get(&format!("/v1/clients/{id}")).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ClientCommand::Example { kind, count } => println!(
            "{}",
            serde_json::to_string_pretty(&example_job(kind, count))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn operator(op: OperatorArgs) -> anyhow::Result<Api> {
    let token = op.admin_token.context(
        "operator commands need the pool's admin token: --admin-token or ZKPOOL_ADMIN_TOKEN (http.admin_token in its config)",
    )?;
    Ok(Api::new(&op.url).with_token(Some(token)))
}

fn print_json(v: &Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

/// A reference for a deposit given without one: unique, so it is recorded once
/// per command run (pass --reference to make retries safe).
fn fresh_reference(kind: &str) -> String {
    format!(
        "{kind}-{}-{:08x}",
        crate::circuits::now_ms(),
        rand::random::<u32>()
    )
}

async fn clients(op: OperatorArgs, cmd: ClientsCommand) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    match cmd {
        ClientsCommand::Add { id } => {
            let v = api.post("/v1/clients", &json!({ "id": id })).await?;
            println!("client {id} added; its API key (shown once, give it to the client):");
            println!("{}", v["api_key"].as_str().unwrap_or("?"));
            Ok(ExitCode::SUCCESS)
        }
        ClientsCommand::Deposit {
            id,
            amount,
            reference,
        } => {
            let reference = reference.unwrap_or_else(|| fresh_reference("deposit"));
            let v = api
                .post(
                    &format!("/v1/clients/{id}/deposits"),
                    &json!({ "amount": amount, "reference": reference }),
                )
                .await?;
            println!(
                "{} {amount} for {id} (reference {reference}); balance now {}",
                if v["new"] == true {
                    "deposited"
                } else {
                    "already recorded:"
                },
                v["balance"]
            );
            Ok(ExitCode::SUCCESS)
        }
        ClientsCommand::Show { id } => print_json(&api.get(&format!("/v1/clients/{id}")).await?),
        ClientsCommand::List => print_json(&api.get("/v1/clients").await?),
    }
}

async fn funds(op: OperatorArgs, cmd: FundsCommand) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    let FundsCommand::Add { amount, reference } = cmd;
    let reference = reference.unwrap_or_else(|| fresh_reference("funds"));
    let v = api
        .post(
            "/v1/pool/funds",
            &json!({ "amount": amount, "reference": reference }),
        )
        .await?;
    println!("pool funds now {} (reference {reference})", v["funds"]);
    Ok(ExitCode::SUCCESS)
}

async fn rewards(op: OperatorArgs, cmd: RewardsCommand) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    let RewardsCommand::Add { amount, reference } = cmd;
    print_json(
        &api.post(
            "/v1/rewards",
            &json!({ "amount": amount, "reference": reference }),
        )
        .await?,
    )
}

async fn payouts_cmd(op: OperatorArgs, cmd: PayoutsCommand) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    match cmd {
        PayoutsCommand::Plan { threshold } => {
            let body = match threshold {
                Some(t) => json!({ "threshold": t }),
                None => json!({}),
            };
            let v = api.post("/v1/payouts", &body).await?;
            match v["batch"]["id"].as_u64() {
                Some(id) => {
                    println!(
                        "batch {id} planned: {} payment(s), {} in total, reserved",
                        v["batch"]["items"].as_array().map_or(0, |a| a.len()),
                        v["batch"]["total"]
                    );
                    println!("next: zkpool payouts export {id} --format csv, pay it, then zkpool payouts confirm {id} --tx REF");
                }
                None => println!("{}", v["message"].as_str().unwrap_or("nothing planned")),
            }
            Ok(ExitCode::SUCCESS)
        }
        PayoutsCommand::List => print_json(&api.get("/v1/payouts").await?),
        PayoutsCommand::Export { batch, format, out } => {
            let fmt = match format {
                BatchFormat::Csv => "csv",
                BatchFormat::Json => "json",
            };
            let text = api
                .get_text(&format!("/v1/payouts/{batch}?format={fmt}"))
                .await?;
            match out {
                Some(p) => std::fs::write(&p, text)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        PayoutsCommand::Confirm { batch, tx } => {
            let v = api
                .post(
                    &format!("/v1/payouts/{batch}/confirm"),
                    &json!({ "tx": tx }),
                )
                .await?;
            println!(
                "batch {batch} {} with {tx}: {} paid",
                if v["new"] == true {
                    "confirmed"
                } else {
                    "was already confirmed"
                },
                v["batch"]["total"]
            );
            Ok(ExitCode::SUCCESS)
        }
        PayoutsCommand::Void { batch } => {
            api.post(&format!("/v1/payouts/{batch}/void"), &json!({}))
                .await?;
            println!("batch {batch} voided; its amounts are back in the miners' balances");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn ledger(op: OperatorArgs, journal_from: Option<u64>) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    let v = api.get("/v1/ledger").await?;
    print_json(&v)?;
    if let Some(from) = journal_from {
        print_json(&api.get(&format!("/v1/ledger/journal?from={from}")).await?)?;
    }
    if v["audit"]["balanced"] != true {
        eprintln!("the books do not balance: see the audit above");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn example_job(kind: ExampleKind, count: u64) -> Value {
    match kind {
        ExampleKind::Chain => {
            json!({ "circuit": "chain", "chain": { "seed": "1", "segments": count }, "reward": 0, "deadline_secs": 3600 })
        }
        ExampleKind::Batch => {
            let statements: Vec<zk::Statement> = (1..=count)
                .map(|x| zk::CircuitSpec::preimage_statement(zk::Fr::from(x)))
                .collect();
            json!({ "circuit": "preimage", "statements": statements, "reward": 0, "deadline_secs": 3600 })
        }
    }
}

async fn demo(a: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut config = Config::default();
    config.storage.data_dir = tmp.path().join("pool");
    config.scheduler.target_task_secs = 2.0;
    config.stratum.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    let admin_token = format!("demo-{}", hex::encode(rand::random::<[u8; 16]>()));
    config.http.admin_token = Some(admin_token.clone());
    config.payouts.threshold = 1;
    println!("zkpool demo: a pool and two miners on this machine, one chain job and one batch job");
    println!("1. setting up the pool (Groth16 keys for the built-in circuits)...");
    let stratum = TcpListener::bind(config.stratum.listen).await?;
    let http = TcpListener::bind(config.http.listen).await?;
    let pool = crate::start(config, stratum, http).await?;
    for c in pool.state.registry.all() {
        println!(
            "   circuit {:<9} {} | {} constraints per proof",
            c.record.name, c.record.id, c.record.constraints
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let stop = CancellationToken::new();
    let mut miners = vec![];
    let mut stats = vec![];
    for (i, worker) in ["alice.rig1", "bob.rig1"].into_iter().enumerate() {
        let cfg = miner::MinerConfig {
            pools: vec![miner::PoolUrl {
                host: "127.0.0.1".into(),
                port: pool.stratum_addr.port(),
                tls: false,
            }],
            worker: worker.into(),
            password: None,
            threads: (cores / 2).max(1),
            cache_dir: tmp.path().join(format!("miner{i}")),
            status_interval: Duration::ZERO,
            max_backoff: Duration::from_secs(2),
            tls_ca: None,
            prover_cmd: None,
            precompute_mem: 0,
        };
        let s = Arc::new(miner::Stats::default());
        stats.push((worker, s.clone()));
        miners.push(tokio::spawn(miner::run(cfg, s, stop.clone())));
    }
    println!(
        "2. started miners alice.rig1 and bob.rig1 for stratum+tcp://{} ({} prover thread(s) each)",
        pool.stratum_addr,
        (cores / 2).max(1)
    );

    let base = format!("http://{}", pool.http_addr);
    let operator = Api::new(&base).with_token(Some(admin_token));
    let key = operator.post("/v1/clients", &json!({"id": "acme"})).await?["api_key"]
        .as_str()
        .context("no API key")?
        .to_owned();
    operator
        .post(
            "/v1/clients/acme/deposits",
            &json!({"amount": 2_500_000, "reference": "demo-wire-1"}),
        )
        .await?;
    let client_api = Api::new(&base).with_token(Some(key));
    // acme's jobs are private: the demo follows them with acme's key.
    let api = &client_api;
    let paid_job = |kind, count, reward: u64| {
        let mut j = example_job(kind, count);
        let o = j.as_object_mut().expect("jobs are objects");
        o.insert("reward".into(), reward.into());
        j
    };
    let chain = client_api
        .post(
            "/v1/jobs",
            &paid_job(ExampleKind::Chain, a.chain_segments, 1_000_000),
        )
        .await?;
    let batch = client_api
        .post(
            "/v1/jobs",
            &paid_job(ExampleKind::Batch, a.batch_statements, 1_000_000),
        )
        .await?;
    let ids = [
        chain["id"].as_str().context("no job id")?.to_owned(),
        batch["id"].as_str().context("no job id")?.to_owned(),
    ];
    println!(
        "3. client acme (deposit 2,500,000) submitted jobs over HTTP, 1,000,000 escrowed each: chain {} ({} segments), batch {} ({} statements)",
        ids[0], a.chain_segments, ids[1], a.batch_statements
    );

    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let mut last = String::new();
    loop {
        let mut lines = vec![];
        let mut all = true;
        for id in &ids {
            let v = api.get(&format!("/v1/jobs/{id}")).await?;
            all &= v["state"] == "completed";
            lines.push(progress_line(&v));
        }
        let line = lines.join("   ");
        if line != last {
            println!("   {line}");
            last = line;
        }
        if all {
            break;
        }
        if Instant::now() > deadline {
            bail!("jobs did not finish within {}s", a.timeout);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    println!("4. results, verified here offline from the result files alone:");
    for id in &ids {
        let v = api.get(&format!("/v1/jobs/{id}/result")).await?;
        let result: zk::JobResult = serde_json::from_value(v.clone())?;
        // Pinned to the circuit the job was submitted for, as a client should.
        let job = api.get(&format!("/v1/jobs/{id}")).await?;
        let circuit = job["circuit_id"].as_str().unwrap_or_default();
        let n = result
            .verify_pinned(circuit)
            .map_err(|e| anyhow::anyhow!("result of {id} does not verify: {e}"))?;
        print!(
            "   {id} {:<8} {n} proofs verified, digest {}",
            result.circuit.name(),
            &result.digest[..16]
        );
        if let Some(c) = &result.chain {
            print!(
                " | H^{}(1) = {}...",
                c.segments * c.steps_per_segment as u64,
                &zk::field::fr_to_string(&c.output)[..20]
            );
        }
        println!();
        if let Some(dir) = &a.out {
            std::fs::create_dir_all(dir)?;
            let p = dir.join(format!("{}-{id}.json", result.circuit.name()));
            std::fs::write(&p, serde_json::to_string_pretty(&v)?)?;
            println!(
                "     written to {} (zkpool verify {} --circuit-id {circuit})",
                p.display(),
                p.display()
            );
        }
    }
    println!("5. credited work (constraints of verified proofs):");
    let mut total = 0;
    for (worker, s) in &stats {
        let v = api.get(&format!("/v1/workers/{worker}")).await?;
        let work = v["work"].as_u64().unwrap_or(0);
        total += work;
        let proving = s.proving_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9;
        println!(
            "   {worker:<11} {:>4} proofs {:>10} work | proved for {proving:.1}s",
            v["proofs"], work
        );
    }
    let expected: u64 = [&chain, &batch]
        .iter()
        .map(|j| j["total_work"].as_u64().unwrap_or(0))
        .sum();
    println!(
        "   total {total} = jobs' total work {expected}: {}",
        if total == expected { "OK" } else { "MISMATCH" }
    );
    println!("6. settlements (prop, 1 % fee; parts by work, largest remainder):");
    for id in &ids {
        // The settlement is written right after the result; wait for it.
        let mut v = api.get(&format!("/v1/jobs/{id}/credits")).await?;
        for _ in 0..50 {
            if !v["settlement"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            v = api.get(&format!("/v1/jobs/{id}/credits")).await?;
        }
        let s = &v["settlement"];
        let parts: Vec<String> = s["parts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        format!(
                            "{} {} (work {})",
                            p["worker"].as_str().unwrap_or("?"),
                            p["amount"],
                            p["work"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "   {id}: earned {} fee {} -> {} | {} credits, root {}…",
            s["earned"],
            s["fee"],
            parts.join(", "),
            s["credits"],
            &v["credits_root"].as_str().unwrap_or("")[..16]
        );
    }
    let plan = operator.post("/v1/payouts", &json!({})).await?;
    let batch_id = plan["batch"]["id"].as_u64().context("nothing to pay out")?;
    let csv = operator
        .get_text(&format!("/v1/payouts/{batch_id}?format=csv"))
        .await?;
    operator
        .post(
            &format!("/v1/payouts/{batch_id}/confirm"),
            &json!({"tx": "demo-tx-0001"}),
        )
        .await?;
    println!(
        "7. payout batch {batch_id} planned, exported and confirmed (tx demo-tx-0001):\n   {}",
        csv.trim_end().replace('\n', "\n   ")
    );
    stop.cancel();
    for m in miners {
        let _ = m.await;
    }
    println!("8. each miner audits its signed receipts against the published credit roots:");
    let mut audit_ok = true;
    for (i, (worker, _)) in stats.iter().enumerate() {
        let path = tmp.path().join(format!("miner{i}")).join("receipts.jsonl");
        let r = miner::receipts::audit(&path).await?;
        audit_ok &= r.problems.is_empty();
        println!(
            "   {worker}: {} receipts, {} jobs settled: {}",
            r.receipts,
            r.jobs_settled,
            if r.problems.is_empty() {
                "everything matches".to_owned()
            } else {
                r.problems.join("; ")
            }
        );
    }
    let books = operator.get("/v1/ledger").await?;
    println!(
        "   books: deposited {} = client {} + escrow {} + miners {} + pending {} + paid {} + fees {} + funds {}: {}",
        books["audit"]["deposited"],
        books["audit"]["clients"],
        books["audit"]["escrow"],
        books["audit"]["miners"],
        books["audit"]["pending"],
        books["audit"]["paid"],
        books["audit"]["fees"],
        books["audit"]["funds"],
        if books["audit"]["balanced"] == true { "balanced" } else { "NOT BALANCED" }
    );
    pool.shutdown(Duration::from_secs(5)).await;
    if !audit_ok || books["audit"]["balanced"] != true {
        bail!("the receipts audit or the books failed");
    }
    if total != expected {
        bail!("credited work {total} does not equal the jobs' work {expected}");
    }
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
