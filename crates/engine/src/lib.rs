//! The engine: one image's data as a log of immutable segments in an object store.
//!
//! ```text
//!  write ──► open segment (memory) ──seal──► pending (memory, readable) ──PUT──► store
//!              │ entries + data                  │ uploaded by worker threads, several in flight
//!              ▼                                  ▼
//!          extent map  ◄──────────── every write updates it in log order
//!  read ──► extent map ──► open segment | pending segment | ranged GET + page CRC check | zeros
//! ```
//! Invariants:
//! - Segment numbers are handed out in log order and never reused; a segment is immutable once
//!   sealed. Replay applies segments in number order, so the map after replay of a prefix of
//!   segments is the map of a prefix of the write history.
//! - `durable` is the largest n such that every segment ≤ n is in the store. A flush seals the
//!   open segment and waits until `durable` covers it: every write completed before the flush
//!   is then in the store.
//! - A checkpoint of the map is taken at a seal boundary (the map then reflects exactly the
//!   segments ≤ the sealed one) and written only once those segments are durable.
//! - Reads never wait for uploads: sealed segments stay readable from memory until stored.
#![forbid(unsafe_code)]

mod config;
mod read;
mod recovery;
mod upload;
mod volume;

pub use config::EngineConfig;
pub use volume::{destroy, Stats, Volume};
