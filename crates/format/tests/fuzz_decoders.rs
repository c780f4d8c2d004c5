//! Mutation fuzzing of every decoder in `shale-format`, starting from valid encodings.
//!
//! For each format, valid objects of several shapes are built with the crate's own encoders;
//! each iteration applies a few seeded mutations (bit/byte flips, length and count fields set to
//! huge, zero or off-by-one values, truncation, garbage extension, region swaps, duplicated and
//! deleted sections) and then, most of the time, *re-seals* the checksum so the mutated bytes
//! reach the structural checks behind it. The decoder must not panic, must return quickly, and
//! must either fail with `Corruption` (diff streams: `Invalid`/`Io`/`Unsupported`) or return a
//! value that re-encodes to the (canonicalised) input.
//!
//! Every decoder also gets an exhaustive pass: each sample truncated at every length, raw and
//! re-sealed.
//!
//! Environment: `SHALE_FUZZ_ITERS` (iterations per format, default 20000), `SHALE_FUZZ_SEED`
//! (a number, or `random`; default fixed). A failure prints the seed, the iteration, the
//! mutations applied and the input, so it can be reproduced.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shale_error::ErrorKind;
use shale_format::checkpoint::{self, Checkpoint, Extent, ZERO_SEG};
use shale_format::envelope::{self, Kind};
use shale_format::rbd_diff::{self, Record};
use shale_format::record::{self, Op, RecordKind};
use shale_format::segment::{self, Entry, EntryKind, JournalMark};
use shale_format::{PAGE, SECTOR};

// ---------------------------------------------------------------------------------------------
// Deterministic randomness and configuration

/// SplitMix64: tiny, fast, and good enough to drive mutations reproducibly.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-ish in 0..n (0 when n == 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn iters() -> u64 {
    std::env::var("SHALE_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(read_seed)
}

fn read_seed() -> u64 {
    match std::env::var("SHALE_FUZZ_SEED").ok().as_deref() {
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        Some(s) => {
            let s = s.trim();
            let v = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            v.expect("SHALE_FUZZ_SEED: a number, 0x-hex, or `random`")
        }
        None => 0x5A1E_F022_0000_0001,
    }
}

// ---------------------------------------------------------------------------------------------
// Samples and mutations

/// A valid encoding plus the byte ranges of its integer fields (offset, width), which the
/// field-aware mutations target.
#[derive(Clone, Debug)]
struct Sample {
    what: String,
    bytes: Vec<u8>,
    fields: Vec<(usize, usize)>,
}

/// Values that break length and count arithmetic.
fn interesting(rng: &mut Rng, len: usize) -> u64 {
    const V: &[u64] = &[
        0,
        1,
        2,
        3,
        7,
        8,
        23,
        24,
        0x7f,
        0x80,
        0xff,
        0x100,
        0x1ff,
        0x200,
        0xfff,
        0x1000,
        0x1001,
        0xffff,
        0x1_0000,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_fffe,
        0xffff_ffff,
        0x1_0000_0000,
        u64::MAX / 4096,
        u64::MAX / 512,
        u64::MAX / 24,
        u64::MAX / 16,
        i64::MAX as u64,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ];
    match rng.below(4) {
        0 => (len as u64 + rng.below(3) as u64).wrapping_sub(1),
        1 => (len as u64) / [1u64, 4, 16, 24, 512, 4096][rng.below(6)],
        _ => V[rng.below(V.len())],
    }
}

fn put(buf: &mut [u8], at: usize, width: usize, v: u64) {
    let b = v.to_le_bytes();
    let end = (at + width).min(buf.len());
    if at < end {
        buf[at..end].copy_from_slice(&b[..end - at]);
    }
}

fn get(buf: &[u8], at: usize, width: usize) -> u64 {
    let mut b = [0u8; 8];
    if at < buf.len() {
        let end = (at + width).min(buf.len());
        b[..end - at].copy_from_slice(&buf[at..end]);
    }
    u64::from_le_bytes(b)
}

/// Apply one random mutation; returns a short description for failure reports.
fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, fields: &[(usize, usize)]) -> String {
    let len = buf.len();
    match rng.below(12) {
        0 if len > 0 => {
            let (i, bit) = (rng.below(len), rng.below(8));
            buf[i] ^= 1 << bit;
            format!("flip bit {bit} of byte {i}")
        }
        1 if len > 0 => {
            let (i, v) = (rng.below(len), rng.next() as u8);
            buf[i] = v;
            format!("byte {i} = {v:#x}")
        }
        2..=4 if !fields.is_empty() => {
            let (at, w) = fields[rng.below(fields.len())];
            let v = interesting(rng, len);
            put(buf, at, w, v);
            format!("field @{at}/{w} = {v:#x}")
        }
        5 if !fields.is_empty() => {
            let (at, w) = fields[rng.below(fields.len())];
            let d = rng.below(5) as u64;
            let v = if rng.chance(50) {
                get(buf, at, w).wrapping_add(d)
            } else {
                get(buf, at, w).wrapping_sub(d)
            };
            put(buf, at, w, v);
            format!("field @{at}/{w} += -{d}..{d} -> {v:#x}")
        }
        6 => {
            let n = rng.below(len + 1);
            buf.truncate(n);
            format!("truncate to {n}")
        }
        7 => {
            let cap = if rng.chance(20) { 3 * PAGE } else { 64 };
            let n = rng.below(cap);
            let fill = rng.below(3);
            for _ in 0..n {
                let b = match fill {
                    0 => 0,
                    1 => 0xff,
                    _ => rng.next() as u8,
                };
                buf.push(b);
            }
            format!("extend by {n} ({})", ["zeros", "0xff", "random"][fill])
        }
        8 if len >= 2 => {
            let n = 1 + rng.below(len / 2);
            let a = rng.below(len - n + 1);
            let b = rng.below(len - n + 1);
            let (lo, hi) = (a.min(b), a.max(b));
            if hi >= lo + n {
                let (x, y) = buf.split_at_mut(hi);
                x[lo..lo + n].swap_with_slice(&mut y[..n]);
            }
            format!("swap {n} bytes at {lo} and {hi}")
        }
        9 if len > 0 => {
            // Duplicate a section, often one starting at a field boundary (entries, records).
            let a = if !fields.is_empty() && rng.chance(60) {
                fields[rng.below(fields.len())].0.min(len - 1)
            } else {
                rng.below(len)
            };
            let cap = if rng.chance(50) { 24 } else { 600 };
            let n = 1 + rng.below((len - a).min(cap));
            let sect = buf[a..a + n].to_vec();
            let at = if rng.chance(50) {
                a
            } else {
                rng.below(len + 1)
            };
            buf.splice(at..at, sect);
            format!("duplicate {n} bytes from {a} at {at}")
        }
        10 if len > 0 => {
            let a = rng.below(len);
            let n = 1 + rng.below((len - a).min(64));
            buf.drain(a..a + n);
            format!("delete {n} bytes at {a}")
        }
        _ if len >= 8 => {
            let at = rng.below(len - 7) & !3;
            let w = if rng.chance(50) { 4 } else { 8 };
            let v = interesting(rng, len);
            put(buf, at, w, v);
            format!("aligned @{at}/{w} = {v:#x}")
        }
        _ => {
            buf.push(rng.next() as u8);
            "push a byte".into()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Harness: no panic, no hang, no huge allocation, properties checked

/// The system allocator, noting the largest single request made by the current thread, so a
/// decoder that trusts a length field before checking it (and allocates gigabytes) fails.
struct Counting;

thread_local! {
    static LARGEST: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn note_size(n: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(n)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the only addition is a
// thread-local Cell update, which does not allocate.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        note_size(l.size());
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        note_size(l.size());
        unsafe { std::alloc::System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, n: usize) -> *mut u8 {
        note_size(n);
        unsafe { std::alloc::System.realloc(p, l, n) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Largest allocation a decode may make: generous for the checks' own copies of the input,
/// far below what a trusted length field (up to 2^32 entries, 1 GiB diff records) would ask.
fn alloc_limit(input_len: usize) -> usize {
    16 * input_len + (16 << 20)
}

/// Watchdog: aborts the process (with the input being decoded) when one decode call runs for
/// longer than `limit`, so a decoder loop cannot hang the suite.
struct Watchdog {
    progress: Arc<AtomicU64>,
    current: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(limit: Duration) -> Self {
        let progress = Arc::new(AtomicU64::new(0));
        let current = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, c, s) = (progress.clone(), current.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last = (u64::MAX, Instant::now());
            while !s.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let now = p.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > limit {
                    let what = c.lock().map(|g| g.clone()).unwrap_or_default();
                    eprintln!("fuzz watchdog: a decode call ran for over {limit:?}: {what}");
                    std::process::abort();
                }
            }
        });
        Watchdog {
            progress,
            current,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Per-call time budget. Generous: the machine may be shared; real hangs hit the watchdog.
const SLOW: Duration = Duration::from_secs(2);

fn hex(b: &[u8]) -> String {
    let shown = &b[..b.len().min(512)];
    let mut s: String = shown.iter().map(|x| format!("{x:02x}")).collect();
    if b.len() > shown.len() {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

/// Run `check` on `input`; turn a panic, a slow call or a failed property into a test failure
/// that says how to reproduce it.
fn run_one(
    wd: &Watchdog,
    fmt: &str,
    ctx: &dyn Fn() -> String,
    input: &[u8],
    check: &dyn Fn(&[u8]) -> Result<(), String>,
) {
    if let Ok(mut g) = wd.current.lock() {
        g.clear();
        g.push_str(&format!("{fmt}: {} input {}", ctx(), hex(input)));
    }
    LARGEST.with(|l| l.set(0));
    let t0 = Instant::now();
    let res = catch_unwind(AssertUnwindSafe(|| check(input)));
    let took = t0.elapsed();
    let largest = LARGEST.with(|l| l.get());
    wd.progress.fetch_add(1, Ordering::Relaxed);
    let fail = match res {
        Err(p) => Some(format!(
            "decoder panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
        Ok(Err(why)) => Some(why),
        Ok(Ok(())) if took > SLOW => Some(format!("decoding took {took:?}")),
        Ok(Ok(())) if largest > alloc_limit(input.len()) => {
            Some(format!("a single allocation of {largest} bytes"))
        }
        Ok(Ok(())) => None,
    };
    if let Some(why) = fail {
        panic!(
            "{fmt}: {why}\n  {}\n  input ({} bytes): {}\n  reproduce: SHALE_FUZZ_SEED={:#x} cargo test -p shale-format --test fuzz_decoders",
            ctx(),
            input.len(),
            hex(input),
            seed()
        );
    }
}

/// How the checksum is recomputed after mutating (several variants for some formats).
/// (A `Vec`: some variants also cut or pad the buffer to the length its header declares.)
type Reseal = fn(&mut Vec<u8>, &mut Rng);

/// The fuzz loop for one format, then the exhaustive truncation pass.
fn fuzz(
    fmt: &str,
    samples: &[Sample],
    reseal: Reseal,
    check: &dyn Fn(&[u8]) -> Result<(), String>,
) {
    let (seed, n) = (seed(), iters());
    eprintln!(
        "{fmt}: fuzzing {n} iterations, SHALE_FUZZ_SEED={seed:#x} (SHALE_FUZZ_ITERS for more)"
    );
    let wd = Watchdog::start(Duration::from_secs(30));
    // Every sample decodes as is.
    for s in samples {
        run_one(
            &wd,
            fmt,
            &|| format!("valid sample {}", s.what),
            &s.bytes,
            check,
        );
    }
    // Seeded mutations: one RNG per iteration so a failure names a reproducible case.
    let mut top = Rng(seed ^ fxhash(fmt));
    for it in 0..n {
        let mut rng = Rng(top.next());
        let s = &samples[rng.below(samples.len())];
        let mut buf = s.bytes.clone();
        let mut log = Vec::new();
        let most = if rng.chance(70) { 2 } else { 6 };
        for _ in 0..1 + rng.below(most) {
            log.push(mutate(&mut rng, &mut buf, &s.fields));
        }
        if rng.chance(75) {
            reseal(&mut buf, &mut rng);
            log.push("reseal".into());
        }
        let ctx = || {
            format!(
                "iteration {it}, sample {}, mutations: {}",
                s.what,
                log.join("; ")
            )
        };
        run_one(&wd, fmt, &ctx, &buf, check);
    }
    // Truncation at every length, raw and re-sealed.
    let mut rng = Rng(seed);
    for s in samples {
        for cut in 0..s.bytes.len() {
            let raw = &s.bytes[..cut];
            run_one(
                &wd,
                fmt,
                &|| format!("sample {} cut at {cut}", s.what),
                raw,
                check,
            );
            let mut sealed = raw.to_vec();
            reseal(&mut sealed, &mut rng);
            run_one(
                &wd,
                fmt,
                &|| format!("sample {} cut at {cut}, resealed", s.what),
                &sealed,
                check,
            );
        }
    }
    TALLY.with(|t| {
        let mut t = t.borrow_mut();
        eprintln!("{fmt}: outcomes");
        for (k, v) in t.iter() {
            eprintln!("  {v:>8}  {k}");
        }
        t.clear();
    });
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

thread_local! {
    /// How often each outcome happened in this test (printed at the end; shows whether the
    /// mutations reach the checks behind the checksums).
    static TALLY: std::cell::RefCell<std::collections::BTreeMap<String, u64>> =
        Default::default();
}

fn note(outcome: impl Into<String>) {
    TALLY.with(|t| *t.borrow_mut().entry(outcome.into()).or_default() += 1);
}

/// Record an expected error (message with numbers elided) or fail on an unexpected kind.
fn expect_kind(what: &str, e: &shale_error::Error, ok: &[ErrorKind]) -> Result<(), String> {
    // Numbers (decimal or hex) and quoted parts elided, so like errors count together.
    let text = e.message().split(['"', '(', '\'']).next().unwrap_or("");
    let mut msg = String::new();
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        let numeric = word.chars().any(|c| c.is_ascii_digit())
            || (word.len() >= 8 && word.chars().all(|c| c.is_ascii_hexdigit()));
        msg.push_str(if numeric { "#" } else { &word });
        msg.push(c);
        word.clear();
    }
    let mut msg = msg.trim_end().to_string();
    msg.truncate(70);
    note(format!("{what}: {msg}"));
    if ok.contains(&e.kind()) {
        Ok(())
    } else {
        Err(format!(
            "{what}: error of kind {:?}, expected one of {ok:?}: {e}",
            e.kind()
        ))
    }
}

/// `Ok` when equal, else where they first differ.
fn same(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    Err(format!(
        "{what}: re-encoding differs from the input (lengths {} / {}, first difference at {at:?})",
        got.len(),
        want.len()
    ))
}

fn le32(b: &[u8], at: usize) -> u32 {
    get(b, at, 4) as u32
}

fn le64(b: &[u8], at: usize) -> u64 {
    get(b, at, 8)
}

// ---------------------------------------------------------------------------------------------
// Segment

fn seg_samples() -> Vec<Sample> {
    let jm = JournalMark {
        journal_id: 0x1234_5678_9abc_def1,
        jseq: 77,
    };
    let data = |sectors: usize| -> Vec<u8> {
        (0..sectors * SECTOR as usize)
            .map(|i| (i * 7 % 251) as u8)
            .collect()
    };
    let e = |lba, len, off, kind| Entry {
        lba,
        len,
        off,
        kind,
    };
    let mut many = Vec::new();
    for i in 0..170u64 {
        many.push(e(i * 3, 1, (i % 8) as u32, EntryKind::Data));
    }
    // (name, entries, data, reserved header length)
    type Shape = (&'static str, Vec<Entry>, Vec<u8>, Option<usize>);
    let shapes: Vec<Shape> = vec![
        ("empty", vec![], vec![], None),
        (
            "zero+trim",
            vec![e(0, 8, 0, EntryKind::Zero), e(100, 1, 0, EntryKind::Trim)],
            vec![],
            None,
        ),
        (
            "mixed, partial last page",
            vec![
                e(10, 3, 0, EntryKind::Data),
                e(100, 8, 0, EntryKind::Zero),
                e(1 << 30, 9, 3, EntryKind::Data),
            ],
            data(12),
            None,
        ),
        ("two-page header", many, data(8), None),
        (
            "reserved header",
            vec![e(5, 8, 0, EntryKind::Data), e(7, 2, 0, EntryKind::Trim)],
            data(8),
            Some(3 * PAGE),
        ),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (what, entries, data, reserve))| {
            let seq = 7 + i as u64;
            let mut bytes = segment::encode_header(seq, 3, jm, &entries, &data, reserve).unwrap();
            let hl = bytes.len();
            bytes.extend_from_slice(&data);
            bytes.resize(hl + data.len().div_ceil(PAGE) * PAGE, 0);
            let mut fields = vec![
                (12, 4),
                (16, 8),
                (24, 8),
                (32, 4),
                (36, 4),
                (40, 8),
                (48, 8),
                (56, 8),
            ];
            for k in 0..entries.len() {
                let at = segment::FIXED_LEN + k * segment::ENTRY_LEN;
                fields.extend([
                    (at, 8),
                    (at + 8, 4),
                    (at + 12, 4),
                    (at + 16, 4),
                    (at + 20, 4),
                ]);
            }
            let crcs = segment::FIXED_LEN + entries.len() * segment::ENTRY_LEN;
            let n_pages = data.len().div_ceil(PAGE);
            fields.extend((0..=n_pages).map(|p| (crcs + 4 * p, 4)));
            Sample {
                what: what.into(),
                bytes,
                fields,
            }
        })
        .collect()
}

/// Recompute the header CRC where the (possibly mutated) counts put it; sometimes the data
/// pages' CRCs too, so mutated objects also pass page verification.
#[allow(clippy::ptr_arg)] // the common Reseal signature
fn seg_reseal(b: &mut Vec<u8>, rng: &mut Rng) {
    let (n_e, n_p) = (le32(b, 32) as u64, le32(b, 36) as u64);
    let crcs = segment::FIXED_LEN as u64 + n_e * segment::ENTRY_LEN as u64;
    let body_end = crcs + n_p * 4;
    if b.len() < segment::FIXED_LEN || body_end + 4 > b.len() as u64 {
        return;
    }
    if rng.chance(60) {
        let (seq, hl) = (le64(b, 16), le32(b, 12) as u64);
        for i in 0..n_p {
            let s = hl + i * PAGE as u64;
            if s + PAGE as u64 > b.len() as u64 {
                break;
            }
            let c = segment::page_crc(seq, i as u32, &b[s as usize..s as usize + PAGE]);
            put(b, (crcs + i * 4) as usize, 4, c as u64);
        }
    }
    let body_end = body_end as usize;
    let c = crc32c::crc32c(&b[..body_end]);
    put(b, body_end, 4, c as u64);
}

fn check_segment(b: &[u8]) -> Result<(), String> {
    let prefix = segment::header_len(b);
    if let Err(e) = &prefix {
        expect_kind("segment::header_len", e, &[ErrorKind::Corruption])?;
    }
    let whole = segment::decode(b);
    let h = match segment::decode_header(b) {
        Err(e) => {
            if whole.is_ok() {
                return Err("segment::decode accepted what decode_header rejects".into());
            }
            return expect_kind("segment::decode_header", &e, &[ErrorKind::Corruption]);
        }
        Ok(h) => h,
    };
    note("segment::decode_header: ok");
    // What a decoded header guarantees to its users.
    let hl = h.header_len;
    if prefix.as_ref().ok() != Some(&hl) {
        return Err(format!(
            "decode_header accepted header_len {hl}, header_len() says {prefix:?}"
        ));
    }
    if hl > b.len() as u64 || h.data_len != h.page_crcs.len() as u64 * PAGE as u64 {
        return Err(format!("inconsistent header accepted: {h:?}"));
    }
    let data_sectors = h.data_len / SECTOR;
    for e in &h.entries {
        let bad = e.len == 0
            || e.lba.checked_add(e.len as u64).is_none()
            || (e.kind == EntryKind::Data && e.off as u64 + e.len as u64 > data_sectors);
        if bad {
            return Err(format!("bad entry accepted: {e:?}"));
        }
    }
    // Page verification over whatever data follows: at odd starting pages, and through
    // verify_data, which must call any short read Corruption.
    let data = &b[hl as usize..];
    for first in [0u32, 1, u32::MAX] {
        let _ = segment::verify_pages(&h, first, data);
    }
    let p = PAGE as u64;
    for (start, end) in [(0, h.data_len), (p, h.data_len), (0, p.min(h.data_len))] {
        if start > end {
            continue;
        }
        let got = &data[(start as usize).min(data.len())..(end as usize).min(data.len())];
        let res = segment::verify_data(&h, start, end, got);
        match res {
            Ok(()) if (got.len() as u64) < end - start => {
                return Err(format!(
                    "verify_data accepted a short read of {start}..{end}"
                ))
            }
            Ok(()) => {}
            Err(e) => expect_kind("segment::verify_data", &e, &[ErrorKind::Corruption])?,
        }
    }
    let complete = data.len() as u64 == h.data_len && segment::verify_pages(&h, 0, data).is_ok();
    let (wh, wdata) = match whole {
        Err(e) if complete => {
            return Err(format!(
                "segment::decode rejects a complete, verified object: {e:?}"
            ))
        }
        Err(e) => return expect_kind("segment::decode", &e, &[ErrorKind::Corruption]),
        Ok(x) => x,
    };
    note("segment::decode: ok");
    if !complete || wh != h || wdata.len() as u64 != h.data_len {
        return Err("segment::decode accepted an incomplete or unverified object".into());
    }
    // Re-encoding gives the same header, after zeroing what the decoder ignores (entry reserved
    // words, padding after the CRC) and re-sealing.
    let again = segment::encode_header(
        h.seq,
        h.epoch,
        h.journal,
        &h.entries,
        wdata,
        Some(hl as usize),
    )
    .map_err(|e| format!("cannot re-encode a decoded header: {e:?}"))?;
    let mut canon = b[..hl as usize].to_vec();
    for k in 0..h.entries.len() {
        put(
            &mut canon,
            segment::FIXED_LEN + k * segment::ENTRY_LEN + 20,
            4,
            0,
        );
    }
    let end = segment::FIXED_LEN + h.entries.len() * segment::ENTRY_LEN + h.page_crcs.len() * 4 + 4;
    canon[end..].fill(0);
    let crc = crc32c::crc32c(&canon[..end - 4]);
    put(&mut canon, end - 4, 4, crc as u64);
    same("segment header", &again, &canon)?;
    if segment::decode_header(&again).map_err(|e| format!("{e:?}"))? != h {
        return Err("re-encoded header decodes differently".into());
    }
    Ok(())
}

#[test]
fn fuzz_segment() {
    fuzz("segment", &seg_samples(), seg_reseal, &check_segment);
}

// ---------------------------------------------------------------------------------------------
// Checkpoint

fn ckpt_samples() -> Vec<Sample> {
    let jm = JournalMark {
        journal_id: 99,
        jseq: 1 << 40,
    };
    let x = |lba, len, off, seg| Extent { lba, len, off, seg };
    let shapes: Vec<(&str, Vec<Extent>)> = vec![
        ("empty", vec![]),
        ("one", vec![x(0, 8, 16, 3)]),
        (
            "mixed",
            vec![
                x(0, 8, 16, 3),
                x(8, 100, 0, ZERO_SEG),
                x(1 << 40, u32::MAX, 0, 1),
            ],
        ),
        (
            "many",
            (0..60)
                .map(|i| x(i * 16, 16, (i * 16) as u32, i / 4))
                .collect(),
        ),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (what, extents))| {
            let c = Checkpoint {
                seq: 5 + i as u64,
                next_seq: 9 + i as u64,
                epoch: 2,
                journal: jm,
                extents,
            };
            let bytes = checkpoint::encode(&c);
            let mut fields = vec![
                (8, 4),
                (12, 4),
                (16, 8),
                (24, 8),
                (32, 8),
                (40, 8),
                (48, 8),
                (56, 8),
            ];
            for k in 0..c.extents.len() {
                let at = 64 + 24 * k;
                fields.extend([(at, 8), (at + 8, 4), (at + 12, 4), (at + 16, 8)]);
            }
            fields.push((bytes.len() - 4, 4));
            Sample {
                what: what.into(),
                bytes,
                fields,
            }
        })
        .collect()
}

/// Recompute the trailing CRC; sometimes first make the length agree with the count (or the
/// count with the length), so the extent loop itself is reached.
fn ckpt_reseal(b: &mut Vec<u8>, rng: &mut Rng) {
    if b.len() >= 68 && rng.chance(30) {
        if rng.chance(50) {
            let n = ((b.len() - 68) / 24) as u64;
            put(b, 56, 8, n);
            let n = le64(b, 56) as usize;
            b.truncate(68 + 24 * n);
        } else {
            let n = le64(b, 56);
            if n < 10_000 {
                b.resize(68 + 24 * n as usize, 0);
            }
        }
    }
    if b.len() >= 4 {
        let at = b.len() - 4;
        let c = crc32c::crc32c(&b[..at]);
        put(b, at, 4, c as u64);
    }
}

fn check_checkpoint(b: &[u8]) -> Result<(), String> {
    let c = match checkpoint::decode(b) {
        Err(e) => return expect_kind("checkpoint::decode", &e, &[ErrorKind::Corruption]),
        Ok(c) => c,
    };
    note("checkpoint::decode: ok");
    if c.next_seq <= c.seq {
        return Err(format!("next_seq {} not after seq {}", c.next_seq, c.seq));
    }
    for x in &c.extents {
        if x.len == 0 || x.lba.checked_add(x.len as u64).is_none() {
            return Err(format!("bad extent accepted: {x:?}"));
        }
    }
    let again = checkpoint::encode(&c);
    let mut canon = b.to_vec();
    put(&mut canon, 12, 4, 0); // reserved
    let at = canon.len() - 4;
    let crc = crc32c::crc32c(&canon[..at]);
    put(&mut canon, at, 4, crc as u64);
    same("checkpoint", &again, &canon)?;
    Ok(())
}

#[test]
fn fuzz_checkpoint() {
    fuzz(
        "checkpoint",
        &ckpt_samples(),
        ckpt_reseal,
        &check_checkpoint,
    );
}

// ---------------------------------------------------------------------------------------------
// Envelope

const KINDS: [Kind; 5] = [
    Kind::Store,
    Kind::Pool,
    Kind::Name,
    Kind::ImageHeader,
    Kind::Lock,
];

fn env_samples() -> Vec<Sample> {
    let bodies: Vec<(&str, Kind, Vec<u8>)> = vec![
        ("empty store", Kind::Store, vec![]),
        (
            "pool",
            Kind::Pool,
            br#"{"id":1,"created":1700000000}"#.to_vec(),
        ),
        ("name", Kind::Name, br#"{"id":"abc123"}"#.to_vec()),
        (
            "image header",
            Kind::ImageHeader,
            format!(
                r#"{{"id":"abc","name":"vm1","size":{},"order":22,"snapshots":[{}]}}"#,
                1u64 << 40,
                r#"{"id":1,"name":"s","seq":9}"#.repeat(20)
            )
            .into_bytes(),
        ),
        (
            "lock",
            Kind::Lock,
            br#"{"owner":7,"epoch":3,"expires_ms":0}"#.to_vec(),
        ),
    ];
    bodies
        .into_iter()
        .map(|(what, k, body)| Sample {
            what: what.into(),
            bytes: envelope::encode(k, &body),
            fields: vec![(8, 4), (12, 4), (16, 4), (20, 4)],
        })
        .collect()
}

#[allow(clippy::ptr_arg)] // the common Reseal signature
fn env_reseal(b: &mut Vec<u8>, rng: &mut Rng) {
    if b.len() < 24 {
        return;
    }
    if rng.chance(40) {
        let n = (b.len() - 24) as u64;
        put(b, 16, 4, n);
    }
    let end = (24 + le32(b, 16) as usize).min(b.len());
    let c = crc32c::crc32c(&b[24..end]);
    put(b, 20, 4, c as u64);
}

fn check_envelope(b: &[u8]) -> Result<(), String> {
    for k in KINDS {
        match envelope::decode(k, b) {
            Err(e) => expect_kind("envelope::decode", &e, &[ErrorKind::Corruption])?,
            Ok(body) => {
                note("envelope::decode: ok");
                same("envelope", &envelope::encode(k, body), b)?;
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_envelope() {
    fuzz("envelope", &env_samples(), env_reseal, &check_envelope);
}

// ---------------------------------------------------------------------------------------------
// Journal record

const JID: u64 = 0xfeed_0000_0000_0042;

fn rec_samples() -> Vec<Sample> {
    let op = |lba, len, kind| Op { lba, len, kind };
    let mut many = Vec::new();
    for i in 0..40u64 {
        let kind = [EntryKind::Data, EntryKind::Zero, EntryKind::Trim][i as usize % 3];
        many.push(op(i * 100, 1 + (i % 3) as u32, kind));
    }
    let shapes: Vec<(&str, RecordKind, Vec<Op>)> = vec![
        ("wrap", RecordKind::Wrap, vec![]),
        ("no ops", RecordKind::Ops, vec![]),
        (
            "mixed",
            RecordKind::Ops,
            vec![
                op(8, 2, EntryKind::Data),
                op(100, 50, EntryKind::Zero),
                op(1, 1, EntryKind::Data),
                op(1 << 40, 1 << 20, EntryKind::Trim),
            ],
        ),
        ("many ops, 3-sector header", RecordKind::Ops, many),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (what, kind, ops))| {
            let sectors: u64 = ops
                .iter()
                .filter(|o| o.kind == EntryKind::Data)
                .map(|o| o.len as u64)
                .sum();
            let data: Vec<u8> = (0..sectors * SECTOR).map(|i| (i % 253) as u8).collect();
            let mut bytes = Vec::new();
            record::encode_into(&mut bytes, JID, 10 + i as u64, kind, &ops, &data);
            let mut fields = vec![
                (8, 4),
                (12, 4),
                (16, 8),
                (24, 8),
                (32, 4),
                (36, 4),
                (40, 4),
                (44, 4),
            ];
            for k in 0..ops.len() {
                let at = 48 + 16 * k;
                fields.extend([(at, 8), (at + 8, 4), (at + 12, 4)]);
            }
            Sample {
                what: what.into(),
                bytes,
                fields,
            }
        })
        .collect()
}

/// Recompute the record CRC; sometimes first cut or pad the buffer to the length the (mutated)
/// header declares, so whole-record checks are reached.
fn rec_reseal(b: &mut Vec<u8>, rng: &mut Rng) {
    if b.len() < 48 {
        return;
    }
    if rng.chance(40) {
        let total = (le32(b, 12) as u64 + le32(b, 40) as u64) * SECTOR;
        if total <= 1 << 20 {
            b.resize(total as usize, 0);
        }
    }
    if b.len() < 48 {
        return;
    }
    let mut c = crc32c::crc32c(&b[..44]);
    c = crc32c::crc32c_append(c, &[0; 4]);
    c = crc32c::crc32c_append(c, &b[48..]);
    put(b, 44, 4, c as u64);
}

fn check_record(b: &[u8]) -> Result<(), String> {
    let verified = record::verify(b);
    let whole = record::decode(b);
    let h = match record::decode_header_any(b) {
        Err(e) => {
            if record::decode_header(b, JID, le64(b, 24)).is_some() || whole.is_ok() {
                return Err(
                    "decode_header or decode accepted what decode_header_any rejects".into(),
                );
            }
            return expect_kind("record::decode_header_any", &e, &[ErrorKind::Corruption]);
        }
        Ok(h) => h,
    };
    note("record::decode_header_any: ok");
    if record::decode_header(b, h.journal_id, h.seq).as_ref() != Some(&h)
        || record::decode_header(b, h.journal_id ^ 1, h.seq).is_some()
        || record::decode_header(b, h.journal_id, h.seq.wrapping_add(1)).is_some()
    {
        return Err("decode_header disagrees with decode_header_any".into());
    }
    if h.header_sectors != record::header_sectors(h.ops.len()) {
        return Err(format!(
            "header_sectors {} for {} ops",
            h.header_sectors,
            h.ops.len()
        ));
    }
    let mut data = 0u64;
    for op in &h.ops {
        if op.len == 0 || op.lba.checked_add(op.len as u64).is_none() {
            return Err(format!("bad op accepted: {op:?}"));
        }
        if op.kind == EntryKind::Data {
            data += op.len as u64;
        }
    }
    if data != h.data_sectors as u64 {
        return Err("data_sectors does not match the ops".into());
    }
    let complete = verified && h.total_len() == b.len() as u64;
    match whole {
        Err(e) if complete => {
            return Err(format!(
                "record::decode rejects a whole, verified record: {e:?}"
            ))
        }
        Err(e) => return expect_kind("record::decode", &e, &[ErrorKind::Corruption]),
        Ok(w) if !complete || w != h => {
            return Err("record::decode accepted a short, long or unverified record".into())
        }
        Ok(_) => note("record::decode: ok"),
    }
    // A whole, verified record re-encodes to itself (header padding zeroed, re-sealed).
    let hb = h.header_sectors as usize * SECTOR as usize;
    let mut again = Vec::new();
    let at = record::encode_into(&mut again, h.journal_id, h.seq, h.kind, &h.ops, &b[hb..]);
    let mut canon = b.to_vec();
    canon[48 + 16 * h.ops.len()..hb].fill(0);
    let mut c = crc32c::crc32c(&canon[..44]);
    c = crc32c::crc32c_append(c, &[0; 4]);
    c = crc32c::crc32c_append(c, &canon[48..]);
    put(&mut canon, 44, 4, c as u64);
    if at != hb {
        return Err(format!("data offset {at}, header is {hb} bytes"));
    }
    same("record", &again, &canon)
}

#[test]
fn fuzz_record() {
    fuzz("record", &rec_samples(), rec_reseal, &check_record);
}

// ---------------------------------------------------------------------------------------------
// rbd diff v1 (no checksum: every mutation reaches the parser)

fn diff_samples() -> Vec<Sample> {
    let shapes: Vec<(&str, Vec<Record>)> = vec![
        ("end only", vec![Record::End]),
        (
            "full",
            vec![
                Record::FromSnap("a".into()),
                Record::ToSnap("snap-b".into()),
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
            ],
        ),
        (
            "writes",
            vec![
                Record::ToSnap("t".into()),
                Record::Size(1 << 20),
                Record::Write {
                    offset: 0,
                    data: vec![],
                },
                Record::Write {
                    offset: 512,
                    data: (0..1000).map(|i| i as u8).collect(),
                },
                Record::Zero {
                    offset: 0,
                    length: 0,
                },
                Record::Write {
                    offset: u64::MAX - 10,
                    data: vec![1; 10],
                },
                Record::End,
            ],
        ),
    ];
    shapes
        .into_iter()
        .map(|(what, recs)| {
            let mut bytes = Vec::new();
            rbd_diff::write_header(&mut bytes).unwrap();
            let mut fields = Vec::new();
            for r in &recs {
                let at = bytes.len();
                match r {
                    Record::FromSnap(_) | Record::ToSnap(_) => fields.push((at + 1, 4)),
                    Record::Size(_) => fields.push((at + 1, 8)),
                    Record::Write { .. } | Record::Zero { .. } => {
                        fields.extend([(at + 1, 8), (at + 9, 8)])
                    }
                    Record::End => {}
                }
                fields.push((at, 1));
                rbd_diff::write_record(&mut bytes, r).unwrap();
            }
            Sample {
                what: what.into(),
                bytes,
                fields,
            }
        })
        .collect()
}

fn check_diff(b: &[u8]) -> Result<(), String> {
    let mut rest: &[u8] = b;
    let mut recs = Vec::new();
    let mut header_ok = false;
    let res = (|| {
        let mut rd = rbd_diff::Reader::new(&mut rest)?;
        header_ok = true;
        while let Some(r) = rd.next_record()? {
            recs.push(r);
            if recs.len() > b.len() {
                return Ok(false);
            }
        }
        Ok(true)
    })();
    let consumed = b.len() - rest.len();
    let mut again = Vec::new();
    if header_ok {
        rbd_diff::write_header(&mut again).unwrap();
    }
    for r in &recs {
        rbd_diff::write_record(&mut again, r).unwrap();
    }
    match res {
        Ok(false) => Err("more records than input bytes: the reader loops".into()),
        Ok(true) => {
            note("rbd_diff: whole stream read");
            same("diff stream", &again, &b[..consumed])?;
            if recs.last() != Some(&Record::End) {
                return Err("stream ended without an End record".into());
            }
            Ok(())
        }
        Err(e) => {
            expect_kind(
                "rbd_diff::Reader",
                &e,
                &[ErrorKind::Invalid, ErrorKind::Io, ErrorKind::Unsupported],
            )?;
            if !b.starts_with(&again) {
                return Err("records read before the error differ from the stream".into());
            }
            Ok(())
        }
    }
}

#[test]
fn fuzz_rbd_diff() {
    fuzz("rbd_diff", &diff_samples(), |_, _| {}, &check_diff);
}

// ---------------------------------------------------------------------------------------------
// Regressions: the cases the fuzzer found, kept as plain tests

fn corrupt<T: std::fmt::Debug>(what: &str, r: shale_error::Result<T>) {
    match r {
        Err(e) if e.kind() == ErrorKind::Corruption => {}
        other => panic!("{what}: expected a Corruption error, got {other:?}"),
    }
}

fn sample<'a>(samples: &'a [Sample], what: &str) -> &'a Sample {
    samples.iter().find(|s| s.what == what).unwrap()
}

/// decode_header accepted a header_len that is not a page multiple (header_len() rejects it;
/// the encoder cannot write it).
#[test]
fn regression_segment_unaligned_header_len() {
    let mut b = sample(&seg_samples(), "reserved header").bytes.clone();
    put(&mut b, 12, 4, 3 * PAGE as u64 + 4);
    seg_reseal(&mut b, &mut Rng(0));
    corrupt("decode_header", segment::decode_header(&b));
    corrupt("decode", segment::decode(&b));
}

/// An entry whose lba + len overflows u64 was accepted.
#[test]
fn regression_segment_entry_end_overflow() {
    let mut b = sample(&seg_samples(), "reserved header").bytes.clone();
    put(&mut b, segment::FIXED_LEN + segment::ENTRY_LEN, 8, u64::MAX);
    seg_reseal(&mut b, &mut Rng(0));
    corrupt("decode_header", segment::decode_header(&b));
}

/// A segment object shorter (or longer) than header_len + data_len is Corruption, and so is a
/// short read of its data area.
#[test]
fn regression_segment_truncated_object() {
    let b = sample(&seg_samples(), "mixed, partial last page")
        .bytes
        .clone();
    let (h, _) = segment::decode(&b).unwrap();
    for cut in 0..b.len() {
        corrupt("decode", segment::decode(&b[..cut]));
    }
    let mut long = b.clone();
    long.push(0);
    corrupt("decode", segment::decode(&long));
    let data = &b[h.header_len as usize..];
    segment::verify_data(&h, 0, h.data_len, data).unwrap();
    corrupt(
        "verify_data",
        segment::verify_data(&h, 0, h.data_len, &data[..PAGE]),
    );
    corrupt("verify_data", segment::verify_data(&h, 0, h.data_len, &[]));
}

/// A checkpoint extent whose lba + len overflows u64 was accepted.
#[test]
fn regression_checkpoint_extent_end_overflow() {
    let mut b = sample(&ckpt_samples(), "mixed").bytes.clone();
    put(&mut b, 64 + 24, 8, u64::MAX - 10);
    let at = b.len() - 4;
    let crc = crc32c::crc32c(&b[..at]);
    put(&mut b, at, 4, crc as u64);
    corrupt("checkpoint::decode", checkpoint::decode(&b));
}

/// A journal op whose lba + len overflows u64 was accepted; a record shorter or longer than
/// its header declares is Corruption.
#[test]
fn regression_record_op_end_overflow_and_length() {
    let good = sample(&rec_samples(), "mixed").bytes.clone();
    let mut b = good.clone();
    put(&mut b, 48, 8, u64::MAX);
    corrupt("decode_header_any", record::decode_header_any(&b));
    record::decode(&good).unwrap();
    for len in [0, 47, 48, 512, good.len() - 1, good.len() + 512] {
        let mut b = good.clone();
        b.resize(len, 0);
        let mut c = crc32c::crc32c(&b[..44.min(len)]);
        if len >= 48 {
            c = crc32c::crc32c_append(c, &[0; 4]);
            c = crc32c::crc32c_append(c, &b[48..]);
            put(&mut b, 44, 4, c as u64);
        }
        corrupt("record::decode", record::decode(&b));
    }
}

/// A data record claiming up to MAX_DATA (1 GiB) bytes on a short stream allocated all of it
/// before finding the stream truncated.
#[test]
fn regression_rbd_diff_huge_length_short_stream() {
    let mut b = rbd_diff::HEADER.to_vec();
    b.push(b'w');
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&rbd_diff::MAX_DATA.to_le_bytes());
    b.extend_from_slice(&[1; 10]);
    LARGEST.with(|l| l.set(0));
    let mut rd = rbd_diff::Reader::new(&b[..]).unwrap();
    let e = rd.next_record().unwrap_err();
    let largest = LARGEST.with(|l| l.get());
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(
        largest <= 16 << 20,
        "allocated {largest} bytes for a 10-byte record"
    );
}
