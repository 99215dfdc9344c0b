//! The aggregation SRS: powers of two secrets, `a` and `b`, from two independent
//! powers-of-tau ceremonies.
//!
//! - Prover side ([`Srs`]): `a^i * g` for `i < 2N` and `a^i * h` for `i < N`, the same
//!   for `b`, where `N` is the largest (power-of-two) number of proofs it aggregates.
//!   For `n` proofs (padded to a power of two) the commitment keys are
//!   `v = (a^i * h, b^i * h)` and `w = (a^(n+i) * g, b^(n+i) * g)`, `i < n`, and the
//!   KZG openings use the low powers.
//! - Verifier side ([`SrsVerifierKey`]): `a * g`, `a * h`, `b * g`, `b * h` (with the
//!   standard generators `g`, `h`); 197 bytes, addressed by the SHA-256 of its
//!   encoding, which every aggregate's transcript absorbs.
//!
//! **Trust.** Soundness needs both: no one knows `a` or `b` (each ceremony had at
//! least one honest contributor who destroyed their share), and the two ceremonies
//! are independent (no one knows a relation between `a` and `b`: two transcripts of
//! the same ceremony, or one ceremony continued from the other, do not qualify).
//! Whoever knows `a` and `b` can make an aggregate of false statements. Nothing here
//! can check independence; [`Srs::from_ptau`] refuses only the detectable mistakes
//! (the same secret twice, a non-standard generator, powers that are not powers of
//! one secret). A verifier who does not trust the pool takes the verifier key from
//! the two ceremonies' published files itself, not from the pool.

use std::io::Read;

use ark_bn254::{Bn254, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{pairing::Pairing, AffineRepr, CurveGroup, PrimeGroup, ScalarMul, VariableBaseMSM};
use ark_ff::One;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use rand::{rngs::OsRng, Rng};
use sha2::{Digest, Sha256};

use super::{ptau, transcript::Transcript, AggregateError, MAX_ROUNDS};

type G2Prepared = <Bn254 as Pairing>::G2Prepared;

/// The prover's SRS: enough powers of both secrets for up to [`Srs::max_n`] proofs.
#[derive(Clone)]
pub struct Srs {
    max_n: usize,
    /// `a^i * g`, `i < 2 max_n`.
    g_a: Vec<G1Affine>,
    /// `a^i * h`, `i < max(max_n, 2)`.
    h_a: Vec<G2Affine>,
    g_b: Vec<G1Affine>,
    h_b: Vec<G2Affine>,
    verifier: SrsVerifierKey,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Srs(up to {} proofs, {:?})", self.max_n, self.verifier)
    }
}

/// What a verifier of aggregates needs from the SRS: one power of each secret in
/// each group.
#[derive(Clone)]
pub struct SrsVerifierKey {
    g_a: G1Affine,
    h_a: G2Affine,
    g_b: G1Affine,
    h_b: G2Affine,
    /// `h`, `a * h`, `b * h`, prepared for Miller loops.
    pub(crate) h_prepared: [G2Prepared; 3],
    id: [u8; 32],
    insecure: bool,
}

impl std::fmt::Debug for SrsVerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.insecure {
            write!(
                f,
                "SrsVerifierKey({}, INSECURE test SRS: its secrets are public, anyone can forge aggregates)",
                self.id_hex()
            )
        } else {
            write!(f, "SrsVerifierKey({})", self.id_hex())
        }
    }
}

impl PartialEq for SrsVerifierKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for SrsVerifierKey {}

const VK_MAGIC: &[u8; 4] = b"ZKSR";
const VK_VERSION: u8 = 1;
/// Bytes of an encoded [`SrsVerifierKey`].
const VK_LEN: usize = 5 + 32 + 64 + 32 + 64;

impl SrsVerifierKey {
    /// Checks the four points against each other and the standard generators.
    fn new(
        g_a: G1Affine,
        h_a: G2Affine,
        g_b: G1Affine,
        h_b: G2Affine,
        insecure: bool,
    ) -> Result<Self, AggregateError> {
        let g = G1Affine::generator();
        let h = G2Affine::generator();
        for (name, p) in [("a", g_a), ("b", g_b)] {
            if p.is_zero() || p == g || p == -g {
                return Err(AggregateError::Srs(format!(
                    "the secret {name} is 0 or ±1: that is no secret"
                )));
            }
        }
        if g_a == g_b || g_a == -g_b {
            return Err(AggregateError::Srs(
                "both halves have the same secret (up to sign): the two powers of tau must come from two independent ceremonies".into(),
            ));
        }
        // e(a g, h) = e(g, a h), and the same for b: the G1 and G2 powers share a secret.
        for (name, p, q) in [("a", g_a, h_a), ("b", g_b, h_b)] {
            let one = Bn254::multi_pairing([p, -g], [h, q]);
            if !one.0.is_one() {
                return Err(AggregateError::Srs(format!(
                    "the G1 and G2 powers of secret {name} are not powers of the same secret"
                )));
            }
        }
        let mut key = SrsVerifierKey {
            g_a,
            h_a,
            g_b,
            h_b,
            h_prepared: [h.into(), h_a.into(), h_b.into()],
            id: [0; 32],
            insecure,
        };
        key.id = Sha256::digest(key.to_bytes()).into();
        Ok(key)
    }

    /// `a * g` and `b * g`.
    pub(crate) fn g_powers(&self) -> [G1Affine; 2] {
        [self.g_a, self.g_b]
    }

    /// The key's identity: SHA-256 of its encoding, absorbed by every aggregate's
    /// transcript, so an aggregate made for one SRS never verifies under another.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// Whether this is the key of [`Srs::insecure_for_tests`], whose secrets are public.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// The canonical encoding: magic `ZKSR`, version 1, then `a g`, `a h`, `b g`,
    /// `b h` compressed (197 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(VK_LEN);
        out.extend_from_slice(VK_MAGIC);
        out.push(VK_VERSION);
        self.g_a
            .serialize_compressed(&mut out)
            .expect("serialising into a Vec cannot fail");
        self.h_a
            .serialize_compressed(&mut out)
            .expect("serialising into a Vec cannot fail");
        self.g_b
            .serialize_compressed(&mut out)
            .expect("serialising into a Vec cannot fail");
        self.h_b
            .serialize_compressed(&mut out)
            .expect("serialising into a Vec cannot fail");
        out
    }

    /// Decodes a verifier key with full validation: canonical points in their
    /// subgroups, consistent with each other (pairing checks). The insecure test key
    /// is recognised and says so in its `Debug` and [`Self::is_insecure`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AggregateError> {
        let bad = |m: String| AggregateError::Srs(format!("SRS verifier key: {m}"));
        if bytes.len() != VK_LEN {
            return Err(bad(format!("{} bytes, expected {VK_LEN}", bytes.len())));
        }
        if &bytes[..4] != VK_MAGIC || bytes[4] != VK_VERSION {
            return Err(bad(format!(
                "header {:?} is not ZKSR version {VK_VERSION}",
                &bytes[..5]
            )));
        }
        let g_a: G1Affine = canonical(&bytes[5..37]).map_err(&bad)?;
        let h_a: G2Affine = canonical(&bytes[37..101]).map_err(&bad)?;
        let g_b: G1Affine = canonical(&bytes[101..133]).map_err(&bad)?;
        let h_b: G2Affine = canonical(&bytes[133..197]).map_err(&bad)?;
        let insecure = {
            let (a, b) = insecure_secrets();
            g_a == (G1Projective::generator() * a).into_affine()
                && g_b == (G1Projective::generator() * b).into_affine()
        };
        Self::new(g_a, h_a, g_b, h_b, insecure)
    }
}

/// Decodes a compressed point with validation and refuses any encoding but the one
/// it would produce (arkworks accepts, for instance, any x with the infinity flag).
pub(crate) fn canonical<P: CanonicalDeserialize + CanonicalSerialize>(
    bytes: &[u8],
) -> Result<P, String> {
    let p = P::deserialize_with_mode(bytes, Compress::Yes, Validate::Yes)
        .map_err(|e| format!("invalid point ({e})"))?;
    let mut back = Vec::with_capacity(bytes.len());
    p.serialize_compressed(&mut back)
        .expect("serialising into a Vec cannot fail");
    if back != bytes {
        return Err("non-canonical point encoding".into());
    }
    Ok(p)
}

/// The two secrets of the insecure test SRS: derived from a public label, so anyone
/// can compute them.
fn insecure_secrets() -> (Fr, Fr) {
    let mut t = Transcript::new(b"zkpool INSECURE aggregation test SRS: these secrets are public");
    (t.challenge(b"a"), t.challenge(b"b"))
}

impl Srs {
    /// The SRS from two snarkjs `.ptau` files of **two independent ceremonies** (see
    /// the module doc for what that must mean). Reads, validates and keeps the first
    /// `2 max_n` G1 and `max_n` G2 powers of each; `max_n` is a power of two, and a
    /// power-`k` file supports `max_n` up to `2^(k-1)`.
    ///
    /// Refuses, naming the file: anything that is not a BN254 `.ptau`, truncated or
    /// trailing bytes, points off the curve or outside the subgroup, a first power
    /// that is not the standard generator, powers that are not consecutive powers of
    /// one secret (randomised pairing check), a ceremony too small. Refuses the pair
    /// when both files have the same secret. Reading a large ceremony is dominated
    /// by the G2 subgroup checks (about 0.14 ms a point, spread over all cores).
    pub fn from_ptau(
        first: &mut dyn Read,
        first_name: &str,
        second: &mut dyn Read,
        second_name: &str,
        max_n: usize,
    ) -> Result<Srs, AggregateError> {
        check_max_n(max_n)?;
        let a = ptau::read_powers(first, first_name, 2 * max_n, max_n.max(2))?;
        check_powers(&a, first_name)?;
        let b = ptau::read_powers(second, second_name, 2 * max_n, max_n.max(2))?;
        check_powers(&b, second_name)?;
        let verifier = SrsVerifierKey::new(a.g1[1], a.g2[1], b.g1[1], b.g2[1], false)?;
        Ok(Srs {
            max_n,
            g_a: a.g1,
            h_a: a.g2,
            g_b: b.g1,
            h_b: b.g2,
            verifier,
        })
    }

    /// **INSECURE: for tests and demos only.** An SRS whose two secrets are derived
    /// from a public label, so anyone can forge aggregates under it. Its verifier key
    /// says so ([`SrsVerifierKey::is_insecure`], `Debug`). `max_n` must be a power of
    /// two.
    pub fn insecure_for_tests(max_n: usize) -> Srs {
        check_max_n(max_n).expect("insecure_for_tests: max_n must be a power of two up to 2^24");
        let (a, b) = insecure_secrets();
        let powers = |s: Fr, count: usize| -> Vec<Fr> {
            std::iter::successors(Some(Fr::one()), |p| Some(*p * s))
                .take(count)
                .collect()
        };
        let (pa, pb) = (powers(a, 2 * max_n), powers(b, 2 * max_n));
        let g2_count = max_n.max(2);
        let g_a = G1Projective::generator().batch_mul(&pa);
        let g_b = G1Projective::generator().batch_mul(&pb);
        let h_a = G2Projective::generator().batch_mul(&pa[..g2_count]);
        let h_b = G2Projective::generator().batch_mul(&pb[..g2_count]);
        let verifier = SrsVerifierKey::new(g_a[1], h_a[1], g_b[1], h_b[1], true)
            .expect("the insecure test secrets are distinct and non-trivial");
        Srs {
            max_n,
            g_a,
            h_a,
            g_b,
            h_b,
            verifier,
        }
    }

    /// The largest number of proofs this SRS aggregates.
    pub fn max_n(&self) -> usize {
        self.max_n
    }

    pub fn verifier_key(&self) -> &SrsVerifierKey {
        &self.verifier
    }

    /// The commitment key `v` for `n` (a power of two) proofs: `(a^i h, b^i h)`, `i < n`.
    pub(crate) fn v(&self, n: usize) -> [&[G2Affine]; 2] {
        [&self.h_a[..n], &self.h_b[..n]]
    }

    /// The commitment key `w` for `n` proofs: `(a^(n+i) g, b^(n+i) g)`, `i < n`.
    pub(crate) fn w(&self, n: usize) -> [&[G1Affine]; 2] {
        [&self.g_a[n..2 * n], &self.g_b[n..2 * n]]
    }

    /// All G2 powers `(a^i h, b^i h)` for `i < len` (KZG openings of `v`).
    pub(crate) fn g2_powers(&self, len: usize) -> [&[G2Affine]; 2] {
        [&self.h_a[..len], &self.h_b[..len]]
    }

    /// All G1 powers `(a^i g, b^i g)` for `i < len` (KZG openings of `w`).
    pub(crate) fn g1_powers(&self, len: usize) -> [&[G1Affine]; 2] {
        [&self.g_a[..len], &self.g_b[..len]]
    }
}

fn check_max_n(max_n: usize) -> Result<(), AggregateError> {
    if !max_n.is_power_of_two() || max_n > 1 << MAX_ROUNDS {
        return Err(AggregateError::Srs(format!(
            "max_n = {max_n}: it must be a power of two from 1 to 2^{MAX_ROUNDS}"
        )));
    }
    Ok(())
}

/// Checks that a ceremony's powers start at the standard generators and are
/// consecutive powers of one secret, with random linear combinations (so one
/// pairing equation per group instead of one per power):
/// `e(sum rho_i P_i, tau h) = e(sum rho_i P_(i+1), h)` for the G1 powers `P_i`, and
/// `e(tau g, sum sigma_i Q_i) = e(g, sum sigma_i Q_(i+1))` for the G2 powers `Q_i`.
fn check_powers(p: &ptau::Powers, file: &str) -> Result<(), AggregateError> {
    let fail = |problem: &str| AggregateError::Ptau {
        file: file.to_owned(),
        problem: problem.to_owned(),
    };
    if p.g1[0] != G1Affine::generator() || p.g2[0] != G2Affine::generator() {
        return Err(fail(
            "its first powers are not BN254's standard generators (not a powers-of-tau file of the usual form)",
        ));
    }
    let mut rng = OsRng;
    let mut coefficients = |len: usize| -> Vec<Fr> {
        (0..len)
            .map(|_| Fr::from(rng.gen::<u128>().max(1)))
            .collect()
    };
    let rho = coefficients(p.g1.len() - 1);
    let sigma = coefficients(p.g2.len() - 1);
    let g1_lo = G1Projective::msm(&p.g1[..p.g1.len() - 1], &rho).expect("lengths match");
    let g1_hi = G1Projective::msm(&p.g1[1..], &rho).expect("lengths match");
    let g2_lo = G2Projective::msm(&p.g2[..p.g2.len() - 1], &sigma).expect("lengths match");
    let g2_hi = G2Projective::msm(&p.g2[1..], &sigma).expect("lengths match");
    let g = G1Affine::generator();
    let h = G2Affine::generator();
    // Both equations at once, the second scaled by a random factor.
    let t = Fr::from(rng.gen::<u128>().max(1));
    let check = Bn254::multi_pairing(
        [
            g1_lo.into_affine(),
            (-g1_hi).into_affine(),
            (p.g1[1] * t).into_affine(),
            (-(g * t)).into_affine(),
        ],
        [p.g2[1], h, g2_lo.into_affine(), g2_hi.into_affine()],
    );
    if !check.0.is_one() {
        return Err(fail(
            "its powers are not consecutive powers of one secret (the pairing check failed): the file is corrupt or not a powers-of-tau",
        ));
    }
    if p.g1[1].is_zero() || p.g1[1] == g || p.g1[1] == -g {
        return Err(fail("its secret is 0 or ±1: that is no secret"));
    }
    Ok(())
}
