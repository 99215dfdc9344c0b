//! The operator's commands, each a request to a running pool's HTTP API behind
//! its admin token: `clients`, `funds`, `rewards`, `payouts`, `ledger`, `workers`,
//! and `circuits` (which a client may use with its API key).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use pool::api::Client;
use serde_json::{json, Value};

use crate::offline::read_json;

/// How an operator command reaches the pool.
#[derive(clap::Args, Debug)]
pub struct OperatorArgs {
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
pub enum ClientsCommand {
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
pub enum CircuitsCommand {
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
pub enum WorkersCommand {
    /// Issue (or replace) the token an account's rigs must give as their password.
    Token { addr: String },
}

#[derive(Subcommand, Debug)]
pub enum FundsCommand {
    /// Add to the pool's funds (PPS pays shares from them).
    Add {
        amount: u64,
        #[arg(long)]
        reference: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RewardsCommand {
    /// Record a reward and share it over the last N units of work (PPLNS).
    Add {
        amount: u64,
        /// Where it came from (the idempotency key), e.g. the network payment's id.
        #[arg(long)]
        reference: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum PayoutsCommand {
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
pub enum BatchFormat {
    Csv,
    Json,
}

pub async fn circuits(
    op: OperatorArgs,
    api_key: Option<String>,
    command: CircuitsCommand,
) -> anyhow::Result<ExitCode> {
    let api = Client::new(&op.url).with_token(op.admin_token.or(api_key));
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
                    // As the other commands show an error: with its causes.
                    println!("INVALID: {:#}", anyhow::Error::from(e));
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

fn operator(op: OperatorArgs) -> anyhow::Result<Client> {
    let token = op.admin_token.context(
        "operator commands need the pool's admin token: --admin-token or ZKPOOL_ADMIN_TOKEN (http.admin_token in its config)",
    )?;
    Ok(Client::new(&op.url).with_token(Some(token)))
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
        pool::circuits::now_ms(),
        rand::random::<u32>()
    )
}

pub async fn clients(op: OperatorArgs, cmd: ClientsCommand) -> anyhow::Result<ExitCode> {
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

pub async fn funds(op: OperatorArgs, cmd: FundsCommand) -> anyhow::Result<ExitCode> {
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

pub async fn rewards(op: OperatorArgs, cmd: RewardsCommand) -> anyhow::Result<ExitCode> {
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

pub async fn payouts(op: OperatorArgs, cmd: PayoutsCommand) -> anyhow::Result<ExitCode> {
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

pub async fn ledger(op: OperatorArgs, journal_from: Option<u64>) -> anyhow::Result<ExitCode> {
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

pub async fn workers(op: OperatorArgs, cmd: WorkersCommand) -> anyhow::Result<ExitCode> {
    let WorkersCommand::Token { addr } = cmd;
    let v = operator(op)?
        .post(&format!("/v1/workers/{addr}/token"), &json!({}))
        .await?;
    println!("worker token for {addr} (shown once; its rigs run zkminer --password <token>):");
    println!("{}", v["token"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}
