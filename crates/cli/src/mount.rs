//! `shale mount DIR [--pool POOL] [--read-only] [--metrics ADDR:PORT]`: serve a pool as files
//! (crates/fuse) until unmounted (`fusermount -u DIR`) or stopped with SIGTERM / SIGINT; exits
//! 0 once every image is flushed and its lock released. `--metrics` serves per-image counters
//! (crates/metrics) at http://ADDR:PORT/metrics while mounted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use shale_error::{err, Result};
use shale_fuse::{Op, Recorder};
use shale_image::{Cluster, Image};
use shale_metrics::{ImageMetrics, Registry};

#[derive(Args, Debug)]
pub(crate) struct MountArgs {
    /// The directory to mount on
    dir: PathBuf,
    /// The pool to show (default: the configured default pool)
    #[arg(long)]
    pool: Option<String>,
    /// Every file read-only
    #[arg(long)]
    read_only: bool,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
}

/// The mount's per-file operations, counted in a metrics registry under the labels `pool` and
/// `image` (the file name: `IMAGE@SNAP` for a snapshot). A file's counters live as long as the
/// mount, across opens and closes (a `dd` or `qemu-img` opens and closes a file per command);
/// so the registry never holds the image itself, and the engine gauges crates/metrics can read
/// from an image are not reported here (that would keep a closed image open).
struct Metrics {
    reg: Arc<Registry>,
    files: Mutex<HashMap<String, Arc<ImageMetrics>>>,
}

impl Metrics {
    fn file(&self, pool: &str, file: &str) -> Arc<ImageMetrics> {
        let mut g = self.files.lock().unwrap_or_else(|p| p.into_inner());
        g.entry(file.to_string())
            .or_insert_with(|| self.reg.register(pool, file, None))
            .clone()
    }
}

impl Recorder for Metrics {
    fn opened(&self, pool: &str, file: &str, img: &Arc<Image>) {
        // Show the file's series from its first open on, before any request completes, and
        // its engine and lock figures while it is open (held weakly: closing is not delayed).
        self.file(pool, file).set_source(Some(img));
    }

    fn closed(&self, pool: &str, file: &str) {
        self.file(pool, file).set_source(None);
    }

    fn record(&self, pool: &str, file: &str, op: Op, bytes: u64, latency: Duration, ok: bool) {
        use shale_metrics::Op as M;
        let op = match op {
            Op::Read => M::Read,
            Op::Write => M::Write,
            Op::Discard | Op::WriteZeroes => M::Discard,
            Op::Flush => M::Flush,
        };
        let m = self.file(pool, file);
        if ok {
            m.record(op, bytes, latency)
        } else {
            m.record_error(op)
        }
    }
}

pub(crate) fn mount(c: Cluster, a: &MountArgs) -> Result<()> {
    let mut opts = shale_fuse::Options::new(
        a.pool
            .as_deref()
            .unwrap_or(c.settings().default_pool.as_str()),
    );
    opts.read_only = a.read_only;
    let (recorder, server): (Arc<dyn Recorder>, _) = match &a.metrics {
        Some(addr) => {
            let reg = Registry::new();
            let server = shale_metrics::serve(addr, reg.clone())
                .map_err(|e| err!(Invalid, "--metrics {addr}: {e}"))?;
            eprintln!("shale: metrics at http://{}/metrics", server.local_addr());
            let m = Metrics {
                reg,
                files: Mutex::default(),
            };
            (Arc::new(m), Some(server))
        }
        None => (Arc::new(shale_fuse::NoRecorder), None),
    };
    let dir = a.dir.clone();
    let r = shale_fuse::mount(c, &dir, opts, recorder, || {
        eprintln!("shale: mounted on {}", dir.display());
    });
    drop(server);
    r
}
