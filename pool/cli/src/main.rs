//! The `zkpool` binary: parses the command line, sets up logging and the runtime,
//! and hands each subcommand to the module for its concern. It is the only place
//! that touches signals, logging setup and process exit codes; the pool itself is
//! the `pool` library.

mod client;
mod demo;
mod offline;
mod operator;
mod serve;
mod show;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    client::ClientCommand,
    demo::DemoArgs,
    offline::{ExportFormat, MigrateArgs, Order, SetupArgs},
    operator::{
        BansCommand, CircuitsCommand, ClientsCommand, FundsCommand, OperatorArgs, PayoutsCommand,
        RewardsCommand, WorkersCommand,
    },
    serve::ServeArgs,
};

/// zkpool: a mining pool for zero-knowledge proofs.
#[derive(Parser, Debug)]
#[command(name = "zkpool", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pool: stratum for miners, HTTP for clients and key downloads.
    Serve(ServeArgs),
    /// Generate (or show) the Groth16 keys of the built-in circuits in a data directory.
    Setup(SetupArgs),
    /// Bring a PostgreSQL database's schema up to date (storage.url); `serve`
    /// does this too when it starts. Says what it applied; a second run is a no-op.
    Migrate(MigrateArgs),
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
        /// Check the job's aggregate instead of every proof: one small proof per
        /// run of statements, against the public inputs and chain links. FILE may
        /// be a result or an aggregate (GET /v1/jobs/{id}/aggregate).
        #[arg(long)]
        aggregate_only: bool,
        /// With --aggregate-only: the SRS the aggregate must be made under, its id
        /// (GET /v1/status: aggregation.srs_id, or your own from the ceremonies you
        /// trust). Under an SRS whose secrets someone knows, aggregates are forged.
        #[arg(long)]
        srs_id: Option<String>,
        /// With --aggregate-only: accept the insecure test SRS (its secrets are
        /// public, so the check proves nothing; for demos and tests).
        #[arg(long)]
        insecure_srs: bool,
    },
    /// Verify a gnark BN254 Groth16 proof offline: --vk, --proof and --public
    /// (or the three files by position: VK PROOF PUBLIC). Exit 0 if it verifies,
    /// 1 with the reason if it does not, 2 if a file cannot be read or decoded
    /// (the message names the file and what is wrong with it).
    VerifyGnark {
        /// The verifying key, as gnark's VerifyingKey.WriteTo wrote it.
        #[arg(long, value_name = "FILE", required_unless_present = "files")]
        vk: Option<PathBuf>,
        /// The proof, as gnark's Proof.WriteRawTo (or WriteTo) wrote it.
        #[arg(long, value_name = "FILE", required_unless_present = "files")]
        proof: Option<PathBuf>,
        /// The public inputs: a JSON array of decimal strings, in order.
        #[arg(long, value_name = "FILE", required_unless_present = "files")]
        public: Option<PathBuf>,
        /// The same three files by position, in the order VK PROOF PUBLIC (the
        /// older form, kept working; the flags say which file is which).
        #[arg(
            value_names = ["VK", "PROOF", "PUBLIC"],
            num_args = 3,
            conflicts_with_all = ["vk", "proof", "public"]
        )]
        files: Vec<PathBuf>,
    },
    /// Verify a snarkjs Groth16 proof (bn128) offline: --vk, --proof and --public
    /// (or the three files by position in snarkjs's order: VK PUBLIC PROOF). Exit
    /// 0 if it verifies, 1 with the reason if it does not, 2 if a file cannot be
    /// read or decoded (the message names the file and what is wrong with it).
    VerifySnarkjs {
        /// verification_key.json, as `snarkjs zkey export verificationkey` writes it.
        #[arg(long, value_name = "FILE", required_unless_present = "files")]
        vk: Option<PathBuf>,
        /// proof.json, as `snarkjs groth16 prove` writes it.
        #[arg(long, value_name = "FILE", required_unless_present = "files")]
        proof: Option<PathBuf>,
        /// public.json: the public signals, as `snarkjs groth16 prove` writes them.
        #[arg(long, value_name = "FILE", required_unless_present = "files")]
        public: Option<PathBuf>,
        /// The same three files by position, in the order VK PUBLIC PROOF (as
        /// `snarkjs groth16 verify` takes them; the flags say which file is which).
        #[arg(
            value_names = ["VK", "PUBLIC", "PROOF"],
            num_args = 3,
            conflicts_with_all = ["vk", "proof", "public"]
        )]
        files: Vec<PathBuf>,
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
        /// The format: snarkjs (a proof.json and a public.json per proof, and the
        /// verification_key.json, for `snarkjs groth16 verify`).
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
    /// Operator: workers and addresses banned for invalid work; lift a ban.
    Bans {
        #[command(flatten)]
        op: OperatorArgs,
        #[command(subcommand)]
        command: BansCommand,
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
        /// Print the API's JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    miner::process::exit_quietly_on_closed_pipe();
    let cli = Cli::parse();
    let default_level = if matches!(
        cli.command,
        Command::Demo(_)
            | Command::Verify { .. }
            | Command::Client { .. }
            | Command::Clients { .. }
            | Command::Funds { .. }
            | Command::Bans { .. }
            | Command::Rewards { .. }
            | Command::Payouts { .. }
            | Command::Ledger { .. }
            | Command::Workers { .. }
            | Command::Circuits { .. }
            | Command::VerifySnarkjs { .. }
            | Command::Migrate(_)
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
            Command::Serve(a) => serve::run(a).await.map(|_| ExitCode::SUCCESS),
            Command::Setup(a) => offline::setup(a).await.map(|_| ExitCode::SUCCESS),
            Command::Migrate(a) => offline::migrate(a).await.map(|_| ExitCode::SUCCESS),
            Command::Demo(a) => demo::run(a).await.map(|_| ExitCode::SUCCESS),
            Command::Verify {
                result,
                circuit_id,
                any_key,
                aggregate_only: true,
                srs_id,
                insecure_srs,
            } => Ok(offline::verify_aggregate(
                &result,
                if any_key { None } else { circuit_id.as_deref() },
                if any_key { None } else { srs_id.as_deref() },
                insecure_srs,
            )),
            Command::Verify {
                result,
                circuit_id,
                any_key,
                ..
            } => Ok(offline::verify(
                &result,
                if any_key { None } else { circuit_id.as_deref() },
            )),
            Command::VerifyGnark {
                vk,
                proof,
                public,
                files,
            } => {
                let f = offline::ProofFiles::pick(vk, proof, public, files, Order::VkProofPublic);
                offline::verify_gnark(&f)
            }
            Command::VerifySnarkjs {
                vk,
                proof,
                public,
                files,
            } => {
                let f = offline::ProofFiles::pick(vk, proof, public, files, Order::VkPublicProof);
                offline::verify_snarkjs(&f)
            }
            Command::Circuits {
                op,
                api_key,
                command,
            } => operator::circuits(op, api_key, command).await,
            Command::Export {
                format: ExportFormat::Snarkjs,
                result,
                out,
            } => offline::export_snarkjs(&result, &out).map(|_| ExitCode::SUCCESS),
            Command::Client {
                url,
                api_key,
                command,
            } => client::run(&url, api_key, command).await,
            Command::Clients { op, command } => operator::clients(op, command).await,
            Command::Funds { op, command } => operator::funds(op, command).await,
            Command::Bans { op, command } => operator::bans(op, command).await,
            Command::Rewards { op, command } => operator::rewards(op, command).await,
            Command::Payouts { op, command } => operator::payouts(op, command).await,
            Command::Ledger {
                op,
                journal_from,
                json,
            } => operator::ledger(op, journal_from, json).await,
            Command::Workers { op, command } => operator::workers(op, command).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zkpool: {}", report(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes joined with ": ", as `{:#}` shows them, leaving out a
/// cause whose text the message already ends with: many errors print their
/// source in their own message, and `{:#}` would say it twice ("No such file or
/// directory (os error 2): No such file or directory (os error 2)").
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out = text;
        } else if !out.ends_with(&text) {
            out = format!("{out}: {text}");
        }
    }
    out
}

/// `RUST_LOG` if set, else `default`; arkworks' spans are silenced either way
/// unless `RUST_LOG` names them.
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
    let spec = if spec.contains("r1cs") {
        spec
    } else {
        format!("{spec},{}", zk::QUIET_ARKWORKS)
    };
    tracing_subscriber::EnvFilter::new(spec)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every positional argument of every subcommand says what it is in `--help`.
    #[test]
    fn every_positional_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, seen: &mut usize, missing: &mut Vec<String>) {
            for arg in cmd.get_positionals() {
                *seen += 1;
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{}>", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), seen, missing);
            }
        }
        let (mut seen, mut missing) = (0, vec![]);
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        walk(&cmd, "zkpool", &mut seen, &mut missing);
        assert!(
            missing.is_empty(),
            "positional arguments without help: {missing:?}"
        );
        // The walk reaches nested subcommands (`circuits verify CIRCUIT PUBLIC PROOF`, …).
        assert!(seen >= 10, "only {seen} positional arguments found");
    }
}
