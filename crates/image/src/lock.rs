//! The exclusive lock (one writer per image, handed over cooperatively) and the legacy
//! advisory locks.
//!
//! ```text
//! <pool>/images/<id>/lock   { owner, epoch, expires_ms, explicit, handoff }   (envelope kind 5)
//! ```
//! Taking the lock: create the lock object (create-only: exactly one winner), then bump the
//! header epoch and record the fence (epoch, first segment number after everything stored so
//! far), then reopen the volume writable under that epoch. A lock whose lease expired (its
//! owner stopped renewing) may be taken over with a conditional replace. A writer that wants a
//! lock someone holds asks for it (`handoff`); the owner's renewal thread, seeing the request,
//! stores everything and deletes the lock — unless the owner took the lock explicitly
//! (`rbd_lock_acquire`), in which case the requester gets `Busy`. Breaking a lock deletes it
//! and bumps the epoch at once: whatever the old owner stores afterwards is ignored by every
//! reader (it is past the fence under an older epoch) and its segment numbers are reclaimed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shale_error::{err, ErrorKind, Result};
use shale_format::envelope::Kind;
use shale_store::PutMode;

use crate::cluster::{get_json, put_json, Cluster};
use crate::image::{head_volume, Image};

/// The exclusive-lock feature bit.
pub use crate::features::EXCLUSIVE_LOCK;
/// How long a lock stays valid without renewal.
const LEASE: Duration = Duration::from_secs(6);
/// A writer stops deleting this long before its lease runs out (clock and store latency).
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// Renewal period (also how often an owner notices a handoff request or a break).
const RENEW: Duration = Duration::from_millis(500);
/// How long a lock handed over on request stays reserved for the requester.
const RESERVE: Duration = Duration::from_secs(3);
/// How long a writer waits for the owner to hand the lock over.
const HANDOFF_WAIT: Duration = Duration::from_secs(30);
/// How long a reader waits for the owner to store what it wrote ([`request_sync`]).
const SYNC_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LockRecord {
    owner: String,
    epoch: u64,
    expires_ms: u64,
    explicit: bool,
    #[serde(default)]
    handoff: Option<String>,
    /// Where the owner runs, to notice a dead owner on this host before its lease ends.
    #[serde(default)]
    host: String,
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    start: u64,
    /// A reader asks the owner to store everything written so far by raising `sync`; the
    /// owner answers by storing it and setting `synced` to the `sync` it served.
    #[serde(default)]
    sync: u64,
    #[serde(default)]
    synced: u64,
    /// A maintenance operation another client asks the owner to run, and the owner's answer.
    #[serde(default)]
    op: Option<ProxyRequest>,
    #[serde(default)]
    op_done: Option<ProxyReply>,
    /// A lock handed over on request stays reserved for the requester (`handoff`) until then
    /// (ms): its former owner, still writing, must not take it straight back.
    #[serde(default)]
    reserved_until: u64,
}

/// A maintenance operation a client that does not hold the lock asks its owner to run: librbd
/// forwards these to the owner, so they succeed while the owner holds the lock explicitly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) enum ProxyOp {
    SnapCreate { name: String },
    Resize { size: u64, allow_shrink: bool },
    Flatten,
    Location(crate::locations::LocationOp),
}

/// Gives the owner's side the image a [`ProxyOp`] runs on: the front end's live [`Image`] for
/// this lock (its engine may have been replaced since this one was opened). Installed with
/// [`Image::set_proxy_handler`]; without one, requests are refused.
pub type ProxyHandler = Arc<dyn Fn(&dyn Fn(&Image) -> Result<()>) -> Result<()> + Send + Sync>;

impl ProxyOp {
    fn run(&self, img: &Image) -> Result<()> {
        match self {
            ProxyOp::SnapCreate { name } => img.snap_create(name).map(drop),
            ProxyOp::Resize { size, allow_shrink } => img.resize(*size, *allow_shrink),
            ProxyOp::Flatten => img.flatten(|_, _| {}),
            ProxyOp::Location(op) => img.location_change_here(op),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ProxyRequest {
    id: u64,
    op: ProxyOp,
}

/// The owner's answer to request `id`: None on success, else the error's kind and message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ProxyReply {
    id: u64,
    error: Option<(String, String)>,
}

/// How long a client waits for the owner to run a [`ProxyOp`] (a flatten copies data).
const PROXY_WAIT: Duration = Duration::from_secs(600);

const KINDS: [ErrorKind; 13] = [
    ErrorKind::NotFound,
    ErrorKind::Exists,
    ErrorKind::Invalid,
    ErrorKind::Busy,
    ErrorKind::ReadOnly,
    ErrorKind::Unavailable,
    ErrorKind::Corruption,
    ErrorKind::Fenced,
    ErrorKind::NoSpace,
    ErrorKind::Unsupported,
    ErrorKind::NotEmpty,
    ErrorKind::Io,
    ErrorKind::TimedOut,
];

impl ProxyReply {
    fn of(id: u64, r: &Result<()>) -> Self {
        ProxyReply {
            id,
            error: r
                .as_ref()
                .err()
                .map(|e| (format!("{:?}", e.kind()), e.message().to_string())),
        }
    }

    fn result(&self) -> Result<()> {
        match &self.error {
            None => Ok(()),
            Some((kind, msg)) => {
                let k = KINDS
                    .into_iter()
                    .find(|k| format!("{k:?}") == *kind)
                    .unwrap_or(ErrorKind::Io);
                Err(shale_error::Error::new(k, format!("lock owner: {msg}")))
            }
        }
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Start time (clock ticks since boot) of a process, to tell it from a later one with the
/// same pid.
fn proc_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

impl LockRecord {
    fn mine(owner: &str, explicit: bool, now_ms: u64) -> Self {
        let pid = std::process::id();
        LockRecord {
            owner: owner.to_string(),
            epoch: 0,
            expires_ms: now_ms + LEASE.as_millis() as u64,
            explicit,
            handoff: None,
            host: host(),
            pid,
            start: proc_start(pid).unwrap_or(0),
            sync: 0,
            synced: 0,
            op: None,
            op_done: None,
            reserved_until: 0,
        }
    }

    /// Released on request and still reserved for a client other than `me`.
    fn reserved_for_other(&self, me: &str, now_ms: u64) -> bool {
        self.released()
            && now_ms < self.reserved_until
            && self.handoff.as_deref().is_some_and(|h| h != me)
    }

    /// Let go by its owner (release or handoff): the image is unlocked.
    fn released(&self) -> bool {
        self.expires_ms == 0
    }

    /// Its lease ran out, or its owner's process on this host is gone.
    fn stale(&self, now_ms: u64) -> bool {
        if self.expires_ms < now_ms {
            return true;
        }
        self.pid != 0 && self.host == host() && proc_start(self.pid) != Some(self.start)
    }
}

/// A legacy advisory lock, kept in the image header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Locker {
    /// The client that holds it (`client.<id>`).
    pub client: String,
    pub cookie: String,
    pub exclusive: bool,
    pub tag: String,
    pub address: String,
}

#[derive(Default)]
struct State {
    owner: bool,
    explicit: bool,
    stop: Option<Arc<AtomicBool>>,
}

/// Per-image lock state.
pub struct LockCtl {
    /// The image uses the exclusive-lock feature (and this handle may write).
    enabled: bool,
    /// This handle's name as a lock owner: `client.<id> <handle>`.
    me: String,
    st: Mutex<State>,
    /// When the lease this handle last wrote runs out (ms since the epoch).
    lease_until: Arc<std::sync::atomic::AtomicU64>,
    /// Serialises takeovers: concurrent first writes take the lock once (and a reader's view
    /// refresh never replaces a writer's volume).
    pub(crate) acquiring: Mutex<()>,
    /// How many times this handle has taken the lock: a front end that hands ownership to one
    /// of several users of this handle tells a current grant from an earlier one by it.
    generation: std::sync::atomic::AtomicU64,
    /// Runs other clients' maintenance operations while this handle holds the lock.
    handler: Mutex<Option<ProxyHandler>>,
    /// This handle's I/O statistics (the owner stores them with the image).
    pub(crate) io: Arc<crate::iostats::IoStats>,
}

impl std::fmt::Debug for LockCtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockCtl(owner: {})", self.is_owner())
    }
}

fn lock_key(pool: &str, id: &str) -> String {
    shale_format::keys::lock(pool, id)
}

impl LockCtl {
    pub(crate) fn new(enabled: bool, client: &str, handle: u32) -> Self {
        LockCtl {
            enabled,
            me: format!("{client} {handle:08x}"),
            st: Mutex::new(State::default()),
            lease_until: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            acquiring: Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
            handler: Mutex::new(None),
            io: Arc::default(),
        }
    }

    /// This handle's name as a lock owner.
    pub(crate) fn owner_name(&self) -> &str {
        &self.me
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn is_owner(&self) -> bool {
        self.state().owner
    }

    /// Make sure this handle holds the lock (taking it, or asking for it, if needed).
    pub(crate) fn ensure(&self, img: &Image) -> Result<()> {
        if !self.enabled || self.state().owner {
            return Ok(());
        }
        let _one = self.acquiring.lock().unwrap_or_else(|p| p.into_inner());
        if self.state().owner {
            return Ok(());
        }
        acquire(self, img, false)
    }

    /// Give the lock up: store everything, reopen read-only, let the lock object go.
    /// Serialised with takeovers: a write racing with the release takes the lock afresh
    /// afterwards, and the release never touches the lock that write took.
    pub(crate) fn release(&self, img: &Image) -> Result<()> {
        let _one = self.acquiring.lock().unwrap_or_else(|p| p.into_inner());
        self.release_locked(img)
    }

    fn release_locked(&self, img: &Image) -> Result<()> {
        let stop = {
            let mut st = self.state();
            if !st.owner {
                return Ok(());
            }
            st.owner = false;
            st.explicit = false;
            st.stop.take()
        };
        if let Some(s) = stop {
            s.store(true, Ordering::SeqCst);
        }
        let res = demote(&img.cluster, &img.pool, &img.id, &img.vol);
        relinquish(&img.cluster, &lock_key(&img.pool, &img.id), &self.me, None)?;
        res
    }
}

/// Let our lock record go: replace it, only if it is still ours and unchanged, by an expired
/// one (a conditional write: a lock someone took meanwhile is never removed).
/// Handed over on request (`to`): reserved for the requester for a while.
fn relinquish(c: &crate::Cluster, key: &str, me: &str, to: Option<&str>) -> Result<()> {
    match get_json::<LockRecord>(c.store.as_ref(), key, Kind::Lock) {
        Ok((rec, ver)) if rec.owner == me => {
            let gone = LockRecord {
                expires_ms: 0,
                handoff: to.map(str::to_string),
                reserved_until: if to.is_some() {
                    c.now_ms() + RESERVE.as_millis() as u64
                } else {
                    0
                },
                explicit: false,
                ..rec
            };
            match put_json(
                c.store.as_ref(),
                key,
                Kind::Lock,
                &gone,
                PutMode::Update(ver),
            ) {
                Err(e) if e.kind() == ErrorKind::Busy || e.kind() == ErrorKind::NotFound => Ok(()),
                r => r.map(|_| ()),
            }
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Close the writable volume (storing everything) and open the head read-only in its place.
fn demote(
    c: &Cluster,
    pool: &str,
    id: &str,
    slot: &Arc<std::sync::RwLock<Arc<shale_engine::Volume>>>,
) -> Result<()> {
    let old = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
    let res = old.close();
    let (h, _) = c.load_header(pool, id)?;
    let ro = head_volume(c, pool, id, &h, false, None)?;
    *slot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ro);
    res
}

/// Bump the header epoch and set the fence past every stored segment; take over what older
/// writers left staged (local stores). Returns the new epoch.
fn fence(c: &Cluster, pool: &str, id: &str) -> Result<u64> {
    let start = c.data_max_segment(pool, id)? + 1;
    let (h, _) = c.modify_header(pool, id, |h| {
        h.epoch += 1;
        h.fence = Some((h.epoch, start));
        Ok(())
    })?;
    if let Some(staging) = c.staging(pool, id) {
        staging.adopt(h.epoch)?;
    }
    Ok(h.epoch)
}

/// Did the last writer stop without storing everything (staged segments in the store
/// directory, or a journal file left in the cache directory)?
fn left_unclean(img: &Image) -> Result<bool> {
    unclean_here(&img.cluster, &img.pool, &img.id)
}

/// [`left_unclean`] before a handle exists.
pub(crate) fn unclean_here(c: &crate::Cluster, pool: &str, id: &str) -> Result<bool> {
    let prefix = shale_format::keys::image_prefix(pool, id);
    for dir in ["open/", "adopt/"] {
        if !c.store.list(&format!("{prefix}{dir}"))?.is_empty() {
            return Ok(true);
        }
    }
    let key = crate::image::journal_key(pool, id);
    Ok(c.settings()
        .journal_file(&key)
        .is_some_and(|(p, _)| p.exists()))
}

/// The owner of a live (not stale) exclusive lock on the image, if any.
pub(crate) fn live_owner(c: &crate::Cluster, pool: &str, id: &str) -> Result<Option<String>> {
    match get_json::<LockRecord>(c.store.as_ref(), &lock_key(pool, id), Kind::Lock) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
        Ok((rec, _)) if rec.stale(c.now_ms()) => Ok(None),
        Ok((rec, _)) => Ok(Some(rec.owner)),
    }
}

/// Before a read-only open of the head: did a writer stop uncleanly, leaving acknowledged
/// writes that only a writable open can bring into the store? `Some(true)` when they can be
/// recovered here (nobody alive holds the lock and the journal or staging is reachable),
/// `Some(false)` when another live client holds the image (its flushed data shows through
/// within about a second), `None` when nothing is left over.
pub(crate) fn needs_recovery(c: &crate::Cluster, pool: &str, id: &str) -> Result<Option<bool>> {
    if !unclean_here(c, pool, id)? {
        return Ok(None);
    }
    let key = lock_key(pool, id);
    match get_json::<LockRecord>(c.store.as_ref(), &key, Kind::Lock) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Some(true)),
        Err(e) => Err(e),
        Ok((rec, _)) if rec.stale(c.now_ms()) => Ok(Some(true)),
        Ok(_) => Ok(Some(false)),
    }
}

/// At open: when nobody (alive) holds the lock, take it now, so that a writer restarting
/// after a crash recovers what it had staged before anyone reads.
pub(crate) fn take_if_free(img: &Image) -> Result<()> {
    if !img.lock.enabled {
        return Ok(());
    }
    let key = lock_key(&img.pool, &img.id);
    let free = match get_json::<LockRecord>(img.cluster.store.as_ref(), &key, Kind::Lock) {
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) => return Err(e),
        Ok((rec, _)) => rec.stale(img.cluster.now_ms()),
    };
    if free
        && left_unclean(img)?
        && !img
            .cluster
            .load_header(&img.pool, &img.id)?
            .0
            .blocklist
            .contains(&img.lock.me)
    {
        img.lock.ensure(img)?;
    }
    Ok(())
}

fn acquire(ctl: &LockCtl, img: &Image, explicit: bool) -> Result<()> {
    let c = &img.cluster;
    let key = lock_key(&img.pool, &img.id);
    let me = ctl.me.clone();
    let deadline = c.clock.now() + HANDOFF_WAIT;
    loop {
        let rec = LockRecord::mine(&me, explicit, c.now_ms());
        if c.load_header(&img.pool, &img.id)?.0.blocklist.contains(&me) {
            return Err(err!(
                Fenced,
                "this client's lock on the image was broken; it may not write again"
            ));
        }
        let won = match get_json::<LockRecord>(c.store.as_ref(), &key, Kind::Lock) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                match put_json(c.store.as_ref(), &key, Kind::Lock, &rec, PutMode::Create) {
                    Ok(_) => true,
                    Err(e) if e.kind() == ErrorKind::Exists => false,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
            // Ours (e.g. released earlier by this handle) or stale: take it with a fresh
            // lease (a conditional write: whoever changed it meanwhile wins).
            Ok((cur, ver))
                if (cur.owner == me || cur.stale(c.now_ms()))
                    && !cur.reserved_for_other(&me, c.now_ms()) =>
            {
                // Its owner stopped renewing: take it over.
                put_json(
                    c.store.as_ref(),
                    &key,
                    Kind::Lock,
                    &rec,
                    PutMode::Update(ver),
                )
                .is_ok()
            }
            Ok((cur, _)) if cur.reserved_for_other(&me, c.now_ms()) => {
                // Handed over to another client a moment ago: let it take the lock first.
                if c.clock.now() > deadline {
                    return Err(err!(
                        Busy,
                        "the exclusive lock is reserved for {}",
                        cur.handoff.as_deref().unwrap_or("another client")
                    ));
                }
                c.clock.sleep(Duration::from_millis(50));
                false
            }
            Ok((cur, ver)) => {
                if cur.explicit {
                    return Err(err!(
                        Busy,
                        "image is locked by {} (exclusive lock taken explicitly)",
                        cur.owner
                    ));
                }
                if cur.handoff.as_deref() != Some(&me) {
                    let ask = LockRecord {
                        handoff: Some(me.clone()),
                        ..cur.clone()
                    };
                    let _ = put_json(
                        c.store.as_ref(),
                        &key,
                        Kind::Lock,
                        &ask,
                        PutMode::Update(ver),
                    );
                }
                if c.clock.now() > deadline {
                    return Err(err!(
                        Busy,
                        "{} did not hand over the exclusive lock within {:?}",
                        cur.owner,
                        HANDOFF_WAIT
                    ));
                }
                c.clock.sleep(Duration::from_millis(50));
                false
            }
        };
        if !won {
            continue;
        }
        // We hold the lock object: fence every earlier writer, then reopen writable.
        let epoch = fence(c, &img.pool, &img.id)?;
        if let Ok((mut cur, ver)) = get_json::<LockRecord>(c.store.as_ref(), &key, Kind::Lock) {
            cur.epoch = epoch;
            let _ = put_json(
                c.store.as_ref(),
                &key,
                Kind::Lock,
                &cur,
                PutMode::Update(ver),
            );
        }
        let (h, ver) = c.load_header(&img.pool, &img.id)?;
        let old = img.vol();
        let _ = old.close();
        ctl.lease_until
            .store(c.now_ms() + LEASE.as_millis() as u64, Ordering::SeqCst);
        let until = ctl.lease_until.clone();
        let clock = c.clock.clone();
        let lease = shale_engine::LeaseCheck(Arc::new(move || {
            clock.unix_ms() + LEASE_MARGIN.as_millis() as u64 <= until.load(Ordering::SeqCst)
        }));
        let vol = Arc::new(head_volume(c, &img.pool, &img.id, &h, true, Some(lease))?);
        *img.vol.write().unwrap_or_else(|p| p.into_inner()) = vol.clone();
        *img.header.lock().unwrap_or_else(|p| p.into_inner()) = (h, ver);
        let stop = Arc::new(AtomicBool::new(false));
        {
            let mut st = ctl.state();
            st.owner = true;
            st.explicit = explicit;
            st.stop = Some(stop.clone());
            ctl.generation.fetch_add(1, Ordering::SeqCst);
        }
        if let Err(e) = spawn_renewal(
            c.clone(),
            img.pool.clone(),
            img.id.clone(),
            img.vol.clone(),
            img.lock.clone(),
            stop,
        ) {
            // Without renewal the lease would lapse under a writer that believes it owns the
            // image: give the lock back and fail.
            let _ = ctl.release_locked(img);
            return Err(e);
        }
        return Ok(());
    }
}

/// The owner reopens its volume from the current header under the same epoch (it held the
/// lock all along: nobody else wrote), after a change of the image's locations. Nothing to do
/// for a handle that does not hold the lock (it reopens when it takes it).
pub(crate) fn reopen_owned(img: &Image) -> Result<()> {
    let ctl = &img.lock;
    let _one = ctl.acquiring.lock().unwrap_or_else(|p| p.into_inner());
    if !ctl.state().owner {
        return Ok(());
    }
    let c = &img.cluster;
    let (h, ver) = c.load_header(&img.pool, &img.id)?;
    img.vol().close()?;
    let until = ctl.lease_until.clone();
    let clock = c.clock.clone();
    let lease = shale_engine::LeaseCheck(Arc::new(move || {
        clock.unix_ms() + LEASE_MARGIN.as_millis() as u64 <= until.load(Ordering::SeqCst)
    }));
    let vol = Arc::new(head_volume(c, &img.pool, &img.id, &h, true, Some(lease))?);
    *img.vol.write().unwrap_or_else(|p| p.into_inner()) = vol;
    *img.header.lock().unwrap_or_else(|p| p.into_inner()) = (h, ver);
    Ok(())
}

/// The owner stores the image's statistics every this many renewals (when they changed).
const STATS_EVERY: u64 = 4;

fn store_stats(
    c: &Cluster,
    pool: &str,
    id: &str,
    me: &str,
    ctl: &LockCtl,
    vol: &shale_engine::Volume,
    last: &mut Option<crate::iostats::IoSnapshot>,
) {
    let io = ctl.io.snapshot();
    if last.as_ref() == Some(&io) {
        return;
    }
    let st = vol.stats();
    let s = crate::iostats::StoredStats {
        owner: me.to_string(),
        updated_ms: c.now_ms(),
        io: io.clone(),
        pending_segments: st.pending_segments as u64,
        pending_bytes: st.pending_bytes,
        segments_written: st.segments_written,
        bytes_to_store: st.bytes_to_store,
    };
    let key = format!("{}stats", shale_format::keys::image_prefix(pool, id));
    match put_json(c.store.as_ref(), &key, Kind::Stats, &s, PutMode::Overwrite) {
        Ok(_) => *last = Some(io),
        Err(e) => tracing::debug!("storing the statistics of {pool}/{id}: {e}"),
    }
}

/// Renew the lease; hand the lock over when asked (unless taken explicitly); notice a break.
fn spawn_renewal(
    c: Cluster,
    pool: String,
    id: String,
    slot: Arc<std::sync::RwLock<Arc<shale_engine::Volume>>>,
    ctl: Arc<LockCtl>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    std::thread::Builder::new().name("shale-lock".into()).spawn(move || {
        let key = lock_key(&pool, &id);
        let me = ctl.me.clone();
        let syncing = Arc::new(AtomicBool::new(false));
        let proxying = Arc::new(AtomicBool::new(false));
        let mut stored_io = None;
        let mut rounds = 0u64;
        while !stop.load(Ordering::SeqCst) {
            c.clock.sleep(RENEW);
            if stop.load(Ordering::SeqCst) {
                return;
            }
            rounds += 1;
            if rounds.is_multiple_of(STATS_EVERY) {
                let vol = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
                store_stats(&c, &pool, &id, &me, &ctl, &vol, &mut stored_io);
            }
            let cur = get_json::<LockRecord>(c.store.as_ref(), &key, Kind::Lock);
            match cur {
                Ok((rec, ver)) if rec.owner == me => {
                    if rec.handoff.is_some() && !rec.explicit {
                        // Asked to hand over: store everything, then let go. Serialised with
                        // this handle's own takeovers and releases: a write of this handle
                        // racing with the handoff must not take the lock back (a new epoch
                        // whose fence adopts the staging files the demote is still
                        // publishing) before the handoff is complete; it asks for the lock
                        // afresh afterwards.
                        let _one = ctl.acquiring.lock().unwrap_or_else(|p| p.into_inner());
                        if stop.load(Ordering::SeqCst) || !ctl.state().owner {
                            return; // released meanwhile
                        }
                        {
                            let mut st = ctl.state();
                            st.owner = false;
                            st.stop = None;
                        }
                        if let Err(e) = demote(&c, &pool, &id, &slot) {
                            tracing::warn!("handing over the lock of {pool}/{id}: {e}");
                        }
                        if let Err(e) = relinquish(&c, &key, &me, rec.handoff.as_deref()) {
                            tracing::warn!("handing over the lock of {pool}/{id}: {e}");
                        }
                        return;
                    }
                    if let Some(req) = &rec.op {
                        let answered = rec.op_done.as_ref().is_some_and(|d| d.id == req.id);
                        if !answered && !proxying.swap(true, Ordering::SeqCst) {
                            serve_op(c.clone(), key.clone(), me.clone(), ctl.clone(), req.clone(), proxying.clone());
                        }
                    }
                    if rec.sync > rec.synced && !syncing.swap(true, Ordering::SeqCst) {
                        // A reader asked for everything written so far: store it on a
                        // thread of its own, so that the lease keeps being renewed meanwhile.
                        let vol = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
                        serve_sync(c.clone(), key.clone(), me.clone(), vol, rec.sync, syncing.clone());
                    }
                    let renewed = LockRecord { expires_ms: c.now_ms() + LEASE.as_millis() as u64, ..rec };
                    let until = renewed.expires_ms;
                    if put_json(c.store.as_ref(), &key, Kind::Lock, &renewed, PutMode::Update(ver)).is_ok() {
                        ctl.lease_until.store(until, Ordering::SeqCst);
                    }
                }
                Err(e) if e.kind() != ErrorKind::NotFound => {} // store trouble: try again
                _ => {
                    // Broken or taken by another client: we are fenced.
                    tracing::warn!("the exclusive lock of {pool}/{id} was taken away; this handle stops writing");
                    {
                        let mut st = ctl.state();
                        st.owner = false;
                        st.stop = None;
                    }
                    slot.read().unwrap_or_else(|p| p.into_inner()).fence();
                    return;
                }
            }
        }
    })
    .map(|_| ())
    .map_err(|e| shale_error::Error::io("cannot start the lock renewal thread", e))
}

/// The owner's side of [`request_sync`]: store everything written so far, then record that
/// request `n` was served (or leave it unanswered on failure: the reader gives up in time).
fn serve_sync(
    c: Cluster,
    key: String,
    me: String,
    vol: Arc<shale_engine::Volume>,
    n: u64,
    busy: Arc<AtomicBool>,
) {
    let work = move || {
        if let Err(e) = vol.flush_to_store() {
            tracing::warn!("storing writes a reader asked for: {e}");
            return;
        }
        // Unanswered on failure too: the reader gives up in time.
        let _ = update_own(&c, &key, &me, 20, |rec| {
            (rec.synced < n).then_some(LockRecord { synced: n, ..rec })
        });
    };
    spawn_busy(
        "shale-lock-sync",
        busy,
        "store writes a reader asked for",
        work,
    );
}

/// Run `work` on a thread of its own (so that the lease keeps being renewed meanwhile), then
/// clear `busy`; `what` names the work in the warning when no thread can be started.
fn spawn_busy(name: &str, busy: Arc<AtomicBool>, what: &str, work: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            work();
            busy.store(false, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a thread to {what}: {e}");
    }
}

/// Change our lock record with `f` by a conditional write, again (at most `tries` times) when
/// another client changed it meanwhile; nothing when it is no longer ours or `f` declines.
fn update_own(
    c: &Cluster,
    key: &str,
    me: &str,
    tries: u32,
    f: impl Fn(LockRecord) -> Option<LockRecord>,
) -> Result<()> {
    for _ in 0..tries {
        let (rec, ver) = match get_json::<LockRecord>(c.store.as_ref(), key, Kind::Lock) {
            Ok((rec, ver)) if rec.owner == me => (rec, ver),
            Ok(_) => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(new) = f(rec) else {
            return Ok(());
        };
        match put_json(
            c.store.as_ref(),
            key,
            Kind::Lock,
            &new,
            PutMode::Update(ver),
        ) {
            Err(e) if e.kind() == ErrorKind::Busy => continue,
            r => return r.map(|_| ()),
        }
    }
    Ok(())
}

/// The owner's side of [`Image::run_at_owner`]: run the operation (on a thread of its own,
/// so that the lease keeps being renewed), then answer it in the lock object.
fn serve_op(
    c: Cluster,
    key: String,
    me: String,
    ctl: Arc<LockCtl>,
    req: ProxyRequest,
    busy: Arc<AtomicBool>,
) {
    let work = move || {
        let handler = ctl
            .handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let r = match handler {
            Some(h) => h(&|img: &Image| req.op.run(img)),
            None => Err(err!(
                Busy,
                "the exclusive lock's owner does not run operations for other clients"
            )),
        };
        let reply = ProxyReply::of(req.id, &r);
        let answered = update_own(&c, &key, &me, 50, |rec| {
            Some(LockRecord {
                op: rec.op.clone().filter(|o| o.id != req.id),
                op_done: Some(reply.clone()),
                ..rec
            })
        });
        if let Err(e) = answered {
            tracing::warn!("answering a request of another client: {e}");
        }
    };
    spawn_busy("shale-lock-op", busy, "run another client's request", work);
}

/// A reader's side of a live migration's switch-over (`rbd_invalidate_cache`): ask the
/// client that holds the lock to store everything it has written, and wait until it has (or
/// has let the lock go, which stores everything too). Returns at once when nobody else holds
/// the lock.
pub(crate) fn request_sync(img: &Image) -> Result<()> {
    let c = &img.cluster;
    let key = lock_key(&img.pool, &img.id);
    let store = c.store.as_ref();
    let deadline = c.clock.now() + SYNC_WAIT;
    let live =
        |rec: &LockRecord| !rec.released() && !rec.stale(c.now_ms()) && rec.owner != img.lock.me;
    let (owner, n) = loop {
        match get_json::<LockRecord>(store, &key, Kind::Lock) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok((rec, _)) if !live(&rec) => return Ok(()),
            Ok((rec, ver)) => {
                let n = rec.sync.max(rec.synced) + 1;
                let owner = rec.owner.clone();
                let ask = LockRecord { sync: n, ..rec };
                match put_json(store, &key, Kind::Lock, &ask, PutMode::Update(ver)) {
                    Ok(_) => break (owner, n),
                    Err(e) if e.kind() == ErrorKind::Busy && c.clock.now() < deadline => {}
                    Err(e) => return Err(e),
                }
            }
        }
    };
    loop {
        c.clock.sleep(Duration::from_millis(20));
        match get_json::<LockRecord>(store, &key, Kind::Lock) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
            Ok((rec, _)) if !live(&rec) || rec.owner != owner || rec.synced >= n => return Ok(()),
            Ok(_) if c.clock.now() > deadline => {
                return Err(err!(
                    Unavailable,
                    "{owner} did not store its writes within {SYNC_WAIT:?}"
                ))
            }
            Ok(_) => {}
        }
    }
}

/// The current exclusive-lock owner, if any.
pub(crate) fn current_owner(img: &Image) -> Result<Option<String>> {
    match get_json::<LockRecord>(
        img.cluster.store.as_ref(),
        &lock_key(&img.pool, &img.id),
        Kind::Lock,
    ) {
        Ok((rec, _)) if rec.released() => Ok(None),
        Ok((rec, _)) => Ok(Some(rec.owner)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Image {
    /// Take the exclusive lock explicitly (`rbd_lock_acquire`): it is then not handed over on
    /// request until released.
    pub fn lock_acquire(&self) -> Result<()> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        if !self.lock.enabled() {
            return Err(err!(
                Invalid,
                "the image does not have the exclusive-lock feature"
            ));
        }
        let _one = self
            .lock
            .acquiring
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.lock.is_owner() {
            return self.mark_explicit(true);
        }
        acquire(&self.lock, self, true)
    }

    /// Take the exclusive lock as a write does (cooperatively: asking a current owner to hand
    /// it over). `Busy` when another client holds it explicitly.
    pub fn lock_take(&self) -> Result<()> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        self.lock.ensure(self)
    }

    /// While this client holds the lock: whether it refuses to hand it over (`explicit`, as
    /// after `rbd_lock_acquire`) or hands it over on request. Recorded in the lock object,
    /// which is what other clients read.
    pub fn lock_set_explicit(&self, explicit: bool) -> Result<()> {
        let _one = self
            .lock
            .acquiring
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !self.lock.is_owner() {
            return Err(err!(
                Invalid,
                "this handle does not hold the exclusive lock"
            ));
        }
        self.mark_explicit(explicit)
    }

    /// Set the explicit flag of the lock this handle holds (caller holds `acquiring`).
    fn mark_explicit(&self, explicit: bool) -> Result<()> {
        let key = lock_key(&self.pool, &self.id);
        let store = self.cluster.store.as_ref();
        for _ in 0..8 {
            let (rec, ver) = get_json::<LockRecord>(store, &key, Kind::Lock)?;
            if rec.owner != self.lock.me {
                return Err(err!(
                    Busy,
                    "the exclusive lock is now held by {}",
                    rec.owner
                ));
            }
            if rec.explicit == explicit {
                break;
            }
            let new = LockRecord { explicit, ..rec };
            match put_json(store, &key, Kind::Lock, &new, PutMode::Update(ver)) {
                Ok(_) => break,
                // The renewal thread rewrote it meanwhile: read it again.
                Err(e) if e.kind() == ErrorKind::Busy => continue,
                Err(e) => return Err(e),
            }
        }
        self.lock.state().explicit = explicit;
        Ok(())
    }

    /// Install what runs other clients' maintenance operations while this handle holds the
    /// lock ([`ProxyOp`]).
    pub fn set_proxy_handler(&self, h: ProxyHandler) {
        *self.lock.handler.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// Ask the client that holds the exclusive lock to run `op` (as librbd forwards
    /// maintenance operations to the owner) and wait for its answer. `Ok(false)` when nobody
    /// else holds the lock (run it here), `Ok(true)` when the owner ran it, else its error.
    pub(crate) fn run_at_owner(&self, op: &ProxyOp) -> Result<bool> {
        let c = &self.cluster;
        let key = lock_key(&self.pool, &self.id);
        let store = c.store.as_ref();
        let deadline = c.clock.now() + PROXY_WAIT;
        let live = |rec: &LockRecord| {
            !rec.released() && !rec.stale(c.now_ms()) && rec.owner != self.lock.me
        };
        let id = c.entropy.next_u64();
        let owner = loop {
            if c.clock.now() > deadline {
                return Err(err!(TimedOut, "the exclusive lock's owner is busy"));
            }
            match get_json::<LockRecord>(store, &key, Kind::Lock) {
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
                Ok((rec, _)) if !live(&rec) => return Ok(false),
                // Another client's request is pending: one at a time.
                Ok((rec, _))
                    if rec
                        .op
                        .as_ref()
                        .is_some_and(|o| rec.op_done.as_ref().is_none_or(|d| d.id != o.id)) =>
                {
                    c.clock.sleep(Duration::from_millis(20));
                }
                Ok((rec, ver)) => {
                    let owner = rec.owner.clone();
                    let ask = LockRecord {
                        op: Some(ProxyRequest { id, op: op.clone() }),
                        ..rec
                    };
                    match put_json(store, &key, Kind::Lock, &ask, PutMode::Update(ver)) {
                        Ok(_) => break owner,
                        Err(e) if e.kind() == ErrorKind::Busy => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        loop {
            c.clock.sleep(Duration::from_millis(20));
            match get_json::<LockRecord>(store, &key, Kind::Lock) {
                Ok((rec, _)) if rec.op_done.as_ref().is_some_and(|d| d.id == id) => {
                    rec.op_done.as_ref().map_or(Ok(()), |d| d.result())?;
                    // Show what the owner changed (header and data) at once.
                    if let Err(e) = self.reload_view() {
                        tracing::debug!("reloading the view after the owner's operation: {e}");
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                // The owner let the lock go (or lost it) before answering: run it here.
                Err(_) => return Ok(false),
                Ok((rec, _)) if !live(&rec) || rec.owner != owner => return Ok(false),
                Ok(_) if c.clock.now() > deadline => {
                    return Err(err!(
                        TimedOut,
                        "{owner} did not run the operation within {PROXY_WAIT:?}"
                    ))
                }
                Ok(_) => {}
            }
        }
    }

    /// `snap_create` run by the client holding the lock explicitly ([`Image::run_at_owner`]).
    pub fn snap_create_at_owner(&self, name: &str) -> Result<bool> {
        self.run_at_owner(&ProxyOp::SnapCreate {
            name: name.to_string(),
        })
    }

    /// `resize` run by the client holding the lock explicitly ([`Image::run_at_owner`]).
    pub fn resize_at_owner(&self, size: u64, allow_shrink: bool) -> Result<bool> {
        self.run_at_owner(&ProxyOp::Resize { size, allow_shrink })
    }

    /// `flatten` run by the client holding the lock explicitly ([`Image::run_at_owner`]).
    pub fn flatten_at_owner(&self) -> Result<bool> {
        self.run_at_owner(&ProxyOp::Flatten)
    }

    /// Whether another client holds the exclusive lock now: `Some(explicit)` (taken with
    /// `rbd_lock_acquire`, so it refuses to hand it over) or None (unlocked, released, stale,
    /// or held by this handle).
    pub fn lock_held_elsewhere(&self) -> Result<Option<bool>> {
        match get_json::<LockRecord>(
            self.cluster.store.as_ref(),
            &lock_key(&self.pool, &self.id),
            Kind::Lock,
        ) {
            Ok((rec, _)) if rec.released() || rec.stale(self.cluster.now_ms()) => Ok(None),
            Ok((rec, _)) if rec.owner == self.lock.me => Ok(None),
            Ok((rec, _)) => Ok(Some(rec.explicit)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Release the exclusive lock (stores everything first).
    pub fn lock_release(&self) -> Result<()> {
        if !self.lock.is_owner() {
            return Err(err!(
                Invalid,
                "this handle does not hold the exclusive lock"
            ));
        }
        self.lock.release(self)
    }

    pub fn is_lock_owner(&self) -> bool {
        self.lock.is_owner()
    }

    /// Counts the times this handle took the exclusive lock (see [`Image::is_lock_owner`]):
    /// unchanged as long as it has held the lock without interruption.
    pub fn lock_generation(&self) -> u64 {
        self.lock.generation.load(Ordering::SeqCst)
    }

    /// This handle's name as an exclusive-lock owner (what `lock_owners` lists).
    pub fn lock_owner_name(&self) -> String {
        self.lock.owner_name().to_string()
    }

    /// Holders of the exclusive lock (zero or one).
    pub fn lock_owners(&self) -> Result<Vec<String>> {
        match get_json::<LockRecord>(
            self.cluster.store.as_ref(),
            &lock_key(&self.pool, &self.id),
            Kind::Lock,
        ) {
            Ok((rec, _)) if rec.released() => Ok(Vec::new()),
            Ok((rec, _)) => Ok(vec![rec.owner]),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Break `owner`'s exclusive lock and fence it: nothing it stores from now on is ever
    /// visible.
    pub fn lock_break(&self, owner: &str) -> Result<()> {
        let key = lock_key(&self.pool, &self.id);
        let (rec, _) = get_json::<LockRecord>(self.cluster.store.as_ref(), &key, Kind::Lock)
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    err!(NotFound, "the image is not locked")
                } else {
                    e
                }
            })?;
        if rec.released() {
            return Err(err!(NotFound, "the image is not locked"));
        }
        if rec.owner != owner {
            return Err(err!(
                NotFound,
                "the lock is held by {}, not {owner}",
                rec.owner
            ));
        }
        // Blocklist it first: from now on it can never take the lock again.
        self.cluster.modify_header(&self.pool, &self.id, |h| {
            if !h.blocklist.contains(&rec.owner) {
                h.blocklist.push(rec.owner.clone());
            }
            Ok(())
        })?;
        fence(&self.cluster, &self.pool, &self.id)?;
        self.cluster.store.delete(&key)?;
        Ok(())
    }

    // ---- legacy advisory locks ----

    /// `rbd lock add` / `rbd_lock_exclusive` (`shared` = None) and `rbd_lock_shared` (tag).
    pub fn advisory_lock(&self, cookie: &str, shared: Option<&str>) -> Result<()> {
        let me = self.cluster.client_id();
        let l = Locker {
            client: me.clone(),
            cookie: cookie.to_string(),
            exclusive: shared.is_none(),
            tag: shared.unwrap_or("").to_string(),
            address: format!("127.0.0.1:0/{}", std::process::id()),
        };
        self.cluster
            .modify_header(&self.pool, &self.id, |h| {
                if h.lockers
                    .iter()
                    .any(|x| x.client == me && x.cookie == cookie)
                {
                    return Err(err!(Exists, "this client already holds lock {cookie:?}"));
                }
                if let Some(x) = h.lockers.first() {
                    if x.exclusive || l.exclusive || x.tag != l.tag {
                        return Err(err!(Busy, "image is locked by {} ({})", x.client, x.cookie));
                    }
                }
                h.lockers.push(l.clone());
                Ok(())
            })
            .map(|_| ())
    }

    /// `rbd_unlock`: release this client's advisory lock `cookie`.
    pub fn advisory_unlock(&self, cookie: &str) -> Result<()> {
        let me = self.cluster.client_id();
        self.cluster
            .modify_header(&self.pool, &self.id, |h| {
                let n = h.lockers.len();
                h.lockers
                    .retain(|x| !(x.client == me && x.cookie == cookie));
                if h.lockers.len() == n {
                    return Err(err!(NotFound, "this client holds no lock {cookie:?}"));
                }
                Ok(())
            })
            .map(|_| ())
    }

    /// `rbd_break_lock`: drop another client's advisory lock.
    pub fn advisory_break(&self, client: &str, cookie: &str) -> Result<()> {
        self.cluster
            .modify_header(&self.pool, &self.id, |h| {
                let n = h.lockers.len();
                h.lockers
                    .retain(|x| !(x.client == client && x.cookie == cookie));
                if h.lockers.len() == n {
                    return Err(err!(NotFound, "no lock {cookie:?} held by {client}"));
                }
                Ok(())
            })
            .map(|_| ())
    }

    /// `rbd_list_lockers`.
    pub fn advisory_lockers(&self) -> Result<Vec<Locker>> {
        Ok(self.cluster.load_header(&self.pool, &self.id)?.0.lockers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owner's answer keeps its error kind and message across the lock object.
    #[test]
    fn proxy_reply_round_trip() {
        assert!(ProxyReply::of(7, &Ok(())).result().is_ok());
        for kind in KINDS {
            let r = Err(shale_error::Error::new(kind, "why"));
            let back = ProxyReply::of(7, &r).result().unwrap_err();
            assert_eq!(back.kind(), kind);
            assert!(back.message().contains("why"));
        }
        let json = serde_json::to_string(&ProxyRequest {
            id: 3,
            op: ProxyOp::Resize {
                size: 1 << 20,
                allow_shrink: true,
            },
        })
        .unwrap();
        let req: ProxyRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(
            req.op,
            ProxyOp::Resize {
                size: 1 << 20,
                allow_shrink: true
            }
        );
    }
}
