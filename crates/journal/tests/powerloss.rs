//! Power loss under the ring journal, simulated: a seeded run of appends, syncs and releases on
//! a `CrashFile`, then a crash that drops, reorders and tears unsynced writes, then a reopen.
//! Replay must return every record up to the last sync (after what the store holds), then at
//! most a gap-free run of later ones, each byte-identical to what was appended — never a
//! record out of order, a stale one, or garbage. SHALE_POWERLOSS_RUNS scales the runs
//! (default 300); a failure prints its seed (SHALE_POWERLOSS_SEED replays one).
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shale_format::record::Op;
use shale_format::segment::{EntryKind, JournalMark};
use shale_journal::{CrashFile, CrashMode, LogDevice, LogFile, RingEnv, RingJournal};

const SIZE: u64 = (1 << 20) + 16384;

use shale_clock::{mix64 as mix, Entropy, SeededEntropy};

/// The tests' random source: the library's seeded one (reproducible from the printed seed).
struct Rng(SeededEntropy);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(SeededEntropy::new(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
}

fn env(id: u64) -> RingEnv {
    RingEnv {
        full_wait: Duration::from_millis(1),
        clock: shale_clock::system(),
        fresh_id: id,
    }
}

fn append_one(j: &RingJournal, rng: &mut Rng) -> Result<(u64, Vec<u8>), shale_error::Error> {
    // Mostly equal sizes, as a VM's 4 KiB writes: a new record then lands exactly where an
    // earlier one of the same size began.
    let sectors = match rng.below(4) {
        0 => 1 + rng.below(120) as u32,
        _ => 8,
    };
    let fill = rng.next() as u8;
    let mut out = Vec::new();
    let op = Op {
        lba: rng.below(1 << 20),
        len: sectors,
        kind: EntryKind::Data,
    };
    let s = j.append(&[op], &vec![fill; sectors as usize * 512], &mut out, (0, 0))?;
    Ok((s, out))
}

/// Several lives of one journal file, each ended by a power loss: every replay is a clean
/// prefix of what the life before it appended after the previous replay (a record a power loss
/// dropped never comes back, not even one written before the previous crash), and holds every
/// synced record. Returns (records replayed, unsynced writes at risk).
fn run(seed: u64) -> Result<(usize, usize), String> {
    let mut rng = Rng::new(seed);
    let file = Arc::new(CrashFile::new());
    let dynf: Arc<dyn LogFile> = file.clone();
    let path = std::path::Path::new("sim-journal");
    let (mut j, rep) = RingJournal::open_file(
        dynf.clone(),
        path,
        SIZE,
        9,
        JournalMark::default(),
        env(rng.next() | 1),
    )
    .map_err(|e| e.to_string())?;
    assert!(rep.is_empty());
    let id = j.id();
    // seq -> the record's bytes as appended (by this life, or replayed into it)
    let mut appended: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let (mut synced, mut released) = (0u64, 0u64);
    let (mut total_replayed, mut total_lost) = (0, 0);
    let lives = 1 + rng.below(4);
    for life in 0..lives {
        // Some lives are short (a crash right after a recovery), and syncs are more or less
        // frequent: records a power loss left behind must meet a later life's unsynced ones.
        let steps = match rng.below(3) {
            0 => rng.below(4),
            _ => 20 + rng.below(300),
        };
        let sync_every = 2 + rng.below(30);
        for _ in 0..steps {
            match rng.below(sync_every + 1) {
                0 => {
                    j.sync().map_err(|e| e.to_string())?;
                    synced = appended.keys().next_back().copied().unwrap_or(0);
                }
                1 => {
                    // The store took everything up to some record — synced or not: segments
                    // are uploaded independently of journal syncs.
                    let last = appended.keys().next_back().copied().unwrap_or(0);
                    if last > released {
                        released = released + 1 + rng.below(last - released);
                        j.release(released);
                    }
                }
                _ => match append_one(&j, &mut rng) {
                    Ok((s, out)) => {
                        appended.insert(s, out);
                    }
                    // Full: the store is behind; release what is synced and go on.
                    Err(e) if e.kind() == shale_error::ErrorKind::Unavailable => {
                        let last = appended.keys().next_back().copied().unwrap_or(0);
                        if last > released {
                            released = last;
                            j.release(released);
                        }
                    }
                    Err(e) => return Err(format!("append: {e}")),
                },
            }
        }
        let mode = CrashMode {
            keep_per_mille: rng.below(1001) as u32,
            reorder: rng.below(2) == 0,
            tear: rng.below(2) == 0,
        };
        total_lost += file.unsynced();
        drop(j);
        file.crash(mode, || rng.next());
        let mark = JournalMark {
            journal_id: id,
            jseq: released,
        };
        let (j2, rep) =
            RingJournal::open_file(dynf.clone(), path, SIZE, 9, mark, env(rng.next() | 1))
                .map_err(|e| format!("reopen after life {life}: {e}"))?;
        if j2.id() != id {
            return Err("the journal started afresh".into());
        }
        let mut prev = released;
        for r in &rep {
            let want = appended.get(&r.seq).ok_or_else(|| {
                format!(
                    "life {life}: replayed record {} that was never appended",
                    r.seq
                )
            })?;
            if &r.bytes != want {
                return Err(format!(
                    "life {life}: record {} replayed with other bytes (a record an earlier \
                     life wrote came back)",
                    r.seq
                ));
            }
            if r.seq <= prev {
                return Err(format!("record {} out of order (after {prev})", r.seq));
            }
            // No appended record may be skipped between two replayed ones.
            if let Some((&skipped, _)) = appended.range(prev + 1..r.seq).next() {
                return Err(format!(
                    "record {skipped} is missing but {} was replayed",
                    r.seq
                ));
            }
            prev = r.seq;
        }
        for &s in appended.keys().filter(|&&s| s > released && s <= synced) {
            if !rep.iter().any(|r| r.seq == s) {
                return Err(format!(
                    "synced record {s} lost (released {released}, synced {synced}, {mode:?})"
                ));
            }
        }
        total_replayed += rep.len();
        // What the next life starts from: the records replayed (the engine re-applies them and
        // keeps them in the journal until the store takes them); the dropped ones are gone.
        appended.retain(|&s, _| s <= released || rep.iter().any(|r| r.seq == s));
        synced = prev;
        // New records continue the numbering past everything replayed.
        let (next, out) = match append_one(&j2, &mut rng) {
            // Full of replayed records: the store takes them first.
            Err(e) if e.kind() == shale_error::ErrorKind::Unavailable => {
                released = released.max(prev);
                j2.release(released);
                append_one(&j2, &mut rng)
            }
            r => r,
        }
        .map_err(|e| format!("append after reopen: {e}"))?;
        if next <= prev {
            return Err(format!("numbering went back to {next} after {prev}"));
        }
        appended.insert(next, out);
        j = j2;
    }
    Ok((total_replayed, total_lost))
}

#[test]
fn power_loss_keeps_every_synced_record_and_a_clean_prefix_of_the_rest() {
    if let Some(seed) = std::env::var("SHALE_POWERLOSS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        return;
    }
    let runs: u64 = std::env::var("SHALE_POWERLOSS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let base = mix(std::process::id() as u64 ^ 0x5eed);
    let (mut replayed, mut dropped) = (0, 0);
    for i in 0..runs {
        let seed = mix(base ^ i);
        match run(seed) {
            Ok((r, d)) => {
                replayed += r;
                dropped += d;
            }
            Err(e) => panic!("seed {seed}: {e}; replay with SHALE_POWERLOSS_SEED={seed}"),
        }
    }
    println!("{runs} power losses: {replayed} records replayed, {dropped} unsynced writes at risk");
}
