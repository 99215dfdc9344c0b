//! The zkpool reward ledger.
//!
//! An append-only journal in sled where every entry has an idempotency key, so a
//! share retried after a crash or a duplicate submit is credited once. Per-worker
//! totals are a cache derived from the journal: written in the same transaction
//! as the entry, and rebuilt from the journal whenever the ledger is opened, so
//! the journal is always the record.
//!
//! This is the spine's ledger: it records verified work. Balances, settlements,
//! receipts and payouts build on the same journal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

/// Why the ledger failed. Every variant is a storage fault, never a verdict.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// sled failed to read or write.
    #[error("ledger storage: {0}")]
    Storage(#[from] sled::Error),
    /// An entry in the journal cannot be decoded (corruption or a newer version).
    #[error("ledger entry {key:?} is unreadable: {detail}")]
    Corrupt { key: String, detail: String },
}

/// One verified share: `proofs` proofs of a task, worth `work` units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareCredit {
    pub worker: String,
    pub job: String,
    pub task: String,
    /// The job's statement indices the proofs cover (first, count).
    pub first_statement: u64,
    pub proofs: u64,
    /// Constraints per proof x proofs.
    pub work: u64,
    pub at_ms: u64,
}

impl ShareCredit {
    /// The idempotency key: one credit per (job, first statement); a job's
    /// statements are proven exactly once, so this cannot collide for honest work.
    pub fn key(&self) -> String {
        format!("share/{}/{:020}", self.job, self.first_statement)
    }
}

/// A worker's (or an account's) verified work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkTotals {
    pub work: u64,
    pub proofs: u64,
    pub shares: u64,
    pub last_share_ms: u64,
}

impl WorkTotals {
    fn add(&mut self, c: &ShareCredit) {
        self.work += c.work;
        self.proofs += c.proofs;
        self.shares += 1;
        self.last_share_ms = self.last_share_ms.max(c.at_ms);
    }
}

/// Whether a credit was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOutcome {
    Credited,
    /// An entry with the same idempotency key exists; nothing changed.
    AlreadyCredited,
}

/// The ledger over a sled database.
#[derive(Clone)]
pub struct Ledger {
    db: sled::Db,
    journal: sled::Tree,
    workers: sled::Tree,
}

impl Ledger {
    /// Opens the ledger's trees in `db` and rebuilds the totals from the journal.
    pub fn open(db: &sled::Db) -> Result<Self, LedgerError> {
        let ledger = Ledger {
            db: db.clone(),
            journal: db.open_tree("ledger/journal")?,
            workers: db.open_tree("ledger/workers")?,
        };
        ledger.rebuild_totals()?;
        Ok(ledger)
    }

    /// Appends a share credit unless its key is already in the journal. Not yet
    /// durable: call [`Ledger::flush`] before acknowledging it to anyone.
    pub fn credit(&self, c: &ShareCredit) -> Result<CreditOutcome, LedgerError> {
        let key = c.key();
        let entry = serde_json::to_vec(c).expect("credits serialise to JSON");
        let result = (&self.journal, &self.workers).transaction(|(journal, workers)| {
            if journal.get(key.as_bytes())?.is_some() {
                return Ok(CreditOutcome::AlreadyCredited);
            }
            journal.insert(key.as_bytes(), entry.as_slice())?;
            let mut totals: WorkTotals = workers
                .get(c.worker.as_bytes())?
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default();
            totals.add(c);
            workers.insert(
                c.worker.as_bytes(),
                serde_json::to_vec(&totals).expect("totals serialise"),
            )?;
            Ok::<_, ConflictableTransactionError<()>>(CreditOutcome::Credited)
        });
        match result {
            Ok(o) => Ok(o),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => unreachable!("the credit transaction never aborts"),
        }
    }

    /// Makes every credit so far durable (sled's flush: safe against a killed
    /// process; see ARCHITECTURE.md for what it is not).
    pub async fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// The totals of one worker (`ADDR.RIG`), or of every rig of an account (`ADDR`).
    pub fn totals(
        &self,
        name: &str,
    ) -> Result<(WorkTotals, BTreeMap<String, WorkTotals>), LedgerError> {
        let mut rigs = BTreeMap::new();
        if name.contains('.') {
            if let Some(v) = self.workers.get(name.as_bytes())? {
                rigs.insert(name.to_owned(), decode(name, &v)?);
            }
        } else {
            for kv in self.workers.scan_prefix(format!("{name}.").as_bytes()) {
                let (k, v) = kv?;
                let k = String::from_utf8_lossy(&k).into_owned();
                let t: WorkTotals = decode(&k, &v)?;
                rigs.insert(k, t);
            }
        }
        let mut sum = WorkTotals::default();
        for t in rigs.values() {
            sum.work += t.work;
            sum.proofs += t.proofs;
            sum.shares += t.shares;
            sum.last_share_ms = sum.last_share_ms.max(t.last_share_ms);
        }
        Ok((sum, rigs))
    }

    /// Every credit of one job, in statement order.
    pub fn job_credits(&self, job: &str) -> Result<Vec<ShareCredit>, LedgerError> {
        self.journal
            .scan_prefix(format!("share/{job}/").as_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// Recomputes every worker's totals from the journal and rewrites the cache
    /// where it differs; returns how many workers were corrected.
    pub fn rebuild_totals(&self) -> Result<usize, LedgerError> {
        let mut computed: BTreeMap<String, WorkTotals> = BTreeMap::new();
        for kv in self.journal.scan_prefix(b"share/") {
            let (k, v) = kv?;
            let c: ShareCredit = decode(&String::from_utf8_lossy(&k), &v)?;
            computed.entry(c.worker.clone()).or_default().add(&c);
        }
        let mut fixed = 0;
        for kv in self.workers.iter() {
            let (k, _) = kv?;
            if !computed.contains_key(String::from_utf8_lossy(&k).as_ref()) {
                self.workers.remove(k)?;
                fixed += 1;
            }
        }
        for (w, t) in computed {
            let want = serde_json::to_vec(&t).expect("totals serialise");
            if self.workers.get(w.as_bytes())?.as_deref() != Some(&want[..]) {
                self.workers.insert(w.as_bytes(), want)?;
                fixed += 1;
            }
        }
        Ok(fixed)
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, v: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(v).map_err(|e| LedgerError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn credit(worker: &str, job: &str, first: u64, proofs: u64) -> ShareCredit {
        ShareCredit {
            worker: worker.into(),
            job: job.into(),
            task: format!("t{first}"),
            first_statement: first,
            proofs,
            work: proofs * 100,
            at_ms: first,
        }
    }

    #[test]
    fn a_share_is_credited_once_and_totals_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let l = Ledger::open(&db).unwrap();
        assert_eq!(
            l.credit(&credit("a.r1", "j", 0, 2)).unwrap(),
            CreditOutcome::Credited
        );
        assert_eq!(
            l.credit(&credit("a.r1", "j", 0, 2)).unwrap(),
            CreditOutcome::AlreadyCredited
        );
        assert_eq!(
            l.credit(&credit("a.r2", "j", 2, 1)).unwrap(),
            CreditOutcome::Credited
        );
        let (sum, rigs) = l.totals("a").unwrap();
        assert_eq!(
            (sum.work, sum.proofs, sum.shares, rigs.len()),
            (300, 3, 2, 2)
        );
        drop((l, db));
        let db = sled::open(dir.path()).unwrap();
        let l = Ledger::open(&db).unwrap();
        assert_eq!(l.totals("a.r1").unwrap().0.work, 200);
        assert_eq!(l.job_credits("j").unwrap().len(), 2);
    }

    proptest! {
        /// Whatever the sequence of credits (with repeats), each worker's totals equal
        /// the sum of its distinct credits, and a rebuild finds nothing to fix.
        #[test]
        fn totals_equal_distinct_credits(ops in proptest::collection::vec((0usize..3, 0u64..20, 1u64..5), 0..60)) {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let l = Ledger::open(&db).unwrap();
            let mut expect: BTreeMap<String, u64> = BTreeMap::new();
            let mut seen = std::collections::HashSet::new();
            for (w, first, proofs) in ops {
                let c = credit(&format!("acct.r{w}"), "job", first, proofs);
                let outcome = l.credit(&c).unwrap();
                prop_assert_eq!(outcome == CreditOutcome::Credited, seen.insert(first));
                if outcome == CreditOutcome::Credited {
                    *expect.entry(c.worker.clone()).or_default() += c.work;
                }
            }
            for (w, work) in &expect {
                prop_assert_eq!(l.totals(w).unwrap().0.work, *work);
            }
            prop_assert_eq!(l.rebuild_totals().unwrap(), 0);
        }
    }
}
