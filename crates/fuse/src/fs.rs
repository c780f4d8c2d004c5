//! The FUSE file system: the pool's images as regular files in one flat directory.
//!
//! ```text
//!  kernel ──/dev/fuse──> session thread ──job──> workers ──> Image (shared per file)
//!                         (parses only)            reply <──┘
//! ```
//! Inodes are handed out per file name for the life of the mount (1 is the directory). An
//! image is opened on the first open() of its file, shared by every handle, and closed
//! (flushed, lock released) when the last handle is released. Every request that may touch
//! the store runs on a worker, so a slow one never holds up the rest.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};
use shale_error::{err, ErrorKind, Result};
use shale_image::{features, Cluster, Image};

use crate::names::FileName;
use crate::recorder::{Op, Recorder};
use crate::seek::{self, Whence};
use crate::work::Workers;

const ROOT: u64 = 1;
const SECTOR: u64 = 512;
/// Largest write the kernel may send in one request.
const MAX_WRITE: u32 = 1 << 20;

/// How the view is mounted.
#[derive(Debug, Clone)]
pub struct Options {
    pub pool: String,
    /// Every file read-only; no image is ever opened writable.
    pub read_only: bool,
    /// How long the kernel may cache names and attributes (sizes of images resized or
    /// created elsewhere show up after at most this long).
    pub ttl: Duration,
    /// Worker threads running requests (the I/O depth the mount serves at once).
    pub workers: usize,
}

impl Options {
    pub fn new(pool: &str) -> Options {
        Options {
            pool: pool.to_string(),
            read_only: false,
            ttl: Duration::from_secs(1),
            workers: 32,
        }
    }
}

/// A file of the view: an image head or one of its snapshots.
#[derive(Debug, Clone)]
struct Node {
    name: FileName,
    /// The image id the name resolved to when last looked up.
    id: String,
}

impl Node {
    /// The file name (the label metrics carry).
    fn file(&self) -> String {
        self.name
            .render()
            .unwrap_or_else(|| self.name.image.clone())
    }

    fn writable(&self, opts: &Options) -> bool {
        self.name.snap.is_none() && !opts.read_only
    }
}

#[derive(Default)]
struct Table {
    by_name: HashMap<FileName, u64>,
    nodes: HashMap<u64, Node>,
    next: u64,
}

impl Table {
    fn intern(&mut self, name: FileName, id: &str) -> u64 {
        if let Some(&ino) = self.by_name.get(&name) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.id = id.to_string();
            }
            return ino;
        }
        self.next = self.next.max(ROOT) + 1;
        let ino = self.next;
        self.by_name.insert(name.clone(), ino);
        self.nodes.insert(
            ino,
            Node {
                name,
                id: id.to_string(),
            },
        );
        ino
    }
}

/// The open image behind a file, shared by its handles.
#[derive(Default)]
struct Slot {
    st: Mutex<SlotState>,
    cv: Condvar,
}

#[derive(Default)]
struct SlotState {
    img: Option<Arc<Image>>,
    handles: u64,
    /// Being opened or closed: wait.
    busy: bool,
    /// The mount is shutting down: no more opens.
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// State shared by the session and the workers (and the shutdown path).
pub(crate) struct Shared {
    cluster: Cluster,
    opts: Options,
    table: Mutex<Table>,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    /// The directory listing, rebuilt by a readdir from offset 0.
    listing: Mutex<Vec<(u64, String)>>,
    recorder: Arc<dyn Recorder>,
    mounted_at: SystemTime,
    pub(crate) workers: Workers,
}

/// The errno for an error of the image layer.
fn errno(e: &shale_error::Error) -> i32 {
    match e.kind() {
        ErrorKind::Unsupported => libc::EOPNOTSUPP,
        ErrorKind::Unavailable | ErrorKind::Fenced => libc::EIO,
        k => k.errno(),
    }
}

impl Shared {
    pub(crate) fn new(
        cluster: Cluster,
        opts: Options,
        recorder: Arc<dyn Recorder>,
    ) -> std::io::Result<Shared> {
        let workers = Workers::new(opts.workers)?;
        Ok(Shared {
            cluster,
            opts,
            table: Mutex::default(),
            slots: Mutex::default(),
            listing: Mutex::default(),
            recorder,
            #[allow(clippy::disallowed_methods)] // file times only
            mounted_at: SystemTime::now(),
            workers,
        })
    }

    fn pool(&self) -> &str {
        &self.opts.pool
    }

    fn node(&self, ino: u64) -> Result<Node> {
        lock(&self.table)
            .nodes
            .get(&ino)
            .cloned()
            .ok_or_else(|| err!(NotFound, "no file with inode {ino}"))
    }

    fn slot(&self, ino: u64) -> Arc<Slot> {
        lock(&self.slots).entry(ino).or_default().clone()
    }

    /// The image open behind `ino`, if any handle has it open.
    fn open_image(&self, ino: u64) -> Option<Arc<Image>> {
        let s = lock(&self.slots).get(&ino).cloned()?;
        let g = lock(&s.st);
        g.img.clone()
    }

    /// Resolve a name to (inode, size): the image must exist now (and the snapshot).
    fn resolve(&self, name: FileName) -> Result<(u64, u64)> {
        let id = self.cluster.image_id(self.pool(), &name.image)?;
        let (size, snaps) = self.cluster.image_brief(self.pool(), &id)?;
        let size = match &name.snap {
            None => size,
            Some(s) => {
                snaps
                    .iter()
                    .find(|x| &x.name == s)
                    .ok_or_else(|| err!(NotFound, "no snapshot {s}"))?
                    .size
            }
        };
        Ok((lock(&self.table).intern(name, &id), size))
    }

    /// Attributes of a file. Size and allocation come from the open image when the file is
    /// open, else from a short-lived read-only open. `st_blocks` counts the sectors the image
    /// itself holds data for (not a clone's parent's).
    fn attr(&self, ino: u64) -> Result<FileAttr> {
        if ino == ROOT {
            return Ok(self.file_attr(ROOT, FileType::Directory, 0, 0, 0o755));
        }
        let node = self.node(ino)?;
        let img = match self.open_image(ino) {
            Some(i) => i,
            None => Arc::new(self.open_by_node(&node, true)?),
        };
        let size = img.size();
        // The space this image uses: its own data (a clone's parent data is the parent's).
        let blocks = seek::blocks(&img.allocated(0, size.div_ceil(SECTOR)));
        let perm = if node.writable(&self.opts) {
            0o644
        } else {
            0o444
        };
        Ok(self.file_attr(ino, FileType::RegularFile, size, blocks, perm))
    }

    fn file_attr(&self, ino: u64, kind: FileType, size: u64, blocks: u64, perm: u16) -> FileAttr {
        let t = self.mounted_at;
        FileAttr {
            ino,
            size,
            blocks,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn open_by_node(&self, node: &Node, read_only: bool) -> Result<Image> {
        let c = &self.cluster;
        match &node.name.snap {
            Some(s) => c.open_image_at(self.pool(), &node.name.image, s),
            None => c.open_image_by_id(self.pool(), &node.id, read_only),
        }
    }

    /// Open (or share) the image behind `ino` for a new handle.
    fn open_handle(&self, ino: u64) -> Result<()> {
        let node = self.node(ino)?;
        let slot = self.slot(ino);
        let mut g = lock(&slot.st);
        while g.busy {
            g = slot.cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        if g.closed {
            return Err(err!(Unavailable, "the mount is shutting down"));
        }
        if g.img.is_none() {
            g.busy = true;
            drop(g);
            let r = self.open_by_node(&node, !node.writable(&self.opts));
            g = lock(&slot.st);
            g.busy = false;
            slot.cv.notify_all();
            let img = Arc::new(r?);
            // Other clients' maintenance operations (snapshot, resize, location changes) run
            // here while this mount holds the lock, as librbd's owner does for them.
            let weak = Arc::downgrade(&img);
            img.set_proxy_handler(Arc::new(move |run| {
                let img = weak
                    .upgrade()
                    .ok_or_else(|| err!(Busy, "the file was closed"))?;
                run(&img)
            }));
            self.recorder.opened(self.pool(), &node.file(), &img);
            g.img = Some(img);
        }
        g.handles += 1;
        Ok(())
    }

    /// The last handle gone: flush, release the lock, close.
    fn release_handle(&self, ino: u64) -> Result<()> {
        let slot = self.slot(ino);
        let mut g = lock(&slot.st);
        g.handles = g.handles.saturating_sub(1);
        if g.handles > 0 {
            return Ok(());
        }
        let Some(img) = g.img.take() else {
            return Ok(());
        };
        g.busy = true;
        drop(g);
        if let Ok(node) = self.node(ino) {
            self.recorder.closed(self.pool(), &node.file());
        }
        let r = close_image(img);
        let mut g = lock(&slot.st);
        g.busy = false;
        slot.cv.notify_all();
        r
    }

    /// Shutdown: close every open image (after the workers stopped). The first error is
    /// returned; every image is closed regardless.
    pub(crate) fn close_all(&self) -> Result<()> {
        let slots: Vec<(u64, Arc<Slot>)> = lock(&self.slots)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut first = Ok(());
        for (ino, slot) in slots {
            let mut g = lock(&slot.st);
            while g.busy {
                g = slot.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            g.closed = true;
            if let Some(img) = g.img.take() {
                g.busy = true;
                drop(g);
                if let Ok(node) = self.node(ino) {
                    self.recorder.closed(self.pool(), &node.file());
                }
                if let Err(e) = close_image(img) {
                    tracing::error!("closing inode {ino}: {e}");
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
                let mut g = lock(&slot.st);
                g.busy = false;
                slot.cv.notify_all();
            }
        }
        first
    }

    /// The image of an open file (`fh` is the inode).
    fn handle(&self, ino: u64) -> Result<(Node, Arc<Image>)> {
        let node = self.node(ino)?;
        let img = self
            .open_image(ino)
            .ok_or_else(|| err!(Invalid, "inode {ino} is not open"))?;
        Ok((node, img))
    }

    fn record<T>(&self, node: &Node, op: Op, bytes: u64, t: Instant, r: &Result<T>) {
        self.recorder
            .record(self.pool(), &node.file(), op, bytes, t.elapsed(), r.is_ok());
    }

    fn read(&self, ino: u64, off: i64, len: u32) -> Result<Vec<u8>> {
        let (node, img) = self.handle(ino)?;
        let t = Instant::now();
        let off = u64::try_from(off).map_err(|_| err!(Invalid, "negative offset"))?;
        let size = img.size();
        let n = (len as u64).min(size.saturating_sub(off)) as usize;
        let mut buf = vec![0u8; n];
        let r = if n == 0 {
            Ok(0)
        } else {
            img.read(off, &mut buf)
        };
        self.record(&node, Op::Read, n as u64, t, &r);
        buf.truncate(r?);
        Ok(buf)
    }

    /// The checks every modifying request passes first: a writable file, a range inside it.
    fn writable(&self, node: &Node, img: &Image, off: i64, len: u64) -> Result<(u64, u64)> {
        if !node.writable(&self.opts) || img.is_read_only() {
            return Err(err!(ReadOnly, "{} is read-only", node.name.image));
        }
        let off = u64::try_from(off).map_err(|_| err!(Invalid, "negative offset"))?;
        let end = off
            .checked_add(len)
            .ok_or_else(|| err!(Invalid, "range overflows"))?;
        Ok((off, end))
    }

    /// The checks of a write: a writable file, a range inside the image (it does not grow by
    /// writing: the whole request is refused).
    fn write_range(&self, node: &Node, img: &Image, off: i64, len: usize) -> Result<u64> {
        let (off, end) = self.writable(node, img, off, len as u64)?;
        if end > img.size() {
            return Err(err!(
                NoSpace,
                "write [{off}, {end}) past the end of the image ({} bytes)",
                img.size()
            ));
        }
        Ok(off)
    }

    fn write(&self, ino: u64, off: i64, data: &[u8]) -> Result<u32> {
        let (node, img) = self.handle(ino)?;
        let t = Instant::now();
        let off = self.write_range(&node, &img, off, data.len())?;
        let r = img.write(off, data);
        self.record(&node, Op::Write, data.len() as u64, t, &r);
        r.map(|()| data.len() as u32)
    }

    fn flush(&self, ino: u64) -> Result<()> {
        let (node, img) = self.handle(ino)?;
        let t = Instant::now();
        let r = img.flush();
        self.record(&node, Op::Flush, 0, t, &r);
        r
    }

    fn fallocate(&self, ino: u64, off: i64, len: i64, mode: i32) -> Result<()> {
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;
        const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE;
        let (node, img) = self.handle(ino)?;
        let t = Instant::now();
        let op = match mode {
            m if m == PUNCH | KEEP => Op::Discard,
            m if m == ZERO || m == ZERO | KEEP => Op::WriteZeroes,
            _ => {
                return Err(err!(
                    Unsupported,
                    "fallocate mode {mode:#x}: only PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE"
                ))
            }
        };
        let len = u64::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| err!(Invalid, "fallocate length {len}"))?;
        let (off, mut end) = self.writable(&node, &img, off, len)?;
        let size = img.size();
        if end > size {
            if mode & KEEP == 0 {
                return Err(err!(NoSpace, "fallocate past the end of the image"));
            }
            end = size; // KEEP_SIZE: what lies past the end is not the file's
        }
        if off >= end {
            return Ok(());
        }
        let r = match op {
            Op::Discard => img.discard(off, end - off),
            _ => img.write_zeroes(off, end - off),
        };
        self.record(&node, op, end - off, t, &r);
        r
    }

    fn lseek(&self, ino: u64, off: i64, whence: i32) -> Result<Option<u64>> {
        let (_, img) = self.handle(ino)?;
        let whence = match whence {
            libc::SEEK_DATA => Whence::Data,
            libc::SEEK_HOLE => Whence::Hole,
            w => return Err(err!(Invalid, "lseek whence {w}")),
        };
        let off = u64::try_from(off).map_err(|_| err!(Invalid, "negative offset"))?;
        let size = img.size();
        if off >= size {
            return Ok(None);
        }
        let first = off / SECTOR;
        // What reads as data, exactly: for a clone, the parent chain's data it did not
        // overwrite or zero counts too.
        let runs = img.allocated_deep(first, size.div_ceil(SECTOR) - first);
        Ok(seek::seek(&runs, size, off, whence))
    }

    /// Re-list the pool: every image head and snapshot that exists now.
    fn relist(&self) -> Result<Vec<(u64, String)>> {
        let mut out = Vec::new();
        for e in self.cluster.list_images(self.pool())? {
            let (_, snaps) = match self.cluster.image_brief(self.pool(), &e.id) {
                Ok(b) => b,
                Err(x) if x.kind() == ErrorKind::NotFound => continue, // removed meanwhile
                Err(x) => return Err(x),
            };
            let names = std::iter::once(None).chain(snaps.into_iter().map(|s| Some(s.name)));
            for snap in names {
                let name = FileName {
                    image: e.name.clone(),
                    snap,
                };
                if let Some(shown) = name.render() {
                    let ino = lock(&self.table).intern(name, &e.id);
                    out.push((ino, shown));
                }
            }
        }
        Ok(out)
    }
}

/// Flush, give the exclusive lock up (which stores everything) and close.
fn close_image(img: Arc<Image>) -> Result<()> {
    let mut r = img.flush();
    if img.is_lock_owner() {
        let rel = img.lock_release();
        r = r.and(rel);
    }
    match Arc::try_unwrap(img) {
        Ok(img) => img.close().and(r),
        // A request still holds it: it closes when that one drops it.
        Err(_) => r,
    }
}

/// The `fuser` file system: parses on the session thread, runs on the workers.
pub(crate) struct ShaleFs {
    sh: Arc<Shared>,
}

impl ShaleFs {
    pub(crate) fn new(sh: Arc<Shared>) -> ShaleFs {
        ShaleFs { sh }
    }

    /// Run `f` on a worker; EIO at once when the mount is shutting down.
    fn spawn<R: ErrReply + Send + 'static>(
        &self,
        reply: R,
        f: impl FnOnce(&Shared, R) + Send + 'static,
    ) {
        let sh = self.sh.clone();
        let slot = Arc::new(Mutex::new(Some(reply)));
        let mine = slot.clone();
        let queued = self.sh.workers.run(move || {
            if let Some(r) = lock(&mine).take() {
                f(&sh, r)
            }
        });
        if queued.is_err() {
            if let Some(r) = lock(&slot).take() {
                r.fail(libc::EIO);
            }
        }
    }
}

/// Replies that can carry an errno.
trait ErrReply {
    fn fail(self, errno: i32);
}
macro_rules! err_reply {
    ($($t:ty),*) => {$(
        impl ErrReply for $t {
            fn fail(self, errno: i32) {
                self.error(errno)
            }
        }
    )*};
}
err_reply!(
    ReplyAttr,
    ReplyEntry,
    ReplyData,
    ReplyWrite,
    ReplyEmpty,
    ReplyOpen,
    ReplyDirectory,
    ReplyLseek
);

fn log_err(what: &str, e: &shale_error::Error) -> i32 {
    let n = errno(e);
    if n == libc::EIO {
        tracing::warn!("{what}: {e}");
    } else {
        tracing::debug!("{what}: {e}");
    }
    n
}

impl Filesystem for ShaleFs {
    fn init(
        &mut self,
        _req: &Request<'_>,
        config: &mut KernelConfig,
    ) -> std::result::Result<(), libc::c_int> {
        // Asynchronous direct I/O: the kernel keeps several requests of one file in flight.
        let _ = config.add_capabilities(fuser::consts::FUSE_ASYNC_DIO);
        let _ = config.set_max_write(MAX_WRITE);
        // Requests of asynchronous I/O the kernel keeps in flight (QD32 and more).
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let name = match (parent, FileName::parse(name)) {
            (ROOT, Some(n)) => n,
            _ => return reply.error(libc::ENOENT),
        };
        self.spawn(reply, move |sh, reply| {
            match sh.resolve(name).and_then(|(ino, _)| sh.attr(ino)) {
                Ok(a) => reply.entry(&sh.opts.ttl, &a, 0),
                Err(e) => reply.error(log_err("lookup", &e)),
            }
        });
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        self.spawn(reply, move |sh, reply| match sh.attr(ino) {
            Ok(a) => reply.attr(&sh.opts.ttl, &a),
            Err(e) => reply.error(log_err("getattr", &e)),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        // Times are not kept (accepted and ignored, so `touch` and `cp -p` work); owner and
        // mode are fixed; the size is the image's (`shale resize` changes it).
        self.spawn(reply, move |sh, reply| {
            let a = match sh.attr(ino) {
                Ok(a) => a,
                Err(e) => return reply.error(log_err("setattr", &e)),
            };
            if mode.is_some_and(|m| m & 0o7777 != u32::from(a.perm))
                || uid.is_some_and(|u| u != a.uid)
                || gid.is_some_and(|g| g != a.gid)
            {
                return reply.error(libc::EPERM);
            }
            if size.is_some_and(|s| s != a.size) {
                return reply.error(if a.perm & 0o200 == 0 {
                    libc::EROFS
                } else {
                    libc::EPERM
                });
            }
            reply.attr(&sh.opts.ttl, &a)
        });
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let wants_write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        self.spawn(reply, move |sh, reply| {
            let node = match sh.node(ino) {
                Ok(n) => n,
                Err(e) => return reply.error(log_err("open", &e)),
            };
            if wants_write && !node.writable(&sh.opts) {
                return reply.error(libc::EROFS);
            }
            match sh.open_handle(ino) {
                // Direct I/O always: no page cache, so no copy can go stale when another
                // host takes the image over, and O_DIRECT opens are served as they are.
                Ok(()) => reply.opened(ino, fuser::consts::FOPEN_DIRECT_IO),
                Err(e) => reply.error(log_err("open", &e)),
            }
        });
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        self.spawn(reply, move |sh, reply| match sh.read(ino, offset, size) {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(log_err("read", &e)),
        });
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        // The common case — the file is open and this mount already writes the image (holds
        // its lock, or it has none) — goes straight to the engine, and the reply goes out from
        // its completion: no worker in between, and concurrent writes meet in the group
        // commit. Everything else (taking the lock, errors) runs on a worker.
        let sh = &self.sh;
        let fast = sh.handle(ino).ok().filter(|(_, img)| {
            !img.is_read_only()
                && (img.is_lock_owner() || img.features() & features::EXCLUSIVE_LOCK == 0)
        });
        let Some((node, img)) = fast else {
            return self.spawn(reply, move |sh, reply| match sh.write(ino, offset, &data) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(log_err("write", &e)),
            });
        };
        let off = match sh.write_range(&node, &img, offset, data.len()) {
            Ok(o) => o,
            Err(e) => return reply.error(log_err("write", &e)),
        };
        // Counted as running, so a shutdown waits for the engine's answer.
        let Some(running) = sh.workers.enter() else {
            return reply.error(libc::EIO);
        };
        let t = Instant::now();
        let n = data.len();
        // Kept for a retry: the lock may move away between the check and the engine.
        let copy = data.clone();
        let sh = sh.clone();
        img.submit_write(
            off,
            data,
            Box::new(move |r| {
                match r {
                    Err(e) if e.kind() == ErrorKind::Unavailable => {
                        // The volume was closed under us (the lock went to another client):
                        // write again on a worker, which takes the lock back.
                        let replied = Arc::new(Mutex::new(Some(reply)));
                        let mine = replied.clone();
                        let queued = sh.workers.run({
                            let sh = sh.clone();
                            move || {
                                if let Some(reply) = lock(&mine).take() {
                                    match sh.write(ino, offset, &copy) {
                                        Ok(n) => reply.written(n),
                                        Err(e) => reply.error(log_err("write", &e)),
                                    }
                                }
                            }
                        });
                        if queued.is_err() {
                            if let Some(reply) = lock(&replied).take() {
                                reply.error(libc::EIO);
                            }
                        }
                    }
                    r => {
                        sh.record(&node, Op::Write, n as u64, t, &r);
                        match r {
                            Ok(()) => reply.written(n as u32),
                            Err(e) => reply.error(log_err("write", &e)),
                        }
                    }
                }
                drop(running);
            }),
        );
    }

    fn flush(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        self.spawn(reply, move |sh, reply| match sh.flush(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(log_err("flush", &e)),
        });
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        self.spawn(reply, move |sh, reply| match sh.flush(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(log_err("fsync", &e)),
        });
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(reply, move |sh, reply| match sh.release_handle(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(log_err("release", &e)),
        });
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.spawn(reply, move |sh, reply| {
            match sh.fallocate(ino, offset, length, mode) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(log_err("fallocate", &e)),
            }
        });
    }

    fn lseek(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.spawn(reply, move |sh, reply| {
            match sh.lseek(ino, offset, whence) {
                Ok(Some(o)) => reply.offset(o as i64),
                Ok(None) => reply.error(libc::ENXIO),
                Err(e) => reply.error(log_err("lseek", &e)),
            }
        });
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        self.spawn(reply, move |sh, mut reply| {
            if offset == 0 {
                match sh.relist() {
                    Ok(l) => *lock(&sh.listing) = l,
                    Err(e) => return reply.error(log_err("readdir", &e)),
                }
            }
            let listing = lock(&sh.listing).clone();
            let dots = [(ROOT, ".".to_string()), (ROOT, "..".to_string())];
            let all = dots
                .iter()
                .map(|(i, n)| (*i, FileType::Directory, n))
                .chain(listing.iter().map(|(i, n)| (*i, FileType::RegularFile, n)));
            for (k, (i, kind, name)) in all.enumerate().skip(offset.max(0) as usize) {
                if reply.add(i, k as i64 + 1, kind, name) {
                    break;
                }
            }
            reply.ok()
        });
    }

    // Names are the pool's: images are created, renamed and removed with `shale`.
    fn create(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(libc::EPERM)
    }
    fn mknod(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EPERM)
    }
    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EPERM)
    }
    fn unlink(&mut self, _req: &Request<'_>, _parent: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(libc::EPERM)
    }
    fn rmdir(&mut self, _req: &Request<'_>, _parent: u64, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(libc::EPERM)
    }
    fn rename(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _name: &OsStr,
        _newparent: u64,
        _newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(libc::EPERM)
    }
    fn link(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _newparent: u64,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EPERM)
    }
    fn symlink(
        &mut self,
        _req: &Request<'_>,
        _parent: u64,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(libc::EPERM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(image: &str, snap: Option<&str>) -> FileName {
        FileName {
            image: image.into(),
            snap: snap.map(str::to_string),
        }
    }

    #[test]
    fn inodes_are_stable_per_name_and_never_the_root() {
        let mut t = Table::default();
        let a = t.intern(name("a", None), "id1");
        let s = t.intern(name("a", Some("s")), "id1");
        let b = t.intern(name("b", None), "id2");
        assert!(a > ROOT && s > ROOT && b > ROOT);
        assert_ne!(a, s);
        assert_ne!(a, b);
        assert_eq!(t.intern(name("a", None), "id1"), a);
        // An image removed and created again under the same name: same file, new id.
        assert_eq!(t.intern(name("a", None), "id3"), a);
        assert_eq!(t.nodes[&a].id, "id3");
    }

    #[test]
    fn snapshots_and_read_only_mounts_are_not_writable() {
        let mut o = Options::new("rbd");
        let head = Node {
            name: name("a", None),
            id: "x".into(),
        };
        let snap = Node {
            name: name("a", Some("s")),
            id: "x".into(),
        };
        assert!(head.writable(&o));
        assert!(!snap.writable(&o));
        o.read_only = true;
        assert!(!head.writable(&o));
        assert_eq!(snap.file(), "a@s");
    }
}
