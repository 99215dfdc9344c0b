//! Moving a pool from its embedded sled database to PostgreSQL (`zkpool
//! migrate --from-sled DATA_DIR`): every record of the sled store and every
//! entry of its ledger is copied into an empty PostgreSQL database in one
//! transaction, checked, and committed only when the copy is whole: the
//! ledger replayed from the new journal must be exactly the old one's state,
//! and each table must hold what was read. A failure leaves the database as it
//! was (empty). The sled database is left as it was, but for what the pool
//! itself mends when it starts: a share a crash cut between its writes (a
//! proof without its credit is dropped and proven again, a credited proof
//! gets its proven mark), and caches rebuilt from the journal. Run it as the
//! pool's user.
//!
//! What is copied: circuits, jobs (running ones carry on when the pool starts
//! on PostgreSQL), proofs, results, proven statements, clients and their API
//! key hashes, worker token hashes, the receipt signing key (so receipts
//! signed before verify after), and the ledger journal with its entries'
//! sequence numbers, keys and times (balances follow from it). The circuits'
//! key files stay in `storage.data_dir`, which the pool keeps using.

use std::path::Path;

use payouts::{Entry, LedgerError};

use crate::{
    circuits::CircuitRecord,
    jobs::{JobRecord, JobState},
    ledger::{pg::import_journal, SledLedger},
    lifecycle::mend_cut_share,
    store::{
        pg::{
            write_circuit, write_client, write_job, write_proofs, write_proven_all, write_result,
            write_worker_token,
        },
        ClientRecord, PgStore, SledStore, Store, StoreError,
    },
};

/// What was copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub circuits: u64,
    pub jobs: u64,
    /// Of them, still running (they go on when the pool starts).
    pub running: u64,
    pub proofs: u64,
    pub results: u64,
    pub proven: u64,
    pub clients: u64,
    pub worker_tokens: u64,
    pub receipt_key: bool,
    pub ledger_entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("no sled database at {0}: give the storage.data_dir of the pool to move (the directory that holds db/)")]
    NoSled(String),
    #[error("cannot open the sled database at {path}: {detail} (if a zkpool serve uses it, stop it first; run this as the pool's user)")]
    Sled { path: String, detail: String },
    #[error("mending what a crash cut off in the sled database: {0}")]
    Mend(String),
    #[error("the database is not empty ({0}): import into a new, empty database, before any zkpool serve has run on it")]
    NotEmpty(String),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("the copy does not match the sled database ({0}); nothing was committed")]
    Mismatch(String),
}

/// Proofs (and proven marks) written per statement.
const PROOF_BATCH: usize = 1_000;

/// Ledger entries read from sled at a time.
const JOURNAL_PAGE: usize = 4_096;

/// Copies the sled pool in `data_dir` into `pg` (see the module doc).
pub async fn sled_into_postgres(data_dir: &Path, pg: &PgStore) -> Result<Imported, ImportError> {
    let path = data_dir.join("db");
    if !path.join("conf").exists() {
        return Err(ImportError::NoSled(path.display().to_string()));
    }
    let shown = path.display().to_string();
    let sled = SledStore::open(&path).map_err(|e| ImportError::Sled {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    let ledger =
        payouts::Ledger::open_with(&sled.db, sled.flusher()).map_err(|e| ImportError::Sled {
            path: shown.clone(),
            detail: format!("its ledger: {e}"),
        })?;
    // What the pool mends when it starts on sled, first: a share a crash (or
    // a kill) cut between its writes. On PostgreSQL a share is one
    // transaction, so nothing would mend it after the copy.
    let ledger = SledLedger(ledger);
    for r in sled.records::<JobRecord>("jobs") {
        let job = r?.1;
        if job.state == JobState::Running {
            mend_cut_share(&sled, &ledger, &job)
                .await
                .map_err(|e| ImportError::Mend(e.to_string()))?;
        }
    }
    sled.flush().await?;
    let ledger = ledger.0;

    let mut conn = pg.pool().get().await.map_err(StoreError::from)?;
    let tx = conn.transaction().await.map_err(StoreError::from)?;
    let held = table_counts(&tx).await?;
    let nonempty: Vec<String> = held
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{t}: {n}"))
        .collect();
    if !nonempty.is_empty() {
        return Err(ImportError::NotEmpty(nonempty.join(", ")));
    }

    let mut done = Imported::default();
    for r in sled.records::<CircuitRecord>("circuits") {
        write_circuit(&tx, &r?.1).await?;
        done.circuits += 1;
    }
    for r in sled.records::<JobRecord>("jobs") {
        let job = r?.1;
        write_job(&tx, &job).await?;
        done.jobs += 1;
        done.running += u64::from(job.state == JobState::Running);
    }
    let mut batch: Vec<(u64, crate::jobs::StoredProof)> = vec![];
    let mut batch_job = String::new();
    for r in sled.all_proofs() {
        let (job, index, proof) = r?;
        if job != batch_job || batch.len() >= PROOF_BATCH {
            if !batch.is_empty() {
                write_proofs(&tx, &batch_job, &batch).await?;
            }
            batch.clear();
            batch_job = job;
        }
        batch.push((index, proof));
        done.proofs += 1;
    }
    if !batch.is_empty() {
        write_proofs(&tx, &batch_job, &batch).await?;
    }
    for r in sled.records::<zk::JobResult>("results") {
        let (job, result) = r?;
        write_result(&tx, &job, &result).await?;
        done.results += 1;
    }
    let (mut keys, mut marks) = (vec![], vec![]);
    for r in sled.all_proven() {
        let (key, proof) = r?;
        keys.push(key);
        marks.push(proof);
        done.proven += 1;
        if keys.len() == PROOF_BATCH {
            write_proven_all(&tx, &keys, &marks).await?;
            keys.clear();
            marks.clear();
        }
    }
    write_proven_all(&tx, &keys, &marks).await?;
    for r in sled.records::<ClientRecord>("clients") {
        write_client(&tx, &r?.1).await?;
        done.clients += 1;
    }
    for (account, hash) in sled.worker_token_hashes()? {
        write_worker_token(&tx, &account, &hash).await?;
        done.worker_tokens += 1;
    }
    if let Some(seed) = sled.stored_receipt_seed()? {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('receipt-key', $1)",
            &[&seed],
        )
        .await
        .map_err(StoreError::from)?;
        done.receipt_key = true;
    }

    // The journal, page by page, checked as it goes.
    let mut from = 0u64;
    let mut page: std::vec::IntoIter<Entry> = Vec::new().into_iter();
    let mut failed = false;
    let entries = std::iter::from_fn(|| {
        if failed {
            return None;
        }
        if page.len() == 0 {
            match ledger.journal(from, JOURNAL_PAGE) {
                Ok(next) => {
                    from += next.len() as u64;
                    page = next.into_iter();
                }
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            }
        }
        page.next().map(Ok)
    });
    let state = import_journal(&tx, entries).await?;
    done.ledger_entries = state.next_seq();
    if state != ledger.state() {
        return Err(ImportError::Mismatch(
            "the ledger replayed from the copied journal is not the sled ledger's".into(),
        ));
    }
    let copied = table_counts(&tx).await?;
    let expected = [
        ("circuits", done.circuits),
        ("jobs", done.jobs),
        ("proofs", done.proofs),
        ("results", done.results),
        ("proven", done.proven),
        ("clients", done.clients),
        ("worker_tokens", done.worker_tokens),
        ("ledger entries", done.ledger_entries),
    ];
    for (table, want) in expected {
        let got = copied
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n);
        if got != want {
            return Err(ImportError::Mismatch(format!(
                "{table}: {want} read from sled, {got} in the database"
            )));
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(done)
}

/// Rows in each table the copy fills (and a receipt key), in `db`.
async fn table_counts(
    db: &impl deadpool_postgres::GenericClient,
) -> Result<Vec<(&'static str, u64)>, StoreError> {
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM circuits), (SELECT count(*) FROM jobs),
                    (SELECT count(*) FROM proofs), (SELECT count(*) FROM results),
                    (SELECT count(*) FROM proven), (SELECT count(*) FROM clients),
                    (SELECT count(*) FROM worker_tokens), (SELECT count(*) FROM ledger_journal),
                    (SELECT count(*) FROM meta WHERE key = 'receipt-key')",
            &[],
        )
        .await?;
    let names = [
        "circuits",
        "jobs",
        "proofs",
        "results",
        "proven",
        "clients",
        "worker_tokens",
        "ledger entries",
        "receipt key",
    ];
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, name)| (*name, row.get::<_, i64>(i) as u64))
        .collect())
}
