//! Pools and I/O contexts (`rados_ioctx_t`): a pool of the connected store plus a namespace.
//!
//! Return conventions measured on Ceph 16.2.15 (see README.md): names are copied with their
//! NUL and the call returns their length, `-ERANGE` when they do not fit; a missing pool is
//! `-ENOENT`, an existing one on create `-EEXIST`. Only the default namespace "" holds images.

use crate::cluster::{connected, lookup, status};
use crate::cstr;
use crate::errno;
use crate::guard::ffi;
use crate::state::{globals, lock, Store};
use crate::types::{rados_ioctx_t, rados_pool_stat_t, rados_t};
use core::ffi::{c_char, c_int, c_uint};
use std::sync::{Arc, Mutex};

/// One `rados_ioctx_t`.
#[derive(Debug)]
pub(crate) struct Ioctx {
    /// The `rados_t` it was made from (for `rados_ioctx_get_cluster`).
    cluster: usize,
    pub(crate) store: Arc<Store>,
    pub(crate) pool: String,
    pub(crate) pool_id: i64,
    namespace: Mutex<String>,
}

impl Ioctx {
    pub(crate) fn namespace(&self) -> String {
        lock(&self.namespace).clone()
    }
}

pub(crate) fn lookup_ioctx(io: rados_ioctx_t) -> Result<Arc<Ioctx>, c_int> {
    globals().ioctxs.get(io).ok_or(-libc::EINVAL)
}

/// Copy `s` and its NUL into `buf` of `maxlen` bytes; the length of `s`, or `-ERANGE`.
///
/// # Safety
/// `buf` is NULL or writable for `maxlen` bytes.
unsafe fn copy_name(s: &str, buf: *mut c_char, maxlen: usize) -> c_int {
    if buf.is_null() || s.len() >= maxlen {
        return -libc::ERANGE;
    }
    // SAFETY: forwarded caller contract; `s` plus NUL fits.
    unsafe { cstr::snprintf(buf, maxlen, s) };
    s.len() as c_int
}

fn create_pool(cluster: rados_t, name: *const c_char) -> c_int {
    status((|| {
        let store = connected(cluster)?;
        // SAFETY: `name` is NULL or a C string (caller contract).
        let name = unsafe { cstr::arg(name) }?;
        store.cluster.pool_create(name).map_err(|e| errno::of(&e))
    })())
}

/// `int rados_pool_create(rados_t cluster, const char *pool_name)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_pool_create(cluster: rados_t, pool_name: *const c_char) -> c_int {
    ffi("rados_pool_create", -libc::EFAULT, || {
        create_pool(cluster, pool_name)
    })
}

/// `rados_pool_create_with_auid`: the auid is ignored (as in Ceph 16).
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_pool_create_with_auid(
    cluster: rados_t,
    pool_name: *const c_char,
    _auid: u64,
) -> c_int {
    ffi("rados_pool_create_with_auid", -libc::EFAULT, || {
        create_pool(cluster, pool_name)
    })
}

/// `rados_pool_create_with_crush_rule`: there is no CRUSH; the rule is ignored.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_pool_create_with_crush_rule(
    cluster: rados_t,
    pool_name: *const c_char,
    _crush_rule_num: u8,
) -> c_int {
    ffi("rados_pool_create_with_crush_rule", -libc::EFAULT, || {
        create_pool(cluster, pool_name)
    })
}

/// `rados_pool_create_with_all`: auid and rule are ignored.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_pool_create_with_all(
    cluster: rados_t,
    pool_name: *const c_char,
    _auid: u64,
    _crush_rule_num: u8,
) -> c_int {
    ffi("rados_pool_create_with_all", -libc::EFAULT, || {
        create_pool(cluster, pool_name)
    })
}

/// `int rados_pool_delete(rados_t cluster, const char *pool_name)`: like Ceph, the pool goes
/// with everything in it; `-EBUSY` while this process has one of its images open.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_pool_delete(cluster: rados_t, pool_name: *const c_char) -> c_int {
    ffi("rados_pool_delete", -libc::EFAULT, || {
        status((|| {
            let store = connected(cluster)?;
            // SAFETY: `pool_name` is NULL or a C string (caller contract).
            let name = unsafe { cstr::arg(pool_name) }?;
            let images = store.cluster.list_images(name).map_err(|e| errno::of(&e))?;
            let g = globals();
            for im in images {
                if g.open_handles(&(store.url.clone(), name.to_string(), im.id)) > 0 {
                    return Err(-libc::EBUSY);
                }
            }
            store
                .cluster
                .pool_remove(name, true)
                .map_err(|e| errno::of(&e))
        })())
    })
}

/// `int rados_pool_list(rados_t cluster, char *buf, size_t len)`: NUL-separated names and a
/// final NUL; names that fit are copied, and the length needed for all is returned.
///
/// # Safety
/// C caller contract of librados.h: `buf` is writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rados_pool_list(cluster: rados_t, buf: *mut c_char, len: usize) -> c_int {
    ffi("rados_pool_list", -libc::EFAULT, || {
        let store = match connected(cluster) {
            Ok(s) => s,
            Err(e) => return e,
        };
        if len > 0 && buf.is_null() {
            return -libc::EINVAL;
        }
        let pools = match store.cluster.pool_list() {
            Ok(p) => p,
            Err(e) => return errno::of(&e),
        };
        if !buf.is_null() {
            // SAFETY: `buf` is writable for `len` bytes (caller contract).
            unsafe { std::ptr::write_bytes(buf, 0, len) };
        }
        let (mut at, mut needed, mut room) = (0usize, 0usize, len);
        let mut copying = true;
        for (name, _) in &pools {
            let rl = name.len() + 1;
            if copying && room >= rl {
                // SAFETY: `at + rl <= len` bytes of `buf` are writable; the NUL is already there.
                unsafe {
                    std::ptr::copy_nonoverlapping(name.as_ptr(), buf.add(at).cast(), name.len())
                };
                at += rl;
                room -= rl;
            } else {
                copying = false;
            }
            needed += rl;
        }
        (needed + 1) as c_int
    })
}

/// `int64_t rados_pool_lookup(rados_t cluster, const char *pool_name)`: the id or `-ENOENT`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_pool_lookup(cluster: rados_t, pool_name: *const c_char) -> i64 {
    ffi("rados_pool_lookup", -i64::from(libc::EFAULT), || {
        let r = (|| {
            let store = connected(cluster)?;
            // SAFETY: `pool_name` is NULL or a C string (caller contract).
            let name = unsafe { cstr::arg(pool_name) }?;
            store.cluster.pool_id(name).map_err(|e| errno::of(&e))
        })();
        r.unwrap_or_else(i64::from)
    })
}

/// `int rados_pool_reverse_lookup(rados_t cluster, int64_t id, char *buf, size_t maxlen)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_pool_reverse_lookup(
    cluster: rados_t,
    id: i64,
    buf: *mut c_char,
    maxlen: usize,
) -> c_int {
    ffi("rados_pool_reverse_lookup", -libc::EFAULT, || {
        let store = match connected(cluster) {
            Ok(s) => s,
            Err(e) => return e,
        };
        match store.cluster.pool_list() {
            Ok(pools) => match pools.iter().find(|p| p.1 == id) {
                // SAFETY: forwarded caller contract.
                Some((name, _)) => unsafe { copy_name(name, buf, maxlen) },
                None => -libc::ENOENT,
            },
            Err(e) => errno::of(&e),
        }
    })
}

fn make_ioctx(
    cluster: rados_t,
    pool: Result<(String, i64), c_int>,
    out: *mut rados_ioctx_t,
) -> c_int {
    status((|| {
        let store = connected(cluster)?;
        if out.is_null() {
            return Err(-libc::EINVAL);
        }
        let (pool, pool_id) = pool?;
        let io = Arc::new(Ioctx {
            cluster: cluster as usize,
            store,
            pool,
            pool_id,
            namespace: Mutex::new(String::new()),
        });
        let h = globals().ioctxs.insert(io);
        // SAFETY: `out` is non-NULL and writable (caller contract).
        unsafe { out.write(h) };
        Ok(())
    })())
}

/// `int rados_ioctx_create(rados_t cluster, const char *pool_name, rados_ioctx_t *ioctx)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_ioctx_create(
    cluster: rados_t,
    pool_name: *const c_char,
    ioctx: *mut rados_ioctx_t,
) -> c_int {
    ffi("rados_ioctx_create", -libc::EFAULT, || {
        let pool = (|| {
            let store = connected(cluster)?;
            // SAFETY: `pool_name` is NULL or a C string (caller contract).
            let name = unsafe { cstr::arg(pool_name) }?;
            let id = store.cluster.pool_id(name).map_err(|e| errno::of(&e))?;
            Ok((name.to_string(), id))
        })();
        make_ioctx(cluster, pool, ioctx)
    })
}

/// `int rados_ioctx_create2(rados_t cluster, int64_t pool_id, rados_ioctx_t *ioctx)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_ioctx_create2(
    cluster: rados_t,
    pool_id: i64,
    ioctx: *mut rados_ioctx_t,
) -> c_int {
    ffi("rados_ioctx_create2", -libc::EFAULT, || {
        let pool = (|| {
            let store = connected(cluster)?;
            let pools = store.cluster.pool_list().map_err(|e| errno::of(&e))?;
            pools
                .into_iter()
                .find(|p| p.1 == pool_id)
                .ok_or(-libc::ENOENT)
        })();
        make_ioctx(cluster, pool, ioctx)
    })
}

/// `void rados_ioctx_destroy(rados_ioctx_t io)`: unknown handles are ignored.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn rados_ioctx_destroy(io: rados_ioctx_t) {
    ffi("rados_ioctx_destroy", (), || {
        drop(globals().ioctxs.remove(io));
    })
}

/// `void rados_ioctx_set_namespace(rados_ioctx_t io, const char *nspace)`: NULL is "".
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_ioctx_set_namespace(io: rados_ioctx_t, nspace: *const c_char) {
    ffi("rados_ioctx_set_namespace", (), || {
        if let Ok(io) = lookup_ioctx(io) {
            // SAFETY: `nspace` is NULL or a C string (caller contract).
            if let Ok(ns) = unsafe { cstr::opt_arg(nspace) } {
                *lock(&io.namespace) = ns.unwrap_or("").to_string();
            }
        }
    })
}

/// `int rados_ioctx_get_namespace(rados_ioctx_t io, char *buf, unsigned maxlen)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_ioctx_get_namespace(
    io: rados_ioctx_t,
    buf: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    ffi("rados_ioctx_get_namespace", -libc::EFAULT, || {
        match lookup_ioctx(io) {
            // SAFETY: forwarded caller contract.
            Ok(io) => unsafe { copy_name(&io.namespace(), buf, maxlen as usize) },
            Err(e) => e,
        }
    })
}

/// `int64_t rados_ioctx_get_id(rados_ioctx_t io)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn rados_ioctx_get_id(io: rados_ioctx_t) -> i64 {
    ffi("rados_ioctx_get_id", -i64::from(libc::EFAULT), || {
        lookup_ioctx(io).map_or(-i64::from(libc::EINVAL), |io| io.pool_id)
    })
}

/// `int rados_ioctx_get_pool_name(rados_ioctx_t io, char *buf, unsigned maxlen)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_ioctx_get_pool_name(
    io: rados_ioctx_t,
    buf: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    ffi("rados_ioctx_get_pool_name", -libc::EFAULT, || {
        match lookup_ioctx(io) {
            // SAFETY: forwarded caller contract.
            Ok(io) => unsafe { copy_name(&io.pool, buf, maxlen as usize) },
            Err(e) => e,
        }
    })
}

/// `rados_t rados_ioctx_get_cluster(rados_ioctx_t io)`: NULL for an unknown handle.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn rados_ioctx_get_cluster(io: rados_ioctx_t) -> rados_t {
    ffi("rados_ioctx_get_cluster", std::ptr::null_mut(), || {
        lookup_ioctx(io).map_or(std::ptr::null_mut(), |io| {
            if lookup(io.cluster as rados_t).is_ok() {
                io.cluster as rados_t
            } else {
                std::ptr::null_mut()
            }
        })
    })
}

/// `int rados_application_enable(rados_ioctx_t io, const char *app_name, int force)`: pools
/// have no application tags; accepted.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_application_enable(
    io: rados_ioctx_t,
    app_name: *const c_char,
    _force: c_int,
) -> c_int {
    ffi("rados_application_enable", -libc::EFAULT, || {
        status((|| {
            lookup_ioctx(io)?;
            // SAFETY: `app_name` is NULL or a C string (caller contract).
            unsafe { cstr::arg(app_name) }.map(drop)
        })())
    })
}

fn pool_stat(io: rados_ioctx_t, stats: *mut rados_pool_stat_t, bytes: usize) -> c_int {
    status((|| {
        let io = lookup_ioctx(io)?;
        if stats.is_null() {
            return Err(-libc::EINVAL);
        }
        let s = io
            .store
            .cluster
            .pool_stats(&io.pool)
            .map_err(|e| errno::of(&e))?;
        let st = rados_pool_stat_t {
            num_bytes: s.bytes,
            num_kb: s.bytes.div_ceil(1024),
            num_objects: s.objects,
            num_object_copies: s.objects,
            num_user_bytes: s.bytes,
            ..Default::default()
        };
        // SAFETY: `stats` is writable for `bytes` (96 or 128) bytes: the struct of the caller's
        // ABI version; we copy only that prefix of ours.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&st as *const rados_pool_stat_t).cast::<u8>(),
                stats.cast::<u8>(),
                bytes,
            )
        };
        Ok(())
    })())
}

/// `rados_ioctx_pool_stat@@LIBRADOS_14.2.0`: the 128-byte struct (exported by a generated
/// forwarder next to its `.symver`).
///
/// # Safety
/// C caller contract of librados.h.
pub(crate) unsafe extern "C" fn impl_shale_rados_ioctx_pool_stat_v14_2_0(
    io: rados_ioctx_t,
    stats: *mut rados_pool_stat_t,
) -> c_int {
    ffi("rados_ioctx_pool_stat", -libc::EFAULT, || {
        pool_stat(io, stats, std::mem::size_of::<rados_pool_stat_t>())
    })
}

/// `rados_ioctx_pool_stat@` (Base, before 14.2): the 96-byte struct.
///
/// # Safety
/// C caller contract of the old librados.h.
pub(crate) unsafe extern "C" fn impl_shale_rados_ioctx_pool_stat_base(
    io: rados_ioctx_t,
    stats: *mut rados_pool_stat_t,
) -> c_int {
    ffi("rados_ioctx_pool_stat", -libc::EFAULT, || {
        pool_stat(io, stats, 96)
    })
}
