//! `shale nbd serve`: open the images, listen, serve until SIGTERM/SIGINT, then flush, release
//! the exclusive locks and return.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shale_error::{err, Result};
use shale_image::{Cluster, ImageSpec};
use shale_metrics::Registry;

use crate::net::Listener;
use crate::server::{Export, Server};

/// How long requests in flight may take to finish at shutdown.
const GRACE: Duration = Duration::from_secs(20);
/// The default TCP address (NBD's IANA port, on loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10809";

/// What `shale nbd serve` was asked for.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub specs: Vec<String>,
    pub socket: Option<PathBuf>,
    pub listen: Option<String>,
    pub read_only: bool,
    pub metrics: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// `ADDR:PORT`, `:PORT` or `PORT`; a bare port listens on 127.0.0.1.
pub fn parse_listen(s: &str) -> Result<String> {
    let s = s.trim();
    let full = if let Some(p) = s.strip_prefix(':') {
        format!("127.0.0.1:{p}")
    } else if s.parse::<u16>().is_ok() {
        format!("127.0.0.1:{s}")
    } else {
        s.to_string()
    };
    use std::net::ToSocketAddrs;
    match full.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(full),
        _ => Err(err!(
            Invalid,
            "listen address {s:?} is not ADDR:PORT (for example 127.0.0.1:10809)"
        )),
    }
}

fn open_exports(c: &Cluster, o: &ServeOptions, registry: &Registry) -> Result<Vec<Arc<Export>>> {
    if o.specs.is_empty() {
        return Err(err!(
            Invalid,
            "give at least one image to serve: pool/image[@snap]"
        ));
    }
    let dp = c.settings().default_pool.clone();
    let mut exports: Vec<Arc<Export>> = Vec::new();
    for given in &o.specs {
        let sp = ImageSpec::parse(given, &dp)?;
        let name = sp.to_string();
        if exports.iter().any(|e| e.name == name) {
            return Err(err!(Invalid, "image {name} is given twice"));
        }
        let (img, read_only) = match &sp.snap {
            Some(s) => (c.open_image_at(&sp.pool, &sp.image, s)?, true),
            None => (c.open_image(&sp.pool, &sp.image, o.read_only)?, o.read_only),
        };
        let img = Arc::new(img);
        serve_others(&img);
        let label = match &sp.snap {
            Some(s) => format!("{}@{s}", sp.image),
            None => sp.image.clone(),
        };
        let metrics = registry.register(&sp.pool, &label, Some(img.clone()));
        let mut aliases = vec![];
        if *given != name {
            aliases.push(given.clone());
        }
        exports.push(Arc::new(Export {
            name,
            aliases,
            image: img,
            read_only,
            metrics,
        }));
    }
    Ok(exports)
}

/// The listener, and whether a service manager passed it (socket activation).
fn listener(o: &ServeOptions) -> Result<(Listener, bool)> {
    let io = |what: &str, e: std::io::Error| err!(Unavailable, "{what}: {e}");
    if o.socket.is_some() && o.listen.is_some() {
        return Err(err!(Invalid, "give --socket or --listen, not both"));
    }
    if let Some(p) = &o.socket {
        if p.exists() {
            // A live server answers on it: leave it alone. A stale socket file is removed.
            if std::os::unix::net::UnixStream::connect(p).is_ok() {
                return Err(err!(Busy, "{} is in use by a running server", p.display()));
            }
            use std::os::unix::fs::FileTypeExt;
            let ft = std::fs::symlink_metadata(p)
                .map_err(|e| io("checking the socket path", e))?
                .file_type();
            if !ft.is_socket() {
                return Err(err!(Exists, "{} exists and is not a socket", p.display()));
            }
            std::fs::remove_file(p).map_err(|e| io("removing a stale socket", e))?;
        }
        let l = std::os::unix::net::UnixListener::bind(p)
            .map_err(|e| io(&format!("listening on {}", p.display()), e))?;
        return Ok((Listener::Unix(l), false));
    }
    if o.listen.is_none() {
        if let Some(l) = crate::net::activated_listener().map_err(|e| io("socket activation", e))? {
            return Ok((l, true));
        }
    }
    let addr = parse_listen(o.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
    let l =
        std::net::TcpListener::bind(&addr).map_err(|e| io(&format!("listening on {addr}"), e))?;
    Ok((Listener::Tcp(l), false))
}

/// Serve until SIGTERM or SIGINT; then finish requests in flight, flush, release the locks.
/// Prints `listening on ADDR` (and `metrics on ADDR`) to stdout once ready, unless
/// socket-activated.
pub fn serve(c: &Cluster, o: &ServeOptions) -> Result<()> {
    let tls = match (&o.tls_cert, &o.tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::net::tls_config(cert, key).map_err(|e| err!(Invalid, "TLS settings: {e}"))?,
        ),
        (None, None) => None,
        _ => return Err(err!(Invalid, "--tls-cert and --tls-key go together")),
    };
    // Signals first, so that a SIGTERM during the (possibly slow) opens is not lost.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| err!(Unavailable, "installing signal handlers: {e}"))?;
    let registry = Registry::new();
    let exports = open_exports(c, o, &registry)?;
    let (l, activated) = listener(o)?;
    let metrics = match &o.metrics {
        Some(a) => {
            let a = parse_listen(a)?;
            Some(
                shale_metrics::serve(&a, registry.clone())
                    .map_err(|e| err!(Unavailable, "metrics endpoint on {a}: {e}"))?,
            )
        }
        None => None,
    };
    let server = Server::new(exports, tls);
    // Under socket activation stdout belongs to whoever started us (nbdinfo prints its own).
    if !activated {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {}", l.describe());
        if let Some(m) = &metrics {
            let _ = writeln!(out, "metrics on http://{}/metrics", m.local_addr());
        }
        let _ = out.flush();
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<String>();
    let s2 = server.clone();
    let d2 = done_tx.clone();
    std::thread::Builder::new()
        .name("nbd-accept".into())
        .spawn(move || {
            let r = s2.serve(l);
            let _ = d2.send(format!("accept loop ended: {r:?}"));
        })
        .map_err(|e| err!(Unavailable, "starting the accept thread: {e}"))?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("nbd-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let _ = done_tx.send(format!("signal {sig}"));
            }
        })
        .map_err(|e| err!(Unavailable, "starting the signal thread: {e}"))?;
    let why = done_rx.recv().unwrap_or_default();
    tracing::info!("stopping: {why}");
    handle.close();
    let r = server.shutdown(GRACE);
    drop(metrics);
    r
}

/// Run other clients' maintenance operations (snapshot, resize, flatten, location changes)
/// while this export holds the image's exclusive lock, as librbd's owner does for them.
fn serve_others(img: &Arc<shale_image::Image>) {
    let weak = Arc::downgrade(img);
    img.set_proxy_handler(Arc::new(move |run| {
        let img = weak
            .upgrade()
            .ok_or_else(|| err!(Busy, "the export was closed"))?;
        run(&img)
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("10809").unwrap(), "127.0.0.1:10809");
        assert_eq!(parse_listen(":0").unwrap(), "127.0.0.1:0");
        assert_eq!(parse_listen("0.0.0.0:1").unwrap(), "0.0.0.0:1");
        assert!(parse_listen("nonsense").is_err());
        assert!(parse_listen("127.0.0.1:99999").is_err());
    }
}
