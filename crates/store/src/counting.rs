//! A decorator that counts an object store's requests and failures (for metrics: store
//! requests and errors per image). Answers that are part of the protocol — `NotFound`,
//! `Exists`, `Busy` (a conditional write that lost) — are not errors.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::{ErrorKind, ObjectMeta, ObjectStore, PutMode, Result, Version};

/// Requests and failed requests, shared by every store counted into them.
#[derive(Debug, Default)]
pub struct StoreCounters {
    requests: AtomicU64,
    errors: AtomicU64,
}

impl StoreCounters {
    /// (requests, errors) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

/// `inner`, counting into `counters`.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counters: Arc<StoreCounters>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, counters: Arc<StoreCounters>) -> Self {
        CountingStore { inner, counters }
    }

    fn count<T>(&self, r: Result<T>) -> Result<T> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &r {
            if !matches!(
                e.kind(),
                ErrorKind::NotFound | ErrorKind::Exists | ErrorKind::Busy
            ) {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }
}

impl ObjectStore for CountingStore {
    fn get(&self, key: &str) -> Result<(Bytes, Version)> {
        self.count(self.inner.get(key))
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.count(self.inner.get_range(key, range))
    }
    fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version> {
        self.count(self.inner.put(key, data, mode))
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.count(self.inner.delete(key))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.count(self.inner.list(prefix))
    }
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
    fn rename_local(&self, key: &str, to: &str) -> Result<bool> {
        self.count(self.inner.rename_local(key, to))
    }
    fn url(&self) -> String {
        self.inner.url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn counts_requests_and_real_errors_only() {
        let c = Arc::new(StoreCounters::default());
        let s = CountingStore::new(Arc::new(MemoryStore::new()), c.clone());
        s.put("a", Bytes::from_static(b"x"), PutMode::Create)
            .unwrap();
        assert!(s
            .put("a", Bytes::from_static(b"x"), PutMode::Create)
            .is_err());
        assert!(s.get("nope").is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 2..1;
        assert!(s.get_range("a", reversed).is_err()); // Invalid: a real error
        s.list("").unwrap();
        assert_eq!(c.get(), (5, 1));
    }
}
