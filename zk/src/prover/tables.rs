//! Fixed-base tables: for each base `P_i` of a proving key's A, B1, B2, L or H
//! list, the window multiples `2^(c*j) * P_i` for `j < windows`. With them an
//! MSM needs no doublings and all windows share one set of buckets, so the
//! bucket sums are paid once instead of once per window, and a wider window
//! pays off (fewer additions per scalar).
//!
//! A [`TablePlan`] picks, within a memory budget, which lists get a table and
//! how wide its window is, from a cost model of the additions each saves. A
//! plan is a pure function of the key's shape and the budget, so a cache file
//! written under one plan is refused (and rebuilt) under another.
//!
//! ## File format (version 1), all integers little-endian
//! ```text
//! "zkpt"  u32 version
//! u32 length, then that many bytes of UTF-8: the key's id (the hash the pool
//!     announced for the proving key)
//! u32 number of tables, then for each: u32 list (0 A, 1 B1, 2 B2, 3 L, 4 H;
//!     plus 256 for windows over GLV halves), u64 points, u32 window bits,
//!     u32 windows, u32 bytes per entry
//! the entries, table after table: x then y, as the field elements' Montgomery
//!     limbs (G2 coordinates c0 then c1); (0, 0) is the identity
//! 32 bytes: SHA-256 of everything before them
//! ```
//! A file whose header differs from the plan, whose length is wrong or whose
//! hash does not match is refused; the caller rebuilds it. A table that passes
//! is still spot-checked against the key before use, and every proof made with
//! it is verified before it leaves the prover (see [`super`]).

use std::io::{Read, Write};

use ark_bn254::{g1, g2, G1Affine, G2Affine};
use ark_ec::short_weierstrass::{Affine, Projective, SWCurveConfig};
use ark_ec::{AdditiveGroup, CurveGroup};
use ark_ff::{BigInt, Field, PrimeField};
use ark_groth16::ProvingKey;
use rand::Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::glv::HALF_BITS;
use super::msm::{windows, SCALAR_BITS};
use crate::Bn254;

const MAGIC: &[u8; 4] = b"zkpt";
const VERSION: u32 = 1;

/// One of the proving key's five base lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BaseList {
    /// `a_query`: G1, one point per wire.
    A,
    /// `b_g1_query`: G1, one point per wire.
    B1,
    /// `b_g2_query`: G2, one point per wire.
    B2,
    /// `l_query`: G1, one point per private wire.
    L,
    /// `h_query`: G1, one point per point of the QAP domain.
    H,
}

impl BaseList {
    pub const ALL: [BaseList; 5] = [
        BaseList::A,
        BaseList::B1,
        BaseList::B2,
        BaseList::L,
        BaseList::H,
    ];

    fn id(self) -> u32 {
        self as u32
    }

    /// Bytes of one table entry (an affine point).
    pub fn entry_bytes(self) -> usize {
        match self {
            BaseList::B2 => 128,
            _ => 64,
        }
    }

    /// Cost of one addition relative to a G1 addition (an Fq2 multiplication is
    /// about three Fq multiplications).
    fn weight(self) -> u64 {
        match self {
            BaseList::B2 => 3,
            _ => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BaseList::A => "A",
            BaseList::B1 => "B1",
            BaseList::B2 => "B2",
            BaseList::L => "L",
            BaseList::H => "H",
        }
    }

    /// The list's points in a proving key.
    pub(crate) fn len_in(self, pk: &ProvingKey<Bn254>) -> usize {
        match self {
            BaseList::A => pk.a_query.len(),
            BaseList::B1 => pk.b_g1_query.len(),
            BaseList::B2 => pk.b_g2_query.len(),
            BaseList::L => pk.l_query.len(),
            BaseList::H => pk.h_query.len(),
        }
    }

    fn g1_in(self, pk: &ProvingKey<Bn254>) -> &[G1Affine] {
        match self {
            BaseList::A => &pk.a_query,
            BaseList::B1 => &pk.b_g1_query,
            BaseList::L => &pk.l_query,
            BaseList::H => &pk.h_query,
            BaseList::B2 => unreachable!("B2 is a G2 list"),
        }
    }
}

/// One planned table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSpec {
    pub list: BaseList,
    pub points: usize,
    /// Window width in bits.
    pub c: u32,
    pub windows: usize,
    /// Windows over the 128-bit halves of GLV-split scalars (G1 lists only):
    /// half the windows, each used twice (the second time through `phi`).
    pub glv: bool,
}

impl TableSpec {
    pub(crate) fn new(list: BaseList, points: usize, c: u32, glv: bool) -> Self {
        let bits = if glv { HALF_BITS } else { SCALAR_BITS };
        TableSpec {
            list,
            points,
            c,
            windows: windows(bits, c),
            glv,
        }
    }

    pub fn bytes(&self) -> u64 {
        (self.points * self.windows * self.list.entry_bytes()) as u64
    }
}

/// Which lists get a table, within a memory budget.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TablePlan {
    pub tables: Vec<TableSpec>,
}

/// Additions (in G1-addition units) of a variable-base MSM of `n` points at its
/// best window.
fn variable_cost(n: usize) -> u64 {
    let c = super::msm::variable_window(n);
    windows(SCALAR_BITS, c) as u64 * (n as u64 + (1u64 << (c - 1)) * 4)
}

/// Additions of a fixed-base MSM of `n` points with a table of window `c`
/// (GLV: twice the points over half the windows, the `phi` half a sixth
/// dearer for its multiplication by `beta`).
fn fixed_cost(n: usize, c: u32, glv: bool) -> u64 {
    let adds = if glv {
        windows(HALF_BITS, c) as u64 * n as u64 * 13 / 6
    } else {
        windows(SCALAR_BITS, c) as u64 * n as u64
    };
    adds + (1u64 << (c - 1)) * 4
}

impl TablePlan {
    /// The plan for a key with these list lengths, spending at most `budget`
    /// bytes: the set of tables (one window width per list, or none) that saves
    /// the most additions per proof. Zero budget: no tables.
    pub fn new(pk: &ProvingKey<Bn254>, budget: u64) -> Self {
        Self::for_lengths(BaseList::ALL.map(|l| (l, l.len_in(pk))).as_slice(), budget)
    }

    fn for_lengths(lists: &[(BaseList, usize)], budget: u64) -> Self {
        // Each list's options: no table, or a table of window 8..=20 bits
        // that is cheaper than the variable-base sum.
        let options: Vec<Vec<Option<(TableSpec, u64)>>> = lists
            .iter()
            .map(|&(list, n)| {
                let mut o = vec![None];
                if n > 0 {
                    let var = variable_cost(n);
                    let glv: &[bool] = if list == BaseList::B2 {
                        &[false]
                    } else {
                        &[false, true]
                    };
                    for &glv in glv {
                        for c in 8..=20 {
                            let fixed = fixed_cost(n, c, glv);
                            if fixed < var {
                                o.push(Some((
                                    TableSpec::new(list, n, c, glv),
                                    (var - fixed) * list.weight(),
                                )));
                            }
                        }
                    }
                }
                // Keep the options no other beats on both bytes and savings.
                let all = o.clone();
                o.retain(|x| {
                    let (b, v) = x.map_or((0, 0), |(t, v)| (t.bytes(), v));
                    !all.iter().any(|y| {
                        let (yb, yv) = y.map_or((0, 0), |(t, v)| (t.bytes(), v));
                        (yb <= b && yv > v) || (yb < b && yv >= v)
                    })
                });
                o
            })
            .collect();
        // Five lists and a handful of undominated options each: search them all.
        let mut best: (u64, u64, Vec<TableSpec>) = (0, 0, vec![]);
        let mut choice = vec![0usize; options.len()];
        loop {
            let (mut saved, mut bytes, mut specs) = (0u64, 0u64, vec![]);
            for (o, &k) in options.iter().zip(&choice) {
                if let Some((spec, s)) = o[k] {
                    saved += s;
                    bytes += spec.bytes();
                    specs.push(spec);
                }
            }
            if bytes <= budget && (saved > best.0 || (saved == best.0 && bytes < best.1)) {
                best = (saved, bytes, specs);
            }
            // Next combination.
            let mut i = 0;
            loop {
                if i == choice.len() {
                    return TablePlan { tables: best.2 };
                }
                choice[i] += 1;
                if choice[i] < options[i].len() {
                    break;
                }
                choice[i] = 0;
                i += 1;
            }
        }
    }

    /// Bytes of all the planned tables.
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(TableSpec::bytes).sum()
    }

    pub fn get(&self, list: BaseList) -> Option<&TableSpec> {
        self.tables.iter().find(|t| t.list == list)
    }
}

impl std::fmt::Display for TablePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.tables.is_empty() {
            return write!(f, "no tables");
        }
        let parts: Vec<String> = self
            .tables
            .iter()
            .map(|t| {
                format!(
                    "{} ({} bits{})",
                    t.list.name(),
                    t.c,
                    if t.glv { ", GLV" } else { "" }
                )
            })
            .collect();
        write!(
            f,
            "{}: {:.0} MiB",
            parts.join(", "),
            self.bytes() as f64 / (1 << 20) as f64
        )
    }
}

/// One built table.
pub(crate) enum Table {
    G1(Vec<G1Affine>),
    G2(Vec<G2Affine>),
}

/// Built or loaded tables for one proving key.
pub struct Tables {
    key: String,
    pub plan: TablePlan,
    tables: Vec<(TableSpec, Table)>,
}

#[cfg(test)]
impl Tables {
    /// Replaces every point of the first table with the generator: a table
    /// that no longer belongs to its key.
    pub(crate) fn corrupt_for_test(&mut self) {
        use ark_ec::AffineRepr;
        match &mut self.tables[0].1 {
            Table::G1(t) => t.iter_mut().for_each(|p| *p = G1Affine::generator()),
            Table::G2(t) => t.iter_mut().for_each(|p| *p = G2Affine::generator()),
        }
    }
}

/// Why a tables file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// Reading the file failed.
    #[error("cannot read the tables file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is not a tables file of this version.
    #[error("not a zkpool tables file (version {VERSION})")]
    Format,
    /// The file is for another key or another plan (a changed memory budget).
    #[error("the tables file is for {0}; this key and budget need other tables")]
    Stale(String),
    /// The file's hash does not match its contents.
    #[error("the tables file is corrupt (its SHA-256 does not match)")]
    Corrupt,
    /// A table entry differs from the key's base it was made from.
    #[error("table {list} entry {index} does not match the proving key")]
    Mismatch { list: &'static str, index: usize },
}

/// `table[i * windows + j] = 2^(c*j) * bases[i]`.
pub(crate) fn build_table<P: SWCurveConfig>(
    bases: &[Affine<P>],
    c: u32,
    windows: usize,
) -> Vec<Affine<P>> {
    const CHUNK: usize = 256;
    let chunks: Vec<Vec<Affine<P>>> = bases
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut proj = Vec::with_capacity(chunk.len() * windows);
            for p in chunk {
                let mut q = Projective::<P>::from(*p);
                for j in 0..windows {
                    proj.push(q);
                    if j + 1 < windows {
                        for _ in 0..c {
                            q.double_in_place();
                        }
                    }
                }
            }
            Projective::normalize_batch(&proj)
        })
        .collect();
    let mut out = Vec::with_capacity(bases.len() * windows);
    for c in chunks {
        out.extend_from_slice(&c);
    }
    out
}

/// Checks `count` random entries of a table against their base.
fn spot_check<P: SWCurveConfig>(
    bases: &[Affine<P>],
    table: &[Affine<P>],
    spec: &TableSpec,
    count: usize,
) -> Result<(), TablesError> {
    let mut rng = rand::thread_rng();
    let w = spec.windows;
    if table.len() != bases.len() * w {
        return Err(TablesError::Mismatch {
            list: spec.list.name(),
            index: table.len().min(bases.len() * w),
        });
    }
    if bases.is_empty() {
        return Ok(());
    }
    // Always the first and last entries, then random ones.
    let mut picks = vec![0, table.len() - 1];
    picks.extend((0..count).map(|_| rng.gen_range(0..table.len())));
    for e in picks {
        let (i, j) = (e / w, e % w);
        let mut q = Projective::<P>::from(bases[i]);
        for _ in 0..spec.c as usize * j {
            q.double_in_place();
        }
        if q.into_affine() != table[e] {
            return Err(TablesError::Mismatch {
                list: spec.list.name(),
                index: e,
            });
        }
    }
    Ok(())
}

/// Montgomery limbs of a coordinate (an Fq or an Fq2), appended to `out`.
trait Limbs: Field {
    const LIMBS: usize;
    fn put(&self, out: &mut Vec<u8>);
    fn take(bytes: &[u8]) -> Option<Self>;
}

fn fq_take(b: &[u8]) -> Option<ark_bn254::Fq> {
    let mut l = [0u64; 4];
    for (i, l) in l.iter_mut().enumerate() {
        *l = u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    }
    let big = BigInt::new(l);
    (big < ark_bn254::Fq::MODULUS).then(|| ark_bn254::Fq::new_unchecked(big))
}

impl Limbs for ark_bn254::Fq {
    const LIMBS: usize = 4;
    fn put(&self, out: &mut Vec<u8>) {
        for l in self.0 .0 {
            out.extend_from_slice(&l.to_le_bytes());
        }
    }
    fn take(b: &[u8]) -> Option<Self> {
        fq_take(b)
    }
}

impl Limbs for ark_bn254::Fq2 {
    const LIMBS: usize = 8;
    fn put(&self, out: &mut Vec<u8>) {
        self.c0.put(out);
        self.c1.put(out);
    }
    fn take(b: &[u8]) -> Option<Self> {
        Some(ark_bn254::Fq2::new(
            fq_take(&b[..32])?,
            fq_take(&b[32..64])?,
        ))
    }
}

fn put_points<P: SWCurveConfig>(points: &[Affine<P>], out: &mut Vec<u8>)
where
    P::BaseField: Limbs,
{
    for p in points {
        p.x.put(out);
        p.y.put(out);
    }
}

/// Reads `count` points from `r`, hashing the bytes read.
fn take_points<P: SWCurveConfig>(
    r: &mut dyn Read,
    hash: &mut Sha256,
    count: usize,
) -> Result<Vec<Affine<P>>, TablesError>
where
    P::BaseField: Limbs,
{
    let each = 2 * 8 * <P::BaseField as Limbs>::LIMBS;
    let mut out = Vec::with_capacity(count);
    let mut buf = vec![0u8; each * 4096];
    let mut left = count;
    while left > 0 {
        let k = left.min(4096);
        let bytes = &mut buf[..k * each];
        r.read_exact(bytes)?;
        hash.update(&*bytes);
        for e in bytes.chunks_exact(each) {
            let x = P::BaseField::take(&e[..each / 2]).ok_or(TablesError::Corrupt)?;
            let y = P::BaseField::take(&e[each / 2..]).ok_or(TablesError::Corrupt)?;
            out.push(Affine::<P>::new_unchecked(x, y));
        }
        left -= k;
    }
    Ok(out)
}

impl Tables {
    /// Builds the planned tables for `pk`, whose id (the hash it is addressed
    /// by) is `key`, and spot-checks them.
    pub fn build(pk: &ProvingKey<Bn254>, key: &str, plan: &TablePlan) -> Result<Self, TablesError> {
        let mut tables = vec![];
        for spec in &plan.tables {
            let t = match spec.list {
                BaseList::B2 => Table::G2(build_table::<g2::Config>(
                    &pk.b_g2_query,
                    spec.c,
                    spec.windows,
                )),
                l => Table::G1(build_table::<g1::Config>(l.g1_in(pk), spec.c, spec.windows)),
            };
            tables.push((*spec, t));
        }
        let t = Tables {
            key: key.to_owned(),
            plan: plan.clone(),
            tables,
        };
        t.check(pk)?;
        Ok(t)
    }

    /// Spot-checks every table against the key's bases.
    fn check(&self, pk: &ProvingKey<Bn254>) -> Result<(), TablesError> {
        for (spec, t) in &self.tables {
            if spec.points != spec.list.len_in(pk) {
                return Err(TablesError::Stale(format!(
                    "a key with {} {} points",
                    spec.points,
                    spec.list.name()
                )));
            }
            match t {
                Table::G1(t) => spot_check(spec.list.g1_in(pk), t, spec, 16)?,
                Table::G2(t) => spot_check(&pk.b_g2_query, t, spec, 16)?,
            }
        }
        Ok(())
    }

    /// Bytes of table entries held.
    pub fn bytes(&self) -> u64 {
        self.plan.bytes()
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn get(&self, list: BaseList) -> Option<(&TableSpec, &Table)> {
        self.tables
            .iter()
            .find(|(s, _)| s.list == list)
            .map(|(s, t)| (s, t))
    }

    fn header(key: &str, plan: &TablePlan) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&(key.len() as u32).to_le_bytes());
        h.extend_from_slice(key.as_bytes());
        h.extend_from_slice(&(plan.tables.len() as u32).to_le_bytes());
        for t in &plan.tables {
            h.extend_from_slice(&(t.list.id() | (t.glv as u32) << 8).to_le_bytes());
            h.extend_from_slice(&(t.points as u64).to_le_bytes());
            h.extend_from_slice(&t.c.to_le_bytes());
            h.extend_from_slice(&(t.windows as u32).to_le_bytes());
            h.extend_from_slice(&(t.list.entry_bytes() as u32).to_le_bytes());
        }
        h
    }

    /// Writes the tables in the file format above.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut hash = Sha256::new();
        let mut emit = |bytes: &[u8], out: &mut dyn Write| -> std::io::Result<()> {
            hash.update(bytes);
            out.write_all(bytes)
        };
        emit(&Self::header(&self.key, &self.plan), out)?;
        let mut buf = Vec::with_capacity(1 << 20);
        for (_, t) in &self.tables {
            match t {
                Table::G1(t) => {
                    for chunk in t.chunks(8192) {
                        buf.clear();
                        put_points(chunk, &mut buf);
                        emit(&buf, out)?;
                    }
                }
                Table::G2(t) => {
                    for chunk in t.chunks(4096) {
                        buf.clear();
                        put_points(chunk, &mut buf);
                        emit(&buf, out)?;
                    }
                }
            }
        }
        let digest = hash.finalize();
        out.write_all(&digest)
    }

    /// Reads tables written by [`Tables::write`] for `pk` (addressed as `key`)
    /// under `plan`: the header must match, the hash must hold, and spot checks
    /// against the key must pass.
    pub fn read(
        pk: &ProvingKey<Bn254>,
        key: &str,
        plan: &TablePlan,
        input: &mut dyn Read,
    ) -> Result<Self, TablesError> {
        let want = Self::header(key, plan);
        let mut got = vec![0u8; 12];
        input.read_exact(&mut got)?;
        if &got[..4] != MAGIC || got[4..8] != VERSION.to_le_bytes() {
            return Err(TablesError::Format);
        }
        let key_len = u32::from_le_bytes(got[8..12].try_into().expect("4 bytes")) as usize;
        if key_len > 4096 {
            return Err(TablesError::Format);
        }
        let mut rest = vec![0u8; key_len + 4];
        input.read_exact(&mut rest)?;
        got.extend_from_slice(&rest);
        let count = u32::from_le_bytes(got[got.len() - 4..].try_into().expect("4 bytes")) as usize;
        if count > BaseList::ALL.len() {
            return Err(TablesError::Format);
        }
        let mut specs = vec![0u8; count * 24];
        input.read_exact(&mut specs)?;
        got.extend_from_slice(&specs);
        if got != want {
            let their_key = String::from_utf8_lossy(&got[12..12 + key_len]).into_owned();
            return Err(TablesError::Stale(if their_key == key {
                "another memory budget".into()
            } else {
                format!("key {their_key}")
            }));
        }
        let mut hash = Sha256::new();
        hash.update(&got);
        let mut tables = vec![];
        for spec in &plan.tables {
            let n = spec.points * spec.windows;
            let t = match spec.list {
                BaseList::B2 => Table::G2(take_points::<g2::Config>(input, &mut hash, n)?),
                _ => Table::G1(take_points::<g1::Config>(input, &mut hash, n)?),
            };
            tables.push((*spec, t));
        }
        let mut digest = [0u8; 32];
        input.read_exact(&mut digest)?;
        if digest[..] != hash.finalize()[..] {
            return Err(TablesError::Corrupt);
        }
        let mut trailing = [0u8; 1];
        if input.read(&mut trailing)? != 0 {
            return Err(TablesError::Corrupt);
        }
        let t = Tables {
            key: key.to_owned(),
            plan: plan.clone(),
            tables,
        };
        t.check(pk)?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_spend_the_budget_where_it_saves_most() {
        let lists = [
            (BaseList::A, 1 << 16),
            (BaseList::B1, 1 << 16),
            (BaseList::B2, 1 << 16),
            (BaseList::L, 1 << 16),
            (BaseList::H, 1 << 16),
        ];
        assert!(TablePlan::for_lengths(&lists, 0).tables.is_empty());
        let all = TablePlan::for_lengths(&lists, u64::MAX);
        assert_eq!(all.tables.len(), 5);
        let some = TablePlan::for_lengths(&lists, 200 << 20);
        assert!(some.bytes() <= 200 << 20);
        assert!(!some.tables.is_empty());
        // G2 saves three times as much per addition, for twice the bytes.
        assert!(some.get(BaseList::B2).is_some(), "{some}");
        // At 2^18 points, 1 GiB holds a table for every list when the G1 ones
        // are over GLV halves (about 1.4 GiB without).
        let big = BaseList::ALL.map(|l| (l, 1usize << 18));
        let gib = TablePlan::for_lengths(&big, 1 << 30);
        assert_eq!(gib.tables.len(), 5, "{gib}");
        assert!(
            gib.tables.iter().all(|t| t.glv == (t.list != BaseList::B2)),
            "{gib}"
        );
        assert!(TablePlan::for_lengths(&big, 4 << 30)
            .tables
            .iter()
            .all(|t| !t.glv));
    }
}
