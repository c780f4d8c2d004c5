//! Where an in-place log keeps the staging files of open segments, as a trait the engine is
//! handed (it never reaches around the store to files itself): the real one on a
//! local-directory store (`DirStaging`), and a simulated one whose files lose unsynced writes
//! at a crash (`SimStaging`, for crash tests on any store).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use shale_error::{err, Error, Result};
use shale_format::keys;
use shale_store::{ObjectStore, PutMode};

use crate::file::{CrashFile, CrashMode, DirectFile, LogFile};

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
    /// The staging file of segment `seq` of the writer of `epoch`, created if absent.
    fn open(&self, epoch: u64, seq: u64) -> Result<Arc<dyn LogFile>>;
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
}

/// Staging files in a local-directory store, next to its objects
/// (`<prefix>open/<epoch>-<seq>`, `<prefix>adopt/<epoch>-<seq>`).
#[derive(Debug)]
pub struct DirStaging {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl DirStaging {
    /// `None` when `store` does not keep objects as local files.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Option<DirStaging> {
        store.local_path(&keys::header_in(prefix))?;
        Some(DirStaging {
            store,
            prefix: prefix.to_string(),
        })
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

impl Staging for DirStaging {
    fn open(&self, epoch: u64, seq: u64) -> Result<Arc<dyn LogFile>> {
        let path = self.path(&keys::staging(&self.prefix, epoch, seq))?;
        Ok(Arc::new(DirectFile::open(&path)?))
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
/// publishing stores the segment object in `store` (create-only).
#[derive(Debug)]
pub struct SimStaging {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    files: Mutex<BTreeMap<StagedFile, Arc<CrashFile>>>,
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
        }
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
    fn open(&self, epoch: u64, seq: u64) -> Result<Arc<dyn LogFile>> {
        let key = StagedFile {
            epoch,
            seq,
            adopted: false,
        };
        let f = self.files().entry(key).or_default().clone();
        Ok(f)
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
