//! Zero-knowledge core of zkpool: the built-in circuits, Groth16 keys on BN254,
//! proving, verification and the proof/key/result formats.
//!
//! This crate is pure computation: no tokio, no sockets, no files except where a
//! caller hands it bytes. Every function that checks untrusted data (a proof, a
//! key, a field element, a result file) validates it fully before use: points are
//! decoded with on-curve and subgroup checks, field elements are refused when not
//! canonical, and the number of public inputs is checked against the key, because
//! ark-groth16 0.6 itself does neither (see `../shared/ZK-NOTES.md`, traps 1 and 2).

pub mod aggregate;
pub mod batch;
pub mod circom;
pub mod circuits;
pub mod field;
pub mod gnark;
pub mod keys;
pub mod poseidon;
pub mod proof;
pub mod prover;
pub mod result;
pub mod snarkjs;

pub use ark_bn254::{Bn254, Fr};
pub use circuits::{CircuitSpec, Statement, StatementError};
pub use field::FieldError;
pub use keys::{CircuitKeys, KeyError, VerifierKey};
pub use proof::{ProofBytes, VerifyError};
pub use result::{JobResult, ResultError};

/// Hex-encoded SHA-256 of `bytes`: how circuits, keys and results are addressed.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Tracing directives that silence arkworks' own spans (targets `gr1cs`, `r1cs`).
/// With a subscriber enabled they Debug-format whole constraint systems on every
/// allocation, which turns a 0.1 s proof into minutes. Binaries append these to
/// their default filter.
pub const QUIET_ARKWORKS: &str = "gr1cs=off,r1cs=off";
