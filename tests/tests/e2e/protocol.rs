//! The stratum protocol and the server's edges: malformed lines, wrong and garbage
//! proofs, timeouts and session caps, slowloris, resuming a session, failover,
//! worker tokens, TLS, SIGTERM and the open-file limit.

use std::{process::Command, time::Duration};

use anyhow::Context;
use serde_json::json;
use zkpool_tests::*;

use super::{batch_job, chain_job, completed, err_code, worker_work, ADMIN};

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

/// A miner pointed at the pool's HTTP port says that is what it is, instead of
/// logging a parse error per line of the HTTP answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_pointed_at_the_http_port_is_told_so() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("pool.toml");
    std::fs::write(&cfg, test_config(&dir.path().join("data"), ""))?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let log = dir.path().join("miner.log");
    let _miner = MinerProcess::start(pool.http, "lost.rig1", 1, &dir.path().join("cache"), &log)?;
    let text = wait_for("the miner's reason", Duration::from_secs(30), async || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        Ok(t.contains("reason=").then_some(t))
    })
    .await?;
    assert!(
        text.contains("this address answers in HTTP") && text.contains("stratum+tcp://"),
        "{text}"
    );
    assert!(!text.contains("parse error"), "{text}");
    Ok(())
}
