//! The engine: one image's data as a log of immutable segments in an object store.
//!
//! ```text
//!  write ─► queue ─► committer thread: one record per batch (group commit)
//!                      │ log device (ring journal / in-place segment file / memory)
//!                      ▼ then, in record order:
//!                    open segment (memory) + extent map ─► ack
//!                      │ seal
//!                      ▼
//!                    pending (memory, readable) ──PUT or publish──► store
//!  read ──► extent map ──► open segment | pending segment | ranged GET + page CRC check | zeros
//! ```
//! Invariants:
//! - Only the committer thread changes the open segment and the map, in record order; a
//!   write is acknowledged after its record is on the log device and applied.
//! - Segment numbers are handed out in log order and never reused; a segment is immutable once
//!   sealed. Replay applies segments in number order, so the map after replay of a prefix of
//!   segments is the map of a prefix of the write history.
//! - `durable` is the largest n such that every segment ≤ n is in the store. Log records are
//!   released only once their segment is durable.
//! - A checkpoint of the map is taken at a seal boundary and written only once the segments it
//!   covers are durable.
//! - Reads never wait for uploads: sealed segments stay readable from memory until stored.
#![forbid(unsafe_code)]

mod check;
mod commit;
mod config;
mod gc;
mod read;
mod recovery;
mod segdata;
mod upload;
mod volume;

pub use check::{check, repair, CheckReport, Problem, RepairReport};
pub use config::{Durability, EngineConfig, LeaseCheck, LogConfig, LogPlaceRef, StagingRef};
pub use gc::GcReport;
pub use shale_journal::LogStats;
pub use volume::{destroy, Done, Parent, Stats, Volume};
