//! The zkpool reward ledger: an append-only journal of value and work, its rules,
//! and its storage in sled.
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
//! One concern per module:
//! - [`account`]: the [`Account`] type and its stored names;
//! - [`entry`]: the journal's entries and the records read back;
//! - [`state`]: the derived [`State`] and every rule (no storage);
//! - [`split`]: integer splits and the fee; [`receipt`]: signed receipts and
//!   Merkle roots; [`error`]: why the ledger refused or failed;
//! - `sled` and `durable` (feature `sled`, on by default): the `Ledger` over a
//!   sled tree and the group flush. Without the feature the crate is the pure
//!   part only (what a miner needs to check receipts and settlements) and does
//!   not link sled or tokio.
//!
//! What this crate is not: it knows nothing of jobs, sessions or HTTP.

pub mod account;
pub mod entry;
pub mod error;
pub mod receipt;
pub mod split;
pub mod state;

#[cfg(feature = "sled")]
pub mod durable;
#[cfg(feature = "sled")]
pub mod sled;

pub use account::{worker_addr, Account};
pub use entry::{
    keys, Audit, Batch, BatchState, Body, Credited, Entry, JobOutcome, MinerFunds, PayoutItem,
    Policy, Scheme, Settlement, ShareCredit, Transfer, WorkTotals,
};
pub use error::LedgerError;
pub use receipt::{Receipt, ReceiptBody, Signer};
pub use split::Part;
pub use state::{State, Touched};

#[cfg(feature = "sled")]
pub use self::{durable::GroupFlush, sled::Ledger};
