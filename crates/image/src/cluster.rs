//! `Cluster`: one store, its pools and image names.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shale_error::{err, Error, ErrorKind, Result};
use shale_format::envelope::{self, Kind};
use shale_store::{ObjectStore, PutMode};

use crate::image::{Image, ImageHeader};
use crate::names::{validate_image_name, validate_pool_name};
use crate::settings::Settings;

/// Largest image: the extent map addresses 2^40 sectors.
pub const MAX_IMAGE_SIZE: u64 = 1 << 49;

/// A connection to one store.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub(crate) store: Arc<dyn ObjectStore>,
    settings: Settings,
    /// The read cache, opened on first use by an image on a remote store; shared by every
    /// image opened through this cluster (and its clones).
    cache: Arc<std::sync::OnceLock<Option<Arc<shale_cache::FileCache>>>>,
    /// This client's name in locks: `client.<random>`.
    client: Arc<String>,
    /// Time and randomness (injected; the simulator drives them).
    pub(crate) clock: Arc<dyn shale_clock::Clock>,
    pub(crate) entropy: Arc<dyn shale_clock::Entropy>,
    /// Location stores opened so far, by name (`locations.rs`).
    pub(crate) location_stores:
        Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<dyn ObjectStore>>>>,
    /// Store request counters per image (`pool/id`).
    pub(crate) counters:
        Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<shale_store::StoreCounters>>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PoolEntry {
    id: i64,
    created: u64,
}

/// `ls` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageEntry {
    pub name: String,
    pub id: String,
}

/// Usage of a pool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolStats {
    pub images: u64,
    pub objects: u64,
    pub bytes: u64,
}

pub(crate) fn put_json<T: Serialize>(
    store: &dyn ObjectStore,
    key: &str,
    kind: Kind,
    v: &T,
    mode: PutMode,
) -> Result<shale_store::Version> {
    let body = serde_json::to_vec(v)
        .map_err(|e| Error::with_source(ErrorKind::Invalid, "encoding metadata", e))?;
    store.put(key, Bytes::from(envelope::encode(kind, &body)), mode)
}

pub(crate) fn get_json<T: for<'de> Deserialize<'de>>(
    store: &dyn ObjectStore,
    key: &str,
    kind: Kind,
) -> Result<(T, shale_store::Version)> {
    let (b, ver) = store.get(key)?;
    let body = envelope::decode(kind, &b).map_err(|e| e.context(key))?;
    let v = serde_json::from_slice(body).map_err(|e| {
        Error::with_source(ErrorKind::Corruption, format!("{key}: bad metadata"), e)
    })?;
    Ok((v, ver))
}

fn random_id(e: &dyn shale_clock::Entropy) -> String {
    format!("{:012x}", e.next_u64() & 0xffff_ffff_ffff)
}

impl Cluster {
    /// Open the store named by the settings, initialising it on first use (with pool `rbd`).
    pub fn connect(settings: Settings) -> Result<Cluster> {
        let url = settings.store_url();
        let store = shale_store::open_store(&url).map_err(|e| e.context(format!("store {url}")))?;
        Self::with_store(store, settings)
    }

    /// Use an already opened store.
    pub fn with_store(store: Arc<dyn ObjectStore>, settings: Settings) -> Result<Cluster> {
        Self::with_env(store, settings, shale_clock::system(), shale_clock::os())
    }

    /// Use an already opened store, with the given time and randomness (tests, simulator).
    pub fn with_env(
        store: Arc<dyn ObjectStore>,
        settings: Settings,
        clock: Arc<dyn shale_clock::Clock>,
        entropy: Arc<dyn shale_clock::Entropy>,
    ) -> Result<Cluster> {
        let c = Cluster {
            store,
            settings,
            cache: Arc::default(),
            client: Arc::new(format!("client.{}", random_id(entropy.as_ref()))),
            clock,
            entropy,
            location_stores: Arc::default(),
            counters: Arc::default(),
        };
        c.init()?;
        Ok(c)
    }

    fn init(&self) -> Result<()> {
        match self.store.get(".shale") {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.context(format!("cannot reach store {}", self.store.url()))),
        }
        match self.pool_create(&self.settings.default_pool.clone()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Exists => {}
            Err(e) => return Err(e),
        }
        let marker = serde_json::json!({ "created": self.now_secs() });
        match put_json(
            self.store.as_ref(),
            ".shale",
            Kind::Store,
            &marker,
            PutMode::Create,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Exists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Wall-clock seconds (from the injected clock).
    pub(crate) fn now_secs(&self) -> u64 {
        self.clock.unix_ms() / 1000
    }

    /// Wall-clock milliseconds (from the injected clock).
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.unix_ms()
    }

    /// This client's identity in locks.
    pub fn client_id(&self) -> String {
        (*self.client).clone()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The read cache, if configured and usable (opened once; a failure to open disables it
    /// with a warning rather than failing image opens).
    pub(crate) fn read_cache(&self) -> Option<Arc<shale_cache::FileCache>> {
        self.cache
            .get_or_init(|| {
                let dir = self.settings.cache_dir.as_ref()?;
                if self.settings.read_cache_size == 0 {
                    return None;
                }
                match shale_cache::FileCache::open(&dir.join("read"), self.settings.read_cache_size)
                {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        tracing::warn!("read cache disabled: {e}");
                        None
                    }
                }
            })
            .clone()
    }

    // ---- pools ----

    pub fn pool_create(&self, name: &str) -> Result<()> {
        validate_pool_name(name)?;
        let next = self
            .pool_list()?
            .iter()
            .map(|(_, id)| *id)
            .max()
            .unwrap_or(0)
            + 1;
        let e = PoolEntry {
            id: next,
            created: self.now_secs(),
        };
        put_json(
            self.store.as_ref(),
            &format!(".pools/{name}"),
            Kind::Pool,
            &e,
            PutMode::Create,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::Exists => err!(Exists, "pool {name} already exists"),
            _ => e,
        })?;
        Ok(())
    }

    /// Pools and their ids, sorted by name.
    pub fn pool_list(&self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for o in self.store.list(".pools/")? {
            let Some(name) = o.key.strip_prefix(".pools/") else {
                continue;
            };
            match get_json::<PoolEntry>(self.store.as_ref(), &o.key, Kind::Pool) {
                Ok((p, _)) => out.push((name.to_string(), p.id)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The pool's id; `NotFound` with advice when it does not exist.
    pub fn pool_id(&self, name: &str) -> Result<i64> {
        validate_pool_name(name)?;
        match get_json::<PoolEntry>(self.store.as_ref(), &format!(".pools/{name}"), Kind::Pool) {
            Ok((p, _)) => Ok(p.id),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(err!(
                NotFound,
                "pool {name} does not exist (create it with `shale pool create {name}`)"
            )),
            Err(e) => Err(e),
        }
    }

    /// Remove a pool. Refused while it holds images unless `force`, which removes them too.
    pub fn pool_remove(&self, name: &str, force: bool) -> Result<()> {
        self.pool_id(name)?;
        let images = self.list_images(name)?;
        if !images.is_empty() && !force {
            return Err(err!(
                Busy,
                "pool {name} still holds {} image(s); remove them first or pass --force",
                images.len()
            ));
        }
        for o in self.store.list(&format!("{name}/"))? {
            self.store.delete(&o.key)?;
        }
        self.store.delete(&format!(".pools/{name}"))
    }

    pub fn pool_stats(&self, name: &str) -> Result<PoolStats> {
        self.pool_id(name)?;
        let mut s = PoolStats {
            images: self.list_images(name)?.len() as u64,
            ..Default::default()
        };
        for o in self.store.list(&format!("{name}/"))? {
            s.objects += 1;
            s.bytes += o.size;
        }
        Ok(s)
    }

    // ---- images ----

    fn name_key(pool: &str, name: &str) -> String {
        shale_format::keys::name(pool, name)
    }

    pub(crate) fn header_key(pool: &str, id: &str) -> String {
        shale_format::keys::header(pool, id)
    }

    /// The id of an image, `NotFound` if there is none of that name.
    pub fn image_id(&self, pool: &str, name: &str) -> Result<String> {
        validate_image_name(name)?;
        self.pool_id(pool)?;
        match get_json::<BTreeMap<String, String>>(
            self.store.as_ref(),
            &Self::name_key(pool, name),
            Kind::Name,
        ) {
            Ok((m, _)) => m
                .get("id")
                .cloned()
                .ok_or_else(|| err!(Corruption, "name entry {pool}/{name} has no id")),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(err!(NotFound, "image {pool}/{name} does not exist"))
            }
            Err(e) => Err(e),
        }
    }

    /// Create an image of `size` bytes (any size, no alignment required).
    pub fn create_image(&self, pool: &str, name: &str, size: u64, order: u8) -> Result<String> {
        self.create_image_with(pool, name, size, order, None)
    }

    /// Create an image with a feature mask (None: librbd's defaults). The mask must respect
    /// the feature dependencies (object-map needs exclusive-lock, fast-diff needs object-map)
    /// and hold only features Shale supports (no journaling, striping or data-pool).
    pub fn create_image_with(
        &self,
        pool: &str,
        name: &str,
        size: u64,
        order: u8,
        features: Option<u64>,
    ) -> Result<String> {
        if let Some(f) = features {
            if f & !(1 | 4 | 8 | 16 | 32) != 0 {
                return Err(err!(Invalid, "features {f:#x}: only layering, exclusive-lock, object-map, fast-diff and deep-flatten are supported"));
            }
            if f & 8 != 0 && f & 4 == 0 {
                return Err(err!(Invalid, "object-map requires exclusive-lock"));
            }
            if f & 16 != 0 && f & 8 == 0 {
                return Err(err!(Invalid, "fast-diff requires object-map"));
            }
        }
        validate_image_name(name)?;
        self.pool_id(pool)?;
        if size > MAX_IMAGE_SIZE {
            return Err(err!(
                Invalid,
                "size {size} is larger than the maximum image size (512 TiB)"
            ));
        }
        if !(12..=26).contains(&order) {
            return Err(err!(Invalid, "order {order} is out of range 12..=26"));
        }
        let id = random_id(self.entropy.as_ref());
        let mut h = ImageHeader::new(&id, name, size, order, self.now_secs());
        if let Some(f) = features {
            h.features = f;
        }
        // Header first (unreachable until the name points at it), then the name, atomically.
        put_json(
            self.store.as_ref(),
            &Self::header_key(pool, &id),
            Kind::ImageHeader,
            &h,
            PutMode::Create,
        )?;
        let entry: BTreeMap<&str, &str> = [("id", id.as_str())].into();
        match put_json(
            self.store.as_ref(),
            &Self::name_key(pool, name),
            Kind::Name,
            &entry,
            PutMode::Create,
        ) {
            Ok(_) => Ok(id),
            Err(e) => {
                let _ = self.store.delete(&Self::header_key(pool, &id));
                if e.kind() == ErrorKind::Exists {
                    Err(err!(Exists, "image {pool}/{name} already exists"))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Images in a pool, sorted by name.
    pub fn list_images(&self, pool: &str) -> Result<Vec<ImageEntry>> {
        self.pool_id(pool)?;
        let dir = shale_format::keys::names_dir(pool);
        let mut out = Vec::new();
        for o in self.store.list(&dir)? {
            let Some(name) = o.key.strip_prefix(&dir) else {
                continue;
            };
            if let Ok((m, _)) =
                get_json::<BTreeMap<String, String>>(self.store.as_ref(), &o.key, Kind::Name)
            {
                if let Some(id) = m.get("id") {
                    out.push(ImageEntry {
                        name: name.to_string(),
                        id: id.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Remove an image and every object it owns. `progress(done, total)` is called as objects go.
    pub fn remove_image(
        &self,
        pool: &str,
        name: &str,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<()> {
        let id = self.image_id(pool, name)?;
        let hkey = Self::header_key(pool, &id);
        // Mark it first: an interrupted removal leaves an image that can only be removed.
        match get_json::<ImageHeader>(self.store.as_ref(), &hkey, Kind::ImageHeader) {
            Ok((h, _)) if !h.snapshots.is_empty() => {
                return Err(err!(
                    NotEmpty,
                    "image {pool}/{name} has {} snapshot(s); remove them first (`shale snap purge {pool}/{name}`)",
                    h.snapshots.len()
                ));
            }
            Ok((mut h, ver)) => {
                if let Some(p) = &h.parent {
                    self.unlink_child(p, pool, &id)?;
                }
                if !h.removing {
                    h.removing = true;
                    put_json(
                        self.store.as_ref(),
                        &hkey,
                        Kind::ImageHeader,
                        &h,
                        PutMode::Update(ver),
                    )
                    .map_err(|e| e.context(format!("marking {pool}/{name} for removal")))?;
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let data = shale_format::keys::image_prefix(pool, &id);
        // Data at every location of the image first, then what the home store keeps.
        let mut stores: Vec<Arc<dyn ObjectStore>> = Vec::new();
        if let Ok((h, _)) = self.load_header(pool, &id) {
            for l in crate::locations::effective(&h) {
                let s = self.open_location(&l.name).map_err(|e| {
                    e.context(format!("removing {pool}/{name}: its location {}", l.name))
                })?;
                if !stores.iter().any(|x| Arc::ptr_eq(x, &s)) {
                    stores.push(s);
                }
            }
        }
        let home = self.store.clone();
        if !stores.iter().any(|x| Arc::ptr_eq(x, &home)) {
            stores.push(home);
        }
        let mut objs: Vec<(Arc<dyn ObjectStore>, String)> = Vec::new();
        for s in &stores {
            for o in s.list(&data)? {
                if o.key != hkey {
                    objs.push((s.clone(), o.key));
                }
            }
        }
        let total = objs.len() as u64 + 2;
        for (i, (s, key)) in objs.iter().enumerate() {
            s.delete(key)?;
            progress(i as u64 + 1, total);
        }
        self.store.delete(&hkey)?;
        if let Some((path, _)) = self
            .settings
            .journal_file(&crate::image::journal_key(pool, &id))
        {
            let _ = std::fs::remove_file(path);
        }
        progress(total - 1, total);
        self.store.delete(&Self::name_key(pool, name))?;
        progress(total, total);
        Ok(())
    }

    /// Rename an image within its pool.
    pub fn rename_image(&self, pool: &str, src: &str, dst: &str) -> Result<()> {
        validate_image_name(dst)?;
        let id = self.image_id(pool, src)?;
        let entry: BTreeMap<&str, &str> = [("id", id.as_str())].into();
        put_json(
            self.store.as_ref(),
            &Self::name_key(pool, dst),
            Kind::Name,
            &entry,
            PutMode::Create,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::Exists => err!(Exists, "image {pool}/{dst} already exists"),
            _ => e,
        })?;
        let hkey = Self::header_key(pool, &id);
        loop {
            let (mut h, ver) =
                get_json::<ImageHeader>(self.store.as_ref(), &hkey, Kind::ImageHeader)?;
            h.name = dst.to_string();
            match put_json(
                self.store.as_ref(),
                &hkey,
                Kind::ImageHeader,
                &h,
                PutMode::Update(ver),
            ) {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Busy => continue,
                Err(e) => return Err(e),
            }
        }
        self.store.delete(&Self::name_key(pool, src))
    }

    /// An image's header and its version.
    pub(crate) fn load_header(
        &self,
        pool: &str,
        id: &str,
    ) -> Result<(ImageHeader, shale_store::Version)> {
        get_json::<ImageHeader>(
            self.store.as_ref(),
            &Self::header_key(pool, id),
            Kind::ImageHeader,
        )
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                err!(
                    NotFound,
                    "image {pool}/{id} has no header (removed, or an interrupted create)"
                )
            } else {
                e
            }
        })
    }

    /// Size and snapshots (oldest first) of an image, from its header alone (no volume is
    /// opened): what a file view of a pool lists. NotFound while the image is being removed.
    pub fn image_brief(&self, pool: &str, id: &str) -> Result<(u64, Vec<crate::SnapInfo>)> {
        let (h, _) = self.load_header(pool, id)?;
        if h.removing {
            return Err(err!(NotFound, "image {pool}/{} is being removed", h.name));
        }
        Ok((h.size, h.snapshots))
    }

    /// Change an image's header with a conditional write, retrying on concurrent changes.
    pub(crate) fn modify_header(
        &self,
        pool: &str,
        id: &str,
        f: impl Fn(&mut ImageHeader) -> Result<()>,
    ) -> Result<(ImageHeader, shale_store::Version)> {
        let key = Self::header_key(pool, id);
        loop {
            let (mut h, ver) = self.load_header(pool, id)?;
            f(&mut h)?;
            match put_json(
                self.store.as_ref(),
                &key,
                Kind::ImageHeader,
                &h,
                PutMode::Update(ver),
            ) {
                Ok(v) => return Ok((h, v)),
                Err(e) if e.kind() == ErrorKind::Busy => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Where an image's open segments are staged when they are written in place: next to the
    /// segments, on a local-directory store (None elsewhere).
    pub(crate) fn staging(&self, pool: &str, id: &str) -> Option<Arc<dyn shale_journal::Staging>> {
        let prefix = shale_format::keys::image_prefix(pool, id);
        shale_journal::DirStaging::new(self.store.clone(), &prefix).map(|d| {
            Arc::new(d.with_free_files(self.settings.free_segments))
                as Arc<dyn shale_journal::Staging>
        })
    }

    /// The engine configuration of an image with this header: an image at several locations
    /// never writes segments in place (every segment goes through the locations' puts).
    pub(crate) fn engine_config_for(
        &self,
        pool: &str,
        id: &str,
        h: &ImageHeader,
    ) -> shale_engine::EngineConfig {
        self.engine_config_with(pool, id, !Self::is_replicated(h))
    }

    fn engine_config_with(
        &self,
        pool: &str,
        id: &str,
        in_place: bool,
    ) -> shale_engine::EngineConfig {
        let prefix = shale_format::keys::image_prefix(pool, id);
        let staging = self
            .staging(pool, id)
            .filter(|_| in_place)
            .map(shale_engine::StagingRef);
        let local = staging.is_some();
        let mut cfg = self
            .settings
            .engine_config(staging, &crate::image::journal_key(pool, id));
        cfg.clock = self.clock.clone();
        cfg.entropy = self.entropy.clone();
        if !local && !self.settings.store_url().starts_with("memory://") {
            if let Some(cache) = self.read_cache() {
                let owner = (crc32c::crc32c(self.settings.store_url().as_bytes()) as u64) << 32
                    | crc32c::crc32c(prefix.as_bytes()) as u64;
                cfg.cache = Some((cache as Arc<dyn shale_cache::BlockCache>, owner));
            }
        }
        cfg
    }

    /// A read-only view of a clone's parent at its snapshot, with the parent's own parents.
    pub(crate) fn parent_volume(
        &self,
        p: &crate::image::ParentRef,
    ) -> Result<Arc<shale_engine::Volume>> {
        let (h, _) = self
            .load_header(&p.pool, &p.image_id)
            .map_err(|e| e.context("opening the parent of a clone"))?;
        let s = h
            .snapshots
            .iter()
            .find(|s| s.id == p.snap_id)
            .ok_or_else(|| {
                err!(
                    NotFound,
                    "parent snapshot {}@{} of a clone is missing",
                    p.image_name,
                    p.snap_name
                )
            })?;
        let prefix = shale_format::keys::image_prefix(&p.pool, &p.image_id);
        let vol = shale_engine::Volume::open_snapshot(
            self.data_store(&p.pool, &p.image_id, &h, false)?,
            &prefix,
            &crate::image::SnapInfo::key(s.id),
            s.size,
            self.engine_config_for(&p.pool, &p.image_id, &h),
        )?;
        if let Some(pp) = &h.parent {
            vol.set_parent(Some(shale_engine::Parent {
                vol: self.parent_volume(pp)?,
                overlap: pp.overlap.min(s.size),
            }));
        }
        Ok(Arc::new(vol))
    }

    /// Open an image by name.
    pub fn open_image(&self, pool: &str, name: &str, read_only: bool) -> Result<Image> {
        let id = self.image_id(pool, name)?;
        Image::open(self, pool, &id, read_only)
    }

    /// Open an image by id.
    pub fn open_image_by_id(&self, pool: &str, id: &str, read_only: bool) -> Result<Image> {
        self.pool_id(pool)?;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err!(Invalid, "image id {id:?} is not valid"));
        }
        Image::open(self, pool, id, read_only)
    }
}
