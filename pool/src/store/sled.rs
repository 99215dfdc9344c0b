//! The embedded store: sled trees in the pool's data directory (`circuits`,
//! `jobs`, `job-index`, `proofs`, `results`, `proven`, `clients`, `meta`). The
//! ledger lives in the same database (its own tree), so one flush makes both
//! durable (`payouts::GroupFlush`).
//!
//! sled's flush survives a killed process, not a power cut (it is not an fsync
//! on Linux): the production answer is the PostgreSQL store.

use serde::{de::DeserializeOwned, Serialize};
use zk::ProofBytes;

use async_trait::async_trait;

use super::{key_hash, ClientRecord, JobScope, Store, StoreError};
use crate::{
    circuits::CircuitRecord,
    jobs::{JobRecord, StoredProof},
};

#[derive(Clone)]
pub struct SledStore {
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
    /// Held by `end_job` from its check to its write.
    ending: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn state_name(s: crate::jobs::JobState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn proof_key(job: &str, index: u64) -> String {
    format!("{job}/{index:020}")
}

impl SledStore {
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(path).open()?;
        let store = SledStore {
            circuits: db.open_tree("circuits")?,
            jobs: db.open_tree("jobs")?,
            proofs: db.open_tree("proofs")?,
            results: db.open_tree("results")?,
            clients: db.open_tree("clients")?,
            meta: db.open_tree("meta")?,
            proven: db.open_tree("proven")?,
            job_index: db.open_tree("job-index")?,
            job_states: Default::default(),
            ending: Default::default(),
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

    /// Every record of tree `name` (`circuits`, `jobs`, `results` or
    /// `clients`) with its key, one at a time (for `zkpool migrate
    /// --from-sled`).
    pub fn records<T: DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> impl Iterator<Item = Result<(String, T), StoreError>> + '_ {
        let tree = match name {
            "circuits" => &self.circuits,
            "jobs" => &self.jobs,
            "results" => &self.results,
            "clients" => &self.clients,
            _ => unreachable!("records of tree {name}: not a tree of records"),
        };
        tree.iter().map(move |kv| {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            match serde_json::from_slice(&v) {
                Ok(r) => Ok((key, r)),
                Err(e) => Err(StoreError::Corrupt {
                    tree: name,
                    key,
                    detail: e.to_string(),
                }),
            }
        })
    }

    /// Every stored proof as (job, statement, proof), in job order.
    pub fn all_proofs(
        &self,
    ) -> impl Iterator<Item = Result<(String, u64, StoredProof), StoreError>> + '_ {
        self.proofs.iter().map(|kv| {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let parsed = key.rsplit_once('/').and_then(|(job, i)| {
                Some((
                    job.to_owned(),
                    i.parse().ok()?,
                    serde_json::from_slice(&v).ok()?,
                ))
            });
            parsed.ok_or(StoreError::Corrupt {
                tree: "proofs",
                key,
                detail: "bad key or record".into(),
            })
        })
    }

    /// Every proven statement's key and proof.
    pub fn all_proven(&self) -> impl Iterator<Item = Result<(String, Vec<u8>), StoreError>> + '_ {
        self.proven.iter().map(|kv| {
            let (k, v) = kv?;
            Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
        })
    }

    /// Every account's worker token hash.
    pub fn worker_token_hashes(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.meta
            .scan_prefix(b"worker-token/")
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k["worker-token/".len()..]).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// The receipt signing key's seed, if the pool made one (never makes one).
    pub fn stored_receipt_seed(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(b"receipt-key")?.map(|v| v.to_vec()))
    }

    /// The group flusher every writer to this database shares.
    pub fn flusher(&self) -> payouts::GroupFlush {
        self.flusher.clone()
    }
}

#[async_trait]
impl Store for SledStore {
    /// Makes every write so far durable before it is acknowledged (group commit:
    /// concurrent callers share flushes; never sled's `flush_async`, see
    /// `payouts::durable`).
    async fn flush(&self) -> Result<(), StoreError> {
        self.flusher.flush().await?;
        Ok(())
    }

    async fn put_circuit(&self, c: &CircuitRecord) -> Result<(), StoreError> {
        Self::put(&self.circuits, &c.id, c)
    }

    async fn circuits(&self) -> Result<Vec<CircuitRecord>, StoreError> {
        Self::all(&self.circuits, "circuits")
    }

    /// Stores a job (new or changed), its index entries and its state count.
    async fn put_job(&self, j: &JobRecord) -> Result<(), StoreError> {
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
    async fn job_counts(&self) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        Ok(self
            .job_states
            .lock()
            .expect("job-state lock is never poisoned")
            .clone())
    }

    /// Up to `limit` jobs the scope sees, newest first, older than the cursor
    /// `before` (a previous page's `next`); and the cursor of the next page.
    async fn jobs_page(
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
            if let Some(job) = self.job(id).await? {
                out.push(job);
            }
        }
        Ok((out, next))
    }

    /// The stored proof of a statement proven before, on any job.
    async fn proven(&self, key: &str) -> Result<Option<ProofBytes>, StoreError> {
        Ok(self
            .proven
            .get(key.as_bytes())?
            .map(|v| ProofBytes(v.to_vec())))
    }

    /// Records that a statement is proven, unless it already was: true when this
    /// call recorded it. Atomic, so of two submits racing with proofs of one
    /// statement (two jobs, or a replayed proof), exactly one is credited.
    async fn mark_proven(&self, key: &str, proof: &ProofBytes) -> Result<bool, StoreError> {
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
    async fn unmark_proven(&self, key: &str) -> Result<(), StoreError> {
        self.proven.remove(key.as_bytes())?;
        Ok(())
    }

    async fn end_job(
        &self,
        j: &JobRecord,
        result: Option<&zk::JobResult>,
    ) -> Result<bool, StoreError> {
        // One lock from the check to the write: ending is once.
        let _ending = self.ending.lock().await;
        let stored: Option<JobRecord> = Self::get(&self.jobs, "jobs", &j.id)?;
        if stored.is_none_or(|s| s.state != crate::jobs::JobState::Running) {
            return Ok(false);
        }
        if let Some(r) = result {
            Self::put(&self.results, &j.id, r)?;
        }
        self.put_job(j).await?;
        Ok(true)
    }

    async fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        Self::get(&self.jobs, "jobs", id)
    }

    async fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        Self::all(&self.jobs, "jobs")
    }

    /// Stores verified proofs of a job's statements (not yet durable: flush).
    /// A statement that has a proof keeps it: the first stored proof stands.
    async fn put_proofs(&self, job: &str, proofs: &[(u64, StoredProof)]) -> Result<(), StoreError> {
        for (index, p) in proofs {
            // Err(_) inside: the key holds a proof already, which stays.
            let _kept = self.proofs.compare_and_swap(
                proof_key(job, *index).as_bytes(),
                None as Option<&[u8]>,
                Some(serde_json::to_vec(p).expect("proofs serialise")),
            )?;
        }
        Ok(())
    }

    /// All or none: when a statement has a proof already, nothing is stored
    /// (one process owns the sled database, and the share path's claims keep
    /// two of its submits off one statement: this is the same rule as
    /// PostgreSQL's, checked the simple way).
    async fn claim_proofs(
        &self,
        job: &str,
        proofs: &[(u64, StoredProof)],
    ) -> Result<Vec<u64>, StoreError> {
        let mut taken = vec![];
        for (index, _) in proofs {
            if self
                .proofs
                .contains_key(proof_key(job, *index).as_bytes())?
            {
                taken.push(*index);
            }
        }
        if taken.is_empty() {
            self.put_proofs(job, proofs).await?;
        }
        Ok(taken)
    }

    /// Removes proofs again (when crediting them failed, so the statements are redone).
    async fn remove_proofs(&self, job: &str, indices: &[u64]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for &i in indices {
            batch.remove(proof_key(job, i).as_bytes());
        }
        self.proofs.apply_batch(batch)?;
        Ok(())
    }

    /// Every stored proof of a job, by statement index.
    async fn proof_count(&self, job: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for key in self.proofs.scan_prefix(format!("{job}/").as_bytes()).keys() {
            key?;
            n += 1;
        }
        Ok(n)
    }

    async fn job_proofs(&self, job: &str) -> Result<Vec<(u64, StoredProof)>, StoreError> {
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

    async fn put_result(&self, job: &str, result: &zk::JobResult) -> Result<(), StoreError> {
        Self::put(&self.results, job, result)
    }

    async fn result(&self, job: &str) -> Result<Option<zk::JobResult>, StoreError> {
        Self::get(&self.results, "results", job)
    }

    /// Adds a client; false when the id is taken (nothing changes).
    async fn add_client(&self, c: &ClientRecord) -> Result<bool, StoreError> {
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

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        Self::get(&self.clients, "clients", id)
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        Self::all(&self.clients, "clients")
    }

    /// The client an API key belongs to.
    async fn client_by_key(&self, key: &str) -> Result<Option<ClientRecord>, StoreError> {
        match self
            .meta
            .get(format!("client-key/{}", key_hash(key)).as_bytes())?
        {
            Some(id) => self.client(&String::from_utf8_lossy(&id)).await,
            None => Ok(None),
        }
    }

    /// Sets (or replaces) the worker token of account `addr`; stores its hash only.
    async fn set_worker_token(&self, addr: &str, token: &str) -> Result<(), StoreError> {
        self.meta.insert(
            format!("worker-token/{addr}").as_bytes(),
            key_hash(token).as_bytes(),
        )?;
        Ok(())
    }

    async fn worker_token_accounts(&self) -> Result<Vec<String>, StoreError> {
        let mut accounts = vec![];
        for kv in self.meta.scan_prefix(b"worker-token/") {
            let (key, _) = kv?;
            accounts.push(String::from_utf8_lossy(&key["worker-token/".len()..]).into_owned());
        }
        Ok(accounts)
    }

    async fn remove_worker_token(&self, addr: &str) -> Result<bool, StoreError> {
        Ok(self
            .meta
            .remove(format!("worker-token/{addr}").as_bytes())?
            .is_some())
    }

    /// `None` when account `addr` has no token; else whether `given` is it.
    async fn check_worker_token(
        &self,
        addr: &str,
        given: Option<&str>,
    ) -> Result<Option<bool>, StoreError> {
        Ok(self
            .meta
            .get(format!("worker-token/{addr}").as_bytes())?
            .map(|h| given.is_some_and(|g| key_hash(g).as_bytes() == h.as_ref())))
    }

    async fn receipt_seed(&self) -> Result<[u8; 32], StoreError> {
        if let Some(seed) = self.meta.get(b"receipt-key")? {
            return <[u8; 32]>::try_from(seed.as_ref()).map_err(|_| StoreError::Corrupt {
                tree: "meta",
                key: "receipt-key".into(),
                detail: "not 32 bytes".into(),
            });
        }
        let (_, seed) = payouts::Signer::generate();
        self.meta.insert(b"receipt-key", seed.as_slice())?;
        self.db.flush()?;
        Ok(seed)
    }
}
