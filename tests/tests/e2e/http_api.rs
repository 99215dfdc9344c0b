//! The HTTP API as a client meets it: the example jobs are accepted as they are,
//! bad job requests are refused saying what is wrong, and every documented route
//! is served.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use zkpool_tests::*;

use super::{chain_job, refused_result};

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

/// The stratum URL a new miner is told (`/v1/status` `connect`, the dashboard's
/// "how to connect" box): `stratum.public_url` when set; else the host miners
/// reach the API at (`http.public_url`) with the stratum port; the terms and the
/// zkminer line go with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_terms_name_the_public_stratum_url() -> anyhow::Result<()> {
    let (pool, _dir) = inproc_pool_with(
        "public_url = \"stratum+ssl://pool.example:443\"",
        "",
        "",
        "[payouts]\nfee_bps = 250\nscheme = \"pplns\"\nthreshold = 5000\n",
    )
    .await?;
    let status = Api::new(&format!("http://{}", pool.http_addr))
        .get("/v1/status")
        .await?;
    let c = &status["connect"];
    assert_eq!(c["stratum_url"], "stratum+ssl://pool.example:443", "{c}");
    assert_eq!(
        c["command"], "zkminer --pool stratum+ssl://pool.example:443 --worker ADDR.RIG",
        "{c}"
    );
    assert_eq!(
        (&c["fee_percent"], &c["scheme"], &c["payout_threshold"]),
        (&json!("2.50"), &json!("pplns"), &json!(5000)),
        "{c}"
    );
    assert_eq!(
        (&c["unit"], &c["decimals"]),
        (&json!("ZKP"), &json!(6)),
        "{c}"
    );
    pool.shutdown(Duration::from_secs(5)).await;

    let (pool, _dir) =
        inproc_pool_with("", "public_url = \"https://api.example:8443/\"", "", "").await?;
    let status = Api::new(&format!("http://{}", pool.http_addr))
        .get("/v1/status")
        .await?;
    assert_eq!(
        status["connect"]["stratum_url"],
        json!(format!(
            "stratum+tcp://api.example:{}",
            pool.stratum_addr.port()
        )),
        "{status}"
    );
    pool.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
