//! Groth16 keys for the built-in circuits, addressed by hash.
//!
//! - A circuit's **id** is the hex SHA-256 of its verifying key in arkworks'
//!   compressed encoding, so anyone holding the key can check the id.
//! - A proving key travels as arkworks' *uncompressed* encoding, addressed by the
//!   hex SHA-256 of those bytes. It is decoded without curve checks: the hash was
//!   checked first and binds the bytes to what the pool published, and skipping
//!   point decompression and subgroup checks makes a multi-megabyte key load in
//!   milliseconds rather than seconds. Verifying keys and proofs, which come from
//!   untrusted parties, are always decoded with full validation.

use ark_groth16::{prepare_verifying_key, Groth16, PreparedVerifyingKey, ProvingKey, VerifyingKey};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use ark_snark::SNARK;
use rand::{rngs::OsRng, rngs::StdRng, SeedableRng};

use crate::{circuits::CircuitSpec, proof::ProofBytes, sha256_hex, Bn254, Statement};

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The bytes do not hash to the hash they were fetched or stored under.
    #[error("key bytes hash to {actual}, expected {expected}: the download or file is corrupt or was swapped")]
    HashMismatch { expected: String, actual: String },
    /// The bytes are not a key in the expected encoding.
    #[error("not a valid BN254 Groth16 {what} ({detail})")]
    Decode { what: &'static str, detail: String },
    /// The key is for a circuit with a different number of public inputs.
    #[error("verifying key has {got} public input(s), the circuit needs {expected}")]
    Arity { expected: usize, got: usize },
    /// Key generation or proving failed inside the constraint system.
    #[error("synthesis failed: {0}")]
    Synthesis(String),
    /// A circom circuit's files, or a statement's input, are not usable.
    #[error(transparent)]
    Circom(#[from] crate::circom::CircomError),
    /// Every point decodes, but the key is one a forger could have made: an
    /// identity or repeated point, or `gamma = delta`. Such a key accepts proofs
    /// nobody computed, so it is never trusted.
    #[error("degenerate verifying key: {0}; it would accept forged proofs. Make the key with a real Groth16 setup (and, for snarkjs, at least one phase-2 contribution)")]
    Degenerate(String),
}

/// A verifying key prepared for fast verification, with its id.
#[derive(Clone)]
pub struct VerifierKey {
    pub vk: VerifyingKey<Bn254>,
    pub pvk: PreparedVerifyingKey<Bn254>,
    pub id: String,
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VerifierKey({}, {} public inputs)",
            self.id,
            self.public_inputs()
        )
    }
}

impl VerifierKey {
    /// Prepares a verifying key after [`check_vk`]: every key the pool trusts,
    /// whoever made it, goes through here.
    pub fn new(vk: VerifyingKey<Bn254>) -> Result<Self, KeyError> {
        check_vk(&vk)?;
        let id = sha256_hex(&vk_bytes(&vk));
        let pvk = prepare_verifying_key(&vk);
        Ok(VerifierKey { vk, pvk, id })
    }

    /// Decodes a compressed verifying key with full point validation.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let vk = VerifyingKey::<Bn254>::deserialize_with_mode(bytes, Compress::Yes, Validate::Yes)
            .map_err(|e| KeyError::Decode {
                what: "verifying key",
                detail: e.to_string(),
            })?;
        Self::new(vk)
    }

    /// The number of public inputs this key checks.
    pub fn public_inputs(&self) -> usize {
        self.vk.gamma_abc_g1.len() - 1
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        vk_bytes(&self.vk)
    }
}

/// Refuses a verifying key whose points decode (on the curve, in the subgroup)
/// but that lets someone forge proofs without a witness:
/// - `alpha`, `beta`, `gamma` or `delta` the identity: the pairing equation loses
///   a term, and with an identity `delta` any `C` balances it;
/// - `gamma = delta`: a prover can move the public-input term into `C`, so one
///   proof becomes a proof of any statement (snarkjs keys before any phase-2
///   contribution are like this);
/// - an identity input point (`IC`), or two equal or opposite ones: the public
///   inputs they weigh stop being bound (the inputs of equal points can be traded
///   against each other).
///
/// A key made by a real setup passes with overwhelming probability: each point is
/// a random group element.
pub fn check_vk(vk: &VerifyingKey<Bn254>) -> Result<(), KeyError> {
    use ark_ec::AffineRepr;
    let bad = |why: String| Err(KeyError::Degenerate(why));
    for (name, zero) in [
        ("alpha", vk.alpha_g1.is_zero()),
        ("beta", vk.beta_g2.is_zero()),
        ("gamma", vk.gamma_g2.is_zero()),
        ("delta", vk.delta_g2.is_zero()),
    ] {
        if zero {
            return bad(format!("{name} is the identity"));
        }
    }
    if vk.gamma_g2 == vk.delta_g2 {
        return bad("gamma equals delta".into());
    }
    if vk.gamma_abc_g1.is_empty() {
        return bad("it has no input points (IC)".into());
    }
    let mut seen = std::collections::HashSet::with_capacity(vk.gamma_abc_g1.len() * 2);
    for (i, p) in vk.gamma_abc_g1.iter().enumerate() {
        if p.is_zero() {
            return bad(format!("input point IC[{i}] is the identity"));
        }
        // x identifies a point up to sign: a repeated x is a repeated or opposite point.
        if !seen.insert(p.x) {
            return bad(format!(
                "input point IC[{i}] repeats (or negates) an earlier one"
            ));
        }
    }
    Ok(())
}

/// The compressed encoding of a verifying key (what its id hashes).
pub fn vk_bytes(vk: &VerifyingKey<Bn254>) -> Vec<u8> {
    let mut out = Vec::new();
    vk.serialize_compressed(&mut out)
        .expect("serialising into a Vec cannot fail");
    out
}

/// A circuit's full key set: what a prover needs, and its verifier.
pub struct CircuitKeys {
    pub spec: CircuitSpec,
    pub pk: ProvingKey<Bn254>,
    pub verifier: VerifierKey,
    /// For circom circuits: the r1cs and witness generator the proof needs.
    pub circom: Option<std::sync::Arc<crate::circom::CircomCircuit>>,
    /// Which prover makes this key's proofs (see [`crate::prover`]).
    pub(crate) engine: crate::prover::EngineState,
}

impl CircuitKeys {
    /// Runs a (single-party) Groth16 setup for the circuit with the OS CSPRNG.
    ///
    /// Architecture Invariant: the public functions of this crate are not generic
    /// over arkworks types or RNGs. A generic one would be monomorphised, and so
    /// compiled, in the calling crate, at that crate's optimisation level: in a
    /// debug build of the miner that made proving 10-30x slower.
    pub fn setup(spec: CircuitSpec) -> Result<Self, KeyError> {
        Self::setup_inner(spec, &mut OsRng)
    }

    /// A deterministic setup from a seed, for tests and reproducible benchmarks
    /// only: anyone who knows the seed can forge proofs.
    pub fn setup_seeded(spec: CircuitSpec, seed: u64) -> Result<Self, KeyError> {
        Self::setup_inner(spec, &mut StdRng::seed_from_u64(seed))
    }

    fn setup_inner<R: rand::RngCore + rand::CryptoRng>(
        spec: CircuitSpec,
        rng: &mut R,
    ) -> Result<Self, KeyError> {
        let (pk, vk) = Groth16::<Bn254>::circuit_specific_setup(spec.blank(), rng)
            .map_err(|e| KeyError::Synthesis(e.to_string()))?;
        Ok(CircuitKeys {
            spec,
            pk,
            verifier: VerifierKey::new(vk)?,
            circom: None,
            engine: Default::default(),
        })
    }

    /// The proving key's uncompressed encoding (it contains the verifying key).
    pub fn pk_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pk.uncompressed_size());
        self.pk
            .serialize_uncompressed(&mut out)
            .expect("serialising into a Vec cannot fail");
        out
    }

    /// Reads a proving key that must hash to `expected_hash` (see the module doc for
    /// why it is then decoded without point validation).
    pub fn from_pk_bytes(
        spec: CircuitSpec,
        bytes: &[u8],
        expected_hash: &str,
    ) -> Result<Self, KeyError> {
        check_hash(sha256_hex(bytes), expected_hash)?;
        if let CircuitSpec::Circom { .. } = spec {
            let circuit = crate::circom::CircomCircuit::from_bundle(bytes)?;
            return Self::assemble_circom(spec, circuit);
        }
        Self::assemble(spec, read_builtin_pk(bytes)?, None)
    }

    /// [`Self::from_pk_bytes`] from a file, as a rig loads its cached keys (a
    /// circom circuit's witnesses computed in `witness`): the file is hashed
    /// as it is read, and decoded without holding its bytes (a circom bundle
    /// section by section, [`crate::circom::CircomCircuit::for_proving`]; a
    /// built-in key through a buffered reader). A 2^18-constraint circom
    /// circuit's bundle is 255 MB, more than what it decodes to.
    pub fn from_pk_file(
        spec: CircuitSpec,
        path: &std::path::Path,
        expected_hash: &str,
        witness: crate::circom::witness::Engine,
    ) -> Result<Self, KeyError> {
        use sha2::{Digest, Sha256};
        use std::io::Read;
        let io = |e: std::io::Error| KeyError::Decode {
            what: "proving key file",
            detail: format!("{}: {e}", path.display()),
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        check_hash(hex::encode(hasher.finalize()), expected_hash)?;
        if let CircuitSpec::Circom { .. } = spec {
            let circuit = crate::circom::CircomCircuit::for_proving(path, witness)?;
            return Self::assemble_circom(spec, circuit);
        }
        let file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
        Self::assemble(spec, read_builtin_pk(file)?, None)
    }

    /// A circom circuit's keys, its r1cs holding the constraints the pool announced.
    fn assemble_circom(
        spec: CircuitSpec,
        (circuit, pk): (crate::circom::CircomCircuit, ProvingKey<Bn254>),
    ) -> Result<Self, KeyError> {
        if circuit.constraints() != spec.constraints() {
            return Err(KeyError::Decode {
                what: "circom bundle",
                detail: format!(
                    "its r1cs has {} constraints, the pool announced {}",
                    circuit.constraints(),
                    spec.constraints()
                ),
            });
        }
        Self::assemble(spec, pk, Some(std::sync::Arc::new(circuit)))
    }

    fn assemble(
        spec: CircuitSpec,
        pk: ProvingKey<Bn254>,
        circom: Option<std::sync::Arc<crate::circom::CircomCircuit>>,
    ) -> Result<Self, KeyError> {
        let verifier = VerifierKey::new(pk.vk.clone())?;
        if verifier.public_inputs() != spec.public_inputs() {
            return Err(KeyError::Arity {
                expected: spec.public_inputs(),
                got: verifier.public_inputs(),
            });
        }
        Ok(CircuitKeys {
            spec,
            pk,
            verifier,
            circom,
            engine: Default::default(),
        })
    }

    /// A circom statement's full witness (for an external prover), checked against
    /// the public signals the pool announced.
    pub fn circom_witness(&self, s: &Statement) -> Result<Vec<crate::Fr>, KeyError> {
        let (Some(c), Some(input)) = (&self.circom, &s.input) else {
            return Err(KeyError::Synthesis(
                "not a circom circuit and statement with an input".into(),
            ));
        };
        let w = c.witness(input)?;
        let public = c.public_signals(&w);
        if public != s.public {
            return Err(KeyError::Synthesis(
                "the witness's public signals differ from the ones the pool announced for this statement".into(),
            ));
        }
        Ok(w)
    }

    /// Proves one statement. The statement should have passed [`CircuitSpec::check`];
    /// an unsatisfiable one yields a proof that does not verify.
    /// Randomness comes from the OS CSPRNG.
    pub fn prove(&self, s: &Statement) -> Result<ProofBytes, KeyError> {
        self.prove_witness(&self.witness(s)?)
    }
}

/// The key's bytes must hash to what was announced.
fn check_hash(actual: String, expected: &str) -> Result<(), KeyError> {
    if actual != expected {
        return Err(KeyError::HashMismatch {
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// A built-in circuit's proving key, uncompressed and, having matched its hash,
/// unvalidated (the module doc says why).
fn read_builtin_pk(reader: impl std::io::Read) -> Result<ProvingKey<Bn254>, KeyError> {
    ProvingKey::<Bn254>::deserialize_with_mode(reader, Compress::No, Validate::No).map_err(|e| {
        KeyError::Decode {
            what: "proving key",
            detail: e.to_string(),
        }
    })
}
