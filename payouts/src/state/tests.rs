//! Tests of the ledger's rules on [`State`] alone: no storage, so they run
//! without the `sled` feature.

use super::*;
use crate::account;

/// A journal that names an account which does not read back would not replay:
/// such a deposit is refused before it is written, and changes nothing.
#[test]
fn a_deposit_to_an_account_without_a_stored_name_is_refused() {
    for a in [account::client(""), account::miner(""), Account::Outside] {
        let e = deposit(&a, 5, "r").unwrap_err();
        assert!(
            e.to_string()
                .contains("is not an account a deposit can be recorded to"),
            "{a:?}: {e}"
        );
    }
    let mut st = State::default();
    let body = deposit(&account::client("acme"), 5, "r").unwrap();
    st.record(body.key(), 1, body).unwrap();
    assert_eq!(st.balance(&account::client("acme")), 5);
}
