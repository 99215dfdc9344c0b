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

use crate::{
    offline::{verify, verify_result},
    show,
};

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Submit a job from a JSON file (see deploy/examples/) and optionally wait for it.
    Submit {
        /// The job: a JSON file such as deploy/examples/chain-job.json.
        job: PathBuf,
        /// Wait for the job to complete, showing progress (as `client wait`).
        #[arg(long)]
        wait: bool,
        /// With --wait: write the result here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Wait for a submitted job to complete, showing progress; it keeps waiting
    /// while the pool restarts.
    Wait {
        /// The job's id (`client submit` and `client jobs` print it).
        id: String,
        /// Write the result here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Cancel a running job: verified work is paid its share, the rest refunded.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// The jobs you may see (yours with your API key), newest first.
    Jobs {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a job's state and progress.
    Status {
        /// The job's id.
        id: String,
    },
    /// Fetch a completed job's result.
    Result {
        /// The job's id.
        id: String,
        /// Write it here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a job's result here: a job id, whose result is fetched and checked
    /// locally against the circuit the job names; or a result file, with
    /// --circuit-id (exit 0 if every proof and link holds).
    Verify {
        /// A job id, or a result file.
        job_or_file: String,
        /// The circuit the result must be for (needed for a file).
        #[arg(long)]
        circuit_id: Option<String>,
    },
    /// Show your client account: balance, escrow, jobs (needs --api-key).
    Account {
        /// Your client id.
        id: String,
    },
    /// Print an example job for a built-in circuit.
    Example {
        /// chain (one long hash chain, cut into segments) or batch (independent
        /// preimage statements).
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
                wait_for_job(&api, &id, out.as_deref(), true).await?;
            } else {
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
        }
        ClientCommand::Wait { id, out } => wait_for_job(&api, &id, out.as_deref(), false).await?,
        ClientCommand::Cancel { id } => {
            let v = api.delete(&format!("/v1/jobs/{id}")).await?;
            let job = &v["job"];
            println!(
                "job {id} cancelled: {} of {} statements were verified and are paid their share; the rest of the reward is refunded",
                job["verified"], job["statements"]
            );
        }
        ClientCommand::Jobs { limit, json } => {
            let v = api.get(&format!("/v1/jobs?limit={limit}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let unit = show::Unit::of(&api).await?;
            let mut t =
                show::Table::new(&["job", "circuit", "state", ">verified", ">reward", "created"]);
            for j in v["jobs"].as_array().into_iter().flatten() {
                t.row(vec![
                    show::text(&j["id"]),
                    show::text(&j["circuit"]),
                    show::text(&j["state"]),
                    format!("{}/{}", j["verified"], j["statements"]),
                    unit.amount_of(&j["reward"]),
                    show::date_of(&j["created_ms"]),
                ]);
            }
            if t.is_empty() {
                println!(
                    "no jobs ({}): submit one with zkpool client submit JOB.json",
                    show::text(&v["scope"])
                );
            } else {
                print!("{}", t.render());
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

/// How often `--wait` says that no miner is online while that lasts.
const NO_MINER_NOTICE: Duration = Duration::from_secs(30);
/// The longest pause between tries while the pool cannot be reached.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Polls job `id` until it completes, printing its progress, then fetches its
/// result (to `out`, when given). Once the pool has answered (`answered`: the
/// submit did), a pool that cannot be reached is retried with backoff, said on
/// stderr: the pool persists jobs, so a restart loses nothing. (A pool that never
/// answered is a wrong URL or certificate: that is said at once.) A job that ends
/// otherwise (failed, expired, cancelled) is an error with its reason.
async fn wait_for_job(
    api: &Client,
    id: &str,
    out: Option<&Path>,
    mut answered: bool,
) -> anyhow::Result<()> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last = String::new();
    let mut retry = Duration::from_millis(500);
    let mut unreachable_since: Option<std::time::Instant> = None;
    let mut no_miner_said: Option<std::time::Instant> = None;
    let job = loop {
        let v = match api.get(&format!("/v1/jobs/{id}")).await {
            Ok(v) => v,
            Err(e @ pool::api::Error::Unreachable { .. }) if answered => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if tty && !last.is_empty() {
                    println!();
                    last.clear();
                }
                eprintln!(
                    "{:#}; retrying in {:.1} s (down for {} s; the pool keeps the job, Ctrl-C to stop waiting: zkpool client wait {id} resumes)",
                    anyhow::Error::from(e),
                    retry.as_secs_f64(),
                    since.elapsed().as_secs()
                );
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        answered = true;
        if unreachable_since.take().is_some() {
            eprintln!("the pool answers again; still waiting for job {id}");
            retry = Duration::from_millis(500);
        }
        let line = progress_line(&v);
        if line != last {
            if tty {
                print!("\r{line}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            } else {
                println!("{line}");
            }
            last = line;
        }
        match v["state"].as_str() {
            Some("completed") => break v,
            Some("running") => {}
            // Failed, expired or cancelled: the result's refusal says why.
            _ => {
                if tty {
                    println!();
                }
                api.get(&format!("/v1/jobs/{id}/result")).await?;
                anyhow::bail!("job {id} ended {} without a result", v["state"]);
            }
        }
        if no_miner_said.is_none_or(|t| t.elapsed() >= NO_MINER_NOTICE) {
            // Nothing proves without a rig: say so rather than wait in silence.
            if let Ok(status) = api.get("/v1/status").await {
                if status["workers_online"] == 0 {
                    if tty {
                        println!();
                        last.clear();
                    }
                    eprintln!(
                        "no miner is online at the pool: job {id} waits until one connects (zkminer --pool stratum+tcp://POOL:3333 --worker ADDR.RIG)"
                    );
                }
                no_miner_said = Some(std::time::Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if tty {
        println!();
    }
    let result = api.get(&format!("/v1/jobs/{id}/result")).await?;
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&result)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
        println!(
            "result written to {}; check it with: zkpool verify {} --circuit-id {}",
            out.display(),
            out.display(),
            job["circuit_id"].as_str().unwrap_or("ID")
        );
    }
    Ok(())
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
