//! Snapshot, clone and diff commands: `snap …`, `clone`, `flatten`, `children`, `du`, `diff`,
//! `export-diff`, `import-diff`.

use std::io::{BufReader, BufWriter, Read, Write};

use clap::Subcommand;
use serde_json::json;
use shale_error::{err, Error, Result};
use shale_format::rbd_diff::{self, Record};
use shale_image::size::format_size;
use shale_image::{Cluster, Image, ImageSpec};

use crate::progress;

#[derive(Subcommand, Debug)]
pub enum SnapCmd {
    /// Take a snapshot: `shale snap create rbd/vm1@before-upgrade`
    #[command(alias = "add")]
    Create { spec: String },
    /// List the snapshots of an image
    #[command(alias = "list")]
    Ls { spec: String },
    /// Remove a snapshot (it must not be protected)
    #[command(alias = "remove")]
    Rm { spec: String },
    /// Rename a snapshot: `shale snap rename rbd/vm1@a rbd/vm1@b`
    Rename { src: String, dst: String },
    /// Protect a snapshot so that it can be cloned and cannot be removed
    Protect { spec: String },
    /// Unprotect a snapshot (it must have no clones)
    Unprotect { spec: String },
    /// Make the image equal to a snapshot again
    #[command(alias = "revert")]
    Rollback { spec: String },
    /// Remove every unprotected snapshot of an image
    Purge { spec: String },
    /// Limit the number of snapshots (`--limit N`), or clear the limit (no `--limit`)
    Limit {
        spec: String,
        #[arg(long)]
        limit: Option<u64>,
    },
}

fn need_snap(sp: &ImageSpec) -> Result<&str> {
    sp.snap
        .as_deref()
        .ok_or_else(|| err!(Invalid, "{sp}: give the snapshot as pool/image@snap"))
}

fn no_snap(sp: &ImageSpec) -> Result<()> {
    match &sp.snap {
        Some(_) => Err(err!(
            Invalid,
            "{sp}: this command takes an image, not a snapshot"
        )),
        None => Ok(()),
    }
}

pub fn snap(c: &Cluster, dp: &str, cmd: &SnapCmd, json_out: bool) -> Result<()> {
    let parse = |s: &str| ImageSpec::parse(s, dp);
    match cmd {
        SnapCmd::Create { spec } => {
            let sp = parse(spec)?;
            let name = need_snap(&sp)?;
            let img = c.open_image(&sp.pool, &sp.image, false)?;
            let id = img.snap_create(name)?;
            img.close()?;
            if json_out {
                crate::print_json(json!({"snapshot": sp.to_string(), "id": id}));
            }
        }
        SnapCmd::Ls { spec } => {
            let sp = parse(spec)?;
            no_snap(&sp)?;
            let img = c.open_image(&sp.pool, &sp.image, true)?;
            let snaps = img.snap_list()?;
            if json_out {
                crate::print_json(json!(snaps
                    .iter()
                    .map(|s| json!({"id": s.id, "name": s.name, "size": s.size, "protected": s.protected.to_string(), "timestamp": s.created}))
                    .collect::<Vec<_>>()));
            } else if !snaps.is_empty() {
                crate::out(format!(
                    "{:>6}  {:<24} {:>10}  {:<9}",
                    "SNAPID", "NAME", "SIZE", "PROTECTED"
                ));
                for s in snaps {
                    crate::out(format!(
                        "{:>6}  {:<24} {:>10}  {:<9}",
                        s.id,
                        s.name,
                        format_size(s.size),
                        if s.protected { "yes" } else { "" }
                    ));
                }
            }
        }
        SnapCmd::Rm { spec } => {
            let sp = parse(spec)?;
            let name = need_snap(&sp)?;
            c.open_image(&sp.pool, &sp.image, false)?.snap_remove(name).map_err(|e| {
                if e.kind() == shale_error::ErrorKind::Busy {
                    e.context("cannot remove (unprotect it with `shale snap unprotect`, after removing or flattening its clones)")
                } else {
                    e
                }
            })?;
        }
        SnapCmd::Rename { src, dst } => {
            let a = parse(src)?;
            let b = parse(dst)?;
            if (&a.pool, &a.image) != (&b.pool, &b.image) {
                return Err(err!(
                    Invalid,
                    "a snapshot can only be renamed within its image"
                ));
            }
            c.open_image(&a.pool, &a.image, false)?
                .snap_rename(need_snap(&a)?, need_snap(&b)?)?;
        }
        SnapCmd::Protect { spec } => {
            let sp = parse(spec)?;
            c.open_image(&sp.pool, &sp.image, false)?
                .snap_protect(need_snap(&sp)?)?;
        }
        SnapCmd::Unprotect { spec } => {
            let sp = parse(spec)?;
            c.open_image(&sp.pool, &sp.image, false)?
                .snap_unprotect(need_snap(&sp)?)?;
        }
        SnapCmd::Rollback { spec } => {
            let sp = parse(spec)?;
            let name = need_snap(&sp)?;
            let img = c.open_image(&sp.pool, &sp.image, false)?;
            let bar = progress::bar("Rolling back to snapshot", 0);
            img.snap_rollback(name, |d, t| {
                bar.set_length(t);
                bar.set_position(d);
            })?;
            img.close()?;
            bar.finish_and_clear();
        }
        SnapCmd::Purge { spec } => {
            let sp = parse(spec)?;
            no_snap(&sp)?;
            let img = c.open_image(&sp.pool, &sp.image, false)?;
            let snaps = img.snap_list()?;
            let bar = progress::count_bar("Removing all snapshots", snaps.len() as u64);
            let mut kept = 0;
            for s in snaps {
                if s.protected {
                    kept += 1;
                } else {
                    img.snap_remove(&s.name)?;
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            if kept > 0 {
                return Err(err!(
                    Busy,
                    "{kept} protected snapshot(s) were kept; unprotect them first"
                ));
            }
        }
        SnapCmd::Limit { spec, limit } => {
            let sp = parse(spec)?;
            no_snap(&sp)?;
            c.open_image(&sp.pool, &sp.image, false)?
                .snap_set_limit(*limit)?;
        }
    }
    Ok(())
}

/// Open `spec` at its snapshot (read-only) or its head.
pub fn open_spec(c: &Cluster, sp: &ImageSpec, writable: bool) -> Result<Image> {
    match &sp.snap {
        Some(s) => c.open_image_at(&sp.pool, &sp.image, s),
        None => c.open_image(&sp.pool, &sp.image, !writable),
    }
}

pub fn clone(c: &Cluster, dp: &str, parent: &str, child: &str) -> Result<()> {
    let p = ImageSpec::parse(parent, dp)?;
    let ch = ImageSpec::parse(child, dp)?;
    no_snap(&ch)?;
    c.clone_image(&p.pool, &p.image, need_snap(&p)?, &ch.pool, &ch.image, None)?;
    Ok(())
}

pub fn flatten(c: &Cluster, dp: &str, spec: &str) -> Result<()> {
    let sp = ImageSpec::parse(spec, dp)?;
    no_snap(&sp)?;
    let img = c.open_image(&sp.pool, &sp.image, false)?;
    let bar = progress::bar("Image flatten", 0);
    img.flatten(|d, t| {
        bar.set_length(t);
        bar.set_position(d);
    })?;
    img.close()?;
    bar.finish_and_clear();
    Ok(())
}

pub fn children(c: &Cluster, dp: &str, spec: &str, json_out: bool) -> Result<()> {
    let sp = ImageSpec::parse(spec, dp)?;
    let kids = c.list_children(&sp.pool, &sp.image, need_snap(&sp)?)?;
    if json_out {
        crate::print_json(json!(kids
            .iter()
            .map(|(p, i)| json!({"pool": p, "image": i}))
            .collect::<Vec<_>>()));
    } else {
        for (p, i) in kids {
            crate::out(format!("{p}/{i}"));
        }
    }
    Ok(())
}

/// One row of `du`: an image's head (`snap` None) or one of its snapshots.
pub struct DuRow {
    pub image: String,
    pub image_id: String,
    /// Snapshot name and id.
    pub snap: Option<(String, u64)>,
    pub provisioned: u64,
    /// What changed since the previous snapshot, as fast-diff counts it.
    pub used: u64,
}

/// The `du` rows of `images` (pool, name), snapshots first, in creation order, then the head.
pub fn du_rows(c: &Cluster, images: &[(String, String)]) -> Result<Vec<DuRow>> {
    let mut rows = Vec::new();
    for (pool, name) in images {
        let img = c.open_image(pool, name, true)?;
        let mut prev: Option<String> = None;
        for s in img.snap_list()? {
            let view = c.open_image_at(pool, name, &s.name)?;
            let used: u64 = view
                .diff(prev.as_deref(), 0, s.size, false, false)?
                .iter()
                .filter(|r| r.2)
                .map(|r| r.1)
                .sum();
            rows.push(DuRow {
                image: name.clone(),
                image_id: img.id().to_string(),
                snap: Some((s.name.clone(), s.id)),
                provisioned: s.size,
                used,
            });
            prev = Some(s.name);
        }
        let used: u64 = img
            .diff(prev.as_deref(), 0, img.size(), false, false)?
            .iter()
            .filter(|r| r.2)
            .map(|r| r.1)
            .sum();
        rows.push(DuRow {
            image: name.clone(),
            image_id: img.id().to_string(),
            snap: None,
            provisioned: img.size(),
            used,
        });
    }
    Ok(rows)
}

/// Total provisioned (heads only) and used bytes of `rows`.
pub fn du_totals(rows: &[DuRow]) -> (u64, u64) {
    rows.iter().fold((0, 0), |a, r| {
        (
            a.0 + if r.snap.is_some() { 0 } else { r.provisioned },
            a.1 + r.used,
        )
    })
}

/// `du`: provisioned and used bytes per snapshot and head (used = what changed since the
/// previous snapshot, as fast-diff counts it).
pub fn du(c: &Cluster, dp: &str, spec: Option<&str>, json_out: bool) -> Result<()> {
    let images: Vec<(String, String)> = match spec {
        Some(s) => {
            let sp = ImageSpec::parse(s, dp)?;
            no_snap(&sp)?;
            vec![(sp.pool, sp.image)]
        }
        None => c
            .list_images(dp)?
            .into_iter()
            .map(|e| (dp.to_string(), e.name))
            .collect(),
    };
    let du = du_rows(c, &images)?;
    let (tp, tu) = du_totals(&du);
    let rows: Vec<(String, u64, u64)> = du
        .into_iter()
        .map(|r| match r.snap {
            Some((s, _)) => (format!("{}@{s}", r.image), r.provisioned, r.used),
            None => (r.image, r.provisioned, r.used),
        })
        .collect();
    if json_out {
        crate::print_json(json!({
            "images": rows.iter().map(|r| json!({"name": r.0, "provisioned_size": r.1, "used_size": r.2})).collect::<Vec<_>>(),
            "total_provisioned_size": tp, "total_used_size": tu,
        }));
    } else {
        crate::out(format!(
            "{:<40} {:>12} {:>12}",
            "NAME", "PROVISIONED", "USED"
        ));
        for r in &rows {
            crate::out(format!(
                "{:<40} {:>12} {:>12}",
                r.0,
                format_size(r.1),
                format_size(r.2)
            ));
        }
        crate::out(format!(
            "{:<40} {:>12} {:>12}",
            "<TOTAL>",
            format_size(tp),
            format_size(tu)
        ));
    }
    Ok(())
}

pub fn diff(
    c: &Cluster,
    dp: &str,
    spec: &str,
    from: Option<&str>,
    whole_object: bool,
    json_out: bool,
) -> Result<()> {
    let sp = ImageSpec::parse(spec, dp)?;
    let ranges = diff_ranges(c, &sp, from, whole_object)?;
    if json_out {
        crate::print_json(json!(ranges
            .iter()
            .map(|r| json!({"offset": r.0, "length": r.1, "exists": if r.2 { "true" } else { "false" }}))
            .collect::<Vec<_>>()));
    } else {
        crate::out(format!("{:<12} {:<10} Type", "Offset", "Length"));
        for (o, l, e) in ranges {
            crate::out(format!(
                "{o:<12} {l:<10} {}",
                if e { "data" } else { "zero" }
            ));
        }
    }
    Ok(())
}

/// The changed extents (offset, length, has data) of `sp` (head or snapshot) since `from`
/// (or since creation, when only extents with data are listed).
pub fn diff_ranges(
    c: &Cluster,
    sp: &ImageSpec,
    from: Option<&str>,
    whole_object: bool,
) -> Result<Vec<(u64, u64, bool)>> {
    let img = open_spec(c, sp, false)?;
    img.diff(from, 0, img.size(), from.is_none(), whole_object)
}

/// `export-diff`: the changes since `from` (or everything) as an "rbd diff v1" stream.
pub fn export_diff(
    c: &Cluster,
    dp: &str,
    spec: &str,
    from: Option<&str>,
    whole_object: bool,
    path: &str,
) -> Result<u64> {
    let sp = ImageSpec::parse(spec, dp)?;
    let img = open_spec(c, &sp, false)?;
    let size = img.size();
    let ranges = img.diff(from, 0, size, from.is_none(), whole_object)?;
    let total: u64 = ranges.iter().map(|r| r.1).sum();
    let out: Box<dyn Write> = if path == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        if std::path::Path::new(path).exists() {
            return Err(err!(
                Exists,
                "{path} already exists; remove it first or choose another path"
            ));
        }
        Box::new(
            std::fs::File::create(path)
                .map_err(|e| Error::io(format!("cannot create {path}"), e))?,
        )
    };
    let mut w = BufWriter::new(out);
    rbd_diff::write_header(&mut w)?;
    if let Some(f) = from {
        rbd_diff::write_record(&mut w, &Record::FromSnap(f.to_string()))?;
    }
    if let Some(t) = &sp.snap {
        rbd_diff::write_record(&mut w, &Record::ToSnap(t.clone()))?;
    }
    rbd_diff::write_record(&mut w, &Record::Size(size))?;
    let bar = progress::bar("Exporting image", total);
    let mut done = 0;
    for (off, len, exists) in ranges {
        if !exists {
            rbd_diff::write_record(
                &mut w,
                &Record::Zero {
                    offset: off,
                    length: len,
                },
            )?;
        } else {
            let mut at = off;
            while at < off + len {
                let n = (off + len - at).min(4 << 20) as usize;
                let mut data = vec![0u8; n];
                img.read(at, &mut data)?;
                rbd_diff::write_record(&mut w, &Record::Write { offset: at, data })?;
                at += n as u64;
            }
        }
        done += len;
        bar.set_position(done);
    }
    rbd_diff::write_record(&mut w, &Record::End)?;
    w.flush().map_err(|e| Error::io("writing the diff", e))?;
    bar.finish_and_clear();
    Ok(total)
}

/// `import-diff`: apply an "rbd diff v1" stream to an existing image; a stream that starts at
/// a snapshot needs that snapshot to exist; its end snapshot is created.
pub fn import_diff(c: &Cluster, dp: &str, path: &str, spec: &str) -> Result<u64> {
    let sp = ImageSpec::parse(spec, dp)?;
    no_snap(&sp)?;
    let input: Box<dyn Read> = if path == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(path).map_err(|e| Error::io(format!("cannot open {path}"), e))?,
        )
    };
    let mut r = rbd_diff::Reader::new(BufReader::with_capacity(1 << 20, input))?;
    let img = c.open_image(&sp.pool, &sp.image, false)?;
    let snaps = img.snap_list()?;
    let mut to = None;
    let mut applied = 0u64;
    let bar = progress::bar("Importing image diff", 0);
    while let Some(rec) = r.next_record()? {
        match rec {
            Record::FromSnap(f) => {
                if !snaps.iter().any(|s| s.name == f) {
                    return Err(err!(
                        NotFound,
                        "start snapshot {f:?} of the diff does not exist in {sp}"
                    ));
                }
            }
            Record::ToSnap(t) => {
                if snaps.iter().any(|s| s.name == t) {
                    return Err(err!(
                        Exists,
                        "end snapshot {t:?} of the diff already exists in {sp}"
                    ));
                }
                to = Some(t);
            }
            Record::Size(n) => {
                if n != img.size() {
                    img.resize(n, true)?;
                }
                bar.set_length(n);
            }
            Record::Write { offset, data } => {
                img.write(offset, &data)?;
                applied += data.len() as u64;
                bar.set_position(offset + data.len() as u64);
            }
            Record::Zero { offset, length } => {
                let end = offset.saturating_add(length).min(img.size());
                if end > offset {
                    img.discard(offset, end - offset)?;
                }
            }
            Record::End => {}
        }
    }
    img.flush()?;
    if let Some(t) = to {
        img.snap_create(&t)?;
    }
    img.close()?;
    bar.finish_and_clear();
    Ok(applied)
}
