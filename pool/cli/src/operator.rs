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

use crate::{offline::read_json, show};

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
    Add {
        /// A name for the account, e.g. the customer's.
        id: String,
    },
    /// Credit a client's balance (smallest units). Idempotent on --reference.
    Deposit {
        /// The client's id (as given to `zkpool clients add`).
        id: String,
        /// In the smallest unit.
        amount: u64,
        /// The payment's reference, e.g. the wire transfer's id: required, so a
        /// retried command is recorded once and never credits twice.
        #[arg(long)]
        reference: String,
    },
    /// Pay part of a client's balance back to it: out of the books.
    /// Idempotent on --reference; refused when the balance is short.
    Refund {
        /// The client's id.
        id: String,
        /// In the smallest unit.
        amount: u64,
        /// The refund payment's reference: required, so a retried command is
        /// recorded once and never refunds twice.
        #[arg(long)]
        reference: String,
    },
    /// A client's balance, escrow and jobs.
    Show {
        /// The client's id.
        id: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every client with its balance.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    /// Issue the token an account's rigs must give as their password. An account
    /// that has one keeps it unless --replace is given.
    Token {
        /// The account (ADDR of its rigs' ADDR.RIG names).
        addr: String,
        /// Replace the account's token: its rigs are refused until they run with
        /// the new one.
        #[arg(long)]
        replace: bool,
    },
    /// The accounts that have a worker token.
    Tokens,
    /// Revoke an account's token: its rigs no longer need one (unless the pool
    /// sets stratum.require_worker_token).
    Revoke {
        /// The account.
        addr: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum BansCommand {
    /// The active bans: target, time left and how many times it was banned.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lift a ban now (the target's invalid-work count starts again).
    Lift {
        /// `worker:ADDR.RIG` or `ip:ADDRESS`, as `zkpool bans list` shows it.
        target: String,
    },
}

pub async fn bans(op: OperatorArgs, cmd: BansCommand) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    match cmd {
        BansCommand::List { json } => {
            let v = api.get("/v1/bans").await?;
            if json {
                return print_json(&v);
            }
            let list = v["bans"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no active bans");
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = show::Table::new(&["target", ">time left", ">times banned"]);
            for b in &list {
                let secs = b["remaining_secs"].as_u64().unwrap_or(0);
                t.row(vec![
                    show::text(&b["target"]),
                    format!("{}m {:02}s", secs / 60, secs % 60),
                    show::amount_of(&b["bans"]),
                ]);
            }
            print!("{}", t.render());
            println!("lift one with `zkpool bans lift TARGET`");
        }
        BansCommand::Lift { target } => {
            api.delete(&format!("/v1/bans/{target}")).await?;
            println!("ban on {target} lifted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand, Debug)]
pub enum FundsCommand {
    /// Add to the pool's funds (PPS pays shares from them).
    Add {
        /// In the smallest unit.
        amount: u64,
        /// Where the money came from (the idempotency key): required, so a retried
        /// command is recorded once.
        #[arg(long)]
        reference: String,
    },
    /// Take the pool fee collected (or unused funds) out of the books, e.g. when
    /// the operator transfers it to itself. Idempotent on --reference.
    Withdraw {
        /// In the smallest unit.
        amount: u64,
        /// Which of the pool's accounts: `fees` or `funds`.
        #[arg(long, value_parser = ["fees", "funds"])]
        from: String,
        /// The payment's reference: required, so a retried command is recorded once.
        #[arg(long)]
        reference: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RewardsCommand {
    /// Record a reward and share it over the last N units of work (PPLNS).
    Add {
        /// In the smallest unit.
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
    List {
        /// Print the API's JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write a batch for execution elsewhere.
    Export {
        /// The batch number (`zkpool payouts list`).
        batch: u64,
        #[arg(long, value_enum, default_value = "csv")]
        format: BatchFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Record that a batch was paid (at most once).
    Confirm {
        /// The batch number.
        batch: u64,
        /// The payment's transaction reference.
        #[arg(long)]
        tx: String,
    },
    /// Cancel a planned batch: its amounts go back to the balances.
    Void {
        /// The batch number.
        batch: u64,
    },
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
            let unit = show::Unit::of(&api).await?;
            let v = api
                .post(
                    &format!("/v1/clients/{id}/deposits"),
                    &json!({ "amount": amount, "reference": reference }),
                )
                .await?;
            println!(
                "{} {} for {id} (reference {reference}); balance now {}",
                if v["new"] == true {
                    "deposited"
                } else {
                    "already recorded:"
                },
                unit.amount(amount),
                unit.amount_of(&v["balance"])
            );
            Ok(ExitCode::SUCCESS)
        }
        ClientsCommand::Refund {
            id,
            amount,
            reference,
        } => {
            let v = api
                .post(
                    &format!("/v1/clients/{id}/refunds"),
                    &json!({ "amount": amount, "reference": reference }),
                )
                .await?;
            let unit = show::Unit::of(&api).await?;
            println!(
                "{} {} to {id} (reference {reference}); balance now {}",
                if v["new"] == true {
                    "refunded"
                } else {
                    "already recorded: refunded"
                },
                unit.amount(amount),
                unit.amount_of(&v["balance"])
            );
            Ok(ExitCode::SUCCESS)
        }
        ClientsCommand::Show { id, json } => {
            let v = api.get(&format!("/v1/clients/{id}")).await?;
            if json {
                return print_json(&v);
            }
            let unit = show::Unit::of(&api).await?;
            println!(
                "client {id}: balance {}, in escrow {}",
                unit.amount_of(&v["balance"]),
                unit.amount_of(&v["escrow"])
            );
            let mut t = show::Table::new(&["job", "state", ">reward", ">escrow"]);
            for j in v["jobs"].as_array().into_iter().flatten() {
                t.row(vec![
                    show::text(&j["id"]),
                    show::text(&j["state"]),
                    unit.amount_of(&j["reward"]),
                    unit.amount_of(&j["escrow"]),
                ]);
            }
            if t.is_empty() {
                println!("no jobs yet");
            } else {
                print!("{}", t.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientsCommand::List { json } => {
            let v = api.get("/v1/clients").await?;
            if json {
                return print_json(&v);
            }
            let unit = show::Unit::of(&api).await?;
            let mut t = show::Table::new(&["client", ">balance", "created"]);
            for c in v["clients"].as_array().into_iter().flatten() {
                t.row(vec![
                    show::text(&c["id"]),
                    unit.amount_of(&c["balance"]),
                    show::date_of(&c["created_ms"]),
                ]);
            }
            if t.is_empty() {
                println!("no clients yet: zkpool clients add NAME");
            } else {
                print!("{}", t.render());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn funds(op: OperatorArgs, cmd: FundsCommand) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    match cmd {
        FundsCommand::Add { amount, reference } => {
            let v = api
                .post(
                    "/v1/pool/funds",
                    &json!({ "amount": amount, "reference": reference }),
                )
                .await?;
            println!(
                "pool funds now {} (reference {reference})",
                show::Unit::of(&api).await?.amount_of(&v["funds"])
            );
        }
        FundsCommand::Withdraw {
            amount,
            from,
            reference,
        } => {
            let v = api
                .post(
                    "/v1/pool/withdrawals",
                    &json!({ "from": from, "amount": amount, "reference": reference }),
                )
                .await?;
            let unit = show::Unit::of(&api).await?;
            println!(
                "{} {} from pool {from} (reference {reference}); pool {from} now {}",
                if v["new"] == true {
                    "withdrew"
                } else {
                    "already recorded: withdrew"
                },
                unit.amount(amount),
                unit.amount_of(&v["balance"])
            );
        }
    }
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
                        show::Unit::of(&api).await?.amount_of(&v["batch"]["total"])
                    );
                    println!("next: zkpool payouts export {id} --format csv, pay it, then zkpool payouts confirm {id} --tx REF");
                }
                None => println!("{}", v["message"].as_str().unwrap_or("nothing planned")),
            }
            Ok(ExitCode::SUCCESS)
        }
        PayoutsCommand::List { json } => {
            let v = api.get("/v1/payouts").await?;
            if json {
                return print_json(&v);
            }
            print!("{}", payouts_tables(&v, &show::Unit::of(&api).await?));
            Ok(ExitCode::SUCCESS)
        }
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
                show::Unit::of(&api).await?.amount_of(&v["batch"]["total"])
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

pub async fn ledger(
    op: OperatorArgs,
    journal_from: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    let v = api.get("/v1/ledger").await?;
    let journal = match journal_from {
        Some(from) => Some(api.get(&format!("/v1/ledger/journal?from={from}")).await?),
        None => None,
    };
    if json {
        print_json(&v)?;
        if let Some(j) = &journal {
            print_json(j)?;
        }
    } else {
        print!("{}", ledger_tables(&v, &show::Unit::of(&api).await?));
        if let Some(j) = &journal {
            // One entry a line: entries differ in shape, and a line each keeps
            // them greppable.
            println!("journal:");
            for e in j["entries"].as_array().into_iter().flatten() {
                println!("{e}");
            }
        }
    }
    if v["audit"]["balanced"] != true {
        eprintln!("the books do not balance: see the audit above");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `zkpool ledger`: the audit's totals, whether they balance, and each account.
fn ledger_tables(v: &Value, unit: &show::Unit) -> String {
    let a = &v["audit"];
    let mut totals = show::Table::new(&["books", ">amount"]);
    for (label, key) in [
        ("deposited (from outside)", "deposited"),
        ("client balances", "clients"),
        ("in escrow", "escrow"),
        ("miner balances", "miners"),
        ("pending in batches", "pending"),
        ("paid out", "paid"),
        ("withdrawn and refunded", "withdrawn"),
        ("pool fees", "fees"),
        ("pool funds", "funds"),
    ] {
        totals.row(vec![label.to_owned(), unit.amount_of(&a[key])]);
    }
    let mut out = format!(
        "the books (payout scheme {}; {} journal entries)
",
        show::text(&v["scheme"]),
        show::amount_of(&a["entries"])
    );
    out += &totals.render();
    out += if a["balanced"] == true {
        "balanced: yes (deposited = every account's sum)\n"
    } else {
        "balanced: NO (deposited differs from every account's sum)\n"
    };
    let mut accounts = show::Table::new(&["account", ">balance"]);
    for (name, amount) in v["balances"].as_object().into_iter().flatten() {
        accounts.row(vec![name.clone(), unit.amount_of(amount)]);
    }
    if !accounts.is_empty() {
        out += "\n";
        out += &accounts.render();
    }
    out
}

/// `zkpool payouts list`: balances against the threshold, then every batch.
fn payouts_tables(v: &Value, unit: &show::Unit) -> String {
    let mut out = format!("balances (threshold {})\n", unit.amount_of(&v["threshold"]));
    let mut balances = show::Table::new(&["account", ">balance", "due"]);
    for b in v["balances"].as_array().into_iter().flatten() {
        balances.row(vec![
            show::text(&b["addr"]),
            unit.amount_of(&b["balance"]),
            if b["due"] == true { "yes" } else { "no" }.to_owned(),
        ]);
    }
    out += &if balances.is_empty() {
        "no miner balances\n".to_owned()
    } else {
        balances.render()
    };
    let mut batches = show::Table::new(&[
        ">batch",
        "planned",
        "state",
        ">payments",
        ">total",
        "transaction / when",
    ]);
    for b in v["batches"].as_array().into_iter().flatten() {
        let detail = match b["state"].as_str() {
            Some("confirmed") => format!(
                "{} at {}",
                show::text(&b["tx"]),
                show::date_of(&b["confirmed_ms"])
            ),
            Some("voided") => format!("at {}", show::date_of(&b["voided_ms"])),
            _ => "-".to_owned(),
        };
        batches.row(vec![
            show::text(&b["id"]),
            show::date_of(&b["planned_ms"]),
            show::text(&b["state"]),
            b["items"].as_array().map_or(0, Vec::len).to_string(),
            unit.amount_of(&b["total"]),
            detail,
        ]);
    }
    out += "\n";
    out += &if batches.is_empty() {
        "no payout batches yet: zkpool payouts plan\n".to_owned()
    } else {
        batches.render()
    };
    out
}

pub async fn workers(op: OperatorArgs, cmd: WorkersCommand) -> anyhow::Result<ExitCode> {
    let api = operator(op)?;
    match cmd {
        WorkersCommand::Token { addr, replace } => {
            let v = api
                .post(
                    &format!("/v1/workers/{addr}/token"),
                    &json!({ "replace": replace }),
                )
                .await?;
            println!(
                "worker token for {addr} (shown once; its rigs run zkminer --password <token>):"
            );
            println!("{}", v["token"].as_str().unwrap_or("?"));
        }
        WorkersCommand::Tokens => {
            let v = api.get("/v1/worker-tokens").await?;
            let accounts = v["accounts"].as_array().cloned().unwrap_or_default();
            if accounts.is_empty() {
                println!("no account has a worker token");
            }
            for a in accounts {
                println!("{}", show::text(&a));
            }
        }
        WorkersCommand::Revoke { addr } => {
            api.delete(&format!("/v1/workers/{addr}/token")).await?;
            println!("worker token for {addr} revoked: its rigs no longer need one");
        }
    }
    Ok(ExitCode::SUCCESS)
}
