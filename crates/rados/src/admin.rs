//! Image administration on an ioctx: create, list, remove, rename, copy, namespaces.
//!
//! Measured on Ceph 16.2.15 (README.md): an existing name is `-EEXIST`, a missing one
//! `-ENOENT`, an empty name `-EINVAL`, an order outside 12..=25 `-EDOM`; removing an image
//! that has snapshots is `-ENOTEMPTY` (open or not), one that is open `-EBUSY`; `rbd_list` returns the bytes of the NUL-separated names and
//! `-ERANGE` with the size needed. Only the default namespace "" exists.

use crate::cstr;
use crate::errno;
use crate::guard::ffi;
use crate::image::lookup_image;
use crate::options::{lookup_opts, OPT_FEATURES, OPT_ORDER, OPT_STRIPE_COUNT, OPT_STRIPE_UNIT};
use crate::pools::{lookup_ioctx, Ioctx};
use crate::state::globals;
use crate::types::{
    librbd_progress_fn_t, rados_ioctx_t, rbd_image_options_t, rbd_image_spec_t, rbd_image_t,
};
use core::ffi::{c_char, c_int, c_void};
use shale_image::{Error, ErrorKind};
use std::sync::Arc;

const DEFAULT_ORDER: c_int = 22;

fn status(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(0)
}

/// A name the store cannot hold cannot name an existing image: `-ENOENT` when looking one up.
fn lookup_errno(e: &Error) -> c_int {
    if e.kind() == ErrorKind::Invalid {
        crate::guard::log_error(e);
        -libc::ENOENT
    } else {
        errno::of(e)
    }
}

/// The ioctx, refusing namespaces other than "" (`-ENOENT`, they do not exist).
fn ioctx(io: rados_ioctx_t) -> Result<Arc<Ioctx>, c_int> {
    let io = lookup_ioctx(io)?;
    if !io.namespace().is_empty() {
        return Err(-libc::ENOENT);
    }
    Ok(io)
}

/// Order 0 means the default (22); others must be 12..=25 (`-EDOM`).
fn check_order(order: c_int) -> Result<u8, c_int> {
    match order {
        0 => Ok(DEFAULT_ORDER as u8),
        12..=25 => Ok(order as u8),
        _ => Err(-libc::EDOM),
    }
}

/// What a creation asks for beyond the name and size.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Layout {
    /// Feature bits (None: librbd's defaults).
    features: Option<u64>,
    stripe_unit: u64,
    stripe_count: u64,
}

/// The features and striping librbd 16.2.15 would create with, as measured on ceph-mini:
/// unknown bits are `-ENOSYS`; fast-diff without object-map is dropped silently (EXCL|FAST_DIFF
/// gives 0x4); journaling needs exclusive-lock (`-EINVAL`); a stripe unit and count come
/// together, the unit dividing the object size (`-EINVAL` otherwise); striping other than one
/// object at a time sets the striping bit, the default one clears it. Returns the features
/// Shale creates with, the bits recorded afterwards, and the striping to record (0, 0:
/// default).
fn creation_features(l: Layout, order: u8) -> Result<(Option<u64>, u64, u64, u64), c_int> {
    use shale_image::features::{
        ALL, EXCLUSIVE_LOCK, FAST_DIFF, JOURNALING, OBJECT_MAP, STRIPINGV2,
    };
    let (su, sc) = (l.stripe_unit, l.stripe_count);
    let object = 1u64 << order;
    if (su == 0) != (sc == 0) || su > object || (su != 0 && !object.is_multiple_of(su)) {
        return Err(-libc::EINVAL);
    }
    let default_striping = su == 0 || (su == object && sc == 1);
    let Some(mut f) = l.features else {
        return Ok(if default_striping {
            (None, 0, 0, 0)
        } else {
            (None, STRIPINGV2, su, sc)
        });
    };
    if f & !ALL != 0 {
        return Err(-libc::ENOSYS);
    }
    if f & FAST_DIFF != 0 && f & OBJECT_MAP == 0 {
        f &= !FAST_DIFF;
    }
    if f & JOURNALING != 0 && f & EXCLUSIVE_LOCK == 0 {
        return Err(-libc::EINVAL);
    }
    let mut extra = f & JOURNALING;
    if !default_striping {
        extra |= STRIPINGV2;
    }
    let (su, sc) = if default_striping { (0, 0) } else { (su, sc) };
    Ok((Some(f & !(JOURNALING | STRIPINGV2)), extra, su, sc))
}

fn create(io: rados_ioctx_t, name: *const c_char, size: u64, order: c_int) -> Result<u8, c_int> {
    create_with(io, name, size, order, Layout::default())
}

/// Create with features and striping (see [`creation_features`]).
fn create_with(
    io: rados_ioctx_t,
    name: *const c_char,
    size: u64,
    order: c_int,
    layout: Layout,
) -> Result<u8, c_int> {
    let io = lookup_ioctx(io)?;
    // SAFETY: `name` is NULL or a C string (caller contract of every rbd_create*).
    let name = unsafe { cstr::arg(name) }?;
    if name.is_empty() {
        return Err(-libc::EINVAL);
    }
    let order = check_order(order)?;
    if !io.namespace().is_empty() {
        return Err(-libc::ENOENT);
    }
    let (features, extra, su, sc) = creation_features(layout, order)?;
    let c = &io.store.cluster;
    let id = c
        .create_image_with(&io.pool, name, size, order, features)
        .map_err(|e| errno::of(&e))?;
    if extra != 0 || su != 0 {
        let r = c.open_image_by_id(&io.pool, &id, false).and_then(|img| {
            let r = img.set_creation_extras(su, sc, extra);
            r.and(img.close())
        });
        if let Err(e) = r {
            // Half made: take it away again rather than leave an image without its layout.
            let _ = c.remove_image(&io.pool, name, |_, _| {});
            return Err(errno::of(&e));
        }
    }
    Ok(order)
}

/// `create` with an in/out order pointer.
///
/// # Safety
/// `order` is NULL or read/writable.
unsafe fn create_order(
    io: rados_ioctx_t,
    name: *const c_char,
    size: u64,
    order: *mut c_int,
) -> c_int {
    if order.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: non-NULL and readable (caller contract).
    match create(io, name, size, unsafe { *order }) {
        Ok(o) => {
            // SAFETY: non-NULL and writable (caller contract).
            unsafe { order.write(c_int::from(o)) };
            0
        }
        Err(e) => e,
    }
}

/// `int rbd_create(rados_ioctx_t io, const char *name, uint64_t size, int *order)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_create(
    io: rados_ioctx_t,
    name: *const c_char,
    size: u64,
    order: *mut c_int,
) -> c_int {
    // SAFETY: forwarded caller contract.
    ffi("rbd_create", -libc::EFAULT, || unsafe {
        create_order(io, name, size, order)
    })
}

/// `create_with` with an in/out order pointer.
///
/// # Safety
/// `order` is NULL or read/writable.
unsafe fn create_layout(
    io: rados_ioctx_t,
    name: *const c_char,
    size: u64,
    order: *mut c_int,
    layout: Layout,
) -> c_int {
    if order.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: non-NULL and readable (caller contract).
    match create_with(io, name, size, unsafe { *order }, layout) {
        Ok(o) => {
            // SAFETY: non-NULL and writable (caller contract).
            unsafe { order.write(c_int::from(o)) };
            0
        }
        Err(e) => e,
    }
}

/// `int rbd_create2(rados_ioctx_t io, const char *name, uint64_t size, uint64_t features,
/// int *order)`: with librbd's feature rules ([`creation_features`]).
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_create2(
    io: rados_ioctx_t,
    name: *const c_char,
    size: u64,
    features: u64,
    order: *mut c_int,
) -> c_int {
    let layout = Layout {
        features: Some(features),
        ..Layout::default()
    };
    // SAFETY: forwarded caller contract.
    ffi("rbd_create2", -libc::EFAULT, || unsafe {
        create_layout(io, name, size, order, layout)
    })
}

/// `int rbd_create3(rados_ioctx_t io, const char *name, uint64_t size, uint64_t features,
/// int *order, uint64_t stripe_unit, uint64_t stripe_count)`: the striping is recorded and
/// reported (`rbd_get_stripe_unit` / `_count`) as librbd accepts it; the data layout does not
/// change.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_create3(
    io: rados_ioctx_t,
    name: *const c_char,
    size: u64,
    features: u64,
    order: *mut c_int,
    stripe_unit: u64,
    stripe_count: u64,
) -> c_int {
    let layout = Layout {
        features: Some(features),
        stripe_unit,
        stripe_count,
    };
    // SAFETY: forwarded caller contract.
    ffi("rbd_create3", -libc::EFAULT, || unsafe {
        create_layout(io, name, size, order, layout)
    })
}

/// `int rbd_create4(rados_ioctx_t io, const char *name, uint64_t size,
/// rbd_image_options_t opts)`: honours the ORDER, FEATURES, STRIPE_UNIT and STRIPE_COUNT
/// options with librbd's rules ([`creation_features`]).
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_create4(
    io: rados_ioctx_t,
    name: *const c_char,
    size: u64,
    opts: rbd_image_options_t,
) -> c_int {
    ffi("rbd_create4", -libc::EFAULT, || {
        status((|| {
            let opts = lookup_opts(opts)?;
            let order = opts
                .as_ref()
                .and_then(|o| o.get_u64(OPT_ORDER))
                .unwrap_or(0);
            let order = c_int::try_from(order).map_err(|_| -libc::EDOM)?;
            let get = |opt| opts.as_ref().and_then(|o| o.get_u64(opt));
            let layout = Layout {
                features: get(OPT_FEATURES),
                stripe_unit: get(OPT_STRIPE_UNIT).unwrap_or(0),
                stripe_count: get(OPT_STRIPE_COUNT).unwrap_or(0),
            };
            create_with(io, name, size, order, layout).map(drop)
        })())
    })
}

/// `int rbd_list(rados_ioctx_t io, char *names, size_t *size)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list(
    io: rados_ioctx_t,
    names: *mut c_char,
    size: *mut usize,
) -> c_int {
    ffi("rbd_list", -libc::EFAULT, || {
        let r = (|| {
            let io = lookup_ioctx(io)?;
            if size.is_null() {
                return Err(-libc::EINVAL);
            }
            let list = if io.namespace().is_empty() {
                io.store
                    .cluster
                    .list_images(&io.pool)
                    .map_err(|e| errno::of(&e))?
            } else {
                Vec::new()
            };
            let need: usize = list.iter().map(|e| e.name.len() + 1).sum();
            // SAFETY: `size` is non-NULL, read/writable; `names` writable for *size bytes.
            unsafe {
                if names.is_null() || *size < need {
                    *size = need;
                    return Err(-libc::ERANGE);
                }
                let mut at = 0;
                for e in &list {
                    cstr::snprintf(names.add(at), e.name.len() + 1, &e.name);
                    at += e.name.len() + 1;
                }
            }
            Ok(need as c_int)
        })();
        r.unwrap_or_else(|e| e)
    })
}

/// `int rbd_list2(rados_ioctx_t io, rbd_image_spec_t *images, size_t *max_images)`: strings
/// are freed by `rbd_image_spec_list_cleanup`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list2(
    io: rados_ioctx_t,
    images: *mut rbd_image_spec_t,
    max_images: *mut usize,
) -> c_int {
    let call = || {
        ffi("rbd_list2", -libc::EFAULT, || {
            status((|| {
                let io = lookup_ioctx(io)?;
                if max_images.is_null() {
                    return Err(-libc::EINVAL);
                }
                let list = if io.namespace().is_empty() {
                    io.store
                        .cluster
                        .list_images(&io.pool)
                        .map_err(|e| errno::of(&e))?
                } else {
                    Vec::new()
                };
                // SAFETY: `max_images` is non-NULL, read/writable; `images` holds *max_images.
                unsafe {
                    if (images.is_null() && !list.is_empty()) || *max_images < list.len() {
                        *max_images = list.len();
                        return Err(-libc::ERANGE);
                    }
                    for (i, e) in list.iter().enumerate() {
                        images.add(i).write(rbd_image_spec_t {
                            id: cstr::malloc_str(&e.id),
                            name: cstr::malloc_str(&e.name),
                        });
                    }
                    *max_images = list.len();
                }
                Ok(())
            })())
        })
    };
    // SAFETY: `images` has room for `*max_images` entries (caller contract).
    unsafe { crate::outlist::guarded(images, max_images, call) }
}

/// `void rbd_image_spec_cleanup(rbd_image_spec_t *image)`.
///
/// # Safety
/// `image` is NULL or an entry filled by this library.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_spec_cleanup(image: *mut rbd_image_spec_t) {
    ffi("rbd_image_spec_cleanup", (), || {
        if image.is_null() {
            return;
        }
        // SAFETY: the strings came from malloc (rbd_list2); they are cleared after freeing.
        unsafe {
            let s = &mut *image;
            libc::free(s.id.cast());
            libc::free(s.name.cast());
            s.id = std::ptr::null_mut();
            s.name = std::ptr::null_mut();
        }
    })
}

/// `void rbd_image_spec_list_cleanup(rbd_image_spec_t *images, size_t num_images)`.
///
/// # Safety
/// `images` holds `num_images` entries filled by this library.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_spec_list_cleanup(
    images: *mut rbd_image_spec_t,
    num_images: usize,
) {
    ffi("rbd_image_spec_list_cleanup", (), || {
        if images.is_null() {
            return;
        }
        for i in 0..num_images {
            // SAFETY: entry `i` exists (caller contract).
            unsafe { shale_rbd_image_spec_cleanup(images.add(i)) };
        }
    })
}

fn remove(
    io: rados_ioctx_t,
    name: *const c_char,
    cb: librbd_progress_fn_t,
    data: *mut c_void,
) -> c_int {
    status((|| {
        let io = ioctx(io)?;
        // SAFETY: `name` is NULL or a C string (caller contract).
        let name = unsafe { cstr::arg(name) }?;
        let c = &io.store.cluster;
        let id = c.image_id(&io.pool, name).map_err(|e| lookup_errno(&e))?;
        if let Some(open) = globals().open_shared(&(io.store.url.clone(), io.pool.clone(), id)) {
            // librbd looks at the snapshots first: an open image with snapshots is ENOTEMPTY.
            let snaps = open.image().snap_list().map_err(|e| errno::of(&e))?;
            return Err(if snaps.is_empty() {
                -libc::EBUSY
            } else {
                -libc::ENOTEMPTY
            });
        }
        c.remove_image(&io.pool, name, |done, total| {
            if let Some(cb) = cb {
                // SAFETY: the caller's progress callback with its own argument.
                unsafe { cb(done, total, data) };
            }
        })
        .map_err(|e| errno::of(&e))
    })())
}

/// `int rbd_remove(rados_ioctx_t io, const char *name)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int {
    ffi("rbd_remove", -libc::EFAULT, || {
        remove(io, name, None, std::ptr::null_mut())
    })
}

/// `int rbd_remove_with_progress(rados_ioctx_t io, const char *name, librbd_progress_fn_t cb,
/// void *cbdata)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_remove_with_progress(
    io: rados_ioctx_t,
    name: *const c_char,
    cb: librbd_progress_fn_t,
    cbdata: *mut c_void,
) -> c_int {
    ffi("rbd_remove_with_progress", -libc::EFAULT, || {
        remove(io, name, cb, cbdata)
    })
}

/// `int rbd_rename(rados_ioctx_t src_io_ctx, const char *srcname, const char *destname)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_rename(
    src_io_ctx: rados_ioctx_t,
    srcname: *const c_char,
    destname: *const c_char,
) -> c_int {
    ffi("rbd_rename", -libc::EFAULT, || {
        status((|| {
            let io = ioctx(src_io_ctx)?;
            // SAFETY: C strings or NULL (caller contract).
            let (src, dst) = unsafe { (cstr::arg(srcname)?, cstr::arg(destname)?) };
            let c = &io.store.cluster;
            c.image_id(&io.pool, src).map_err(|e| lookup_errno(&e))?;
            c.rename_image(&io.pool, src, dst)
                .map_err(|e| errno::of(&e))
        })())
    })
}

/// `int rbd_namespace_exists(rados_ioctx_t io, const char *namespace_name, bool *exists)`:
/// "" is `-EINVAL` (as Ceph); no other namespace exists.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_namespace_exists(
    io: rados_ioctx_t,
    namespace_name: *const c_char,
    exists: *mut bool,
) -> c_int {
    ffi("rbd_namespace_exists", -libc::EFAULT, || {
        status((|| {
            lookup_ioctx(io)?;
            // SAFETY: `namespace_name` is NULL or a C string (caller contract).
            let ns = unsafe { cstr::arg(namespace_name) }?;
            if ns.is_empty() || exists.is_null() {
                return Err(-libc::EINVAL);
            }
            // SAFETY: non-NULL and writable (caller contract).
            unsafe { exists.write(false) };
            Ok(())
        })())
    })
}

/// Copy the data of `src` into `dst` (allocated ranges only; the rest of `dst` is zeroed
/// where `src` has none, so the copy is exact).
fn copy_data(src: &shale_image::Image, dst: &shale_image::Image) -> Result<(), c_int> {
    let size = src.size();
    let fail = |e: shale_image::Error| errno::of(&e);
    if dst.size() < size {
        return Err(-libc::EINVAL);
    }
    let mut buf = vec![0u8; 4 << 20];
    let mut pos = 0u64;
    for (lba, n) in src.allocated(0, size.div_ceil(512)) {
        let (s, e) = (lba * 512, ((lba + n) * 512).min(size));
        if s > pos {
            dst.write_zeroes(pos, s - pos).map_err(fail)?;
        }
        let mut at = s;
        while at < e {
            let k = ((e - at) as usize).min(buf.len());
            let got = src.read(at, &mut buf[..k]).map_err(fail)?;
            dst.write(at, &buf[..got]).map_err(fail)?;
            at += got as u64;
            if got == 0 {
                break;
            }
        }
        pos = e.max(pos);
    }
    if pos < size {
        dst.write_zeroes(pos, size - pos).map_err(fail)?;
    }
    dst.flush().map_err(fail)
}

fn copy_to_new(
    image: rbd_image_t,
    dest_io: rados_ioctx_t,
    destname: *const c_char,
    order: Option<u64>,
) -> c_int {
    status((|| {
        let img = lookup_image(image)?;
        let dio = ioctx(dest_io)?;
        // SAFETY: `destname` is NULL or a C string (caller contract).
        let name = unsafe { cstr::arg(destname) }?;
        let src = img.image();
        let order = match order {
            Some(o) => c_int::try_from(o).map_err(|_| -libc::EDOM)?,
            None => c_int::from(src.info().order),
        };
        create(dest_io, destname, src.size(), order)?;
        let c = &dio.store.cluster;
        let id = c.image_id(&dio.pool, name).map_err(|e| errno::of(&e))?;
        let g = globals();
        let dst = g
            .open_image(&dio.store, &dio.pool, &id, false)
            .map_err(|e| errno::of(&e))?;
        let r = copy_data(&src, &dst.image());
        let closed = g.release_image(&dst).map_err(|e| errno::of(&e));
        r.and(closed)
    })())
}

/// `int rbd_copy(rbd_image_t image, rados_ioctx_t dest_io_ctx, const char *destname)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_copy(
    image: rbd_image_t,
    dest_io_ctx: rados_ioctx_t,
    destname: *const c_char,
) -> c_int {
    ffi("rbd_copy", -libc::EFAULT, || {
        copy_to_new(image, dest_io_ctx, destname, None)
    })
}

/// `int rbd_copy2(rbd_image_t src, rbd_image_t dest)`: `-EINVAL` if `dest` is smaller.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_copy2(src: rbd_image_t, dest: rbd_image_t) -> c_int {
    ffi("rbd_copy2", -libc::EFAULT, || {
        status((|| {
            let (s, d) = (lookup_image(src)?, lookup_image(dest)?);
            d.writable()?;
            copy_data(&s.image(), &d.image())
        })())
    })
}

/// Copy with options: the ORDER option, else the source's order.
fn copy_opts(
    src: rbd_image_t,
    dest_io: rados_ioctx_t,
    destname: *const c_char,
    opts: rbd_image_options_t,
) -> c_int {
    let order = match lookup_opts(opts) {
        Ok(o) => o.and_then(|o| o.get_u64(OPT_ORDER)).filter(|&o| o != 0),
        Err(e) => return e,
    };
    copy_to_new(src, dest_io, destname, order)
}

/// `int rbd_copy3(rbd_image_t src, rados_ioctx_t dest_io_ctx, const char *destname,
/// rbd_image_options_t dest_opts)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_copy3(
    src: rbd_image_t,
    dest_io_ctx: rados_ioctx_t,
    destname: *const c_char,
    dest_opts: rbd_image_options_t,
) -> c_int {
    ffi("rbd_copy3", -libc::EFAULT, || {
        copy_opts(src, dest_io_ctx, destname, dest_opts)
    })
}

/// `rbd_copy4`: `rbd_copy3`; the copy is always sparse.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_copy4(
    src: rbd_image_t,
    dest_io_ctx: rados_ioctx_t,
    destname: *const c_char,
    dest_opts: rbd_image_options_t,
    _sparse_size: usize,
) -> c_int {
    ffi("rbd_copy4", -libc::EFAULT, || {
        copy_opts(src, dest_io_ctx, destname, dest_opts)
    })
}

#[cfg(test)]
mod tests {
    use super::{creation_features, Layout};

    fn layout(features: Option<u64>, stripe_unit: u64, stripe_count: u64) -> Layout {
        Layout {
            features,
            stripe_unit,
            stripe_count,
        }
    }

    /// The answers librbd 16.2.15 gave on ceph-mini (tests/create_parity.py runs them there).
    #[test]
    fn creation_features_as_librbd() {
        let e = Err(-libc::EINVAL);
        // (features to create with, bits added afterwards, stripe unit, stripe count)
        assert_eq!(
            creation_features(layout(None, 0, 0), 22),
            Ok((None, 0, 0, 0))
        );
        assert_eq!(
            creation_features(layout(Some(4 | 16), 0, 0), 22),
            Ok((Some(4), 0, 0, 0))
        );
        assert_eq!(
            creation_features(layout(Some(16), 0, 0), 22),
            Ok((Some(0), 0, 0, 0))
        );
        assert_eq!(
            creation_features(layout(Some(1 << 40), 0, 0), 22),
            Err(-libc::ENOSYS)
        );
        assert_eq!(
            creation_features(layout(Some(1 << 20), 0, 0), 22),
            Err(-libc::ENOSYS)
        );
        assert_eq!(creation_features(layout(Some(64), 0, 0), 22), e);
        assert_eq!(
            creation_features(layout(Some(4 | 64), 0, 0), 22),
            Ok((Some(4), 64, 0, 0))
        );
        assert_eq!(
            creation_features(layout(Some(1 | 2), 0, 0), 22),
            Ok((Some(1), 0, 0, 0))
        );
        assert_eq!(
            creation_features(layout(Some(61), 65536, 4), 22),
            Ok((Some(61), 2, 65536, 4))
        );
        assert_eq!(
            creation_features(layout(Some(61), 4 << 20, 1), 22),
            Ok((Some(61), 0, 0, 0))
        );
        assert_eq!(
            creation_features(layout(None, 65536, 1), 22),
            Ok((None, 2, 65536, 1))
        );
        assert_eq!(creation_features(layout(Some(61), 3000, 2), 22), e);
        assert_eq!(creation_features(layout(Some(61), 65536, 0), 22), e);
        assert_eq!(creation_features(layout(Some(61), 8 << 20, 1), 22), e);
    }
}
