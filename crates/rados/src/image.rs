//! Open images (`rbd_image_t`): open/close, stat and getters, metadata, resize, and the
//! snapshot/parent/diff calls an image without snapshots answers (QEMU makes them on open).
//!
//! Every handle of the same image in this process shares one engine ([`SharedImage`], see
//! [`crate::state`]). Return values follow what Ceph 16.2.15 measured (README.md): `-ERANGE`
//! with the needed size for short buffers, `-EROFS` on read-only handles, `-ENOENT` for a
//! missing image, snapshot or parent.

use crate::aio::Events;
use crate::cstr;
use crate::errno;
use crate::guard::ffi;
use crate::pools::lookup_ioctx;
use crate::state::{globals, lock, SharedImage};
use crate::types::{
    librbd_progress_fn_t, rados_ioctx_t, rbd_image_info_t, rbd_image_t, rbd_image_watcher_t,
    timespec,
};
use core::ffi::{c_char, c_int, c_void};
use shale_image::{Error, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a handle set to a snapshot checks that another process did not remove it.
const SNAP_CHECK: Duration = Duration::from_secs(1);

/// One `rbd_image_t`.
pub(crate) struct RbdImage {
    pub(crate) shared: Arc<SharedImage>,
    pub(crate) pool_id: i64,
    pub(crate) read_only: bool,
    pub(crate) events: Events,
    /// Unique among this process's handles (also its watcher id).
    pub(crate) instance: u64,
    /// It called `rbd_lock_acquire`: librbd's manual lock policy from then on (see
    /// [`crate::owner`]).
    pub(crate) manual: AtomicBool,
    /// The snapshot this handle shows (`rbd_snap_set`, or opened with a snapshot name): a
    /// read-only view of its own. None: the head, shared with every handle of the image.
    snap: Mutex<Option<Arc<shale_image::Image>>>,
    /// The snapshot it shows was removed (reads are `-ENOENT`, as librbd's).
    snap_gone: AtomicBool,
    /// When the snapshot's existence was last checked in the store.
    snap_checked: Mutex<Option<Instant>>,
}

impl RbdImage {
    /// What the handle reads: the snapshot it is set to, else the head.
    pub(crate) fn image(&self) -> Arc<shale_image::Image> {
        match &*lock(&self.snap) {
            Some(view) => view.clone(),
            None => self.shared.image(),
        }
    }

    /// `-EROFS` on a read-only handle or one set to a snapshot.
    pub(crate) fn writable(&self) -> Result<(), c_int> {
        if self.read_only || lock(&self.snap).is_some() {
            Err(-libc::EROFS)
        } else {
            Ok(())
        }
    }

    /// The head for changes that librbd allows even while the handle shows a snapshot
    /// (snapshot create/protect/remove, flatten of the head...): `-EROFS` on a read-only
    /// handle; a head opened read-only for a snapshot view is upgraded to writable.
    pub(crate) fn head_rw(&self) -> Result<Arc<shale_image::Image>, c_int> {
        if self.read_only {
            return Err(-libc::EROFS);
        }
        globals()
            .make_writable(&self.shared)
            .map_err(|e| errno::of(&e))?;
        Ok(self.shared.image())
    }

    /// The head, as it is open (reads of snapshot lists, parents...).
    pub(crate) fn head(&self) -> Arc<shale_image::Image> {
        self.shared.image()
    }

    /// The snapshot the handle shows, if any.
    pub(crate) fn snap_view(&self) -> Option<Arc<shale_image::Image>> {
        lock(&self.snap).clone()
    }

    /// Before reading through a snapshot view: `-ENOENT` once the snapshot was removed (and
    /// stays so even if one of the same name is created again), as librbd. A removal through
    /// this process marks the view at once ([`mark_snap_removed`]); one by another process is
    /// noticed within [`SNAP_CHECK`].
    pub(crate) fn check_snap(&self) -> Result<(), c_int> {
        let Some(view) = self.snap_view() else {
            return Ok(());
        };
        if self.snap_gone.load(Ordering::SeqCst) {
            return Err(-libc::ENOENT);
        }
        let Some(id) = view.snapshot().map(|s| s.id) else {
            return Ok(());
        };
        {
            let mut t = lock(&self.snap_checked);
            if t.is_some_and(|t| t.elapsed() < SNAP_CHECK) {
                return Ok(());
            }
            *t = Some(Instant::now());
        }
        // Asked of the view itself: reloading the shared head's header here would hide a
        // takeover (epoch change) from its view refresh.
        match view.snap_list() {
            Ok(list) if !list.iter().any(|s| s.id == id) => {
                self.snap_gone.store(true, Ordering::SeqCst);
                Err(-libc::ENOENT)
            }
            // A store hiccup does not fail a read of data that is still there.
            _ => Ok(()),
        }
    }

    /// Close the snapshot view, if any (the handle is closing).
    fn drop_snap(&self) {
        if let Some(old) = lock(&self.snap).take() {
            let _ = old.close();
        }
    }

    /// Show snapshot `view` (None: the head again). The previous view is closed. A handle
    /// set to a snapshot owns no exclusive lock (librbd releases it).
    pub(crate) fn set_snap(&self, view: Option<shale_image::Image>) -> Result<(), c_int> {
        if view.is_none() && !self.read_only {
            globals()
                .make_writable(&self.shared)
                .map_err(|e| errno::of(&e))?;
        }
        if view.is_some() {
            self.give_up_lock();
        }
        self.snap_gone.store(false, Ordering::SeqCst);
        *lock(&self.snap_checked) = None;
        let old = std::mem::replace(&mut *lock(&self.snap), view.map(Arc::new));
        if let Some(old) = old {
            // A read-only view has nothing to flush; an error here changes nothing.
            let _ = old.close();
        }
        Ok(())
    }
}

pub(crate) fn lookup_image(image: rbd_image_t) -> Result<Arc<RbdImage>, c_int> {
    globals().images.get(image).ok_or(-libc::EINVAL)
}

fn status(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(0)
}

/// Run `f` on the image behind a handle; errors become the return value.
pub(crate) fn with_image(
    image: rbd_image_t,
    f: impl FnOnce(&RbdImage) -> Result<(), c_int>,
) -> c_int {
    status(lookup_image(image).and_then(|i| f(&i)))
}

/// Write `v` through `p`, `-EINVAL` if NULL.
///
/// # Safety
/// `p` is NULL or writable.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) -> Result<(), c_int> {
    if p.is_null() {
        return Err(-libc::EINVAL);
    }
    // SAFETY: non-NULL and writable (caller contract).
    unsafe { p.write(v) };
    Ok(())
}

/// Opening: a name that the store cannot hold cannot name an existing image either.
fn open_errno(e: &Error) -> c_int {
    if e.kind() == ErrorKind::Invalid {
        crate::guard::log_error(e);
        -libc::ENOENT
    } else {
        errno::of(e)
    }
}

/// Open by name or id, at snapshot `snap` if not NULL (then the head is opened read-only until
/// `rbd_snap_set(NULL)` on a writable handle).
///
/// # Safety
/// C caller contract of `rbd_open*`.
unsafe fn open(
    io: rados_ioctx_t,
    name: *const c_char,
    by_id: bool,
    out: *mut rbd_image_t,
    snap: *const c_char,
    read_only: bool,
) -> c_int {
    crate::logging::ensure();
    status((|| {
        let io = lookup_ioctx(io)?;
        // SAFETY: C strings or NULL (caller contract).
        let (name, snap) = unsafe { (cstr::arg(name)?, cstr::opt_arg(snap)?) };
        if out.is_null() {
            return Err(-libc::EINVAL);
        }
        if !io.namespace().is_empty() {
            return Err(-libc::ENOENT);
        }
        let c = &io.store.cluster;
        let id = if by_id {
            name.to_string()
        } else {
            c.image_id(&io.pool, name).map_err(|e| open_errno(&e))?
        };
        let g = globals();
        let shared = g
            .open_image(&io.store, &io.pool, &id, read_only || snap.is_some())
            .map_err(|e| open_errno(&e))?;
        let view = match snap {
            Some(s) => match c.open_image_at(&io.pool, &shared.image().name(), s) {
                Ok(v) => Some(Arc::new(v)),
                Err(e) => {
                    let _ = g.release_image(&shared);
                    return Err(open_errno(&e));
                }
            },
            None => None,
        };
        let h = g.images.insert(Arc::new(RbdImage {
            shared,
            pool_id: io.pool_id,
            read_only,
            events: Events::default(),
            instance: g.instance_id(),
            manual: AtomicBool::new(false),
            snap: Mutex::new(view),
            snap_gone: AtomicBool::new(false),
            snap_checked: Mutex::new(None),
        }));
        // SAFETY: `out` is non-NULL and writable (caller contract).
        unsafe { out.write(h) };
        Ok(())
    })())
}

/// `int rbd_open(rados_ioctx_t io, const char *name, rbd_image_t *image, const char *snap_name)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_open(
    io: rados_ioctx_t,
    name: *const c_char,
    image: *mut rbd_image_t,
    snap_name: *const c_char,
) -> c_int {
    // SAFETY: forwarded caller contract.
    ffi("rbd_open", -libc::EFAULT, || unsafe {
        open(io, name, false, image, snap_name, false)
    })
}

/// `int rbd_open_read_only(rados_ioctx_t io, const char *name, rbd_image_t *image, const char *snap_name)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_open_read_only(
    io: rados_ioctx_t,
    name: *const c_char,
    image: *mut rbd_image_t,
    snap_name: *const c_char,
) -> c_int {
    // SAFETY: forwarded caller contract.
    ffi("rbd_open_read_only", -libc::EFAULT, || unsafe {
        open(io, name, false, image, snap_name, true)
    })
}

/// `int rbd_open_by_id(rados_ioctx_t io, const char *id, rbd_image_t *image, const char *snap_name)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_open_by_id(
    io: rados_ioctx_t,
    id: *const c_char,
    image: *mut rbd_image_t,
    snap_name: *const c_char,
) -> c_int {
    // SAFETY: forwarded caller contract.
    ffi("rbd_open_by_id", -libc::EFAULT, || unsafe {
        open(io, id, true, image, snap_name, false)
    })
}

/// `int rbd_open_by_id_read_only(rados_ioctx_t io, const char *id, rbd_image_t *image, const char *snap_name)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_open_by_id_read_only(
    io: rados_ioctx_t,
    id: *const c_char,
    image: *mut rbd_image_t,
    snap_name: *const c_char,
) -> c_int {
    // SAFETY: forwarded caller contract.
    ffi("rbd_open_by_id_read_only", -libc::EFAULT, || unsafe {
        open(io, id, true, image, snap_name, true)
    })
}

/// `int rbd_close(rbd_image_t image)`: waits for the handle's I/O; the last handle of an image
/// flushes and closes it (its error is returned).
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_close(image: rbd_image_t) -> c_int {
    ffi("rbd_close", -libc::EFAULT, || {
        let Some(img) = globals().images.remove(image) else {
            return -libc::EINVAL;
        };
        img.shared.wait_before(img.shared.barrier());
        img.give_up_lock();
        img.drop_snap();
        match globals().release_image(&img.shared) {
            Ok(()) => 0,
            Err(e) => errno::of(&e),
        }
    })
}

/// Copy `s` into a `[c_char; N]` field, NUL-terminated and truncated to fit.
fn fill(dst: &mut [c_char], s: &str) {
    let n = s.len().min(dst.len().saturating_sub(1));
    for (d, b) in dst.iter_mut().zip(s.bytes().take(n)) {
        *d = b as c_char;
    }
    if let Some(end) = dst.get_mut(n) {
        *end = 0;
    }
}

/// `int rbd_stat(rbd_image_t image, rbd_image_info_t *info, size_t infosize)`.
///
/// Ceph 16.2.15 ignores `infosize` (returns 0 even for 0); we return 0 too but write only
/// `min(infosize, 160)` bytes.
///
/// # Safety
/// C caller contract of librbd.h: `info` is writable for `infosize` bytes.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_stat(
    image: rbd_image_t,
    info: *mut rbd_image_info_t,
    infosize: usize,
) -> c_int {
    ffi("rbd_stat", -libc::EFAULT, || {
        with_image(image, |img| {
            if info.is_null() {
                return Err(-libc::EINVAL);
            }
            let i = img.image().info();
            let mut st = rbd_image_info_t {
                size: i.size,
                obj_size: i.object_size,
                num_objs: i.num_objs,
                order: c_int::from(i.order),
                block_name_prefix: [0; 24],
                parent_pool: -1,
                parent_name: [0; 96],
            };
            fill(&mut st.block_name_prefix, &i.block_name_prefix);
            let n = infosize.min(std::mem::size_of::<rbd_image_info_t>());
            // SAFETY: `info` is writable for `infosize >= n` bytes (caller contract).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&st as *const rbd_image_info_t).cast::<u8>(),
                    info.cast::<u8>(),
                    n,
                )
            };
            Ok(())
        })
    })
}

/// Write a `uint64_t` getter's value.
fn get_u64(image: rbd_image_t, out: *mut u64, f: impl FnOnce(&RbdImage) -> u64) -> c_int {
    with_image(image, |img| {
        let v = f(img);
        // SAFETY: NULL-checked by `put`; writable by the caller's contract.
        unsafe { put(out, v) }
    })
}

/// `int rbd_get_size(rbd_image_t image, uint64_t *out)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_size(image: rbd_image_t, out: *mut u64) -> c_int {
    ffi("rbd_get_size", -libc::EFAULT, || {
        get_u64(image, out, |img| img.image().size())
    })
}

/// `int rbd_get_features(rbd_image_t image, uint64_t *out)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_features(image: rbd_image_t, out: *mut u64) -> c_int {
    ffi("rbd_get_features", -libc::EFAULT, || {
        get_u64(image, out, |img| img.image().features())
    })
}

/// `int rbd_get_flags(rbd_image_t image, uint64_t *out)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_flags(image: rbd_image_t, out: *mut u64) -> c_int {
    ffi("rbd_get_flags", -libc::EFAULT, || {
        get_u64(image, out, |_img| 0)
    })
}

/// `int rbd_get_op_features(rbd_image_t image, uint64_t *out)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_op_features(image: rbd_image_t, out: *mut u64) -> c_int {
    ffi("rbd_get_op_features", -libc::EFAULT, || {
        get_u64(image, out, |_img| 0)
    })
}

/// `int rbd_get_stripe_unit(rbd_image_t image, uint64_t *out)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_stripe_unit(image: rbd_image_t, out: *mut u64) -> c_int {
    ffi("rbd_get_stripe_unit", -libc::EFAULT, || {
        get_u64(image, out, |img| img.image().stripe_unit())
    })
}

/// `int rbd_get_stripe_count(rbd_image_t image, uint64_t *out)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_stripe_count(image: rbd_image_t, out: *mut u64) -> c_int {
    ffi("rbd_get_stripe_count", -libc::EFAULT, || {
        get_u64(image, out, |img| img.image().stripe_count())
    })
}

/// `int rbd_get_old_format(rbd_image_t image, uint8_t *old)`: always format 2.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_old_format(image: rbd_image_t, old: *mut u8) -> c_int {
    // SAFETY: NULL-checked by `put`.
    ffi("rbd_get_old_format", -libc::EFAULT, || {
        with_image(image, |_| unsafe { put(old, 0) })
    })
}

/// `int64_t rbd_get_data_pool_id(rbd_image_t image)`: the image's own pool.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_data_pool_id(image: rbd_image_t) -> i64 {
    ffi("rbd_get_data_pool_id", -i64::from(libc::EFAULT), || {
        lookup_image(image).map_or_else(i64::from, |i| i.pool_id)
    })
}

/// `int rbd_is_exclusive_lock_owner(rbd_image_t image, int *is_owner)`: whether this handle
/// owns the image's exclusive lock now (taken by its last write or `rbd_lock_acquire`, lost
/// when handed to another handle or client, released or broken; see [`crate::owner`]); always
/// 0 without the exclusive-lock feature, on a read-only handle and on one set to a snapshot.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_is_exclusive_lock_owner(
    image: rbd_image_t,
    is_owner: *mut c_int,
) -> c_int {
    ffi("rbd_is_exclusive_lock_owner", -libc::EFAULT, || {
        // SAFETY: NULL-checked by `put`.
        with_image(image, |img| unsafe {
            put(is_owner, c_int::from(img.is_lock_owner()))
        })
    })
}

fn timestamp(image: rbd_image_t, ts: *mut timespec) -> c_int {
    with_image(image, |img| {
        let t = timespec {
            tv_sec: img.image().info().created as libc::time_t,
            tv_nsec: 0,
        };
        // SAFETY: NULL-checked by `put`; writable by the caller's contract.
        unsafe { put(ts, t) }
    })
}

/// `int rbd_get_create_timestamp(rbd_image_t image, struct timespec *timestamp)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_create_timestamp(
    image: rbd_image_t,
    timestamp: *mut timespec,
) -> c_int {
    ffi("rbd_get_create_timestamp", -libc::EFAULT, || {
        self::timestamp(image, timestamp)
    })
}

/// `rbd_get_access_timestamp`: not tracked; the creation time.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_access_timestamp(
    image: rbd_image_t,
    timestamp: *mut timespec,
) -> c_int {
    ffi("rbd_get_access_timestamp", -libc::EFAULT, || {
        self::timestamp(image, timestamp)
    })
}

/// `rbd_get_modify_timestamp`: not tracked; the creation time.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_modify_timestamp(
    image: rbd_image_t,
    timestamp: *mut timespec,
) -> c_int {
    ffi("rbd_get_modify_timestamp", -libc::EFAULT, || {
        self::timestamp(image, timestamp)
    })
}

/// Copy `s` + NUL into `buf` of `len` bytes, `-ERANGE` if it does not fit.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
unsafe fn copy_str(s: &str, buf: *mut c_char, len: usize) -> Result<(), c_int> {
    if buf.is_null() || len <= s.len() {
        return Err(-libc::ERANGE);
    }
    // SAFETY: forwarded caller contract; `s` plus NUL fits.
    unsafe { cstr::snprintf(buf, len, s) };
    Ok(())
}

/// Copy `s` + NUL into `buf` whose size is `*len`: `-ERANGE` with `*len` = the size needed.
/// `*len` is set to the size used on success when `set_on_success`.
///
/// # Safety
/// `len` is NULL or read/writable; `buf` is NULL or writable for `*len` bytes.
pub(crate) unsafe fn copy_str_len(
    s: &str,
    buf: *mut c_char,
    len: *mut usize,
    set_on_success: bool,
) -> Result<(), c_int> {
    if len.is_null() {
        return Err(-libc::EINVAL);
    }
    // SAFETY: non-NULL, readable and writable (caller contract).
    unsafe {
        if buf.is_null() || *len <= s.len() {
            *len = s.len() + 1;
            return Err(-libc::ERANGE);
        }
        cstr::snprintf(buf, *len, s);
        if set_on_success {
            *len = s.len() + 1;
        }
    }
    Ok(())
}

/// `int rbd_get_id(rbd_image_t image, char *id, size_t id_len)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_id(
    image: rbd_image_t,
    id: *mut c_char,
    id_len: usize,
) -> c_int {
    ffi("rbd_get_id", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        with_image(image, |img| unsafe {
            copy_str(img.image().id(), id, id_len)
        })
    })
}

/// `int rbd_get_block_name_prefix(rbd_image_t image, char *prefix, size_t prefix_len)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_block_name_prefix(
    image: rbd_image_t,
    prefix: *mut c_char,
    prefix_len: usize,
) -> c_int {
    ffi("rbd_get_block_name_prefix", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        with_image(image, |img| unsafe {
            copy_str(&img.image().info().block_name_prefix, prefix, prefix_len)
        })
    })
}

/// `int rbd_get_name(rbd_image_t image, char *name, size_t *name_len)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_name(
    image: rbd_image_t,
    name: *mut c_char,
    name_len: *mut usize,
) -> c_int {
    ffi("rbd_get_name", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        with_image(image, |img| unsafe {
            copy_str_len(&img.image().name(), name, name_len, true)
        })
    })
}

/// Resize through a writable head handle: here, or by another client that holds the lock
/// explicitly (librbd forwards it to the owner).
fn resize(img: &RbdImage, size: u64, allow_shrink: bool) -> Result<(), c_int> {
    let head = img.image();
    if img.forward_to_owner(&head)?
        && head
            .resize_at_owner(size, allow_shrink)
            .map_err(|e| errno::of(&e))?
    {
        return Ok(());
    }
    head.resize(size, allow_shrink).map_err(|e| errno::of(&e))?;
    img.adopt_after_op();
    Ok(())
}

/// `int rbd_resize(rbd_image_t image, uint64_t size)`: may shrink.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_resize(image: rbd_image_t, size: u64) -> c_int {
    ffi("rbd_resize", -libc::EFAULT, || {
        with_image(image, |img| {
            img.writable()?;
            resize(img, size, true)
        })
    })
}

/// `int rbd_resize2(rbd_image_t image, uint64_t size, bool allow_shrink,
/// librbd_progress_fn_t cb, void *cbdata)`: `-EINVAL` to shrink without `allow_shrink`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_resize2(
    image: rbd_image_t,
    size: u64,
    allow_shrink: bool,
    cb: librbd_progress_fn_t,
    cbdata: *mut c_void,
) -> c_int {
    ffi("rbd_resize2", -libc::EFAULT, || {
        with_image(image, |img| {
            img.writable()?;
            resize(img, size, allow_shrink)?;
            if let Some(cb) = cb {
                // SAFETY: the caller's progress callback with its own argument.
                unsafe { cb(size, size, cbdata) };
            }
            Ok(())
        })
    })
}

/// `int rbd_invalidate_cache(rbd_image_t image)`: a handle whose process does not hold the
/// exclusive lock asks the owner to store what it wrote and reloads its view, so it reads
/// every write made before the call (QEMU calls this on the destination of a live migration
/// once the source has flushed; tests/live_migration.py). Nothing to do for the lock's
/// holder or a snapshot.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_invalidate_cache(image: rbd_image_t) -> c_int {
    ffi("rbd_invalidate_cache", -libc::EFAULT, || {
        with_image(image, |img| {
            if img.snap_view().is_some() {
                return Ok(());
            }
            img.head().invalidate_cache().map_err(|e| errno::of(&e))
        })
    })
}

/// `int rbd_watchers_list(rbd_image_t image, rbd_image_watcher_t *watchers,
/// size_t *max_watchers)`: this process's open handles of the image.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_watchers_list(
    image: rbd_image_t,
    watchers: *mut rbd_image_watcher_t,
    max_watchers: *mut usize,
) -> c_int {
    let call = || {
        ffi("rbd_watchers_list", -libc::EFAULT, || {
            with_image(image, |img| {
                if max_watchers.is_null() {
                    return Err(-libc::EINVAL);
                }
                let mine: Vec<Arc<RbdImage>> = globals()
                    .images
                    .all()
                    .into_iter()
                    .filter(|h| h.shared.key == img.shared.key)
                    .collect();
                // SAFETY: non-NULL, readable and writable (caller contract).
                unsafe {
                    if watchers.is_null() || *max_watchers < mine.len() {
                        *max_watchers = mine.len();
                        return Err(-libc::ERANGE);
                    }
                    for (i, h) in mine.iter().enumerate() {
                        let addr = format!("127.0.0.1:0/{}", std::process::id());
                        watchers.add(i).write(rbd_image_watcher_t {
                            addr: cstr::malloc_str(&addr),
                            id: h.instance as i64,
                            cookie: Arc::as_ptr(h) as u64,
                        });
                    }
                    *max_watchers = mine.len();
                }
                Ok(())
            })
        })
    };
    // SAFETY: `watchers` has room for `*max_watchers` entries (caller contract).
    unsafe { crate::outlist::guarded(watchers, max_watchers, call) }
}

/// `void rbd_watchers_list_cleanup(rbd_image_watcher_t *watchers, size_t num_watchers)`.
///
/// # Safety
/// `watchers` holds `num_watchers` entries filled by `rbd_watchers_list`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_watchers_list_cleanup(
    watchers: *mut rbd_image_watcher_t,
    num_watchers: usize,
) {
    ffi("rbd_watchers_list_cleanup", (), || {
        if watchers.is_null() {
            return;
        }
        for i in 0..num_watchers {
            // SAFETY: entry `i` was filled by rbd_watchers_list; its addr came from malloc.
            unsafe {
                let w = &mut *watchers.add(i);
                libc::free(w.addr.cast());
                w.addr = std::ptr::null_mut();
            }
        }
    })
}

/// Snapshot `snap_id` of the image behind `shared` was removed through this process: every
/// handle showing it reads `-ENOENT` from now on.
pub(crate) fn mark_snap_removed(shared: &Arc<SharedImage>, snap_id: u64) {
    for h in globals().images.all() {
        if h.shared.key != shared.key {
            continue;
        }
        if let Some(v) = h.snap_view() {
            if v.snapshot().is_some_and(|s| s.id == snap_id) {
                h.snap_gone.store(true, Ordering::SeqCst);
            }
        }
    }
}
