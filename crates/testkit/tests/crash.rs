//! Out-of-process crash test: a writer child with up to 32 asynchronous writes in flight,
//! asynchronous flushes and occasional snapshots is SIGKILLed once its operation log holds a
//! seeded number of records (so a printed seed replays the run, up to thread timing); after
//! each kill
//! - a read-only open (which must first recover what the dead writer left in its journal) and
//!   then a writable open both read the same image;
//! - the image equals the model after some prefix of the logged operations that includes
//!   every operation before the last completed flush and before the last snapshot (only the
//!   snapshots' part, when the journal is deleted after the kill);
//! - every snapshot the writer created reads exactly as the model at its point.
//!
//! Replay with SHALE_CRASH_SEED=<seed>. SHALE_CRASH_TRIALS (default 200) scales the number of
//! kills: 200 with the in-place log, 100 with the ring journal, 50 + 50 losing them, and 200 on
//! S3 with the ring journal when SHALE_TEST_S3=s3://bucket/prefix is set.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::process::Command;
use std::time::Duration;

use shale_testkit::{apply, Op, Rng};

const SIZE: u64 = 2 << 20;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Which log device the writer uses, and whether it is lost after each kill.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Local store, open segments written in place (the default).
    InPlace,
    /// Ring journal in a cache directory.
    Ring,
    /// The S3 peer (SHALE_TEST_S3) with a ring journal.
    S3,
}

fn trials(default: u64) -> u64 {
    env_u64("SHALE_CRASH_TRIALS")
        .map(|t| t * default / 200)
        .unwrap_or(default)
        .max(1)
}

#[test]
fn sigkill_in_place_log_keeps_a_flushed_prefix() {
    crash_run(Mode::InPlace, false, trials(200));
}

#[test]
fn sigkill_ring_journal_keeps_a_flushed_prefix() {
    crash_run(Mode::Ring, false, trials(100));
}

#[test]
fn losing_the_in_place_log_keeps_a_prefix() {
    crash_run(Mode::InPlace, true, trials(50));
}

#[test]
fn losing_the_ring_journal_keeps_a_prefix() {
    crash_run(Mode::Ring, true, trials(50));
}

#[test]
fn sigkill_on_s3_ring_journal_keeps_a_flushed_prefix() {
    if std::env::var("SHALE_TEST_S3").is_err() {
        println!("S3 crash test skipped: set SHALE_TEST_S3=s3://bucket/prefix (and AWS_*)");
        return;
    }
    crash_run(Mode::S3, false, trials(200));
}

fn crash_run(mode: Mode, lose_journal: bool, trials: u64) {
    let seed = env_u64("SHALE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("crash test {mode:?} lose_journal={lose_journal}: seed {seed} ({trials} kills); replay with SHALE_CRASH_SEED={seed}");
    let dir = std::env::temp_dir().join(format!(
        "shale-crash-{}-{seed}-{mode:?}-{lose_journal}",
        std::process::id()
    ));
    let url = match mode {
        Mode::S3 => format!(
            "{}/crash-{}-{seed}",
            std::env::var("SHALE_TEST_S3")
                .unwrap()
                .trim_end_matches('/'),
            std::process::id()
        ),
        _ => format!("file://{}", dir.join("store").display()),
    };
    let cache = dir.join("cache");
    let journal = match mode {
        Mode::InPlace => "auto",
        Mode::Ring | Mode::S3 => "ring",
    };
    let env = [
        ("SHALE_JOURNAL", journal.to_string()),
        ("SHALE_CACHE_DIR", cache.display().to_string()),
        ("SHALE_CACHE_SIZE", "3M".to_string()),
        ("SHALE_SEGMENT_SIZE", "64K".to_string()),
        ("SHALE_CHECKPOINT_INTERVAL", "4".to_string()),
    ];
    let mut s = shale_image::Settings::default();
    s.set("store", &url).unwrap();
    for (k, v) in &env {
        s.set(&k["SHALE_".len()..].to_ascii_lowercase(), v).unwrap();
    }
    let c = shale_image::Cluster::connect(s).unwrap();
    let id = c.create_image("rbd", "crash", SIZE, 22).unwrap();
    let mut model = vec![0u8; SIZE as usize];
    let mut rng = Rng::new(seed);
    let (mut total_ops, mut total_flushed, mut total_snaps) = (0usize, 0u64, 0usize);
    for t in 0..trials {
        let log = dir.join(format!("ops-{t}.log"));
        let wseed = rng.next_u64();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shale-crash-writer"))
            .args([
                url.as_str(),
                "crash",
                &wseed.to_string(),
                log.to_str().unwrap(),
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .expect("spawn writer");
        // The kill moment: once the log holds a seeded number of records.
        let target = 5 + rng.below(400);
        let t0 = std::time::Instant::now();
        loop {
            let have = std::fs::metadata(&log).map(|m| m.len() / 32).unwrap_or(0);
            if have >= target || t0.elapsed() > Duration::from_secs(20) {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("seed {seed} trial {t}: writer exited early with {status}");
            }
            std::thread::sleep(Duration::from_micros(300));
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("seed {seed} trial {t}: writer exited early with {status}");
        }
        child.kill().expect("SIGKILL writer");
        child.wait().unwrap();
        if lose_journal {
            let _ = std::fs::remove_dir_all(cache.join("journal"));
            let _ = std::fs::remove_dir_all(dir.join(format!("store/rbd/images/{id}/open")));
        }

        let recs = Op::decode_log(&std::fs::read(&log).unwrap_or_default());
        let ops: Vec<Op> = recs
            .iter()
            .copied()
            .filter(|o| matches!(o, Op::Write { .. } | Op::Zero { .. }))
            .collect();
        let snaps: Vec<(u64, u64)> = recs
            .iter()
            .filter_map(|o| match *o {
                Op::Snap { upto, id } => Some((upto, id)),
                _ => None,
            })
            .collect();
        let flushed = recs
            .iter()
            .filter_map(|o| {
                if let Op::Flushed { upto } = o {
                    Some(*upto)
                } else {
                    None
                }
            })
            .max()
            .unwrap_or(0);
        total_ops += ops.len();
        total_flushed += flushed;
        total_snaps += snaps.len();
        // A snapshot stored everything before it; a flush made it durable in the journal
        // (with the journal lost, only what the snapshots stored is promised).
        let snapped = snaps.iter().map(|s| s.0).max().unwrap_or(0);
        let must = if lose_journal {
            snapped as usize
        } else {
            flushed.max(snapped) as usize
        };

        // A read-only view first: it must not miss what the dead writer acknowledged.
        let ro = c.open_image("rbd", "crash", true).unwrap();
        let mut got_ro = vec![0u8; SIZE as usize];
        assert_eq!(ro.read(0, &mut got_ro).unwrap(), SIZE as usize);
        drop(ro);
        let img = c.open_image("rbd", "crash", false).unwrap();
        let mut got = vec![0u8; SIZE as usize];
        assert_eq!(img.read(0, &mut got).unwrap(), SIZE as usize);
        assert!(
            got_ro == got,
            "seed {seed} trial {t} ({mode:?}, lose_journal={lose_journal}): the read-only view \
             differs from the recovered image (first at byte {:?})",
            got_ro.iter().zip(&got).position(|(a, b)| a != b)
        );

        let mut m = model.clone();
        for op in &ops[..must.min(ops.len())] {
            apply(&mut m, op);
        }
        // Every snapshot reads as the model at its point.
        for &(upto, sid) in &snaps {
            let mut sm = model.clone();
            for op in &ops[..upto as usize] {
                apply(&mut sm, op);
            }
            let snap = c
                .open_image_at("rbd", "crash", &format!("s{sid}"))
                .unwrap_or_else(|e| panic!("seed {seed} trial {t}: snapshot s{sid}: {e}"));
            let mut sg = vec![0u8; SIZE as usize];
            snap.read(0, &mut sg).unwrap();
            assert!(
                sg == sm,
                "seed {seed} trial {t} ({mode:?}): snapshot s{sid} (after {upto} ops) differs \
                 from its model at byte {:?}",
                sg.iter().zip(&sm).position(|(a, b)| a != b)
            );
        }
        for s in img.snap_list().unwrap() {
            img.snap_remove(&s.name).unwrap();
        }
        img.close().unwrap();
        drop(img);

        let mut matched = None;
        for k in must..=ops.len() {
            if k > must {
                apply(&mut m, &ops[k - 1]);
            }
            if m == got {
                matched = Some(k);
                break;
            }
        }
        match matched {
            Some(_) => model = got,
            None => {
                let first = m.iter().zip(&got).position(|(a, b)| a != b);
                panic!(
                    "seed {seed} trial {t} ({mode:?}, lose_journal={lose_journal}): image is no prefix of the history \
                     ({} ops logged, {flushed} flushed, {must} required; vs. the full history it first differs at byte {first:?})",
                    ops.len()
                );
            }
        }
        let _ = std::fs::remove_file(&log);
    }
    println!("{trials} kills, {total_ops} operations logged, {total_flushed} covered by completed flushes, {total_snaps} snapshots verified");
    assert!(
        total_flushed > 0,
        "no flush completed in any trial: the test proved nothing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
