//! The money: every movement of value the pool records (deposits, escrows,
//! credits, settlements, rewards, payout batches), behind one trait ([`Ledger`])
//! so the embedded sled ledger ([`SledLedger`], the `payouts` crate's journal)
//! and the PostgreSQL one ([`PgLedger`]) stand in for each other. The rules (what a settlement
//! pays, who a reward is split over, the no-overdraft rule) are the `payouts`
//! crate's, the same for every backend.
//!
//! Architecture Invariant: an entry is recorded at most once per idempotency key,
//! and is durable only after [`Ledger::flush`].

pub mod pg;

use std::collections::BTreeMap;

use async_trait::async_trait;
use payouts::{
    Account, Audit, Batch, Credited, Entry, LedgerError, MinerFunds, Policy, ReceiptBody,
    Settlement, ShareCredit, WorkTotals,
};

/// What became of a share given with its proofs
/// ([`Ledger::credit_with_proofs`]).
#[derive(Debug)]
pub enum ShareOutcome {
    Credited(Credited),
    /// These statements had a proof stored already: nothing was recorded.
    Taken(Vec<u64>),
}

/// The pool's books. Every method may touch the disk or a database.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Makes every entry so far durable.
    async fn flush(&self) -> Result<(), LedgerError>;
    /// Value from outside to `account` (a client, or the pool's funds);
    /// idempotent on `reference`. Returns the entry and whether it is new.
    async fn deposit(
        &self,
        account: &Account,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError>;
    /// Value out of the books from `account` (the pool's fees or funds, or a
    /// client's balance: a refund); idempotent on `reference`.
    async fn withdraw(
        &self,
        account: &Account,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError>;
    /// A job's reward from its client's balance into escrow.
    async fn escrow(
        &self,
        job: &str,
        client: &str,
        amount: u64,
    ) -> Result<(Entry, bool), LedgerError>;
    /// Transactions committed since open, where the ledger counts them
    /// (PostgreSQL); `None` for sled, whose writes share flushes instead.
    fn commits(&self) -> Option<u64> {
        None
    }
    /// A verified share (idempotent on job and first statement).
    async fn credit(&self, c: &ShareCredit, policy: &Policy) -> Result<Credited, LedgerError>;
    /// Whether [`Ledger::credit_with_proofs`] stores a share's proofs and
    /// marks with its credit (PostgreSQL: the ledger and the store share the
    /// database). False for sled: the caller stores them itself.
    fn stores_proofs(&self) -> bool {
        false
    }
    /// A verified share's credit, its proofs (`(statement, stored record)`)
    /// and its statements' proven marks (`(statement key, proof)`, see
    /// `Store::mark_proven`) in one transaction, where the ledger and the store
    /// share a database (PostgreSQL): a proof is never stored without its
    /// credit, nor a credit without its proofs, and when a proof of any of the
    /// statements is stored already (another pool process proved it first)
    /// nothing is recorded and those statements come back. `None`: this ledger
    /// cannot (sled); the caller stores the proofs itself, then credits.
    async fn credit_with_proofs(
        &self,
        _c: &ShareCredit,
        _policy: &Policy,
        _proofs: Vec<(u64, String)>,
        _marks: Vec<(String, Vec<u8>)>,
    ) -> Option<Result<ShareOutcome, LedgerError>> {
        None
    }
    /// Settles a finished job (idempotent).
    async fn settle(
        &self,
        job: &str,
        client: &str,
        total_work: u64,
        completed: bool,
        policy: &Policy,
    ) -> Result<Settlement, LedgerError>;
    async fn settlement(&self, job: &str) -> Result<Option<Settlement>, LedgerError>;
    /// A job's credit list, in position order.
    async fn job_credits(&self, job: &str) -> Result<Vec<ReceiptBody>, LedgerError>;
    /// A reward earned outside the pool, spread over the PPLNS window.
    async fn add_reward(
        &self,
        amount: u64,
        reference: &str,
        policy: &Policy,
    ) -> Result<(Entry, bool), LedgerError>;
    /// Reserves every miner balance at or over `threshold` into a new batch.
    async fn plan_payouts(&self, threshold: u64) -> Result<Option<Batch>, LedgerError>;
    async fn confirm(&self, id: u64, tx: &str) -> Result<(Batch, bool), LedgerError>;
    async fn void(&self, id: u64) -> Result<(Batch, bool), LedgerError>;
    async fn batch(&self, id: u64) -> Result<Option<Batch>, LedgerError>;
    async fn batches(&self) -> Result<Vec<Batch>, LedgerError>;
    async fn balance(&self, account: &Account) -> Result<u64, LedgerError>;
    /// Every account with a balance.
    async fn balances(&self) -> Result<BTreeMap<Account, u64>, LedgerError>;
    async fn miner_funds(&self, addr: &str) -> Result<MinerFunds, LedgerError>;
    /// A worker's (or an account's) verified work, and per rig.
    async fn totals(
        &self,
        name: &str,
    ) -> Result<(WorkTotals, BTreeMap<String, WorkTotals>), LedgerError>;
    /// Every worker's verified work summed, since the books began.
    async fn lifetime(&self) -> Result<WorkTotals, LedgerError>;
    /// The latest shares of a worker or account (`""`: anyone), with what PPS paid.
    async fn recent_shares(
        &self,
        name: &str,
        limit: usize,
        scan: usize,
    ) -> Result<Vec<(ShareCredit, u64)>, LedgerError>;
    /// The books: totals per kind of account and whether they balance.
    async fn audit(&self) -> Result<Audit, LedgerError>;
    /// Journal entries from sequence number `from`.
    async fn journal(&self, from: u64, limit: usize) -> Result<Vec<Entry>, LedgerError>;
    /// The entry recorded under an idempotency key.
    async fn journal_entry(&self, key: &str) -> Result<Option<Entry>, LedgerError>;
}

pub use self::pg::PgLedger;

/// The `payouts` crate's sled journal, in the store's database.
pub struct SledLedger(pub payouts::Ledger);

#[async_trait]
impl Ledger for SledLedger {
    async fn flush(&self) -> Result<(), LedgerError> {
        self.0.flush().await
    }
    async fn deposit(
        &self,
        account: &Account,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError> {
        self.0.deposit(account, amount, reference)
    }
    async fn withdraw(
        &self,
        account: &Account,
        amount: u64,
        reference: &str,
    ) -> Result<(Entry, bool), LedgerError> {
        self.0.withdraw(account, amount, reference)
    }
    async fn escrow(
        &self,
        job: &str,
        client: &str,
        amount: u64,
    ) -> Result<(Entry, bool), LedgerError> {
        self.0.escrow(job, client, amount)
    }
    async fn credit(&self, c: &ShareCredit, policy: &Policy) -> Result<Credited, LedgerError> {
        self.0.credit(c, policy)
    }
    async fn settle(
        &self,
        job: &str,
        client: &str,
        total_work: u64,
        completed: bool,
        policy: &Policy,
    ) -> Result<Settlement, LedgerError> {
        self.0.settle(job, client, total_work, completed, policy)
    }
    async fn settlement(&self, job: &str) -> Result<Option<Settlement>, LedgerError> {
        self.0.settlement(job)
    }
    async fn job_credits(&self, job: &str) -> Result<Vec<ReceiptBody>, LedgerError> {
        self.0.job_credits(job)
    }
    async fn add_reward(
        &self,
        amount: u64,
        reference: &str,
        policy: &Policy,
    ) -> Result<(Entry, bool), LedgerError> {
        self.0.add_reward(amount, reference, policy)
    }
    async fn plan_payouts(&self, threshold: u64) -> Result<Option<Batch>, LedgerError> {
        self.0.plan_payouts(threshold)
    }
    async fn confirm(&self, id: u64, tx: &str) -> Result<(Batch, bool), LedgerError> {
        self.0.confirm(id, tx)
    }
    async fn void(&self, id: u64) -> Result<(Batch, bool), LedgerError> {
        self.0.void(id)
    }
    async fn batch(&self, id: u64) -> Result<Option<Batch>, LedgerError> {
        Ok(self.0.batch(id))
    }
    async fn batches(&self) -> Result<Vec<Batch>, LedgerError> {
        Ok(self.0.batches())
    }
    async fn balance(&self, account: &Account) -> Result<u64, LedgerError> {
        Ok(self.0.balance(account))
    }
    async fn balances(&self) -> Result<BTreeMap<Account, u64>, LedgerError> {
        Ok(self.0.accounts())
    }
    async fn miner_funds(&self, addr: &str) -> Result<MinerFunds, LedgerError> {
        Ok(self.0.miner_funds(addr))
    }
    async fn totals(
        &self,
        name: &str,
    ) -> Result<(WorkTotals, BTreeMap<String, WorkTotals>), LedgerError> {
        self.0.totals(name)
    }
    async fn lifetime(&self) -> Result<WorkTotals, LedgerError> {
        Ok(self.0.lifetime())
    }
    async fn recent_shares(
        &self,
        name: &str,
        limit: usize,
        scan: usize,
    ) -> Result<Vec<(ShareCredit, u64)>, LedgerError> {
        self.0.recent_shares(name, limit, scan)
    }
    async fn audit(&self) -> Result<Audit, LedgerError> {
        Ok(self.0.audit())
    }
    async fn journal(&self, from: u64, limit: usize) -> Result<Vec<Entry>, LedgerError> {
        self.0.journal(from, limit)
    }
    async fn journal_entry(&self, key: &str) -> Result<Option<Entry>, LedgerError> {
        self.0.journal_entry(key)
    }
}
