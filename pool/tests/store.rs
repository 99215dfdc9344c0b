//! The store's behaviour, one test body per concern, each run against the sled
//! store and the PostgreSQL store (a real server: `tests/src/pg.rs` starts a
//! throw-away cluster, or uses the one `ZKPOOL_TEST_PG_URL` names). What one
//! store does, the other must do too: the pool sees them only as `dyn Store`.

#[path = "../../tests/src/tools.rs"]
#[allow(dead_code)]
mod tools;

#[path = "../../tests/src/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::{collections::BTreeMap, sync::Arc};

use pool::{
    circuits::CircuitRecord,
    jobs::{JobRecord, JobState, StoredProof},
    store::{key_hash, ClientRecord, JobScope, PgStore, SledStore, Store, StoreError},
};
use zk::{result::JobMode, CircuitSpec, ProofBytes};

/// A sled store in its own temporary directory (kept as long as the store).
fn sled() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SledStore::open(&dir.path().join("db")).expect("sled opens");
    (Arc::new(store), dir)
}

/// The URL of a new, empty database on the test server.
fn fresh_database(label: &str) -> String {
    let server = pg::server().unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"));
    server
        .fresh_database(label)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A PostgreSQL store on a new, empty database.
async fn postgres(label: &str) -> Arc<dyn Store> {
    let url = fresh_database(label);
    Arc::new(
        PgStore::open(&url)
            .await
            .expect("the PostgreSQL store opens"),
    )
}

/// Runs one test body against both stores.
macro_rules! on_both_stores {
    ($($body:ident),* $(,)?) => {
        mod sled_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let (store, _dir) = super::sled();
                    super::$body(&*store).await;
                }
            )*
        }
        mod pg_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let store = super::postgres(stringify!($body)).await;
                    super::$body(&*store).await;
                }
            )*
        }
    };
}

on_both_stores!(
    jobs_round_trip_count_by_state_and_page_newest_first,
    proofs_are_kept_per_job_and_index_first_one_standing_and_removed,
    a_statement_is_claimed_once_however_many_race_for_it,
    clients_are_added_once_and_found_by_their_key,
    worker_tokens_are_set_checked_listed_and_removed,
    circuits_results_and_the_receipt_seed_round_trip,
);

fn job(id: &str, client: &str, created_ms: u64, public: bool) -> JobRecord {
    JobRecord {
        id: id.into(),
        client: client.into(),
        circuit_id: "c1".into(),
        circuit_name: "preimage".into(),
        spec: CircuitSpec::Preimage,
        mode: JobMode::Batch,
        statements: vec![],
        chain: None,
        reward: 1_000,
        work_per_proof: 7,
        created_ms,
        deadline_ms: created_ms + 60_000,
        state: JobState::Running,
        completed_ms: None,
        failure: None,
        pooled: true,
        public,
        allow: None,
    }
}

fn ids(jobs: &[JobRecord]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

/// Every page of a scope, `limit` at a time, following `next`.
async fn all_pages(store: &dyn Store, scope: &JobScope, limit: usize) -> Vec<Vec<String>> {
    let mut pages = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = store
            .jobs_page(scope, cursor.as_deref(), limit)
            .await
            .expect("a page");
        pages.push(ids(&page).into_iter().map(String::from).collect());
        match next {
            Some(n) => cursor = Some(n),
            None => return pages,
        }
    }
}

/// States with jobs in them (the sled store may also list a state it counted
/// down to zero).
async fn counts(store: &dyn Store) -> BTreeMap<String, u64> {
    let mut c = store.job_counts().await.expect("counts");
    c.retain(|_, n| *n > 0);
    c
}

async fn jobs_round_trip_count_by_state_and_page_newest_first(store: &dyn Store) {
    assert!(store.job("j1").await.unwrap().is_none());
    // Two jobs in one millisecond: the id breaks the tie. "anonymous" jobs are
    // public whatever their flag says.
    let jobs = [
        job("j1", "alice", 1_000, false),
        job("j2", "bob", 2_000, true),
        job("j3", "alice", 3_000, false),
        job("j4b", "alice", 4_000, false),
        job("j4a", "anonymous", 4_000, false),
    ];
    for j in &jobs {
        store.put_job(j).await.unwrap();
    }
    let mut done = jobs[1].clone();
    done.state = JobState::Completed;
    done.completed_ms = Some(2_500);
    store.put_job(&done).await.unwrap();

    let back = store.job("j2").await.unwrap().expect("j2 is stored");
    assert_eq!(back.state, JobState::Completed);
    assert_eq!(back.completed_ms, Some(2_500));
    assert_eq!(back.client, "bob");
    assert_eq!(
        ids(&store.jobs().await.unwrap()),
        ["j1", "j2", "j3", "j4a", "j4b"]
    );
    assert_eq!(
        counts(store).await,
        BTreeMap::from([("completed".into(), 1), ("running".into(), 4)])
    );

    assert_eq!(
        all_pages(store, &JobScope::All, 2).await,
        [vec!["j4b", "j4a"], vec!["j3", "j2"], vec!["j1"]]
    );
    // A page that ends exactly at the last job says there is no next one.
    assert_eq!(
        all_pages(store, &JobScope::All, 5).await,
        [vec!["j4b", "j4a", "j3", "j2", "j1"]]
    );
    assert_eq!(
        all_pages(store, &JobScope::Client("alice".into()), 2).await,
        [vec!["j4b", "j3"], vec!["j1"]]
    );
    assert_eq!(
        all_pages(store, &JobScope::Public, 10).await,
        [vec!["j4a", "j2"]]
    );
    assert_eq!(
        all_pages(store, &JobScope::Client("carol".into()), 10).await,
        [Vec::<String>::new()]
    );
    let (page, next) = store.jobs_page(&JobScope::All, None, 0).await.unwrap();
    assert!(page.is_empty() && next.is_none());
}

fn proof(worker: &str, byte: u8) -> StoredProof {
    StoredProof {
        proof: ProofBytes(vec![byte; 4]),
        worker: worker.into(),
        task: format!("t{byte}").into(),
        at_ms: u64::from(byte),
        cached: false,
    }
}

fn proof_list(proofs: &[(u64, StoredProof)]) -> Vec<(u64, String, Vec<u8>)> {
    proofs
        .iter()
        .map(|(i, p)| (*i, p.worker.clone(), p.proof.0.clone()))
        .collect()
}

async fn proofs_are_kept_per_job_and_index_first_one_standing_and_removed(store: &dyn Store) {
    store
        .put_proofs(
            "j",
            &[
                (2, proof("w2", 2)),
                (0, proof("w0", 0)),
                (10, proof("w10", 10)),
            ],
        )
        .await
        .unwrap();
    // A job whose id starts with the other's is another job.
    store
        .put_proofs("j1", &[(0, proof("other", 9))])
        .await
        .unwrap();
    assert_eq!(
        proof_list(&store.job_proofs("j").await.unwrap()),
        [
            (0, "w0".into(), vec![0; 4]),
            (2, "w2".into(), vec![2; 4]),
            (10, "w10".into(), vec![10; 4]),
        ]
    );
    // Stored again under the same index: the first proof stands (a proof
    // filled in later never replaces the share that proved the statement).
    store
        .put_proofs("j", &[(2, proof("w2b", 22))])
        .await
        .unwrap();
    store.remove_proofs("j", &[0, 10, 99]).await.unwrap();
    assert_eq!(
        proof_list(&store.job_proofs("j").await.unwrap()),
        [(2, "w2".into(), vec![2; 4])]
    );
    // A share's proofs are stored all or none: one statement proven already
    // (by another pool process) and none of them goes in.
    let taken = store
        .claim_proofs("j", &[(3, proof("w3", 3)), (2, proof("w2c", 23))])
        .await
        .unwrap();
    assert_eq!(taken, [2]);
    assert_eq!(
        proof_list(&store.job_proofs("j").await.unwrap()),
        [(2, "w2".into(), vec![2; 4])]
    );
    assert_eq!(
        proof_list(&store.job_proofs("j1").await.unwrap()),
        [(0, "other".into(), vec![9; 4])]
    );
    assert!(store.job_proofs("nope").await.unwrap().is_empty());
    // Counted without reading them, as many as are stored.
    assert_eq!(store.proof_count("j").await.unwrap(), 1);
    assert_eq!(store.proof_count("j1").await.unwrap(), 1);
    assert_eq!(store.proof_count("nope").await.unwrap(), 0);
}

async fn a_statement_is_claimed_once_however_many_race_for_it(store: &dyn Store) {
    let key = "c1/abcd";
    assert_eq!(store.proven(key).await.unwrap(), None);
    let claims = futures::future::join_all(
        (0u8..16).map(|i| async move { (i, store.mark_proven(key, &ProofBytes(vec![i])).await) }),
    )
    .await;
    let won: Vec<u8> = claims
        .into_iter()
        .filter_map(|(i, r)| r.expect("a claim is answered").then_some(i))
        .collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one of 16 racing claims wins: {won:?}"
    );
    // The winner's proof is the one kept; a later claim changes nothing.
    assert_eq!(
        store.proven(key).await.unwrap(),
        Some(ProofBytes(vec![won[0]]))
    );
    assert!(!store.mark_proven(key, &ProofBytes(vec![99])).await.unwrap());
    assert_eq!(
        store.proven(key).await.unwrap(),
        Some(ProofBytes(vec![won[0]]))
    );
    // Given back (its share could not be stored), it can be claimed again.
    store.unmark_proven(key).await.unwrap();
    assert_eq!(store.proven(key).await.unwrap(), None);
    assert!(store.mark_proven(key, &ProofBytes(vec![7])).await.unwrap());
    assert_eq!(store.proven(key).await.unwrap(), Some(ProofBytes(vec![7])));
}

fn client(id: &str, key: &str) -> ClientRecord {
    ClientRecord {
        id: id.into(),
        key_hash: key_hash(key),
        created_ms: 5,
    }
}

async fn clients_are_added_once_and_found_by_their_key(store: &dyn Store) {
    assert!(store.add_client(&client("zed", "key-z")).await.unwrap());
    assert!(store.add_client(&client("amy", "key-a")).await.unwrap());
    // The id is taken: nothing changes, and the second key opens nothing.
    assert!(!store.add_client(&client("amy", "key-other")).await.unwrap());
    assert_eq!(store.client_by_key("key-other").await.unwrap(), None);
    assert_eq!(
        store.client_by_key("key-a").await.unwrap(),
        Some(client("amy", "key-a"))
    );
    assert_eq!(
        store.client("zed").await.unwrap(),
        Some(client("zed", "key-z"))
    );
    assert_eq!(store.client("nobody").await.unwrap(), None);
    assert_eq!(
        store.clients().await.unwrap(),
        [client("amy", "key-a"), client("zed", "key-z")]
    );
}

async fn worker_tokens_are_set_checked_listed_and_removed(store: &dyn Store) {
    assert_eq!(
        store.check_worker_token("addr1", Some("t")).await.unwrap(),
        None
    );
    store.set_worker_token("addr2", "secret2").await.unwrap();
    store.set_worker_token("addr1", "secret1").await.unwrap();
    assert_eq!(
        store.worker_token_accounts().await.unwrap(),
        ["addr1", "addr2"]
    );
    let check = |given: Option<&'static str>| store.check_worker_token("addr1", given);
    assert_eq!(check(Some("secret1")).await.unwrap(), Some(true));
    assert_eq!(check(Some("secret2")).await.unwrap(), Some(false));
    assert_eq!(check(None).await.unwrap(), Some(false));
    // Replaced: the old token no longer opens it.
    store.set_worker_token("addr1", "rotated").await.unwrap();
    assert_eq!(check(Some("secret1")).await.unwrap(), Some(false));
    assert_eq!(check(Some("rotated")).await.unwrap(), Some(true));
    assert!(store.remove_worker_token("addr1").await.unwrap());
    assert!(!store.remove_worker_token("addr1").await.unwrap());
    assert_eq!(check(Some("rotated")).await.unwrap(), None);
    assert_eq!(store.worker_token_accounts().await.unwrap(), ["addr2"]);
}

fn circuit(id: &str) -> CircuitRecord {
    CircuitRecord {
        id: id.into(),
        name: format!("circuit {id}"),
        spec: CircuitSpec::Chain { steps: 3 },
        constraints: 1234,
        public_inputs: 2,
        proving_key_hash: "pk".into(),
        proving_key_bytes: 99,
        verifying_key: "vk".into(),
        created_ms: 1,
        owner: Some("alice".into()),
        witness_limits: None,
    }
}

async fn circuits_results_and_the_receipt_seed_round_trip(store: &dyn Store) {
    store.put_circuit(&circuit("b")).await.unwrap();
    store.put_circuit(&circuit("a")).await.unwrap();
    let mut changed = circuit("b");
    changed.constraints = 1;
    store.put_circuit(&changed).await.unwrap();
    assert_eq!(store.circuits().await.unwrap(), [circuit("a"), changed]);

    assert_eq!(store.result("j").await.unwrap(), None);
    let result = zk::JobResult {
        format: "zkpool-result-v1".into(),
        job_id: "j".into(),
        circuit_id: "a".into(),
        circuit: CircuitSpec::Preimage,
        mode: JobMode::Batch,
        verifying_key: "vk".into(),
        chain: None,
        entries: vec![],
        digest: "d".into(),
        aggregate: None,
    };
    store.put_result("j", &result).await.unwrap();
    assert_eq!(store.result("j").await.unwrap(), Some(result));

    let seed = store.receipt_seed().await.unwrap();
    assert_eq!(store.receipt_seed().await.unwrap(), seed);
    assert_ne!(seed, [0; 32]);
}

// PostgreSQL only: what several processes on one database, and a database
// written before, need.

/// Two stores on one database are two pool processes: they see each other's
/// writes, and of two claims of one statement (one from each) exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_database_and_one_claim_per_statement() {
    let url = fresh_database("two_processes");
    // Opened together: the migrations are applied once, under the lock.
    let (a, b) = tokio::join!(PgStore::open(&url), PgStore::open(&url));
    let (a, b) = (a.expect("a opens"), b.expect("b opens"));
    assert_eq!(
        a.schema_version().await.unwrap(),
        PgStore::latest_schema_version()
    );

    a.put_job(&job("j1", "alice", 1, false)).await.unwrap();
    assert_eq!(
        b.job("j1").await.unwrap().expect("b sees a's job").client,
        "alice"
    );
    let (one, two) = (ProofBytes(vec![1]), ProofBytes(vec![2]));
    let (by_a, by_b) = tokio::join!(a.mark_proven("c/x", &one), b.mark_proven("c/x", &two));
    assert!(
        by_a.unwrap() ^ by_b.unwrap(),
        "exactly one process credits the statement"
    );
    assert_eq!(
        a.receipt_seed().await.unwrap(),
        b.receipt_seed().await.unwrap()
    );

    // A process started later (or restarted) finds everything, and applies no
    // migration twice.
    drop(a);
    let c = PgStore::open(&url).await.expect("reopens");
    assert_eq!(c.job("j1").await.unwrap().expect("kept").id, "j1");
    assert!(c.proven("c/x").await.unwrap().is_some());
    assert_eq!(
        c.schema_version().await.unwrap(),
        PgStore::latest_schema_version()
    );
}

/// A database a newer zkpool migrated is refused, not written with an old schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_zkpool_is_refused() {
    let url = fresh_database("newer_schema");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO schema_version (version, name) VALUES (999, 'from the future');",
        )
        .await
        .unwrap();
    match PgStore::open(&url).await {
        Err(StoreError::Engine(e)) => assert!(
            e.contains("version 999") && e.contains("run a newer zkpool"),
            "{e}"
        ),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a store from a newer schema must be refused"),
    }
}

/// No server where the URL points: the open fails with the driver's reason, as
/// a storage fault.
#[tokio::test]
async fn no_server_at_the_url_is_a_storage_fault_that_says_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    match PgStore::open(&format!("postgres://postgres@127.0.0.1:{port}/x")).await {
        Err(StoreError::Engine(e)) => assert!(e.to_lowercase().contains("refused"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("nothing listens there"),
    }
}

/// A sled pool killed between a share's writes is mended as it is copied to
/// PostgreSQL (where nothing would mend it, a share being one transaction
/// there): a proof stored without its credit is left behind (its statement is
/// proven again), and a credited proof whose proven mark was cut off gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_pool_cut_between_a_shares_writes_is_mended_as_it_is_copied() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut j = job("j", "acme", 1, false);
    j.statements = (0..2u64)
        .map(|x| CircuitSpec::preimage_statement(zk::Fr::from(x + 5)))
        .collect();
    let marked = pool::store::statement_key(&j.circuit_id, &j.statements[0].public);
    {
        let sled = SledStore::open(&dir.path().join("db")).expect("sled opens");
        let ledger = payouts::Ledger::open_with(&sled.db, sled.flusher()).expect("its ledger");
        sled.put_job(&j).await.unwrap();
        // Statement 0: proof and credit, cut before its proven mark.
        sled.put_proofs("j", &[(0, proof("m.r", 1))]).await.unwrap();
        let credit = payouts::ShareCredit {
            worker: "m.r".into(),
            job: "j".into(),
            task: "t1".into(),
            first_statement: 0,
            proofs: 1,
            work: 7,
            at_ms: 1,
            escrow_only: false,
        };
        ledger.credit(&credit, &payouts::Policy::default()).unwrap();
        // Statement 1: its proof, cut before its credit.
        sled.put_proofs("j", &[(1, proof("m.r", 2))]).await.unwrap();
        sled.flush().await.unwrap();
    }
    let url = fresh_database("import_mended");
    let pg = PgStore::open(&url)
        .await
        .expect("the PostgreSQL store opens");
    let copied = pool::import::sled_into_postgres(dir.path(), &pg)
        .await
        .expect("the copy");
    assert_eq!((copied.jobs, copied.running, copied.proofs), (1, 1, 1));
    assert_eq!((copied.proven, copied.ledger_entries), (1, 1));
    let kept: Vec<u64> = pg
        .job_proofs("j")
        .await
        .unwrap()
        .iter()
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(kept, vec![0], "the uncredited proof is not copied as done");
    assert!(pg.proven(&marked).await.unwrap().is_some());
    // A second copy: the database is not empty any more.
    let e = pool::import::sled_into_postgres(dir.path(), &pg)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty") && e.contains("jobs: 1"), "{e}");
}
