//! The ledger's behaviour, one test body per concern, each run against the sled
//! ledger and the PostgreSQL ledger (a real server: `tests/src/pg.rs` starts a
//! throw-away cluster, or uses the one `ZKPOOL_TEST_PG_URL` names). The pool
//! sees them only as `dyn Ledger`, so what one does the other must do too. At
//! the end of every body the books are checked against the journal: the
//! balances are what replaying the journal's entries with the `payouts` rules
//! gives, and they balance.
//!
//! Then PostgreSQL's own: its tables after a restart, the journal refusing to
//! be changed, a tampered cache corrected on open, and random sequences of
//! requests and restarts (the payouts crate's property test, on the database).

#[path = "../../tests/src/tools.rs"]
#[allow(dead_code)]
mod tools;

#[path = "../../tests/src/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use payouts::{account, Account, Body, LedgerError, Policy, Scheme, ShareCredit, State};
use pool::{
    ledger::{Ledger, PgLedger, SledLedger},
    store::PgStore,
};

/// A sled ledger in its own temporary directory (kept as long as the ledger).
fn sled() -> (Arc<dyn Ledger>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::open(dir.path().join("db")).expect("sled opens");
    let ledger = payouts::Ledger::open(&db).expect("the sled ledger opens");
    (Arc::new(SledLedger(ledger)), dir)
}

/// The URL of a new, empty database on the test server.
fn fresh_database(label: &str) -> String {
    let server = pg::server().unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"));
    server
        .fresh_database(label)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The PostgreSQL ledger on the database at `url`, its schema migrated as the
/// pool's start does, and the store whose connections it shares.
async fn pg_ledger(url: &str) -> (PgLedger, PgStore) {
    let store = PgStore::open(url)
        .await
        .expect("the PostgreSQL store opens");
    let ledger = PgLedger::open(store.pool().clone())
        .await
        .expect("the PostgreSQL ledger opens");
    (ledger, store)
}

/// Runs one test body against both ledgers.
macro_rules! on_both_ledgers {
    ($($body:ident),* $(,)?) => {
        mod sled_ledger {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let (ledger, _dir) = super::sled();
                    super::$body(&ledger).await;
                    super::books_match_the_journal(&*ledger).await;
                }
            )*
        }
        mod pg_ledger {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let url = super::fresh_database(stringify!($body));
                    let (ledger, _store) = super::pg_ledger(&url).await;
                    let ledger: std::sync::Arc<dyn pool::ledger::Ledger> =
                        std::sync::Arc::new(ledger);
                    super::$body(&ledger).await;
                    super::books_match_the_journal(&*ledger).await;
                }
            )*
        }
    };
}

on_both_ledgers!(
    a_job_is_escrowed_credited_and_settled_by_work,
    a_retried_request_is_recorded_once,
    an_overdraft_is_refused_whole_with_what_is_missing,
    a_batch_is_planned_confirmed_once_and_a_void_releases_it,
    concurrent_credits_each_commit_exactly_once,
    pps_and_pplns_pay_as_their_rules_say,
    refunds_and_withdrawals_leave_the_books_once_and_never_overdraw,
    a_share_after_its_jobs_settlement_is_refused_and_an_earlier_one_still_answers,
);

fn credit(worker: &str, job: &str, first: u64, proofs: u64) -> ShareCredit {
    ShareCredit {
        worker: worker.into(),
        job: job.into(),
        task: format!("t{first}"),
        first_statement: first,
        proofs,
        work: proofs * 100,
        at_ms: first,
        escrow_only: false,
    }
}

/// Replays the journal the ledger shows with the `payouts` rules and checks
/// that the balances, the audit and the entry count are what it gives, and
/// that the books balance.
async fn books_match_the_journal(l: &dyn Ledger) {
    let mut st = State::default();
    for e in l.journal(0, usize::MAX).await.expect("the journal") {
        assert_eq!(e.seq, st.next_seq(), "the journal has no gaps");
        st.record(e.key.clone(), e.at_ms, e.body.clone())
            .unwrap_or_else(|err| panic!("entry {} does not replay: {err}", e.key));
    }
    let replayed: BTreeMap<Account, u64> = st
        .accounts()
        .filter(|&(_, v)| v > 0)
        .map(|(a, v)| (a.clone(), v))
        .collect();
    assert_eq!(l.balances().await.unwrap(), replayed);
    let audit = l.audit().await.unwrap();
    assert_eq!(audit, st.audit());
    assert!(audit.balanced, "the books do not balance: {audit:?}");
}

async fn a_job_is_escrowed_credited_and_settled_by_work(l: &Arc<dyn Ledger>) {
    let (e, new) = l
        .deposit(&account::client("acme"), 1_500, "wire-1")
        .await
        .unwrap();
    assert!(new);
    assert_eq!((e.seq, e.key.as_str()), (0, "deposit/wire-1"));
    l.escrow("j1", "acme", 1_000).await.unwrap();
    let policy = Policy::default();
    let a = l
        .credit(&credit("alice.r1", "j1", 0, 2), &policy)
        .await
        .unwrap();
    let b = l
        .credit(&credit("bob.r1", "j1", 2, 1), &policy)
        .await
        .unwrap();
    assert!(a.new && b.new);
    assert_eq!((a.receipt.position, b.receipt.position), (0, 1));
    let credits = l.job_credits("j1").await.unwrap();
    assert_eq!(credits, vec![a.receipt.clone(), b.receipt.clone()]);
    assert_eq!(l.settlement("j1").await.unwrap(), None);
    let s = l.settle("j1", "acme", 300, true, &policy).await.unwrap();
    // The README's worked example: 1 % fee, then 990 split 2:1.
    assert_eq!((s.escrow, s.earned, s.fee, s.refund), (1_000, 1_000, 10, 0));
    let parts: Vec<(&str, u64)> = s
        .parts
        .iter()
        .map(|p| (p.worker.as_str(), p.amount))
        .collect();
    assert_eq!(parts, vec![("alice.r1", 660), ("bob.r1", 330)]);
    assert_eq!(s.credits, 2);
    // One settlement per job: settling again returns the first, whatever is asked.
    let again = l.settle("j1", "acme", 999, false, &policy).await.unwrap();
    assert_eq!(again, s);
    assert_eq!(l.settlement("j1").await.unwrap(), Some(s));
    assert_eq!(l.balance(&account::miner("alice")).await.unwrap(), 660);
    assert_eq!(l.balance(&account::client("acme")).await.unwrap(), 500);
    assert_eq!(l.balance(account::FEES).await.unwrap(), 10);
    assert_eq!(l.balance(&account::escrow("j1")).await.unwrap(), 0);
    let (sum, rigs) = l.totals("alice").await.unwrap();
    assert_eq!(
        (sum.work, sum.proofs, sum.shares, rigs.len()),
        (200, 2, 1, 1)
    );
    assert_eq!(l.lifetime().await.unwrap().work, 300);
    let recent = l.recent_shares("", 10, 100).await.unwrap();
    let workers: Vec<&str> = recent.iter().map(|(c, _)| c.worker.as_str()).collect();
    assert_eq!(workers, vec!["bob.r1", "alice.r1"], "newest first");
    assert_eq!(l.recent_shares("alice", 10, 100).await.unwrap().len(), 1);
    assert_eq!(l.recent_shares("", 1, 100).await.unwrap().len(), 1);
    let settle = l.journal_entry("settle/j1").await.unwrap().unwrap();
    assert!(matches!(settle.body, Body::Settle(_)));
    assert_eq!(l.journal(4, 10).await.unwrap(), vec![settle]);
}

/// A job expired and was settled (on another pool process, or while the share
/// was verified): a share recorded after that would be work acknowledged and
/// never paid, since the escrow is already paid out or refunded. It is
/// refused, naming the job, and nothing is written; a retry of a share
/// credited before the settlement still gets its receipt.
async fn a_share_after_its_jobs_settlement_is_refused_and_an_earlier_one_still_answers(
    l: &Arc<dyn Ledger>,
) {
    l.deposit(&account::client("acme"), 1_000, "wire-1")
        .await
        .unwrap();
    l.escrow("j1", "acme", 1_000).await.unwrap();
    let policy = Policy::default();
    let early = l
        .credit(&credit("alice.r1", "j1", 0, 2), &policy)
        .await
        .unwrap();
    // Expired with 200 of 1,000 work done: 200 earned, 800 refunded.
    let s = l.settle("j1", "acme", 1_000, false, &policy).await.unwrap();
    assert_eq!((s.earned, s.refund), (200, 800));
    let entries = l.journal(0, usize::MAX).await.unwrap().len();
    let late = l
        .credit(&credit("bob.r1", "j1", 2, 1), &policy)
        .await
        .unwrap_err();
    assert!(
        matches!(&late, LedgerError::JobSettled { job } if job == "j1"),
        "{late:?}"
    );
    assert!(
        late.to_string().contains("job j1 ended and was settled"),
        "{late}"
    );
    assert_eq!(l.journal(0, usize::MAX).await.unwrap().len(), entries);
    assert_eq!(
        l.job_credits("j1").await.unwrap(),
        vec![early.receipt.clone()]
    );
    let (bob, _) = l.totals("bob").await.unwrap();
    assert_eq!(bob.work, 0, "bob's late share is not in his totals");
    let again = l
        .credit(&credit("alice.r1", "j1", 0, 2), &policy)
        .await
        .unwrap();
    assert!(!again.new);
    assert_eq!(again.receipt, early.receipt);
    // Other jobs are credited as before.
    l.escrow("j2", "acme", 0).await.unwrap();
    assert!(
        l.credit(&credit("bob.r1", "j2", 0, 1), &policy)
            .await
            .unwrap()
            .new
    );
}

async fn a_retried_request_is_recorded_once(l: &Arc<dyn Ledger>) {
    let client = account::client("acme");
    let (first, new) = l.deposit(&client, 700, "wire-7").await.unwrap();
    assert!(new);
    let (again, new) = l.deposit(&client, 700, "wire-7").await.unwrap();
    assert!(!new, "a retried deposit is not new");
    assert_eq!(again, first);
    let e = l.deposit(&client, 701, "wire-7").await.unwrap_err();
    assert!(
        matches!(&e, LedgerError::Conflict { key, .. } if key == "deposit/wire-7"),
        "{e}"
    );
    assert!(e.to_string().contains("use a new reference"), "{e}");
    assert_eq!(l.balance(&client).await.unwrap(), 700);

    l.escrow("j", "acme", 400).await.unwrap();
    let (_, new) = l.escrow("j", "acme", 400).await.unwrap();
    assert!(!new, "a retried escrow is not new");
    assert_eq!(l.balance(&client).await.unwrap(), 300);

    let share = credit("alice.r1", "j", 0, 3);
    let policy = Policy::default();
    let c1 = l.credit(&share, &policy).await.unwrap();
    let c2 = l.credit(&share, &policy).await.unwrap();
    assert!(c1.new && !c2.new);
    assert_eq!(c1.receipt, c2.receipt);
    assert_eq!(l.totals("alice.r1").await.unwrap().0.shares, 1);
    assert_eq!(l.job_credits("j").await.unwrap().len(), 1);
    let shares = l
        .journal(0, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.body, Body::Share { .. }))
        .count();
    assert_eq!(shares, 1, "the share is in the journal once");
}

/// A client refunded and the pool's fees withdrawn: the value leaves the books
/// (`withdrawn`), once per reference, never more than the account holds, and
/// never from a miner's balance or a job's escrow.
async fn refunds_and_withdrawals_leave_the_books_once_and_never_overdraw(l: &Arc<dyn Ledger>) {
    let acme = account::client("acme");
    l.deposit(&acme, 1_000, "wire-1").await.unwrap();
    let (e, new) = l.withdraw(&acme, 400, "refund-1").await.unwrap();
    assert!(new);
    assert_eq!(l.balance(&acme).await.unwrap(), 600);
    assert_eq!(l.balance(account::WITHDRAWN).await.unwrap(), 400);
    // A retry of the same refund is the same entry; another amount under the
    // same reference is a conflict, not a second refund.
    let (again, new) = l.withdraw(&acme, 400, "refund-1").await.unwrap();
    assert!(!new);
    assert_eq!(again.seq, e.seq);
    assert!(matches!(
        l.withdraw(&acme, 300, "refund-1").await.unwrap_err(),
        LedgerError::Conflict { .. }
    ));
    assert_eq!(l.balance(&acme).await.unwrap(), 600);
    // More than the balance: refused whole, nothing recorded.
    let entries = l.audit().await.unwrap().entries;
    let err = l.withdraw(&acme, 601, "refund-2").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "client:acme holds 600 but 601 is needed (1 short)"
    );
    assert_eq!(l.audit().await.unwrap().entries, entries);
    // The pool's fees: a settled job leaves a fee, which the operator takes out.
    l.escrow("j1", "acme", 500).await.unwrap();
    l.credit(&credit("alice.r1", "j1", 0, 1), &Policy::default())
        .await
        .unwrap();
    let settled = l
        .settle("j1", "acme", 100, true, &Policy::default())
        .await
        .unwrap();
    let fees = l.balance(account::FEES).await.unwrap();
    assert_eq!(fees, settled.fee);
    assert!(fees > 0, "the default policy takes a fee: {settled:?}");
    l.withdraw(account::FEES, fees, "fees-2026-11")
        .await
        .unwrap();
    assert_eq!(l.balance(account::FEES).await.unwrap(), 0);
    assert_eq!(l.balance(account::WITHDRAWN).await.unwrap(), 400 + fees);
    // Miners are paid through batches; escrow settles with its job.
    for acct in [account::miner("alice"), account::escrow("j1")] {
        let err = l.withdraw(&acct, 1, "nope").await.unwrap_err();
        assert!(
            err.to_string().contains("cannot be withdrawn from"),
            "{acct}: {err}"
        );
    }
    let audit = l.audit().await.unwrap();
    assert_eq!(audit.withdrawn, 400 + fees);
    assert!(audit.balanced, "{audit:?}");
}

async fn an_overdraft_is_refused_whole_with_what_is_missing(l: &Arc<dyn Ledger>) {
    l.deposit(&account::client("acme"), 1_500, "wire-1")
        .await
        .unwrap();
    let entries = l.audit().await.unwrap().entries;
    let e = l.escrow("j1", "acme", 2_000).await.unwrap_err();
    match &e {
        LedgerError::Insufficient {
            account,
            have,
            need,
        } => assert_eq!(
            (account, *have, *need),
            (&account::client("acme"), 1_500, 2_000)
        ),
        other => panic!("expected Insufficient, got {other}"),
    }
    assert_eq!(
        e.to_string(),
        "client:acme holds 1500 but 2000 is needed (500 short)"
    );
    assert_eq!(
        l.audit().await.unwrap().entries,
        entries,
        "nothing recorded"
    );
    assert_eq!(l.journal_entry("escrow/j1").await.unwrap(), None);
    // The same job escrowed within the balance afterwards is a new request.
    let (_, new) = l.escrow("j1", "acme", 1_500).await.unwrap();
    assert!(new);
    // PPS: a share the pool's funds cannot pay is refused, and not credited.
    let pps = Policy {
        scheme: Scheme::Pps,
        pps_price_per_mwork: 1_000_000,
        ..Policy::default()
    };
    let e = l
        .credit(&credit("alice.r1", "j1", 0, 1), &pps)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            LedgerError::Insufficient {
                account: Account::Funds,
                have: 0,
                need: 100
            }
        ),
        "{e}"
    );
    assert_eq!(l.job_credits("j1").await.unwrap(), vec![]);
    assert_eq!(l.totals("alice").await.unwrap().0.shares, 0);
}

async fn a_batch_is_planned_confirmed_once_and_a_void_releases_it(l: &Arc<dyn Ledger>) {
    l.deposit(&account::client("c"), 10_000, "w").await.unwrap();
    l.escrow("j", "c", 10_000).await.unwrap();
    let policy = Policy {
        fee_bps: 0,
        ..Policy::default()
    };
    l.credit(&credit("alice.r", "j", 0, 3), &policy)
        .await
        .unwrap();
    l.credit(&credit("bob.r", "j", 3, 1), &policy)
        .await
        .unwrap();
    l.settle("j", "c", 400, true, &policy).await.unwrap();
    assert_eq!(l.balance(&account::miner("alice")).await.unwrap(), 7_500);
    assert_eq!(
        l.plan_payouts(100_000).await.unwrap(),
        None,
        "nobody reaches it"
    );

    let b1 = l
        .plan_payouts(5_000)
        .await
        .unwrap()
        .expect("alice reaches it");
    assert_eq!((b1.id, b1.total, b1.items.len()), (1, 7_500, 1));
    let funds = l.miner_funds("alice").await.unwrap();
    assert_eq!((funds.balance, funds.pending, funds.paid), (0, 7_500, 0));
    let (b, new) = l.confirm(1, "0xabc").await.unwrap();
    assert!(new);
    assert!(matches!(b.state, payouts::BatchState::Confirmed { ref tx, .. } if tx == "0xabc"));
    let (_, new) = l.confirm(1, "0xabc").await.unwrap();
    assert!(!new, "the same confirmation again changes nothing");
    let e = l.confirm(1, "0xdef").await.unwrap_err();
    assert!(
        matches!(&e, LedgerError::BatchConfirmed { batch: 1, tx } if tx == "0xabc"),
        "{e}"
    );
    let e = l.void(1).await.unwrap_err();
    assert!(
        matches!(e, LedgerError::BatchConfirmed { batch: 1, .. }),
        "{e}"
    );
    assert_eq!(l.miner_funds("alice").await.unwrap().paid, 7_500);

    let b2 = l.plan_payouts(1).await.unwrap().expect("bob has a balance");
    assert_eq!((b2.id, b2.total), (2, 2_500));
    let (b, new) = l.void(2).await.unwrap();
    assert!(new);
    assert!(matches!(b.state, payouts::BatchState::Voided { .. }));
    assert_eq!(l.balance(&account::miner("bob")).await.unwrap(), 2_500);
    let (_, new) = l.void(2).await.unwrap();
    assert!(!new);
    let e = l.confirm(2, "0x1").await.unwrap_err();
    assert!(matches!(e, LedgerError::BatchVoided(2)), "{e}");
    let e = l.confirm(9, "0x1").await.unwrap_err();
    assert!(matches!(e, LedgerError::UnknownBatch(9)), "{e}");
    let ids: Vec<u64> = l.batches().await.unwrap().iter().map(|b| b.id).collect();
    assert_eq!(ids, vec![2, 1], "newest first");
    assert_eq!(l.batch(1).await.unwrap().map(|b| b.total), Some(7_500));
    assert_eq!(l.balance(&Account::Paid).await.unwrap(), 7_500);
}

/// 200 shares credited at once, each also retried at once: every share is
/// credited exactly once, at its own position, and PPS pays each once.
async fn concurrent_credits_each_commit_exactly_once(l: &Arc<dyn Ledger>) {
    const SHARES: u64 = 200;
    l.deposit(account::FUNDS, 1_000_000, "funds").await.unwrap();
    l.deposit(&account::client("c"), 5_000, "w").await.unwrap();
    l.escrow("j", "c", 5_000).await.unwrap();
    let policy = Policy {
        scheme: Scheme::Pps,
        pps_price_per_mwork: 10_000, // 1 unit per 100 work: 1 per share.
        ..Policy::default()
    };
    let mut tasks = vec![];
    for i in 0..SHARES * 2 {
        let (l, first) = (l.clone(), i % SHARES);
        tasks.push(tokio::spawn(async move {
            let c = credit(&format!("m{}.rig", first % 7), "j", first, 1);
            l.credit(&c, &policy).await
        }));
    }
    let mut positions = HashMap::new();
    let mut fresh = 0;
    for t in tasks {
        let c = t
            .await
            .expect("a credit task")
            .expect("every credit commits");
        fresh += u64::from(c.new);
        assert_eq!(c.paid, 1);
        let first = c.receipt.credit.first_statement;
        let at = *positions.entry(first).or_insert(c.receipt.position);
        assert_eq!(at, c.receipt.position, "a retry sees the first position");
    }
    assert_eq!(fresh, SHARES, "each share is new exactly once");
    let mut taken: Vec<u64> = positions.into_values().collect();
    taken.sort_unstable();
    assert_eq!(
        taken,
        (0..SHARES).collect::<Vec<_>>(),
        "positions 0..200, once each"
    );
    assert_eq!(l.job_credits("j").await.unwrap().len() as u64, SHARES);
    assert_eq!(l.lifetime().await.unwrap().shares, SHARES);
    assert_eq!(l.balance(account::FUNDS).await.unwrap(), 1_000_000 - SHARES);
    let mut miners = 0;
    for m in 0..7 {
        miners += l.miner_funds(&format!("m{m}")).await.unwrap().balance;
    }
    assert_eq!(miners, SHARES);
    let s = l
        .settle("j", "c", SHARES * 100, true, &policy)
        .await
        .unwrap();
    assert_eq!((s.credits, s.to_pool), (SHARES, 5_000));
}

async fn pps_and_pplns_pay_as_their_rules_say(l: &Arc<dyn Ledger>) {
    let pplns = Policy {
        scheme: Scheme::Pplns,
        fee_bps: 0,
        pplns_window_work: 300,
        ..Policy::default()
    };
    let e = l.add_reward(1_000, "block-0", &pplns).await.unwrap_err();
    assert!(e.to_string().contains("no verified work yet"), "{e}");
    l.deposit(&account::client("c"), 100, "w").await.unwrap();
    l.escrow("j", "c", 100).await.unwrap();
    // Oldest first: carol's work falls outside the window of 300.
    l.credit(&credit("carol.r", "j", 0, 1), &pplns)
        .await
        .unwrap();
    l.credit(&credit("alice.r", "j", 1, 2), &pplns)
        .await
        .unwrap();
    l.credit(&credit("bob.r", "j", 3, 1), &pplns).await.unwrap();
    let (e, new) = l.add_reward(900, "block-1", &pplns).await.unwrap();
    assert!(new);
    let Body::Reward { parts, fee, .. } = e.body else {
        panic!("a reward entry")
    };
    assert_eq!(fee, 0);
    let split: Vec<(&str, u64)> = parts
        .iter()
        .map(|p| (p.worker.as_str(), p.amount))
        .collect();
    assert_eq!(split, vec![("alice.r", 600), ("bob.r", 300)]);
    let (_, new) = l.add_reward(900, "block-1", &pplns).await.unwrap();
    assert!(!new, "a retried reward is recorded once");
    assert_eq!(l.balance(&account::miner("carol")).await.unwrap(), 0);
}

// PostgreSQL's own.

/// The URL's database, and the ledger's tables in it as plain SQL sees them.
async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a plain connection");
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_the_books_are_the_same_after_a_restart_and_the_table_is_the_journal() {
    let url = fresh_database("pg_restart");
    let (l, store) = pg_ledger(&url).await;
    l.deposit(&account::client("c"), 900, "w").await.unwrap();
    l.escrow("j", "c", 600).await.unwrap();
    l.credit(&credit("a.r", "j", 0, 1), &Policy::default())
        .await
        .unwrap();
    l.settle("j", "c", 100, true, &Policy::default())
        .await
        .unwrap();
    let before = (l.audit().await.unwrap(), l.balances().await.unwrap());
    drop((l, store));
    let (l, _store) = pg_ledger(&url).await;
    assert_eq!(
        (l.audit().await.unwrap(), l.balances().await.unwrap()),
        before
    );
    assert_eq!(
        l.check_balances().await.unwrap(),
        0,
        "the cache is the journal's"
    );
    // The balances table holds exactly the ledger's balances (and the zero
    // balances of accounts emptied), as plain SQL reads it.
    let db = sql(&url).await;
    let table: BTreeMap<String, i64> = db
        .query("SELECT account, balance FROM ledger_balances", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .filter(|(_, v): &(String, i64)| *v > 0)
        .collect();
    let shown: BTreeMap<String, i64> = before
        .1
        .iter()
        .map(|(a, v)| (a.to_string(), *v as i64))
        .collect();
    assert_eq!(table, shown);
    let rows: i64 = db
        .query_one("SELECT count(*) FROM ledger_journal", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as u64, before.0.entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_the_journal_cannot_be_changed_and_balances_cannot_go_negative() {
    let url = fresh_database("pg_append_only");
    let (l, _store) = pg_ledger(&url).await;
    l.deposit(&account::client("c"), 50, "w").await.unwrap();
    let db = sql(&url).await;
    for statement in [
        "UPDATE ledger_journal SET entry = '{}'",
        "DELETE FROM ledger_journal",
        "TRUNCATE ledger_journal",
    ] {
        let e = db.batch_execute(statement).await.unwrap_err();
        let text = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(text.contains("append-only"), "{statement}: {e} {text}");
    }
    let e = db
        .batch_execute("UPDATE ledger_balances SET balance = -1")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "{e}"
    );
    // A key can hold one entry only, whoever inserts it.
    let e = db
        .batch_execute(
            "INSERT INTO ledger_journal (seq, key, kind, at_ms, entry) VALUES (99, 'deposit/w', 'deposit', 0, '{}')",
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
        "{e}"
    );
    assert_eq!(l.balance(&account::client("c")).await.unwrap(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_tampered_balance_is_corrected_from_the_journal_on_open() {
    let url = fresh_database("pg_tampered");
    let (l, store) = pg_ledger(&url).await;
    l.deposit(&account::client("c"), 50, "w").await.unwrap();
    drop((l, store));
    let db = sql(&url).await;
    db.batch_execute(
        "UPDATE ledger_balances SET balance = 5000 WHERE account = 'client:c';
         INSERT INTO ledger_balances VALUES ('miner:mallory', 70)",
    )
    .await
    .unwrap();
    let (l, _store) = pg_ledger(&url).await;
    assert_eq!(l.balance(&account::client("c")).await.unwrap(), 50);
    assert_eq!(l.balance(&account::miner("mallory")).await.unwrap(), 0);
    assert_eq!(l.check_balances().await.unwrap(), 0, "corrected on open");
    let v: i64 = db
        .query_one(
            "SELECT balance FROM ledger_balances WHERE account = 'client:c'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 50);
}

/// 200 credits at once share transactions: every one is recorded, in fewer
/// commits than credits (the committer takes every credit waiting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_concurrent_credits_share_commits() {
    let url = fresh_database("pg_group_commit");
    let (l, _store) = pg_ledger(&url).await;
    let l = Arc::new(l);
    let before = l.commits();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let l = l.clone();
            tokio::spawn(async move {
                l.credit(&credit("m.r", "j", i, 1), &Policy::default())
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().expect("the credit commits").new);
    }
    let commits = l.commits() - before;
    assert!(
        commits < 200,
        "200 credits took {commits} commits: none shared one"
    );
    assert_eq!(l.job_credits("j").await.unwrap().len(), 200);
    assert_eq!(l.check_balances().await.unwrap(), 0);
}

/// A write the database refuses (a fault injected by a trigger) is answered
/// with a storage error and leaves nothing behind, for a lone request and for
/// every credit that shared its transaction; the retries record each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_write_that_fails_to_commit_is_not_acknowledged_and_a_retry_records_it_once() {
    let url = fresh_database("pg_fault");
    let (l, _store) = pg_ledger(&url).await;
    let l = Arc::new(l);
    let db = sql(&url).await;
    db.batch_execute(
        "CREATE FUNCTION inject() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.key IN ('deposit/bad', 'share/j/00000000000000000007') THEN
                 RAISE EXCEPTION 'injected fault';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER inject BEFORE INSERT ON ledger_journal
             FOR EACH ROW EXECUTE FUNCTION inject();",
    )
    .await
    .unwrap();
    let client = account::client("c");
    let e = l.deposit(&client, 10, "bad").await.unwrap_err();
    assert!(
        matches!(&e, LedgerError::Storage(_)) && e.to_string().contains("injected fault"),
        "{e}"
    );
    assert_eq!(l.journal_entry("deposit/bad").await.unwrap(), None);
    assert_eq!(l.balance(&client).await.unwrap(), 0);

    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let l = l.clone();
            tokio::spawn(async move {
                l.credit(&credit("m.r", "j", i, 1), &Policy::default())
                    .await
            })
        })
        .collect();
    let mut acknowledged = HashSet::new();
    for (i, t) in (0u64..).zip(tasks) {
        let key = credit("m.r", "j", i, 1).key();
        match t.await.unwrap() {
            Ok(c) => {
                assert!(c.new && i != 7, "share {i}");
                assert!(l.journal_entry(&key).await.unwrap().is_some(), "{key}");
                acknowledged.insert(i);
            }
            Err(e) => {
                assert!(matches!(e, LedgerError::Storage(_)), "share {i}: {e}");
                assert_eq!(l.journal_entry(&key).await.unwrap(), None, "{key}");
            }
        }
    }
    assert!(!acknowledged.contains(&7));
    books_match_the_journal(&*l).await;

    db.batch_execute("DROP TRIGGER inject ON ledger_journal")
        .await
        .unwrap();
    let (_, new) = l.deposit(&client, 10, "bad").await.unwrap();
    assert!(new);
    for i in 0..40 {
        let c = l
            .credit(&credit("m.r", "j", i, 1), &Policy::default())
            .await
            .unwrap();
        assert_eq!(c.new, !acknowledged.contains(&i), "share {i}");
    }
    let mut positions: Vec<u64> = l
        .job_credits("j")
        .await
        .unwrap()
        .iter()
        .map(|c| c.position)
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, (0..40).collect::<Vec<_>>());
    assert_eq!(l.balance(&client).await.unwrap(), 10);
    books_match_the_journal(&*l).await;
    assert_eq!(l.check_balances().await.unwrap(), 0);
}

/// Amounts the database cannot hold are refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_an_amount_over_bigint_is_refused_and_nothing_is_written() {
    let url = fresh_database("pg_bigint");
    let (l, _store) = pg_ledger(&url).await;
    let e = l
        .deposit(&account::client("c"), u64::MAX / 2 + 1, "big")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LedgerError::Invalid(m) if m.contains("client:c") && m.contains("9223372036854775807")),
        "{e}"
    );
    assert_eq!(l.audit().await.unwrap().entries, 0);
    let (_, new) = l.deposit(&account::client("c"), 1, "big").await.unwrap();
    assert!(new, "the refused request took nothing");
}

mod pg_property {
    //! The payouts crate's property test (`payouts/src/sled/tests.rs`), on
    //! the PostgreSQL ledger: random requests and restarts, under each scheme.
    //! Few cases: each one makes a database.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Deposit {
            client: u8,
            amount: u64,
            reference: u8,
        },
        Fund {
            amount: u64,
        },
        Job {
            job: u8,
            client: u8,
            reward: u64,
            statements: u64,
        },
        Share {
            job: u8,
            first: u64,
            worker: u8,
        },
        Settle {
            job: u8,
        },
        Reward {
            amount: u64,
            reference: u8,
        },
        Plan {
            threshold: u64,
        },
        Confirm {
            pick: u8,
            tx: u8,
        },
        Void {
            pick: u8,
        },
        /// From a client (0-2: a refund), the pool's fees (3) or its funds (4).
        Withdraw {
            from: u8,
            amount: u64,
            reference: u8,
        },
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 1u64..2_000, 0u8..12).prop_map(|(client, amount, reference)| Op::Deposit {
                client,
                amount,
                reference
            }),
            (1u64..2_000).prop_map(|amount| Op::Fund { amount }),
            (0u8..6, 0u8..3, 0u64..1_500, 1u64..5).prop_map(|(job, client, reward, statements)| {
                Op::Job {
                    job,
                    client,
                    reward,
                    statements,
                }
            }),
            (0u8..6, 0u64..5, 0u8..4).prop_map(|(job, first, worker)| Op::Share {
                job,
                first,
                worker
            }),
            (0u8..6, 0u64..5, 0u8..4).prop_map(|(job, first, worker)| Op::Share {
                job,
                first,
                worker
            }),
            (0u8..6).prop_map(|job| Op::Settle { job }),
            (1u64..1_000, 0u8..4).prop_map(|(amount, reference)| Op::Reward { amount, reference }),
            (1u64..800).prop_map(|threshold| Op::Plan { threshold }),
            (0u8..4, 0u8..2).prop_map(|(pick, tx)| Op::Confirm { pick, tx }),
            (0u8..4).prop_map(|pick| Op::Void { pick }),
            (0u8..5, 1u64..1_500, 0u8..6).prop_map(|(from, amount, reference)| Op::Withdraw {
                from,
                amount,
                reference
            }),
            Just(Op::Restart),
        ]
    }

    fn scheme() -> impl Strategy<Value = Scheme> {
        prop_oneof![Just(Scheme::Prop), Just(Scheme::Pplns), Just(Scheme::Pps)]
    }

    /// One case: returns why it failed, if it did.
    async fn run(policy: Policy, ops: Vec<Op>) -> Result<(), String> {
        macro_rules! check {
            ($cond:expr, $($why:tt)*) => {
                if !$cond {
                    return Err(format!($($why)*));
                }
            };
        }
        let url = fresh_database("pg_property");
        let (mut l, mut store) = pg_ledger(&url).await;
        let scheme = policy.scheme;
        let mut deposited = 0u64;
        let mut refs: HashMap<String, u64> = HashMap::new();
        let mut jobs: HashMap<String, (String, u64)> = HashMap::new();
        let mut settled = HashSet::new();
        let mut credited: HashSet<(String, u64)> = HashSet::new();
        let mut confirmed: HashMap<u64, String> = HashMap::new();
        let mut fund_refs = 0;
        let mut withdrawn = 0u64;
        let mut withdrawals: HashMap<String, (Account, u64)> = HashMap::new();
        for op in ops {
            match op {
                Op::Deposit {
                    client,
                    amount,
                    reference,
                } => {
                    let r = format!("ref{reference}");
                    match l
                        .deposit(&account::client(&format!("c{client}")), amount, &r)
                        .await
                    {
                        Ok((_, true)) => {
                            deposited += amount;
                            refs.insert(r, amount);
                        }
                        Ok((_, false)) => check!(refs.get(&r) == Some(&amount), "retry of {r}"),
                        Err(LedgerError::Conflict { .. }) => {
                            check!(refs.contains_key(&r), "conflict {r}")
                        }
                        Err(e) => return Err(format!("deposit: {e}")),
                    }
                }
                Op::Fund { amount } => {
                    fund_refs += 1;
                    l.deposit(account::FUNDS, amount, &format!("fund{fund_refs}"))
                        .await
                        .map_err(|e| format!("fund: {e}"))?;
                    deposited += amount;
                }
                Op::Job {
                    job,
                    client,
                    reward,
                    statements,
                } => {
                    let (job, client) = (format!("j{job}"), format!("c{client}"));
                    if jobs.contains_key(&job) {
                        continue;
                    }
                    let have = l.balance(&account::client(&client)).await.unwrap();
                    match l.escrow(&job, &client, reward).await {
                        Ok(_) => {
                            check!(have >= reward, "escrowed {reward} from {have}");
                            jobs.insert(job, (client, statements));
                        }
                        Err(LedgerError::Insufficient { have: h, need, .. }) => {
                            check!(
                                have < reward && (h, need) == (have, reward),
                                "refusal {h} {need}"
                            );
                        }
                        Err(e) => return Err(format!("escrow: {e}")),
                    }
                }
                Op::Share { job, first, worker } => {
                    let job = format!("j{job}");
                    let Some((_, n)) = jobs.get(&job) else {
                        continue;
                    };
                    if first >= *n || settled.contains(&job) {
                        continue;
                    }
                    let c = credit(&format!("m{}.rig", worker % 3), &job, first, 1);
                    let funds = l.balance(account::FUNDS).await.unwrap();
                    match l.credit(&c, &policy).await {
                        Ok(r) => {
                            let fresh = credited.insert((job, first));
                            check!(r.new == fresh, "share new {} expected {fresh}", r.new);
                        }
                        Err(LedgerError::Insufficient { .. }) => {
                            check!(
                                scheme == Scheme::Pps && funds < 50,
                                "refused with funds {funds}"
                            )
                        }
                        Err(e) => return Err(format!("credit: {e}")),
                    }
                }
                Op::Settle { job } => {
                    let job = format!("j{job}");
                    let Some((client, n)) = jobs.get(&job) else {
                        continue;
                    };
                    let done = credited.iter().filter(|(j, _)| *j == job).count() as u64;
                    let s = l
                        .settle(&job, client, n * 100, done == *n, &policy)
                        .await
                        .map_err(|e| format!("settle: {e}"))?;
                    settled.insert(job);
                    let parts: u64 = s.parts.iter().map(|p| p.amount).sum();
                    check!(parts + s.fee + s.to_pool == s.earned, "settlement adds up");
                    check!(s.earned + s.refund == s.escrow, "escrow adds up");
                }
                Op::Reward { amount, reference } => {
                    if scheme != Scheme::Pplns {
                        continue;
                    }
                    match l
                        .add_reward(amount, &format!("rw{reference}"), &policy)
                        .await
                    {
                        Ok((_, true)) => deposited += amount,
                        Ok((_, false))
                        | Err(LedgerError::Conflict { .. })
                        | Err(LedgerError::Invalid(_)) => {}
                        Err(e) => return Err(format!("reward: {e}")),
                    }
                }
                Op::Plan { threshold } => {
                    if let Some(b) = l.plan_payouts(threshold).await.map_err(|e| e.to_string())? {
                        check!(
                            b.items.iter().all(|i| i.amount >= threshold),
                            "plan threshold"
                        );
                    }
                }
                Op::Confirm { pick, tx } => {
                    let ids: Vec<u64> = l.batches().await.unwrap().iter().map(|b| b.id).collect();
                    let Some(&id) = ids.get(pick as usize) else {
                        continue;
                    };
                    let tx = format!("tx{tx}");
                    match l.confirm(id, &tx).await {
                        Ok((_, new)) => {
                            check!(new != confirmed.contains_key(&id), "confirm new");
                            check!(confirmed.entry(id).or_insert(tx.clone()) == &tx, "one tx");
                        }
                        Err(LedgerError::BatchConfirmed { tx: first, .. }) => {
                            check!(confirmed.get(&id) == Some(&first), "confirmed with {first}")
                        }
                        Err(LedgerError::BatchVoided(_)) => {}
                        Err(e) => return Err(format!("confirm: {e}")),
                    }
                }
                Op::Void { pick } => {
                    let ids: Vec<u64> = l.batches().await.unwrap().iter().map(|b| b.id).collect();
                    let Some(&id) = ids.get(pick as usize) else {
                        continue;
                    };
                    match l.void(id).await {
                        Ok(_) => check!(!confirmed.contains_key(&id), "voided a paid batch"),
                        Err(LedgerError::BatchConfirmed { .. }) => {
                            check!(confirmed.contains_key(&id), "refused a void")
                        }
                        Err(e) => return Err(format!("void: {e}")),
                    }
                }
                Op::Withdraw {
                    from,
                    amount,
                    reference,
                } => {
                    let acct = match from {
                        0..=2 => account::client(&format!("c{from}")),
                        3 => account::FEES.clone(),
                        _ => account::FUNDS.clone(),
                    };
                    let r = format!("wd{reference}");
                    let have = l.balance(&acct).await.unwrap();
                    match l.withdraw(&acct, amount, &r).await {
                        Ok((_, true)) => {
                            check!(have >= amount, "withdrew {amount} of {have}");
                            check!(
                                l.balance(&acct).await.unwrap() == have - amount,
                                "a withdrawal moves exactly its amount"
                            );
                            withdrawn += amount;
                            withdrawals.insert(r, (acct, amount));
                        }
                        Ok((_, false)) => {
                            check!(withdrawals.get(&r) == Some(&(acct, amount)), "retry of {r}")
                        }
                        Err(LedgerError::Conflict { .. }) => {
                            check!(withdrawals.contains_key(&r), "conflict {r}")
                        }
                        Err(LedgerError::Insufficient { .. }) => check!(
                            have < amount && !withdrawals.contains_key(&r),
                            "refused {amount} with {have}"
                        ),
                        Err(e) => return Err(format!("withdraw: {e}")),
                    }
                }
                Op::Restart => {
                    let before = (
                        l.audit().await.unwrap(),
                        l.balances().await.unwrap(),
                        l.batches().await.unwrap(),
                    );
                    drop((l, store));
                    (l, store) = pg_ledger(&url).await;
                    let after = (
                        l.audit().await.unwrap(),
                        l.balances().await.unwrap(),
                        l.batches().await.unwrap(),
                    );
                    check!(after == before, "a restart changed the books");
                }
            }
            let a = l.audit().await.unwrap();
            check!(a.balanced, "books do not balance: {a:?}");
            check!(
                a.withdrawn == withdrawn,
                "withdrawn {} != {withdrawn}",
                a.withdrawn
            );
            check!(
                a.deposited == deposited,
                "deposited {} != {deposited}",
                a.deposited
            );
        }
        books_match_the_journal(&l).await;
        check!(
            l.check_balances().await.unwrap() == 0,
            "the balances table differs from the journal"
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

        /// No account goes negative, deposits equal the sum of every account,
        /// each share is credited once, each batch confirmed at most once, and
        /// a restart (a new `PgLedger` on the same database) changes nothing.
        #[test]
        fn pg_value_is_neither_made_nor_lost(scheme in scheme(), fee_bps in 0u32..500, ops in prop::collection::vec(op(), 1..60)) {
            let policy = Policy { scheme, fee_bps, pps_price_per_mwork: 500_000, pplns_window_work: 700 };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            let outcome = rt.block_on(run(policy, ops));
            prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        }
    }
}

/// Two pool processes on one database (issue 14), as two ledgers opened on
/// it: each writes deposits, escrows, credits and settlements at once, and
/// every entry lands once, in one gapless journal; each sees the other's
/// entries and balances; the overdraft rule holds across both (a client's
/// balance is spent once, whichever process asks); a job credited on both is
/// settled once, paying the credits of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_two_processes_share_one_journal_and_its_rules() {
    let url = fresh_database("pg_two_processes");
    let (a, _sa) = pg_ledger(&url).await;
    let (b, _sb) = pg_ledger(&url).await;
    let (a, b): (Arc<dyn Ledger>, Arc<dyn Ledger>) = (Arc::new(a), Arc::new(b));
    let acme = account::client("acme");
    a.deposit(&acme, 1_000, "wire-a").await.unwrap();
    // B sees A's deposit at once and may spend it.
    assert_eq!(b.balance(&acme).await.unwrap(), 1_000);
    // Both escrow 600 from the 1,000 at the same time: one is refused whole.
    let (ea, eb) = tokio::join!(a.escrow("ja", "acme", 600), b.escrow("jb", "acme", 600));
    assert_eq!(
        [ea.is_ok(), eb.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "one escrow of 600 from 1,000: {ea:?} {eb:?}"
    );
    let job = if ea.is_ok() { "ja" } else { "jb" };
    // 100 credits of that job from each process, interleaved.
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let l = if i % 2 == 0 { a.clone() } else { b.clone() };
            let job = job.to_owned();
            tokio::spawn(async move {
                l.credit(
                    &credit(&format!("m{}.r", i % 2), &job, i, 1),
                    &Policy::default(),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().expect("the credit commits").new);
    }
    // Both settle it: one settlement, the same answer to both, paying both.
    let policy = Policy::default();
    let (sa, sb) = tokio::join!(
        a.settle(job, "acme", 200 * 100, true, &policy),
        b.settle(job, "acme", 200 * 100, true, &policy)
    );
    let (sa, sb) = (sa.unwrap(), sb.unwrap());
    assert_eq!(sa, sb);
    assert_eq!((sa.credited_work, sa.earned, sa.refund), (20_000, 600, 0));
    assert_eq!(sa.parts.len(), 2, "{sa:?}");
    let settles = a
        .journal(0, usize::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.key.starts_with("settle/"))
        .count();
    assert_eq!(settles, 1);
    for l in [&a, &b] {
        assert_eq!(l.job_credits(job).await.unwrap().len(), 200);
        books_match_the_journal(&**l).await;
    }
    assert_eq!(a.audit().await.unwrap(), b.audit().await.unwrap());
}

/// A share given with its proofs (PostgreSQL: one transaction) stores both or
/// neither: a statement with a proof stored already makes the whole share
/// "taken", and neither its credit nor any of its proofs is recorded.
/// A share whose job was settled first leaves nothing behind on PostgreSQL:
/// not its proofs, not its marks, not its credit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_share_after_its_jobs_settlement_stores_no_proofs() {
    let url = fresh_database("pg_share_after_settle");
    let (l, _store) = pg_ledger(&url).await;
    l.settle("j", "acme", 100, false, &Policy::default())
        .await
        .unwrap();
    let late = l
        .credit_with_proofs(
            &credit("m.r", "j", 0, 1),
            &Policy::default(),
            vec![(0, "{}".into())],
            vec![("c/0".into(), vec![0])],
        )
        .await
        .expect("PostgreSQL stores proofs with credits");
    assert!(
        matches!(late, Err(LedgerError::JobSettled { ref job }) if job == "j"),
        "{late:?}"
    );
    let db = sql(&url).await;
    for table in ["proofs", "proven"] {
        let n: i64 = db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table} holds nothing of the late share");
    }
    assert!(l.job_credits("j").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_share_and_its_proofs_commit_together_or_not_at_all() {
    use pool::ledger::ShareOutcome;
    let url = fresh_database("pg_share_proofs");
    let (l, _store) = pg_ledger(&url).await;
    let rec = |w: &str| format!("{{\"worker\":\"{w}\"}}");
    let first = l
        .credit_with_proofs(
            &credit("m.r", "j", 0, 2),
            &Policy::default(),
            vec![(0, rec("m.r")), (1, rec("m.r"))],
            vec![("c/0".into(), vec![0]), ("c/1".into(), vec![1])],
        )
        .await
        .expect("PostgreSQL stores proofs with credits");
    assert!(
        matches!(first, Ok(ShareOutcome::Credited(ref c)) if c.new),
        "{first:?}"
    );
    // Another process's share over statements 1 and 2: 1 is taken.
    let second = l
        .credit_with_proofs(
            &credit("n.r", "j", 1, 2),
            &Policy::default(),
            vec![(1, rec("n.r")), (2, rec("n.r"))],
            vec![("c/1".into(), vec![11]), ("c/2".into(), vec![12])],
        )
        .await
        .unwrap();
    assert!(
        matches!(second, Ok(ShareOutcome::Taken(ref t)) if t == &[1]),
        "{second:?}"
    );
    let db = sql(&url).await;
    let rows: Vec<(i64, String)> = db
        .query(
            "SELECT idx, record FROM proofs WHERE job = 'j' ORDER BY idx",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(0, rec("m.r")), (1, rec("m.r"))]);
    assert_eq!(l.job_credits("j").await.unwrap().len(), 1);
    // The marks came with the first share only: c/2 was never marked, and c/1
    // keeps the first share's proof.
    let marks: Vec<(String, Vec<u8>)> = db
        .query("SELECT key, proof FROM proven ORDER BY key", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        marks,
        [("c/0".to_owned(), vec![0]), ("c/1".to_owned(), vec![1])]
    );
}
