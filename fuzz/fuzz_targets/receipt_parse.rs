//! Arbitrary bytes as a stored receipt line (what `zkminer audit` reads): parsed
//! and checked against a key, or refused; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<payouts::Receipt>(data) {
        let _ = r.verify("00".repeat(32).as_str());
        let _ = r.body.leaf();
    }
});
