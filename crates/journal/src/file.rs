//! The file under a log device, as a small trait: the real one (O_DIRECT writes, buffered
//! reads) and a simulated one for crash tests that loses what was not synced, in the ways a
//! power loss can — dropped writes, writes that landed out of order, and a write torn at a
//! sector boundary.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

use shale_error::{Error, Result};

/// Sector size a torn write can break at.
pub const TEAR: usize = 512;

/// Positioned I/O on one file.
pub trait LogFile: Send + Sync + std::fmt::Debug {
    /// Write all of `buf` at `off` (O_DIRECT rules: aligned buffer, offset and length).
    fn write_at(&self, buf: &[u8], off: u64) -> Result<()>;
    /// Read exactly `buf.len()` bytes at `off` (an error if the file is shorter).
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()>;
    /// Set the length (new bytes read as zeros).
    fn set_len(&self, len: u64) -> Result<()>;
    /// Make every write so far durable.
    fn sync(&self) -> Result<()>;
}

/// Where a ring journal lives: opened when a writer starts, removed when it stops cleanly (the
/// absence tells the next opener that nothing is left to replay). Built by the layer above and
/// handed to the engine, which never names a path itself.
pub trait LogPlace: Send + Sync + std::fmt::Debug {
    /// Open (or create) the file.
    fn open(&self) -> Result<std::sync::Arc<dyn LogFile>>;
    /// The writer stopped cleanly and the store holds everything: drop the file.
    fn remove(&self) -> Result<()>;
    /// A name for messages.
    fn name(&self) -> String;
}

/// A journal file in a directory (opened with [`DirectFile`]).
#[derive(Debug, Clone)]
pub struct DirectPlace(pub std::path::PathBuf);

impl LogPlace for DirectPlace {
    fn open(&self) -> Result<std::sync::Arc<dyn LogFile>> {
        Ok(std::sync::Arc::new(DirectFile::open(&self.0)?))
    }
    fn remove(&self) -> Result<()> {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("cannot remove {}", self.0.display()), e))
            }
            _ => Ok(()),
        }
    }
    fn name(&self) -> String {
        self.0.display().to_string()
    }
}

/// One file handed in (a simulated one, for crash tests); removing it is a no-op, so a test
/// can keep using it across clean stops.
#[derive(Debug, Clone)]
pub struct FixedPlace(pub std::sync::Arc<dyn LogFile>);

impl LogPlace for FixedPlace {
    fn open(&self) -> Result<std::sync::Arc<dyn LogFile>> {
        Ok(self.0.clone())
    }
    fn remove(&self) -> Result<()> {
        Ok(())
    }
    fn name(&self) -> String {
        format!("(handed-in journal {:p})", std::sync::Arc::as_ptr(&self.0))
    }
}

/// A real file: writes with O_DIRECT, reads through the page cache.
#[derive(Debug)]
pub struct DirectFile {
    direct: File,
    plain: File,
    name: String,
}

impl DirectFile {
    /// Open or create `path`.
    pub fn open(path: &Path) -> Result<DirectFile> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        let direct = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let plain = File::open(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        Ok(DirectFile {
            direct,
            plain,
            name: path.display().to_string(),
        })
    }
}

impl LogFile for DirectFile {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<()> {
        self.direct
            .write_all_at(buf, off)
            .map_err(|e| Error::io(format!("writing {}", self.name), e))
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        self.plain
            .read_exact_at(buf, off)
            .map_err(|e| Error::io(format!("reading {}", self.name), e))
    }
    fn set_len(&self, len: u64) -> Result<()> {
        self.direct
            .set_len(len)
            .map_err(|e| Error::io(format!("sizing {}", self.name), e))
    }
    fn sync(&self) -> Result<()> {
        self.direct
            .sync_data()
            .map_err(|e| Error::io(format!("syncing {}", self.name), e))
    }
}

/// An in-memory file that remembers which writes are not yet synced, for crash tests.
#[derive(Debug, Default)]
pub struct CrashFile {
    st: Mutex<CrashState>,
}

#[derive(Debug, Default, Clone)]
struct CrashState {
    /// What survives a crash for certain.
    durable: Vec<u8>,
    durable_len: u64,
    /// Writes since the last sync, in order, and the length as the program sees it.
    pending: Vec<(u64, Vec<u8>)>,
    len: u64,
}

impl CrashState {
    fn view(&self) -> Vec<u8> {
        let mut v = self.durable.clone();
        v.resize(self.len as usize, 0);
        for (off, b) in &self.pending {
            put(&mut v, *off, b);
        }
        v.truncate(self.len as usize);
        v
    }
}

fn put(v: &mut Vec<u8>, off: u64, b: &[u8]) {
    let end = off as usize + b.len();
    if v.len() < end {
        v.resize(end, 0);
    }
    v[off as usize..end].copy_from_slice(b);
}

/// What a crash does to the writes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashMode {
    /// Each unsynced write survives with this probability (0..=1000 per mille)...
    pub keep_per_mille: u32,
    /// ... in a random order (else in the order written);
    pub reorder: bool,
    /// and the last surviving write may be cut at a sector boundary.
    pub tear: bool,
}

impl CrashFile {
    pub fn new() -> Self {
        Self::default()
    }

    /// Its length as the program sees it.
    pub fn len(&self) -> u64 {
        self.st.lock().unwrap_or_else(|p| p.into_inner()).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes not yet synced.
    pub fn unsynced(&self) -> usize {
        self.st
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .len()
    }

    /// Simulate a power loss: keep what was synced, and of the unsynced writes what `mode`
    /// and the random source `next` (called for each decision) let through. The file then
    /// holds only that, all of it durable.
    pub fn crash(&self, mode: CrashMode, mut next: impl FnMut() -> u64) {
        let mut g = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept: Vec<(u64, Vec<u8>)> = g
            .pending
            .drain(..)
            .filter(|_| next() % 1000 < mode.keep_per_mille as u64)
            .collect();
        if mode.reorder {
            for i in (1..kept.len()).rev() {
                let j = (next() % (i as u64 + 1)) as usize;
                kept.swap(i, j);
            }
        }
        if mode.tear {
            if let Some((_, b)) = kept.last_mut() {
                let sectors = b.len().div_ceil(TEAR);
                let keep = (next() % (sectors as u64 + 1)) as usize * TEAR;
                b.truncate(keep.min(b.len()));
            }
        }
        let mut v = std::mem::take(&mut g.durable);
        for (off, b) in &kept {
            put(&mut v, *off, b);
        }
        let len = g.durable_len.max(g.len);
        v.resize(len as usize, 0);
        g.durable = v;
        g.durable_len = len;
        g.len = len;
    }
}

impl LogFile for CrashFile {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<()> {
        let mut g = self.st.lock().unwrap_or_else(|p| p.into_inner());
        g.pending.push((off, buf.to_vec()));
        g.len = g.len.max(off + buf.len() as u64);
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        let g = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let end = off + buf.len() as u64;
        if end > g.len {
            return Err(shale_error::err!(
                Io,
                "read past the end of a simulated file"
            ));
        }
        let v = g.view();
        buf.copy_from_slice(&v[off as usize..end as usize]);
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<()> {
        let mut g = self.st.lock().unwrap_or_else(|p| p.into_inner());
        // Length changes are metadata: make them (and everything before) durable at once,
        // as the real file's set_len + later syncs do for the journal's fixed-size file.
        let v = {
            let mut v = g.view();
            v.resize(len as usize, 0);
            v
        };
        g.durable = v;
        g.durable_len = len;
        g.pending.clear();
        g.len = len;
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        let mut g = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let v = g.view();
        g.durable = v;
        g.durable_len = g.len;
        g.pending.clear();
        Ok(())
    }
}
