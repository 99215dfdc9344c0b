//! The `zkpool` binary's answers to bad input: the message names the problem and
//! the exit code says whose it is.
use std::process::Command;

fn zkpool(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zkpool"))
        .args(args)
        .output()
        .expect("run zkpool");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[scheduler]\ntarget_task_seconds = 5\n").unwrap();
    let (code, out) = zkpool(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown field `target_task_seconds`"), "{out}");
    let (code, out) = zkpool(&["serve", "--config", "/nonexistent/pool.toml"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("cannot read config /nonexistent/pool.toml"),
        "{out}"
    );
    // The cause is said once, not once per layer that carries it.
    assert_eq!(out.matches("(os error 2)").count(), 1, "{out}");
}

#[test]
fn verify_refuses_what_is_not_a_result() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.json");
    std::fs::write(&f, "{\"hello\": 1}").unwrap();
    let id = "ab".repeat(32);
    let (code, out) = zkpool(&["verify", f.to_str().unwrap(), "--circuit-id", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("INVALID:") && out.contains("not a zkpool result file"),
        "{out}"
    );
    let (code, out) = zkpool(&["verify", "/nonexistent.json", "--circuit-id", &id]);
    assert_eq!(code, 2, "{out}");
    // Which circuit the result must be for is not optional.
    let (code, out) = zkpool(&["verify", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--circuit-id"), "{out}");
    // A job request (what `client example` prints) is named as one.
    let (_, job) = zkpool(&["client", "example", "chain"]);
    std::fs::write(&f, job).unwrap();
    let (code, out) = zkpool(&["verify", f.to_str().unwrap(), "--circuit-id", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("looks like a job request"), "{out}");
}

#[test]
fn client_example_prints_a_job_the_pool_accepts_shape_of() {
    let (code, out) = zkpool(&["client", "example", "batch", "--count", "2"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["statements"].as_array().unwrap().len(), 2);
    assert_eq!(v["circuit"], "preimage");
}

/// Real gnark proofs (zk/tests/fixtures/gnark) verify with `zkpool verify-gnark`, and
/// a proof checked against another proof's inputs does not.
#[test]
fn verify_gnark_accepts_real_gnark_proofs_and_refuses_mismatches() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../zk/tests/fixtures/gnark");
    let f = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    let (code, out) = zkpool(&[
        "verify-gnark",
        &f("vk.bin"),
        &f("proof-1.bin"),
        &f("public-1.json"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("OK: gnark proof verifies with 2 public input(s)"),
        "{out}"
    );
    let (code, out) = zkpool(&[
        "verify-gnark",
        &f("vk.bin"),
        &f("proof-4.bin"),
        &f("public-1.json"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID: proof does not verify"), "{out}");
    // The flags name each file, in any order.
    let (code, out) = zkpool(&[
        "verify-gnark",
        "--public",
        &f("public-1.json"),
        "--proof",
        &f("proof-1.bin"),
        "--vk",
        &f("vk.bin"),
    ]);
    assert_eq!(code, 0, "{out}");
    // A file that is not what it should be is not an invalid proof: exit 2,
    // naming the file and what it is not.
    let (code, out) = zkpool(&[
        "verify-gnark",
        &f("vk.bin"),
        &f("public-1.json"),
        &f("public-1.json"),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with(&format!(
            "zkpool: {} is not a gnark BN254 Groth16 proof",
            f("public-1.json")
        )),
        "{out}"
    );
    let (code, out) = zkpool(&[
        "verify-gnark",
        "--vk",
        &f("proof-1.bin"),
        "--proof",
        &f("proof-1.bin"),
        "--public",
        &f("public-1.json"),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "{} is not a gnark BN254 verifying key",
            f("proof-1.bin")
        )),
        "{out}"
    );
}

/// `verify-snarkjs` takes the same flags as `verify-gnark` (and snarkjs's own
/// positional order, VK PUBLIC PROOF); 0 valid, 1 invalid, 2 a file that cannot
/// be read or is not the file it should be, named.
#[test]
fn verify_snarkjs_takes_named_files_and_says_which_one_is_malformed() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../zk/tests/fixtures/circom");
    let f = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    let named = |vk: &str, proof: &str, public: &str| {
        zkpool(&[
            "verify-snarkjs",
            "--vk",
            &f(vk),
            "--proof",
            &f(proof),
            "--public",
            &f(public),
        ])
    };
    let (code, out) = named("mul.vk.json", "mul.proof.json", "mul.public.json");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: the proof verifies"), "{out}");
    let (code, out) = zkpool(&[
        "verify-snarkjs",
        &f("mul.vk.json"),
        &f("mul.public.json"),
        &f("mul.proof.json"),
    ]);
    assert_eq!(code, 0, "the positional order still works: {out}");
    // Another statement: a well-formed proof that does not verify.
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("public.json");
    std::fs::write(&other, "[\"2674\", \"11\"]").unwrap();
    let (code, out) = zkpool(&[
        "verify-snarkjs",
        "--vk",
        &f("mul.vk.json"),
        "--proof",
        &f("mul.proof.json"),
        "--public",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID:"), "{out}");
    // The public signals given as the proof: exit 2, naming that file.
    let (code, out) = named("mul.vk.json", "mul.public.json", "mul.public.json");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with(&format!(
            "zkpool: {} is not a snarkjs Groth16 proof",
            f("mul.public.json")
        )),
        "{out}"
    );
    let (code, out) = named("missing.json", "mul.proof.json", "mul.public.json");
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("cannot read {}", f("missing.json"))),
        "{out}"
    );
    // Half of the flags, or two positional files, is a usage error naming what is missing.
    let (code, out) = zkpool(&["verify-snarkjs", "--vk", &f("mul.vk.json")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("--proof <FILE>") && out.contains("--public <FILE>"),
        "{out}"
    );
}

/// `zkpool … | head -1`: when the reader has gone, the command ends quietly (exit 0,
/// nothing on stderr) instead of panicking with "failed printing to stdout: Broken
/// pipe". The pipe's read end is closed before the command starts, so every write
/// fails, as it does once `head` has its line.
#[test]
fn a_closed_pipe_on_stdout_ends_the_command_quietly() {
    for args in [
        &["client", "example", "batch", "--count", "2"][..],
        &["--help"][..],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_zkpool"))
            .args(args)
            .stdout(writer)
            .output()
            .expect("run zkpool");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "zkpool {args:?} into a closed pipe: {:?}, stderr:\n{stderr}",
            out.status
        );
    }
}

/// `zkpool serve`'s banner says where the data (and the keys that could forge
/// proofs) live, whether the admin API is on and from where its token came, and
/// the payout scheme; `ZKPOOL_ADMIN_TOKEN` turns the admin API on without a
/// config file, and operator commands with that token work.
#[test]
fn serve_takes_the_admin_token_from_the_environment_and_says_what_it_runs_with() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = "env-admin-token-0123456789abcdef";
    let mut pool = Command::new(env!("CARGO_BIN_EXE_zkpool"))
        .args([
            "serve",
            "--stratum-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(&data)
        .env("ZKPOOL_ADMIN_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run zkpool serve");
    let stdout = pool.stdout.take().expect("piped stdout");
    let mut banner = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.expect("banner line");
        let done = line.contains("open files:");
        banner.push(line);
        if done {
            break;
        }
    }
    let banner = banner.join("\n");
    let url = banner
        .lines()
        .find(|l| l.contains("serving:"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_owned);
    let ledger = url.as_deref().map(|url| {
        Command::new(env!("CARGO_BIN_EXE_zkpool"))
            .arg("ledger")
            .env("ZKPOOL_URL", url)
            .env("ZKPOOL_ADMIN_TOKEN", token)
            .output()
            .expect("run zkpool ledger")
    });
    let _ = pool.kill();
    let _ = pool.wait();
    for expected in [
        format!("data:       {}", data.display()),
        "admin API:  on (token from ZKPOOL_ADMIN_TOKEN)".to_owned(),
        "payouts:    prop, fee".to_owned(),
        "single-party setup".to_owned(),
    ] {
        assert!(banner.contains(&expected), "no {expected:?} in:\n{banner}");
    }
    let ledger = ledger.expect("a serving line with the HTTP address");
    let text = String::from_utf8_lossy(&ledger.stdout);
    assert!(
        ledger.status.success() && text.contains("balanced: yes"),
        "{text}{}",
        String::from_utf8_lossy(&ledger.stderr)
    );
}
