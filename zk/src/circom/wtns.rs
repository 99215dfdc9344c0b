//! snarkjs's `.wtns` witness file, which external provers (snarkjs, rapidsnark)
//! read: section 1 is the field size, prime and count; section 2 the values, in
//! standard form, little-endian.

use ark_bn254::Fr;
use ark_ff::PrimeField;

use super::{
    binfile::{modulus_le, Sections},
    CircomError,
};

pub fn write(witness: &[Fr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 32 * witness.len());
    out.extend_from_slice(b"wtns");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(4u64 + 32 + 4).to_le_bytes());
    out.extend_from_slice(&32u32.to_le_bytes());
    out.extend_from_slice(&modulus_le::<Fr>());
    out.extend_from_slice(&(witness.len() as u32).to_le_bytes());
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(32 * witness.len() as u64).to_le_bytes());
    for w in witness {
        for limb in w.into_bigint().0 {
            out.extend_from_slice(&limb.to_le_bytes());
        }
    }
    out
}

pub fn read(bytes: &[u8]) -> Result<Vec<Fr>, CircomError> {
    let s = Sections::parse("wtns", b"wtns", bytes)?;
    let mut h = s.section(1, "header")?;
    let n8 = h.u32()?;
    let prime = h.bytes(n8 as usize)?;
    if n8 != 32 || prime != modulus_le::<Fr>() {
        return Err(CircomError::Curve {
            file: "wtns",
            detail: "its prime is not BN254's scalar field".into(),
        });
    }
    let n = h.u32()? as usize;
    let mut v = s.section(2, "values")?;
    if v.remaining() != 32 * n {
        return Err(CircomError::format(
            "wtns",
            format!(
                "{n} values need {} bytes, the section has {}",
                32 * n,
                v.remaining()
            ),
        ));
    }
    (0..n).map(|i| v.fr(&format!("value {i}"))).collect()
}
