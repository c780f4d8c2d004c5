//! Per-image I/O statistics (the quantities of `rbd perf image iostat` and UKAI's
//! get_statistics): operations, bytes and latency of reads, writes, discards and flushes, as
//! counted by every front end through [`crate::Image`]. The lock owner stores them with the
//! image (`<prefix>stats`, envelope kind 8) so that `shale stats` shows an image opened
//! elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Latency histogram bucket upper bounds, in microseconds (the last bucket is unbounded).
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 100_000, 1_000_000,
];

#[derive(Debug, Default)]
struct Op {
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    lat_us_sum: AtomicU64,
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
}

/// One operation type's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    pub ops: u64,
    pub bytes: u64,
    pub errors: u64,
    /// Sum of latencies (µs): mean = sum / ops.
    pub latency_us_sum: u64,
    /// Counts per bucket of [`LATENCY_BUCKETS_US`] (one more for the overflow).
    pub latency_buckets: Vec<u64>,
}

impl OpStats {
    pub fn mean_latency_us(&self) -> f64 {
        if self.ops == 0 {
            0.0
        } else {
            self.latency_us_sum as f64 / self.ops as f64
        }
    }

    /// Latency below which a fraction `q` of the operations completed (a bucket bound).
    pub fn quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.latency_buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return LATENCY_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX);
            }
        }
        u64::MAX
    }
}

/// A snapshot of an image's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IoSnapshot {
    pub read: OpStats,
    pub write: OpStats,
    pub discard: OpStats,
    pub flush: OpStats,
}

/// Which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    Read,
    Write,
    Discard,
    Flush,
}

/// Live counters, updated without locks.
#[derive(Debug, Default)]
pub struct IoStats {
    read: Op,
    write: Op,
    discard: Op,
    flush: Op,
}

impl IoStats {
    fn op(&self, k: IoKind) -> &Op {
        match k {
            IoKind::Read => &self.read,
            IoKind::Write => &self.write,
            IoKind::Discard => &self.discard,
            IoKind::Flush => &self.flush,
        }
    }

    /// Count one operation of `bytes` that took `lat` (`ok`: it succeeded).
    pub fn record(&self, k: IoKind, bytes: u64, lat: Duration, ok: bool) {
        let o = self.op(k);
        let us = lat.as_micros().min(u64::MAX as u128) as u64;
        o.ops.fetch_add(1, Ordering::Relaxed);
        if ok {
            o.bytes.fetch_add(bytes, Ordering::Relaxed);
        } else {
            o.errors.fetch_add(1, Ordering::Relaxed);
        }
        o.lat_us_sum.fetch_add(us, Ordering::Relaxed);
        let b = LATENCY_BUCKETS_US
            .iter()
            .position(|&x| us <= x)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        o.buckets[b].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> IoSnapshot {
        let s = |o: &Op| OpStats {
            ops: o.ops.load(Ordering::Relaxed),
            bytes: o.bytes.load(Ordering::Relaxed),
            errors: o.errors.load(Ordering::Relaxed),
            latency_us_sum: o.lat_us_sum.load(Ordering::Relaxed),
            latency_buckets: o
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        };
        IoSnapshot {
            read: s(&self.read),
            write: s(&self.write),
            discard: s(&self.discard),
            flush: s(&self.flush),
        }
    }
}

/// What the lock owner stores at `<prefix>stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredStats {
    /// The lock owner that wrote it, and when (unix ms).
    pub owner: String,
    pub updated_ms: u64,
    pub io: IoSnapshot,
    /// Engine figures: journal fill and write-back lag.
    pub pending_segments: u64,
    pub pending_bytes: u64,
    pub segments_written: u64,
    pub bytes_to_store: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_quantiles() {
        let s = IoStats::default();
        for us in [5, 20, 20, 200, 5_000_000] {
            s.record(IoKind::Write, 4096, Duration::from_micros(us), true);
        }
        s.record(IoKind::Read, 4096, Duration::from_micros(1), false);
        let snap = s.snapshot();
        assert_eq!(snap.write.ops, 5);
        assert_eq!(snap.write.bytes, 5 * 4096);
        assert_eq!(snap.read.errors, 1);
        assert_eq!(snap.read.bytes, 0);
        assert_eq!(snap.write.quantile_us(0.5), 25);
        assert_eq!(snap.write.quantile_us(1.0), u64::MAX);
        assert_eq!(snap.write.latency_buckets.iter().sum::<u64>(), 5);
    }
}
