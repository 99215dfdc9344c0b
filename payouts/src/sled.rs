//! The ledger stored in sled: the journal, its idempotency and index keys and
//! the cached balances in one tree, replayed into a [`State`] on open, with
//! one write lock so each entry is checked against the state it is applied to.
//!
//! Each entry is written with its index keys and cached balances in one atomic
//! sled batch, so after a crash an entry is either wholly there or not at all.
//! Nothing is durable until [`Ledger::flush`]: callers flush before they tell
//! anyone (a miner's ack, an operator's confirmation).
//!
//! What an entry does and whether it may be recorded is decided by [`State`]
//! and the rules beside it; this module only finds what they need (a job's
//! credit list, the recent shares) and stores what they decide.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use serde::Serialize;

use crate::{
    account::{worker_addr, Account},
    durable::GroupFlush,
    entry::{
        keys, Audit, Batch, Body, Credited, Entry, JobOutcome, MinerFunds, Policy, Scheme,
        Settlement, ShareCredit, WorkTotals,
    },
    error::LedgerError,
    receipt::ReceiptBody,
    state::{self, State},
};

/// The ledger over one sled tree (`ledger`). Keys:
/// `j/SEQ` entry, `k/KEY` → seq (idempotency), `b/ACCOUNT` cached balance,
/// `w/WORKER` cached work totals, `p/JOB/POSITION` → seq (the job's credit list).
///
/// Cheap to clone: clones share the tree, the flusher and the state. Every
/// method blocks on sled (no `.await` but [`Ledger::flush`]); callers on an
/// async runtime that must not stall run them on the blocking pool.
#[derive(Clone)]
pub struct Ledger {
    flusher: GroupFlush,
    tree: sled::Tree,
    /// All writes go through this lock: each entry is checked against the state
    /// it is applied to, and the sled batch makes it atomic on disk.
    state: Arc<Mutex<State>>,
}

fn seq_key(seq: u64) -> String {
    format!("j/{seq:016x}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, v: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(v).map_err(|e| LedgerError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("ledger values serialise to JSON")
}

/// A stored sequence number (an index's value).
fn seq_of(key: &str, v: &[u8]) -> Result<u64, LedgerError> {
    Ok(u64::from_be_bytes(v.try_into().map_err(|_| {
        LedgerError::Corrupt {
            key: key.to_owned(),
            detail: "index is not 8 bytes".into(),
        }
    })?))
}

/// Runs `f` over the `Ok` items of `items`, stopping at the first `Err`, which
/// is returned instead of `f`'s answer. (The rules take plain iterators; a
/// storage scan can fail part way.)
fn until_err<T, R, E>(
    items: impl Iterator<Item = Result<T, E>>,
    f: impl FnOnce(&mut dyn Iterator<Item = T>) -> R,
) -> Result<R, E> {
    let mut err = None;
    let r = f(&mut items.map_while(|i| i.map_err(|e| err = Some(e)).ok()));
    match err {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

impl Ledger {
    /// Opens the ledger in `db`, replays the journal and corrects the cached
    /// balances and totals where they differ from it.
    pub fn open(db: &sled::Db) -> Result<Self, LedgerError> {
        Self::open_with(db, GroupFlush::new(db))
    }

    /// [`Ledger::open`], flushing through `flusher` (share one per database).
    pub fn open_with(db: &sled::Db, flusher: GroupFlush) -> Result<Self, LedgerError> {
        let ledger = Ledger {
            flusher,
            tree: db.open_tree("ledger")?,
            state: Arc::new(Mutex::new(State::default())),
        };
        ledger.rebuild()?;
        Ok(ledger)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("ledger lock is never poisoned: nothing panics while holding it")
    }

    /// Replays the journal into a fresh state and rewrites every cached balance
    /// and total that differs; returns how many were corrected.
    pub fn rebuild(&self) -> Result<usize, LedgerError> {
        let mut st = State::default();
        for kv in self.tree.scan_prefix(b"j/") {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let e: Entry = decode(&key, &v)?;
            if e.seq != st.next_seq() {
                return Err(LedgerError::Corrupt {
                    key,
                    detail: format!("expected entry {} next", st.next_seq()),
                });
            }
            let touched = st.effects(&e.body).map_err(|err| LedgerError::Corrupt {
                key: key.clone(),
                detail: format!("does not replay: {err}"),
            })?;
            st.apply(&e, touched);
        }
        let mut fixed = 0;
        let mut batch = sled::Batch::default();
        for (prefix, want) in [
            (
                "b/",
                st.accounts()
                    .map(|(a, v)| (a.to_string(), json(&v)))
                    .collect::<HashMap<_, _>>(),
            ),
            (
                "w/",
                st.workers().map(|(w, t)| (w.to_owned(), json(t))).collect(),
            ),
        ] {
            for kv in self.tree.scan_prefix(prefix.as_bytes()) {
                let (k, v) = kv?;
                let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                if want.get(&name).map(|w| &w[..]) != Some(&v[..]) {
                    batch.remove(k);
                    fixed += 1;
                }
            }
            for (name, v) in want {
                let k = format!("{prefix}{name}");
                if self.tree.get(k.as_bytes())?.as_deref() != Some(&v[..]) {
                    batch.insert(k.as_bytes(), v);
                    fixed += 1;
                }
            }
        }
        self.tree.apply_batch(batch)?;
        *self.lock() = st;
        Ok(fixed)
    }

    /// Records the entry `request` builds from the state, under its key
    /// ([`Body::key`]), unless the key is taken: then the entry that holds it
    /// answers when the request is the same one retried ([`state::retry`]).
    /// Returns the entry that holds the key and whether it is new.
    fn append(&self, request: impl FnOnce(&State) -> Body) -> Result<(Entry, bool), LedgerError> {
        let mut st = self.lock();
        let body = request(&st);
        let key = body.key();
        if let Some(seq) = self.indexed(&key)? {
            let e = self.entry(seq)?.ok_or_else(|| LedgerError::Corrupt {
                key: key.clone(),
                detail: format!("indexed entry {seq} is missing"),
            })?;
            return Ok((state::retry(e, &body)?, false));
        }
        st.admits(&body)?;
        let touched = st.effects(&body)?;
        let entry = Entry {
            seq: st.next_seq(),
            key: key.clone(),
            at_ms: now_ms(),
            body,
        };
        let mut batch = sled::Batch::default();
        batch.insert(seq_key(entry.seq).as_bytes(), json(&entry));
        batch.insert(format!("k/{key}").as_bytes(), &entry.seq.to_be_bytes());
        for (a, v) in &touched {
            batch.insert(format!("b/{a}").as_bytes(), json(v));
        }
        if let Body::Share {
            credit, position, ..
        } = &entry.body
        {
            let mut t = st.worker(&credit.worker);
            t.add(credit);
            batch.insert(format!("w/{}", credit.worker).as_bytes(), json(&t));
            batch.insert(
                format!("p/{}/{position:08x}", credit.job).as_bytes(),
                &entry.seq.to_be_bytes(),
            );
        }
        self.tree.apply_batch(batch)?;
        st.apply(&entry, touched);
        Ok((entry, true))
    }

    /// Makes every entry so far durable (sled's flush: safe against a killed
    /// process; see ARCHITECTURE.md for what it is not).
    pub async fn flush(&self) -> Result<(), LedgerError> {
        self.flusher.flush().await?;
        Ok(())
    }

    /// The entry with sequence number `seq`.
    pub fn entry(&self, seq: u64) -> Result<Option<Entry>, LedgerError> {
        let k = seq_key(seq);
        self.tree
            .get(k.as_bytes())?
            .map(|v| decode(&k, &v))
            .transpose()
    }

    /// The entry recorded under idempotency key `key` ([`keys`]).
    pub fn journal_entry(&self, key: &str) -> Result<Option<Entry>, LedgerError> {
        match self.indexed(key)? {
            Some(seq) => self.entry(seq),
            None => Ok(None),
        }
    }

    /// The sequence number of the entry under idempotency key `key`.
    fn indexed(&self, key: &str) -> Result<Option<u64>, LedgerError> {
        self.tree
            .get(format!("k/{key}").as_bytes())?
            .map(|v| seq_of(key, &v))
            .transpose()
    }

    /// Up to `limit` entries from `from` on, in order.
    pub fn journal(&self, from: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
        self.tree
            .range(seq_key(from).as_bytes()..b"j0".as_slice())
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// Every entry from the newest back, as read (a scan can fail part way).
    fn newest_first(&self) -> impl Iterator<Item = Result<Entry, LedgerError>> + '_ {
        self.tree.scan_prefix(b"j/").rev().map(|kv| {
            let (k, v) = kv?;
            decode::<Entry>(&String::from_utf8_lossy(&k), &v)
        })
    }

    /// Credits money from outside to `account` (a client, or `pool:funds`).
    /// `reference` is the idempotency key: a retry with the same reference and
    /// amount records nothing new.
    pub fn deposit(
        &self,
        account: &Account,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError> {
        let body = state::deposit(account, amount, reference)?;
        self.append(|_| body)
    }

    /// Takes `amount` out of the books from `account` (the pool's fees or funds,
    /// or a client's balance: a refund); refused whole when it is short.
    /// `reference` is the idempotency key, as for deposits.
    pub fn withdraw(
        &self,
        account: &Account,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError> {
        let body = state::withdraw(account, amount, reference)?;
        self.append(|_| body)
    }

    /// Moves a job's reward from its client's balance into escrow; refused whole
    /// (`Insufficient`, with how much is missing) when the balance is short.
    pub fn escrow(
        &self,
        job: &str,
        client: &str,
        amount: u64,
    ) -> Result<(Entry, bool), LedgerError> {
        self.append(|_| state::escrow(job, client, amount))
    }

    /// Credits a verified share. Idempotent on (job, first statement). Under PPS
    /// it also pays `work x price / 10^6` from `pool:funds`, and is refused whole
    /// when the funds cannot cover it.
    pub fn credit(&self, c: &ShareCredit, policy: &Policy) -> Result<Credited, LedgerError> {
        let paid = state::pps_pay(c, policy)?;
        let (e, new) = self.append(|st| st.share(c, paid))?;
        e.into_credited(new)
    }

    /// The job's credit list, in position order, as receipt bodies.
    pub fn job_credits(&self, job: &str) -> Result<Vec<ReceiptBody>, LedgerError> {
        let mut out = vec![];
        for kv in self.tree.scan_prefix(format!("p/{job}/").as_bytes()) {
            let (k, seq) = kv?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let seq =
                u64::from_be_bytes(seq.as_ref().try_into().map_err(|_| LedgerError::Corrupt {
                    key: key.clone(),
                    detail: "not 8 bytes".into(),
                })?);
            match self.entry(seq)?.map(|e| e.body) {
                Some(Body::Share {
                    credit, position, ..
                }) => out.push(ReceiptBody { credit, position }),
                _ => {
                    return Err(LedgerError::Corrupt {
                        key,
                        detail: format!("entry {seq} is not a share"),
                    })
                }
            }
        }
        Ok(out)
    }

    /// The job's settlement, once settled.
    pub fn settlement(&self, job: &str) -> Result<Option<Settlement>, LedgerError> {
        let key = keys::settle(job);
        let Some(seq) = self.tree.get(format!("k/{key}").as_bytes())? else {
            return Ok(None);
        };
        let seq = u64::from_be_bytes(seq.as_ref().try_into().unwrap_or([0; 8]));
        match self.entry(seq)?.map(|e| e.body) {
            Some(Body::Settle(s)) => Ok(Some(s)),
            _ => Err(LedgerError::Corrupt {
                key,
                detail: format!("entry {seq} is not a settlement"),
            }),
        }
    }

    /// Settles a finished (`completed`) or expired job: its escrow is earned in
    /// full, or in proportion to the work verified before the deadline, and split
    /// by the policy ([`State::settlement`]); what was not earned goes back to
    /// the client. Idempotent: a settled job returns its settlement unchanged.
    pub fn settle(
        &self,
        job: &str,
        client: &str,
        total_work: u64,
        completed: bool,
        policy: &Policy,
    ) -> Result<Settlement, LedgerError> {
        let credits = self.job_credits(job)?;
        let window = if policy.scheme == Scheme::Pplns {
            self.pplns_window(policy.pplns_window_work)?
        } else {
            vec![]
        };
        let outcome = JobOutcome {
            job,
            client,
            total_work,
            completed,
        };
        let (e, _) =
            self.append(|st| Body::Settle(st.settlement(&outcome, policy, &credits, &window)))?;
        e.into_settlement()
    }

    /// The PPLNS window ([`state::pplns_window`]) over the journal's shares,
    /// reading back only as far as the window reaches.
    fn pplns_window(&self, window: u64) -> Result<Vec<(String, u64)>, LedgerError> {
        let shares = self.newest_first().filter_map(|e| match e {
            Ok(Entry {
                body: Body::Share { credit, .. },
                ..
            }) => Some(Ok(credit)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        });
        until_err(shares, |shares| state::pplns_window(window, shares))
    }

    /// PPLNS: records a reward earned outside the pool (for example a proving
    /// network's payment) and splits it, minus the fee, over the last
    /// `pplns_window_work` units of verified work ([`state::reward`]).
    /// Idempotent on `reference`.
    pub fn add_reward(
        &self,
        amount: u64,
        reference: &str,
        policy: &Policy,
    ) -> Result<(Entry, bool), LedgerError> {
        let window = self.pplns_window(policy.pplns_window_work)?;
        let body = state::reward(amount, reference, policy, &window)?;
        self.append(|_| body)
    }

    /// Gathers every miner balance at or over `threshold` into a new payout batch
    /// and reserves it ([`State::plan`]); `None` when no balance reaches the
    /// threshold.
    pub fn plan_payouts(&self, threshold: u64) -> Result<Option<Batch>, LedgerError> {
        let Some(body) = self.lock().plan(threshold) else {
            return Ok(None);
        };
        // A plan is never a retry (a taken key is refused), so the entry is
        // this body.
        let (e, _) = self.append(|_| body)?;
        Ok(self.batch(e.into_planned_batch()?))
    }

    /// Records that batch `id` was paid with transaction `tx`. At most once: a
    /// retry with the same `tx` is accepted and changes nothing; another `tx`, or
    /// a voided batch, is refused.
    pub fn confirm(&self, id: u64, tx: &str) -> Result<(Batch, bool), LedgerError> {
        let body = state::confirm(id, tx)?;
        let (_, new) = self.append(|_| body)?;
        Ok((self.batch(id).ok_or(LedgerError::UnknownBatch(id))?, new))
    }

    /// Cancels planned batch `id`: its amounts go back to the miners' balances.
    /// A confirmed batch cannot be voided.
    pub fn void(&self, id: u64) -> Result<(Batch, bool), LedgerError> {
        let (_, new) = self.append(|_| state::void(id))?;
        Ok((self.batch(id).ok_or(LedgerError::UnknownBatch(id))?, new))
    }

    pub fn batch(&self, id: u64) -> Option<Batch> {
        self.lock().batch(id).cloned()
    }

    /// Every payout batch, newest first.
    pub fn batches(&self) -> Vec<Batch> {
        self.lock().batches().rev().cloned().collect()
    }

    /// An account's balance.
    pub fn balance(&self, account: &Account) -> u64 {
        self.lock().balance(account)
    }

    /// Balance, pending and paid of the payout account `addr`.
    pub fn miner_funds(&self, addr: &str) -> MinerFunds {
        self.lock().miner_funds(addr)
    }

    /// The totals of one worker (`ADDR.RIG`), or of every rig of an account (`ADDR`).
    pub fn totals(
        &self,
        name: &str,
    ) -> Result<(WorkTotals, BTreeMap<String, WorkTotals>), LedgerError> {
        Ok(self.lock().totals(name))
    }

    /// The pool's lifetime totals ([`State::lifetime`]).
    pub fn lifetime(&self) -> WorkTotals {
        self.lock().lifetime()
    }

    /// The latest shares of `name` (a worker, every rig of an account, or everyone
    /// when empty), newest first, looking back over at most `scan` journal entries.
    pub fn recent_shares(
        &self,
        name: &str,
        limit: usize,
        scan: usize,
    ) -> Result<Vec<(ShareCredit, u64)>, LedgerError> {
        let mut out = vec![];
        for e in self.newest_first().take(scan) {
            if let Body::Share { credit, paid, .. } = e?.body {
                if name.is_empty() || credit.worker == name || worker_addr(&credit.worker) == name {
                    out.push((credit, paid));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The books summed by kind of account, and whether they balance.
    pub fn audit(&self) -> Audit {
        self.lock().audit()
    }

    /// Every account with a non-zero balance.
    pub fn accounts(&self) -> BTreeMap<Account, u64> {
        self.lock()
            .accounts()
            .filter(|&(_, v)| v > 0)
            .map(|(a, v)| (a.clone(), v))
            .collect()
    }

    /// Every account with a non-zero balance by its stored name, sorted by name
    /// (the books as `GET /v1/ledger` shows them).
    pub fn balances(&self) -> BTreeMap<String, u64> {
        self.lock()
            .accounts()
            .filter(|&(_, v)| v > 0)
            .map(|(a, v)| (a.to_string(), v))
            .collect()
    }

    /// A copy of the derived state (every balance, total and batch): what a
    /// replay of the journal gives.
    pub fn state(&self) -> State {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests;
