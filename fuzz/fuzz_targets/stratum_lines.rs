//! Arbitrary bytes, split at arbitrary points, into the stratum line codec in both
//! directions: it yields messages or answerable `Malformed` items, or refuses the
//! connection (over-long line, not UTF-8); it never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| (*b as usize % 64) + 1);
    let chunks = [split, 1, 7, 64];
    let _ = stratum::codec::decode_chunked::<stratum::ToPool>(256, data, &chunks);
    let _ = stratum::codec::decode_chunked::<stratum::ToMiner>(256, data, &chunks);
});
