//! Snapshots of an image (`rbd_snap_*`): create, list, remove, rename, rollback, protect, the
//! snapshot limit, lookups by name and id, and switching a handle to a snapshot.
//!
//! Measured on Ceph 16.2.15 (README.md) and matched: an existing name is `-EEXIST`, a missing
//! snapshot `-ENOENT`; creating beyond the limit `-EDQUOT`; protecting a protected snapshot and
//! removing a protected one or one with clones `-EBUSY`; unprotecting an unprotected one
//! `-EINVAL`; with clones `-EBUSY`. Snapshot changes act on the head even while the handle
//! shows a snapshot (librbd allows `snap_create` there), and are `-EROFS` on read-only handles.
//! Writes on a handle set to a snapshot are `-EROFS`.

use crate::cstr;
use crate::errno;
use crate::guard::ffi;
use crate::image::{copy_str_len, put, with_image, RbdImage};
use crate::state::globals;
use crate::types::{
    librbd_progress_fn_t, rbd_image_t, rbd_snap_group_namespace_t, rbd_snap_info_t,
    rbd_snap_mirror_namespace_t, rbd_snap_namespace_type_t, timespec,
};
use core::ffi::{c_char, c_int, c_void};
use shale_image::{ErrorKind, SnapInfo};

/// `RBD_SNAP_CREATE_SKIP_QUIESCE` / `RBD_SNAP_CREATE_IGNORE_QUIESCE_ERROR` (one of them).
const CREATE_SKIP_QUIESCE: u32 = 1;
const CREATE_IGNORE_QUIESCE_ERROR: u32 = 2;
/// `RBD_SNAP_REMOVE_UNPROTECT` / `RBD_SNAP_REMOVE_FLATTEN` (`FORCE` is both).
const REMOVE_UNPROTECT: u32 = 1;
const REMOVE_FLATTEN: u32 = 2;
/// `RBD_SNAP_NAMESPACE_TYPE_USER`.
const NAMESPACE_USER: rbd_snap_namespace_type_t = 0;

/// A `const char *` argument (`-EINVAL` if NULL).
fn name_arg<'a>(p: *const c_char) -> Result<&'a str, c_int> {
    // SAFETY: every snapshot call takes NUL-terminated names (caller contract).
    unsafe { cstr::arg(p) }
}

/// The image's snapshots, oldest first.
pub(crate) fn snapshots(img: &RbdImage) -> Result<Vec<SnapInfo>, c_int> {
    img.head().snap_list().map_err(|e| errno::of(&e))
}

/// The snapshot with id `id` (`-ENOENT`).
pub(crate) fn by_id(img: &RbdImage, id: u64) -> Result<SnapInfo, c_int> {
    snapshots(img)?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or(-libc::ENOENT)
}

fn by_name(img: &RbdImage, name: &str) -> Result<SnapInfo, c_int> {
    snapshots(img)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or(-libc::ENOENT)
}

/// Call a librbd progress callback, if any.
pub(crate) fn progress(cb: librbd_progress_fn_t, arg: *mut c_void) -> impl FnMut(u64, u64) {
    move |done, total| {
        if let Some(cb) = cb {
            // SAFETY: the caller's progress callback with its own argument.
            unsafe { cb(done, total, arg) };
        }
    }
}

fn create(image: rbd_image_t, name: *const c_char, flags: u32) -> c_int {
    with_image(image, |img| {
        let name = name_arg(name)?;
        if !matches!(flags, 0 | CREATE_SKIP_QUIESCE | CREATE_IGNORE_QUIESCE_ERROR) {
            return Err(-libc::EINVAL);
        }
        let head = img.head_rw()?;
        // Forwarded to another client that holds the lock explicitly (it has the writer).
        let forward = img.forward_to_owner(&head)?;
        let r = if forward {
            head.snap_create_at_owner(name)
        } else {
            Ok(false)
        }
        .and_then(|done| {
            if done {
                Ok(())
            } else {
                head.snap_create(name).map(drop)
            }
        });
        match r {
            Ok(()) => {
                img.adopt_after_op();
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NoSpace => {
                crate::guard::log_error(&e);
                Err(-libc::EDQUOT)
            }
            Err(e) => Err(errno::of(&e)),
        }
    })
}

/// `int rbd_snap_create(rbd_image_t image, const char *snapname)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_create(
    image: rbd_image_t,
    snapname: *const c_char,
) -> c_int {
    ffi("rbd_snap_create", -libc::EFAULT, || {
        create(image, snapname, 0)
    })
}

/// `int rbd_snap_create2(rbd_image_t image, const char *snap_name, uint32_t flags,
/// librbd_progress_fn_t cb, void *cbdata)`: flags 0, SKIP_QUIESCE or IGNORE_QUIESCE_ERROR
/// (there is nothing to quiesce); anything else `-EINVAL`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_create2(
    image: rbd_image_t,
    snap_name: *const c_char,
    flags: u32,
    _cb: librbd_progress_fn_t,
    _cbdata: *mut c_void,
) -> c_int {
    ffi("rbd_snap_create2", -libc::EFAULT, || {
        create(image, snap_name, flags)
    })
}

/// `int rbd_snap_list(rbd_image_t image, rbd_snap_info_t *snaps, int *max_snaps)`: returns the
/// number of snapshots, the entries (names malloc'd) and an all-zero terminator; `-ERANGE` with
/// `*max_snaps` = count + 1 when the array is short.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_list(
    image: rbd_image_t,
    snaps: *mut rbd_snap_info_t,
    max_snaps: *mut c_int,
) -> c_int {
    let call = || {
        ffi("rbd_snap_list", -libc::EFAULT, || {
            let mut n = 0;
            let r = with_image(image, |img| {
                if max_snaps.is_null() {
                    return Err(-libc::EINVAL);
                }
                let list = snapshots(img)?;
                let need = c_int::try_from(list.len() + 1).map_err(|_| -libc::EOVERFLOW)?;
                // SAFETY: `max_snaps` is non-NULL, readable and writable; `snaps` has room for
                // `*max_snaps` entries (caller contract).
                unsafe {
                    if snaps.is_null() || *max_snaps < need {
                        *max_snaps = need;
                        return Err(-libc::ERANGE);
                    }
                    for (i, s) in list.iter().enumerate() {
                        snaps.add(i).write(rbd_snap_info_t {
                            id: s.id,
                            size: s.size,
                            name: cstr::malloc_str(&s.name),
                        });
                    }
                    snaps.add(list.len()).write(rbd_snap_info_t {
                        id: 0,
                        size: 0,
                        name: std::ptr::null(),
                    });
                }
                n = need - 1;
                Ok(())
            });
            if r < 0 {
                r
            } else {
                n
            }
        })
    };
    // SAFETY: `snaps` has room for `*max_snaps` entries (caller contract).
    unsafe { crate::outlist::guarded(snaps, max_snaps, call) }
}

/// `void rbd_snap_list_end(rbd_snap_info_t *snaps)`: frees the names up to the terminator.
///
/// # Safety
/// `snaps` is NULL or an array filled by `rbd_snap_list`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_list_end(snaps: *mut rbd_snap_info_t) {
    ffi("rbd_snap_list_end", (), || {
        if snaps.is_null() {
            return;
        }
        let mut p = snaps;
        // SAFETY: the array ends with an entry whose name is NULL; every name before it came
        // from malloc in rbd_snap_list.
        unsafe {
            while !(*p).name.is_null() {
                libc::free((*p).name as *mut c_void);
                (*p).name = std::ptr::null();
                p = p.add(1);
            }
        }
    })
}

/// `int rbd_snap_exists(rbd_image_t image, const char *snapname, bool *exists)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_exists(
    image: rbd_image_t,
    snapname: *const c_char,
    exists: *mut bool,
) -> c_int {
    ffi("rbd_snap_exists", -libc::EFAULT, || {
        with_image(image, |img| {
            let name = name_arg(snapname)?;
            let found = snapshots(img)?.iter().any(|s| s.name == name);
            // SAFETY: NULL-checked by `put`; writable by the caller's contract.
            unsafe { put(exists, found) }
        })
    })
}

/// Flatten every clone of snapshot `name` of the image (RBD_SNAP_REMOVE_FLATTEN).
fn flatten_children(
    img: &RbdImage,
    name: &str,
    cb: &mut impl FnMut(u64, u64),
) -> Result<(), c_int> {
    let head = img.head();
    let store = crate::clone::store_of(img)?;
    let kids = store
        .cluster
        .list_children(head.pool(), &head.name(), name)
        .map_err(|e| errno::of(&e))?;
    for (pool, child) in kids {
        let id = store
            .cluster
            .image_id(&pool, &child)
            .map_err(|e| errno::of(&e))?;
        let g = globals();
        let shared = g
            .open_image(&store, &pool, &id, false)
            .map_err(|e| errno::of(&e))?;
        let r = shared.image().flatten(&mut *cb).map_err(|e| errno::of(&e));
        let c = g.release_image(&shared).map_err(|e| errno::of(&e));
        r.and(c)?;
    }
    Ok(())
}

fn remove(
    image: rbd_image_t,
    name: *const c_char,
    flags: u32,
    cb: librbd_progress_fn_t,
    arg: *mut c_void,
) -> c_int {
    with_image(image, |img| {
        // Unknown flag bits are ignored, as librbd does.
        let name = name_arg(name)?;
        let head = img.head_rw()?;
        let mut cb = progress(cb, arg);
        if flags & REMOVE_FLATTEN != 0 {
            flatten_children(img, name, &mut cb)?;
        }
        let snap = by_name(img, name)?;
        if flags & REMOVE_UNPROTECT != 0 && snap.protected {
            head.snap_unprotect(name).map_err(|e| errno::of(&e))?;
        }
        head.snap_remove(name).map_err(|e| errno::of(&e))?;
        crate::image::mark_snap_removed(&img.shared, snap.id);
        cb(1, 1);
        Ok(())
    })
}

/// `int rbd_snap_remove(rbd_image_t image, const char *snapname)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_remove(
    image: rbd_image_t,
    snapname: *const c_char,
) -> c_int {
    ffi("rbd_snap_remove", -libc::EFAULT, || {
        remove(image, snapname, 0, None, std::ptr::null_mut())
    })
}

/// `int rbd_snap_remove2(rbd_image_t image, const char *snap_name, uint32_t flags,
/// librbd_progress_fn_t cb, void *cbdata)`: UNPROTECT unprotects first, FLATTEN flattens the
/// snapshot's clones first.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_remove2(
    image: rbd_image_t,
    snap_name: *const c_char,
    flags: u32,
    cb: librbd_progress_fn_t,
    cbdata: *mut c_void,
) -> c_int {
    ffi("rbd_snap_remove2", -libc::EFAULT, || {
        remove(image, snap_name, flags, cb, cbdata)
    })
}

/// `int rbd_snap_remove_by_id(rbd_image_t image, uint64_t snap_id)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_remove_by_id(image: rbd_image_t, snap_id: u64) -> c_int {
    ffi("rbd_snap_remove_by_id", -libc::EFAULT, || {
        with_image(image, |img| {
            let s = by_id(img, snap_id)?;
            let head = img.head_rw()?;
            head.snap_remove(&s.name).map_err(|e| errno::of(&e))?;
            crate::image::mark_snap_removed(&img.shared, s.id);
            Ok(())
        })
    })
}

/// `int rbd_snap_rename(rbd_image_t image, const char *snapname, const char *dstsnapsname)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_rename(
    image: rbd_image_t,
    snapname: *const c_char,
    dstsnapsname: *const c_char,
) -> c_int {
    ffi("rbd_snap_rename", -libc::EFAULT, || {
        with_image(image, |img| {
            let (from, to) = (name_arg(snapname)?, name_arg(dstsnapsname)?);
            by_name(img, from)?;
            let head = img.head_rw()?;
            head.snap_rename(from, to).map_err(|e| errno::of(&e))
        })
    })
}

fn rollback(
    image: rbd_image_t,
    name: *const c_char,
    cb: librbd_progress_fn_t,
    arg: *mut c_void,
) -> c_int {
    with_image(image, |img| {
        let name = name_arg(name)?;
        img.writable()?;
        by_name(img, name)?;
        let head = img.head_rw()?;
        img.check_rollback(&head)?;
        head.snap_rollback(name, progress(cb, arg))
            .map_err(|e| crate::owner::lock_errno(&e))?;
        img.adopt_after_op();
        Ok(())
    })
}

/// `int rbd_snap_rollback(rbd_image_t image, const char *snapname)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_rollback(
    image: rbd_image_t,
    snapname: *const c_char,
) -> c_int {
    ffi("rbd_snap_rollback", -libc::EFAULT, || {
        rollback(image, snapname, None, std::ptr::null_mut())
    })
}

/// `int rbd_snap_rollback_with_progress(rbd_image_t image, const char *snapname,
/// librbd_progress_fn_t cb, void *cbdata)`: progress in bytes rewritten.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_rollback_with_progress(
    image: rbd_image_t,
    snapname: *const c_char,
    cb: librbd_progress_fn_t,
    cbdata: *mut c_void,
) -> c_int {
    ffi("rbd_snap_rollback_with_progress", -libc::EFAULT, || {
        rollback(image, snapname, cb, cbdata)
    })
}

/// `int rbd_snap_protect(rbd_image_t image, const char *snap_name)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_protect(
    image: rbd_image_t,
    snap_name: *const c_char,
) -> c_int {
    ffi("rbd_snap_protect", -libc::EFAULT, || {
        with_image(image, |img| {
            let name = name_arg(snap_name)?;
            let head = img.head_rw()?;
            head.snap_protect(name).map_err(|e| errno::of(&e))
        })
    })
}

/// `int rbd_snap_unprotect(rbd_image_t image, const char *snap_name)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_unprotect(
    image: rbd_image_t,
    snap_name: *const c_char,
) -> c_int {
    ffi("rbd_snap_unprotect", -libc::EFAULT, || {
        with_image(image, |img| {
            let name = name_arg(snap_name)?;
            let head = img.head_rw()?;
            head.snap_unprotect(name).map_err(|e| errno::of(&e))
        })
    })
}

/// `int rbd_snap_is_protected(rbd_image_t image, const char *snap_name, int *is_protected)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_is_protected(
    image: rbd_image_t,
    snap_name: *const c_char,
    is_protected: *mut c_int,
) -> c_int {
    ffi("rbd_snap_is_protected", -libc::EFAULT, || {
        with_image(image, |img| {
            let s = by_name(img, name_arg(snap_name)?)?;
            // SAFETY: NULL-checked by `put`; writable by the caller's contract.
            unsafe { put(is_protected, c_int::from(s.protected)) }
        })
    })
}

/// `int rbd_snap_get_limit(rbd_image_t image, uint64_t *limit)`: UINT64_MAX when unlimited.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_get_limit(image: rbd_image_t, limit: *mut u64) -> c_int {
    ffi("rbd_snap_get_limit", -libc::EFAULT, || {
        with_image(image, |img| {
            let l = img.head().snap_limit().map_err(|e| errno::of(&e))?;
            // SAFETY: NULL-checked by `put`; writable by the caller's contract.
            unsafe { put(limit, l.unwrap_or(u64::MAX)) }
        })
    })
}

/// `int rbd_snap_set_limit(rbd_image_t image, uint64_t limit)`: UINT64_MAX removes the limit.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_set_limit(image: rbd_image_t, limit: u64) -> c_int {
    ffi("rbd_snap_set_limit", -libc::EFAULT, || {
        with_image(image, |img| {
            let head = img.head_rw()?;
            img.check_not_held_explicitly(&head)?;
            head.snap_set_limit((limit != u64::MAX).then_some(limit))
                .map_err(|e| errno::of(&e))
        })
    })
}

/// `int rbd_snap_get_id(rbd_image_t image, const char *snapname, uint64_t *snap_id)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_get_id(
    image: rbd_image_t,
    snapname: *const c_char,
    snap_id: *mut u64,
) -> c_int {
    ffi("rbd_snap_get_id", -libc::EFAULT, || {
        with_image(image, |img| {
            let s = by_name(img, name_arg(snapname)?)?;
            // SAFETY: NULL-checked by `put`; writable by the caller's contract.
            unsafe { put(snap_id, s.id) }
        })
    })
}

/// `int rbd_snap_get_name(rbd_image_t image, uint64_t snap_id, char *snapname,
/// size_t *name_len)`: `-ERANGE` with `*name_len` = size needed; on success too.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_get_name(
    image: rbd_image_t,
    snap_id: u64,
    snapname: *mut c_char,
    name_len: *mut usize,
) -> c_int {
    ffi("rbd_snap_get_name", -libc::EFAULT, || {
        with_image(image, |img| {
            let s = by_id(img, snap_id)?;
            // SAFETY: forwarded caller contract.
            unsafe { copy_str_len(&s.name, snapname, name_len, true) }
        })
    })
}

/// `int rbd_snap_get_timestamp(rbd_image_t image, uint64_t snap_id, struct timespec *ts)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_get_timestamp(
    image: rbd_image_t,
    snap_id: u64,
    timestamp: *mut timespec,
) -> c_int {
    ffi("rbd_snap_get_timestamp", -libc::EFAULT, || {
        with_image(image, |img| {
            let s = by_id(img, snap_id)?;
            let t = timespec {
                tv_sec: s.created as libc::time_t,
                tv_nsec: 0,
            };
            // SAFETY: NULL-checked by `put`; writable by the caller's contract.
            unsafe { put(timestamp, t) }
        })
    })
}

/// `int rbd_snap_get_namespace_type(rbd_image_t image, uint64_t snap_id,
/// rbd_snap_namespace_type_t *namespace_type)`: every snapshot is a user snapshot.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_get_namespace_type(
    image: rbd_image_t,
    snap_id: u64,
    namespace_type: *mut rbd_snap_namespace_type_t,
) -> c_int {
    ffi("rbd_snap_get_namespace_type", -libc::EFAULT, || {
        with_image(image, |img| {
            by_id(img, snap_id)?;
            // SAFETY: NULL-checked by `put`; writable by the caller's contract.
            unsafe { put(namespace_type, NAMESPACE_USER) }
        })
    })
}

/// A user snapshot has no group, trash or mirror namespace: `-EINVAL` (as librbd), a missing
/// one `-ENOENT`.
fn not_that_namespace(image: rbd_image_t, snap_id: u64) -> c_int {
    with_image(image, |img| {
        by_id(img, snap_id)?;
        Err(-libc::EINVAL)
    })
}

/// `rbd_snap_get_group_namespace`: `-EINVAL` for user snapshots.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_get_group_namespace(
    image: rbd_image_t,
    snap_id: u64,
    _group_snap: *mut rbd_snap_group_namespace_t,
    _group_snap_size: usize,
) -> c_int {
    ffi("rbd_snap_get_group_namespace", -libc::EFAULT, || {
        not_that_namespace(image, snap_id)
    })
}

/// `rbd_snap_group_namespace_cleanup`: nothing is ever filled in.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_group_namespace_cleanup(
    _group_snap: *mut rbd_snap_group_namespace_t,
    _group_snap_size: usize,
) -> c_int {
    ffi("rbd_snap_group_namespace_cleanup", -libc::EFAULT, || 0)
}

/// `rbd_snap_get_trash_namespace`: `-EINVAL` for user snapshots.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_get_trash_namespace(
    image: rbd_image_t,
    snap_id: u64,
    _original_name: *mut c_char,
    _max_length: usize,
) -> c_int {
    ffi("rbd_snap_get_trash_namespace", -libc::EFAULT, || {
        not_that_namespace(image, snap_id)
    })
}

/// `rbd_snap_get_mirror_namespace`: `-EINVAL` for user snapshots.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_get_mirror_namespace(
    image: rbd_image_t,
    snap_id: u64,
    _mirror_snap: *mut rbd_snap_mirror_namespace_t,
    _mirror_snap_size: usize,
) -> c_int {
    ffi("rbd_snap_get_mirror_namespace", -libc::EFAULT, || {
        not_that_namespace(image, snap_id)
    })
}

/// `rbd_snap_mirror_namespace_cleanup`: nothing is ever filled in.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_mirror_namespace_cleanup(
    _mirror_snap: *mut rbd_snap_mirror_namespace_t,
    _mirror_snap_size: usize,
) -> c_int {
    ffi("rbd_snap_mirror_namespace_cleanup", -libc::EFAULT, || 0)
}

/// Set the handle to snapshot `name` (None: the head).
fn set(img: &RbdImage, name: Option<&str>) -> Result<(), c_int> {
    let Some(name) = name else {
        return img.set_snap(None);
    };
    by_name(img, name)?;
    let head = img.head();
    let store = crate::clone::store_of(img)?;
    let view = store
        .cluster
        .open_image_at(head.pool(), &head.name(), name)
        .map_err(|e| errno::of(&e))?;
    img.set_snap(Some(view))
}

/// `int rbd_snap_set(rbd_image_t image, const char *snapname)`: NULL goes back to the head.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_set(image: rbd_image_t, snapname: *const c_char) -> c_int {
    ffi("rbd_snap_set", -libc::EFAULT, || {
        with_image(image, |img| {
            // SAFETY: NULL or a C string (caller contract).
            let name = unsafe { cstr::opt_arg(snapname) }?;
            set(img, name)
        })
    })
}

/// `int rbd_snap_set_by_id(rbd_image_t image, uint64_t snap_id)`: `CEPH_NOSNAP` (UINT64_MAX -
/// 1) goes back to the head.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_set_by_id(image: rbd_image_t, snap_id: u64) -> c_int {
    ffi("rbd_snap_set_by_id", -libc::EFAULT, || {
        with_image(image, |img| {
            if snap_id == u64::MAX - 1 {
                return set(img, None);
            }
            let s = by_id(img, snap_id)?;
            set(img, Some(&s.name))
        })
    })
}
