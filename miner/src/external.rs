//! External provers for circom circuits: `zkminer --prover-cmd TEMPLATE` hands each
//! statement to another program (snarkjs, rapidsnark, a GPU prover) instead of the
//! built-in ark-groth16 prover.
//!
//! For each statement the miner computes the witness itself (so it knows the
//! public signals), writes it as a snarkjs `.wtns`, runs the template through
//! `sh -c` with these placeholders replaced by (shell-quoted) paths:
//! - `{zkey}`: the circuit's snarkjs proving key, as the client uploaded it;
//! - `{wtns}`: the witness;
//! - `{proof}`: where the program must write snarkjs `proof.json`;
//! - `{public}`: where it may write `public.json` (checked against ours if written).
//!
//! The proof it writes is verified locally before it is submitted. When the
//! program fails (non-zero exit, no or malformed proof, wrong public signals, a
//! proof that does not verify, or no answer within [`TIMEOUT`]), that statement is
//! proven with the built-in prover instead and the reason is logged; after
//! [`MAX_FAILURES`] failures in a row the external prover is switched off for the
//! life of the process, with an error saying so. Built-in circuits always use the
//! built-in prover: they have no zkey.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

use zk::{CircuitKeys, ProofBytes, Statement};

/// How long one external proof may take before it counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(600);
/// Failures in a row after which the external prover is switched off.
pub const MAX_FAILURES: u32 = 3;

const PLACEHOLDERS: [&str; 4] = ["{zkey}", "{wtns}", "{proof}", "{public}"];

pub struct ExternalProver {
    template: String,
    /// Work files: `{cache}/external`.
    dir: PathBuf,
    /// Where the key cache keeps bundles (`{hash}.pk`).
    cache_dir: PathBuf,
    failures: AtomicU32,
    disabled: AtomicBool,
    runs: AtomicU64,
}

impl ExternalProver {
    /// Checks the template: it must name `{proof}` and use no unknown placeholder.
    pub fn new(template: &str, cache_dir: &Path) -> Result<Self, String> {
        let t = template.trim();
        if t.is_empty() {
            return Err("--prover-cmd is empty".into());
        }
        if !t.contains("{proof}") {
            return Err(
                "--prover-cmd must contain {proof}: where the prover writes snarkjs proof.json"
                    .into(),
            );
        }
        let mut rest = t;
        while let Some(i) = rest.find('{') {
            let tail = &rest[i..];
            let end = tail.find('}').map(|j| j + 1).unwrap_or(tail.len());
            let word = &tail[..end];
            if !PLACEHOLDERS.contains(&word) {
                return Err(format!(
                    "--prover-cmd: unknown placeholder {word}; the placeholders are {}",
                    PLACEHOLDERS.join(" ")
                ));
            }
            rest = &tail[end..];
        }
        Ok(ExternalProver {
            template: t.to_owned(),
            dir: cache_dir.join("external"),
            cache_dir: cache_dir.to_owned(),
            failures: AtomicU32::new(0),
            disabled: AtomicBool::new(false),
            runs: AtomicU64::new(0),
        })
    }

    pub fn template(&self) -> &str {
        &self.template
    }

    /// Whether it is still in use (not switched off after repeated failures).
    pub fn active(&self) -> bool {
        !self.disabled.load(Relaxed)
    }

    /// Proves `s` with the external program; the proof verified locally. Blocking.
    pub fn prove(
        &self,
        keys: &CircuitKeys,
        key_hash: &str,
        s: &Statement,
    ) -> Result<ProofBytes, String> {
        let result = self.try_prove(keys, key_hash, s);
        match &result {
            Ok(_) => self.failures.store(0, Relaxed),
            Err(_) => {
                if self.failures.fetch_add(1, Relaxed) + 1 >= MAX_FAILURES
                    && !self.disabled.swap(true, Relaxed)
                {
                    tracing::error!(
                        failures = MAX_FAILURES,
                        cmd = %self.template,
                        "the external prover failed {MAX_FAILURES} times in a row: switched off, proving with the built-in prover from now on"
                    );
                }
            }
        }
        result
    }

    fn try_prove(
        &self,
        keys: &CircuitKeys,
        key_hash: &str,
        s: &Statement,
    ) -> Result<ProofBytes, String> {
        let zkey = self.zkey(key_hash)?;
        let witness = keys.circom_witness(s).map_err(|e| e.to_string())?;
        let run = self.runs.fetch_add(1, Relaxed);
        let work = self.dir.join(format!("run-{}-{run}", std::process::id()));
        std::fs::create_dir_all(&work)
            .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let outcome = (|| {
            let wtns = work.join("witness.wtns");
            let (proof, public) = (work.join("proof.json"), work.join("public.json"));
            std::fs::write(&wtns, zk::circom::wtns::write(&witness))
                .map_err(|e| format!("cannot write {}: {e}", wtns.display()))?;
            let cmd = self
                .template
                .replace("{zkey}", &quote(&zkey))
                .replace("{wtns}", &quote(&wtns))
                .replace("{proof}", &quote(&proof))
                .replace("{public}", &quote(&public));
            run_with_timeout(&cmd, TIMEOUT)?;
            let read = |p: &Path| -> Result<serde_json::Value, String> {
                let bytes =
                    std::fs::read(p).map_err(|e| format!("it wrote no {} ({e})", p.display()))?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{} is not JSON: {e}", p.display()))
            };
            let proof = zk::snarkjs::proof_from_json(&read(&proof)?)
                .map_err(|e| format!("its proof.json is not a usable proof: {e}"))?;
            if public.exists() {
                let theirs = zk::snarkjs::public_from_json(&read(&public)?)
                    .map_err(|e| format!("its public.json: {e}"))?;
                if theirs != s.public {
                    return Err(
                        "its public.json differs from the statement's public signals".into(),
                    );
                }
            }
            keys.verifier
                .verify(&s.public, &proof)
                .map_err(|e| format!("the proof it wrote does not verify: {e}"))?;
            Ok(proof)
        })();
        let _ = std::fs::remove_dir_all(&work);
        outcome
    }

    /// The circuit's zkey as a file, cut out of the cached bundle once.
    fn zkey(&self, key_hash: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("{key_hash}.zkey"));
        if path.exists() {
            return Ok(path);
        }
        let bundle_path = self.cache_dir.join(format!("{key_hash}.pk"));
        let bytes = std::fs::read(&bundle_path).map_err(|e| {
            format!(
                "cannot read the circuit bundle {}: {e}",
                bundle_path.display()
            )
        })?;
        let bundle = zk::circom::Bundle::decode(&bytes).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bundle.zkey)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Runs `sh -c cmd`; an error carries the exit status and the end of its output.
fn run_with_timeout(cmd: &str, timeout: Duration) -> Result<(), String> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start sh: {e}"))?;
    // Drain the pipes on threads, so a chatty prover never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut p) = pipe {
                let _ = std::io::Read::read_to_end(&mut p, &mut out);
            }
            out
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it gave no answer in {} s and was killed",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(if err.is_empty() { &out } else { &err }).into_owned();
    let tail: String = text
        .trim()
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(format!("it exited with {status}: {tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked_before_any_run() {
        let dir = std::env::temp_dir();
        assert!(
            ExternalProver::new("snarkjs groth16 prove {zkey} {wtns} {proof} {public}", &dir)
                .is_ok()
        );
        let e = ExternalProver::new("prove {zkey} {wtns}", &dir)
            .err()
            .unwrap();
        assert!(e.contains("must contain {proof}"), "{e}");
        let e = ExternalProver::new("prove {zkey} {witness} {proof}", &dir)
            .err()
            .unwrap();
        assert!(e.contains("unknown placeholder {witness}"), "{e}");
        assert!(ExternalProver::new("  ", &dir)
            .err()
            .unwrap()
            .contains("empty"));
    }

    #[test]
    fn a_failing_command_reports_its_status_and_output() {
        let e = run_with_timeout("echo 'no such zkey' >&2; exit 3", Duration::from_secs(10))
            .unwrap_err();
        assert!(
            e.contains("exit status: 3") && e.contains("no such zkey"),
            "{e}"
        );
        let e = run_with_timeout("sleep 5", Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("no answer"), "{e}");
        run_with_timeout("true", Duration::from_secs(10)).unwrap();
    }
}
