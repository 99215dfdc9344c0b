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
    circuits: sled::Tree,
    jobs: sled::Tree,
    proofs: sled::Tree,
    results: sled::Tree,
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

    /// Makes every write so far durable before it is acknowledged.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
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
}

impl StoredProof {
    pub fn bytes(&self) -> ProofBytes {
        self.proof.clone()
    }
}
