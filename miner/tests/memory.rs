//! zkminer's allocator setting (`miner::memory`): memory a rig frees goes back to
//! the system, even where a block still in use sits above the freed ones, which
//! is how loading a key leaves the heap. Its own test binary, so no other test's
//! allocations share the heap being measured.

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

const MIB: u64 = 1 << 20;

#[test]
fn a_rig_gives_back_what_it_freed_under_a_block_still_in_use() {
    // A compiler's or a loader's many small blocks (the list itself is one
    // mapped block of 384 KiB, apart from the heap)...
    const BLOCKS: usize = 48 << 10;
    let mut blocks: Vec<Box<[u8; 1024]>> = Vec::with_capacity(BLOCKS);
    for i in 0..BLOCKS {
        blocks.push(Box::new([i as u8; 1024]));
    }
    // ...and above them a block that stays: what the key is to the loader.
    let kept = vec![7u8; 64 << 10];
    let held = resident();
    drop(blocks);
    let freed = resident();
    assert!(
        freed + 8 * MIB > held,
        "the freed blocks were given back by themselves ({held} -> {freed} bytes): the block kept above them did not hold them, so this test shows nothing"
    );

    assert!(miner::memory::give_back(), "glibc gave nothing back");
    let after = resident();
    assert!(
        after + 40 * MIB <= freed,
        "freed memory stayed resident: {freed} bytes before giving back, {after} after"
    );
    assert_eq!(kept.iter().map(|&b| b as u64).sum::<u64>(), 7 << 16);
}

/// The miner crate denies `unsafe` rather than forbidding it, so that
/// `memory` can allow it for its one glibc call: nowhere else may.
#[test]
fn only_the_allocator_setting_uses_unsafe() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = vec![];
    let mut dirs = vec![src.join("src"), src.join("examples"), src.join("tests")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("a source directory")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                let allows = text.matches(concat!("allow(", "unsafe_code)")).count();
                if allows > 0 {
                    found.push((
                        path.strip_prefix(src).unwrap().display().to_string(),
                        allows,
                    ));
                }
            }
        }
    }
    assert_eq!(found, vec![("src/memory.rs".to_owned(), 1)]);
}
