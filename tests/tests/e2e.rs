//! End-to-end tests: real pool and miner processes (or an in-process pool with a
//! raw socket for protocol edges), real Groth16 proofs on small circuits.

use std::{process::Command, time::Duration};

#[path = "e2e/adversary.rs"]
mod adversary;

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
    api.wait(id, timeout, |_| {}).await
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

async fn worker_work(api: &Api, worker: &str) -> anyhow::Result<u64> {
    Ok(api.get(&format!("/v1/workers/{worker}")).await?["work"]
        .as_u64()
        .unwrap_or(0))
}

/// `zkpool verify FILE --circuit-id ID`, as a client checks a result.
fn zkpool_verify(path: &std::path::Path, circuit: &str) -> (bool, String) {
    cli(
        "zkpool",
        "",
        &[
            "verify",
            path.to_str().expect("UTF-8 temp path"),
            "--circuit-id",
            circuit,
        ],
    )
}

/// The spine: two miner processes prove a 32-segment chain job and a 64-statement
/// batch job for a pool process; results verify in-process and with `zkpool verify`,
/// a tampered result is refused, and credited work adds up to the jobs' work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miner_processes_complete_a_chain_job_and_a_batch_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let _a = MinerProcess::start(
        pool.stratum,
        "alice.rig1",
        1,
        &dir.path().join("cache-a"),
        &dir.path().join("alice.log"),
    )?;
    let _b = MinerProcess::start(
        pool.stratum,
        "bob.rig1",
        1,
        &dir.path().join("cache-b"),
        &dir.path().join("bob.log"),
    )?;

    let chain = pool.api.post("/v1/jobs", &chain_job(32)).await?;
    let batch = pool.api.post("/v1/jobs", &batch_job(64)).await?;
    assert_eq!(chain["statements"], 32);
    assert_eq!(batch["statements"], 64);
    let mut total_work = 0;
    for job in [&chain, &batch] {
        let id = job["id"].as_str().unwrap();
        let v = completed(&pool.api, id, Duration::from_secs(300)).await?;
        assert_eq!(v["verified"], v["statements"]);
        total_work += v["total_work"].as_u64().unwrap();

        let result = pool.api.get(&format!("/v1/jobs/{id}/result")).await?;
        let parsed: zk::JobResult = serde_json::from_value(result.clone())?;
        assert_eq!(
            parsed.verify()?,
            job["statements"].as_u64().unwrap() as usize,
            "every proof verifies"
        );

        let file = dir.path().join(format!("{id}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(&result)?)?;
        let circuit = v["circuit_id"].as_str().unwrap();
        let (ok, out) = zkpool_verify(&file, circuit);
        assert!(
            ok && out.starts_with("OK:"),
            "zkpool verify refused a good result: {out}"
        );

        // Tamper: change one public input of the last entry; keep the JSON valid.
        let mut bad = result.clone();
        let entries = bad["entries"].as_array_mut().unwrap();
        let last = entries.last_mut().unwrap();
        last["public"][0] = json!("12345");
        let tampered = dir.path().join(format!("{id}-tampered.json"));
        std::fs::write(&tampered, serde_json::to_string(&bad)?)?;
        let (ok, out) = zkpool_verify(&tampered, circuit);
        assert!(
            !ok && out.contains("INVALID"),
            "zkpool verify accepted a tampered result: {out}"
        );
    }
    let (a, b) = (
        worker_work(&pool.api, "alice.rig1").await?,
        worker_work(&pool.api, "bob.rig1").await?,
    );
    assert!(a > 0 && b > 0, "both workers credited: alice {a}, bob {b}");
    assert_eq!(
        a + b,
        total_work,
        "credited work equals the jobs' total work"
    );
    let account = pool.api.get("/v1/workers/alice").await?;
    assert_eq!(
        account["work"].as_u64(),
        Some(a),
        "account view sums its rigs"
    );
    Ok(())
}

/// A miner killed mid-task: its leased statements go back to the queue when its
/// connection drops, another miner finishes the job, no statement is credited twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_killed_mid_task_has_its_task_re_leased() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let mut doomed = MinerProcess::start(
        pool.stratum,
        "carol.rig1",
        1,
        &dir.path().join("cache-c"),
        &dir.path().join("carol.log"),
    )?;
    let job = pool.api.post("/v1/jobs", &chain_job(24)).await?;
    let id = job["id"].as_str().unwrap().to_owned();
    // Wait until carol holds a lease and has finished at least one task.
    wait_for(
        "carol to hold a lease after some verified work",
        Duration::from_secs(120),
        async || {
            let v = pool.api.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["leased"].as_u64() > Some(0) && v["verified"].as_u64() > Some(0)).then_some(()))
        },
    )
    .await?;
    doomed.kill();
    let v = pool.api.get(&format!("/v1/jobs/{id}")).await?;
    assert!(
        v["verified"].as_u64() < v["statements"].as_u64(),
        "job must still be running when carol dies: {v}"
    );
    // The pool notices the closed connection and returns carol's leases at once.
    wait_for(
        "carol's leases to return to the queue",
        Duration::from_secs(30),
        async || {
            let v = pool.api.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["leased"] == 0).then_some(()))
        },
    )
    .await?;
    let _dave = MinerProcess::start(
        pool.stratum,
        "dave.rig1",
        2,
        &dir.path().join("cache-d"),
        &dir.path().join("dave.log"),
    )?;
    let done = completed(&pool.api, &id, Duration::from_secs(180)).await?;
    let (c, d) = (
        worker_work(&pool.api, "carol.rig1").await?,
        worker_work(&pool.api, "dave.rig1").await?,
    );
    assert!(c > 0 && d > 0, "carol {c} dave {d}");
    assert_eq!(
        c + d,
        done["total_work"].as_u64().unwrap(),
        "each statement credited exactly once"
    );
    let result = job_result(&pool.api, &id).await?;
    result.verify()?;
    Ok(())
}

/// The pool SIGKILLed right after it acknowledged a share keeps that share: after a
/// restart on the same data directory the acknowledged work is still credited, the
/// statements that were only leased are redone by a miner, and nothing is credited
/// twice. (What the pool promises is that acknowledged work survives; statements it
/// had claimed but not yet flushed and acknowledged may rightly be redone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_killed_right_after_an_ack_keeps_the_acknowledged_work() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let log = dir.path().join("pool.log");
    let mut pool = PoolProcess::start(&cfg, None, &log)?;
    let addrs = (pool.stratum, pool.http);
    let job = pool.api.post("/v1/jobs", &chain_job(6)).await?;
    let id = job["id"].as_str().unwrap().to_owned();

    let mut c = RawConn::connect(pool.stratum).await?;
    let notes = c.handshake("erin.rig1").await?;
    let task = match notes.into_iter().find(|n| n["method"] == "mining.notify") {
        Some(n) => n["params"].clone(),
        None => c.next_notify().await?,
    };
    let proofs = prove_task(&task).await?;
    let n = proofs.len() as u64;
    c.send(&json!({"jsonrpc":"2.0","id":20,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (ack, _) = c.response().await?;
    assert_eq!(ack["result"]["accepted"].as_u64(), Some(n), "{ack}");
    let acked_work = ack["result"]["work"].as_u64().unwrap();
    pool.kill();

    let pool = PoolProcess::start(&cfg, Some(addrs), &log)?;
    assert_eq!(
        worker_work(&pool.api, "erin.rig1").await?,
        acked_work,
        "acknowledged work survives SIGKILL"
    );
    let v = pool.api.get(&format!("/v1/jobs/{id}")).await?;
    assert!(
        v["verified"].as_u64().unwrap() >= n,
        "acknowledged statements stay verified: {v}"
    );
    assert_eq!(v["leased"], 0, "leases do not survive a restart: {v}");

    let _m = MinerProcess::start(
        pool.stratum,
        "fred.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("fred.log"),
    )?;
    let done = completed(&pool.api, &id, Duration::from_secs(180)).await?;
    let fred = worker_work(&pool.api, "fred.rig1").await?;
    assert_eq!(
        acked_work + fred,
        done["total_work"].as_u64().unwrap(),
        "no statement credited twice"
    );
    let result = job_result(&pool.api, &id).await?;
    assert_eq!(result.verify()?, 6);
    Ok(())
}

fn err_code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error, got {v}"))
}

/// A malformed line gets a JSON-RPC parse error and the session goes on; an
/// over-long line closes the connection after an error line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_are_answered_and_over_long_lines_close() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool("").await?;
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    c.send_raw(b"{this is not json\n").await?;
    let r = c.recv().await?.context("reply to a malformed line")?;
    assert_eq!(err_code(&r), -32700, "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("parse error"));
    c.send(&json!({"jsonrpc":"2.0","id":5,"method":"mining.fly"}))
        .await?;
    let r = c.recv().await?.unwrap();
    assert_eq!((err_code(&r), r["id"].clone()), (-32601, json!(5)));
    c.send(&json!({"jsonrpc":"2.0","id":6,"method":"mining.authorize","params":{"worker":"x.y"}}))
        .await?;
    assert_eq!(
        err_code(&c.recv().await?.unwrap()),
        25,
        "authorize before subscribe: not subscribed"
    );
    // Still alive: a ping works.
    c.send(&json!({"jsonrpc":"2.0","id":7,"method":"mining.ping"}))
        .await?;
    let r = c.recv().await?.unwrap();
    assert!(r["result"]["time_ms"].as_u64().is_some(), "{r}");

    let mut long = vec![b'x'; 70 * 1024];
    long.push(b'\n');
    c.send_raw(&long).await?;
    let r = c.recv().await?.context("an error line before closing")?;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line longer than"),
        "{r}"
    );
    assert!(
        c.recv().await?.is_none(),
        "connection closed after an over-long line"
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Proofs for another statement, garbage proofs, and proofs for statements not in
/// the task are each rejected with their reason; the right proofs are then accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_garbage_and_misplaced_proofs_are_rejected_with_reasons() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let job = api.post("/v1/jobs", &batch_job(1)).await?;
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    let mut notes = c.handshake("mallory.rig1").await?;
    let task = match notes.pop() {
        Some(n) if n["method"] == "mining.notify" => n["params"].clone(),
        _ => c.next_notify().await?,
    };
    assert_eq!(task["job"], job["id"]);
    // Fetch the proving key like a miner, checked against its hash.
    let keys = task_keys(&task).await?;
    let index = task["statements"][0]["index"].as_u64().unwrap();
    let tid = task["task"].clone();

    let submit = |id: u64, idx: u64, proof: String| json!({"jsonrpc":"2.0","id":id,"method":"mining.submit","params":{"task":tid,"proofs":[{"index":idx,"proof":proof}]}});

    // A valid proof of a different statement.
    let other = zk::CircuitSpec::preimage_statement(zk::Fr::from(999_999u64));
    c.send(&submit(10, index, keys.prove(&other)?.to_hex()))
        .await?;
    let (r, _) = c.response().await?;
    assert_eq!(err_code(&r), 30, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{r}"
    );

    // The task went back to the queue and (as the only session) comes back to us.
    let task = c.next_notify().await?;
    let tid2 = task["task"].clone();
    let submit2 = |id: u64, idx: u64, proof: String| json!({"jsonrpc":"2.0","id":id,"method":"mining.submit","params":{"task":tid2,"proofs":[{"index":idx,"proof":proof}]}});

    // A statement index that is not in the task.
    c.send(&submit2(11, index + 1, "00".repeat(128))).await?;
    let (r, _) = c.response().await?;
    assert_eq!(err_code(&r), 31, "{r}");

    // Garbage bytes.
    c.send(&submit2(12, index, "ab".repeat(128))).await?;
    let (r, _) = c.response().await?;
    assert_eq!(err_code(&r), 30, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed proof"),
        "{r}"
    );

    // Finally the right proof.
    let task = c.next_notify().await?;
    let tid3 = task["task"].clone();
    let stmt = zk::CircuitSpec::preimage_statement(zk::Fr::from(1003u64));
    let proof = keys.prove(&stmt)?.to_hex();
    c.send(&json!({"jsonrpc":"2.0","id":13,"method":"mining.submit","params":{"task":tid3,"proofs":[{"index":index,"proof":proof}]}})).await?;
    let (r, _) = c.response().await?;
    assert_eq!(r["result"]["accepted"], 1, "{r}");
    // Submitting the same task again is stale.
    c.send(&json!({"jsonrpc":"2.0","id":14,"method":"mining.submit","params":{"task":tid3,"proofs":[{"index":index,"proof":proof}]}})).await?;
    let (r, _) = c.response().await?;
    assert_eq!(err_code(&r), 21, "{r}");
    let id = job["id"].as_str().unwrap();
    completed(&api, id, Duration::from_secs(30)).await?;
    assert_eq!(
        worker_work(&api, "mallory.rig1").await?,
        job["total_work"].as_u64().unwrap()
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// A statement that `scheduler.max_attempts` different identities fail (here:
/// three rigs of three token-protected accounts, each sending an invalid proof)
/// fails its job with the reason, instead of being handed out forever; the job's
/// result then answers 410 with that reason. (Names without a token count as
/// their address: see the adversary's sybil test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_fails_every_attempt_fails_its_job_with_the_reason() -> anyhow::Result<()>
{
    let (pool, _dir) = inproc_pool_with(
        "resume_grace_secs = 0",
        &format!("admin_token = \"{ADMIN}\""),
        "max_attempts = 3",
        "",
    )
    .await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let operator = Api::new(&format!("http://{}", pool.http_addr)).with_token(Some(ADMIN.into()));
    let job = api.post("/v1/jobs", &batch_job(1)).await?;
    let id = job["id"].as_str().unwrap();
    let mut wrong = None;
    for (n, worker) in ["frank.rig1", "gina.rig1", "hank.rig1"]
        .into_iter()
        .enumerate()
    {
        let account = worker.split('.').next().unwrap();
        let token = operator
            .post(&format!("/v1/workers/{account}/token"), &json!({}))
            .await?["token"]
            .as_str()
            .unwrap()
            .to_owned();
        // One rig at a time, so the statement goes to each in turn.
        let mut c = RawConn::connect(pool.stratum_addr).await?;
        let mut notes = c.handshake_with(worker, Some(&token)).await?;
        let task = match notes.pop() {
            Some(n) if n["method"] == "mining.notify" => n["params"].clone(),
            _ => c.next_notify().await?,
        };
        if wrong.is_none() {
            let keys = task_keys(&task).await?;
            wrong = Some(
                keys.prove(&zk::CircuitSpec::preimage_statement(zk::Fr::from(
                    424_242u64,
                )))?
                .to_hex(),
            );
        }
        let index = task["statements"][0]["index"].as_u64().unwrap();
        c.send(
            &json!({"jsonrpc":"2.0","id":n + 10,"method":"mining.submit",
            "params":{"task":task["task"],"proofs":[{"index":index,"proof":wrong}]}}),
        )
        .await?;
        let (r, _) = c.response().await?;
        assert_eq!(err_code(&r), 30, "{worker}: {r}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        let v = api.get(&format!("/v1/jobs/{id}")).await?;
        if v["state"] != "running" || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view["state"], "failed", "{view}");
    let failure = view["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains("statement 0 failed on 3 different identities")
            && failure.contains("hank.rig1"),
        "{view}"
    );
    let e = refused_result(&api, id).await?;
    assert!(
        e.contains("HTTP 410") && e.contains("failed (statement 0 failed on 3"),
        "{e}"
    );
    assert_eq!(api.get("/v1/jobs").await?["counts"]["failed"], 1);
    let metrics = api.get_text("/metrics").await?;
    assert_eq!(sample(&metrics, "zkpool_jobs_failed_total"), 1.0);
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// A rig whose connection drops keeps its leases for `resume_grace_secs`: while
/// it is away its task stays leased (not handed to the other rig waiting), and when
/// it reconnects with its resume token as the same worker, the task is notified
/// again on the new connection and its proof is accepted there. The token is
/// useless to another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_rig_resumes_its_session_and_its_leases() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool_with("resume_grace_secs = 600", "", "", "").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let job = api.post("/v1/jobs", &batch_job(1)).await?;
    let id = job["id"].as_str().unwrap();
    let subscribe = |resume: Option<&str>| {
        json!({"jsonrpc":"2.0","id":1,"method":"mining.subscribe",
        "params":{"agent":"raw-test","protocol":"zkpool/1","resume":resume}})
    };
    let authorize =
        |w: &str| json!({"jsonrpc":"2.0","id":2,"method":"mining.authorize","params":{"worker":w}});

    let mut a = RawConn::connect(pool.stratum_addr).await?;
    a.send(&subscribe(None)).await?;
    let (r, _) = a.response().await?;
    let token = r["result"]["resume"]
        .as_str()
        .context("a resume token")?
        .to_owned();
    assert_eq!(r["result"]["resume_secs"], 600);
    a.send(&authorize("rita.rig1")).await?;
    a.response().await?;
    let task = a.next_notify().await?;
    drop(a);

    // Another rig is waiting, but the task stays leased to the parked session.
    let mut other = RawConn::connect(pool.stratum_addr).await?;
    other.handshake("otto.rig1").await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = api.get("/v1/status").await?;
        if st["sessions"] == 1 || std::time::Instant::now() > deadline {
            assert_eq!(st["sessions"], 1, "{st}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let view = api.get(&format!("/v1/jobs/{id}")).await?;
    assert_eq!(
        (view["leased"].as_u64(), view["verified"].as_u64()),
        (Some(1), Some(0)),
        "{view}"
    );

    // The token under another worker name resumes nothing.
    let mut thief = RawConn::connect(pool.stratum_addr).await?;
    thief.send(&subscribe(Some(&token))).await?;
    thief.response().await?;
    thief.send(&authorize("mallory.rig1")).await?;
    let (r, notes) = thief.response().await?;
    assert!(
        r.get("result").is_some() && notes.is_empty(),
        "{r} {notes:?}"
    );

    // The rig itself resumes: the same task, notified again, proven here.
    let mut b = RawConn::connect(pool.stratum_addr).await?;
    b.send(&subscribe(Some(&token))).await?;
    b.response().await?;
    b.send(&authorize("rita.rig1")).await?;
    let (r, mut notes) = b.response().await?;
    assert!(r.get("result").is_some(), "{r}");
    let again = match notes.pop() {
        Some(n) if n["method"] == "mining.notify" => n["params"].clone(),
        _ => b.next_notify().await?,
    };
    assert_eq!(again["task"], task["task"]);
    let proofs = prove_task(&again).await?;
    b.send(&json!({"jsonrpc":"2.0","id":3,"method":"mining.submit",
        "params":{"task":again["task"],"proofs":proofs}}))
        .await?;
    let (r, _) = b.response().await?;
    assert_eq!(r["result"]["accepted"], 1, "{r}");
    completed(&api, id, Duration::from_secs(30)).await?;
    assert_eq!(
        worker_work(&api, "rita.rig1").await?,
        job["total_work"].as_u64().unwrap()
    );
    assert_eq!(worker_work(&api, "otto.rig1").await?, 0);
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Bad job requests get 4xx answers that say what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_requests_are_refused_with_clear_messages() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let cases = [
        (
            json!({"chain": {"seed": "1", "segments": 2}}),
            "missing field `circuit`",
        ),
        (
            json!({"circuit": "nope", "chain": {"seed": "1", "segments": 2}}),
            "unknown circuit",
        ),
        (json!({"circuit": "chain"}), "missing field"),
        (
            json!({"circuit": "chain", "chain": {"seed": "-1", "segments": 2}}),
            "not a decimal",
        ),
        (
            json!({"circuit": "preimage", "statements": [{"public": ["1"], "private": ["2"]}]}),
            "statements[0]: statement is not satisfiable",
        ),
        (
            json!({"circuit": "preimage", "chain": {"seed": "1", "segments": 2}}),
            "chain mode needs a chain circuit",
        ),
        (
            json!({"circuit": "chain", "chain": {"seed": "21888242871839275222246405745257275088548364400416034343698204186575808495617", "segments": 1}}),
            "not below",
        ),
    ];
    for (body, expect) in cases {
        let e = api
            .post("/v1/jobs", &body)
            .await
            .expect_err("bad job accepted")
            .to_string();
        assert!(
            e.contains(expect),
            "{body} -> {e} (expected to mention {expect:?})"
        );
        assert!(e.contains("HTTP 4"), "{e}");
    }
    let e = api
        .get("/v1/jobs/nope/result")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");
    // A running job (no miners here) has no result yet: 409 and what to do.
    let job = api.post("/v1/jobs", &chain_job(1)).await?;
    let id = job["id"].as_str().unwrap();
    let e = refused_result(&api, id).await?;
    assert!(
        e.contains("409")
            && e.contains(&format!(
                "job {id} is running, not completed; poll GET /v1/jobs/{id}"
            )),
        "{e}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// The example jobs in deploy/examples are accepted as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_jobs_are_accepted_as_they_are() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    for name in ["chain-job.json", "batch-job.json"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/").to_owned() + name;
        let body: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let v = api
            .post("/v1/jobs", &body)
            .await
            .with_context(|| path.clone())?;
        assert_eq!(v["state"], "running", "{name}: {v}");
    }
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Our Poseidon chain agrees with circomlibjs (an independent implementation from
/// the npm registry), step by step.
#[test]
fn poseidon_chain_agrees_with_circomlibjs() -> anyhow::Result<()> {
    let interop = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../interop"));
    ensure_npm_packages(interop)?;
    let out = Command::new("node")
        .arg("poseidon.js")
        .args(["7", "40"])
        .current_dir(interop)
        .output()
        .context("node is needed for this test")?;
    anyhow::ensure!(
        out.status.success(),
        "node poseidon.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(theirs.len(), 41);
    let mut x = zk::Fr::from(7u64);
    for (k, expected) in theirs.iter().enumerate().skip(1) {
        x = zk::poseidon::hash(&[x]);
        assert_eq!(
            &zk::field::fr_to_string(&x),
            expected,
            "H^{k}(7) differs from circomlibjs"
        );
    }
    // The 2-input hash as well.
    assert_eq!(
        theirs[0],
        zk::field::fr_to_string(&zk::poseidon::hash(&[
            zk::Fr::from(1u64),
            zk::Fr::from(2u64)
        ]))
    );
    Ok(())
}

/// SIGTERM: the pool tells connected miners to reconnect, drains and exits 0; the
/// job it had accepted is still there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_miners_to_reconnect_and_exits_cleanly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let log = dir.path().join("pool.log");
    let mut pool = PoolProcess::start(&cfg, None, &log)?;
    let job = pool.api.post("/v1/jobs", &chain_job(2)).await?;
    let mut c = RawConn::connect(pool.stratum).await?;
    c.handshake("frank.rig1").await?;
    let pid = pool.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()?
        .success());
    let reconnect = loop {
        let v = c
            .recv()
            .await?
            .context("pool closed without client.reconnect")?;
        if v["method"] == "client.reconnect" {
            break v;
        }
    };
    assert!(
        reconnect["params"]["wait_secs"].as_u64().is_some(),
        "{reconnect}"
    );
    assert!(
        c.recv().await?.is_none(),
        "connection closed after client.reconnect"
    );
    let status = wait_for("the pool to exit", Duration::from_secs(20), async || {
        Ok(pool.child.try_wait()?)
    })
    .await?;
    assert!(
        status.success(),
        "zkpool exited with {status}; see {}",
        log.display()
    );

    let pool = PoolProcess::start(&cfg, None, &log)?;
    let v = pool
        .api
        .get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))
        .await?;
    assert_eq!(
        v["state"], "running",
        "accepted job survives a restart: {v}"
    );
    Ok(())
}

/// `zkpool export snarkjs` writes files that snarkjs (an independent Groth16
/// implementation from the npm registry) accepts, and snarkjs refuses a changed input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snarkjs_accepts_exported_proofs() -> anyhow::Result<()> {
    let interop = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../interop"));
    ensure_npm_packages(interop)?;
    let (pool, dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let _m = MinerProcess::start(
        pool.stratum_addr,
        "gina.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("gina.log"),
    )?;
    let job = api.post("/v1/jobs", &chain_job(2)).await?;
    let id = job["id"].as_str().unwrap();
    completed(&api, id, Duration::from_secs(120)).await?;
    let file = dir.path().join("result.json");
    std::fs::write(
        &file,
        serde_json::to_string(&api.get(&format!("/v1/jobs/{id}/result")).await?)?,
    )?;
    let out = dir.path().join("snarkjs");
    let st = Command::new(bin("zkpool"))
        .args(["export", "snarkjs"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .output()?;
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    let snarkjs = |public: &std::path::Path,
                   proof: &std::path::Path|
     -> anyhow::Result<(bool, String)> {
        let o = Command::new("node")
            .arg(interop.join("node_modules/snarkjs/build/cli.cjs"))
            .args(["groth16", "verify"])
            .arg(out.join("verification_key.json"))
            .arg(public)
            .arg(proof)
            .output()?;
        Ok((
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        ))
    };
    for i in 0..2 {
        let (ok, text) = snarkjs(
            &out.join(format!("public-{i}.json")),
            &out.join(format!("proof-{i}.json")),
        )?;
        assert!(
            ok && text.contains("OK!"),
            "snarkjs refused segment {i}: {text}"
        );
    }
    // Segment 1's proof against segment 0's inputs.
    let (ok, text) = snarkjs(&out.join("public-0.json"), &out.join("proof-1.json"))?;
    assert!(
        !ok || !text.contains("OK!"),
        "snarkjs accepted a proof of another statement: {text}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Installs interop/'s npm packages from the lockfile when they are missing
/// (`.ci/run` does it up front).
fn ensure_npm_packages(interop: &std::path::Path) -> anyhow::Result<()> {
    if !interop.join("node_modules/circomlibjs").exists()
        || !interop.join("node_modules/snarkjs").exists()
        || !interop.join("node_modules/circom2").exists()
    {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(interop)
            .status()
            .context("npm is needed for the interop tests (node >= 18)")?;
        anyhow::ensure!(ok.success(), "npm ci in interop/ failed");
    }
    Ok(())
}

/// A silent connection is closed after the handshake timeout, an authorized but
/// silent one after the idle timeout, and a connection over the session cap gets a
/// clear refusal instead of a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_the_session_cap_close_connections_with_reasons() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool_with("handshake_timeout_secs = 1\nidle_timeout_secs = 2\nping_interval_secs = 1\nmax_sessions = 2", "", "", "").await?;

    // Silent from the start: closed by the handshake timeout.
    let mut silent = RawConn::connect(pool.stratum_addr).await?;
    let t = std::time::Instant::now();
    assert!(
        silent.recv().await?.is_none(),
        "silent connection should be closed"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        t.elapsed()
    );

    // Authorized, then silent: closed by the idle timeout.
    let mut idle = RawConn::connect(pool.stratum_addr).await?;
    idle.handshake("henry.rig1").await?;
    let t = std::time::Instant::now();
    assert!(
        idle.recv().await?.is_none(),
        "idle session should be closed"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500) && t.elapsed() < Duration::from_secs(6),
        "closed after {:?}",
        t.elapsed()
    );

    // Two sessions fill the cap; a third is refused with code 34 and a reason.
    let mut a = RawConn::connect(pool.stratum_addr).await?;
    a.handshake("ivy.rig1").await?;
    let mut b = RawConn::connect(pool.stratum_addr).await?;
    b.handshake("ivy.rig2").await?;
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    let refusal = c.recv().await?.context("a refusal line")?;
    assert_eq!(refusal["error"]["code"], 34, "{refusal}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pool is full"),
        "{refusal}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// The value of one sample (`name` including any labels) in Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// `/metrics` during a job shows the counters moving as shares are verified, and
/// after it they add up to the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_shares_are_verified() -> anyhow::Result<()> {
    let (pool, dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let url = format!("http://{}/metrics", pool.http_addr);
    let scrape = || async { anyhow::Ok(reqwest::get(&url).await?.text().await?) };
    let accepted = "zkpool_shares_total{verdict=\"accepted\"}";

    let before = scrape().await?;
    assert_eq!(sample(&before, accepted), 0.0);
    assert_eq!(sample(&before, "zkpool_sessions"), 0.0);
    assert_eq!(sample(&before, "zkpool_workers_online"), 0.0);
    assert_eq!(sample(&before, "zkpool_statements_pending"), 0.0);

    // The job first, with no miner yet: all its statements wait.
    let job = api.post("/v1/jobs", &chain_job(16)).await?;
    let id = job["id"].as_str().unwrap().to_owned();
    let queued = scrape().await?;
    assert_eq!(
        sample(&queued, "zkpool_statements_pending"),
        16.0,
        "{queued}"
    );
    assert_eq!(sample(&queued, "zkpool_tasks_leased"), 0.0);
    let _m = MinerProcess::start(
        pool.stratum_addr,
        "jill.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("jill.log"),
    )?;
    // The accepted counter moves once a share is durably credited (just before the
    // miner's answer); the job's `verified` count moves a little earlier, when the
    // statements are claimed. Wait on the metric itself.
    let during = wait_for(
        "the first accepted share on /metrics",
        Duration::from_secs(60),
        async || {
            let text = scrape().await?;
            Ok((sample(&text, accepted) >= 1.0).then_some(text))
        },
    )
    .await?;
    assert!(sample(&during, accepted) >= 1.0, "{during}");
    assert_eq!(sample(&during, "zkpool_sessions"), 1.0);
    assert_eq!(sample(&during, "zkpool_workers_online"), 1.0);
    assert_eq!(sample(&during, "zkpool_jobs_running"), 1.0);
    assert!(sample(&during, "zkpool_verify_batches_total") >= 1.0);
    let credited_during = sample(&during, "zkpool_proofs_credited_total");

    let done = completed(&api, &id, Duration::from_secs(120)).await?;
    // The job reads as completed once its state is stored; the completion counter and
    // the running gauge follow a moment later, after the flush. Wait for them.
    let after = wait_for(
        "the completion on /metrics",
        Duration::from_secs(10),
        async || {
            let text = scrape().await?;
            Ok((sample(&text, "zkpool_jobs_completed_total") == 1.0).then_some(text))
        },
    )
    .await?;
    assert_eq!(sample(&after, "zkpool_proofs_credited_total"), 16.0);
    assert!(
        credited_during < 16.0,
        "scraped during the job: {credited_during} of 16 credited"
    );
    assert_eq!(
        sample(&after, "zkpool_work_credited_total"),
        done["total_work"].as_f64().unwrap()
    );
    assert_eq!(sample(&after, "zkpool_jobs_completed_total"), 1.0);
    assert_eq!(sample(&after, "zkpool_jobs_running"), 0.0);
    assert_eq!(sample(&after, "zkpool_statements_pending"), 0.0);
    assert!(sample(&after, "zkpool_verify_seconds_count") >= 1.0);
    assert_eq!(
        sample(&after, "zkpool_shares_total{verdict=\"invalid_proof\"}"),
        0.0
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Crash loop: the pool is SIGKILLed at random points while jobs run, are settled
/// and paid out, `ZKPOOL_CRASH_ITERATIONS` times (50 by default; `tests/crash-loop.sh`
/// runs more), restarted each time on the same data directory while one miner keeps
/// reconnecting. Each job carries a reward escrowed from a client's deposit, and
/// while the pool lives an operator plans, confirms and voids payout batches, so
/// kills land during settlement and payout confirmation too. After every restart
/// the books balance, every acknowledged deposit, confirmation and void is there,
/// and no batch is confirmed twice. At the end every job the pool accepted (answered
/// 201) completes with a verifying result and is settled; the credited work equals
/// the jobs' total work exactly (nothing lost, nothing credited twice); and the
/// miner's balance + pending + paid is exactly the jobs' rewards minus the fee.
/// The kill points come from a seeded generator; the seed is printed so a failure
/// can be replayed (`ZKPOOL_CRASH_SEED`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_loses_nothing_and_credits_or_pays_nothing_twice() -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    let iterations: usize = std::env::var("ZKPOOL_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("ZKPOOL_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash loop: {iterations} iterations, ZKPOOL_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let log = dir.path().join("pool.log");
    let first = PoolProcess::start(&cfg, None, &log)?;
    let addrs = (first.stratum, first.http);
    let url = format!("http://{}", first.http);
    let operator = Api::new(&url).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "crashco", 0, "").await?;
    let client = Api::new(&url).with_token(Some(key));
    let _miner = MinerProcess::start(
        first.stratum,
        "kate.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("kate.log"),
    )?;
    let mut pool = first;
    // What the pool acknowledged, and what it may have done without answering.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Acked::default()));
    let mut accepted: Vec<(String, u64)> = vec![];
    for i in 0..iterations {
        {
            // A new job every life; one accepted before a kill must survive it.
            let reference = format!("d{i}");
            let d = operator
                .post(
                    "/v1/clients/crashco/deposits",
                    &json!({"amount": 100_000, "reference": reference}),
                )
                .await?;
            assert_eq!(d["new"], true);
            acked.lock().unwrap().deposits += 100_000;
            let mut job = chain_job(rng.gen_range(1..=3));
            // A chain of its own: a statement proven before is not paid again.
            job["chain"]["seed"] = json!((1000 + i).to_string());
            let reward = rng.gen_range(1_000..=100_000u64);
            job["reward"] = json!(reward);
            let job = client.post("/v1/jobs", &job).await?;
            accepted.push((job["id"].as_str().unwrap().to_owned(), reward));
        }
        // The operator pays out while the pool lives; the kill lands wherever it lands.
        let ops = tokio::spawn(payout_ops(
            Api::new(&url).with_token(Some(ADMIN.into())),
            acked.clone(),
            rng.gen(),
        ));
        // Kill soon after this life's job completes (its settlement and the payouts
        // it allows are being written then), or at a random point if it is slow.
        let (id, _) = accepted.last().unwrap();
        let _ = wait_for("", Duration::from_secs(4), async || {
            let v = operator.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["state"] == "completed").then_some(()))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=300))).await;
        pool.kill();
        ops.abort();
        let _ = ops.await;
        pool = PoolProcess::start(&cfg, Some(addrs), &log)
            .with_context(|| format!("restart {i} (seed {seed})"))?;
        let seen = acked.lock().unwrap().clone();
        check_books(&operator, &seen)
            .await
            .with_context(|| format!("after restart {i} (seed {seed})"))?;
    }
    let mut total = 0;
    let mut rewards = 0;
    for (id, reward) in &accepted {
        let done = completed(&operator, id, Duration::from_secs(300))
            .await
            .with_context(|| format!("job {id} (seed {seed})"))?;
        total += done["total_work"].as_u64().unwrap();
        rewards += reward - reward / 100;
        let result = job_result(&operator, id).await?;
        result.verify().with_context(|| format!("result of {id}"))?;
        wait_for("the settlement", Duration::from_secs(20), async || {
            let v = pool.api.get(&format!("/v1/jobs/{id}/credits")).await?;
            Ok((!v["settlement"].is_null()).then_some(()))
        })
        .await?;
    }
    assert_eq!(
        worker_work(&pool.api, "kate.rig1").await?,
        total,
        "credited work equals the accepted jobs' work (seed {seed})"
    );
    let kate = pool.api.get("/v1/workers/kate").await?;
    let held = ["balance", "pending", "paid"]
        .iter()
        .map(|k| kate[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(
        held, rewards,
        "kate holds exactly the rewards minus the fee: {kate} (seed {seed})"
    );
    let acked = acked.lock().unwrap().clone();
    check_books(&operator, &acked).await?;
    println!(
        "crash loop: {} jobs, {} batches confirmed and {} voided with an answer",
        accepted.len(),
        acked.confirmed.len(),
        acked.voided.len()
    );
    Ok(())
}

#[derive(Default, Clone, Debug)]
struct Acked {
    deposits: u64,
    /// Batches the pool answered "confirmed" for, with the transaction.
    confirmed: std::collections::BTreeMap<u64, String>,
    voided: std::collections::BTreeSet<u64>,
}

/// Plans a batch, then confirms or voids it, in a loop, recording what the pool
/// acknowledged. Errors (the pool being killed) end the loop.
async fn payout_ops(api: Api, acked: std::sync::Arc<std::sync::Mutex<Acked>>, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    loop {
        let Ok(v) = api.post("/v1/payouts", &json!({})).await else {
            return;
        };
        let Some(batch) = v["batch"]["id"].as_u64() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if rng.gen_bool(0.7) {
            let tx = format!("tx-{batch}");
            let path = format!("/v1/payouts/{batch}/confirm");
            if api.post(&path, &json!({"tx": tx})).await.is_err() {
                return;
            }
            acked.lock().unwrap().confirmed.insert(batch, tx);
        } else {
            if api
                .post(&format!("/v1/payouts/{batch}/void"), &json!({}))
                .await
                .is_err()
            {
                return;
            }
            acked.lock().unwrap().voided.insert(batch);
        }
    }
}

/// After a restart: the books balance; every acknowledged deposit, confirmation and
/// void is there; no batch was confirmed twice.
async fn check_books(api: &Api, acked: &Acked) -> anyhow::Result<()> {
    let books = api.get("/v1/ledger").await?;
    let audit = &books["audit"];
    anyhow::ensure!(audit["balanced"] == true, "books do not balance: {audit}");
    anyhow::ensure!(
        audit["deposited"].as_u64() == Some(acked.deposits),
        "deposited {} but {} acknowledged",
        audit["deposited"],
        acked.deposits
    );
    let payouts = api.get("/v1/payouts").await?;
    let batches = payouts["batches"].as_array().unwrap();
    for (id, tx) in &acked.confirmed {
        let b = batches
            .iter()
            .find(|b| b["id"] == *id)
            .context("acknowledged batch missing")?;
        anyhow::ensure!(
            b["state"] == "confirmed" && b["tx"] == *tx,
            "batch {id} was acknowledged as confirmed: {b}"
        );
    }
    for id in &acked.voided {
        let b = batches
            .iter()
            .find(|b| b["id"] == *id)
            .context("acknowledged batch missing")?;
        anyhow::ensure!(
            b["state"] == "voided",
            "batch {id} was acknowledged as voided: {b}"
        );
    }
    let journal = api.get("/v1/ledger/journal?limit=10000").await?;
    let mut confirms = std::collections::BTreeMap::<u64, usize>::new();
    for e in journal["entries"].as_array().unwrap() {
        if e["kind"] == "confirm" {
            *confirms.entry(e["batch"].as_u64().unwrap()).or_default() += 1;
        }
    }
    anyhow::ensure!(
        confirms.values().all(|&n| n == 1),
        "a batch was confirmed twice: {confirms:?}"
    );
    let paid: u64 = batches
        .iter()
        .filter(|b| b["state"] == "confirmed")
        .map(|b| b["total"].as_u64().unwrap())
        .sum();
    anyhow::ensure!(
        audit["paid"].as_u64() == Some(paid),
        "paid {} but confirmed batches total {paid}",
        audit["paid"]
    );
    Ok(())
}

/// Repeated invalid proofs: a warning, then a ban of the worker at its address,
/// and (with `bans.per_ip`, an operator's choice where rigs do not share
/// addresses) of the address (the connection closes; a renamed worker from the
/// same address is refused too), visible to the operator behind the admin token,
/// until the operator lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_invalid_proofs_ban_the_worker_and_address_until_lifted() -> anyhow::Result<()> {
    const TOKEN: &str = "test-admin-token-0123456789";
    let (pool, _dir) = inproc_pool_with(
        "",
        &format!("admin_token = \"{TOKEN}\""),
        "",
        "[bans]\ninvalid_threshold = 2\nper_ip = true\n",
    )
    .await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    api.post("/v1/jobs", &batch_job(1)).await?;

    let garbage = |id: u64, task: &Value| {
        let index = task["statements"][0]["index"].clone();
        json!({"jsonrpc":"2.0","id":id,"method":"mining.submit","params":{"task":task["task"],"proofs":[{"index":index,"proof":"ab".repeat(128)}]}})
    };
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    let notes = c.handshake("mallory.rig1").await?;
    let task = match notes.into_iter().find(|n| n["method"] == "mining.notify") {
        Some(n) => n["params"].clone(),
        None => c.next_notify().await?,
    };
    c.send(&garbage(30, &task)).await?;
    let (r, _) = c.response().await?;
    assert_eq!(err_code(&r), 30, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("warning: 1 more invalid submit"),
        "{r}"
    );
    let task = c.next_notify().await?;
    c.send(&garbage(31, &task)).await?;
    let (r, _) = c.response().await?;
    assert_eq!(err_code(&r), 33, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("banned for 600 s"),
        "{r}"
    );
    assert!(c.recv().await?.is_none(), "a banned session is closed");

    // The same worker, and another name from the same address, are refused at authorize.
    for worker in ["mallory.rig1", "eve.rig1"] {
        let mut again = RawConn::connect(pool.stratum_addr).await?;
        let e = again.handshake(worker).await.unwrap_err().to_string();
        assert!(
            e.contains("\"code\":33") && e.contains("is banned for"),
            "{worker}: {e}"
        );
    }

    let http = reqwest::Client::new();
    let bans_url = format!("http://{}/v1/bans", pool.http_addr);
    assert_eq!(
        http.get(&bans_url).send().await?.status(),
        401,
        "operator endpoints need the token"
    );
    assert_eq!(
        http.get(&bans_url)
            .bearer_auth("wrong-token-wrong-token")
            .send()
            .await?
            .status(),
        401
    );
    let listed: Value = http
        .get(&bans_url)
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let mut targets: Vec<&str> = listed["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        vec!["ip:127.0.0.1", "worker:mallory.rig1@127.0.0.1"],
        "{listed}"
    );
    let metrics = reqwest::get(format!("http://{}/metrics", pool.http_addr))
        .await?
        .text()
        .await?;
    assert_eq!(sample(&metrics, "zkpool_bans_total"), 1.0);
    assert_eq!(sample(&metrics, "zkpool_bans_active"), 2.0);

    for t in ["worker:mallory.rig1@127.0.0.1", "ip:127.0.0.1"] {
        let r = http
            .delete(format!("{bans_url}/{t}"))
            .bearer_auth(TOKEN)
            .send()
            .await?;
        assert_eq!(r.status(), 200, "lift {t}");
    }
    let r = http
        .delete(format!("{bans_url}/nonsense"))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    let mut back = RawConn::connect(pool.stratum_addr).await?;
    back.handshake("mallory.rig1")
        .await
        .context("authorize after the ban was lifted")?;
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// A job past its deadline expires: the miner holding its task gets `mining.cancel`,
/// the job says `expired` with what was verified, the result endpoint says it has none
/// (410), and a late submit is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_expires_and_its_leases_are_cancelled() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    c.handshake("lena.rig1").await?;
    let mut body = batch_job(2);
    body["deadline_secs"] = json!(1);
    let job = api.post("/v1/jobs", &body).await?;
    let id = job["id"].as_str().unwrap().to_owned();
    let task = c.next_notify().await?;
    assert_eq!(task["job"], job["id"]);
    let cancel = loop {
        let v = c
            .recv()
            .await?
            .context("connection closed before mining.cancel")?;
        if v["method"] == "mining.cancel" {
            break v;
        }
    };
    assert_eq!(cancel["params"]["reason"], "job expired", "{cancel}");
    assert!(
        cancel["params"]["tasks"]
            .as_array()
            .unwrap()
            .contains(&task["task"]),
        "{cancel}"
    );
    let v = wait_for(
        "the job to be stored as expired",
        Duration::from_secs(10),
        async || {
            let v = api.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["state"] == "expired").then_some(v))
        },
    )
    .await?;
    assert_eq!(
        (v["verified"].as_u64(), v["leased"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    let e = refused_result(&api, &id).await?;
    assert!(
        e.contains("410") && e.contains("expired at its deadline with 0 of 2 statements verified"),
        "{e}"
    );
    let proofs = prove_task(&task).await?;
    c.send(&json!({"jsonrpc":"2.0","id":40,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (r, _) = c.response().await?;
    assert_eq!(
        err_code(&r),
        21,
        "a submit for an expired job is stale: {r}"
    );
    // The counter moves just after the expiry is flushed; wait for it, then check it is exactly one.
    let url = format!("http://{}/metrics", pool.http_addr);
    let metrics = wait_for(
        "the expiry on /metrics",
        Duration::from_secs(10),
        async || {
            let text = reqwest::get(&url).await?.text().await?;
            Ok((sample(&text, "zkpool_jobs_expired_total") >= 1.0).then_some(text))
        },
    )
    .await?;
    assert_eq!(sample(&metrics, "zkpool_jobs_expired_total"), 1.0);
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// One address gets at most `max_sessions_per_ip` sessions; the next is refused with
/// a reason, and the place comes back when a session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_session_cap_is_enforced() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool_with(
        "max_sessions_per_ip = 1\nhandshake_timeout_secs = 1",
        "",
        "",
        "",
    )
    .await?;

    let mut first = RawConn::connect(pool.stratum_addr).await?;
    first.handshake("mia.rig1").await?;
    let mut second = RawConn::connect(pool.stratum_addr).await?;
    let r = second.recv().await?.context("a refusal line")?;
    assert_eq!(err_code(&r), 34, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many sessions from 127.0.0.1 (at most 1 per address)"),
        "{r}"
    );
    drop(first);
    // The place comes back once the pool has noticed the closed connection.
    wait_for(
        "a session after the first one closed",
        Duration::from_secs(10),
        async || {
            let mut c = RawConn::connect(pool.stratum_addr).await?;
            Ok(c.handshake("mia.rig2").await.ok())
        },
    )
    .await?;

    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// A peer that dribbles a line byte by byte (slowloris) never completes a line, so it
/// never resets its deadline: the handshake timeout closes it all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dribbling_a_partial_line_is_closed_by_the_timeout() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool_with("handshake_timeout_secs = 1", "", "", "").await?;
    let (mut r, mut w) = tokio::net::TcpStream::connect(pool.stratum_addr)
        .await?
        .into_split();
    let started = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for b in b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mining.subscribe\""
            .iter()
            .cycle()
            .take(50)
        {
            if w.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = vec![];
    let _ = tokio::time::timeout(
        Duration::from_secs(8),
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut buf),
    )
    .await;
    let kept = started.elapsed();
    assert!(
        kept < Duration::from_secs(5),
        "a dribbling peer was kept for {kept:?}"
    );
    assert!(
        buf.is_empty(),
        "admitted and timed out, not refused: got {:?}",
        String::from_utf8_lossy(&buf)
    );
    writer.abort();
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// A miner given two pools, the first one dead, fails over to the second and mines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_fails_over_to_its_next_pool() -> anyhow::Result<()> {
    let (pool, dir) = inproc_pool("").await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    // A port nothing listens on: bind one, then let it go.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?;
    let log = std::fs::File::create(dir.path().join("nina.log"))?;
    let mut child = Command::new(bin("zkminer"))
        .args([
            "--pool",
            &format!("stratum+tcp://{dead}"),
            "--pool",
            &format!("stratum+tcp://{}", pool.stratum_addr),
        ])
        .args([
            "--worker",
            "nina.rig1",
            "--threads",
            "2",
            "--status-interval",
            "0",
        ])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let job = api.post("/v1/jobs", &chain_job(2)).await?;
    let done = completed(&api, job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    let _ = child.kill();
    let _ = child.wait();
    let done = done?;
    assert_eq!(
        worker_work(&api, "nina.rig1").await?,
        done["total_work"].as_u64().unwrap()
    );
    let log = std::fs::read_to_string(dir.path().join("nina.log"))?;
    assert!(
        log.contains("failing over"),
        "the miner should say it failed over:\n{log}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Every path in the OpenAPI document served at /v1/openapi.json reaches a handler
/// on a running pool (never the "no such endpoint" fallback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool("").await?;
    let base = format!("http://{}", pool.http_addr);
    let doc: Value = reqwest::get(format!("{base}/v1/openapi.json"))
        .await?
        .json()
        .await?;
    let http = reqwest::Client::new();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", "chain")
            .replace("{target}", "ip:192.0.2.1")
            .replace("{worker}", "alice.rig1")
            .replace("{batch}", "1");
        for method in ops.as_object().unwrap().keys() {
            let req = match method.as_str() {
                "get" => http.get(format!("{base}{concrete}")),
                "post" => http.post(format!("{base}{concrete}")).body("{}"),
                "delete" => http.delete(format!("{base}{concrete}")),
                other => panic!("unexpected method {other}"),
            };
            let body = req.send().await?.text().await?;
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} fell through to the fallback: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "checked {checked} routes");
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Fault injection: one job, one honest `zkminer` process, and five misbehaving raw
/// clients: one vanishes mid-task, one stalls holding its tasks (its leases expire),
/// one sends garbage lines, one submits garbage proofs, and one replays its own
/// accepted proof for another statement. The job completes with every proof valid,
/// each offender is answered with its reason (and the cheaters are banned), and the
/// credits are exact: the honest miner gets everything but the replayer's one honest
/// task. (Address bans are off here: every client shares 127.0.0.1, like rigs behind NAT.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_completes_despite_vanishing_stalling_garbage_invalid_and_replaying_miners(
) -> anyhow::Result<()> {
    let (pool, dir) = inproc_pool_with(
        "",
        "",
        "lease_min_secs = 2.0",
        "[bans]\ninvalid_threshold = 1\nper_ip = false\n",
    )
    .await?;
    let api = Api::new(&format!("http://{}", pool.http_addr));
    let addr = pool.stratum_addr;
    let first_task = |c: Vec<Value>| {
        c.into_iter()
            .find(|n| n["method"] == "mining.notify")
            .map(|n| n["params"].clone())
    };
    let submit = |id: u64, task: &Value, proofs: &Value| json!({"jsonrpc":"2.0","id":id,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}});

    // Everyone connects before the job exists, so every misbehaving client gets tasks.
    let mut vanisher = RawConn::connect(addr).await?;
    let mut staller = RawConn::connect(addr).await?;
    let mut junk = RawConn::connect(addr).await?;
    let mut cheat = RawConn::connect(addr).await?;
    let mut replayer = RawConn::connect(addr).await?;
    for (c, w) in [
        (&mut vanisher, "van.rig1"),
        (&mut staller, "stall.rig1"),
        (&mut junk, "junk.rig1"),
        (&mut cheat, "cheat.rig1"),
        (&mut replayer, "copy.rig1"),
    ] {
        assert!(first_task(c.handshake(w).await?).is_none());
    }
    let job = api.post("/v1/jobs", &chain_job(16)).await?;
    let id = job["id"].as_str().unwrap().to_owned();

    // Vanish mid-task: its leases return at once.
    vanisher.next_notify().await?;
    drop(vanisher);
    // Stall: take tasks and say nothing (kept open to the end).
    staller.next_notify().await?;
    // Garbage lines: answered with parse errors; the session goes on (and holds its tasks).
    junk.next_notify().await?;
    junk.send_raw(b"}}} not json\n").await?;
    let (r, _) = junk.response().await?;
    assert_eq!(err_code(&r), -32700, "{r}");
    // Garbage proofs: rejected and (threshold 1) banned, connection closed.
    let t = cheat.next_notify().await?;
    let garbage: Vec<Value> = t["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"index": s["index"], "proof": "cd".repeat(128)}))
        .collect();
    cheat.send(&submit(50, &t, &json!(garbage))).await?;
    let (r, _) = cheat.response().await?;
    assert_eq!(err_code(&r), 33, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("malformed proof"),
        "{r}"
    );
    // Replay: prove one task honestly, resubmit it (stale), then replay that proof for another statement.
    let t1 = replayer.next_notify().await?;
    let proofs = prove_task(&t1).await?;
    replayer.send(&submit(60, &t1, &json!(proofs))).await?;
    let (r, _) = replayer.response().await?;
    let honest_copy_work = r["result"]["work"]
        .as_u64()
        .with_context(|| format!("replayer's honest task: {r}"))?;
    replayer.send(&submit(61, &t1, &json!(proofs))).await?;
    let (r, _) = replayer.response().await?;
    assert_eq!(err_code(&r), 21, "a resubmitted task is stale: {r}");
    let t2 = replayer.next_notify().await?;
    let replayed: Vec<Value> = t2["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({"index": s["index"], "proof": proofs[0]["proof"]}))
        .collect();
    replayer.send(&submit(62, &t2, &json!(replayed))).await?;
    let (r, _) = replayer.response().await?;
    assert_eq!(err_code(&r), 33, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{r}"
    );

    // The honest miner finishes everything else.
    let _honest = MinerProcess::start(
        addr,
        "honest.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("honest.log"),
    )?;
    let done = completed(&api, &id, Duration::from_secs(120)).await?;
    let result = job_result(&api, &id).await?;
    assert_eq!(result.verify()?, 16, "every proof in the result is valid");
    let total = done["total_work"].as_u64().unwrap();
    assert_eq!(worker_work(&api, "copy.rig1").await?, honest_copy_work);
    assert_eq!(
        worker_work(&api, "honest.rig1").await?,
        total - honest_copy_work,
        "the honest miner is credited the rest, exactly"
    );
    for offender in ["van.rig1", "stall.rig1", "junk.rig1", "cheat.rig1"] {
        assert_eq!(worker_work(&api, offender).await?, 0, "{offender} credited");
    }
    drop((staller, junk));
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// `zkpool serve` raises its soft open-file limit to the hard limit (one socket per
/// miner), even when started under a low `ulimit -n`.
#[cfg(target_os = "linux")]
#[test]
fn serve_raises_its_open_file_limit() -> anyhow::Result<()> {
    use std::io::BufRead;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 1024 && exec \"$0\" serve --config \"$1\"")
        .arg(bin("zkpool"))
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines.find_map(|l| l.ok().filter(|l| l.contains("open files:")));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id()));
    let _ = child.kill();
    let _ = child.wait();
    let banner = banner.context("no 'open files' line from zkpool serve")?;
    let line = limits?
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no open-file limit")?
        .to_owned();
    let nums: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let (soft, hard) = (nums[0], nums[1]);
    assert!(
        soft > 1024 && soft == hard,
        "soft {soft}, hard {hard}: the limit was not raised ({line})"
    );
    assert!(banner.contains(&soft.to_string()), "{banner}");
    Ok(())
}

const ADMIN: &str = "test-admin-token-0123456789";

/// A pool config with the admin token and a payout threshold of 1 (so every balance
/// is paid out by `zkpool payouts plan`), written in `dir`.
fn paying_pool_config(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let cfg = dir.join("pool.toml");
    std::fs::write(
        &cfg,
        test_config_with(
            &dir.join("data"),
            "",
            &format!("admin_token = \"{ADMIN}\""),
            "",
            "[payouts]\nthreshold = 1\n",
        ),
    )?;
    Ok(cfg)
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

/// Payouts end to end, driven through the operator CLI: a client account with a
/// deposit; a job refused (402) for a reward the balance cannot cover, then one
/// accepted; two miners do unequal work on it (bob starts late); the settlement
/// gives each exactly its work's share of the reward minus the 1 % fee (checked
/// here by an independent computation, to the unit); both `zkminer audit` runs
/// pass and a receipt with one changed number fails; a payout batch is planned,
/// exported, confirmed once and refused a second confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_miners_are_paid_exactly_their_work_and_can_audit_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let url = format!("http://{}", pool.http);

    let (ok, out) = cli("zkpool", &url, &["clients", "add", "acme"]);
    assert!(ok, "{out}");
    let key = out
        .lines()
        .find(|l| l.starts_with("zkc_"))
        .context("API key printed")?
        .trim()
        .to_owned();
    let (ok, out) = cli(
        "zkpool",
        &url,
        &[
            "clients",
            "deposit",
            "acme",
            "1000000",
            "--reference",
            "wire-1",
        ],
    );
    assert!(ok && out.contains("balance now 1000000"), "{out}");
    let (ok, out) = cli(
        "zkpool",
        &url,
        &[
            "clients",
            "deposit",
            "acme",
            "1000000",
            "--reference",
            "wire-1",
        ],
    );
    assert!(
        ok && out.contains("already recorded") && out.contains("balance now 1000000"),
        "a retried deposit is recorded once: {out}"
    );

    let client = Api::new(&url).with_token(Some(key.clone()));
    let mut job = chain_job(32);
    job.as_object_mut().unwrap().remove("client");
    job["reward"] = json!(2_000_000);
    let e = client.post("/v1/jobs", &job).await.unwrap_err().to_string();
    assert!(
        e.contains("402")
            && e.contains("has 1000000 but the job's reward is 2000000: 1000000 more is needed"),
        "{e}"
    );
    let e = pool
        .api
        .post("/v1/jobs", &job)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("401") && e.contains("client API key"), "{e}");
    job["reward"] = json!(999_999);
    let accepted = client.post("/v1/jobs", &job).await?;
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["client"], "acme");
    let account = client.get("/v1/clients/acme").await?;
    assert_eq!(
        (account["balance"].as_u64(), account["escrow"].as_u64()),
        (Some(1), Some(999_999)),
        "{account}"
    );

    let _a = MinerProcess::start(
        pool.stratum,
        "alice.rig1",
        1,
        &dir.path().join("cache-a"),
        &dir.path().join("alice.log"),
    )?;
    wait_for(
        "alice to prove part of the job",
        Duration::from_secs(120),
        async || {
            let v = client.get(&format!("/v1/jobs/{id}")).await?;
            Ok((v["verified"].as_u64().unwrap_or(0) >= 4).then_some(()))
        },
    )
    .await?;
    let _b = MinerProcess::start(
        pool.stratum,
        "bob.rig1",
        1,
        &dir.path().join("cache-b"),
        &dir.path().join("bob.log"),
    )?;
    completed(&client, &id, Duration::from_secs(300)).await?;
    let (ok, out) = cli(
        "zkpool",
        &url,
        &["client", "--api-key", &key, "verify", &id],
    );
    assert!(
        ok && out.contains("OK: 32 proofs verified"),
        "client verify: {out}"
    );
    let credits = wait_for("the settlement", Duration::from_secs(20), async || {
        let v = pool.api.get(&format!("/v1/jobs/{id}/credits")).await?;
        Ok((!v["settlement"].is_null()).then_some(v))
    })
    .await?;

    // Independent check of the split: work per worker from the published credits.
    let mut work = std::collections::BTreeMap::<String, u64>::new();
    for c in credits["credits"].as_array().unwrap() {
        *work
            .entry(c["worker"].as_str().unwrap().to_owned())
            .or_default() += c["work"].as_u64().unwrap();
    }
    let (wa, wb) = (
        work["alice.rig1"],
        work.get("bob.rig1").copied().unwrap_or(0),
    );
    assert!(
        wb > 0 && wa != wb,
        "unequal work by both miners: alice {wa}, bob {wb}"
    );
    let s = &credits["settlement"];
    let fee = 999_999 / 100; // 1 %, rounded down
    let dist = 999_999 - fee;
    let total = (wa + wb) as u128;
    let (fa, fb) = (
        (dist as u128 * wa as u128) / total,
        (dist as u128 * wb as u128) / total,
    );
    let (ra, rb) = (
        (dist as u128 * wa as u128) % total,
        (dist as u128 * wb as u128) % total,
    );
    let left = dist as u128 - fa - fb; // 0 or 1: to the larger remainder (alice on a tie)
    let (pa, pb) = if left == 1 {
        if ra >= rb {
            (fa + 1, fb)
        } else {
            (fa, fb + 1)
        }
    } else {
        (fa, fb)
    };
    assert_eq!(
        (
            s["earned"].as_u64(),
            s["fee"].as_u64(),
            s["refund"].as_u64()
        ),
        (Some(999_999), Some(fee), Some(0)),
        "{s}"
    );
    let parts: std::collections::BTreeMap<String, u64> = s["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["worker"].as_str().unwrap().to_owned(),
                p["amount"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(parts["alice.rig1"] as u128, pa, "{s}");
    assert_eq!(parts["bob.rig1"] as u128, pb, "{s}");
    assert_eq!(pa + pb + fee as u128, 999_999);
    for (w, p) in [("alice", pa), ("bob", pb)] {
        let v = pool.api.get(&format!("/v1/workers/{w}")).await?;
        assert_eq!(v["balance"].as_u64().unwrap() as u128, p, "{v}");
        assert!(!v["recent_shares"].as_array().unwrap().is_empty(), "{v}");
    }

    // Each miner audits its own receipts; a receipt with one changed number fails.
    for cache in ["cache-a", "cache-b"] {
        let cache = dir.path().join(cache);
        let (ok, out) = cli(
            "zkminer",
            &url,
            &["audit", "--cache-dir", cache.to_str().unwrap()],
        );
        assert!(
            ok && out.contains("everything matches") && out.contains("1 job(s) settled"),
            "{out}"
        );
    }
    let receipts = std::fs::read_to_string(dir.path().join("cache-a/receipts.jsonl"))?;
    let mut lines: Vec<Value> = receipts
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let held: u64 = lines
        .iter()
        .map(|l| l["receipt"]["work"].as_u64().unwrap())
        .sum();
    assert_eq!(held, wa, "alice holds a receipt for every credit");
    lines[0]["receipt"]["work"] = json!(lines[0]["receipt"]["work"].as_u64().unwrap() + 1);
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(
        &tampered,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )?;
    let (ok, out) = cli(
        "zkminer",
        &url,
        &["audit", "--receipts", tampered.to_str().unwrap()],
    );
    assert!(
        !ok && out.contains("PROBLEM") && out.contains("altered"),
        "{out}"
    );

    // Payout: plan, export, confirm once.
    let (ok, out) = cli("zkpool", &url, &["payouts", "plan"]);
    assert!(ok && out.contains("batch 1 planned: 2 payment(s)"), "{out}");
    let (ok, csv) = cli(
        "zkpool",
        &url,
        &["payouts", "export", "1", "--format", "csv"],
    );
    assert!(ok, "{csv}");
    assert_eq!(
        csv,
        format!("batch,addr,amount\n1,alice,{pa}\n1,bob,{pb}\n")
    );
    let (ok, out) = cli(
        "zkpool",
        &url,
        &["payouts", "confirm", "1", "--tx", "0xfeed"],
    );
    assert!(ok && out.contains("confirmed with 0xfeed"), "{out}");
    let (ok, out) = cli(
        "zkpool",
        &url,
        &["payouts", "confirm", "1", "--tx", "0xbeef"],
    );
    assert!(
        !ok && out.contains("409") && out.contains("already confirmed with transaction \"0xfeed\""),
        "{out}"
    );
    let (ok, out) = cli("zkpool", &url, &["payouts", "void", "1"]);
    assert!(!ok && out.contains("cannot be voided"), "{out}");
    let v = pool.api.get("/v1/workers/alice").await?;
    assert_eq!(
        (v["balance"].as_u64(), v["paid"].as_u64().map(u128::from)),
        (Some(0), Some(pa)),
        "{v}"
    );
    let (ok, out) = cli("zkpool", &url, &["ledger"]);
    assert!(ok && out.contains("\"balanced\": true"), "{out}");
    Ok(())
}

/// An expired job pays for the work verified before its deadline and refunds the
/// rest: 1 of 2 statements proven earns half the escrow (minus the fee, all to the
/// one worker), and the other half goes back to the client's balance. The receipt
/// the miner got is the one published in the job's credit list. A job its client
/// cancels before any proof refunds its whole reward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_cancelled_jobs_pay_for_verified_work_and_refund_the_rest() -> anyhow::Result<()>
{
    let (pool, _dir) = inproc_pool_with("", &format!("admin_token = \"{ADMIN}\""), "", "").await?;
    let base = format!("http://{}", pool.http_addr);
    let operator = Api::new(&base).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "shortco", 1000, "w").await?;
    let client = Api::new(&base).with_token(Some(key.clone()));
    let mut c = RawConn::connect(pool.stratum_addr).await?;
    c.handshake("lena.rig1").await?;
    let mut body = batch_job(2);
    body.as_object_mut().unwrap().remove("client");
    body["reward"] = json!(1000);
    body["deadline_secs"] = json!(3);
    let job = client.post("/v1/jobs", &body).await?;
    let id = job["id"].as_str().unwrap().to_owned();
    let task = c.next_notify().await?;
    assert_eq!(
        task["statements"].as_array().unwrap().len(),
        1,
        "an unmeasured rig gets one statement"
    );
    let proofs = prove_task(&task).await?;
    c.send(&json!({"jsonrpc":"2.0","id":50,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (r, _) = c.response().await?;
    let receipt = r["result"]["receipt"].clone();
    assert_eq!(receipt["position"], 0, "{r}");
    let credits = wait_for(
        "the expiry's settlement",
        Duration::from_secs(15),
        async || {
            let v = client.get(&format!("/v1/jobs/{id}/credits")).await?;
            Ok((!v["settlement"].is_null()).then_some(v))
        },
    )
    .await?;
    assert_eq!(credits["state"], "expired");
    let s = &credits["settlement"];
    assert_eq!(
        (
            s["completed"].as_bool(),
            s["earned"].as_u64(),
            s["fee"].as_u64(),
            s["refund"].as_u64()
        ),
        (Some(false), Some(500), Some(5), Some(500)),
        "{s}"
    );
    assert_eq!(s["parts"][0]["worker"], "lena.rig1");
    assert_eq!(s["parts"][0]["amount"], 495);
    let published = &credits["credits"][0];
    for field in [
        "worker",
        "job",
        "task",
        "first_statement",
        "proofs",
        "work",
        "at_ms",
        "position",
    ] {
        assert_eq!(
            published[field], receipt[field],
            "{field}: {published} vs {receipt}"
        );
    }
    let account = client.get("/v1/clients/shortco").await?;
    assert_eq!(
        (account["balance"].as_u64(), account["escrow"].as_u64()),
        (Some(500), Some(0)),
        "{account}"
    );
    let e = Api::new(&base)
        .get("/v1/clients/shortco")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("401"), "a client account needs its key: {e}");

    // A cancelled job refunds everything not earned: here, all of it.
    let mut body = batch_job(3);
    body.as_object_mut().unwrap().remove("client");
    body["reward"] = json!(400);
    let job = client.post("/v1/jobs", &body).await?;
    let url = format!("{base}/v1/jobs/{}", job["id"].as_str().unwrap());
    let http = reqwest::Client::new();
    // Without its client's key a private job is not there to cancel.
    assert_eq!(http.delete(&url).send().await?.status(), 404);
    let r = http.delete(&url).bearer_auth(&key).send().await?;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await?;
    assert_eq!(v["job"]["state"], "cancelled", "{v}");
    assert_eq!(
        (
            v["settlement"]["refund"].as_u64(),
            v["settlement"]["earned"].as_u64()
        ),
        (Some(400), Some(0)),
        "{v}"
    );
    let r = http.delete(&url).bearer_auth(&key).send().await?;
    assert_eq!(r.status(), 409, "a cancelled job cannot be cancelled again");
    let account = client.get("/v1/clients/shortco").await?;
    assert_eq!(account["balance"].as_u64(), Some(500), "{account}");
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Headless Chromium (Debian's `chromium`; `ZKPOOL_CHROMIUM` overrides) loads `url`,
/// runs its scripts, and returns the DOM once the dashboard has rendered with data;
/// it also saves a screenshot to `target/dashboard-screenshots/NAME.png`.
fn browse(url: &str, name: &str) -> anyhow::Result<String> {
    let chromium = std::env::var("ZKPOOL_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let run = |extra: &[String]| -> anyhow::Result<std::process::Output> {
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,1400",
                "--virtual-time-budget=3000",
            ])
            .args(extra)
            .arg(url)
            .output()
            .with_context(|| {
                format!("cannot run {chromium}: the dashboard test needs Chromium (apt-get install chromium; .ci/run installs it)")
            })
    };
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir)?;
    for _ in 0..5 {
        let out = run(&["--dump-dom".into()])?;
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        if dom.contains("data-ready=\"1\"") {
            let shot = dir.join(format!("{name}.png"));
            run(&[format!("--screenshot={}", shot.display())])?;
            anyhow::ensure!(shot.exists(), "no screenshot written for {name}");
            return Ok(dom);
        }
    }
    anyhow::bail!("the dashboard at {url} did not render its data")
}

/// The value a dashboard shows under `data-k=KEY` (its raw `data-v`).
fn shown(dom: &str, key: &str) -> Option<String> {
    let at = dom.find(&format!("data-k=\"{key}\" data-v=\""))?;
    let rest = &dom[at + key.len() + 18..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The web dashboard, driven in headless Chromium against a pool that has finished
/// a paid job and a payout: the overview, the job page, the worker page and the
/// operator page each show what the API says (job states and progress, who proved
/// what, the settlement, balances and payouts, the books, batches and clients), the
/// operator page refuses to show anything without the token, and a screenshot of
/// each page is saved in `target/dashboard-screenshots/`. (The miner here is
/// configured by a `zkminer --config` file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_each_page_with_the_pools_data() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = paying_pool_config(dir.path())?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let url = format!("http://{}", pool.http);
    let operator = Api::new(&url).with_token(Some(ADMIN.into()));
    let key = new_client(&operator, "viewco", 50_000, "v1").await?;
    let client_key = key.clone();
    let client = Api::new(&url).with_token(Some(key));
    let mut body = chain_job(6);
    body.as_object_mut().unwrap().remove("client");
    body["reward"] = json!(30_000);
    let paid = client.post("/v1/jobs", &body).await?;
    let paid_id = paid["id"].as_str().unwrap().to_owned();
    let free = pool.api.post("/v1/jobs", &batch_job(5)).await?;
    let free_id = free["id"].as_str().unwrap().to_owned();
    // The miner runs from a config file (zkminer --config), as deploy/zkminer.toml shows.
    let miner_cfg = dir.path().join("zkminer.toml");
    std::fs::write(
        &miner_cfg,
        format!(
            "pools = [\"stratum+tcp://{}\"]\nworker = \"vera.rig1\"\nthreads = 2\ncache_dir = \"{}\"\nstatus_interval_secs = 1\n",
            pool.stratum,
            dir.path().join("cache").display()
        ),
    )?;
    let _m =
        MinerProcess::start_with_config(&miner_cfg, "vera.rig1", &dir.path().join("vera.log"))?;
    for id in [&paid_id, &free_id] {
        completed(&operator, id, Duration::from_secs(120)).await?;
    }
    wait_for("the settlement", Duration::from_secs(20), async || {
        let v = pool.api.get(&format!("/v1/jobs/{paid_id}/credits")).await?;
        Ok((!v["settlement"].is_null()).then_some(()))
    })
    .await?;
    let batch = operator.post("/v1/payouts", &json!({})).await?["batch"]["id"]
        .as_u64()
        .unwrap();
    operator
        .post(
            &format!("/v1/payouts/{batch}/confirm"),
            &json!({"tx": "0xd00d"}),
        )
        .await?;

    // Overview, as a stranger: the public (free) job only; viewco's is private.
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/");
        move || browse(&u, "overview-public")
    })
    .await??;
    assert!(
        dom.contains(&format!("data-job=\"{free_id}\"")),
        "public job listed"
    );
    assert!(
        !dom.contains(&format!("data-job=\"{paid_id}\"")),
        "a private job is not shown to strangers"
    );
    // Overview, as the operator: both jobs, their states and progress, the recent work.
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/?token={ADMIN}");
        move || browse(&u, "overview")
    })
    .await??;
    assert_eq!(
        shown(&dom, "jobs-completed").as_deref(),
        Some("2"),
        "overview"
    );
    assert_eq!(shown(&dom, "workers-online").as_deref(), Some("1"));
    for id in [&paid_id, &free_id] {
        assert!(
            dom.contains(&format!("data-job=\"{id}\"")),
            "job {id} listed"
        );
    }
    assert!(
        dom.contains("6 / 6") && dom.contains("5 / 5"),
        "progress shown"
    );
    assert!(
        dom.contains("#/workers/vera.rig1"),
        "recent work names the worker"
    );

    // Job page: state, progress, who proved what, the settlement, the result link.
    // viewco's job is private: its page is opened with viewco's key.
    let credits = pool.api.get(&format!("/v1/jobs/{paid_id}/credits")).await?;
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/jobs/{paid_id}?token={}", client_key);
        move || browse(&u, "job")
    })
    .await??;
    assert_eq!(shown(&dom, "state").as_deref(), Some("completed"));
    assert_eq!(shown(&dom, "verified").as_deref(), Some("6"));
    assert_eq!(
        dom.match_indices("data-pos=\"")
            .filter(|(i, _)| dom[i + 10..].starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        credits["credits"].as_array().unwrap().len(),
        "one row per credit"
    );
    let s = &credits["settlement"];
    assert_eq!(
        shown(&dom, "earned"),
        s["earned"].as_u64().map(|v| v.to_string())
    );
    assert_eq!(
        shown(&dom, "part-vera.rig1"),
        s["parts"][0]["amount"].as_u64().map(|v| v.to_string())
    );
    assert_eq!(
        shown(&dom, "root").as_deref(),
        credits["credits_root"].as_str()
    );
    assert!(
        dom.contains(&format!("/v1/jobs/{paid_id}/result")),
        "result download link"
    );

    // Worker page: balance, pending, paid, work, the payout, the rigs.
    let api_view = pool.api.get("/v1/workers/vera").await?;
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/workers/vera");
        move || browse(&u, "worker")
    })
    .await??;
    for k in ["balance", "pending", "paid", "work", "proofs", "rejected"] {
        assert_eq!(
            shown(&dom, k),
            api_view[k].as_u64().map(|v| v.to_string()),
            "worker page {k}"
        );
    }
    assert_eq!(
        shown(&dom, &format!("payout-{batch}")),
        api_view["paid"].as_u64().map(|v| v.to_string())
    );
    assert!(dom.contains("#/workers/vera.rig1"), "the rig is listed");
    let bars: usize = shown(&dom, "chart")
        .context("the throughput chart")?
        .parse()?;
    assert!(bars >= 1, "the chart has bars");

    // Operator page: nothing without the token; with it, the books, batches, clients.
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/operator");
        move || browse(&u, "operator-locked")
    })
    .await??;
    assert!(dom.contains("needs the pool's admin token") && shown(&dom, "deposited").is_none());
    let books = operator.get("/v1/ledger").await?;
    let dom = tokio::task::spawn_blocking({
        let u = format!("{url}/#/operator?token={ADMIN}");
        move || browse(&u, "operator")
    })
    .await??;
    assert_eq!(shown(&dom, "balanced").as_deref(), Some("yes"));
    assert_eq!(
        shown(&dom, "deposited"),
        books["audit"]["deposited"].as_u64().map(|v| v.to_string())
    );
    assert_eq!(
        shown(&dom, &format!("batch-{batch}")).as_deref(),
        Some("confirmed")
    );
    assert!(dom.contains("0xd00d"), "the batch's transaction");
    assert_eq!(
        shown(&dom, "client-viewco").as_deref(),
        Some("20000"),
        "50,000 deposited - 30,000 escrowed"
    );
    Ok(())
}

/// PPS through the pool: a verified share is paid at once from the pool's funds;
/// when the funds cannot cover it the submit is refused with the reason (nothing
/// credited, the statement re-queued), and once the operator adds funds the same
/// statement is proven, credited and paid. The job's reward then goes to the pool's
/// funds, and an outside reward is refused (it is PPLNS-only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pps_pays_shares_from_pool_funds_and_refuses_what_they_cannot_cover() -> anyhow::Result<()>
{
    let (pool, _dir) = inproc_pool_with(
        "",
        &format!("admin_token = \"{ADMIN}\""),
        "",
        "[payouts]\nscheme = \"pps\"\npps_price_per_mwork = 2000000\n",
    )
    .await?;
    let base = format!("http://{}", pool.http_addr);
    let operator = Api::new(&base).with_token(Some(ADMIN.into()));
    operator
        .post(
            "/v1/pool/funds",
            &json!({"amount": 100, "reference": "float-1"}),
        )
        .await?;
    let key = new_client(&operator, "ppsco", 5000, "d").await?;
    let mut body = batch_job(1);
    body.as_object_mut().unwrap().remove("client");
    body["reward"] = json!(5000);
    let job = Api::new(&base)
        .with_token(Some(key))
        .post("/v1/jobs", &body)
        .await?;
    let id = job["id"].as_str().unwrap().to_owned();

    let mut c = RawConn::connect(pool.stratum_addr).await?;
    c.handshake("pia.rig1").await?;
    let task = c.next_notify().await?;
    let proofs = prove_task(&task).await?;
    c.send(&json!({"jsonrpc":"2.0","id":60,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (r, _) = c.response().await?;
    // 214 work x 2 per unit = 428 > 100 in the funds.
    let msg = r["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        msg.contains("PPS funds (100) cannot pay this share (428)")
            && msg.contains("nothing is credited"),
        "{r}"
    );
    assert_eq!(
        pool.state.ledger.totals("pia.rig1")?.0.work,
        0,
        "nothing credited"
    );

    operator
        .post(
            "/v1/pool/funds",
            &json!({"amount": 1000, "reference": "float-2"}),
        )
        .await?;
    let task = c.next_notify().await?;
    let proofs = prove_task(&task).await?;
    c.send(&json!({"jsonrpc":"2.0","id":61,"method":"mining.submit","params":{"task":task["task"],"proofs":proofs}})).await?;
    let (r, _) = c.response().await?;
    assert_eq!(r["result"]["accepted"], 1, "{r}");
    completed(&operator, &id, Duration::from_secs(30)).await?;
    let v = Api::new(&base).get("/v1/workers/pia").await?;
    assert_eq!(v["balance"], 428, "paid at once: {v}");
    wait_for("the settlement", Duration::from_secs(10), async || {
        let v = Api::new(&base)
            .get(&format!("/v1/jobs/{id}/credits"))
            .await?;
        Ok((!v["settlement"].is_null()).then_some(()))
    })
    .await?;
    let books = operator.get("/v1/ledger").await?;
    // 1,100 in, 428 paid to pia, then the job's 5,000 reward.
    assert_eq!(books["audit"]["funds"], 1100 - 428 + 5000, "{books}");
    assert_eq!(books["audit"]["balanced"], true);
    let e = operator
        .post("/v1/rewards", &json!({"amount": 10, "reference": "r"}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("409") && e.contains("shared by PPLNS"), "{e}");
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// Worker tokens: once the operator issues a token for an account, its rigs must
/// authorize with it (a missing or wrong one is refused with code 24 and what to
/// do), other accounts are unaffected, and with `stratum.require_worker_token` an
/// account without a token is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_a_worker_token_needs_it_to_authorize() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool_with("", &format!("admin_token = \"{ADMIN}\""), "", "").await?;
    let operator = Api::new(&format!("http://{}", pool.http_addr)).with_token(Some(ADMIN.into()));
    let token = operator.post("/v1/workers/tina/token", &json!({})).await?["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let e = operator
        .post("/v1/workers/tina.rig1/token", &json!({}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("400") && e.contains("not an account"), "{e}");
    for password in [None, Some("zkw_wrong")] {
        let mut c = RawConn::connect(pool.stratum_addr).await?;
        let e = c
            .handshake_with("tina.rig1", password)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"code\":24") && e.contains("zkpool workers token tina"),
            "{password:?}: {e}"
        );
    }
    let mut ok = RawConn::connect(pool.stratum_addr).await?;
    ok.handshake_with("tina.rig2", Some(&token)).await?;
    let mut other = RawConn::connect(pool.stratum_addr).await?;
    other.handshake("uma.rig1").await?;
    pool.shutdown(Duration::from_secs(5)).await;

    let (strict, _dir) = inproc_pool_with("require_worker_token = true", "", "", "").await?;
    let mut c = RawConn::connect(strict.stratum_addr).await?;
    let e = c.handshake("uma.rig1").await.unwrap_err().to_string();
    assert!(
        e.contains("\"code\":24") && e.contains("worker token"),
        "{e}"
    );
    strict.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// TLS: a pool with `stratum.tls_cert`/`tls_key` and `http.tls_cert`/`tls_key` (a
/// self-signed certificate made here) serves `stratum+ssl://` and HTTPS; a
/// `zkminer` that trusts the certificate (`tls_ca` in its config) fetches its
/// proving key over HTTPS and finishes a job over stratum+ssl; a miner that does
/// not trust it says why and what to pass; an HTTPS client that does not trust it
/// is refused; a plain-TCP client gets no stratum at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_proves_over_stratum_ssl_with_a_test_certificate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem())?;
    std::fs::write(&key_pem, cert.key_pair.serialize_pem())?;
    let tls = format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert_pem.display(),
        key_pem.display()
    );
    let cfg = dir.path().join("pool.toml");
    std::fs::write(
        &cfg,
        test_config_with(&dir.path().join("data"), &tls, &tls, "", ""),
    )?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let port = pool.stratum.port();
    assert!(pool.base.starts_with("https://"), "{}", pool.base);
    let api = Api::new(&pool.base).with_ca(&cert_pem)?;
    let e = Api::new(&pool.base).get("/v1/status").await.unwrap_err();
    assert!(
        format!("{e:#}").contains("cannot reach"),
        "an untrusted certificate is refused: {e:#}"
    );
    let miner_cfg = |name: &str, ca: bool| -> anyhow::Result<std::path::PathBuf> {
        let p = dir.path().join(format!("{name}.toml"));
        let ca = if ca {
            format!("tls_ca = \"{}\"\n", cert_pem.display())
        } else {
            String::new()
        };
        std::fs::write(
            &p,
            format!(
                "pools = [\"stratum+ssl://localhost:{port}\"]\nworker = \"{name}.rig1\"\nthreads = 2\ncache_dir = \"{}\"\n{ca}",
                dir.path().join(name).display()
            ),
        )?;
        Ok(p)
    };
    let doubter_log = dir.path().join("doubter.log");
    let _doubter = MinerProcess::start_with_config(
        &miner_cfg("doubter", false)?,
        "doubter.rig1",
        &doubter_log,
    )?;
    let _miner = MinerProcess::start_with_config(
        &miner_cfg("tess", true)?,
        "tess.rig1",
        &dir.path().join("tess.log"),
    )?;
    let job = api.post("/v1/jobs", &batch_job(6)).await?;
    let id = job["id"].as_str().unwrap();
    completed(&api, id, Duration::from_secs(120)).await?;
    assert_eq!(
        worker_work(&api, "tess.rig1").await?,
        job["total_work"].as_u64().unwrap()
    );
    assert_eq!(worker_work(&api, "doubter.rig1").await?, 0);
    let said = wait_for(
        "the untrusting miner to say why",
        Duration::from_secs(20),
        async || {
            let log = std::fs::read_to_string(&doubter_log).unwrap_or_default();
            Ok(log
                .contains("TLS handshake with localhost failed")
                .then_some(log))
        },
    )
    .await?;
    assert!(said.contains("--tls-ca"), "{said}");

    let mut plain = RawConn::connect(pool.stratum).await?;
    plain.send(&json!({"jsonrpc":"2.0","id":1,"method":"mining.subscribe","params":{"agent":"plain","protocol":"zkpool/1"}})).await?;
    let answer = tokio::time::timeout(Duration::from_secs(15), plain.recv()).await;
    assert!(
        matches!(answer, Ok(Ok(None)) | Ok(Err(_))),
        "a plain-TCP client gets no stratum answer on a TLS port: {answer:?}"
    );
    Ok(())
}

/// A client's own circom circuit, end to end with the real tools: circom2 compiles
/// it, snarkjs makes its keys, `zkpool circuits add` registers it (bad uploads are
/// refused with the problem named), one `zkminer` proves a job with snarkjs as its
/// external prover, another whose external prover fails falls back to the built-in
/// prover, the pool verifies and credits every proof, and `snarkjs groth16 verify`,
/// with the verifying key the client exported itself, accepts every exported proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circom_circuit_is_registered_proven_with_snarkjs_and_accepted_by_snarkjs(
) -> anyhow::Result<()> {
    let interop = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../interop"));
    ensure_npm_packages(interop)?;
    let snarkjs_cli = interop.join("node_modules/snarkjs/build/cli.cjs");
    let node = |args: &[&std::ffi::OsStr]| -> anyhow::Result<String> {
        let o = Command::new("node").args(args).output()?;
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        anyhow::ensure!(o.status.success(), "node {args:?} failed: {text}");
        Ok(text)
    };
    let snarkjs = |args: &[&str]| -> anyhow::Result<String> {
        let mut all: Vec<&std::ffi::OsStr> = vec![snarkjs_cli.as_os_str()];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        node(&all)
    };

    // The client's side: a circuit, compiled, with a Groth16 setup of its own.
    let dir = tempfile::tempdir()?;
    let d = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_owned();
    std::fs::write(
        d("sumcubes.circom"),
        "pragma circom 2.0.0;\n\
         // y = xs[0]^3 + xs[1]^3 + xs[2]^3 + k, with k public\n\
         template SumCubes(n) {\n\
           signal input xs[n]; signal input k; signal output y;\n\
           signal sq[n]; signal cu[n]; var acc = 0;\n\
           for (var i = 0; i < n; i++) { sq[i] <== xs[i] * xs[i]; cu[i] <== sq[i] * xs[i]; acc += cu[i]; }\n\
           y <== acc + k;\n\
         }\n\
         component main {public [k]} = SumCubes(3);\n",
    )?;
    node(&[
        interop.join("node_modules/circom2/cli.js").as_os_str(),
        d("sumcubes.circom").as_ref(),
        "--r1cs".as_ref(),
        "--wasm".as_ref(),
        "-o".as_ref(),
        dir.path().as_os_str(),
    ])?;
    let (r1cs, wasm) = (d("sumcubes.r1cs"), d("sumcubes_js/sumcubes.wasm"));
    snarkjs(&["powersoftau", "new", "bn128", "5", &d("p0.ptau")])?;
    snarkjs(&[
        "powersoftau",
        "contribute",
        &d("p0.ptau"),
        &d("p1.ptau"),
        "--name=e2e",
        "-e=e2e entropy",
    ])?;
    snarkjs(&[
        "powersoftau",
        "prepare",
        "phase2",
        &d("p1.ptau"),
        &d("p.ptau"),
    ])?;
    snarkjs(&["groth16", "setup", &r1cs, &d("p.ptau"), &d("c0.zkey")])?;
    snarkjs(&[
        "zkey",
        "contribute",
        &d("c0.zkey"),
        &d("c.zkey"),
        "--name=client",
        "-e=client entropy",
    ])?;
    snarkjs(&[
        "zkey",
        "export",
        "verificationkey",
        &d("c.zkey"),
        &d("client_vk.json"),
    ])?;
    let zkey = d("c.zkey");

    let (pool, pool_dir) =
        inproc_pool_with("", &format!("admin_token = \"{ADMIN}\""), "", "").await?;
    let url = format!("http://{}", pool.http_addr);
    let api = Api::new(&url);

    // Bad uploads: each refused (422) with the problem named.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../zk/tests/fixtures/circom");
    let b64 = |path: &str| -> anyhow::Result<String> {
        use base64::Engine as _;
        Ok(base64::engine::general_purpose::STANDARD.encode(std::fs::read(path)?))
    };
    let sample = json!({"xs": ["1", "2", "3"], "k": "0"});
    let upload = |r: String, w: String, z: String| json!({"name": "bad", "r1cs": r, "wasm": w, "zkey": z, "sample": sample});
    let wasm_bytes = std::fs::read(&wasm)?;
    let truncated = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&wasm_bytes[..wasm_bytes.len() / 3])
    };
    for (body, expected) in [
        (
            upload(
                b64(&format!("{fixtures}/mul.r1cs"))?,
                b64(&wasm)?,
                b64(&zkey)?,
            ),
            "the r1cs does not match the zkey",
        ),
        (
            upload(b64(&r1cs)?, truncated, b64(&zkey)?),
            "wasm: not a valid WebAssembly module",
        ),
        (
            upload(
                b64(&r1cs)?,
                b64(&wasm)?,
                b64(&format!("{fixtures}/bls12381.zkey"))?,
            ),
            "zkey is for another curve",
        ),
    ] {
        let e = api
            .post("/v1/circuits", &body)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("HTTP 422") && e.contains(expected), "{e}");
    }
    let e = api
        .post(
            "/v1/circuits",
            &json!({"name": "x", "r1cs": "", "wasm": ""}),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("HTTP 400") && e.contains("give either all of"),
        "{e}"
    );

    // Registration through the CLI, with a sample statement the pool proves.
    std::fs::write(d("sample.json"), sample.to_string())?;
    let (ok, out) = cli(
        "zkpool",
        &url,
        &[
            "circuits",
            "add",
            "sumcubes",
            "--r1cs",
            &r1cs,
            "--wasm",
            &wasm,
            "--zkey",
            &zkey,
            "--input",
            &d("sample.json"),
        ],
    );
    assert!(ok, "{out}");
    let circuit = api.get("/v1/circuits/sumcubes").await?;
    let constraints = circuit["constraints"].as_u64().context("constraints")?;
    assert_eq!(circuit["public_inputs"], 2, "y and k");
    assert!(out.contains(circuit["id"].as_str().unwrap()), "{out}");
    assert!(
        constraints >= 6,
        "two multiplications per cube: {constraints}"
    );
    // The same zkey again is the same circuit; another circuit under its name is refused.
    let again = api
        .post("/v1/circuits", &json!({"name": "sumcubes", "r1cs": b64(&r1cs)?, "wasm": b64(&wasm)?, "zkey": b64(&zkey)?, "sample": sample}))
        .await?;
    assert_eq!(again["id"], circuit["id"]);
    let e = api
        .post("/v1/circuits", &json!({"name": "sumcubes", "r1cs": b64(&format!("{fixtures}/mul.r1cs"))?,
            "wasm": b64(&format!("{fixtures}/mul.wasm"))?, "zkey": b64(&format!("{fixtures}/mul.zkey"))?,
            "sample": {"a": "3", "b": "11"}}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP 409") && e.contains("taken"), "{e}");

    // A verify-only circuit from a snarkjs verification_key.json: proofs of it are
    // checked on request (the CLI, then the API); it takes no jobs.
    let (ok, out) = cli(
        "zkpool",
        &url,
        &[
            "circuits",
            "add",
            "mul-vk",
            "--vk",
            &format!("{fixtures}/mul.vk.json"),
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(
        "zkpool",
        &url,
        &[
            "circuits",
            "verify",
            "mul-vk",
            &format!("{fixtures}/mul.public.json"),
            &format!("{fixtures}/mul.proof.json"),
        ],
    );
    assert!(ok && out.contains("OK"), "{out}");
    let proof: Value =
        serde_json::from_slice(&std::fs::read(format!("{fixtures}/mul.proof.json"))?)?;
    let e = api
        .post(
            "/v1/circuits/mul-vk/verify",
            &json!({"proof": proof, "public": ["2674", "11"]}),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP 422") && e.contains("does not hold"), "{e}");
    let e = api
        .post(
            "/v1/jobs",
            &json!({"circuit": "mul-vk", "statements": [{"public": ["1", "2"]}]}),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("HTTP 400") && e.contains("verify-only"), "{e}");

    // A statement the circuit cannot take is refused when the job is submitted.
    let e = api
        .post("/v1/jobs", &json!({"circuit": "sumcubes", "statements": [{"input": {"xs": ["1", "2"], "k": "0"}}]}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("HTTP 400") && e.contains("input `xs` takes 3 value(s), 2 given"),
        "{e}"
    );

    let job = |from: u64, n: u64| {
        let statements: Vec<Value> = (from..from + n)
            .map(|i| json!({"input": {"xs": [i.to_string(), (i + 1).to_string(), "-1"], "k": (i * 7).to_string()}}))
            .collect();
        json!({"circuit": "sumcubes", "statements": statements})
    };

    // Phase 1: a rig whose prover is snarkjs, through a wrapper that counts its runs.
    let count = dir.path().join("external-runs");
    let wrapper = dir.path().join("prove.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho run >> '{}'\nexec node '{}' groth16 prove \"$@\"\n",
            count.display(),
            snarkjs_cli.display()
        ),
    )?;
    let miner_toml = |name: &str, cmd: &str| -> anyhow::Result<std::path::PathBuf> {
        let p = pool_dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "pools = [\"stratum+tcp://{}\"]\nworker = \"{name}.rig\"\nthreads = 1\ncache_dir = \"{}\"\nprover_cmd = \"{cmd}\"\n",
                pool.stratum_addr,
                pool_dir.path().join(name).display()
            ),
        )?;
        Ok(p)
    };
    let ext_cfg = miner_toml(
        "ext",
        &format!(
            "sh {} {{zkey}} {{wtns}} {{proof}} {{public}}",
            wrapper.display()
        ),
    )?;
    let ext =
        MinerProcess::start_with_config(&ext_cfg, "ext.rig", &pool_dir.path().join("ext.log"))?;
    let a = api.post("/v1/jobs", &job(1, 4)).await?;
    let a_id = a["id"].as_str().unwrap().to_owned();
    completed(&api, &a_id, Duration::from_secs(180)).await?;
    let runs = std::fs::read_to_string(&count)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(runs, 4, "snarkjs proved every statement of job A");
    assert_eq!(worker_work(&api, "ext.rig").await?, 4 * constraints);
    drop(ext);

    // Phase 2: a rig whose external prover always fails falls back to the built-in one.
    let bad_cfg = miner_toml("fallback", "test -e {proof} || exit 7")?;
    let fallback_log = pool_dir.path().join("fallback.log");
    let _fb = MinerProcess::start_with_config(&bad_cfg, "fallback.rig", &fallback_log)?;
    let b = api.post("/v1/jobs", &job(10, 5)).await?;
    let b_id = b["id"].as_str().unwrap().to_owned();
    completed(&api, &b_id, Duration::from_secs(180)).await?;
    assert_eq!(worker_work(&api, "fallback.rig").await?, 5 * constraints);
    let log = std::fs::read_to_string(&fallback_log)?;
    assert!(
        log.contains("the external prover failed; proving this statement with the built-in prover"),
        "{log}"
    );
    assert!(log.contains("exit status: 7"), "{log}");
    assert!(log.contains("switched off"), "{log}");

    // Every proof of both jobs, exported, is accepted by snarkjs with the client's own key.
    let mut checked = 0;
    for id in [&a_id, &b_id] {
        let file = dir.path().join(format!("{id}.json"));
        std::fs::write(
            &file,
            serde_json::to_string(&api.get(&format!("/v1/jobs/{id}/result")).await?)?,
        )?;
        let out = dir.path().join(format!("export-{id}"));
        let (ok, text) = cli(
            "zkpool",
            "",
            &[
                "export",
                "snarkjs",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(ok, "{text}");
        let n = if id == &a_id { 4 } else { 5 };
        for i in 0..n {
            let v = snarkjs(&[
                "groth16",
                "verify",
                &d("client_vk.json"),
                out.join(format!("public-{i}.json")).to_str().unwrap(),
                out.join(format!("proof-{i}.json")).to_str().unwrap(),
            ])?;
            assert!(
                v.contains("OK!"),
                "snarkjs refused proof {i} of job {id}: {v}"
            );
            checked += 1;
        }
        // The public signals are y = sum of cubes + k, then k.
        let public: Value = serde_json::from_slice(&std::fs::read(out.join("public-0.json"))?)?;
        let i: i64 = if id == &a_id { 1 } else { 10 };
        let y = i.pow(3) + (i + 1).pow(3) - 1 + 7 * i;
        assert_eq!(public, json!([y.to_string(), (7 * i).to_string()]));
        // And zkpool's own offline check agrees, including on a swapped statement.
        let (ok, text) = cli(
            "zkpool",
            "",
            &[
                "verify-snarkjs",
                &d("client_vk.json"),
                out.join("public-1.json").to_str().unwrap(),
                out.join("proof-0.json").to_str().unwrap(),
            ],
        );
        assert!(!ok && text.contains("INVALID"), "{text}");
    }
    assert_eq!(checked, 9);
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
