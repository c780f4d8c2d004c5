//! An in-process store: a `BTreeMap` behind a mutex. For tests and for `memory://` URLs.
//!
//! Invariants: every operation holds the one mutex for its whole check-and-act, so conditional
//! puts are trivially atomic; versions come from a counter that only grows, so each put gets a
//! version never seen before in this store (also for identical bytes). A `BTreeMap` keeps `list`
//! sorted without a sort.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use crate::{clamp_range, validate_key, Error, ObjectMeta, ObjectStore, PutMode, Result, Version};

/// A store held in memory; nothing survives the process.
#[derive(Debug)]
pub struct MemoryStore {
    name: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, (Bytes, u64)>,
    next_version: u64,
}

/// Stores opened as `memory://name`: one per name for the life of the process, so that several
/// opens (e.g. two image handles in one test) see the same objects.
fn named_stores() -> &'static Mutex<HashMap<String, Arc<MemoryStore>>> {
    static NAMED: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();
    NAMED.get_or_init(Default::default)
}

impl MemoryStore {
    /// A fresh, empty, unnamed store.
    pub fn new() -> Self {
        MemoryStore {
            name: String::new(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The process-wide store called `name` (`memory://name`), created empty on first use.
    pub fn named(name: &str) -> Result<Arc<MemoryStore>> {
        if name.contains('/') || name.contains('\0') {
            return Err(invalid!(
                "memory store name {name:?} must not contain '/' or NUL"
            ));
        }
        let mut map = named_stores().lock().unwrap_or_else(|p| p.into_inner());
        let store = map.entry(name.to_string()).or_insert_with(|| {
            Arc::new(MemoryStore {
                name: name.to_string(),
                inner: Mutex::new(Inner::default()),
            })
        });
        Ok(Arc::clone(store))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated (every update is a
        // single insert or remove), so a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_found(&self, key: &str) -> Error {
        Error::not_found(format!("object {key:?} not found in {}", self.url()))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn version(n: u64) -> Version {
    Version(format!("m{n}"))
}

impl ObjectStore for MemoryStore {
    fn get(&self, key: &str) -> Result<(Bytes, Version)> {
        validate_key(key)?;
        let inner = self.lock();
        match inner.objects.get(key) {
            Some((data, v)) => Ok((data.clone(), version(*v))),
            None => Err(self.not_found(key)),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        validate_key(key)?;
        let inner = self.lock();
        let (data, _) = inner.objects.get(key).ok_or_else(|| self.not_found(key))?;
        let r = clamp_range(key, &range, data.len() as u64)?;
        // Both bounds are <= data.len(), which is a usize.
        Ok(data.slice(r.start as usize..r.end as usize))
    }

    fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version> {
        validate_key(key)?;
        let mut inner = self.lock();
        match (&mode, inner.objects.get(key)) {
            (PutMode::Overwrite, _) | (PutMode::Create, None) => {}
            (PutMode::Create, Some(_)) => {
                return Err(Error::exists(format!(
                    "object {key:?} already exists in {}",
                    self.url()
                )))
            }
            (PutMode::Update(_), None) => return Err(self.not_found(key)),
            (PutMode::Update(want), Some((_, have))) => {
                if version(*have) != *want {
                    return Err(Error::busy(format!(
                        "object {key:?} in {} changed: version is {}, expected {}",
                        self.url(),
                        version(*have).0,
                        want.0
                    )));
                }
            }
        }
        inner.next_version += 1;
        let v = inner.next_version;
        inner.objects.insert(key.to_string(), (data, v));
        Ok(version(v))
    }

    fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.lock().objects.remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let inner = self.lock();
        Ok(inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (d, _))| ObjectMeta {
                key: k.clone(),
                size: d.len() as u64,
            })
            .collect())
    }

    fn url(&self) -> String {
        format!("memory://{}", self.name)
    }
}
