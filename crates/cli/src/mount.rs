//! `shale mount DIR [--pool POOL] [--read-only]`: serve a pool as files (crates/fuse) until
//! unmounted (`fusermount -u DIR`) or stopped with SIGTERM / SIGINT; exits 0 once every image
//! is flushed and its lock released.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use shale_error::Result;
use shale_image::Cluster;

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
    /// Serve Prometheus metrics on ADDR:PORT (not wired yet: refused)
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
}

pub(crate) fn mount(c: Cluster, a: &MountArgs) -> Result<()> {
    if let Some(m) = &a.metrics {
        return Err(shale_error::err!(
            Unsupported,
            "--metrics {m}: the metrics endpoint is not available in this build yet"
        ));
    }
    let mut opts = shale_fuse::Options::new(
        a.pool
            .as_deref()
            .unwrap_or(c.settings().default_pool.as_str()),
    );
    opts.read_only = a.read_only;
    let dir = a.dir.clone();
    shale_fuse::mount(c, &dir, opts, Arc::new(shale_fuse::NoRecorder), || {
        eprintln!("shale: mounted on {}", dir.display());
    })
}
