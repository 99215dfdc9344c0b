//! How the rig's allocator gives freed memory back to the system.
//!
//! glibc's malloc returns the free top of a heap to the system only when it is
//! larger than its trim threshold, and it raises that threshold each time a large
//! block it had mapped on its own is freed: to twice the block, up to 64 MiB.
//! Loading a key frees such blocks (the file's sections), and compiling a circom
//! witness generator and each proof's FFTs and MSMs free tens of MB of small
//! ones, so a rig kept about 25-40 MB it no longer used, and a proof's working
//! memory came on top of it (2^16 Poseidon chain: 132 MB peak against 106 MB
//! with the threshold at zero; BENCHMARKS.md "Memory and the witness, again").
//! A threshold of zero returns every free top at once; it costs a system call
//! per trim, which did not show beside a proof's time. A free top is not all:
//! a small block still in use above freed ones keeps them, so after loading a
//! key the rig also asks glibc to give back every free page ([`give_back`]).

/// Environment variable of glibc's own settings: an operator's trim threshold
/// there wins over ours.
const TUNABLES: &str = "GLIBC_TUNABLES";

/// Sets glibc's trim threshold to zero, unless the operator set one in
/// `GLIBC_TUNABLES`. Returns whether it was set. zkminer calls it first thing;
/// elsewhere than glibc it does nothing.
pub fn return_freed_memory() -> bool {
    if std::env::var(TUNABLES).is_ok_and(|t| t.contains("malloc.trim_threshold")) {
        return false;
    }
    set_trim_threshold_zero()
}

/// Gives the system every whole free page the allocator holds, wherever it is
/// in the heap. Returns whether any was given. The rig calls it after loading a
/// key: it walks the heap (milliseconds), so not after every proof.
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

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_trim_threshold_zero() -> bool {
    // SAFETY: mallopt takes two integers and no pointers; glibc takes its own
    // lock to change the setting, so it is sound with other threads allocating.
    unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_trim_threshold_zero() -> bool {
    false
}
