//! Tables of live C handles: a handle is `Arc::into_raw` of its object, and only handles in the
//! table are ever turned back into a reference.
//!
//! A stale, double-freed or foreign pointer (or a handle of the wrong kind: each kind has its own
//! table) is refused with an error instead of being dereferenced. Lookups hand out an `Arc`
//! clone, so an object stays alive while a call uses it even if another thread releases the
//! handle meanwhile.

use core::ffi::c_void;
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) struct Table<T> {
    live: Mutex<BTreeSet<usize>>,
    _kind: PhantomData<fn() -> Arc<T>>,
}

impl<T> Table<T> {
    pub(crate) const fn new() -> Self {
        Self {
            live: Mutex::new(BTreeSet::new()),
            _kind: PhantomData,
        }
    }

    fn live(&self) -> MutexGuard<'_, BTreeSet<usize>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register `obj` and return its handle.
    pub(crate) fn insert(&self, obj: Arc<T>) -> *mut c_void {
        let raw = Arc::into_raw(obj) as *mut c_void;
        self.live().insert(raw as usize);
        raw
    }

    /// The object behind a live handle.
    pub(crate) fn get(&self, handle: *mut c_void) -> Option<Arc<T>> {
        let live = self.live();
        if !live.contains(&(handle as usize)) {
            return None;
        }
        let raw = handle as *const T;
        // SAFETY: `handle` is in the table, so it came from `Arc::into_raw` in `insert` and the
        // table still owns that strong count (it is released only by `remove`, under this lock).
        unsafe {
            Arc::increment_strong_count(raw);
            Some(Arc::from_raw(raw))
        }
    }

    /// Every live object (for listings such as `rbd_watchers_list`).
    pub(crate) fn all(&self) -> Vec<Arc<T>> {
        let live = self.live();
        live.iter()
            .map(|&h| {
                let raw = h as *const T;
                // SAFETY: as in `get`: a live handle's strong count is owned by the table,
                // and we hold the table lock.
                unsafe {
                    Arc::increment_strong_count(raw);
                    Arc::from_raw(raw)
                }
            })
            .collect()
    }

    /// Unregister a handle, returning the table's reference to its object.
    pub(crate) fn remove(&self, handle: *mut c_void) -> Option<Arc<T>> {
        if !self.live().remove(&(handle as usize)) {
            return None;
        }
        // SAFETY: the handle was live, so it is an `Arc::into_raw` pointer whose strong count the
        // table owned; removing it from the set transfers that count to the returned Arc.
        Some(unsafe { Arc::from_raw(handle as *const T) })
    }
}
