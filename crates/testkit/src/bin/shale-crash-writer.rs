//! Crash-test writer: random I/O with periodic flushes on one image until killed.
//!
//! usage: shale-crash-writer STORE_URL IMAGE SEED LOGFILE
//! The store must hold pool `rbd` with the image. See shale_testkit for the log protocol.

use shale_testkit::{Op, Rng};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: shale-crash-writer STORE_URL IMAGE SEED LOGFILE");
        std::process::exit(2);
    }
    if let Err(e) = run(&args[1], &args[2], &args[3], &args[4]) {
        eprintln!("shale-crash-writer: {e}");
        std::process::exit(1);
    }
}

fn run(url: &str, image: &str, seed: &str, log: &str) -> Result<(), Box<dyn std::error::Error>> {
    let seed: u64 = seed.parse()?;
    let mut s = shale_image::Settings::load()?;
    s.set("store", url)?;
    let c = shale_image::Cluster::connect(s)?;
    let img = c.open_image("rbd", image, false)?;
    let size = img.size();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    loop {
        let r = rng.below(100);
        if r < 8 {
            img.flush()?;
            Op::Flushed { upto: n }.append(&mut f)?;
            continue;
        }
        let aligned = rng.below(4) != 0;
        let len = if aligned {
            (1 + rng.below(64)) * 512
        } else {
            1 + rng.below(40_000)
        };
        let off = if aligned {
            rng.below((size - len) / 512 + 1) * 512
        } else {
            rng.below(size - len + 1)
        };
        let op = if r < 85 {
            Op::Write {
                off,
                len,
                seed: rng.next_u64(),
            }
        } else {
            Op::Zero { off, len }
        };
        op.append(&mut f)?;
        match op {
            Op::Write { off, len, seed } => {
                img.write(off, &shale_testkit::pattern(seed, off, len))?
            }
            Op::Zero { off, len } => img.write_zeroes(off, len)?,
            Op::Flushed { .. } => {}
        }
        n += 1;
    }
}
