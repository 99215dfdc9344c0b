//! The zkpool server: stratum sessions, the scheduler, the verifier, job results,
//! the ledger wiring and the HTTP API, and [`api::Client`], a typed client of that
//! API. It is not the command line: the `zkpool` binary (the `zkpool-cli` package
//! in `pool/cli/`) adds that, config files, logging and signals.
//!
//! Entry point: [`server::start`] takes a validated [`config::Config`] and two
//! bound listeners (so tests bind `127.0.0.1:0`) and returns a [`server::RunningPool`]
//! whose [`server::Pool`] is the hub every part is reached through.

pub mod aggregation;
pub mod api;
pub mod autopay;
pub mod bans;
pub mod circuits;
pub mod cluster;
pub mod config;
pub mod dispatch;
pub mod http;
pub mod import;
pub mod jobs;
pub mod ledger;
pub mod ledger_api;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod rates;
pub mod scheduler;
pub mod server;
pub mod session;
pub mod share;
pub mod storage;
pub mod store;
pub mod verifier;

pub use config::Config;
pub use server::{start, Pool, RunningPool};
