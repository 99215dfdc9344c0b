//! Arbitrary bytes as a gnark verifying key and as a gnark proof: decoded with
//! point and subgroup validation, or refused with an error; never a panic.
//! Seed the corpus with zk/tests/fixtures/gnark/*.bin for deep coverage.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zk::gnark::decode_vk(data);
    let _ = zk::gnark::decode_proof(data);
});
