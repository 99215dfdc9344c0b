//! SnarkPack aggregation: `n` Groth16 proofs of one verifying key folded into one
//! proof of `O(log n)` size that is checked in `O(log n)` time (Gailly, Maller,
//! Nitulescu, "SnarkPack: Practical SNARK Aggregation", ePrint 2021/529), on BN254.
//!
//! What it is not: a recursive SNARK. The aggregate is only checkable together with
//! the verifying key, every statement's public inputs (`O(n)` field elements, read
//! once and hashed) and an SRS verifier key (six curve points).
//!
//! # The statement it proves
//!
//! For proofs `(A_i, B_i, C_i)` of statements `x_i`, `i < n`, the aggregate shows that
//! the vectors committed to satisfy, for a random `r` fixed after the commitments,
//!
//! `prod_i e(A_i, B_i)^(r^i) = e(alpha, beta)^(sum_{i<n} r^i) * e(sum_i r^i IC(x_i), gamma) * e(sum_i r^i C_i, delta)`
//!
//! which, by Schwartz-Zippel in the exponent, holds only if every Groth16 equation holds
//! (except with probability about `n / 2^254`). Its two arguments, run together with
//! shared challenges so that one commitment key opening serves both:
//! - **TIPP** (target inner pairing product): `Z_AB = prod e(A_i, B_i^(r^i))` for the
//!   pair commitment `com_AB` of `(A, B)`;
//! - **MIPP** (multi-exponentiation inner product): `Z_C = sum r^i C_i` for the
//!   commitment `com_C` of `C`.
//!
//! Each runs `log2 n` GIPA rounds (halve, send cross terms, fold with a challenge `x`),
//! then opens the folded commitment keys with KZG at a challenge point `z`.
//!
//! # SRS and trust
//!
//! The commitment keys come from **two independent powers-of-tau ceremonies** with
//! secrets `a` and `b` (see [`Srs`]): `v = (h^(a^i), h^(b^i))` in G2 and
//! `w = (g^(a^(n+i)), g^(b^(n+i)))` in G1, `i < n`. A commitment is a *pair* of GT
//! elements, one per secret. Each ceremony publishes both G1 and G2 powers of its
//! secret, which makes a commitment under one secret alone non-binding
//! (`e(g^a, h) = e(g, h^a)`); binding, and so soundness, rests on the pair:
//! **trusted: no one knows `a` or `b` (at least one honest contributor in each
//! ceremony), and the two ceremonies are independent (no one knows a relation between
//! `a` and `b`).** Nothing about the Groth16 circuit's own setup is involved.
//!
//! # Fiat-Shamir
//!
//! A SHA-256 transcript ([`transcript`]) absorbs, in order: the protocol tag, the SRS
//! verifier key's id, the Groth16 verifying key, `n`, every public input of every
//! statement, then `com_AB` and `com_C` -> challenge `r`; `Z_AB`, `Z_C` and each
//! round's cross terms -> that round's `x`; the folded proof elements and keys ->
//! the KZG point `z`. Every challenge is non-zero. The verifier's batching of its
//! final pairing equations uses fresh randomness of its own (OS CSPRNG), not the
//! transcript.
//!
//! # Padding
//!
//! GIPA halves vectors, so `n` is padded to the next power of two with the identity
//! proof `(0, 0, 0)`, and the verifier counts `e(alpha, beta)` and the public inputs
//! of the `n` real statements only. Sound: the padding slots are committed (and so
//! fixed) before `r` is drawn like every other slot, and the checked identity is
//! `sum_{i<n} r^i d_i + sum_{i>=n} r^i e_i = 0` with `d_i` the real proofs' Groth16
//! discrepancies (in the exponent) and `e_i` whatever the prover put in the padding:
//! a non-zero polynomial in `r` vanishes at a random `r` with probability at most
//! `deg / r`, so every `d_i` must be zero whatever the padding holds. An honest
//! prover's padding contributes nothing (`e(0, 0) = 1`, `0 * delta = 0`).
//!
//! # Encoding
//!
//! [`AggregateProof::to_bytes`]: a 10-byte header (magic `ZKAG`, version, rounds,
//! `n`), then GT elements in 192-byte torus-compressed form, G1/G2 points in arkworks'
//! compressed form. Decoding refuses anything but the one canonical encoding of valid
//! elements: points on the curve and in the prime-order subgroup, GT elements in the
//! order-r subgroup (a Frobenius test, [`gt`]), exact length for the header's round
//! count, at most [`MAX_ROUNDS`] rounds.

mod format;
mod gt;
mod kzg;
mod prover;
mod ptau;
mod srs;
mod transcript;
mod verifier;

pub use format::{AggregateProof, MAX_ROUNDS};
pub use prover::aggregate;
pub use srs::{Srs, SrsVerifierKey};
pub use verifier::verify_aggregate;

/// Why an aggregate could not be made, read or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// There is nothing to aggregate: an aggregate covers at least one statement.
    #[error("no statements: an aggregate covers at least one proof")]
    Empty,
    /// More statements than the SRS (or the aggregate format) supports.
    #[error("{n} statements, but this SRS aggregates at most {max}")]
    TooMany { n: usize, max: usize },
    /// A statement has a different number of public inputs from the verifying key.
    #[error("statement {index} has {got} public input(s), the verifying key takes {expected}")]
    InputCount {
        index: usize,
        expected: usize,
        got: usize,
    },
    /// A Groth16 proof handed to [`aggregate`] is not a valid proof encoding.
    #[error("proof {index} is malformed: {reason}")]
    MalformedProof { index: usize, reason: String },
    /// The proofs handed to [`aggregate`] do not all verify against their statements
    /// under this verifying key (for instance proofs of another circuit); nothing was
    /// aggregated. `zk::batch` finds which.
    #[error("the proofs do not all verify against their statements under this verifying key; nothing was aggregated")]
    ProofsDoNotVerify,
    /// The bytes are not a canonical encoding of an aggregate.
    #[error("malformed aggregate: {0}")]
    Malformed(String),
    /// The aggregate covers a different number of statements from the ones given.
    #[error(
        "the aggregate covers {aggregated} statement(s), {given} were given to check it against"
    )]
    StatementCount { aggregated: usize, given: usize },
    /// The aggregate does not prove these statements under this verifying key and SRS.
    #[error("the aggregate does not verify against these statements, verifying key and SRS")]
    Invalid,
    /// A `.ptau` file is not usable as half of the SRS.
    #[error("{file}: {problem}")]
    Ptau { file: String, problem: String },
    /// The two ceremonies do not make a usable SRS together, or an SRS verifier key
    /// is inconsistent.
    #[error("unusable SRS: {0}")]
    Srs(String),
}

#[cfg(test)]
mod tests;
