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
        let protocol = s.section(1, "protocol")?.u32()?;
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
        let mut h = s.section(2, "Groth16 header")?;
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
        let alpha_g1 = h.g1("alpha")?;
        let beta_g1 = h.g1("beta (G1)")?;
        let beta_g2 = h.g2("beta", true)?;
        let gamma_g2 = h.g2("gamma", true)?;
        let delta_g1 = h.g1("delta (G1)")?;
        let delta_g2 = h.g2("delta", true)?;

        let g1s = |kind: u32, what: &str, n: usize| -> Result<Vec<G1Affine>, CircomError> {
            let mut r = s.section(kind, what)?;
            expect_len(&r, what, n, 64)?;
            (0..n).map(|i| r.g1(&format!("{what} point {i}"))).collect()
        };
        let gamma_abc_g1 = g1s(3, "IC", public + 1)?;
        let a_query = g1s(5, "A", vars)?;
        let b_g1_query = g1s(6, "B1", vars)?;
        let b_g2_query = {
            let mut r = s.section(7, "B2")?;
            expect_len(&r, "B2", vars, 128)?;
            (0..vars)
                .map(|i| r.g2(&format!("B2 point {i}"), false))
                .collect::<Result<Vec<_>, _>>()?
        };
        let l_query = g1s(8, "C", vars - public - 1)?;
        let h_query = g1s(9, "H", domain_size)?;

        let mut c = s.section(4, "coefficients")?;
        let n = c.u32()? as usize;
        expect_len(&c, "coefficients", n, 12 + 32)?;
        let mut coefs = Vec::with_capacity(n);
        for i in 0..n {
            let matrix = c.u32()?;
            let constraint = c.u32()?;
            let signal = c.u32()?;
            let value = c.fr_mont2(&format!("coefficient {i}"))?;
            coefs.push(Coef {
                matrix,
                constraint,
                signal,
                value: ark_ff::PrimeField::into_bigint(value).0,
            });
        }

        let vk = VerifyingKey {
            alpha_g1,
            beta_g2,
            gamma_g2,
            delta_g2,
            gamma_abc_g1,
        };
        Ok(Zkey {
            vars,
            public,
            domain_size,
            pk: ProvingKey {
                vk,
                beta_g1,
                delta_g1,
                a_query,
                b_g1_query,
                b_g2_query,
                h_query,
                l_query,
            },
            coefs,
        })
    }
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
