//! `zkminer --config FILE`: the same settings as the flags, in TOML. A flag given
//! on the command line wins over the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A miner config file (see `deploy/zkminer.toml`). Every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MinerFile {
    /// Pools in order of preference: `stratum+tcp://HOST:PORT`.
    #[serde(default)]
    pub pools: Vec<String>,
    /// `ADDR.RIG`.
    pub worker: Option<String>,
    pub password: Option<String>,
    /// Proving threads; default every core.
    pub threads: Option<usize>,
    pub cache_dir: Option<PathBuf>,
    /// Seconds between status lines; 0 turns them off.
    pub status_interval_secs: Option<u64>,
    /// CA certificates (PEM) to trust for `stratum+ssl://` pools.
    pub tls_ca: Option<PathBuf>,
    /// External prover for circom circuits, e.g.
    /// `snarkjs groth16 prove {zkey} {wtns} {proof} {public}`.
    pub prover_cmd: Option<String>,
    /// MiB of precomputed prover tables; 0 turns precomputation off.
    pub precompute_mem_mib: Option<u64>,
    /// `compiled` (default) or `interpreted`: where circom witnesses run.
    pub witness_engine: Option<String>,
    /// The monitoring API's address (`--http`); off when absent.
    pub http: Option<std::net::SocketAddr>,
    /// Let `http` be an address other than loopback (`--http-allow-remote`).
    pub http_allow_remote: Option<bool>,
}

impl MinerFile {
    /// Reads and parses `path`; the error names the file and the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_in_deploy_parses_and_unknown_keys_are_refused() {
        let f =
            MinerFile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/zkminer.toml"))
                .unwrap();
        // The account is the user's to fill in: none is mined for by default.
        assert_eq!(f.worker, None);
        assert_eq!(f.pools.len(), 2);
        for p in &f.pools {
            crate::parse_pool_url(p).unwrap();
        }
        let e = toml::from_str::<MinerFile>("pool = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `pool`") && e.contains("pools"),
            "{e}"
        );
    }
}
