//! Proof encoding and verification.

use ark_groth16::{Groth16, Proof};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{keys::VerifierKey, Bn254, Fr};

/// Size of a compressed BN254 Groth16 proof: A (G1, 32) + B (G2, 64) + C (G1, 32).
pub const PROOF_LEN: usize = 128;
/// Size of an uncompressed one (each point's y included). Decoding it skips three
/// square roots, about 45 us of the 183 us a validated compressed decode costs on
/// the pool's hot path, so zkminer submits proofs this way.
pub const PROOF_LEN_UNCOMPRESSED: usize = 256;

/// Why a proof was not accepted. Every variant is a verdict about the proof, not
/// a fault of the verifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not a proof: wrong length, a point off the curve or outside
    /// the prime-order subgroup, or a non-canonical coordinate.
    #[error("malformed proof: {0}")]
    Malformed(String),
    /// The statement has a different number of public inputs from the key.
    #[error("wrong number of public inputs: the verifying key takes {expected}, got {got}")]
    InputCount { expected: usize, got: usize },
    /// The pairing check failed: the proof is not a proof of this statement.
    #[error("proof does not verify against the statement's public inputs")]
    Invalid,
}

/// A proof in arkworks' compressed encoding (128 bytes); hex on the wire.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProofBytes(pub Vec<u8>);

impl std::fmt::Debug for ProofBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProofBytes({})", hex::encode(&self.0))
    }
}

impl ProofBytes {
    pub fn encode(proof: &Proof<Bn254>) -> Self {
        let mut out = Vec::with_capacity(PROOF_LEN);
        proof
            .serialize_compressed(&mut out)
            .expect("serialising into a Vec cannot fail");
        ProofBytes(out)
    }

    /// The same proof in the uncompressed encoding (an uncompressed one as it is).
    pub fn to_uncompressed(&self) -> Result<Self, VerifyError> {
        if self.0.len() == PROOF_LEN_UNCOMPRESSED {
            return Ok(self.clone());
        }
        let proof = self.decode()?;
        let mut out = Vec::with_capacity(PROOF_LEN_UNCOMPRESSED);
        proof
            .serialize_uncompressed(&mut out)
            .expect("serialising into a Vec cannot fail");
        Ok(ProofBytes(out))
    }

    /// Decodes with full validation (on curve, in subgroup, canonical), which must
    /// precede any pairing on untrusted input. Both encodings are accepted: 128
    /// bytes compressed, 256 uncompressed.
    pub fn decode(&self) -> Result<Proof<Bn254>, VerifyError> {
        let compress = match self.0.len() {
            PROOF_LEN => Compress::Yes,
            PROOF_LEN_UNCOMPRESSED => Compress::No,
            n => {
                return Err(VerifyError::Malformed(format!(
                    "{n} bytes: a proof is {PROOF_LEN} bytes compressed or {PROOF_LEN_UNCOMPRESSED} uncompressed"
                )))
            }
        };
        let proof = Proof::<Bn254>::deserialize_with_mode(&self.0[..], compress, Validate::Yes)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        check_points(&proof)?;
        Ok(proof)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, VerifyError> {
        hex::decode(s)
            .map(ProofBytes)
            .map_err(|e| VerifyError::Malformed(format!("not hex: {e}")))
    }
}

impl Serialize for ProofBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ProofBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ProofBytes::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Refuses a proof with an identity point: no prover computes one (each point
/// carries fresh randomness), and with a degenerate key it is what a forger
/// sends. Checked on every decode, so no identity point reaches a pairing.
pub fn check_points(proof: &Proof<Bn254>) -> Result<(), VerifyError> {
    use ark_ec::AffineRepr;
    for (name, zero) in [
        ("A", proof.a.is_zero()),
        ("B", proof.b.is_zero()),
        ("C", proof.c.is_zero()),
    ] {
        if zero {
            return Err(VerifyError::Malformed(format!(
                "its {name} is the identity point, which no prover computes"
            )));
        }
    }
    Ok(())
}

impl VerifierKey {
    /// Verifies one proof against `public` inputs: decode with validation, check
    /// the input count (ark-groth16 0.6 does not), then the pairing equation.
    pub fn verify(&self, public: &[Fr], proof: &ProofBytes) -> Result<(), VerifyError> {
        let expected = self.public_inputs();
        if public.len() != expected {
            return Err(VerifyError::InputCount {
                expected,
                got: public.len(),
            });
        }
        self.verify_decoded(public, &proof.decode()?)
    }

    /// Verifies an already decoded (and validated) proof, checking the input count.
    pub fn verify_decoded(&self, public: &[Fr], proof: &Proof<Bn254>) -> Result<(), VerifyError> {
        check_points(proof)?;
        let expected = self.public_inputs();
        if public.len() != expected {
            return Err(VerifyError::InputCount {
                expected,
                got: public.len(),
            });
        }
        match Groth16::<Bn254>::verify_proof(&self.pvk, proof, public) {
            Ok(true) => Ok(()),
            Ok(false) => Err(VerifyError::Invalid),
            Err(e) => Err(VerifyError::Malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{circuits::CircuitSpec, keys::CircuitKeys};

    fn keys() -> (CircuitKeys, crate::Statement, ProofBytes) {
        let spec = CircuitSpec::Preimage;
        let keys = CircuitKeys::setup_seeded(spec, 1).unwrap();
        let s = CircuitSpec::preimage_statement(Fr::from(5u64));
        let p = keys.prove(&s).unwrap();
        (keys, s, p)
    }

    #[test]
    fn valid_proof_verifies_and_every_kind_of_bad_one_is_refused_with_its_reason() {
        let (keys, s, p) = keys();
        let v = &keys.verifier;
        assert_eq!(v.verify(&s.public, &p), Ok(()));

        // Another statement.
        let other = CircuitSpec::preimage_statement(Fr::from(6u64));
        assert_eq!(v.verify(&other.public, &p), Err(VerifyError::Invalid));

        // One input appended: ark-groth16 alone would ignore it.
        let mut more = s.public.clone();
        more.push(Fr::from(0u64));
        assert_eq!(
            v.verify(&more, &p),
            Err(VerifyError::InputCount {
                expected: 1,
                got: 2
            })
        );
        // One input dropped: ark-groth16 alone would treat it as zero.
        assert_eq!(
            v.verify(&[], &p),
            Err(VerifyError::InputCount {
                expected: 1,
                got: 0
            })
        );

        // Garbage bytes and a truncated proof.
        assert!(matches!(
            v.verify(&s.public, &ProofBytes(vec![0xAB; PROOF_LEN])),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            v.verify(&s.public, &ProofBytes(p.0[..100].to_vec())),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn the_uncompressed_encoding_is_the_same_proof_and_as_strictly_checked() {
        let (keys, s, p) = keys();
        let u = p.to_uncompressed().unwrap();
        assert_eq!(u.0.len(), PROOF_LEN_UNCOMPRESSED);
        assert_eq!(u.decode().unwrap(), p.decode().unwrap());
        keys.verifier.verify(&s.public, &u).unwrap();
        for byte in (0..PROOF_LEN_UNCOMPRESSED).step_by(5) {
            let mut bad = u.clone();
            bad.0[byte] ^= 1;
            assert!(
                keys.verifier.verify(&s.public, &bad).is_err(),
                "flip at byte {byte} of the uncompressed proof accepted"
            );
        }
        let e = ProofBytes(vec![0; 200]).decode().unwrap_err().to_string();
        assert!(
            e.contains("200 bytes: a proof is 128 bytes compressed or 256 uncompressed"),
            "{e}"
        );
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let (keys, s, p) = keys();
        for byte in 0..PROOF_LEN {
            for bit in [0u8, 3, 7] {
                let mut bad = p.clone();
                bad.0[byte] ^= 1 << bit;
                assert!(
                    keys.verifier.verify(&s.public, &bad).is_err(),
                    "flip at byte {byte} bit {bit} accepted"
                );
            }
        }
    }

    #[test]
    fn proving_key_round_trips_through_its_hash() {
        let (keys, s, _) = keys();
        let bytes = keys.pk_bytes();
        let hash = crate::sha256_hex(&bytes);
        let back = CircuitKeys::from_pk_bytes(CircuitSpec::Preimage, &bytes, &hash).unwrap();
        assert_eq!(back.verifier.id, keys.verifier.id);
        let p = back.prove(&s).unwrap();
        assert_eq!(keys.verifier.verify(&s.public, &p), Ok(()));
        let mut corrupt = bytes.clone();
        corrupt[100] ^= 1;
        assert!(matches!(
            CircuitKeys::from_pk_bytes(CircuitSpec::Preimage, &corrupt, &hash),
            Err(crate::KeyError::HashMismatch { .. })
        ));
    }

    proptest::proptest! {
        /// The fuzz body run in CI: arbitrary bytes and strings never panic proof
        /// decoding; anything that is not 128 or 256 bytes of valid points is `Malformed`.
        #[test]
        fn arbitrary_bytes_never_panic_the_proof_decoder(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            // Uncompressed is the same proof, and a flipped bit in it is refused.
            if let Ok(p) = ProofBytes(bytes.clone()).decode() {
                let u = ProofBytes(bytes.clone()).to_uncompressed().unwrap();
                proptest::prop_assert_eq!(u.decode().unwrap(), p);
            }
            match ProofBytes(bytes.clone()).decode() {
                Ok(_) => proptest::prop_assert!(bytes.len() == PROOF_LEN || bytes.len() == PROOF_LEN_UNCOMPRESSED),
                Err(e) => proptest::prop_assert!(matches!(e, VerifyError::Malformed(_))),
            }
            let _ = ProofBytes::from_hex(&String::from_utf8_lossy(&bytes));
        }
    }
}
