//! gnark's BN254 Groth16 encodings: verifying keys (`VerifyingKey.WriteTo`) and
//! proofs (`Proof.WriteRawTo` or `WriteTo`), decoded with full validation and
//! verified with the same checks as our own proofs.
//!
//! Layout (see `zk/tests/fixtures/gnark/README.md`): base-field elements are 32 bytes
//! big-endian and must be canonical (< p); the top two bits of a point's first byte
//! are flags: `00` uncompressed, `10` compressed with the smaller y, `11` compressed
//! with the larger y, `01` compressed infinity (uncompressed infinity is all zeros).
//! G2 coordinates are written imaginary part first (`A1|A0`). "Larger" y is decided
//! by A1, or by A0 when A1 = 0, which is exactly arkworks' ordering of `Fq2`.
//!
//! A gnark proof with Pedersen commitments needs an extra knowledge check and the
//! commitment hash folded into the public inputs; it is refused with a clear error.

use ark_bn254::{Fq, Fq2, G1Affine, G2Affine};
use ark_ec::{
    pairing::Pairing,
    short_weierstrass::{Affine, SWCurveConfig},
    AffineRepr,
};
use ark_ff::{BigInteger, PrimeField};
use ark_groth16::{Proof, VerifyingKey};

use crate::{keys::VerifierKey, Bn254, Fr, VerifyError};

/// Why gnark bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GnarkError {
    /// The bytes end before the structure does.
    #[error("truncated {what}: needs {need} more bytes at offset {at}")]
    Truncated {
        what: &'static str,
        at: usize,
        need: usize,
    },
    /// Bytes remain after the structure.
    #[error("{0} trailing bytes after the {1}")]
    Trailing(usize, &'static str),
    /// A coordinate is not below the base-field modulus.
    #[error("{what}: coordinate at offset {at} is not canonical (>= p)")]
    NonCanonical { what: &'static str, at: usize },
    /// A point is not on the curve, not in the prime-order subgroup, or its flags are wrong.
    #[error("{what}: {detail}")]
    BadPoint { what: &'static str, detail: String },
    /// The key or proof uses Pedersen commitments, which this verifier does not check.
    #[error("{0} uses Pedersen commitments (gnark's commitment extension), which zkpool does not verify yet")]
    Commitments(&'static str),
    /// The verifying key has no K[0].
    #[error("verifying key has no public-input points")]
    NoInputs,
    /// The key's points decode but do not make a key anyone can trust: degenerate
    /// (see `zk::keys::check_vk`), or its G1 and G2 copies of beta or delta differ.
    #[error("verifying key refused: {0}")]
    Key(String),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GnarkError> {
        if self.bytes.len() - self.at < n {
            return Err(GnarkError::Truncated {
                what: self.what,
                at: self.at,
                need: n - (self.bytes.len() - self.at),
            });
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, GnarkError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn fq(&mut self, flags_allowed: bool) -> Result<Fq, GnarkError> {
        let at = self.at;
        let mut b: [u8; 32] = self.take(32)?.try_into().expect("32 bytes");
        if flags_allowed {
            b[0] &= 0x3f;
        }
        let big = <Fq as PrimeField>::BigInt::from_bits_be(&bytes_to_bits(&b));
        Fq::from_bigint(big).ok_or(GnarkError::NonCanonical {
            what: self.what,
            at,
        })
    }

    fn flags(&self) -> Result<u8, GnarkError> {
        self.bytes
            .get(self.at)
            .map(|b| b >> 6)
            .ok_or(GnarkError::Truncated {
                what: self.what,
                at: self.at,
                need: 1,
            })
    }

    /// A point of either group, compressed or raw as its flags say. `coord` reads one
    /// coordinate (32 bytes for G1, 64 for G2), clearing the flag bits when told to.
    fn point<P: SWCurveConfig>(
        &mut self,
        group: &'static str,
        coord_len: usize,
        coord: fn(&mut Self, bool) -> Result<P::BaseField, GnarkError>,
    ) -> Result<Affine<P>, GnarkError> {
        let at = self.at;
        let raw_len = 2 * coord_len;
        let p = match self.flags()? {
            0b00 if self.remaining() >= raw_len
                && self.bytes[at..at + raw_len].iter().all(|b| *b == 0) =>
            {
                self.at += raw_len;
                Affine::identity()
            }
            0b00 => {
                let x = coord(self, false)?;
                let y = coord(self, false)?;
                Affine::new_unchecked(x, y)
            }
            0b01 => {
                self.take(coord_len)?;
                Affine::identity()
            }
            flag => {
                let x = coord(self, true)?;
                let (small, large) =
                    Affine::<P>::get_ys_from_x_unchecked(x).ok_or(GnarkError::BadPoint {
                        what: self.what,
                        detail: format!("{group} x at offset {at} is not on the curve"),
                    })?;
                Affine::new_unchecked(x, if flag == 0b11 { large } else { small })
            }
        };
        if !p.is_on_curve() {
            return Err(GnarkError::BadPoint {
                what: self.what,
                detail: format!("{group} point at offset {at} is not on the curve"),
            });
        }
        if !p.is_in_correct_subgroup_assuming_on_curve() {
            return Err(GnarkError::BadPoint {
                what: self.what,
                detail: format!("{group} point at offset {at} is not in the prime-order subgroup"),
            });
        }
        Ok(p)
    }

    fn g1(&mut self) -> Result<G1Affine, GnarkError> {
        self.point("G1", 32, Self::fq)
    }

    /// An Fq2 element, written imaginary part first (`A1|A0`).
    fn fq2(&mut self, flags_allowed: bool) -> Result<Fq2, GnarkError> {
        let a1 = self.fq(flags_allowed)?;
        let a0 = self.fq(false)?;
        Ok(Fq2::new(a0, a1))
    }

    fn g2(&mut self) -> Result<G2Affine, GnarkError> {
        self.point("G2", 64, Self::fq2)
    }
}

fn bytes_to_bits(b: &[u8]) -> Vec<bool> {
    b.iter()
        .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1 == 1))
        .collect()
}

/// Decodes a gnark verifying key (`WriteTo`, compressed points; the >= 0.11 layout
/// with a count of commitment keys, or the <= 0.10 one with exactly one key).
pub fn decode_vk(bytes: &[u8]) -> Result<VerifierKey, GnarkError> {
    let mut r = Reader {
        bytes,
        at: 0,
        what: "gnark verifying key",
    };
    let alpha_g1 = r.g1()?;
    let beta_g1 = r.g1()?;
    let beta_g2 = r.g2()?;
    let gamma_g2 = r.g2()?;
    let delta_g1 = r.g1()?;
    let delta_g2 = r.g2()?;
    let n = r.u32()? as usize;
    if n == 0 {
        return Err(GnarkError::NoInputs);
    }
    if n > r.remaining() / 32 {
        return Err(GnarkError::Truncated {
            what: r.what,
            at: r.at,
            need: n * 32 - r.remaining(),
        });
    }
    let k = (0..n).map(|_| r.g1()).collect::<Result<Vec<_>, _>>()?;
    let committed_lists = r.u32()?;
    if committed_lists != 0 {
        return Err(GnarkError::Commitments("verifying key"));
    }
    match r.remaining() {
        // >= 0.11: a count of commitment keys, zero without commitments.
        4 if r.u32()? == 0 => {}
        // <= 0.10: exactly one commitment key (two G2 points), unused without commitments.
        128 | 256 => {
            let _commitment_key = (r.g2()?, r.g2()?);
        }
        0 => {}
        _ => return Err(GnarkError::Commitments("verifying key")),
    }
    if r.remaining() != 0 {
        return Err(GnarkError::Trailing(r.remaining(), "verifying key"));
    }
    // gnark keeps beta and delta in both groups: both copies must be the same scalar.
    for (name, g1, g2) in [("beta", beta_g1, beta_g2), ("delta", delta_g1, delta_g2)] {
        if g1.is_zero()
            || Bn254::pairing(g1, G2Affine::generator())
                != Bn254::pairing(G1Affine::generator(), g2)
        {
            return Err(GnarkError::Key(format!(
                "its {name} in G1 and in G2 are not the same scalar"
            )));
        }
    }
    let vk = VerifyingKey::<Bn254> {
        alpha_g1,
        beta_g2,
        gamma_g2,
        delta_g2,
        gamma_abc_g1: k,
    };
    VerifierKey::new(vk).map_err(|e| GnarkError::Key(e.to_string()))
}

/// Decodes a gnark proof (`WriteRawTo` or `WriteTo`): Ar, Bs, Krs, then the
/// commitment count (must be 0) and the commitment proof of knowledge.
pub fn decode_proof(bytes: &[u8]) -> Result<Proof<Bn254>, GnarkError> {
    let mut r = Reader {
        bytes,
        at: 0,
        what: "gnark proof",
    };
    let a = r.g1()?;
    let b = r.g2()?;
    let c = r.g1()?;
    if r.remaining() > 0 {
        if r.u32()? != 0 {
            return Err(GnarkError::Commitments("proof"));
        }
        // The commitment proof of knowledge: one G1 point, the identity without commitments.
        let pok = r.g1()?;
        if !pok.is_zero() {
            return Err(GnarkError::Commitments("proof"));
        }
    }
    if r.remaining() != 0 {
        return Err(GnarkError::Trailing(r.remaining(), "proof"));
    }
    Ok(Proof { a, b, c })
}

/// Verifies a gnark proof against a gnark key: decode both with validation, check
/// the input count, then the pairing equation.
pub fn verify(vk: &[u8], proof: &[u8], public: &[Fr]) -> Result<(), GnarkVerifyError> {
    let key = decode_vk(vk).map_err(GnarkVerifyError::Key)?;
    let proof = decode_proof(proof).map_err(GnarkVerifyError::Proof)?;
    key.verify_decoded(public, &proof)
        .map_err(GnarkVerifyError::Verify)
}

/// Why a gnark proof was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GnarkVerifyError {
    #[error("verifying key: {0}")]
    Key(GnarkError),
    #[error("proof: {0}")]
    Proof(GnarkError),
    #[error(transparent)]
    Verify(VerifyError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::parse_fr;
    use std::path::{Path, PathBuf};

    /// The gnark vectors, copied into the repository (see their README).
    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gnark")
    }

    fn public(path: &Path) -> Vec<Fr> {
        let raw: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        raw.iter().map(|s| parse_fr(s).unwrap()).collect()
    }

    /// A vector: key bytes, proof bytes, public inputs, and a name for messages.
    type Case = (Vec<u8>, Vec<u8>, Vec<Fr>, String);

    fn cases(dir: &Path) -> Vec<Case> {
        let mut out = vec![];
        let vk = std::fs::read(dir.join("vk.bin")).unwrap();
        for i in 1..=4 {
            out.push((
                vk.clone(),
                std::fs::read(dir.join(format!("proof-{i}.bin"))).unwrap(),
                public(&dir.join(format!("public-{i}.json"))),
                format!("proof-{i}"),
            ));
        }
        let v4 = dir.join("v4");
        out.push((
            std::fs::read(v4.join("vk.bin")).unwrap(),
            std::fs::read(v4.join("proof-1.bin")).unwrap(),
            public(&v4.join("public-1.json")),
            "v4/proof-1".into(),
        ));
        out
    }

    #[test]
    fn every_gnark_vector_verifies() {
        let dir = vectors();
        for (vk, proof, inputs, name) in cases(&dir) {
            assert_eq!(verify(&vk, &proof, &inputs), Ok(()), "{name}");
        }
    }

    #[test]
    fn every_gnark_vector_is_rejected_when_tampered() {
        let dir = vectors();
        let all = cases(&dir);
        for (vk, proof, inputs, name) in &all {
            // A changed input.
            let mut changed = inputs.clone();
            changed[0] += Fr::from(1u64);
            assert!(
                verify(vk, proof, &changed).is_err(),
                "{name}: changed input accepted"
            );
            // A missing input, and an extra one.
            assert!(
                matches!(
                    verify(vk, proof, &inputs[..1]),
                    Err(GnarkVerifyError::Verify(VerifyError::InputCount { .. }))
                ),
                "{name}"
            );
            let mut extra = inputs.clone();
            extra.push(Fr::from(0u64));
            assert!(
                matches!(
                    verify(vk, proof, &extra),
                    Err(GnarkVerifyError::Verify(VerifyError::InputCount { .. }))
                ),
                "{name}"
            );
            // A flipped bit in each point of the proof (Ar, Bs, Krs), high and low.
            for (start, len) in [(0usize, 64usize), (64, 128), (192, 64)] {
                for bit in [
                    (start + 5, 0x10u8),
                    (start + len - 1, 0x01u8),
                    (start + len / 2, 0x80u8),
                ] {
                    let mut bad = proof.clone();
                    bad[bit.0] ^= bit.1;
                    assert!(
                        verify(vk, &bad, inputs).is_err(),
                        "{name}: flip at byte {} accepted",
                        bit.0
                    );
                }
            }
        }
        // A swapped proof: proof-4 is another program's, so it fails proof-1's inputs.
        let (vk, p4) = (&all[0].0, &all[3].1);
        assert!(
            verify(vk, p4, &all[0].2).is_err(),
            "a proof of another statement accepted"
        );
        // And a proof against the other, independent key.
        assert!(
            verify(&all[4].0, &all[0].1, &all[0].2).is_err(),
            "a proof checked with another key accepted"
        );
    }

    #[test]
    fn flipped_bits_in_the_key_are_refused() {
        let dir = vectors();
        let (vk, proof, inputs, _) = cases(&dir).remove(0);
        // Each point the verifier uses: alpha, beta2, gamma2, delta2, K[0..3]. ([beta]1 and
        // [delta]1 are decoded and validated but unused, and every x on BN254's G1 curve
        // is a group element, so a flip there can give another valid, unused point.)
        let points = [
            (0usize, 32usize),
            (64, 64),
            (128, 64),
            (224, 64),
            (292, 32),
            (324, 32),
            (356, 32),
        ];
        for (start, len) in points {
            let mut bad = vk.clone();
            bad[start + len - 1] ^= 0x01;
            assert!(
                verify(&bad, &proof, &inputs).is_err(),
                "flip in key point at {start} accepted"
            );
        }
        assert!(matches!(
            decode_vk(&vk[..300]),
            Err(GnarkError::Truncated { .. })
        ));
        let mut trailing = vk.clone();
        trailing.push(0);
        assert!(decode_vk(&trailing).is_err());
    }

    proptest::proptest! {
        /// The fuzz body run in CI (`fuzz/` runs it longer): arbitrary bytes, and a
        /// real key and proof with random bytes overwritten, never panic the gnark
        /// decoders; they decode or are refused with an error.
        #[test]
        fn arbitrary_and_mutated_gnark_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1200),
            flips in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 1..6),
        ) {
            let _ = decode_vk(&bytes);
            let _ = decode_proof(&bytes);
            let (vk, proof, _, _) = cases(&vectors()).remove(0);
            let (mut vk, mut proof) = (vk, proof);
            for (at, b) in &flips {
                let i = at % vk.len();
                vk[i] = *b;
                let j = at % proof.len();
                proof[j] = *b;
            }
            let _ = decode_vk(&vk);
            let _ = decode_proof(&proof);
        }
    }
}
