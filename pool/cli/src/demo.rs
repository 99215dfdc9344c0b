//! `zkpool demo`: a throw-away pool and two miners in this process, a paid chain job
//! and a paid batch job, then everything a user would check: the results verified
//! offline, the credited work, the settlements, a payout batch, the miners' receipt
//! audits and the books.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use pool::{api::Client, Config};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::client::{example_job, progress_line, ExampleKind};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Segments of the chain job.
    #[arg(long, default_value_t = 16)]
    chain_segments: u64,
    /// Statements of the batch job.
    #[arg(long, default_value_t = 32)]
    batch_statements: u64,
    /// Write the two result files into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut config = Config::default();
    config.storage.data_dir = tmp.path().join("pool");
    config.scheduler.target_task_secs = 2.0;
    config.stratum.listen = "127.0.0.1:0".parse()?;
    config.http.listen = "127.0.0.1:0".parse()?;
    let admin_token = format!("demo-{}", hex::encode(rand::random::<[u8; 16]>()));
    config.http.admin_token = Some(admin_token.clone());
    config.payouts.threshold = 1;
    println!("zkpool demo: a pool and two miners on this machine, one chain job and one batch job");
    println!("1. setting up the pool (Groth16 keys for the built-in circuits)...");
    let stratum = TcpListener::bind(config.stratum.listen).await?;
    let http = TcpListener::bind(config.http.listen).await?;
    let pool = pool::start(config, stratum, http).await?;
    for c in pool.state.circuits().all() {
        println!(
            "   circuit {:<9} {} | {} constraints per proof",
            c.record.name, c.record.id, c.record.constraints
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let stop = CancellationToken::new();
    let mut miners = vec![];
    let mut stats = vec![];
    for (i, worker) in ["alice.rig1", "bob.rig1"].into_iter().enumerate() {
        let cfg = miner::MinerConfig {
            pools: vec![miner::PoolUrl {
                host: "127.0.0.1".into(),
                port: pool.stratum_addr.port(),
                tls: false,
            }],
            worker: worker.into(),
            password: None,
            threads: (cores / 2).max(1),
            cache_dir: tmp.path().join(format!("miner{i}")),
            status_interval: Duration::ZERO,
            max_backoff: Duration::from_secs(2),
            tls_ca: None,
            prover_cmd: None,
            precompute_mem: 0,
            witness_engine: Default::default(),
        };
        let s = Arc::new(miner::Stats::default());
        stats.push((worker, s.clone()));
        miners.push(tokio::spawn(miner::run(cfg, s, stop.clone())));
    }
    println!(
        "2. started miners alice.rig1 and bob.rig1 for stratum+tcp://{} ({} prover thread(s) each)",
        pool.stratum_addr,
        (cores / 2).max(1)
    );

    let base = format!("http://{}", pool.http_addr);
    let operator = Client::new(&base).with_token(Some(admin_token));
    let key = operator.post("/v1/clients", &json!({"id": "acme"})).await?["api_key"]
        .as_str()
        .context("no API key")?
        .to_owned();
    operator
        .post(
            "/v1/clients/acme/deposits",
            &json!({"amount": 2_500_000, "reference": "demo-wire-1"}),
        )
        .await?;
    let client_api = Client::new(&base).with_token(Some(key));
    // acme's jobs are private: the demo follows them with acme's key.
    let api = &client_api;
    let paid_job = |kind, count, reward: u64| {
        let mut j = example_job(kind, count);
        let o = j.as_object_mut().expect("jobs are objects");
        o.insert("reward".into(), reward.into());
        j
    };
    let chain = client_api
        .submit_job(&paid_job(ExampleKind::Chain, a.chain_segments, 1_000_000))
        .await?;
    let batch = client_api
        .submit_job(&paid_job(ExampleKind::Batch, a.batch_statements, 1_000_000))
        .await?;
    let ids = [chain.id.clone(), batch.id.clone()];
    println!(
        "3. client acme (deposit 2,500,000) submitted jobs over HTTP, 1,000,000 escrowed each: chain {} ({} segments), batch {} ({} statements)",
        ids[0], a.chain_segments, ids[1], a.batch_statements
    );

    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    let mut last = String::new();
    loop {
        let mut lines = vec![];
        let mut all = true;
        for id in &ids {
            let v = api.get(&format!("/v1/jobs/{id}")).await?;
            all &= v["state"] == "completed";
            lines.push(progress_line(&v));
        }
        let line = lines.join("   ");
        if line != last {
            println!("   {line}");
            last = line;
        }
        if all {
            break;
        }
        if Instant::now() > deadline {
            bail!("jobs did not finish within {}s", a.timeout);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    println!("4. results, verified here offline from the result files alone:");
    let status = api.get("/v1/status").await?;
    for id in &ids {
        let v = api.get(&format!("/v1/jobs/{id}/result")).await?;
        let result: zk::JobResult = serde_json::from_value(v.clone())?;
        // Pinned to the circuit the job was submitted for, as a client should.
        let job = api.job(id).await?;
        let circuit = job.circuit_id.as_str();
        let n = result
            .verify_pinned(circuit)
            .map_err(|e| anyhow::anyhow!("result of {id} does not verify: {e}"))?;
        print!(
            "   {id} {:<8} {n} proofs verified, digest {}",
            result.circuit.name(),
            &result.digest[..16]
        );
        if let Some(c) = &result.chain {
            print!(
                " | H^{}(1) = {}...",
                c.segments * c.steps_per_segment as u64,
                &zk::field::fr_to_string(&c.output)[..20]
            );
        }
        println!();
        // The same job checked the way a client that wants one small thing does:
        // its aggregate alone, pinned to the pool's SRS (the demo's is the
        // insecure test SRS, so this shows the flow, not trust).
        let agg = api.aggregate(id).await?;
        let srs_id = status["aggregation"]["srs_id"].as_str().unwrap_or_default();
        let checked = agg
            .verify(circuit, Some(srs_id))
            .map_err(|e| anyhow::anyhow!("aggregate of {id} does not verify: {e}"))?;
        println!(
            "     aggregate: {} statements in {} proof(s) of {} bytes instead of {n} proofs, checked against the public inputs{} (SRS {}..., insecure test SRS)",
            checked.statements,
            checked.parts,
            agg.aggregate.parts.iter().map(|p| p.proof.len() / 2).sum::<usize>(),
            if agg.chain.is_some() { " and chain links" } else { "" },
            &checked.srs_id[..12]
        );
        if let Some(dir) = &a.out {
            std::fs::create_dir_all(dir)?;
            let p = dir.join(format!("{}-{id}.json", result.circuit.name()));
            std::fs::write(&p, serde_json::to_string_pretty(&v)?)?;
            let pa = dir.join(format!("{}-{id}.aggregate.json", result.circuit.name()));
            std::fs::write(&pa, serde_json::to_string_pretty(&agg)?)?;
            println!(
                "     written to {} (zkpool verify {} --circuit-id {circuit})",
                p.display(),
                p.display()
            );
            println!(
                "     and {} (zkpool verify {} --aggregate-only --circuit-id {circuit} --srs-id {srs_id} --insecure-srs)",
                pa.display(),
                pa.display()
            );
        }
    }
    println!("5. credited work (constraints of verified proofs):");
    let mut total = 0;
    for (worker, s) in &stats {
        let v = api.get(&format!("/v1/workers/{worker}")).await?;
        let work = v["work"].as_u64().unwrap_or(0);
        total += work;
        let proving = s.proving_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9;
        println!(
            "   {worker:<11} {:>4} proofs {:>10} work | proved for {proving:.1}s",
            v["proofs"], work
        );
    }
    let expected: u64 = chain.total_work + batch.total_work;
    println!(
        "   total {total} = jobs' total work {expected}: {}",
        if total == expected { "OK" } else { "MISMATCH" }
    );
    println!("6. settlements (prop, 1 % fee; parts by work, largest remainder):");
    for id in &ids {
        // The settlement is written right after the result; wait for it.
        let mut v = api.get(&format!("/v1/jobs/{id}/credits")).await?;
        for _ in 0..50 {
            if !v["settlement"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            v = api.get(&format!("/v1/jobs/{id}/credits")).await?;
        }
        let s = &v["settlement"];
        let parts: Vec<String> = s["parts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        format!(
                            "{} {} (work {})",
                            p["worker"].as_str().unwrap_or("?"),
                            p["amount"],
                            p["work"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "   {id}: earned {} fee {} -> {} | {} credits, root {}…",
            s["earned"],
            s["fee"],
            parts.join(", "),
            s["credits"],
            &v["credits_root"].as_str().unwrap_or("")[..16]
        );
    }
    let plan = operator.post("/v1/payouts", &json!({})).await?;
    let batch_id = plan["batch"]["id"].as_u64().context("nothing to pay out")?;
    let csv = operator
        .get_text(&format!("/v1/payouts/{batch_id}?format=csv"))
        .await?;
    operator
        .post(
            &format!("/v1/payouts/{batch_id}/confirm"),
            &json!({"tx": "demo-tx-0001"}),
        )
        .await?;
    println!(
        "7. payout batch {batch_id} planned, exported and confirmed (tx demo-tx-0001):\n   {}",
        csv.trim_end().replace('\n', "\n   ")
    );
    stop.cancel();
    for m in miners {
        let _ = m.await;
    }
    println!("8. each miner audits its signed receipts against the published credit roots:");
    let mut audit_ok = true;
    for (i, (worker, _)) in stats.iter().enumerate() {
        let path = tmp.path().join(format!("miner{i}")).join("receipts.jsonl");
        let r = miner::receipts::audit(&path).await?;
        audit_ok &= r.problems.is_empty();
        println!(
            "   {worker}: {} receipts, {} jobs settled: {}",
            r.receipts,
            r.jobs_settled,
            if r.problems.is_empty() {
                "everything matches".to_owned()
            } else {
                r.problems.join("; ")
            }
        );
    }
    let books = operator.get("/v1/ledger").await?;
    println!(
        "   books: deposited {} = client {} + escrow {} + miners {} + pending {} + paid {} + withdrawn {} + fees {} + funds {}: {}",
        books["audit"]["deposited"],
        books["audit"]["clients"],
        books["audit"]["escrow"],
        books["audit"]["miners"],
        books["audit"]["pending"],
        books["audit"]["paid"],
        books["audit"]["withdrawn"],
        books["audit"]["fees"],
        books["audit"]["funds"],
        if books["audit"]["balanced"] == true { "balanced" } else { "NOT BALANCED" }
    );
    pool.shutdown(Duration::from_secs(5)).await;
    if !audit_ok || books["audit"]["balanced"] != true {
        bail!("the receipts audit or the books failed");
    }
    if total != expected {
        bail!("credited work {total} does not equal the jobs' work {expected}");
    }
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    println!(
        "next: run a pool that stays up: `zkpool serve` (stratum on port 3333, the dashboard at http://127.0.0.1:8080/),\n      \
         point a rig at it: `zkminer --pool stratum+tcp://127.0.0.1:3333 --worker YOURNAME.rig1`,\n      \
         and submit work: `zkpool client submit job.json --wait` (README: \"Run a pool and point miners at it\")"
    );
    Ok(())
}
