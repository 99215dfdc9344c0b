//! The circuit registry: records of registered circuits and their loaded keys.
//!
//! Built-in circuits get keys from a single-party Groth16 setup the first time a
//! data directory is used (`zkpool setup` or the first `zkpool serve`); the keys are
//! then reused, so circuit ids are stable for the life of the data directory.
//!
//! circom circuits are registered at run time (`POST /v1/circuits`): their r1cs,
//! wasm and zkey are checked against each other, kept as one bundle file under
//! the bundle's hash (which miners fetch like a proving key), and the pool keeps
//! the r1cs and witness generator in memory to evaluate job statements.

use std::{path::PathBuf, sync::Arc};

use dashmap::DashMap;

use serde::{Deserialize, Serialize};
use zk::{CircuitKeys, CircuitSpec, VerifierKey};

use crate::store::{Store, StoreError};

/// A registered circuit, as stored and as served by `GET /v1/circuits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitRecord {
    /// Hex SHA-256 of the compressed verifying key.
    pub id: String,
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
}

/// All registered circuits, by id and by name.
#[derive(Default)]
pub struct Registry {
    by_id: DashMap<String, Arc<Circuit>>,
    by_name: DashMap<String, String>,
    keys_dir: PathBuf,
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
    /// Loads every stored circuit, and sets up each of `builtins` that has no keys yet.
    pub fn open(
        store: &Store,
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
        let stored = store.circuits()?;
        for spec in builtins {
            let existing = stored
                .iter()
                .find(|r| r.spec == *spec && reg.key_path(&r.proving_key_hash).exists());
            let record = match existing {
                Some(r) => r.clone(),
                None => {
                    let r = reg.setup(spec)?;
                    store.put_circuit(&r)?;
                    created.push(r.clone());
                    r
                }
            };
            reg.insert(record)?;
        }
        for r in stored {
            if let CircuitSpec::VerifyOnly { .. } = r.spec {
                reg.insert(r)?;
                continue;
            }
            if reg.by_id.contains_key(&r.id) || !reg.key_path(&r.proving_key_hash).exists() {
                continue;
            }
            if let CircuitSpec::Circom { .. } = r.spec {
                let path = reg.key_path(&r.proving_key_hash);
                let loaded = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        zk::circom::CircomCircuit::from_bundle(&b).map_err(|e| e.to_string())
                    });
                match loaded {
                    Ok((c, _pk)) => reg.insert_with(r, Some(Arc::new(c)))?,
                    Err(e) => {
                        tracing::error!(circuit = %r.id, name = %r.name, path = %path.display(), error = %e,
                        "cannot load this circom circuit's bundle; its jobs wait until it is registered again")
                    }
                }
                continue;
            }
            reg.by_id.insert(
                r.id.clone(),
                Arc::new(Circuit {
                    verifier: Arc::new(decode_vk(&r)?),
                    record: r,
                    circom: None,
                }),
            );
        }
        Ok((reg, created))
    }

    /// Registers a verify-only circuit from a snarkjs `verification_key.json`: proofs
    /// of it can be checked, but it takes no jobs (the pool has no prover for it).
    pub fn register_vk(
        &self,
        store: &Store,
        name: &str,
        verifier: VerifierKey,
    ) -> Result<Registered, RegistryError> {
        if let Some(existing) = self.existing(&verifier.id, name)? {
            return Ok(existing);
        }
        let public = verifier.public_inputs();
        let record = CircuitRecord {
            id: verifier.id.clone(),
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
        };
        store.put_circuit(&record)?;
        self.insert(record.clone())?;
        Ok(Registered::New(record))
    }

    /// Registers a circom circuit from its three files (CPU-bound: the zkey is
    /// parsed and checked, the wasm compiled). Registering the same zkey again
    /// returns the circuit already registered.
    pub fn register_circom(
        &self,
        store: &Store,
        name: &str,
        r1cs: &[u8],
        wasm: &[u8],
        zkey: &[u8],
    ) -> Result<Registered, RegistryError> {
        let (circuit, pk) = zk::circom::CircomCircuit::load(r1cs, wasm, zkey)?;
        let verifier = VerifierKey::new(pk.vk);
        if let Some(existing) = self.existing(&verifier.id, name)? {
            return Ok(existing);
        }
        let bundle = zk::circom::Bundle { r1cs, wasm, zkey }.encode();
        let hash = self.write_key_file(&bundle)?;
        let record = CircuitRecord {
            id: verifier.id.clone(),
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
        };
        store.put_circuit(&record)?;
        self.insert_with(record.clone(), Some(Arc::new(circuit)))?;
        Ok(Registered::New(record))
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
            id: keys.verifier.id.clone(),
            name,
            spec: *spec,
            constraints: spec.constraints(),
            public_inputs: spec.public_inputs(),
            proving_key_hash: hash,
            proving_key_bytes: pk.len() as u64,
            verifying_key: hex::encode(keys.verifier.to_bytes()),
            created_ms: now_ms(),
        })
    }

    /// The circuit already registered with this verifying key, if any; an error if
    /// the name belongs to another circuit.
    fn existing(&self, id: &str, name: &str) -> Result<Option<Registered>, RegistryError> {
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
        self.by_name.insert(record.name.clone(), record.id.clone());
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

    /// A circuit by id, or by built-in name.
    pub fn get(&self, id_or_name: &str) -> Option<Arc<Circuit>> {
        let id = self
            .by_name
            .get(id_or_name)
            .map(|r| r.value().clone())
            .unwrap_or_else(|| id_or_name.to_owned());
        self.by_id.get(&id).map(|r| r.value().clone())
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
