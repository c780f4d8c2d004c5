//! Cluster handles (`rados_t`): creation, configuration, shutdown.
//!
//! A handle is created unconnected with its [`Conf`]; `rados_connect` (phase 2) will turn the
//! configuration into a connection to Shale's stores.

use crate::conf::{Conf, Identity};
use crate::cstr;
use crate::guard::ffi;
use crate::handle::Table;
use crate::types::rados_t;
use core::ffi::{c_char, c_int};
use std::sync::{Arc, Mutex, MutexGuard};

/// One `rados_t`.
#[derive(Debug)]
pub(crate) struct Cluster {
    conf: Mutex<Conf>,
}

impl Cluster {
    pub(crate) fn conf(&self) -> MutexGuard<'_, Conf> {
        self.conf.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every live `rados_t`.
pub(crate) static CLUSTERS: Table<Cluster> = Table::new();

fn lookup(cluster: rados_t) -> Result<Arc<Cluster>, c_int> {
    CLUSTERS.get(cluster).ok_or(-libc::EINVAL)
}

fn status(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(0)
}

/// # Safety
/// `out` must be NULL or writable.
unsafe fn create(out: *mut rados_t, identity: Result<Identity, c_int>) -> c_int {
    if out.is_null() {
        return -libc::EINVAL;
    }
    let identity = match identity {
        Ok(i) => i,
        Err(e) => return e,
    };
    let handle = CLUSTERS.insert(Arc::new(Cluster {
        conf: Mutex::new(Conf::new(identity)),
    }));
    // SAFETY: `out` is non-NULL and the caller promises it is writable.
    unsafe { out.write(handle) };
    0
}

/// `int rados_create(rados_t *cluster, const char * const id)`: entity `client.<id>`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_create(cluster: *mut rados_t, id: *const c_char) -> c_int {
    ffi("rados_create", -libc::EFAULT, || {
        // SAFETY: `id` is NULL or a C string (caller contract); `cluster` checked by `create`.
        unsafe {
            let identity = cstr::opt_arg(id).map(|id| Identity::client(None, id));
            create(cluster, identity)
        }
    })
}

/// `int rados_create2(rados_t *pcluster, const char *const clustername,
/// const char * const name, uint64_t flags)`: `name` is a full entity name (`client.cinder`).
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_create2(
    pcluster: *mut rados_t,
    clustername: *const c_char,
    name: *const c_char,
    _flags: u64,
) -> c_int {
    ffi("rados_create2", -libc::EFAULT, || {
        // SAFETY: the strings are NULL or C strings (caller contract); `pcluster` is checked
        // by `create`.
        unsafe {
            let identity = cstr::opt_arg(clustername).and_then(|c| {
                let name = cstr::opt_arg(name)?;
                Identity::from_entity_name(c, name)
            });
            create(pcluster, identity)
        }
    })
}

/// `void rados_shutdown(rados_t cluster)`: unknown handles are ignored.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_shutdown(cluster: rados_t) {
    ffi("rados_shutdown", (), || {
        drop(CLUSTERS.remove(cluster));
    })
}

/// `int rados_conf_read_file(rados_t cluster, const char *path)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_conf_read_file(cluster: rados_t, path: *const c_char) -> c_int {
    ffi("rados_conf_read_file", -libc::EFAULT, || {
        status((|| {
            let c = lookup(cluster)?;
            // SAFETY: `path` is NULL or a C string (caller contract).
            let path = unsafe { cstr::opt_arg(path) }?;
            let mut conf = c.conf();
            conf.read_file(path)
        })())
    })
}

/// `int rados_conf_set(rados_t cluster, const char *option, const char *value)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_conf_set(
    cluster: rados_t,
    option: *const c_char,
    value: *const c_char,
) -> c_int {
    ffi("rados_conf_set", -libc::EFAULT, || {
        status((|| {
            let c = lookup(cluster)?;
            // SAFETY: both are C strings (caller contract); NULL is refused.
            let (option, value) = unsafe { (cstr::arg(option)?, cstr::arg(value)?) };
            let mut conf = c.conf();
            conf.set(option, value)
        })())
    })
}

/// `int rados_conf_get(rados_t cluster, const char *option, char *buf, size_t len)`.
///
/// Like librados: the value is copied `snprintf`-style, and `-ENAMETOOLONG` says it did not fit
/// with its NUL (callers retry with a larger buffer); `-ENOENT` for an unknown option.
///
/// # Safety
/// C caller contract of librados.h: `buf` is writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rados_conf_get(
    cluster: rados_t,
    option: *const c_char,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    ffi("rados_conf_get", -libc::EFAULT, || {
        status((|| {
            let c = lookup(cluster)?;
            // SAFETY: `option` is a C string (caller contract); NULL is refused.
            let option = unsafe { cstr::arg(option) }?;
            let value = c.conf().get(option)?;
            if buf.is_null() && len > 0 {
                return Err(-libc::EINVAL);
            }
            // SAFETY: `buf` is writable for `len` bytes (caller contract).
            if unsafe { cstr::snprintf(buf, len, &value) } {
                Ok(())
            } else {
                Err(-libc::ENAMETOOLONG)
            }
        })())
    })
}
