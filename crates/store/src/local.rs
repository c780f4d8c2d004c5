//! A store in a local directory (`file:///var/lib/shale`): one file per object.
//!
//! ```text
//!   <root>/<key>            the object, e.g. <root>/rbd/images/7f/seg/0000000000000001
//!   <root>/.shale-tmp/      new objects are written here first (<pid>-<counter>)
//!   <root>/.shale-lock      flock()ed around every check-and-rename (never delete it)
//! ```
//! Those two top-level names are reserved: keys starting with them are `Invalid`.
//!
//! Put protocol (whole-object atomic and durable once `put` returns):
//! 1. write the bytes to a new temp file, stamp a unique mtime, `fsync` it;
//! 2. take the lock (exclusive `flock` on `.shale-lock`, opened anew each time, so it excludes
//!    other threads of this process as well as other processes), check the mode's condition
//!    against the current file, `rename` the temp file over the key, release the lock;
//! 3. `fsync` the key's directory (and any directory created for it).
//!
//! A reader opens the file and keeps reading that inode, which is never modified in place, so a
//! reader sees one whole version. Deletes and all put modes take the same lock, so Create and
//! Update are atomic against every other mutation, across processes. The rename becomes
//! visible to other processes a moment before step 3 makes it durable; only a power loss can
//! undo it then, and that takes those processes down too.
//!
//! Version token: `<inode>-<mtime ns>-<size>` (hex). The inode alone is not enough (a freed
//! inode is reused at once, so A→B→A could repeat it); step 1 sets the mtime to a per-process
//! strictly increasing nanosecond clock, so two puts agree on all three only if two processes
//! stamp the same nanosecond *and* reuse the same inode — and the directory's filesystem must
//! keep nanosecond mtimes (ext4, xfs, btrfs, tmpfs do).
//!
//! Limits of a directory tree: a key cannot also be a directory, so `a/b` and `a/b/c` cannot
//! both exist (the second put gets `Invalid`). Engine keys never nest that way. Deleting the
//! last object of a directory removes the empty directories above it. A crash can leave files
//! in `.shale-tmp/`; they are never read and can be removed when no put is running.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt as _, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::{clamp_range, validate_key, Error, ObjectMeta, ObjectStore, PutMode, Result, Version};

const TMP_DIR: &str = ".shale-tmp";
const LOCK_FILE: &str = ".shale-lock";
/// Longest file name Linux filesystems accept.
const NAME_MAX: usize = 255;

/// A store rooted at a local directory. Cheap to share between threads.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    url: String,
    /// Open files of immutable segment objects (`…/seg/…`), so that the hot read path is one
    /// `pread`. Evicted when this store replaces or deletes the key; bounded.
    fds: std::sync::Mutex<std::collections::HashMap<String, (std::sync::Arc<File>, u64)>>,
}

/// Objects whose content never changes once written, and so may be read through a kept fd.
fn immutable(key: &str) -> bool {
    key.contains("/seg/")
}

const MAX_FDS: usize = 512;

/// Held while checking and renaming; dropping the file releases the flock.
struct CommitLock {
    _file: File,
}

impl LocalStore {
    /// Open (creating if missing) the store at directory `root`, which must be absolute.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        if !root.is_absolute() {
            return Err(invalid!("local store path {root:?} must be absolute"));
        }
        let url = format!("file://{}", root.display());
        fs::create_dir_all(root.join(TMP_DIR))
            .map_err(|e| Error::io(format!("cannot create local store {url}"), e))?;
        let store = LocalStore {
            root: root.to_path_buf(),
            url,
            fds: Default::default(),
        };
        drop(store.lock()?); // create the lock file and prove we can take it
        Ok(store)
    }

    /// The directory holding the objects.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`'s bytes (whether or not it exists). For callers that want to
    /// read objects without going through the store, e.g. to map a segment.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        let first = key.split('/').next().unwrap_or(key);
        if first == TMP_DIR || first == LOCK_FILE {
            return Err(invalid!(
                "object key {key:?}: {first:?} is reserved by the local store"
            ));
        }
        if key.split('/').any(|c| c.len() > NAME_MAX) {
            return Err(invalid!(
                "object key {key:?} has a component longer than {NAME_MAX} bytes"
            ));
        }
        // Components are validated (no "", ".", ".."; no leading '/'), so this stays under root.
        Ok(self.root.join(key))
    }

    fn lock(&self) -> Result<CommitLock> {
        let path = self.root.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.io_err("cannot open lock file of", e))?;
        // The trait's method, not std's `File::lock` (newer than our MSRV); both use flock(2).
        fs4::FileExt::lock(&file).map_err(|e| self.io_err("cannot lock", e))?;
        Ok(CommitLock { _file: file })
    }

    fn io_err(&self, what: &str, e: io::Error) -> Error {
        Error::io(format!("{what} {}", self.url), e)
    }

    fn key_err(&self, key: &str, what: &str, e: io::Error) -> Error {
        Error::io(format!("{what} object {key:?} in {}", self.url), e)
    }

    fn not_found(&self, key: &str) -> Error {
        Error::not_found(format!("object {key:?} not found in {}", self.url))
    }

    fn conflict(&self, key: &str) -> Error {
        invalid!(
            "object {key:?} in {}: a key cannot be both an object and a prefix of other keys in \
             a local store",
            self.url
        )
    }

    /// Open `key` for reading; `NotFound` if it does not exist (or is a directory).
    fn open_object(&self, key: &str) -> Result<(File, Metadata)> {
        let path = self.path_of(key)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_missing(&e) => return Err(self.not_found(key)),
            Err(e) => return Err(self.key_err(key, "cannot open", e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| self.key_err(key, "cannot stat", e))?;
        if !meta.is_file() {
            return Err(self.not_found(key));
        }
        Ok((file, meta))
    }

    /// Create the missing directories from root down to `dir`, syncing each new entry's parent.
    fn make_dirs(&self, key: &str, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(()); // the common case: one stat
        }
        let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let mut cur = self.root.clone();
        for comp in rel.components() {
            let parent = cur.clone();
            cur.push(comp);
            match fs::create_dir(&cur) {
                Ok(()) => {
                    sync_dir(&parent).map_err(|e| self.key_err(key, "cannot sync dir of", e))?
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !cur.is_dir() {
                        return Err(self.conflict(key));
                    }
                }
                Err(e) if e.raw_os_error() == Some(ENOTDIR) => return Err(self.conflict(key)),
                Err(e) => return Err(self.key_err(key, "cannot create directory for", e)),
            }
        }
        Ok(())
    }

    /// Step 1: a synced temp file holding `data`, and the version it will have.
    fn write_temp(&self, key: &str, data: &[u8]) -> Result<(PathBuf, Version)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp_dir = self.root.join(TMP_DIR);
        for _attempt in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = tmp_dir.join(format!("{}-{n}", std::process::id()));
            let mut file = match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
            {
                Ok(f) => f,
                // Left behind by a crashed process that had our pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if is_missing(&e) => {
                    // Someone removed the temp directory; recreate it and retry.
                    fs::create_dir_all(&tmp_dir)
                        .map_err(|e| self.key_err(key, "cannot create temp dir for", e))?;
                    continue;
                }
                Err(e) => return Err(self.key_err(key, "cannot create temp file for", e)),
            };
            let result = (|| {
                file.write_all(data)?;
                file.set_modified(unique_mtime())?;
                file.sync_all()?;
                file.metadata()
            })();
            return match result {
                Ok(meta) => Ok((tmp, version_of(&meta))),
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    Err(self.key_err(key, "cannot write", e))
                }
            };
        }
        Err(Error::new(
            crate::ErrorKind::Io,
            format!(
                "cannot create a temp file for object {key:?} in {}",
                self.url
            ),
        ))
    }

    /// Step 2, under the lock: check `mode` against the current object and rename.
    fn commit(&self, key: &str, path: &Path, tmp: &Path, mode: &PutMode) -> Result<()> {
        let _lock = self.lock()?;
        let current = match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => Some(m),
            Ok(_) => return Err(self.conflict(key)),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(self.key_err(key, "cannot stat", e)),
        };
        match (mode, &current) {
            (PutMode::Overwrite, _) | (PutMode::Create, None) => {}
            (PutMode::Create, Some(_)) => {
                return Err(Error::exists(format!(
                    "object {key:?} already exists in {}",
                    self.url
                )))
            }
            (PutMode::Update(_), None) => return Err(self.not_found(key)),
            (PutMode::Update(want), Some(m)) => {
                let have = version_of(m);
                if have != *want {
                    return Err(Error::busy(format!(
                        "object {key:?} in {} changed: version is {}, expected {}",
                        self.url, have.0, want.0
                    )));
                }
            }
        }
        match fs::rename(tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => {
                // A delete removed the (then empty) directory after `make_dirs`; we hold the
                // lock now, so it cannot happen again.
                if let Some(dir) = path.parent() {
                    self.make_dirs(key, dir)?;
                }
                fs::rename(tmp, path).map_err(|e| self.key_err(key, "cannot rename into", e))
            }
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => Err(self.conflict(key)),
            Err(e) => Err(self.key_err(key, "cannot rename into", e)),
        }
    }
}

const ENOTDIR: i32 = 20;

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn version_of(m: &Metadata) -> Version {
    Version(format!(
        "{:x}-{:x}.{:x}-{:x}",
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.size()
    ))
}

/// A wall-clock time in nanoseconds, strictly increasing within this process.
fn unique_mtime() -> SystemTime {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1))
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return UNIX_EPOCH + Duration::from_nanos(next),
            Err(seen) => last = seen,
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl ObjectStore for LocalStore {
    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path_of(key).ok()
    }

    fn rename_local(&self, key: &str, to: &str) -> Result<bool> {
        let from = self.path_of(key)?;
        let dest = self.path_of(to)?;
        let dir = from.parent().unwrap_or(&self.root).to_path_buf();
        let dest_dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let left = {
            let _lock = self.lock()?;
            // A handle kept for `key` would read the file's new bytes once it is written
            // over. (The caller makes sure no read of `key` is in flight: one that opened it
            // before the rename could keep its handle afterwards.)
            self.fds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            match fs::symlink_metadata(&from) {
                Ok(m) if m.is_file() => {}
                Ok(_) => return Err(self.not_found(key)),
                Err(e) if is_missing(&e) => return Err(self.not_found(key)),
                Err(e) => return Err(self.key_err(key, "cannot stat", e)),
            }
            self.make_dirs(to, &dest_dir)?;
            if fs::symlink_metadata(&dest).is_ok() {
                return Err(shale_error::err!(
                    Exists,
                    "object {to:?} already exists in {}",
                    self.url
                ));
            }
            fs::rename(&from, &dest).map_err(|e| self.key_err(key, "cannot rename", e))?;
            self.prune_empty_dirs(dir)
        };
        sync_dir(&dest_dir)
            .and_then(|_| sync_dir(&left))
            .map_err(|e| self.key_err(key, "cannot sync directory after renaming", e))?;
        Ok(true)
    }

    fn get(&self, key: &str) -> Result<(Bytes, Version)> {
        let (mut file, meta) = self.open_object(key)?;
        let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut buf)
            .map_err(|e| self.key_err(key, "cannot read", e))?;
        Ok((Bytes::from(buf), version_of(&meta)))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let cached = self
            .fds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        let (file, size) = match cached {
            Some(f) => f,
            None => {
                let (file, meta) = self.open_object(key)?;
                let f = (std::sync::Arc::new(file), meta.len());
                if immutable(key) {
                    let mut m = self.fds.lock().unwrap_or_else(|p| p.into_inner());
                    if m.len() >= MAX_FDS {
                        m.clear();
                    }
                    m.insert(key.to_string(), f.clone());
                }
                f
            }
        };
        let r = clamp_range(key, &range, size)?;
        let len = usize::try_from(r.end - r.start)
            .map_err(|_| invalid!("object {key:?}: range {range:?} too large for memory"))?;
        let mut buf = vec![0u8; len];
        // The inode we opened is never written after its rename, so its size is stable and a
        // short read means outside interference.
        file.read_exact_at(&mut buf, r.start).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::corruption(format!(
                    "object {key:?} in {} shrank while being read (modified outside the store?)",
                    self.url
                ))
            } else {
                self.key_err(key, "cannot read", e)
            }
        })?;
        Ok(Bytes::from(buf))
    }

    fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version> {
        self.fds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        self.make_dirs(key, &dir)?;
        let (tmp, version) = self.write_temp(key, &data)?;
        if let Err(e) = self.commit(key, &path, &tmp, &mode) {
            let _ = fs::remove_file(&tmp);
            // Do not leave behind directories made for an object that was not written.
            if let Ok(_lock) = self.lock() {
                self.prune_empty_dirs(dir);
            }
            return Err(e);
        }
        sync_dir(&dir).map_err(|e| self.key_err(key, "cannot sync directory of", e))?;
        Ok(version)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.fds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        let path = self.path_of(key)?;
        let mut dir = path.parent().unwrap_or(&self.root).to_path_buf();
        {
            let _lock = self.lock()?;
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => {}
                // A directory is a prefix of other keys, not an object: nothing to delete.
                Ok(_) => return Ok(()),
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => return Err(self.key_err(key, "cannot stat", e)),
            }
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => return Ok(()),
                Err(e) => return Err(self.key_err(key, "cannot delete", e)),
            }
            dir = self.prune_empty_dirs(dir);
        }
        sync_dir(&dir).map_err(|e| self.key_err(key, "cannot sync directory after deleting", e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // Start at the deepest directory the prefix names in full ("a/b/c" -> "a/b/"), if that
        // part is a well-formed key; otherwise walk from the root and filter.
        let (start_dir, key_base) = match prefix.rfind('/') {
            Some(i) if self.path_of(&prefix[..i]).is_ok() => {
                (self.root.join(&prefix[..i]), prefix[..=i].to_string())
            }
            _ => (self.root.clone(), String::new()),
        };
        let mut out = Vec::new();
        self.walk(&start_dir, &key_base, prefix, &mut out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn url(&self) -> String {
        self.url.clone()
    }
}

impl LocalStore {
    /// Remove `dir` and its ancestors below the root while they are empty; returns the first
    /// directory left standing. Call with the lock held: a put renames into its directory only
    /// under the lock, and re-creates it there if it vanished.
    fn prune_empty_dirs(&self, mut dir: PathBuf) -> PathBuf {
        // `remove_dir` fails on a non-empty directory, which ends the walk.
        while dir != self.root && dir.starts_with(&self.root) && fs::remove_dir(&dir).is_ok() {
            match dir.parent() {
                Some(p) => dir = p.to_path_buf(),
                None => break,
            }
        }
        dir
    }

    /// Add the objects under `dir` (whose keys start with `key_base`) that match `prefix`.
    fn walk(
        &self,
        dir: &Path,
        key_base: &str,
        prefix: &str,
        out: &mut Vec<ObjectMeta>,
    ) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(it) => it,
            // Gone (deleted concurrently) or a file where the prefix expects a directory.
            Err(e) if is_missing(&e) || e.raw_os_error() == Some(ENOTDIR) => return Ok(()),
            Err(e) => return Err(self.io_err(&format!("cannot list {}", dir.display()), e)),
        };
        for entry in entries {
            let entry =
                entry.map_err(|e| self.io_err(&format!("cannot list {}", dir.display()), e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: not written by this store
            };
            if key_base.is_empty() && (name == TMP_DIR || name == LOCK_FILE) {
                continue;
            }
            let key = format!("{key_base}{name}");
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                let sub = format!("{key}/");
                if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                    self.walk(&entry.path(), &sub, prefix, out)?;
                }
            } else if ft.is_file() && key.starts_with(prefix) {
                match entry.metadata() {
                    Ok(m) => out.push(ObjectMeta { key, size: m.len() }),
                    Err(e) if is_missing(&e) => {} // deleted while listing
                    Err(e) => return Err(self.key_err(&key, "cannot stat", e)),
                }
            }
        }
        Ok(())
    }
}
