//! Proofs from zkpool's prover (with and without tables) on a snarkjs zkey
//! verify under snarkjs itself, an independent Groth16 implementation from the
//! npm registry (interop/node_modules, installed from the lockfile when
//! missing, as the end-to-end tests do).

use std::{path::Path, process::Command, sync::Arc};

use zk::{
    circom::Bundle,
    prover::Tables,
    snarkjs::{proof_json, public_json, vk_json},
    CircuitKeys, CircuitSpec, Fr, Statement,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/circom");

fn ensure_npm_packages(interop: &Path) {
    if !interop.join("node_modules/snarkjs").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(interop)
            .status()
            .expect("npm is needed for the snarkjs interop test (node >= 18)");
        assert!(ok.success(), "npm ci in interop/ failed");
    }
}

#[test]
fn snarkjs_verifies_proofs_from_zkpools_prover() {
    let interop = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../interop"));
    ensure_npm_packages(interop);
    let read = |f: &str| std::fs::read(format!("{FIXTURES}/{f}")).unwrap();
    let (r1cs, wasm, zkey) = (read("mul.r1cs"), read("mul.wasm"), read("mul.zkey"));
    let bundle = Bundle {
        r1cs: &r1cs,
        wasm: &wasm,
        zkey: &zkey,
    }
    .encode();
    let hash = zk::sha256_hex(&bundle);
    let spec = CircuitSpec::Circom {
        constraints: 5,
        public: 2,
    };
    let keys = CircuitKeys::from_pk_bytes(spec, &bundle, &hash).unwrap();
    let input: serde_json::Value = serde_json::from_slice(&read("mul.input.json")).unwrap();
    let statement = Statement {
        public: vec![Fr::from(3u64.pow(5) * 11), Fr::from(11u64)],
        private: vec![],
        input: Some(input),
    };

    let dir = tempfile::tempdir().unwrap();
    let vk = dir.path().join("vk.json");
    std::fs::write(&vk, vk_json(&keys.verifier).to_string()).unwrap();
    let public = dir.path().join("public.json");
    std::fs::write(&public, public_json(&statement.public).to_string()).unwrap();
    let snarkjs = |proof: &Path| {
        let o = Command::new("node")
            .arg(interop.join("node_modules/snarkjs/build/cli.cjs"))
            .args(["groth16", "verify"])
            .arg(&vk)
            .arg(&public)
            .arg(proof)
            .output()
            .expect("node runs");
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        (o.status.success() && text.contains("OK!"), text)
    };

    let tables = Tables::build(&keys.pk, &hash, &keys.table_plan(u64::MAX)).unwrap();
    for (name, t) in [("no tables", None), ("tables", Some(Arc::new(tables)))] {
        keys.use_engine(t);
        let proof = keys.prove(&statement).unwrap();
        let file = dir
            .path()
            .join(format!("proof-{}.json", name.replace(' ', "-")));
        std::fs::write(&file, proof_json(&proof).unwrap().to_string()).unwrap();
        let (ok, text) = snarkjs(&file);
        assert!(ok, "snarkjs refused zkpool's proof ({name}): {text}");
        assert_eq!(keys.engine_failures(), 0);
    }
    // And refuses one for other inputs.
    let other = dir.path().join("public-other.json");
    std::fs::write(
        &other,
        public_json(&[statement.public[0] + Fr::from(1u64), statement.public[1]]).to_string(),
    )
    .unwrap();
    let o = Command::new("node")
        .arg(interop.join("node_modules/snarkjs/build/cli.cjs"))
        .args(["groth16", "verify"])
        .arg(&vk)
        .arg(&other)
        .arg(dir.path().join("proof-tables.json"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("OK!"));
}
