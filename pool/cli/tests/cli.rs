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
    let (code, out) = zkpool(&[
        "verify-gnark",
        &f("vk.bin"),
        &f("public-1.json"),
        &f("public-1.json"),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID: proof:"), "{out}");
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
