//! The circuit registry: records of registered circuits and their loaded keys.
//!
//! Built-in circuits get keys from a single-party Groth16 setup the first time a
//! data directory is used (`zkpool setup` or the first `zkpool serve`); the keys are
//! then reused, so circuit ids are stable for the life of the data directory.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

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
}

/// All registered circuits, by id and by built-in name.
#[derive(Clone, Default)]
pub struct Registry {
    by_id: HashMap<String, Arc<Circuit>>,
    by_name: HashMap<String, String>,
    keys_dir: PathBuf,
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
        let mut reg = Registry {
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
            if !reg.by_id.contains_key(&r.id) && reg.key_path(&r.proving_key_hash).exists() {
                reg.by_id.insert(
                    r.id.clone(),
                    Arc::new(Circuit {
                        verifier: Arc::new(decode_vk(&r)?),
                        record: r,
                    }),
                );
            }
        }
        Ok((reg, created))
    }

    fn setup(&self, spec: &CircuitSpec) -> Result<CircuitRecord, RegistryError> {
        let name = spec.name().to_owned();
        let keys = CircuitKeys::setup(*spec).map_err(|source| RegistryError::Key {
            name: name.clone(),
            source,
        })?;
        let pk = keys.pk_bytes();
        let hash = zk::sha256_hex(&pk);
        let path = self.key_path(&hash);
        // Write to a temporary name and rename, so a crash never leaves a partial key under its hash.
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, &pk)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| RegistryError::Io {
                path: path.clone(),
                source,
            })?;
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

    fn insert(&mut self, record: CircuitRecord) -> Result<(), RegistryError> {
        let verifier = decode_vk(&record)?;
        self.by_name.insert(record.name.clone(), record.id.clone());
        self.by_id.insert(
            record.id.clone(),
            Arc::new(Circuit {
                record,
                verifier: Arc::new(verifier),
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
            .map(String::as_str)
            .unwrap_or(id_or_name);
        self.by_id.get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Circuit>> {
        let mut v: Vec<_> = self.by_id.values().cloned().collect();
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
