//! How the operator and client commands print what the API answers for a person:
//! aligned tables, dates in UTC instead of epoch milliseconds, amounts in the
//! pool's unit with its decimals and thousands separators. `--json` on those
//! commands prints the API's answer as is (integers in the smallest unit).

use serde_json::Value;

/// A whole number grouped by thousands: `5,000,000`.
pub fn amount(v: u64) -> String {
    group(&v.to_string())
}

fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// [`amount`] of a JSON number, `-` where there is none.
pub fn amount_of(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), amount)
}

/// What the pool counts money in (`payouts.unit` and `payouts.decimals` in its
/// config, as `GET /v1/status` says): amounts are shown as `1,234.500000 ZKP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub decimals: u32,
}

impl Unit {
    /// The pool's unit; a pool too old to say shows bare integers in "the
    /// smallest unit".
    pub async fn of(api: &pool::api::Client) -> anyhow::Result<Unit> {
        let status = api.get("/v1/status").await?;
        let p = &status["payouts"];
        Ok(match (p["unit"].as_str(), p["decimals"].as_u64()) {
            (Some(name), Some(d)) if d <= 18 => Unit {
                name: name.to_owned(),
                decimals: d as u32,
            },
            _ => Unit {
                name: "(smallest unit)".to_owned(),
                decimals: 0,
            },
        })
    }

    /// `amount` (in the smallest unit) with the unit's decimals and name, by
    /// integer arithmetic: 1500000 with 6 decimals is `1.500000 ZKP`.
    pub fn amount(&self, amount: u64) -> String {
        let plain = pool::config::format_amount(amount, self.decimals);
        let (whole, frac) = plain.split_once('.').unwrap_or((&plain, ""));
        let mut out = group(whole);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        format!("{out} {}", self.name)
    }

    /// [`Unit::amount`] of a JSON number, `-` where there is none.
    pub fn amount_of(&self, v: &Value) -> String {
        v.as_u64()
            .map_or_else(|| "-".to_owned(), |a| self.amount(a))
    }
}

/// Milliseconds since the Unix epoch as `2026-05-01 12:34:56 UTC`.
pub fn date(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// [`date`] of a JSON number, `-` where there is none.
pub fn date_of(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".to_owned(), date)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A JSON string as text, `-` where there is none.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Rows printed under a header with each column as wide as its widest cell;
/// columns named in `right` (amounts) are right-aligned.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A column whose name starts with `>` is right-aligned (the `>` is not shown).
    pub fn new(columns: &[&'static str]) -> Self {
        Self {
            header: columns.iter().map(|c| c.trim_start_matches('>')).collect(),
            right: columns.iter().map(|c| c.starts_with('>')).collect(),
            rows: vec![],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let mut width: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            let parts: Vec<String> = cells
                .zip(&width)
                .zip(&self.right)
                .map(|((c, &w), &right)| {
                    if right {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_owned() + "\n"
        };
        let mut out = line(&mut self.header.iter().copied());
        for row in &self.rows {
            out += &line(&mut row.iter().map(String::as_str));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_grouped_by_thousands() {
        assert_eq!(amount(0), "0");
        assert_eq!(amount(999), "999");
        assert_eq!(amount(1000), "1,000");
        assert_eq!(amount(999_999), "999,999");
        assert_eq!(amount(5_000_000), "5,000,000");
        assert_eq!(amount(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn amounts_carry_the_units_decimals_and_name() {
        let zkp = Unit {
            name: "ZKP".into(),
            decimals: 6,
        };
        assert_eq!(zkp.amount(0), "0.000000 ZKP");
        assert_eq!(zkp.amount(7), "0.000007 ZKP");
        assert_eq!(zkp.amount(1_500_000), "1.500000 ZKP");
        assert_eq!(zkp.amount(1_234_567_890_123), "1,234,567.890123 ZKP");
        assert_eq!(zkp.amount_of(&Value::Null), "-");
        let whole = Unit {
            name: "sat".into(),
            decimals: 0,
        };
        assert_eq!(whole.amount(5_000_000), "5,000,000 sat");
        let fine = Unit {
            name: "WEI".into(),
            decimals: 18,
        };
        assert_eq!(fine.amount(u64::MAX), "18.446744073709551615 WEI");
    }

    #[test]
    fn dates_are_utc_calendar_times() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 (a leap day in a year divisible by 400), 12:34:56.789.
        assert_eq!(date(951_827_696_789), "2000-02-29 12:34:56 UTC");
        assert_eq!(date(1_767_225_599_000), "2025-12-31 23:59:59 UTC");
    }

    #[test]
    fn a_table_aligns_its_columns() {
        let mut t = Table::new(&["client", ">balance"]);
        t.row(vec!["acme".into(), amount(5_000_000)]);
        t.row(vec!["b".into(), amount(7)]);
        assert_eq!(
            t.render(),
            "client    balance\nacme    5,000,000\nb               7\n"
        );
    }
}
