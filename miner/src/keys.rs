//! The proving-key cache: memory, then `{cache_dir}/{hash}.pk`, then a download
//! from the pool. Every key is checked against the hash the pool announced before
//! use; a cached file that fails the check is deleted and fetched again.
//!
//! The pool is not trusted with the file system or the rig's memory: a key hash
//! must be 64 hex digits before it names a file (so `../` cannot), and a download
//! stops at the size the pool announced, which must be under `MAX_KEY_BYTES`.
//!
//! With a precomputation budget, a key's prover tables are read from (or built
//! and written to) `{cache_dir}/{hash}.tables` when the key is first loaded
//! (see [`crate::tables`]); the budget is shared by all the keys a rig loads.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use tokio::sync::Mutex;
use tracing::{info, warn};
use zk::{CircuitKeys, CircuitSpec, KeyError};

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    #[error("download of {url} failed: {detail}")]
    Download { url: String, detail: String },
    #[error("key from {url}: {source}")]
    Bad { url: String, source: KeyError },
    #[error("key cache file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The task names a key this rig refuses to fetch.
    #[error("refusing the proving key: {0}")]
    Refused(String),
}

/// The largest proving key a rig downloads (a circuit of tens of millions of
/// constraints); a pool announcing more is refused.
pub const MAX_KEY_BYTES: u64 = 4 << 30;

/// Whether `hash` has the form of a key hash: 64 lowercase hex digits.
pub fn is_key_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub struct KeyCache {
    dir: PathBuf,
    http: reqwest::Client,
    /// One lock for the map: concurrent requests for one key download it once.
    loaded: Mutex<HashMap<String, Arc<CircuitKeys>>>,
    precompute: Option<Precompute>,
    witness: zk::circom::witness::Engine,
}

/// The prover tables' memory budget and the threads that build them.
struct Precompute {
    budget: u64,
    spent: AtomicU64,
    threads: Arc<rayon::ThreadPool>,
}

impl KeyCache {
    pub fn new(dir: PathBuf) -> Self {
        Self::with_http(dir, reqwest::Client::new())
    }

    /// A cache that downloads with `http` (for example one trusting a private CA).
    pub fn with_http(dir: PathBuf, http: reqwest::Client) -> Self {
        KeyCache {
            dir,
            http,
            loaded: Mutex::new(HashMap::new()),
            precompute: None,
            witness: Default::default(),
        }
    }

    /// Computes circom witnesses in `engine` (default: compiled).
    pub fn with_witness_engine(mut self, engine: zk::circom::witness::Engine) -> Self {
        self.witness = engine;
        self
    }

    /// Gives loaded keys zkpool's prover with tables within `budget` bytes in
    /// all, built on `threads` (see [`crate::tables`]); zero leaves arkworks
    /// proving, as without this call.
    pub fn with_precompute(mut self, budget: u64, threads: Arc<rayon::ThreadPool>) -> Self {
        self.precompute = Some(Precompute {
            budget,
            spent: AtomicU64::new(0),
            threads,
        });
        self
    }

    /// Prepares a freshly loaded key's prover (tables read or built), then
    /// gives the system back what loading freed: the file's sections and the
    /// witness compiler's working memory, before the proofs' own comes on top.
    /// On a blocking thread: the trim walks the whole heap.
    async fn prepare(&self, keys: &Arc<CircuitKeys>, hash: &str) {
        self.prepare_tables(keys, hash).await;
        let _ = tokio::task::spawn_blocking(crate::memory::give_back).await;
    }

    async fn prepare_tables(&self, keys: &Arc<CircuitKeys>, hash: &str) {
        let Some(p) = &self.precompute else {
            return;
        };
        let left = p.budget.saturating_sub(p.spent.load(Ordering::Relaxed));
        let (k, h, dir, threads) = (
            keys.clone(),
            hash.to_owned(),
            self.dir.clone(),
            p.threads.clone(),
        );
        let prepared = tokio::task::spawn_blocking(move || {
            threads.install(|| crate::tables::prepare(&k, &h, &dir, left))
        })
        .await;
        match prepared {
            Ok(prepared) => {
                p.spent.fetch_add(prepared.bytes(), Ordering::Relaxed);
                crate::tables::log(hash, &prepared);
            }
            Err(e) => {
                warn!(key = %hash, error = %e, "preparing the prover failed; arkworks proves this key")
            }
        }
    }

    /// The keys for `key`, loading or downloading them as needed.
    pub async fn get(
        &self,
        key: &stratum::KeyRef,
        spec: CircuitSpec,
    ) -> Result<Arc<CircuitKeys>, KeyFetchError> {
        if !is_key_hash(&key.hash) {
            return Err(KeyFetchError::Refused(format!(
                "its hash {:?} is not 64 hex digits",
                key.hash.chars().take(80).collect::<String>()
            )));
        }
        if key.size > MAX_KEY_BYTES {
            return Err(KeyFetchError::Refused(format!(
                "the pool announces {} bytes, more than the {MAX_KEY_BYTES} a rig downloads",
                key.size
            )));
        }
        let mut loaded = self.loaded.lock().await;
        if let Some(k) = loaded.get(&key.hash) {
            return Ok(k.clone());
        }
        let path = self.dir.join(format!("{}.pk", key.hash));
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            match decode(spec, path.clone(), &key.hash, self.witness).await {
                Ok(k) => {
                    self.prepare(&k, &key.hash).await;
                    loaded.insert(key.hash.clone(), k.clone());
                    return Ok(k);
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cached key is bad; fetching it again");
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
        }
        info!(url = %key.url, bytes = key.size, "downloading proving key");
        let download = |detail: String| KeyFetchError::Download {
            url: key.url.clone(),
            detail,
        };
        let mut resp = self
            .http
            .get(&key.url)
            .send()
            .await
            .map_err(|e| download(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(download(format!("HTTP {}", resp.status())));
        }
        // Straight to a file, never whole in memory (a large circuit's bundle
        // is hundreds of MB, more than it decodes to), and no more than the
        // announced size: a pool that sends more is lying about the key, and
        // would otherwise fill the rig's disk.
        let tmp = path.with_extension("partial");
        let io = |source: std::io::Error| KeyFetchError::Io {
            path: tmp.clone(),
            source,
        };
        let written = async {
            use tokio::io::AsyncWriteExt;
            let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
            let mut got = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(|e| download(e.to_string()))? {
                got += chunk.len() as u64;
                if got > key.size {
                    return Err(download(format!(
                        "the pool sent more than the {} bytes it announced",
                        key.size
                    )));
                }
                out.write_all(&chunk).await.map_err(io)?;
            }
            out.flush().await.map_err(io)?;
            Ok(())
        }
        .await;
        let keys = match written {
            Ok(()) => decode(spec, tmp.clone(), &key.hash, self.witness)
                .await
                .map_err(|source| KeyFetchError::Bad {
                    url: key.url.clone(),
                    source,
                }),
            Err(e) => Err(e),
        };
        let keys = match keys {
            Ok(k) => k,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|source| KeyFetchError::Io {
                path: path.clone(),
                source,
            })?;
        self.prepare(&keys, &key.hash).await;
        loaded.insert(key.hash.clone(), keys.clone());
        Ok(keys)
    }
}

async fn decode(
    spec: CircuitSpec,
    path: PathBuf,
    hash: &str,
    witness: zk::circom::witness::Engine,
) -> Result<Arc<CircuitKeys>, KeyError> {
    let hash = hash.to_owned();
    tokio::task::spawn_blocking(move || {
        CircuitKeys::from_pk_file(spec, &path, &hash, witness).map(Arc::new)
    })
    .await
    .map_err(|e| KeyError::Decode {
        what: "proving key",
        detail: e.to_string(),
    })?
}
