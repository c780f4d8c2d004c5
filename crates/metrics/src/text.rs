//! The Prometheus text exposition format (0.0.4): one `# HELP` and `# TYPE` per family, then
//! its samples, `name{labels} value`. Label values are escaped (`\\`, `\"`, `\n`).

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::{ImageMetrics, Op, LATENCY_BUCKETS};

/// One family being written: its samples are appended image by image.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: String,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind,
            samples: String::new(),
        }
    }
    fn sample(&mut self, suffix: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.samples, "{}{suffix}{{{labels}}} {value}", self.name);
    }
}

pub(crate) fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A float as Prometheus writes it (`0.00005`, `5`, `+Inf`).
fn float(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v.is_nan() {
        return "NaN".into();
    }
    format!("{v}")
}

/// The engine and lock figures read at scrape time: (family, help, kind, value).
fn image_gauges(m: &ImageMetrics) -> Vec<(&'static str, &'static str, &'static str, f64)> {
    let Some(img) = m.source() else {
        return Vec::new();
    };
    let s = img.stats();
    let owner = img.is_lock_owner();
    vec![
        (
            "shale_journal_used_bytes",
            "Journal bytes holding records not yet in stored segments",
            "gauge",
            s.log.used as f64,
        ),
        (
            "shale_journal_capacity_bytes",
            "Journal capacity in bytes (0: unbounded)",
            "gauge",
            s.log.capacity as f64,
        ),
        (
            "shale_journal_full_waits_total",
            "Times a writer waited for journal space",
            "counter",
            s.log.full_waits as f64,
        ),
        (
            "shale_writeback_pending_segments",
            "Sealed segments not yet stored (write-back lag)",
            "gauge",
            s.pending_segments as f64,
        ),
        (
            "shale_writeback_pending_bytes",
            "Bytes of sealed segments not yet stored (write-back lag)",
            "gauge",
            s.pending_bytes as f64,
        ),
        (
            "shale_cache_hits_total",
            "Read-cache hits",
            "counter",
            s.cache.hits as f64,
        ),
        (
            "shale_cache_misses_total",
            "Read-cache misses",
            "counter",
            s.cache.misses as f64,
        ),
        (
            "shale_cache_hit_ratio",
            "Read-cache hits / (hits + misses) since open",
            "gauge",
            s.cache.hit_ratio(),
        ),
        (
            "shale_store_requests_total",
            "Object-store requests for the image's data (gets, puts, deletes, lists)",
            "counter",
            img.store_requests().0 as f64,
        ),
        (
            "shale_store_errors_total",
            "Object-store requests for the image's data that failed",
            "counter",
            img.store_requests().1 as f64,
        ),
        (
            "shale_store_reads_total",
            "Object-store reads by the read path",
            "counter",
            s.store_reads as f64,
        ),
        (
            "shale_store_written_bytes_total",
            "Bytes put to the object store (segments and checkpoints)",
            "counter",
            s.bytes_to_store as f64,
        ),
        (
            "shale_segments_uploaded_total",
            "Segments stored in the object store",
            "counter",
            s.segments_written as f64,
        ),
        (
            "shale_checkpoints_written_total",
            "Map checkpoints stored",
            "counter",
            s.checkpoints_written as f64,
        ),
        (
            "shale_segments_collected_total",
            "Segments deleted by garbage collection",
            "counter",
            s.gc.segments_deleted as f64,
        ),
        (
            "shale_gc_runs_total",
            "Garbage-collection runs",
            "counter",
            s.gc.runs as f64,
        ),
        (
            "shale_extents",
            "Extents in the image's map",
            "gauge",
            s.extents as f64,
        ),
        (
            "shale_lock_owner",
            "1 if this process holds the image's exclusive lock",
            "gauge",
            if owner { 1.0 } else { 0.0 },
        ),
        (
            "shale_lock_epoch",
            "The image's writer epoch (bumped by every lock takeover)",
            "gauge",
            img.epoch() as f64,
        ),
        (
            "shale_lock_generation",
            "Times this process took the exclusive lock",
            "counter",
            img.lock_generation() as f64,
        ),
    ]
}

pub(crate) fn render(images: &[Arc<ImageMetrics>]) -> String {
    let mut ops = Family::new(
        "shale_image_ops_total",
        "counter",
        "Completed requests per operation (rbd perf image iostat)",
    );
    let mut bytes = Family::new(
        "shale_image_bytes_total",
        "counter",
        "Bytes of completed requests per operation",
    );
    let mut errors = Family::new(
        "shale_image_errors_total",
        "counter",
        "Requests that failed per operation",
    );
    let mut lat = Family::new(
        "shale_image_latency_seconds",
        "histogram",
        "Request latency per operation, from request decoded to reply sent",
    );
    let mut gauges: Vec<Family> = Vec::new();
    for m in images {
        let base = format!(
            "pool=\"{}\",image=\"{}\"",
            escape(&m.pool),
            escape(&m.image)
        );
        for op in Op::ALL {
            let s = &m.ops[op.index()];
            let l = format!("{base},op=\"{}\"", op.name());
            ops.sample("", &l, s.ops.load(Ordering::Relaxed));
            bytes.sample("", &l, s.bytes.load(Ordering::Relaxed));
            errors.sample("", &l, s.errors.load(Ordering::Relaxed));
            let mut cum = 0u64;
            for (i, slot) in s.buckets.iter().enumerate() {
                cum += slot.load(Ordering::Relaxed);
                let le = LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
                lat.sample("_bucket", &format!("{l},le=\"{}\"", float(le)), cum);
            }
            let sum = s.latency_ns.load(Ordering::Relaxed) as f64 / 1e9;
            lat.sample("_sum", &l, float(sum));
            lat.sample("_count", &l, cum);
        }
        for (name, help, kind, v) in image_gauges(m) {
            let f = match gauges.iter_mut().position(|f| f.name == name) {
                Some(i) => &mut gauges[i],
                None => {
                    gauges.push(Family::new(name, kind, help));
                    gauges.last_mut().expect("just pushed")
                }
            };
            f.sample("", &base, float(v));
        }
    }
    let mut out = String::new();
    for f in [ops, bytes, errors, lat].into_iter().chain(gauges) {
        if f.samples.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        out.push_str(&f.samples);
    }
    out
}
