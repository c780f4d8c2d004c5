//! Cluster handles (`rados_t`): creation, configuration, shutdown.
//!
//! A handle is created unconnected with its [`Conf`]. `rados_connect` turns the configuration
//! into a connection to a Shale store: `shale_image::Settings::load()` (config file + `SHALE_*`
//! environment), then every `shale_<name>` option of the handle's conf (file or
//! `rados_conf_set`) applied with `Settings::set(name, value)`; a bad one is `-EINVAL`. Handles
//! naming the same store URL share one connection (see [`crate::state`]).

use crate::conf::{Conf, Identity};
use crate::cstr;
use crate::guard::ffi;
use crate::state::{globals, lock, Store};
use crate::types::{rados_cluster_stat_t, rados_t};
use core::ffi::{c_char, c_int};
use std::sync::{Arc, Mutex, MutexGuard};

/// One `rados_t`.
#[derive(Debug)]
pub(crate) struct Cluster {
    conf: Mutex<Conf>,
    store: Mutex<Option<Arc<Store>>>,
    instance: u64,
}

impl Cluster {
    pub(crate) fn conf(&self) -> MutexGuard<'_, Conf> {
        lock(&self.conf)
    }

    /// The connected store, `-ENOTCONN` before `rados_connect`.
    pub(crate) fn store(&self) -> Result<Arc<Store>, c_int> {
        lock(&self.store).clone().ok_or(-libc::ENOTCONN)
    }

    pub(crate) fn instance(&self) -> u64 {
        self.instance
    }
}

pub(crate) fn lookup(cluster: rados_t) -> Result<Arc<Cluster>, c_int> {
    globals().clusters.get(cluster).ok_or(-libc::EINVAL)
}

/// The store of a connected handle.
pub(crate) fn connected(cluster: rados_t) -> Result<Arc<Store>, c_int> {
    lookup(cluster)?.store()
}

pub(crate) fn status(r: Result<(), c_int>) -> c_int {
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
    crate::logging::ensure();
    let g = globals();
    let handle = g.clusters.insert(Arc::new(Cluster {
        conf: Mutex::new(Conf::new(identity)),
        store: Mutex::new(None),
        instance: g.instance_id(),
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
        drop(globals().clusters.remove(cluster));
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

/// `int rados_connect(rados_t cluster)`: `-EISCONN` if already connected, `-EINVAL` for a bad
/// `shale_*` setting, the store's error if it cannot be opened.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_connect(cluster: rados_t) -> c_int {
    ffi("rados_connect", -libc::EFAULT, || {
        status((|| {
            let c = lookup(cluster)?;
            if lock(&c.store).is_some() {
                return Err(-libc::EISCONN);
            }
            crate::logging::apply(&c.conf());
            let mut settings = shale_image::Settings::load().map_err(|e| {
                tracing::warn!("rados_connect: cannot load the Shale settings: {e}");
                -libc::EINVAL
            })?;
            for (name, value) in c.conf().shale_values() {
                if crate::logging::KEYS.contains(&format!("shale_{name}").as_str()) {
                    continue; // the log level, applied above
                }
                settings.set(&name, &value).map_err(|e| {
                    tracing::warn!("rados_connect: bad setting shale_{name}: {e}");
                    -libc::EINVAL
                })?;
            }
            let store = globals().connect(settings)?;
            *lock(&c.store) = Some(store);
            Ok(())
        })())
    })
}

/// `int rados_cluster_fsid(rados_t cluster, char *buf, size_t len)`: the length of the fsid,
/// `-ERANGE` if it does not fit with its NUL.
///
/// # Safety
/// C caller contract of librados.h: `buf` is writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn rados_cluster_fsid(
    cluster: rados_t,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    ffi("rados_cluster_fsid", -libc::EFAULT, || {
        let fsid = match connected(cluster) {
            Ok(s) => s.fsid(),
            Err(e) => return e,
        };
        if buf.is_null() || len <= fsid.len() {
            return -libc::ERANGE;
        }
        // SAFETY: `buf` is writable for `len` bytes, which hold the fsid and its NUL.
        unsafe { cstr::snprintf(buf, len, &fsid) };
        fsid.len() as c_int
    })
}

/// `uint64_t rados_get_instance_id(rados_t cluster)`: unique per handle in this process.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn rados_get_instance_id(cluster: rados_t) -> u64 {
    ffi("rados_get_instance_id", 0, || {
        lookup(cluster).map_or(0, |c| c.instance())
    })
}

/// `int rados_wait_for_latest_osdmap(rados_t cluster)`: nothing to wait for.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn rados_wait_for_latest_osdmap(cluster: rados_t) -> c_int {
    ffi("rados_wait_for_latest_osdmap", -libc::EFAULT, || {
        status(connected(cluster).map(drop))
    })
}

/// Usage of the filesystem behind a `file://` store, from `statvfs`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FsUsage {
    pub(crate) total: u64,
    /// Bytes in use (blocks minus free blocks, as `df` counts them).
    pub(crate) used: u64,
    /// Bytes available to this user.
    pub(crate) avail: u64,
}

impl FsUsage {
    /// The fraction in use, as `df`'s Use%: used / (used + available).
    pub(crate) fn fill_ratio(&self) -> f64 {
        let all = self.used.saturating_add(self.avail);
        if all == 0 {
            0.0
        } else {
            self.used as f64 / all as f64
        }
    }
}

/// [`FsUsage`] of a `file://` store; None for other stores (an object store has no fixed
/// size) or when `statvfs` fails.
pub(crate) fn fs_usage(store: &Store) -> Option<FsUsage> {
    let path = store.url.strip_prefix("file://")?;
    let cpath = std::ffi::CString::new(path).ok()?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `cpath` is a C string and `st` a writable statvfs.
    if unsafe { libc::statvfs(cpath.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    let blocks = st.f_blocks as u64;
    Some(FsUsage {
        total: blocks.saturating_mul(frsize),
        used: blocks
            .saturating_sub(st.f_bfree as u64)
            .saturating_mul(frsize),
        avail: (st.f_bavail as u64).saturating_mul(frsize),
    })
}

/// Capacity of the filesystem behind a `file://` store (total, available bytes); other stores
/// report 1 PiB free (an object store has no fixed size).
pub(crate) fn capacity(store: &Store) -> (u64, u64) {
    const PIB: u64 = 1 << 50;
    fs_usage(store).map_or((PIB, PIB), |u| (u.total, u.avail))
}

/// Usage of every pool of a store: (name, id, stats).
pub(crate) fn pool_usage(
    store: &Store,
) -> Result<Vec<(String, i64, shale_image::PoolStats)>, c_int> {
    let c = &store.cluster;
    let pools = c.pool_list().map_err(|e| crate::errno::of(&e))?;
    let mut out = Vec::with_capacity(pools.len());
    for (name, id) in pools {
        let st = c.pool_stats(&name).map_err(|e| crate::errno::of(&e))?;
        out.push((name, id, st));
    }
    Ok(out)
}

/// `int rados_cluster_stat(rados_t cluster, struct rados_cluster_stat_t *result)`.
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_cluster_stat(
    cluster: rados_t,
    result: *mut rados_cluster_stat_t,
) -> c_int {
    ffi("rados_cluster_stat", -libc::EFAULT, || {
        status((|| {
            let store = connected(cluster)?;
            if result.is_null() {
                return Err(-libc::EINVAL);
            }
            let (total, avail) = capacity(&store);
            let usage = pool_usage(&store)?;
            let used: u64 = usage.iter().map(|p| p.2.bytes).sum();
            let st = rados_cluster_stat_t {
                kb: total / 1024,
                kb_used: used / 1024,
                kb_avail: avail / 1024,
                num_objects: usage.iter().map(|p| p.2.objects).sum(),
            };
            // SAFETY: `result` is non-NULL and writable (caller contract).
            unsafe { result.write(st) };
            Ok(())
        })())
    })
}

/// Read `argc` C strings from `argv`; `-EINVAL` for a negative count, a NULL array or entry,
/// or an argument that is not UTF-8.
///
/// # Safety
/// `argv` is NULL or holds `argc` entries, each NULL or a C string that outlives `'a`.
unsafe fn read_argv<'a>(argc: c_int, argv: *const *const c_char) -> Result<Vec<&'a str>, c_int> {
    let n = usize::try_from(argc).map_err(|_| -libc::EINVAL)?;
    if n > 0 && argv.is_null() {
        return Err(-libc::EINVAL);
    }
    (0..n)
        // SAFETY: `argv` holds `argc` entries, each NULL (refused) or a C string.
        .map(|i| unsafe { cstr::arg(*argv.add(i)) })
        .collect()
}

/// `int rados_conf_parse_argv(rados_t cluster, int argc, const char **argv)`: applies the
/// options of `argv[1..]` (librados skips `argv[0]`, the program name). See
/// [`crate::conf::argv`] for what is taken; a bad argument is `-EINVAL` and changes nothing.
///
/// # Safety
/// C caller contract of librados.h: `argv` holds `argc` C strings.
#[no_mangle]
pub unsafe extern "C" fn rados_conf_parse_argv(
    cluster: rados_t,
    argc: c_int,
    argv: *mut *const c_char,
) -> c_int {
    ffi("rados_conf_parse_argv", -libc::EFAULT, || {
        status((|| {
            let c = lookup(cluster)?;
            // SAFETY: forwarded caller contract.
            let args = unsafe { read_argv(argc, argv) }?;
            let mut conf = c.conf();
            conf.parse_args(args.get(1..).unwrap_or(&[])).map(drop)
        })())
    })
}

/// `int rados_conf_parse_argv_remainder(rados_t cluster, int argc, const char **argv,
/// const char **remargv)`: applies the options of all of `argv` (`argv[0]` included, as
/// librados does) and fills `remargv[0..argc]` with the arguments that remain, in order (the
/// caller's own pointers), then NULLs up to `argc` entries; never more. On error `remargv` is
/// left untouched, as librados leaves it; a NULL `remargv` is `-EINVAL`.
///
/// # Safety
/// C caller contract of librados.h: `argv` holds `argc` C strings and `remargv` has room for
/// `argc` pointers.
#[no_mangle]
pub unsafe extern "C" fn rados_conf_parse_argv_remainder(
    cluster: rados_t,
    argc: c_int,
    argv: *mut *const c_char,
    remargv: *mut *const c_char,
) -> c_int {
    ffi("rados_conf_parse_argv_remainder", -libc::EFAULT, || {
        status((|| {
            let c = lookup(cluster)?;
            // SAFETY: forwarded caller contract.
            let args = unsafe { read_argv(argc, argv) }?;
            if remargv.is_null() && !args.is_empty() {
                return Err(-libc::EINVAL);
            }
            let rest = c.conf().parse_args(&args)?;
            for slot in 0..args.len() {
                let p = match rest.get(slot) {
                    // SAFETY: `i < argc`: an entry of the caller's array.
                    Some(&i) => unsafe { *argv.add(i) },
                    None => std::ptr::null(),
                };
                // SAFETY: `slot < argc` and `remargv` has room for `argc` pointers.
                unsafe { remargv.add(slot).write(p) };
            }
            Ok(())
        })())
    })
}

/// `int rados_conf_parse_env(rados_t cluster, const char *var)`: applies the options in the
/// environment variable `var` (NULL: `CEPH_ARGS`), split at blanks (no quoting, as in
/// librados); words that are not options are ignored; an unset variable is fine. A bad option
/// is `-EINVAL` and changes nothing (librados prints the error and returns 0).
///
/// # Safety
/// C caller contract of librados.h.
#[no_mangle]
pub unsafe extern "C" fn rados_conf_parse_env(cluster: rados_t, var: *const c_char) -> c_int {
    ffi("rados_conf_parse_env", -libc::EFAULT, || {
        status((|| {
            let c = lookup(cluster)?;
            // SAFETY: `var` is NULL or a C string (caller contract).
            let var = unsafe { cstr::opt_arg(var) }?.unwrap_or("CEPH_ARGS");
            if var.is_empty() || var.contains('=') {
                return Err(-libc::EINVAL);
            }
            let Some(text) = std::env::var_os(var) else {
                return Ok(());
            };
            let text = text.to_string_lossy();
            let args: Vec<&str> = text.split_whitespace().collect();
            let mut conf = c.conf();
            conf.parse_args(&args).map(drop)
        })())
    })
}
