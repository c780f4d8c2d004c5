//! Per-image operation counting behind a small trait, so the mount can report to a metrics
//! registry (Prometheus text from `crates/metrics`) without this crate depending on one.

use std::sync::Arc;
use std::time::Duration;

use shale_image::Image;

/// An operation on an image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Write,
    /// fallocate(PUNCH_HOLE | KEEP_SIZE)
    Discard,
    /// fallocate(ZERO_RANGE)
    WriteZeroes,
    /// fsync / fdatasync / close
    Flush,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Discard => "discard",
            Op::WriteZeroes => "write_zeroes",
            Op::Flush => "flush",
        }
    }
}

/// Receives one call per completed operation (also failed ones, `ok` false), between an
/// `opened` and a `closed` of the file. `file` is the file name (`IMAGE` or `IMAGE@SNAP`).
/// Called from the mount's worker threads: implementations must be cheap and thread-safe, and
/// must not keep the image past `closed` (the mount closes it then).
pub trait Recorder: Send + Sync {
    /// The file's image was opened (its engine figures may be read from `img` until `closed`).
    fn opened(&self, _pool: &str, _file: &str, _img: &Arc<Image>) {}
    fn record(&self, pool: &str, file: &str, op: Op, bytes: u64, latency: Duration, ok: bool);
    /// The file's image is about to be closed.
    fn closed(&self, _pool: &str, _file: &str) {}
}

/// Records nothing (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecorder;

impl Recorder for NoRecorder {
    fn record(&self, _: &str, _: &str, _: Op, _: u64, _: Duration, _: bool) {}
}
