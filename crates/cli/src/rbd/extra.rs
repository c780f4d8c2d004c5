//! The smaller rbd commands: pool init/stats, image-meta, feature enable/disable, snap limit,
//! cp; and the answer for Ceph rbd commands Shale does not provide.

use shale_error::err;
use shale_image::features;

use super::output::{Align, Table, J};
use super::{Ctx, Fail, Session, SnapArg, R};
use crate::progress;

/// `pool init`: Shale pools need no initialisation; the pool must exist.
pub(super) fn pool_init(x: &Session, pool: Option<&str>) -> R<()> {
    x.check_pool(&x.pool_or_default(pool))
}

/// `pool stats`: images, snapshots and provisioned bytes (Shale has no trash).
pub(super) fn pool_stats(x: &Session, pool: Option<&str>) -> R<()> {
    let pool = x.pool_or_default(pool);
    x.check_pool(&pool)?;
    const CTX: &str = "failed to query pool stats";
    let (mut count, mut bytes, mut snaps) = (0u64, 0u64, 0u64);
    for e in x.c.list_images(&pool).ctx(CTX)? {
        let img = x.c.open_image_by_id(&pool, &e.id, true).ctx(CTX)?;
        count += 1;
        bytes += img.size();
        snaps += img.snap_list().ctx(CTX)?.len() as u64;
    }
    if x.json {
        let group = |c, b, s| {
            J::O(vec![
                ("count", J::U(c)),
                ("provisioned_bytes", J::U(b)),
                ("snap_count", J::U(s)),
            ])
        };
        x.emit(&J::O(vec![
            ("images", group(count, bytes, snaps)),
            ("trash", group(0, 0, 0)),
        ]));
    } else {
        outln!("Total Images: {count}");
        outln!("Total Snapshots: {snaps}");
        outln!("Provisioned Size: {}", one_decimal_size(bytes));
    }
    Ok(())
}

/// rbd's `byte_u_t` form used by `pool stats`: one decimal above bytes (`4.0 GiB`).
fn one_decimal_size(b: u64) -> String {
    const U: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub(super) enum Meta<'a> {
    List,
    Get(&'a str),
    Set(&'a str, &'a str),
    Remove(&'a str),
}

pub(super) fn image_meta(x: &Session, spec: Option<&str>, op: Meta) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    if let Meta::Set(k, v) = op {
        let img = x.open(&sp, true)?;
        img.metadata_set(k, v).ctx("setting metadata failed")?;
        return img.close().ctx("setting metadata failed");
    }
    if let Meta::Remove(k) = op {
        let img = x.open_checked(&sp, |ro| match ro.metadata_get(k) {
            Ok(_) => Ok(()),
            Err(e) => {
                let n = e.kind().errno();
                let first = format!(
                    "rbd: no existing metadata key {k} of image : ({n}) {}",
                    super::output::strerror(n)
                );
                Err(Fail::op("removing metadata failed", e).preceded_by(first))
            }
        })?;
        img.metadata_remove(k).ctx("removing metadata failed")?;
        return img.close().ctx("removing metadata failed");
    }
    let img = x.open(&sp, false)?;
    match op {
        Meta::List => {
            let m = img.metadata_list();
            if x.json {
                // rbd prints nothing at all for an image without metadata.
                if !m.is_empty() {
                    x.emit(&J::M(m.iter().map(|(k, v)| (k.clone(), J::s(v))).collect()));
                }
                return Ok(());
            }
            if m.is_empty() {
                outln!("There are 0 metadata on this image.");
                return Ok(());
            }
            outln!("There are {} metadata on this image:\n", m.len());
            let mut t = Table::new(&[("Key", Align::Left), ("Value", Align::Left)]);
            for (k, v) in &m {
                t.row(vec![k.clone(), v.clone()]);
            }
            outln!("{}", t.render());
        }
        Meta::Get(k) => match img.metadata_get(k) {
            Ok(v) => outln!("{v}"),
            Err(e) => {
                let n = e.kind().errno();
                let first = format!(
                    "failed to get metadata {k} of image : ({n}) {}",
                    super::output::strerror(n)
                );
                return Err(Fail::op("getting metadata failed", e).preceded_by(first));
            }
        },
        Meta::Set(..) | Meta::Remove(_) => {}
    }
    Ok(())
}

pub(super) fn feature(x: &Session, spec: Option<&str>, names: &[String], enable: bool) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    if names.is_empty() {
        return Err(Fail::usage("at least one feature name must be specified"));
    }
    let mut mask = 0;
    for n in names.iter().flat_map(|n| n.split(',')) {
        mask |= features::NAMES
            .iter()
            .find(|(name, _)| *name == n.trim())
            .map(|(_, b)| *b)
            .ok_or_else(|| Fail::bad_arg("the argument for option '--features' is invalid"))?;
    }
    const CTX: &str = "failed to update image features";
    let img = x.open_checked(&sp, |ro| {
        let have = ro.features();
        let already = if enable {
            have & mask != 0
        } else {
            have & mask != mask
        };
        if already {
            return Err(Fail::op(
                CTX,
                err!(
                    Invalid,
                    "one or more requested features are already {}",
                    if enable { "enabled" } else { "disabled" }
                ),
            ));
        }
        Ok(())
    })?;
    img.update_features(mask, enable).ctx(CTX)?;
    img.close().ctx(CTX)
}

pub(super) fn snap_limit(x: &Session, spec: Option<&str>, limit: Option<Option<u64>>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let Some(limit) = limit else {
        return Err(Fail::new("must specify --limit <num>", 34));
    };
    let img = x.open(&sp, true)?;
    img.snap_set_limit(limit)
        .ctx("setting snapshot limit failed")?;
    img.close().ctx("setting snapshot limit failed")
}

/// `cp`: a new image with the source's (or snapshot's) size, order, features and data.
pub(super) fn copy(
    x: &Session,
    src: Option<&str>,
    dst: Option<&str>,
    dest_pool: Option<&str>,
    dest: Option<&str>,
) -> R<()> {
    let sp = x.resolve(src, SnapArg::Optional)?;
    let Some(d) = dst.or(dest) else {
        return Err(Fail::usage("destination image name was not specified"));
    };
    let dp = shale_image::ImageSpec::parse(d, dest_pool.unwrap_or(&x.default_pool))
        .map_err(|e| Fail::usage(e.to_string()))?;
    if dp.snap.is_some() {
        return Err(Fail::usage(
            "destination snapshot name specified for a command that doesn't use it",
        ));
    }
    let s = x.open(&sp, false)?;
    x.check_pool(&dp.pool)?;
    const CTX: &str = "copy failed";
    let i = s.info();
    let supported = features::LAYERING
        | features::EXCLUSIVE_LOCK
        | features::OBJECT_MAP
        | features::FAST_DIFF
        | features::DEEP_FLATTEN;
    x.c.create_image_with(
        &dp.pool,
        &dp.image,
        i.size,
        i.order,
        Some(i.features & supported),
    )
    .ctx(CTX)?;
    let bar = progress::bar("Image copy", i.size);
    let res = (|| -> shale_error::Result<()> {
        let d = x.c.open_image(&dp.pool, &dp.image, false)?;
        const CHUNK: u64 = 4 << 20;
        let mut buf = vec![0u8; CHUNK as usize];
        let mut off = 0;
        while off < i.size {
            let n = CHUNK.min(i.size - off);
            let lba = off / 512;
            for (a, len) in s.allocated_with_parent(lba, (off + n).div_ceil(512) - lba) {
                let start = (a * 512).max(off);
                let end = ((a + len) * 512).min(off + n);
                let b = &mut buf[..(end - start) as usize];
                s.read(start, b)?;
                d.write(start, b)?;
            }
            off += n;
            bar.set_position(off);
        }
        d.close()
    })();
    if let Err(e) = res {
        // Leave no half copy behind.
        let _ = x.c.remove_image(&dp.pool, &dp.image, |_, _| {});
        return Err(Fail::op(CTX, e));
    }
    bar.finish_and_clear();
    Ok(())
}

/// Ceph rbd commands Shale does not provide, and why.
pub(super) fn unsupported(args: &[String]) -> Fail {
    let cmd = args.first().map(String::as_str).unwrap_or("");
    let why = match cmd {
        "map" | "unmap" | "showmapped" | "device" => {
            "the kernel rbd driver cannot reach Shale images; use \
             `shale run -- qemu-nbd --connect=/dev/nbd0 rbd:POOL/IMAGE` instead"
        }
        "trash" => "Shale removes images at once; there is no trash",
        "mirror" | "journal" => "Shale has no rbd-mirror or image journaling",
        "group" | "namespace" | "migration" | "encryption" | "config" | "deep" | "merge-diff"
        | "object-map" | "perf" | "persistent-cache" | "sparsify" | "watch" => {
            "Shale does not implement it"
        }
        _ => {
            return Fail::bad_arg(format!(
                "unknown command '{}'; see `rbd help`",
                args.join(" ")
            ))
        }
    };
    Fail::new(format!("'{cmd}' is not available: {why}"), 95)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pool_stats_size_has_one_decimal() {
        assert_eq!(super::one_decimal_size(4_341_104_640), "4.0 GiB");
        assert_eq!(super::one_decimal_size(17), "17 B");
    }
}
