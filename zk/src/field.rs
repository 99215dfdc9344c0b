//! Strict text encodings of BN254 scalar field elements.
//!
//! Field elements travel as decimal strings (the convention of snarkjs'
//! `public.json` and circom's input JSON). A value `>= r` is refused, never
//! reduced: reducing would let two different strings name the same statement.

use ark_ff::{BigInteger, PrimeField};
use num_bigint::BigUint;
use serde::{Deserialize, Deserializer, Serializer};

use crate::Fr;

/// Why a string is not a canonical scalar field element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The string is empty or has a character that is not a decimal digit.
    #[error("{0:?} is not a decimal integer (field elements are decimal strings such as \"42\")")]
    NotDecimal(String),
    /// The value is at least the BN254 scalar modulus r; it must be reduced by the sender.
    #[error(
        "{0} is not below the BN254 scalar field modulus r (values must be canonical, 0 <= x < r)"
    )]
    OutOfRange(String),
}

/// Parses a canonical decimal field element: digits only, no sign, value < r.
pub fn parse_fr(s: &str) -> Result<Fr, FieldError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::NotDecimal(s.chars().take(80).collect()));
    }
    if s.len() > 80 {
        return Err(FieldError::OutOfRange(format!("{}...", &s[..40])));
    }
    let n = BigUint::parse_bytes(s.as_bytes(), 10)
        .ok_or_else(|| FieldError::NotDecimal(s.to_owned()))?;
    let modulus: BigUint = Fr::MODULUS.into();
    if n >= modulus {
        return Err(FieldError::OutOfRange(s.to_owned()));
    }
    let big = <Fr as PrimeField>::BigInt::try_from(n)
        .map_err(|_| FieldError::OutOfRange(s.to_owned()))?;
    Fr::from_bigint(big).ok_or_else(|| FieldError::OutOfRange(s.to_owned()))
}

/// The decimal form of a field element.
pub fn fr_to_string(x: &Fr) -> String {
    let n: BigUint = x.into_bigint().into();
    n.to_str_radix(10)
}

/// 32 big-endian bytes of a field element (used in digests).
pub fn fr_to_be_bytes(x: &Fr) -> Vec<u8> {
    x.into_bigint().to_bytes_be()
}

/// serde helpers: a `Vec<Fr>` as a list of decimal strings.
pub mod serde_fr_vec {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[Fr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(fr_to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Fr>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter()
            .map(|s| parse_fr(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// serde helpers: one `Fr` as a decimal string.
pub mod serde_fr {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Fr, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fr_to_string(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Fr, D::Error> {
        let raw = String::deserialize(d)?;
        parse_fr(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn modulus_is_refused_and_modulus_minus_one_accepted() {
        let r = "21888242871839275222246405745257275088548364400416034343698204186575808495617";
        assert_eq!(parse_fr(r), Err(FieldError::OutOfRange(r.to_owned())));
        let r1 = "21888242871839275222246405745257275088548364400416034343698204186575808495616";
        assert_eq!(fr_to_string(&parse_fr(r1).unwrap()), r1);
    }

    #[test]
    fn non_decimal_is_refused() {
        for bad in ["", "-1", "0x10", "1e3", " 1", "１"] {
            assert!(
                matches!(parse_fr(bad), Err(FieldError::NotDecimal(_))),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn decimal_round_trips(limbs in proptest::array::uniform4(any::<u64>())) {
            let x = Fr::from_bigint(ark_ff::BigInt::new(limbs)).unwrap_or(Fr::from(limbs[0]));
            prop_assert_eq!(parse_fr(&fr_to_string(&x)).unwrap(), x);
        }
    }
}
