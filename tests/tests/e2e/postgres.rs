//! A pool on PostgreSQL (`[storage] url`), end to end: `zkpool migrate` applies
//! the schema once and then says there is nothing to apply; a database that
//! cannot be reached stops `zkpool serve` with the key named; and a pool whose
//! records and ledger are in the database runs a job to completion with a real
//! miner, settles it, keeps the books balanced and finds them again after a
//! restart, with no sled database in its data directory.

use std::{process::Command, time::Duration};

use anyhow::Context;
use serde_json::{json, Value};
use zkpool_tests::*;

use super::{
    chain_job, cli, completed, new_client, on_postgres, paying_pool_config, settled, ADMIN,
};

/// `zkpool ARGS` with `envs`; its success and its stdout and stderr together.
fn zkpool(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(bin("zkpool"))
        .args(args)
        // Only what the test gives: not a URL from the caller's environment.
        .env_remove("ZKPOOL_STORAGE_URL")
        .envs(envs.iter().copied())
        .output()
        .expect("run zkpool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_schema_once_and_says_so() -> anyhow::Result<()> {
    let server = pg::server().map_err(anyhow::Error::msg)?;
    let url = server
        .fresh_database("e2e_migrate")
        .map_err(anyhow::Error::msg)?;
    let (ok, out) = zkpool(&["migrate", "--storage-url", &url], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("applied 0001_store")
            && out.contains("applied 0002_ledger")
            && out.contains("applied 0003_cluster")
            && out.contains("now at schema version 3"),
        "{out}"
    );
    // Again, through the environment: nothing left to do.
    let (ok, out) = zkpool(&["migrate"], &[("ZKPOOL_STORAGE_URL", &url)]);
    assert!(ok, "{out}");
    assert!(
        out.contains("nothing to apply") && out.contains("schema version 3"),
        "{out}"
    );
    assert!(!out.contains("applied"), "{out}");
    let (ok, out) = zkpool(&["migrate"], &[]);
    assert!(!ok && out.contains("no database to migrate"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_stops_serve_with_the_key_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(
        &cfg,
        test_config(&dir.path().join("data"), "").replacen(
            "[storage]\n",
            "[storage]\nurl = \"postgres://zkpool:s3cret@127.0.0.1:1/zkpool\"\n",
            1,
        ),
    )?;
    let cfg = cfg.to_str().context("a UTF-8 path")?;
    let (ok, out) = zkpool(&["serve", "--config", cfg], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("cannot use the PostgreSQL database at postgres://zkpool:***@127.0.0.1:1/zkpool (storage.url)")
            && out.contains("server is running and reachable"),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "the password is shown: {out}");
    let (ok, out) = zkpool(
        &["serve", "--config", cfg, "--storage-url", "mysql://x@y/z"],
        &[],
    );
    assert!(
        !ok && out.contains("storage.url") && out.contains("is not a PostgreSQL URL"),
        "{out}"
    );
    Ok(())
}

/// A paying pool on PostgreSQL: a client's deposit, a chain job with a
/// reward, one real miner; the job completes, its result verifies, it is
/// settled once, the miner is paid, `zkpool ledger` says the books balance,
/// and a restarted pool on the same database shows the same books.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_on_postgres_runs_a_job_settles_it_and_keeps_its_books() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    on_postgres(&cfg, "e2e_pool")?;
    let log = dir.path().join("pool.log");
    let mut pool = PoolProcess::start(&cfg, None, &log)?;
    let url = pool.base.clone();
    let operator = Api::new(&url).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "acme", 1_000_000, "wire-1").await?;
    let client = Api::new(&url).with_token(Some(key.clone()));
    let mut job = chain_job(8);
    job.as_object_mut().unwrap().remove("client");
    job["reward"] = json!(800_000);
    let id = client.post("/v1/jobs", &job).await?["id"]
        .as_str()
        .context("a job id")?
        .to_owned();
    let _miner = MinerProcess::start(
        pool.stratum,
        "alice.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("alice.log"),
    )?;
    completed(&client, &id, Duration::from_secs(300)).await?;
    let (ok, out) = cli(
        "zkpool",
        &url,
        &["client", "--api-key", &key, "verify", &id],
    );
    assert!(ok && out.contains("OK: 8 proofs verified"), "{out}");
    let credits = settled(&operator, &id).await?;
    let s = &credits["settlement"];
    // 800,000 earned in full, 1 % fee, the rest to the only miner.
    assert_eq!(
        (
            s["earned"].as_u64(),
            s["fee"].as_u64(),
            s["refund"].as_u64()
        ),
        (Some(800_000), Some(8_000), Some(0)),
        "{s}"
    );
    let credited = credits["credits"].as_array().context("credits")?.len();
    assert!(credited >= 1, "{credits}");
    let alice = operator.get("/v1/workers/alice").await?;
    assert_eq!(alice["balance"].as_u64(), Some(792_000), "{alice}");
    let (ok, books) = cli("zkpool", &url, &["ledger"]);
    assert!(ok && books.contains("balanced: yes"), "{books}");
    assert!(
        !dir.path().join("data").join("db").exists(),
        "a pool on PostgreSQL made a sled database"
    );

    // The same books from a new process on the same database.
    pool.kill();
    let pool = PoolProcess::start(&cfg, None, &log)?;
    let url = pool.base.clone();
    let operator = Api::new(&url).with_token(Some(ADMIN.into()));
    let alice = operator.get("/v1/workers/alice").await?;
    assert_eq!(alice["balance"].as_u64(), Some(792_000), "{alice}");
    let again = operator.get(&format!("/v1/jobs/{id}/credits")).await?;
    assert_eq!(again["settlement"], credits["settlement"]);
    let (ok, after) = cli("zkpool", &url, &["ledger"]);
    assert!(ok && after.contains("balanced: yes"), "{after}");
    Ok(())
}

/// An operator moves a pool from its embedded sled database to PostgreSQL
/// with `zkpool migrate --from-sled`: refused while the pool still runs, then
/// everything is copied, and the pool started on the database with the same
/// data directory has the same books, client keys, worker tokens, receipt
/// signing key and finished job (its result verifies), and finishes the job
/// that was running. A second copy into the now full database is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_pool_moves_to_postgres_with_everything_it_holds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let data = dir.path().join("data");
    let data_arg = data.to_str().context("a UTF-8 path")?;
    let log = dir.path().join("pool.log");
    let mut pool = PoolProcess::start(&cfg, None, &log)?;
    let operator = Api::new(&pool.base).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "acme", 1_000_000, "wire-1").await?;
    let client = Api::new(&pool.base).with_token(Some(key.clone()));
    let token = operator.post("/v1/workers/tina/token", &json!({})).await?["token"]
        .as_str()
        .context("a worker token")?
        .to_owned();
    let submit = async |client: &Api, seed: &str| -> anyhow::Result<String> {
        let mut job = chain_job(4);
        job.as_object_mut().unwrap().remove("client");
        job["chain"]["seed"] = json!(seed);
        job["reward"] = json!(400_000);
        Ok(client.post("/v1/jobs", &job).await?["id"]
            .as_str()
            .context("a job id")?
            .to_owned())
    };
    let done = submit(&client, "7").await?;
    let miner = MinerProcess::start(
        pool.stratum,
        "alice.rig1",
        1,
        &dir.path().join("cache-a"),
        &dir.path().join("alice.log"),
    )?;
    completed(&client, &done, Duration::from_secs(300)).await?;
    let credits = settled(&operator, &done).await?;
    drop(miner);
    // Another chain: the first's statements would be answered from its proofs.
    let running = submit(&client, "8").await?;
    let receipt_key = operator.get("/v1/status").await?["receipt_public_key"].clone();
    assert!(receipt_key.is_string(), "{receipt_key}");
    let alice = operator.get("/v1/workers/alice").await?;
    let acme = operator.get("/v1/clients/acme").await?;
    let (ok, books) = cli("zkpool", &pool.base, &["ledger"]);
    assert!(ok && books.contains("balanced: yes"), "{books}");

    let server = pg::server().map_err(anyhow::Error::msg)?;
    let url = server
        .fresh_database("e2e_from_sled")
        .map_err(anyhow::Error::msg)?;
    let migrate = || {
        zkpool(
            &["migrate", "--storage-url", &url, "--from-sled", data_arg],
            &[],
        )
    };
    let (ok, out) = migrate();
    assert!(
        !ok && out.contains("if a zkpool serve uses it, stop it first"),
        "{out}"
    );
    pool.kill();
    let (ok, out) = migrate();
    assert!(ok, "{out}");
    assert!(
        out.contains("2 jobs (1 running)")
            && out.contains("1 clients")
            && out.contains("1 worker tokens")
            && out.contains("the receipt signing key")
            && out.contains("the same books as the sled ledger's"),
        "{out}"
    );
    let (ok, again) = migrate();
    assert!(
        !ok && again.contains("the database is not empty") && again.contains("jobs: 2"),
        "{again}"
    );
    let (ok, missing) = zkpool(
        &[
            "migrate",
            "--storage-url",
            &url,
            "--from-sled",
            "/nonexistent",
        ],
        &[],
    );
    assert!(!ok && missing.contains("no sled database at"), "{missing}");

    // The pool on the database, with the same data directory (the keys).
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(
        &cfg,
        text.replacen("[storage]\n", &format!("[storage]\nurl = \"{url}\"\n"), 1),
    )?;
    let pool = PoolProcess::start(&cfg, None, &log)?;
    let operator = Api::new(&pool.base).with_token(Some(ADMIN.into()));
    let client = Api::new(&pool.base).with_token(Some(key.clone()));
    assert_eq!(
        operator.get("/v1/status").await?["receipt_public_key"],
        receipt_key,
        "receipts signed before verify after"
    );
    // What is kept (the measured rates are the running process's own).
    let kept = |mut v: Value| {
        for live in ["rates", "online"] {
            v.as_object_mut().map(|o| o.remove(live));
        }
        v
    };
    assert_eq!(kept(operator.get("/v1/workers/alice").await?), kept(alice));
    assert_eq!(kept(operator.get("/v1/clients/acme").await?), kept(acme));
    assert_eq!(
        client.get(&format!("/v1/jobs/{done}/credits")).await?,
        credits,
        "the credit list, its root and the settlement"
    );
    let (ok, out) = cli(
        "zkpool",
        &pool.base,
        &["client", "--api-key", &key, "verify", &done],
    );
    assert!(ok && out.contains("OK: 4 proofs verified"), "{out}");
    let mut raw = RawConn::connect(pool.stratum).await?;
    let e = raw.handshake("tina.rig1").await.unwrap_err().to_string();
    assert!(e.contains("\"code\":24"), "tina's token still holds: {e}");
    RawConn::connect(pool.stratum)
        .await?
        .handshake_with("tina.rig1", Some(&token))
        .await?;
    let _bob = MinerProcess::start(
        pool.stratum,
        "bob.rig1",
        1,
        &dir.path().join("cache-b"),
        &dir.path().join("bob.log"),
    )?;
    completed(&client, &running, Duration::from_secs(300)).await?;
    let (ok, books) = cli("zkpool", &pool.base, &["ledger"]);
    assert!(ok && books.contains("balanced: yes"), "{books}");
    Ok(())
}
