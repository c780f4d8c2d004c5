//! Snapshots, clones, flatten, rollback and diffs.
//!
//! A snapshot is a checkpoint of the extent map at a segment boundary (`snap/<id>` under the
//! image prefix) plus an entry in the header: creating one copies no data. A clone is an image
//! whose header names a parent snapshot; sectors it never wrote read through to the parent
//! (recursively) below the overlap. Refusals follow librbd: a protected snapshot cannot be
//! removed, a snapshot with clones cannot be unprotected or removed, an image with snapshots
//! cannot be removed.

use std::collections::BTreeMap;

use shale_error::{err, ErrorKind, Result};
use shale_format::SECTOR;

use crate::cluster::Cluster;
use crate::image::{ChildRef, Image, ImageHeader, ParentRef, SnapInfo};
use crate::names::validate_image_name;

fn validate_snap_name(name: &str) -> Result<()> {
    // librbd 16.2 accepts an empty snapshot name (measured on Ceph: create_snap('') succeeds,
    // a second one is EEXIST); such a snapshot is reached by id, not by an `@` spec.
    if name.is_empty() {
        return Ok(());
    }
    validate_image_name(name).map_err(|e| {
        err!(
            Invalid,
            "snapshot name: {}",
            e.message().replace("image name", "name")
        )
    })
}

fn find<'a>(h: &'a ImageHeader, name: &str) -> Result<&'a SnapInfo> {
    h.snapshots
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| err!(NotFound, "image {} has no snapshot {name:?}", h.name))
}

fn find_mut<'a>(h: &'a mut ImageHeader, name: &str) -> Result<&'a mut SnapInfo> {
    let image = h.name.clone();
    h.snapshots
        .iter_mut()
        .find(|s| s.name == name)
        .ok_or_else(|| err!(NotFound, "image {image} has no snapshot {name:?}"))
}

impl Image {
    /// The snapshot this handle shows, if it was opened at one.
    pub fn snapshot(&self) -> Option<&SnapInfo> {
        self.snap.as_ref()
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        Ok(())
    }

    /// Take a snapshot. Costs a seal and a checkpoint of the map; no data is copied.
    pub fn snap_create(&self, name: &str) -> Result<u64> {
        self.writable()?;
        validate_snap_name(name)?;
        let h = self.reload_header()?;
        if h.snapshots.iter().any(|s| s.name == name) {
            return Err(err!(Exists, "snapshot {}@{name} already exists", h.name));
        }
        if let Some(limit) = h.snap_limit {
            if h.snapshots.len() as u64 >= limit {
                return Err(err!(
                    NoSpace,
                    "image {} has reached its snapshot limit of {limit}",
                    h.name
                ));
            }
        }
        // Reserve a snapshot id first (a conditional header update), so that two clients
        // taking snapshots at once never compute the same id: the checkpoint below is then
        // ours alone, created with put-if-absent, and our error paths delete only it.
        let reserved = std::sync::Mutex::new(0u64);
        self.update_header(|h| {
            if h.snapshots.iter().any(|s| s.name == name) {
                return Err(err!(Exists, "snapshot {}@{name} already exists", h.name));
            }
            let id = h.next_snap_id.max(4);
            h.next_snap_id = id + 1;
            *reserved.lock().unwrap_or_else(|p| p.into_inner()) = id;
            Ok(())
        })?;
        let id = *reserved.lock().unwrap_or_else(|p| p.into_inner());
        let key = SnapInfo::key(id);
        let seq = self.writer()?.snapshot(&key)?;
        let size = self.vol().size();
        let res = self.update_header(|h| {
            if h.snapshots.iter().any(|s| s.name == name) {
                return Err(err!(Exists, "snapshot {}@{name} already exists", h.name));
            }
            if let Some(limit) = h.snap_limit {
                if h.snapshots.len() as u64 >= limit {
                    return Err(err!(
                        NoSpace,
                        "image {} has reached its snapshot limit of {limit}",
                        h.name
                    ));
                }
            }
            h.snapshots.push(SnapInfo {
                id,
                name: name.to_string(),
                seq,
                size,
                protected: false,
                created: self.cluster.now_secs(),
                children: Vec::new(),
            });
            Ok(())
        });
        if let Err(e) = res {
            // The update may have landed with its answer lost: then the snapshot exists. If
            // the header cannot be read to tell, keep the checkpoint (at worst garbage that
            // `shale check` lists) rather than risk a listed snapshot without one.
            match self.reload_header() {
                Ok(h) if h.snapshots.iter().any(|s| s.id == id && s.name == name) => return Ok(id),
                Ok(_) => {}
                Err(_) => return Err(e),
            }
            // The checkpoint under our reserved id is ours alone: remove it.
            if let Err(d) = self.data_delete(&format!(
                "{}{key}",
                shale_format::keys::image_prefix(&self.pool, &self.id)
            )) {
                tracing::warn!("removing the checkpoint of a failed snapshot {key}: {d}");
            }
            return Err(e);
        }
        Ok(id)
    }

    /// Snapshots, oldest first.
    pub fn snap_list(&self) -> Result<Vec<SnapInfo>> {
        Ok(self.reload_header()?.snapshots)
    }

    pub fn snap_remove(&self, name: &str) -> Result<()> {
        self.writable()?;
        let h = self.reload_header()?;
        let s = find(&h, name)?.clone();
        if s.protected {
            return Err(err!(
                Busy,
                "snapshot {}@{name} is protected; unprotect it first",
                h.name
            ));
        }
        if !s.children.is_empty() {
            return Err(err!(
                Busy,
                "snapshot {}@{name} has {} clone(s)",
                h.name,
                s.children.len()
            ));
        }
        self.update_header(|h| {
            let i = h
                .snapshots
                .iter()
                .position(|x| x.id == s.id)
                .ok_or_else(|| err!(NotFound, "snapshot {name:?} is gone"))?;
            if h.snapshots[i].protected || !h.snapshots[i].children.is_empty() {
                return Err(err!(
                    Busy,
                    "snapshot {name:?} became protected or cloned meanwhile"
                ));
            }
            h.snapshots.remove(i);
            Ok(())
        })?;
        self.data_delete(&format!(
            "{}{}",
            shale_format::keys::image_prefix(&self.pool, &self.id),
            SnapInfo::key(s.id)
        ))
    }

    pub fn snap_rename(&self, from: &str, to: &str) -> Result<()> {
        self.writable()?;
        validate_snap_name(to)?;
        self.update_header(|h| {
            if h.snapshots.iter().any(|s| s.name == to) {
                return Err(err!(Exists, "snapshot {}@{to} already exists", h.name));
            }
            find_mut(h, from)?.name = to.to_string();
            Ok(())
        })
    }

    pub fn snap_protect(&self, name: &str) -> Result<()> {
        self.writable()?;
        self.update_header(|h| {
            let s = find_mut(h, name)?;
            if s.protected {
                return Err(err!(Busy, "snapshot {name:?} is already protected"));
            }
            s.protected = true;
            Ok(())
        })
    }

    pub fn snap_unprotect(&self, name: &str) -> Result<()> {
        self.writable()?;
        self.update_header(|h| {
            let s = find_mut(h, name)?;
            if !s.protected {
                return Err(err!(Invalid, "snapshot {name:?} is not protected"));
            }
            if !s.children.is_empty() {
                return Err(err!(
                    Busy,
                    "snapshot {name:?} has {} clone(s); flatten or remove them first",
                    s.children.len()
                ));
            }
            s.protected = false;
            Ok(())
        })
    }

    pub fn snap_is_protected(&self, name: &str) -> Result<bool> {
        Ok(find(&self.reload_header()?, name)?.protected)
    }

    pub fn snap_set_limit(&self, limit: Option<u64>) -> Result<()> {
        self.writable()?;
        self.update_header(|h| {
            h.snap_limit = limit;
            Ok(())
        })
    }

    pub fn snap_limit(&self) -> Result<Option<u64>> {
        Ok(self.reload_header()?.snap_limit)
    }

    /// Make the head equal to a snapshot again: its size, then every range that differs is
    /// rewritten from the snapshot. `progress(done, total)` counts bytes.
    pub fn snap_rollback(&self, name: &str, mut progress: impl FnMut(u64, u64)) -> Result<()> {
        self.writable()?;
        let h = self.reload_header()?;
        let s = find(&h, name)?.clone();
        let view = self
            .cluster
            .open_image_at_id(&self.pool, &self.id, &s.name)?;
        if self.size() != s.size {
            self.resize(s.size, true)?;
        }
        let sectors = s.size.div_ceil(SECTOR);
        let changed = self.vol().diff(Some(&SnapInfo::key(s.id)), 0, sectors)?;
        let total: u64 = changed.iter().map(|c| c.1 * SECTOR).sum();
        let mut done = 0;
        let mut buf = Vec::new();
        for (lba, n, _) in changed {
            let mut off = lba * SECTOR;
            let end = ((lba + n) * SECTOR).min(s.size);
            while off < end {
                let len = (end - off).min(4 << 20) as usize;
                buf.resize(len, 0);
                view.read(off, &mut buf)?;
                if buf.iter().all(|&b| b == 0) {
                    self.write_zeroes(off, len as u64)?;
                } else {
                    self.write(off, &buf)?;
                }
                off += len as u64;
                done += len as u64;
                progress(done, total);
            }
        }
        self.flush()
    }

    /// The parent of a clone (None for other images).
    pub fn parent(&self) -> Option<ParentRef> {
        self.hdr_snapshot().parent
    }

    pub(crate) fn hdr_snapshot(&self) -> ImageHeader {
        self.header
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Copy everything the clone still reads from its parent into it, then cut the link.
    pub fn flatten(&self, mut progress: impl FnMut(u64, u64)) -> Result<()> {
        self.writable()?;
        let h = self.reload_header()?;
        let Some(p) = h.parent.clone() else {
            return Err(err!(
                Invalid,
                "image {} is not a clone; nothing to flatten",
                h.name
            ));
        };
        let overlap = self.vol().parent_overlap().min(self.size());
        let sectors = overlap.div_ceil(SECTOR);
        // Holes of the clone below the overlap are what still comes from the parent.
        let mut holes = Vec::new();
        let mut at = 0;
        for (lba, n) in self.vol().written(0, sectors) {
            if lba > at {
                holes.push((at, lba - at));
            }
            at = lba + n;
        }
        if at < sectors {
            holes.push((at, sectors - at));
        }
        let total: u64 = holes.iter().map(|h| h.1 * SECTOR).sum();
        let mut done = 0;
        let mut buf = Vec::new();
        for (lba, n) in holes {
            let mut off = lba * SECTOR;
            let end = ((lba + n) * SECTOR).min(overlap);
            while off < end {
                let len = (end - off).min(4 << 20) as usize;
                buf.resize(len, 0);
                self.read(off, &mut buf)?;
                if buf.iter().any(|&b| b != 0) {
                    self.write(off, &buf)?;
                }
                off += len as u64;
                done += len as u64;
                progress(done, total);
            }
        }
        self.writer()?.flush_to_store()?;
        self.update_header(|h| {
            h.parent = None;
            Ok(())
        })?;
        self.vol().set_parent(None);
        self.cluster.unlink_child(&p, &self.pool, &self.id)
    }

    /// Changed ranges in bytes of [off, off+len): since snapshot `from` (None: everything
    /// allocated), as (offset, length, exists). With `include_parent`, a clone's ranges that
    /// read through to the parent count as the parent's data. With `whole_object`, ranges are
    /// widened to whole objects (1 << order bytes).
    pub fn diff(
        &self,
        from: Option<&str>,
        off: u64,
        len: u64,
        include_parent: bool,
        whole_object: bool,
    ) -> Result<Vec<(u64, u64, bool)>> {
        let size = self.size();
        if off > size {
            return Err(err!(
                Invalid,
                "diff start {off} is past the end of the image ({size} bytes)"
            ));
        }
        let end = off.saturating_add(len).min(size);
        let h = self.hdr_snapshot();
        let key = match from {
            Some(name) => {
                let s = find(&h, name)?;
                if let Some(cur) = &self.snap {
                    if s.id > cur.id {
                        return Err(err!(
                            Invalid,
                            "diff from snapshot {name:?}, which is newer than the one open"
                        ));
                    }
                }
                Some(SnapInfo::key(s.id))
            }
            None => None,
        };
        let (l0, l1) = (off / SECTOR, end.div_ceil(SECTOR));
        let mut ranges = self.vol().diff(key.as_deref(), l0, l1 - l0)?;
        if from.is_none() && include_parent {
            let overlap = self.vol().parent_overlap().min(end).div_ceil(SECTOR);
            if overlap > l0 {
                // Holes of the clone below the overlap show the parent's data.
                let mut at = l0;
                let mut extra = Vec::new();
                for (lba, n) in self.vol().written(l0, overlap - l0) {
                    if lba > at {
                        extra.push((at, lba - at, true));
                    }
                    at = lba + n;
                }
                if at < overlap {
                    extra.push((at, overlap - at, true));
                }
                ranges.extend(extra);
                ranges.sort_by_key(|r| r.0);
            }
        }
        let obj = 1u64 << h.order;
        let mut out: Vec<(u64, u64, bool)> = Vec::new();
        for (lba, n, exists) in ranges {
            let (mut a, mut z) = ((lba * SECTOR).max(off), ((lba + n) * SECTOR).min(end));
            if whole_object {
                a = a / obj * obj;
                z = (z.div_ceil(obj) * obj).min(size);
            }
            match out.last_mut() {
                Some(l) if l.0 + l.1 >= a && (l.2 == exists || whole_object) => {
                    l.1 = l.1.max(z - l.0);
                    l.2 |= exists;
                }
                _ => out.push((a, z - a, exists)),
            }
        }
        Ok(out)
    }
}

/// Object-map states, as librbd names them.
pub mod object_state {
    pub const NONEXISTENT: u8 = 0;
    pub const EXISTS: u8 = 1;
    pub const PENDING: u8 = 2;
    pub const EXISTS_CLEAN: u8 = 3;
}

impl Image {
    /// The RBD object map of this head or snapshot, derived from the extent maps (so it can
    /// never be stale): per object of `1 << order` bytes, NONEXISTENT when it holds no data
    /// (a clone's parent data counts), EXISTS when written since the previous snapshot,
    /// EXISTS_CLEAN when its data predates it. PENDING never appears: there is no
    /// in-between state to expose.
    pub fn object_map(&self) -> Result<Vec<u8>> {
        use object_state::*;
        let size = self.size();
        let order = self.hdr_snapshot().order;
        let obj = 1u64 << order;
        let n = size.div_ceil(obj) as usize;
        let mut states = vec![NONEXISTENT; n];
        for (off, len, exists) in self.diff(None, 0, size, true, false)? {
            if exists {
                for o in off / obj..(off + len).div_ceil(obj) {
                    states[o as usize] = EXISTS_CLEAN;
                }
            }
        }
        // Changed since the snapshot before this view (or the newest one, for the head).
        let snaps = self.hdr_snapshot().snapshots;
        let prev = match &self.snap {
            Some(cur) => snaps
                .iter()
                .rfind(|s| s.id < cur.id)
                .map(|s| s.name.clone()),
            None => snaps.last().map(|s| s.name.clone()),
        };
        let dirty = match &prev {
            Some(p) => self.diff(Some(p), 0, size, false, false)?,
            None => self.diff(None, 0, size, true, false)?,
        };
        for (off, len, exists) in dirty {
            if exists {
                for o in off / obj..(off + len).div_ceil(obj) {
                    states[o as usize] = EXISTS;
                }
            }
        }
        Ok(states)
    }
}

impl Cluster {
    /// Open an image read-only at a snapshot.
    pub fn open_image_at(&self, pool: &str, name: &str, snap: &str) -> Result<Image> {
        let id = self.image_id(pool, name)?;
        self.open_image_at_id(pool, &id, snap)
    }

    pub(crate) fn open_image_at_id(&self, pool: &str, id: &str, snap: &str) -> Result<Image> {
        Image::open_at(self, pool, id, Some(snap), true)
    }

    /// Clone a protected snapshot into a new image.
    pub fn clone_image(
        &self,
        ppool: &str,
        pname: &str,
        psnap: &str,
        cpool: &str,
        cname: &str,
        order: Option<u8>,
    ) -> Result<String> {
        validate_image_name(cname)?;
        self.pool_id(cpool)?;
        let pid = self.image_id(ppool, pname)?;
        let (ph, _) = self.load_header(ppool, &pid)?;
        let s = find(&ph, psnap)?.clone();
        if !s.protected {
            return Err(err!(Invalid, "snapshot {pname}@{psnap} must be protected before it can be cloned (`shale snap protect`)"));
        }
        let id = self.create_image(cpool, cname, s.size, order.unwrap_or(ph.order))?;
        let parent = ParentRef {
            pool: ppool.into(),
            image_id: pid.clone(),
            image_name: pname.into(),
            snap_id: s.id,
            snap_name: s.name.clone(),
            overlap: s.size,
        };
        let link = self
            .modify_header(cpool, &id, |h| {
                h.parent = Some(parent.clone());
                Ok(())
            })
            .and_then(|_| {
                self.modify_header(ppool, &pid, |h| {
                    let snap = h
                        .snapshots
                        .iter_mut()
                        .find(|x| x.id == s.id)
                        .ok_or_else(|| err!(NotFound, "snapshot {psnap:?} was removed"))?;
                    if !snap.protected {
                        return Err(err!(
                            Invalid,
                            "snapshot {pname}@{psnap} was unprotected meanwhile"
                        ));
                    }
                    snap.children.push(ChildRef {
                        pool: cpool.into(),
                        image_id: id.clone(),
                    });
                    Ok(())
                })
            });
        if let Err(e) = link {
            let _ = self.remove_image(cpool, cname, |_, _| {});
            return Err(e);
        }
        Ok(id)
    }

    /// Remove `child` from the children of its parent snapshot.
    pub(crate) fn unlink_child(&self, p: &ParentRef, pool: &str, id: &str) -> Result<()> {
        match self.modify_header(&p.pool, &p.image_id, |h| {
            if let Some(s) = h.snapshots.iter_mut().find(|s| s.id == p.snap_id) {
                s.children.retain(|c| !(c.pool == pool && c.image_id == id));
            }
            Ok(())
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Clones of a snapshot: (pool, image name).
    pub fn list_children(
        &self,
        pool: &str,
        name: &str,
        snap: &str,
    ) -> Result<Vec<(String, String)>> {
        let id = self.image_id(pool, name)?;
        let (h, _) = self.load_header(pool, &id)?;
        let s = find(&h, snap)?;
        let mut out = Vec::new();
        for c in &s.children {
            if let Ok((ch, _)) = self.load_header(&c.pool, &c.image_id) {
                out.push((c.pool.clone(), ch.name));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every snapshot's clones of an image, keyed by snapshot name.
    pub fn children_by_snap(
        &self,
        pool: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<(String, String)>>> {
        let id = self.image_id(pool, name)?;
        let (h, _) = self.load_header(pool, &id)?;
        let mut out = BTreeMap::new();
        for s in &h.snapshots {
            out.insert(s.name.clone(), self.list_children(pool, name, &s.name)?);
        }
        Ok(out)
    }
}
