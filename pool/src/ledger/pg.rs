//! The ledger on PostgreSQL: the same journal and rules as the sled ledger
//! ([`super::SledLedger`]), in tables (`pool/migrations/0002_ledger.sql`), so
//! the ledger of record is a database that fsyncs its commits.
//!
//! Every entry is one row of `ledger_journal` under its idempotency key
//! (UNIQUE), written in the same transaction as the cached balances it leaves
//! (`ledger_balances`). Whether an entry may be recorded, and what it moves, is
//! decided by `payouts::State` and the rules beside it, exactly as for sled: the
//! journal is replayed into a `State` on open, each request is checked against
//! it ([`State::effects`]: no overdraft, no overflow, batches in the right
//! state), and the state is updated only once the transaction has committed. The
//! database then holds the same rules a second time: the key and the credit-list
//! position are UNIQUE, a balance has `CHECK (balance >= 0)`, each balance row is
//! updated by its delta and must come out where the state says, and the journal
//! refuses UPDATE, DELETE and TRUNCATE.
//!
//! Amounts are integers (BIGINT): an account may hold at most `i64::MAX`
//! units here (sled's limit is `u64::MAX`); an entry that would go over is
//! refused before it is written.
//!
//! Group commit: [`Ledger::credit`] hands its share to one committer task over a
//! bounded channel; the committer takes every credit waiting (up to
//! [`MAX_GROUP`]) and records them in one transaction, so concurrent shares
//! share one commit (one fsync), as the sled path shares one flush. A credit's
//! call returns only after the commit that holds it.
//!
//! Several pool processes on one database (issue 14) write this ledger
//! together. Every write transaction first takes one transaction-scoped
//! advisory lock ([`LEDGER_LOCK`]), then reads the journal entries other
//! processes committed since this process last looked and applies them to its
//! state, and only then decides and writes its own entries: the writers of all
//! processes are serialised, each decision is made on the whole journal, and
//! sequence numbers stay gapless. Readers catch up on the same tail (without the
//! lock: entries commit in sequence order, so a reader always sees a prefix).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool, Transaction};
use payouts::{
    keys,
    state::{self, State},
    worker_addr, Account, Audit, Batch, Body, Credited, Entry, JobOutcome, LedgerError, MinerFunds,
    Policy, ReceiptBody, Scheme, Settlement, ShareCredit, WorkTotals,
};
use tokio::sync::{mpsc, oneshot, Mutex, MutexGuard};
use tracing::warn;

use super::{Ledger, ShareOutcome};

/// Credits waiting for the committer. Full means the crediting session waits
/// for room: shares wait (backpressure reaches the miner), they are never
/// dropped.
const CREDIT_QUEUE: usize = 1024;

/// Credits one transaction records at most: a bound on how long the books stay
/// locked for one commit.
pub const MAX_GROUP: usize = 256;

/// The advisory lock every ledger write transaction holds, in every process on
/// the database ("zkledgr" in ASCII; the store's migration lock is another).
const LEDGER_LOCK: i64 = 0x007a_6b6c_6564_6772;

/// Times a settlement re-reads its job's credits because another process
/// credited the job meanwhile, before it gives up (and is retried later).
const SETTLE_TRIES: usize = 8;

/// Shares read per query when walking the journal back (the PPLNS window,
/// recent shares).
const PAGE: i64 = 512;

/// The ledger in a PostgreSQL database. Cheap to share behind an `Arc`; one per
/// process and database.
pub struct PgLedger {
    shared: Arc<Shared>,
    credits: mpsc::Sender<CreditRequest>,
}

struct Shared {
    pool: Pool,
    /// Every write holds this lock from its first read to its commit, so each
    /// entry is checked against the state it is applied to, and readers never
    /// see an entry that has not committed.
    books: Mutex<Books>,
    /// Transactions that recorded something and committed.
    commits: AtomicU64,
}

struct Books {
    state: State,
    /// A transaction that changed `state` did not commit (or its outcome is
    /// unknown): the state is re-read from the journal before it is used again.
    stale: bool,
}

struct CreditRequest {
    credit: ShareCredit,
    paid: u64,
    /// The share's proofs (statement, the store's record), stored in the same
    /// transaction (`proofs` table, `crate::store::PgStore`).
    proofs: Vec<(u64, String)>,
    /// Its statements' proven marks (statement key, proof): the `proven`
    /// table, written with the credit.
    marks: Vec<(String, Vec<u8>)>,
    reply: oneshot::Sender<Result<ShareOutcome, LedgerError>>,
}

/// A database failure as a ledger storage fault, with its causes.
fn storage(e: impl std::error::Error) -> LedgerError {
    LedgerError::Storage(format!("PostgreSQL: {}", crate::store::pg::with_causes(&e)).into())
}

/// `.db()?` on a driver or pool result.
trait Db<T> {
    fn db(self) -> Result<T, LedgerError>;
}

impl<T, E: std::error::Error> Db<T> for Result<T, E> {
    fn db(self) -> Result<T, LedgerError> {
        self.map_err(storage)
    }
}

/// A storage fault again, for each of several callers (a group's credits).
fn copy(e: &LedgerError) -> LedgerError {
    LedgerError::Storage(e.to_string().into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A count or time the ledger keeps in a BIGINT column.
fn bigint(what: &str, v: u64) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| {
        LedgerError::Invalid(format!(
            "{what} would be {v}, more than the {} a PostgreSQL ledger stores",
            i64::MAX
        ))
    })
}

fn decode(key: &str, text: &str) -> Result<Entry, LedgerError> {
    serde_json::from_str(text).map_err(|e| LedgerError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// The `kind` column: the entry's tag in its JSON.
fn kind(body: &Body) -> &'static str {
    match body {
        Body::Deposit { .. } => "deposit",
        Body::Escrow { .. } => "escrow",
        Body::Share { .. } => "share",
        Body::Settle(_) => "settle",
        Body::Reward { .. } => "reward",
        Body::Plan { .. } => "plan",
        Body::Confirm { .. } => "confirm",
        Body::Void { .. } => "void",
        Body::Withdraw { .. } => "withdraw",
    }
}

/// Replays the whole journal into a fresh state, checking that it is gapless
/// and that every entry is one the rules accept.
async fn replay(db: &impl GenericClient) -> Result<State, LedgerError> {
    let mut st = State::default();
    catch_up(db, &mut st).await?;
    Ok(st)
}

/// Applies to `st` the entries recorded after it (by this process before a
/// restart, or by other processes on the database), checking that they follow
/// on without a gap and that the rules accept each.
async fn catch_up(db: &impl GenericClient, st: &mut State) -> Result<(), LedgerError> {
    // In pages, so a long journal is not held in memory twice.
    loop {
        let rows = db
            .query(
                "SELECT key, entry FROM ledger_journal WHERE seq >= $1 ORDER BY seq LIMIT 4096",
                &[&bigint("a sequence number", st.next_seq())?],
            )
            .await
            .db()?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            let key: String = row.get(0);
            let e = decode(&key, row.get(1))?;
            if e.seq != st.next_seq() {
                return Err(LedgerError::Corrupt {
                    key,
                    detail: format!("expected entry {} next, found {}", st.next_seq(), e.seq),
                });
            }
            let touched = st.effects(&e.body).map_err(|err| LedgerError::Corrupt {
                key: key.clone(),
                detail: format!("does not replay: {err}"),
            })?;
            st.apply(&e, touched);
        }
    }
}

/// Begins a write: takes the ledger's advisory lock for the transaction (every
/// process's writers queue here) and brings the books up to the journal.
///
/// Books made stale by a transaction that did not commit (or may not have)
/// are replayed whole *before* the lock: the journal is appended to in
/// sequence under the lock, so what a replay reads is a committed prefix, and
/// the entries committed meanwhile are caught up under the lock. Replaying a
/// long journal under it would stall every process's writers.
async fn begin_write(tx: &Transaction<'_>, books: &mut Books) -> Result<(), LedgerError> {
    if books.stale {
        books.state = replay(tx).await?;
        books.stale = false;
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK])
        .await
        .db()?;
    if let Err(e) = catch_up(tx, &mut books.state).await {
        books.stale = true;
        return Err(e);
    }
    Ok(())
}

/// The entry recorded under idempotency key `key`.
async fn entry_by_key(db: &impl GenericClient, key: &str) -> Result<Option<Entry>, LedgerError> {
    let row = db
        .query_opt("SELECT entry FROM ledger_journal WHERE key = $1", &[&key])
        .await
        .db()?;
    row.map(|r| decode(key, r.get(0))).transpose()
}

/// Records the entry `body` in `tx` and applies it to `st`, unless its key is
/// taken (in `earlier`: recorded earlier in this transaction or looked up
/// already; else in the database, unless the key is in `absent`, looked up and
/// not found): then the entry holding it answers when `body` is the same
/// request retried ([`state::retry`]). Returns the entry holding the key and
/// whether it is new. `st` changes only for a new entry, after its rows are
/// written; the caller commits, or marks the state stale.
async fn record(
    tx: &Transaction<'_>,
    st: &mut State,
    body: Body,
    earlier: &mut HashMap<String, Entry>,
    absent: &HashSet<String>,
) -> Result<(Entry, bool), LedgerError> {
    let key = body.key();
    if let Some(e) = earlier.get(&key) {
        return Ok((state::retry(e.clone(), &body)?, false));
    }
    if !absent.contains(&key) {
        if let Some(e) = entry_by_key(tx, &key).await? {
            return Ok((state::retry(e, &body)?, false));
        }
    }
    st.admits(&body)?;
    let touched = st.effects(&body)?;
    let entry = Entry {
        seq: st.next_seq(),
        key: key.clone(),
        at_ms: now_ms(),
        body,
    };
    write_entry(tx, st, &entry, touched).await?;
    earlier.insert(key, entry.clone());
    Ok((entry, true))
}

/// Writes `entry` (the next, with the balances `touched` it leaves) to the
/// journal and the cached balances in `tx`, and applies it to `st`.
async fn write_entry(
    tx: &Transaction<'_>,
    st: &mut State,
    entry: &Entry,
    touched: state::Touched,
) -> Result<(), LedgerError> {
    // Each touched balance by its new value and the change, both BIGINT: the
    // old value fits (it was written), so the change does when the new one does.
    let mut rows = Vec::with_capacity(touched.len());
    for (account, &new) in &touched {
        let new = bigint(&format!("{account}'s balance"), new)?;
        let old = st.balance(account) as i64;
        rows.push((account.to_string(), new, new - old));
    }
    let (job, position) = journal_columns(&entry.body)?;
    let text = serde_json::to_string(&entry).expect("ledger entries serialise to JSON");
    tx.execute(
        "INSERT INTO ledger_journal (seq, key, kind, at_ms, job, position, entry)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &bigint("a sequence number", entry.seq)?,
            &entry.key,
            &kind(&entry.body),
            &bigint("a time", entry.at_ms)?,
            &job,
            &position,
            &text,
        ],
    )
    .await
    .db()?;
    for (account, new, delta) in &rows {
        let got: i64 = tx
            .query_one(
                "INSERT INTO ledger_balances (account, balance) VALUES ($1, $2)
                 ON CONFLICT (account) DO UPDATE SET balance = ledger_balances.balance + $3
                 RETURNING balance",
                &[account, new, delta],
            )
            .await
            .db()?
            .get(0);
        if got != *new {
            return Err(LedgerError::Storage(
                format!(
                    "the database holds a balance of {account} that is not the journal's \
                     ({got} after this entry, the journal gives {new}): ledger_balances was \
                     changed outside the pool; nothing was recorded, restart the pool to \
                     correct the balances from the journal"
                )
                .into(),
            ));
        }
    }
    st.apply(entry, touched);
    Ok(())
}

/// Imports a whole journal (another ledger's, in order) into the empty
/// journal of this database in `tx`: every entry keeps its sequence number,
/// key and time, and must follow on without a gap and replay under the rules.
/// Entries go in pages of one insert each, the cached balances once at the
/// end; then the journal is read back and replayed, and its state returned
/// (for the caller to compare with the source's). `zkpool migrate
/// --from-sled` uses this; the caller commits.
pub async fn import_journal(
    tx: &Transaction<'_>,
    entries: impl Iterator<Item = Result<Entry, LedgerError>>,
) -> Result<State, LedgerError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK])
        .await
        .db()?;
    let mut st = replay(tx).await?;
    if st.next_seq() != 0 {
        return Err(LedgerError::Invalid(format!(
            "the database's ledger already holds {} entries: a journal is imported into an empty one only",
            st.next_seq()
        )));
    }
    let mut page: Vec<Entry> = Vec::with_capacity(IMPORT_PAGE);
    for e in entries {
        let e = e?;
        if e.seq != st.next_seq() {
            return Err(LedgerError::Corrupt {
                key: e.key,
                detail: format!("expected entry {} next, found {}", st.next_seq(), e.seq),
            });
        }
        let touched = st.effects(&e.body).map_err(|err| LedgerError::Corrupt {
            key: e.key.clone(),
            detail: format!("does not replay: {err}"),
        })?;
        st.apply(&e, touched);
        page.push(e);
        if page.len() == IMPORT_PAGE {
            insert_entries(tx, &page).await?;
            page.clear();
        }
    }
    insert_entries(tx, &page).await?;
    let mut accounts = vec![];
    let mut balances = vec![];
    for (account, v) in st.accounts() {
        accounts.push(account.to_string());
        balances.push(bigint(&format!("{account}'s balance"), v)?);
    }
    tx.execute(
        "INSERT INTO ledger_balances (account, balance)
         SELECT * FROM unnest($1::TEXT[], $2::BIGINT[])",
        &[&accounts, &balances],
    )
    .await
    .db()?;
    let read_back = replay(tx).await?;
    if read_back != st {
        return Err(LedgerError::Corrupt {
            key: String::new(),
            detail: "the imported journal, read back, does not replay to the source's state".into(),
        });
    }
    Ok(read_back)
}

/// Journal entries imported per insert.
const IMPORT_PAGE: usize = 1_000;

/// Inserts `entries` into the journal in one statement (balances apart).
async fn insert_entries(tx: &Transaction<'_>, entries: &[Entry]) -> Result<(), LedgerError> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len();
    let (mut seqs, mut keys, mut kinds, mut times) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut jobs, mut positions, mut texts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in entries {
        let (job, position) = journal_columns(&e.body)?;
        seqs.push(bigint("a sequence number", e.seq)?);
        keys.push(e.key.as_str());
        kinds.push(kind(&e.body));
        times.push(bigint("a time", e.at_ms)?);
        jobs.push(job);
        positions.push(position);
        texts.push(serde_json::to_string(e).expect("ledger entries serialise to JSON"));
    }
    tx.execute(
        "INSERT INTO ledger_journal (seq, key, kind, at_ms, job, position, entry)
         SELECT * FROM unnest($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[],
                              $5::TEXT[], $6::BIGINT[], $7::TEXT[])",
        &[&seqs, &keys, &kinds, &times, &jobs, &positions, &texts],
    )
    .await
    .db()?;
    Ok(())
}

/// The `job` and `position` columns of an entry: a share's, else none.
fn journal_columns(body: &Body) -> Result<(Option<&str>, Option<i64>), LedgerError> {
    Ok(match body {
        Body::Share {
            credit, position, ..
        } => (
            Some(credit.job.as_str()),
            Some(bigint("a credit's position", *position)?),
        ),
        _ => (None, None),
    })
}

impl Shared {
    /// The books, locked and brought up to the journal (re-read whole when a
    /// transaction that changed them did not commit; else the entries other
    /// processes committed since, applied). For reading: a write takes the
    /// ledger's lock first ([`begin_write`]).
    async fn books(&self) -> Result<MutexGuard<'_, Books>, LedgerError> {
        let mut books = self.books.lock().await;
        let conn = self.pool.get().await.db()?;
        if books.stale {
            books.state = replay(&conn).await?;
            books.stale = false;
        } else if let Err(e) = catch_up(&conn, &mut books.state).await {
            books.stale = true;
            return Err(e);
        }
        Ok(books)
    }

    /// Commits `tx` when it recorded anything (`books` moved past `before`);
    /// when it did not commit, the state is stale.
    async fn finish<T>(
        &self,
        tx: Transaction<'_>,
        books: &mut Books,
        before: u64,
        outcome: Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let changed = books.state.next_seq() != before;
        match outcome {
            Ok(v) if changed => match tx.commit().await {
                Ok(()) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    Ok(v)
                }
                Err(e) => {
                    books.stale = true;
                    Err(storage(e))
                }
            },
            Ok(v) => Ok(v),
            Err(e) => {
                // Dropping the transaction rolls it back.
                books.stale |= changed;
                Err(e)
            }
        }
    }

    /// Records `body` (checked against the state) in a transaction of its own.
    async fn append_body(&self, body: Body) -> Result<(Entry, bool), LedgerError> {
        let recorded = self.append(|_| Ok(Some(body))).await?;
        Ok(recorded.expect("a request with a body always makes an entry"))
    }

    /// Records the entry `request` builds from the state (none: `None`) in a
    /// transaction of its own.
    async fn append(
        &self,
        request: impl FnOnce(&State) -> Result<Option<Body>, LedgerError>,
    ) -> Result<Option<(Entry, bool)>, LedgerError> {
        let mut books = self.books.lock().await;
        let mut conn = self.pool.get().await.db()?;
        let tx = conn.transaction().await.db()?;
        begin_write(&tx, &mut books).await?;
        // Nothing to record: dropping the transaction rolls it back and lets
        // the lock go.
        let Some(body) = request(&books.state)? else {
            return Ok(None);
        };
        let before = books.state.next_seq();
        let outcome = record(
            &tx,
            &mut books.state,
            body,
            &mut HashMap::new(),
            &HashSet::new(),
        )
        .await;
        self.finish(tx, &mut books, before, outcome).await.map(Some)
    }

    /// Records a group of credits in one transaction. A credit the rules refuse
    /// (PPS funds short) gets its refusal and the others go on; a storage fault
    /// fails the whole group, and none of it is recorded.
    async fn credit_group(
        &self,
        group: &[CreditRequest],
        books: &mut Books,
    ) -> Result<Vec<Result<ShareOutcome, LedgerError>>, LedgerError> {
        let mut conn = self.pool.get().await.db()?;
        let tx = conn.transaction().await.db()?;
        begin_write(&tx, books).await?;
        let before = books.state.next_seq();
        // Every key of the group looked up in one query, not one each: most
        // credits are new, and the lookup is a round trip under the lock.
        let mut absent: HashSet<String> = group.iter().map(|r| r.credit.key()).collect();
        let keys: Vec<&String> = absent.iter().collect();
        let rows = tx
            .query(
                "SELECT key, entry FROM ledger_journal WHERE key = ANY($1)",
                &[&keys],
            )
            .await
            .db()?;
        let mut earlier = HashMap::new();
        for row in rows {
            let key: String = row.get(0);
            absent.remove(&key);
            // An unreadable entry is left to `record`, which looks it up again
            // and reports it for its own credit only.
            if let Ok(e) = decode(&key, row.get(1)) {
                earlier.insert(key, e);
            }
        }
        let mut answers = Vec::with_capacity(group.len());
        let mut fault = None;
        for r in group {
            // The proofs first: the ledger's lock orders every credit, so a
            // conflict is with a committed proof, and this share is not
            // recorded (the rows it did insert are taken out again).
            if !r.proofs.is_empty() {
                let stored =
                    crate::store::pg::insert_proofs_all_or_none(&tx, &r.credit.job, &r.proofs)
                        .await
                        .map_err(|e| LedgerError::Storage(format!("PostgreSQL: {e}").into()));
                match stored {
                    Ok(taken) if taken.is_empty() => {}
                    Ok(taken) => {
                        answers.push(Ok(ShareOutcome::Taken(taken)));
                        continue;
                    }
                    Err(e) => {
                        fault = Some(e);
                        break;
                    }
                }
            }
            let body = books.state.share(&r.credit, r.paid);
            match record(&tx, &mut books.state, body, &mut earlier, &absent).await {
                Ok((e, new)) => {
                    if let Err(e) = mark_proven(&tx, &r.marks).await {
                        fault = Some(e);
                        break;
                    }
                    answers.push(e.into_credited(new).map(ShareOutcome::Credited))
                }
                // The transaction is broken: nothing more can be written in it.
                Err(e @ LedgerError::Storage(_)) => {
                    fault = Some(e);
                    break;
                }
                Err(e) => {
                    // Refused (PPS funds short): its proofs go out again.
                    if let Err(e) = unstore_proofs(&tx, &r.credit.job, &r.proofs).await {
                        fault = Some(e);
                        break;
                    }
                    answers.push(Err(e))
                }
            }
        }
        let outcome = match fault {
            Some(e) => Err(e),
            None => Ok(answers),
        };
        self.finish(tx, books, before, outcome).await
    }
}

/// Marks a share's statements proven (those not marked already keep their
/// first proof).
async fn mark_proven(tx: &Transaction<'_>, marks: &[(String, Vec<u8>)]) -> Result<(), LedgerError> {
    if marks.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = marks.iter().map(|(k, _)| k.as_str()).collect();
    let proofs: Vec<&[u8]> = marks.iter().map(|(_, p)| p.as_slice()).collect();
    tx.execute(
        "INSERT INTO proven (key, proof) SELECT * FROM unnest($1::TEXT[], $2::BYTEA[])
         ON CONFLICT (key) DO NOTHING",
        &[&keys, &proofs],
    )
    .await
    .db()?;
    Ok(())
}

/// Deletes the proofs a share inserted in this transaction.
async fn unstore_proofs(
    tx: &Transaction<'_>,
    job: &str,
    proofs: &[(u64, String)],
) -> Result<(), LedgerError> {
    if proofs.is_empty() {
        return Ok(());
    }
    let indices: Vec<i64> = proofs.iter().map(|(i, _)| *i as i64).collect();
    tx.execute(
        "DELETE FROM proofs WHERE job = $1 AND idx = ANY($2)",
        &[&job, &indices],
    )
    .await
    .db()?;
    Ok(())
}

/// The committer: takes the credits waiting, records them in one transaction,
/// answers each once it has committed. Ends when the ledger is dropped.
async fn commit_credits(shared: Arc<Shared>, mut queue: mpsc::Receiver<CreditRequest>) {
    while let Some(first) = queue.recv().await {
        let mut books = shared.books.lock().await;
        // Credits that arrived while the books were busy join this group.
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let answers = shared.credit_group(&group, &mut books).await;
        drop(books);
        match answers {
            Ok(answers) => {
                for (r, a) in group.into_iter().zip(answers) {
                    // A caller that gave up (its session ended) is not told; its
                    // credit stands, as a retry would find.
                    let _ = r.reply.send(a);
                }
            }
            Err(e) => {
                warn!(error = %e, credits = group.len(), "a group of credits failed to commit");
                for r in group {
                    let _ = r.reply.send(Err(copy(&e)));
                }
            }
        }
    }
}

impl PgLedger {
    /// Opens the ledger in the database `pool` connects to (its schema brought
    /// up to date by `crate::store::PgStore::open`), replays the journal and
    /// corrects the cached balances where they differ from it.
    pub async fn open(pool: Pool) -> Result<Self, LedgerError> {
        let shared = Arc::new(Shared {
            pool,
            books: Mutex::new(Books {
                state: State::default(),
                stale: true,
            }),
            commits: AtomicU64::new(0),
        });
        let (credits, queue) = mpsc::channel(CREDIT_QUEUE);
        let ledger = PgLedger {
            shared: shared.clone(),
            credits,
        };
        let fixed = ledger.check_balances().await?;
        if fixed > 0 {
            warn!(
                corrected = fixed,
                "cached ledger balances differed from the journal; corrected from the journal"
            );
        }
        tokio::spawn(commit_credits(shared, queue));
        Ok(ledger)
    }

    /// Hands a credit (and its proofs) to the committer and waits for its
    /// commit.
    async fn send_credit(
        &self,
        c: &ShareCredit,
        policy: &Policy,
        proofs: Vec<(u64, String)>,
        marks: Vec<(String, Vec<u8>)>,
    ) -> Result<ShareOutcome, LedgerError> {
        let paid = state::pps_pay(c, policy)?;
        let (reply, answer) = oneshot::channel();
        let stopped = || LedgerError::Storage("the ledger's committer has stopped".into());
        self.credits
            .send(CreditRequest {
                credit: c.clone(),
                paid,
                proofs,
                marks,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// How many transactions recorded something and committed since open: fewer
    /// than the entries recorded when credits shared commits (for tests and
    /// benchmarks).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }

    /// Replays the journal and compares every row of the cached balances with
    /// it, rewriting those that differ (in one transaction); returns how many
    /// did. Zero means the balances table is exactly what the journal gives.
    pub async fn check_balances(&self) -> Result<usize, LedgerError> {
        let mut books = self.shared.books.lock().await;
        let mut conn = self.shared.pool.get().await.db()?;
        let tx = conn.transaction().await.db()?;
        // Under the writers' lock: another process's commit between the replay
        // and the balances read would otherwise look like a wrong balance.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK])
            .await
            .db()?;
        let st = replay(&tx).await?;
        let mut want: HashMap<String, i64> = HashMap::new();
        for (account, v) in st.accounts() {
            want.insert(account.to_string(), bigint("a balance", v)?);
        }
        let mut fixed = 0;
        for row in tx
            .query("SELECT account, balance FROM ledger_balances", &[])
            .await
            .db()?
        {
            let account: String = row.get(0);
            let balance: i64 = row.get(1);
            match want.remove(&account) {
                Some(v) if v == balance => {}
                Some(v) => {
                    tx.execute(
                        "UPDATE ledger_balances SET balance = $2 WHERE account = $1",
                        &[&account, &v],
                    )
                    .await
                    .db()?;
                    fixed += 1;
                }
                None => {
                    tx.execute(
                        "DELETE FROM ledger_balances WHERE account = $1",
                        &[&account],
                    )
                    .await
                    .db()?;
                    fixed += 1;
                }
            }
        }
        for (account, v) in want {
            tx.execute(
                "INSERT INTO ledger_balances (account, balance) VALUES ($1, $2)",
                &[&account, &v],
            )
            .await
            .db()?;
            fixed += 1;
        }
        tx.commit().await.db()?;
        books.state = st;
        books.stale = false;
        Ok(fixed)
    }

    /// The entry that holds `key`, expected to be of the kind `pick` takes.
    async fn entry_of<T>(
        &self,
        key: String,
        what: &str,
        pick: impl FnOnce(Body) -> Option<T>,
    ) -> Result<Option<T>, LedgerError> {
        let conn = self.shared.pool.get().await.db()?;
        match entry_by_key(&conn, &key).await? {
            None => Ok(None),
            Some(e) => pick(e.body).map(Some).ok_or(LedgerError::Corrupt {
                key,
                detail: format!("the entry is not {what}"),
            }),
        }
    }

    /// Shares newest first, `PAGE` at a time, handed to `take` until it says
    /// it has enough (returns false) or the journal's start is reached; only
    /// the last `scan` entries of the journal are looked at.
    async fn shares_newest_first(
        &self,
        scan: Option<u64>,
        mut take: impl FnMut(ShareCredit, u64) -> bool,
    ) -> Result<(), LedgerError> {
        let conn = self.shared.pool.get().await.db()?;
        let last: Option<i64> = conn
            .query_one("SELECT max(seq) FROM ledger_journal", &[])
            .await
            .db()?
            .get(0);
        let Some(last) = last else { return Ok(()) };
        let oldest = match scan {
            Some(n) => last.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX)) + 1,
            None => 0,
        };
        let mut below = last + 1;
        loop {
            let rows = conn
                .query(
                    "SELECT seq, key, entry FROM ledger_journal
                     WHERE kind = 'share' AND seq < $1 AND seq >= $2
                     ORDER BY seq DESC LIMIT $3",
                    &[&below, &oldest, &PAGE],
                )
                .await
                .db()?;
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                below = row.get(0);
                let key: String = row.get(1);
                if let Body::Share { credit, paid, .. } = decode(&key, row.get(2))?.body {
                    if !take(credit, paid) {
                        return Ok(());
                    }
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The PPLNS window ([`state::pplns_window`]) over the journal's shares,
    /// reading back only as far as the window reaches.
    async fn pplns_window(&self, window: u64) -> Result<Vec<(String, u64)>, LedgerError> {
        let mut shares = vec![];
        let mut pooled = 0u64;
        self.shares_newest_first(None, |credit, _| {
            if !credit.escrow_only {
                pooled = pooled.saturating_add(credit.work);
            }
            shares.push(credit);
            pooled < window
        })
        .await?;
        Ok(state::pplns_window(window, shares))
    }
}

#[async_trait]
impl Ledger for PgLedger {
    fn commits(&self) -> Option<u64> {
        Some(PgLedger::commits(self))
    }

    fn stores_proofs(&self) -> bool {
        true
    }

    /// Nothing to do: every entry committed before its call returned, and
    /// PostgreSQL's commit is durable (with its default `synchronous_commit`).
    async fn flush(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn deposit(
        &self,
        account: &Account,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError> {
        let body = state::deposit(account, amount, reference)?;
        self.shared.append_body(body).await
    }

    async fn withdraw(
        &self,
        account: &Account,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError> {
        let body = state::withdraw(account, amount, reference)?;
        self.shared.append_body(body).await
    }

    async fn escrow(
        &self,
        job: &str,
        client: &str,
        amount: u64,
    ) -> Result<(Entry, bool), LedgerError> {
        let body = state::escrow(job, client, amount);
        self.shared.append_body(body).await
    }

    async fn credit(&self, c: &ShareCredit, policy: &Policy) -> Result<Credited, LedgerError> {
        match self.send_credit(c, policy, vec![], vec![]).await? {
            ShareOutcome::Credited(c) => Ok(c),
            ShareOutcome::Taken(_) => unreachable!("a credit without proofs takes none"),
        }
    }

    async fn credit_with_proofs(
        &self,
        c: &ShareCredit,
        policy: &Policy,
        proofs: Vec<(u64, String)>,
        marks: Vec<(String, Vec<u8>)>,
    ) -> Option<Result<ShareOutcome, LedgerError>> {
        Some(self.send_credit(c, policy, proofs, marks).await)
    }

    async fn settle(
        &self,
        job: &str,
        client: &str,
        total_work: u64,
        completed: bool,
        policy: &Policy,
    ) -> Result<Settlement, LedgerError> {
        let window = if policy.scheme == Scheme::Pplns {
            self.pplns_window(policy.pplns_window_work).await?
        } else {
            vec![]
        };
        let outcome = JobOutcome {
            job,
            client,
            total_work,
            completed,
        };
        // The credits are read before the ledger's lock is taken; another
        // process may credit the job in between. The state, caught up under
        // the lock, knows how many credits the job has: if that is not how
        // many were read, they are read again.
        for _ in 0..SETTLE_TRIES {
            if let Some(settled) = self.settlement(job).await? {
                return Ok(settled);
            }
            let credits = self.job_credits(job).await?;
            let recorded = self
                .shared
                .append(|st| {
                    if st.next_position(job) != credits.len() as u64 {
                        return Ok(None);
                    }
                    Ok(Some(Body::Settle(
                        st.settlement(&outcome, policy, &credits, &window),
                    )))
                })
                .await?;
            if let Some((e, _)) = recorded {
                return e.into_settlement();
            }
        }
        Err(LedgerError::Storage(
            format!(
                "job {job} kept being credited while it was settled ({SETTLE_TRIES} tries); \
                 settled again at the next sweep"
            )
            .into(),
        ))
    }

    async fn settlement(&self, job: &str) -> Result<Option<Settlement>, LedgerError> {
        self.entry_of(keys::settle(job), "a settlement", |b| match b {
            Body::Settle(s) => Some(s),
            _ => None,
        })
        .await
    }

    async fn job_credits(&self, job: &str) -> Result<Vec<ReceiptBody>, LedgerError> {
        let conn = self.shared.pool.get().await.db()?;
        let rows = conn
            .query(
                "SELECT key, entry FROM ledger_journal WHERE job = $1 AND kind = 'share'
                 ORDER BY position",
                &[&job],
            )
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                let key: String = row.get(0);
                match decode(&key, row.get(1))?.body {
                    Body::Share {
                        credit, position, ..
                    } => Ok(ReceiptBody { credit, position }),
                    _ => Err(LedgerError::Corrupt {
                        key,
                        detail: "a share row holds another kind of entry".into(),
                    }),
                }
            })
            .collect()
    }

    async fn add_reward(
        &self,
        amount: u64,
        reference: &str,
        policy: &Policy,
    ) -> Result<(Entry, bool), LedgerError> {
        let window = self.pplns_window(policy.pplns_window_work).await?;
        let body = state::reward(amount, reference, policy, &window)?;
        self.shared.append_body(body).await
    }

    async fn plan_payouts(&self, threshold: u64) -> Result<Option<Batch>, LedgerError> {
        let Some((e, _)) = self.shared.append(|st| Ok(st.plan(threshold))).await? else {
            return Ok(None);
        };
        self.batch(e.into_planned_batch()?).await
    }

    async fn confirm(&self, id: u64, tx: &str) -> Result<(Batch, bool), LedgerError> {
        let body = state::confirm(id, tx)?;
        let (_, new) = self.shared.append_body(body).await?;
        let batch = self.batch(id).await?;
        Ok((batch.ok_or(LedgerError::UnknownBatch(id))?, new))
    }

    async fn void(&self, id: u64) -> Result<(Batch, bool), LedgerError> {
        let recorded = self.shared.append(|_| Ok(Some(state::void(id)))).await?;
        let (_, new) = recorded.expect("a void request always makes an entry");
        let batch = self.batch(id).await?;
        Ok((batch.ok_or(LedgerError::UnknownBatch(id))?, new))
    }

    async fn batch(&self, id: u64) -> Result<Option<Batch>, LedgerError> {
        Ok(self.shared.books().await?.state.batch(id).cloned())
    }

    async fn batches(&self) -> Result<Vec<Batch>, LedgerError> {
        Ok(self
            .shared
            .books()
            .await?
            .state
            .batches()
            .rev()
            .cloned()
            .collect())
    }

    async fn balance(&self, account: &Account) -> Result<u64, LedgerError> {
        Ok(self.shared.books().await?.state.balance(account))
    }

    async fn balances(&self) -> Result<BTreeMap<Account, u64>, LedgerError> {
        Ok(self
            .shared
            .books()
            .await?
            .state
            .accounts()
            .filter(|&(_, v)| v > 0)
            .map(|(a, v)| (a.clone(), v))
            .collect())
    }

    async fn miner_funds(&self, addr: &str) -> Result<MinerFunds, LedgerError> {
        Ok(self.shared.books().await?.state.miner_funds(addr))
    }

    async fn totals(
        &self,
        name: &str,
    ) -> Result<(WorkTotals, BTreeMap<String, WorkTotals>), LedgerError> {
        Ok(self.shared.books().await?.state.totals(name))
    }

    async fn lifetime(&self) -> Result<WorkTotals, LedgerError> {
        Ok(self.shared.books().await?.state.lifetime())
    }

    async fn recent_shares(
        &self,
        name: &str,
        limit: usize,
        scan: usize,
    ) -> Result<Vec<(ShareCredit, u64)>, LedgerError> {
        let mut out = vec![];
        if limit == 0 || scan == 0 {
            return Ok(out);
        }
        self.shares_newest_first(Some(scan as u64), |credit, paid| {
            if name.is_empty() || credit.worker == name || worker_addr(&credit.worker) == name {
                out.push((credit, paid));
            }
            out.len() < limit
        })
        .await?;
        Ok(out)
    }

    async fn audit(&self) -> Result<Audit, LedgerError> {
        Ok(self.shared.books().await?.state.audit())
    }

    async fn journal(&self, from: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
        let conn = self.shared.pool.get().await.db()?;
        // No entry is numbered past i64::MAX; a limit past it is no limit.
        let Ok(from) = i64::try_from(from) else {
            return Ok(vec![]);
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = conn
            .query(
                "SELECT key, entry FROM ledger_journal WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &[&from, &limit],
            )
            .await
            .db()?;
        rows.iter()
            .map(|row| decode(row.get(0), row.get(1)))
            .collect()
    }

    async fn journal_entry(&self, key: &str) -> Result<Option<Entry>, LedgerError> {
        let conn = self.shared.pool.get().await.db()?;
        entry_by_key(&conn, key).await
    }
}
