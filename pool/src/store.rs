//! Persistent state in sled: circuits, jobs, verified proofs and results.
//!
//! Proofs are the truth of a job's progress: a statement is done exactly when a
//! verified proof for it is stored. Leases are deliberately memory-only, so after
//! a restart every statement without a stored proof is ready again, and nothing a
//! crashed pool had leased is lost.

use serde::{de::DeserializeOwned, Serialize};
use zk::ProofBytes;

use crate::{
    circuits::CircuitRecord,
    jobs::{JobRecord, StoredProof},
};

/// A storage fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record cannot be decoded.
    #[error("stored record {key:?} in {tree} is unreadable: {detail}")]
    Corrupt {
        tree: &'static str,
        key: String,
        detail: String,
    },
}

#[derive(Clone)]
pub struct Store {
    pub db: sled::Db,
    flusher: payouts::GroupFlush,
    circuits: sled::Tree,
    jobs: sled::Tree,
    proofs: sled::Tree,
    results: sled::Tree,
    clients: sled::Tree,
    meta: sled::Tree,
}

/// A client account: who may submit jobs with a reward and see their balance.
/// The API key is stored as its SHA-256 only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientRecord {
    pub id: String,
    /// SHA-256 of the API key, hex.
    pub key_hash: String,
    pub created_ms: u64,
}

/// SHA-256 of an API key, hex: what is stored and compared.
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

fn proof_key(job: &str, index: u64) -> String {
    format!("{job}/{index:020}")
}

impl Store {
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Store {
            circuits: db.open_tree("circuits")?,
            jobs: db.open_tree("jobs")?,
            proofs: db.open_tree("proofs")?,
            results: db.open_tree("results")?,
            clients: db.open_tree("clients")?,
            meta: db.open_tree("meta")?,
            flusher: payouts::GroupFlush::new(&db),
            db,
        })
    }

    fn put<T: Serialize>(tree: &sled::Tree, key: &str, v: &T) -> Result<(), StoreError> {
        tree.insert(
            key.as_bytes(),
            serde_json::to_vec(v).expect("records serialise to JSON"),
        )?;
        Ok(())
    }

    fn get<T: DeserializeOwned>(
        tree: &sled::Tree,
        name: &'static str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match tree.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    tree: name,
                    key: key.to_owned(),
                    detail: e.to_string(),
                }),
        }
    }

    fn all<T: DeserializeOwned>(
        tree: &sled::Tree,
        name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        tree.iter()
            .map(|kv| {
                let (k, v) = kv?;
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    tree: name,
                    key: String::from_utf8_lossy(&k).into_owned(),
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    /// The group flusher every writer to this database shares.
    pub fn flusher(&self) -> payouts::GroupFlush {
        self.flusher.clone()
    }

    /// Makes every write so far durable before it is acknowledged (group commit:
    /// concurrent callers share flushes; never sled's `flush_async`, see
    /// `payouts::durable`).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flusher.flush().await?;
        Ok(())
    }

    pub fn put_circuit(&self, c: &CircuitRecord) -> Result<(), StoreError> {
        Self::put(&self.circuits, &c.id, c)
    }

    pub fn circuits(&self) -> Result<Vec<CircuitRecord>, StoreError> {
        Self::all(&self.circuits, "circuits")
    }

    pub fn put_job(&self, j: &JobRecord) -> Result<(), StoreError> {
        Self::put(&self.jobs, &j.id, j)
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        Self::get(&self.jobs, "jobs", id)
    }

    pub fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        Self::all(&self.jobs, "jobs")
    }

    /// Stores verified proofs of a job's statements (not yet durable: flush).
    pub fn put_proofs(&self, job: &str, proofs: &[(u64, StoredProof)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (index, p) in proofs {
            batch.insert(
                proof_key(job, *index).as_bytes(),
                serde_json::to_vec(p).expect("proofs serialise"),
            );
        }
        self.proofs.apply_batch(batch)?;
        Ok(())
    }

    /// Removes proofs again (when crediting them failed, so the statements are redone).
    pub fn remove_proofs(
        &self,
        job: &str,
        indices: impl Iterator<Item = u64>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for i in indices {
            batch.remove(proof_key(job, i).as_bytes());
        }
        self.proofs.apply_batch(batch)?;
        Ok(())
    }

    /// Every stored proof of a job, by statement index.
    pub fn job_proofs(&self, job: &str) -> Result<Vec<(u64, StoredProof)>, StoreError> {
        self.proofs
            .scan_prefix(format!("{job}/").as_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let index = key.rsplit('/').next().and_then(|i| i.parse().ok());
                let proof = serde_json::from_slice(&v).ok();
                match (index, proof) {
                    (Some(i), Some(p)) => Ok((i, p)),
                    _ => Err(StoreError::Corrupt {
                        tree: "proofs",
                        key,
                        detail: "bad key or record".into(),
                    }),
                }
            })
            .collect()
    }

    pub fn put_result(&self, job: &str, result: &zk::JobResult) -> Result<(), StoreError> {
        Self::put(&self.results, job, result)
    }

    pub fn result(&self, job: &str) -> Result<Option<zk::JobResult>, StoreError> {
        Self::get(&self.results, "results", job)
    }

    /// Adds a client; false when the id is taken (nothing changes).
    pub fn add_client(&self, c: &ClientRecord) -> Result<bool, StoreError> {
        let v = serde_json::to_vec(c).expect("clients serialise");
        let added = self
            .clients
            .compare_and_swap(c.id.as_bytes(), None as Option<&[u8]>, Some(v))?
            .is_ok();
        if added {
            self.meta.insert(
                format!("client-key/{}", c.key_hash).as_bytes(),
                c.id.as_bytes(),
            )?;
        }
        Ok(added)
    }

    pub fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        Self::get(&self.clients, "clients", id)
    }

    pub fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        Self::all(&self.clients, "clients")
    }

    /// The client an API key belongs to.
    pub fn client_by_key(&self, key: &str) -> Result<Option<ClientRecord>, StoreError> {
        match self
            .meta
            .get(format!("client-key/{}", key_hash(key)).as_bytes())?
        {
            Some(id) => self.client(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Sets (or replaces) the worker token of account `addr`; stores its hash only.
    pub fn set_worker_token(&self, addr: &str, token: &str) -> Result<(), StoreError> {
        self.meta.insert(
            format!("worker-token/{addr}").as_bytes(),
            key_hash(token).as_bytes(),
        )?;
        Ok(())
    }

    /// `None` when account `addr` has no token; else whether `given` is it.
    pub fn check_worker_token(
        &self,
        addr: &str,
        given: Option<&str>,
    ) -> Result<Option<bool>, StoreError> {
        Ok(self
            .meta
            .get(format!("worker-token/{addr}").as_bytes())?
            .map(|h| given.is_some_and(|g| key_hash(g).as_bytes() == h.as_ref())))
    }

    /// The pool's receipt-signing key, created (and flushed) on first use.
    pub fn receipt_signer(&self) -> Result<payouts::Signer, StoreError> {
        if let Some(seed) = self.meta.get(b"receipt-key")? {
            if let Ok(seed) = <[u8; 32]>::try_from(seed.as_ref()) {
                return Ok(payouts::Signer::from_seed(seed));
            }
            return Err(StoreError::Corrupt {
                tree: "meta",
                key: "receipt-key".into(),
                detail: "not 32 bytes".into(),
            });
        }
        let (signer, seed) = payouts::Signer::generate();
        self.meta.insert(b"receipt-key", seed.as_slice())?;
        self.db.flush()?;
        Ok(signer)
    }
}

impl StoredProof {
    pub fn bytes(&self) -> ProofBytes {
        self.proof.clone()
    }
}
