//! The `shale` command line, following `rbd`'s syntax: `shale create rbd/vm1 --size 10G`.
//!
//! Every command takes `--store URL` (else the configured or embedded default store) and
//! `--format plain|json`. Errors print one line saying what went wrong and what to do, and the
//! process exits nonzero.
//!
//! Invoked as `rbd` (argv[0]'s file name; see `shale install-rbd-link`), or as `shale rbd …`,
//! the binary speaks Ceph's `rbd` syntax and output instead: see the `rbd` module.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a front end / tool / device layer: real time is fine here
macro_rules! outln {
    ($($a:tt)*) => { $crate::out(format!($($a)*)) };
}

mod bench;
mod copy;
mod location;
mod mount;
mod nbd;
mod progress;
pub mod rbd;
mod snap;

use std::ffi::OsString;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use shale_error::{err, Result};
use shale_image::size::{format_size, parse_size};
use shale_image::{Cluster, ImageSpec, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "shale",
    version,
    about = "Shale virtual disks: an rbd-style command line"
)]
struct Cli {
    /// Object store URL: file:///path, s3://bucket/prefix, memory:// (default: settings, then
    /// the embedded store under ~/.local/share/shale)
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value = "plain")]
    format: Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Plain,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Manage pools
    Pool {
        #[command(subcommand)]
        cmd: PoolCmd,
    },
    /// Create an image: `shale create [pool/]image --size 10G`
    Create {
        spec: String,
        /// Size, with unit (K, M, G, T); a bare number is MiB, as with rbd
        #[arg(long, short = 's', allow_hyphen_values = true)]
        size: String,
        /// Object size as a power of two (rbd's --order)
        #[arg(long, default_value_t = 22)]
        order: u8,
    },
    /// List images of a pool
    #[command(alias = "list")]
    Ls {
        pool: Option<String>,
        /// Show sizes too
        #[arg(short = 'l', long)]
        long: bool,
    },
    /// Show an image's details
    Info { spec: String },
    /// Remove an image and all its data
    #[command(alias = "remove")]
    Rm { spec: String },
    /// Rename an image within its pool
    #[command(alias = "mv")]
    Rename { src: String, dst: String },
    /// Resize an image
    Resize {
        spec: String,
        #[arg(long, short = 's', allow_hyphen_values = true)]
        size: String,
        /// Permit making the image smaller (data past the new end is lost)
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Import a raw file (or `-` for stdin) as a new image; zero runs are skipped
    Import { path: String, spec: Option<String> },
    /// Export an image to a raw file (or `-` for stdout); the file is sparse where the image is
    Export { spec: String, path: String },
    /// Benchmark an image (as `rbd bench`)
    Bench(bench::BenchArgs),
    /// Show the settings in force and where they come from
    Config,
    /// Manage snapshots
    Snap {
        #[command(subcommand)]
        cmd: snap::SnapCmd,
    },
    /// Clone a protected snapshot: `shale clone rbd/base@gold rbd/vm2`
    Clone { parent: String, child: String },
    /// Copy the parent's data into a clone and detach it
    Flatten { spec: String },
    /// List the clones of a snapshot
    Children { spec: String },
    /// Provisioned and used space per image and snapshot
    #[command(alias = "disk-usage")]
    Du { spec: Option<String> },
    /// Changed extents of an image or snapshot, since a snapshot or since creation
    Diff {
        spec: String,
        #[arg(long)]
        from_snap: Option<String>,
        #[arg(long)]
        whole_object: bool,
    },
    /// Write the changes since --from-snap (or all data) as an "rbd diff v1" stream
    ExportDiff {
        spec: String,
        path: String,
        #[arg(long)]
        from_snap: Option<String>,
    },
    /// Apply an "rbd diff v1" stream (from `rbd export-diff` or `shale export-diff`)
    ImportDiff { path: String, spec: String },
    /// Advisory locks (as `rbd lock`) and the exclusive lock's owner
    Lock {
        #[command(subcommand)]
        cmd: LockCmd,
    },
    /// The object map (per object: nonexistent, exists, exists-clean), derived from the log
    ObjectMap { spec: String },
    /// Collect garbage now: rewrite segments less live than --threshold and free space
    Gc {
        spec: String,
        #[arg(long, default_value_t = 0.7)]
        threshold: f64,
    },
    /// Verify an image: every segment, checkpoint, snapshot and parent it needs exists and
    /// passes its checksums; lists objects nothing refers to. Exit status 1 on problems
    Check { spec: String },
    /// Rebuild an image's map from its surviving segments and checkpoints (after a lost or
    /// damaged checkpoint); deletes nothing. Run `shale check` first
    Repair { spec: String },
    /// Run a Ceph client (qemu-img, fio, python3 ...) on Shale's librbd/librados, with an
    /// `rbd` (this binary, in Ceph's rbd syntax) first on its PATH:
    /// `shale run -- qemu-img info rbd:rbd/vm1`
    Run {
        /// The command and its arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<OsString>,
    },
    /// Run a command in Ceph's `rbd` syntax: `shale rbd ls -l rbd` (the same as running this
    /// binary under the name `rbd`; `shale rbd help` for its commands)
    #[command(disable_help_flag = true)]
    Rbd {
        /// rbd's arguments
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Serve a pool's images as files (FUSE): `shale mount /mnt/rbd --pool rbd`; runs until
    /// unmounted (`fusermount -u DIR`) or stopped (SIGTERM / SIGINT)
    Mount(mount::MountArgs),
    /// Serve images over NBD (as rbd-nbd, without a kernel device)
    Nbd {
        #[command(subcommand)]
        cmd: nbd::NbdCmd,
    },
    /// Registered locations and an image's data placement (UKAI): `shale location add rbd/vm1 dc2`
    Location {
        #[command(subcommand)]
        cmd: location::LocationCmd,
    },
    /// Copy what an image's locations miss (all, or --location), in sequence order; with
    /// --offset/--length only the data of that byte range
    Sync {
        spec: String,
        #[arg(long)]
        location: Option<String>,
        #[arg(long)]
        offset: Option<String>,
        #[arg(long)]
        length: Option<String>,
    },
    /// Locations this host cannot reach (exit status 1 when there are any)
    Errors,
    /// An image's I/O statistics (ops, bytes, latency per operation) and per-location bytes
    /// and lag
    Stats { spec: String },
    /// Make a symlink DIR/rbd to this binary, so that `rbd …` runs Shale in Ceph's rbd syntax
    /// (DIR defaults to ~/.local/bin). An existing DIR/rbd that is not such a link is left alone
    InstallRbdLink {
        dir: Option<std::path::PathBuf>,
        /// Replace an existing DIR/rbd (for example Ceph's own)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum LockCmd {
    /// List advisory locks and the exclusive-lock owner
    #[command(alias = "list")]
    Ls { spec: String },
    /// Take an advisory lock: exclusive, or shared with --shared TAG
    Add {
        spec: String,
        id: String,
        #[arg(long)]
        shared: Option<String>,
    },
    /// Remove an advisory lock: `shale lock rm rbd/vm1 ID client.x`
    #[command(alias = "remove")]
    Rm {
        spec: String,
        id: String,
        locker: String,
    },
    /// Break the exclusive lock of OWNER (it can never write again)
    Break { spec: String, owner: String },
}

#[derive(Subcommand, Debug)]
enum PoolCmd {
    /// Create a pool
    Create { name: String },
    /// List pools
    #[command(alias = "list")]
    Ls,
    /// Remove a pool (refused while it holds images, unless --force)
    #[command(alias = "remove")]
    Rm {
        name: String,
        #[arg(long)]
        force: bool,
    },
    /// Usage of a pool
    Stats { name: String },
}

/// Run with the given arguments (including argv[0]); returns the exit code. Under the name
/// `rbd`, the arguments are Ceph's rbd syntax.
pub fn main(args: Vec<OsString>) -> i32 {
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if invoked_as.as_deref() == Some("rbd") {
        return rbd::main(args, None);
    }
    // `shale [--store URL] rbd ARGS`: everything after `rbd` is rbd's, even options that
    // `shale` also has (`--format`).
    let mut store = None;
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        if a == "--store" {
            store = args.get(i + 1).and_then(|v| v.to_str()).map(str::to_string);
            i += 2;
        } else if let Some(v) = a.strip_prefix("--store=") {
            store = Some(v.to_string());
            i += 1;
        } else if a == "rbd" {
            let mut rest = vec![OsString::from("rbd")];
            rest.extend(args[i + 1..].iter().cloned());
            return rbd::main(rest, store.as_deref());
        } else {
            break;
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shale: error: {e}");
            match e.kind() {
                shale_error::ErrorKind::NotFound => 2,
                shale_error::ErrorKind::Invalid => 22,
                _ => 1,
            }
        }
    }
}

fn connect(cli: &Cli) -> Result<Cluster> {
    let mut s = Settings::load()?;
    if let Some(url) = &cli.store {
        s.set("store", url)?;
    }
    Cluster::connect(s)
}

/// Print a line to stdout; a closed pipe (`shale ls | head -1`) is not an error.
pub(crate) fn out(line: String) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
}

pub(crate) fn print_json(v: serde_json::Value) {
    outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

fn run(cli: Cli) -> Result<()> {
    if let Cmd::Run { cmd } = &cli.cmd {
        return run_client(cli.store.as_deref(), cmd);
    }
    if let Cmd::InstallRbdLink { dir, force } = &cli.cmd {
        let dir = match dir {
            Some(d) => d.clone(),
            None => std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".local/bin"))
                .ok_or_else(|| err!(Invalid, "HOME is not set; give the directory"))?,
        };
        let link = install_rbd_link(&dir, *force)?;
        outln!("{} -> {}", link.display(), current_exe()?.display());
        return Ok(());
    }
    if let Cmd::Config = cli.cmd {
        let mut s = Settings::load()?;
        if let Some(url) = &cli.store {
            s.set("store", url)?;
        }
        let file = Settings::config_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let v = json!({
            "config_file": file,
            "store": s.store_url(),
            "segment_size": s.segment_size,
            "upload_threads": s.upload_threads,
            "checkpoint_interval": s.checkpoint_interval,
            "default_pool": s.default_pool,
        });
        if cli.format == Format::Json {
            print_json(v);
        } else if let Some(m) = v.as_object() {
            for (k, v) in m {
                outln!("{k} = {v}");
            }
        }
        return Ok(());
    }
    let c = connect(&cli)?;
    if let Cmd::Nbd { cmd } = &cli.cmd {
        return nbd::run(&c, cmd.clone());
    }
    let dp = c.settings().default_pool.clone();
    let spec = |s: &str| -> Result<ImageSpec> {
        let sp = ImageSpec::parse(s, &dp)?;
        if sp.snap.is_some() {
            return Err(err!(
                Unsupported,
                "{s}: snapshots are not supported by this command yet"
            ));
        }
        Ok(sp)
    };
    match &cli.cmd {
        Cmd::Pool { cmd } => match cmd {
            PoolCmd::Create { name } => {
                c.pool_create(name)?;
                if cli.format == Format::Json {
                    print_json(json!({ "pool": name }));
                }
            }
            PoolCmd::Ls => {
                let pools = c.pool_list()?;
                if cli.format == Format::Json {
                    print_json(json!(pools
                        .iter()
                        .map(|(n, id)| json!({"name": n, "id": id}))
                        .collect::<Vec<_>>()));
                } else {
                    for (n, _) in pools {
                        outln!("{n}");
                    }
                }
            }
            PoolCmd::Rm { name, force } => c.pool_remove(name, *force)?,
            PoolCmd::Stats { name } => {
                let s = c.pool_stats(name)?;
                if cli.format == Format::Json {
                    print_json(json!(s));
                } else {
                    outln!(
                        "images: {}\nobjects: {}\nbytes: {} ({})",
                        s.images,
                        s.objects,
                        s.bytes,
                        format_size(s.bytes)
                    );
                }
            }
        },
        Cmd::Create {
            spec: s,
            size,
            order,
        } => {
            let sp = spec(s)?;
            let bytes = parse_size(size, 1 << 20)?;
            let id = c.create_image(&sp.pool, &sp.image, bytes, *order)?;
            if cli.format == Format::Json {
                print_json(json!({"pool": sp.pool, "name": sp.image, "id": id, "size": bytes}));
            }
        }
        Cmd::Ls { pool, long } => {
            let pool = pool.clone().unwrap_or(dp.clone());
            let imgs = c.list_images(&pool)?;
            if cli.format == Format::Json && !long {
                print_json(json!(imgs
                    .iter()
                    .map(|i| i.name.clone())
                    .collect::<Vec<_>>()));
            } else if *long {
                let mut rows = Vec::new();
                for i in &imgs {
                    let img = c.open_image_by_id(&pool, &i.id, true)?;
                    rows.push((i.name.clone(), img.size(), img.info().order));
                }
                if cli.format == Format::Json {
                    print_json(json!(rows
                        .iter()
                        .map(|(n, s, o)| json!({"image": n, "size": s, "format": 2, "order": o}))
                        .collect::<Vec<_>>()));
                } else {
                    outln!("{:<30} {:>12} FMT", "NAME", "SIZE");
                    for (n, s, _) in rows {
                        outln!("{n:<30} {:>12}   2", format_size(s));
                    }
                }
            } else {
                for i in imgs {
                    outln!("{}", i.name);
                }
            }
        }
        Cmd::Info { spec: s } => {
            let sp = ImageSpec::parse(s, &dp)?;
            let img = snap::open_spec(&c, &sp, false)?;
            let i = img.info();
            if cli.format == Format::Json {
                print_json(json!({
                    "name": i.name, "id": i.id, "pool": i.pool, "size": i.size,
                    "objects": i.num_objs, "order": i.order, "object_size": i.object_size,
                    "block_name_prefix": i.block_name_prefix, "format": 2, "features": feature_names(i.features),
                    "create_timestamp": i.created, "metadata": img.metadata_list(),
                }));
            } else {
                outln!("rbd image '{}':", i.name);
                outln!("\tsize {} in {} objects", format_size(i.size), i.num_objs);
                outln!(
                    "\torder {} ({} objects)",
                    i.order,
                    format_size(i.object_size)
                );
                outln!("\tid: {}", i.id);
                outln!("\tblock_name_prefix: {}", i.block_name_prefix);
                outln!("\tformat: 2");
                outln!("\tfeatures: {}", feature_names(i.features).join(", "));
                outln!("\tstore: {}", c.store().url());
            }
        }
        Cmd::Rm { spec: s } => {
            let sp = spec(s)?;
            let bar = progress::count_bar("Removing image", 0);
            c.remove_image(&sp.pool, &sp.image, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
        }
        Cmd::Rename { src, dst } => {
            let a = spec(src)?;
            let b = ImageSpec::parse(dst, &a.pool)?;
            if b.pool != a.pool {
                return Err(err!(
                    Invalid,
                    "rename across pools is not possible; use export and import"
                ));
            }
            c.rename_image(&a.pool, &a.image, &b.image)?;
        }
        Cmd::Resize {
            spec: s,
            size,
            allow_shrink,
        } => {
            let sp = spec(s)?;
            let bytes = parse_size(size, 1 << 20)?;
            let img = c.open_image(&sp.pool, &sp.image, false)?;
            img.resize(bytes, *allow_shrink)?;
            img.close()?;
        }
        Cmd::Import { path, spec: s } => {
            let name = match s {
                Some(s) => s.clone(),
                None if path == "-" => {
                    return Err(err!(Invalid, "importing from stdin needs an image spec"))
                }
                None => std::path::Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| {
                        err!(Invalid, "cannot derive an image name from {path}; give one")
                    })?,
            };
            let sp = spec(&name)?;
            let st = copy::import(&c, path, &sp, 22, None)?;
            if cli.format == Format::Json {
                print_json(
                    json!({"image": sp.to_string(), "size": st.size, "written": st.written, "skipped_zero": st.skipped}),
                );
            }
        }
        Cmd::Export { spec: s, path } => {
            let sp = ImageSpec::parse(s, &dp)?;
            let st = copy::export(&c, &sp, path)?;
            if cli.format == Format::Json {
                print_json(
                    json!({"image": sp.to_string(), "size": st.size, "written": st.written}),
                );
            }
        }
        Cmd::Bench(a) => {
            let sp = spec(&a.spec)?;
            bench::run(&c, &sp, a, cli.format == Format::Json)?;
        }
        Cmd::Snap { cmd } => snap::snap(&c, &dp, cmd, cli.format == Format::Json)?,
        Cmd::Location { cmd } => location::location(&c, &dp, cmd, cli.format == Format::Json)?,
        Cmd::Sync {
            spec,
            location,
            offset,
            length,
        } => location::sync(
            &c,
            &dp,
            spec,
            location.as_deref(),
            offset.as_deref(),
            length.as_deref(),
            cli.format == Format::Json,
        )?,
        Cmd::Errors => {
            if !location::errors(&c, cli.format == Format::Json)? {
                return Err(err!(Unavailable, "some locations cannot be reached"));
            }
        }
        Cmd::Stats { spec } => location::stats(&c, &dp, spec, cli.format == Format::Json)?,
        Cmd::Clone { parent, child } => snap::clone(&c, &dp, parent, child)?,
        Cmd::Flatten { spec } => snap::flatten(&c, &dp, spec)?,
        Cmd::Children { spec } => snap::children(&c, &dp, spec, cli.format == Format::Json)?,
        Cmd::Du { spec } => snap::du(&c, &dp, spec.as_deref(), cli.format == Format::Json)?,
        Cmd::Diff {
            spec,
            from_snap,
            whole_object,
        } => snap::diff(
            &c,
            &dp,
            spec,
            from_snap.as_deref(),
            *whole_object,
            cli.format == Format::Json,
        )?,
        Cmd::ExportDiff {
            spec,
            path,
            from_snap,
        } => {
            let n = snap::export_diff(&c, &dp, spec, from_snap.as_deref(), false, path)?;
            if cli.format == Format::Json {
                print_json(json!({"exported_bytes": n}));
            }
        }
        Cmd::ImportDiff { path, spec } => {
            let n = snap::import_diff(&c, &dp, path, spec)?;
            if cli.format == Format::Json {
                print_json(json!({"imported_bytes": n}));
            }
        }
        Cmd::Lock { cmd } => lock_cmd(&c, &dp, cmd, cli.format == Format::Json)?,
        Cmd::ObjectMap { spec: s } => {
            let sp = ImageSpec::parse(s, &dp)?;
            let img = snap::open_spec(&c, &sp, false)?;
            let states = img.object_map()?;
            let name = |st: u8| match st {
                shale_image::snaps::object_state::EXISTS => "exists",
                shale_image::snaps::object_state::EXISTS_CLEAN => "exists-clean",
                shale_image::snaps::object_state::PENDING => "pending",
                _ => "nonexistent",
            };
            if cli.format == Format::Json {
                print_json(json!(states.iter().map(|&s| name(s)).collect::<Vec<_>>()));
            } else {
                for (i, &st) in states.iter().enumerate() {
                    if st != shale_image::snaps::object_state::NONEXISTENT {
                        outln!("{i:>8} {}", name(st));
                    }
                }
                let count = |x: u8| states.iter().filter(|&&s| s == x).count();
                outln!(
                    "{} objects: {} exists, {} exists-clean, {} nonexistent",
                    states.len(),
                    count(shale_image::snaps::object_state::EXISTS),
                    count(shale_image::snaps::object_state::EXISTS_CLEAN),
                    count(shale_image::snaps::object_state::NONEXISTENT)
                );
            }
        }
        Cmd::Gc { spec: s, threshold } => {
            let sp = spec(s)?;
            if !(0.0..1.0).contains(threshold) {
                return Err(err!(Invalid, "--threshold must be a fraction below 1"));
            }
            let img = c.open_image(&sp.pool, &sp.image, false)?;
            let r = img.gc(*threshold)?;
            img.close()?;
            let v = json!({"segments_examined": r.segments_examined, "segments_relocated": r.segments_relocated,
                           "bytes_relocated": r.bytes_relocated, "segments_deleted": r.segments_deleted,
                           "bytes_deleted": r.bytes_deleted});
            if cli.format == Format::Json {
                print_json(v);
            } else {
                outln!(
                    "relocated {} from {} segment(s); freed {} in {} segment(s)",
                    format_size(r.bytes_relocated),
                    r.segments_relocated,
                    format_size(r.bytes_deleted),
                    r.segments_deleted
                );
            }
        }
        Cmd::Check { spec: s } => {
            let sp = spec(s)?;
            let bar = progress::count_bar("Checking segments", 0);
            let r = c.check_image(&sp.pool, &sp.image, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish_and_clear();
            if cli.format == Format::Json {
                print_json(json!({
                    "image": sp.to_string(),
                    "ok": r.ok(),
                    "checkpoints": r.checkpoints,
                    "snapshots": r.snapshots,
                    "segments": r.segments,
                    "segments_verified": r.segments_verified,
                    "bytes_verified": r.bytes_verified,
                    "problems": r.problems.iter().map(|p| json!({"object": p.object, "problem": p.what})).collect::<Vec<_>>(),
                    "warnings": r.warnings.iter().map(|p| json!({"object": p.object, "problem": p.what})).collect::<Vec<_>>(),
                    "unreferenced": r.unreferenced,
                }));
            } else {
                for p in &r.problems {
                    outln!("PROBLEM {}: {}", p.object, p.what);
                }
                for p in &r.warnings {
                    outln!("warning {}: {}", p.object, p.what);
                }
                for u in &r.unreferenced {
                    outln!("unreferenced {u}");
                }
                outln!(
                    "{}: {} checkpoint(s), {} snapshot(s), {} segment(s); {} verified ({}); {} problem(s), {} unreferenced object(s)",
                    sp,
                    r.checkpoints,
                    r.snapshots,
                    r.segments,
                    r.segments_verified,
                    format_size(r.bytes_verified),
                    r.problems.len(),
                    r.unreferenced.len()
                );
            }
            if !r.ok() {
                return Err(err!(
                    Corruption,
                    "{sp}: {} problem(s) found; `shale repair {sp}` rebuilds the image from what survives",
                    r.problems.len()
                ));
            }
        }
        Cmd::Repair { spec: s } => {
            let sp = spec(s)?;
            let r = c.repair_image(&sp.pool, &sp.image)?;
            if cli.format == Format::Json {
                print_json(json!({
                    "image": sp.to_string(),
                    "base_checkpoint": r.base,
                    "skipped_checkpoints": r.skipped_checkpoints,
                    "segments_replayed": r.segments_replayed,
                    "missing_segments": r.missing_segments,
                    "damaged_segments": r.damaged_segments,
                    "fenced_segments": r.fenced_segments,
                    "checkpoint_written": r.checkpoint,
                }));
            } else {
                outln!(
                    "{sp}: rebuilt from {} and {} segment(s); wrote {}",
                    r.base
                        .as_deref()
                        .unwrap_or("no checkpoint (all surviving segments)"),
                    r.segments_replayed,
                    r.checkpoint
                );
                for k in &r.skipped_checkpoints {
                    outln!("passed over damaged checkpoint {k}");
                }
                if !r.missing_segments.is_empty() {
                    outln!(
                        "{} segment number(s) missing after the base (collected or lost)",
                        r.missing_segments.len()
                    );
                }
                for d in &r.damaged_segments {
                    outln!("left out damaged segment {d}");
                }
            }
        }
        // `rbd` is dispatched by `main` before parsing; the variant documents it in --help.
        Cmd::Mount(a) => mount::mount(c.clone(), a)?,
        Cmd::Config
        | Cmd::Run { .. }
        | Cmd::Rbd { .. }
        | Cmd::InstallRbdLink { .. }
        | Cmd::Nbd { .. } => {}
    }
    Ok(())
}

fn lock_cmd(c: &Cluster, dp: &str, cmd: &LockCmd, json_out: bool) -> Result<()> {
    let open = |s: &str, writable: bool| -> Result<shale_image::Image> {
        let sp = ImageSpec::parse(s, dp)?;
        c.open_image(&sp.pool, &sp.image, !writable)
    };
    match cmd {
        LockCmd::Ls { spec } => {
            let img = open(spec, false)?;
            let lockers = img.advisory_lockers()?;
            let owners = img.lock_owners()?;
            if json_out {
                print_json(json!({
                    "lockers": lockers.iter().map(|l| json!({"locker": l.client, "id": l.cookie, "address": l.address,
                        "exclusive": l.exclusive, "tag": l.tag})).collect::<Vec<_>>(),
                    "exclusive_lock_owners": owners,
                }));
            } else {
                if !lockers.is_empty() {
                    let kind = if lockers[0].exclusive {
                        "exclusive"
                    } else {
                        "shared"
                    };
                    outln!(
                        "There {} {} {kind} lock{} on this image.",
                        if lockers.len() == 1 { "is" } else { "are" },
                        lockers.len(),
                        if lockers.len() == 1 { "" } else { "s" }
                    );
                    outln!("{:<24} {:<20} Address", "Locker", "ID");
                    for l in &lockers {
                        outln!("{:<24} {:<20} {}", l.client, l.cookie, l.address);
                    }
                }
                for o in owners {
                    outln!("exclusive lock owner: {o}");
                }
            }
        }
        LockCmd::Add { spec, id, shared } => {
            open(spec, false)?.advisory_lock(id, shared.as_deref())?
        }
        LockCmd::Rm { spec, id, locker } => open(spec, false)?.advisory_break(locker, id)?,
        LockCmd::Break { spec, owner } => open(spec, false)?.lock_break(owner)?,
    }
    Ok(())
}

/// Where Shale's librbd.so.1 and librados.so.2 are: `$SHALE_LIB_DIR`, else `shale-libs/` next
/// to this executable, else `../lib/shale/` relative to it.
pub fn lib_dir() -> Result<std::path::PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("SHALE_LIB_DIR") {
        candidates.push(std::path::PathBuf::from(d));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_path_buf()))
    {
        candidates.push(exe_dir.join("shale-libs"));
        candidates.push(exe_dir.join("../lib/shale"));
    }
    candidates
        .iter()
        .find(|d| d.join("librbd.so.1").exists() && d.join("librados.so.2").exists())
        .cloned()
        .ok_or_else(|| {
            err!(
                NotFound,
                "Shale's librbd.so.1/librados.so.2 not found in {}; build and stage them with \
                 `cargo build --release -p shale-rados -p shale-rbd && scripts/stage-libs.sh`, or set SHALE_LIB_DIR",
                candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        })
}

/// Replace this process with `cmd`, its librbd/librados resolved to Shale's.
fn run_client(store: Option<&str>, cmd: &[OsString]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let dir = lib_dir()?;
    let mut path = OsString::from(dir.as_os_str());
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        path.push(":");
        path.push(old);
    }
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| err!(Invalid, "shale run: no command given"))?;
    let mut c = std::process::Command::new(prog);
    c.args(args).env("LD_LIBRARY_PATH", path);
    // `rbd` on the command's PATH is this binary (Ceph's rbd cannot load Shale's librbd).
    // Without a writable cache directory the command still runs, only without that `rbd`.
    let bin = Settings::default_cache_dir().join("bin");
    match install_rbd_link(&bin, true) {
        Ok(_) => {
            let mut search = OsString::from(bin.as_os_str());
            if let Some(old) = std::env::var_os("PATH") {
                search.push(":");
                search.push(old);
            }
            c.env("PATH", search);
        }
        Err(e) => eprintln!("shale: warning: no rbd on the command's PATH: {e}"),
    }
    if let Some(url) = store {
        c.env("SHALE_STORE", url);
    }
    if let Some(conf) = default_ceph_conf() {
        c.env("CEPH_CONF", conf);
    }
    let e = c.exec();
    Err(shale_error::Error::io(
        format!("cannot run {}", prog.to_string_lossy()),
        e,
    ))
}

fn current_exe() -> Result<std::path::PathBuf> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| shale_error::Error::io("cannot find this executable", e))
}

/// Make `dir/rbd` a symlink to this executable (creating `dir`), atomically (a temporary link
/// renamed over it). Refuses to replace anything else there unless `force`. Returns the link.
pub fn install_rbd_link(dir: &std::path::Path, force: bool) -> Result<std::path::PathBuf> {
    let exe = current_exe()?;
    let link = dir.join("rbd");
    match std::fs::symlink_metadata(&link) {
        Ok(_) if std::fs::read_link(&link).ok().as_deref() == Some(exe.as_path()) => {
            return Ok(link)
        }
        Ok(_) if !force => {
            return Err(err!(
                Exists,
                "{} already exists and is not a link to {}; remove it, pass --force, or choose \
                 another directory",
                link.display(),
                exe.display()
            ))
        }
        _ => {}
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| shale_error::Error::io(format!("cannot create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".rbd.tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&exe, &tmp)
        .map_err(|e| shale_error::Error::io(format!("cannot create {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        shale_error::Error::io(format!("cannot create {}", link.display()), e)
    })?;
    Ok(link)
}

/// Some clients (fio) refuse to run without a ceph.conf. When none is set or found on the usual
/// search path, `shale run` points CEPH_CONF at a minimal one it keeps in the cache directory.
fn default_ceph_conf() -> Option<std::path::PathBuf> {
    if std::env::var_os("CEPH_CONF").is_some() {
        return None;
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let usual = [
        Some(std::path::PathBuf::from("/etc/ceph/ceph.conf")),
        home.as_ref().map(|h| h.join(".ceph/config")),
        home.as_ref().map(|h| h.join(".ceph/ceph.conf")),
        Some(std::path::PathBuf::from("ceph.conf")),
    ];
    if usual.iter().flatten().any(|p| p.exists()) {
        return None;
    }
    let path = Settings::default_cache_dir().join("ceph.conf");
    if !path.exists() {
        let text = "# Written by `shale run` because no ceph.conf was found. Shale settings may be given\n\
                    # here as shale_<name> = value (for example shale_store = file:///srv/shale).\n[global]\n";
        std::fs::create_dir_all(path.parent()?).ok()?;
        std::fs::write(&path, text).ok()?;
    }
    Some(path)
}

/// librbd's feature names for a feature mask.
pub fn feature_names(f: u64) -> Vec<&'static str> {
    shale_image::features::names(f)
}
