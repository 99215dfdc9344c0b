//! A reader of snarkjs `.ptau` files (powers of tau, BN254), streaming: it keeps only
//! the powers asked for and skips the rest, so a 2^28 ceremony file is read without
//! holding it in memory.
//!
//! Format (iden3 binfile): magic `ptau`, `u32` version, `u32` section count, then
//! sections of `u32` type, `u64` length and body, little-endian. Section 1 (header):
//! `u32 n8 = 32`, the base field modulus (`n8` bytes), `u32 power`, `u32
//! ceremony power`. Section 2: `2^(power+1) - 1` G1 points `tau^i * g`; section 3:
//! `2^power` G2 points `tau^i * h`. Points are uncompressed with coordinates in
//! Montgomery form (`x * 2^256 mod p`, which is arkworks' own representation), and
//! `(0, 0)` is the identity. Other sections (alpha/beta powers, the contribution
//! list, phase-2 Lagrange forms) are not used.

use std::io::{self, Read};

use ark_bn254::{Fq, Fq2, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInt, PrimeField, Zero};
use rayon::prelude::*;

use super::AggregateError;

/// The first powers of one ceremony's secret tau.
pub(crate) struct Powers {
    /// `tau^i * g`, `i < g1_count`.
    pub g1: Vec<G1Affine>,
    /// `tau^i * h`, `i < g2_count`.
    pub g2: Vec<G2Affine>,
}

const G1_LEN: u64 = 64;
const G2_LEN: u64 = 128;

/// Reads the first `g1_count` G1 and `g2_count` G2 powers from a `.ptau` stream,
/// validating every point kept (on the curve, and in the subgroup for G2).
pub(crate) fn read_powers(
    reader: &mut dyn Read,
    file: &str,
    g1_count: usize,
    g2_count: usize,
) -> Result<Powers, AggregateError> {
    let fail = |problem: String| AggregateError::Ptau {
        file: file.to_owned(),
        problem,
    };
    let mut r = Stream { reader, file };
    let magic = r.array::<4>("the magic number")?;
    if &magic != b"ptau" {
        return Err(fail(format!(
            "not a .ptau file: it starts with {:?}, expected \"ptau\"",
            String::from_utf8_lossy(&magic)
        )));
    }
    let version = r.u32("the version")?;
    if version != 1 {
        return Err(fail(format!(
            "ptau format version {version}; only version 1 (snarkjs) is read"
        )));
    }
    let sections = r.u32("the section count")?;
    let mut power = None;
    let mut g1 = None;
    let mut g2 = None;
    for _ in 0..sections {
        let kind = r.u32("a section header")?;
        let len = r.u64("a section header")?;
        match kind {
            1 => {
                if power.is_some() {
                    return Err(fail("the header section (1) appears twice".into()));
                }
                power = Some(read_header(&mut r, len)?);
            }
            2 | 3 => {
                let Some(power) = power else {
                    return Err(fail(format!(
                        "section {kind} comes before the header section (1)"
                    )));
                };
                let (slot, count, point_len, declared, what) = if kind == 2 {
                    (&mut g1, g1_count, G1_LEN, (2u64 << power) - 1, "G1")
                } else {
                    (&mut g2, g2_count, G2_LEN, 1u64 << power, "G2")
                };
                if slot.is_some() {
                    return Err(fail(format!("section {kind} appears twice")));
                }
                if len != declared * point_len {
                    return Err(fail(format!(
                        "section {kind} ({what} powers) is {len} bytes; a power-{power} file has {declared} points of {point_len} bytes"
                    )));
                }
                if count as u64 > declared {
                    return Err(fail(format!(
                        "the ceremony has {declared} {what} powers (power {power}), {count} are needed: use a ceremony of a higher power"
                    )));
                }
                let mut bytes = vec![0u8; count * point_len as usize];
                r.fill(&mut bytes, kind)?;
                r.skip(len - bytes.len() as u64, kind)?;
                *slot = Some(bytes);
            }
            _ => r.skip(len, kind)?,
        }
    }
    let mut probe = [0u8; 1];
    if r.reader.read(&mut probe).map_err(|e| fail(e.to_string()))? != 0 {
        return Err(fail(format!(
            "bytes after the last of the {sections} sections the header declares"
        )));
    }
    if power.is_none() {
        return Err(fail("the header section (1) is missing".into()));
    }
    let g1 = g1.ok_or_else(|| fail("section 2 (G1 powers of tau) is missing".into()))?;
    let g2 = g2.ok_or_else(|| fail("section 3 (G2 powers of tau) is missing".into()))?;
    let g1 = g1
        .par_chunks_exact(G1_LEN as usize)
        .enumerate()
        .map(|(i, b)| g1_point(b).map_err(|e| fail(format!("G1 power {i}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let g2 = g2
        .par_chunks_exact(G2_LEN as usize)
        .enumerate()
        .map(|(i, b)| g2_point(b).map_err(|e| fail(format!("G2 power {i}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Powers { g1, g2 })
}

/// Section 1: checks the field is BN254's base field; returns the power.
fn read_header(r: &mut Stream<'_>, len: u64) -> Result<u32, AggregateError> {
    if len != 44 {
        return Err(r.fail(format!(
            "the header section is {len} bytes; a BN254 header is 44"
        )));
    }
    let n8 = r.u32("the header")?;
    if n8 != 32 {
        return Err(r.fail(format!(
            "field elements of {n8} bytes; BN254's are 32 (a file for another curve?)"
        )));
    }
    let q = r.array::<32>("the header")?;
    if le_limbs(&q) != Fq::MODULUS {
        return Err(r.fail(format!(
            "the field modulus is 0x{}, not BN254's base field (a file for another curve?)",
            hex::encode(q.iter().rev().copied().collect::<Vec<_>>())
        )));
    }
    let power = r.u32("the header")?;
    let _ceremony_power = r.u32("the header")?;
    if power == 0 || power > 30 {
        return Err(r.fail(format!("power {power} is out of range (1 to 30)")));
    }
    Ok(power)
}

struct Stream<'a> {
    reader: &'a mut dyn Read,
    file: &'a str,
}

impl Stream<'_> {
    fn fail(&self, problem: String) -> AggregateError {
        AggregateError::Ptau {
            file: self.file.to_owned(),
            problem,
        }
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), AggregateError> {
        self.reader.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.fail(format!("truncated: the file ends inside {what}"))
            } else {
                self.fail(format!("reading {what}: {e}"))
            }
        })
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], AggregateError> {
        let mut buf = [0u8; N];
        self.read_exact(&mut buf, what)?;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, AggregateError> {
        Ok(u32::from_le_bytes(self.array::<4>(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, AggregateError> {
        Ok(u64::from_le_bytes(self.array::<8>(what)?))
    }

    fn fill(&mut self, buf: &mut [u8], section: u32) -> Result<(), AggregateError> {
        self.read_exact(buf, &format!("section {section}"))
    }

    fn skip(&mut self, len: u64, section: u32) -> Result<(), AggregateError> {
        let copied = io::copy(&mut self.reader.take(len), &mut io::sink())
            .map_err(|e| self.fail(format!("reading section {section}: {e}")))?;
        if copied != len {
            return Err(self.fail(format!(
                "truncated: section {section} declares {len} bytes, the file ends after {copied}"
            )));
        }
        Ok(())
    }
}

fn le_limbs(bytes: &[u8]) -> BigInt<4> {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        *limb = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
    }
    BigInt::new(limbs)
}

/// A coordinate in Montgomery form: the stored integer is arkworks' internal
/// representation, once it is checked to be below p.
fn fq_mont(bytes: &[u8]) -> Result<Fq, String> {
    let b = le_limbs(bytes);
    if b >= Fq::MODULUS {
        return Err("a coordinate is not below the base field modulus".into());
    }
    Ok(Fq::new_unchecked(b))
}

fn g1_point(b: &[u8]) -> Result<G1Affine, String> {
    let (x, y) = (fq_mont(&b[..32])?, fq_mont(&b[32..])?);
    if x.is_zero() && y.is_zero() {
        return Ok(G1Affine::zero());
    }
    let p = G1Affine::new_unchecked(x, y);
    // BN254's G1 has cofactor 1: on the curve is in the group.
    if !p.is_on_curve() {
        return Err("not a point of BN254's G1".into());
    }
    Ok(p)
}

fn g2_point(b: &[u8]) -> Result<G2Affine, String> {
    let x = Fq2::new(fq_mont(&b[..32])?, fq_mont(&b[32..64])?);
    let y = Fq2::new(fq_mont(&b[64..96])?, fq_mont(&b[96..])?);
    if x.is_zero() && y.is_zero() {
        return Ok(G2Affine::zero());
    }
    let p = G2Affine::new_unchecked(x, y);
    if !p.is_on_curve() {
        return Err("not a point of BN254's G2 twist".into());
    }
    if !p.is_in_correct_subgroup_assuming_on_curve() {
        return Err("not in BN254's G2 prime-order subgroup".into());
    }
    Ok(p)
}
