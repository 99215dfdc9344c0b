//! `zkpool client`: a client of a running pool's HTTP API: submit a job (and wait
//! for it), its status and result, verify a result here, the client's account, and
//! example jobs for the built-in circuits.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use pool::api::Client;
use serde_json::{json, Value};

use crate::offline::{verify, verify_result};

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
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
pub enum ExampleKind {
    Chain,
    Batch,
}

pub fn progress_line(v: &Value) -> String {
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

pub async fn run(url: &str, key: Option<String>, cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let api = Client::new(url).with_token(key);
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

pub fn example_job(kind: ExampleKind, count: u64) -> Value {
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
