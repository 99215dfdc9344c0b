//! Integer splits: an amount shared out by weight so that the parts add up to the
//! amount exactly (largest remainder), and the pool fee.

use serde::{Deserialize, Serialize};

/// One recipient's part of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The worker (`ADDR.RIG`) whose work earned this part; it is paid to `ADDR`.
    pub worker: String,
    /// The work it is weighted by.
    pub work: u64,
    /// Its share of the amount, in the smallest unit.
    pub amount: u64,
}

/// Splits `amount` over `weights` (name, work) in proportion to work.
///
/// Each part gets `floor(amount x work / total)`; the units left over go one each
/// to the parts with the largest remainders, ties to the name that sorts first.
/// The parts always add up to `amount` when the total work is non-zero; with no
/// work there is nobody to pay and the result is empty. Names are merged first, so
/// the same worker given twice is one part.
pub fn largest_remainder(amount: u64, weights: &[(String, u64)]) -> Vec<Part> {
    let mut merged: std::collections::BTreeMap<&str, u64> = Default::default();
    for (w, work) in weights {
        if *work > 0 {
            let m = merged.entry(w.as_str()).or_default();
            *m = m.saturating_add(*work);
        }
    }
    let total: u128 = merged.values().map(|&w| w as u128).sum();
    if total == 0 {
        return vec![];
    }
    let mut parts: Vec<(Part, u128)> = merged
        .into_iter()
        .map(|(worker, work)| {
            let exact = amount as u128 * work as u128;
            (
                Part {
                    worker: worker.to_owned(),
                    work,
                    amount: (exact / total) as u64,
                },
                exact % total,
            )
        })
        .collect();
    let given: u64 = parts.iter().map(|(p, _)| p.amount).sum();
    let left = (amount - given) as usize;
    // Leftover < number of parts, since each floor loses less than one unit.
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[b].1.cmp(&parts[a].1).then(a.cmp(&b)));
    for &i in order.iter().take(left) {
        parts[i].0.amount += 1;
    }
    parts.into_iter().map(|(p, _)| p).collect()
}

/// The pool fee on `amount` at `fee_bps` basis points (1 % = 100), rounded down.
pub fn fee(amount: u64, fee_bps: u32) -> u64 {
    (amount as u128 * fee_bps.min(10_000) as u128 / 10_000) as u64
}

/// `amount x part / whole`, rounded down (0 when `whole` is 0).
pub fn pro_rata(amount: u64, part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    (amount as u128 * part.min(whole) as u128 / whole as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(n, x)| (n.to_string(), *x)).collect()
    }

    #[test]
    fn worked_example_from_the_readme() {
        // 990 units over work 2:1 -> 660 / 330; 1000 over 1:1:1 -> 334/333/333.
        let p = largest_remainder(990, &w(&[("a.r", 2), ("b.r", 1)]));
        assert_eq!(
            p.iter().map(|p| p.amount).collect::<Vec<_>>(),
            vec![660, 330]
        );
        let p = largest_remainder(1000, &w(&[("a.r", 1), ("b.r", 1), ("c.r", 1)]));
        assert_eq!(
            p.iter().map(|p| p.amount).collect::<Vec<_>>(),
            vec![334, 333, 333]
        );
        assert_eq!(fee(1000, 100), 10);
        assert!(largest_remainder(5, &w(&[("a.r", 0)])).is_empty());
    }

    proptest! {
        /// Parts add up to the amount, each is within one unit of its exact share,
        /// and the result does not depend on the order of the input.
        #[test]
        fn parts_add_up_and_are_fair(amount in 0u64..u64::MAX / 2, ws in proptest::collection::vec(0u64..1_000_000, 1..20)) {
            let weights: Vec<(String, u64)> = ws.iter().enumerate().map(|(i, x)| (format!("w{i:02}.r"), *x)).collect();
            let parts = largest_remainder(amount, &weights);
            let total: u128 = ws.iter().map(|&x| x as u128).sum();
            if total == 0 {
                prop_assert!(parts.is_empty());
            } else {
                prop_assert_eq!(parts.iter().map(|p| p.amount as u128).sum::<u128>(), amount as u128);
                for p in &parts {
                    let lo = (amount as u128 * p.work as u128).checked_div(total).unwrap();
                    prop_assert!(p.amount as u128 == lo || p.amount as u128 == lo + 1);
                }
                let mut reversed = weights.clone();
                reversed.reverse();
                prop_assert_eq!(largest_remainder(amount, &reversed), parts);
            }
        }
    }
}
