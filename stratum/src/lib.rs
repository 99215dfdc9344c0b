//! The `zkpool/1` wire protocol: newline-delimited JSON-RPC 2.0 over TCP.
//!
//! - [`types`]: newtypes for wire values (task ids, circuit ids, workers) and error codes.
//! - [`messages`]: every method as a typed message, and the two directions
//!   ([`ToPool`]: miner requests; [`ToMiner`]: responses and pool notifications)
//!   with their line encodings.
//! - `codec` (feature `codec`): a line codec with a hard length limit that yields a
//!   malformed line as an item to answer, not as a stream-ending error.
//! - `client` (feature `client`): the miner's half of a connection.
//! - `tls` (feature `tls`): `stratum+ssl://` with rustls: the pool's acceptor from
//!   PEM files, the miner's connector (Mozilla's roots plus an optional CA file).
//!
//! This crate knows nothing of circuits or proofs beyond their wire shape, and
//! nothing of the pool's state; it does not depend on any other zkpool crate.
//! PROTOCOL.md at the repository root is the specification.

pub mod messages;
pub mod types;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "codec")]
pub mod codec;
#[cfg(feature = "tls")]
pub mod tls;

pub use messages::*;
pub use types::*;

/// The protocol version string exchanged in `mining.subscribe`.
pub const PROTOCOL_VERSION: &str = "zkpool/1";

/// Default maximum line length in bytes, newline excluded. Larger than hash pools'
/// (4-32 KiB) because one submit carries a batch of 128-byte proofs.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
