//! Why the ledger refused an entry or failed to read or write one: the rules'
//! refusals (an overdraft, a conflicting retry, a batch in the wrong state) and
//! the storage's failures.
//!
//! The type is the same with and without the `sled` feature (a storage failure
//! is boxed), so a crate that matches on it does not break when another crate in
//! the build turns the feature on.

use crate::account::Account;

/// Why the ledger refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store (sled) failed to read or write.
    #[error("ledger storage: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An entry in the journal cannot be decoded or does not replay.
    #[error("ledger entry {key:?} is unreadable: {detail}")]
    Corrupt { key: String, detail: String },
    /// The entry would take an account below zero; nothing was written.
    #[error("{account} holds {have} but {need} is needed ({missing} short)", missing = need - have)]
    Insufficient {
        account: Account,
        have: u64,
        need: u64,
    },
    /// The idempotency key was used before for a different entry.
    #[error("{key} was already recorded with different contents ({detail}); use a new reference")]
    Conflict { key: String, detail: String },
    /// Confirm or void of a batch that was never planned.
    #[error("no payout batch {0}: `zkpool payouts list` shows the batches")]
    UnknownBatch(u64),
    /// Confirm or void of a batch that was confirmed (paid) before.
    #[error("payout batch {batch} was already confirmed with transaction {tx:?}; it is paid and cannot be voided or confirmed again")]
    BatchConfirmed { batch: u64, tx: String },
    /// Confirm or void of a batch that was voided before.
    #[error("payout batch {0} was voided; its amounts are back in the miners' balances (plan a new batch)")]
    BatchVoided(u64),
    /// A credit for a job that was settled (it ended and its escrow was paid
    /// out or refunded) before the credit was recorded; nothing was written.
    #[error("job {job} ended and was settled before this share was recorded: nothing is credited (the share came too late)")]
    JobSettled { job: String },
    /// A request the ledger cannot record as asked.
    #[error("{0}")]
    Invalid(String),
}

#[cfg(feature = "sled")]
impl From<::sled::Error> for LedgerError {
    fn from(e: ::sled::Error) -> Self {
        LedgerError::Storage(Box::new(e))
    }
}
