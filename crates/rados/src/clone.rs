//! Clones (`rbd_clone*`), parents (`rbd_get_parent*`, `rbd_get_overlap`), flatten and the
//! children of snapshots (`rbd_list_children*`).
//!
//! As measured on Ceph 16.2.15 with its default clone format (README.md): cloning needs a
//! protected snapshot (`-EINVAL` otherwise), a missing parent or snapshot is `-ENOENT`, an
//! existing child `-EEXIST`, features without layering `-ENOSYS`, a child order below the
//! parent's without a stripe unit `-EINVAL`; a clone without FEATURES gets its parent's
//! features. No parent is `-ENOENT` (the out-structs are zeroed); flattening a non-clone
//! `-EINVAL`. At the head the children of every snapshot are listed, at a snapshot only its.

use crate::cstr;
use crate::errno;
use crate::guard::ffi;
use crate::image::{lookup_image, put, with_image, RbdImage};
use crate::options::{lookup_opts, OPT_FEATURES, OPT_ORDER};
use crate::pools::lookup_ioctx;
use crate::snaps::progress;
use crate::state::{globals, Store};
use crate::types::{
    librbd_progress_fn_t, rados_ioctx_t, rbd_child_info_t, rbd_image_options_t, rbd_image_t,
    rbd_linked_image_spec_t, rbd_snap_spec_t,
};
use core::ffi::{c_char, c_int, c_void};
use shale_image::{ErrorKind, ParentRef};
use std::sync::Arc;

const OPT_STRIPE_UNIT: c_int = 3;
const OPT_STRIPE_COUNT: c_int = 4;
const OPT_CLONE_FORMAT: c_int = 12;
use shale_image::features::LAYERING as FEATURE_LAYERING;
/// The features a Shale image can have (layering, exclusive-lock, object-map, fast-diff,
/// deep-flatten); all but layering can be turned off after creation.
const SUPPORTED: u64 = 1 | 4 | 8 | 16 | 32;

fn status(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(0)
}

/// The connected store an image handle belongs to.
pub(crate) fn store_of(img: &RbdImage) -> Result<Arc<Store>, c_int> {
    globals().store(&img.shared.key.0).ok_or(-libc::EINVAL)
}

/// A name the store cannot hold cannot name an existing image or snapshot: `-ENOENT`.
fn lookup_errno(e: &shale_image::Error) -> c_int {
    if e.kind() == ErrorKind::Invalid {
        crate::guard::log_error(e);
        -libc::ENOENT
    } else {
        errno::of(e)
    }
}

/// What a clone call asks for.
struct CloneArgs {
    features: Option<u64>,
    /// 0: the parent's.
    order: c_int,
    stripe_unit: Option<u64>,
    stripe_count: Option<u64>,
    format: Option<u64>,
}

/// The parent and child of a clone call, as C arguments.
#[derive(Clone, Copy)]
struct Names {
    p_io: rados_ioctx_t,
    p_name: *const c_char,
    p_snap: *const c_char,
    c_io: rados_ioctx_t,
    c_name: *const c_char,
}

/// Clone `p_name@p_snap` into `c_name`; returns the child's order.
fn clone(n: Names, a: CloneArgs) -> Result<u8, c_int> {
    let Names {
        p_io,
        p_name,
        p_snap,
        c_io,
        c_name,
    } = n;
    let (pio, cio) = (lookup_ioctx(p_io)?, lookup_ioctx(c_io)?);
    // SAFETY: C strings or NULL (caller contract of every rbd_clone*).
    let (pname, psnap, cname) =
        unsafe { (cstr::arg(p_name)?, cstr::arg(p_snap)?, cstr::arg(c_name)?) };
    if cname.is_empty() || !matches!(a.format, None | Some(1) | Some(2)) {
        return Err(-libc::EINVAL);
    }
    if !pio.namespace().is_empty() || !cio.namespace().is_empty() {
        return Err(-libc::ENOENT);
    }
    if pio.store.url != cio.store.url {
        return Err(-libc::EXDEV);
    }
    if let Some(f) = a.features {
        if f & FEATURE_LAYERING == 0 {
            return Err(-libc::ENOSYS);
        }
        if f & !SUPPORTED != 0 {
            return Err(-libc::EINVAL);
        }
    }
    if a.order != 0 && !(12..=25).contains(&a.order) {
        return Err(-libc::EDOM);
    }
    let c = &pio.store.cluster;
    // The parent at the snapshot: checks both exist, and gives the order and features.
    let view = c
        .open_image_at(&pio.pool, pname, psnap)
        .map_err(|e| lookup_errno(&e))?;
    let (porder, pfeatures) = (view.info().order, view.features());
    let _ = view.close();
    let order = if a.order == 0 { porder } else { a.order as u8 };
    let stripe_ok = match a.stripe_unit {
        // librbd takes the parent's stripe unit when none is given.
        None => order >= porder,
        Some(0) => true,
        Some(su) => su <= 1 << order && (1u64 << order).is_multiple_of(su),
    };
    if !stripe_ok || a.stripe_count.is_some_and(|n| n > 1) {
        return Err(-libc::EINVAL);
    }
    let id = c
        .clone_image(&pio.pool, pname, psnap, &cio.pool, cname, Some(order))
        .map_err(|e| errno::of(&e))?;
    let want = a.features.unwrap_or(pfeatures) & SUPPORTED;
    if let Err(e) = set_features(&cio.store, &cio.pool, &id, want) {
        let _ = c.remove_image(&cio.pool, cname, |_, _| {});
        return Err(e);
    }
    Ok(order)
}

/// Turn off the features of a new image that `want` does not have.
fn set_features(store: &Arc<Store>, pool: &str, id: &str, want: u64) -> Result<(), c_int> {
    let g = globals();
    let shared = g
        .open_image(store, pool, id, false)
        .map_err(|e| errno::of(&e))?;
    let img = shared.image();
    let off = img.features() & !want;
    let r = if off != 0 {
        img.update_features(off, false).map_err(|e| errno::of(&e))
    } else {
        Ok(())
    };
    let c = g.release_image(&shared).map_err(|e| errno::of(&e));
    r.and(c)
}

fn names(
    p_io: rados_ioctx_t,
    p_name: *const c_char,
    p_snap: *const c_char,
    c_io: rados_ioctx_t,
    c_name: *const c_char,
) -> Names {
    Names {
        p_io,
        p_name,
        p_snap,
        c_io,
        c_name,
    }
}

/// `rbd_clone` / `rbd_clone2`: `*c_order` is read (0: the parent's), not written back.
///
/// # Safety
/// `c_order` is NULL or readable.
unsafe fn clone_order(
    n: Names,
    features: u64,
    c_order: *mut c_int,
    stripe: Option<(u64, u64)>,
) -> c_int {
    if c_order.is_null() {
        return -libc::EINVAL;
    }
    let a = CloneArgs {
        features: Some(features),
        // SAFETY: non-NULL and readable (caller contract).
        order: unsafe { *c_order },
        stripe_unit: stripe.map(|s| s.0),
        stripe_count: stripe.map(|s| s.1),
        format: None,
    };
    // librbd leaves `*c_order` as it was.
    clone(n, a).err().unwrap_or(0)
}

/// `int rbd_clone(rados_ioctx_t p_ioctx, const char *p_name, const char *p_snapname,
/// rados_ioctx_t c_ioctx, const char *c_name, uint64_t features, int *c_order)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_clone(
    p_ioctx: rados_ioctx_t,
    p_name: *const c_char,
    p_snapname: *const c_char,
    c_ioctx: rados_ioctx_t,
    c_name: *const c_char,
    features: u64,
    c_order: *mut c_int,
) -> c_int {
    // SAFETY: forwarded caller contract.
    ffi("rbd_clone", -libc::EFAULT, || unsafe {
        clone_order(
            names(p_ioctx, p_name, p_snapname, c_ioctx, c_name),
            features,
            c_order,
            Some((0, 0)),
        )
    })
}

/// `rbd_clone2`: as `rbd_clone`; a stripe count above 1 is `-EINVAL` (no fancy striping).
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_clone2(
    p_ioctx: rados_ioctx_t,
    p_name: *const c_char,
    p_snapname: *const c_char,
    c_ioctx: rados_ioctx_t,
    c_name: *const c_char,
    features: u64,
    c_order: *mut c_int,
    stripe_unit: u64,
    stripe_count: c_int,
) -> c_int {
    let stripe = Some((stripe_unit, u64::try_from(stripe_count).unwrap_or(u64::MAX)));
    // SAFETY: forwarded caller contract.
    ffi("rbd_clone2", -libc::EFAULT, || unsafe {
        clone_order(
            names(p_ioctx, p_name, p_snapname, c_ioctx, c_name),
            features,
            c_order,
            stripe,
        )
    })
}

/// `int rbd_clone3(..., rbd_image_options_t c_opts)`: honours ORDER, FEATURES, STRIPE_UNIT,
/// STRIPE_COUNT; CLONE_FORMAT 1 or 2 is accepted (the snapshot must be protected either way).
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_clone3(
    p_ioctx: rados_ioctx_t,
    p_name: *const c_char,
    p_snapname: *const c_char,
    c_ioctx: rados_ioctx_t,
    c_name: *const c_char,
    c_opts: rbd_image_options_t,
) -> c_int {
    ffi("rbd_clone3", -libc::EFAULT, || {
        status((|| {
            let opts = lookup_opts(c_opts)?;
            let get = |o| opts.as_ref().and_then(|x| x.get_u64(o));
            let order = c_int::try_from(get(OPT_ORDER).unwrap_or(0)).map_err(|_| -libc::EDOM)?;
            let a = CloneArgs {
                features: get(OPT_FEATURES),
                order,
                stripe_unit: get(OPT_STRIPE_UNIT),
                stripe_count: get(OPT_STRIPE_COUNT),
                format: get(OPT_CLONE_FORMAT),
            };
            clone(names(p_ioctx, p_name, p_snapname, c_ioctx, c_name), a).map(drop)
        })())
    })
}

/// The parent of the image a handle shows.
fn parent_of(img: &RbdImage) -> Result<ParentRef, c_int> {
    img.image().parent().ok_or(-libc::ENOENT)
}

/// `int rbd_get_parent(rbd_image_t image, rbd_linked_image_spec_t *parent_image,
/// rbd_snap_spec_t *parent_snap)`: strings malloc'd; on error both structs are zeroed.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_parent(
    image: rbd_image_t,
    parent_image: *mut rbd_linked_image_spec_t,
    parent_snap: *mut rbd_snap_spec_t,
) -> c_int {
    ffi("rbd_get_parent", -libc::EFAULT, || {
        if parent_image.is_null() || parent_snap.is_null() {
            return -libc::EINVAL;
        }
        let r = with_image(image, |img| {
            let p = parent_of(img)?;
            let pool_id = store_of(img)?.cluster.pool_id(&p.pool).unwrap_or(-1);
            // SAFETY: both non-NULL and writable (caller contract).
            unsafe {
                parent_image.write(rbd_linked_image_spec_t {
                    pool_id,
                    pool_name: cstr::malloc_str(&p.pool),
                    pool_namespace: cstr::malloc_str(""),
                    image_id: cstr::malloc_str(&p.image_id),
                    image_name: cstr::malloc_str(&p.image_name),
                    trash: false,
                });
                parent_snap.write(rbd_snap_spec_t {
                    id: p.snap_id,
                    namespace_type: 0,
                    name: cstr::malloc_str(&p.snap_name),
                });
            }
            Ok(())
        });
        if r < 0 {
            // SAFETY: both non-NULL and writable (caller contract); all-zero is valid for both.
            unsafe {
                std::ptr::write_bytes(parent_image, 0, 1);
                std::ptr::write_bytes(parent_snap, 0, 1);
            }
        }
        r
    })
}

/// Copy `s` into an optional buffer of `len` bytes: `-ERANGE` if it does not fit.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
unsafe fn fill(buf: *mut c_char, len: usize, s: &str) -> Result<(), c_int> {
    if buf.is_null() {
        return Ok(());
    }
    if s.len() + 1 > len {
        return Err(-libc::ERANGE);
    }
    // SAFETY: forwarded caller contract; it fits.
    unsafe { cstr::snprintf(buf, len, s) };
    Ok(())
}

/// `rbd_get_parent_info`: pool, image and snapshot names (`-ERANGE` if a buffer is short).
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_parent_info(
    image: rbd_image_t,
    parent_poolname: *mut c_char,
    ppoolnamelen: usize,
    parent_name: *mut c_char,
    pnamelen: usize,
    parent_snapname: *mut c_char,
    psnapnamelen: usize,
) -> c_int {
    ffi("rbd_get_parent_info", -libc::EFAULT, || {
        with_image(image, |img| {
            let p = parent_of(img)?;
            // SAFETY: forwarded caller contract.
            unsafe {
                fill(parent_poolname, ppoolnamelen, &p.pool)?;
                fill(parent_name, pnamelen, &p.image_name)?;
                fill(parent_snapname, psnapnamelen, &p.snap_name)
            }
        })
    })
}

/// `rbd_get_parent_info2`: as `rbd_get_parent_info` plus the parent's id.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_parent_info2(
    image: rbd_image_t,
    parent_poolname: *mut c_char,
    ppoolnamelen: usize,
    parent_name: *mut c_char,
    pnamelen: usize,
    parent_id: *mut c_char,
    pidlen: usize,
    parent_snapname: *mut c_char,
    psnapnamelen: usize,
) -> c_int {
    ffi("rbd_get_parent_info2", -libc::EFAULT, || {
        with_image(image, |img| {
            let p = parent_of(img)?;
            // SAFETY: forwarded caller contract.
            unsafe {
                fill(parent_poolname, ppoolnamelen, &p.pool)?;
                fill(parent_name, pnamelen, &p.image_name)?;
                fill(parent_id, pidlen, &p.image_id)?;
                fill(parent_snapname, psnapnamelen, &p.snap_name)
            }
        })
    })
}

/// `int rbd_get_overlap(rbd_image_t image, uint64_t *overlap)`: 0 without a parent.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_overlap(image: rbd_image_t, overlap: *mut u64) -> c_int {
    ffi("rbd_get_overlap", -libc::EFAULT, || {
        with_image(image, |img| {
            let i = img.image();
            let v = i.parent().map_or(0, |p| p.overlap.min(i.size()));
            // SAFETY: NULL-checked by `put`; writable by the caller's contract.
            unsafe { put(overlap, v) }
        })
    })
}

fn flatten(image: rbd_image_t, cb: librbd_progress_fn_t, arg: *mut c_void) -> c_int {
    with_image(image, |img| {
        img.writable()?;
        let head = img.head_rw()?;
        // Forwarded to another client that holds the lock explicitly (it has the writer).
        if img.forward_to_owner(&head)? && head.flatten_at_owner().map_err(|e| errno::of(&e))? {
            if let Some(cb) = cb {
                // SAFETY: the caller's progress callback with its own argument.
                unsafe { cb(1, 1, arg) };
            }
            return Ok(());
        }
        head.flatten(progress(cb, arg)).map_err(|e| errno::of(&e))?;
        img.adopt_after_op();
        Ok(())
    })
}

/// `int rbd_flatten(rbd_image_t image)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_flatten(image: rbd_image_t) -> c_int {
    ffi("rbd_flatten", -libc::EFAULT, || {
        flatten(image, None, std::ptr::null_mut())
    })
}

/// `int rbd_flatten_with_progress(rbd_image_t image, librbd_progress_fn_t cb, void *cbdata)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_flatten_with_progress(
    image: rbd_image_t,
    cb: librbd_progress_fn_t,
    cbdata: *mut c_void,
) -> c_int {
    ffi("rbd_flatten_with_progress", -libc::EFAULT, || {
        flatten(image, cb, cbdata)
    })
}

/// A child: pool, pool id, image name, image id.
struct Child {
    pool: String,
    pool_id: i64,
    name: String,
    id: String,
}

/// The clones of the snapshot the handle shows, or of every snapshot at the head; sorted.
fn children(img: &RbdImage) -> Result<Vec<Child>, c_int> {
    let head = img.head();
    let store = store_of(img)?;
    let c = &store.cluster;
    let fail = |e: shale_image::Error| errno::of(&e);
    let name = head.name();
    let mut all: Vec<(String, String)> = match img.snap_view() {
        Some(v) => {
            let snap = v.snapshot().map(|s| s.name.clone()).unwrap_or_default();
            c.list_children(head.pool(), &name, &snap).map_err(fail)?
        }
        None => c
            .children_by_snap(head.pool(), &name)
            .map_err(fail)?
            .into_values()
            .flatten()
            .collect(),
    };
    all.sort();
    all.dedup();
    Ok(resolve(c, all))
}

/// (pool, name) pairs as sorted children with their ids; a child removed meanwhile is skipped.
fn resolve(c: &shale_image::Cluster, mut all: Vec<(String, String)>) -> Vec<Child> {
    all.sort();
    all.dedup();
    let mut out = Vec::new();
    for (pool, name) in all {
        let Ok(id) = c.image_id(&pool, &name) else {
            continue;
        };
        let pool_id = c.pool_id(&pool).unwrap_or(-1);
        out.push(Child {
            pool,
            pool_id,
            name,
            id,
        });
    }
    out
}

/// The children of the snapshot the handle shows (of every snapshot at the head), each
/// followed by its own descendants (the clones of all its snapshots, recursively), as librbd's
/// `list_descendants` orders them.
fn descendants(img: &RbdImage) -> Result<Vec<Child>, c_int> {
    let store = store_of(img)?;
    let c = &store.cluster;
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    fn walk(
        c: &shale_image::Cluster,
        level: Vec<Child>,
        out: &mut Vec<Child>,
        seen: &mut std::collections::BTreeSet<(String, String)>,
    ) {
        let level: Vec<Child> = level
            .into_iter()
            .filter(|k| seen.insert((k.pool.clone(), k.id.clone())))
            .collect();
        let next: Vec<Vec<Child>> = level
            .iter()
            .map(|k| {
                // A child whose listing fails (removed meanwhile) has no descendants to show.
                let all = c
                    .children_by_snap(&k.pool, &k.name)
                    .map(|m| m.into_values().flatten().collect())
                    .unwrap_or_default();
                resolve(c, all)
            })
            .collect();
        out.extend(level);
        for kids in next {
            walk(c, kids, out, seen);
        }
    }
    walk(c, children(img)?, &mut out, &mut seen);
    Ok(out)
}

/// `ssize_t rbd_list_children(rbd_image_t image, char *pools, size_t *pools_len, char *images,
/// size_t *images_len)`: NUL-separated lists; `-ERANGE` with both sizes set if either is short;
/// returns the number of children.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list_children(
    image: rbd_image_t,
    pools: *mut c_char,
    pools_len: *mut usize,
    images: *mut c_char,
    images_len: *mut usize,
) -> isize {
    ffi("rbd_list_children", -(libc::EFAULT as isize), || {
        let r = (|| {
            let img = lookup_image(image)?;
            if pools_len.is_null() || images_len.is_null() {
                return Err(-libc::EINVAL);
            }
            let kids = children(&img)?;
            let ptotal: usize = kids.iter().map(|k| k.pool.len() + 1).sum();
            let itotal: usize = kids.iter().map(|k| k.name.len() + 1).sum();
            // SAFETY: both lengths non-NULL and read/writable; the buffers writable for them.
            unsafe {
                let short = pools.is_null()
                    || images.is_null()
                    || *pools_len < ptotal
                    || *images_len < itotal;
                *pools_len = ptotal;
                *images_len = itotal;
                if short {
                    return Err(-libc::ERANGE);
                }
                let (mut p, mut i) = (pools, images);
                for k in &kids {
                    cstr::snprintf(p, k.pool.len() + 1, &k.pool);
                    p = p.add(k.pool.len() + 1);
                    cstr::snprintf(i, k.name.len() + 1, &k.name);
                    i = i.add(k.name.len() + 1);
                }
            }
            Ok(kids.len() as isize)
        })();
        r.unwrap_or_else(|e| e as isize)
    })
}

/// `int rbd_list_children2(rbd_image_t image, rbd_child_info_t *children, int *max_children)`:
/// entries (strings malloc'd) and an all-NULL terminator; `-ERANGE` with count + 1.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list_children2(
    image: rbd_image_t,
    children: *mut rbd_child_info_t,
    max_children: *mut c_int,
) -> c_int {
    let call = || {
        ffi("rbd_list_children2", -libc::EFAULT, || {
            let r = (|| {
                let img = lookup_image(image)?;
                if max_children.is_null() {
                    return Err(-libc::EINVAL);
                }
                let kids = self::children(&img)?;
                let need = c_int::try_from(kids.len() + 1).map_err(|_| -libc::EOVERFLOW)?;
                // SAFETY: `max_children` non-NULL and read/writable; `children` has room for
                // `*max_children` entries (caller contract).
                unsafe {
                    if children.is_null() || *max_children < need {
                        *max_children = need;
                        return Err(-libc::ERANGE);
                    }
                    for (i, k) in kids.iter().enumerate() {
                        children.add(i).write(rbd_child_info_t {
                            pool_name: cstr::malloc_str(&k.pool),
                            image_name: cstr::malloc_str(&k.name),
                            image_id: cstr::malloc_str(&k.id),
                            trash: false,
                        });
                    }
                    children.add(kids.len()).write(rbd_child_info_t {
                        pool_name: std::ptr::null_mut(),
                        image_name: std::ptr::null_mut(),
                        image_id: std::ptr::null_mut(),
                        trash: false,
                    });
                }
                Ok(need - 1)
            })();
            r.unwrap_or_else(|e| e)
        })
    };
    // SAFETY: `children` has room for `*max_children` entries (caller contract).
    unsafe { crate::outlist::guarded(children, max_children, call) }
}

/// `void rbd_list_child_cleanup(rbd_child_info_t *child)`.
///
/// # Safety
/// `child` is NULL or an entry filled by `rbd_list_children2`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list_child_cleanup(child: *mut rbd_child_info_t) {
    ffi("rbd_list_child_cleanup", (), || {
        if child.is_null() {
            return;
        }
        // SAFETY: the strings came from malloc (or are NULL); reset after freeing.
        unsafe {
            let c = &mut *child;
            for p in [&mut c.pool_name, &mut c.image_name, &mut c.image_id] {
                libc::free((*p).cast());
                *p = std::ptr::null_mut();
            }
        }
    })
}

/// `void rbd_list_children_cleanup(rbd_child_info_t *children, size_t num_children)`.
///
/// # Safety
/// `children` holds `num_children` entries filled by `rbd_list_children2`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list_children_cleanup(
    children: *mut rbd_child_info_t,
    num_children: usize,
) {
    ffi("rbd_list_children_cleanup", (), || {
        if children.is_null() {
            return;
        }
        for i in 0..num_children {
            // SAFETY: entry `i` exists (caller contract).
            unsafe { shale_rbd_list_child_cleanup(children.add(i)) };
        }
    })
}

/// `int rbd_list_children3(rbd_image_t image, rbd_linked_image_spec_t *images,
/// size_t *max_images)`: `-ERANGE` with `*max_images` = count; on success it is the count.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list_children3(
    image: rbd_image_t,
    images: *mut rbd_linked_image_spec_t,
    max_images: *mut usize,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { linked_list("rbd_list_children3", image, images, max_images, children) }
}

/// `int rbd_list_descendants(rbd_image_t image, rbd_linked_image_spec_t *images,
/// size_t *max_images)`: the clones of the handle's snapshot (of every snapshot at the head)
/// and, recursively, the clones of theirs; `-ERANGE` with `*max_images` = count.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list_descendants(
    image: rbd_image_t,
    images: *mut rbd_linked_image_spec_t,
    max_images: *mut usize,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        linked_list(
            "rbd_list_descendants",
            image,
            images,
            max_images,
            descendants,
        )
    }
}

/// The body of `rbd_list_children3` / `rbd_list_descendants`: `list` of the image into the
/// caller's array; on any error the array reads as empty (see [`crate::outlist`]).
///
/// # Safety
/// `images` has room for `*max_images` entries; `max_images` NULL or valid.
unsafe fn linked_list(
    name: &'static str,
    image: rbd_image_t,
    images: *mut rbd_linked_image_spec_t,
    max_images: *mut usize,
    list: fn(&RbdImage) -> Result<Vec<Child>, c_int>,
) -> c_int {
    let call = || {
        ffi(name, -libc::EFAULT, || {
            with_image(image, |img| {
                if max_images.is_null() {
                    return Err(-libc::EINVAL);
                }
                let kids = list(img)?;
                // SAFETY: `max_images` non-NULL and read/writable; `images` has room for
                // `*max_images` entries (caller contract).
                unsafe {
                    if (images.is_null() && !kids.is_empty()) || *max_images < kids.len() {
                        *max_images = kids.len();
                        return Err(-libc::ERANGE);
                    }
                    *max_images = kids.len();
                    for (i, k) in kids.iter().enumerate() {
                        images.add(i).write(rbd_linked_image_spec_t {
                            pool_id: k.pool_id,
                            pool_name: cstr::malloc_str(&k.pool),
                            pool_namespace: cstr::malloc_str(""),
                            image_id: cstr::malloc_str(&k.id),
                            image_name: cstr::malloc_str(&k.name),
                            trash: false,
                        });
                    }
                }
                Ok(())
            })
        })
    };
    // SAFETY: `images` has room for `*max_images` entries (caller contract).
    unsafe { crate::outlist::guarded(images, max_images, call) }
}

/// `void rbd_linked_image_spec_cleanup(rbd_linked_image_spec_t *image)`.
///
/// # Safety
/// `image` is NULL or filled by `rbd_get_parent` / `rbd_list_children3` (or zeroed).
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_linked_image_spec_cleanup(image: *mut rbd_linked_image_spec_t) {
    ffi("rbd_linked_image_spec_cleanup", (), || {
        if image.is_null() {
            return;
        }
        // SAFETY: the strings came from malloc (or are NULL); reset after freeing.
        unsafe {
            let s = &mut *image;
            for p in [
                &mut s.pool_name,
                &mut s.pool_namespace,
                &mut s.image_id,
                &mut s.image_name,
            ] {
                libc::free((*p).cast());
                *p = std::ptr::null_mut();
            }
        }
    })
}

/// `void rbd_linked_image_spec_list_cleanup(rbd_linked_image_spec_t *images, size_t n)`.
///
/// # Safety
/// `images` holds `num_images` entries filled by `rbd_list_children3`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_linked_image_spec_list_cleanup(
    images: *mut rbd_linked_image_spec_t,
    num_images: usize,
) {
    ffi("rbd_linked_image_spec_list_cleanup", (), || {
        if images.is_null() {
            return;
        }
        for i in 0..num_images {
            // SAFETY: entry `i` exists (caller contract).
            unsafe { shale_rbd_linked_image_spec_cleanup(images.add(i)) };
        }
    })
}

/// `void rbd_snap_spec_cleanup(rbd_snap_spec_t *snap)`.
///
/// # Safety
/// `snap` is NULL or filled by `rbd_get_parent` (or zeroed).
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_spec_cleanup(snap: *mut rbd_snap_spec_t) {
    ffi("rbd_snap_spec_cleanup", (), || {
        if snap.is_null() {
            return;
        }
        // SAFETY: the name came from malloc (or is NULL); reset after freeing.
        unsafe {
            libc::free((*snap).name.cast());
            (*snap).name = std::ptr::null_mut();
        }
    })
}
