//! Time and randomness as services handed to the engine and the image layer, never taken from
//! the process directly (clippy's `disallowed-methods` in clippy.toml enforces it): the real
//! ones for production, a manual clock and a seeded source for deterministic tests.
//!
//! Waits on condition variables still use real time (bounded waits stay bounded); what the
//! clock decides is every timestamp, every deadline and every deliberate sleep.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // the one place that may read the real clock

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock milliseconds since the Unix epoch (lease expiries, creation times).
    fn unix_ms(&self) -> u64;
    /// Wait `d` (a manual clock just moves on).
    fn sleep(&self, d: Duration);
    /// Time since `t`.
    fn since(&self, t: Instant) -> Duration {
        self.now().saturating_duration_since(t)
    }
}

/// A source of random numbers.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    fn next_u64(&self) -> u64;
    /// A number below `n` (0 when `n` is 0).
    fn below(&self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// The operating system's randomness (falls back to time and address bits if it fails).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        if getrandom::getrandom(&mut b).is_ok() {
            return u64::from_le_bytes(b);
        }
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        splitmix(t ^ (&b as *const _ as u64))
    }
}

/// A clock that moves only when told to (or when something sleeps on it).
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    unix_base_ms: u64,
    offset_ns: AtomicU64,
}

impl ManualClock {
    /// Starts at the real now (the Instant has to come from somewhere) and a fixed wall time.
    pub fn new(unix_ms: u64) -> Self {
        ManualClock {
            base: Instant::now(),
            unix_base_ms: unix_ms,
            offset_ns: AtomicU64::new(0),
        }
    }
    pub fn advance(&self, d: Duration) {
        self.offset_ns
            .fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }
    fn unix_ms(&self) -> u64 {
        self.unix_base_ms + self.offset_ns.load(Ordering::SeqCst) / 1_000_000
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
        // A loop that sleeps on a manual clock must not spin a core.
        std::thread::sleep(d.min(Duration::from_millis(1)));
    }
}

/// A seeded, reproducible source (SplitMix64).
#[derive(Debug)]
pub struct SeededEntropy(Mutex<u64>);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        SeededEntropy(Mutex::new(seed))
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&self) -> u64 {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(*s)
    }
}

/// SplitMix64's output function: a well-mixed 64-bit value of `z` (e.g. to derive seeds).
pub fn mix64(z: u64) -> u64 {
    splitmix(z.wrapping_add(0x9e37_79b9_7f4a_7c15))
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The process's real clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The operating system's randomness, shared.
pub fn os() -> Arc<dyn Entropy> {
    Arc::new(OsEntropy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        let t0 = c.now();
        assert_eq!(c.since(t0), Duration::ZERO);
        c.sleep(Duration::from_millis(1500));
        assert_eq!(c.since(t0), Duration::from_millis(1500));
        assert_eq!(c.unix_ms(), 2_500);
    }

    #[test]
    fn seeded_entropy_replays() {
        let (a, b) = (SeededEntropy::new(7), SeededEntropy::new(7));
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
    }
}
