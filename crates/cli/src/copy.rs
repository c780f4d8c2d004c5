//! `import` and `export`: raw files <-> images, sparse both ways.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use shale_error::{err, Error, Result};
use shale_image::{Cluster, Image, ImageSpec};

use crate::progress;

const CHUNK: usize = 4 << 20;
const ZERO_GRAIN: usize = 4096;

pub struct CopyStats {
    pub size: u64,
    pub written: u64,
    pub skipped: u64,
}

/// Write the non-zero parts of `buf` (at image offset `off`), in 4 KiB grains.
fn write_sparse(img: &Image, off: u64, buf: &[u8], st: &mut CopyStats) -> Result<()> {
    let mut i = 0;
    while i < buf.len() {
        let zero = |j: usize| {
            buf[j..(j + ZERO_GRAIN).min(buf.len())]
                .iter()
                .all(|&b| b == 0)
        };
        if zero(i) {
            let n = ZERO_GRAIN.min(buf.len() - i);
            st.skipped += n as u64;
            i += n;
            continue;
        }
        let mut j = i;
        while j < buf.len() && !zero(j) {
            j = (j + ZERO_GRAIN).min(buf.len());
        }
        img.write(off + i as u64, &buf[i..j])?;
        st.written += (j - i) as u64;
        i = j;
    }
    Ok(())
}

/// Fill `buf` from `r` as far as possible; returns bytes read (short only at EOF).
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading the import source", e)),
        }
    }
    Ok(n)
}

/// Import `path` (`-`: stdin) as the new image `sp`, created with `order` and `features`
/// (None: the defaults).
pub fn import(
    c: &Cluster,
    path: &str,
    sp: &ImageSpec,
    order: u8,
    features: Option<u64>,
) -> Result<CopyStats> {
    let (mut src, size): (Box<dyn Read>, Option<u64>) = if path == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = File::open(path).map_err(|e| Error::io(format!("cannot open {path}"), e))?;
        let len = f
            .metadata()
            .map_err(|e| Error::io(format!("cannot stat {path}"), e))?
            .len();
        (Box::new(f), Some(len))
    };
    c.create_image_with(&sp.pool, &sp.image, size.unwrap_or(0), order, features)?;
    let res = (|| {
        let img = c.open_image(&sp.pool, &sp.image, false)?;
        let bar = progress::bar("Importing image", size.unwrap_or(0));
        let mut st = CopyStats {
            size: 0,
            written: 0,
            skipped: 0,
        };
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(&mut src, &mut buf)?;
            if n == 0 {
                break;
            }
            if size.is_none() {
                img.resize(st.size + n as u64, false)?;
            }
            write_sparse(&img, st.size, &buf[..n], &mut st)?;
            st.size += n as u64;
            bar.set_position(st.size);
        }
        img.close()?;
        bar.finish_and_clear();
        Ok(st)
    })();
    if res.is_err() {
        // As rbd does: a failed import leaves no half image behind.
        let _ = c.remove_image(&sp.pool, &sp.image, |_, _| {});
    }
    res
}

pub fn export(c: &Cluster, sp: &ImageSpec, path: &str) -> Result<CopyStats> {
    let img = crate::snap::open_spec(c, sp, false)?;
    let size = img.size();
    let bar = progress::bar("Exporting image", size);
    let mut st = CopyStats {
        size,
        written: 0,
        skipped: 0,
    };
    let mut buf = vec![0u8; CHUNK];
    if path == "-" {
        let mut out = std::io::stdout().lock();
        let mut off = 0u64;
        while off < size {
            let n = img.read(off, &mut buf)?;
            out.write_all(&buf[..n])
                .map_err(|e| Error::io("writing to stdout", e))?;
            off += n as u64;
            st.written += n as u64;
            bar.set_position(off);
        }
        out.flush().map_err(|e| Error::io("writing to stdout", e))?;
    } else {
        if std::path::Path::new(path).exists()
            && std::fs::metadata(path)
                .map(|m| m.is_file())
                .unwrap_or(false)
        {
            return Err(err!(
                Exists,
                "{path} already exists; remove it first or choose another path"
            ));
        }
        let f = File::create(path).map_err(|e| Error::io(format!("cannot create {path}"), e))?;
        f.set_len(size)
            .map_err(|e| Error::io(format!("cannot size {path}"), e))?;
        let mut off = 0u64;
        while off < size {
            let n = (CHUNK as u64).min(size - off);
            let lba = off / 512;
            let sectors = (off + n).div_ceil(512) - lba;
            for (a, len) in img.allocated_with_parent(lba, sectors) {
                let s = (a * 512).max(off);
                let e = ((a + len) * 512).min(off + n);
                let b = &mut buf[..(e - s) as usize];
                img.read(s, b)?;
                f.write_all_at(b, s)
                    .map_err(|e| Error::io(format!("writing {path}"), e))?;
                st.written += b.len() as u64;
            }
            off += n;
            bar.set_position(off);
        }
        f.sync_all()
            .map_err(|e| Error::io(format!("syncing {path}"), e))?;
    }
    bar.finish_and_clear();
    Ok(st)
}
