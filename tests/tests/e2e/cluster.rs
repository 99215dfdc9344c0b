//! Two `zkpool serve` processes on one PostgreSQL database (issue 14): each
//! with its own listeners and `zkminer`, jobs submitted to each. Every job
//! completes and its result verifies from either process, every statement is
//! credited exactly once, each job is settled once, both rigs earn, and the
//! books balance. Then one process is killed mid-job: its claims come back
//! after its lease, its miner fails over to the other process, and the job
//! still completes with nothing credited twice.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context;
use serde_json::{json, Value};
use zkpool_tests::*;

use super::{
    cli, completed, new_client, on_postgres, paying_pool_config, paying_pool_config_with, settled,
    ADMIN,
};

/// A batch job of `n` preimage statements numbered from `from` (distinct
/// across jobs, so none is answered from another job's proofs).
fn batch(from: u64, n: u64, reward: u64) -> Value {
    let statements: Vec<zk::Statement> = (from..from + n)
        .map(|x| zk::CircuitSpec::preimage_statement(zk::Fr::from(x * 7919 + 11)))
        .collect();
    json!({"circuit": "preimage", "statements": statements, "reward": reward})
}

/// The published credits of job `id`: each credited statement once, or an error
/// naming the statement credited twice.
fn statements_credited(credits: &Value) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut by_statement = BTreeMap::new();
    for c in credits["credits"].as_array().context("credits")? {
        let first = c["first_statement"].as_u64().context("first_statement")?;
        let n = c["proofs"].as_u64().context("proofs")?;
        let worker = c["worker"].as_str().context("worker")?.to_owned();
        for i in first..first + n {
            if let Some(before) = by_statement.insert(i, worker.clone()) {
                anyhow::bail!("statement {i} credited twice ({before} and {worker}): {credits}");
            }
        }
    }
    Ok(by_statement)
}

/// Submits `job` to `api` and returns its id.
async fn submit(api: &Api, job: &Value) -> anyhow::Result<String> {
    Ok(api.post("/v1/jobs", job).await?["id"]
        .as_str()
        .context("a job id")?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pool_processes_share_one_database_and_credit_every_statement_once(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    on_postgres(&cfg, "e2e_cluster")?;
    // A dead process's claims come back 3 s after its last renewal.
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(
        &cfg,
        text.replacen("[storage]\n", "[storage]\nnode_lease_secs = 3.0\n", 1),
    )?;
    // The second process starts after the first made the built-in circuits'
    // keys (both read them from the same data directory, as a shared volume).
    let mut a = PoolProcess::start(&cfg, None, &dir.path().join("a.log"))?;
    let b = PoolProcess::start(&cfg, None, &dir.path().join("b.log"))?;
    let (op_a, op_b) = (
        Api::new(&a.base).with_token(Some(ADMIN.into())),
        Api::new(&b.base).with_token(Some(ADMIN.into())),
    );
    let key = new_client(&op_a, "acme", 10_000_000, "wire-1").await?;
    let (client_a, client_b) = (
        Api::new(&a.base).with_token(Some(key.clone())),
        Api::new(&b.base).with_token(Some(key.clone())),
    );
    // The deposit made through A is B's too.
    let acme = op_b.get("/v1/clients/acme").await?;
    assert_eq!(acme["balance"].as_u64(), Some(10_000_000), "{acme}");

    let _alice = MinerProcess::start(
        a.stratum,
        "alice.rig1",
        1,
        &dir.path().join("cache-a"),
        &dir.path().join("alice.log"),
    )?;
    let _bob = MinerProcess::start(
        b.stratum,
        "bob.rig1",
        1,
        &dir.path().join("cache-b"),
        &dir.path().join("bob.log"),
    )?;

    // Either process lists both, with their rigs (each renews its count every
    // second), and exactly one of them leads.
    let mut leaders = 0;
    for op in [&op_a, &op_b] {
        let cluster = wait_for(
            "both processes and their rigs",
            Duration::from_secs(30),
            async || {
                let c = op.get("/v1/status").await?["cluster"].clone();
                let both = c["nodes"].as_array().map(Vec::len) == Some(2)
                    && c["sessions"].as_u64() == Some(2)
                    && c["workers_online"].as_u64() == Some(2);
                Ok(both.then_some(c))
            },
        )
        .await?;
        leaders += usize::from(cluster["leader"] == true);
    }
    assert_eq!(leaders, 1, "one leader between the two");

    // Two jobs through each process, 48 statements (three claims) each.
    let mut ids = vec![];
    for (n, api) in [&client_a, &client_b, &client_a, &client_b]
        .into_iter()
        .enumerate()
    {
        ids.push(submit(api, &batch(1_000 * n as u64, 48, 100_000)).await?);
    }
    for (n, id) in ids.iter().enumerate() {
        // Asked of the process the job was not submitted to.
        let other = if n % 2 == 0 { &client_b } else { &client_a };
        completed(other, id, Duration::from_secs(300)).await?;
    }
    let mut earned = BTreeMap::<String, usize>::new();
    for (n, id) in ids.iter().enumerate() {
        let url = if n % 2 == 0 { &b.base } else { &a.base };
        let (ok, out) = cli("zkpool", url, &["client", "--api-key", &key, "verify", id]);
        assert!(ok && out.contains("OK: 48 proofs verified"), "{out}");
        let credits = settled(if n % 2 == 0 { &op_a } else { &op_b }, id).await?;
        let by_statement = statements_credited(&credits)?;
        assert_eq!(
            by_statement.len(),
            48,
            "every statement credited: {credits}"
        );
        for w in by_statement.values() {
            *earned.entry(w.clone()).or_default() += 1;
        }
        let s = &credits["settlement"];
        assert_eq!(
            (s["earned"].as_u64(), s["refund"].as_u64()),
            (Some(100_000), Some(0)),
            "{s}"
        );
    }
    assert!(
        earned.get("alice.rig1").copied().unwrap_or(0) > 0
            && earned.get("bob.rig1").copied().unwrap_or(0) > 0,
        "both processes' rigs proved: {earned:?}"
    );
    for url in [&a.base, &b.base] {
        let (ok, books) = cli("zkpool", url, &["ledger"]);
        assert!(ok && books.contains("balanced: yes"), "{books}");
    }
    // One settlement per job in the journal of record.
    let journal = op_a.get("/v1/ledger/journal?limit=10000").await?;
    let settles = journal["entries"]
        .as_array()
        .context("journal entries")?
        .iter()
        .filter(|e| e["key"].as_str().is_some_and(|k| k.starts_with("settle/")))
        .count();
    assert_eq!(settles, ids.len(), "{journal}");

    // A process dies mid-job: its miner fails over to the other one, its
    // claims come back after its lease, and the job completes.
    let mut carol = MinerProcess::spawn(
        &[
            "--pool",
            &format!("stratum+tcp://{}", a.stratum),
            "--pool",
            &format!("stratum+tcp://{}", b.stratum),
            "--worker",
            "carol.rig1",
            "--threads",
            "1",
            "--cache-dir",
            dir.path().join("cache-c").to_str().context("utf-8")?,
        ],
        "carol.rig1",
        &dir.path().join("carol.log"),
    )?;
    let id = submit(&client_a, &batch(90_000, 160, 400_000)).await?;
    wait_for(
        "progress on the job",
        Duration::from_secs(120),
        async || {
            let v = client_b.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["verified"].as_u64().unwrap_or(0) >= 16).then_some(()))
        },
    )
    .await?;
    a.kill();
    let job = completed(&client_b, &id, Duration::from_secs(300)).await?;
    assert_eq!(job["state"], "completed", "{job}");
    let credits = settled(&op_b, &id).await?;
    let by_statement = statements_credited(&credits)?;
    let cached = credits["settlement"]["credited_work"].as_u64();
    assert!(
        by_statement.len() <= 160 && cached.is_some(),
        "no statement credited twice, at most all: {credits}"
    );
    let (ok, out) = cli(
        "zkpool",
        &b.base,
        &["client", "--api-key", &key, "verify", &id],
    );
    assert!(ok && out.contains("OK: 160 proofs verified"), "{out}");
    let (ok, books) = cli("zkpool", &b.base, &["ledger"]);
    assert!(ok && books.contains("balanced: yes"), "{books}");
    carol.kill();
    Ok(())
}

/// The crash loop over two pool processes on one database: `ZKPOOL_CRASH_ITERATIONS`
/// times (20 by default) a random one of them is SIGKILLed while jobs run, are
/// settled and paid out, and restarted on its addresses; once, the process that
/// leads the cluster is killed the moment its job completes (its settlement
/// and the payouts beside it in flight). Two miners each prefer one process and
/// fail over to the other. After every restart both processes show the same
/// balanced books with every acknowledged deposit, confirmation and void; at
/// the end every accepted job has completed with a verifying result and one
/// settlement, the credited work is exactly the jobs' work (nothing lost,
/// nothing credited twice), and the miners hold exactly the rewards less the
/// fee. The seed is printed (`ZKPOOL_CRASH_SEED` replays it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_over_two_processes_loses_nothing_and_credits_or_pays_nothing_twice(
) -> anyhow::Result<()> {
    use super::{
        faults::{check_books, fund_and_submit, payout_ops, Acked},
        job_result, worker_work,
    };
    use rand::{Rng, SeedableRng};
    let iterations: usize = std::env::var("ZKPOOL_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("ZKPOOL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("cluster crash loop: {iterations} iterations, ZKPOOL_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    on_postgres(&cfg, "e2e_cluster_crash")?;
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(
        &cfg,
        text.replacen("[storage]\n", "[storage]\nnode_lease_secs = 3.0\n", 1),
    )?;
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let a = PoolProcess::start(&cfg, None, &logs[0])?;
    let b = PoolProcess::start(&cfg, None, &logs[1])?;
    let addrs = [(a.stratum, a.http), (b.stratum, b.http)];
    let urls = [a.base.clone(), b.base.clone()];
    let mut procs = [a, b];
    let ops: Vec<Api> = urls
        .iter()
        .map(|u| Api::new(u).with_token(Some(ADMIN.into())))
        .collect();
    let key = new_client(&ops[0], "crashco", 0, "").await?;
    let clients: Vec<Api> = urls
        .iter()
        .map(|u| Api::new(u).with_token(Some(key.clone())))
        .collect();
    let miner = |name: &str, first: usize| {
        let pools = [
            format!("stratum+tcp://{}", addrs[first].0),
            format!("stratum+tcp://{}", addrs[1 - first].0),
        ];
        let cache = dir.path().join(format!("cache-{name}"));
        MinerProcess::spawn(
            &[
                "--pool",
                &pools[0],
                "--pool",
                &pools[1],
                "--worker",
                &format!("{name}.rig1"),
                "--threads",
                "1",
                "--cache-dir",
                cache.to_str().expect("utf-8"),
            ],
            name,
            &dir.path().join(format!("{name}.log")),
        )
    };
    let _kate = miner("kate", 0)?;
    let _lena = miner("lena", 1)?;

    let acked = std::sync::Arc::new(std::sync::Mutex::new(Acked::default()));
    let mut accepted: Vec<(String, u64)> = vec![];
    let mut leader_killed = false;
    for i in 0..iterations {
        // Once, early: the leader takes this life's job and dies as it ends.
        let kill_leader = i == 1;
        let leader = if kill_leader {
            // The last restart may have taken the leader down: the survivor
            // asks for the lock every second, so leadership can be vacant
            // for a moment. Wait for exactly one process to lead.
            let found = wait_for("one process to lead", Duration::from_secs(20), async || {
                let mut leading = vec![];
                for (n, op) in ops.iter().enumerate() {
                    if op.get("/v1/status").await?["cluster"]["leader"] == true {
                        leading.push(n);
                    }
                }
                Ok((leading.len() == 1).then(|| leading[0]))
            })
            .await
            .with_context(|| format!("seed {seed}"))?;
            Some(found)
        } else {
            None
        };
        let p = leader.unwrap_or_else(|| rng.gen_range(0..2));
        let (id, reward) = fund_and_submit(&ops[p], &clients[p], &mut rng, i, &acked).await?;
        accepted.push((id.clone(), reward));
        let payouts = tokio::spawn(payout_ops(
            Api::new(&urls[leader.unwrap_or_else(|| rng.gen_range(0..2))])
                .with_token(Some(ADMIN.into())),
            acked.clone(),
            rng.gen(),
        ));
        let _ = wait_for("", Duration::from_secs(4), async || {
            let v = ops[p].get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["state"] == "completed").then_some(()))
        })
        .await;
        let victim = match leader {
            Some(n) => {
                leader_killed = true;
                n
            }
            None => {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=300))).await;
                rng.gen_range(0..2)
            }
        };
        procs[victim].kill();
        payouts.abort();
        let _ = payouts.await;
        procs[victim] = PoolProcess::start(&cfg, Some(addrs[victim]), &logs[victim])
            .with_context(|| format!("restart {i} of process {victim} (seed {seed})"))?;
        let seen = acked.lock().unwrap().clone();
        for op in &ops {
            check_books(op, &seen)
                .await
                .with_context(|| format!("after restart {i} (seed {seed})"))?;
        }
    }
    assert!(leader_killed || iterations < 2);
    let (mut total, mut rewards) = (0, 0);
    for (n, (id, reward)) in accepted.iter().enumerate() {
        let op = &ops[n % 2];
        let done = completed(op, id, Duration::from_secs(300))
            .await
            .with_context(|| format!("job {id} (seed {seed})"))?;
        total += done["total_work"].as_u64().context("total_work")?;
        rewards += reward - reward / 100;
        job_result(op, id)
            .await?
            .verify()
            .with_context(|| format!("result of {id}"))?;
        let credits = settled(op, id).await?;
        statements_credited(&credits).with_context(|| format!("job {id} (seed {seed})"))?;
    }
    let work = worker_work(&ops[0], "kate.rig1").await? + worker_work(&ops[0], "lena.rig1").await?;
    assert_eq!(
        work, total,
        "credited work equals the accepted jobs' work (seed {seed})"
    );
    let mut held = 0;
    for name in ["kate", "lena"] {
        let w = ops[1].get(&format!("/v1/workers/{name}")).await?;
        held += ["balance", "pending", "paid"]
            .iter()
            .map(|k| w[k].as_u64().unwrap_or(0))
            .sum::<u64>();
    }
    assert_eq!(
        held, rewards,
        "the miners hold exactly the rewards less the fee (seed {seed})"
    );
    let acked = acked.lock().unwrap().clone();
    for op in &ops {
        check_books(op, &acked).await?;
    }
    let journal = ops[0].get("/v1/ledger/journal?limit=10000").await?;
    let settles = journal["entries"]
        .as_array()
        .context("journal")?
        .iter()
        .filter(|e| e["key"].as_str().is_some_and(|k| k.starts_with("settle/")))
        .count();
    assert_eq!(
        settles,
        accepted.len(),
        "one settlement per job (seed {seed})"
    );
    println!(
        "cluster crash loop: {} jobs, {} batches confirmed and {} voided with an answer",
        accepted.len(),
        acked.confirmed.len(),
        acked.voided.len()
    );
    Ok(())
}

/// A free loopback port (for a miner's status API).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// PostgreSQL itself goes away mid-job (stopped as a crash, every connection
/// cut) under two pool processes with a miner each, and comes back: the miners
/// keep their sessions throughout (each connected once); shares that arrive
/// while it is down are refused and proven again, never acknowledged; the job
/// completes once it is back, every statement credited exactly once, and what
/// the miners were acknowledged is exactly what the books credit them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_job_loses_nothing_and_the_job_finishes() -> anyhow::Result<()> {
    let server = pg::own_server().map_err(anyhow::Error::msg)?;
    let db = server
        .fresh_database("e2e_pg_restart")
        .map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let text = std::fs::read_to_string(&cfg)?;
    std::fs::write(
        &cfg,
        text.replacen("[storage]\n", &format!("[storage]\nurl = \"{db}\"\n"), 1),
    )?;
    let a = PoolProcess::start(&cfg, None, &dir.path().join("a.log"))?;
    let b = PoolProcess::start(&cfg, None, &dir.path().join("b.log"))?;
    let op = Api::new(&a.base).with_token(Some(ADMIN.into()));
    let key = new_client(&op, "acme", 1_000_000, "wire-1").await?;
    let client = Api::new(&b.base).with_token(Some(key.clone()));
    let mut status = vec![];
    let mut miners = vec![];
    for (name, pool) in [("alice", a.stratum), ("bob", b.stratum)] {
        let port = free_port()?;
        status.push(Api::new(&format!("http://127.0.0.1:{port}")));
        miners.push(MinerProcess::spawn(
            &[
                "--pool",
                &format!("stratum+tcp://{pool}"),
                "--worker",
                &format!("{name}.rig1"),
                "--threads",
                "1",
                "--http",
                &format!("127.0.0.1:{port}"),
                "--cache-dir",
                dir.path()
                    .join(format!("cache-{name}"))
                    .to_str()
                    .context("utf-8")?,
            ],
            name,
            &dir.path().join(format!("{name}.log")),
        )?);
    }
    let statements = 400;
    let id = submit(&client, &batch(500_000, statements, 800_000)).await?;
    wait_for("progress", Duration::from_secs(120), async || {
        let v = client.get(&format!("/v1/jobs/{id}")).await?;
        Ok((v["verified"].as_u64().unwrap_or(0) >= 32).then_some(()))
    })
    .await?;
    server.crash().map_err(anyhow::Error::msg)?;
    // Down until shares have been refused for it on both processes.
    for pool in [&a, &b] {
        wait_for(
            "a share refused while the database is down",
            Duration::from_secs(60),
            async || {
                let m = pool.api.get_text("/metrics").await?;
                let refused = m
                    .lines()
                    .find(|l| l.starts_with("zkpool_shares_total{verdict=\"internal\"}"))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0);
                Ok((refused > 0.0).then_some(()))
            },
        )
        .await?;
    }
    server.restart().map_err(anyhow::Error::msg)?;
    // The pools answer 503 "try again" until their connections are back.
    wait_for(
        "the pool to answer again",
        Duration::from_secs(60),
        async || Ok(client.get(&format!("/v1/jobs/{id}")).await.ok().map(|_| ())),
    )
    .await?;
    completed(&client, &id, Duration::from_secs(300)).await?;
    let credits = settled(&op, &id).await?;
    let by_statement = statements_credited(&credits)?;
    assert_eq!(by_statement.len() as u64, statements, "{credits}");
    let (ok, out) = cli(
        "zkpool",
        &a.base,
        &["client", "--api-key", &key, "verify", &id],
    );
    assert!(
        ok && out.contains(&format!("OK: {statements} proofs verified")),
        "{out}"
    );
    let (ok, books) = cli("zkpool", &b.base, &["ledger"]);
    assert!(ok && books.contains("balanced: yes"), "{books}");
    // What each miner was told was accepted is what the books credit it.
    for (n, name) in ["alice", "bob"].iter().enumerate() {
        let summary = status[n].get("/v1/summary").await?;
        let acknowledged = summary["accepted_proofs"]
            .as_u64()
            .context("accepted_proofs")?;
        let credited = by_statement
            .values()
            .filter(|w| w.as_str() == format!("{name}.rig1"))
            .count() as u64;
        assert_eq!(acknowledged, credited, "{name}: {summary}");
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log")))?;
        assert_eq!(
            log.matches("connected and authorized").count(),
            1,
            "{name} kept its session while the database was away:\n{log}"
        );
    }
    drop(miners);
    Ok(())
}

/// A stranger floods one pool process with sessions that take tasks and never
/// return them: half let their leases run out, half renew them for ever with
/// `mining.progress`. Before, that process claimed every chunk of the job for
/// them and held the claims for as long as it lived, while an honest rig on
/// the other process waited for ever. Now chunks its sessions do not prove are
/// given back (`zkpool_cluster_given_back_total`) and the honest rig proves
/// the whole job, credited to it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalling_sessions_on_one_process_cannot_starve_rigs_on_another() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config_with(dir.path(), "lease_min_secs = 2.0\nbackup_after_secs = 0\n")?;
    on_postgres(&cfg, "e2e_cluster_stall")?;
    let a = PoolProcess::start(&cfg, None, &dir.path().join("a.log"))?;
    let b = PoolProcess::start(&cfg, None, &dir.path().join("b.log"))?;
    let op_a = Api::new(&a.base).with_token(Some(ADMIN.into()));
    let key = new_client(&op_a, "acme", 1_000_000, "wire-1").await?;
    let client = Api::new(&b.base).with_token(Some(key));

    // Sixteen sessions on A, two task slots each: A wants (and claims) both
    // chunks of a 32-statement job as soon as it exists.
    let mut sybils = vec![];
    for i in 0..16 {
        let mut raw = RawConn::connect(a.stratum).await?;
        raw.handshake(&format!("sybil{i}.x")).await?;
        sybils.push(raw);
    }
    let statements = 32;
    let id = submit(&client, &batch(900_000, statements, 64_000)).await?;
    let mut taken = 0;
    let mut renewing = vec![];
    for (n, mut raw) in std::mem::take(&mut sybils).into_iter().enumerate() {
        let mut tasks = vec![];
        for _ in 0..2 {
            tasks.push(raw.next_notify().await?["task"].clone());
            taken += 1;
        }
        if n % 2 == 0 {
            sybils.push(raw);
            continue;
        }
        // Renews its leases every half second and never submits.
        renewing.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                for task in &tasks {
                    let renew = json!({"jsonrpc":"2.0","id":9,"method":"mining.progress",
                        "params":{"task":task,"done":0}});
                    if raw.send(&renew).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    assert_eq!(taken, statements, "the sybils hold every statement");

    // The honest rig arrives on B once every statement is leased on A.
    let _honest = MinerProcess::start(
        b.stratum,
        "honest.rig1",
        1,
        &dir.path().join("cache-honest"),
        &dir.path().join("honest.log"),
    )?;
    completed(&client, &id, Duration::from_secs(90))
        .await
        .context("the honest rig on B never got the job's statements")?;
    let credits = settled(&op_a, &id).await?;
    let by_statement = statements_credited(&credits)?;
    assert_eq!(by_statement.len() as u64, statements, "{credits}");
    assert!(
        by_statement.values().all(|w| w == "honest.rig1"),
        "only the rig that proved is credited: {credits}"
    );
    let metrics = a.api.get_text("/metrics").await?;
    let given_back = metrics
        .lines()
        .find(|l| l.starts_with("zkpool_cluster_given_back_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .context("zkpool_cluster_given_back_total on A")?;
    assert!(given_back >= 2.0, "A gave back both chunks: {given_back}");
    for r in renewing {
        assert!(
            !r.is_finished(),
            "the renewing sybils were renewing to the end"
        );
        r.abort();
    }
    drop(sybils);
    Ok(())
}
