//! snarkjs's Groth16 `.zkey`: the proving key, the verifying key inside it, and the
//! A/B coefficients it was made from (which tie it to one `.r1cs`).
//!
//! Points are stored as `x, y` in Montgomery form (`x * R mod q`, little-endian),
//! G2 coordinates as `c0, c1`, the identity as zeros. Coefficients are stored
//! multiplied by `R` twice. Section 9 (`H`) holds, for a domain of size `n`, the
//! Lagrange basis of the domain of size `2n` at its odd points, over delta: the
//! prover pairs it with `A·B − C` on the odd coset (see [`super::qap`]).

use ark_bn254::{Bn254, Fq, Fr, G1Affine};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_relations::gr1cs::Matrix;

use super::{
    binfile::{modulus_le, name_prime, Reader, Sections},
    CircomError,
};

const FILE: &str = "zkey";

/// One entry of the coefficients section: `matrix` 0 is A, 1 is B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Coef {
    pub matrix: u32,
    pub constraint: u32,
    pub signal: u32,
    pub value: [u64; 4],
}

/// A parsed snarkjs Groth16 zkey on BN254.
pub struct Zkey {
    /// Signals, the constant 1 included.
    pub vars: usize,
    /// Public signals (outputs and public inputs), the constant 1 excluded.
    pub public: usize,
    pub domain_size: usize,
    pub pk: ProvingKey<Bn254>,
    pub coefs: Vec<Coef>,
}

impl Zkey {
    pub fn parse(bytes: &[u8]) -> Result<Self, CircomError> {
        let s = Sections::parse(FILE, b"zkey", bytes)?;
        let mut coefs = vec![];
        let (header, pk) = read(&s, |_, all| {
            coefs.reserve_exact(all.n);
            all.each(|m, i, w, value| {
                coefs.push(Coef {
                    matrix: m,
                    constraint: i,
                    signal: w,
                    value: ark_ff::PrimeField::into_bigint(value).0,
                });
                Ok(())
            })
        })?;
        Ok(Zkey {
            vars: header.vars,
            public: header.public,
            domain_size: header.domain_size,
            pk,
            coefs,
        })
    }
}

/// What [`read_for_proving`] returns: the counts, the key, and A and B.
pub(crate) type ForProving = (Header, ProvingKey<Bn254>, [Matrix<Fr>; 2]);

/// A zkey's header counts.
pub(crate) struct Header {
    pub vars: usize,
    pub public: usize,
    pub domain_size: usize,
}

/// What a rig proves with, read from a zkey section by section (`s` may be on
/// disk: one section's bytes are held at a time): the proving key, and A and B
/// of the first `constraints` constraints, rebuilt from the coefficients
/// section. The coefficients are bounds-checked, not compared with an r1cs: a
/// rig trusts the bundle's hash, which the pool checked the zkey against
/// ([`super::CircomCircuit::load`]).
pub(crate) fn read_for_proving(
    s: &Sections<'_>,
    constraints: usize,
) -> Result<ForProving, CircomError> {
    let fits = |h: &Header| {
        if constraints.saturating_add(h.public + 1) > h.domain_size {
            return Err(CircomError::Mismatch(format!(
                "the zkey's domain has {} points, the r1cs's {constraints} constraints need more",
                h.domain_size
            )));
        }
        Ok(())
    };
    let mut ab: [Matrix<Fr>; 2] = [vec![], vec![]];
    let (header, pk) = read(s, |h, all| {
        fits(h)?;
        // Two passes: the rows' lengths, then the rows, each allocated once at
        // its size (a row grown by pushes holds room for four terms, and most
        // of a circom circuit's A and B rows have one).
        let mut lengths = [vec![0u32; constraints], vec![0u32; constraints]];
        all.clone().each(|m, i, w, _| {
            let (i, w) = (i as usize, w as usize);
            if m > 1 || w >= h.vars || i >= h.domain_size {
                return Err(CircomError::format(
                    FILE,
                    format!(
                        "coefficient of matrix {m}, constraint {i}, signal {w} is out of range"
                    ),
                ));
            }
            // Rows past the constraints are the public signals' (the prover adds them).
            if let Some(n) = lengths[m as usize].get_mut(i) {
                *n += 1;
            }
            Ok(())
        })?;
        for (rows, lengths) in ab.iter_mut().zip(&lengths) {
            *rows = lengths
                .iter()
                .map(|&n| Vec::with_capacity(n as usize))
                .collect();
        }
        drop(lengths);
        all.each(|m, i, w, value| {
            if let Some(row) = ab[m as usize].get_mut(i as usize) {
                row.push((value, w as usize));
            }
            Ok(())
        })
    })?;
    Ok((header, pk, ab))
}

/// The coefficients section's entries, read one by one (as often as wanted:
/// the reader is a cursor over the section's bytes).
#[derive(Clone)]
struct Coefs<'b> {
    reader: Reader<'b>,
    n: usize,
}

impl Coefs<'_> {
    /// Calls `f(matrix, constraint, signal, value)` for each entry.
    fn each(
        mut self,
        mut f: impl FnMut(u32, u32, u32, Fr) -> Result<(), CircomError>,
    ) -> Result<(), CircomError> {
        let c = &mut self.reader;
        for i in 0..self.n {
            let matrix = c.u32()?;
            let constraint = c.u32()?;
            let signal = c.u32()?;
            let value = c.fr_mont2(&format!("coefficient {i}"))?;
            f(matrix, constraint, signal, value)?;
        }
        Ok(())
    }
}

/// Reads the zkey's header, keys and coefficients (handed to `coefs` with the
/// header's counts, before the points are read).
fn read(
    s: &Sections<'_>,
    coefs: impl FnOnce(&Header, Coefs<'_>) -> Result<(), CircomError>,
) -> Result<(Header, ProvingKey<Bn254>), CircomError> {
    let protocol = Reader::new(FILE, &s.body(1, "protocol")?).u32()?;
    if protocol != 1 {
        let name = match protocol {
            2 => "PLONK",
            10 => "FFLONK",
            _ => "an unknown protocol",
        };
        return Err(CircomError::format(
            FILE,
            format!("it is a {name} key (protocol {protocol}); zkpool runs Groth16 keys (snarkjs groth16 setup)"),
        ));
    }
    let header = s.body(2, "Groth16 header")?;
    let mut h = Reader::new(FILE, &header);
    let n8q = h.u32()? as usize;
    let q = h.bytes(n8q)?;
    if n8q != 32 || q != modulus_le::<Fq>() {
        return Err(CircomError::Curve {
            file: FILE,
            detail: format!("its base field is {}", name_prime(q)),
        });
    }
    let n8r = h.u32()? as usize;
    let r = h.bytes(n8r)?;
    if n8r != 32 || r != modulus_le::<Fr>() {
        return Err(CircomError::Curve {
            file: FILE,
            detail: format!("its scalar field is {}", name_prime(r)),
        });
    }
    let vars = h.u32()? as usize;
    let public = h.u32()? as usize;
    let domain_size = h.u32()? as usize;
    if !domain_size.is_power_of_two() || public + 1 > vars {
        return Err(CircomError::format(
            FILE,
            format!("bad header: {vars} signals, {public} public, domain {domain_size}"),
        ));
    }
    let counts = Header {
        vars,
        public,
        domain_size,
    };
    let alpha_g1 = h.g1("alpha")?;
    let beta_g1 = h.g1("beta (G1)")?;
    let beta_g2 = h.g2("beta", true)?;
    let gamma_g2 = h.g2("gamma", true)?;
    let delta_g1 = h.g1("delta (G1)")?;
    let delta_g2 = h.g2("delta", true)?;

    // The domain sizes what a rig allocates for the matrices' rows: hold it
    // to the H section (64 bytes a point) before anything is allocated by it.
    if s.len(9) != (domain_size as u64).checked_mul(64) {
        return Err(CircomError::format(
            FILE,
            format!(
                "section H holds {} bytes, {domain_size} entries of 64 bytes were expected",
                s.len(9).unwrap_or(0)
            ),
        ));
    }
    // The coefficients first: on a rig they become the matrices, and the
    // section's bytes are dropped before the points are read.
    {
        let body = s.body(4, "coefficients")?;
        let mut c = Reader::new(FILE, &body);
        let n = c.u32()? as usize;
        expect_len(&c, "coefficients", n, 12 + 32)?;
        coefs(&counts, Coefs { reader: c, n })?;
    }

    let g1s = |kind: u32, what: &str, n: usize| -> Result<Vec<G1Affine>, CircomError> {
        let body = s.body(kind, what)?;
        let mut r = Reader::new(FILE, &body);
        expect_len(&r, what, n, 64)?;
        (0..n).map(|i| r.g1(&format!("{what} point {i}"))).collect()
    };
    let gamma_abc_g1 = g1s(3, "IC", public + 1)?;
    let a_query = g1s(5, "A", vars)?;
    let b_g1_query = g1s(6, "B1", vars)?;
    let b_g2_query = {
        let body = s.body(7, "B2")?;
        let mut r = Reader::new(FILE, &body);
        expect_len(&r, "B2", vars, 128)?;
        (0..vars)
            .map(|i| r.g2(&format!("B2 point {i}"), false))
            .collect::<Result<Vec<_>, _>>()?
    };
    let l_query = g1s(8, "C", vars - public - 1)?;
    let h_query = g1s(9, "H", domain_size)?;

    let vk = VerifyingKey {
        alpha_g1,
        beta_g2,
        gamma_g2,
        delta_g2,
        gamma_abc_g1,
    };
    Ok((
        counts,
        ProvingKey {
            vk,
            beta_g1,
            delta_g1,
            a_query,
            b_g1_query,
            b_g2_query,
            h_query,
            l_query,
        },
    ))
}

fn expect_len(r: &Reader<'_>, what: &str, n: usize, each: usize) -> Result<(), CircomError> {
    match n.checked_mul(each) {
        Some(need) if need == r.remaining() => Ok(()),
        _ => Err(CircomError::format(
            FILE,
            format!(
                "section {what} holds {} bytes, {n} entries of {each} bytes were expected",
                r.remaining()
            ),
        )),
    }
}
