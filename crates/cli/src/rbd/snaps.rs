//! Snapshot, clone, diff and lock commands in rbd syntax: `snap …`, clone, flatten, children,
//! du, diff, export-diff, import-diff, `lock …`.

use shale_error::{err, Error};
use shale_image::size::format_size;
use shale_image::{Image, ImageSpec, SnapInfo};

use super::output::{ctime, Align, Table, J};
use super::{CreateOpts, Ctx, Fail, Session, SnapArg, R};
use crate::progress;

fn snap_name(sp: &ImageSpec) -> &str {
    sp.snap.as_deref().unwrap_or_default()
}

/// The snapshot `name` of `img`, or rbd's `<ctx>: (2) No such file or directory`.
fn find_snap(img: &Image, name: &str, ctx: &str) -> R<SnapInfo> {
    img.snap_list()
        .ctx(ctx)?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            Fail::op(
                ctx,
                err!(NotFound, "snapshot {}@{name} does not exist", img.name()),
            )
        })
}

pub(super) fn create(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Required)?;
    let name = snap_name(&sp);
    const CTX: &str = "failed to create snapshot";
    let img = x.open_checked(&sp, |ro| {
        if find_snap(ro, name, CTX).is_ok() {
            return Err(Fail::op(
                CTX,
                err!(Exists, "snapshot {}@{name} already exists", sp.image),
            ));
        }
        Ok(())
    })?;
    let bar = progress::bar("Creating snap", 1);
    img.snap_create(name).ctx(CTX)?;
    img.close().ctx(CTX)?;
    bar.finish_and_clear();
    Ok(())
}

pub(super) fn ls(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let img = x.open(&sp, false)?;
    let snaps = img.snap_list().ctx("failed to list snapshots")?;
    if x.json {
        x.emit(&J::A(
            snaps
                .iter()
                .map(|s| {
                    J::O(vec![
                        ("id", J::U(s.id)),
                        ("name", J::s(&s.name)),
                        ("size", J::U(s.size)),
                        ("protected", J::tf(s.protected)),
                        ("timestamp", J::s(ctime(s.created))),
                    ])
                })
                .collect(),
        ));
    } else if !snaps.is_empty() {
        let mut t = Table::new(&[
            ("SNAPID", Align::Right),
            ("NAME", Align::Left),
            ("SIZE", Align::Right),
            ("PROTECTED", Align::Left),
            ("TIMESTAMP", Align::Left),
        ]);
        for s in &snaps {
            t.row(vec![
                s.id.to_string(),
                s.name.clone(),
                format_size(s.size),
                if s.protected {
                    "yes".into()
                } else {
                    String::new()
                },
                ctime(s.created),
            ]);
        }
        outln!("{}", t.render());
    }
    Ok(())
}

pub(super) fn rm(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Required)?;
    let name = snap_name(&sp);
    const CTX: &str = "failed to remove snapshot";
    let img = x.open_checked(&sp, |ro| {
        if find_snap(ro, name, CTX)?.protected {
            return Err(Fail::new(
                format!("snapshot '{name}' is protected from removal."),
                16,
            ));
        }
        Ok(())
    })?;
    let bar = progress::bar("Removing snap", 1);
    img.snap_remove(name).ctx(CTX)?;
    img.close().ctx(CTX)?;
    bar.finish_and_clear();
    Ok(())
}

pub(super) fn rollback(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Required)?;
    const CTX: &str = "rollback failed";
    let img = x.open_checked(&sp, |ro| find_snap(ro, snap_name(&sp), CTX).map(|_| ()))?;
    let bar = progress::bar("Rolling back to snapshot", 0);
    img.snap_rollback(snap_name(&sp), |d, t| {
        bar.set_length(t);
        bar.set_position(d);
    })
    .ctx(CTX)?;
    img.close().ctx(CTX)?;
    bar.finish_and_clear();
    Ok(())
}

pub(super) fn protect(x: &Session, spec: Option<&str>, on: bool) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Required)?;
    let name = snap_name(&sp);
    let ctx = if on {
        "protecting snap failed"
    } else {
        "unprotecting snap failed"
    };
    let img = x.open_checked(&sp, |ro| {
        // rbd checks the state first and words these two cases itself.
        let s = find_snap(ro, name, ctx)?;
        match (on, s.protected) {
            (true, true) => Err(Fail::new("snap is already protected", 16)),
            (false, false) => Err(Fail::new("snap is already unprotected", 22)),
            (false, true) if !s.children.is_empty() => Err(Fail::op(
                ctx,
                err!(
                    Busy,
                    "snapshot {name} has {} clone(s); flatten or remove them first",
                    s.children.len()
                ),
            )),
            _ => Ok(()),
        }
    })?;
    if on {
        img.snap_protect(name).ctx(ctx)?;
    } else {
        img.snap_unprotect(name).ctx(ctx)?;
    }
    img.close().ctx(ctx)
}

pub(super) fn purge(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let img = x.open(&sp, true)?;
    let snaps = img.snap_list().ctx("removing snaps failed")?;
    let bar = progress::count_bar("Removing all snapshots", snaps.len() as u64);
    let mut protected = Vec::new();
    for s in &snaps {
        if s.protected {
            protected.push(s.name.as_str());
        } else {
            img.snap_remove(&s.name).ctx("removing snaps failed")?;
            bar.inc(1);
        }
    }
    img.close().ctx("removing snaps failed")?;
    if protected.is_empty() {
        bar.finish_and_clear();
    } else {
        // As rbd 16.2: the others are removed, the progress line ends in "failed.", the
        // message goes to stdout and the exit status is 0.
        drop(bar);
        outln!(
            "rbd: error removing snapshot(s) '{}', which are protected - these must be \
             unprotected with `rbd snap unprotect`.",
            protected.join(", ")
        );
    }
    Ok(())
}

pub(super) fn rename(x: &Session, src: Option<&str>, dst: Option<&str>) -> R<()> {
    let a = x.resolve(src, SnapArg::Required)?;
    let Some(d) = dst else {
        return Err(Fail::usage("destination snapshot name was not specified"));
    };
    let b = ImageSpec::parse(d, &a.pool).map_err(|e| Fail::usage(e.to_string()))?;
    if b.snap.is_none() {
        return Err(Fail::usage("destination snapshot name was not specified"));
    }
    if (&a.pool, &a.image) != (&b.pool, &b.image) {
        return Err(Fail::usage(
            "source and destination image name must be the same",
        ));
    }
    const CTX: &str = "renaming snap failed";
    let img = x.open_checked(&a, |ro| {
        find_snap(ro, snap_name(&a), CTX)?;
        if find_snap(ro, snap_name(&b), CTX).is_ok() {
            return Err(Fail::op(CTX, err!(Exists, "snapshot {b} already exists")));
        }
        Ok(())
    })?;
    img.snap_rename(snap_name(&a), snap_name(&b)).ctx(CTX)?;
    img.close().ctx(CTX)
}

pub(super) fn clone(
    x: &Session,
    parent: Option<&str>,
    child: Option<&str>,
    dest_pool: Option<&str>,
    dest: Option<&str>,
    o: &CreateOpts,
) -> R<()> {
    let p = x.resolve(parent, SnapArg::Required)?;
    let Some(c) = child.or(dest) else {
        return Err(Fail::usage("destination image name was not specified"));
    };
    let ch = ImageSpec::parse(c, dest_pool.unwrap_or(&p.pool))
        .map_err(|e| Fail::usage(e.to_string()))?;
    if ch.snap.is_some() {
        return Err(Fail::usage(
            "destination snapshot name specified for a command that doesn't use it",
        ));
    }
    let (order, feats) = super::images::create_opts(o)?;
    if feats.is_some() {
        eprintln!("rbd: warning: a Shale clone has its parent's features; --image-feature ignored");
    }
    let explicit_order = (o.order.is_some() || o.object_size.is_some()).then_some(order);
    x.check_pool(&p.pool)?;
    x.check_pool(&ch.pool)?;
    x.c.clone_image(
        &p.pool,
        &p.image,
        snap_name(&p),
        &ch.pool,
        &ch.image,
        explicit_order,
    )
    .ctx("clone error")?;
    Ok(())
}

pub(super) fn flatten(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let bar = progress::bar("Image flatten", 0);
    let img = x.open_checked(&sp, |ro| match ro.parent() {
        Some(_) => Ok(()),
        None => Err(Fail::op(
            "flatten error",
            err!(Invalid, "image {} has no parent", sp.image),
        )),
    })?;
    img.flatten(|d, t| {
        bar.set_length(t);
        bar.set_position(d);
    })
    .ctx("flatten error")?;
    img.close().ctx("flatten error")?;
    bar.finish_and_clear();
    Ok(())
}

pub(super) fn children(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Optional)?;
    let img = x.open(
        &ImageSpec {
            snap: None,
            ..sp.clone()
        },
        false,
    )?;
    let snaps: Vec<String> = match &sp.snap {
        Some(s) => vec![s.clone()],
        None => img
            .snap_list()
            .ctx("listing children failed")?
            .into_iter()
            .map(|s| s.name)
            .collect(),
    };
    if let Some(s) = &sp.snap {
        if !img
            .snap_list()
            .ctx("listing children failed")?
            .iter()
            .any(|x| &x.name == s)
        {
            return Err(Fail::new("snapshot does not exist.", 2));
        }
    }
    let mut kids = Vec::new();
    for s in snaps {
        kids.extend(
            x.c.list_children(&sp.pool, &sp.image, &s)
                .ctx("listing children failed")?,
        );
    }
    kids.sort();
    kids.dedup();
    if x.json {
        x.emit(&J::A(
            kids.iter()
                .map(|(p, i)| {
                    J::O(vec![
                        ("pool", J::s(p)),
                        ("pool_namespace", J::s("")),
                        ("image", J::s(i)),
                    ])
                })
                .collect(),
        ));
    } else {
        for (p, i) in kids {
            outln!("{p}/{i}");
        }
    }
    Ok(())
}

pub(super) fn du(x: &Session, spec: Option<&str>) -> R<()> {
    let (images, only_snap, whole_pool) = match spec.or(x.image.as_deref()) {
        Some(_) => {
            let sp = x.resolve(spec, SnapArg::Optional)?;
            x.check_pool(&sp.pool)?;
            let img = x.c.open_image(&sp.pool, &sp.image, true).map_err(|e| {
                Fail::op("du failed", e)
                    .preceded_by(format!("specified image {} is not found.", sp.image))
            })?;
            if let Some(s) = &sp.snap {
                let snaps = img.snap_list().ctx("du failed")?;
                if !snaps.iter().any(|x| &x.name == s) {
                    return Err(Fail::new("du failed: (2) No such file or directory", 2)
                        .preceded_by("specified snapshot is not found."));
                }
            }
            (vec![(sp.pool.clone(), sp.image.clone())], sp.snap, false)
        }
        None => {
            let pool = x.pool_or_default(None);
            x.check_pool(&pool)?;
            let list = x.c.list_images(&pool).ctx("du failed")?;
            (
                list.into_iter().map(|e| (pool.clone(), e.name)).collect(),
                None,
                true,
            )
        }
    };
    let mut rows = crate::snap::du_rows(&x.c, &images).ctx("du failed")?;
    if let Some(s) = &only_snap {
        rows.retain(|r| r.snap.as_ref().is_some_and(|(n, _)| n == s));
    }
    let (tp, tu) = crate::snap::du_totals(&rows);
    if x.json {
        let mut o = vec![(
            "images",
            J::A(
                rows.iter()
                    .map(|r| {
                        let mut e = vec![("name", J::s(&r.image)), ("id", J::s(&r.image_id))];
                        if let Some((s, id)) = &r.snap {
                            e.push(("snapshot", J::s(s)));
                            e.push(("snapshot_id", J::U(*id)));
                        }
                        e.push(("provisioned_size", J::U(r.provisioned)));
                        e.push(("used_size", J::U(r.used)));
                        J::O(e)
                    })
                    .collect(),
            ),
        )];
        if whole_pool {
            o.push(("total_provisioned_size", J::U(tp)));
            o.push(("total_used_size", J::U(tu)));
        }
        x.emit(&J::O(o));
        return Ok(());
    }
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("PROVISIONED", Align::Right),
        ("USED", Align::Right),
    ]);
    for r in &rows {
        let name = match &r.snap {
            Some((s, _)) => format!("{}@{s}", r.image),
            None => r.image.clone(),
        };
        t.row(vec![name, format_size(r.provisioned), format_size(r.used)]);
    }
    if rows.len() > 1 {
        t.row(vec!["<TOTAL>".into(), format_size(tp), format_size(tu)]);
    }
    outln!("{}", t.render());
    Ok(())
}

pub(super) fn diff(
    x: &Session,
    spec: Option<&str>,
    from: Option<&str>,
    whole_object: bool,
) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Optional)?;
    drop(x.open(&sp, false)?);
    let ranges = crate::snap::diff_ranges(&x.c, &sp, from, whole_object).ctx("diff error")?;
    if x.json {
        x.emit(&J::A(
            ranges
                .iter()
                .map(|r| {
                    J::O(vec![
                        ("offset", J::U(r.0)),
                        ("length", J::U(r.1)),
                        ("exists", J::tf(r.2)),
                    ])
                })
                .collect(),
        ));
    } else {
        let mut t = Table::new(&[
            ("Offset", Align::Left),
            ("Length", Align::Left),
            ("Type", Align::Left),
        ]);
        for (o, l, e) in ranges {
            t.row(vec![
                o.to_string(),
                l.to_string(),
                if e { "data" } else { "zero" }.into(),
            ]);
        }
        outln!("{}", t.render());
    }
    Ok(())
}

pub(super) fn export_diff(
    x: &Session,
    spec: Option<&str>,
    path: Option<&str>,
    from: Option<&str>,
    whole_object: bool,
) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Optional)?;
    let Some(path) = path else {
        return Err(Fail::usage("path was not specified"));
    };
    drop(x.open(&sp, false)?);
    crate::snap::export_diff(
        &x.c,
        &x.default_pool,
        &sp.to_string(),
        from,
        whole_object,
        path,
    )
    .ctx("export-diff error")?;
    Ok(())
}

pub(super) fn import_diff(x: &Session, path: Option<&str>, spec: Option<&str>) -> R<()> {
    let Some(path) = path else {
        return Err(Fail::usage("path was not specified"));
    };
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    drop(x.open(&sp, false)?);
    if path != "-" {
        use std::io::Read;
        let mut banner = [0u8; 12];
        let mut f = std::fs::File::open(path).map_err(|e| {
            Fail::op("import-diff failed", Error::io(path, e))
                .preceded_by(format!("rbd: error opening {path}"))
        })?;
        let n = f.read(&mut banner).unwrap_or(0);
        if banner[..n] != shale_format::rbd_diff::HEADER[..] {
            return Err(Fail::new("import-diff failed: (74) Bad message", 74)
                .preceded_by("rbd: failed to decode diff banner"));
        }
    }
    crate::snap::import_diff(&x.c, &x.default_pool, path, &sp.to_string())
        .ctx("import-diff failed")?;
    Ok(())
}

pub(super) fn lock_ls(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let img = x.open(&sp, false)?;
    let lockers = img.advisory_lockers().ctx("listing locks failed")?;
    if x.json {
        x.emit(&J::A(
            lockers
                .iter()
                .map(|l| {
                    J::O(vec![
                        ("id", J::s(&l.cookie)),
                        ("locker", J::s(&l.client)),
                        ("address", J::s(&l.address)),
                    ])
                })
                .collect(),
        ));
        return Ok(());
    }
    if let Some(first) = lockers.first() {
        let n = lockers.len();
        outln!(
            "There {} {n} {} lock{} on this image.",
            if n == 1 { "is" } else { "are" },
            if first.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            if n == 1 { "" } else { "s" }
        );
        if !first.exclusive {
            outln!("Lock tag: {}", first.tag);
        }
        let mut t = Table::new(&[
            ("Locker", Align::Left),
            ("ID", Align::Left),
            ("Address", Align::Left),
        ]);
        for l in &lockers {
            t.row(vec![l.client.clone(), l.cookie.clone(), l.address.clone()]);
        }
        outln!("{}", t.render());
    }
    Ok(())
}

pub(super) fn lock_add(
    x: &Session,
    spec: Option<&str>,
    id: Option<&str>,
    shared: Option<&str>,
) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let Some(id) = id else {
        return Err(Fail::usage("lock id was not specified"));
    };
    let img = x.open(&sp, false)?;
    img.advisory_lock(id, shared).map_err(|e| {
        use shale_error::ErrorKind as K;
        if matches!(e.kind(), K::Busy | K::Exists) {
            let mut f = Fail::new("lock is already held by someone else", e.kind().errno());
            f.detail = Some(e.to_string());
            f
        } else {
            Fail::op("locking failed", e)
        }
    })
}

pub(super) fn lock_rm(
    x: &Session,
    spec: Option<&str>,
    id: Option<&str>,
    locker: Option<&str>,
) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let Some(id) = id else {
        return Err(Fail::usage("lock id was not specified"));
    };
    let Some(locker) = locker else {
        return Err(Fail::usage("locker was not specified"));
    };
    let img = x.open(&sp, false)?;
    img.advisory_break(locker, id).ctx("releasing lock failed")
}
