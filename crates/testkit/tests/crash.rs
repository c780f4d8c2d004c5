//! Out-of-process crash test: a writer child doing random I/O with periodic flushes is
//! SIGKILLed at seeded random moments; after each kill the image must equal the model after
//! some prefix of the logged operations that includes every operation before the last
//! completed flush. The seed is printed; replay with SHALE_CRASH_SEED=<seed>. The number of
//! kills is SHALE_CRASH_TRIALS (default 200).

use std::process::Command;
use std::time::Duration;

use shale_testkit::{apply, Op, Rng};

const SIZE: u64 = 2 << 20;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn sigkill_writer_keeps_a_flushed_prefix() {
    let seed = env_u64("SHALE_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let trials = env_u64("SHALE_CRASH_TRIALS").unwrap_or(200);
    println!("crash test seed {seed} ({trials} kills); replay with SHALE_CRASH_SEED={seed}");
    let dir = std::env::temp_dir().join(format!("shale-crash-{}-{seed}", std::process::id()));
    let url = format!("file://{}", dir.join("store").display());
    let mut s = shale_image::Settings::default();
    s.set("store", &url).unwrap();
    s.set("segment_size", "64K").unwrap();
    s.set("checkpoint_interval", "4").unwrap();
    let c = shale_image::Cluster::connect(s).unwrap();
    c.create_image("rbd", "crash", SIZE, 22).unwrap();
    let mut model = vec![0u8; SIZE as usize];
    let mut rng = Rng::new(seed);
    let (mut total_ops, mut total_flushed) = (0usize, 0u64);
    for t in 0..trials {
        let log = dir.join(format!("ops-{t}.log"));
        let wseed = rng.next();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shale-crash-writer"))
            .args([url.as_str(), "crash", &wseed.to_string(), log.to_str().unwrap()])
            .spawn()
            .expect("spawn writer");
        std::thread::sleep(Duration::from_millis(5 + rng.below(120)));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("seed {seed} trial {t}: writer exited early with {status}");
        }
        child.kill().expect("SIGKILL writer");
        child.wait().unwrap();

        let recs = Op::decode_log(&std::fs::read(&log).unwrap_or_default());
        let ops: Vec<Op> = recs.iter().copied().filter(|o| !matches!(o, Op::Flushed { .. })).collect();
        let flushed = recs.iter().filter_map(|o| if let Op::Flushed { upto } = o { Some(*upto) } else { None }).max().unwrap_or(0);
        total_ops += ops.len();
        total_flushed += flushed;

        let img = c.open_image("rbd", "crash", false).unwrap();
        let mut got = vec![0u8; SIZE as usize];
        assert_eq!(img.read(0, &mut got).unwrap(), SIZE as usize);
        img.close().unwrap();

        let mut m = model.clone();
        for op in &ops[..flushed as usize] {
            apply(&mut m, op);
        }
        let mut matched = None;
        for k in flushed as usize..=ops.len() {
            if k > flushed as usize {
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
                    "seed {seed} trial {t}: image is no prefix of the history ({} ops logged, {flushed} flushed; \
                     vs. the full history it first differs at byte {first:?})",
                    ops.len()
                );
            }
        }
        let _ = std::fs::remove_file(&log);
    }
    println!("{trials} kills, {total_ops} operations logged, {total_flushed} covered by completed flushes");
    assert!(total_flushed > 0, "no flush completed in any trial: the test proved nothing");
    let _ = std::fs::remove_dir_all(&dir);
}
