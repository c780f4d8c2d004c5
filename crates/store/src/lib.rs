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
//!
//! Versions: a put returns a [`Version`]; the local and memory stores give every put a new one,
//! even with identical bytes. S3's version is the ETag, derived from the content, so an identical
//! rewrite keeps it; since the bytes are then the same, a compare-and-swap on it still compares
//! the state it claims to.
//!
//! Implementations, chosen by URL in [`open_store`]:
//! ```text
//!   memory://[name]          MemoryStore   (tests; a name shares one store in the process)
//!   file:///abs/dir          LocalStore    (a directory; atomic rename + fsync; flock for CAS)
//!   s3://bucket[/prefix]     S3Store       (object_store + conditional PUT; AWS_* environment)
//! ```
//! Decorators: [`FaultStore`] (injected latency, errors, offline). [`conformance`] holds the one
//! test suite every implementation and decorator must pass.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a front end / tool / device layer: real time is fine here
/// An `Invalid` error with `format!` arguments. Defined before the modules so they can use it.
macro_rules! invalid {
    ($($arg:tt)*) => {
        $crate::Error::invalid(format!($($arg)*))
    };
}

pub mod conformance;
pub mod counting;
pub mod fault;
pub mod local;
pub mod memory;
pub mod retry;
#[cfg(feature = "s3")]
pub mod s3;

use std::ops::Range;
use std::sync::Arc;

pub use counting::{CountingStore, StoreCounters};
pub use fault::FaultStore;
pub use local::LocalStore;
pub use memory::MemoryStore;
pub use retry::{Attempts, RetryStore};
#[cfg(feature = "s3")]
pub use s3::S3Store;

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
    /// The full key, as given to `put`.
    pub key: String,
    /// Size in bytes.
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
    /// The file that holds `key`, for stores that keep objects as files in a local directory
    /// (the engine then writes open segments in place and publishes them; see
    /// `shale_journal::InPlaceLog`). `None` for every other store.
    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// Move object `key` to key `to` of the same store without copying its bytes, for stores
    /// that keep objects as local files (`to` must be free: `Exists` otherwise). Once this
    /// returns `Ok(true)` nothing reads `key` any more, not even through a handle the store
    /// kept open, provided no read of `key` is in flight. `Ok(false)`: the store cannot
    /// (nothing changed); `NotFound`: no `key`.
    fn rename_local(&self, _key: &str, _to: &str) -> Result<bool> {
        Ok(false)
    }
    /// A short description for messages (`file:///var/lib/shale`).
    fn url(&self) -> String;
}

/// Check a key against the rules above.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 1024 {
        return Err(Error::invalid(format!(
            "object key must be 1..=1024 bytes, got {}",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(Error::invalid("object key contains NUL"));
    }
    for c in key.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(Error::invalid(format!(
                "object key {key:?} has an empty, '.' or '..' component"
            )));
        }
    }
    Ok(())
}

/// The URL schemes [`open_store`] understands, for error messages.
const SCHEMES: &str = "file:///absolute/dir, memory://[name], s3://bucket[/prefix]";

/// Open the store a URL names: `file:///abs/path` (created if missing), `memory://` (a fresh
/// empty store) or `memory://name` (shared by name within the process), `s3://bucket[/prefix]`
/// (endpoint and credentials from the `AWS_*` environment variables).
pub fn open_store(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid!(
            "store URL {url:?} has no scheme; supported: {SCHEMES}"
        ));
    };
    match scheme {
        "file" => {
            if !rest.starts_with('/') {
                return Err(invalid!(
                    "store URL {url:?}: a file URL needs an absolute path (file:///var/lib/shale)"
                ));
            }
            Ok(Arc::new(LocalStore::open(rest)?))
        }
        "memory" => {
            if rest.is_empty() {
                Ok(Arc::new(MemoryStore::new()))
            } else {
                Ok(MemoryStore::named(rest)?)
            }
        }
        #[cfg(feature = "s3")]
        "s3" => Ok(Arc::new(S3Store::open(url)?)),
        #[cfg(not(feature = "s3"))]
        "s3" => Err(Error::new(
            ErrorKind::Unsupported,
            format!("store URL {url:?}: shale-store was built without the `s3` feature"),
        )),
        _ => Err(invalid!(
            "store URL {url:?} has unsupported scheme {scheme:?}; supported: {SCHEMES}"
        )),
    }
}

/// Clamp `range` to an object of `size` bytes: the end is cut to `size`, a start at or past the
/// end gives an empty range. A range whose start is after its end is the caller's bug: `Invalid`.
pub(crate) fn clamp_range(key: &str, range: &Range<u64>, size: u64) -> Result<Range<u64>> {
    if range.start > range.end {
        return Err(invalid!(
            "object {key:?}: read range {}..{} is reversed",
            range.start,
            range.end
        ));
    }
    let end = range.end.min(size);
    let start = range.start.min(end);
    Ok(start..end)
}
