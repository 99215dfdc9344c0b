//! zkminer's allocator setting (`miner::memory`): memory a rig frees goes back to
//! the system, even after glibc has raised its thresholds by freeing a large
//! block, which is what loading a key does. Its own test binary, so no other
//! test's allocations share the heap being measured.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

/// This process's resident memory, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a VmRSS line");
    kb << 10
}

#[test]
fn a_rig_gives_back_what_it_freed_after_loading_a_key() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc.trim_threshold")) {
        // The operator's setting wins: zkminer leaves it alone.
        assert!(!miner::memory::return_freed_memory());
        return;
    }
    assert!(
        miner::memory::return_freed_memory(),
        "glibc refused the setting"
    );

    // A key file's section, read whole and freed: by default glibc then keeps
    // up to 64 MiB of free heap instead of returning it.
    let section = vec![7u8; 32 << 20];
    assert_eq!(section.iter().map(|&b| b as u64).sum::<u64>(), 7 << 25);
    drop(section);

    // A compiler's or a proof's many small blocks.
    const MIB: usize = 48;
    let before = resident();
    let blocks: Vec<Box<[u8; 1024]>> = (0..MIB << 10).map(|i| Box::new([i as u8; 1024])).collect();
    let held = resident();
    assert!(
        held >= before + ((MIB as u64 - 8) << 20),
        "the blocks were not resident: {before} -> {held} bytes"
    );
    drop(blocks);
    // What the rig does after loading a key: whatever the layout left behind
    // (a small block still in use above the freed ones keeps a free top).
    miner::memory::give_back();
    let after = resident();
    assert!(
        after + ((MIB as u64 - 8) << 20) <= held,
        "freed memory stayed resident: {held} bytes holding the blocks, {after} after freeing them"
    );
}
