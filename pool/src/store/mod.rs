//! What the pool keeps: circuits, jobs, verified proofs, results, the statements
//! proven on this pool, clients and worker tokens, behind one trait ([`Store`]) so
//! the embedded sled store ([`sled::SledStore`]) and a database can stand in for
//! each other. Not here: the ledger (money), which has its own trait
//! (`crate::ledger`).
//!
//! Proofs are the truth of a job's progress: a statement is done exactly when a
//! verified proof for it is stored. Leases are deliberately memory-only, so after
//! a restart every statement without a stored proof is ready again, and nothing a
//! crashed pool had leased is lost.
//!
//! Architecture Invariant: a write is durable only after [`Store::flush`]; anything
//! acknowledged to a user is flushed first.

pub mod pg;
pub mod sled;

use std::collections::BTreeMap;

use async_trait::async_trait;
use zk::ProofBytes;

use crate::{
    circuits::CircuitRecord,
    jobs::{JobRecord, StoredProof},
};

pub use self::{
    pg::{Migrated, PgStore},
    sled::SledStore,
};

/// A storage fault: the pool could not read or write its records. Answered as
/// "try again" (HTTP 503, stratum `Internal`), never blamed on the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed.
    #[error("storage: {0}")]
    Engine(String),
    /// A stored record cannot be decoded.
    #[error("stored record {key:?} in {tree} is unreadable: {detail}")]
    Corrupt {
        tree: &'static str,
        key: String,
        detail: String,
    },
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Engine(e.to_string())
    }
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

/// A proven statement's key: the circuit and a hash of the public inputs.
pub fn statement_key(circuit_id: &str, public: &[zk::Fr]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for x in public {
        h.update(zk::field::fr_to_be_bytes(x));
    }
    format!("{circuit_id}/{}", hex::encode(h.finalize()))
}

/// The pool's records. Every method may touch the disk or a database: call them
/// from async code, never while holding a lock.
#[async_trait]
pub trait Store: Send + Sync {
    /// Makes every write so far durable (group commit: concurrent callers share
    /// one flush).
    async fn flush(&self) -> Result<(), StoreError>;

    async fn put_circuit(&self, c: &CircuitRecord) -> Result<(), StoreError>;
    async fn circuits(&self) -> Result<Vec<CircuitRecord>, StoreError>;

    /// Stores a job (new or changed), with whatever lists and counts it feeds.
    async fn put_job(&self, j: &JobRecord) -> Result<(), StoreError>;
    /// Stores `j`, a job that has ended (completed, with its `result`; or
    /// expired, cancelled, failed), unless the stored job has ended already:
    /// true when this call ended it. A job ends once, whichever of several
    /// pool processes (or of a completion and an expiry) gets there first.
    async fn end_job(
        &self,
        j: &JobRecord,
        result: Option<&zk::JobResult>,
    ) -> Result<bool, StoreError>;
    async fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// Every job that has not ended (what a restart puts back in the queue), and
    /// every ended job not yet settled or whose stored result is of an old
    /// format: `recover` looks at all of them.
    async fn jobs(&self) -> Result<Vec<JobRecord>, StoreError>;
    /// Jobs per state, over every job stored.
    async fn job_counts(&self) -> Result<BTreeMap<String, u64>, StoreError>;
    /// Up to `limit` jobs the scope sees, newest first, older than the cursor
    /// `before` (a previous page's `next`); and the cursor of the next page.
    async fn jobs_page(
        &self,
        scope: &JobScope,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<String>), StoreError>;

    /// Stores verified proofs of a job's statements (durable after a flush).
    async fn put_proofs(&self, job: &str, proofs: &[(u64, StoredProof)]) -> Result<(), StoreError>;
    /// Stores the verified proofs of a share, unless a proof of any of those
    /// statements is stored already (by another pool process on the same
    /// database, which proved them under a lease this one thought had run out):
    /// then nothing is stored and those statements are returned. A statement is
    /// credited once because only one share can store its proof.
    async fn claim_proofs(
        &self,
        job: &str,
        proofs: &[(u64, StoredProof)],
    ) -> Result<Vec<u64>, StoreError> {
        self.put_proofs(job, proofs).await?;
        Ok(vec![])
    }
    /// Removes proofs again (their credit could not be stored).
    async fn remove_proofs(&self, job: &str, indices: &[u64]) -> Result<(), StoreError>;
    /// How many proofs of a job are stored (without reading them).
    async fn proof_count(&self, job: &str) -> Result<u64, StoreError> {
        Ok(self.job_proofs(job).await?.len() as u64)
    }
    /// Every stored proof of a job, by statement index.
    async fn job_proofs(&self, job: &str) -> Result<Vec<(u64, StoredProof)>, StoreError>;

    async fn put_result(&self, job: &str, result: &zk::JobResult) -> Result<(), StoreError>;
    async fn result(&self, job: &str) -> Result<Option<zk::JobResult>, StoreError>;

    /// The proof of a statement proven before, on any job.
    async fn proven(&self, key: &str) -> Result<Option<ProofBytes>, StoreError>;
    /// Which of `keys` are proven statements (one query where the store can).
    async fn proven_among(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut out = std::collections::HashSet::new();
        for k in keys {
            if self.proven(k).await?.is_some() {
                out.insert(k.clone());
            }
        }
        Ok(out)
    }
    /// Marks a statement proven unless it already is; true when this call did.
    async fn mark_proven(&self, key: &str, proof: &ProofBytes) -> Result<bool, StoreError>;
    /// Takes a mark back (the share it came with could not be stored).
    async fn unmark_proven(&self, key: &str) -> Result<(), StoreError>;

    /// Adds a client; false when the id is taken (nothing changes).
    async fn add_client(&self, c: &ClientRecord) -> Result<bool, StoreError>;
    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError>;
    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// The client an API key belongs to.
    async fn client_by_key(&self, key: &str) -> Result<Option<ClientRecord>, StoreError>;

    /// Sets (or replaces) account `addr`'s worker token; stores its hash only.
    async fn set_worker_token(&self, addr: &str, token: &str) -> Result<(), StoreError>;
    /// The accounts that have a worker token, in order.
    async fn worker_token_accounts(&self) -> Result<Vec<String>, StoreError>;
    /// Removes account `addr`'s worker token; false when it had none.
    async fn remove_worker_token(&self, addr: &str) -> Result<bool, StoreError>;
    /// `None` when account `addr` has no token; else whether `given` is it.
    async fn check_worker_token(
        &self,
        addr: &str,
        given: Option<&str>,
    ) -> Result<Option<bool>, StoreError>;

    /// The pool's receipt-signing key's seed, created (and made durable) on first use.
    async fn receipt_seed(&self) -> Result<[u8; 32], StoreError>;
}
