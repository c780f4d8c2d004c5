//! A decorator that retries calls the inner store answers with `Unavailable` (a store that is
//! down or overloaded), with capped exponential backoff on an injected clock: a fixed number of
//! attempts, or until it answers or the owner cancels. Every other answer — including `Exists`
//! and `Busy` after a retried conditional write whose first answer was lost — goes to the
//! caller unchanged, who alone knows what it means.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{ErrorKind, ObjectMeta, ObjectStore, PutMode, Result, Version};

/// How long to keep trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempts {
    /// At most this many calls in all.
    Limit(u32),
    /// Until the store answers or the owner cancels.
    Forever,
}

/// A store that retries `Unavailable` answers of `inner`.
pub struct RetryStore {
    inner: Arc<dyn ObjectStore>,
    attempts: Attempts,
    first_delay: Duration,
    max_delay: Duration,
    clock: Arc<dyn shale_clock::Clock>,
    cancelled: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for RetryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetryStore({:?}, {:?})", self.inner, self.attempts)
    }
}

impl RetryStore {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        attempts: Attempts,
        clock: Arc<dyn shale_clock::Clock>,
    ) -> Self {
        RetryStore {
            inner,
            attempts,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            clock,
            cancelled: Arc::new(|| false),
        }
    }

    /// Stop retrying (answer the last error) once `f` says so; asked after each failure.
    pub fn cancelled_when(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.cancelled = Arc::new(f);
        self
    }

    /// Backoff bounds (first wait, longest wait).
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_delay = first;
        self.max_delay = max;
        self
    }

    fn run<T>(&self, what: &str, key: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut delay = self.first_delay;
        let mut attempt = 1u32;
        loop {
            match f() {
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    let more = match self.attempts {
                        Attempts::Limit(n) => attempt < n,
                        Attempts::Forever => true,
                    };
                    if !more || (self.cancelled)() {
                        return Err(e);
                    }
                    if attempt == 1 || attempt.is_multiple_of(10) {
                        tracing::warn!("{what} {key:?} failed (attempt {attempt}): {e}; retrying");
                    } else {
                        tracing::debug!("{what} {key:?} failed (attempt {attempt}): {e}; retrying");
                    }
                    self.clock.sleep(delay);
                    delay = (delay * 2).min(self.max_delay);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

impl ObjectStore for RetryStore {
    fn get(&self, key: &str) -> Result<(Bytes, Version)> {
        self.run("GET", key, || self.inner.get(key))
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.run("GET (range)", key, || {
            self.inner.get_range(key, range.clone())
        })
    }
    fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version> {
        self.run("PUT", key, || {
            self.inner.put(key, data.clone(), mode.clone())
        })
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.run("DELETE", key, || self.inner.delete(key))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.run("LIST", prefix, || self.inner.list(prefix))
    }
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
    fn rename_local(&self, key: &str, to: &str) -> Result<bool> {
        self.inner.rename_local(key, to)
    }
    fn url(&self) -> String {
        self.inner.url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FaultStore, MemoryStore};
    use shale_clock::Clock;

    #[test]
    fn retries_unavailable_only_and_gives_up_as_told() {
        let fault = Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), 1));
        let clock = Arc::new(shale_clock::ManualClock::new(0));
        let r = RetryStore::new(fault.clone(), Attempts::Limit(3), clock.clone());
        fault.update(|f| f.offline = true);
        let e = r.get("x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        // Two waits: 50 ms and 100 ms, on the manual clock.
        assert_eq!(clock.unix_ms(), 150);
        fault.update(|f| f.offline = false);
        assert_eq!(r.get("x").unwrap_err().kind(), ErrorKind::NotFound);
        r.put("x", Bytes::from_static(b"1"), PutMode::Create)
            .unwrap();
        let e = r
            .put("x", Bytes::from_static(b"2"), PutMode::Create)
            .unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::Exists,
            "not retried: the caller decides"
        );
        // Forever, until cancelled.
        let n = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let n2 = n.clone();
        let r = RetryStore::new(fault.clone(), Attempts::Forever, clock)
            .cancelled_when(move || n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 9);
        fault.update(|f| f.offline = true);
        assert!(r.list("").is_err());
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 10);
    }
}
