//! The ledger's derived state and every rule over it, with no storage: what an
//! entry would do to the balances (refused whole on an overdraft or overflow),
//! applying it, the entry each request makes (a deposit, an escrow, a PPS
//! credit, a settlement, a PPLNS reward, a payout plan, a confirmation, a
//! void) and which request under a taken idempotency key is a retry
//! ([`retry`]).
//!
//! [`State`] is what replaying the journal from the first entry gives; a store
//! keeps the journal and replays it into a `State` on open, looks a request's
//! key up and answers a taken one with [`retry`], asks [`State::effects`]
//! before it writes an entry and [`State::apply`]s it after.
//! What a rule needs from storage (a job's credit list, the recent shares of
//! the PPLNS window) is passed in, so every rule is a plain function of its
//! inputs and is tested without a database.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{
    account::{worker_addr, Account},
    entry::{
        Audit, Batch, BatchState, Body, Entry, JobOutcome, MinerFunds, PayoutItem, Policy, Scheme,
        Settlement, ShareCredit, Transfer, WorkTotals,
    },
    error::LedgerError,
    receipt::{self, ReceiptBody},
    split,
};

/// The balances an entry leaves in the accounts it touches (from
/// [`State::effects`], for [`State::apply`]).
pub type Touched = BTreeMap<Account, u64>;

/// The derived state: replayed from the journal, updated on each append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    next_seq: u64,
    deposited: u64,
    /// Every account an entry touched, zero balances included (they are cached
    /// as zero, so a replay must give them too).
    balances: HashMap<Account, u64>,
    workers: HashMap<String, WorkTotals>,
    /// Every worker's totals summed, kept as shares are applied (read on every
    /// status request: no walk over all workers under the ledger's lock).
    lifetime: WorkTotals,
    /// Next position in each job's credit list.
    positions: HashMap<String, u64>,
    /// Jobs with a settlement: no new credit is admitted for them
    /// ([`State::admits`]).
    settled: HashSet<String>,
    batches: BTreeMap<u64, Batch>,
}

impl State {
    /// The sequence number the next entry gets (the number of entries so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Everything that came in from outside.
    pub fn deposited(&self) -> u64 {
        self.deposited
    }

    pub fn balance(&self, a: &Account) -> u64 {
        self.balances.get(a).copied().unwrap_or(0)
    }

    /// Every account an entry has touched and its balance, zero included, in
    /// no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Account, u64)> + '_ {
        self.balances.iter().map(|(a, &v)| (a, v))
    }

    /// Every worker's totals, in no particular order.
    pub fn workers(&self) -> impl Iterator<Item = (&str, &WorkTotals)> + '_ {
        self.workers.iter().map(|(w, t)| (w.as_str(), t))
    }

    /// One worker's totals (zero when it has none).
    pub fn worker(&self, worker: &str) -> WorkTotals {
        self.workers.get(worker).cloned().unwrap_or_default()
    }

    /// The position the job's next credit takes in its credit list.
    pub fn next_position(&self, job: &str) -> u64 {
        self.positions.get(job).copied().unwrap_or(0)
    }

    pub fn batch(&self, id: u64) -> Option<&Batch> {
        self.batches.get(&id)
    }

    /// Every payout batch, oldest first.
    pub fn batches(&self) -> impl DoubleEndedIterator<Item = &Batch> + '_ {
        self.batches.values()
    }

    /// The balances `body` would leave, or why it cannot be recorded: an
    /// account would go below zero, a total would overflow, or a batch is not
    /// in a state that allows it. Nothing changes either way.
    pub fn effects(&self, body: &Body) -> Result<Touched, LedgerError> {
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
                        from: Account::Batch(*batch),
                        to: Account::Paid,
                        amount: b.total,
                    }),
                    (BatchState::Planned, _) => {
                        for i in &b.items {
                            transfers.push(Transfer {
                                from: Account::Batch(*batch),
                                to: Account::Miner(i.addr.clone()),
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
        if transfers.iter().any(|t| t.to == Account::Outside) {
            return Err(LedgerError::Invalid(
                "value cannot be moved out of the books: `outside` is not an account to pay into"
                    .into(),
            ));
        }
        // Value entering from outside must not overflow the running total of
        // deposits: the books' identity is checked against it.
        let inflow = transfers
            .iter()
            .filter(|t| t.from == Account::Outside)
            .try_fold(0u64, |acc, t| acc.checked_add(t.amount))
            .and_then(|inflow| self.deposited.checked_add(inflow));
        if inflow.is_none() {
            return Err(LedgerError::Invalid(
                "the amount would overflow the total deposited: amounts are at most 18446744073709551615 units in all".into(),
            ));
        }
        let mut touched = Touched::new();
        for tr in transfers.into_iter().filter(|t| t.amount > 0) {
            if tr.from != Account::Outside {
                let have = *touched
                    .entry(tr.from.clone())
                    .or_insert_with(|| self.balance(&tr.from));
                if have < tr.amount {
                    return Err(LedgerError::Insufficient {
                        account: tr.from,
                        have,
                        need: tr.amount,
                    });
                }
                touched.insert(tr.from, have - tr.amount);
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

    /// Records `entry` in the state; `touched` is what [`State::effects`] gave
    /// for its body against this same state.
    pub fn apply(&mut self, entry: &Entry, touched: Touched) {
        self.next_seq = entry.seq + 1;
        // `effects` refused anything that would overflow; a journal written before
        // that check saturates rather than wrapping.
        let inflow = entry
            .body
            .transfers()
            .iter()
            .filter(|t| t.from == Account::Outside)
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
                self.lifetime.add(credit);
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
            Body::Settle(s) => {
                self.settled.insert(s.job.clone());
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

    /// Whether a new entry `body` may be written now, beyond [`State::effects`]:
    /// a share of a job that is settled is refused, since the settlement has
    /// paid out or refunded its escrow and a later credit would be work
    /// acknowledged and never paid. Only the ledgers' write paths ask this,
    /// after an idempotency key lookup (a credit recorded before the
    /// settlement is still answered on a retry); a replay does not, so a
    /// journal written before the rule still opens.
    pub fn admits(&self, body: &Body) -> Result<(), LedgerError> {
        match body {
            Body::Share { credit, .. } if self.settled.contains(&credit.job) => {
                Err(LedgerError::JobSettled {
                    job: credit.job.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks `body` and applies it as the next entry, under `key` at `at_ms`;
    /// on a refusal nothing changes. ([`State::effects`] then
    /// [`State::apply`], for a caller with nothing to write in between.)
    pub fn record(&mut self, key: String, at_ms: u64, body: Body) -> Result<Entry, LedgerError> {
        let touched = self.effects(&body)?;
        let entry = Entry {
            seq: self.next_seq,
            key,
            at_ms,
            body,
        };
        self.apply(&entry, touched);
        Ok(entry)
    }

    /// The entry that credits share `c`, at the next position of its job's
    /// credit list, paying `paid` at once ([`pps_pay`]).
    pub fn share(&self, c: &ShareCredit, paid: u64) -> Body {
        Body::Share {
            credit: c.clone(),
            position: self.next_position(&c.job),
            paid,
        }
    }

    /// How an ended job's escrow is distributed. Its escrow is earned in full
    /// when every unit of its work was credited, else in proportion to the
    /// work credited (statements answered from proofs made before, and work
    /// not done before an expiry, are refunded). What is earned is split by the
    /// policy: by the job's `credits` (PROP), over the PPLNS `window` (see
    /// [`pplns_window`]), or to the pool's funds, which paid the shares
    /// already (PPS). Nobody's work earns nothing: all is refunded.
    pub fn settlement(
        &self,
        job: &JobOutcome<'_>,
        policy: &Policy,
        credits: &[ReceiptBody],
        window: &[(String, u64)],
    ) -> Settlement {
        let escrow = self.balance(&Account::Escrow(job.job.to_owned()));
        // Saturating, as a worker's totals are: a sum that wrapped would count
        // a job's work as almost none, and in a debug build it would panic
        // with the ledger's lock held (the sled ledger settles under it).
        let credited_work = credits
            .iter()
            .fold(0u64, |sum, c| sum.saturating_add(c.work));
        let earned = split::earned(escrow, credited_work, job.total_work);
        let mut s = Settlement {
            job: job.job.to_owned(),
            client: job.client.to_owned(),
            scheme: policy.scheme,
            escrow,
            total_work: job.total_work,
            credited_work,
            completed: job.completed,
            earned,
            fee: 0,
            to_pool: 0,
            refund: escrow - earned,
            parts: vec![],
            credits_root: credits_root(credits),
            credits: credits.len() as u64,
        };
        match policy.scheme {
            Scheme::Pps => s.to_pool = earned,
            Scheme::Prop | Scheme::Pplns => {
                let by_job: Vec<(String, u64)>;
                let weights = if policy.scheme == Scheme::Prop {
                    by_job = credits.iter().map(|c| (c.worker.clone(), c.work)).collect();
                    &by_job[..]
                } else {
                    window
                };
                s.fee = split::fee(earned, policy.fee_bps);
                s.parts = split::largest_remainder(earned - s.fee, weights);
                if s.parts.is_empty() {
                    // Nobody did any work: nothing is earned.
                    s.fee = 0;
                    s.refund = escrow;
                    s.earned = 0;
                }
            }
        }
        s
    }

    /// The next payout batch: every miner balance at or over `threshold` (at
    /// least 1), by address; `None` when no balance reaches it.
    pub fn plan(&self, threshold: u64) -> Option<Body> {
        let threshold = threshold.max(1);
        let mut items: Vec<PayoutItem> = self
            .balances
            .iter()
            .filter_map(|(a, &amount)| match a {
                Account::Miner(addr) if amount >= threshold => Some(PayoutItem {
                    addr: addr.clone(),
                    amount,
                }),
                _ => None,
            })
            .collect();
        if items.is_empty() {
            return None;
        }
        items.sort_by(|a, b| a.addr.cmp(&b.addr));
        Some(Body::Plan {
            batch: self.batches.keys().next_back().map_or(1, |b| b + 1),
            threshold,
            items,
        })
    }

    /// Balance, pending and paid of the payout account `addr`.
    pub fn miner_funds(&self, addr: &str) -> MinerFunds {
        let mut f = MinerFunds {
            balance: self.balance(&Account::Miner(addr.to_owned())),
            ..Default::default()
        };
        for b in self.batches.values() {
            let amount = b.amount_for(addr);
            match b.state {
                BatchState::Planned => f.pending += amount,
                BatchState::Confirmed { .. } => f.paid += amount,
                BatchState::Voided { .. } => {}
            }
        }
        f
    }

    /// The totals of one worker (`ADDR.RIG`), or of every rig of an account
    /// (`ADDR`): the sum, and each rig's.
    /// Every worker's verified work summed: the pool's lifetime totals, read
    /// from the journal (so they survive restarts, unlike process counters).
    pub fn lifetime(&self) -> WorkTotals {
        self.lifetime.clone()
    }

    pub fn totals(&self, name: &str) -> (WorkTotals, BTreeMap<String, WorkTotals>) {
        let rigs: BTreeMap<String, WorkTotals> = self
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
        (sum, rigs)
    }

    /// The books summed by kind of account, and whether they balance.
    pub fn audit(&self) -> Audit {
        let mut a = Audit {
            deposited: self.deposited,
            entries: self.next_seq,
            ..Default::default()
        };
        for (acct, &v) in &self.balances {
            let slot = match acct {
                Account::Client(_) => &mut a.clients,
                Account::Escrow(_) => &mut a.escrow,
                Account::Miner(_) => &mut a.miners,
                Account::Batch(_) => &mut a.pending,
                Account::Paid => &mut a.paid,
                Account::Withdrawn => &mut a.withdrawn,
                Account::Fees => &mut a.fees,
                // `effects` never credits `outside`, so it holds nothing.
                Account::Funds | Account::Outside => &mut a.funds,
            };
            *slot += v;
        }
        a.balanced =
            a.clients + a.escrow + a.miners + a.pending + a.paid + a.withdrawn + a.fees + a.funds
                == a.deposited;
        a
    }
}

/// The deposit entry: `amount` from outside into `account` (a client, or
/// `pool:funds`), `reference` naming the payment (the idempotency key, so a
/// retry is recorded once). Refused: no amount, no reference, or an account
/// that cannot be named in the journal ([`Account::has_stored_name`]).
pub fn deposit(account: &Account, amount: u64, reference: &str) -> Result<Body, LedgerError> {
    if amount == 0 {
        return Err(LedgerError::Invalid("a deposit must be more than 0".into()));
    }
    if reference.is_empty() {
        return Err(LedgerError::Invalid(
            "a deposit needs a reference (the payment's id), so a retry is recorded once".into(),
        ));
    }
    if !account.has_stored_name() {
        return Err(LedgerError::Invalid(format!(
            "{:?} is not an account a deposit can be recorded to",
            account.to_string()
        )));
    }
    Ok(Body::Deposit {
        account: account.clone(),
        amount,
        reference: reference.to_owned(),
    })
}

/// The withdrawal entry: `amount` out of `account` (the pool's fees or funds,
/// or a client's balance: a refund), `reference` naming the payment (the
/// idempotency key). Refused: no amount, no reference, or another account
/// (miners are paid through payout batches; escrow belongs to its job until it
/// settles). [`State::effects`] refuses it whole when the balance is short.
pub fn withdraw(account: &Account, amount: u64, reference: &str) -> Result<Body, LedgerError> {
    if amount == 0 {
        return Err(LedgerError::Invalid(
            "a withdrawal must be more than 0".into(),
        ));
    }
    if reference.is_empty() {
        return Err(LedgerError::Invalid(
            "a withdrawal needs a reference (the payment's id), so a retry is recorded once".into(),
        ));
    }
    match account {
        Account::Fees | Account::Funds => {}
        Account::Client(id) if !id.is_empty() => {}
        other => {
            return Err(LedgerError::Invalid(format!(
                "{other} cannot be withdrawn from: only pool:fees, pool:funds and client balances can (miners are paid through payout batches, escrow settles with its job)"
            )))
        }
    }
    Ok(Body::Withdraw {
        account: account.clone(),
        amount,
        reference: reference.to_owned(),
    })
}

/// The entry that moves a job's reward from its client's balance into escrow
/// ([`State::effects`] refuses it whole when the balance is short).
pub fn escrow(job: &str, client: &str, amount: u64) -> Body {
    Body::Escrow {
        job: job.to_owned(),
        client: client.to_owned(),
        amount,
    }
}

/// The entry that records payout batch `batch` as paid by transaction `tx`.
pub fn confirm(batch: u64, tx: &str) -> Result<Body, LedgerError> {
    if tx.trim().is_empty() {
        return Err(LedgerError::Invalid(
            "confirm needs the payment's transaction reference (--tx)".into(),
        ));
    }
    Ok(Body::Confirm {
        batch,
        tx: tx.to_owned(),
    })
}

/// The entry that cancels payout batch `batch`.
pub fn void(batch: u64) -> Body {
    Body::Void { batch }
}

/// The answer to a `request` whose idempotency key ([`Body::key`]) already
/// holds `recorded`: the recorded entry, unchanged, when the request is the
/// same one again (a retry), else why it cannot be recorded. Nothing is
/// recorded either way.
///
/// Which requests are the same: a deposit, an escrow or a withdrawal with every
/// field equal;
/// any share, settlement or void under the key (the key is the whole request);
/// a reward of the same amount; a confirmation with the same transaction
/// (another one is refused as [`LedgerError::BatchConfirmed`]). A plan is never
/// a retry: each plan is a new batch.
pub fn retry(recorded: Entry, request: &Body) -> Result<Entry, LedgerError> {
    let same = match (request, &recorded.body) {
        (Body::Deposit { .. } | Body::Escrow { .. } | Body::Withdraw { .. }, r) => request == r,
        (Body::Share { .. } | Body::Settle(_) | Body::Void { .. }, _) => true,
        (Body::Reward { amount, .. }, Body::Reward { amount: a, .. }) => a == amount,
        (Body::Reward { .. }, _) | (Body::Plan { .. }, _) => false,
        (Body::Confirm { batch, tx }, r) => {
            return match r {
                Body::Confirm { tx: t, .. } if t == tx => Ok(recorded),
                Body::Confirm { tx: t, .. } => Err(LedgerError::BatchConfirmed {
                    batch: *batch,
                    tx: t.clone(),
                }),
                _ => Err(LedgerError::BatchConfirmed {
                    batch: *batch,
                    tx: String::new(),
                }),
            };
        }
    };
    if same {
        Ok(recorded)
    } else {
        Err(LedgerError::Conflict {
            key: request.key(),
            detail: "a retry must repeat the same amounts".into(),
        })
    }
}

/// What PPS pays at once for share `c`: `work x price / 10^6` from the pool's
/// funds; nothing under the other schemes, or for work the pool was not paid
/// for (`escrow_only`).
pub fn pps_pay(c: &ShareCredit, policy: &Policy) -> Result<u64, LedgerError> {
    match policy.scheme {
        Scheme::Pps if !c.escrow_only => {
            u64::try_from(c.work as u128 * policy.pps_price_per_mwork as u128 / 1_000_000)
                .map_err(|_| LedgerError::Invalid("a PPS payment would overflow".into()))
        }
        _ => Ok(0),
    }
}

/// The PPLNS window: the last `window` units of pooled work, per worker, from
/// shares given newest first (the oldest share counted in part so the total is
/// exactly the window when there is enough work). Work the pool was not paid
/// for (`escrow_only`) is skipped. Stops taking shares once the window is full.
pub fn pplns_window(
    window: u64,
    newest_first: impl IntoIterator<Item = ShareCredit>,
) -> Vec<(String, u64)> {
    let mut left = window;
    let mut out = vec![];
    let mut shares = newest_first.into_iter();
    while left > 0 {
        let Some(credit) = shares.next() else { break };
        if credit.escrow_only {
            continue;
        }
        let w = credit.work.min(left);
        left -= w;
        out.push((credit.worker, w));
    }
    out
}

/// PPLNS: the entry that records a reward of `amount` earned outside the pool
/// (`reference` names the payment) and splits it, minus the fee, over the
/// `window` ([`pplns_window`]).
pub fn reward(
    amount: u64,
    reference: &str,
    policy: &Policy,
    window: &[(String, u64)],
) -> Result<Body, LedgerError> {
    if amount == 0 || reference.is_empty() {
        return Err(LedgerError::Invalid(
            "a reward needs an amount over 0 and a reference".into(),
        ));
    }
    // A window of shares that did no work would split the reward over nobody:
    // the entry would say `amount` came in and move only the fee.
    if window.iter().all(|(_, work)| *work == 0) {
        return Err(LedgerError::Invalid(
            "no verified work yet to share a reward over".into(),
        ));
    }
    let fee = split::fee(amount, policy.fee_bps);
    Ok(Body::Reward {
        reference: reference.to_owned(),
        amount,
        fee,
        parts: split::largest_remainder(amount - fee, window),
    })
}

/// The Merkle root of a job's credit list, hex.
pub fn credits_root(credits: &[ReceiptBody]) -> String {
    hex::encode(receipt::merkle_root(
        &credits.iter().map(|c| c.leaf()).collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests;
