//! End-to-end tests: real pool and miner processes (or an in-process pool with a
//! raw socket for protocol edges), real Groth16 proofs on small circuits. One test
//! binary, a module per theme; this file holds what the themes share: job bodies,
//! waiting on jobs, the operator's token and config, running the CLI.

mod adversary;
mod aggregation;
mod circom;
mod client_cli;
mod cluster;
mod dashboard;
mod faults;
mod http_api;
mod metrics;
mod miner_status;
mod payouts;
mod postgres;
mod protocol;
mod spine;

use std::{process::Command, time::Duration};

use anyhow::Context;
use serde_json::{json, Value};
use zkpool_tests::*;

fn chain_job(segments: u64) -> Value {
    json!({"circuit": "chain", "chain": {"seed": "7", "segments": segments}})
}

fn batch_job(n: u64) -> Value {
    let statements: Vec<zk::Statement> = (1..=n)
        .map(|x| zk::CircuitSpec::preimage_statement(zk::Fr::from(x * 1000 + 3)))
        .collect();
    json!({"circuit": "preimage", "statements": statements})
}

async fn completed(api: &Api, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    Ok(api.wait(id, timeout, |_| {}).await?)
}

/// A job's result file, parsed (the caller verifies it).
async fn job_result(api: &Api, id: &str) -> anyhow::Result<zk::JobResult> {
    Ok(serde_json::from_value(
        api.get(&format!("/v1/jobs/{id}/result")).await?,
    )?)
}

/// The error a job's result is refused with (the job did not complete).
async fn refused_result(api: &Api, id: &str) -> anyhow::Result<String> {
    match api.get(&format!("/v1/jobs/{id}/result")).await {
        Ok(v) => anyhow::bail!("job {id} has a result, expected a refusal: {v}"),
        Err(e) => Ok(e.to_string()),
    }
}

/// The work credited to `worker`: 0 for a worker the pool has never seen (404), such
/// as a rig that could not connect at all.
async fn worker_work(api: &Api, worker: &str) -> anyhow::Result<u64> {
    match api.get(&format!("/v1/workers/{worker}")).await {
        Ok(v) => Ok(v["work"].as_u64().unwrap_or(0)),
        Err(e) if e.status() == Some(reqwest::StatusCode::NOT_FOUND) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

fn err_code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error, got {v}"))
}

/// The value of one sample (`name` including any labels) in Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

const ADMIN: &str = "test-admin-token-0123456789";

/// A pool config with the admin token and a payout threshold of 1 (so every balance
/// is paid out by `zkpool payouts plan`), written in `dir`.
fn paying_pool_config(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    paying_pool_config_with(dir, "")
}

/// [`paying_pool_config`] with `scheduler` lines in its `[scheduler]` section.
fn paying_pool_config_with(
    dir: &std::path::Path,
    scheduler: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let cfg = dir.join("pool.toml");
    std::fs::write(
        &cfg,
        test_config_with(
            &dir.join("data"),
            "",
            &format!("admin_token = \"{ADMIN}\""),
            scheduler,
            "[payouts]\nthreshold = 1\n",
        ),
    )?;
    Ok(cfg)
}

/// The settlement of job `id` as the pool at `api` serves it (its credit list
/// with it), once there is one.
async fn settled(api: &Api, id: &str) -> anyhow::Result<Value> {
    wait_for("the settlement", Duration::from_secs(60), async || {
        let v = api.get(&format!("/v1/jobs/{id}/credits")).await?;
        Ok((!v["settlement"].is_null()).then_some(v))
    })
    .await
}

/// Points the pool config at `cfg` to a new, empty PostgreSQL database on the
/// test server (`[storage] url`; `tests/src/pg.rs`), named after `label`.
fn on_postgres(cfg: &std::path::Path, label: &str) -> anyhow::Result<()> {
    let server = pg::server().map_err(anyhow::Error::msg)?;
    let db = server.fresh_database(label).map_err(anyhow::Error::msg)?;
    let text = std::fs::read_to_string(cfg)?;
    anyhow::ensure!(
        text.contains("[storage]\n"),
        "no [storage] section in {text}"
    );
    std::fs::write(
        cfg,
        text.replacen("[storage]\n", &format!("[storage]\nurl = \"{db}\"\n"), 1),
    )?;
    Ok(())
}

/// Creates client `id` through the operator API, deposits `amount` (when above 0)
/// under `reference`, and returns the client's API key.
async fn new_client(
    operator: &Api,
    id: &str,
    amount: u64,
    reference: &str,
) -> anyhow::Result<String> {
    let key = operator.post("/v1/clients", &json!({ "id": id })).await?["api_key"]
        .as_str()
        .context("no API key")?
        .to_owned();
    if amount > 0 {
        operator
            .post(
                &format!("/v1/clients/{id}/deposits"),
                &json!({"amount": amount, "reference": reference}),
            )
            .await?;
    }
    Ok(key)
}

/// `zkpool` or `zkminer` run as a user would, against `url` with the admin token.
fn cli(bin_name: &str, url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin(bin_name))
        .args(args)
        .env("ZKPOOL_URL", url)
        .env("ZKPOOL_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
