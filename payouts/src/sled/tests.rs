//! Tests of the sled ledger: reopening, the worked examples of each scheme,
//! refusals, payout batches, a corrupted cache rebuilt, and random sequences
//! of requests and restarts (value neither made nor lost across restarts).

use super::*;
use crate::{account, BatchState, PayoutItem};
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
        escrow_only: false,
    }
}

/// Opens the sled database at `dir` again after it was dropped. sled releases its
/// file lock only when its flusher thread, which holds a reference, notices the
/// drop, a moment later: until then an open fails with WouldBlock. Retries that
/// error for up to 5 s; any other error, or the lock still held then, fails.
fn reopen(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => panic!("reopen {}: {e}", dir.display()),
        }
    }
}

fn prop() -> Policy {
    Policy::default()
}

#[test]
fn a_share_is_credited_once_and_totals_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let l = Ledger::open(&db).unwrap();
    let first = l.credit(&credit("a.r1", "j", 0, 2), &prop()).unwrap();
    assert!(first.new);
    assert_eq!(first.receipt.position, 0);
    let again = l.credit(&credit("a.r1", "j", 0, 2), &prop()).unwrap();
    assert!(!again.new);
    assert_eq!(again.receipt, first.receipt);
    let second = l.credit(&credit("a.r2", "j", 2, 1), &prop()).unwrap();
    assert_eq!(second.receipt.position, 1);
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

/// The README's worked example for `prop`: a 1,000-unit job, 1 % fee, two workers
/// with work 2:1.
#[test]
fn prop_settles_a_job_by_work_with_the_fee_and_exact_parts() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let l = Ledger::open(&db).unwrap();
    l.deposit(&account::client("acme"), 1_500, "wire-1")
        .unwrap();
    let e = l.escrow("j1", "acme", 2_000).unwrap_err();
    assert_eq!(
        e.to_string(),
        "client:acme holds 1500 but 2000 is needed (500 short)"
    );
    l.escrow("j1", "acme", 1_000).unwrap();
    l.credit(&credit("alice.r1", "j1", 0, 2), &prop()).unwrap();
    l.credit(&credit("bob.r1", "j1", 2, 1), &prop()).unwrap();
    let s = l.settle("j1", "acme", 300, true, &prop()).unwrap();
    assert_eq!((s.earned, s.fee, s.refund), (1_000, 10, 0));
    let amounts: Vec<(&str, u64)> = s
        .parts
        .iter()
        .map(|p| (p.worker.as_str(), p.amount))
        .collect();
    assert_eq!(amounts, vec![("alice.r1", 660), ("bob.r1", 330)]);
    assert_eq!(l.miner_funds("alice").balance, 660);
    assert_eq!(l.balance(account::FEES), 10);
    assert_eq!(l.balance(&account::client("acme")), 500);
    // Settling again changes nothing.
    assert_eq!(l.settle("j1", "acme", 300, true, &prop()).unwrap(), s);
    assert!(l.audit().balanced);
}

#[test]
fn an_expired_job_pays_for_verified_work_and_refunds_the_rest() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let l = Ledger::open(&db).unwrap();
    l.deposit(&account::client("acme"), 1_000, "d1").unwrap();
    l.escrow("j1", "acme", 1_000).unwrap();
    l.credit(&credit("alice.r1", "j1", 0, 1), &prop()).unwrap();
    // 100 of 400 units of work done: 250 earned, fee 2, 750 back.
    let s = l.settle("j1", "acme", 400, false, &prop()).unwrap();
    assert_eq!((s.earned, s.fee, s.refund), (250, 2, 750));
    assert_eq!(s.parts[0].amount, 248);
    assert_eq!(l.balance(&account::client("acme")), 750);
    assert_eq!(l.balance(&account::escrow("j1")), 0);
}

/// Work the pool was not paid for (a client's own circuit, a job below the
/// pool-wide price) is `escrow_only`: PPS pays nothing for it from the pool's
/// funds and the PPLNS window does not count it, so it takes nothing from others.
#[test]
fn escrow_only_work_is_paid_from_its_job_and_nothing_else() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let l = Ledger::open(&db).unwrap();
    l.deposit(account::FUNDS, 1_000_000, "funds").unwrap();
    let pps = Policy {
        scheme: Scheme::Pps,
        pps_price_per_mwork: 2_000_000,
        ..Policy::default()
    };
    let own = ShareCredit {
        escrow_only: true,
        ..credit("mallory.r1", "own", 0, 20)
    };
    assert_eq!(l.credit(&own, &pps).unwrap().paid, 0);
    assert_eq!(l.balance(account::FUNDS), 1_000_000);
    // PPLNS: a reward is spread over pooled work only.
    l.credit(&credit("alice.r1", "paid", 0, 1), &prop())
        .unwrap();
    let pplns = Policy {
        scheme: Scheme::Pplns,
        pplns_window_work: 1_000,
        fee_bps: 0,
        ..Policy::default()
    };
    let more = ShareCredit {
        escrow_only: true,
        ..credit("mallory.r1", "own", 20, 5)
    };
    l.credit(&more, &pplns).unwrap();
    let (e, _) = l.add_reward(900, "r1", &pplns).unwrap();
    let Body::Reward { parts, .. } = e.body else {
        panic!("a reward entry")
    };
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(
        (parts[0].worker.as_str(), parts[0].amount),
        ("alice.r1", 900)
    );
    assert!(l.audit().balanced);
}

/// A completed job whose statements were partly answered from proofs made
/// before (nobody's work on it) pays the work credited and refunds the rest.
#[test]
fn a_completed_job_pays_only_for_credited_work() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let l = Ledger::open(&db).unwrap();
    l.deposit(&account::client("acme"), 1_000, "d1").unwrap();
    l.escrow("j1", "acme", 1_000).unwrap();
    l.credit(&credit("alice.r1", "j1", 0, 1), &prop()).unwrap();
    let s = l.settle("j1", "acme", 200, true, &prop()).unwrap();
    assert_eq!((s.earned, s.refund), (500, 500));
    assert!(l.audit().balanced);
}

/// An amount that would overflow the books is refused, and they stay balanced.
#[test]
fn amounts_that_would_overflow_are_refused() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let l = Ledger::open(&db).unwrap();
    l.deposit(&account::client("acme"), 10, "d1").unwrap();
    let e = l
        .deposit(&account::client("other"), u64::MAX, "d2")
        .unwrap_err();
    assert!(e.to_string().contains("overflow"), "{e}");
    assert!(l.audit().balanced);
    assert_eq!(l.audit().deposited, 10);
}

#[test]
fn pps_pays_each_share_from_pool_funds_and_refuses_when_they_run_out() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let l = Ledger::open(&db).unwrap();
    let pps = Policy {
        scheme: Scheme::Pps,
        pps_price_per_mwork: 2_000_000, // 2 units per unit of work
        ..Policy::default()
    };
    l.deposit(account::FUNDS, 500, "float").unwrap();
    let c = l.credit(&credit("alice.r1", "j1", 0, 2), &pps).unwrap();
    assert_eq!(c.paid, 400);
    let e = l.credit(&credit("alice.r1", "j1", 2, 1), &pps).unwrap_err();
    assert!(
        matches!(
            e,
            LedgerError::Insufficient {
                need: 200,
                have: 100,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        l.totals("alice.r1").unwrap().0.work,
        200,
        "the refused share is not credited"
    );
    // The job's escrow goes to the operator, who already paid the miners.
    l.deposit(&account::client("acme"), 300, "d").unwrap();
    l.escrow("j1", "acme", 300).unwrap();
    let s = l.settle("j1", "acme", 200, true, &pps).unwrap();
    assert_eq!((s.to_pool, s.fee, s.parts.len()), (300, 0, 0));
    assert_eq!(l.balance(account::FUNDS), 400);
}

#[test]
fn pplns_spreads_a_reward_over_the_last_window_of_work() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let l = Ledger::open(&db).unwrap();
    let pplns = Policy {
        scheme: Scheme::Pplns,
        pplns_window_work: 300,
        fee_bps: 0,
        ..Policy::default()
    };
    // Oldest first: carol 200 (outside the window but 100), alice 100, bob 100.
    l.credit(&credit("carol.r1", "j0", 0, 2), &pplns).unwrap();
    l.credit(&credit("alice.r1", "j1", 0, 1), &pplns).unwrap();
    l.credit(&credit("bob.r1", "j1", 1, 1), &pplns).unwrap();
    let (e, new) = l.add_reward(900, "net-payment-7", &pplns).unwrap();
    assert!(new);
    let Body::Reward { parts, .. } = e.body else {
        panic!("not a reward")
    };
    let got: Vec<(&str, u64)> = parts
        .iter()
        .map(|p| (p.worker.as_str(), p.amount))
        .collect();
    assert_eq!(
        got,
        vec![("alice.r1", 300), ("bob.r1", 300), ("carol.r1", 300)]
    );
    assert!(!l.add_reward(900, "net-payment-7", &pplns).unwrap().1);
    assert!(matches!(
        l.add_reward(901, "net-payment-7", &pplns),
        Err(LedgerError::Conflict { .. })
    ));
    assert_eq!(l.audit().deposited, 900);
}

#[test]
fn a_batch_is_confirmed_at_most_once_and_a_void_releases_it() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let l = Ledger::open(&db).unwrap();
    l.deposit(&account::client("c"), 1_000, "d").unwrap();
    l.escrow("j", "c", 1_000).unwrap();
    l.credit(&credit("alice.r1", "j", 0, 1), &prop()).unwrap();
    l.credit(&credit("bob.r1", "j", 1, 3), &prop()).unwrap();
    l.settle("j", "c", 400, true, &prop()).unwrap();
    // alice 248 (below the threshold), bob 742.
    let b = l.plan_payouts(300).unwrap().unwrap();
    assert_eq!(
        b.items,
        vec![PayoutItem {
            addr: "bob".into(),
            amount: 742
        }]
    );
    assert_eq!(
        l.miner_funds("bob"),
        MinerFunds {
            balance: 0,
            pending: 742,
            paid: 0
        }
    );
    assert!(
        l.plan_payouts(300).unwrap().is_none(),
        "nothing left to plan"
    );
    l.void(b.id).unwrap();
    assert_eq!(l.miner_funds("bob").balance, 742);
    assert!(matches!(
        l.confirm(b.id, "0xabc"),
        Err(LedgerError::BatchVoided(_))
    ));
    let b2 = l.plan_payouts(1).unwrap().unwrap();
    assert_eq!(b2.total, 990);
    let (done, new) = l.confirm(b2.id, "0xabc").unwrap();
    assert!(new);
    assert!(matches!(done.state, BatchState::Confirmed { .. }));
    assert!(
        !l.confirm(b2.id, "0xabc").unwrap().1,
        "a retry is accepted once"
    );
    let e = l.confirm(b2.id, "0xdef").unwrap_err();
    assert!(
        e.to_string()
            .contains("already confirmed with transaction \"0xabc\""),
        "{e}"
    );
    assert!(matches!(
        l.void(b2.id),
        Err(LedgerError::BatchConfirmed { .. })
    ));
    assert_eq!(
        l.miner_funds("bob"),
        MinerFunds {
            balance: 0,
            pending: 0,
            paid: 742
        }
    );
    let a = l.audit();
    assert_eq!((a.paid, a.fees, a.balanced), (990, 10, true));
}

#[test]
fn a_corrupted_balance_cache_is_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let l = Ledger::open(&db).unwrap();
        l.deposit(&account::client("c"), 77, "d").unwrap();
        db.open_tree("ledger")
            .unwrap()
            .insert(b"b/client:c", b"1000000".as_slice())
            .unwrap();
        db.flush().unwrap();
    }
    let db = reopen(dir.path());
    let l = Ledger::open(&db).unwrap();
    assert_eq!(l.balance(&account::client("c")), 77);
    assert_eq!(l.rebuild().unwrap(), 0, "the cache was corrected on open");
}

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

/// The account a `Withdraw` op takes from.
fn withdraw_from(from: u8) -> Account {
    match from {
        0..=2 => account::client(&format!("c{from}")),
        3 => account::FEES.clone(),
        _ => account::FUNDS.clone(),
    }
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
        (0u8..6, 0u64..5, 0u8..4).prop_map(|(job, first, worker)| Op::Share { job, first, worker }),
        (0u8..6, 0u64..5, 0u8..4).prop_map(|(job, first, worker)| Op::Share { job, first, worker }),
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random sequences of deposits, jobs, shares, settlements, rewards, payout
    /// plans, confirmations, voids and restarts, under each scheme: no account
    /// goes negative (an overdraft is refused whole); deposits equal client
    /// balances + escrow + miner balances + pending + paid + fees + pool funds;
    /// each share is credited once; each batch is confirmed at most once; and the
    /// state after a restart is the state before it.
    #[test]
    fn value_is_neither_made_nor_lost(scheme in scheme(), fee_bps in 0u32..500, ops in proptest::collection::vec(op(), 1..80)) {
        let policy = Policy { scheme, fee_bps, pps_price_per_mwork: 500_000, pplns_window_work: 700 };
        let dir = tempfile::tempdir().unwrap();
        let mut db = sled::open(dir.path()).unwrap();
        let mut l = Ledger::open(&db).unwrap();
        let mut deposited = 0u64;
        let mut refs: HashMap<String, u64> = HashMap::new();
        let mut jobs: HashMap<String, (String, u64)> = HashMap::new(); // job -> (client, statements)
        let mut settled = std::collections::HashSet::new();
        let mut credited: HashMap<(String, u64), String> = HashMap::new();
        let mut work: HashMap<String, u64> = HashMap::new();
        let mut confirmed: HashMap<u64, String> = HashMap::new();
        let mut withdrawn = 0u64;
        let mut withdrawals: HashMap<String, (Account, u64)> = HashMap::new();
        for op in ops {
            match op {
                Op::Deposit { client, amount, reference } => {
                    let r = format!("ref{reference}");
                    match l.deposit(&account::client(&format!("c{client}")), amount, &r) {
                        Ok((_, true)) => { deposited += amount; refs.insert(r, amount); }
                        Ok((_, false)) => prop_assert_eq!(refs.get(&r), Some(&amount)),
                        Err(LedgerError::Conflict { .. }) => prop_assert!(refs.contains_key(&r)),
                        Err(e) => prop_assert!(false, "deposit: {}", e),
                    }
                }
                Op::Fund { amount } => {
                    let r = format!("fund{}", l.audit().entries);
                    l.deposit(account::FUNDS, amount, &r).unwrap();
                    deposited += amount;
                }
                Op::Job { job, client, reward, statements } => {
                    let (job, client) = (format!("j{job}"), format!("c{client}"));
                    if jobs.contains_key(&job) { continue; }
                    let have = l.balance(&account::client(&client));
                    match l.escrow(&job, &client, reward) {
                        Ok(_) => { prop_assert!(have >= reward); jobs.insert(job, (client, statements)); }
                        Err(LedgerError::Insufficient { have: h, need, .. }) => {
                            prop_assert!(have < reward);
                            prop_assert_eq!((h, need), (have, reward));
                        }
                        Err(e) => prop_assert!(false, "escrow: {}", e),
                    }
                }
                Op::Share { job, first, worker } => {
                    let job = format!("j{job}");
                    let Some((_, n)) = jobs.get(&job) else { continue };
                    if first >= *n || settled.contains(&job) { continue; }
                    let w = format!("m{}.rig", worker % 3);
                    let c = ShareCredit { worker: w.clone(), job: job.clone(), task: "t".into(), first_statement: first, proofs: 1, work: 100, at_ms: 0, escrow_only: false };
                    let funds = l.balance(account::FUNDS);
                    match l.credit(&c, &policy) {
                        Ok(r) => {
                            let fresh = !credited.contains_key(&(job.clone(), first));
                            prop_assert_eq!(r.new, fresh);
                            if fresh {
                                credited.insert((job, first), w.clone());
                                *work.entry(w).or_default() += 100;
                            }
                        }
                        Err(LedgerError::Insufficient { .. }) => prop_assert!(scheme == Scheme::Pps && funds < 50),
                        Err(e) => prop_assert!(false, "credit: {}", e),
                    }
                }
                Op::Settle { job } => {
                    let job = format!("j{job}");
                    let Some((client, n)) = jobs.get(&job) else { continue };
                    let done = credited.keys().filter(|(j, _)| *j == job).count() as u64;
                    let s = l.settle(&job, client, n * 100, done == *n, &policy).unwrap();
                    settled.insert(job);
                    prop_assert_eq!(s.parts.iter().map(|p| p.amount).sum::<u64>() + s.fee + s.to_pool, s.earned);
                    prop_assert_eq!(s.earned + s.refund, s.escrow);
                }
                Op::Reward { amount, reference } => {
                    if scheme != Scheme::Pplns { continue; }
                    match l.add_reward(amount, &format!("rw{reference}"), &policy) {
                        Ok((_, true)) => deposited += amount,
                        Ok((_, false)) | Err(LedgerError::Conflict { .. }) | Err(LedgerError::Invalid(_)) => {}
                        Err(e) => prop_assert!(false, "reward: {}", e),
                    }
                }
                Op::Plan { threshold } => {
                    if let Some(b) = l.plan_payouts(threshold).unwrap() {
                        prop_assert!(b.items.iter().all(|i| i.amount >= threshold));
                    }
                }
                Op::Confirm { pick, tx } => {
                    let ids: Vec<u64> = l.batches().iter().map(|b| b.id).collect();
                    let Some(&id) = ids.get(pick as usize) else { continue };
                    let tx = format!("tx{tx}");
                    match l.confirm(id, &tx) {
                        Ok((_, new)) => {
                            prop_assert_eq!(new, !confirmed.contains_key(&id));
                            prop_assert_eq!(confirmed.entry(id).or_insert(tx.clone()), &tx);
                        }
                        Err(LedgerError::BatchConfirmed { tx: first, .. }) => prop_assert_eq!(confirmed.get(&id), Some(&first)),
                        Err(LedgerError::BatchVoided(_)) => {}
                        Err(e) => prop_assert!(false, "confirm: {}", e),
                    }
                }
                Op::Void { pick } => {
                    let ids: Vec<u64> = l.batches().iter().map(|b| b.id).collect();
                    let Some(&id) = ids.get(pick as usize) else { continue };
                    match l.void(id) {
                        Ok(_) => prop_assert!(!confirmed.contains_key(&id)),
                        Err(LedgerError::BatchConfirmed { .. }) => prop_assert!(confirmed.contains_key(&id)),
                        Err(e) => prop_assert!(false, "void: {}", e),
                    }
                }
                Op::Withdraw { from, amount, reference } => {
                    let (acct, r) = (withdraw_from(from), format!("wd{reference}"));
                    let have = l.balance(&acct);
                    match l.withdraw(&acct, amount, &r) {
                        Ok((_, true)) => {
                            prop_assert!(have >= amount, "withdrew {} of {}", amount, have);
                            prop_assert_eq!(l.balance(&acct), have - amount);
                            withdrawn += amount;
                            withdrawals.insert(r, (acct, amount));
                        }
                        Ok((_, false)) => prop_assert_eq!(withdrawals.get(&r), Some(&(acct, amount))),
                        Err(LedgerError::Conflict { .. }) => prop_assert!(withdrawals.contains_key(&r)),
                        Err(LedgerError::Insufficient { have: h, need, .. }) => {
                            prop_assert!(have < amount && !withdrawals.contains_key(&r));
                            prop_assert_eq!((h, need), (have, amount));
                        }
                        Err(e) => prop_assert!(false, "withdraw: {}", e),
                    }
                }
                Op::Restart => {
                    let before = (l.audit(), l.balances(), l.batches());
                    db.flush().unwrap();
                    drop(l);
                    drop(db);
                    db = reopen(dir.path());
                    l = Ledger::open(&db).unwrap();
                    prop_assert_eq!((l.audit(), l.balances(), l.batches()), before);
                }
            }
            let a = l.audit();
            prop_assert!(a.balanced, "books do not balance: {:?}", a);
            prop_assert_eq!(a.deposited, deposited);
            prop_assert_eq!(a.withdrawn, withdrawn);
        }
        for (w, units) in &work {
            prop_assert_eq!(l.totals(w).unwrap().0.work, *units);
        }
        let confirms = l.journal(0, usize::MAX).unwrap().into_iter().filter(|e| matches!(e.body, Body::Confirm { .. })).count();
        prop_assert_eq!(confirms, confirmed.len());
        prop_assert_eq!(l.rebuild().unwrap(), 0);
    }
}
