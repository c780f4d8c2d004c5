//! Pure encode/decode of Shale's persisted structures. No I/O happens here.
//!
//! Every structure starts with an 8-byte magic and a 32-bit version, uses little-endian
//! fixed-width integers and carries a CRC-32C. Decoders never panic on any input: damaged or
//! foreign bytes give `ErrorKind::Corruption`. docs/FORMAT.md is the byte-by-byte reference.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod envelope;
pub mod keys;
pub mod rbd_diff;
pub mod record;
pub mod segment;
mod wire;

/// Bytes per sector: the unit of the extent map and of segment data.
pub const SECTOR: u64 = 512;
/// Bytes per checksummed page of segment data.
pub const PAGE: usize = 4096;
/// Sectors per page.
pub const SECTORS_PER_PAGE: u64 = (PAGE as u64) / SECTOR;
