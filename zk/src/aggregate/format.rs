//! The aggregate proof, its canonical byte encoding, and the order in which its
//! parts enter the transcript (the same order as the encoding).
//!
//! Layout (`l` rounds, `n` statements, `2^(l-1) < n <= 2^l`):
//!
//! | part | contents | bytes |
//! |---|---|---|
//! | header | `ZKAG`, version `1`, `l` (u8), `n` (u32 LE) | 10 |
//! | opening | `com_AB` (2 GT), `com_C` (2 GT), `Z_AB` (GT), `Z_C` (G1) | 992 |
//! | round, `l` times | TIPP `L` (2 GT), `R` (2 GT), `Z_L`, `Z_R` (GT); MIPP `L` (2 GT), `R` (2 GT); `Z_L`, `Z_R` (G1) | 1,984 |
//! | final | `A`, `B`, `C`; keys `v` (2 G2), `w` (2 G1); openings of `v` (2 G2), of `w` (2 G1) | 512 |
//!
//! GT elements take 192 bytes ([`super::gt`]), G1 32 and G2 64 (arkworks compressed).

use ark_bn254::{Fq12, G1Affine, G2Affine};
use ark_serialize::CanonicalSerialize;
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{gt, gt::GT_LEN, srs::canonical, transcript::Transcript, AggregateError};

/// The most GIPA rounds an aggregate may have: up to 2^24 (16.7 million) proofs.
/// Bounds what a hostile encoding can make a decoder allocate (about 48 KB).
pub const MAX_ROUNDS: u8 = 24;

const MAGIC: &[u8; 4] = b"ZKAG";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 10;
const G1_LEN: usize = 32;
const G2_LEN: usize = 64;
const OPENING_LEN: usize = 5 * GT_LEN + G1_LEN;
const ROUND_GTS: usize = 10;
const ROUND_LEN: usize = ROUND_GTS * GT_LEN + 2 * G1_LEN;
/// `A`, `C`, `w` (2), openings of `w` (2) in G1; `B`, `v` (2), openings of `v` (2) in G2.
const FINAL_LEN: usize = 6 * G1_LEN + 5 * G2_LEN;

/// An aggregate of `n` Groth16 proofs of one verifying key (see the module doc of
/// [`crate::aggregate`]). Made by [`super::aggregate`], checked by
/// [`super::verify_aggregate`]; travels as [`Self::to_bytes`] (hex in JSON).
#[derive(Clone, PartialEq, Eq)]
pub struct AggregateProof {
    /// Statements covered (before padding).
    pub(crate) n: u32,
    /// Pair commitment to `(A, B)` under `(v, w)`.
    pub(crate) com_ab: [Fq12; 2],
    /// Commitment to `C` under `v`.
    pub(crate) com_c: [Fq12; 2],
    /// `prod e(A_i, r^i B_i)`.
    pub(crate) z_ab: Fq12,
    /// `sum r^i C_i`.
    pub(crate) z_c: G1Affine,
    pub(crate) rounds: Vec<Round>,
    pub(crate) last: Final,
}

/// One GIPA round's cross terms, TIPP and MIPP together.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Round {
    /// `com((v_L, w_R), (A_R, B_L))`.
    pub tipp_l: [Fq12; 2],
    /// `com((v_R, w_L), (A_L, B_R))`.
    pub tipp_r: [Fq12; 2],
    /// `e(A_R, B_L)`.
    pub z_ab_l: Fq12,
    /// `e(A_L, B_R)`.
    pub z_ab_r: Fq12,
    /// `com(v_L, C_R)`.
    pub mipp_l: [Fq12; 2],
    /// `com(v_R, C_L)`.
    pub mipp_r: [Fq12; 2],
    /// `<C_R, r_L>`.
    pub z_c_l: G1Affine,
    /// `<C_L, r_R>`.
    pub z_c_r: G1Affine,
}

/// The folded vectors and keys (one element each), and the KZG openings of the keys.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Final {
    pub a: G1Affine,
    pub b: G2Affine,
    pub c: G1Affine,
    pub v: [G2Affine; 2],
    pub w: [G1Affine; 2],
    pub open_v: [G2Affine; 2],
    pub open_w: [G1Affine; 2],
}

impl std::fmt::Debug for AggregateProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AggregateProof({} statements, {} rounds, {} bytes)",
            self.n,
            self.rounds.len(),
            Self::encoded_len(self.n as usize)
        )
    }
}

impl AggregateProof {
    /// The number of statements (proofs) it covers.
    pub fn statements(&self) -> usize {
        self.n as usize
    }

    /// The encoded size of an aggregate of `n >= 1` statements.
    pub fn encoded_len(n: usize) -> usize {
        let rounds = n.max(1).next_power_of_two().trailing_zeros() as usize;
        HEADER_LEN + OPENING_LEN + rounds * ROUND_LEN + FINAL_LEN
    }

    /// The canonical encoding (see the module doc for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::encoded_len(self.n as usize));
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.rounds.len() as u8);
        out.extend_from_slice(&self.n.to_le_bytes());
        let gts = |out: &mut Vec<u8>, gs: &[&Fq12]| {
            for g in gs {
                out.extend_from_slice(&gt::encode(g));
            }
        };
        gts(
            &mut out,
            &[
                &self.com_ab[0],
                &self.com_ab[1],
                &self.com_c[0],
                &self.com_c[1],
                &self.z_ab,
            ],
        );
        put(&mut out, &self.z_c);
        for r in &self.rounds {
            gts(
                &mut out,
                &[
                    &r.tipp_l[0],
                    &r.tipp_l[1],
                    &r.tipp_r[0],
                    &r.tipp_r[1],
                    &r.z_ab_l,
                    &r.z_ab_r,
                    &r.mipp_l[0],
                    &r.mipp_l[1],
                    &r.mipp_r[0],
                    &r.mipp_r[1],
                ],
            );
            put(&mut out, &r.z_c_l);
            put(&mut out, &r.z_c_r);
        }
        let f = &self.last;
        put(&mut out, &f.a);
        put(&mut out, &f.b);
        put(&mut out, &f.c);
        f.v.iter().for_each(|p| put(&mut out, p));
        f.w.iter().for_each(|p| put(&mut out, p));
        f.open_v.iter().for_each(|p| put(&mut out, p));
        f.open_w.iter().for_each(|p| put(&mut out, p));
        debug_assert_eq!(out.len(), Self::encoded_len(self.n as usize));
        out
    }

    /// Decodes an aggregate, refusing anything but the canonical encoding of valid
    /// elements (see the module doc of [`crate::aggregate`]). The header is checked
    /// before anything is allocated, and the length must be exactly what its round
    /// count implies.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AggregateError> {
        let bad = |m: String| AggregateError::Malformed(m);
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        if &bytes[..4] != MAGIC {
            return Err(bad("it does not start with \"ZKAG\"".into()));
        }
        if bytes[4] != VERSION {
            return Err(bad(format!(
                "format version {}; this build reads version {VERSION}",
                bytes[4]
            )));
        }
        let rounds = bytes[5];
        if rounds > MAX_ROUNDS {
            return Err(bad(format!(
                "{rounds} rounds; at most {MAX_ROUNDS} are accepted"
            )));
        }
        let n = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes"));
        let n_pad = 1u64 << rounds;
        if n == 0 || u64::from(n) > n_pad || (rounds > 0 && u64::from(n) <= n_pad / 2) {
            return Err(bad(format!(
                "{n} statements do not take {rounds} rounds (n must be in (2^(rounds-1), 2^rounds])"
            )));
        }
        let expected = Self::encoded_len(n as usize);
        if bytes.len() != expected {
            return Err(bad(format!(
                "{} bytes; an aggregate of {n} statements is {expected}",
                bytes.len()
            )));
        }
        let opening = &bytes[HEADER_LEN..HEADER_LEN + OPENING_LEN];
        let [ab0, ab1, c0, c1, z_ab] = gts::<5>(&opening[..5 * GT_LEN], "opening")?;
        let z_c = g1(&opening[5 * GT_LEN..], "Z_C")?;
        let rounds_start = HEADER_LEN + OPENING_LEN;
        let rounds_end = rounds_start + rounds as usize * ROUND_LEN;
        let rounds = bytes[rounds_start..rounds_end]
            .par_chunks_exact(ROUND_LEN)
            .enumerate()
            .map(|(j, b)| decode_round(j, b))
            .collect::<Result<Vec<_>, _>>()?;
        let mut r = Cursor {
            bytes: &bytes[rounds_end..],
        };
        let last = Final {
            a: g1(r.take(G1_LEN), "final A")?,
            b: g2(r.take(G2_LEN), "final B")?,
            c: g1(r.take(G1_LEN), "final C")?,
            v: [
                g2(r.take(G2_LEN), "final v")?,
                g2(r.take(G2_LEN), "final v")?,
            ],
            w: [
                g1(r.take(G1_LEN), "final w")?,
                g1(r.take(G1_LEN), "final w")?,
            ],
            open_v: [
                g2(r.take(G2_LEN), "opening of v")?,
                g2(r.take(G2_LEN), "opening of v")?,
            ],
            open_w: [
                g1(r.take(G1_LEN), "opening of w")?,
                g1(r.take(G1_LEN), "opening of w")?,
            ],
        };
        debug_assert!(r.bytes.is_empty());
        Ok(AggregateProof {
            n,
            com_ab: [ab0, ab1],
            com_c: [c0, c1],
            z_ab,
            z_c,
            rounds,
            last,
        })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    pub fn from_hex(s: &str) -> Result<Self, AggregateError> {
        let bytes =
            hex::decode(s).map_err(|e| AggregateError::Malformed(format!("not hex: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// Absorbs the commitments (before the challenge `r`).
    pub(crate) fn absorb_commitments(t: &mut Transcript, com_ab: &[Fq12; 2], com_c: &[Fq12; 2]) {
        t.absorb_gt(b"com_ab.a", &com_ab[0]);
        t.absorb_gt(b"com_ab.b", &com_ab[1]);
        t.absorb_gt(b"com_c.a", &com_c[0]);
        t.absorb_gt(b"com_c.b", &com_c[1]);
    }

    /// Absorbs the claimed inner products (before the first round's challenge).
    pub(crate) fn absorb_products(t: &mut Transcript, z_ab: &Fq12, z_c: &G1Affine) {
        t.absorb_gt(b"z_ab", z_ab);
        t.absorb_g1(b"z_c", z_c);
    }
}

impl Round {
    /// Absorbs the round's cross terms (before its challenge).
    pub(crate) fn absorb(&self, t: &mut Transcript) {
        t.absorb_gt(b"tipp.l.a", &self.tipp_l[0]);
        t.absorb_gt(b"tipp.l.b", &self.tipp_l[1]);
        t.absorb_gt(b"tipp.r.a", &self.tipp_r[0]);
        t.absorb_gt(b"tipp.r.b", &self.tipp_r[1]);
        t.absorb_gt(b"tipp.z.l", &self.z_ab_l);
        t.absorb_gt(b"tipp.z.r", &self.z_ab_r);
        t.absorb_gt(b"mipp.l.a", &self.mipp_l[0]);
        t.absorb_gt(b"mipp.l.b", &self.mipp_l[1]);
        t.absorb_gt(b"mipp.r.a", &self.mipp_r[0]);
        t.absorb_gt(b"mipp.r.b", &self.mipp_r[1]);
        t.absorb_g1(b"mipp.z.l", &self.z_c_l);
        t.absorb_g1(b"mipp.z.r", &self.z_c_r);
    }
}

impl Final {
    /// Absorbs the folded vectors and keys (before the KZG point `z`).
    pub(crate) fn absorb_folded(&self, t: &mut Transcript) {
        t.absorb_g1(b"final.a", &self.a);
        t.absorb_g2(b"final.b", &self.b);
        t.absorb_g1(b"final.c", &self.c);
        t.absorb_g2(b"final.v.a", &self.v[0]);
        t.absorb_g2(b"final.v.b", &self.v[1]);
        t.absorb_g1(b"final.w.a", &self.w[0]);
        t.absorb_g1(b"final.w.b", &self.w[1]);
    }
}

fn put<P: CanonicalSerialize>(out: &mut Vec<u8>, p: &P) {
    p.serialize_compressed(out)
        .expect("serialising into a Vec cannot fail");
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        head
    }
}

fn g1(bytes: &[u8], what: &str) -> Result<G1Affine, AggregateError> {
    canonical(bytes).map_err(|e| AggregateError::Malformed(format!("{what}: {e}")))
}

fn g2(bytes: &[u8], what: &str) -> Result<G2Affine, AggregateError> {
    canonical(bytes).map_err(|e| AggregateError::Malformed(format!("{what}: {e}")))
}

fn gts<const K: usize>(bytes: &[u8], what: &str) -> Result<[Fq12; K], AggregateError> {
    let decoded = bytes
        .par_chunks_exact(GT_LEN)
        .map(|b| gt::decode(b).map_err(|e| AggregateError::Malformed(format!("{what}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(decoded
        .try_into()
        .unwrap_or_else(|_| unreachable!("the caller passes K elements' bytes")))
}

fn decode_round(j: usize, b: &[u8]) -> Result<Round, AggregateError> {
    let what = format!("round {j}");
    let [tl0, tl1, tr0, tr1, zl, zr, ml0, ml1, mr0, mr1] =
        gts::<ROUND_GTS>(&b[..ROUND_GTS * GT_LEN], &what)?;
    let z = &b[ROUND_GTS * GT_LEN..];
    Ok(Round {
        tipp_l: [tl0, tl1],
        tipp_r: [tr0, tr1],
        z_ab_l: zl,
        z_ab_r: zr,
        mipp_l: [ml0, ml1],
        mipp_r: [mr0, mr1],
        z_c_l: g1(&z[..G1_LEN], &what)?,
        z_c_r: g1(&z[G1_LEN..], &what)?,
    })
}

impl Serialize for AggregateProof {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for AggregateProof {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AggregateProof::from_hex(&s).map_err(serde::de::Error::custom)
    }
}
