//! Locations: one image's data objects kept in several stores (UKAI's locations), each
//! written synchronously (DRBD's protocol C: a put — so a `durability = backend` flush — returns
//! once every in-sync `sync` location has the object) or asynchronously (protocol A: a copier
//! sends objects in sequence order in the background), with the sync status of every object at
//! every location.
//!
//! [`Replicated`] is an [`ObjectStore`] decorator: the engine sees one store. Data objects of
//! the image (`seg/`, `ckpt/`, `snap/` under its prefix) go to the locations; everything else
//! (header, lock, staging, status records) to the home store.
//!
//! ## Sync status
//! Objects are written atomically, so "present" never means "half written". Checkpoints and
//! snapshot checkpoints have keys no other writer uses: present is in-sync. A segment number can
//! be written again (a fenced writer's numbers are free for its successor), so a segment is
//! in-sync at a location only when this process wrote or verified it there, or when its number
//! lies below the location's persisted watermark `trusted_below` (every segment below it that
//! exists has its correct copy there). A new writer (new epoch) clamps every watermark to its
//! fence: whatever a fenced writer left past it is verified again before it is trusted. The
//! watermark only moves up over objects this process has seen in-sync, so a crash never claims
//! an object in-sync that is not. Records: `<prefix>loc/<name>` in the home store.
//!
//! ## Order and prefixes
//! A location that is behind receives objects in sequence order (segments by number, a
//! checkpoint after the segments it covers) and, while behind, deletes nothing (a segment GC
//! deleted elsewhere stays until the location holds the segments its data moved to): its copy
//! is always a prefix of the image's history. An object the image deletes while some location
//! still lacks it (or an object before it) stays at every location and is still sent, in
//! order, to those that lack it: the history a location has yet to receive is never torn out
//! from under it. It is deleted once every location holds everything up to it.
#![forbid(unsafe_code)]

mod record;
mod replicated;

pub use record::{
    mark_failing, recorded_failing, remove as remove_record, LocationRecord, RECORD_DIR,
};
pub use replicated::{LocationReport, ObjectKind, Replicated, DATA_DIRS};

use std::sync::Arc;
use std::time::Duration;

use shale_store::ObjectStore;

/// How a location receives writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Protocol C: a put returns once the location has the object.
    Sync,
    /// Protocol A: sent in the background, in sequence order.
    Async,
}

impl Mode {
    pub fn parse(s: &str) -> shale_error::Result<Mode> {
        match s {
            "sync" => Ok(Mode::Sync),
            "async" => Ok(Mode::Async),
            _ => Err(shale_error::err!(
                Invalid,
                "location mode {s:?}: expected sync or async"
            )),
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
    }
}

/// What a put does when a `sync` location fails (the `on_location_failure` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Mark the location degraded; writes go on to the others; the copier resyncs it later.
    Degrade,
    /// Wait (retrying) until the location takes the object: I/O is suspended meanwhile.
    Block,
}

impl OnFailure {
    pub fn parse(s: &str) -> shale_error::Result<OnFailure> {
        match s {
            "degrade" => Ok(OnFailure::Degrade),
            "block" => Ok(OnFailure::Block),
            _ => Err(shale_error::err!(
                Invalid,
                "on_location_failure {s:?}: expected degrade or block"
            )),
        }
    }
}

/// One location of one image.
#[derive(Debug, Clone)]
pub struct Location {
    pub name: String,
    pub mode: Mode,
    pub store: Arc<dyn ObjectStore>,
}

/// How a [`Replicated`] behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub on_failure: OnFailure,
    /// Location names, nearest first; the others follow in the image's order.
    pub prefer: Vec<String>,
    /// Resync (copier) bytes per second; 0 = unlimited.
    pub resync_rate: u64,
    /// First retry delay of a failed location (doubles up to 32x).
    pub retry: Duration,
    /// The image header's epoch and fence (newest writer; fenced writers' segments).
    pub epoch: u64,
    pub fence: Option<(u64, u64)>,
    /// Run the copier thread and persist status records (a writer, or `shale sync`).
    pub active: bool,
    /// Keep the last `history` decisions (puts, copies, deletes) for
    /// [`Replicated::history`] (the simulator's reports); 0 keeps none.
    pub history: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            on_failure: OnFailure::Degrade,
            prefer: Vec::new(),
            resync_rate: 0,
            retry: Duration::from_secs(1),
            epoch: 0,
            fence: None,
            active: true,
            history: 0,
        }
    }
}
