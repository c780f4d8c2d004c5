//! Big records of the in-place log are written in pieces while they are encoded, the header
//! last: what lands must be exactly the record, and a record whose pieces did not all land
//! must never verify.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use shale_error::{err, Result};
use shale_format::record::{self, Op, RecordKind};
use shale_format::segment::EntryKind;
use shale_journal::{InPlaceLog, LogDevice, LogFile, RecordPieces, StagedFile, Staging};

const RESERVE: u64 = 65536;

/// An in-memory file that logs its writes and fails them from the n-th on.
#[derive(Debug, Default)]
struct MemFile {
    bytes: Mutex<Vec<u8>>,
    writes: Mutex<Vec<(u64, usize)>>,
    fail_from: AtomicUsize,
}

impl LogFile for MemFile {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<()> {
        let mut w = self.writes.lock().unwrap();
        if w.len() >= self.fail_from.load(Ordering::SeqCst) {
            return Err(err!(Io, "injected write failure"));
        }
        w.push((off, buf.len()));
        let mut b = self.bytes.lock().unwrap();
        let end = off as usize + buf.len();
        if b.len() < end {
            b.resize(end, 0);
        }
        b[off as usize..end].copy_from_slice(buf);
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        let b = self.bytes.lock().unwrap();
        let end = off as usize + buf.len();
        if end > b.len() {
            return Err(err!(Io, "read past the end"));
        }
        buf.copy_from_slice(&b[off as usize..end]);
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<()> {
        self.bytes.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// Staging that hands out one file (only `open` is used by the log).
#[derive(Debug)]
struct OneFile(Arc<MemFile>);

impl Staging for OneFile {
    fn open(&self, _epoch: u64, _seq: u64, reserve: u64) -> Result<Arc<dyn LogFile>> {
        self.0.set_len(reserve)?;
        Ok(self.0.clone())
    }
    fn list(&self) -> Result<Vec<StagedFile>> {
        Ok(Vec::new())
    }
    fn read(&self, _f: &StagedFile) -> Result<(Arc<dyn LogFile>, u64)> {
        let len = self.0.bytes.lock().unwrap().len() as u64;
        Ok((self.0.clone(), len))
    }
    fn publish(&self, _f: &StagedFile, _header: &[u8], _data_len: u64) -> Result<()> {
        Err(err!(Unsupported, "not in this test"))
    }
    fn remove(&self, _f: &StagedFile) -> Result<()> {
        Ok(())
    }
    fn adopt(&self, _new_epoch: u64) -> Result<()> {
        Ok(())
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn data_op(lba: u64, bytes: usize) -> Op {
    Op {
        lba,
        len: (bytes / 512) as u32,
        kind: EntryKind::Data,
    }
}

/// A log writing records of `from` bytes or more in pieces of `piece`, into a file whose
/// writes do not fail (until told to).
fn log_with(from: usize, piece: usize) -> (Arc<MemFile>, InPlaceLog) {
    let file = Arc::new(MemFile {
        fail_from: AtomicUsize::new(usize::MAX),
        ..MemFile::default()
    });
    let log = InPlaceLog::new(7, 1, RESERVE, Arc::new(OneFile(file.clone())), 1)
        .with_pieces(RecordPieces { from, piece });
    (file, log)
}

#[test]
fn records_in_pieces_land_exactly_as_whole_records_and_the_header_last() {
    let (file, log) = log_with(8192, 8192);
    // Records small (written whole) and big (in pieces), at offsets that are not on a page,
    // with the data in several parts of odd sizes.
    let shapes: &[&[usize]] = &[&[512], &[40 << 10], &[3 * 512, 20 << 10, 512], &[100 << 10]];
    let mut at = 0u64;
    let mut expect = Vec::new();
    for (i, parts) in shapes.iter().enumerate() {
        let bufs: Vec<Vec<u8>> = parts
            .iter()
            .enumerate()
            .map(|(k, &n)| pattern((i * 8 + k) as u8, n))
            .collect();
        let ops: Vec<Op> = bufs
            .iter()
            .enumerate()
            .map(|(k, b)| data_op(1000 * i as u64 + 100 * k as u64, b.len()))
            .collect();
        let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
        let before = file.writes.lock().unwrap().len();
        let (seq, rec) = log.append_record(&ops, &refs, (1, at)).unwrap();
        let rec = (*rec).as_ref().to_vec();
        let mut whole = Vec::new();
        record::encode_parts_into(&mut whole, 7, seq, RecordKind::Ops, &ops, &refs);
        assert_eq!(rec, whole, "record {i}: the kept bytes are the record");
        let writes = file.writes.lock().unwrap()[before..].to_vec();
        let hs = record::header_sectors(ops.len()) as u64 * 512;
        let pos = RESERVE + at;
        if rec.len() >= 8192 {
            // Pieces in order over the data, then the header alone.
            assert!(writes.len() >= 3, "record {i}: {writes:?}");
            assert_eq!(*writes.last().unwrap(), (pos, hs as usize), "record {i}");
            let mut next = pos + hs;
            for &(off, len) in &writes[..writes.len() - 1] {
                assert_eq!(off, next, "record {i}: pieces in order, no gap");
                next += len as u64;
                assert!(
                    next.is_multiple_of(4096) || next == pos + rec.len() as u64,
                    "record {i}: a piece ends on a page or at the record's end: {writes:?}"
                );
            }
            assert_eq!(next, pos + rec.len() as u64, "record {i}");
        } else {
            assert_eq!(writes, vec![(pos, rec.len())], "record {i}: written whole");
        }
        expect.push(rec.clone());
        at += rec.len() as u64;
    }
    let len = file.bytes.lock().unwrap().len() as u64;
    let found = InPlaceLog::scan(file.as_ref(), len, RESERVE, Some((7, 1))).unwrap();
    let found: Vec<Vec<u8>> = found.into_iter().map(|r| r.bytes).collect();
    assert_eq!(found, expect);
}

#[test]
fn a_record_whose_pieces_did_not_all_land_is_never_found() {
    for fail_at in 0..4 {
        let (file, log) = log_with(4096, 4096);
        let small = pattern(1, 1024);
        let (_, first) = log
            .append_record(&[data_op(0, 1024)], &[&small], (1, 0))
            .unwrap();
        let at = (*first).as_ref().len() as u64;
        // The big record: pieces 0..=2 and the header; the `fail_at`-th write fails.
        let done = file.writes.lock().unwrap().len();
        file.fail_from.store(done + fail_at, Ordering::SeqCst);
        let big = pattern(2, 3 * 4096 - 512);
        let r = log.append_record(&[data_op(64, big.len())], &[&big], (1, at));
        assert!(
            r.is_err(),
            "write {fail_at} failed, yet the record was taken"
        );
        let writes = file.writes.lock().unwrap().clone();
        assert!(
            !writes[done..].iter().any(|&(off, _)| off == RESERVE + at),
            "the header was written though a piece failed: {writes:?}"
        );
        let len = file.bytes.lock().unwrap().len() as u64;
        let found = InPlaceLog::scan(file.as_ref(), len, RESERVE, Some((7, 1))).unwrap();
        assert_eq!(
            found.len(),
            1,
            "write {fail_at} failed: only the first record"
        );
        // The log goes on with the next number where the failed record was.
        file.fail_from.store(usize::MAX, Ordering::SeqCst);
        let (seq, rec) = log
            .append_record(&[data_op(64, big.len())], &[&big], (1, at))
            .unwrap();
        assert_eq!(seq, 2);
        let len = file.bytes.lock().unwrap().len() as u64;
        let found = InPlaceLog::scan(file.as_ref(), len, RESERVE, Some((7, 1))).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].bytes, (*rec).as_ref());
    }
}
