//! `shale nbd serve`: serve images over NBD (the server lives in the shale-nbd crate).

use std::path::PathBuf;

use clap::Subcommand;
use shale_error::Result;
use shale_image::Cluster;

#[derive(Subcommand, Debug, Clone)]
pub(crate) enum NbdCmd {
    /// Serve images over NBD until SIGTERM/SIGINT: `shale nbd serve rbd/vm1 rbd/base@gold`.
    /// The export name is the spec (`pool/image`; `pool/image@snap` is read-only); the empty
    /// name selects the first. Listens on 127.0.0.1:10809 unless told otherwise, or on the
    /// socket a service manager passed (LISTEN_FDS)
    Serve {
        /// Images: pool/image or pool/image@snap
        #[arg(required = true)]
        specs: Vec<String>,
        /// Listen on this Unix socket
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Listen on this TCP address (ADDR:PORT; a bare PORT means 127.0.0.1)
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
        /// Serve every image read-only
        #[arg(long)]
        read_only: bool,
        /// Serve Prometheus metrics at http://ADDR:PORT/metrics
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<String>,
        /// Require TLS (NBD_OPT_STARTTLS) with this certificate chain (PEM)
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM)
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

pub(crate) fn run(c: &Cluster, cmd: NbdCmd) -> Result<()> {
    match cmd {
        NbdCmd::Serve {
            specs,
            socket,
            listen,
            read_only,
            metrics,
            tls_cert,
            tls_key,
        } => shale_nbd::serve(
            c,
            &shale_nbd::ServeOptions {
                specs,
                socket,
                listen,
                read_only,
                metrics,
                tls_cert,
                tls_key,
            },
        ),
    }
}
