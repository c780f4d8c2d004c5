//! An open image: the engine volume plus the image header (size, features, metadata).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use shale_engine::{Stats, Volume};
use shale_error::{err, ErrorKind, Result};
use shale_format::envelope::Kind;
use shale_store::{ObjectStore, PutMode};

use crate::cluster::{get_json, now_secs, put_json, Cluster};

/// RBD feature bits Shale reports (layering | exclusive-lock | object-map | fast-diff |
/// deep-flatten), as librbd's defaults.
pub const DEFAULT_FEATURES: u64 = 1 | 4 | 8 | 16 | 32;

/// The persistent header of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ImageHeader {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub order: u8,
    pub features: u64,
    pub created: u64,
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub removing: bool,
}

impl ImageHeader {
    pub(crate) fn new(id: &str, name: &str, size: u64, order: u8) -> Self {
        ImageHeader {
            id: id.into(),
            name: name.into(),
            size,
            order,
            features: DEFAULT_FEATURES,
            created: now_secs(),
            epoch: 1,
            metadata: BTreeMap::new(),
            removing: false,
        }
    }
}

/// The name of an image's journal in the cache directory.
pub(crate) fn journal_key(pool: &str, id: &str) -> String {
    format!("{pool}-{id}-")
}

/// What `info` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub id: String,
    pub pool: String,
    pub size: u64,
    pub order: u8,
    pub object_size: u64,
    pub num_objs: u64,
    pub block_name_prefix: String,
    pub features: u64,
    pub created: u64,
    pub read_only: bool,
}

/// An open image. Cheap to share across threads (`&self` everywhere).
#[derive(Debug)]
pub struct Image {
    store: Arc<dyn ObjectStore>,
    pool: String,
    id: String,
    header: Mutex<(ImageHeader, shale_store::Version)>,
    vol: Volume,
    read_only: bool,
}

impl Image {
    pub(crate) fn open(c: &Cluster, pool: &str, id: &str, read_only: bool) -> Result<Image> {
        let hkey = Cluster::header_key(pool, id);
        let (h, ver) = get_json::<ImageHeader>(c.store.as_ref(), &hkey, Kind::ImageHeader)
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    err!(
                        NotFound,
                        "image {pool}/{id} has no header (removed, or an interrupted create)"
                    )
                } else {
                    e
                }
            })?;
        if h.removing {
            return Err(err!(
                NotFound,
                "image {pool}/{} is being removed; run `shale rm {pool}/{}` again to finish",
                h.name,
                h.name
            ));
        }
        let prefix = format!("{pool}/images/{id}/");
        let local = c.store.local_path(&format!("{prefix}header")).is_some();
        let mut cfg = c.settings().engine_config(local, &journal_key(pool, id));
        if !local && !c.settings().store_url().starts_with("memory://") {
            if let Some(cache) = c.read_cache() {
                let owner = (crc32c::crc32c(c.settings().store_url().as_bytes()) as u64) << 32
                    | crc32c::crc32c(prefix.as_bytes()) as u64;
                cfg.cache = Some((cache as Arc<dyn shale_cache::BlockCache>, owner));
            }
        }
        let vol = Volume::open(c.store.clone(), &prefix, h.size, h.epoch, cfg, read_only)?;
        Ok(Image {
            store: c.store.clone(),
            pool: pool.into(),
            id: id.into(),
            header: Mutex::new((h, ver)),
            vol,
            read_only,
        })
    }

    fn hdr(&self) -> std::sync::MutexGuard<'_, (ImageHeader, shale_store::Version)> {
        self.header.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the header with a conditional write, retrying on a concurrent change.
    fn update_header(&self, f: impl Fn(&mut ImageHeader) -> Result<()>) -> Result<()> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        let key = Cluster::header_key(&self.pool, &self.id);
        let mut g = self.hdr();
        loop {
            let mut h = g.0.clone();
            f(&mut h)?;
            match put_json(
                self.store.as_ref(),
                &key,
                Kind::ImageHeader,
                &h,
                PutMode::Update(g.1.clone()),
            ) {
                Ok(ver) => {
                    *g = (h, ver);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Busy => {
                    *g = get_json::<ImageHeader>(self.store.as_ref(), &key, Kind::ImageHeader)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn pool(&self) -> &str {
        &self.pool
    }
    pub fn name(&self) -> String {
        self.hdr().0.name.clone()
    }
    pub fn size(&self) -> u64 {
        self.vol.size()
    }
    pub fn features(&self) -> u64 {
        self.hdr().0.features
    }
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn info(&self) -> ImageInfo {
        let h = self.hdr().0.clone();
        let object_size = 1u64 << h.order;
        let size = self.vol.size();
        ImageInfo {
            name: h.name,
            block_name_prefix: format!("rbd_data.{}", h.id),
            id: h.id,
            pool: self.pool.clone(),
            size,
            order: h.order,
            object_size,
            num_objs: size.div_ceil(object_size),
            features: h.features,
            created: h.created,
            read_only: self.read_only,
        }
    }

    pub fn stats(&self) -> Stats {
        self.vol.stats()
    }

    /// Read at `off`; returns the bytes read (short at the end). Past the end is an error.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        self.vol.read(off, buf)
    }
    pub fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        self.vol.write(off, data)
    }
    pub fn discard(&self, off: u64, len: u64) -> Result<()> {
        self.vol.write_zeroes(off, len)
    }
    pub fn write_zeroes(&self, off: u64, len: u64) -> Result<()> {
        self.vol.write_zeroes(off, len)
    }
    pub fn flush(&self) -> Result<()> {
        self.vol.flush()
    }

    /// Asynchronous write: `done` runs (on an engine thread) once the write is acknowledged.
    /// Concurrent submissions are committed together (group commit); use these from
    /// asynchronous front ends instead of a thread per request.
    pub fn submit_write(&self, off: u64, data: Vec<u8>, done: shale_engine::Done) {
        self.vol.submit_write(off, data, done)
    }
    /// Asynchronous discard / write-zeroes.
    pub fn submit_zero(&self, off: u64, len: u64, done: shale_engine::Done) {
        self.vol.submit_zero(off, len, done)
    }
    /// Asynchronous flush: `done` runs once every write acknowledged before it is durable.
    pub fn submit_flush(&self, done: shale_engine::Done) {
        self.vol.submit_flush(done)
    }
    /// Seal and store everything written so far (what `close` does, without closing).
    pub fn flush_to_store(&self) -> Result<()> {
        self.vol.flush_to_store()
    }
    /// Runs of allocated sectors (lba, count) in [lba, lba+n): for sparse copies.
    pub fn allocated(&self, lba: u64, n: u64) -> Vec<(u64, u64)> {
        self.vol.allocated(lba, n)
    }

    /// Resize. Shrinking requires `allow_shrink` (as `rbd resize --allow-shrink`).
    pub fn resize(&self, new_size: u64, allow_shrink: bool) -> Result<()> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        if new_size > crate::cluster::MAX_IMAGE_SIZE {
            return Err(err!(
                Invalid,
                "size {new_size} is larger than the maximum image size (512 TiB)"
            ));
        }
        let old = self.vol.size();
        if new_size < old && !allow_shrink {
            return Err(err!(
                Invalid,
                "shrinking from {old} to {new_size} bytes needs --allow-shrink"
            ));
        }
        // Shrink: trim the data durably before the header says so; grow: header first is
        // harmless either way since new space reads as zeros.
        self.vol.resize(new_size)?;
        self.update_header(|h| {
            h.size = new_size;
            Ok(())
        })
    }

    pub fn metadata_get(&self, key: &str) -> Result<String> {
        self.hdr()
            .0
            .metadata
            .get(key)
            .cloned()
            .ok_or_else(|| err!(NotFound, "no metadata key {key:?}"))
    }
    pub fn metadata_set(&self, key: &str, value: &str) -> Result<()> {
        if key.is_empty() {
            return Err(err!(Invalid, "metadata key is empty"));
        }
        self.update_header(|h| {
            h.metadata.insert(key.to_string(), value.to_string());
            Ok(())
        })
    }
    pub fn metadata_remove(&self, key: &str) -> Result<()> {
        self.update_header(|h| {
            h.metadata
                .remove(key)
                .map(|_| ())
                .ok_or_else(|| err!(NotFound, "no metadata key {key:?}"))
        })
    }
    pub fn metadata_list(&self) -> BTreeMap<String, String> {
        self.hdr().0.metadata.clone()
    }

    /// Flush and stop background work. Dropping an image does the same, logging errors.
    pub fn close(&self) -> Result<()> {
        self.vol.close()
    }
}
