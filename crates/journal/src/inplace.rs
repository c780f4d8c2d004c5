//! The in-place log: on a local-directory store, records are written straight into the open
//! segment's staging file (`<image>/open/<seq>`), after a reserved header region. Sealing
//! writes the segment header into that region, syncs, and links the file to its segment key:
//! the device sees each client byte once.
//!
//! ```text
//!  staging file:  [ reserved header region | record | record | record | ... ]
//!  published:     [ segment header + pad   | record | record | record | pad ]  (same bytes)
//! ```
//! Segment entries point at the data sectors inside the records; the record headers are
//! unreferenced sectors of the data area. After a crash, a staging file's valid record prefix
//! is exactly the segment's content: recovery publishes it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use shale_error::{err, Error, Result};
use shale_format::record::{self, Op, RecordKind};

use crate::aligned::AlignedBuf;
use crate::file::LogFile;
use crate::staging::Staging;
use crate::{LogDevice, LogStats, RecordBytes};

const SECTOR: u64 = 512;

#[derive(Debug)]
struct St {
    next_seq: u64,
    cur: Option<(u64, Arc<dyn LogFile>)>,
    dirty: Vec<Arc<dyn LogFile>>,
    stats: LogStats,
}

/// Records written into staging files of a local store.
pub struct InPlaceLog {
    id: u64,
    header_reserve: u64,
    staging: Arc<dyn Staging>,
    /// The writer epoch whose staging files this log writes.
    epoch: u64,
    st: Mutex<St>,
}

impl std::fmt::Debug for InPlaceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InPlaceLog({:016x})", self.id)
    }
}

/// A record recovered from a staging file.
#[derive(Debug, Clone)]
pub struct StagedRecord {
    pub journal_id: u64,
    pub seq: u64,
    /// Byte offset of the record in the segment's data area.
    pub off: u64,
    pub bytes: Vec<u8>,
}

impl InPlaceLog {
    /// A log with id `id` whose next record is `next_seq`, writing the staging files of
    /// writer `epoch` in `staging`; segment data starts `header_reserve` bytes into each.
    pub fn new(
        id: u64,
        next_seq: u64,
        header_reserve: u64,
        staging: Arc<dyn Staging>,
        epoch: u64,
    ) -> Self {
        InPlaceLog {
            id,
            header_reserve,
            staging,
            epoch,
            st: Mutex::new(St {
                next_seq,
                cur: None,
                dirty: Vec::new(),
                stats: LogStats::default(),
            }),
        }
    }

    pub fn header_reserve(&self) -> u64 {
        self.header_reserve
    }

    /// The staging file of segment `seg`, opened on first use.
    fn file_for(&self, g: &mut St, seg: u64) -> Result<Arc<dyn LogFile>> {
        if let Some((s, f)) = &g.cur {
            if *s == seg {
                return Ok(f.clone());
            }
        }
        let f = self.staging.open(self.epoch, seg, self.header_reserve)?;
        if let Some((_, old)) = g.cur.replace((seg, f.clone())) {
            g.dirty.push(old);
        }
        Ok(f)
    }

    /// The valid consecutive records of a staging file, from the start of its data area. The
    /// first must be `first` = (journal id, seq) when given, else any record starts the run.
    pub fn scan(
        f: &dyn LogFile,
        len: u64,
        header_reserve: u64,
        first: Option<(u64, u64)>,
    ) -> Result<Vec<StagedRecord>> {
        let mut out = Vec::new();
        let mut off = 0u64;
        let mut expect = first;
        let mut hdr = vec![0u8; 4096];
        while header_reserve + off + SECTOR <= len {
            let n = (hdr.len() as u64).min(len - header_reserve - off) as usize;
            if f.read_at(&mut hdr[..n], header_reserve + off).is_err() {
                break;
            }
            let h = match expect {
                Some((id, seq)) => record::decode_header(&hdr[..n], id, seq),
                None => record::decode_header_any(&hdr[..n]).ok(),
            };
            let Some(h) = h.filter(|h| h.kind == RecordKind::Ops) else {
                break;
            };
            let total = h.total_len();
            if header_reserve + off + total > len {
                break;
            }
            let mut rec = vec![0u8; total as usize];
            if f.read_at(&mut rec, header_reserve + off).is_err() || !record::verify(&rec) {
                break;
            }
            expect = Some((h.journal_id, h.seq + 1));
            out.push(StagedRecord {
                journal_id: h.journal_id,
                seq: h.seq,
                off,
                bytes: rec,
            });
            off += total;
        }
        Ok(out)
    }
}

/// Turn a staging file into segment `dest`: write `header` (exactly the reserved length) at
/// its start, cut or pad the data area to `data_len` bytes rounded up to a page, sync, link it
/// to `dest` (create-only), sync the directory, drop the staging name.
pub(crate) fn publish_file(
    staging: &Path,
    header: &[u8],
    data_len: u64,
    dest: &Path,
) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(staging)
        .map_err(|e| Error::io(format!("cannot open {}", staging.display()), e))?;
    f.write_all_at(header, 0)
        .map_err(|e| Error::io(format!("writing {}", staging.display()), e))?;
    // Cut whatever follows the records first (a torn record's bytes), then pad the last
    // page with zeros: the page checksums were computed over zeros there.
    let end = header.len() as u64 + data_len;
    f.set_len(end)
        .and_then(|_| f.set_len(header.len() as u64 + data_len.div_ceil(4096) * 4096))
        .map_err(|e| Error::io(format!("sizing {}", staging.display()), e))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", staging.display()), e))?;
    let dir = dest
        .parent()
        .ok_or_else(|| err!(Invalid, "segment path {} has no directory", dest.display()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    match std::fs::hard_link(staging, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(err!(Exists, "segment {} already exists", dest.display()));
        }
        Err(e) => return Err(Error::io(format!("publishing {}", dest.display()), e)),
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    std::fs::remove_file(staging)
        .map_err(|e| Error::io(format!("removing {}", staging.display()), e))
}

impl LogDevice for InPlaceLog {
    fn id(&self) -> u64 {
        self.id
    }

    fn append_record(
        &self,
        ops: &[Op],
        parts: &[&[u8]],
        place: (u64, u64),
    ) -> Result<(u64, RecordBytes)> {
        let mut g = self.st.lock().unwrap_or_else(|p| p.into_inner());
        let file = self.file_for(&mut g, place.0)?;
        let seq = g.next_seq;
        let len = record::header_sectors(ops.len()) as usize * SECTOR as usize
            + parts.iter().map(|p| p.len()).sum::<usize>();
        let rec = AlignedBuf::build(len, |v| {
            record::encode_parts_into(v, self.id, seq, RecordKind::Ops, ops, parts);
        });
        file.write_at(rec.as_slice(), self.header_reserve + place.1)
            .map_err(|e| e.context("writing a segment record"))?;
        g.next_seq += 1;
        g.stats.records += 1;
        g.stats.bytes += len as u64;
        Ok((seq, crate::keep(rec)))
    }

    fn sync(&self) -> Result<()> {
        let (files, cur) = {
            let mut g = self.st.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut g.dirty),
                g.cur.as_ref().map(|(_, f)| f.clone()),
            )
        };
        for f in files.iter().chain(cur.iter()) {
            f.sync()
                .map_err(|e| e.context("syncing a segment record"))?;
        }
        Ok(())
    }

    fn release(&self, _upto: u64) {}

    fn stats(&self) -> LogStats {
        self.st
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats
            .clone()
    }
}
