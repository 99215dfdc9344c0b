//! The section container shared by iden3's binary formats (`.r1cs`, `.zkey`, `.wtns`):
//! a 4-byte magic, a `u32` version, a `u32` section count, then sections of
//! `u32` type, `u64` byte length and the bytes. Everything is little-endian.

use std::collections::HashMap;

use ark_bn254::{Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInt, PrimeField, Zero};

use super::CircomError;

/// The sections of one file, by type. A type that appears twice is refused.
///
/// The file is either in memory ([`Sections::parse`]) or on disk
/// ([`Sections::open`]): then only the section table is read, and each
/// section's bytes are read when asked for ([`Sections::body`]), so a rig
/// loading a large key holds one section's bytes at a time, not the file.
pub(crate) struct Sections<'a> {
    pub file: &'static str,
    pub version: u32,
    by_type: HashMap<u32, Body<'a>>,
    disk: Option<std::sync::Mutex<std::fs::File>>,
}

enum Body<'a> {
    Memory(&'a [u8]),
    /// Absolute offset in the file, and length.
    Disk(u64, u64),
}

impl<'a> Sections<'a> {
    pub fn parse(
        file: &'static str,
        magic: &[u8; 4],
        bytes: &'a [u8],
    ) -> Result<Self, CircomError> {
        let mut r = Reader::new(file, bytes);
        let got = r.bytes(4)?;
        if got != magic {
            return Err(CircomError::format(
                file,
                format!(
                    "not a {} file: it starts with {:?}, expected {:?}",
                    std::str::from_utf8(magic).unwrap_or("?"),
                    String::from_utf8_lossy(got),
                    std::str::from_utf8(magic).unwrap_or("?"),
                ),
            ));
        }
        let version = r.u32()?;
        let count = r.u32()?;
        let mut by_type = HashMap::new();
        for _ in 0..count {
            let kind = r.u32()?;
            let len = r.u64()?;
            let left = r.remaining();
            if len > left as u64 {
                return Err(CircomError::format(
                    file,
                    format!("truncated: section {kind} says {len} bytes, {left} remain"),
                ));
            }
            let body = r.bytes(len as usize)?;
            if by_type.insert(kind, Body::Memory(body)).is_some() {
                return Err(twice(file, kind));
            }
        }
        Ok(Sections {
            file,
            version,
            by_type,
            disk: None,
        })
    }

    /// The sections of the file held in `file` from byte `start`, `len` bytes
    /// long (a part of a bundle): reads the section table only.
    pub fn open(
        file_name: &'static str,
        magic: &[u8; 4],
        mut file: std::fs::File,
        start: u64,
        len: u64,
    ) -> Result<Sections<'static>, CircomError> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |e: std::io::Error| CircomError::format(file_name, format!("reading it: {e}"));
        let truncated = |at: u64| {
            CircomError::format(
                file_name,
                format!("truncated: its section table runs past its {len} bytes (at byte {at})"),
            )
        };
        let mut head = [0u8; 12];
        if len < 12 {
            return Err(truncated(0));
        }
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        file.read_exact(&mut head).map_err(io)?;
        // The magic, version and count are checked by the in-memory parser.
        let mut r = Reader::new(file_name, &head);
        let got = r.bytes(4)?;
        if got != magic {
            return Err(Sections::parse(file_name, magic, &head)
                .err()
                .unwrap_or_else(|| truncated(0)));
        }
        let version = r.u32()?;
        let count = r.u32()?;
        let mut by_type = HashMap::new();
        let mut at = 12u64;
        for _ in 0..count {
            if len - at < 12 {
                return Err(truncated(at));
            }
            let mut entry = [0u8; 12];
            file.read_exact(&mut entry).map_err(io)?;
            let mut e = Reader::new(file_name, &entry);
            let (kind, body) = (e.u32()?, e.u64()?);
            at += 12;
            let left = len - at;
            if body > left {
                return Err(CircomError::format(
                    file_name,
                    format!("truncated: section {kind} says {body} bytes, {left} remain"),
                ));
            }
            if by_type.insert(kind, Body::Disk(start + at, body)).is_some() {
                return Err(twice(file_name, kind));
            }
            at += body;
            file.seek(SeekFrom::Start(start + at)).map_err(io)?;
        }
        Ok(Sections {
            file: file_name,
            version,
            by_type,
            disk: Some(std::sync::Mutex::new(file)),
        })
    }

    /// Section `kind`'s length in bytes, if present (without reading it).
    pub fn len(&self, kind: u32) -> Option<u64> {
        self.by_type.get(&kind).map(|b| match b {
            Body::Memory(b) => b.len() as u64,
            Body::Disk(_, len) => *len,
        })
    }

    /// Section `kind`'s bytes, which must be present: borrowed from memory, or
    /// read from disk.
    pub fn body(&self, kind: u32, what: &str) -> Result<std::borrow::Cow<'a, [u8]>, CircomError> {
        use std::io::{Read, Seek, SeekFrom};
        let missing =
            || CircomError::format(self.file, format!("section {kind} ({what}) is missing"));
        match self.by_type.get(&kind).ok_or_else(missing)? {
            Body::Memory(b) => Ok((*b).into()),
            Body::Disk(at, len) => {
                let io = |e: std::io::Error| {
                    CircomError::format(self.file, format!("reading section {kind} ({what}): {e}"))
                };
                let mut file = self
                    .disk
                    .as_ref()
                    .expect("disk sections come with their file")
                    .lock()
                    .expect("the file lock is never poisoned");
                file.seek(SeekFrom::Start(*at)).map_err(io)?;
                let len = usize::try_from(*len).map_err(|_| missing())?;
                let mut out = Vec::new();
                out.try_reserve_exact(len)
                    .map_err(|_| io(std::io::ErrorKind::OutOfMemory.into()))?;
                (&mut *file)
                    .take(len as u64)
                    .read_to_end(&mut out)
                    .map_err(io)?;
                if out.len() != len {
                    return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(out.into())
            }
        }
    }

    /// A reader over section `kind` of a file in memory, which must be present.
    pub fn section(&self, kind: u32, what: &str) -> Result<Reader<'a>, CircomError> {
        match self.by_type.get(&kind) {
            Some(Body::Memory(b)) => Ok(Reader::new(self.file, b)),
            Some(Body::Disk(..)) => Err(CircomError::format(
                self.file,
                format!("section {kind} ({what}) is on disk: read it with Sections::body"),
            )),
            None => Err(CircomError::format(
                self.file,
                format!("section {kind} ({what}) is missing"),
            )),
        }
    }
}

fn twice(file: &'static str, kind: u32) -> CircomError {
    CircomError::format(file, format!("section {kind} appears twice"))
}

/// A bounds-checked little-endian reader; running past the end is a format error.
#[derive(Clone)]
pub(crate) struct Reader<'a> {
    file: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(file: &'static str, buf: &'a [u8]) -> Self {
        Reader { file, buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CircomError> {
        if self.remaining() < n {
            return Err(CircomError::format(
                self.file,
                format!(
                    "truncated: needed {n} bytes at offset {}, {} remain",
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn u32(&mut self) -> Result<u32, CircomError> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> Result<u64, CircomError> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A 32-byte little-endian integer.
    pub fn big(&mut self) -> Result<BigInt<4>, CircomError> {
        Ok(le_bigint(self.bytes(32)?))
    }

    /// A scalar in standard form, refused when not below the scalar field's modulus.
    pub fn fr(&mut self, what: &str) -> Result<Fr, CircomError> {
        let b = self.big()?;
        Fr::from_bigint(b).ok_or_else(|| {
            CircomError::format(
                self.file,
                format!("{what}: {b} is not below the field modulus"),
            )
        })
    }

    /// A scalar stored as snarkjs stores zkey coefficients: Montgomery form times R
    /// once more (`c * R^2 mod r`).
    pub fn fr_mont2(&mut self, what: &str) -> Result<Fr, CircomError> {
        let b = self.big()?;
        if b >= Fr::MODULUS {
            return Err(CircomError::format(
                self.file,
                format!("{what}: {b} is not below the field modulus"),
            ));
        }
        // new_unchecked(b) is the element b / R; its canonical value is c * R, and
        // reading that as a Montgomery representation once more gives c.
        Ok(Fr::new_unchecked(Fr::new_unchecked(b).into_bigint()))
    }

    /// A base-field element in Montgomery form (`x * R mod q`), as zkey points are.
    fn fq_mont(&mut self, what: &str) -> Result<Fq, CircomError> {
        let b = self.big()?;
        if b >= Fq::MODULUS {
            return Err(CircomError::format(
                self.file,
                format!("{what}: coordinate {b} is not below the base field modulus"),
            ));
        }
        Ok(Fq::new_unchecked(b))
    }

    /// A G1 point (x, y in Montgomery form; (0, 0) is the identity), checked on
    /// the curve. BN254's G1 has cofactor 1, so that is the subgroup check too.
    pub fn g1(&mut self, what: &str) -> Result<G1Affine, CircomError> {
        let x = self.fq_mont(what)?;
        let y = self.fq_mont(what)?;
        if x.is_zero() && y.is_zero() {
            return Ok(G1Affine::zero());
        }
        let p = G1Affine::new_unchecked(x, y);
        if !p.is_on_curve() {
            return Err(CircomError::format(
                self.file,
                format!("{what}: point is not on BN254's G1"),
            ));
        }
        Ok(p)
    }

    /// A G2 point, checked on the curve, and in the prime-order subgroup when
    /// `subgroup` (the verifying key's points; the check costs ~0.14 ms).
    pub fn g2(&mut self, what: &str, subgroup: bool) -> Result<G2Affine, CircomError> {
        let x = Fq2::new(self.fq_mont(what)?, self.fq_mont(what)?);
        let y = Fq2::new(self.fq_mont(what)?, self.fq_mont(what)?);
        if x.is_zero() && y.is_zero() {
            return Ok(G2Affine::zero());
        }
        let p = G2Affine::new_unchecked(x, y);
        if !p.is_on_curve() {
            return Err(CircomError::format(
                self.file,
                format!("{what}: point is not on BN254's G2"),
            ));
        }
        if subgroup && !p.is_in_correct_subgroup_assuming_on_curve() {
            return Err(CircomError::format(
                self.file,
                format!("{what}: point is not in BN254's G2 subgroup"),
            ));
        }
        Ok(p)
    }
}

pub(crate) fn le_bigint(bytes: &[u8]) -> BigInt<4> {
    let mut limbs = [0u64; 4];
    for (i, l) in limbs.iter_mut().enumerate() {
        *l = u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("32 bytes"));
    }
    BigInt::new(limbs)
}

/// A field modulus as the 32 little-endian bytes iden3's headers carry.
pub(crate) fn modulus_le<F: PrimeField<BigInt = BigInt<4>>>() -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, l) in F::MODULUS.0.iter().enumerate() {
        out[8 * i..8 * i + 8].copy_from_slice(&l.to_le_bytes());
    }
    out
}

/// Names a prime from a header, for errors about files made for another curve.
pub(crate) fn name_prime(le: &[u8]) -> String {
    let known: [(&str, &str); 4] = [
        ("bn128 / BN254 scalar field", "30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001"),
        ("bn128 / BN254 base field", "30644e72e131a029b85045b68181585d97816a916871ca8d3c208c16d87cfd47"),
        ("BLS12-381 scalar field", "73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001"),
        ("BLS12-381 base field", "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab"),
    ];
    let mut be = le.to_vec();
    be.reverse();
    let hex_be = hex::encode(&be);
    let trimmed = hex_be.trim_start_matches('0');
    for (name, h) in known {
        if trimmed == h {
            return format!("{name} (0x{h})");
        }
    }
    format!("0x{trimmed}")
}
