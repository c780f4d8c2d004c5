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

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env(id: u64) -> RingEnv {
    RingEnv {
        full_wait: Duration::from_millis(1),
        clock: shale_clock::system(),
        fresh_id: id,
    }
}

fn run(seed: u64) -> Result<(usize, usize), String> {
    let mut rng = Rng(seed);
    let file = Arc::new(CrashFile::new());
    let dynf: Arc<dyn LogFile> = file.clone();
    let path = std::path::Path::new("sim-journal");
    let (j, rep) = RingJournal::open_file(
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
    // seq -> the record's bytes as appended
    let mut appended: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let (mut synced, mut released) = (0u64, 0u64);
    let steps = 20 + rng.below(300);
    for _ in 0..steps {
        match rng.below(10) {
            0 | 1 => {
                j.sync().map_err(|e| e.to_string())?;
                synced = appended.keys().next_back().copied().unwrap_or(0);
            }
            2 => {
                // The store took everything up to some record — synced or not: segments are
                // uploaded independently of journal syncs.
                let last = appended.keys().next_back().copied().unwrap_or(0);
                if last > released {
                    released = released + 1 + rng.below(last - released);
                    j.release(released);
                }
            }
            _ => {
                let sectors = 1 + rng.below(120) as u32;
                let fill = rng.next() as u8;
                let mut out = Vec::new();
                let op = Op {
                    lba: rng.below(1 << 20),
                    len: sectors,
                    kind: EntryKind::Data,
                };
                match j.append(&[op], &vec![fill; sectors as usize * 512], &mut out, (0, 0)) {
                    Ok(s) => {
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
                }
            }
        }
    }
    let mode = CrashMode {
        keep_per_mille: rng.below(1001) as u32,
        reorder: rng.below(2) == 0,
        tear: rng.below(2) == 0,
    };
    let lost = file.unsynced();
    drop(j);
    file.crash(mode, || rng.next());
    let mark = JournalMark {
        journal_id: id,
        jseq: released,
    };
    let (j2, rep) = RingJournal::open_file(dynf, path, SIZE, 9, mark, env(rng.next() | 1))
        .map_err(|e| format!("reopen: {e}"))?;
    if j2.id() != id {
        return Err("the journal started afresh".into());
    }
    let mut prev = released;
    for r in &rep {
        let want = appended
            .get(&r.seq)
            .ok_or_else(|| format!("replayed record {} that was never appended", r.seq))?;
        if &r.bytes != want {
            return Err(format!("record {} replayed with other bytes", r.seq));
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
    // New records after the reopen (once the store took the replayed ones) continue the
    // numbering past everything replayed.
    j2.release(prev.max(released));
    let mut out = Vec::new();
    let next = j2
        .append(
            &[Op {
                lba: 0,
                len: 1,
                kind: EntryKind::Data,
            }],
            &[1u8; 512],
            &mut out,
            (0, 0),
        )
        .map_err(|e| format!("append after reopen: {e}"))?;
    if next <= prev {
        return Err(format!("numbering went back to {next} after {prev}"));
    }
    Ok((rep.len(), lost))
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
