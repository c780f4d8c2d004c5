//! A decorator that injects faults into any store, for journal, engine and recovery tests.
//!
//! Faults, all changeable at any time from any thread through [`FaultStore::update`]:
//! - `latency`: every call sleeps first (a slow, remote store);
//! - `offline`: every call fails `Unavailable` without reaching the inner store;
//! - `fail_puts` / `fail_gets`: writes (put, delete) / reads (get, get_range, list) fail;
//! - `put_error_rate` / `get_error_rate`: the same, at random with that probability;
//! - `lost_ack_rate`: a put *lands* in the inner store, but the caller is told `Unavailable`
//!   (an answer lost on the network: the case that makes conditional writes ambiguous).
//!
//! Randomness comes from a seeded generator (SplitMix64), so a failing test replays with its
//! seed; the draws still depend on how threads interleave. An injected error never changes the
//! inner store, except for the lost-ack case where that is the point.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::{Error, ObjectMeta, ObjectStore, PutMode, Result, Version};

/// What to inject. The default injects nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Sleep this long before every call.
    pub latency: Duration,
    /// Fail every call.
    pub offline: bool,
    /// Fail every put and delete.
    pub fail_puts: bool,
    /// Fail every get, get_range and list.
    pub fail_gets: bool,
    /// Probability (0.0..=1.0) that a put or delete fails.
    pub put_error_rate: f64,
    /// Probability (0.0..=1.0) that a read fails.
    pub get_error_rate: f64,
    /// Probability (0.0..=1.0) that a put is applied but reported as failed.
    pub lost_ack_rate: f64,
}

/// A store wrapper that injects the faults in its [`FaultConfig`].
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    config: Mutex<FaultConfig>,
    rng: Mutex<u64>,
    seed: u64,
    injected: AtomicU64,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Read,
    Write,
}

impl FaultStore {
    /// Wrap `inner`, injecting nothing yet; `seed` drives the random faults.
    pub fn new(inner: Arc<dyn ObjectStore>, seed: u64) -> Self {
        FaultStore {
            inner,
            config: Mutex::new(FaultConfig::default()),
            rng: Mutex::new(seed),
            seed,
            injected: AtomicU64::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// The seed given to [`FaultStore::new`], to print with a failing test.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current configuration.
    pub fn config(&self) -> FaultConfig {
        self.cfg().clone()
    }

    /// Replace the configuration.
    pub fn set(&self, config: FaultConfig) {
        *self.cfg() = config;
    }

    /// Change the configuration in place: `store.update(|c| c.offline = true)`.
    pub fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        f(&mut self.cfg());
    }

    /// Shorthand for toggling `offline`.
    pub fn set_offline(&self, offline: bool) {
        self.update(|c| c.offline = offline);
    }

    /// How many faults (errors and lost acks) were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn cfg(&self) -> MutexGuard<'_, FaultConfig> {
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True with probability `p`.
    fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut state = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits as a fraction in [0, 1).
        ((z >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Apply latency, then decide whether this call fails before reaching the inner store.
    fn before(&self, op: Op, what: &str, key: &str) -> Result<()> {
        let cfg = self.config();
        if !cfg.latency.is_zero() {
            std::thread::sleep(cfg.latency);
        }
        let (forced, rate) = match op {
            Op::Read => (cfg.fail_gets, cfg.get_error_rate),
            Op::Write => (cfg.fail_puts, cfg.put_error_rate),
        };
        let reason = if cfg.offline {
            "store offline"
        } else if forced || self.chance(rate) {
            "injected failure"
        } else {
            return Ok(());
        };
        self.injected.fetch_add(1, Ordering::Relaxed);
        Err(Error::unavailable(format!(
            "{what} of object {key:?} in {}: {reason} (fault injection, seed {})",
            self.inner.url(),
            self.seed
        )))
    }
}

impl ObjectStore for FaultStore {
    fn get(&self, key: &str) -> Result<(Bytes, Version)> {
        self.before(Op::Read, "get", key)?;
        self.inner.get(key)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.before(Op::Read, "ranged get", key)?;
        self.inner.get_range(key, range)
    }

    fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version> {
        self.before(Op::Write, "put", key)?;
        let v = self.inner.put(key, data, mode)?;
        let lost = self.cfg().lost_ack_rate;
        if self.chance(lost) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::unavailable(format!(
                "put of object {key:?} in {}: answer lost (it was written; fault injection, seed {})",
                self.inner.url(),
                self.seed
            )));
        }
        Ok(v)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.before(Op::Write, "delete", key)?;
        self.inner.delete(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.before(Op::Read, "list", prefix)?;
        self.inner.list(prefix)
    }

    /// The inner store's URL: errors passed through from it name that URL, and the decorator
    /// is meant to be invisible.
    fn url(&self) -> String {
        self.inner.url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, MemoryStore};

    #[test]
    fn toggles_and_rates() {
        let f = FaultStore::new(Arc::new(MemoryStore::new()), 7);
        f.put("a", Bytes::from_static(b"x"), PutMode::Overwrite)
            .unwrap();
        f.set_offline(true);
        assert_eq!(f.get("a").unwrap_err().kind(), ErrorKind::Unavailable);
        f.set_offline(false);
        f.update(|c| c.fail_puts = true);
        assert_eq!(
            f.put("b", Bytes::new(), PutMode::Create)
                .unwrap_err()
                .kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(f.inner().get("b").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(f.get("a").unwrap().0, Bytes::from_static(b"x"));
        f.set(FaultConfig {
            get_error_rate: 0.5,
            ..Default::default()
        });
        let fails = (0..1000).filter(|_| f.get("a").is_err()).count();
        assert!(
            (350..650).contains(&fails),
            "{fails} of 1000 failed at rate 0.5"
        );
        f.set(FaultConfig {
            lost_ack_rate: 1.0,
            ..Default::default()
        });
        assert!(f.put("c", Bytes::new(), PutMode::Create).is_err());
        assert!(f.inner().get("c").is_ok(), "a lost ack still writes");
        assert_eq!(f.injected(), 2 + fails as u64 + 1);
    }
}
