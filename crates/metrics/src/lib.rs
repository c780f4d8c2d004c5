//! Per-image Prometheus metrics for Shale's front ends (NBD, FUSE) and a tiny `/metrics`
//! endpoint.
//!
//! ```text
//!   front end ──record(Op, bytes, latency)──▶ ImageMetrics ─┐
//!                                                          ├─ Registry ──render()──▶ text format
//!   Image::stats(), lock state ──(gauges, read at scrape)──┘        ▲
//!                                                 GET /metrics ─────┘  (serve(): std TcpListener)
//! ```
//!
//! There are no global statics: a process may host many registries and many images. A front
//! end registers each image it serves ([`Registry::register`]) and keeps the returned
//! [`ImageMetrics`]; every request it completes is recorded with [`ImageMetrics::record`]
//! (lock-free atomics, cheap on the I/O path). Engine and lock figures are read only when
//! someone scrapes, from the `Arc<Image>` given at registration.
//!
//! The quantities are those of `rbd perf image iostat` (ops, bytes and latency per operation)
//! plus the engine's: journal fill, write-back lag, read-cache hits, store reads, segments
//! uploaded and collected, exclusive-lock ownership and epoch. Every series carries the labels
//! `pool` and `image` (`image@snap` for a snapshot export).
#![forbid(unsafe_code)]

mod http;
mod text;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shale_image::Image;

pub use http::{serve, MetricsServer};

/// The operations counted per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    /// Discard / trim / write-zeroes (they all become zero extents).
    Discard,
    Flush,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Read, Op::Write, Op::Discard, Op::Flush];
    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Discard => "discard",
            Op::Flush => "flush",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds (seconds) of the latency histogram buckets (+Inf is implied).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Counters and a latency histogram of one operation.
#[derive(Debug, Default)]
struct OpStats {
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Cumulative counts are computed at render time; each slot counts its own bucket, the last
    /// one is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_ns: AtomicU64,
}

/// The metrics of one served image. Shared by every connection to it.
pub struct ImageMetrics {
    pool: String,
    image: String,
    ops: [OpStats; 4],
    /// Where the engine and lock figures come from; held weakly, so that a front end that
    /// closes the image (a FUSE file nobody has open) is not kept from closing it.
    source: Mutex<Option<std::sync::Weak<Image>>>,
}

impl std::fmt::Debug for ImageMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageMetrics")
            .field("pool", &self.pool)
            .field("image", &self.image)
            .finish()
    }
}

impl ImageMetrics {
    /// Count one completed request of `bytes` bytes that took `latency`.
    pub fn record(&self, op: Op, bytes: u64, latency: Duration) {
        let s = &self.ops[op.index()];
        s.ops.fetch_add(1, Ordering::Relaxed);
        s.bytes.fetch_add(bytes, Ordering::Relaxed);
        let secs = latency.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        s.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        s.latency_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Count one failed request (not counted in ops, bytes or latency).
    pub fn record_error(&self, op: Op) {
        self.ops[op.index()].errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pool(&self) -> &str {
        &self.pool
    }
    pub fn image(&self) -> &str {
        &self.image
    }

    /// Report the engine and lock figures of `img` from now on (None: stop; the counters
    /// stay).
    pub fn set_source(&self, img: Option<&Arc<Image>>) {
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = img.map(Arc::downgrade);
    }

    /// The image the figures come from, while it is open.
    pub(crate) fn source(&self) -> Option<Arc<Image>> {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(std::sync::Weak::upgrade)
    }

    /// Operations of `op` counted so far (for tests and front ends' own reports).
    pub fn ops(&self, op: Op) -> u64 {
        self.ops[op.index()].ops.load(Ordering::Relaxed)
    }
    /// Bytes of `op` counted so far.
    pub fn bytes(&self, op: Op) -> u64 {
        self.ops[op.index()].bytes.load(Ordering::Relaxed)
    }
}

/// All images of one process (or one front end). Render it with [`Registry::render`] or serve
/// it with [`serve`].
#[derive(Debug, Default)]
pub struct Registry {
    images: Mutex<Vec<Arc<ImageMetrics>>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Register an image served under labels `pool` and `image`. With `source`, its engine
    /// and lock figures are reported too (read at each scrape). Registering the same labels
    /// twice returns the first registration (connections of one export share it).
    pub fn register(
        &self,
        pool: &str,
        image: &str,
        source: Option<Arc<Image>>,
    ) -> Arc<ImageMetrics> {
        let mut v = self.images.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = v.iter().find(|m| m.pool == pool && m.image == image) {
            return m.clone();
        }
        let m = Arc::new(ImageMetrics {
            pool: pool.to_string(),
            image: image.to_string(),
            ops: Default::default(),
            source: Mutex::new(source.as_ref().map(Arc::downgrade)),
        });
        v.push(m.clone());
        m
    }

    /// Stop reporting an image (its counters are gone: Prometheus sees a reset if it comes
    /// back).
    pub fn unregister(&self, pool: &str, image: &str) {
        let mut v = self.images.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|m| !(m.pool == pool && m.image == image));
    }

    /// The Prometheus text exposition format (version 0.0.4) of every registered image.
    pub fn render(&self) -> String {
        let images: Vec<Arc<ImageMetrics>> = self
            .images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        text::render(&images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histogram() {
        let r = Registry::new();
        let m = r.register("rbd", "vm1", None);
        m.record(Op::Write, 4096, Duration::from_micros(30));
        m.record(Op::Write, 4096, Duration::from_millis(3));
        m.record(Op::Read, 512, Duration::from_secs(10));
        m.record_error(Op::Flush);
        assert_eq!(m.ops(Op::Write), 2);
        assert_eq!(m.bytes(Op::Write), 8192);
        let t = r.render();
        let line = |s: &str| {
            assert!(t.lines().any(|l| l == s), "missing {s:?} in\n{t}");
        };
        line(r#"shale_image_ops_total{pool="rbd",image="vm1",op="write"} 2"#);
        line(r#"shale_image_bytes_total{pool="rbd",image="vm1",op="write"} 8192"#);
        line(r#"shale_image_errors_total{pool="rbd",image="vm1",op="flush"} 1"#);
        line(
            r#"shale_image_latency_seconds_bucket{pool="rbd",image="vm1",op="write",le="0.00005"} 1"#,
        );
        line(
            r#"shale_image_latency_seconds_bucket{pool="rbd",image="vm1",op="write",le="0.0025"} 1"#,
        );
        line(
            r#"shale_image_latency_seconds_bucket{pool="rbd",image="vm1",op="write",le="0.005"} 2"#,
        );
        line(
            r#"shale_image_latency_seconds_bucket{pool="rbd",image="vm1",op="write",le="+Inf"} 2"#,
        );
        line(r#"shale_image_latency_seconds_count{pool="rbd",image="vm1",op="write"} 2"#);
        line(r#"shale_image_latency_seconds_bucket{pool="rbd",image="vm1",op="read",le="5"} 0"#);
        line(r#"shale_image_latency_seconds_bucket{pool="rbd",image="vm1",op="read",le="+Inf"} 1"#);
        // HELP/TYPE once per family, before its samples.
        assert_eq!(t.matches("# TYPE shale_image_ops_total counter").count(), 1);
        assert_eq!(
            t.matches("# TYPE shale_image_latency_seconds histogram")
                .count(),
            1
        );
    }

    #[test]
    fn same_labels_share_and_unregister() {
        let r = Registry::new();
        let a = r.register("p", "i", None);
        let b = r.register("p", "i", None);
        assert!(Arc::ptr_eq(&a, &b));
        let _c = r.register("p", "j\"x", None);
        let t = r.render();
        assert!(t.contains(r#"image="j\"x""#), "{t}");
        r.unregister("p", "i");
        assert!(!r.render().contains(r#"image="i""#));
    }
}
