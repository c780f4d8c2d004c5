//! Lock-test writer: writes generation g (g = 1, 2, ...) over a 64 KiB region, flushes, and
//! prints `flushed g`, until killed or fenced (then prints `fenced` and exits 3).
//!
//! usage: shale-lock-writer STORE_URL IMAGE REGION_OFFSET [MAX_GEN]
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::io::Write;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: shale-lock-writer STORE_URL IMAGE REGION_OFFSET [MAX_GEN]");
        std::process::exit(2);
    }
    let run = || -> Result<(), shale_error::Error> {
        let mut s = shale_image::Settings::load()?;
        s.set("store", &a[1])?;
        let c = shale_image::Cluster::connect(s)?;
        let img = c.open_image("rbd", &a[2], false)?;
        let off: u64 = a[3]
            .parse()
            .map_err(|_| shale_error::Error::invalid("bad offset"))?;
        let max: u64 = a.get(4).and_then(|m| m.parse().ok()).unwrap_or(u64::MAX);
        let mut g = 1u64;
        while g <= max {
            let mut block = vec![(g % 251) as u8 + 1; 65536];
            block[..8].copy_from_slice(&g.to_le_bytes());
            img.write(off, &block)?;
            img.flush()?;
            println!("flushed {g}");
            let _ = std::io::stdout().flush();
            g += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        img.close()
    };
    if let Err(e) = run() {
        if e.kind() == shale_error::ErrorKind::Fenced {
            println!("fenced");
            std::process::exit(3);
        }
        eprintln!("shale-lock-writer: {e}");
        std::process::exit(1);
    }
}
