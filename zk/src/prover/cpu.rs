//! Which field arithmetic this build runs, and whether this CPU can run it.
//!
//! arkworks multiplies BN254 field elements with hand-written assembly (mulx,
//! adcx, adox) when ark-ff's `asm` feature is on (it is, in the workspace) and
//! the crate is *compiled* with the `bmi2` and `adx` target features; otherwise
//! with portable Rust. The choice is made at compile time, inside ark-ff, so it
//! cannot be switched at run time without compiling the whole curve stack twice
//! and calling into it through `unsafe` target-feature functions, which this
//! workspace forbids. So it is a build for such CPUs:
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+bmi2,+adx" cargo build --release -p zkpool-miner
//! ```
//!
//! and a binary built that way checks the CPU first thing ([`check`]) and
//! refuses to start on one without the instructions, with a message that says
//! so, instead of dying of SIGILL in the middle of a proof. The default build
//! stays portable.

/// True when this binary was compiled to use arkworks' assembly field
/// multiplication (x86-64 with `bmi2` and `adx` enabled at compile time).
pub const ASM: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "bmi2",
    target_feature = "adx"
));

/// Whether the CPU running this has `bmi2` and `adx`.
pub fn cpu_has_asm_features() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("bmi2") && std::arch::is_x86_feature_detected!("adx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Refuses a build for `bmi2`/`adx` CPUs on a CPU without them. Call it before
/// any proving or verification.
pub fn check() -> Result<(), String> {
    if ASM && !cpu_has_asm_features() {
        return Err("this binary was built for CPUs with the BMI2 and ADX instructions (RUSTFLAGS=\"-C target-feature=+bmi2,+adx\"), and this CPU lacks them: use a build without those flags".into());
    }
    Ok(())
}

/// One line for a benchmark or a status: which arithmetic is in use, and what
/// the CPU could run.
pub fn describe() -> String {
    match (ASM, cpu_has_asm_features()) {
        (true, _) => "field arithmetic: assembly (bmi2+adx)".into(),
        (false, true) => "field arithmetic: portable Rust; this CPU has bmi2+adx, a build with RUSTFLAGS=\"-C target-feature=+bmi2,+adx\" proves faster".into(),
        (false, false) => "field arithmetic: portable Rust (this CPU lacks bmi2/adx)".into(),
    }
}
