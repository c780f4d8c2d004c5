//! The persisted sync status of one image at one location: `<prefix>loc/<name>` in the home
//! store, JSON in the metadata envelope (docs/FORMAT.md).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shale_error::{Error, ErrorKind, Result};
use shale_format::envelope::{self, Kind};
use shale_store::{ObjectStore, PutMode, Version};

/// Directory of the records, relative to the image prefix.
pub const RECORD_DIR: &str = "loc/";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationRecord {
    /// Every segment numbered below this that exists has its correct copy at the location.
    pub trusted_below: u64,
    /// The epoch of the writer that wrote this record: an older one never overwrites it.
    pub epoch: u64,
    /// `ok`, `degraded` (behind, retrying) or `error` (failing now).
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Unix ms of the next retry (0: none pending).
    #[serde(default)]
    pub retry_at_ms: u64,
    /// Unix ms since when the location has been behind (0: in sync).
    #[serde(default)]
    pub behind_since_ms: u64,
    #[serde(default)]
    pub bytes_written: u64,
    #[serde(default)]
    pub bytes_read: u64,
    #[serde(default)]
    pub updated_ms: u64,
    /// Objects deleted elsewhere but kept here while the location is behind (its copy stays
    /// a prefix of the history): not objects of the image any more, deleted once it is current.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_deletes: Vec<String>,
}

pub(crate) fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}{RECORD_DIR}{name}")
}

pub(crate) fn load(
    home: &dyn ObjectStore,
    prefix: &str,
    name: &str,
) -> Result<Option<(LocationRecord, Version)>> {
    let k = key(prefix, name);
    match home.get(&k) {
        Ok((b, v)) => {
            let body = envelope::decode(Kind::LocationStatus, &b).map_err(|e| e.context(&k))?;
            let r = serde_json::from_slice(body).map_err(|e| {
                Error::with_source(ErrorKind::Corruption, format!("{k}: bad record"), e)
            })?;
            Ok(Some((r, v)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Conditional write: `Busy` when someone else wrote it since `ver`.
pub(crate) fn store(
    home: &dyn ObjectStore,
    prefix: &str,
    name: &str,
    r: &LocationRecord,
    ver: Option<Version>,
) -> Result<Version> {
    let body = serde_json::to_vec(r)
        .map_err(|e| Error::with_source(ErrorKind::Invalid, "encoding a location record", e))?;
    let mode = match ver {
        Some(v) => PutMode::Update(v),
        None => PutMode::Create,
    };
    let res = home.put(
        &key(prefix, name),
        Bytes::from(envelope::encode(Kind::LocationStatus, &body)),
        mode,
    );
    match res {
        Err(e) if e.kind() == ErrorKind::Exists || e.kind() == ErrorKind::NotFound => {
            Err(Error::new(ErrorKind::Busy, e.to_string()))
        }
        r => r,
    }
}

/// Whether the record of location `name` says it was failing or behind when last written.
pub fn recorded_failing(home: &dyn ObjectStore, prefix: &str, name: &str) -> Result<bool> {
    Ok(load(home, prefix, name)?.is_some_and(|(r, _)| r.state == "error" || r.state == "degraded"))
}

/// Record location `name` as failing (an operator's word that it is gone).
pub fn mark_failing(home: &dyn ObjectStore, prefix: &str, name: &str, why: &str) -> Result<()> {
    for _ in 0..16 {
        let (mut r, ver) = match load(home, prefix, name)? {
            Some((r, v)) => (r, Some(v)),
            None => (LocationRecord::default(), None),
        };
        r.state = "error".into();
        r.last_error = Some(why.to_string());
        match store(home, prefix, name, &r, ver) {
            Err(e) if e.kind() == ErrorKind::Busy => continue,
            x => return x.map(drop),
        }
    }
    Err(Error::new(
        ErrorKind::Busy,
        format!("{prefix}{RECORD_DIR}{name}: busy"),
    ))
}

/// Remove an image's record of a location (the location left the image).
pub fn remove(home: &dyn ObjectStore, prefix: &str, name: &str) -> Result<()> {
    home.delete(&key(prefix, name))
}
