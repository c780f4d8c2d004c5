//! Object stores: the only way the engine touches persistent shared state.
//!
//! A store maps `/`-separated keys to immutable byte blobs. Besides plain get/put/delete/list it
//! offers two atomic conditional writes that the engine's commit protocols rely on:
//! - [`PutMode::Create`] (put-if-absent): exactly one of several concurrent creators wins, the
//!   others get `ErrorKind::Exists`;
//! - [`PutMode::Update`] (replace-if-version): succeeds only if the object's current version is
//!   the given one; otherwise `ErrorKind::Busy` (precondition failed), or `NotFound`.
//!
//! The trait is synchronous: callers that want concurrency use threads. Implementations that are
//! async inside (S3) own their runtime.
//!
//! Keys: 1..=1024 bytes, components separated by `/`, no empty component, no `.` or `..`
//! component, no NUL, no leading `/`. Invalid keys get `ErrorKind::Invalid`.
#![forbid(unsafe_code)]

use std::ops::Range;

use bytes::Bytes;
pub use shale_error::{Error, ErrorKind, Result};

/// An opaque token naming one version of an object (an ETag on S3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// How a put treats an existing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Only if absent; `Exists` otherwise.
    Create,
    /// Only if the current version is this one; `Busy` if it is not, `NotFound` if none.
    Update(Version),
}

/// Listing entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// The store interface the engine and image layer use.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// Whole object and its version. `NotFound` if absent.
    fn get(&self, key: &str) -> Result<(Bytes, Version)>;
    /// Bytes `range` of an object. A range past the end is clamped (short result); a start past
    /// the end returns an empty result. `NotFound` if absent.
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    /// Write a whole object atomically (readers see all or nothing) per `mode`.
    fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version>;
    /// Delete; deleting an absent object succeeds.
    fn delete(&self, key: &str) -> Result<()>;
    /// Every object whose key starts with `prefix` (a plain string prefix, `""` for all), sorted
    /// by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// A short description for messages (`file:///var/lib/shale`).
    fn url(&self) -> String;
}

/// Check a key against the rules above.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Error::invalid(format!("object key must be 1..=1024 bytes, got {}", key.len())));
    }
    if key.contains('\0') {
        return Err(Error::invalid("object key contains NUL"));
    }
    for c in key.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(Error::invalid(format!("object key {key:?} has an empty, '.' or '..' component")));
        }
    }
    Ok(())
}
