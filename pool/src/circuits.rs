//! The circuit registry: records of registered circuits and their loaded keys.
//!
//! Built-in circuits get keys from a single-party Groth16 setup the first time a
//! data directory is used (`zkpool setup` or the first `zkpool serve`); the keys are
//! then reused, so circuit ids are stable for the life of the data directory.
//!
//! circom circuits are registered at run time (`POST /v1/circuits`): their r1cs,
//! wasm and zkey are checked against each other, the zkey's proving key against
//! its verifying key, and a sample statement is proven with the pool's randomness;
//! they are kept as one bundle file under the bundle's hash (which miners fetch
//! like a proving key), and the pool keeps the r1cs and witness generator in
//! memory to evaluate job statements.
//!
//! One lookup rule: a circuit *id* is 64 hex digits (the SHA-256 of its verifying
//! key) and is looked up as an id only; a *name* can never look like one (names
//! are at most 48 characters and start with a letter), and is looked up as a name
//! only. Jobs hold ids. Registration checks and inserts under one lock.

use std::{path::PathBuf, sync::Arc};

use dashmap::DashMap;

use serde::{Deserialize, Serialize};
use stratum::CircuitId;
use zk::{CircuitKeys, CircuitSpec, VerifierKey};

use crate::store::{Store, StoreError};

/// A registration checked and ready to be committed ([`Registry::register`]):
/// the record, the bundle file to write, the circuit to evaluate statements with.
pub struct Prepared {
    record: CircuitRecord,
    bundle: Option<Vec<u8>>,
    circom: Option<zk::circom::CircomCircuit>,
}

/// A registered circuit, as stored and as served by `GET /v1/circuits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitRecord {
    /// Hex SHA-256 of the compressed verifying key.
    pub id: CircuitId,
    pub name: String,
    pub spec: CircuitSpec,
    /// Constraints: the work credited per verified proof.
    pub constraints: u64,
    pub public_inputs: usize,
    /// Hex SHA-256 of the proving key file.
    pub proving_key_hash: String,
    pub proving_key_bytes: u64,
    /// Hex of the compressed verifying key.
    pub verifying_key: String,
    pub created_ms: u64,
    /// The client who registered it; `None` for the pool's own circuits (built-in
    /// or registered by the operator). Work on a client's circuit is paid from its
    /// jobs' rewards only, never from the pool's funds or the PPLNS window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// circom circuits: what computing one statement's witness may spend, set from
    /// the sample statement run at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_limits: Option<zk::circom::witness::Limits>,
}

/// A circuit ready to verify proofs.
pub struct Circuit {
    pub record: CircuitRecord,
    pub verifier: Arc<VerifierKey>,
    /// circom circuits: what evaluates a statement's input into its public signals.
    pub circom: Option<Arc<zk::circom::CircomCircuit>>,
}

/// Why a circuit could not be set up or loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key generation or decoding failed.
    #[error("circuit {name}: {source}")]
    Key { name: String, source: zk::KeyError },
    /// A key file could not be written or read.
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An uploaded circom circuit is not usable; the message names the file and problem.
    #[error(transparent)]
    Circom(#[from] zk::circom::CircomError),
    /// Another circuit already has this name.
    #[error("the name {0:?} is taken by another circuit: choose another name")]
    NameTaken(String),
    /// The upload's keys are registered already, under another name: a circuit
    /// has one name, so jobs must use that one (or the id), not the new one.
    #[error("this {what} is already registered as circuit {name} (id {id}): jobs must name {name} or the id; {requested:?} was not registered (a circuit has one name)")]
    AlreadyRegistered {
        /// "zkey" or "verification key": what the upload gave.
        what: &'static str,
        name: String,
        id: CircuitId,
        requested: String,
    },
    /// The name breaks the naming rule.
    #[error("circuit name {0:?}: use 1-48 letters, digits, '-', '_' or '.', starting with a letter (a name never looks like a circuit id)")]
    BadName(String),
    /// An upload's verifying key is degenerate or does not match its proving key.
    #[error("{0}")]
    Untrusted(String),
}

/// Whether `s` has the form of a circuit id: 64 lowercase hex digits.
pub fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The naming rule: 1-48 characters of `[A-Za-z0-9._-]`, the first a letter. A
/// name can then never be taken for an id, nor an id for a name.
pub fn valid_name(name: &str) -> bool {
    (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// Who registers a circuit: the operator (a pool circuit) or a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registrant {
    Operator,
    Client(String),
}

impl Registrant {
    fn owner(&self) -> Option<String> {
        match self {
            Registrant::Operator => None,
            Registrant::Client(c) => Some(c.clone()),
        }
    }
}

/// All registered circuits, by id and by name.
#[derive(Default)]
pub struct Registry {
    by_id: DashMap<CircuitId, Arc<Circuit>>,
    by_name: DashMap<String, CircuitId>,
    keys_dir: PathBuf,
    /// Held while a registration checks for an existing id or name, stores and
    /// inserts: two uploads racing for one name or id cannot both win.
    registering: tokio::sync::Mutex<()>,
}

/// Whether a registration made a new circuit or found the same one.
pub enum Registered {
    New(CircuitRecord),
    Existing(CircuitRecord),
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Registry {
    /// Loads every `stored` circuit, and sets up each of `builtins` that has no
    /// keys yet (CPU-bound: run it off the async workers). Returns the registry
    /// and the circuits it created, which the caller stores.
    pub fn open(
        stored: Vec<CircuitRecord>,
        keys_dir: PathBuf,
        builtins: &[CircuitSpec],
    ) -> Result<(Self, Vec<CircuitRecord>), RegistryError> {
        std::fs::create_dir_all(&keys_dir).map_err(|source| RegistryError::Io {
            path: keys_dir.clone(),
            source,
        })?;
        let reg = Registry {
            keys_dir,
            ..Default::default()
        };
        let mut created = vec![];
        for spec in builtins {
            let existing = stored
                .iter()
                .find(|r| r.spec == *spec && reg.key_path(&r.proving_key_hash).exists());
            let record = match existing {
                Some(r) => r.clone(),
                None => {
                    let r = reg.setup(spec)?;
                    created.push(r.clone());
                    r
                }
            };
            reg.insert(record)?;
        }
        for r in stored {
            reg.load(r)?;
        }
        Ok((reg, created))
    }

    /// Adds a stored circuit this registry does not hold yet (at open; or one
    /// another pool process registered, see `cluster`), loading its key file
    /// from the keys directory. Returns whether it is held now; a circuit
    /// whose key file is missing or unreadable is left out (logged), and its
    /// jobs wait until it is registered again. File reads and decoding: run it
    /// off the async workers.
    pub fn load(&self, r: CircuitRecord) -> Result<bool, RegistryError> {
        if self.by_id.contains_key(r.id.as_str()) {
            return Ok(true);
        }
        // A name stored by an older version that breaks today's rule, or that a
        // built-in took: the circuit stays reachable by its id only.
        if !valid_name(&r.name) || self.by_name.contains_key(&r.name) {
            tracing::warn!(circuit = %r.id, name = %r.name, "a stored circuit's name is invalid or taken; it is reachable by its id only");
        }
        if let CircuitSpec::VerifyOnly { .. } = r.spec {
            self.insert(r)?;
            return Ok(true);
        }
        let path = self.key_path(&r.proving_key_hash);
        if !path.exists() {
            return Ok(false);
        }
        if let CircuitSpec::Circom { .. } = r.spec {
            let loaded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    zk::circom::CircomCircuit::from_bundle(&b).map_err(|e| e.to_string())
                });
            return match loaded {
                Ok((mut c, _pk)) => {
                    if let Some(limits) = r.witness_limits {
                        c.generator.set_limits(limits);
                    }
                    self.insert_with(r, Some(Arc::new(c)))?;
                    Ok(true)
                }
                Err(e) => {
                    tracing::error!(circuit = %r.id, name = %r.name, path = %path.display(), error = %e,
                        "cannot load this circom circuit's bundle; its jobs wait until it is registered again");
                    Ok(false)
                }
            };
        }
        self.insert(r)?;
        Ok(true)
    }

    /// Prepares a verify-only circuit from a snarkjs `verification_key.json`:
    /// proofs of it can be checked, but it takes no jobs (the pool has no prover
    /// for it).
    pub fn prepare_vk(name: &str, by: &Registrant, verifier: VerifierKey) -> Prepared {
        let public = verifier.public_inputs();
        let record = CircuitRecord {
            id: CircuitId(verifier.id.clone()),
            name: name.to_owned(),
            spec: CircuitSpec::VerifyOnly {
                public: public as u32,
            },
            constraints: 0,
            public_inputs: public,
            proving_key_hash: String::new(),
            proving_key_bytes: 0,
            verifying_key: hex::encode(verifier.to_bytes()),
            created_ms: now_ms(),
            owner: by.owner(),
            witness_limits: None,
        };
        Prepared {
            record,
            bundle: None,
            circom: None,
        }
    }

    /// Registers a circom circuit from its three files and a sample statement
    /// (CPU-bound: the zkey is parsed and its proving key checked against its
    /// verifying key, the wasm compiled, the sample proven and verified with the
    /// pool's randomness). Registering the same zkey again returns the circuit
    /// already registered, which passed the same checks.
    pub fn prepare_circom(
        name: &str,
        by: &Registrant,
        files: CircomFiles<'_>,
    ) -> Result<Prepared, RegistryError> {
        let CircomFiles {
            r1cs,
            wasm,
            zkey,
            sample,
        } = files;
        let (mut circuit, pk) = zk::circom::CircomCircuit::load(r1cs, wasm, zkey)?;
        zk::circom::CircomCircuit::check_proving_key(&pk)?;
        let usage = circuit.self_test(&pk, sample)?;
        circuit.calibrate(usage);
        let verifier =
            VerifierKey::new(pk.vk).map_err(|e| RegistryError::Untrusted(e.to_string()))?;
        let bundle = zk::circom::Bundle { r1cs, wasm, zkey }.encode();
        let hash = zk::sha256_hex(&bundle);
        let record = CircuitRecord {
            id: CircuitId(verifier.id.clone()),
            name: name.to_owned(),
            spec: CircuitSpec::Circom {
                constraints: circuit.constraints(),
                public: circuit.public_inputs() as u32,
            },
            constraints: circuit.constraints(),
            public_inputs: circuit.public_inputs(),
            proving_key_hash: hash,
            proving_key_bytes: bundle.len() as u64,
            verifying_key: hex::encode(verifier.to_bytes()),
            created_ms: now_ms(),
            owner: by.owner(),
            witness_limits: Some(circuit.generator.limits()),
        };
        Ok(Prepared {
            record,
            bundle: Some(bundle),
            circom: Some(circuit),
        })
    }

    /// Commits a prepared registration: unless a circuit with its verifying key
    /// is registered already (then that one is returned), its name is checked,
    /// its bundle written, its record stored, and it is registered; all under the
    /// registration lock.
    pub async fn register(
        &self,
        store: &dyn Store,
        p: Prepared,
    ) -> Result<Registered, RegistryError> {
        let _one_at_a_time = self.registering.lock().await;
        if let Some(existing) = self.existing(&p.record.id, &p.record.name)? {
            return match existing {
                Registered::Existing(r) if r.name != p.record.name => {
                    Err(RegistryError::AlreadyRegistered {
                        what: if p.bundle.is_some() {
                            "zkey"
                        } else {
                            "verification key"
                        },
                        // A stored name that is not indexed (see `open`) cannot
                        // be used in a job: then only the id can.
                        name: if self.by_name.get(&r.name).is_some_and(|id| *id == r.id) {
                            r.name
                        } else {
                            r.id.to_string()
                        },
                        id: r.id,
                        requested: p.record.name,
                    })
                }
                same => Ok(same),
            };
        }
        if let Some(bundle) = &p.bundle {
            let hash = self.write_key_file(bundle)?;
            debug_assert_eq!(hash, p.record.proving_key_hash);
        }
        store.put_circuit(&p.record).await?;
        self.insert_with(p.record.clone(), p.circom.map(Arc::new))?;
        Ok(Registered::New(p.record))
    }

    fn setup(&self, spec: &CircuitSpec) -> Result<CircuitRecord, RegistryError> {
        let name = spec.name().to_owned();
        let keys = CircuitKeys::setup(*spec).map_err(|source| RegistryError::Key {
            name: name.clone(),
            source,
        })?;
        let pk = keys.pk_bytes();
        let hash = self.write_key_file(&pk)?;
        Ok(CircuitRecord {
            id: CircuitId(keys.verifier.id.clone()),
            name,
            spec: *spec,
            constraints: spec.constraints(),
            public_inputs: spec.public_inputs(),
            proving_key_hash: hash,
            proving_key_bytes: pk.len() as u64,
            verifying_key: hex::encode(keys.verifier.to_bytes()),
            created_ms: now_ms(),
            owner: None,
            witness_limits: None,
        })
    }

    /// The circuit already registered with this verifying key, if any; an error if
    /// the name breaks the rule or belongs to another circuit. Called under the
    /// registration lock.
    fn existing(&self, id: &str, name: &str) -> Result<Option<Registered>, RegistryError> {
        if !valid_name(name) {
            return Err(RegistryError::BadName(name.to_owned()));
        }
        if let Some(existing) = self.by_id.get(id) {
            return Ok(Some(Registered::Existing(existing.record.clone())));
        }
        if self.by_name.contains_key(name) {
            return Err(RegistryError::NameTaken(name.to_owned()));
        }
        Ok(None)
    }

    /// Writes a key file (or circom bundle) under its SHA-256 and returns the hash.
    /// It goes to a temporary name first and is renamed, so a crash never leaves a
    /// partial file under a hash.
    fn write_key_file(&self, bytes: &[u8]) -> Result<String, RegistryError> {
        let hash = zk::sha256_hex(bytes);
        let path = self.key_path(&hash);
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| RegistryError::Io { path, source })?;
        Ok(hash)
    }

    fn insert(&self, record: CircuitRecord) -> Result<(), RegistryError> {
        self.insert_with(record, None)
    }

    fn insert_with(
        &self,
        record: CircuitRecord,
        circom: Option<Arc<zk::circom::CircomCircuit>>,
    ) -> Result<(), RegistryError> {
        let verifier = decode_vk(&record)?;
        // A name that breaks the rule, or is taken, is not indexed: by id only.
        if valid_name(&record.name) && !self.by_name.contains_key(&record.name) {
            self.by_name.insert(record.name.clone(), record.id.clone());
        }
        self.by_id.insert(
            record.id.clone(),
            Arc::new(Circuit {
                record,
                verifier: Arc::new(verifier),
                circom,
            }),
        );
        Ok(())
    }

    /// The proving key file of a hash.
    pub fn key_path(&self, hash: &str) -> PathBuf {
        self.keys_dir.join(format!("{hash}.pk"))
    }

    /// A circuit by id: how jobs and everything stored refer to circuits.
    pub fn get(&self, id: &str) -> Option<Arc<Circuit>> {
        self.by_id.get(id).map(|r| r.value().clone())
    }

    /// What a user typed: an id (64 hex digits) is looked up as an id only, anything
    /// else as a name only, so no name can ever stand for another circuit's id.
    pub fn resolve(&self, id_or_name: &str) -> Option<Arc<Circuit>> {
        if is_id(id_or_name) {
            return self.get(id_or_name);
        }
        let id = self.by_name.get(id_or_name)?.value().clone();
        self.get(&id)
    }

    pub fn all(&self) -> Vec<Arc<Circuit>> {
        let mut v: Vec<_> = self.by_id.iter().map(|r| r.value().clone()).collect();
        v.sort_by(|a, b| {
            a.record
                .name
                .cmp(&b.record.name)
                .then(a.record.id.cmp(&b.record.id))
        });
        v
    }
}

/// A circom upload: the three files and a sample statement's circom input.
pub struct CircomFiles<'a> {
    pub r1cs: &'a [u8],
    pub wasm: &'a [u8],
    pub zkey: &'a [u8],
    pub sample: &'a serde_json::Value,
}

fn decode_vk(r: &CircuitRecord) -> Result<VerifierKey, RegistryError> {
    let bytes = hex::decode(&r.verifying_key).map_err(|e| RegistryError::Key {
        name: r.name.clone(),
        source: zk::KeyError::Decode {
            what: "verifying key",
            detail: e.to_string(),
        },
    })?;
    VerifierKey::from_bytes(&bytes).map_err(|source| RegistryError::Key {
        name: r.name.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The review's shadowing: a circuit named after another's id. Stored by an
    /// older version it shadows nothing after a restart, and a new one is refused.
    #[tokio::test]
    async fn a_name_that_looks_like_an_id_shadows_nothing() {
        use crate::store::SledStore;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db")).unwrap();
        let builtins = [CircuitSpec::Preimage];
        let (reg, created) = Registry::open(vec![], dir.path().join("keys"), &builtins).unwrap();
        let real = created[0].clone();
        store.put_circuit(&real).await.unwrap();
        let forger = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 9).unwrap();
        let forged = CircuitRecord {
            id: CircuitId(forger.verifier.id.clone()),
            name: real.id.to_string(),
            spec: CircuitSpec::VerifyOnly { public: 1 },
            constraints: 0,
            public_inputs: 1,
            proving_key_hash: String::new(),
            proving_key_bytes: 0,
            verifying_key: hex::encode(forger.verifier.to_bytes()),
            created_ms: 0,
            owner: Some("mallory".into()),
            witness_limits: None,
        };
        let prepared = Registry::prepare_vk(
            &real.id,
            &Registrant::Client("mallory".into()),
            forger.verifier.clone(),
        );
        let e = reg.register(&store, prepared).await.err().unwrap();
        assert!(matches!(e, RegistryError::BadName(_)), "{e}");
        store.put_circuit(&forged).await.unwrap();
        drop(reg);
        let stored = store.circuits().await.unwrap();
        let (reg, created) = Registry::open(stored, dir.path().join("keys"), &builtins).unwrap();
        assert!(created.is_empty(), "the built-in's keys are reused");
        for looked_up in [reg.resolve(&real.id), reg.get(&real.id)] {
            assert_eq!(looked_up.unwrap().record.name, "preimage");
        }
        assert_eq!(reg.resolve("preimage").unwrap().record.id, real.id);
        // Still there, by its own id only.
        assert_eq!(
            reg.get(&forged.id).unwrap().record.owner.as_deref(),
            Some("mallory")
        );
    }

    #[test]
    fn the_naming_rule() {
        assert!(valid_name("mycircuit-2.v1"));
        for bad in [
            "",
            "1abc",
            "-x",
            &"a".repeat(49),
            &"ab".repeat(32),
            "a b",
            "a/b",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(is_id(&"ab".repeat(32)) && !is_id(&"AB".repeat(32)) && !is_id("chain"));
    }
}
