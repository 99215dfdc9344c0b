//! The proving-key cache: memory, then `{cache_dir}/{hash}.pk`, then a download
//! from the pool. Every key is checked against the hash the pool announced before
//! use; a cached file that fails the check is deleted and fetched again.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

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
}

pub struct KeyCache {
    dir: PathBuf,
    http: reqwest::Client,
    /// One lock for the map: concurrent requests for one key download it once.
    loaded: Mutex<HashMap<String, Arc<CircuitKeys>>>,
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
        }
    }

    /// The keys for `key`, loading or downloading them as needed.
    pub async fn get(
        &self,
        key: &stratum::KeyRef,
        spec: CircuitSpec,
    ) -> Result<Arc<CircuitKeys>, KeyFetchError> {
        let mut loaded = self.loaded.lock().await;
        if let Some(k) = loaded.get(&key.hash) {
            return Ok(k.clone());
        }
        let path = self.dir.join(format!("{}.pk", key.hash));
        if let Ok(bytes) = tokio::fs::read(&path).await {
            match decode(spec, bytes, &key.hash).await {
                Ok(k) => {
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
        let resp = self
            .http
            .get(&key.url)
            .send()
            .await
            .map_err(|e| download(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(download(format!("HTTP {}", resp.status())));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| download(e.to_string()))?
            .to_vec();
        let keys = decode(spec, bytes.clone(), &key.hash)
            .await
            .map_err(|source| KeyFetchError::Bad {
                url: key.url.clone(),
                source,
            })?;
        let tmp = path.with_extension("partial");
        tokio::fs::write(&tmp, &bytes)
            .await
            .map_err(|source| KeyFetchError::Io {
                path: tmp.clone(),
                source,
            })?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|source| KeyFetchError::Io {
                path: path.clone(),
                source,
            })?;
        loaded.insert(key.hash.clone(), keys.clone());
        Ok(keys)
    }
}

async fn decode(
    spec: CircuitSpec,
    bytes: Vec<u8>,
    hash: &str,
) -> Result<Arc<CircuitKeys>, KeyError> {
    let hash = hash.to_owned();
    tokio::task::spawn_blocking(move || {
        CircuitKeys::from_pk_bytes(spec, &bytes, &hash).map(Arc::new)
    })
    .await
    .map_err(|e| KeyError::Decode {
        what: "proving key",
        detail: e.to_string(),
    })?
}
