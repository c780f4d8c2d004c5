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
//!
//! A big record (at least [`RecordPieces::from`] bytes) is written in pieces while it is
//! encoded: a writer thread writes each piece of data as soon as it is copied and checksummed,
//! so the device works while the next piece is encoded. The header, which carries the CRC of
//! the whole record, is written last, once every piece has landed: until then the record does
//! not verify, exactly as if it were torn, and a scan stops before it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use bytes::BytesMut;
use shale_error::{err, Error, Result};
use shale_format::record::{self, Op, RecordKind};

use crate::aligned::{AlignedBuf, ALIGN};
use crate::file::LogFile;
use crate::staging::Staging;
use crate::{LogDevice, LogStats, RecordBytes};

const SECTOR: u64 = 512;

/// Which records are written in pieces, and how big the pieces are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPieces {
    /// Records of at least this many bytes are written in pieces (`usize::MAX`: none).
    pub from: usize,
    /// Bytes of data per piece (each ends on a page of the file where it can).
    pub piece: usize,
}

impl Default for RecordPieces {
    /// Measured on ext4 over kept files (bench/results-compare.md): 1 MiB client writes
    /// make records of 1-4 MiB.
    fn default() -> Self {
        RecordPieces {
            from: 1 << 20,
            piece: 512 << 10,
        }
    }
}

/// A piece of a record on its way to the writer thread.
struct Piece {
    file: Arc<dyn LogFile>,
    buf: BytesMut,
    off: u64,
}

/// The writer thread of the pieces, started on the first big record.
struct Writer {
    tx: mpsc::Sender<Piece>,
    /// Each piece comes back, in the order sent, with the outcome of its write.
    rx: mpsc::Receiver<(BytesMut, Result<()>)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    fn start() -> Result<Writer> {
        let (tx, jobs) = mpsc::channel::<Piece>();
        let (done, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("shale-logw".into())
            .spawn(move || {
                for p in jobs {
                    let r = p.file.write_at(&p.buf, p.off);
                    if done.send((p.buf, r)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("cannot start the record writer thread", e))?;
        Ok(Writer { tx, rx })
    }
}

#[derive(Debug)]
struct St {
    next_seq: u64,
    cur: Option<(u64, Arc<dyn LogFile>)>,
    dirty: Vec<Arc<dyn LogFile>>,
    stats: LogStats,
    writer: Option<Writer>,
}

/// Records written into staging files of a local store.
pub struct InPlaceLog {
    id: u64,
    header_reserve: u64,
    staging: Arc<dyn Staging>,
    /// The writer epoch whose staging files this log writes.
    epoch: u64,
    pieces: RecordPieces,
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
            pieces: RecordPieces::default(),
            st: Mutex::new(St {
                next_seq,
                cur: None,
                dirty: Vec::new(),
                stats: LogStats::default(),
                writer: None,
            }),
        }
    }

    /// Write big records in pieces as given (see [`RecordPieces`]).
    pub fn with_pieces(mut self, pieces: RecordPieces) -> Self {
        self.pieces = RecordPieces {
            from: pieces.from,
            piece: pieces.piece.clamp(SECTOR as usize, 64 << 20) / SECTOR as usize
                * SECTOR as usize,
        };
        self
    }

    /// Encode record `seq` and write it at byte `at` of `file` in pieces: each piece of data
    /// goes to the writer thread as soon as it is copied and checksummed, and the header (with
    /// the CRC of the whole record) is written once every piece has landed. The buffer starts
    /// at the same place in a page as the record in the file, so a piece that starts on a page
    /// of the file starts on one in memory too.
    fn write_in_pieces(
        &self,
        g: &mut St,
        file: &Arc<dyn LogFile>,
        ops: &[Op],
        parts: &[&[u8]],
        seq: u64,
        at: u64,
    ) -> Result<RecordBytes> {
        let data_len: usize = parts.iter().map(|p| p.len()).sum();
        let hs = record::header_sectors(ops.len()) as usize * SECTOR as usize;
        let len = hs + data_len;
        let mut raw = BytesMut::with_capacity(len + ALIGN);
        let pad = ((at as usize % ALIGN) + ALIGN - raw.as_ptr() as usize % ALIGN) % ALIGN;
        raw.resize(pad, 0);
        drop(raw.split_to(pad));
        let mut hdr = Vec::with_capacity(hs);
        let mut crc =
            record::encode_header_into(&mut hdr, self.id, seq, RecordKind::Ops, ops, data_len);
        raw.extend_from_slice(&hdr);
        let mut head = raw.split();
        if g.writer.is_none() {
            g.writer = Some(Writer::start()?);
        }
        let w = g.writer.as_ref().expect("started above");
        // Where the piece being filled ends (record offsets): a page boundary of the file
        // about `piece` bytes on, or the record's end.
        let end_after = |pos: usize| -> usize {
            let file_end = (at as usize + pos + self.pieces.piece).next_multiple_of(ALIGN);
            (file_end - at as usize).min(len)
        };
        let mut pos = hs;
        let mut piece_at = pos;
        let mut end = end_after(pos);
        let mut sent = 0usize;
        let mut failed: Option<Error> = None;
        let mut gone = false;
        let mut send = |buf: BytesMut, off: usize, sent: &mut usize| {
            let p = Piece {
                file: file.clone(),
                buf,
                off: at + off as u64,
            };
            if w.tx.send(p).is_err() {
                gone = true;
                failed.get_or_insert_with(|| err!(Io, "the record writer thread is gone"));
            } else {
                *sent += 1;
            }
        };
        for part in parts {
            for mut s in part.chunks(record::CHECKSUM_SLICE) {
                while !s.is_empty() {
                    let n = s.len().min(end - pos);
                    let from = raw.len();
                    raw.extend_from_slice(&s[..n]);
                    crc = crc32c::crc32c_append(crc, &raw[from..]);
                    pos += n;
                    s = &s[n..];
                    if pos == end {
                        send(raw.split(), piece_at, &mut sent);
                        piece_at = pos;
                        end = end_after(pos);
                    }
                }
            }
        }
        debug_assert!(raw.is_empty() && pos == len);
        // Every piece comes back, in order, whatever happened to the others.
        let mut pieces = Vec::with_capacity(sent);
        for _ in 0..sent {
            match w.rx.recv() {
                Ok((buf, r)) => {
                    if let Err(e) = r {
                        failed.get_or_insert(e);
                    }
                    pieces.push(buf);
                }
                Err(_) => {
                    g.writer = None;
                    return Err(err!(Io, "the record writer thread is gone"));
                }
            }
        }
        if gone {
            // Started again for the next record.
            g.writer = None;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        record::set_crc(&mut head, crc);
        file.write_at(&head, at)?;
        for p in pieces {
            head.unsplit(p);
        }
        debug_assert_eq!(head.len(), len);
        Ok(Box::new(head))
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
        let at = self.header_reserve + place.1;
        let rec = if len >= self.pieces.from {
            self.write_in_pieces(&mut g, &file, ops, parts, seq, at)
                .map_err(|e| e.context("writing a segment record"))?
        } else {
            let rec = AlignedBuf::build(len, |v| {
                record::encode_parts_into(v, self.id, seq, RecordKind::Ops, ops, parts);
            });
            file.write_at(rec.as_slice(), at)
                .map_err(|e| e.context("writing a segment record"))?;
            crate::keep(rec)
        };
        g.next_seq += 1;
        g.stats.records += 1;
        g.stats.bytes += len as u64;
        Ok((seq, rec))
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
