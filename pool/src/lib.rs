//! The zkpool server: stratum sessions, the scheduler, the verifier, job results,
//! the ledger wiring and the HTTP API. The binary `zkpool` (in `main.rs`) adds the
//! command line, config files, logging and signals.
//!
//! Entry point: [`server::start`] takes a validated [`config::Config`] and two
//! bound listeners (so tests bind `127.0.0.1:0`) and returns a [`server::RunningPool`].

pub mod bans;
pub mod circuits;
pub mod cli;
pub mod config;
pub mod http;
pub mod jobs;
pub mod ledger_api;
pub mod limits;
pub mod metrics;
pub mod scheduler;
pub mod server;
pub mod session;
pub mod store;
pub mod verifier;

pub use config::Config;
pub use server::{start, RunningPool};
