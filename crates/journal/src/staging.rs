//! Where an in-place log keeps the staging files of open segments, as a trait the engine is
//! handed (it never reaches around the store to files itself): the real one on a
//! local-directory store (`DirStaging`), and a simulated one whose files lose unsynced writes
//! at a crash (`SimStaging`, for crash tests on any store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shale_error::{err, Error, Result};
use shale_format::keys;
use shale_store::{ObjectStore, PutMode};

use crate::aligned::AlignedBuf;
use crate::file::{CrashFile, CrashMode, DirectFile, LogFile};

/// How many files of collected segments an image keeps to write over, by default (at the
/// default 8 MiB segments, up to 256 MiB of its store's space). GC frees segments in bursts
/// (a run relocates about as much as was written since the last one): 16 kept too few of a
/// burst under random overwrites (bench/results-compare.md).
pub const FREE_FILES: usize = 32;

/// Bytes zeroed at the first record's place of a file taken for reuse.
const FIRST_RECORD: usize = 4096;

/// One staging file: the open segment `seq` of the writer of `epoch`; `adopted` when a
/// takeover moved it aside (`adopt/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StagedFile {
    pub epoch: u64,
    pub seq: u64,
    pub adopted: bool,
}

/// The staging area of one image.
pub trait Staging: Send + Sync + std::fmt::Debug {
    /// The staging file of segment `seq` of the writer of `epoch`, created if absent. A new
    /// one may be the file of a collected segment (see [`Staging::retire`]) with its old
    /// bytes, except that the place of the first record, `reserve`, holds zeros, durably,
    /// before the file takes the staging name: a scan finds no record in it until one is
    /// written. (Old records further on never verify where a new one is expected: they carry
    /// another log's id or smaller record numbers.)
    fn open(&self, epoch: u64, seq: u64, reserve: u64) -> Result<Arc<dyn LogFile>>;
    /// Every staging file, in `open/` and `adopt/`.
    fn list(&self) -> Result<Vec<StagedFile>>;
    /// A staged file to read, and its length.
    fn read(&self, f: &StagedFile) -> Result<(Arc<dyn LogFile>, u64)>;
    /// Make `f` segment `f.seq`: `header` (exactly the reserved length) at its start, the
    /// `data_len` bytes of records after it, zero padding to a whole page and nothing else;
    /// durable, then visible under the segment key (`Exists` if that is taken), then the
    /// staging name is gone.
    fn publish(&self, f: &StagedFile, header: &[u8], data_len: u64) -> Result<()>;
    fn remove(&self, f: &StagedFile) -> Result<()>;
    /// A takeover by `new_epoch`: copy what older writers' staging files hold now to
    /// `adopt/`, then unlink the originals, so that whatever a fenced writer appends afterwards
    /// lands in a file nobody reads.
    fn adopt(&self, new_epoch: u64) -> Result<()>;
    /// Segment `seq` is collected (no map refers to it): rather than delete it, keep its file
    /// out of the store's view for a later [`Staging::open`] to write over. Blocks written
    /// over cost the file system no allocation: small O_DIRECT writes run twice as fast and
    /// `fdatasync` is a cache flush (ext4 here). `Ok(true)`: the segment is gone from the
    /// store (kept, or already gone); `Ok(false)`: nothing changed (no room kept, or the
    /// store cannot) and the caller deletes it.
    fn retire(&self, _seq: u64) -> Result<bool> {
        Ok(false)
    }
}

/// Staging files in a local-directory store, next to its objects
/// (`<prefix>open/<epoch>-<seq>`, `<prefix>adopt/<epoch>-<seq>`).
///
/// Collected segments' files wait in `<prefix>free/<seq>` to be written over (at most
/// [`FREE_FILES`] by default). A writer of epoch `e` takes one by renaming it to
/// `free/<seq>-<e>` (only one of two racing writers can), zeroes its first record's place,
/// syncs, and renames it to its staging name; claims of epoch `e` or older found later are
/// left over from a crash, or belong to a fenced writer, and are removed.
#[derive(Debug)]
pub struct DirStaging {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    free_max: usize,
}

impl DirStaging {
    /// `None` when `store` does not keep objects as local files.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Option<DirStaging> {
        store.local_path(&keys::header_in(prefix))?;
        Some(DirStaging {
            store,
            prefix: prefix.to_string(),
            free_max: FREE_FILES,
        })
    }

    /// Keep at most `n` files of collected segments to write over (0: delete them).
    pub fn with_free_files(mut self, n: usize) -> DirStaging {
        self.free_max = n;
        self
    }

    fn free_path(&self) -> Result<PathBuf> {
        let p = self.path(&(keys::free_dir(&self.prefix) + "0"))?;
        Ok(p.parent().unwrap_or(Path::new("/")).to_path_buf())
    }

    /// The entries of `free/`: (name, length).
    fn free_entries(&self, dir: &Path) -> Result<Vec<(String, u64)>> {
        let it = match std::fs::read_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?,
        };
        let mut out = Vec::new();
        for e in it {
            let e = e.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            // Gone meanwhile (taken by a writer): skip.
            if let Ok(m) = e.metadata() {
                out.push((name, m.len()));
            }
        }
        Ok(out)
    }

    /// Take a free file as the staging file `dest` (absent), or `None` if there is none.
    fn take_free(&self, epoch: u64, dest: &Path, reserve: u64) -> Result<Option<DirectFile>> {
        let dir = self.free_path()?;
        let io = |what: &str, p: &Path, e: std::io::Error| {
            Error::io(format!("{what} {}", p.display()), e)
        };
        let mut best: Option<(u64, String)> = None;
        for (name, len) in self.free_entries(&dir)? {
            match parse_free(&name) {
                // Claimed by this writer before a crash, or by a fenced one: nobody takes it
                // any further (a fenced writer's rename to its staging name fails or lands in
                // a file nobody reads).
                Some((_, Some(e))) if e <= epoch => {
                    let _ = std::fs::remove_file(dir.join(&name));
                }
                Some((_, None)) if best.as_ref().is_none_or(|b| len > b.0) => {
                    best = Some((len, name))
                }
                _ => {}
            }
        }
        let Some((len, name)) = best else {
            tracing::debug!("no freed segment file to write over: a new one");
            return Ok(None);
        };
        let claim = dir.join(format!("{name}-{epoch:016x}"));
        match std::fs::rename(dir.join(&name), &claim) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            r => r.map_err(|e| io("cannot claim", &claim, e))?,
        }
        {
            let f = DirectFile::open(&claim)?;
            if len > reserve {
                let mut zeros = AlignedBuf::with_capacity(FIRST_RECORD);
                zeros.fill(&[0u8; FIRST_RECORD], FIRST_RECORD);
                f.write_at(zeros.as_slice(), reserve)?;
            }
            f.sync()?;
        }
        let parent = dest.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(|e| io("cannot create", parent, e))?;
        std::fs::rename(&claim, dest).map_err(|e| io("cannot rename to", dest, e))?;
        // A fresh file's name is made durable by the journal commit of its first flush
        // (its blocks are new metadata); a file written over may have no metadata to commit,
        // so its name is synced here.
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync", parent, e))?;
        tracing::debug!("writing over freed segment file {name} ({len} bytes)");
        Ok(Some(DirectFile::open(dest)?))
    }

    fn key(&self, f: &StagedFile) -> String {
        let open = keys::staging(&self.prefix, f.epoch, f.seq);
        if f.adopted {
            keys::adopt_dir(&self.prefix) + &open[keys::open_dir(&self.prefix).len()..]
        } else {
            open
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        self.store
            .local_path(key)
            .ok_or_else(|| err!(Unsupported, "{key}: not a local-directory store"))
    }
}

/// A name in `free/`: `<seq>` (free) or `<seq>-<epoch>` (claimed by a writer of `epoch`).
fn parse_free(name: &str) -> Option<(u64, Option<u64>)> {
    match name.split_once('-') {
        Some((s, e)) => Some((keys::hex16(s)?, Some(keys::hex16(e)?))),
        None => Some((keys::hex16(name)?, None)),
    }
}

impl Staging for DirStaging {
    fn open(&self, epoch: u64, seq: u64, reserve: u64) -> Result<Arc<dyn LogFile>> {
        let path = self.path(&keys::staging(&self.prefix, epoch, seq))?;
        if self.free_max > 0 && std::fs::symlink_metadata(&path).is_err() {
            if let Some(f) = self.take_free(epoch, &path, reserve)? {
                return Ok(Arc::new(f));
            }
        }
        Ok(Arc::new(DirectFile::open(&path)?))
    }

    fn retire(&self, seq: u64) -> Result<bool> {
        if self.free_max == 0 || self.free_entries(&self.free_path()?)?.len() >= self.free_max {
            tracing::debug!("segment {seq:016x} freed: deleted (enough files kept)");
            return Ok(false);
        }
        let to = keys::free(&self.prefix, seq);
        match self.store.rename_local(&keys::seg(&self.prefix, seq), &to) {
            Ok(kept) => {
                tracing::debug!("segment {seq:016x} freed: file kept to write over");
                Ok(kept)
            }
            Err(e) if e.kind() == shale_error::ErrorKind::NotFound => Ok(true),
            // A file of the same number kept earlier (a number used again): delete this one.
            Err(e) if e.kind() == shale_error::ErrorKind::Exists => Ok(false),
            r => r,
        }
    }

    fn list(&self) -> Result<Vec<StagedFile>> {
        let mut out = Vec::new();
        for (dir, adopted) in [
            (keys::open_dir(&self.prefix), false),
            (keys::adopt_dir(&self.prefix), true),
        ] {
            for o in self.store.list(&dir)? {
                if let Some((epoch, seq)) = keys::parse_staging(&dir, &o.key) {
                    out.push(StagedFile {
                        epoch,
                        seq,
                        adopted,
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, f: &StagedFile) -> Result<(Arc<dyn LogFile>, u64)> {
        let path = self.path(&self.key(f))?;
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?
            .len();
        Ok((Arc::new(DirectFile::open(&path)?), len))
    }

    fn publish(&self, f: &StagedFile, header: &[u8], data_len: u64) -> Result<()> {
        let staging = self.path(&self.key(f))?;
        let dest = self.path(&keys::seg(&self.prefix, f.seq))?;
        crate::inplace::publish_file(&staging, header, data_len, &dest)
    }

    fn remove(&self, f: &StagedFile) -> Result<()> {
        let p = self.path(&self.key(f))?;
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", p.display()), e))
            }
            _ => Ok(()),
        }
    }

    fn adopt(&self, new_epoch: u64) -> Result<()> {
        for f in self.list()? {
            if f.adopted || f.epoch >= new_epoch {
                continue;
            }
            let src = self.path(&self.key(&f))?;
            let dst = self.path(&self.key(&StagedFile { adopted: true, ..f }))?;
            let io =
                |what: &str, e: std::io::Error| Error::io(format!("{what} {}", src.display()), e);
            // The file may go away meanwhile: its writer published it (a segment now) or
            // removed it — a writer that handed the lock over may still be storing its last
            // segments. Nothing is left to adopt then.
            let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
            let bytes = match std::fs::read(&src) {
                Err(e) if gone(&e) => continue,
                r => r.map_err(|e| io("reading", e))?,
            };
            if let Some(d) = dst.parent() {
                std::fs::create_dir_all(d).map_err(|e| io("adopting", e))?;
            }
            let mut out = std::fs::File::create(&dst).map_err(|e| io("adopting", e))?;
            std::io::Write::write_all(&mut out, &bytes).map_err(|e| io("adopting", e))?;
            out.sync_all().map_err(|e| io("adopting", e))?;
            if let Some(d) = dst.parent() {
                std::fs::File::open(d)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io("adopting", e))?;
            }
            match std::fs::remove_file(&src) {
                // Published or removed after we read it: the copy holds the same records
                // (recovery publishes it only where the log needs it).
                Err(e) if gone(&e) => {}
                r => r.map_err(|e| io("unlinking", e))?,
            }
        }
        Ok(())
    }
}

/// Simulated staging: files in memory that lose unsynced writes at [`SimStaging::crash`];
/// publishing stores the segment object in `store` (create-only). Retired segments become
/// free files with their bytes, written over by later staging files, as on a local store.
#[derive(Debug)]
pub struct SimStaging {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    files: Mutex<BTreeMap<StagedFile, Arc<CrashFile>>>,
    free: Mutex<Vec<Arc<CrashFile>>>,
    free_max: usize,
}

impl SimStaging {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> SimStaging {
        // Publishing is a local rename on a real store; here it is a PUT, retried like one.
        let store = Arc::new(
            shale_store::RetryStore::new(
                store,
                shale_store::Attempts::Limit(50),
                shale_clock::system(),
            )
            .with_backoff(
                std::time::Duration::from_millis(1),
                std::time::Duration::from_millis(20),
            ),
        );
        SimStaging {
            store,
            prefix: prefix.to_string(),
            files: Mutex::new(BTreeMap::new()),
            free: Mutex::new(Vec::new()),
            free_max: FREE_FILES,
        }
    }

    /// Keep at most `n` retired segments' files to write over (0: none).
    pub fn with_free_files(mut self, n: usize) -> SimStaging {
        self.free_max = n;
        self
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<Arc<CrashFile>>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<StagedFile, Arc<CrashFile>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A power loss: every staging file keeps only what `mode` lets through.
    pub fn crash(&self, mode: CrashMode, mut next: impl FnMut() -> u64) {
        for f in self.files().values() {
            f.crash(mode, &mut next);
        }
    }
}

impl Staging for SimStaging {
    fn open(&self, epoch: u64, seq: u64, reserve: u64) -> Result<Arc<dyn LogFile>> {
        let key = StagedFile {
            epoch,
            seq,
            adopted: false,
        };
        let mut g = self.files();
        if let Some(f) = g.get(&key) {
            return Ok(f.clone());
        }
        let f = match self.free().pop() {
            Some(f) => {
                if f.len() > reserve {
                    f.write_at(&[0u8; FIRST_RECORD], reserve)?;
                }
                f.sync()?;
                f
            }
            None => Arc::new(CrashFile::new()),
        };
        g.insert(key, f.clone());
        Ok(f)
    }

    fn retire(&self, seq: u64) -> Result<bool> {
        if self.free().len() >= self.free_max {
            return Ok(false);
        }
        let key = keys::seg(&self.prefix, seq);
        let bytes = match self.store.get(&key) {
            Err(e) if e.kind() == shale_error::ErrorKind::NotFound => return Ok(true),
            r => r?.0,
        };
        self.store.delete(&key)?;
        let f = CrashFile::new();
        f.write_at(&bytes, 0)?;
        f.sync()?;
        self.free().push(Arc::new(f));
        Ok(true)
    }

    fn list(&self) -> Result<Vec<StagedFile>> {
        Ok(self.files().keys().copied().collect())
    }

    fn read(&self, f: &StagedFile) -> Result<(Arc<dyn LogFile>, u64)> {
        let file = self
            .files()
            .get(f)
            .cloned()
            .ok_or_else(|| err!(NotFound, "no staging file {f:?}"))?;
        let len = file.len();
        Ok((file, len))
    }

    fn publish(&self, f: &StagedFile, header: &[u8], data_len: u64) -> Result<()> {
        let (file, len) = self.read(f)?;
        let data_len = data_len.min(len.saturating_sub(header.len() as u64));
        let mut obj = vec![0u8; header.len() + data_len as usize];
        file.read_at(&mut obj[header.len()..], header.len() as u64)?;
        obj[..header.len()].copy_from_slice(header);
        obj.resize(header.len() + (data_len as usize).div_ceil(4096) * 4096, 0);
        self.store.put(
            &keys::seg(&self.prefix, f.seq),
            bytes::Bytes::from(obj),
            PutMode::Create,
        )?;
        self.files().remove(f);
        Ok(())
    }

    fn remove(&self, f: &StagedFile) -> Result<()> {
        self.files().remove(f);
        Ok(())
    }

    fn adopt(&self, new_epoch: u64) -> Result<()> {
        let mut g = self.files();
        let old: Vec<StagedFile> = g
            .keys()
            .filter(|f| !f.adopted && f.epoch < new_epoch)
            .copied()
            .collect();
        for f in old {
            if let Some(file) = g.remove(&f) {
                // A copy: the fenced writer keeps appending to the file it holds.
                let copy = CrashFile::new();
                let len = file.len();
                let mut b = vec![0u8; len as usize];
                file.read_at(&mut b, 0)?;
                copy.write_at(&b, 0)?;
                copy.sync()?;
                g.insert(StagedFile { adopted: true, ..f }, Arc::new(copy));
            }
        }
        Ok(())
    }
}
