//! The `shale` binary invoked as `rbd` (a symlink named `rbd`, `shale install-rbd-link`, or
//! `shale run -- CMD` which puts one on CMD's PATH): Ceph's `rbd` command line for the commands
//! Shale has, so that scripts and operators written for Ceph keep working.
//!
//! ```text
//!  argv (rbd syntax) ──clap──> RbdCli ──resolve()──> ImageSpec ──> Cluster / Image calls
//!                                                                   (shared with `shale`:
//!                                                                    copy, snap, bench)
//!  output: rbd's JSON keys in rbd's order (output::J), TextTable tables, rbd's progress lines,
//!  errors as `rbd: <what> error: (errno) strerror` with the errno as exit status.
//! ```
//!
//! The store comes from Shale's settings (`SHALE_STORE`, the settings file) and from
//! `shale_*` keys in the ceph.conf that `-c/--conf` or `$CEPH_CONF` names.

mod args;
mod extra;
mod images;
pub mod output;
mod snaps;

use std::ffi::OsString;
use std::fmt::Display;

use clap::Parser;
use shale_error::Error;
use shale_image::{Cluster, Image, ImageSpec, Settings};

pub(crate) use args::{BenchOpts, CreateOpts};
use args::{Cmd, FeatureCmd, Fmt, LimitCmd, LockCmd, MetaCmd, PoolCmd, RbdCli, SnapCmd};
use output::{json_text, strerror, J};

/// A failed command: the lines rbd prints (on stderr), Shale's detail, and the exit status.
pub(crate) struct Fail {
    lines: Vec<String>,
    detail: Option<String>,
    code: i32,
}

impl Fail {
    /// `rbd: <msg>`, exit status `code`.
    pub(crate) fn new(msg: impl Into<String>, code: i32) -> Fail {
        Fail {
            lines: vec![format!("rbd: {}", msg.into())],
            detail: None,
            code,
        }
    }

    /// Bad usage, as rbd reports it (`rbd: image name was not specified`, EINVAL).
    pub(crate) fn usage(msg: impl Into<String>) -> Fail {
        Fail::new(msg, 22)
    }

    /// A bad option value, which rbd's option parser rejects with status 1.
    pub(crate) fn bad_arg(msg: impl Into<String>) -> Fail {
        Fail::new(msg, 1)
    }

    /// An operation that failed: `rbd: <ctx>: (errno) strerror`, exit status errno.
    pub(crate) fn op(ctx: impl Display, e: Error) -> Fail {
        let mut f = Fail::op_bare(ctx, e);
        f.lines[0].insert_str(0, "rbd: ");
        f
    }

    /// As `op`, without the `rbd: ` prefix (some of rbd's messages have none).
    pub(crate) fn op_bare(ctx: impl Display, e: Error) -> Fail {
        let n = e.kind().errno();
        Fail {
            lines: vec![format!("{ctx}: ({n}) {}", strerror(n))],
            detail: Some(e.to_string()),
            code: n,
        }
    }

    /// Print `line` (as is) before the others.
    pub(crate) fn preceded_by(mut self, line: impl Into<String>) -> Fail {
        self.lines.insert(0, line.into());
        self
    }
}

pub(crate) type R<T> = std::result::Result<T, Fail>;

/// Attach rbd's wording of what failed to a Shale error.
pub(crate) trait Ctx<T> {
    fn ctx(self, what: impl Display) -> R<T>;
}

impl<T> Ctx<T> for shale_error::Result<T> {
    fn ctx(self, what: impl Display) -> R<T> {
        self.map_err(|e| Fail::op(what, e))
    }
}

/// Whether a command takes a snapshot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapArg {
    Forbidden,
    Optional,
    Required,
}

/// What every command gets: the cluster, the global options, and output helpers.
pub(crate) struct Session {
    pub c: Cluster,
    pub pool: Option<String>,
    pub image: Option<String>,
    pub snap: Option<String>,
    pub json: bool,
    pub pretty: bool,
    pub default_pool: String,
}

impl Session {
    /// The pool a command works in: the spec's, else `-p`, else the default (`rbd`).
    pub fn pool_or_default(&self, explicit: Option<&str>) -> String {
        explicit
            .or(self.pool.as_deref())
            .unwrap_or(&self.default_pool)
            .to_string()
    }

    /// An image spec from a positional `[pool/]image[@snap]`, completed by `-p`, `--image`
    /// and `--snap`, checked against what the command takes.
    pub fn resolve(&self, pos: Option<&str>, snap: SnapArg) -> R<ImageSpec> {
        self.resolve_with(pos, None, self.image.as_deref(), snap)
    }

    pub fn resolve_with(
        &self,
        pos: Option<&str>,
        pool_opt: Option<&str>,
        image_opt: Option<&str>,
        snap: SnapArg,
    ) -> R<ImageSpec> {
        let pool = self.pool_or_default(pool_opt);
        let mut sp = match pos {
            Some(p) => ImageSpec::parse(p, &pool).map_err(|e| Fail::usage(e.to_string()))?,
            None => {
                let Some(img) = image_opt else {
                    return Err(Fail::usage("image name was not specified"));
                };
                ImageSpec::parse(img, &pool).map_err(|e| Fail::usage(e.to_string()))?
            }
        };
        if sp.snap.is_none() {
            sp.snap = self.snap.clone();
        }
        match (snap, &sp.snap) {
            (SnapArg::Required, None) => Err(Fail::usage("snapshot name was not specified")),
            (SnapArg::Forbidden, Some(_)) => Err(Fail::usage(
                "snapshot name specified for a command that doesn't use it",
            )),
            _ => Ok(sp),
        }
    }

    /// Open `sp` (at its snapshot, if any), reporting failures as rbd does.
    pub fn open(&self, sp: &ImageSpec, writable: bool) -> R<Image> {
        self.check_pool(&sp.pool)?;
        let opening = format!("error opening image {}", sp.image);
        match &sp.snap {
            None => self
                .c
                .open_image(&sp.pool, &sp.image, !writable)
                .ctx(opening),
            Some(s) => {
                self.c.image_id(&sp.pool, &sp.image).ctx(opening)?;
                self.c
                    .open_image_at(&sp.pool, &sp.image, s)
                    .map_err(|e| Fail::op_bare("error setting snapshot context", e))
            }
        }
    }

    /// Open the head of `sp` for writing once `check` has passed on a read-only handle, so
    /// that a refused request opens nothing for writing (which is not free of effects: it
    /// takes the exclusive lock and checkpoints on close).
    pub fn open_checked(&self, sp: &ImageSpec, check: impl FnOnce(&Image) -> R<()>) -> R<Image> {
        let head = ImageSpec {
            snap: None,
            ..sp.clone()
        };
        let ro = self.open(&head, false)?;
        check(&ro)?;
        drop(ro);
        self.open(&head, true)
    }

    pub fn check_pool(&self, pool: &str) -> R<()> {
        self.c
            .pool_id(pool)
            .map(|_| ())
            .ctx(format_args!("error opening pool '{pool}'"))
    }

    /// Print `v` in the chosen JSON style.
    pub fn emit(&self, v: &J) {
        crate::out(json_text(v, self.pretty));
    }
}

/// Entry point for `rbd ARGS…` (`args[0]` is the program name). `store` overrides the
/// configured store (`shale --store URL rbd …`). Returns the exit status.
pub fn main(args: Vec<OsString>, store: Option<&str>) -> i32 {
    let cli = match RbdCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
                let _ = e.print();
                return 0;
            }
            if e.kind() == K::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return 1;
            }
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            eprintln!("rbd: {first}");
            eprintln!("(see `rbd help` and `rbd help <command>`)");
            return 1;
        }
    };
    crate::progress::set_style(if cli.no_progress {
        crate::progress::Style::Quiet
    } else {
        crate::progress::Style::Rbd
    });
    match run(cli, store) {
        Ok(()) => 0,
        Err(f) => {
            if let Some(d) = &f.detail {
                eprintln!("shale: {d}");
            }
            for l in &f.lines {
                eprintln!("{l}");
            }
            f.code
        }
    }
}

/// Shale settings, then `shale_*` keys of the ceph.conf in force, then `store`.
fn connect(conf: Option<&str>, store: Option<&str>) -> R<Cluster> {
    let mut s = Settings::load().map_err(|e| Fail::op("error loading settings", e))?;
    let path = match conf {
        Some(p) => Some(std::path::PathBuf::from(p)),
        None => std::env::var_os("CEPH_CONF")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                let p = std::path::PathBuf::from("/etc/ceph/ceph.conf");
                p.exists().then_some(p)
            }),
    };
    if let Some(p) = path {
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                for (k, v) in shale_keys(&text) {
                    s.set(&k, &v).map_err(|e| {
                        Fail::op(format_args!("bad setting shale_{k} in {}", p.display()), e)
                    })?;
                }
            }
            Err(e) if conf.is_some() => {
                return Err(Fail::new(
                    format!("cannot read config file {}: {e}", p.display()),
                    1,
                ))
            }
            Err(_) => {}
        }
    }
    if let Some(url) = store {
        s.set("store", url)
            .map_err(|e| Fail::op("bad --store", e))?;
    }
    Cluster::connect(s).map_err(|e| Fail::op("error connecting to the store", e))
}

/// The `shale_<name> = value` settings of a ceph.conf's `[global]` and `[client…]` sections,
/// as (name, value); ceph.conf spells keys with spaces, dashes or underscores alike.
fn shale_keys(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut applies = true;
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(sec) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let sec = sec.trim();
            applies = sec == "global" || sec == "client" || sec.starts_with("client.");
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let key: String = k
            .trim()
            .chars()
            .map(|c| if c == ' ' || c == '-' { '_' } else { c })
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(name) = key.strip_prefix("shale_") {
            if applies {
                let v = v.trim().trim_matches('"').to_string();
                out.push((name.to_string(), v));
            }
        }
    }
    out
}

fn run(cli: RbdCli, store: Option<&str>) -> R<()> {
    let Some(cmd) = cli.cmd else {
        if cli.version {
            outln!(
                "ceph version 16.2.15-compatible (shale {}) pacific (stable)",
                env!("CARGO_PKG_VERSION")
            );
            return Ok(());
        }
        return Err(Fail::bad_arg("no command given; see `rbd help`"));
    };
    if let Some(ns) = cli.namespace.as_deref() {
        if !ns.is_empty() {
            return Err(Fail::new(
                format!("namespace '{ns}': Shale pools have no namespaces"),
                95,
            ));
        }
    }
    if let Cmd::Other(args) = &cmd {
        return Err(extra::unsupported(args));
    }
    let c = connect(cli.conf.as_deref(), store)?;
    let default_pool = c.settings().default_pool.clone();
    let x = Session {
        c,
        pool: cli.pool.clone(),
        image: cli.image.clone(),
        snap: cli.snap.clone(),
        json: cli.format == Some(Fmt::Json),
        pretty: cli.pretty_format,
        default_pool,
    };
    match cmd {
        Cmd::Create { spec, size, opts } => images::create(&x, spec.as_deref(), size, &opts),
        Cmd::Ls {
            pool_spec, long, ..
        } => images::ls(&x, pool_spec.as_deref(), long),
        Cmd::Info { spec } => images::info(&x, spec.as_deref()),
        Cmd::Rm { spec } => images::rm(&x, spec.as_deref()),
        Cmd::Rename {
            src,
            dst,
            dest_pool,
            dest,
        } => images::rename(
            &x,
            src.as_deref(),
            dst.as_deref(),
            dest_pool.as_deref(),
            dest.as_deref(),
        ),
        Cmd::Resize {
            spec,
            size,
            allow_shrink,
        } => images::resize(&x, spec.as_deref(), size.as_deref(), allow_shrink),
        Cmd::Export {
            spec,
            path,
            export_format,
        } => images::export(&x, spec.as_deref(), path.as_deref(), export_format),
        Cmd::Import {
            path,
            spec,
            dest_pool,
            dest,
            export_format,
            opts,
        } => images::import(
            &x,
            path.as_deref(),
            spec.as_deref(),
            dest_pool.as_deref(),
            dest.as_deref(),
            export_format,
            &opts,
        ),
        Cmd::Status { spec } => images::status(&x, spec.as_deref()),
        Cmd::Bench(b) => images::bench(&x, &b),
        Cmd::Snap { cmd } => match cmd {
            SnapCmd::Create { spec, .. } => snaps::create(&x, spec.as_deref()),
            SnapCmd::Ls { spec, .. } => snaps::ls(&x, spec.as_deref()),
            SnapCmd::Rm { spec, .. } => snaps::rm(&x, spec.as_deref()),
            SnapCmd::Rollback { spec } => snaps::rollback(&x, spec.as_deref()),
            SnapCmd::Protect { spec } => snaps::protect(&x, spec.as_deref(), true),
            SnapCmd::Unprotect { spec } => snaps::protect(&x, spec.as_deref(), false),
            SnapCmd::Purge { spec } => snaps::purge(&x, spec.as_deref()),
            SnapCmd::Rename { src, dst } => snaps::rename(&x, src.as_deref(), dst.as_deref()),
            SnapCmd::Limit { cmd } => match cmd {
                LimitCmd::Set { spec, limit } => {
                    extra::snap_limit(&x, spec.as_deref(), limit.map(Some))
                }
                LimitCmd::Clear { spec } => extra::snap_limit(&x, spec.as_deref(), Some(None)),
            },
        },
        Cmd::Clone {
            parent,
            child,
            dest_pool,
            dest,
            opts,
        } => snaps::clone(
            &x,
            parent.as_deref(),
            child.as_deref(),
            dest_pool.as_deref(),
            dest.as_deref(),
            &opts,
        ),
        Cmd::Flatten { spec } => snaps::flatten(&x, spec.as_deref()),
        Cmd::Children { spec, .. } => snaps::children(&x, spec.as_deref()),
        Cmd::Du { spec, .. } => snaps::du(&x, spec.as_deref()),
        Cmd::Diff {
            spec,
            from_snap,
            whole_object,
        } => snaps::diff(&x, spec.as_deref(), from_snap.as_deref(), whole_object),
        Cmd::ExportDiff {
            spec,
            path,
            from_snap,
            whole_object,
        } => snaps::export_diff(
            &x,
            spec.as_deref(),
            path.as_deref(),
            from_snap.as_deref(),
            whole_object,
        ),
        Cmd::ImportDiff { path, spec } => snaps::import_diff(&x, path.as_deref(), spec.as_deref()),
        Cmd::Pool { cmd } => match cmd {
            PoolCmd::Init { pool, .. } => extra::pool_init(&x, pool.as_deref()),
            PoolCmd::Stats { pool } => extra::pool_stats(&x, pool.as_deref()),
        },
        Cmd::ImageMeta { cmd } => {
            use extra::Meta;
            let need = |v: &Option<String>, what: &str| -> R<String> {
                v.clone()
                    .ok_or_else(|| Fail::usage(format!("{what} was not specified")))
            };
            match cmd {
                MetaCmd::List { spec } => extra::image_meta(&x, spec.as_deref(), Meta::List),
                MetaCmd::Get { spec, key } => {
                    let k = need(&key, "metadata key")?;
                    extra::image_meta(&x, spec.as_deref(), Meta::Get(&k))
                }
                MetaCmd::Set { spec, key, value } => {
                    let k = need(&key, "metadata key")?;
                    let v = need(&value, "metadata value")?;
                    extra::image_meta(&x, spec.as_deref(), Meta::Set(&k, &v))
                }
                MetaCmd::Remove { spec, key } => {
                    let k = need(&key, "metadata key")?;
                    extra::image_meta(&x, spec.as_deref(), Meta::Remove(&k))
                }
            }
        }
        Cmd::Feature { cmd } => match cmd {
            FeatureCmd::Enable { spec, features } => {
                extra::feature(&x, spec.as_deref(), &features, true)
            }
            FeatureCmd::Disable { spec, features } => {
                extra::feature(&x, spec.as_deref(), &features, false)
            }
        },
        Cmd::Cp {
            src,
            dst,
            dest_pool,
            dest,
        } => extra::copy(
            &x,
            src.as_deref(),
            dst.as_deref(),
            dest_pool.as_deref(),
            dest.as_deref(),
        ),
        Cmd::Other(args) => Err(extra::unsupported(&args)),
        Cmd::Lock { cmd } => match cmd {
            LockCmd::Ls { spec } => snaps::lock_ls(&x, spec.as_deref()),
            LockCmd::Add {
                spec,
                lock_id,
                shared,
            } => snaps::lock_add(&x, spec.as_deref(), lock_id.as_deref(), shared.as_deref()),
            LockCmd::Rm {
                spec,
                lock_id,
                locker,
            } => snaps::lock_rm(&x, spec.as_deref(), lock_id.as_deref(), locker.as_deref()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceph_conf_shale_keys() {
        let t = "[global]\nfsid = x\nshale store = file:///a\n[osd]\nshale_store = no\n\
                 [client.admin]\nshale-segment-size = 8M\n";
        assert_eq!(
            shale_keys(t),
            vec![
                ("store".to_string(), "file:///a".to_string()),
                ("segment_size".to_string(), "8M".to_string())
            ]
        );
    }
}
