//! Golden-byte fixtures: one file per persisted format under `tests/golden/`, written by the
//! encoders from the fixed inputs below. Each test
//!  (a) decodes the committed file and compares it with the expected value, spelled out here
//!      (so images written by older builds stay readable), and
//!  (b) encodes the same input and requires the committed bytes exactly (so an accidental
//!      format change fails here rather than in the field).
//!
//! A missing or different fixture fails the test. `SHALE_BLESS=1 cargo test -p shale-format
//! --test golden` (re)writes the files; do that only for a NEW fixture or a deliberate format
//! change that also bumps the version and keeps decoding the old fixture.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::path::PathBuf;

use shale_format::checkpoint::{self, Checkpoint, Extent, ZERO_SEG};
use shale_format::envelope::{self, Kind};
use shale_format::rbd_diff::{self, Record};
use shale_format::record::{self, Op, RecordKind};
use shale_format::segment::{self, Entry, EntryKind, Header, JournalMark};
use shale_format::{PAGE, SECTOR};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn blessing() -> bool {
    std::env::var("SHALE_BLESS").is_ok_and(|v| v == "1")
}

/// The committed fixture `name`. With SHALE_BLESS=1, first (re)write it with `encoded`.
fn fixture(name: &str, encoded: &[u8]) -> Vec<u8> {
    let p = path(name);
    if blessing() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, encoded).unwrap();
        eprintln!(
            "SHALE_BLESS: wrote {} ({} bytes)",
            p.display(),
            encoded.len()
        );
    }
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "golden fixture {} cannot be read ({e}); for a new fixture run \
             SHALE_BLESS=1 cargo test -p shale-format --test golden",
            p.display()
        )
    })
}

/// (b): today's encoder must produce the committed bytes.
fn assert_same_bytes(name: &str, encoded: &[u8], golden: &[u8]) {
    if encoded == golden {
        return;
    }
    let at = encoded
        .iter()
        .zip(golden)
        .position(|(a, b)| a != b)
        .unwrap_or(encoded.len().min(golden.len()));
    panic!(
        "{name}: the encoder no longer produces the committed bytes (lengths {} vs {} golden, \
         first difference at byte {at}). Existing images hold the old bytes: a format change \
         needs a version bump and a decoder that still reads tests/golden/{name}; do not just \
         re-bless.",
        encoded.len(),
        golden.len()
    );
}

/// Little-endian integer at `at` (for spot checks against the tables in docs/FORMAT.md).
fn le(b: &[u8], at: usize, width: usize) -> u64 {
    let mut x = [0u8; 8];
    x[..width].copy_from_slice(&b[at..at + width]);
    u64::from_le_bytes(x)
}

/// Deterministic sector contents.
fn pattern(sectors: usize, salt: u8) -> Vec<u8> {
    (0..sectors * SECTOR as usize)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) ^ (i >> 9) as u8)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Segment

fn seg_entries() -> Vec<Entry> {
    vec![
        Entry {
            lba: 10,
            len: 3,
            off: 0,
            kind: EntryKind::Data,
        },
        Entry {
            lba: 100,
            len: 8,
            off: 0,
            kind: EntryKind::Zero,
        },
        Entry {
            lba: 200,
            len: 16,
            off: 0,
            kind: EntryKind::Trim,
        },
        Entry {
            lba: 1 << 30,
            len: 9,
            off: 3,
            kind: EntryKind::Data,
        },
    ]
}

const SEG_JOURNAL: JournalMark = JournalMark {
    journal_id: 0x0123_4567_89ab_cdef,
    jseq: 4,
};

#[test]
fn golden_segment_v1() {
    let name = "segment_v1.bin";
    let (entries, data) = (seg_entries(), pattern(12, 1));
    let encoded = segment::encode(7, 3, SEG_JOURNAL, &entries, &data).unwrap();
    let golden = fixture(name, &encoded);

    // (a) Decode the committed bytes.
    assert_eq!(golden.len(), 3 * PAGE, "header page + two data pages");
    assert_eq!(segment::header_len(&golden[..16]).unwrap(), PAGE as u64);
    let (h, got) = segment::decode(&golden).unwrap();
    let Header {
        seq,
        epoch,
        journal,
        entries: got_entries,
        page_crcs,
        header_len,
        data_len,
    } = h.clone();
    assert_eq!((seq, epoch, journal), (7, 3, SEG_JOURNAL));
    assert_eq!(got_entries, entries);
    assert_eq!((header_len, data_len), (PAGE as u64, 2 * PAGE as u64));
    assert_eq!(page_crcs.len(), 2);
    assert_eq!(&got[..data.len()], &data[..]);
    assert!(got[data.len()..].iter().all(|&b| b == 0), "zero tail");
    assert_eq!(segment::decode_header(&golden[..PAGE]).unwrap(), h);
    // Spot checks against the table in docs/FORMAT.md.
    assert_eq!(&golden[..8], b"SHALESEG");
    let fields = [
        (8, 4, 1),
        (12, 4, 4096),
        (16, 8, 7),
        (24, 8, 3),
        (32, 4, 4),
        (36, 4, 2),
    ];
    for (at, w, v) in fields {
        assert_eq!(le(&golden, at, w), v, "segment field at {at}");
    }
    assert_eq!(le(&golden, 40, 8), 8192);
    assert_eq!(le(&golden, 48, 8), SEG_JOURNAL.journal_id);
    assert_eq!(le(&golden, 56, 8), SEG_JOURNAL.jseq);
    assert_eq!(le(&golden, 64 + 24 * 3, 8), 1 << 30, "entry 3 lba");
    assert_eq!(le(&golden, 64 + 24 * 3 + 12, 4), 3, "entry 3 off");
    assert_eq!(le(&golden, 64 + 24 * 2 + 16, 4), 3, "entry 2 kind: Trim");
    let crc_at = 64 + 24 * 4 + 4 * 2;
    assert_eq!(
        le(&golden, crc_at, 4),
        crc32c::crc32c(&golden[..crc_at]) as u64
    );
    assert_eq!(
        le(&golden, 64 + 24 * 4, 4),
        segment::page_crc(7, 0, &golden[PAGE..2 * PAGE]) as u64
    );
    segment::verify_data(&h, PAGE as u64, 2 * PAGE as u64, &golden[2 * PAGE..]).unwrap();

    // (b) Today's encoder writes the same bytes.
    assert_same_bytes(name, &encoded, &golden);
}

/// A header larger than it needs to be (what the local store's in-place segments have).
#[test]
fn golden_segment_reserved_header_v1() {
    let name = "segment_reserved_header_v1.bin";
    let entries = [
        Entry {
            lba: 5,
            len: 8,
            off: 0,
            kind: EntryKind::Data,
        },
        Entry {
            lba: 7,
            len: 2,
            off: 0,
            kind: EntryKind::Trim,
        },
    ];
    let data = pattern(8, 2);
    let jm = JournalMark {
        journal_id: 0x00ff_00ff_00ff_00ff,
        jseq: 1000,
    };
    let mut encoded =
        segment::encode_header(u64::MAX - 1, 1, jm, &entries, &data, Some(2 * PAGE)).unwrap();
    encoded.extend_from_slice(&data);
    let golden = fixture(name, &encoded);

    let (h, got) = segment::decode(&golden).unwrap();
    assert_eq!((h.seq, h.epoch, h.journal), (u64::MAX - 1, 1, jm));
    assert_eq!(h.entries, entries);
    assert_eq!((h.header_len, h.data_len), (2 * PAGE as u64, PAGE as u64));
    assert_eq!(got, &data[..]);

    assert_same_bytes(name, &encoded, &golden);
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

#[test]
fn golden_checkpoint_v1() {
    let name = "checkpoint_v1.bin";
    let c = Checkpoint {
        seq: 5,
        next_seq: 9,
        epoch: 2,
        journal: JournalMark {
            journal_id: 5,
            jseq: 77,
        },
        extents: vec![
            Extent {
                lba: 0,
                len: 8,
                off: 16,
                seg: 3,
            },
            Extent {
                lba: 8,
                len: 100,
                off: 0,
                seg: ZERO_SEG,
            },
            Extent {
                lba: 1 << 40,
                len: u32::MAX,
                off: 1 << 20,
                seg: 0x1_0000_0001,
            },
        ],
    };
    let encoded = checkpoint::encode(&c);
    let golden = fixture(name, &encoded);

    assert_eq!(golden.len(), 68 + 3 * 24);
    assert_eq!(&golden[..8], b"SHALECKP");
    assert_eq!(
        (le(&golden, 16, 8), le(&golden, 24, 8), le(&golden, 56, 8)),
        (5, 9, 3)
    );
    assert_eq!(le(&golden, 64 + 24 + 16, 8), ZERO_SEG);
    assert_eq!(le(&golden, 136, 4), crc32c::crc32c(&golden[..136]) as u64);
    assert_eq!(checkpoint::decode(&golden).unwrap(), c);

    assert_same_bytes(name, &encoded, &golden);
}

// ---------------------------------------------------------------------------------------------
// Metadata envelopes, one per kind, with bodies shaped like the ones the image layer writes

fn envelope_cases() -> Vec<(&'static str, Kind, &'static str)> {
    vec![
        (
            "envelope_store_v1.bin",
            Kind::Store,
            r#"{"created":1700000000}"#,
        ),
        (
            "envelope_pool_v1.bin",
            Kind::Pool,
            r#"{"id":1,"created":1700000000}"#,
        ),
        (
            "envelope_name_v1.bin",
            Kind::Name,
            r#"{"id":"1f2e3d4c5b6a7988"}"#,
        ),
        (
            "envelope_image_header_v1.bin",
            Kind::ImageHeader,
            r#"{"id":"1f2e3d4c5b6a7988","name":"vm-disk","size":10737418240,"order":22,"features":61,"created":1700000000,"epoch":3,"metadata":{"k":"v"},"removing":false,"snapshots":[{"id":1,"name":"s1","seq":41,"size":10737418240,"protected":true,"created":1700000100,"children":[{"pool":"rbd","image_id":"aa55"}]}],"next_snap_id":2,"parent":null,"snap_limit":null,"fence":[3,42],"lockers":[],"blocklist":[]}"#,
        ),
        (
            "envelope_lock_v1.bin",
            Kind::Lock,
            r#"{"owner":12345,"epoch":3,"expires_ms":1700000030000,"explicit":false,"handoff":null,"host":"node-1","pid":4242,"start":99}"#,
        ),
    ]
}

#[test]
fn golden_envelopes_v1() {
    let kinds = [
        Kind::Store,
        Kind::Pool,
        Kind::Name,
        Kind::ImageHeader,
        Kind::Lock,
    ];
    for (name, kind, body) in envelope_cases() {
        let encoded = envelope::encode(kind, body.as_bytes());
        let golden = fixture(name, &encoded);

        assert_eq!(golden.len(), 24 + body.len(), "{name}");
        assert_eq!(&golden[..8], b"SHALEMD1");
        assert_eq!(le(&golden, 12, 4), kind as u64, "{name}: kind");
        assert_eq!(le(&golden, 16, 4), body.len() as u64, "{name}: body_len");
        assert_eq!(le(&golden, 20, 4), crc32c::crc32c(body.as_bytes()) as u64);
        assert_eq!(
            envelope::decode(kind, &golden).unwrap(),
            body.as_bytes(),
            "{name}"
        );
        for other in kinds.into_iter().filter(|&k| k != kind) {
            assert!(
                envelope::decode(other, &golden).is_err(),
                "{name} as {other:?}"
            );
        }

        assert_same_bytes(name, &encoded, &golden);
    }
}

// ---------------------------------------------------------------------------------------------
// Journal records

#[test]
fn golden_record_ops_v1() {
    let name = "record_ops_v1.bin";
    let ops = vec![
        Op {
            lba: 8,
            len: 2,
            kind: EntryKind::Data,
        },
        Op {
            lba: 100,
            len: 50,
            kind: EntryKind::Zero,
        },
        Op {
            lba: 1,
            len: 1,
            kind: EntryKind::Data,
        },
        Op {
            lba: 1 << 40,
            len: 8,
            kind: EntryKind::Trim,
        },
    ];
    let data = pattern(3, 3);
    let mut encoded = Vec::new();
    let at = record::encode_into(
        &mut encoded,
        0x0123_4567_89ab_cdef,
        42,
        RecordKind::Ops,
        &ops,
        &data,
    );
    assert_eq!(at, SECTOR as usize);
    let golden = fixture(name, &encoded);

    let h = record::decode(&golden).unwrap();
    assert_eq!(
        h,
        record::RecordHeader {
            journal_id: 0x0123_4567_89ab_cdef,
            seq: 42,
            kind: RecordKind::Ops,
            header_sectors: 1,
            data_sectors: 3,
            ops,
        }
    );
    assert_eq!(
        record::decode_header(&golden[..512], 0x0123_4567_89ab_cdef, 42),
        Some(h)
    );
    assert!(record::verify(&golden));
    assert_eq!(&golden[512..], &data[..]);
    assert_eq!(&golden[..8], b"SHALEREC");
    let fields = [
        (12, 4, 1),
        (16, 8, 0x0123_4567_89ab_cdef),
        (24, 8, 42),
        (32, 4, 1),
        (36, 4, 4),
        (40, 4, 3),
    ];
    for (at, w, v) in fields {
        assert_eq!(le(&golden, at, w), v, "record field at {at}");
    }
    assert_eq!(le(&golden, 48 + 16 * 3, 8), 1 << 40, "op 3 lba");
    assert_eq!(le(&golden, 48 + 16 * 3 + 12, 4), 3, "op 3 kind: Trim");

    assert_same_bytes(name, &encoded, &golden);
}

#[test]
fn golden_record_wrap_v1() {
    let name = "record_wrap_v1.bin";
    let mut encoded = Vec::new();
    record::encode_into(&mut encoded, 77, 1 << 33, RecordKind::Wrap, &[], &[]);
    let golden = fixture(name, &encoded);

    assert_eq!(
        record::decode(&golden).unwrap(),
        record::RecordHeader {
            journal_id: 77,
            seq: 1 << 33,
            kind: RecordKind::Wrap,
            header_sectors: 1,
            data_sectors: 0,
            ops: vec![],
        }
    );

    assert_same_bytes(name, &encoded, &golden);
}

// ---------------------------------------------------------------------------------------------
// rbd diff v1 stream

#[test]
fn golden_rbd_diff_v1() {
    let name = "rbd_diff_v1.bin";
    let recs = vec![
        Record::FromSnap("snap-a".into()),
        Record::ToSnap("snap-b".into()),
        Record::Size(10 << 30),
        Record::Write {
            offset: 4096,
            data: pattern(1, 4),
        },
        Record::Zero {
            offset: 1 << 20,
            length: 4 << 20,
        },
        Record::Write {
            offset: 9 << 30,
            data: b"tail".to_vec(),
        },
        Record::End,
    ];
    let mut encoded = Vec::new();
    rbd_diff::write_header(&mut encoded).unwrap();
    for r in &recs {
        rbd_diff::write_record(&mut encoded, r).unwrap();
    }
    let golden = fixture(name, &encoded);

    assert!(golden.starts_with(b"rbd diff v1\n"));
    let mut rd = rbd_diff::Reader::new(&golden[..]).unwrap();
    let mut got = Vec::new();
    while let Some(r) = rd.next_record().unwrap() {
        got.push(r);
    }
    assert_eq!(got, recs);

    assert_same_bytes(name, &encoded, &golden);
}

/// Every file in tests/golden/ is checked by a test above (none is left over, unchecked).
#[test]
fn golden_dir_has_no_stray_files() {
    let mut known = vec![
        "README.md",
        "segment_v1.bin",
        "segment_reserved_header_v1.bin",
        "checkpoint_v1.bin",
        "record_ops_v1.bin",
        "record_wrap_v1.bin",
        "rbd_diff_v1.bin",
    ];
    known.extend(envelope_cases().iter().map(|c| c.0));
    let dir = path("");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        assert!(blessing(), "{} is missing", dir.display());
        return;
    };
    for e in rd {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            known.contains(&n.as_str()),
            "unchecked file tests/golden/{n}"
        );
    }
}
