//! `shale mount`: a FUSE file view of one pool.
//!
//! ```text
//! MOUNT/                 the pool (re-listed on readdir; names looked up in the store)
//! MOUNT/vm1              image vm1: a regular file, size = image size, read/write
//! MOUNT/vm1@gold         snapshot gold of vm1: read-only
//! ```
//! Reads, writes, fsync, fallocate (PUNCH_HOLE|KEEP_SIZE → discard, ZERO_RANGE →
//! write-zeroes) and lseek (SEEK_DATA / SEEK_HOLE from the extent map) go to the image layer;
//! all I/O is direct (no page cache). One writer per image: the image layer's exclusive lock,
//! taken on the first write and handed over to another writer on request. On unmount
//! (`fusermount -u`) or SIGTERM / SIGINT every image is flushed and closed, its lock
//! released, and [`mount`] returns. See docs/adr/0008-fuse-view.md.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a front end: real time is fine here (latency, file times)

mod fs;
pub mod names;
pub mod recorder;
pub mod seek;
mod work;

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use shale_error::{err, Result};
use shale_image::Cluster;

pub use fs::Options;
pub use recorder::{NoRecorder, Op, Recorder};

enum Event {
    /// The session ended: the file system was unmounted (or the connection failed).
    Ended(std::io::Result<()>),
    /// A termination signal arrived.
    Signal(i32),
}

/// Mount the view of `opts.pool` on `dir` and serve it until it is unmounted or the process
/// gets SIGTERM / SIGINT / SIGHUP. Then every open image is flushed, its lock released and
/// closed; an error there is returned (the data may not all be stored).
///
/// `ready` is called once the file system is mounted.
pub fn mount(
    cluster: Cluster,
    dir: &Path,
    opts: Options,
    recorder: Arc<dyn Recorder>,
    ready: impl FnOnce(),
) -> Result<()> {
    use fuser::MountOption as M;
    cluster.pool_id(&opts.pool)?;
    let meta =
        std::fs::metadata(dir).map_err(|e| err!(NotFound, "mount point {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(err!(
            Invalid,
            "mount point {} is not a directory",
            dir.display()
        ));
    }
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut mopts = vec![
        M::FSName(format!("shale:{}", opts.pool)),
        M::Subtype("shale".into()),
        M::NoDev,
        M::NoSuid,
        M::NoExec,
    ];
    if opts.read_only {
        mopts.push(M::RO);
    }
    let shared = Arc::new(
        fs::Shared::new(cluster, opts, recorder)
            .map_err(|e| err!(Io, "starting worker threads: {e}"))?,
    );
    let mut session = fuser::Session::new(fs::ShaleFs::new(shared.clone()), dir, &mopts)
        .map_err(|e| err!(Io, "mounting on {}: {e}", dir.display()))?;
    let mut unmounter = session.unmount_callable();

    let (tx, rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| err!(Io, "installing signal handlers: {e}"))?;
    let sig_handle = signals.handle();
    let sig_tx = tx.clone();
    let sig_thread = std::thread::spawn(move || {
        if let Some(s) = signals.forever().next() {
            let _ = sig_tx.send(Event::Signal(s));
        }
    });
    let run_thread = std::thread::Builder::new()
        .name("shale-fuse-session".into())
        .spawn(move || {
            let r = session.run();
            let _ = tx.send(Event::Ended(r));
            session
        })
        .map_err(|e| err!(Io, "starting the session thread: {e}"))?;
    ready();

    let event = rx.recv().unwrap_or(Event::Ended(Ok(())));
    // From here on new requests get EIO; running ones finish (their replies go out first).
    shared.workers.stop();
    let closed = shared.close_all();
    match &event {
        Event::Signal(s) => {
            tracing::info!("signal {s}: images closed, unmounting {}", dir.display());
            // Not busy: the session ends. Busy (files still open): detach it lazily; the
            // kernel fails the open files' further requests once this process is gone.
            if let Err(e) = unmounter.unmount() {
                tracing::debug!("unmount: {e}");
            }
            if is_mounted(&canon) {
                lazy_unmount(&canon);
            }
        }
        Event::Ended(Err(e)) => tracing::warn!("FUSE session ended: {e}"),
        Event::Ended(Ok(())) => {}
    }
    sig_handle.close();
    let _ = sig_thread.join();
    if matches!(event, Event::Ended(_)) {
        let _ = run_thread.join();
    }
    closed
}

/// Whether a FUSE file system is mounted on `dir` (an absolute path), per /proc/mounts.
fn is_mounted(dir: &Path) -> bool {
    // /proc/mounts escapes space, tab, newline and backslash in octal.
    let mut want = String::new();
    for c in dir.to_string_lossy().chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => want.push_str(&format!("\\{:03o}", c as u32)),
            c => want.push(c),
        }
    }
    std::fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split(' ');
            f.nth(1) == Some(want.as_str()) && f.next().is_some_and(|t| t.starts_with("fuse"))
        })
    })
}

/// Detach the mount even though files are open (`umount -l`).
fn lazy_unmount(dir: &Path) {
    for (cmd, args) in [
        ("fusermount3", &["-u", "-z"][..]),
        ("fusermount", &["-u", "-z"][..]),
        ("umount", &["-l"][..]),
    ] {
        if std::process::Command::new(cmd)
            .args(args)
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return;
        }
    }
    tracing::warn!("could not unmount {}", dir.display());
}
