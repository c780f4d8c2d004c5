//! The NBD wire format (the subset Shale speaks): constants, decoders and encoders. No I/O:
//! every function takes or returns bytes, so the fuzz target and unit tests drive it directly.
//!
//! All integers are big-endian ("network byte order"). Decoders never panic on input; they
//! return [`Malformed`] (the caller answers with the protocol's error or disconnects).
//!
//! ```text
//! handshake  S: "NBDMAGIC" "IHAVEOPT" u16 flags      C: u32 flags
//! option     C: "IHAVEOPT" u32 opt u32 len data      S: u64 REPLY_MAGIC u32 opt u32 type u32 len data
//! request    C: u32 0x25609513 u16 flags u16 type u64 cookie u64 offset u32 len [data]
//! simple     S: u32 0x67446698 u32 error u64 cookie [data]
//! structured S: u32 0x668e33ef u16 flags u16 type u64 cookie u32 len payload
//! ```

/// "NBDMAGIC"
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT"
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;

// Option replies.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
pub const REP_META_CONTEXT: u32 = 4;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
pub const REP_ERR_POLICY: u32 = REP_ERR | 2;
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
pub const REP_ERR_TLS_REQD: u32 = REP_ERR | 5;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR | 7;
pub const REP_ERR_TOO_BIG: u32 = REP_ERR | 9;

// Info types.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub const TF_HAS_FLAGS: u16 = 1 << 0;
pub const TF_READ_ONLY: u16 = 1 << 1;
pub const TF_SEND_FLUSH: u16 = 1 << 2;
pub const TF_SEND_FUA: u16 = 1 << 3;
pub const TF_SEND_TRIM: u16 = 1 << 5;
pub const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const TF_SEND_DF: u16 = 1 << 7;
pub const TF_CAN_MULTI_CONN: u16 = 1 << 8;
pub const TF_SEND_CACHE: u16 = 1 << 10;
pub const TF_SEND_FAST_ZERO: u16 = 1 << 11;

// Commands.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

// Command flags.
pub const CF_FUA: u16 = 1 << 0;
pub const CF_NO_HOLE: u16 = 1 << 1;
pub const CF_DF: u16 = 1 << 2;
pub const CF_REQ_ONE: u16 = 1 << 3;
pub const CF_FAST_ZERO: u16 = 1 << 4;

// Structured reply chunks.
pub const REPLY_FLAG_DONE: u16 = 1 << 0;
pub const REPLY_TYPE_NONE: u16 = 0;
pub const REPLY_TYPE_OFFSET_DATA: u16 = 1;
pub const REPLY_TYPE_BLOCK_STATUS: u16 = 5;
pub const REPLY_TYPE_ERROR: u16 = (1 << 15) | 1;

// base:allocation status flags.
pub const STATE_HOLE: u32 = 1 << 0;
pub const STATE_ZERO: u32 = 1 << 1;

// Errors (the protocol's fixed values).
pub const EPERM: u32 = 1;
pub const EIO: u32 = 5;
pub const ENOMEM: u32 = 12;
pub const EINVAL: u32 = 22;
pub const ENOSPC: u32 = 28;
pub const EOVERFLOW: u32 = 75;
pub const ENOTSUP: u32 = 95;
pub const ESHUTDOWN: u32 = 108;

/// The one metadata context served.
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Its id in replies (any value the server picks).
pub const BASE_ALLOCATION_ID: u32 = 1;

/// Largest request payload (read or write) accepted: 32 MiB, advertised as the maximum block
/// size. A larger write's payload is not read: the connection is closed.
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Largest option payload accepted during the handshake.
pub const MAX_OPTION: u32 = 64 * 1024;
/// Longest string (export name, query) the protocol allows.
pub const MAX_STRING: usize = 4096;

pub const REQUEST_LEN: usize = 28;
pub const OPTION_HEADER_LEN: usize = 16;

/// Input that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// A cursor over an option's payload.
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.b.len() < n {
            return Err(Malformed("option data too short"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        self.take(2).map(be16)
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        self.take(4).map(be32)
    }
    fn string(&mut self, n: usize) -> Result<String, Malformed> {
        if n > MAX_STRING {
            return Err(Malformed("string longer than 4096 bytes"));
        }
        let b = self.take(n)?;
        if b.contains(&0) {
            return Err(Malformed("string contains NUL"));
        }
        String::from_utf8(b.to_vec()).map_err(|_| Malformed("string is not UTF-8"))
    }
    fn done(&self) -> Result<(), Malformed> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes in option data"))
        }
    }
}

/// An option header: (option, payload length).
pub fn decode_option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<(u32, u32), Malformed> {
    if be64(&b[0..8]) != IHAVEOPT {
        return Err(Malformed("option without IHAVEOPT magic"));
    }
    Ok((be32(&b[8..12]), be32(&b[12..16])))
}

/// The payload of NBD_OPT_INFO / NBD_OPT_GO: export name and the info types asked for.
pub fn decode_info_request(data: &[u8]) -> Result<(String, Vec<u16>), Malformed> {
    let mut c = Cursor { b: data };
    let n = c.u32()? as usize;
    let name = c.string(n)?;
    let count = c.u16()? as usize;
    let mut infos = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        infos.push(c.u16()?);
    }
    c.done()?;
    Ok((name, infos))
}

/// The payload of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: export name and
/// queries.
pub fn decode_meta_request(data: &[u8]) -> Result<(String, Vec<String>), Malformed> {
    let mut c = Cursor { b: data };
    let n = c.u32()? as usize;
    let name = c.string(n)?;
    let count = c.u32()? as usize;
    let mut qs = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = c.u32()? as usize;
        qs.push(c.string(n)?);
    }
    c.done()?;
    Ok((name, qs))
}

/// The payload of NBD_OPT_EXPORT_NAME: the whole payload is the name.
pub fn decode_export_name(data: &[u8]) -> Result<String, Malformed> {
    Cursor { b: data }.string(data.len())
}

/// Does `query` (from a meta-context request) select `base:allocation`? An empty list selects
/// everything when listing; `base:` selects the whole namespace.
pub fn query_matches_base_allocation(query: &str) -> bool {
    query == BASE_ALLOCATION || query == "base:"
}

/// A transmission request header (its write payload follows on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub flags: u16,
    pub cmd: u16,
    pub cookie: u64,
    pub offset: u64,
    pub len: u32,
}

impl Request {
    pub fn decode(b: &[u8; REQUEST_LEN]) -> Result<Request, Malformed> {
        if be32(&b[0..4]) != REQUEST_MAGIC {
            return Err(Malformed("request without NBD_REQUEST_MAGIC"));
        }
        Ok(Request {
            flags: be16(&b[4..6]),
            cmd: be16(&b[6..8]),
            cookie: be64(&b[8..16]),
            offset: be64(&b[16..24]),
            len: be32(&b[24..28]),
        })
    }

    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.cmd.to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// Bytes of payload that follow this header on the wire.
    pub fn payload_len(&self) -> u32 {
        if self.cmd == CMD_WRITE {
            self.len
        } else {
            0
        }
    }
}

/// What the connection negotiated, as far as checking a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub size: u64,
    pub read_only: bool,
    pub structured: bool,
    pub base_allocation: bool,
}

/// A request that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read { off: u64, len: u32 },
    Write { off: u64, len: u32, fua: bool },
    Disconnect,
    Flush,
    Trim { off: u64, len: u32, fua: bool },
    Cache { off: u64, len: u32 },
    WriteZeroes { off: u64, len: u32, fua: bool },
    BlockStatus { off: u64, len: u32, one: bool },
}

/// Check a request against the session: the command, or the protocol error to answer with.
/// A write's payload must still be read (or the connection closed) whatever this returns.
pub fn check(r: &Request, s: &Session) -> Result<Command, u32> {
    let allowed = match r.cmd {
        CMD_READ => {
            if s.structured {
                CF_DF
            } else {
                0
            }
        }
        CMD_WRITE | CMD_TRIM => CF_FUA,
        CMD_WRITE_ZEROES => CF_FUA | CF_NO_HOLE | CF_FAST_ZERO,
        CMD_BLOCK_STATUS => CF_REQ_ONE,
        CMD_DISC | CMD_FLUSH | CMD_CACHE => 0,
        _ => return Err(EINVAL),
    };
    if r.flags & !allowed != 0 {
        return Err(EINVAL);
    }
    let fua = r.flags & CF_FUA != 0;
    let (off, len) = (r.offset, r.len);
    let past_end = off.checked_add(len as u64).is_none_or(|e| e > s.size);
    let writes = matches!(r.cmd, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    if writes && s.read_only {
        return Err(EPERM);
    }
    match r.cmd {
        CMD_DISC => Ok(Command::Disconnect),
        CMD_FLUSH => {
            if off != 0 || len != 0 {
                return Err(EINVAL);
            }
            Ok(Command::Flush)
        }
        CMD_READ | CMD_CACHE | CMD_BLOCK_STATUS | CMD_TRIM if past_end => Err(EINVAL),
        CMD_WRITE | CMD_WRITE_ZEROES if past_end => Err(ENOSPC),
        CMD_READ | CMD_WRITE if len > MAX_PAYLOAD => Err(EINVAL),
        CMD_READ => Ok(Command::Read { off, len }),
        CMD_WRITE => Ok(Command::Write { off, len, fua }),
        CMD_TRIM => Ok(Command::Trim { off, len, fua }),
        CMD_CACHE => Ok(Command::Cache { off, len }),
        CMD_WRITE_ZEROES => Ok(Command::WriteZeroes { off, len, fua }),
        CMD_BLOCK_STATUS => {
            if !s.base_allocation || len == 0 {
                return Err(EINVAL);
            }
            Ok(Command::BlockStatus {
                off,
                len,
                one: r.flags & CF_REQ_ONE != 0,
            })
        }
        _ => Err(EINVAL),
    }
}

/// Decode a stream of requests as a connection would (headers, write payloads skipped),
/// stopping at the first malformed header or truncated frame. For the fuzz target and tests.
pub fn decode_stream(mut b: &[u8], s: &Session) -> Vec<Result<Command, u32>> {
    let mut out = Vec::new();
    while b.len() >= REQUEST_LEN {
        let mut h = [0u8; REQUEST_LEN];
        h.copy_from_slice(&b[..REQUEST_LEN]);
        let Ok(r) = Request::decode(&h) else { break };
        b = &b[REQUEST_LEN..];
        let p = r.payload_len();
        if p > MAX_PAYLOAD || (p as usize) > b.len() {
            break;
        }
        b = &b[p as usize..];
        out.push(check(&r, s));
    }
    out
}

// ---- encoders ----

/// The server's greeting.
pub fn greeting() -> [u8; 18] {
    let mut b = [0u8; 18];
    b[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..18].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    b
}

/// One option reply.
pub fn option_reply(opt: u32, typ: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&typ.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// NBD_REP_SERVER payload for NBD_OPT_LIST.
pub fn rep_server(name: &str, description: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(name.len() as u32).to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(description.as_bytes());
    b
}

pub fn info_export(size: u64, flags: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&INFO_EXPORT.to_be_bytes());
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    b
}

pub fn info_string(typ: u16, s: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + s.len());
    b.extend_from_slice(&typ.to_be_bytes());
    b.extend_from_slice(s.as_bytes());
    b
}

pub fn info_block_size(min: u32, preferred: u32, max: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(14);
    b.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    b.extend_from_slice(&min.to_be_bytes());
    b.extend_from_slice(&preferred.to_be_bytes());
    b.extend_from_slice(&max.to_be_bytes());
    b
}

pub fn rep_meta_context(id: u32, name: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + name.len());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(name.as_bytes());
    b
}

/// The answer to NBD_OPT_EXPORT_NAME.
pub fn export_name_reply(size: u64, flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(134);
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    if !no_zeroes {
        b.extend_from_slice(&[0u8; 124]);
    }
    b
}

/// A simple reply header (a successful read's data follows).
pub fn simple_reply(error: u32, cookie: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b
}

/// A structured reply chunk header; `len` bytes of payload follow.
pub fn chunk_header(flags: u16, typ: u16, cookie: u64, len: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&typ.to_be_bytes());
    b[8..16].copy_from_slice(&cookie.to_be_bytes());
    b[16..20].copy_from_slice(&len.to_be_bytes());
    b
}

/// A final NBD_REPLY_TYPE_ERROR chunk.
pub fn error_chunk(cookie: u64, error: u32, msg: &str) -> Vec<u8> {
    let msg = &msg.as_bytes()[..msg.len().min(1024)];
    let mut b = Vec::with_capacity(26 + msg.len());
    b.extend_from_slice(&chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_ERROR,
        cookie,
        6 + msg.len() as u32,
    ));
    b.extend_from_slice(&error.to_be_bytes());
    b.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    b.extend_from_slice(msg);
    b
}

/// A final NBD_REPLY_TYPE_BLOCK_STATUS chunk: (length, flags) descriptors.
pub fn block_status_chunk(cookie: u64, ctx: u32, extents: &[(u32, u32)]) -> Vec<u8> {
    let len = 4 + 8 * extents.len() as u32;
    let mut b = Vec::with_capacity(20 + len as usize);
    b.extend_from_slice(&chunk_header(
        REPLY_FLAG_DONE,
        REPLY_TYPE_BLOCK_STATUS,
        cookie,
        len,
    ));
    b.extend_from_slice(&ctx.to_be_bytes());
    for (l, f) in extents {
        b.extend_from_slice(&l.to_be_bytes());
        b.extend_from_slice(&f.to_be_bytes());
    }
    b
}

/// The fuzz target's body (also replayed over the corpus by `cargo test`): the first byte picks
/// the session (read-only, structured, base:allocation; the next 8 bytes its size), the rest is
/// fed to every decoder. Checks that whatever passes `check` is safe to execute.
pub fn fuzz_one(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let size = if rest.len() >= 8 { be64(rest) } else { 1 << 20 };
    let s = Session {
        size,
        read_only: sel & 1 != 0,
        structured: sel & 2 != 0,
        base_allocation: sel & 4 != 0,
    };
    let within = |off: u64, len: u32| off.checked_add(len as u64).is_some_and(|e| e <= size);
    for c in decode_stream(rest, &s).into_iter().flatten() {
        match c {
            Command::Read { off, len } | Command::Cache { off, len } => {
                assert!(within(off, len) && len <= MAX_PAYLOAD)
            }
            Command::Write { off, len, .. } => {
                assert!(within(off, len) && len <= MAX_PAYLOAD && !s.read_only)
            }
            Command::Trim { off, len, .. } | Command::WriteZeroes { off, len, .. } => {
                assert!(within(off, len) && !s.read_only)
            }
            Command::BlockStatus { off, len, one } => {
                assert!(within(off, len) && s.base_allocation && len > 0);
                // Descriptors cover the range exactly, whatever the data runs.
                let runs: Vec<(u64, u64)> = rest
                    .chunks_exact(4)
                    .take(16)
                    .map(|c| (c[0] as u64 * 8 + c[1] as u64, 1 + c[2] as u64))
                    .scan(0u64, |end, (gap, l)| {
                        let s = *end + gap;
                        *end = s + l;
                        Some((s, l))
                    })
                    .collect();
                let d = crate::status::descriptors(off, len, &runs, one);
                let total: u64 = d.iter().map(|x| x.0 as u64).sum();
                assert!(d.iter().all(|x| x.0 > 0));
                assert!(if one { total <= len as u64 && d.len() == 1 } else { total == len as u64 });
            }
            Command::Flush | Command::Disconnect => {}
        }
    }
    let _ = decode_info_request(rest);
    let _ = decode_meta_request(rest);
    let _ = decode_export_name(rest);
    if let Some(h) = rest.first_chunk::<OPTION_HEADER_LEN>() {
        let _ = decode_option_header(h);
    }
    if let Some(h) = rest.first_chunk::<REQUEST_LEN>() {
        if let Ok(r) = Request::decode(h) {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Session = Session {
        size: 1 << 20,
        read_only: false,
        structured: true,
        base_allocation: true,
    };

    fn req(cmd: u16, flags: u16, offset: u64, len: u32) -> Request {
        Request {
            flags,
            cmd,
            cookie: 7,
            offset,
            len,
        }
    }

    #[test]
    fn request_roundtrip_and_magic() {
        let r = req(CMD_WRITE, CF_FUA, 4096, 512);
        assert_eq!(Request::decode(&r.encode()), Ok(r));
        let mut b = r.encode();
        b[0] ^= 1;
        assert!(Request::decode(&b).is_err());
    }

    #[test]
    fn checks() {
        assert_eq!(
            check(&req(CMD_READ, 0, 0, 512), &S),
            Ok(Command::Read { off: 0, len: 512 })
        );
        assert_eq!(check(&req(CMD_READ, 0, (1 << 20) - 1, 2), &S), Err(EINVAL));
        assert_eq!(check(&req(CMD_READ, 0, u64::MAX, 2), &S), Err(EINVAL));
        assert_eq!(check(&req(CMD_WRITE, 0, 1 << 20, 1), &S), Err(ENOSPC));
        assert_eq!(
            check(&req(CMD_WRITE_ZEROES, 0, 1 << 20, 1), &S),
            Err(ENOSPC)
        );
        assert_eq!(check(&req(CMD_TRIM, 0, 1 << 20, 1), &S), Err(EINVAL));
        assert_eq!(check(&req(99, 0, 0, 0), &S), Err(EINVAL));
        assert_eq!(check(&req(CMD_READ, CF_FUA, 0, 1), &S), Err(EINVAL));
        assert_eq!(check(&req(CMD_FLUSH, 0, 1, 0), &S), Err(EINVAL));
        let ro = Session {
            read_only: true,
            ..S
        };
        assert_eq!(check(&req(CMD_WRITE, 0, 0, 1), &ro), Err(EPERM));
        assert_eq!(check(&req(CMD_TRIM, 0, 0, 1), &ro), Err(EPERM));
        let big = Session { size: 1 << 40, ..S };
        assert_eq!(
            check(&req(CMD_READ, 0, 0, MAX_PAYLOAD + 1), &big),
            Err(EINVAL)
        );
        assert_eq!(
            check(
                &req(
                    CMD_WRITE_ZEROES,
                    CF_NO_HOLE | CF_FAST_ZERO | CF_FUA,
                    0,
                    4096
                ),
                &S
            ),
            Ok(Command::WriteZeroes {
                off: 0,
                len: 4096,
                fua: true
            })
        );
        let nometa = Session {
            base_allocation: false,
            ..S
        };
        assert_eq!(
            check(&req(CMD_BLOCK_STATUS, 0, 0, 512), &nometa),
            Err(EINVAL)
        );
        let simple = Session {
            structured: false,
            ..S
        };
        assert_eq!(check(&req(CMD_READ, CF_DF, 0, 1), &simple), Err(EINVAL));
    }

    #[test]
    fn option_payloads() {
        let mut d = Vec::new();
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"a/b");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        d.extend_from_slice(&INFO_NAME.to_be_bytes());
        assert_eq!(decode_info_request(&d), Ok(("a/b".into(), vec![3, 1])));
        assert!(decode_info_request(&d[..d.len() - 1]).is_err());
        let mut long = d.clone();
        long.push(0);
        assert!(decode_info_request(&long).is_err());
        let mut m = Vec::new();
        m.extend_from_slice(&0u32.to_be_bytes());
        m.extend_from_slice(&1u32.to_be_bytes());
        m.extend_from_slice(&15u32.to_be_bytes());
        m.extend_from_slice(BASE_ALLOCATION.as_bytes());
        assert_eq!(
            decode_meta_request(&m),
            Ok((String::new(), vec![BASE_ALLOCATION.into()]))
        );
        // A huge count with no data is an error, not an allocation.
        let mut h = Vec::new();
        h.extend_from_slice(&0u32.to_be_bytes());
        h.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_meta_request(&h).is_err());
        assert!(decode_export_name(b"a\0b").is_err());
    }

    #[test]
    fn stream_stops_at_garbage() {
        let mut b = Vec::new();
        b.extend_from_slice(&req(CMD_WRITE, 0, 0, 4).encode());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&req(CMD_FLUSH, 0, 0, 0).encode());
        b.extend_from_slice(b"garbage-garbage-garbage-garbage");
        let v = decode_stream(&b, &S);
        assert_eq!(
            v,
            vec![
                Ok(Command::Write {
                    off: 0,
                    len: 4,
                    fua: false
                }),
                Ok(Command::Flush)
            ]
        );
    }
}
