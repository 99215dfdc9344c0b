//! What the journal records and what the ledger reports: the entry kinds and
//! the value each one moves, their idempotency keys, the reward policy, and the
//! plain records read back (settlements, batches, totals, the books).
//!
//! These are the stored and the wire formats: an entry serialises to the JSON
//! the journal holds (and `GET /v1/ledger/journal` shows), field for field.
//! Nothing here reads a balance or decides whether an entry may be recorded;
//! that is [`crate::state`].

use serde::{Deserialize, Serialize};

use crate::{account::Account, error::LedgerError, receipt::ReceiptBody, split::Part};

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

/// The idempotency keys of the entries other than shares
/// ([`ShareCredit::key`]). A key names a request, so a retry of the request
/// finds the entry its first attempt recorded.
pub mod keys {
    /// A deposit, by the payment's reference.
    pub fn deposit(reference: &str) -> String {
        format!("deposit/{reference}")
    }
    /// A job's escrow.
    pub fn escrow(job: &str) -> String {
        format!("escrow/{job}")
    }
    /// A job's settlement.
    pub fn settle(job: &str) -> String {
        format!("settle/{job}")
    }
    /// An outside reward, by its reference.
    pub fn reward(reference: &str) -> String {
        format!("reward/{reference}")
    }
    /// The plan of payout batch `batch`.
    pub fn plan(batch: u64) -> String {
        format!("plan/{batch}")
    }
    /// The confirmation of payout batch `batch`: at most one.
    pub fn confirm(batch: u64) -> String {
        format!("confirm/{batch}")
    }
    /// The void of payout batch `batch`.
    pub fn void(batch: u64) -> String {
        format!("void/{batch}")
    }

    pub fn withdraw(reference: &str) -> String {
        format!("withdraw/{reference}")
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
    /// Counts one more share.
    pub fn add(&mut self, c: &ShareCredit) {
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

/// A job that ended, as the pool reports it to be settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobOutcome<'a> {
    pub job: &'a str,
    /// The client whose escrow it is (and who gets the refund).
    pub client: &'a str,
    /// The job's total work: what its whole escrow pays for.
    pub total_work: u64,
    /// Whether every statement was proven (otherwise the job expired).
    pub completed: bool,
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
        account: Account,
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
    /// Value taken out of the books outside payout batches: the operator's
    /// fees or funds withdrawn, or a client's balance refunded.
    Withdraw {
        account: Account,
        amount: u64,
        reference: String,
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

impl Entry {
    /// The entry under a key a ledger asked for, not holding the kind that key
    /// names: the journal is corrupt.
    fn wrong_kind(self, what: &str) -> LedgerError {
        LedgerError::Corrupt {
            key: self.key,
            detail: format!("{what} key holds another kind of entry"),
        }
    }

    /// A share's entry read back as what crediting it gave (`new`: recorded now).
    pub fn into_credited(self, new: bool) -> Result<Credited, LedgerError> {
        match self.body {
            Body::Share {
                credit,
                position,
                paid,
            } => Ok(Credited {
                receipt: ReceiptBody { credit, position },
                new,
                paid,
            }),
            _ => Err(self.wrong_kind("a share")),
        }
    }

    /// A settlement's entry read back.
    pub fn into_settlement(self) -> Result<Settlement, LedgerError> {
        match self.body {
            Body::Settle(s) => Ok(s),
            _ => Err(self.wrong_kind("a settlement")),
        }
    }

    /// A plan's entry read back as its batch number.
    pub fn into_planned_batch(self) -> Result<u64, LedgerError> {
        match self.body {
            Body::Plan { batch, .. } => Ok(batch),
            _ => Err(self.wrong_kind("a plan")),
        }
    }
}

/// One move of value; `from` is [`Account::Outside`] for value entering the books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub from: Account,
    pub to: Account,
    pub amount: u64,
}

impl Body {
    /// The idempotency key this entry is recorded under.
    pub fn key(&self) -> String {
        match self {
            Body::Deposit { reference, .. } => keys::deposit(reference),
            Body::Escrow { job, .. } => keys::escrow(job),
            Body::Share { credit, .. } => credit.key(),
            Body::Settle(s) => keys::settle(&s.job),
            Body::Reward { reference, .. } => keys::reward(reference),
            Body::Plan { batch, .. } => keys::plan(*batch),
            Body::Confirm { batch, .. } => keys::confirm(*batch),
            Body::Void { batch } => keys::void(*batch),
            Body::Withdraw { reference, .. } => keys::withdraw(reference),
        }
    }

    /// The value this entry moves, in order. Confirm and void move a whole
    /// batch, which only the state knows: they give none here
    /// ([`crate::State::effects`] adds them).
    pub fn transfers(&self) -> Vec<Transfer> {
        let t = |from: Account, to: Account, amount: u64| Transfer { from, to, amount };
        match self {
            Body::Deposit {
                account, amount, ..
            } => vec![t(Account::Outside, account.clone(), *amount)],
            Body::Escrow {
                job,
                client,
                amount,
            } => vec![t(
                Account::Client(client.clone()),
                Account::Escrow(job.clone()),
                *amount,
            )],
            Body::Share { credit, paid, .. } => {
                vec![t(Account::Funds, Account::of_worker(&credit.worker), *paid)]
            }
            Body::Settle(s) => {
                let from = || Account::Escrow(s.job.clone());
                let mut v = vec![
                    t(from(), Account::Fees, s.fee),
                    t(from(), Account::Funds, s.to_pool),
                    t(from(), Account::Client(s.client.clone()), s.refund),
                ];
                for p in &s.parts {
                    v.push(t(from(), Account::of_worker(&p.worker), p.amount));
                }
                v
            }
            Body::Reward { fee, parts, .. } => {
                let mut v = vec![t(Account::Outside, Account::Fees, *fee)];
                for p in parts {
                    v.push(t(Account::Outside, Account::of_worker(&p.worker), p.amount));
                }
                v
            }
            Body::Plan { batch, items, .. } => items
                .iter()
                .map(|i| {
                    t(
                        Account::Miner(i.addr.clone()),
                        Account::Batch(*batch),
                        i.amount,
                    )
                })
                .collect(),
            Body::Withdraw {
                account, amount, ..
            } => vec![t(account.clone(), Account::Withdrawn, *amount)],
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
    /// Withdrawn or refunded outside payout batches.
    #[serde(default)]
    pub withdrawn: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The journal's JSON is what it was before accounts were typed: a deposit
    /// names its account by the stored string, and reads back the same.
    #[test]
    fn an_entry_serialises_as_the_journal_stores_it() {
        let e = Entry {
            seq: 4,
            key: keys::deposit("wire-1"),
            at_ms: 1_700_000_000_000,
            body: Body::Deposit {
                account: crate::account::client("acme"),
                amount: 1_500,
                reference: "wire-1".into(),
            },
        };
        let json = r#"{"seq":4,"key":"deposit/wire-1","at_ms":1700000000000,"kind":"deposit","account":"client:acme","amount":1500,"reference":"wire-1"}"#;
        assert_eq!(serde_json::to_string(&e).unwrap(), json);
        assert_eq!(serde_json::from_str::<Entry>(json).unwrap(), e);
        assert_eq!(e.body.key(), e.key);
        let funds = r#"{"seq":0,"key":"deposit/f","at_ms":1,"kind":"deposit","account":"pool:funds","amount":5,"reference":"f"}"#;
        let back: Entry = serde_json::from_str(funds).unwrap();
        assert!(matches!(
            back.body,
            Body::Deposit {
                account: Account::Funds,
                ..
            }
        ));
        assert_eq!(serde_json::to_string(&back).unwrap(), funds);
    }
}
