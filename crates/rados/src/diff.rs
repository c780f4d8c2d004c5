//! `rbd_diff_iterate{,2}`, and the feature calls: `rbd_update_features` with librbd's rules,
//! `rbd_features_to_string` / `rbd_features_from_string`, `rbd_rebuild_object_map`.
//!
//! Diffs come from `Image::diff` on what the handle shows (head or snapshot): since snapshot
//! `fromsnapname` (NULL: everything that has data), in ascending order. A negative callback
//! value stops the iteration and is returned as is (QEMU stops with -9000); a positive one is
//! ignored, as librbd does. Feature rules measured on Ceph 16.2.15 are listed at
//! [`shale_rbd_update_features`].

use crate::cstr;
use crate::errno;
use crate::guard::ffi;
use crate::image::{put, with_image};
use crate::types::{librbd_progress_fn_t, rbd_diff_iterate_cb_t, rbd_image_t};
use core::ffi::{c_char, c_int, c_void};

use shale_image::features::{
    ALL, DISABLE_ONLY, EXCLUSIVE_LOCK, FAST_DIFF, JOURNALING, MIGRATING, MUTABLE, MUTABLE_INTERNAL,
    NAMES, OBJECT_MAP, OPERATIONS,
};
/// `RBD_FEATURES_DEFAULT` (what an empty string means).
const DEFAULT: u64 = shale_image::features::DEFAULT;

fn diff_iterate(
    image: rbd_image_t,
    fromsnap: *const c_char,
    ofs: u64,
    len: u64,
    (include_parent, whole_object): (bool, bool),
    cb: rbd_diff_iterate_cb_t,
    arg: *mut c_void,
) -> c_int {
    let mut stop = 0;
    let r = with_image(image, |img| {
        // SAFETY: NULL or a C string (caller contract).
        let from = unsafe { cstr::opt_arg(fromsnap) }?;
        let Some(cb) = cb else {
            return Err(-libc::EINVAL);
        };
        let view = img.image();
        // Validates the range and the snapshot as before.
        view.diff(from, ofs, 0, false, false)
            .map_err(|e| errno::of(&e))?;
        let store = crate::clone::store_of(img)?;
        let ranges = librbd_diff(
            &store.cluster,
            &view,
            from,
            ofs,
            len,
            include_parent,
            whole_object,
        )
        .map_err(|e| errno::of(&e))?;
        for (off, n, exists) in ranges {
            // Against nothing, a range without data is no difference.
            if from.is_none() && !exists {
                continue;
            }
            let Ok(n) = usize::try_from(n) else {
                return Err(-libc::EOVERFLOW);
            };
            // SAFETY: the caller's callback with its own argument.
            let r = unsafe { cb(off, n, c_int::from(exists), arg) };
            if r < 0 {
                stop = r;
                break;
            }
        }
        Ok(())
    });
    if stop < 0 {
        stop
    } else {
        r
    }
}

/// The byte ranges `[a, z)` of `ranges` (exists only when `only_data`), as (start, end).
fn ends(ranges: &[(u64, u64, bool)], only_data: bool) -> Vec<(u64, u64)> {
    ranges
        .iter()
        .filter(|r| r.2 || !only_data)
        .map(|r| (r.0, r.0 + r.1))
        .collect()
}

/// The end of the last byte of `data` inside `[os, oe)`: the size of that RADOS object as
/// librbd sees it (0: no object).
fn obj_end(data: &[(u64, u64)], os: u64, oe: u64) -> u64 {
    data.iter()
        .filter(|r| r.0 < oe && r.1 > os)
        .map(|r| r.1.min(oe))
        .max()
        .unwrap_or(0)
}

/// librbd's `diff_iterate2` on Shale's extent maps (measured on Ceph 16.2.15, table in
/// tests/diff_iterate.py). librbd works per RADOS object of `1 << order` bytes, visiting the
/// objects that intersect `[ofs, ofs+len)` and clipping every answer to that range:
/// - against nothing (`from` None) an object with data is `[start, start + its size)` (its size
///   ends at its last written byte), with `include_parent` a clone also shows the parent's
///   objects below the overlap; `whole_object` reports the whole object;
/// - since a snapshot, an object changed since it: created since, `[start, start + size)`;
///   removed since (no data left), `[start, start + size at the snapshot)` not existing;
///   otherwise the changed extents themselves; `whole_object` reports the whole object,
///   existing or not.
fn librbd_diff(
    cluster: &shale_image::Cluster,
    view: &shale_image::Image,
    from: Option<&str>,
    ofs: u64,
    len: u64,
    include_parent: bool,
    whole_object: bool,
) -> shale_image::Result<Vec<(u64, u64, bool)>> {
    let size = view.size();
    let end = ofs.saturating_add(len).min(size);
    if end <= ofs {
        return Ok(Vec::new());
    }
    let obj = view.info().object_size.max(512);
    let (a, z) = (ofs / obj * obj, (end.div_ceil(obj) * obj).min(size));
    let own_now = view.diff(None, a, z - a, false, false)?;
    let now = ends(&own_now, true);
    let mut parent = Vec::new();
    if from.is_none() && include_parent {
        if let Some(p) = view.parent() {
            let top = z.min(p.overlap);
            if top > a {
                let pv = cluster.open_image_at(&p.pool, &p.image_name, &p.snap_name)?;
                parent = ends(&pv.diff(None, a, top - a, true, false)?, true)
                    .into_iter()
                    .map(|(x, y)| (x, y.min(top)))
                    .collect();
            }
        }
    }
    let (changed, before) = match from {
        Some(name) => {
            let changed = view.diff(Some(name), a, z - a, false, false)?;
            let at = cluster.open_image_at(view.pool(), &view.name(), name)?;
            let before = ends(&at.diff(None, a, z - a, false, false)?, true);
            (changed, before)
        }
        None => (Vec::new(), Vec::new()),
    };
    let clip = |x: u64, y: u64| (x.max(ofs), y.min(end));
    let mut out = Vec::new();
    let mut push = |x: u64, y: u64, exists: bool| {
        let (x, y) = clip(x, y);
        if x < y {
            out.push((x, y - x, exists));
        }
    };
    let mut os = a;
    while os < z {
        let oe = (os + obj).min(size);
        let size_now = obj_end(&now, os, oe).max(obj_end(&parent, os, oe));
        match from {
            None => {
                if size_now > 0 {
                    push(os, if whole_object { oe } else { size_now }, true);
                }
            }
            Some(_) => {
                let touched: Vec<_> = changed
                    .iter()
                    .filter(|r| r.0 < oe && r.0 + r.1 > os)
                    .collect();
                if !touched.is_empty() {
                    let size_before = obj_end(&before, os, oe);
                    if whole_object {
                        push(os, oe, size_now > 0);
                    } else if size_now == 0 {
                        if size_before > 0 {
                            push(os, size_before, false);
                        }
                    } else if size_before == 0 {
                        push(os, size_now, true);
                    } else {
                        for r in touched {
                            push(r.0.max(os), (r.0 + r.1).min(oe), r.2);
                        }
                    }
                }
            }
        }
        os = oe;
    }
    Ok(out)
}

/// `int rbd_diff_iterate2(rbd_image_t image, const char *fromsnapname, uint64_t ofs,
/// uint64_t len, uint8_t include_parent, uint8_t whole_object, cb, void *arg)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_diff_iterate2(
    image: rbd_image_t,
    fromsnapname: *const c_char,
    ofs: u64,
    len: u64,
    include_parent: u8,
    whole_object: u8,
    cb: rbd_diff_iterate_cb_t,
    arg: *mut c_void,
) -> c_int {
    ffi("rbd_diff_iterate2", -libc::EFAULT, || {
        diff_iterate(
            image,
            fromsnapname,
            ofs,
            len,
            (include_parent != 0, whole_object != 0),
            cb,
            arg,
        )
    })
}

/// `rbd_diff_iterate`: as `rbd_diff_iterate2` with the parent included and exact extents.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_diff_iterate(
    image: rbd_image_t,
    fromsnapname: *const c_char,
    ofs: u64,
    len: u64,
    cb: rbd_diff_iterate_cb_t,
    arg: *mut c_void,
) -> c_int {
    ffi("rbd_diff_iterate", -libc::EFAULT, || {
        diff_iterate(image, fromsnapname, ofs, len, (true, false), cb, arg)
    })
}

/// The change librbd would make for `update_features(features, enabled)` on an image with
/// features `cur`: the bits to switch, or `-EINVAL`.
pub(crate) fn feature_change(cur: u64, features: u64, enabled: bool) -> Result<u64, c_int> {
    let allowed = if enabled {
        MUTABLE
    } else {
        MUTABLE | DISABLE_ONLY
    };
    if features & !allowed != 0 || features & MUTABLE_INTERNAL != 0 {
        return Err(-libc::EINVAL);
    }
    let mut f = features;
    let (om, fd) = (f & OBJECT_MAP != 0, f & FAST_DIFF != 0);
    // object-map and fast-diff go together where one without the other would be left.
    if (enabled && ((om && cur & FAST_DIFF == 0) || (fd && cur & OBJECT_MAP == 0)))
        || (!enabled && om && cur & FAST_DIFF != 0)
    {
        f |= OBJECT_MAP | FAST_DIFF;
    }
    if f == 0 {
        return Err(-libc::EINVAL);
    }
    if enabled {
        let new = cur | f;
        if f & cur != 0 || (new & (OBJECT_MAP | JOURNALING) != 0 && new & EXCLUSIVE_LOCK == 0) {
            return Err(-libc::EINVAL);
        }
    } else {
        let new = cur & !f;
        if f & !cur != 0 || (f & EXCLUSIVE_LOCK != 0 && new & (OBJECT_MAP | JOURNALING) != 0) {
            return Err(-libc::EINVAL);
        }
    }
    Ok(f)
}

/// `int rbd_update_features(rbd_image_t image, uint64_t features, uint8_t enabled)`, as
/// librbd 16: only exclusive-lock, object-map, fast-diff (and journaling) change, deep-flatten
/// can only be disabled; enabling an enabled feature or disabling a disabled one is `-EINVAL`;
/// object-map and fast-diff are switched together when needed; object-map needs
/// exclusive-lock, and so does journaling, which librbd 16.2.15 enables (measured: 0x3d ->
/// 0x7d); its bit changes nothing here (every Shale image is journaled locally, and there is
/// no rbd-mirror journal). `-EROFS` on read-only handles.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_update_features(
    image: rbd_image_t,
    features: u64,
    enabled: u8,
) -> c_int {
    ffi("rbd_update_features", -libc::EFAULT, || {
        with_image(image, |img| {
            img.writable()?;
            let head = img.head_rw()?;
            let f = feature_change(head.features(), features, enabled != 0)?;
            head.update_features(f, enabled != 0)
                .map_err(|e| errno::of(&e))
        })
    })
}

/// librbd's string for `features` (names sorted), or `-EINVAL` for unknown bits.
fn to_string(features: u64) -> Result<String, c_int> {
    if features & !ALL != 0 {
        return Err(-libc::EINVAL);
    }
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(_, b)| features & b != 0)
        .map(|(n, _)| *n)
        .collect();
    Ok(names.join(","))
}

/// librbd's parse: empty is the default set, a number is taken as is (unknown or internal bits
/// are `-EINVAL`), else comma-separated names (an unknown one is `-EINVAL`).
fn from_string(s: &str) -> Result<u64, c_int> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(DEFAULT);
    }
    if let Ok(n) = s.parse::<u64>() {
        if n & !ALL != 0 || n & (MUTABLE_INTERNAL | MIGRATING | OPERATIONS) != 0 {
            return Err(-libc::EINVAL);
        }
        return Ok(n);
    }
    let mut f = 0;
    for name in s.split(',') {
        let name = name.trim();
        let bit = NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or(-libc::EINVAL)?;
        f |= bit.1;
    }
    Ok(f)
}

/// `int rbd_features_to_string(uint64_t features, char *str_features, size_t *size)`:
/// `-ERANGE` with `*size` = size needed; `*size` = size used on success.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_features_to_string(
    features: u64,
    str_features: *mut c_char,
    size: *mut usize,
) -> c_int {
    ffi("rbd_features_to_string", -libc::EFAULT, || {
        let r = (|| {
            let s = to_string(features)?;
            // SAFETY: forwarded caller contract.
            unsafe { crate::image::copy_str_len(&s, str_features, size, true) }
        })();
        r.err().unwrap_or(0)
    })
}

/// `int rbd_features_from_string(const char *str_features, uint64_t *features)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_features_from_string(
    str_features: *const c_char,
    features: *mut u64,
) -> c_int {
    ffi("rbd_features_from_string", -libc::EFAULT, || {
        let r = (|| {
            // SAFETY: NULL or a C string (caller contract).
            let s = unsafe { cstr::arg(str_features) }?;
            let f = from_string(s);
            // SAFETY: NULL-checked by `put`; librbd writes 0 on a parse error.
            unsafe { put(features, f.unwrap_or(0))? };
            f.map(drop)
        })();
        r.err().unwrap_or(0)
    })
}

/// `int rbd_rebuild_object_map(rbd_image_t image, librbd_progress_fn_t cb, void *cbdata)`:
/// the object map is derived from the extent map, so there is nothing to rebuild; `-EINVAL`
/// without the object-map feature, as librbd.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_rebuild_object_map(
    image: rbd_image_t,
    cb: librbd_progress_fn_t,
    cbdata: *mut c_void,
) -> c_int {
    ffi("rbd_rebuild_object_map", -libc::EFAULT, || {
        with_image(image, |img| {
            if img.image().features() & OBJECT_MAP == 0 {
                return Err(-libc::EINVAL);
            }
            crate::snaps::progress(cb, cbdata)(1, 1);
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_image::features::{DEEP_FLATTEN, LAYERING};

    #[test]
    fn features_strings_as_librbd() {
        assert_eq!(
            to_string(61).unwrap(),
            "deep-flatten,exclusive-lock,fast-diff,layering,object-map"
        );
        assert_eq!(to_string((1 << 40) | 1), Err(-libc::EINVAL));
        assert_eq!(from_string(""), Ok(61));
        assert_eq!(from_string("layering,fast-diff"), Ok(17));
        assert_eq!(from_string("layering, object-map"), Ok(9));
        assert_eq!(from_string("61"), Ok(61));
        assert_eq!(from_string("bogus"), Err(-libc::EINVAL));
        assert_eq!(from_string("1024"), Err(-libc::EINVAL));
        assert_eq!(from_string("4096"), Err(-libc::EINVAL));
    }

    #[test]
    fn feature_rules_as_librbd() {
        // Each case measured on Ceph 16.2.15 (current features, asked, enable -> result).
        let e = Err(-libc::EINVAL);
        assert_eq!(feature_change(61, LAYERING, true), e);
        assert_eq!(feature_change(61, LAYERING, false), e);
        assert_eq!(feature_change(61, DEEP_FLATTEN, false), Ok(DEEP_FLATTEN));
        assert_eq!(feature_change(29, DEEP_FLATTEN, true), e);
        assert_eq!(feature_change(29, OBJECT_MAP, true), e);
        assert_eq!(feature_change(29, EXCLUSIVE_LOCK, false), e);
        assert_eq!(
            feature_change(29, OBJECT_MAP, false),
            Ok(OBJECT_MAP | FAST_DIFF)
        );
        assert_eq!(feature_change(5, FAST_DIFF, false), e);
        assert_eq!(
            feature_change(5, FAST_DIFF, true),
            Ok(OBJECT_MAP | FAST_DIFF)
        );
        assert_eq!(feature_change(1, OBJECT_MAP, true), e);
        assert_eq!(feature_change(1, JOURNALING, true), e);
        assert_eq!(feature_change(61, JOURNALING, true), Ok(JOURNALING));
        assert_eq!(feature_change(125, EXCLUSIVE_LOCK, false), e);
        assert_eq!(feature_change(1, 0, true), e);
        assert_eq!(feature_change(1, 1024, true), e);
        assert_eq!(feature_change(1, EXCLUSIVE_LOCK, true), Ok(EXCLUSIVE_LOCK));
        assert_eq!(feature_change(29, FAST_DIFF, true), e);
    }
}
