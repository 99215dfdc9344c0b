//! Arbitrary bytes as a submitted proof (raw and as hex text): decoding with full
//! point validation returns a proof or `Malformed`; it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zk::ProofBytes(data.to_vec()).decode();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = zk::ProofBytes::from_hex(text) {
            let _ = p.decode();
        }
    }
});
