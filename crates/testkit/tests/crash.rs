//! Out-of-process crash test: a writer child doing random I/O with periodic flushes is
//! SIGKILLed at seeded random moments; after each kill the image must equal the model after
//! some prefix of the logged operations that includes every operation before the last
//! completed flush (only some prefix, when the journal is deleted after the kill). The seed is
//! printed; replay with SHALE_CRASH_SEED=<seed>. SHALE_CRASH_TRIALS (default 200) scales the
//! number of kills: 200 with the in-place log, 100 with the ring journal, 50 + 50 losing them.

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
    let url = format!("file://{}", dir.join("store").display());
    let cache = dir.join("cache");
    let journal = match mode {
        Mode::InPlace => "auto",
        Mode::Ring => "ring",
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
    let (mut total_ops, mut total_flushed) = (0usize, 0u64);
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
        std::thread::sleep(Duration::from_millis(5 + rng.below(120)));
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
            .filter(|o| !matches!(o, Op::Flushed { .. }))
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
        // With the journal lost, only the prefix property is promised.
        let must = if lose_journal { 0 } else { flushed as usize };

        let img = c.open_image("rbd", "crash", false).unwrap();
        let mut got = vec![0u8; SIZE as usize];
        assert_eq!(img.read(0, &mut got).unwrap(), SIZE as usize);
        img.close().unwrap();

        let mut m = model.clone();
        for op in &ops[..must] {
            apply(&mut m, op);
        }
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
                     ({} ops logged, {flushed} flushed; vs. the full history it first differs at byte {first:?})",
                    ops.len()
                );
            }
        }
        let _ = std::fs::remove_file(&log);
    }
    println!("{trials} kills, {total_ops} operations logged, {total_flushed} covered by completed flushes");
    assert!(
        total_flushed > 0,
        "no flush completed in any trial: the test proved nothing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
