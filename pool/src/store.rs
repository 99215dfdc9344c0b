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
    /// Every statement proven on this pool: `CIRCUIT/SHA256(public inputs)` -> the
    /// proof. A statement in here is never leased or paid again.
    proven: sled::Tree,
    /// Jobs newest first, for paged lists: `t/TIME/ID` (all), `c/CLIENT/TIME/ID`
    /// (a client's), `p/TIME/ID` (public ones); values empty.
    job_index: sled::Tree,
    /// Jobs per state, counted once at open and kept up to date by `put_job`.
    job_states: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

/// Which jobs a list shows: what the caller may see.
#[derive(Debug, Clone)]
pub enum JobScope {
    /// The operator: every job.
    All,
    /// A client: its own jobs.
    Client(String),
    /// Anyone: public jobs.
    Public,
}

/// A proven statement's key in the `proven` tree.
pub fn statement_key(circuit_id: &str, public: &[zk::Fr]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for x in public {
        h.update(zk::field::fr_to_be_bytes(x));
    }
    format!("{circuit_id}/{}", hex::encode(h.finalize()))
}

fn state_name(s: crate::jobs::JobState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
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
        let store = Store {
            circuits: db.open_tree("circuits")?,
            jobs: db.open_tree("jobs")?,
            proofs: db.open_tree("proofs")?,
            results: db.open_tree("results")?,
            clients: db.open_tree("clients")?,
            meta: db.open_tree("meta")?,
            proven: db.open_tree("proven")?,
            job_index: db.open_tree("job-index")?,
            job_states: Default::default(),
            flusher: payouts::GroupFlush::new(&db),
            db,
        };
        // One pass over the jobs at open: the counts by state, and the index for
        // a store written before it existed.
        let rebuild = store.job_index.is_empty();
        let mut counts = std::collections::BTreeMap::new();
        for kv in store.jobs.iter() {
            let (k, v) = kv?;
            let job: JobRecord = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                tree: "jobs",
                key: String::from_utf8_lossy(&k).into_owned(),
                detail: e.to_string(),
            })?;
            *counts.entry(state_name(job.state)).or_default() += 1;
            if rebuild {
                store.index_job(&job)?;
            }
        }
        *store
            .job_states
            .lock()
            .expect("job-state lock is never poisoned") = counts;
        Ok(store)
    }

    fn index_job(&self, j: &JobRecord) -> Result<(), StoreError> {
        let at = format!("{:020}/{}", j.created_ms, j.id);
        let mut batch = sled::Batch::default();
        batch.insert(format!("t/{at}").as_bytes(), &[]);
        batch.insert(format!("c/{}/{at}", j.client).as_bytes(), &[]);
        if j.is_public() {
            batch.insert(format!("p/{at}").as_bytes(), &[]);
        }
        self.job_index.apply_batch(batch)?;
        Ok(())
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

    /// Stores a job (new or changed), its index entries and its state count.
    pub fn put_job(&self, j: &JobRecord) -> Result<(), StoreError> {
        let mut counts = self
            .job_states
            .lock()
            .expect("job-state lock is never poisoned");
        let old: Option<JobRecord> = Self::get(&self.jobs, "jobs", &j.id)?;
        Self::put(&self.jobs, &j.id, j)?;
        match old {
            Some(o) if o.state == j.state => {}
            Some(o) => {
                if let Some(n) = counts.get_mut(&state_name(o.state)) {
                    *n = n.saturating_sub(1);
                }
                *counts.entry(state_name(j.state)).or_default() += 1;
            }
            None => {
                *counts.entry(state_name(j.state)).or_default() += 1;
                self.index_job(j)?;
            }
        }
        Ok(())
    }

    /// Jobs per state, over every job stored.
    pub fn job_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.job_states
            .lock()
            .expect("job-state lock is never poisoned")
            .clone()
    }

    /// Up to `limit` jobs the scope sees, newest first, older than the cursor
    /// `before` (a previous page's `next`); and the cursor of the next page.
    pub fn jobs_page(
        &self,
        scope: &JobScope,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<String>), StoreError> {
        let prefix = match scope {
            JobScope::All => "t/".to_owned(),
            JobScope::Client(c) => format!("c/{c}/"),
            JobScope::Public => "p/".to_owned(),
        };
        let end = match before {
            Some(cursor) => format!("{prefix}{cursor}"),
            None => format!("{prefix}\u{ff}"),
        };
        let mut out = Vec::with_capacity(limit);
        let mut next = None;
        for kv in self
            .job_index
            .range(prefix.as_bytes()..end.as_bytes())
            .rev()
        {
            let (k, _) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let cursor = key[prefix.len()..].to_owned();
            if out.len() == limit {
                next = out
                    .last()
                    .map(|j: &JobRecord| format!("{:020}/{}", j.created_ms, j.id));
                break;
            }
            let Some(id) = cursor.rsplit('/').next() else {
                continue;
            };
            if let Some(job) = self.job(id)? {
                out.push(job);
            }
        }
        Ok((out, next))
    }

    /// The stored proof of a statement proven before, on any job.
    pub fn proven(&self, key: &str) -> Result<Option<ProofBytes>, StoreError> {
        Ok(self
            .proven
            .get(key.as_bytes())?
            .map(|v| ProofBytes(v.to_vec())))
    }

    /// Records that a statement is proven, unless it already was: true when this
    /// call recorded it. Atomic, so of two submits racing with proofs of one
    /// statement (two jobs, or a replayed proof), exactly one is credited.
    pub fn claim_proven(&self, key: &str, proof: &ProofBytes) -> Result<bool, StoreError> {
        Ok(self
            .proven
            .compare_and_swap(
                key.as_bytes(),
                None as Option<&[u8]>,
                Some(proof.0.as_slice()),
            )?
            .is_ok())
    }

    /// Gives a claim back (the share it was for could not be stored).
    pub fn unclaim_proven(&self, key: &str) -> Result<(), StoreError> {
        self.proven.remove(key.as_bytes())?;
        Ok(())
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

    /// A statement's proof taken from the pool's proofs of statements proven
    /// before: nobody's work on this job, nobody credited.
    pub fn cached(proof: ProofBytes) -> Self {
        StoredProof {
            proof,
            worker: String::new(),
            task: String::new(),
            at_ms: crate::circuits::now_ms(),
            cached: true,
        }
    }
}
