//! snarkjs JSON formats: `proof.json`, `public.json` and `verification_key.json`,
//! so anyone can check zkpool's proofs with `snarkjs groth16 verify`.
//!
//! G1 points are `["x", "y", "1"]`, G2 points `[["x.c0", "x.c1"], ["y.c0", "y.c1"], ["1", "0"]]`,
//! all decimal strings (the same `[c0, c1]` order as arkworks' `Fq2::new(c0, c1)`; Solidity
//! calldata is the reverse). The Groth16 verification equation does not depend on how
//! the prover reduced R1CS to a QAP, so snarkjs accepts proofs made by ark-groth16.
//!
//! The readers ([`proof_from_json`], [`public_from_json`], [`vk_from_json`]) take what
//! snarkjs (or an external prover speaking its formats) writes, and validate it
//! fully: numbers are canonical decimal strings below their modulus (never reduced),
//! points are on the curve, G2 points are in the subgroup.

use ark_bn254::{Fq, Fq2, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{PrimeField, Zero};
use ark_groth16::{Proof, VerifyingKey};
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

/// What is wrong with a snarkjs JSON document; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SnarkjsError(pub String);

fn bad(what: &str, why: impl std::fmt::Display) -> SnarkjsError {
    SnarkjsError(format!("{what}: {why}"))
}

/// A canonical decimal string below `modulus`.
fn decimal(v: &Value, what: &str, modulus: &BigUint) -> Result<BigUint, SnarkjsError> {
    let s = v
        .as_str()
        .ok_or_else(|| bad(what, format!("expected a decimal string, found {v}")))?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(bad(
            what,
            format!("{s:?} is not a canonical decimal number"),
        ));
    }
    let n = BigUint::parse_bytes(s.as_bytes(), 10).expect("digits checked");
    if &n >= modulus {
        return Err(bad(what, format!("{s} is not below the field modulus")));
    }
    Ok(n)
}

fn fq_from(v: &Value, what: &str) -> Result<Fq, SnarkjsError> {
    Ok(Fq::from(decimal(v, what, &Fq::MODULUS.into())?))
}

fn item<'a>(v: &'a Value, i: usize, len: usize, what: &str) -> Result<&'a Value, SnarkjsError> {
    match v.as_array() {
        Some(a) if a.len() == len => Ok(&a[i]),
        _ => Err(bad(what, format!("expected an array of {len}, found {v}"))),
    }
}

fn g1_from(v: &Value, what: &str) -> Result<G1Affine, SnarkjsError> {
    let (x, y, z) = (
        fq_from(item(v, 0, 3, what)?, what)?,
        fq_from(item(v, 1, 3, what)?, what)?,
        fq_from(item(v, 2, 3, what)?, what)?,
    );
    if z.is_zero() {
        return Ok(G1Affine::zero());
    }
    if z != Fq::from(1u64) {
        return Err(bad(
            what,
            "the point is not in affine form (z must be \"1\")",
        ));
    }
    let p = G1Affine::new_unchecked(x, y);
    if !p.is_on_curve() {
        return Err(bad(what, "the point is not on BN254's G1"));
    }
    Ok(p)
}

fn fq2_from(v: &Value, what: &str) -> Result<Fq2, SnarkjsError> {
    Ok(Fq2::new(
        fq_from(item(v, 0, 2, what)?, what)?,
        fq_from(item(v, 1, 2, what)?, what)?,
    ))
}

fn g2_from(v: &Value, what: &str) -> Result<G2Affine, SnarkjsError> {
    let (x, y, z) = (
        fq2_from(item(v, 0, 3, what)?, what)?,
        fq2_from(item(v, 1, 3, what)?, what)?,
        fq2_from(item(v, 2, 3, what)?, what)?,
    );
    if z.is_zero() {
        return Ok(G2Affine::zero());
    }
    if z != Fq2::from(1u64) {
        return Err(bad(
            what,
            "the point is not in affine form (z must be [\"1\", \"0\"])",
        ));
    }
    let p = G2Affine::new_unchecked(x, y);
    if !p.is_on_curve() {
        return Err(bad(what, "the point is not on BN254's G2"));
    }
    if !p.is_in_correct_subgroup_assuming_on_curve() {
        return Err(bad(what, "the point is not in BN254's G2 subgroup"));
    }
    Ok(p)
}

fn check_header(v: &Value) -> Result<(), SnarkjsError> {
    if let Some(p) = v.get("protocol") {
        if p != "groth16" {
            return Err(bad("protocol", format!("{p} is not groth16")));
        }
    }
    if let Some(c) = v.get("curve") {
        if c != "bn128" {
            return Err(bad(
                "curve",
                format!("{c}: zkpool verifies on bn128 (BN254) only"),
            ));
        }
    }
    Ok(())
}

/// Reads snarkjs' `proof.json`.
pub fn proof_from_json(v: &Value) -> Result<ProofBytes, SnarkjsError> {
    check_header(v)?;
    let field = |k: &str| v.get(k).ok_or_else(|| bad(k, "missing"));
    let proof = Proof::<ark_bn254::Bn254> {
        a: g1_from(field("pi_a")?, "pi_a")?,
        b: g2_from(field("pi_b")?, "pi_b")?,
        c: g1_from(field("pi_c")?, "pi_c")?,
    };
    Ok(ProofBytes::encode(&proof))
}

/// Reads snarkjs' `public.json`: decimal strings below the scalar field's modulus.
pub fn public_from_json(v: &Value) -> Result<Vec<Fr>, SnarkjsError> {
    let items = v
        .as_array()
        .ok_or_else(|| bad("public signals", "expected an array of decimal strings"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            Ok(Fr::from(decimal(
                x,
                &format!("public signal {i}"),
                &Fr::MODULUS.into(),
            )?))
        })
        .collect()
}

/// Reads snarkjs' `verification_key.json` (Groth16 on bn128).
pub fn vk_from_json(v: &Value) -> Result<VerifierKey, SnarkjsError> {
    if v.get("protocol").is_none() {
        return Err(bad(
            "protocol",
            "missing: is this a snarkjs verification_key.json?",
        ));
    }
    check_header(v)?;
    let field = |k: &str| v.get(k).ok_or_else(|| bad(k, "missing"));
    let ic = field("IC")?
        .as_array()
        .ok_or_else(|| bad("IC", "expected an array of G1 points"))?;
    if let Some(n) = v.get("nPublic") {
        if n.as_u64() != Some(ic.len() as u64 - 1).filter(|_| !ic.is_empty()) {
            return Err(bad(
                "nPublic",
                format!("{n} does not match IC's {} points", ic.len()),
            ));
        }
    }
    if ic.is_empty() {
        return Err(bad("IC", "empty"));
    }
    let vk = VerifyingKey::<ark_bn254::Bn254> {
        alpha_g1: g1_from(field("vk_alpha_1")?, "vk_alpha_1")?,
        beta_g2: g2_from(field("vk_beta_2")?, "vk_beta_2")?,
        gamma_g2: g2_from(field("vk_gamma_2")?, "vk_gamma_2")?,
        delta_g2: g2_from(field("vk_delta_2")?, "vk_delta_2")?,
        gamma_abc_g1: ic
            .iter()
            .enumerate()
            .map(|(i, p)| g1_from(p, &format!("IC[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    VerifierKey::new(vk).map_err(|e| bad("verification key", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CircuitKeys, CircuitSpec};

    #[test]
    fn what_we_write_reads_back_and_bad_numbers_are_named() {
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 6).unwrap();
        let s = CircuitSpec::preimage_statement(Fr::from(4u64));
        let proof = keys.prove(&s).unwrap();
        let back = proof_from_json(&proof_json(&proof).unwrap()).unwrap();
        assert_eq!(back, proof);
        assert_eq!(public_from_json(&public_json(&s.public)).unwrap(), s.public);
        let vk = vk_from_json(&vk_json(&keys.verifier)).unwrap();
        vk.verify(&s.public, &back).unwrap();

        let mut j = proof_json(&proof).unwrap();
        j["pi_a"][0] = json!("01");
        assert!(proof_from_json(&j)
            .unwrap_err()
            .0
            .contains("pi_a: \"01\" is not a canonical"));
        let mut j = proof_json(&proof).unwrap();
        j["pi_a"][1] = json!("5");
        assert!(proof_from_json(&j)
            .unwrap_err()
            .0
            .contains("not on BN254's G1"));
        let mut j = proof_json(&proof).unwrap();
        j["curve"] = json!("bls12381");
        assert!(proof_from_json(&j)
            .unwrap_err()
            .0
            .contains("bn128 (BN254) only"));
        let q: BigUint = Fq::MODULUS.into();
        let mut j = proof_json(&proof).unwrap();
        j["pi_c"][0] = json!(q.to_string());
        assert!(proof_from_json(&j)
            .unwrap_err()
            .0
            .contains("not below the field modulus"));
        let mut v = vk_json(&keys.verifier);
        v["nPublic"] = json!(2);
        assert!(vk_from_json(&v)
            .unwrap_err()
            .0
            .contains("does not match IC"));
    }

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
