//! Interop with the circom and snarkjs tools: circomlibjs's Poseidon agrees with
//! ours, snarkjs accepts exported proofs, and a client's own circom circuit is
//! registered, proven (with snarkjs as an external prover) and accepted by snarkjs.

use std::{process::Command, time::Duration};

use anyhow::Context;
use serde_json::{json, Value};
use zkpool_tests::*;

use super::{chain_job, cli, completed, worker_work, ADMIN};

/// Our Poseidon chain agrees with circomlibjs (an independent implementation from
/// the npm registry), step by step.
#[test]
fn poseidon_chain_agrees_with_circomlibjs() -> anyhow::Result<()> {
    let interop = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../interop"));
    let node = node_with_packages(interop)?;
    let out = Command::new(node)
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

/// `zkpool export snarkjs` writes files that snarkjs (an independent Groth16
/// implementation from the npm registry) accepts, and snarkjs refuses a changed input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snarkjs_accepts_exported_proofs() -> anyhow::Result<()> {
    let interop = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../interop"));
    let node_bin = node_with_packages(interop)?;
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
    // Given with a trailing slash, as a shell's completion writes it.
    let st = Command::new(bin("zkpool"))
        .args(["export", "snarkjs"])
        .arg(&file)
        .arg("--out")
        .arg(format!("{}/", out.display()))
        .output()?;
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let said = String::from_utf8_lossy(&st.stdout);
    assert!(
        said.contains(&format!("{}/public-0.json", out.display())) && !said.contains("//"),
        "{said}"
    );

    let snarkjs = |public: &std::path::Path,
                   proof: &std::path::Path|
     -> anyhow::Result<(bool, String)> {
        let o = Command::new(&node_bin)
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

/// Node.js, with interop/'s npm packages installed from the lockfile; both are
/// installed when missing (see `zkpool_tests::tools`).
fn node_with_packages(interop: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    tools::npm_packages(interop, &["circomlibjs", "snarkjs", "circom2"])
        .map_err(anyhow::Error::msg)?;
    tools::require("node").map_err(anyhow::Error::msg)
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
    let node_bin = node_with_packages(interop)?;
    let snarkjs_cli = interop.join("node_modules/snarkjs/build/cli.cjs");
    let node = |args: &[&std::ffi::OsStr]| -> anyhow::Result<String> {
        let o = Command::new(&node_bin).args(args).output()?;
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

/// `zkpool circuits add NAME2` with a zkey already registered as NAME1, through
/// the CLI against a pool process: refused (exit 2) with a message that names
/// NAME1 and its id and says jobs must use them; NAME2 stays unknown (so no job
/// is ever accepted for a name that is not there), and adding it again under
/// NAME1 is the same circuit, not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zkey_registered_under_one_name_is_refused_under_another_naming_the_first(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = super::paying_pool_config(dir.path())?;
    let pool = PoolProcess::start(&cfg, None, &dir.path().join("pool.log"))?;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../zk/tests/fixtures/circom");
    let (r1cs, wasm, zkey) = (
        format!("{fixtures}/mul.r1cs"),
        format!("{fixtures}/mul.wasm"),
        format!("{fixtures}/mul.zkey"),
    );
    let input = format!("{fixtures}/mul.input.json");
    let add = |name: &str| {
        cli(
            "zkpool",
            &pool.base,
            &[
                "circuits", "add", name, "--r1cs", &r1cs, "--wasm", &wasm, "--zkey", &zkey,
                "--input", &input,
            ],
        )
    };
    let (ok, out) = add("mul-a");
    assert!(ok, "{out}");
    let first = pool.api.get("/v1/circuits/mul-a").await?;
    let id = first["id"].as_str().context("an id")?.to_owned();

    let (ok, out) = add("mul-b");
    assert!(
        !ok,
        "a second name for the same zkey must not look registered: {out}"
    );
    assert!(
        out.contains(&format!(
            "this zkey is already registered as circuit mul-a (id {id}): jobs must name mul-a or the id"
        )),
        "{out}"
    );
    assert!(out.contains("\"mul-b\" was not registered"), "{out}");
    let e = pool
        .api
        .get("/v1/circuits/mul-b")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("404"), "{e}");

    let (ok, out) = add("mul-a");
    assert!(
        ok && out.contains(&id),
        "the same name again is the same circuit: {out}"
    );
    Ok(())
}
