//! Ledger accounts as a type: who holds value, and the one place their stored
//! names (`client:ID`, `escrow:JOB`, `miner:ADDR`, `batch:N`, `pool:fees`,
//! `pool:funds`, `paid`, `withdrawn`) are written and read.
//!
//! The journal and the cached balances store an account by its
//! [`Display`](fmt::Display) form, so `Display` and [`FromStr`] are exact
//! inverses: every name it accepts it writes back byte for byte (a
//! non-canonical `batch:007` is refused rather than read as `batch:7`), and
//! every account with a stored name ([`Account::has_stored_name`]: not one with
//! an empty id, which names nobody) reads back from its name. Nothing else in
//! the crate builds or takes apart these strings.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where value is held. Value moves between accounts in journal entries; it
/// enters only from [`Account::Outside`] (a deposit or an outside reward).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// A client's spendable balance: `client:ID`.
    Client(String),
    /// A job's escrowed reward: `escrow:JOB`.
    Escrow(String),
    /// A miner's balance: `miner:ADDR`, the `ADDR` of its `ADDR.RIG` workers.
    Miner(String),
    /// A payout batch's reservations: `batch:N`.
    Batch(u64),
    /// The pool fee collected: `pool:fees`.
    Fees,
    /// The operator's own funds, which pay PPS shares and receive PPS jobs'
    /// rewards: `pool:funds`.
    Funds,
    /// Paid out by confirmed batches: `paid`.
    Paid,
    /// Taken out of the books outside payout batches: the operator's fees or
    /// funds withdrawn, a client's balance refunded: `withdrawn`.
    Withdrawn,
    /// Value from outside the books (deposits, outside rewards). It is a source
    /// only: it never holds a balance, and nothing can be moved to it. It is
    /// written `outside` (in messages) but never stored, so that name does not
    /// parse.
    Outside,
}

/// A client's spendable balance.
pub fn client(id: &str) -> Account {
    Account::Client(id.to_owned())
}

/// A job's escrowed reward.
pub fn escrow(job: &str) -> Account {
    Account::Escrow(job.to_owned())
}

/// A miner's balance; `addr` is the `ADDR` of `ADDR.RIG` workers.
pub fn miner(addr: &str) -> Account {
    Account::Miner(addr.to_owned())
}

/// A payout batch's reservations.
pub fn batch(id: u64) -> Account {
    Account::Batch(id)
}

/// The pool fee collected.
pub const FEES: &Account = &Account::Fees;
/// The operator's own funds: pays PPS shares, receives PPS job rewards.
pub const FUNDS: &Account = &Account::Funds;
/// Paid out by confirmed batches.
pub const PAID: &Account = &Account::Paid;
/// Withdrawn or refunded outside payout batches.
pub const WITHDRAWN: &Account = &Account::Withdrawn;

/// The payout account of a worker: `ADDR` of `ADDR.RIG`.
pub fn worker_addr(worker: &str) -> &str {
    worker.split_once('.').map_or(worker, |(a, _)| a)
}

impl Account {
    /// The miner account a worker (`ADDR.RIG`, or a bare `ADDR`) is paid to.
    pub fn of_worker(worker: &str) -> Account {
        Account::Miner(worker_addr(worker).to_owned())
    }

    /// Whether this account can be named in a stored entry: its name reads back
    /// to it. False for an empty id (`client:` names nobody) and for
    /// [`Account::Outside`], which is a source, never stored.
    pub fn has_stored_name(&self) -> bool {
        match self {
            Account::Client(id) | Account::Escrow(id) | Account::Miner(id) => !id.is_empty(),
            Account::Batch(_)
            | Account::Fees
            | Account::Funds
            | Account::Paid
            | Account::Withdrawn => true,
            Account::Outside => false,
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::Client(id) => write!(f, "client:{id}"),
            Account::Escrow(job) => write!(f, "escrow:{job}"),
            Account::Miner(addr) => write!(f, "miner:{addr}"),
            Account::Batch(n) => write!(f, "batch:{n}"),
            Account::Fees => f.write_str("pool:fees"),
            Account::Funds => f.write_str("pool:funds"),
            Account::Paid => f.write_str("paid"),
            Account::Withdrawn => f.write_str("withdrawn"),
            Account::Outside => f.write_str("outside"),
        }
    }
}

/// A name that is not an account's stored name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a ledger account (client:ID, escrow:JOB, miner:ADDR, batch:N, pool:fees, pool:funds, paid, withdrawn)")]
pub struct UnknownAccount(pub String);

impl FromStr for Account {
    type Err = UnknownAccount;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || UnknownAccount(s.to_owned());
        Ok(match s {
            "pool:fees" => Account::Fees,
            "pool:funds" => Account::Funds,
            "paid" => Account::Paid,
            "withdrawn" => Account::Withdrawn,
            _ => match s.split_once(':').ok_or_else(unknown)? {
                // An empty id names nobody: no client, job or miner has one.
                (_, "") => return Err(unknown()),
                ("client", id) => Account::Client(id.to_owned()),
                ("escrow", job) => Account::Escrow(job.to_owned()),
                ("miner", addr) => Account::Miner(addr.to_owned()),
                ("batch", n) => {
                    let id: u64 = n.parse().map_err(|_| unknown())?;
                    // Only the form Display writes: `batch:+7` or `batch:07` would
                    // not be stored back as the same bytes.
                    if id.to_string() != n {
                        return Err(unknown());
                    }
                    Account::Batch(id)
                }
                _ => return Err(unknown()),
            },
        })
    }
}

/// As its stored name (a JSON string), so entries serialise as they always did.
impl Serialize for Account {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Account {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The names stored today, exactly.
    #[test]
    fn accounts_are_written_as_they_were_stored_before() {
        let cases = [
            (client("acme"), "client:acme"),
            (escrow("j-1"), "escrow:j-1"),
            (miner("alice"), "miner:alice"),
            (batch(12), "batch:12"),
            (batch(0), "batch:0"),
            (FEES.clone(), "pool:fees"),
            (FUNDS.clone(), "pool:funds"),
            (PAID.clone(), "paid"),
            (WITHDRAWN.clone(), "withdrawn"),
            (Account::of_worker("bob.rig7"), "miner:bob"),
        ];
        for (account, name) in cases {
            assert!(account.has_stored_name(), "{name}");
            assert_eq!(account.to_string(), name);
            assert_eq!(name.parse::<Account>().unwrap(), account);
            assert_eq!(
                serde_json::to_string(&account).unwrap(),
                format!("\"{name}\"")
            );
        }
        // An id may itself hold a colon: everything after the first one is the id.
        assert_eq!(
            "client:a:b".parse::<Account>().unwrap(),
            client("a:b"),
            "the id is the rest"
        );
    }

    #[test]
    fn names_that_would_not_be_written_back_the_same_are_refused() {
        for bad in [
            "",
            ":",
            ":x",
            "pool",
            "pool:",
            "pool:other",
            "batch:",
            "batch:x",
            "batch:07",
            "batch:00",
            "batch:+7",
            "batch:-1",
            "batch: 7",
            "batch:18446744073709551616",
            "client:",
            "escrow:",
            "miner:",
            "Client:x",
            "CLIENT:x",
            " client:x",
            "wallet:x",
            "miner",
            "paid:",
            "paid:x",
            "outside",
            "outside:",
        ] {
            let e = bad.parse::<Account>().unwrap_err();
            assert!(
                e.to_string().contains("is not a ledger account"),
                "{bad}: {e}"
            );
            assert!(
                serde_json::from_str::<Account>(&serde_json::to_string(bad).unwrap()).is_err(),
                "{bad} read from JSON"
            );
        }
    }

    #[test]
    fn accounts_without_a_stored_name_are_known() {
        for a in [client(""), escrow(""), miner(""), Account::Outside] {
            assert!(!a.has_stored_name(), "{a:?}");
            assert!(a.to_string().parse::<Account>().is_err(), "{a:?}");
        }
    }

    /// Any account, ids empty or not.
    fn account() -> impl Strategy<Value = Account> {
        let id = "[a-zA-Z0-9:._-]{0,12}";
        prop_oneof![
            id.prop_map(Account::Client),
            id.prop_map(Account::Escrow),
            id.prop_map(Account::Miner),
            any::<u64>().prop_map(Account::Batch),
            (0u64..20).prop_map(Account::Batch),
            Just(Account::Fees),
            Just(Account::Funds),
            Just(Account::Paid),
            Just(Account::Outside),
        ]
    }

    proptest! {
        /// An account with a stored name reads back from it, in JSON too; one
        /// without (an empty id, `outside`) is refused rather than read as
        /// something else.
        #[test]
        fn every_account_with_a_stored_name_round_trips(a in account()) {
            let name = a.to_string();
            let json = serde_json::to_vec(&a).unwrap();
            prop_assert_eq!(json.clone(), serde_json::to_vec(&name).unwrap());
            if a.has_stored_name() {
                prop_assert_eq!(name.parse::<Account>().unwrap(), a.clone());
                prop_assert_eq!(serde_json::from_slice::<Account>(&json).unwrap(), a);
            } else {
                prop_assert!(name.parse::<Account>().is_err());
                prop_assert!(serde_json::from_slice::<Account>(&json).is_err());
            }
        }

        /// Every name that parses is written back byte for byte, and names an
        /// account with a stored name; prefixes, ids and numbers are varied
        /// around the accepted forms.
        #[test]
        fn every_accepted_name_is_written_back_unchanged(
            s in "(client|escrow|miner|batch|pool|paid|outside|Client|bat)?:?(fees|funds|[a-z0-9:+ -]{0,6})"
        ) {
            if let Ok(a) = s.parse::<Account>() {
                prop_assert_eq!(a.to_string(), s);
                prop_assert!(a.has_stored_name());
            }
        }

        /// The same for any printable string at all.
        #[test]
        fn no_string_reads_as_an_account_it_is_not(s in "\\PC{0,24}") {
            if let Ok(a) = s.parse::<Account>() {
                prop_assert_eq!(a.to_string(), s);
            }
        }

        /// A batch number is read only in the form it is written.
        #[test]
        fn batch_numbers_are_read_only_in_canonical_form(n in any::<u64>(), zeros in 1usize..3) {
            prop_assert_eq!(format!("batch:{n}").parse::<Account>().unwrap(), Account::Batch(n));
            let padded = format!("batch:{}{n}", "0".repeat(zeros));
            prop_assert!(padded.parse::<Account>().is_err(), "{}", padded);
        }
    }
}
