//! How the rig gives the memory it freed back to the system.
//!
//! glibc's malloc returns a heap's free top to the system only above a trim
//! threshold, which it raises to twice any large mapped block that is freed (up
//! to 64 MiB); and a block still in use above freed ones keeps them whatever the
//! threshold. Loading a key does both: it frees the file's sections and the
//! witness compiler's working memory, and leaves the key above them. So a rig
//! kept that memory and proved on top of it. After loading a key it now asks
//! glibc for every free page back ([`give_back`]). Measured in BENCHMARKS.md
//! ("Memory given back"): 2^16 Poseidon chain 128 -> 122 MiB, 2^18 333 -> 319.
//!
//! Giving back after every free as well (glibc's trim threshold at zero, which
//! an operator sets with `GLIBC_TUNABLES=glibc.malloc.trim_threshold=0`) lowers
//! the peak further (101 and 275 MiB), but each proof then maps and faults its
//! working memory afresh: 1-2 % more CPU, in system time. A rig is paid for its
//! proofs, so that is the operator's choice, not the default.

/// Gives the system every whole free page the allocator holds, wherever it is
/// in the heap. Returns whether any was given. The rig calls it after loading a
/// key: it walks the whole heap (milliseconds), so not after every proof.
/// Elsewhere than glibc it does nothing.
pub fn give_back() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: malloc_trim takes an integer and no pointers, and locks each
    // arena while it walks it, so it is sound with other threads allocating.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}
