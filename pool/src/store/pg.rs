//! The PostgreSQL store: the same records as the sled store ([`super::SledStore`]),
//! in tables (`pool/migrations/`), so that several pool processes can share one
//! database (issue 14). Every method is one statement or one transaction, and a
//! committed transaction is durable, so [`Store::flush`] has nothing left to do.
//!
//! The semantics are the sled store's, method by method, and `pool/tests/store.rs`
//! runs one behavioural test against both. Where two processes can race, the
//! database decides: a statement is claimed by inserting its primary key
//! (`proven`), a client id is taken by inserting it, the receipt seed is created
//! once.
//!
//! The ledger has its own tables beside these (`crate::ledger::PgLedger`, on
//! the same connection pool). Not here (yet): leases across processes,
//! LISTEN/NOTIFY.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::{de::DeserializeOwned, Serialize};
use tokio_postgres::NoTls;
use zk::ProofBytes;

use super::{key_hash, ClientRecord, JobScope, Store, StoreError};
use crate::{
    circuits::CircuitRecord,
    jobs::{JobRecord, StoredProof},
};

/// The schema, in order: version `i + 1` is `MIGRATIONS[i]`. A migration, once
/// released, is never edited; a change is a new file.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_store",
        include_str!("../../migrations/0001_store.sql"),
    ),
    (
        "0002_ledger",
        include_str!("../../migrations/0002_ledger.sql"),
    ),
    (
        "0003_cluster",
        include_str!("../../migrations/0003_cluster.sql"),
    ),
];

/// The advisory lock held (for one transaction) while migrations are applied, so
/// that processes starting together apply each migration once. Any constant
/// works as long as nothing else in the database uses it: "zkpool" in ASCII.
const MIGRATION_LOCK: i64 = 0x7a6b_706f_6f6c;

/// Connections one store keeps open at most.
const POOL_SIZE: usize = 16;

/// How long a caller waits for a free connection, or for a new one to open,
/// before the call fails (and is answered "try again").
const CONNECTION_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

/// An error's message followed by its causes: tokio-postgres's own message is
/// only "db error", the server's message is its source.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    message
}

/// A driver or pool error as a storage fault, with its causes.
pub(crate) fn engine(e: impl std::error::Error) -> StoreError {
    StoreError::Engine(with_causes(&e))
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        engine(e)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        engine(e)
    }
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialise to JSON")
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    record: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(record).map_err(|e| StoreError::Corrupt {
        tree: table,
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

/// Inserts a share's proofs (statement, stored record) in `tx`, all or none:
/// when some statement has a proof already, the rows this call inserted are
/// deleted again (in the same transaction) and those statements are returned.
/// Shared by the store and the ledger (which stores a share's proofs with its
/// credit).
pub(crate) async fn insert_proofs_all_or_none(
    tx: &deadpool_postgres::Transaction<'_>,
    job: &str,
    proofs: &[(u64, String)],
) -> Result<Vec<u64>, StoreError> {
    let indices: Vec<i64> = proofs
        .iter()
        .map(|(i, _)| bigint("statement index", *i))
        .collect::<Result<_, _>>()?;
    let records: Vec<&str> = proofs.iter().map(|(_, r)| r.as_str()).collect();
    let rows = tx
        .query(
            "INSERT INTO proofs (job, idx, record)
             SELECT $1, i, r FROM unnest($2::BIGINT[], $3::TEXT[]) AS t(i, r)
             ON CONFLICT (job, idx) DO NOTHING
             RETURNING idx",
            &[&job, &indices, &records],
        )
        .await?;
    if rows.len() == proofs.len() {
        return Ok(vec![]);
    }
    let inserted: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    tx.execute(
        "DELETE FROM proofs WHERE job = $1 AND idx = ANY($2)",
        &[&job, &inserted],
    )
    .await?;
    Ok(indices
        .into_iter()
        .filter(|i| !inserted.contains(i))
        .map(|i| i as u64)
        .collect())
}

/// A u64 the pool counts in, as the BIGINT PostgreSQL stores.
fn bigint(what: &'static str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Engine(format!("{what} {v} does not fit a BIGINT")))
}

fn state_name(s: crate::jobs::JobState) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The store's writes, on a connection or in a transaction (the pool's own,
/// and `zkpool migrate --from-sled`'s, which copies a whole store in one).
pub(crate) async fn write_circuit(
    db: &impl GenericClient,
    c: &CircuitRecord,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO circuits (id, record) VALUES ($1, $2)
         ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
        &[&c.id.as_str(), &json(c)],
    )
    .await?;
    Ok(())
}

/// Stores a job (new or changed). Its client, visibility and cursor are set
/// when it is first stored, as the sled store's index entries are.
pub(crate) async fn write_job(db: &impl GenericClient, j: &JobRecord) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO jobs (id, client, public, page_key, state, record)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, record = EXCLUDED.record",
        &[
            &j.id.as_str(),
            &j.client,
            &j.is_public(),
            &page_key(j),
            &state_name(j.state),
            &json(j),
        ],
    )
    .await?;
    Ok(())
}

/// A statement's first stored proof stands: a proof filled in from an
/// earlier job never replaces the share that proved it here.
pub(crate) async fn write_proofs(
    db: &impl GenericClient,
    job: &str,
    proofs: &[(u64, StoredProof)],
) -> Result<(), StoreError> {
    let mut indices = Vec::with_capacity(proofs.len());
    let mut records = Vec::with_capacity(proofs.len());
    for (index, p) in proofs {
        indices.push(bigint("statement index", *index)?);
        records.push(json(p));
    }
    db.execute(
        "INSERT INTO proofs (job, idx, record)
         SELECT $1, i, r FROM unnest($2::BIGINT[], $3::TEXT[]) AS p(i, r)
         ON CONFLICT (job, idx) DO NOTHING",
        &[&job, &indices, &records],
    )
    .await?;
    Ok(())
}

pub(crate) async fn write_result(
    db: &impl GenericClient,
    job: &str,
    result: &zk::JobResult,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO results (job, record) VALUES ($1, $2)
         ON CONFLICT (job) DO UPDATE SET record = EXCLUDED.record",
        &[&job, &json(result)],
    )
    .await?;
    Ok(())
}

/// Marks a statement proven; false when it was already.
pub(crate) async fn write_proven(
    db: &impl GenericClient,
    key: &str,
    proof: &[u8],
) -> Result<bool, StoreError> {
    Ok(write_proven_all(db, &[key.to_owned()], &[proof.to_vec()]).await? == 1)
}

/// Marks statements proven (`keys[i]` by `proofs[i]`), those not marked
/// already; returns how many were new.
pub(crate) async fn write_proven_all(
    db: &impl GenericClient,
    keys: &[String],
    proofs: &[Vec<u8>],
) -> Result<u64, StoreError> {
    Ok(db
        .execute(
            "INSERT INTO proven (key, proof) SELECT * FROM unnest($1::TEXT[], $2::BYTEA[])
             ON CONFLICT (key) DO NOTHING",
            &[&keys, &proofs],
        )
        .await?)
}

/// Adds a client and its key's hash; false when the id is taken (nothing
/// changes). Two rows: call it in a transaction.
pub(crate) async fn write_client(
    db: &impl GenericClient,
    c: &ClientRecord,
) -> Result<bool, StoreError> {
    let added = db
        .execute(
            "INSERT INTO clients (id, record) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&c.id.as_str(), &json(c)],
        )
        .await?
        == 1;
    if added {
        db.execute(
            "INSERT INTO client_keys (key_hash, client) VALUES ($1, $2)
             ON CONFLICT (key_hash) DO UPDATE SET client = EXCLUDED.client",
            &[&c.key_hash, &c.id],
        )
        .await?;
    }
    Ok(added)
}

/// Sets (or replaces) account `addr`'s worker token by its hash.
pub(crate) async fn write_worker_token(
    db: &impl GenericClient,
    addr: &str,
    token_hash: &str,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO worker_tokens (account, token_hash) VALUES ($1, $2)
         ON CONFLICT (account) DO UPDATE SET token_hash = EXCLUDED.token_hash",
        &[&addr, &token_hash],
    )
    .await?;
    Ok(())
}

/// The paging cursor of a job: the sled store's index key, less its prefix.
fn page_key(j: &JobRecord) -> String {
    format!("{:020}/{}", j.created_ms, j.id)
}

/// What [`PgStore::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations applied now, in order (empty: the schema was up to date).
    pub applied: Vec<&'static str>,
    /// The schema version the database is at afterwards.
    pub version: u32,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`) and
    /// brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to the database at `url` without touching its schema (for
    /// `zkpool migrate`, which reports what [`PgStore::migrate`] applies).
    /// Fails when the URL is malformed or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Engine(format!("bad PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECTION_WAIT);
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A connection that broke is found broken on its next use, and
                // the call fails as any storage fault does: no extra round trip
                // per checkout.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECTION_WAIT))
            .create_timeout(Some(CONNECTION_WAIT))
            .build()
            .map_err(engine)?;
        let store = PgStore { pool };
        // The pool opens connections lazily: make one now, so a wrong URL or an
        // unreachable server is reported at start, not at the first request.
        drop(store.pool.get().await?);
        Ok(store)
    }

    /// The connection pool, shared with the PostgreSQL ledger
    /// (`crate::ledger::PgLedger`) so one process opens one set of connections.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Applies the migrations this database lacks, in one transaction under an
    /// advisory lock: of processes starting together, one applies them and the
    /// others then find them applied. Refuses a database a newer zkpool wrote.
    pub async fn migrate(&self) -> Result<Migrated, StoreError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )",
        )
        .await?;
        let current: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.len() as i32;
        if current > known {
            return Err(StoreError::Engine(format!(
                "the database's schema is version {current}, newer than this zkpool's ({known}): run a newer zkpool"
            )));
        }
        let mut applied = vec![];
        for (version, (name, sql)) in (1..).zip(MIGRATIONS).skip(current as usize) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                &[&version, name],
            )
            .await?;
            applied.push(*name);
        }
        tx.commit().await?;
        Ok(Migrated {
            applied,
            version: current.max(known) as u32,
        })
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let conn = self.pool.get().await?;
        let v: i32 = conn
            .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
            .await?
            .get(0);
        Ok(v as u32)
    }

    /// The schema version this build brings a database to.
    pub fn latest_schema_version() -> u32 {
        MIGRATIONS.len() as u32
    }

    /// Every record of `table` (`key`, `record` columns), in key order.
    async fn all<T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                &format!("SELECT {key}, record FROM {table} ORDER BY {key}"),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| decode(table, r.get(0), r.get(1)))
            .collect()
    }

    /// The record of `table` whose `key` column is `id`.
    async fn one<T: DeserializeOwned>(
        &self,
        table: &'static str,
        key: &str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                &format!("SELECT record FROM {table} WHERE {key} = $1"),
                &[&id],
            )
            .await?;
        row.map(|r| decode(table, id, r.get(0))).transpose()
    }
}

#[async_trait]
impl Store for PgStore {
    /// Nothing to do: every write has committed before its call returned, and
    /// PostgreSQL's commit is durable (with its default `synchronous_commit`).
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn put_circuit(&self, c: &CircuitRecord) -> Result<(), StoreError> {
        write_circuit(&self.pool.get().await?, c).await
    }

    async fn circuits(&self) -> Result<Vec<CircuitRecord>, StoreError> {
        self.all("circuits", "id").await
    }

    /// Stores a job (new or changed). Its client, visibility and cursor are set
    /// when it is first stored, as the sled store's index entries are.
    async fn put_job(&self, j: &JobRecord) -> Result<(), StoreError> {
        write_job(&self.pool.get().await?, j).await
    }

    async fn end_job(
        &self,
        j: &JobRecord,
        result: Option<&zk::JobResult>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        let ended = tx
            .execute(
                "UPDATE jobs SET state = $2, record = $3 WHERE id = $1 AND state = $4",
                &[
                    &j.id.as_str(),
                    &state_name(j.state),
                    &json(j),
                    &state_name(crate::jobs::JobState::Running),
                ],
            )
            .await?;
        if ended == 0 {
            // Dropping the transaction rolls it back.
            return Ok(false);
        }
        if let Some(r) = result {
            tx.execute(
                "INSERT INTO results (job, record) VALUES ($1, $2)
                 ON CONFLICT (job) DO UPDATE SET record = EXCLUDED.record",
                &[&j.id.as_str(), &json(r)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.one("jobs", "id", id).await
    }

    async fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        self.all("jobs", "id").await
    }

    /// Jobs per state, over every job stored. States no job is in are left out.
    async fn job_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query("SELECT state, count(*) FROM jobs GROUP BY state", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    /// Up to `limit` jobs the scope sees, newest first, older than the cursor
    /// `before`; and the cursor of the next page when there is one. The cursor
    /// compares as the sled store's does (byte order of `{ms:020}/{id}`), so a
    /// cursor from either store pages the other.
    async fn jobs_page(
        &self,
        scope: &JobScope,
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, Option<String>), StoreError> {
        let conn = self.pool.get().await?;
        // One row past the page says whether there is a next one.
        let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        // No cursor: from the newest. Every key starts with a digit, so sorts
        // below "\u{ff}", where the sled store's range ends too.
        let before = before.unwrap_or("\u{ff}");
        let rows = match scope {
            JobScope::All => {
                conn.query(
                    "SELECT id, record FROM jobs WHERE page_key < $1
                     ORDER BY page_key DESC LIMIT $2",
                    &[&before, &take],
                )
                .await?
            }
            JobScope::Client(client) => {
                conn.query(
                    "SELECT id, record FROM jobs WHERE client = $1 AND page_key < $2
                     ORDER BY page_key DESC LIMIT $3",
                    &[client, &before, &take],
                )
                .await?
            }
            JobScope::Public => {
                conn.query(
                    "SELECT id, record FROM jobs WHERE public AND page_key < $1
                     ORDER BY page_key DESC LIMIT $2",
                    &[&before, &take],
                )
                .await?
            }
        };
        let more = rows.len() > limit;
        let out: Vec<JobRecord> = rows
            .iter()
            .take(limit)
            .map(|r| decode("jobs", r.get(0), r.get(1)))
            .collect::<Result<_, _>>()?;
        let next = if more { out.last().map(page_key) } else { None };
        Ok((out, next))
    }

    /// Stores verified proofs of a job's statements, all or none (one
    /// transaction); a proof already stored under an index is replaced.
    async fn put_proofs(&self, job: &str, proofs: &[(u64, StoredProof)]) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        write_proofs(&tx, job, proofs).await?;
        tx.commit().await?;
        Ok(())
    }

    /// All or none, in one transaction ([`insert_proofs_all_or_none`]). The pool
    /// stores a share's proofs with its credit instead (`PgLedger`); this is
    /// the same rule for a caller of the store alone.
    async fn claim_proofs(
        &self,
        job: &str,
        proofs: &[(u64, StoredProof)],
    ) -> Result<Vec<u64>, StoreError> {
        let records: Vec<(u64, String)> = proofs.iter().map(|(i, p)| (*i, json(p))).collect();
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        let taken = insert_proofs_all_or_none(&tx, job, &records).await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn remove_proofs(&self, job: &str, indices: &[u64]) -> Result<(), StoreError> {
        let indices: Vec<i64> = indices
            .iter()
            .map(|&i| bigint("statement index", i))
            .collect::<Result<_, _>>()?;
        let conn = self.pool.get().await?;
        conn.execute(
            "DELETE FROM proofs WHERE job = $1 AND idx = ANY($2)",
            &[&job, &indices],
        )
        .await?;
        Ok(())
    }

    /// Every stored proof of a job, by statement index.
    async fn proof_count(&self, job: &str) -> Result<u64, StoreError> {
        let conn = self.pool.get().await?;
        let n: i64 = conn
            .query_one("SELECT count(*) FROM proofs WHERE job = $1", &[&job])
            .await?
            .get(0);
        Ok(n as u64)
    }

    async fn job_proofs(&self, job: &str) -> Result<Vec<(u64, StoredProof)>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                "SELECT idx, record FROM proofs WHERE job = $1 ORDER BY idx",
                &[&job],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let index: i64 = r.get(0);
                let key = format!("{job}/{index}");
                Ok((index as u64, decode("proofs", &key, r.get(1))?))
            })
            .collect()
    }

    async fn put_result(&self, job: &str, result: &zk::JobResult) -> Result<(), StoreError> {
        write_result(&self.pool.get().await?, job, result).await
    }

    async fn result(&self, job: &str) -> Result<Option<zk::JobResult>, StoreError> {
        self.one("results", "job", job).await
    }

    async fn proven(&self, key: &str) -> Result<Option<ProofBytes>, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt("SELECT proof FROM proven WHERE key = $1", &[&key])
            .await?;
        Ok(row.map(|r| ProofBytes(r.get(0))))
    }

    /// Claims a statement: true when this call inserted it. The primary key
    /// makes the claim once, across every process on the database.
    async fn proven_among(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query("SELECT key FROM proven WHERE key = ANY($1)", &[&keys])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn mark_proven(&self, key: &str, proof: &ProofBytes) -> Result<bool, StoreError> {
        write_proven(&self.pool.get().await?, key, &proof.0).await
    }

    async fn unmark_proven(&self, key: &str) -> Result<(), StoreError> {
        let conn = self.pool.get().await?;
        conn.execute("DELETE FROM proven WHERE key = $1", &[&key])
            .await?;
        Ok(())
    }

    /// Adds a client and its key's hash in one transaction; false when the id
    /// is taken (nothing changes).
    async fn add_client(&self, c: &ClientRecord) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        let added = write_client(&tx, c).await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.one("clients", "id", id).await
    }

    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.all("clients", "id").await
    }

    async fn client_by_key(&self, key: &str) -> Result<Option<ClientRecord>, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT c.id, c.record FROM client_keys k JOIN clients c ON c.id = k.client
                 WHERE k.key_hash = $1",
                &[&key_hash(key)],
            )
            .await?;
        row.map(|r| decode("clients", r.get(0), r.get(1)))
            .transpose()
    }

    async fn set_worker_token(&self, addr: &str, token: &str) -> Result<(), StoreError> {
        write_worker_token(&self.pool.get().await?, addr, &key_hash(token)).await
    }

    async fn worker_token_accounts(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query("SELECT account FROM worker_tokens ORDER BY account", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn remove_worker_token(&self, addr: &str) -> Result<bool, StoreError> {
        let conn = self.pool.get().await?;
        let removed = conn
            .execute("DELETE FROM worker_tokens WHERE account = $1", &[&addr])
            .await?;
        Ok(removed == 1)
    }

    async fn check_worker_token(
        &self,
        addr: &str,
        given: Option<&str>,
    ) -> Result<Option<bool>, StoreError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                "SELECT token_hash FROM worker_tokens WHERE account = $1",
                &[&addr],
            )
            .await?;
        Ok(row.map(|r| {
            let stored: &str = r.get(0);
            given.is_some_and(|g| key_hash(g) == stored)
        }))
    }

    /// The receipt seed, created by whichever process asks first: a second one
    /// racing it finds the first one's seed, so the pool signs with one key.
    async fn receipt_seed(&self) -> Result<[u8; 32], StoreError> {
        let conn = self.pool.get().await?;
        let (_, fresh) = payouts::Signer::generate();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('receipt-key', $1) ON CONFLICT (key) DO NOTHING",
            &[&fresh.as_slice()],
        )
        .await?;
        let seed: Vec<u8> = conn
            .query_one("SELECT value FROM meta WHERE key = 'receipt-key'", &[])
            .await?
            .get(0);
        <[u8; 32]>::try_from(seed.as_slice()).map_err(|_| StoreError::Corrupt {
            tree: "meta",
            key: "receipt-key".into(),
            detail: "not 32 bytes".into(),
        })
    }
}
