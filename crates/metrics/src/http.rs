//! A minimal HTTP/1.1 endpoint for Prometheus: `GET /metrics` (or `HEAD`) answers the text
//! format; any other path is 404, any other method 405. One connection at a time, each with a
//! short timeout, `Connection: close` after every answer: a scraper needs no more.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Registry;

/// How long a client may take to send its request.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head accepted.
const MAX_HEAD: u64 = 16 * 1024;

/// A running endpoint; dropping it stops the accept loop.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serve `registry` on `addr` (`127.0.0.1:9100`; port 0 picks one) from a background thread.
pub fn serve(addr: &str, registry: Arc<Registry>) -> std::io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    Ok(s) => {
                        if let Err(e) = answer(s, &registry) {
                            tracing::debug!("metrics request: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("metrics accept: {e}"),
                }
            }
        })?;
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

fn answer(s: TcpStream, registry: &Registry) -> std::io::Result<()> {
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let mut r = BufReader::new((&s).take(MAX_HEAD));
    let mut line = String::new();
    r.read_line(&mut line)?;
    // Read the rest of the head (headers are ignored).
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => ("200 OK", registry.render()),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found; try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".to_string()),
    };
    let ctype = if status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut w = &s;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        w.write_all(body.as_bytes())?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Op;

    fn get(addr: SocketAddr, req: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn metrics_404_405() {
        let r = Registry::new();
        r.register("rbd", "a", None)
            .record(Op::Read, 10, Duration::from_millis(1));
        let srv = serve("127.0.0.1:0", r.clone()).unwrap();
        let a = srv.local_addr();
        let ok = get(a, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("shale_image_bytes_total{pool=\"rbd\",image=\"a\",op=\"read\"} 10"));
        let nf = get(a, "GET /other HTTP/1.1\r\n\r\n");
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
        let na = get(a, "POST /metrics HTTP/1.1\r\n\r\n");
        assert!(na.starts_with("HTTP/1.1 405"), "{na}");
        // Garbage and an early close do not stop the endpoint.
        drop(TcpStream::connect(a).unwrap());
        let _ = get(a, "\x00\x01garbage\r\n\r\n");
        assert!(get(a, "GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
        drop(srv);
    }
}
