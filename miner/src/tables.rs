//! The prover's precomputed tables on disk, beside the proving key:
//! `{cache_dir}/{hash}.tables` next to `{cache_dir}/{hash}.pk`.
//!
//! A rig builds a key's tables once, when it first loads the key, within the
//! memory budget it was given (`--precompute-mem`), and keeps them across
//! restarts. The file is never trusted blindly: `zk::prover::Tables::read`
//! refuses one written for another key or budget, one whose SHA-256 does not
//! hold, and one whose entries do not match the key's bases; a refused file is
//! rebuilt and replaced. Past that, every proof made with tables is verified
//! before it is submitted (`zk::prover`).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::{info, warn};
use zk::{
    prover::{TablePlan, Tables},
    CircuitKeys,
};

/// What preparing a key's prover did.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Precomputation is off: arkworks proves, as before tables existed.
    Off,
    /// zkpool's prover, without tables (the budget fits none).
    NoTables,
    /// Tables read from the cache file.
    Loaded {
        bytes: u64,
        took: Duration,
        plan: String,
    },
    /// Tables built (and written to the cache file when `saved`).
    Built {
        bytes: u64,
        took: Duration,
        plan: String,
        /// Why the cache file could not be used, if there was one.
        replaced: Option<String>,
        saved: Result<(), String>,
    },
}

impl Prepared {
    /// Table bytes held in memory.
    pub fn bytes(&self) -> u64 {
        match self {
            Prepared::Loaded { bytes, .. } | Prepared::Built { bytes, .. } => *bytes,
            Prepared::Off | Prepared::NoTables => 0,
        }
    }
}

/// Logs what [`prepare`] did for the key addressed by `hash`.
pub fn log(hash: &str, p: &Prepared) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    match p {
        Prepared::Off => info!(key = %hash, "prover: arkworks (precomputation off)"),
        Prepared::NoTables => {
            info!(key = %hash, "prover: zkpool, no tables (the budget fits none)")
        }
        Prepared::Loaded { bytes, took, plan } => info!(
            key = %hash, %plan, secs = took.as_secs_f64(),
            "prover: zkpool, {:.0} MiB of tables loaded", mib(*bytes)
        ),
        Prepared::Built {
            bytes,
            took,
            plan,
            replaced,
            saved,
        } => {
            if let Some(why) = replaced {
                warn!(key = %hash, reason = %why, "the cached prover tables were refused; rebuilt them");
            }
            if let Err(e) = saved {
                warn!(key = %hash, error = %e, "cannot keep the prover tables on disk; they will be built again next start");
            }
            info!(
                key = %hash, %plan, secs = took.as_secs_f64(),
                "prover: zkpool, {:.0} MiB of tables built", mib(*bytes)
            )
        }
    }
}

/// The cache file of the key addressed by `hash`.
pub fn path(dir: &Path, hash: &str) -> PathBuf {
    dir.join(format!("{hash}.tables"))
}

/// Switches `keys` to zkpool's prover with tables within `budget` bytes (zero:
/// leaves arkworks in charge), reading them from `dir` or building and writing
/// them there. Blocking: seconds to build, run it off the async workers.
pub fn prepare(keys: &CircuitKeys, hash: &str, dir: &Path, budget: u64) -> Prepared {
    if budget == 0 {
        keys.use_arkworks();
        return Prepared::Off;
    }
    let plan = keys.table_plan(budget);
    if plan.tables.is_empty() {
        keys.use_engine(None);
        return Prepared::NoTables;
    }
    let file = path(dir, hash);
    let started = Instant::now();
    let replaced = match read(keys, hash, &plan, &file) {
        Ok(t) => {
            let bytes = t.bytes();
            keys.use_engine(Some(Arc::new(t)));
            return Prepared::Loaded {
                bytes,
                took: started.elapsed(),
                plan: plan.to_string(),
            };
        }
        Err(None) => None,
        Err(Some(why)) => Some(why),
    };
    let tables = match Tables::build(&keys.pk, hash, &plan) {
        Ok(t) => t,
        Err(e) => {
            // Tables built from the key always match it; if not, prove without.
            keys.use_engine(None);
            return Prepared::Built {
                bytes: 0,
                took: started.elapsed(),
                plan: plan.to_string(),
                replaced,
                saved: Err(e.to_string()),
            };
        }
    };
    let took = started.elapsed();
    let saved = write(&tables, &file);
    let bytes = tables.bytes();
    keys.use_engine(Some(Arc::new(tables)));
    Prepared::Built {
        bytes,
        took,
        plan: plan.to_string(),
        replaced,
        saved,
    }
}

/// The cache file's tables; `Err(None)` when there is no file, `Err(Some(why))`
/// when it was refused (it is then deleted).
fn read(
    keys: &CircuitKeys,
    hash: &str,
    plan: &TablePlan,
    file: &Path,
) -> Result<Tables, Option<String>> {
    let f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(e.to_string())),
    };
    Tables::read(
        &keys.pk,
        hash,
        plan,
        &mut std::io::BufReader::with_capacity(1 << 20, f),
    )
    .map_err(|e| {
        let _ = std::fs::remove_file(file);
        Some(e.to_string())
    })
}

/// Writes the tables atomically: a partial file, then a rename.
fn write(tables: &Tables, file: &Path) -> Result<(), String> {
    let tmp = file.with_extension("tables.partial");
    let result = (|| -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        tables.write(&mut w)?;
        std::io::Write::flush(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", file.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zk::{CircuitSpec, Fr};

    #[test]
    fn tables_are_built_once_then_loaded_and_a_bad_file_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let keys = CircuitKeys::setup_seeded(CircuitSpec::Preimage, 1).unwrap();
        let st = CircuitSpec::preimage_statement(Fr::from(5u64));
        assert_eq!(prepare(&keys, "h", dir.path(), 0), Prepared::Off);
        assert_eq!(keys.engine(), None);
        assert_eq!(prepare(&keys, "h", dir.path(), 1), Prepared::NoTables);
        assert_eq!(keys.engine(), Some(0));

        let built = prepare(&keys, "h", dir.path(), u64::MAX);
        let Prepared::Built {
            bytes,
            replaced: None,
            saved: Ok(()),
            ..
        } = built
        else {
            panic!("{built:?}")
        };
        assert!(bytes > 0 && keys.engine() == Some(bytes));
        keys.verifier
            .verify(&st.public, &keys.prove(&st).unwrap())
            .unwrap();

        let again = prepare(&keys, "h", dir.path(), u64::MAX);
        assert!(matches!(again, Prepared::Loaded { .. }), "{again:?}");
        keys.verifier
            .verify(&st.public, &keys.prove(&st).unwrap())
            .unwrap();

        // A damaged file is refused, rebuilt and replaced.
        let file = path(dir.path(), "h");
        let mut b = std::fs::read(&file).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        std::fs::write(&file, b).unwrap();
        let rebuilt = prepare(&keys, "h", dir.path(), u64::MAX);
        let Prepared::Built {
            replaced: Some(why),
            saved: Ok(()),
            ..
        } = &rebuilt
        else {
            panic!("{rebuilt:?}")
        };
        assert!(why.contains("corrupt"), "{why}");
        assert!(matches!(
            prepare(&keys, "h", dir.path(), u64::MAX),
            Prepared::Loaded { .. }
        ));
        // Another budget needs other tables: rebuilt too.
        let smaller = prepare(&keys, "h", dir.path(), bytes / 2);
        assert!(
            matches!(
                smaller,
                Prepared::Built {
                    replaced: Some(_),
                    ..
                }
            ),
            "{smaller:?}"
        );
        assert_eq!(keys.engine_failures(), 0);
    }
}
