//! The `zkminer` binary refuses bad settings at once with a message that says what to fix.
use std::process::Command;

fn zkminer(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zkminer"))
        .args(args)
        .arg("--cache-dir")
        .arg(dir.path())
        .output()
        .expect("run zkminer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn bad_pool_url_and_bad_worker_are_refused() {
    let (code, out) = zkminer(&["--pool", "pool.example", "--worker", "alice.rig1"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("bad pool URL \"pool.example\": expected stratum+tcp://HOST:PORT"),
        "{out}"
    );
    let (code, out) = zkminer(&["--pool", "stratum+tcp://127.0.0.1:1", "--worker", "alice"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not ADDR.RIG"), "{out}");
}

#[test]
fn benchmark_measures_each_circuit_without_a_pool() {
    let (code, out) = zkminer(&["--benchmark", "--benchmark-secs", "1", "--threads", "1"]);
    assert_eq!(code, 0, "{out}");
    for circuit in ["chain", "preimage"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(circuit))
            .unwrap_or_else(|| panic!("no {circuit} line in:\n{out}"));
        assert!(
            line.contains("proofs/s") && line.contains("constraints/s"),
            "{line}"
        );
    }
}

#[test]
fn a_pool_is_required_unless_benchmarking() {
    let (code, out) = zkminer(&["--worker", "alice.rig1"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--pool"), "{out}");
}

/// `zkminer --benchmark | head -1`: when the reader has gone, zkminer ends quietly
/// (exit 0, no panic report) instead of "failed printing to stdout: Broken pipe".
/// The pipe's read end is closed before zkminer starts, so its first line fails.
#[test]
fn a_closed_pipe_on_stdout_ends_zkminer_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_zkminer"))
        .args(["--benchmark", "--benchmark-secs", "1", "--threads", "1"])
        .arg("--cache-dir")
        .arg(dir.path())
        .stdout(writer)
        .output()
        .expect("run zkminer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "zkminer into a closed pipe: {:?}, stderr:\n{stderr}",
        out.status
    );
}

/// The sample config in deploy/ names no account, and the README's placeholder
/// account ADDR is refused: a rig never mines for an account nobody owns.
#[test]
fn the_sample_config_and_the_placeholder_account_are_refused_with_what_to_give() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/zkminer.toml");
    let (code, out) = zkminer(&["--config", sample]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no worker: give --worker ADDR.RIG"), "{out}");
    let (code, out) = zkminer(&["--config", sample, "--worker", "ADDR.rig1"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("names the placeholder account ADDR") && out.contains("--worker ACCOUNT.RIG"),
        "{out}"
    );
}

/// An unknown witness engine is refused before anything runs, naming the two
/// there are.
#[test]
fn an_unknown_witness_engine_is_refused_with_the_choices() {
    let (code, out) = zkminer(&[
        "--benchmark",
        "--benchmark-secs",
        "1",
        "--witness-engine",
        "jit",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("unknown witness engine \"jit\"")
            && out.contains("`compiled`")
            && out.contains("`interpreted`"),
        "{out}"
    );
}
