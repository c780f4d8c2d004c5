//! Image commands in rbd syntax: create, ls, info, rm, rename, resize, export, import, status,
//! bench.

use shale_image::features;
use shale_image::size::{format_size, parse_size};
use shale_image::ImageSpec;

use super::output::{ctime, Align, Table, J};
use super::{BenchOpts, CreateOpts, Ctx, Fail, Session, SnapArg, R};
use crate::progress;

/// Order and feature mask (None: defaults) from `--order/--object-size/--image-feature/...`,
/// all checked before anything is created.
pub(super) fn create_opts(o: &CreateOpts) -> R<(u8, Option<u64>)> {
    if let Some(f) = o.image_format {
        if f != 2 {
            return Err(Fail::usage(format!(
                "image format {f} is not supported; Shale images are format 2"
            )));
        }
    }
    if o.data_pool.is_some() {
        return Err(Fail::new(
            "--data-pool is not supported: Shale keeps an image's data in its own pool",
            95,
        ));
    }
    let mut order = o.order;
    if let Some(os) = &o.object_size {
        let b = parse_size(os, 1)
            .map_err(|_| Fail::bad_arg("the argument for option '--object-size' is invalid"))?;
        if !b.is_power_of_two() || !(4096..=(32 << 20)).contains(&b) {
            return Err(Fail::usage(
                "object size must be a power of two between 4K and 32M",
            ));
        }
        let from_size = b.trailing_zeros() as u8;
        if order.is_some_and(|x| x != from_size) {
            return Err(Fail::usage("--order and --object-size disagree"));
        }
        order = Some(from_size);
    }
    let order = order.unwrap_or(22);
    if !(12..=25).contains(&order) {
        return Err(Fail::bad_arg(
            "the argument for option '--order' is invalid",
        ));
    }
    let obj = 1u64 << order;
    let unit = match &o.stripe_unit {
        Some(u) => parse_size(u, 1)
            .map_err(|_| Fail::bad_arg("the argument for option '--stripe-unit' is invalid"))?,
        None => obj,
    };
    let count = o.stripe_count.unwrap_or(1);
    if unit == 0 || !obj.is_multiple_of(unit) {
        return Err(Fail::usage(
            "stripe unit is not a factor of the object size",
        ));
    }
    if count == 0 {
        return Err(Fail::usage("stripe count must be at least 1"));
    }
    if unit != obj || count != 1 {
        eprintln!(
            "rbd: warning: Shale does not stripe (its data layout is its own log); \
             --stripe-unit {unit} --stripe-count {count} are accepted and have no effect"
        );
    }
    let feats = if o.image_feature.is_empty() {
        None
    } else {
        let mut mask = 0u64;
        for name in o.image_feature.iter().map(|n| n.trim()) {
            let bit = match name.parse::<u64>() {
                Ok(n) => n,
                Err(_) => features::NAMES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| {
                        Fail::bad_arg("the argument for option '--image-feature' is invalid")
                    })?,
            };
            mask |= bit;
        }
        let unsupported = mask
            & !(features::LAYERING
                | features::EXCLUSIVE_LOCK
                | features::OBJECT_MAP
                | features::FAST_DIFF
                | features::DEEP_FLATTEN);
        if unsupported != 0 {
            return Err(Fail::new(
                format!(
                    "image feature(s) {} not supported by Shale",
                    features::names(unsupported).join(", ")
                ),
                95,
            ));
        }
        Some(mask)
    };
    Ok((order, feats))
}

/// Feature names in the order the rbd command prints them: by bit value.
fn features_by_bit(f: u64) -> Vec<&'static str> {
    let mut v: Vec<(&str, u64)> = features::NAMES
        .iter()
        .copied()
        .filter(|(_, b)| f & b != 0)
        .collect();
    v.sort_by_key(|(_, b)| *b);
    v.into_iter().map(|(n, _)| n).collect()
}

pub(super) fn create(
    x: &Session,
    spec: Option<&str>,
    size: Option<String>,
    o: &CreateOpts,
) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let Some(size) = size else {
        return Err(Fail::usage("must specify --size <M/G/T>"));
    };
    let bytes = parse_size(&size, 1 << 20)
        .map_err(|_| Fail::bad_arg("the argument for option '--size' is invalid"))?;
    let (order, feats) = create_opts(o)?;
    x.c.create_image_with(&sp.pool, &sp.image, bytes, order, feats)
        .ctx("create error")?;
    Ok(())
}

pub(super) fn ls(x: &Session, pool_spec: Option<&str>, long: bool) -> R<()> {
    let pool = x.pool_or_default(pool_spec);
    if let Err(e) = x.c.pool_id(&pool) {
        let n = e.kind().errno();
        let first = format!(
            "rbd: error opening pool '{pool}': ({n}) {}",
            super::output::strerror(n)
        );
        return Err(Fail::op("listing images failed", e).preceded_by(first));
    }
    let imgs = x.c.list_images(&pool).ctx("listing images failed")?;
    if !long {
        if x.json {
            x.emit(&J::strs(imgs.iter().map(|i| i.name.clone())));
        } else {
            for i in imgs {
                outln!("{}", i.name);
            }
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("SIZE", Align::Right),
        ("PARENT", Align::Left),
        ("FMT", Align::Right),
        ("PROT", Align::Left),
        ("LOCK", Align::Left),
    ]);
    for e in &imgs {
        let img = match x.c.open_image_by_id(&pool, &e.id, true) {
            Ok(i) => i,
            Err(err) => {
                // As rbd: report the image that cannot be opened and go on with the others.
                let f = Fail::op(format_args!("error opening {}", e.name), err);
                for l in &f.lines {
                    eprintln!("{l}");
                }
                continue;
            }
        };
        let parent = img.parent();
        let parent_j = parent.as_ref().map(|p| {
            J::O(vec![
                ("pool", J::s(&p.pool)),
                ("pool_namespace", J::s("")),
                ("image", J::s(&p.image_name)),
                ("snapshot", J::s(&p.snap_name)),
            ])
        });
        let parent_txt = parent
            .as_ref()
            .map(|p| format!("{}/{}@{}", p.pool, p.image_name, p.snap_name))
            .unwrap_or_default();
        let lockers = img.advisory_lockers().unwrap_or_default();
        let lock = lockers.first().map(|l| l.exclusive);
        let mut o = vec![
            ("image", J::s(&e.name)),
            ("id", J::s(&e.id)),
            ("size", J::U(img.size())),
        ];
        if let Some(p) = &parent_j {
            o.push(("parent", p.clone()));
        }
        o.push(("format", J::U(2)));
        if let Some(excl) = lock {
            o.push(("lock_type", J::s(if excl { "exclusive" } else { "shared" })));
        }
        rows.push(J::O(o));
        table.row(vec![
            e.name.clone(),
            format_size(img.size()),
            parent_txt.clone(),
            "2".into(),
            String::new(),
            match lock {
                Some(true) => "excl".into(),
                Some(false) => "shr".into(),
                None => String::new(),
            },
        ]);
        for s in img.snap_list().unwrap_or_default() {
            let mut o = vec![
                ("image", J::s(&e.name)),
                ("id", J::s(&e.id)),
                ("snapshot", J::s(&s.name)),
                ("snapshot_id", J::U(s.id)),
                ("size", J::U(s.size)),
            ];
            if let Some(p) = &parent_j {
                o.push(("parent", p.clone()));
            }
            o.push(("format", J::U(2)));
            o.push(("protected", J::tf(s.protected)));
            rows.push(J::O(o));
            table.row(vec![
                format!("{}@{}", e.name, s.name),
                format_size(s.size),
                parent_txt.clone(),
                "2".into(),
                if s.protected {
                    "yes".into()
                } else {
                    String::new()
                },
                String::new(),
            ]);
        }
    }
    if x.json {
        x.emit(&J::A(rows));
    } else if !rows.is_empty() {
        outln!("{}", table.render());
    }
    Ok(())
}

pub(super) fn info(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Optional)?;
    let img = x.open(&sp, false)?;
    let i = img.info();
    let snaps =
        x.c.open_image(&sp.pool, &sp.image, true)
            .and_then(|h| h.snap_list())
            .ctx("error listing snapshots")?;
    let this_snap = sp
        .snap
        .as_ref()
        .and_then(|n| snaps.iter().find(|s| &s.name == n));
    let created = ctime(this_snap.map(|s| s.created).unwrap_or(i.created));
    let feats = features_by_bit(i.features);
    let parent = img.parent();
    if x.json {
        let mut o = vec![
            ("name", J::s(&i.name)),
            ("id", J::s(&i.id)),
            ("size", J::U(i.size)),
            ("objects", J::U(i.num_objs)),
            ("order", J::U(i.order.into())),
            ("object_size", J::U(i.object_size)),
            ("snapshot_count", J::U(snaps.len() as u64)),
            ("block_name_prefix", J::s(&i.block_name_prefix)),
            ("format", J::U(2)),
            ("features", J::strs(feats.iter().copied())),
            ("op_features", J::A(vec![])),
            ("flags", J::A(vec![])),
            ("create_timestamp", J::s(&created)),
            ("access_timestamp", J::s(&created)),
            ("modify_timestamp", J::s(&created)),
        ];
        if let Some(s) = this_snap {
            o.push(("protected", J::tf(s.protected)));
        }
        if let Some(p) = &parent {
            o.push((
                "parent",
                J::O(vec![
                    ("pool", J::s(&p.pool)),
                    ("pool_namespace", J::s("")),
                    ("image", J::s(&p.image_name)),
                    ("id", J::s(&p.image_id)),
                    ("snapshot", J::s(&p.snap_name)),
                    ("trash", J::Bool(false)),
                    ("overlap", J::U(p.overlap)),
                ]),
            ));
        }
        x.emit(&J::O(o));
        return Ok(());
    }
    outln!("rbd image '{}':", i.name);
    outln!("\tsize {} in {} objects", format_size(i.size), i.num_objs);
    outln!(
        "\torder {} ({} objects)",
        i.order,
        format_size(i.object_size)
    );
    outln!("\tsnapshot_count: {}", snaps.len());
    outln!("\tid: {}", i.id);
    outln!("\tblock_name_prefix: {}", i.block_name_prefix);
    outln!("\tformat: 2");
    outln!("\tfeatures: {}", feats.join(", "));
    outln!("\top_features: ");
    outln!("\tflags: ");
    outln!("\tcreate_timestamp: {created}");
    outln!("\taccess_timestamp: {created}");
    outln!("\tmodify_timestamp: {created}");
    if let Some(s) = this_snap {
        outln!(
            "\tprotected: {}",
            if s.protected { "True" } else { "False" }
        );
    }
    if let Some(p) = &parent {
        outln!("\tparent: {}/{}@{}", p.pool, p.image_name, p.snap_name);
        outln!("\toverlap: {}", format_size(p.overlap));
    }
    Ok(())
}

pub(super) fn rm(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    x.check_pool(&sp.pool)?;
    // rbd's own wording for the common refusal, before anything is touched.
    if let Ok(img) = x.c.open_image(&sp.pool, &sp.image, true) {
        if !img.snap_list().unwrap_or_default().is_empty() {
            return Err(Fail::new(
                "image has snapshots - these must be deleted with 'rbd snap purge' \
                       before the image can be removed.",
                39,
            ));
        }
    }
    let bar = progress::count_bar("Removing image", 0);
    x.c.remove_image(&sp.pool, &sp.image, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .ctx("delete error")?;
    bar.finish_and_clear();
    Ok(())
}

pub(super) fn rename(
    x: &Session,
    src: Option<&str>,
    dst: Option<&str>,
    dest_pool: Option<&str>,
    dest: Option<&str>,
) -> R<()> {
    let a = x.resolve(src, SnapArg::Forbidden)?;
    let b = match (dst, dest) {
        (Some(d), _) | (None, Some(d)) => ImageSpec::parse(d, dest_pool.unwrap_or(&a.pool))
            .map_err(|e| Fail::usage(e.to_string()))?,
        (None, None) => return Err(Fail::usage("destination image name was not specified")),
    };
    if b.snap.is_some() {
        return Err(Fail::usage(
            "snapshot name specified for a command that doesn't use it",
        ));
    }
    if b.pool != a.pool {
        return Err(Fail::usage(format!(
            "mv/rename across pools not supported\nsource pool: {} dest pool: {}",
            a.pool, b.pool
        )));
    }
    x.check_pool(&a.pool)?;
    x.c.rename_image(&a.pool, &a.image, &b.image)
        .ctx("rename error")
}

pub(super) fn resize(
    x: &Session,
    spec: Option<&str>,
    size: Option<&str>,
    allow_shrink: bool,
) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let Some(size) = size else {
        return Err(Fail::usage("must specify --size <M/G/T>"));
    };
    let bytes = parse_size(size, 1 << 20)
        .map_err(|_| Fail::bad_arg("the argument for option '--size' is invalid"))?;
    let img = x.open_checked(&sp, |ro| {
        if bytes < ro.size() && !allow_shrink {
            return Err(Fail::usage(
                "shrinking an image is only allowed with the --allow-shrink flag",
            ));
        }
        Ok(())
    })?;
    let bar = progress::bar("Resizing image", 1);
    img.resize(bytes, allow_shrink).ctx("resize error")?;
    img.close().ctx("resize error")?;
    bar.finish_and_clear();
    Ok(())
}

pub(super) fn export(
    x: &Session,
    spec: Option<&str>,
    path: Option<&str>,
    export_format: Option<u8>,
) -> R<()> {
    if export_format.is_some_and(|f| f != 1) {
        return Err(Fail::new(
            "--export-format 2 is not supported; use the default (raw) format",
            95,
        ));
    }
    let sp = x.resolve(spec, SnapArg::Optional)?;
    let path = path.map(str::to_string).unwrap_or_else(|| sp.image.clone());
    // Report a missing image as rbd does, before touching the destination.
    drop(x.open(&sp, false)?);
    if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err(Fail::op(
            "export error",
            shale_error::err!(
                Exists,
                "{path} already exists; remove it first or choose another path"
            ),
        ));
    }
    crate::copy::export(&x.c, &sp, &path).ctx("export error")?;
    Ok(())
}

pub(super) fn import(
    x: &Session,
    path: Option<&str>,
    spec: Option<&str>,
    dest_pool: Option<&str>,
    dest: Option<&str>,
    export_format: Option<u8>,
    o: &CreateOpts,
) -> R<()> {
    if export_format.is_some_and(|f| f != 1) {
        return Err(Fail::new(
            "--export-format 2 is not supported; import raw images",
            95,
        ));
    }
    let Some(path) = path else {
        return Err(Fail::usage("path was not specified"));
    };
    let name = spec
        .or(dest)
        .or(x.image.as_deref())
        .map(str::to_string)
        .or_else(|| {
            (path != "-")
                .then(|| std::path::Path::new(path).file_name())
                .flatten()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .ok_or_else(|| Fail::usage("destination image name was not specified"))?;
    let sp = x.resolve_with(Some(&name), dest_pool, None, SnapArg::Forbidden)?;
    let (order, feats) = create_opts(o)?;
    x.check_pool(&sp.pool)?;
    if path != "-" {
        if let Err(e) = std::fs::File::open(path) {
            return Err(Fail::op("import failed", shale_error::Error::io(path, e))
                .preceded_by(format!("rbd: error opening {path}")));
        }
    }
    crate::copy::import(&x.c, path, &sp, order, feats).ctx("import failed")?;
    Ok(())
}

pub(super) fn status(x: &Session, spec: Option<&str>) -> R<()> {
    let sp = x.resolve(spec, SnapArg::Forbidden)?;
    let img = x.open(&sp, false)?;
    // Shale has no watches: the client holding the exclusive lock (an open writer) stands
    // for them. Its owner name `client.<hex id> <hex epoch>` gives the numbers rbd shows.
    let owners = img.lock_owners().ctx("show status failed")?;
    let watcher = |o: &str| {
        let mut parts = o.split_whitespace();
        let hex = |t: Option<&str>| {
            t.and_then(|t| u64::from_str_radix(t.trim_start_matches("client."), 16).ok())
                .unwrap_or(0)
        };
        (o.to_string(), hex(parts.next()), hex(parts.next()))
    };
    if x.json {
        x.emit(&J::O(vec![(
            "watchers",
            J::A(
                owners
                    .iter()
                    .map(|o| {
                        let (address, client, cookie) = watcher(o);
                        J::O(vec![
                            ("address", J::s(address)),
                            ("client", J::U(client)),
                            ("cookie", J::U(cookie)),
                        ])
                    })
                    .collect(),
            ),
        )]));
    } else if owners.is_empty() {
        outln!("Watchers: none");
    } else {
        outln!("Watchers:");
        for o in owners {
            let (address, client, cookie) = watcher(&o);
            outln!("\twatcher={address} client.{client} cookie={cookie}");
        }
    }
    Ok(())
}

pub(super) fn bench(x: &Session, b: &BenchOpts) -> R<()> {
    use crate::bench::{BenchArgs, IoType, Pattern};
    let sp = x.resolve(b.spec.as_deref(), SnapArg::Forbidden)?;
    let io_type = match b.io_type.as_deref() {
        Some("read") => IoType::Read,
        Some("write") => IoType::Write,
        Some("readwrite") | Some("rw") => IoType::Readwrite,
        Some(_) => {
            return Err(Fail::bad_arg(
                "the argument for option '--io-type' is invalid",
            ))
        }
        None => return Err(Fail::usage("--io-type must be specified.")),
    };
    let (io_pattern, word) = match b.io_pattern.as_str() {
        "seq" | "full-seq" => (Pattern::Seq, "sequential"),
        "rand" => (Pattern::Rand, "random"),
        _ => {
            return Err(Fail::bad_arg(
                "the argument for option '--io-pattern' is invalid",
            ))
        }
    };
    for (opt, v) in [("--io-size", &b.io_size), ("--io-total", &b.io_total)] {
        if parse_size(v, 1).is_err() {
            return Err(Fail::bad_arg(format!(
                "the argument for option '{opt}' is invalid"
            )));
        }
    }
    let args = BenchArgs {
        spec: sp.to_string(),
        io_type,
        io_size: b.io_size.clone(),
        io_threads: b.io_threads,
        io_total: b.io_total.clone(),
        io_pattern,
        rw_mix_read: b.rw_mix_read,
        target_file: None,
    };
    x.check_pool(&sp.pool)?;
    let kind = match io_type {
        IoType::Read => "read",
        IoType::Write => "write",
        IoType::Readwrite => "readwrite",
    };
    let io_size = parse_size(&b.io_size, 1).unwrap_or(0);
    let total = parse_size(&b.io_total, 1).unwrap_or(0);
    let mut head = format!(
        "bench  type {kind} io_size {io_size} io_threads {} bytes {total} pattern {word}",
        b.io_threads
    );
    if io_type == IoType::Readwrite {
        head.push_str(&format!(
            " read:write={}:{}",
            b.rw_mix_read,
            100u8.saturating_sub(b.rw_mix_read)
        ));
    }
    outln!("{head}");
    outln!("  SEC       OPS   OPS/SEC   BYTES/SEC");
    // rbd's per-second rows: operations in that second, and the average rates so far.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let finished = std::sync::atomic::AtomicBool::new(false);
    let o = std::thread::scope(|sc| {
        sc.spawn(|| {
            use std::sync::atomic::Ordering::Relaxed;
            let start = std::time::Instant::now();
            let (mut sec, mut last) = (0u64, 0u64);
            while !finished.load(Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(50));
                if start.elapsed().as_secs() > sec {
                    sec += 1;
                    let now = done.load(Relaxed);
                    let rate = now as f64 / start.elapsed().as_secs_f64();
                    outln!(
                        "{sec:>5}  {:>8}  {rate:>8.2}  {:>8}/s",
                        now - last,
                        format_size((rate * io_size as f64) as u64)
                    );
                    last = now;
                }
            }
        });
        let r = crate::bench::measure_counting(&x.c, &sp, &args, &done);
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    })
    .ctx("bench failed")?;
    outln!(
        "elapsed: {}   ops: {}   ops/sec: {:.2}   bytes/sec: {}/s",
        o.secs as u64,
        o.ops,
        o.ops_per_sec,
        format_size(o.bytes_per_sec as u64)
    );
    Ok(())
}
