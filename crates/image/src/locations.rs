//! Locations (UKAI): named stores registered in the home store, and each image's data placed
//! at some of them (`sync` or `async`), through [`shale_locations::Replicated`].
//!
//! ```text
//! .locations/<name>                  registered location: name, store URL   (envelope kind 7)
//! <pool>/images/<id>/header          … "locations": [{name, mode}]  (empty: home, sync)
//! <pool>/images/<id>/loc/<name>      sync status of the image there           (envelope kind 6)
//! ```
//! The home store (the `store` setting) always keeps names, headers and locks; it is also the
//! data location `home` of every image until removed from it. Endpoints and credentials are
//! this host's settings (`[location.NAME]`), never stored.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shale_error::{err, ErrorKind, Result};
use shale_format::envelope::Kind;
use shale_locations::{Location, LocationReport, Mode, ObjectKind, Options, Replicated};
use shale_store::{ObjectStore, PutMode};

use crate::cluster::{get_json, put_json, Cluster};
use crate::image::{Image, ImageHeader};

/// The home store's name as a location.
pub const HOME: &str = "home";
const REGISTRY: &str = ".locations/";

/// A location an image uses, in its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLocation {
    pub name: String,
    pub mode: Mode,
}

/// A registered location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationEntry {
    pub name: String,
    pub url: String,
    pub created: u64,
}

/// Location names: 1 to 32 of `[A-Za-z0-9_-]`, starting with a letter or digit.
pub fn validate_location_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(err!(
            Invalid,
            "location name {name:?}: use 1-32 letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}

/// A location URL must name a store and carry no credentials (they are host settings).
fn validate_location_url(url: &str) -> Result<()> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(err!(
            Invalid,
            "location URL {url:?} has no scheme: use file:///dir or s3://bucket[/prefix]"
        ));
    };
    if rest.contains('@') || rest.contains('?') || rest.contains('#') {
        return Err(err!(
            Invalid,
            "location URL must not carry credentials or parameters; put the endpoint and keys \
             in this host's settings ([location.NAME] in the config file)"
        ));
    }
    match scheme {
        "file" if rest.starts_with('/') && rest.len() > 1 => Ok(()),
        "s3" if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        "memory" if !rest.is_empty() => Ok(()),
        _ => Err(err!(
            Invalid,
            "location URL {url:?}: use file:///absolute/dir or s3://bucket[/prefix]"
        )),
    }
}

/// The data locations of an image (an empty list in the header means `home`, sync).
pub(crate) fn effective(h: &ImageHeader) -> Vec<ImageLocation> {
    if h.locations.is_empty() {
        vec![ImageLocation {
            name: HOME.into(),
            mode: Mode::Sync,
        }]
    } else {
        h.locations.clone()
    }
}

fn home_only(locs: &[ImageLocation]) -> bool {
    locs.len() == 1 && locs[0].name == HOME && locs[0].mode == Mode::Sync
}

/// Probe result of `shale errors`.
#[derive(Debug, Clone, Serialize)]
pub struct LocationProbe {
    pub name: String,
    pub url: String,
    pub reachable: bool,
    pub error: Option<String>,
}

impl Cluster {
    fn registry_key(name: &str) -> String {
        format!("{REGISTRY}{name}")
    }

    /// Register a location: `name` → a store `url` (no credentials in it).
    pub fn location_create(&self, name: &str, url: &str) -> Result<()> {
        validate_location_name(name)?;
        if name == HOME {
            return Err(err!(
                Exists,
                "location {HOME:?} is the home store (the `store` setting); pick another name"
            ));
        }
        validate_location_url(url)?;
        // The URL must open with this host's settings (its endpoint and keys) — and be
        // reachable — before it is registered.
        let store = self.open_location_url(name, url)?;
        store.list(".shale-probe").map_err(|e| {
            e.context(format!(
                "location {name} ({url}) cannot be reached from this host; check [location.{name}] in the config"
            ))
        })?;
        let e = LocationEntry {
            name: name.into(),
            url: url.into(),
            created: self.now_secs(),
        };
        match put_json(
            self.store.as_ref(),
            &Self::registry_key(name),
            Kind::Location,
            &e,
            PutMode::Create,
        ) {
            Err(e) if e.kind() == ErrorKind::Exists => {
                Err(err!(Exists, "location {name:?} exists already"))
            }
            r => r.map(drop),
        }
    }

    /// Registered locations (without `home`).
    pub fn location_list(&self) -> Result<Vec<LocationEntry>> {
        let mut out = Vec::new();
        for o in self.store.list(REGISTRY)? {
            match get_json::<LocationEntry>(self.store.as_ref(), &o.key, Kind::Location) {
                Ok((e, _)) => out.push(e),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn location_entry(&self, name: &str) -> Result<LocationEntry> {
        validate_location_name(name)?;
        get_json::<LocationEntry>(
            self.store.as_ref(),
            &Self::registry_key(name),
            Kind::Location,
        )
        .map(|(e, _)| e)
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                err!(
                    NotFound,
                    "no location {name:?}; register it with `shale location create {name} URL`"
                )
            } else {
                e
            }
        })
    }

    /// Images (pool/name) whose data uses location `name`.
    pub fn location_users(&self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (pool, _) in self.pool_list()? {
            for img in self.list_images(&pool)? {
                match self.load_header(&pool, &img.id) {
                    Ok((h, _)) => {
                        if effective(&h).iter().any(|l| l.name == name) {
                            out.push(format!("{pool}/{}", img.name));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Unregister a location: refused while an image uses it.
    pub fn location_delete(&self, name: &str) -> Result<()> {
        if name == HOME {
            return Err(err!(
                Invalid,
                "{HOME:?} is the home store: it cannot be deleted"
            ));
        }
        self.location_entry(name)?;
        let users = self.location_users(name)?;
        if !users.is_empty() {
            return Err(err!(
                Busy,
                "location {name:?} is used by {} image(s) ({}); remove it from them first (`shale location rm IMAGE {name}`)",
                users.len(),
                users.join(", ")
            ));
        }
        self.store.delete(&Self::registry_key(name))
    }

    fn open_location_url(&self, name: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
        let host = self
            .settings()
            .location_hosts
            .get(name)
            .cloned()
            .unwrap_or_default()
            .with_env(name)?;
        if url.starts_with("s3://") {
            #[allow(unused_mut)]
            let mut opts: Vec<(&str, String)> = Vec::new();
            if let Some(e) = &host.endpoint {
                opts.push(("aws_endpoint", e.clone()));
                if e.starts_with("http://") && host.allow_http != Some(false) {
                    opts.push(("aws_allow_http", "true".into()));
                }
            }
            if host.allow_http == Some(true) {
                opts.push(("aws_allow_http", "true".into()));
            }
            if let Some(k) = &host.access_key {
                opts.push(("aws_access_key_id", k.clone()));
            }
            if let Some(k) = &host.secret_key {
                opts.push(("aws_secret_access_key", k.clone()));
            }
            if let Some(r) = &host.region {
                opts.push(("aws_region", r.clone()));
            }
            let o: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let s = shale_store::S3Store::open_with(url, &o)
                .map_err(|e| e.context(format!("location {name}")))?;
            return Ok(Arc::new(s));
        }
        shale_store::open_store(url).map_err(|e| e.context(format!("location {name}")))
    }

    /// The store of location `name` (`home`: the home store), opened once per cluster.
    pub fn open_location(&self, name: &str) -> Result<Arc<dyn ObjectStore>> {
        if name == HOME {
            return Ok(self.store.clone());
        }
        if let Some(s) = self.location_stores().get(name) {
            return Ok(s.clone());
        }
        let e = self.location_entry(name)?;
        let s = self.open_location_url(name, &e.url)?;
        self.location_stores().insert(name.into(), s.clone());
        Ok(s)
    }

    /// The statistics the lock owner of an image stored last (zeros if none yet).
    pub fn stored_stats(&self, pool: &str, id: &str) -> Result<crate::iostats::StoredStats> {
        let key = format!("{}stats", shale_format::keys::image_prefix(pool, id));
        match get_json::<crate::iostats::StoredStats>(self.store.as_ref(), &key, Kind::Stats) {
            Ok((s, _)) => Ok(s),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(e),
        }
    }

    /// Use `store` for location `name` in this cluster instead of opening its URL (tests and
    /// the simulator wrap stores with faults this way). The location must still be registered
    /// to be added to an image.
    pub fn set_location_store(&self, name: &str, store: Arc<dyn ObjectStore>) {
        self.location_stores().insert(name.into(), store);
    }

    /// Probe every registered location and the home store (`shale errors`).
    pub fn location_probe(&self) -> Result<Vec<LocationProbe>> {
        let mut out = Vec::new();
        let probe = |name: &str, url: &str, s: Result<Arc<dyn ObjectStore>>| {
            let r = s.and_then(|s| s.list(".shale-probe").map(drop));
            LocationProbe {
                name: name.into(),
                url: url.into(),
                reachable: r.is_ok(),
                error: r.err().map(|e| e.to_string()),
            }
        };
        out.push(probe(HOME, &self.store.url(), Ok(self.store.clone())));
        for e in self.location_list()? {
            out.push(probe(&e.name, &e.url, self.open_location(&e.name)));
        }
        Ok(out)
    }

    /// The store an image's data is read from and written to: the home store, or its
    /// locations through [`Replicated`] (`active`: run the resync copier and keep the status
    /// records — the writer).
    pub(crate) fn data_store(
        &self,
        pool: &str,
        id: &str,
        h: &ImageHeader,
        active: bool,
    ) -> Result<Arc<dyn ObjectStore>> {
        let locs = effective(h);
        let store: Arc<dyn ObjectStore> = if home_only(&locs) {
            self.store.clone()
        } else {
            Arc::new(self.replicated(pool, id, h, active)?)
        };
        // Every request for the image's data is counted (metrics: store requests, errors).
        Ok(Arc::new(shale_store::CountingStore::new(
            store,
            self.store_counters(pool, id),
        )))
    }

    /// The store request counters of an image in this process.
    pub(crate) fn store_counters(&self, pool: &str, id: &str) -> Arc<shale_store::StoreCounters> {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("{pool}/{id}"))
            .or_default()
            .clone()
    }

    pub(crate) fn replicated(
        &self,
        pool: &str,
        id: &str,
        h: &ImageHeader,
        active: bool,
    ) -> Result<Replicated> {
        let mut locs = Vec::new();
        for l in effective(h) {
            locs.push(Location {
                store: self.open_location(&l.name)?,
                name: l.name,
                mode: l.mode,
            });
        }
        let s = self.settings();
        Replicated::open(
            self.store.clone(),
            &shale_format::keys::image_prefix(pool, id),
            locs,
            Options {
                on_failure: s.on_location_failure,
                prefer: s.location_preference.clone(),
                resync_rate: s.resync_rate,
                epoch: h.epoch,
                fence: h.fence,
                active,
                ..Options::default()
            },
            self.clock.clone(),
        )
    }

    /// Whether an image's data lives anywhere but the home store alone.
    pub(crate) fn is_replicated(h: &ImageHeader) -> bool {
        !home_only(&effective(h))
    }

    /// The highest segment number stored at any of the image's locations, or covered by a
    /// checkpoint there. Every location must answer: a segment only an unreachable location
    /// holds would otherwise fall behind a new writer's fence and be dropped.
    pub(crate) fn data_max_segment(&self, pool: &str, id: &str) -> Result<u64> {
        let (h, _) = self.load_header(pool, id)?;
        let prefix = shale_format::keys::image_prefix(pool, id);
        let mut max = 0;
        for l in effective(&h) {
            let listed = self.open_location(&l.name).and_then(|store| {
                Ok((
                    store.list(&shale_format::keys::seg_dir(&prefix))?,
                    store.list(&shale_format::keys::ckpt_dir(&prefix))?,
                ))
            });
            let (mut segs, ckpts) = match listed {
                Ok(x) => x,
                Err(e) => {
                    // A location the last writer saw failing holds nothing the others lack
                    // (it missed writes; they did not): skip it. One it saw in sync may hold
                    // segments nobody else has: a new writer must not fence below them.
                    if shale_locations::recorded_failing(self.store.as_ref(), &prefix, &l.name)? {
                        tracing::warn!(
                            "{pool}/{}: location {} is unreachable ({e}); it was already behind, so taking the lock goes on without it",
                            h.name,
                            l.name
                        );
                        continue;
                    }
                    return Err(e.context(format!(
                        "location {} of {pool}/{} cannot be listed and was in sync, so a new writer cannot fence the image safely; bring it back, or drop it with `shale location rm {pool}/{} {} --force`",
                        l.name, h.name, h.name, l.name
                    )));
                }
            };
            segs.extend(ckpts);
            max = max.max(shale_format::keys::max_covered_segment(
                &prefix,
                segs.iter().map(|o| o.key.as_str()),
            ));
        }
        Ok(max)
    }
}

/// Result of a location change request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) enum LocationOp {
    Add { name: String, mode: Mode },
    Remove { name: String, force: bool },
}

impl Image {
    /// Delete one of the image's data objects at every location.
    pub(crate) fn data_delete(&self, key: &str) -> Result<()> {
        let h = self.header_now();
        if !Cluster::is_replicated(&h) {
            return self.cluster.store.delete(key);
        }
        let mut last = None;
        for l in effective(&h) {
            if let Err(e) = self
                .cluster
                .open_location(&l.name)
                .and_then(|s| s.delete(key))
            {
                tracing::warn!("location {}: cannot delete {key}: {e}", l.name);
                last = Some(e);
            }
        }
        last.map_or(Ok(()), Err)
    }

    /// Object-store requests for this image's data in this process, and how many failed.
    pub fn store_requests(&self) -> (u64, u64) {
        self.cluster.store_counters(&self.pool, &self.id).get()
    }

    /// The image's data locations, in order.
    pub fn locations(&self) -> Vec<ImageLocation> {
        effective(&self.header_now())
    }

    /// Sync status per location, from a fresh look at every location (`shale location ls`).
    pub fn location_report(&self) -> Result<Vec<LocationReport>> {
        let h = self.reload_header()?;
        let r = self.cluster.replicated(&self.pool, &self.id, &h, false)?;
        Ok(r.report())
    }

    /// Add location `name` to the image (`mode` sync or async): it starts out of sync and
    /// fills in the background at the image's writer, or with [`Image::sync`]. Run by the
    /// exclusive lock's owner (forwarded to it when another client holds it).
    pub fn location_add(&self, name: &str, mode: Mode) -> Result<()> {
        let op = LocationOp::Add {
            name: name.into(),
            mode,
        };
        self.location_change(op)
    }

    /// Remove location `name` from the image, refused when an object (segment, checkpoint,
    /// snapshot) would be left without an in-sync copy. `force` drops an unreachable location
    /// when every object known has another in-sync copy. The image's objects there are
    /// deleted (when reachable).
    pub fn location_rm(&self, name: &str, force: bool) -> Result<()> {
        self.location_change(LocationOp::Remove {
            name: name.into(),
            force,
        })
    }

    pub(crate) fn location_change(&self, op: LocationOp) -> Result<()> {
        if self.is_read_only() {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        // Validate before asking anyone.
        match &op {
            LocationOp::Add { name, .. } => {
                if name != HOME {
                    self.cluster.location_entry(name)?;
                }
                if self.locations().iter().any(|l| &l.name == name) {
                    return Err(err!(Exists, "the image already uses location {name:?}"));
                }
            }
            LocationOp::Remove { name, .. } => {
                validate_location_name(name)?;
                let locs = self.locations();
                if !locs.iter().any(|l| &l.name == name) {
                    return Err(err!(NotFound, "the image does not use location {name:?}"));
                }
                if locs.len() == 1 {
                    return Err(err!(
                        Busy,
                        "{name:?} is the image's only location; add another and sync it first"
                    ));
                }
            }
        }
        if self.run_at_owner(&crate::lock::ProxyOp::Location(op.clone()))? {
            return Ok(());
        }
        self.location_change_here(&op)
    }

    /// Run a location change as the lock owner: take the lock, change the header, then give
    /// the lock back (an owner takes it straight back): every writer reopens its data store
    /// from the new header when it takes the lock.
    pub(crate) fn location_change_here(&self, op: &LocationOp) -> Result<()> {
        let was_owner = self.lock.is_owner();
        if let LocationOp::Remove { name, force: true } = op {
            // The operator says a location that cannot be reached is gone: record it as
            // failing, so that taking the lock does not wait for it (see data_max_segment).
            self.mark_unreachable(name)?;
        }
        self.lock.ensure(self)?;
        // Everything this handle wrote is stored (so the check below sees it).
        let res = self
            .vol()
            .flush_to_store()
            .and_then(|()| self.apply_location_op(op));
        // Write through the new set of locations from now on (same epoch: the lock was held
        // throughout); a handle that only took the lock for this lets it go.
        let reopened = if res.is_ok() {
            crate::lock::reopen_owned(self)
        } else {
            Ok(())
        };
        if !was_owner {
            self.lock.release(self)?;
        }
        res?;
        reopened
    }

    /// Record location `name` of this image as failing when it cannot be reached now.
    fn mark_unreachable(&self, name: &str) -> Result<()> {
        let c = &self.cluster;
        let reachable = c
            .open_location(name)
            .and_then(|s| s.list(".shale-probe").map(drop));
        let Err(e) = reachable else { return Ok(()) };
        let prefix = shale_format::keys::image_prefix(&self.pool, &self.id);
        shale_locations::mark_failing(c.store.as_ref(), &prefix, name, &e.to_string())
    }

    fn apply_location_op(&self, op: &LocationOp) -> Result<()> {
        let c = &self.cluster;
        match op {
            LocationOp::Add { name, mode } => {
                if name != HOME {
                    c.open_location(name)?;
                }
                let (h, _) = c.modify_header(&self.pool, &self.id, |h| {
                    let mut locs = effective(h);
                    if locs.iter().any(|l| &l.name == name) {
                        return Err(err!(Exists, "the image already uses location {name:?}"));
                    }
                    locs.push(ImageLocation {
                        name: name.clone(),
                        mode: *mode,
                    });
                    h.locations = locs;
                    Ok(())
                })?;
                // A record from an earlier membership would claim copies that may be gone.
                let prefix = shale_format::keys::image_prefix(&self.pool, &self.id);
                shale_locations::remove_record(c.store.as_ref(), &prefix, name)?;
                self.set_header(h);
                tracing::info!(
                    "{}/{}: location {name} added ({mode:?})",
                    self.pool,
                    self.id
                );
                Ok(())
            }
            LocationOp::Remove { name, force } => {
                let (h, _) = c.load_header(&self.pool, &self.id)?;
                let locs = effective(&h);
                let Some(idx) = locs.iter().position(|l| &l.name == name) else {
                    return Err(err!(NotFound, "the image does not use location {name:?}"));
                };
                if locs.len() == 1 {
                    return Err(err!(Busy, "{name:?} is the image's only location"));
                }
                let r = c.replicated(&self.pool, &self.id, &h, false)?;
                let probe = c
                    .open_location(name)
                    .and_then(|s| s.list(".shale-probe").map(drop));
                if probe.is_err() && !force {
                    return Err(err!(
                        Unavailable,
                        "location {name:?} cannot be reached ({}); use --force to drop it when every object has another in-sync copy",
                        probe.err().map(|e| e.to_string()).unwrap_or_default()
                    ));
                }
                // The others catch up first (what this handle just stored, an async
                // location's lag): then nothing is left only here.
                for (i, l) in locs.iter().enumerate() {
                    if i != idx {
                        r.sync_now(Some(&l.name), &|_, _| true, &mut |_, _| {})
                            .map_err(|e| {
                                e.context(format!(
                                    "location {} must hold everything before {name} can go",
                                    l.name
                                ))
                            })?;
                    }
                }
                let sole = r.sole_copies(name)?;
                if !sole.is_empty() {
                    return Err(err!(
                        Busy,
                        "{} object(s) of the image have no in-sync copy but at {name:?} (first: {}); run `shale sync {}/{}` first",
                        sole.len(),
                        sole[0],
                        self.pool,
                        self.name()
                    ));
                }
                drop(r);
                let (h, _) = c.modify_header(&self.pool, &self.id, |h| {
                    let mut locs = effective(h);
                    locs.retain(|l| &l.name != name);
                    if locs.is_empty() {
                        return Err(err!(Busy, "{name:?} is the image's only location"));
                    }
                    h.locations = locs;
                    Ok(())
                })?;
                self.set_header(h);
                let prefix = shale_format::keys::image_prefix(&self.pool, &self.id);
                let _ = shale_locations::remove_record(c.store.as_ref(), &prefix, name);
                // Its copies go (the home store keeps the metadata).
                if probe.is_ok() {
                    if let Ok(store) = c.open_location(name) {
                        for d in shale_locations::DATA_DIRS {
                            if let Ok(objs) = store.list(&format!("{prefix}{d}")) {
                                for o in objs {
                                    if let Err(e) = store.delete(&o.key) {
                                        tracing::warn!(
                                            "location {name}: leaving {} behind: {e}",
                                            o.key
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                tracing::info!("{}/{}: location {name} removed", self.pool, self.id);
                Ok(())
            }
        }
    }

    /// Copy what the image's locations (or `location`) miss, in sequence order; with a byte
    /// range, only the segments holding that range's data (and the image's checkpoints).
    /// `progress(done, total)` in bytes. Returns the bytes copied.
    pub fn sync(
        &self,
        location: Option<&str>,
        range: Option<(u64, u64)>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64> {
        let h = self.reload_header()?;
        if let Some(l) = location {
            if !effective(&h).iter().any(|x| x.name == l) {
                return Err(err!(NotFound, "the image does not use location {l:?}"));
            }
        }
        let segs: Option<BTreeSet<u64>> = match range {
            None => None,
            Some((off, len)) => {
                if off.checked_add(len).is_none_or(|e| e > h.size) {
                    return Err(err!(
                        Invalid,
                        "range {off}+{len} is past the end of the image ({} bytes)",
                        h.size
                    ));
                }
                let first = off / 512;
                let end = (off + len).div_ceil(512);
                // What this handle wrote is stored first (so its segments exist).
                if self.lock.is_owner() {
                    self.vol().flush_to_store()?;
                }
                Some(self.vol().segments_of(first, end - first))
            }
        };
        let prefix = shale_format::keys::image_prefix(&self.pool, &self.id);
        let r = self.cluster.replicated(&self.pool, &self.id, &h, false)?;
        let wanted = |kind: ObjectKind, key: &str| match (&segs, kind) {
            (None, _) => true,
            (Some(s), ObjectKind::Segment) => {
                shale_format::keys::parse_seg(&prefix, key).is_some_and(|n| s.contains(&n))
            }
            (Some(_), _) => false,
        };
        r.sync_now(location, &wanted, progress)
    }
}

impl Cluster {
    fn location_stores(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<dyn ObjectStore>>> {
        self.location_stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
