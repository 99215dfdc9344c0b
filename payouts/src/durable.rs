//! Group commit for sled: many concurrent callers, few flushes.
//!
//! sled 0.34's `flush_async` deadlocks when several futures await it at once
//! (sled issue #1308, fixed on its main branch but never released), which is
//! exactly what a pool does when many sessions' submits are acknowledged
//! together. [`GroupFlush`] never calls it: one caller at a time runs sled's
//! blocking `flush` on the blocking pool, and every caller whose writes happened
//! before that flush started is answered by it instead of flushing again.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// Shared by everything that writes to one sled database.
#[derive(Clone)]
pub struct GroupFlush {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    /// Tickets handed out: a caller takes one after its writes.
    requested: AtomicU64,
    /// Every ticket up to this one is durable.
    done: AtomicU64,
    /// Flushes run one at a time.
    turn: tokio::sync::Mutex<()>,
}

impl GroupFlush {
    pub fn new(db: &sled::Db) -> Self {
        GroupFlush {
            inner: Arc::new(Inner {
                db: db.clone(),
                requested: AtomicU64::new(0),
                done: AtomicU64::new(0),
                turn: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Returns once every write made before this call is durable (sled's flush:
    /// safe against a killed process; not an fsync on Linux).
    pub async fn flush(&self) -> Result<(), sled::Error> {
        let inner = &self.inner;
        let ticket = inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _turn = inner.turn.lock().await;
        if inner.done.load(Ordering::SeqCst) >= ticket {
            // A flush that started after our writes has finished.
            return Ok(());
        }
        // This flush covers every ticket taken so far: their writes came first.
        let covers = inner.requested.load(Ordering::SeqCst);
        let db = inner.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| {
                sled::Error::Io(std::io::Error::other(format!("flush task failed: {e}")))
            })??;
        inner.done.fetch_max(covers, Ordering::SeqCst);
        Ok(())
    }

    /// How many flushes callers asked for (for tests and benchmarks).
    pub fn requested(&self) -> u64 {
        self.inner.requested.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hundreds of concurrent insert-then-flush callers all finish (sled's own
    /// `flush_async` hangs on this) and every write is there afterwards. (That a
    /// flushed write survives a killed process is what the crash tests check.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_flushes_all_complete_and_cover_their_writes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let f = GroupFlush::new(&db);
            let mut tasks = vec![];
            for i in 0u32..300 {
                let (db, f) = (db.clone(), f.clone());
                tasks.push(tokio::spawn(async move {
                    db.insert(i.to_be_bytes(), &[1u8][..]).unwrap();
                    f.flush().await.unwrap();
                }));
            }
            let all = async {
                for t in tasks {
                    t.await.unwrap();
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(60), all)
                .await
                .expect("every flush completes");
            assert_eq!(f.requested(), 300);
        }
        let db = sled::open(dir.path()).unwrap();
        assert_eq!(db.len(), 300);
    }
}
