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

/// Credited work that adds up past `u64::MAX` counts as all of the job's
/// work (saturating), not as the little a wrapped sum would leave.
#[test]
fn credited_work_past_the_largest_amount_saturates() {
    let mut st = State::default();
    for body in [
        deposit(&account::client("c"), 1_000, "d").unwrap(),
        escrow("j", "c", 1_000),
    ] {
        st.record(body.key(), 0, body).unwrap();
    }
    let credit = |first: u64, work: u64| ReceiptBody {
        credit: ShareCredit {
            worker: format!("m{first}.r"),
            job: "j".into(),
            task: "t".into(),
            first_statement: first,
            proofs: 1,
            work,
            at_ms: 0,
            escrow_only: false,
        },
        position: first,
    };
    let job = JobOutcome {
        job: "j",
        client: "c",
        total_work: 10,
        completed: false,
    };
    let s = st.settlement(
        &job,
        &Policy::default(),
        &[credit(0, u64::MAX), credit(1, 2)],
        &[],
    );
    assert_eq!((s.credited_work, s.earned, s.refund), (u64::MAX, 1_000, 0));
}

/// A PPLNS window whose shares did no work has nobody to pay: a reward over it
/// is refused, not recorded as come in while only its fee moves.
#[test]
fn a_reward_over_a_window_without_work_is_refused() {
    let policy = Policy {
        scheme: Scheme::Pplns,
        ..Policy::default()
    };
    for window in [vec![], vec![("m.r".to_owned(), 0)]] {
        let e = reward(1_000, "r", &policy, &window).unwrap_err();
        assert!(e.to_string().contains("no verified work yet"), "{e}");
    }
    assert!(reward(1_000, "r", &policy, &[("m.r".to_owned(), 1)]).is_ok());
}
