//! The NBD server: exports, the accept loop, the handshake and the transmission phase.
//!
//! ```text
//!  accept ─▶ thread per connection: handshake (fixed newstyle, options, STARTTLS)
//!                 │
//!                 ▼ transmission (plain socket: pipelined)
//!   reader ──decode/check──┬─ WRITE/TRIM/ZERO/FLUSH ─▶ Image::submit_* ──callback──┐
//!   (this thread)          └─ READ/BLOCK_STATUS ─────▶ worker threads ─────────────┤
//!                                                                                  ▼
//!                                                     reply channel ─▶ writer thread ─▶ socket
//! ```
//!
//! Replies go out in completion order; FUA writes are answered after a flush that the writer
//! thread submits when the write completes. Over TLS the same dispatch runs one request at a
//! time (the TLS session is one object; see ADR 0007). All connections to one export share one
//! open [`Image`], so a flush on any connection covers every write acknowledged on any
//! (`NBD_FLAG_CAN_MULTI_CONN`). Input never panics the server: a malformed request gets the
//! protocol's error or closes that connection only.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shale_image::{ErrorKind, Image};
use shale_metrics::{ImageMetrics, Op};

use crate::net::{Listener, Stream};
use crate::proto::{self, Command, Request, Session};
use crate::status;

/// Read threads per connection (reads and block-status queries run there, so a queue depth
/// of 32 reaches the engine).
const WORKERS: usize = 4;
/// A client must finish each handshake step within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 512;

/// One image served under a name.
pub struct Export {
    /// The canonical name (`pool/image` or `pool/image@snap`).
    pub name: String,
    /// Other names that select it (as given on the command line).
    pub aliases: Vec<String>,
    pub image: Arc<Image>,
    pub read_only: bool,
    pub metrics: Arc<ImageMetrics>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl Export {
    fn flags(&self, structured: bool) -> u16 {
        let mut f = proto::TF_HAS_FLAGS
            | proto::TF_SEND_FLUSH
            | proto::TF_CAN_MULTI_CONN
            | proto::TF_SEND_CACHE;
        if structured {
            f |= proto::TF_SEND_DF;
        }
        if self.read_only {
            f |= proto::TF_READ_ONLY;
        } else {
            f |= proto::TF_SEND_FUA
                | proto::TF_SEND_TRIM
                | proto::TF_SEND_WRITE_ZEROES
                | proto::TF_SEND_FAST_ZERO;
        }
        f
    }
    fn size(&self) -> u64 {
        self.image.size()
    }
}

/// The server: its exports and live connections.
pub struct Server {
    exports: Vec<Arc<Export>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stopping: AtomicBool,
    conns: Mutex<HashMap<u64, Stream>>,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("exports", &self.exports)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What the handshake ended with.
enum Outcome {
    Transmit(Arc<Export>),
    StartTls,
    Quit,
}

#[derive(Default)]
struct Negotiated {
    no_zeroes: bool,
    tls: bool,
    structured: bool,
    base_allocation: bool,
}

impl Server {
    pub fn new(exports: Vec<Arc<Export>>, tls: Option<rustls::ServerConfig>) -> Arc<Server> {
        Arc::new(Server {
            exports,
            tls: tls.map(Arc::new),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
        })
    }

    pub fn exports(&self) -> &[Arc<Export>] {
        &self.exports
    }

    /// Accept connections until [`Server::shutdown`] (then returns Ok).
    pub fn serve(self: &Arc<Self>, listener: Listener) -> io::Result<()> {
        tracing::info!("NBD server listening on {}", listener.describe());
        loop {
            let s = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if self.stopping.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    tracing::warn!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if self.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            let n = self.conns.lock().unwrap_or_else(|p| p.into_inner()).len();
            if n >= MAX_CONNECTIONS {
                tracing::warn!("{n} connections already; refusing one");
                continue;
            }
            let id = self.next_conn.fetch_add(1, Ordering::SeqCst);
            if let Ok(c) = s.try_clone() {
                self.conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, c);
            }
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("nbd-conn-{id}"))
                .spawn(move || {
                    if let Err(e) = me.connection(s) {
                        tracing::debug!("connection {id}: {e}");
                    }
                    me.conns
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                });
            if let Err(e) = spawned {
                tracing::warn!("spawning a connection thread: {e}");
                self.conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            }
        }
    }

    /// Stop: refuse new requests (connections' read sides are shut), let requests in flight
    /// finish for up to `grace`, then flush every writable export and release its exclusive
    /// lock. Returns the first error (every export is still attempted).
    pub fn shutdown(&self, grace: Duration) -> shale_image::Result<()> {
        self.stopping.store(true, Ordering::SeqCst);
        for s in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            s.shutdown(Shutdown::Read);
        }
        let start = Instant::now();
        while start.elapsed() < grace
            && !self
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut first = Ok(());
        for e in &self.exports {
            let r = (|| {
                if e.read_only {
                    return Ok(());
                }
                e.image.flush()?;
                if e.image.is_lock_owner() {
                    e.image.lock_release()?;
                } else {
                    e.image.flush_to_store()?;
                }
                Ok(())
            })();
            if let Err(err) = r {
                tracing::warn!("closing export {}: {err}", e.name);
                if first.is_ok() {
                    first = Err(err);
                }
            }
        }
        first
    }

    fn find(&self, name: &str) -> Option<Arc<Export>> {
        if name.is_empty() {
            return self.exports.first().cloned();
        }
        self.exports
            .iter()
            .find(|e| e.name == name || e.aliases.iter().any(|a| a == name))
            .cloned()
    }

    fn connection(self: &Arc<Self>, mut s: Stream) -> io::Result<()> {
        s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        s.write_all(&proto::greeting())?;
        let mut cf = [0u8; 4];
        s.read_exact(&mut cf)?;
        let cflags = u32::from_be_bytes(cf);
        if cflags & !(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES) != 0 {
            return Err(invalid("unknown client flags"));
        }
        let mut st = Negotiated {
            no_zeroes: cflags & proto::FLAG_C_NO_ZEROES != 0,
            ..Default::default()
        };
        match self.negotiate(&mut s, &mut st)? {
            Outcome::Quit => Ok(()),
            Outcome::Transmit(e) => {
                s.set_read_timeout(None)?;
                self.transmit_pipelined(s, e, &st)
            }
            Outcome::StartTls => {
                let Some(cfg) = self.tls.clone() else {
                    return Err(invalid("STARTTLS without TLS settings"));
                };
                let conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
                let mut tls = rustls::StreamOwned::new(conn, s);
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                st.tls = true;
                match self.negotiate(&mut tls, &mut st)? {
                    Outcome::Transmit(e) => {
                        tls.sock.set_read_timeout(None)?;
                        self.transmit_serial(&mut tls, e, &st)
                    }
                    Outcome::Quit => {
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                        Ok(())
                    }
                    Outcome::StartTls => Err(invalid("STARTTLS twice")),
                }
            }
        }
    }

    /// Option haggling until the client picks an export, asks for TLS, or leaves.
    fn negotiate<S: Read + Write>(&self, s: &mut S, st: &mut Negotiated) -> io::Result<Outcome> {
        loop {
            let mut h = [0u8; proto::OPTION_HEADER_LEN];
            s.read_exact(&mut h)?;
            let (opt, len) = proto::decode_option_header(&h).map_err(|e| invalid(e.0))?;
            if len > proto::MAX_OPTION {
                // Reading (or skipping) it would let one client make us read gigabytes.
                return Err(invalid("option payload too large"));
            }
            let mut data = vec![0u8; len as usize];
            s.read_exact(&mut data)?;
            let reply = |s: &mut S, typ: u32, d: &[u8]| -> io::Result<()> {
                s.write_all(&proto::option_reply(opt, typ, d))?;
                s.flush()
            };
            if opt == proto::OPT_ABORT {
                let _ = reply(s, proto::REP_ACK, &[]);
                return Ok(Outcome::Quit);
            }
            if self.stopping.load(Ordering::SeqCst) {
                if opt == proto::OPT_EXPORT_NAME {
                    return Err(invalid("shutting down"));
                }
                reply(s, proto::REP_ERR_SHUTDOWN, b"server shutting down")?;
                continue;
            }
            if self.tls.is_some() && !st.tls {
                match opt {
                    proto::OPT_STARTTLS => {}
                    proto::OPT_EXPORT_NAME => return Err(invalid("EXPORT_NAME before STARTTLS")),
                    _ => {
                        reply(s, proto::REP_ERR_TLS_REQD, b"TLS is required: use STARTTLS")?;
                        continue;
                    }
                }
            }
            match opt {
                proto::OPT_EXPORT_NAME => {
                    let name = proto::decode_export_name(&data).map_err(|e| invalid(e.0))?;
                    let Some(e) = self.find(&name) else {
                        return Err(invalid("unknown export"));
                    };
                    s.write_all(&proto::export_name_reply(
                        e.size(),
                        e.flags(st.structured),
                        st.no_zeroes,
                    ))?;
                    s.flush()?;
                    return Ok(Outcome::Transmit(e));
                }
                proto::OPT_LIST => {
                    if !data.is_empty() {
                        reply(s, proto::REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")?;
                        continue;
                    }
                    for e in &self.exports {
                        let desc = if e.read_only { "read-only" } else { "" };
                        reply(s, proto::REP_SERVER, &proto::rep_server(&e.name, desc))?;
                    }
                    reply(s, proto::REP_ACK, &[])?;
                }
                proto::OPT_STARTTLS => {
                    if self.tls.is_none() {
                        reply(s, proto::REP_ERR_UNSUP, b"TLS is not configured")?;
                    } else if st.tls || !data.is_empty() {
                        reply(
                            s,
                            proto::REP_ERR_INVALID,
                            b"TLS already active, or data given",
                        )?;
                    } else {
                        reply(s, proto::REP_ACK, &[])?;
                        return Ok(Outcome::StartTls);
                    }
                }
                proto::OPT_INFO | proto::OPT_GO => {
                    let (name, infos) = match proto::decode_info_request(&data) {
                        Ok(x) => x,
                        Err(e) => {
                            reply(s, proto::REP_ERR_INVALID, e.0.as_bytes())?;
                            continue;
                        }
                    };
                    let Some(e) = self.find(&name) else {
                        reply(s, proto::REP_ERR_UNKNOWN, b"no such export")?;
                        continue;
                    };
                    reply(
                        s,
                        proto::REP_INFO,
                        &proto::info_export(e.size(), e.flags(st.structured)),
                    )?;
                    for i in infos {
                        let d = match i {
                            proto::INFO_NAME => proto::info_string(i, &e.name),
                            proto::INFO_DESCRIPTION => {
                                proto::info_string(i, &format!("Shale image {}", e.name))
                            }
                            proto::INFO_BLOCK_SIZE => {
                                proto::info_block_size(1, 4096, proto::MAX_PAYLOAD)
                            }
                            _ => continue,
                        };
                        reply(s, proto::REP_INFO, &d)?;
                    }
                    reply(s, proto::REP_ACK, &[])?;
                    if opt == proto::OPT_GO {
                        return Ok(Outcome::Transmit(e));
                    }
                }
                proto::OPT_STRUCTURED_REPLY => {
                    if !data.is_empty() {
                        reply(s, proto::REP_ERR_INVALID, b"no data expected")?;
                    } else {
                        st.structured = true;
                        reply(s, proto::REP_ACK, &[])?;
                    }
                }
                proto::OPT_LIST_META_CONTEXT | proto::OPT_SET_META_CONTEXT => {
                    let set = opt == proto::OPT_SET_META_CONTEXT;
                    if set && !st.structured {
                        reply(s, proto::REP_ERR_INVALID, b"structured replies first")?;
                        continue;
                    }
                    let (name, queries) = match proto::decode_meta_request(&data) {
                        Ok(x) => x,
                        Err(e) => {
                            reply(s, proto::REP_ERR_INVALID, e.0.as_bytes())?;
                            continue;
                        }
                    };
                    if self.find(&name).is_none() {
                        reply(s, proto::REP_ERR_UNKNOWN, b"no such export")?;
                        continue;
                    }
                    let selected = if set {
                        queries.iter().any(|q| q == proto::BASE_ALLOCATION)
                    } else {
                        queries.is_empty()
                            || queries
                                .iter()
                                .any(|q| proto::query_matches_base_allocation(q))
                    };
                    if set {
                        st.base_allocation = selected;
                    }
                    if selected {
                        reply(
                            s,
                            proto::REP_META_CONTEXT,
                            &proto::rep_meta_context(
                                proto::BASE_ALLOCATION_ID,
                                proto::BASE_ALLOCATION,
                            ),
                        )?;
                    }
                    reply(s, proto::REP_ACK, &[])?;
                }
                _ => reply(s, proto::REP_ERR_UNSUP, b"option not supported")?,
            }
        }
    }

    /// Transmission on a plain socket: this thread reads and dispatches; a writer thread sends
    /// replies in completion order.
    fn transmit_pipelined(
        self: &Arc<Self>,
        s: Stream,
        e: Arc<Export>,
        st: &Negotiated,
    ) -> io::Result<()> {
        let mut out = s.try_clone()?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let conn = Arc::new(Conn::new(e, st, tx.clone()));
        let c2 = conn.clone();
        let writer = std::thread::Builder::new()
            .name("nbd-reply".into())
            .spawn(move || {
                let mut w = io::BufWriter::with_capacity(256 * 1024, &mut out);
                c2.writer_loop(rx, &mut w);
                // A closed reader side ends the session too.
                drop(w);
                out.shutdown(Shutdown::Both);
            })?;
        let mut r = io::BufReader::with_capacity(256 * 1024, s);
        let res = conn.reader_loop(&mut r);
        let _ = tx.send(Msg::Eof {
            dispatched: conn.dispatched.load(Ordering::SeqCst),
        });
        drop(tx);
        let _ = writer.join();
        conn.stop_workers();
        res
    }

    /// Transmission over TLS: one request at a time.
    fn transmit_serial<S: Read + Write>(
        &self,
        s: &mut S,
        e: Arc<Export>,
        st: &Negotiated,
    ) -> io::Result<()> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let conn = Conn::new(e, st, tx);
        let mut broken = false;
        let res = loop {
            match conn.read_request(s) {
                Ok(Some(())) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
            // Exactly one reply is owed now.
            while conn.answered.load(Ordering::SeqCst) < conn.dispatched.load(Ordering::SeqCst) {
                let Ok(m) = rx.recv() else { break };
                conn.handle(m, s, &mut broken);
                let _ = s.flush();
            }
            if broken {
                break Err(io::Error::other("client went away"));
            }
        };
        conn.stop_workers();
        res
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// The protocol's error for an engine error.
fn errno(e: &shale_image::Error) -> u32 {
    match e.kind() {
        ErrorKind::Invalid => proto::EINVAL,
        ErrorKind::NoSpace => proto::ENOSPC,
        ErrorKind::ReadOnly | ErrorKind::Fenced => proto::EPERM,
        ErrorKind::Unsupported => proto::ENOTSUP,
        _ => proto::EIO,
    }
}

/// Messages to the reply writer.
enum Msg {
    /// A final reply, ready to send.
    Reply {
        bytes: Vec<u8>,
        done: Option<(Op, u64, Instant, bool)>,
    },
    /// A FUA write completed: flush, then reply.
    Fua {
        cookie: u64,
        op: Op,
        bytes: u64,
        start: Instant,
    },
    /// The reader stopped after dispatching this many requests.
    Eof { dispatched: u64 },
}

type Job = Box<dyn FnOnce() + Send>;
/// What `Image::submit_*` calls back with.
type Done = Box<dyn FnOnce(shale_image::Result<()>) + Send + 'static>;

/// One connection's transmission state.
struct Conn {
    export: Arc<Export>,
    session: Session,
    tx: Sender<Msg>,
    dispatched: AtomicU64,
    answered: AtomicU64,
    jobs: Mutex<Option<Sender<Job>>>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Conn {
    fn new(export: Arc<Export>, st: &Negotiated, tx: Sender<Msg>) -> Conn {
        let session = Session {
            size: export.size(),
            read_only: export.read_only,
            structured: st.structured,
            base_allocation: st.base_allocation,
        };
        let (jtx, jrx) = mpsc::channel::<Job>();
        let jrx = Arc::new(Mutex::new(jrx));
        let mut workers = Vec::new();
        for i in 0..WORKERS {
            let jrx = jrx.clone();
            let t = std::thread::Builder::new()
                .name(format!("nbd-io-{i}"))
                .spawn(move || loop {
                    let job = {
                        let g = jrx.lock().unwrap_or_else(|p| p.into_inner());
                        g.recv()
                    };
                    match job {
                        Ok(j) => j(),
                        Err(_) => return,
                    }
                });
            if let Ok(t) = t {
                workers.push(t);
            }
        }
        Conn {
            export,
            session,
            tx,
            dispatched: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            jobs: Mutex::new(Some(jtx)),
            workers: Mutex::new(workers),
        }
    }

    fn stop_workers(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        for t in self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }

    /// Run `job` on a worker (inline if none could be started).
    fn spawn(&self, job: Job) {
        let g = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_ref() {
            Some(tx)
                if !self
                    .workers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty() =>
            {
                if let Err(mpsc::SendError(j)) = tx.send(job) {
                    drop(g);
                    j();
                }
            }
            _ => {
                drop(g);
                job()
            }
        }
    }

    fn reader_loop<R: Read>(&self, r: &mut R) -> io::Result<()> {
        while self.read_request(r)?.is_some() {}
        Ok(())
    }

    /// Read one request and dispatch it. None: the client disconnected (NBD_CMD_DISC or a
    /// clean close between requests).
    fn read_request<R: Read>(&self, r: &mut R) -> io::Result<Option<()>> {
        let mut h = [0u8; proto::REQUEST_LEN];
        match read_full(r, &mut h)? {
            0 => return Ok(None),
            n if n < h.len() => return Err(invalid("truncated request header")),
            _ => {}
        }
        let req = Request::decode(&h).map_err(|e| invalid(e.0))?;
        let start = Instant::now();
        let payload_len = req.payload_len();
        if payload_len > proto::MAX_PAYLOAD {
            return Err(invalid("write payload larger than 32 MiB"));
        }
        let mut payload = Vec::new();
        if payload_len > 0 {
            payload = vec![0u8; payload_len as usize];
            r.read_exact(&mut payload)
                .map_err(|_| invalid("truncated write payload"))?;
        }
        let cmd = proto::check(&req, &self.session);
        if cmd == Ok(Command::Disconnect) {
            return Ok(None);
        }
        self.dispatched.fetch_add(1, Ordering::SeqCst);
        match cmd {
            Err(code) => self.reply_err(req.cookie, code, "invalid request", None),
            Ok(c) => self.dispatch(req.cookie, c, payload, start),
        }
        Ok(Some(()))
    }

    fn send(&self, m: Msg) {
        let _ = self.tx.send(m);
    }

    fn ok_bytes(cookie: u64) -> Vec<u8> {
        proto::simple_reply(0, cookie).to_vec()
    }

    fn err_bytes(&self, cookie: u64, code: u32, msg: &str) -> Vec<u8> {
        if self.session.structured {
            proto::error_chunk(cookie, code, msg)
        } else {
            proto::simple_reply(code, cookie).to_vec()
        }
    }

    fn reply_err(&self, cookie: u64, code: u32, msg: &str, done: Option<(Op, u64, Instant, bool)>) {
        self.send(Msg::Reply {
            bytes: self.err_bytes(cookie, code, msg),
            done,
        });
    }

    /// A callback for the engine: reply (or flush first, for FUA) when the request completes.
    fn completion(&self, cookie: u64, op: Op, bytes: u64, start: Instant, fua: bool) -> Done {
        let tx = self.tx.clone();
        let structured = self.session.structured;
        Box::new(move |r: shale_image::Result<()>| {
            let m = match r {
                Ok(()) if fua => Msg::Fua {
                    cookie,
                    op,
                    bytes,
                    start,
                },
                Ok(()) => Msg::Reply {
                    bytes: Conn::ok_bytes(cookie),
                    done: Some((op, bytes, start, true)),
                },
                Err(e) => {
                    tracing::warn!("{} failed: {e}", op.name());
                    let code = errno(&e);
                    Msg::Reply {
                        bytes: if structured {
                            proto::error_chunk(cookie, code, &e.to_string())
                        } else {
                            proto::simple_reply(code, cookie).to_vec()
                        },
                        done: Some((op, bytes, start, false)),
                    }
                }
            };
            let _ = tx.send(m);
        })
    }

    fn dispatch(&self, cookie: u64, c: Command, payload: Vec<u8>, start: Instant) {
        let img = &self.export.image;
        match c {
            Command::Write { off, len, fua } => img.submit_write(
                off,
                payload,
                self.completion(cookie, Op::Write, len as u64, start, fua),
            ),
            Command::Trim { off, len, fua } | Command::WriteZeroes { off, len, fua } => {
                if len == 0 {
                    return self.send(Msg::Reply {
                        bytes: Self::ok_bytes(cookie),
                        done: Some((Op::Discard, 0, start, true)),
                    });
                }
                img.submit_zero(
                    off,
                    len as u64,
                    self.completion(cookie, Op::Discard, len as u64, start, fua),
                )
            }
            Command::Flush => img.submit_flush(self.completion(cookie, Op::Flush, 0, start, false)),
            Command::Cache { .. } => self.send(Msg::Reply {
                bytes: Self::ok_bytes(cookie),
                done: None,
            }),
            Command::Read { off, len } => {
                let img = img.clone();
                let tx = self.tx.clone();
                let structured = self.session.structured;
                self.spawn(Box::new(move || {
                    let m = read_reply(&img, cookie, off, len, structured, start);
                    let _ = tx.send(m);
                }))
            }
            Command::BlockStatus { off, len, one } => {
                let img = img.clone();
                let tx = self.tx.clone();
                self.spawn(Box::new(move || {
                    let (lba, n) = status::sectors(off, len);
                    let data = img.allocated_deep(lba, n);
                    let d = status::descriptors(off, len, &data, one);
                    let _ = tx.send(Msg::Reply {
                        bytes: proto::block_status_chunk(cookie, proto::BASE_ALLOCATION_ID, &d),
                        done: None,
                    });
                }))
            }
            Command::Disconnect => {}
        }
    }

    /// Handle one message on the writing side; `broken` once the client stopped reading.
    fn handle<W: Write>(&self, m: Msg, w: &mut W, broken: &mut bool) {
        match m {
            Msg::Reply { bytes, done } => {
                if let Some((op, n, start, ok)) = done {
                    if ok {
                        self.export.metrics.record(op, n, start.elapsed());
                    } else {
                        self.export.metrics.record_error(op);
                    }
                }
                if !*broken && w.write_all(&bytes).is_err() {
                    *broken = true;
                }
                self.answered.fetch_add(1, Ordering::SeqCst);
            }
            Msg::Fua {
                cookie,
                op,
                bytes,
                start,
            } => {
                let cb = self.completion(cookie, op, bytes, start, false);
                self.export.image.submit_flush(cb);
            }
            Msg::Eof { .. } => {}
        }
    }

    fn writer_loop<W: Write>(&self, rx: Receiver<Msg>, w: &mut W) {
        let mut broken = false;
        let mut eof: Option<u64> = None;
        loop {
            if let Some(n) = eof {
                if self.answered.load(Ordering::SeqCst) >= n {
                    break;
                }
            }
            let m = match rx.try_recv() {
                Ok(m) => m,
                Err(mpsc::TryRecvError::Empty) => {
                    // Nothing queued: push out what is buffered, then wait.
                    if !broken && w.flush().is_err() {
                        broken = true;
                    }
                    match rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            };
            if let Msg::Eof { dispatched } = m {
                eof = Some(dispatched);
                continue;
            }
            self.handle(m, w, &mut broken);
        }
        let _ = w.flush();
    }
}

/// Read until `buf` is full or end of stream; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_reply(
    img: &Image,
    cookie: u64,
    off: u64,
    len: u32,
    structured: bool,
    start: Instant,
) -> Msg {
    let hdr = if structured { 20 + 8 } else { 16 };
    if len == 0 {
        let bytes = if structured {
            proto::chunk_header(proto::REPLY_FLAG_DONE, proto::REPLY_TYPE_NONE, cookie, 0).to_vec()
        } else {
            proto::simple_reply(0, cookie).to_vec()
        };
        return Msg::Reply {
            bytes,
            done: Some((Op::Read, 0, start, true)),
        };
    }
    let mut buf = vec![0u8; hdr + len as usize];
    let r = img.read(off, &mut buf[hdr..]);
    match r {
        Ok(n) if n == len as usize => {
            if structured {
                buf[..20].copy_from_slice(&proto::chunk_header(
                    proto::REPLY_FLAG_DONE,
                    proto::REPLY_TYPE_OFFSET_DATA,
                    cookie,
                    8 + len,
                ));
                buf[20..28].copy_from_slice(&off.to_be_bytes());
            } else {
                buf[..16].copy_from_slice(&proto::simple_reply(0, cookie));
            }
            Msg::Reply {
                bytes: buf,
                done: Some((Op::Read, len as u64, start, true)),
            }
        }
        other => {
            let (code, msg) = match other {
                Err(e) => {
                    tracing::warn!("read {off}+{len}: {e}");
                    (errno(&e), e.to_string())
                }
                Ok(n) => (proto::EIO, format!("short read: {n} of {len} bytes")),
            };
            let bytes = if structured {
                proto::error_chunk(cookie, code, &msg)
            } else {
                proto::simple_reply(code, cookie).to_vec()
            };
            Msg::Reply {
                bytes,
                done: Some((Op::Read, len as u64, start, false)),
            }
        }
    }
}
