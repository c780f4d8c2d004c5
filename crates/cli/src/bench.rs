//! `shale bench`: rbd-bench-style load on an image, or (with `--target-file`) the very same
//! load on a plain file, so that one script can print ratios against the filesystem.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde_json::json;
use shale_error::{err, Error, Result};
use shale_image::size::{format_size, parse_size};
use shale_image::{Cluster, ImageSpec};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The image (must exist)
    pub spec: String,
    #[arg(long, value_enum)]
    pub io_type: IoType,
    #[arg(long, default_value = "4K")]
    pub io_size: String,
    #[arg(long, default_value_t = 16)]
    pub io_threads: usize,
    #[arg(long, default_value = "1G")]
    pub io_total: String,
    #[arg(long, value_enum, default_value = "seq")]
    pub io_pattern: Pattern,
    /// Percentage of reads for --io-type readwrite
    #[arg(long, default_value_t = 50)]
    pub rw_mix_read: u8,
    /// Run the same load on this plain file (created at the image's size) instead of the image
    #[arg(long)]
    pub target_file: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IoType {
    Read,
    Write,
    Readwrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    Seq,
    Rand,
}

trait Target: Send + Sync {
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<()>;
    fn write(&self, off: u64, buf: &[u8]) -> Result<()>;
    fn flush(&self) -> Result<()>;
}

impl Target for shale_image::Image {
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        shale_image::Image::read(self, off, buf).map(|_| ())
    }
    fn write(&self, off: u64, buf: &[u8]) -> Result<()> {
        shale_image::Image::write(self, off, buf)
    }
    fn flush(&self) -> Result<()> {
        shale_image::Image::flush(self)
    }
}

impl Target for std::fs::File {
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.read_exact_at(buf, off)
            .map_err(|e| Error::io("bench read", e))
    }
    fn write(&self, off: u64, buf: &[u8]) -> Result<()> {
        self.write_all_at(buf, off)
            .map_err(|e| Error::io("bench write", e))
    }
    fn flush(&self) -> Result<()> {
        self.sync_data()
            .map_err(|e| Error::io("bench fdatasync", e))
    }
}

/// The engine's counters: journal fill, write-back lag, cache hit ratio, bytes to the store.
pub fn stats_json(s: &shale_image::Stats) -> serde_json::Value {
    json!({
        "journal": {"capacity": s.log.capacity, "used": s.log.used, "records": s.log.records,
                    "bytes": s.log.bytes, "full_waits": s.log.full_waits, "full_wait_ms": s.log.full_wait_ns / 1_000_000},
        "write_back": {"pending_segments": s.pending_segments, "pending_bytes": s.pending_bytes, "room_waits": s.room_waits},
        "store": {"segments_written": s.segments_written, "bytes_written": s.bytes_to_store, "reads": s.store_reads,
                  "checkpoints_written": s.checkpoints_written},
        "read_cache": {"capacity": s.cache.capacity, "hits": s.cache.hits, "misses": s.cache.misses,
                       "hit_ratio": s.cache.hit_ratio(), "admitted": s.cache.admitted, "bypassed": s.cache.bypassed,
                       "evicted": s.cache.evicted},
        "extent_map": {"extents": s.extents, "bytes": s.map_bytes},
        "gc": {"runs": s.gc.runs, "segments_relocated": s.gc.segments_relocated, "bytes_relocated": s.gc.bytes_relocated,
               "segments_deleted": s.gc.segments_deleted, "bytes_deleted": s.gc.bytes_deleted},
    })
}

/// `write_bytes` of /proc/self/io (0 where unavailable).
fn proc_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("write_bytes: ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// What a bench run measured.
pub struct Outcome {
    pub io_size: u64,
    pub ops: u64,
    pub secs: f64,
    pub ops_per_sec: f64,
    pub bytes_per_sec: f64,
    /// Bytes this process wrote to the storage below, and per client byte.
    pub device_write_bytes: u64,
    pub device_bytes_per_client_byte: f64,
    /// The engine's counters (image runs only).
    pub image_stats: Option<serde_json::Value>,
}

pub fn run(c: &Cluster, sp: &ImageSpec, a: &BenchArgs, json_out: bool) -> Result<()> {
    let o = measure(c, sp, a)?;
    let (secs, ops_total, iops, amp) =
        (o.secs, o.ops, o.ops_per_sec, o.device_bytes_per_client_byte);
    if json_out {
        crate::out(format!(
            "{}",
            json!({"target": a.target_file.clone().unwrap_or(sp.to_string()), "io_type": format!("{:?}", a.io_type).to_lowercase(),
                   "io_pattern": format!("{:?}", a.io_pattern).to_lowercase(), "io_size": o.io_size, "io_threads": a.io_threads,
                   "ops": ops_total, "elapsed_s": secs, "ops_per_sec": iops, "bytes_per_sec": o.bytes_per_sec,
                   "device_write_bytes": o.device_write_bytes, "device_bytes_per_client_byte": amp,
                   "image_stats": o.image_stats.unwrap_or(serde_json::Value::Null)})
        ));
    } else {
        crate::out(format!(
            "elapsed: {secs:.2} s  ops: {ops_total}  ops/sec: {iops:.0}  bytes/sec: {}/s{}",
            format_size(o.bytes_per_sec as u64),
            if amp > 0.0 {
                format!("  device bytes per client byte: {amp:.2}")
            } else {
                String::new()
            }
        ));
    }
    Ok(())
}

/// Run the load `a` describes on `sp` (or on `a.target_file`) and measure it.
pub fn measure(c: &Cluster, sp: &ImageSpec, a: &BenchArgs) -> Result<Outcome> {
    measure_counting(c, sp, a, &Arc::new(AtomicU64::new(0)))
}

/// As `measure`, adding each completed operation to `done` as it completes (for progress).
pub fn measure_counting(
    c: &Cluster,
    sp: &ImageSpec,
    a: &BenchArgs,
    done: &Arc<AtomicU64>,
) -> Result<Outcome> {
    let io_size = parse_size(&a.io_size, 1)?;
    let total = parse_size(&a.io_total, 1)?;
    if io_size == 0 || io_size > 64 << 20 {
        return Err(err!(Invalid, "--io-size must be between 1 byte and 64M"));
    }
    if a.io_threads == 0 || a.io_threads > 1024 {
        return Err(err!(Invalid, "--io-threads must be between 1 and 1024"));
    }
    if a.rw_mix_read > 100 {
        return Err(err!(Invalid, "--rw-mix-read is a percentage (0..=100)"));
    }
    let img = c.open_image(
        &sp.pool,
        &sp.image,
        a.io_type == IoType::Read && a.target_file.is_none(),
    )?;
    let size = img.size();
    if size < io_size {
        return Err(err!(
            Invalid,
            "image {sp} ({size} bytes) is smaller than --io-size"
        ));
    }
    let img = Arc::new(img);
    let target: Arc<dyn Target> = match &a.target_file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(|e| Error::io(format!("cannot open {p}"), e))?;
            f.set_len(size)
                .map_err(|e| Error::io(format!("cannot size {p}"), e))?;
            Arc::new(f)
        }
        None => img.clone(),
    };
    let io_before = proc_write_bytes();
    let ops_total = total / io_size;
    let blocks = size / io_size;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..a.io_threads {
        let (target, next, done) = (target.clone(), next.clone(), done.clone());
        let (pattern, io_type, mix) = (a.io_pattern, a.io_type, a.rw_mix_read as u64);
        handles.push(std::thread::spawn(move || -> Result<()> {
            let mut buf = vec![0x5au8 ^ t as u8; io_size as usize];
            let mut rng = 0x9e3779b97f4a7c15u64 ^ (t as u64 + 1).wrapping_mul(0x2545f4914f6cdd1d);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops_total {
                    return Ok(());
                }
                let block = match pattern {
                    Pattern::Seq => i % blocks,
                    Pattern::Rand => xorshift(&mut rng) % blocks,
                };
                let is_read = match io_type {
                    IoType::Read => true,
                    IoType::Write => false,
                    IoType::Readwrite => xorshift(&mut rng) % 100 < mix,
                };
                if is_read {
                    target.read(block * io_size, &mut buf)?;
                } else {
                    buf[0] = i as u8;
                    target.write(block * io_size, &buf)?;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.join()
            .map_err(|_| err!(Io, "a bench thread panicked"))??;
    }
    if a.io_type != IoType::Read {
        target.flush()?;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let bytes = ops_total * io_size;
    // Bytes this process sent to the storage layer (page cache write-back it dirtied and
    // direct I/O), per client byte: about 1 means no double write.
    let device = proc_write_bytes().saturating_sub(io_before);
    let amp = if a.io_type == IoType::Read {
        0.0
    } else {
        device as f64 / bytes.max(1) as f64
    };
    let (iops, bps) = (ops_total as f64 / secs, bytes as f64 / secs);
    let image_stats = a.target_file.is_none().then(|| stats_json(&img.stats()));
    drop(target);
    img.close()?;
    Ok(Outcome {
        io_size,
        ops: ops_total,
        secs,
        ops_per_sec: iops,
        bytes_per_sec: bps,
        device_write_bytes: device,
        device_bytes_per_client_byte: amp,
        image_stats,
    })
}
