//! The zkpool reward ledger: an append-only journal of value and work.
//!
//! Every entry has an idempotency key and moves value between accounts with
//! integer amounts in the smallest unit (no floats anywhere):
//!
//! | entry | moves |
//! |---|---|
//! | deposit | outside → `client:ID` (or `pool:funds`) |
//! | escrow | `client:ID` → `escrow:JOB` |
//! | share | work to the worker; under PPS also `pool:funds` → `miner:ADDR` |
//! | settle | `escrow:JOB` → miners, `pool:fees`, `pool:funds` (PPS), refund to the client |
//! | reward | outside → miners (PPLNS window) and `pool:fees` |
//! | plan | `miner:ADDR` → `batch:N` (reserved) |
//! | confirm | `batch:N` → `paid` |
//! | void | `batch:N` → back to each `miner:ADDR` |
//!
//! So value is neither made nor lost: everything that came in from outside equals
//! the sum of every account, and no account goes below zero (an entry that would
//! overdraw is refused whole). Balances are a cache: the journal is replayed on
//! every open and the cached balances are checked and corrected against it.
//!
//! Each entry is written with its index keys and cached balances in one atomic
//! sled batch, so after a crash an entry is either wholly there or not at all.
//! Nothing is durable until [`Ledger::flush`]: callers flush before they tell
//! anyone (a miner's ack, an operator's confirmation).

pub mod durable;
pub mod receipt;
pub mod split;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use serde::{Deserialize, Serialize};

pub use durable::GroupFlush;
pub use receipt::{Receipt, ReceiptBody, Signer};
pub use split::Part;

/// Account names.
pub mod account {
    /// A client's spendable balance.
    pub fn client(id: &str) -> String {
        format!("client:{id}")
    }
    /// A job's escrowed reward.
    pub fn escrow(job: &str) -> String {
        format!("escrow:{job}")
    }
    /// A miner's balance; `addr` is the `ADDR` of `ADDR.RIG` workers.
    pub fn miner(addr: &str) -> String {
        format!("miner:{addr}")
    }
    /// A payout batch's reservations.
    pub fn batch(id: u64) -> String {
        format!("batch:{id}")
    }
    /// The pool fee collected.
    pub const FEES: &str = "pool:fees";
    /// The operator's own funds: pays PPS shares, receives PPS job rewards.
    pub const FUNDS: &str = "pool:funds";
    /// Paid out by confirmed batches.
    pub const PAID: &str = "paid";
}

/// The payout account of a worker: `ADDR` of `ADDR.RIG`.
pub fn worker_addr(worker: &str) -> &str {
    worker.split_once('.').map_or(worker, |(a, _)| a)
}

/// Why the ledger refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// sled failed to read or write.
    #[error("ledger storage: {0}")]
    Storage(#[from] sled::Error),
    /// An entry in the journal cannot be decoded or does not replay.
    #[error("ledger entry {key:?} is unreadable: {detail}")]
    Corrupt { key: String, detail: String },
    /// The entry would take an account below zero; nothing was written.
    #[error("{account} holds {have} but {need} is needed ({missing} short)", missing = need - have)]
    Insufficient {
        account: String,
        have: u64,
        need: u64,
    },
    /// The idempotency key was used before for a different entry.
    #[error("{key} was already recorded with different contents ({detail}); use a new reference")]
    Conflict { key: String, detail: String },
    #[error("no payout batch {0}: `zkpool payouts list` shows the batches")]
    UnknownBatch(u64),
    #[error("payout batch {batch} was already confirmed with transaction {tx:?}; it is paid and cannot be voided or confirmed again")]
    BatchConfirmed { batch: u64, tx: String },
    #[error("payout batch {0} was voided; its amounts are back in the miners' balances (plan a new batch)")]
    BatchVoided(u64),
    /// A request the ledger cannot record as asked.
    #[error("{0}")]
    Invalid(String),
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
    /// Paid from its job's reward only: never from the pool's funds (PPS) nor
    /// counted in the PPLNS window. Set for work on a client's own circuit, or
    /// on a job that pays less than the pool-wide price: value the pool did not
    /// receive is never paid out of what others paid. Absent (false) otherwise,
    /// so a pooled share's signed bytes are what they always were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub escrow_only: bool,
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
        self.work = self.work.saturating_add(c.work);
        self.proofs = self.proofs.saturating_add(c.proofs);
        self.shares += 1;
        self.last_share_ms = self.last_share_ms.max(c.at_ms);
    }
}

/// How finished work is turned into miner balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// A job's reward minus the fee, split by the work done on that job.
    #[default]
    Prop,
    /// Rewards split over the last N units of verified work, whatever the job.
    Pplns,
    /// Each share paid at once from the pool's funds at a fixed price.
    Pps,
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scheme::Prop => "prop",
            Scheme::Pplns => "pplns",
            Scheme::Pps => "pps",
        })
    }
}

/// The reward policy, from the pool's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub scheme: Scheme,
    /// Pool fee in basis points (100 = 1 %).
    pub fee_bps: u32,
    /// PPS: smallest units paid per 1,000,000 units of work.
    pub pps_price_per_mwork: u64,
    /// PPLNS: how many units of recent work a reward is spread over.
    pub pplns_window_work: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            scheme: Scheme::Prop,
            fee_bps: 100,
            pps_price_per_mwork: 1_000,
            pplns_window_work: 100_000_000,
        }
    }
}

/// How a job's escrow was distributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub job: String,
    pub client: String,
    pub scheme: Scheme,
    /// What was in escrow.
    pub escrow: u64,
    /// The job's total work, and how much of it was verified and credited.
    pub total_work: u64,
    pub credited_work: u64,
    /// Whether every statement was proven (otherwise the job expired).
    pub completed: bool,
    /// escrow x credited / total work, rounded down (the whole escrow when every
    /// statement was credited).
    pub earned: u64,
    pub fee: u64,
    /// To the operator's funds (PPS: it paid the shares already).
    pub to_pool: u64,
    /// Back to the client: escrow - earned.
    pub refund: u64,
    /// earned - fee - to_pool, split by work (largest remainder).
    pub parts: Vec<Part>,
    /// Merkle root of the job's credit list, hex.
    pub credits_root: String,
    pub credits: u64,
}

/// A payout batch line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutItem {
    pub addr: String,
    pub amount: u64,
}

/// The journal's entry kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Deposit {
        account: String,
        amount: u64,
        reference: String,
    },
    Escrow {
        job: String,
        client: String,
        amount: u64,
    },
    Share {
        credit: ShareCredit,
        position: u64,
        /// PPS: paid at once from `pool:funds`.
        paid: u64,
    },
    Settle(Settlement),
    Reward {
        reference: String,
        amount: u64,
        fee: u64,
        parts: Vec<Part>,
    },
    Plan {
        batch: u64,
        threshold: u64,
        items: Vec<PayoutItem>,
    },
    Confirm {
        batch: u64,
        tx: String,
    },
    Void {
        batch: u64,
    },
}

/// A journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub key: String,
    pub at_ms: u64,
    #[serde(flatten)]
    pub body: Body,
}

/// One move of value; `from: None` is value entering from outside.
struct Transfer {
    from: Option<String>,
    to: String,
    amount: u64,
}

impl Body {
    fn transfers(&self) -> Vec<Transfer> {
        let t = |from: Option<String>, to: String, amount: u64| Transfer { from, to, amount };
        match self {
            Body::Deposit {
                account, amount, ..
            } => vec![t(None, account.clone(), *amount)],
            Body::Escrow {
                job,
                client,
                amount,
            } => vec![t(
                Some(account::client(client)),
                account::escrow(job),
                *amount,
            )],
            Body::Share { credit, paid, .. } => vec![t(
                Some(account::FUNDS.into()),
                account::miner(worker_addr(&credit.worker)),
                *paid,
            )],
            Body::Settle(s) => {
                let from = || Some(account::escrow(&s.job));
                let mut v = vec![
                    t(from(), account::FEES.into(), s.fee),
                    t(from(), account::FUNDS.into(), s.to_pool),
                    t(from(), account::client(&s.client), s.refund),
                ];
                for p in &s.parts {
                    v.push(t(from(), account::miner(worker_addr(&p.worker)), p.amount));
                }
                v
            }
            Body::Reward { fee, parts, .. } => {
                let mut v = vec![t(None, account::FEES.into(), *fee)];
                for p in parts {
                    v.push(t(None, account::miner(worker_addr(&p.worker)), p.amount));
                }
                v
            }
            Body::Plan { batch, items, .. } => items
                .iter()
                .map(|i| {
                    t(
                        Some(account::miner(&i.addr)),
                        account::batch(*batch),
                        i.amount,
                    )
                })
                .collect(),
            // Confirm and void move the whole batch; the state knows its items.
            Body::Confirm { .. } | Body::Void { .. } => vec![],
        }
    }
}

/// Where a payout batch is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BatchState {
    /// Reserved; waiting for the operator to pay it and confirm.
    Planned,
    Confirmed {
        tx: String,
        confirmed_ms: u64,
    },
    Voided {
        voided_ms: u64,
    },
}

/// A payout batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: u64,
    pub planned_ms: u64,
    pub threshold: u64,
    pub items: Vec<PayoutItem>,
    pub total: u64,
    #[serde(flatten)]
    pub state: BatchState,
}

impl Batch {
    /// What this batch pays account `addr`.
    pub fn amount_for(&self, addr: &str) -> u64 {
        self.items
            .iter()
            .filter(|i| i.addr == addr)
            .map(|i| i.amount)
            .sum()
    }
}

/// A miner account's money.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerFunds {
    /// Credited and not yet in a batch.
    pub balance: u64,
    /// Reserved in planned batches.
    pub pending: u64,
    /// In confirmed batches.
    pub paid: u64,
}

/// The ledger's books, summed by kind of account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Everything that came in from outside (deposits and recorded rewards).
    pub deposited: u64,
    pub clients: u64,
    pub escrow: u64,
    pub miners: u64,
    pub pending: u64,
    pub paid: u64,
    pub fees: u64,
    pub funds: u64,
    pub entries: u64,
    /// deposited == the sum of every account.
    pub balanced: bool,
}

/// What crediting a share did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credited {
    /// The credit as it stands in the job's list (the receipt body).
    pub receipt: ReceiptBody,
    /// False when the share was already in the ledger: nothing changed.
    pub new: bool,
    /// Paid at once (PPS).
    pub paid: u64,
}

/// The derived state: replayed from the journal on open, updated on each append.
#[derive(Default)]
struct State {
    next_seq: u64,
    deposited: u64,
    balances: HashMap<String, u64>,
    workers: HashMap<String, WorkTotals>,
    /// Next position in each job's credit list.
    positions: HashMap<String, u64>,
    batches: BTreeMap<u64, Batch>,
}

impl State {
    fn balance(&self, a: &str) -> u64 {
        self.balances.get(a).copied().unwrap_or(0)
    }

    /// The balances `body` would leave, or why it cannot be recorded.
    fn effects(&self, body: &Body) -> Result<BTreeMap<String, u64>, LedgerError> {
        let mut transfers = body.transfers();
        match body {
            Body::Confirm { batch, .. } | Body::Void { batch } => {
                let b = self
                    .batches
                    .get(batch)
                    .ok_or(LedgerError::UnknownBatch(*batch))?;
                match (&b.state, body) {
                    (BatchState::Confirmed { tx, .. }, _) => {
                        return Err(LedgerError::BatchConfirmed {
                            batch: *batch,
                            tx: tx.clone(),
                        })
                    }
                    (BatchState::Voided { .. }, _) => return Err(LedgerError::BatchVoided(*batch)),
                    (BatchState::Planned, Body::Confirm { .. }) => transfers.push(Transfer {
                        from: Some(account::batch(*batch)),
                        to: account::PAID.into(),
                        amount: b.total,
                    }),
                    (BatchState::Planned, _) => {
                        for i in &b.items {
                            transfers.push(Transfer {
                                from: Some(account::batch(*batch)),
                                to: account::miner(&i.addr),
                                amount: i.amount,
                            })
                        }
                    }
                }
            }
            Body::Plan { batch, .. } if self.batches.contains_key(batch) => {
                return Err(LedgerError::Invalid(format!(
                    "payout batch {batch} exists already"
                )))
            }
            _ => {}
        }
        // Value entering from outside must not overflow the running total of
        // deposits: the books' identity is checked against it.
        let inflow = transfers
            .iter()
            .filter(|t| t.from.is_none())
            .try_fold(0u64, |acc, t| acc.checked_add(t.amount))
            .and_then(|inflow| self.deposited.checked_add(inflow));
        if inflow.is_none() {
            return Err(LedgerError::Invalid(
                "the amount would overflow the total deposited: amounts are at most 18446744073709551615 units in all".into(),
            ));
        }
        let mut touched: BTreeMap<String, u64> = BTreeMap::new();
        for tr in transfers.iter().filter(|t| t.amount > 0) {
            if let Some(from) = &tr.from {
                let have = *touched
                    .entry(from.clone())
                    .or_insert_with(|| self.balance(from));
                if have < tr.amount {
                    return Err(LedgerError::Insufficient {
                        account: from.clone(),
                        have,
                        need: tr.amount,
                    });
                }
                touched.insert(from.clone(), have - tr.amount);
            }
            let to = touched
                .entry(tr.to.clone())
                .or_insert_with(|| self.balance(&tr.to));
            *to = to
                .checked_add(tr.amount)
                .ok_or_else(|| LedgerError::Invalid(format!("{} would overflow", tr.to)))?;
        }
        Ok(touched)
    }

    /// Records `entry` in the derived state; `touched` from [`State::effects`].
    fn apply(&mut self, entry: &Entry, touched: BTreeMap<String, u64>) {
        self.next_seq = entry.seq + 1;
        // `effects` refused anything that would overflow; a journal written before
        // that check saturates rather than wrapping.
        let inflow = entry
            .body
            .transfers()
            .iter()
            .filter(|t| t.from.is_none())
            .fold(0u64, |acc, t| acc.saturating_add(t.amount));
        self.deposited = self.deposited.saturating_add(inflow);
        self.balances.extend(touched);
        match &entry.body {
            Body::Share {
                credit, position, ..
            } => {
                self.workers
                    .entry(credit.worker.clone())
                    .or_default()
                    .add(credit);
                self.positions.insert(credit.job.clone(), position + 1);
            }
            Body::Plan {
                batch,
                threshold,
                items,
            } => {
                self.batches.insert(
                    *batch,
                    Batch {
                        id: *batch,
                        planned_ms: entry.at_ms,
                        threshold: *threshold,
                        total: items.iter().map(|i| i.amount).sum(),
                        items: items.clone(),
                        state: BatchState::Planned,
                    },
                );
            }
            Body::Confirm { batch, tx } => {
                if let Some(b) = self.batches.get_mut(batch) {
                    b.state = BatchState::Confirmed {
                        tx: tx.clone(),
                        confirmed_ms: entry.at_ms,
                    };
                }
            }
            Body::Void { batch } => {
                if let Some(b) = self.batches.get_mut(batch) {
                    b.state = BatchState::Voided {
                        voided_ms: entry.at_ms,
                    };
                }
            }
            _ => {}
        }
    }
}

/// The ledger over one sled tree (`ledger`). Keys:
/// `j/SEQ` entry, `k/KEY` → seq (idempotency), `b/ACCOUNT` cached balance,
/// `w/WORKER` cached work totals, `p/JOB/POSITION` → seq (the job's credit list).
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
            if e.seq != st.next_seq {
                return Err(LedgerError::Corrupt {
                    key,
                    detail: format!("expected entry {} next", st.next_seq),
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
                st.balances
                    .iter()
                    .map(|(a, v)| (a.clone(), json(v)))
                    .collect::<HashMap<_, _>>(),
            ),
            (
                "w/",
                st.workers
                    .iter()
                    .map(|(w, t)| (w.clone(), json(t)))
                    .collect(),
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

    /// Appends `body` under `key` unless the key is taken; returns the entry
    /// that holds the key and whether it is new. `same` decides whether an
    /// existing entry is the same request retried (otherwise: Conflict).
    fn append(
        &self,
        key: String,
        body: impl FnOnce(&State) -> Result<Body, LedgerError>,
        same: impl Fn(&Body) -> bool,
    ) -> Result<(Entry, bool), LedgerError> {
        let mut st = self.lock();
        if let Some(seq) = self.tree.get(format!("k/{key}").as_bytes())? {
            let seq =
                u64::from_be_bytes(seq.as_ref().try_into().map_err(|_| LedgerError::Corrupt {
                    key: key.clone(),
                    detail: "index is not 8 bytes".into(),
                })?);
            let e = self.entry(seq)?.ok_or_else(|| LedgerError::Corrupt {
                key: key.clone(),
                detail: format!("indexed entry {seq} is missing"),
            })?;
            if !same(&e.body) {
                return Err(LedgerError::Conflict {
                    key,
                    detail: "a retry must repeat the same amounts".into(),
                });
            }
            return Ok((e, false));
        }
        let body = body(&st)?;
        let touched = st.effects(&body)?;
        let entry = Entry {
            seq: st.next_seq,
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
            let mut t = st.workers.get(&credit.worker).cloned().unwrap_or_default();
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

    /// The entry recorded under idempotency key `key`.
    pub fn journal_entry(&self, key: &str) -> Result<Option<Entry>, LedgerError> {
        match self.tree.get(format!("k/{key}").as_bytes())? {
            Some(seq) => {
                let seq = u64::from_be_bytes(seq.as_ref().try_into().map_err(|_| {
                    LedgerError::Corrupt {
                        key: key.to_owned(),
                        detail: "index is not 8 bytes".into(),
                    }
                })?);
                self.entry(seq)
            }
            None => Ok(None),
        }
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

    /// Credits money from outside to `account` (a client, or `pool:funds`).
    /// `reference` is the idempotency key: a retry with the same reference and
    /// amount records nothing new.
    pub fn deposit(
        &self,
        account: &str,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError> {
        if amount == 0 {
            return Err(LedgerError::Invalid("a deposit must be more than 0".into()));
        }
        if reference.is_empty() {
            return Err(LedgerError::Invalid(
                "a deposit needs a reference (the payment's id), so a retry is recorded once"
                    .into(),
            ));
        }
        let body = Body::Deposit {
            account: account.to_owned(),
            amount,
            reference: reference.to_owned(),
        };
        let want = body.clone();
        self.append(format!("deposit/{reference}"), |_| Ok(body), |b| *b == want)
    }

    /// Moves a job's reward from its client's balance into escrow; refused whole
    /// (`Insufficient`, with how much is missing) when the balance is short.
    pub fn escrow(
        &self,
        job: &str,
        client: &str,
        amount: u64,
    ) -> Result<(Entry, bool), LedgerError> {
        let body = Body::Escrow {
            job: job.to_owned(),
            client: client.to_owned(),
            amount,
        };
        let want = body.clone();
        self.append(format!("escrow/{job}"), |_| Ok(body), |b| *b == want)
    }

    /// Credits a verified share. Idempotent on (job, first statement). Under PPS
    /// it also pays `work x price / 10^6` from `pool:funds`, and is refused whole
    /// when the funds cannot cover it.
    pub fn credit(&self, c: &ShareCredit, policy: &Policy) -> Result<Credited, LedgerError> {
        let paid = match policy.scheme {
            Scheme::Pps if !c.escrow_only => {
                u64::try_from(c.work as u128 * policy.pps_price_per_mwork as u128 / 1_000_000)
                    .map_err(|_| LedgerError::Invalid("a PPS payment would overflow".into()))?
            }
            _ => 0,
        };
        let (e, new) = self.append(
            c.key(),
            |st| {
                Ok(Body::Share {
                    credit: c.clone(),
                    position: st.positions.get(&c.job).copied().unwrap_or(0),
                    paid,
                })
            },
            |_| true,
        )?;
        match e.body {
            Body::Share {
                credit,
                position,
                paid,
            } => Ok(Credited {
                receipt: ReceiptBody { credit, position },
                new,
                paid,
            }),
            _ => Err(LedgerError::Corrupt {
                key: e.key,
                detail: "a share key holds another kind of entry".into(),
            }),
        }
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
        let Some(seq) = self.tree.get(format!("k/settle/{job}").as_bytes())? else {
            return Ok(None);
        };
        let seq = u64::from_be_bytes(seq.as_ref().try_into().unwrap_or([0; 8]));
        match self.entry(seq)?.map(|e| e.body) {
            Some(Body::Settle(s)) => Ok(Some(s)),
            _ => Err(LedgerError::Corrupt {
                key: format!("settle/{job}"),
                detail: format!("entry {seq} is not a settlement"),
            }),
        }
    }

    /// Settles a finished (`completed`) or expired job: its escrow is earned in
    /// full, or in proportion to the work verified before the deadline, and split
    /// by the policy; what was not earned goes back to the client. Idempotent: a
    /// settled job returns its settlement unchanged.
    pub fn settle(
        &self,
        job: &str,
        client: &str,
        total_work: u64,
        completed: bool,
        policy: &Policy,
    ) -> Result<Settlement, LedgerError> {
        let credits = self.job_credits(job)?;
        let credits_root = hex::encode(receipt::merkle_root(
            &credits.iter().map(|c| c.leaf()).collect::<Vec<_>>(),
        ));
        let credited_work: u64 = credits.iter().map(|c| c.work).sum();
        let window = if policy.scheme == Scheme::Pplns {
            self.pplns_window(policy.pplns_window_work)?
        } else {
            vec![]
        };
        let (e, _) = self.append(
            format!("settle/{job}"),
            |st| {
                let escrow = st.balance(&account::escrow(job));
                // What the verified and credited work earned. A completed job whose
                // statements were all credited earns its escrow; statements that
                // were answered from proofs made before (nobody's work here) and
                // work not done before an expiry are refunded.
                let earned = if credited_work >= total_work {
                    escrow
                } else {
                    split::pro_rata(escrow, credited_work, total_work)
                };
                let mut s = Settlement {
                    job: job.to_owned(),
                    client: client.to_owned(),
                    scheme: policy.scheme,
                    escrow,
                    total_work,
                    credited_work,
                    completed,
                    earned,
                    fee: 0,
                    to_pool: 0,
                    refund: escrow - earned,
                    parts: vec![],
                    credits_root: credits_root.clone(),
                    credits: credits.len() as u64,
                };
                match policy.scheme {
                    Scheme::Pps => s.to_pool = earned,
                    Scheme::Prop | Scheme::Pplns => {
                        let weights: Vec<(String, u64)> = if policy.scheme == Scheme::Prop {
                            credits.iter().map(|c| (c.worker.clone(), c.work)).collect()
                        } else {
                            window.clone()
                        };
                        s.fee = split::fee(earned, policy.fee_bps);
                        s.parts = split::largest_remainder(earned - s.fee, &weights);
                        if s.parts.is_empty() {
                            // Nobody did any work: nothing is earned.
                            s.fee = 0;
                            s.refund = escrow;
                            s.earned = 0;
                        }
                    }
                }
                Ok(Body::Settle(s))
            },
            |_| true,
        )?;
        match e.body {
            Body::Settle(s) => Ok(s),
            _ => Err(LedgerError::Corrupt {
                key: e.key,
                detail: "a settlement key holds another kind of entry".into(),
            }),
        }
    }

    /// The last `window` units of verified work, newest first, per worker (the
    /// oldest share counted in part so the total is exactly the window).
    fn pplns_window(&self, window: u64) -> Result<Vec<(String, u64)>, LedgerError> {
        let mut left = window;
        let mut out = vec![];
        for kv in self.tree.scan_prefix(b"j/").rev() {
            if left == 0 {
                break;
            }
            let (k, v) = kv?;
            if let Body::Share { credit, .. } =
                decode::<Entry>(&String::from_utf8_lossy(&k), &v)?.body
            {
                if credit.escrow_only {
                    continue;
                }
                let w = credit.work.min(left);
                left -= w;
                out.push((credit.worker, w));
            }
        }
        Ok(out)
    }

    /// PPLNS: records a reward earned outside the pool (for example a proving
    /// network's payment) and splits it, minus the fee, over the last
    /// `pplns_window_work` units of verified work. Idempotent on `reference`.
    pub fn add_reward(
        &self,
        amount: u64,
        reference: &str,
        policy: &Policy,
    ) -> Result<(Entry, bool), LedgerError> {
        if amount == 0 || reference.is_empty() {
            return Err(LedgerError::Invalid(
                "a reward needs an amount over 0 and a reference".into(),
            ));
        }
        let weights = self.pplns_window(policy.pplns_window_work)?;
        if weights.is_empty() {
            return Err(LedgerError::Invalid(
                "no verified work yet to share a reward over".into(),
            ));
        }
        let fee = split::fee(amount, policy.fee_bps);
        let parts = split::largest_remainder(amount - fee, &weights);
        self.append(
            format!("reward/{reference}"),
            |_| {
                Ok(Body::Reward {
                    reference: reference.to_owned(),
                    amount,
                    fee,
                    parts,
                })
            },
            |b| matches!(b, Body::Reward { amount: a, .. } if *a == amount),
        )
    }

    /// Gathers every miner balance at or over `threshold` into a new payout batch
    /// and reserves it; `None` when no balance reaches the threshold.
    pub fn plan_payouts(&self, threshold: u64) -> Result<Option<Batch>, LedgerError> {
        let threshold = threshold.max(1);
        let (batch, items) = {
            let st = self.lock();
            let mut items: Vec<PayoutItem> = st
                .balances
                .iter()
                .filter_map(|(a, &v)| {
                    let addr = a.strip_prefix("miner:")?;
                    (v >= threshold).then(|| PayoutItem {
                        addr: addr.to_owned(),
                        amount: v,
                    })
                })
                .collect();
            items.sort_by(|a, b| a.addr.cmp(&b.addr));
            (st.batches.keys().next_back().map_or(1, |b| b + 1), items)
        };
        if items.is_empty() {
            return Ok(None);
        }
        self.append(
            format!("plan/{batch}"),
            |_| {
                Ok(Body::Plan {
                    batch,
                    threshold,
                    items,
                })
            },
            |_| false,
        )?;
        Ok(self.batch(batch))
    }

    /// Records that batch `id` was paid with transaction `tx`. At most once: a
    /// retry with the same `tx` is accepted and changes nothing; another `tx`, or
    /// a voided batch, is refused.
    pub fn confirm(&self, id: u64, tx: &str) -> Result<(Batch, bool), LedgerError> {
        if tx.trim().is_empty() {
            return Err(LedgerError::Invalid(
                "confirm needs the payment's transaction reference (--tx)".into(),
            ));
        }
        let r = self.append(
            format!("confirm/{id}"),
            |_| {
                Ok(Body::Confirm {
                    batch: id,
                    tx: tx.to_owned(),
                })
            },
            |b| matches!(b, Body::Confirm { tx: t, .. } if t == tx),
        );
        let new = match r {
            Ok((_, new)) => new,
            Err(LedgerError::Conflict { .. }) => {
                let tx = match self.batch(id).map(|b| b.state) {
                    Some(BatchState::Confirmed { tx, .. }) => tx,
                    _ => String::new(),
                };
                return Err(LedgerError::BatchConfirmed { batch: id, tx });
            }
            Err(e) => return Err(e),
        };
        Ok((self.batch(id).ok_or(LedgerError::UnknownBatch(id))?, new))
    }

    /// Cancels planned batch `id`: its amounts go back to the miners' balances.
    /// A confirmed batch cannot be voided.
    pub fn void(&self, id: u64) -> Result<(Batch, bool), LedgerError> {
        let (_, new) = self.append(
            format!("void/{id}"),
            |_| Ok(Body::Void { batch: id }),
            |_| true,
        )?;
        Ok((self.batch(id).ok_or(LedgerError::UnknownBatch(id))?, new))
    }

    pub fn batch(&self, id: u64) -> Option<Batch> {
        self.lock().batches.get(&id).cloned()
    }

    /// Every payout batch, newest first.
    pub fn batches(&self) -> Vec<Batch> {
        self.lock().batches.values().rev().cloned().collect()
    }

    /// An account's balance.
    pub fn balance(&self, account: &str) -> u64 {
        self.lock().balance(account)
    }

    /// Balance, pending and paid of the payout account `addr`.
    pub fn miner_funds(&self, addr: &str) -> MinerFunds {
        let st = self.lock();
        let mut f = MinerFunds {
            balance: st.balance(&account::miner(addr)),
            ..Default::default()
        };
        for b in st.batches.values() {
            let amount = b.amount_for(addr);
            match b.state {
                BatchState::Planned => f.pending += amount,
                BatchState::Confirmed { .. } => f.paid += amount,
                BatchState::Voided { .. } => {}
            }
        }
        f
    }

    /// The totals of one worker (`ADDR.RIG`), or of every rig of an account (`ADDR`).
    pub fn totals(
        &self,
        name: &str,
    ) -> Result<(WorkTotals, BTreeMap<String, WorkTotals>), LedgerError> {
        let st = self.lock();
        let rigs: BTreeMap<String, WorkTotals> = st
            .workers
            .iter()
            .filter(|(w, _)| {
                if name.contains('.') {
                    w.as_str() == name
                } else {
                    worker_addr(w) == name && w.contains('.')
                }
            })
            .map(|(w, t)| (w.clone(), t.clone()))
            .collect();
        let mut sum = WorkTotals::default();
        for t in rigs.values() {
            sum.work = sum.work.saturating_add(t.work);
            sum.proofs += t.proofs;
            sum.shares += t.shares;
            sum.last_share_ms = sum.last_share_ms.max(t.last_share_ms);
        }
        Ok((sum, rigs))
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
        for kv in self.tree.scan_prefix(b"j/").rev().take(scan) {
            let (k, v) = kv?;
            if let Body::Share { credit, paid, .. } =
                decode::<Entry>(&String::from_utf8_lossy(&k), &v)?.body
            {
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
        let st = self.lock();
        let mut a = Audit {
            deposited: st.deposited,
            entries: st.next_seq,
            ..Default::default()
        };
        for (acct, &v) in &st.balances {
            let slot = match acct.split_once(':').map_or(acct.as_str(), |(k, _)| k) {
                "client" => &mut a.clients,
                "escrow" => &mut a.escrow,
                "miner" => &mut a.miners,
                "batch" => &mut a.pending,
                "paid" => &mut a.paid,
                _ if acct == account::FEES => &mut a.fees,
                _ => &mut a.funds,
            };
            *slot += v;
        }
        a.balanced =
            a.clients + a.escrow + a.miners + a.pending + a.paid + a.fees + a.funds == a.deposited;
        a
    }

    /// Every account with a non-zero balance, sorted.
    pub fn balances(&self) -> BTreeMap<String, u64> {
        self.lock()
            .balances
            .iter()
            .filter(|(_, &v)| v > 0)
            .map(|(a, &v)| (a.clone(), v))
            .collect()
    }
}

#[cfg(test)]
mod tests;
