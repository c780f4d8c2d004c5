//! Ceph's incremental-backup stream, "rbd diff v1", as `rbd export-diff` writes it and
//! `rbd import-diff` reads it (so diffs move between Ceph and Shale both ways).
//!
//! ```text
//! "rbd diff v1\n"
//! metadata records: 'f' le32 len, from-snap name | 't' le32 len, to-snap name | 's' le64 size
//! data records:     'w' le64 offset, le64 length, data | 'z' le64 offset, le64 length
//! 'e'
//! ```
//! The reader checks every length against sane limits before allocating, so a damaged or
//! hostile stream is an error, never a huge allocation or a panic.

use std::io::{Read, Write};

use shale_error::{err, Error, Result};

pub const HEADER: &[u8] = b"rbd diff v1\n";
/// Longest snapshot name accepted in a stream.
const MAX_NAME: u32 = 4096;
/// Largest single data record the reader accepts (rbd writes at most one object, 4 MiB by
/// default, per record; allow for big objects).
pub const MAX_DATA: u64 = 1 << 30;
/// Bytes reserved up front for a data record; longer ones grow as their bytes arrive.
const PREALLOC: u64 = 8 << 20;

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    FromSnap(String),
    ToSnap(String),
    Size(u64),
    /// Data for [offset, offset + data.len()).
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    Zero {
        offset: u64,
        length: u64,
    },
    End,
}

fn io(e: std::io::Error) -> Error {
    Error::io("diff stream", e)
}

/// Write the header.
pub fn write_header(w: &mut impl Write) -> Result<()> {
    w.write_all(HEADER).map_err(io)
}

/// Write one record.
pub fn write_record(w: &mut impl Write, r: &Record) -> Result<()> {
    let mut b = Vec::with_capacity(24);
    match r {
        Record::FromSnap(s) | Record::ToSnap(s) => {
            b.push(if matches!(r, Record::FromSnap(_)) {
                b'f'
            } else {
                b't'
            });
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        Record::Size(n) => {
            b.push(b's');
            b.extend_from_slice(&n.to_le_bytes());
        }
        Record::Write { offset, data } => {
            b.push(b'w');
            b.extend_from_slice(&offset.to_le_bytes());
            b.extend_from_slice(&(data.len() as u64).to_le_bytes());
            w.write_all(&b).map_err(io)?;
            return w.write_all(data).map_err(io);
        }
        Record::Zero { offset, length } => {
            b.push(b'z');
            b.extend_from_slice(&offset.to_le_bytes());
            b.extend_from_slice(&length.to_le_bytes());
        }
        Record::End => b.push(b'e'),
    }
    w.write_all(&b).map_err(io)
}

/// Reads records one at a time.
pub struct Reader<R: Read> {
    r: R,
    done: bool,
    data_seen: bool,
}

impl<R: Read> Reader<R> {
    /// Check the header and start reading.
    pub fn new(mut r: R) -> Result<Self> {
        let mut h = [0u8; 12];
        r.read_exact(&mut h)
            .map_err(|e| Error::io("diff stream: cannot read the header", e))?;
        if h != HEADER {
            if h.starts_with(b"rbd diff v2") {
                return Err(err!(Unsupported, "diff stream is \"rbd diff v2\"; only v1 (rbd export-diff's default) is supported"));
            }
            return Err(err!(Invalid, "not an rbd diff stream (bad header)"));
        }
        Ok(Reader {
            r,
            done: false,
            data_seen: false,
        })
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.r
            .read_exact(&mut b)
            .map_err(|e| Error::io("diff stream truncated", e))?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        self.r
            .read_exact(&mut b)
            .map_err(|e| Error::io("diff stream truncated", e))?;
        Ok(u64::from_le_bytes(b))
    }

    fn name(&mut self) -> Result<String> {
        let n = self.u32()?;
        if n == 0 || n > MAX_NAME {
            return Err(err!(
                Invalid,
                "diff stream: snapshot name length {n} is not sane"
            ));
        }
        let mut b = vec![0u8; n as usize];
        self.r
            .read_exact(&mut b)
            .map_err(|e| Error::io("diff stream truncated", e))?;
        String::from_utf8(b).map_err(|_| err!(Invalid, "diff stream: snapshot name is not UTF-8"))
    }

    /// The next record; `None` after 'e'.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.r
            .read_exact(&mut tag)
            .map_err(|e| Error::io("diff stream truncated (no end record)", e))?;
        let rec = match tag[0] {
            b'f' | b't' | b's' if self.data_seen => {
                return Err(err!(
                    Invalid,
                    "diff stream: metadata record after data records"
                ));
            }
            b'f' => Record::FromSnap(self.name()?),
            b't' => Record::ToSnap(self.name()?),
            b's' => Record::Size(self.u64()?),
            b'w' => {
                self.data_seen = true;
                let offset = self.u64()?;
                let len = self.u64()?;
                if len > MAX_DATA || offset.checked_add(len).is_none() {
                    return Err(err!(
                        Invalid,
                        "diff stream: data record of {len} bytes at {offset} is not sane"
                    ));
                }
                // Grow with what actually arrives: a damaged length on a short stream must not
                // allocate up to MAX_DATA first.
                let mut data = Vec::with_capacity(len.min(PREALLOC) as usize);
                let got = (&mut self.r)
                    .take(len)
                    .read_to_end(&mut data)
                    .map_err(|e| Error::io("diff stream: cannot read a data record", e))?;
                if (got as u64) < len {
                    return Err(Error::io(
                        "diff stream truncated in a data record",
                        std::io::ErrorKind::UnexpectedEof.into(),
                    ));
                }
                Record::Write { offset, data }
            }
            b'z' => {
                self.data_seen = true;
                let offset = self.u64()?;
                let length = self.u64()?;
                if offset.checked_add(length).is_none() {
                    return Err(err!(Invalid, "diff stream: zero record overflows"));
                }
                Record::Zero { offset, length }
            }
            b'e' => {
                self.done = true;
                Record::End
            }
            t => {
                return Err(err!(
                    Invalid,
                    "diff stream: unknown record tag {:?}",
                    t as char
                ))
            }
        };
        Ok(Some(rec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bad_streams() {
        let recs = vec![
            Record::FromSnap("a".into()),
            Record::ToSnap("b".into()),
            Record::Size(1 << 30),
            Record::Write {
                offset: 4096,
                data: vec![7; 100],
            },
            Record::Zero {
                offset: 1 << 20,
                length: 1 << 22,
            },
            Record::End,
        ];
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        for r in &recs {
            write_record(&mut out, r).unwrap();
        }
        let mut rd = Reader::new(&out[..]).unwrap();
        let mut got = Vec::new();
        while let Some(r) = rd.next_record().unwrap() {
            got.push(r);
        }
        assert_eq!(got, recs);
        // Truncation anywhere is an error, not a panic.
        for cut in 0..out.len() - 1 {
            let res = Reader::new(&out[..cut]).and_then(|mut r| loop {
                match r.next_record()? {
                    Some(Record::End) => return Ok(()),
                    Some(_) => {}
                    None => return Ok(()),
                }
            });
            assert!(res.is_err(), "cut at {cut}");
        }
        let mut huge = HEADER.to_vec();
        huge.push(b'w');
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Reader::new(&huge[..]).unwrap().next_record().is_err());
        assert!(Reader::new(&b"rbd diff v2\n"[..]).is_err());
    }
}
