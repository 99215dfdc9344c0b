//! Which storage a config names, opened: the embedded sled database in
//! `storage.data_dir`, or the PostgreSQL database at `storage.url` (its schema
//! brought up to date first); and the ledger beside the store, sled's journal
//! in the same sled database or [`PgLedger`] on the store's connections.
//!
//! Not here: what the store and the ledger do (`store`, `ledger`).

use std::sync::Arc;

use crate::{
    config::{redact_url, Config},
    ledger::{Ledger, PgLedger, SledLedger},
    server::StartError,
    store::{PgStore, SledStore, Store},
};

/// The store the config names: PostgreSQL at `storage.url` (its schema
/// brought up to date), else sled in `storage.data_dir`.
pub enum OpenStore {
    Sled(SledStore),
    Pg(PgStore),
}

pub async fn open_store(config: &Config) -> Result<OpenStore, StartError> {
    match &config.storage.url {
        Some(url) => {
            PgStore::open(url)
                .await
                .map(OpenStore::Pg)
                .map_err(|e| StartError::Database {
                    url: redact_url(url),
                    detail: e.to_string(),
                })
        }
        None => {
            let path = config.storage.data_dir.join("db");
            SledStore::open(&path)
                .map(OpenStore::Sled)
                .map_err(|e| StartError::Storage {
                    path: config.storage.data_dir.display().to_string(),
                    detail: format!("{e} (is another zkpool using it?)"),
                })
        }
    }
}

impl OpenStore {
    pub fn store(&self) -> &dyn Store {
        match self {
            OpenStore::Sled(s) => s,
            OpenStore::Pg(s) => s,
        }
    }

    /// The store and the ledger beside it: sled's journal in the same sled
    /// database, or the PostgreSQL ledger on the store's connections.
    pub async fn with_ledger(
        self,
        config: &Config,
    ) -> Result<(Arc<dyn Store>, Arc<dyn Ledger>), StartError> {
        match self {
            OpenStore::Sled(store) => {
                let ledger =
                    payouts::Ledger::open_with(&store.db, store.flusher()).map_err(|e| {
                        StartError::Storage {
                            path: config.storage.data_dir.display().to_string(),
                            detail: e.to_string(),
                        }
                    })?;
                Ok((Arc::new(store), Arc::new(SledLedger(ledger))))
            }
            OpenStore::Pg(store) => {
                let ledger = PgLedger::open(store.pool().clone()).await.map_err(|e| {
                    StartError::Database {
                        url: config
                            .storage
                            .url
                            .as_deref()
                            .map(redact_url)
                            .unwrap_or_default(),
                        detail: format!("the ledger: {e}"),
                    }
                })?;
                Ok((Arc::new(store), Arc::new(ledger)))
            }
        }
    }
}
