//! snarkjs JSON formats: `proof.json`, `public.json` and `verification_key.json`,
//! so anyone can check zkpool's proofs with `snarkjs groth16 verify`.
//!
//! G1 points are `["x", "y", "1"]`, G2 points `[["x.c0", "x.c1"], ["y.c0", "y.c1"], ["1", "0"]]`,
//! all decimal strings (the same `[c0, c1]` order as arkworks' `Fq2::new(c0, c1)`; Solidity
//! calldata is the reverse). The Groth16 verification equation does not depend on how
//! the prover reduced R1CS to a QAP, so snarkjs accepts proofs made by ark-groth16.

use ark_bn254::{G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::PrimeField;
use num_bigint::BigUint;
use serde_json::{json, Value};

use crate::{field::fr_to_string, keys::VerifierKey, proof::ProofBytes, Fr, VerifyError};

fn fq(x: &ark_bn254::Fq) -> String {
    let n: BigUint = x.into_bigint().into();
    n.to_str_radix(10)
}

fn g1(p: &G1Affine) -> Value {
    match p.xy() {
        Some((x, y)) => json!([fq(&x), fq(&y), "1"]),
        None => json!(["0", "1", "0"]),
    }
}

fn g2(p: &G2Affine) -> Value {
    match p.xy() {
        Some((x, y)) => json!([[fq(&x.c0), fq(&x.c1)], [fq(&y.c0), fq(&y.c1)], ["1", "0"]]),
        None => json!([["0", "0"], ["1", "0"], ["0", "0"]]),
    }
}

/// A proof as snarkjs' `proof.json`.
pub fn proof_json(proof: &ProofBytes) -> Result<Value, VerifyError> {
    let p = proof.decode()?;
    Ok(
        json!({ "pi_a": g1(&p.a), "pi_b": g2(&p.b), "pi_c": g1(&p.c), "protocol": "groth16", "curve": "bn128" }),
    )
}

/// Public inputs as snarkjs' `public.json`.
pub fn public_json(public: &[Fr]) -> Value {
    Value::Array(
        public
            .iter()
            .map(|x| Value::String(fr_to_string(x)))
            .collect(),
    )
}

/// A verifying key as snarkjs' `verification_key.json`.
pub fn vk_json(key: &VerifierKey) -> Value {
    let vk = &key.vk;
    json!({
        "protocol": "groth16",
        "curve": "bn128",
        "nPublic": key.public_inputs(),
        "vk_alpha_1": g1(&vk.alpha_g1),
        "vk_beta_2": g2(&vk.beta_g2),
        "vk_gamma_2": g2(&vk.gamma_g2),
        "vk_delta_2": g2(&vk.delta_g2),
        "IC": vk.gamma_abc_g1.iter().map(g1).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CircuitKeys, CircuitSpec};

    #[test]
    fn shapes_match_snarkjs() {
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 5).unwrap();
        let s = CircuitSpec::preimage_statement(Fr::from(3u64));
        let p = proof_json(&keys.prove(&s).unwrap()).unwrap();
        assert_eq!(p["pi_a"].as_array().unwrap().len(), 3);
        assert_eq!(p["pi_b"][2], json!(["1", "0"]));
        let vk = vk_json(&keys.verifier);
        assert_eq!(vk["nPublic"], 1);
        assert_eq!(vk["IC"].as_array().unwrap().len(), 2);
        assert_eq!(public_json(&s.public)[0], json!(fr_to_string(&s.public[0])));
    }
}
