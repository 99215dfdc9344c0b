//! The adversary: each hole an outside review found (issue 12), reproduced as an
//! outsider would, with nothing but the README and a socket, against a real
//! `zkpool serve` process on its default configuration (only addresses, the admin
//! token, small built-in circuits and, where a test waits on a timer, a shorter
//! timer are set) — and shown closed.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zkpool_tests::*;

use super::{cli, new_client, ADMIN};

/// A pool on the defaults that matter here: client keys required, no worker
/// tokens required, bans per name-at-address, default `[limits]`.
fn config(dir: &Path, extra: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join("pool.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\ndata_dir = \"{}\"\n[stratum]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN}\"\n[circuits]\nchain_steps = 16\n{extra}\n",
            dir.join("data").display()
        ),
    )?;
    Ok(path)
}

fn start(dir: &Path, extra: &str) -> anyhow::Result<PoolProcess> {
    PoolProcess::start(&config(dir, extra)?, None, &dir.join("pool.log"))
}

fn operator(pool: &PoolProcess) -> Api {
    Api::new(&pool.base).with_token(Some(ADMIN.into()))
}

/// A field of `/proc/PID/status` in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> f64 {
    zkpool_tests::stat_cpu_secs(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default(),
    )
}

/// An HTTP error's status (0 when the pool gave no answer).
fn http_status(e: &pool::api::Error) -> u16 {
    e.status().map_or(0, |s| s.as_u16())
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../zk/tests/fixtures/circom")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The mul circuit's upload (out = a^5 * b), with a sample statement.
fn mul_upload(name: &str, zkey: &[u8], wasm: &[u8]) -> anyhow::Result<Value> {
    let f = fixtures();
    Ok(json!({
        "name": name,
        "r1cs": b64(&std::fs::read(f.join("mul.r1cs"))?),
        "wasm": b64(wasm),
        "zkey": b64(zkey),
        "sample": {"a": "3", "b": "11"},
    }))
}

fn mul_files() -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let f = fixtures();
    Ok((
        std::fs::read(f.join("mul.zkey"))?,
        std::fs::read(f.join("mul.wasm"))?,
    ))
}

/// The zkey with the first point of its section `kind` set to the identity (all
/// zeros in snarkjs's layout): a proving key that is not its verifying key's.
fn poisoned_zkey(zkey: &[u8], kind: u32) -> Vec<u8> {
    let mut out = zkey.to_vec();
    let n = u32::from_le_bytes(zkey[8..12].try_into().unwrap());
    let mut at = 12;
    for _ in 0..n {
        let t = u32::from_le_bytes(zkey[at..at + 4].try_into().unwrap());
        let size = u64::from_le_bytes(zkey[at + 4..at + 12].try_into().unwrap()) as usize;
        if t == kind {
            out[at + 12..at + 12 + 64].fill(0);
            return out;
        }
        at += 12 + size;
    }
    panic!("the zkey has no section {kind}");
}

/// A verifying key in snarkjs JSON whose alpha is the identity: it accepts any
/// proof whose points are chosen to cancel (the key of the review's forgery).
fn identity_alpha_vk() -> anyhow::Result<Value> {
    let mut vk: Value = serde_json::from_slice(&std::fs::read(fixtures().join("mul.vk.json"))?)?;
    vk["vk_alpha_1"] = json!(["0", "1", "0"]);
    Ok(vk)
}

/// Proofs of all zeros (identity points), in the uncompressed encoding.
fn zero_proof_hex() -> String {
    use ark_ec::AffineRepr;
    let p = ark_groth16::Proof::<zk::Bn254> {
        a: ark_bn254::G1Affine::zero(),
        b: ark_bn254::G2Affine::zero(),
        c: ark_bn254::G1Affine::zero(),
    };
    zk::ProofBytes::encode(&p)
        .to_uncompressed()
        .unwrap_or_else(|_| zk::ProofBytes::encode(&p))
        .to_hex()
}

/// Hole 1 and 2: a name that is an id, a degenerate key, a poisoned zkey, a
/// circom upload without a sample, zero proofs: each refused, nothing credited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_shadow_ids_and_forged_keys_or_proofs_earn_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(dir.path(), "")?;
    let op = operator(&pool);
    let circuits = op.get("/v1/circuits").await?;
    let id_of = |name: &str| -> String {
        circuits
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["id"].as_str())
            .unwrap()
            .to_owned()
    };
    let preimage = id_of("preimage");

    // A verify-only key named after the preimage circuit's id: the name rule
    // refuses it (before, it took over every preimage job's verification).
    let vk: Value = serde_json::from_slice(&std::fs::read(fixtures().join("mul.vk.json"))?)?;
    let e = op
        .post(
            "/v1/circuits",
            &json!({"name": preimage, "verification_key": vk}),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 400, "{e}");
    assert!(
        e.to_string().contains("never looks like a circuit id"),
        "{e}"
    );
    let e = op
        .post(
            "/v1/circuits",
            &json!({"name": "chain", "verification_key": vk}),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 409, "{e}");
    // The id still names the real circuit.
    assert_eq!(
        op.get(&format!("/v1/circuits/{preimage}")).await?["name"],
        "preimage"
    );

    // A degenerate key (identity alpha) is refused with the reason.
    let e = op
        .post(
            "/v1/circuits",
            &json!({"name": "forged", "verification_key": identity_alpha_vk()?}),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 422, "{e}");
    assert!(e.to_string().contains("degenerate"), "{e}");

    // A zkey whose proving key has a zeroed point (section 8, the private
    // signals' points): the sample proof made with it does not verify.
    let (zkey, wasm) = mul_files()?;
    let e = op
        .post(
            "/v1/circuits",
            &mul_upload("poisoned", &poisoned_zkey(&zkey, 8), &wasm)?,
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 422, "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
    // Without a sample statement there is nothing to check the keys with.
    let mut no_sample = mul_upload("nosample", &zkey, &wasm)?;
    no_sample.as_object_mut().unwrap().remove("sample");
    let e = op.post("/v1/circuits", &no_sample).await.unwrap_err();
    assert_eq!(http_status(&e), 400, "{e}");
    assert!(e.to_string().contains("sample"), "{e}");
    // The honest upload of the same circuit is accepted afterwards, under its own key.
    let ok = op
        .post("/v1/circuits", &mul_upload("mul", &zkey, &wasm)?)
        .await?;
    assert_eq!(ok["name"], "mul");

    // Zero proofs submitted for a real task: refused, nothing credited.
    let key = new_client(&op, "acme", 0, "-").await?;
    let client = Api::new(&pool.base).with_token(Some(key));
    let s = zk::CircuitSpec::preimage_statement(zk::Fr::from(77u64));
    let job = client
        .post("/v1/jobs", &json!({"circuit": preimage, "statements": [s]}))
        .await?;
    let mut raw = RawConn::connect(pool.stratum).await?;
    raw.handshake("zero.rig1").await?;
    let task = raw.next_notify().await?;
    raw.send(&json!({"jsonrpc":"2.0","id":9,"method":"mining.submit","params":{
        "task": task["task"], "proofs": [{"index": task["statements"][0]["index"], "proof": zero_proof_hex()}]}}))
        .await?;
    let (r, _) = raw.response().await?;
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(r["error"]["code"], 30, "{r}");
    assert!(msg.contains("identity point"), "{r}");
    assert_eq!(op.get("/v1/workers/zero.rig1").await?["work"], 0);
    let view = client
        .get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))
        .await?;
    assert_eq!(view["verified"], 0, "{view}");
    Ok(())
}

/// Hole 2, the money: work on a client's own circuit is paid from that job's
/// reward only, weighed by the reward, never from the pool's PPS funds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_circuit_is_paid_from_its_own_jobs_only() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(
        dir.path(),
        "[payouts]\nscheme = \"pps\"\npps_price_per_mwork = 2000000\nthreshold = 1\n[scheduler]\ntarget_task_secs = 1.0\n",
    )?;
    let op = operator(&pool);
    op.post(
        "/v1/pool/funds",
        &json!({"amount": 1_000_000, "reference": "funds-1"}),
    )
    .await?;
    let key = new_client(&op, "acme", 100_000, "wire-1").await?;
    let client = Api::new(&pool.base).with_token(Some(key));
    let (zkey, wasm) = mul_files()?;
    let c = client
        .post("/v1/circuits", &mul_upload("mul", &zkey, &wasm)?)
        .await?;
    assert_eq!(c["owner"], "acme", "{c}");
    let statements: Vec<Value> = (2..6)
        .map(|b| json!({"input": {"a": "3", "b": b.to_string()}}))
        .collect();
    let job = client
        .post(
            "/v1/jobs",
            &json!({"circuit": "mul", "statements": statements, "reward": 4_000}),
        )
        .await?;
    // Work per proof is the reward's share, not the r1cs's row count.
    assert_eq!(job["work_per_proof"], 1_000, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let mut miner = MinerProcess::start(
        pool.stratum,
        "mallory.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("miner.log"),
    )?;
    client.wait(&id, Duration::from_secs(120), |_| {}).await?;
    miner.kill();
    let books = op.get("/v1/ledger").await?;
    // PPS paid nothing from the pool's funds for this work; the job's reward, less
    // the 1 % fee, went to the worker.
    assert_eq!(books["audit"]["funds"], 1_000_000, "{books}");
    let w = op.get("/v1/workers/mallory").await?;
    assert_eq!(w["balance"], 3_960, "{w}");
    Ok(())
}

/// Hole 3: a 64-byte chain job, a looping wasm and oversized uploads are refused
/// quickly and cheaply; the job list is paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_requests_stay_cheap() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(dir.path(), "")?;
    let pid = pool.child.id();
    let op = operator(&pool);
    let key = new_client(&op, "acme", 0, "-").await?;
    let client = Api::new(&pool.base).with_token(Some(key));

    // The review's 64-byte request: 100,000 chain segments.
    let (cpu, t) = (cpu_secs(pid), Instant::now());
    let e = client
        .post(
            "/v1/jobs",
            &json!({"circuit":"chain","chain":{"seed":"1","segments":100000}}),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 422, "{e}");
    assert!(e.to_string().contains("split the work"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(
        cpu_secs(pid) - cpu < 1.0,
        "pool CPU {}",
        cpu_secs(pid) - cpu
    );

    // A 32-byte module whose start function loops forever.
    let looping: &[u8] = &std::fs::read(fixtures().join("loop.wasm"))?;
    let (zkey, _) = mul_files()?;
    let (cpu, t) = (cpu_secs(pid), Instant::now());
    let e = client
        .post("/v1/circuits", &mul_upload("looper", &zkey, looping)?)
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 422, "{e}");
    assert!(e.to_string().contains("fuel"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        cpu_secs(pid) - cpu < 1.0,
        "pool CPU {}",
        cpu_secs(pid) - cpu
    );

    // Three 200 MiB uploads at once: refused at the limit (413), or while another
    // of the same caller is read (429); the pool's memory stays bounded.
    let upload = |n: usize| {
        let url = format!("{}/v1/circuits", pool.base);
        async move {
            let chunk = bytes::Bytes::from(vec![b'A'; 1 << 20]);
            let body = futures::stream::iter(
                (0..200).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(ADMIN)
                .header("content-type", "application/json")
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await;
            (n, r.map(|r| r.status().as_u16()))
        }
    };
    let results = futures::future::join_all((0..3).map(upload)).await;
    for (n, r) in &results {
        match r {
            Ok(code) => assert!([413, 429].contains(code), "upload {n}: HTTP {code}"),
            // The pool may answer 413 and close while the body is still coming.
            Err(e) => assert!(e.is_request() || e.is_body(), "upload {n}: {e}"),
        }
    }
    let hwm = status_kib(pid, "VmHWM:");
    assert!(hwm < 300 * 1024, "peak RSS {} MiB", hwm / 1024);
    // A declared length over the limit is refused before any of it is read.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/circuits", pool.base))
        .bearer_auth(ADMIN)
        .header("content-length", (200u64 << 20).to_string())
        .body("")
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    assert!(op.get("/v1/status").await.is_ok(), "the pool still answers");

    // Paged job lists.
    for i in 0..3 {
        let s = zk::CircuitSpec::preimage_statement(zk::Fr::from(900 + i));
        client
            .post("/v1/jobs", &json!({"circuit":"preimage","statements":[s]}))
            .await?;
    }
    let page = client.get("/v1/jobs?limit=2").await?;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2, "{page}");
    let next = page["next"].as_str().context("a next cursor")?;
    let rest = client
        .get(&format!("/v1/jobs?limit=2&before={next}"))
        .await?;
    assert_eq!(rest["jobs"].as_array().unwrap().len(), 1, "{rest}");
    Ok(())
}

/// Hole 3: eight rigs downloading a large proving key slowly hold no copy of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_key_downloads_cost_the_pool_no_memory() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // 256 hashes a segment: a proving key of about 20 MB.
    let cfg = config(dir.path(), "")?;
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)?.replace("chain_steps = 16", "chain_steps = 256"),
    )?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let pid = pool.child.id();
    let circuits = Api::new(&pool.base).get("/v1/circuits").await?;
    let chain = circuits
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "chain")
        .context("chain")?
        .clone();
    let size = chain["proving_key_bytes"].as_u64().unwrap();
    assert!(size > 10 << 20, "key of {size} bytes");
    let before = status_kib(pid, "VmRSS:");
    let mut readers = vec![];
    for _ in 0..8 {
        let mut s = tokio::net::TcpStream::connect(pool.http).await?;
        s.write_all(
            format!(
                "GET /v1/circuits/{}/proving-key HTTP/1.1\r\nHost: x\r\n\r\n",
                chain["id"].as_str().unwrap()
            )
            .as_bytes(),
        )
        .await?;
        let mut buf = [0u8; 4096];
        s.read_exact(&mut buf).await?;
        readers.push(s); // and read no more: a slow rig
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = status_kib(pid, "VmRSS:");
    assert!(
        during < before + 64 * 1024 && during < 200 * 1024,
        "RSS {} MiB before, {} MiB with 8 slow downloads of a {} MiB key",
        before / 1024,
        during / 1024,
        size >> 20
    );
    Ok(())
}

/// Hole 4: made-up names taking a statement and letting their leases run out
/// cannot fail a client's job; an honest rig then proves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sybil_names_cannot_fail_a_job() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(
        dir.path(),
        "[scheduler]\nlease_min_secs = 1.0\ntarget_task_secs = 0.3\nsweep_interval_secs = 0.1\nbackup_after_secs = 0\n",
    )?;
    let op = operator(&pool);
    let key = new_client(&op, "acme", 0, "-").await?;
    let client = Api::new(&pool.base).with_token(Some(key));
    let s = zk::CircuitSpec::preimage_statement(zk::Fr::from(4242u64));
    let id = client
        .post("/v1/jobs", &json!({"circuit":"preimage","statements":[s]}))
        .await?["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Eight names, one after another: each takes the statement and stalls.
    for i in 0..8 {
        let mut raw = RawConn::connect(pool.stratum).await?;
        raw.handshake(&format!("sybil{i}.x")).await?;
        raw.next_notify().await?;
        // Wait for the lease to be taken back (mining.cancel).
        loop {
            let v = raw.recv().await?.context("closed")?;
            if v["method"] == "mining.cancel" {
                break;
            }
        }
    }
    let view = client.get(&format!("/v1/jobs/{id}")).await?;
    assert_eq!(view["state"], "running", "{view}");
    let _miner = MinerProcess::start(
        pool.stratum,
        "honest.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("miner.log"),
    )?;
    let done = client.wait(&id, Duration::from_secs(60), |_| {}).await?;
    assert_eq!(done["state"], "completed");
    Ok(())
}

/// A stratum connection from `ip` (a loopback address: 127.0.0.1, 127.0.0.2, ...).
async fn raw_from(ip: &str, pool: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(format!("{ip}:0").parse()?)?;
    Ok(sock.connect(pool).await?)
}

async fn line(s: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> anyhow::Result<Value> {
    use tokio::io::AsyncBufReadExt;
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), s.read_line(&mut l)).await??;
        anyhow::ensure!(n > 0, "connection closed");
        let v: Value = serde_json::from_str(&l)?;
        if v.get("method").is_none() {
            return Ok(v);
        }
    }
}

/// Subscribes and authorizes `worker` from `ip`; the authorize answer.
async fn authorize_from(
    ip: &str,
    pool: SocketAddr,
    worker: &str,
    password: Option<&str>,
) -> anyhow::Result<(Value, tokio::io::BufReader<tokio::net::TcpStream>)> {
    let mut s = tokio::io::BufReader::new(raw_from(ip, pool).await?);
    s.get_mut().write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mining.subscribe\",\"params\":{\"agent\":\"adv\",\"protocol\":\"zkpool/1\"}}\n").await?;
    line(&mut s).await?;
    let auth = json!({"jsonrpc":"2.0","id":2,"method":"mining.authorize","params":{"worker":worker,"password":password}});
    s.get_mut()
        .write_all(format!("{auth}\n").as_bytes())
        .await?;
    Ok((line(&mut s).await?, s))
}

/// Hole 5: an impostor cannot get a token-protected account banned, nor (from
/// another address) a name without a token; a rig behind the same address as a
/// banned neighbour keeps mining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostors_and_bad_neighbours_get_only_themselves_banned() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(dir.path(), "")?;
    let op = operator(&pool);
    let token = op.post("/v1/workers/alice/token", &json!({})).await?["token"]
        .as_str()
        .context("token")?
        .to_owned();
    let key = new_client(&op, "acme", 0, "-").await?;
    let client = Api::new(&pool.base).with_token(Some(key));

    // Without alice's token nobody is alice: a wrong one is named as wrong.
    let (r, _) = authorize_from("127.0.0.2", pool.stratum, "alice.rig1", Some("guess")).await?;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("is not account alice's worker token"),
        "{r}"
    );
    let (r, _) = authorize_from("127.0.0.2", pool.stratum, "alice.rig1", None).await?;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("needs its worker token"),
        "{r}"
    );

    // An impostor of carol (no token) from 127.0.0.2, and a bad neighbour of bob
    // on 127.0.0.1, submit invalid proofs until banned.
    for (ip, worker) in [("127.0.0.2", "carol.rig1"), ("127.0.0.1", "mallory.x")] {
        let s = zk::CircuitSpec::preimage_statement(zk::Fr::from(
            5000 + ip.len() as u64 + worker.len() as u64,
        ));
        client
            .post("/v1/jobs", &json!({"circuit":"preimage","statements":[s]}))
            .await?;
        let (r, mut conn) = authorize_from(ip, pool.stratum, worker, None).await?;
        assert!(r.get("result").is_some(), "{r}");
        let mut banned = false;
        for i in 0..10 {
            // Each lease is refused with a garbage proof; the statement comes back.
            let task = loop {
                use tokio::io::AsyncBufReadExt;
                let mut l = String::new();
                tokio::time::timeout(Duration::from_secs(30), conn.read_line(&mut l)).await??;
                let v: Value = serde_json::from_str(&l)?;
                if v["method"] == "mining.notify" {
                    break v["params"].clone();
                }
            };
            let submit = json!({"jsonrpc":"2.0","id":10 + i,"method":"mining.submit","params":{
                "task": task["task"], "proofs": [{"index": task["statements"][0]["index"], "proof": "00".repeat(128)}]}});
            conn.get_mut()
                .write_all(format!("{submit}\n").as_bytes())
                .await?;
            let r = line(&mut conn).await?;
            if r["error"]["code"] == 33 {
                banned = true;
                break;
            }
        }
        assert!(banned, "{worker} at {ip} was never banned");
    }
    let bans = op.get("/v1/bans").await?.to_string();
    assert!(bans.contains("worker:carol.rig1@127.0.0.2"), "{bans}");
    assert!(
        !bans.contains("ip:127.0.0.1"),
        "one bad name does not ban its address: {bans}"
    );

    // The real carol (127.0.0.1) and alice (with her token) authorize; bob, behind
    // the banned neighbour's address, mines a job to the end.
    let (r, _) = authorize_from("127.0.0.1", pool.stratum, "carol.rig1", None).await?;
    assert!(r.get("result").is_some(), "{r}");
    let (r, _) = authorize_from("127.0.0.2", pool.stratum, "alice.rig1", Some(&token)).await?;
    assert!(r.get("result").is_some(), "{r}");
    let s = zk::CircuitSpec::preimage_statement(zk::Fr::from(6006u64));
    let id = client
        .post("/v1/jobs", &json!({"circuit":"preimage","statements":[s]}))
        .await?["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let _bob = MinerProcess::start(
        pool.stratum,
        "bob.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("miner.log"),
    )?;
    client.wait(&id, Duration::from_secs(60), |_| {}).await?;
    assert!(
        op.get("/v1/workers/bob.rig1").await?["work"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    Ok(())
}

/// Hole 6: a statement too large for a line is refused when the job is submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_too_large_for_a_line_is_refused_at_submission() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(dir.path(), "")?;
    let op = operator(&pool);
    let (zkey, wasm) = mul_files()?;
    op.post("/v1/circuits", &mul_upload("mul", &zkey, &wasm)?)
        .await?;
    let key = new_client(&op, "acme", 0, "-").await?;
    let client = Api::new(&pool.base).with_token(Some(key));
    let padded = format!("{}3", "0".repeat(70_000));
    let e = client
        .post(
            "/v1/jobs",
            &json!({"circuit":"mul","statements":[{"input":{"a": padded, "b": "11"}}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 400, "{e}");
    assert!(e.to_string().contains("bytes on the wire"), "{e}");
    Ok(())
}

/// A job's witness budget (`limits.job_witness_fuel`) is charged what its
/// statements spend, the sample's fuel each: not the bound each one runs under
/// (four times that), which let a budget of ten statements' work take two, and
/// a circuit of 2^18 constraints none at the default. Past the budget the job is
/// refused before anything runs, with how many statements would fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_witness_budget_is_charged_what_its_statements_spend() -> anyhow::Result<()> {
    let (zkey, wasm) = mul_files()?;
    let r1cs = std::fs::read(fixtures().join("mul.r1cs"))?;
    // One statement's fuel, measured as the pool measures the upload's sample.
    let (circuit, pk) = zk::circom::CircomCircuit::load(&r1cs, &wasm, &zkey)?;
    let per = circuit.self_test(&pk, &json!({"a": "3", "b": "11"}))?.fuel;
    let dir = tempfile::tempdir()?;
    let pool = start(
        dir.path(),
        &format!("[limits]\njob_witness_fuel = {}\n", per * 10 + per / 2),
    )?;
    let op = operator(&pool);
    op.post("/v1/circuits", &mul_upload("mul", &zkey, &wasm)?)
        .await?;
    let key = new_client(&op, "acme", 0, "-").await?;
    let client = Api::new(&pool.base).with_token(Some(key));
    let job = |n: u64| {
        json!({"circuit": "mul", "statements": (0..n)
            .map(|i| json!({"input": {"a": (i + 2).to_string(), "b": "11"}}))
            .collect::<Vec<_>>()})
    };
    let ten = client.post("/v1/jobs", &job(10)).await?;
    assert!(ten["id"].is_string(), "ten statements fit: {ten}");
    let e = client.post("/v1/jobs", &job(11)).await.unwrap_err();
    assert_eq!(http_status(&e), 422, "{e}");
    assert!(
        e.to_string()
            .contains("at most 10 statements per job, 11 given"),
        "{e}"
    );
    Ok(())
}

/// Hole 7: a miner that stops reading loses its session when a write times out;
/// connections that never authorize are capped per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_closed_and_handshakes_are_capped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(
        dir.path(),
        "[limits]\nstratum_write_timeout_secs = 2\nstratum_handshakes_per_ip = 4\n",
    )?;
    let api = operator(&pool);
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_recv_buffer_size(4096)?;
    let mut s = sock.connect(pool.stratum).await?;
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mining.subscribe\",\"params\":{\"agent\":\"adv\",\"protocol\":\"zkpool/1\"}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"mining.authorize\",\"params\":{\"worker\":\"deaf.rig1\"}}\n").await?;
    wait_for("the deaf session", Duration::from_secs(10), async || {
        Ok((api.get("/v1/status").await?["sessions"] == 1).then_some(()))
    })
    .await?;
    // Pings, never reading an answer, until the pool stops taking them.
    let ping = b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"mining.ping\"}\n".repeat(100);
    let flood = async { while s.write_all(&ping).await.is_ok() {} };
    let _ = tokio::time::timeout(Duration::from_secs(20), flood).await;
    wait_for(
        "the deaf session to be closed",
        Duration::from_secs(20),
        async || Ok((api.get("/v1/status").await?["sessions"] == 0).then_some(())),
    )
    .await?;

    // Four connections that never subscribe hold four places; the fifth is told why.
    let mut idle = vec![];
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(pool.stratum).await?);
    }
    let mut fifth = RawConn::connect(pool.stratum).await?;
    let refusal = fifth.recv().await?.context("a refusal")?;
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("still in their handshake"),
        "{refusal}"
    );
    Ok(())
}

/// Hole 8: slowloris. Connections that never finish their headers are closed by
/// the header timeout, and one address cannot hold more than its share.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_clients_are_closed_and_capped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(
        dir.path(),
        "[limits]\nhttp_header_timeout_secs = 2\nhttp_connections_per_ip = 64\n",
    )?;
    let mut slow = vec![];
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(pool.http).await?;
        let _ = s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n").await;
        slow.push(s);
    }
    // Another address is served meanwhile.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse()?))
        .build()?;
    let r = other
        .get(format!("http://{}/v1/status", pool.http))
        .send()
        .await?;
    assert!(r.status().is_success());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut open = 0;
    for s in &mut slow {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            // Closed (EOF or reset), possibly after a 408.
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => {
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await
                {
                    if n > 0 {
                        open += 1;
                    }
                }
            }
            Err(_) => open += 1,
        }
    }
    assert_eq!(open, 0, "{open} of 200 slow connections still open");
    let r = reqwest::get(format!("http://{}/v1/status", pool.http)).await?;
    assert!(r.status().is_success());
    Ok(())
}

/// Hole 9: a proof is paid once. A replayed proof of a statement another job
/// already has earns nothing, and a statement proven before is answered from the
/// pool's proofs without a lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_paid_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(
        dir.path(),
        "[payouts]\nthreshold = 1\n[scheduler]\ntarget_task_secs = 1.0\n",
    )?;
    let op = operator(&pool);
    let key = new_client(&op, "acme", 1_000_000, "wire-1").await?;
    let client = Api::new(&pool.base).with_token(Some(key));
    let s = zk::CircuitSpec::preimage_statement(zk::Fr::from(31337u64));
    let post = |reward: u64| {
        let client = &client;
        let s = s.clone();
        async move {
            Ok::<String, anyhow::Error>(
                client
                    .post(
                        "/v1/jobs",
                        &json!({"circuit":"preimage","statements":[s],"reward": reward}),
                    )
                    .await?["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        }
    };
    // Two running jobs with the same statement, both leased to one rig.
    let (a, b) = (post(1000).await?, post(1000).await?);
    let mut raw = RawConn::connect(pool.stratum).await?;
    raw.handshake("replay.rig1").await?;
    let (t1, t2) = (raw.next_notify().await?, raw.next_notify().await?);
    let proofs = prove_task(&t1).await?;
    let submit = |id: i64, task: &Value| json!({"jsonrpc":"2.0","id":id,"method":"mining.submit","params":{"task": task["task"], "proofs": proofs}});
    raw.send(&submit(10, &t1)).await?;
    let (r, _) = raw.response().await?;
    assert!(r.get("result").is_some(), "{r}");
    raw.send(&submit(11, &t2)).await?;
    let (r, _) = raw.response().await?;
    assert_eq!(r["error"]["code"], 21, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("paid once"),
        "{r}"
    );
    for id in [&a, &b] {
        client.wait(id, Duration::from_secs(30), |_| {}).await?;
    }
    // One share credited; the second job's reward came back to acme.
    let w = op.get("/v1/workers/replay.rig1").await?;
    assert_eq!(w["shares"], 1, "{w}");
    let settled = op.get(&format!("/v1/jobs/{b}/credits")).await?;
    assert_eq!(settled["settlement"]["refund"], 1000, "{settled}");

    // A third job with the statement is answered at once, with no lease.
    let c = post(1000).await?;
    let done = client.wait(&c, Duration::from_secs(10), |_| {}).await?;
    assert_eq!(done["state"], "completed");
    let result: zk::JobResult =
        serde_json::from_value(client.get(&format!("/v1/jobs/{c}/result")).await?)?;
    assert_eq!(result.verify_pinned(&result.circuit_id), Ok(1));
    assert_eq!(op.get("/v1/workers/replay.rig1").await?["shares"], 1);
    Ok(())
}

/// Hole 10: `zkpool verify` refuses a result whose claims or label were rewritten,
/// and one it has not been told which circuit to expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_rewritten_claims_and_names_the_circuit() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(dir.path(), "[scheduler]\ntarget_task_secs = 1.0\n")?;
    let op = operator(&pool);
    let key = new_client(&op, "acme", 0, "-").await?;
    let client = Api::new(&pool.base).with_token(Some(key));
    let id = client
        .post(
            "/v1/jobs",
            &json!({"circuit":"chain","chain":{"seed":"5","segments":3}}),
        )
        .await?["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let _miner = MinerProcess::start(
        pool.stratum,
        "m.rig1",
        2,
        &dir.path().join("cache"),
        &dir.path().join("miner.log"),
    )?;
    client.wait(&id, Duration::from_secs(60), |_| {}).await?;
    let genuine: zk::JobResult =
        serde_json::from_value(client.get(&format!("/v1/jobs/{id}/result")).await?)?;
    let pin = genuine.circuit_id.clone();
    let write = |name: &str, r: &zk::JobResult| -> anyhow::Result<String> {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_string(r)?)?;
        Ok(p.to_str().unwrap().to_owned())
    };
    let good = write("good.json", &genuine)?;
    let (ok, out) = cli("zkpool", "", &["verify", &good, "--circuit-id", &pin]);
    assert!(ok && out.contains(&pin), "{out}");

    // The review's forgery: batch mode, a rewritten chain output, a new digest.
    let mut forged = genuine.clone();
    forged.mode = zk::result::JobMode::Batch;
    forged.chain.as_mut().unwrap().output = zk::Fr::from(12345u64);
    forged.digest = forged.compute_digest();
    let (ok, out) = cli(
        "zkpool",
        "",
        &[
            "verify",
            &write("forged.json", &forged)?,
            "--circuit-id",
            &pin,
        ],
    );
    assert!(
        !ok && out.contains("INVALID") && out.contains("chain claim"),
        "{out}"
    );
    // Relabelled as another circuit: the digest binds the label.
    let mut relabelled = genuine.clone();
    relabelled.circuit = zk::CircuitSpec::Preimage;
    let (ok, out) = cli(
        "zkpool",
        "",
        &[
            "verify",
            &write("relabelled.json", &relabelled)?,
            "--circuit-id",
            &pin,
        ],
    );
    assert!(!ok && out.contains("INVALID"), "{out}");
    // Another circuit's id: refused; no circuit named: a usage error saying why.
    let (ok, out) = cli(
        "zkpool",
        "",
        &["verify", &good, "--circuit-id", &"ab".repeat(32)],
    );
    assert!(!ok && out.contains("prove nothing to you"), "{out}");
    let o = std::process::Command::new(bin("zkpool"))
        .args(["verify", &good])
        .output()?;
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--circuit-id"),
        "{o:?}"
    );
    Ok(())
}

/// Hole 11: the smaller ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smaller_holes_are_closed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pool = start(dir.path(), "")?;
    let op = operator(&pool);
    let anon = Api::new(&pool.base);
    let key = new_client(&op, "acme", 10_000, "wire-1").await?;
    let client = Api::new(&pool.base).with_token(Some(key));
    let s = zk::CircuitSpec::preimage_statement(zk::Fr::from(12u64));

    // No key: no job (the default), and never a job in another client's name.
    let e = anon
        .post(
            "/v1/jobs",
            &json!({"circuit":"preimage","statements":[s],"client":"acme"}),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 401, "{e}");
    // A deadline that would overflow is refused, not expired at once.
    let e = client
        .post(
            "/v1/jobs",
            &json!({"circuit":"preimage","statements":[s],"deadline_secs": u64::MAX}),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 400, "{e}");
    // A deposit that would overflow the books is refused; they stay balanced.
    let e = op
        .post(
            "/v1/clients/acme/deposits",
            &json!({"amount": u64::MAX, "reference": "huge"}),
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&e), 400, "{e}");
    assert_eq!(op.get("/v1/ledger").await?["audit"]["balanced"], true);

    // acme's job, its result and its balance are acme's; anyone sees public jobs.
    let private = client
        .post(
            "/v1/jobs",
            &json!({"circuit":"preimage","statements":[s],"reward": 1000}),
        )
        .await?["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let public = client
        .post("/v1/jobs", &json!({"circuit":"preimage","statements":[zk::CircuitSpec::preimage_statement(zk::Fr::from(13u64))],"public": true}))
        .await?["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let _miner = MinerProcess::start(
        pool.stratum,
        "m.rig1",
        1,
        &dir.path().join("cache"),
        &dir.path().join("miner.log"),
    )?;
    client
        .wait(&private, Duration::from_secs(60), |_| {})
        .await?;
    for path in [
        format!("/v1/jobs/{private}"),
        format!("/v1/jobs/{private}/result"),
        "/v1/clients/acme".into(),
    ] {
        let e = anon.get(&path).await.unwrap_err();
        assert!([401, 404].contains(&http_status(&e)), "{path}: {e}");
        client.get(&path).await.with_context(|| path.clone())?;
    }
    assert!(anon.get(&format!("/v1/jobs/{public}")).await.is_ok());
    let listed = anon.get("/v1/jobs").await?.to_string();
    assert!(
        listed.contains(&public) && !listed.contains(&private),
        "{listed}"
    );
    // /metrics shows no money to strangers; the operator's scrape has the books.
    let text = reqwest::get(format!("{}/metrics", pool.base))
        .await?
        .text()
        .await?;
    assert!(!text.contains("zkpool_ledger_amount"), "{text}");
    assert!(op
        .get_text("/metrics")
        .await?
        .contains("zkpool_ledger_amount"));
    Ok(())
}

/// Hole 11, the rig's side: a malicious pool cannot make zkminer touch files
/// outside its cache, nor make it download without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_pool_cannot_reach_outside_the_miners_cache() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache)?;
    let victim = dir.path().join("victim.pk");
    std::fs::write(&victim, b"precious")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let _miner = MinerProcess::start(addr, "m.rig1", 1, &cache, &dir.path().join("miner.log"))?;
    let (conn, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept()).await??;
    let mut conn = tokio::io::BufReader::new(conn);
    let answer = |id: &Value, result: Value| {
        format!("{}\n", json!({"jsonrpc":"2.0","id":id,"result":result}))
    };
    use tokio::io::AsyncBufReadExt;
    for _ in 0..2 {
        let mut l = String::new();
        conn.read_line(&mut l).await?;
        let v: Value = serde_json::from_str(&l)?;
        let result = if v["method"] == "mining.subscribe" {
            json!({"session":"1","protocol":"zkpool/1","max_line":65536,"ping_interval_secs":15,"idle_timeout_secs":120,"resume_secs":0})
        } else {
            json!({"worker":"m.rig1"})
        };
        conn.get_mut()
            .write_all(answer(&v["id"], result).as_bytes())
            .await?;
    }
    let s = zk::CircuitSpec::preimage_statement(zk::Fr::from(3u64));
    for (task, hash, size) in [
        ("t-1", "../victim", 100u64),
        ("t-2", &"ab".repeat(32)[..], 10u64 << 40),
    ] {
        let notify = json!({"jsonrpc":"2.0","method":"mining.notify","params":{
            "task": task, "job": "j", "circuit": "c".repeat(64), "spec": {"kind":"preimage"},
            "key": {"hash": hash, "url": format!("http://{addr}/nothing"), "size": size},
            "statements": [{"index": 0, "public": [zk::field::fr_to_string(&s.public[0])], "private": ["3"]}],
            "lease_secs": 60, "work_per_proof": 214}});
        conn.get_mut()
            .write_all(format!("{notify}\n").as_bytes())
            .await?;
    }
    let log = dir.path().join("miner.log");
    wait_for(
        "the miner to refuse both keys",
        Duration::from_secs(20),
        async || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            Ok((text.matches("refusing the proving key").count() >= 2).then_some(()))
        },
    )
    .await?;
    assert_eq!(std::fs::read(&victim)?, b"precious");
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("is not 64 hex digits") && text.contains("more than the"),
        "{text}"
    );
    Ok(())
}
