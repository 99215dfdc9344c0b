//! `zkpool client` as a client meets it: waiting for a job through a pool's bad
//! moments, listing jobs, cancelling one.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::Context;
use zkpool_tests::*;

use super::{batch_job, paying_pool_config, ADMIN};

/// `zkpool client submit --wait` with no miner online says so instead of waiting
/// in silence; when the pool dies under it, it says so on stderr and retries with
/// backoff instead of exiting, and once the pool is back and a miner proves the
/// job it ends with the result. `client jobs` lists the job, `client cancel`
/// cancels another, and `client wait` on the cancelled one ends with the reason.
#[test]
fn submit_wait_says_no_miner_and_keeps_waiting_through_a_pool_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let log = dir.path().join("pool.log");
    let mut pool = PoolProcess::start(&cfg, None, &log)?;
    let addrs = (pool.stratum, pool.http);
    let url = format!("http://{}", pool.http);
    let job = dir.path().join("job.json");
    std::fs::write(&job, batch_job(2).to_string())?;
    let result = dir.path().join("result.json");

    let mut waiting = Command::new(bin("zkpool"))
        .args(["client", "submit"])
        .arg(&job)
        .arg("--wait")
        .arg("--out")
        .arg(&result)
        .env("ZKPOOL_URL", &url)
        .env_remove("ZKPOOL_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run zkpool client submit --wait")?;
    let mut stdout = waiting.stdout.take().expect("piped stdout");
    let printed = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let (tx, said) = mpsc::channel::<String>();
    let stderr = waiting.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut heard = Vec::new();
    let mut until = |needle: &str| -> anyhow::Result<()> {
        loop {
            match said.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    heard.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(_) => anyhow::bail!(
                    "zkpool client submit --wait never said {needle:?}; it said:\n{}",
                    heard.join("\n")
                ),
            }
        }
    };

    until("no miner is online at the pool")?;
    pool.kill();
    until("cannot reach the pool")?;
    let pool = PoolProcess::start(&cfg, Some(addrs), &log)?;
    until("the pool answers again")?;
    let _miner = MinerProcess::start(
        pool.stratum,
        "walt.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("miner.log"),
    )?;
    // stderr closes when the command ends: drain it, with a bound on each line.
    while let Ok(line) = said.recv_timeout(Duration::from_secs(180)) {
        heard.push(line);
    }
    let status = waiting.wait()?;
    let out = printed.join().expect("stdout reader");
    assert!(
        status.success() && out.contains("2/2 verified") && out.contains("result written to"),
        "{status}\nstdout:\n{out}\nstderr:\n{}",
        heard.join("\n")
    );
    assert!(result.exists());
    let id = out
        .split_whitespace()
        .nth(1)
        .context("job id after `job`")?
        .to_owned();

    // The operator's token sees every job and may cancel any; the jobs here are
    // anonymous (the test pool does not require client keys).
    let client = |args: &[&str]| -> (bool, String) {
        let mut cmd = Command::new(bin("zkpool"));
        cmd.arg("client").args(args).env("ZKPOOL_URL", &url);
        if args[0] == "submit" {
            cmd.env_remove("ZKPOOL_API_KEY");
        } else {
            cmd.env("ZKPOOL_API_KEY", ADMIN);
        }
        let out = cmd.output().expect("run zkpool client");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = client(&["jobs"]);
    let row = out.lines().find(|l| l.starts_with(&id)).unwrap_or("");
    assert!(
        ok && row.contains("completed") && row.contains("2/2") && row.ends_with(" UTC"),
        "{out}"
    );

    // A job nobody proves (the miner is gone), cancelled by its client.
    // (Other statements: the pool answers statements it has proven from its
    // store.)
    drop(_miner);
    let other = dir.path().join("other.json");
    let statements: Vec<zk::Statement> = (0..3)
        .map(|x| zk::CircuitSpec::preimage_statement(zk::Fr::from(77_001 + x)))
        .collect();
    std::fs::write(
        &other,
        serde_json::json!({"circuit": "preimage", "statements": statements}).to_string(),
    )?;
    let (ok, out) = client(&["submit", other.to_str().expect("UTF-8 path")]);
    assert!(ok, "{out}");
    let second = out
        .split_whitespace()
        .nth(1)
        .context("job id after `job`")?
        .to_owned();
    let (ok, out) = client(&["cancel", &second]);
    assert!(
        ok && out.contains(&format!("job {second} cancelled: 0 of 3 statements")),
        "{out}"
    );
    let (ok, out) = client(&["wait", &second]);
    assert!(
        !ok && out.contains("410") && out.contains("cancel"),
        "{out}"
    );
    Ok(())
}
