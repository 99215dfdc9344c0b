//! Tests of the ledger's rules on [`State`] alone: no storage, so they run
//! without the `sled` feature.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::account;

/// A journal that names an account which does not read back would not replay:
/// such a deposit is refused before it is written, and changes nothing.
#[test]
fn a_deposit_to_an_account_without_a_stored_name_is_refused() {
    for a in [account::client(""), account::miner(""), Account::Outside] {
        let e = deposit(&a, 5, "r").unwrap_err();
        assert!(
            e.to_string()
                .contains("is not an account a deposit can be recorded to"),
            "{a:?}: {e}"
        );
    }
    let mut st = State::default();
    let body = deposit(&account::client("acme"), 5, "r").unwrap();
    st.record(body.key(), 1, body).unwrap();
    assert_eq!(st.balance(&account::client("acme")), 5);
}

/// A settled job admits no new share, but a journal that holds one (written
/// before the rule) still replays: the rule is the write path's, not the
/// replay's.
#[test]
fn a_settled_job_admits_no_new_share_and_an_old_journal_with_one_replays() {
    let mut st = State::default();
    for body in [
        deposit(&account::client("c"), 1_000, "d").unwrap(),
        escrow("j", "c", 1_000),
    ] {
        st.record(body.key(), 0, body).unwrap();
    }
    let share = |first: u64| ShareCredit {
        worker: "m.r".into(),
        job: "j".into(),
        task: format!("t{first}"),
        first_statement: first,
        proofs: 1,
        work: 10,
        at_ms: 0,
        escrow_only: false,
    };
    let before = st.share(&share(0), 0);
    assert!(st.admits(&before).is_ok());
    st.record(before.key(), 1, before).unwrap();
    let outcome = JobOutcome {
        job: "j",
        client: "c",
        total_work: 100,
        completed: false,
    };
    let credits = vec![ReceiptBody {
        credit: share(0),
        position: 0,
    }];
    let settle = Body::Settle(st.settlement(&outcome, &Policy::default(), &credits, &[]));
    st.record(settle.key(), 2, settle).unwrap();
    let late = st.share(&share(1), 0);
    let e = st.admits(&late).unwrap_err();
    assert!(
        matches!(&e, LedgerError::JobSettled { job } if job == "j"),
        "{e:?}"
    );
    let other = ShareCredit {
        job: "k".into(),
        ..share(1)
    };
    assert!(
        st.admits(&st.share(&other, 0)).is_ok(),
        "another job is not settled"
    );
    // What a replay does: the rules' effects, then apply.
    st.record(late.key(), 3, late).unwrap();
    assert_eq!(st.worker("m.r").work, 20);
}

/// Credited work that adds up past `u64::MAX` counts as all of the job's
/// work (saturating), not as the little a wrapped sum would leave.
#[test]
fn credited_work_past_the_largest_amount_saturates() {
    let mut st = State::default();
    for body in [
        deposit(&account::client("c"), 1_000, "d").unwrap(),
        escrow("j", "c", 1_000),
    ] {
        st.record(body.key(), 0, body).unwrap();
    }
    let credit = |first: u64, work: u64| ReceiptBody {
        credit: ShareCredit {
            worker: format!("m{first}.r"),
            job: "j".into(),
            task: "t".into(),
            first_statement: first,
            proofs: 1,
            work,
            at_ms: 0,
            escrow_only: false,
        },
        position: first,
    };
    let job = JobOutcome {
        job: "j",
        client: "c",
        total_work: 10,
        completed: false,
    };
    let s = st.settlement(
        &job,
        &Policy::default(),
        &[credit(0, u64::MAX), credit(1, 2)],
        &[],
    );
    assert_eq!((s.credited_work, s.earned, s.refund), (u64::MAX, 1_000, 0));
}

/// A PPLNS window whose shares did no work has nobody to pay: a reward over it
/// is refused, not recorded as come in while only its fee moves.
#[test]
fn a_reward_over_a_window_without_work_is_refused() {
    let policy = Policy {
        scheme: Scheme::Pplns,
        ..Policy::default()
    };
    for window in [vec![], vec![("m.r".to_owned(), 0)]] {
        let e = reward(1_000, "r", &policy, &window).unwrap_err();
        assert!(e.to_string().contains("no verified work yet"), "{e}");
    }
    assert!(reward(1_000, "r", &policy, &[("m.r".to_owned(), 1)]).is_ok());
}

/// The ledger's idempotency in memory: the entries by key, over the [`State`],
/// answering a taken key with [`retry`] as the sled ledger does, and reading
/// back what the sled ledger reads from its tree (a job's credit list, the
/// shares newest first).
#[derive(Default)]
struct Books {
    state: State,
    entries: Vec<Entry>,
    by_key: HashMap<String, usize>,
}

impl Books {
    fn append(&mut self, body: Body) -> Result<(Entry, bool), LedgerError> {
        let key = body.key();
        if let Some(&i) = self.by_key.get(&key) {
            return retry(self.entries[i].clone(), &body).map(|e| (e, false));
        }
        let at_ms = self.entries.len() as u64 * 10;
        let e = self.state.record(key.clone(), at_ms, body)?;
        self.by_key.insert(key, self.entries.len());
        self.entries.push(e.clone());
        Ok((e, true))
    }

    fn credits(&self, job: &str) -> Vec<ReceiptBody> {
        let mut v: Vec<ReceiptBody> = self
            .entries
            .iter()
            .filter_map(|e| match &e.body {
                Body::Share {
                    credit, position, ..
                } if credit.job == job => Some(ReceiptBody {
                    credit: credit.clone(),
                    position: *position,
                }),
                _ => None,
            })
            .collect();
        v.sort_by_key(|c| c.position);
        v
    }

    fn window(&self, work: u64) -> Vec<(String, u64)> {
        pplns_window(
            work,
            self.entries.iter().rev().filter_map(|e| match &e.body {
                Body::Share { credit, .. } => Some(credit.clone()),
                _ => None,
            }),
        )
    }

    /// The client a job's escrow came from.
    fn client_of(&self, job: &str) -> Option<String> {
        let i = *self.by_key.get(&crate::keys::escrow(job))?;
        match &self.entries[i].body {
            Body::Escrow { client, .. } => Some(client.clone()),
            _ => None,
        }
    }
}

/// Where a generated deposit goes: mostly clients and the pool's funds, now
/// and then an account a deposit is refused for or an odd but storable one.
fn target(pick: u8) -> Account {
    match pick {
        0..=5 => account::client(&format!("c{}", pick % 3)),
        6 | 7 => Account::Funds,
        8 => account::client(""),
        9 => Account::Outside,
        10 => account::miner("m1"),
        11 => Account::Batch(1),
        _ => Account::Fees,
    }
}

fn worker(pick: u8) -> String {
    ["m0.r1", "m1.r1", "m1.r2", "m2"][pick as usize % 4].to_owned()
}

#[derive(Debug, Clone)]
enum Op {
    Deposit {
        to: u8,
        amount: u64,
        reference: u8,
    },
    Escrow {
        job: u8,
        client: u8,
        amount: u64,
    },
    Share {
        job: u8,
        first: u64,
        worker: u8,
        work: u64,
        escrow_only: bool,
    },
    Settle {
        job: u8,
        total_work: u64,
        completed: bool,
    },
    Reward {
        amount: u64,
        reference: u8,
    },
    Plan {
        threshold: u64,
    },
    Confirm {
        batch: u64,
        tx: u8,
    },
    Void {
        batch: u64,
    },
    /// Sends an earlier entry's body again, unchanged.
    Again {
        pick: usize,
    },
    /// Sends an earlier entry's body again with its amount or transaction changed.
    Changed {
        pick: usize,
    },
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 1u64..3_000,
        1 => Just(0u64),
        1 => (u64::MAX - 5_000)..=u64::MAX,
    ]
}

/// Mostly a batch that may have been planned (they are numbered from 1).
fn batch() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 1u64..3, 1 => 0u64..6]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..13, amount(), 0u8..8).prop_map(|(to, amount, reference)| Op::Deposit { to, amount, reference }),
        2 => (0u8..5, 0u8..3, prop_oneof![3 => 0u64..300, 1 => 0u64..2_000]).prop_map(|(job, client, amount)| Op::Escrow { job, client, amount }),
        5 => (0u8..5, 0u64..6, 0u8..4, prop_oneof![9 => 0u64..400, 1 => Just(u64::MAX)], prop::bool::weighted(0.2))
            .prop_map(|(job, first, worker, work, escrow_only)| Op::Share { job, first, worker, work, escrow_only }),
        2 => (0u8..5, 0u64..1_500, any::<bool>()).prop_map(|(job, total_work, completed)| Op::Settle { job, total_work, completed }),
        1 => (amount(), 0u8..4).prop_map(|(amount, reference)| Op::Reward { amount, reference }),
        3 => (0u64..600).prop_map(|threshold| Op::Plan { threshold }),
        2 => (batch(), 0u8..2).prop_map(|(batch, tx)| Op::Confirm { batch, tx }),
        1 => batch().prop_map(|batch| Op::Void { batch }),
        2 => any::<usize>().prop_map(|pick| Op::Again { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Changed { pick }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(Scheme::Prop), Just(Scheme::Pplns), Just(Scheme::Pps)],
        prop_oneof![Just(0u32), 0u32..1_000, Just(10_000u32)],
        prop_oneof![
            Just(0u64),
            Just(1_000_000u64),
            1u64..5_000_000,
            Just(u64::MAX)
        ],
        prop_oneof![Just(0u64), 1u64..1_000],
    )
        .prop_map(
            |(scheme, fee_bps, pps_price_per_mwork, pplns_window_work)| Policy {
                scheme,
                fee_bps,
                pps_price_per_mwork,
                pplns_window_work,
            },
        )
}

/// The request an op stands for, built by the crate's own rules from the
/// state, or why the rules refuse it before it reaches the state.
fn request(books: &Books, policy: &Policy, op: &Op) -> Result<Body, LedgerError> {
    Ok(match op {
        Op::Deposit {
            to,
            amount,
            reference,
        } => deposit(&target(*to), *amount, &format!("ref{reference}"))?,
        Op::Escrow {
            job,
            client,
            amount,
        } => escrow(&format!("j{job}"), &format!("c{client}"), *amount),
        Op::Share {
            job,
            first,
            worker: w,
            work,
            escrow_only,
        } => {
            let c = ShareCredit {
                worker: worker(*w),
                job: format!("j{job}"),
                task: format!("t{first}"),
                first_statement: *first,
                proofs: 1,
                work: *work,
                at_ms: *first,
                escrow_only: *escrow_only,
            };
            books.state.share(&c, pps_pay(&c, policy)?)
        }
        Op::Settle {
            job,
            total_work,
            completed,
        } => {
            let job = format!("j{job}");
            let client = books.client_of(&job).unwrap_or_else(|| "c0".into());
            let window = if policy.scheme == Scheme::Pplns {
                books.window(policy.pplns_window_work)
            } else {
                vec![]
            };
            let outcome = JobOutcome {
                job: &job,
                client: &client,
                total_work: *total_work,
                completed: *completed,
            };
            Body::Settle(
                books
                    .state
                    .settlement(&outcome, policy, &books.credits(&job), &window),
            )
        }
        Op::Reward { amount, reference } => reward(
            *amount,
            &format!("rw{reference}"),
            policy,
            &books.window(policy.pplns_window_work),
        )?,
        Op::Plan { threshold } => match books.state.plan(*threshold) {
            Some(b) => b,
            None => return Err(LedgerError::Invalid("nothing to plan".into())),
        },
        Op::Confirm { batch, tx } => confirm(*batch, &format!("tx{tx}"))?,
        Op::Void { batch } => void(*batch),
        Op::Again { pick } | Op::Changed { pick } => {
            let Some(e) = books.entries.get(pick % books.entries.len().max(1)) else {
                return Err(LedgerError::Invalid("nothing recorded yet".into()));
            };
            let mut body = e.body.clone();
            if matches!(op, Op::Changed { .. }) {
                match &mut body {
                    Body::Deposit { amount, .. }
                    | Body::Escrow { amount, .. }
                    | Body::Reward { amount, .. } => *amount ^= 1,
                    Body::Confirm { tx, .. } => tx.push('x'),
                    _ => return Err(LedgerError::Invalid("nothing to change".into())),
                }
            }
            body
        }
    })
}

/// The value an entry moves, as the test sees it: the entry's own transfers,
/// and for a confirmation or a void the batch's, from the plan recorded.
fn moves(books: &Books, body: &Body) -> Vec<Transfer> {
    let mut v = body.transfers();
    let plan = |batch: u64| {
        books.entries.iter().find_map(|e| match &e.body {
            Body::Plan {
                batch: b, items, ..
            } if *b == batch => Some(items.clone()),
            _ => None,
        })
    };
    match body {
        Body::Confirm { batch, .. } => v.push(Transfer {
            from: Account::Batch(*batch),
            to: Account::Paid,
            amount: plan(*batch)
                .unwrap_or_default()
                .iter()
                .map(|i| i.amount)
                .sum(),
        }),
        Body::Void { batch } => {
            for i in plan(*batch).unwrap_or_default() {
                v.push(Transfer {
                    from: Account::Batch(*batch),
                    to: Account::Miner(i.addr),
                    amount: i.amount,
                });
            }
        }
        _ => {}
    }
    v
}

/// What the entry under a request's key says about it, checked against what
/// the request did.
fn check_retry(
    books: &Books,
    body: &Body,
    got: &Result<(Entry, bool), LedgerError>,
) -> Result<(), TestCaseError> {
    let Some(&i) = books.by_key.get(&body.key()) else {
        return Ok(());
    };
    let recorded = &books.entries[i];
    match (body, &recorded.body, got) {
        (Body::Plan { .. }, _, Err(LedgerError::Conflict { .. })) => {}
        (
            Body::Confirm { tx, .. },
            Body::Confirm { tx: t, .. },
            Err(LedgerError::BatchConfirmed { tx: first, .. }),
        ) => {
            prop_assert_ne!(tx, t);
            prop_assert_eq!(first, t);
        }
        (_, _, Err(LedgerError::Conflict { key, .. })) => {
            prop_assert_eq!(key, &recorded.key);
            prop_assert!(body != &recorded.body);
            let any_is_a_retry = matches!(
                body,
                Body::Share { .. } | Body::Settle(_) | Body::Void { .. }
            );
            prop_assert!(!any_is_a_retry, "{:?}", body);
        }
        (_, _, Ok((e, false))) => prop_assert_eq!(e, recorded),
        (_, _, other) => prop_assert!(false, "a retry of {:?} gave {:?}", recorded.key, other),
    }
    Ok(())
}

proptest! {
    /// Random sequences of deposits, escrows, shares, settlements, rewards,
    /// plans, confirmations and voids, retried and changed, under random
    /// policies, on the state alone:
    /// - everything that came in from outside is the sum of every account,
    ///   and each account is what the entries' own transfers give (so none
    ///   went below zero);
    /// - a refused request changes nothing;
    /// - a request under a taken key changes nothing: the same request gets
    ///   the recorded entry back, and sending it once more does too;
    /// - a settlement and a reward split exactly what they say; a batch holds
    ///   what it reserved and is confirmed at most once;
    /// - replaying the entries into a fresh state gives the same state.
    #[test]
    fn the_rules_neither_make_nor_lose_value(policy in policy(), ops in prop::collection::vec(op(), 1..70)) {
        let mut books = Books::default();
        let mut expected: HashMap<Account, i128> = HashMap::new();
        let mut deposited: u128 = 0;
        for op in &ops {
            let before = books.state.clone();
            let recorded = books.entries.len();
            let body = match request(&books, &policy, op) {
                Ok(body) => body,
                Err(e) => {
                    // Refused by a rule before it reached the state.
                    prop_assert!(matches!(e, LedgerError::Invalid(_)), "{:?}: {}", op, e);
                    continue;
                }
            };
            let key_taken = books.by_key.contains_key(&body.key());
            let flows = (!key_taken).then(|| moves(&books, &body));
            let got = books.append(body.clone());
            if key_taken {
                check_retry(&books, &body, &got)?;
                prop_assert_eq!(&books.state, &before);
                prop_assert_eq!(books.entries.len(), recorded);
                continue;
            }
            let (e, new) = match got {
                Ok(r) => r,
                Err(err) => {
                    prop_assert_eq!(&books.state, &before, "{:?} refused ({}) but changed the state", op, err);
                    prop_assert_eq!(books.entries.len(), recorded);
                    match err {
                        LedgerError::Insufficient { account, have, need } => {
                            prop_assert_eq!(have, before.balance(&account));
                            prop_assert!(have < need);
                        }
                        LedgerError::Invalid(m) => prop_assert!(m.contains("overflow") || m.contains("exists already"), "{}", m),
                        LedgerError::UnknownBatch(b) => prop_assert!(before.batch(b).is_none()),
                        LedgerError::BatchConfirmed { batch, tx } => {
                            let state = &before.batch(batch).unwrap().state;
                            let paid = matches!(state, BatchState::Confirmed { tx: t, .. } if *t == tx);
                            prop_assert!(paid, "{:?}", state);
                        }
                        LedgerError::BatchVoided(b) => {
                            let state = &before.batch(b).unwrap().state;
                            let voided = matches!(state, BatchState::Voided { .. });
                            prop_assert!(voided, "{:?}", state);
                        }
                        other => prop_assert!(false, "{:?}: unexpected refusal {}", op, other),
                    }
                    continue;
                }
            };
            prop_assert!(new);
            prop_assert_eq!(&e.body, &body);
            prop_assert_eq!(e.seq, before.next_seq());

            // The same request again is answered by this entry and changes nothing.
            let after = books.state.clone();
            let again = books.append(body.clone());
            check_retry(&books, &body, &again)?;
            prop_assert_eq!(&books.state, &after);

            // The books move exactly what the entry says.
            for t in flows.unwrap() {
                if t.from == Account::Outside {
                    deposited += t.amount as u128;
                } else {
                    *expected.entry(t.from).or_default() -= t.amount as i128;
                }
                *expected.entry(t.to).or_default() += t.amount as i128;
            }
            for (a, &v) in &expected {
                prop_assert!(v >= 0, "{} went below zero: {}", a, v);
                prop_assert_eq!(books.state.balance(a) as i128, v, "{}", a);
            }
            for (a, v) in books.state.accounts() {
                prop_assert_eq!(expected.get(a).copied().unwrap_or(0), v as i128, "{}", a);
            }
            prop_assert!(books.state.balance(&Account::Outside) == 0);

            match &e.body {
                Body::Settle(s) => {
                    prop_assert_eq!(s.escrow, before.balance(&Account::Escrow(s.job.clone())));
                    prop_assert_eq!(s.earned + s.refund, s.escrow);
                    prop_assert_eq!(s.parts.iter().map(|p| p.amount).sum::<u64>() + s.fee + s.to_pool, s.earned);
                    prop_assert_eq!(books.state.balance(&Account::Escrow(s.job.clone())), 0);
                }
                Body::Reward { amount, fee, parts, .. } => {
                    prop_assert_eq!(parts.iter().map(|p| p.amount).sum::<u64>() + fee, *amount);
                }
                Body::Plan { batch, threshold, items } => {
                    let b = books.state.batch(*batch).unwrap();
                    prop_assert_eq!(b.total, items.iter().map(|i| i.amount).sum::<u64>());
                    // (A deposit may have gone to `batch:N` before: odd, but allowed.)
                    let held = before.balance(&Account::Batch(*batch));
                    prop_assert_eq!(books.state.balance(&Account::Batch(*batch)), held + b.total);
                    for i in items {
                        prop_assert!(i.amount >= (*threshold).max(1));
                        prop_assert_eq!(books.state.balance(&Account::Miner(i.addr.clone())), 0);
                    }
                }
                Body::Confirm { batch, tx } => {
                    let state = &books.state.batch(*batch).unwrap().state;
                    let paid = matches!(state, BatchState::Confirmed { tx: t, .. } if t == tx);
                    prop_assert!(paid, "{:?}", state);
                }
                _ => {}
            }

            let sum: u128 = books.state.accounts().map(|(_, v)| v as u128).sum();
            prop_assert_eq!(sum, deposited);
            prop_assert_eq!(books.state.deposited() as u128, deposited);
            let audit = books.state.audit();
            prop_assert!(audit.balanced, "{:?}", audit);
            prop_assert_eq!(audit.entries, books.entries.len() as u64);
        }

        // At most one confirmation per batch, and each is its batch's state.
        let mut confirmed = std::collections::HashSet::new();
        for e in &books.entries {
            if let Body::Confirm { batch, .. } = e.body {
                prop_assert!(confirmed.insert(batch), "batch {} confirmed twice", batch);
            }
        }
        // A replay of the journal gives the same state.
        let mut replayed = State::default();
        for e in &books.entries {
            let touched = replayed.effects(&e.body).unwrap();
            replayed.apply(e, touched);
        }
        prop_assert_eq!(&replayed, &books.state);
    }

    /// Asking what an entry would do changes nothing, and an entry is refused
    /// exactly when an account it draws on holds less than it draws.
    #[test]
    fn effects_refuse_an_overdraft_whole(balance in 0u64..1_000, draws in prop::collection::vec(0u64..600, 1..4)) {
        let mut st = State::default();
        let d = deposit(&account::client("c"), balance.max(1), "d").unwrap();
        st.record(d.key(), 0, d).unwrap();
        let have = balance.max(1);
        // A settlement draws on the escrow in several transfers: fund one
        // with exactly the balance, then ask for parts that may add up to more.
        let e = escrow("j", "c", have);
        st.record(e.key(), 1, e).unwrap();
        let parts: Vec<crate::Part> = draws.iter().enumerate().map(|(i, &amount)| crate::Part { worker: format!("m{i}"), work: 1, amount }).collect();
        let total: u64 = draws.iter().sum();
        let body = Body::Settle(Settlement {
            job: "j".into(), client: "c".into(), scheme: Scheme::Prop, escrow: have, total_work: 1,
            credited_work: 1, completed: true, earned: total, fee: 0, to_pool: 0, refund: 0,
            parts, credits_root: String::new(), credits: 0,
        });
        let before = st.clone();
        let r = st.effects(&body);
        prop_assert_eq!(&st, &before);
        match r {
            Ok(touched) => {
                prop_assert!(total <= have);
                let left = touched.get(&account::escrow("j")).copied().unwrap_or(have);
                prop_assert_eq!(left, have - total);
            }
            Err(LedgerError::Insufficient { account, have: h, need }) => {
                prop_assert!(total > have);
                prop_assert_eq!(account, account::escrow("j"));
                prop_assert!(h < need);
            }
            Err(e) => prop_assert!(false, "{}", e),
        }
        prop_assert!(st.record(body.key(), 2, body).is_ok() == (total <= have));
        if total > have {
            prop_assert_eq!(&st, &before);
        }
    }

    /// The PPLNS window counts pooled work only, newest first, and is exactly
    /// the window when there is that much work.
    #[test]
    fn the_pplns_window_takes_the_newest_pooled_work(window in 0u64..2_000, shares in prop::collection::vec((0u8..4, 0u64..500, prop::bool::weighted(0.25)), 0..20)) {
        let credits: Vec<ShareCredit> = shares.iter().enumerate().map(|(i, &(w, work, escrow_only))| ShareCredit {
            worker: worker(w), job: "j".into(), task: format!("t{i}"), first_statement: i as u64,
            proofs: 1, work, at_ms: i as u64, escrow_only,
        }).collect();
        let got = pplns_window(window, credits.iter().rev().cloned());
        let pooled: u64 = credits.iter().filter(|c| !c.escrow_only).map(|c| c.work).sum();
        prop_assert_eq!(got.iter().map(|(_, w)| w).sum::<u64>(), pooled.min(window));
        // Newest first: each taken part is the next pooled share from the end.
        let mut newest = credits.iter().rev().filter(|c| !c.escrow_only);
        for (w, work) in &got {
            let c = newest.next().unwrap();
            prop_assert_eq!(w, &c.worker);
            prop_assert!(*work <= c.work);
        }
    }
}
