//! The write log devices: where acknowledged writes become durable before their segment is in
//! the object store.
//!
//! Three devices implement one small trait, [`LogDevice`]:
//! - [`RingJournal`]: a ring file in the local cache directory (remote stores);
//! - [`InPlaceLog`]: records written straight into the open segment's file inside a local
//!   directory store, which is published (renamed) as the segment when sealed — the device sees
//!   each byte once;
//! - [`MemoryLog`]: no device; writes are durable only once their segment is stored.
//!
//! ```text
//!  ring file:  [ superblock 4 KiB | records ........................................ ]
//!                                   ^tail (oldest record not yet in a stored segment)
//!                                                  ^head (next record)   wraps to 4 KiB
//! ```
//! Records (see `shale_format::record`) are written with O_DIRECT by one thread, one at a time,
//! so they reach the device in number order; `sync` (fdatasync) makes them durable against
//! power loss. In the ring, the space of records whose data is in stored segments is released
//! and reused. The superblock remembers where the oldest needed record is; it is rewritten and
//! synced before the head would overwrite anything at or after the remembered tail, so replay
//! always starts at a live record. Replay follows consecutive record numbers from there and
//! stops at the first record that does not verify — a torn last record, a stale record from an
//! earlier pass (its number or journal id cannot match), or the end of the log.
#![forbid(unsafe_code)]

mod aligned;
mod file;
mod inplace;
mod ring;
mod staging;

use shale_error::Result;
use shale_format::record::Op;

pub use aligned::AlignedBuf;

/// An encoded record (header and data) handed back by [`LogDevice::append_record`]; the
/// engine keeps it as part of its open segment instead of copying it there.
pub type RecordBytes = Box<dyn AsRef<[u8]> + Send + Sync>;

/// Records smaller than this are handed back in a buffer of their own size (an aligned
/// buffer carries up to 4 KiB of slack, which a segment of small records would multiply).
pub const COMPACT_BELOW: usize = 32 << 10;

/// The buffer a record was written from, as the engine keeps it.
pub(crate) fn keep(rec: AlignedBuf) -> RecordBytes {
    if rec.len() < COMPACT_BELOW {
        Box::new(rec.into_compact())
    } else {
        Box::new(rec)
    }
}
pub use file::{CrashFile, CrashMode, DirectFile, DirectPlace, FixedPlace, LogFile, LogPlace};
pub use inplace::{InPlaceLog, RecordPieces, StagedRecord};
pub use ring::{Replayed, RingEnv, RingJournal, RingStats};
pub use staging::{DirStaging, SimStaging, StagedFile, Staging, FREE_FILES};

/// Counters of a log device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes the device can hold (0: unbounded).
    pub capacity: u64,
    /// Bytes holding records not yet in stored segments.
    pub used: u64,
    pub records: u64,
    pub bytes: u64,
    /// Times a writer had to wait for space, and for how long in all.
    pub full_waits: u64,
    pub full_wait_ns: u64,
}

/// A device that makes records durable. One thread appends; any thread may sync or release.
pub trait LogDevice: Send + Sync + std::fmt::Debug {
    /// The random id that salts this log's records (0 for [`MemoryLog`]).
    fn id(&self) -> u64;
    /// Encode one record of `ops` (with its data in pieces, the Data ops' sectors in order,
    /// concatenated) and write it to the device. `place` is (segment, byte offset in its data
    /// area) where the engine will put the record. Returns the record number and the encoded
    /// record, once the record is on the device (not necessarily durable against power loss:
    /// see `sync`). Devices that write from an aligned buffer encode straight into it: each
    /// byte is copied once on its way to the device.
    fn append_record(
        &self,
        ops: &[Op],
        parts: &[&[u8]],
        place: (u64, u64),
    ) -> Result<(u64, RecordBytes)>;
    /// [`append_record`](Self::append_record) with the data in one piece, appending the
    /// record's bytes to `out`.
    fn append(&self, ops: &[Op], data: &[u8], out: &mut Vec<u8>, place: (u64, u64)) -> Result<u64> {
        let (seq, rec) = self.append_record(ops, &[data], place)?;
        out.extend_from_slice((*rec).as_ref());
        Ok(seq)
    }
    /// Make every appended record durable.
    fn sync(&self) -> Result<()>;
    /// Records numbered ≤ `upto` are in stored segments: their space may be reused.
    fn release(&self, upto: u64);
    fn stats(&self) -> LogStats;
}

/// No device: records are only encoded (kept in the open segment in memory).
#[derive(Debug, Default)]
pub struct MemoryLog {
    next: std::sync::atomic::AtomicU64,
}

impl LogDevice for MemoryLog {
    fn id(&self) -> u64 {
        0
    }
    fn append_record(
        &self,
        ops: &[Op],
        parts: &[&[u8]],
        _place: (u64, u64),
    ) -> Result<(u64, RecordBytes)> {
        let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut out = Vec::new();
        shale_format::record::encode_parts_into(
            &mut out,
            0,
            seq,
            shale_format::record::RecordKind::Ops,
            ops,
            parts,
        );
        Ok((seq, Box::new(out)))
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    fn release(&self, _upto: u64) {}
    fn stats(&self) -> LogStats {
        LogStats::default()
    }
}
