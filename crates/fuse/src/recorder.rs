//! Per-image operation counting behind a small trait, so the mount can report to a metrics
//! registry (Prometheus text from `crates/metrics`) without this crate depending on one.

use std::time::Duration;

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

/// Receives one call per completed operation (also failed ones, `ok` false). Called from the
/// mount's worker threads: implementations must be cheap and thread-safe.
pub trait Recorder: Send + Sync {
    fn record(&self, pool: &str, image: &str, op: Op, bytes: u64, latency: Duration, ok: bool);
}

/// Records nothing (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecorder;

impl Recorder for NoRecorder {
    fn record(&self, _: &str, _: &str, _: Op, _: u64, _: Duration, _: bool) {}
}
