//! `shale check` and `shale repair` at the image level: the engine checks the log, this layer
//! adds what only the header knows (snapshots, the clone parent) and the exclusive lock.

use shale_engine::{CheckReport, Problem, RepairReport};
use shale_error::{err, Result};

use crate::cluster::Cluster;
use crate::image::SnapInfo;

impl Cluster {
    /// Check an image: every object a checkpoint, snapshot or parent names exists and passes
    /// its checksums; objects nothing names are listed. Changes nothing.
    pub fn check_image(
        &self,
        pool: &str,
        name: &str,
        progress: impl FnMut(u64, u64),
    ) -> Result<CheckReport> {
        let id = self.image_id(pool, name)?;
        let (h, _) = self.load_header(pool, &id)?;
        let snaps: Vec<String> = h.snapshots.iter().map(|s| SnapInfo::key(s.id)).collect();
        let prefix = shale_format::keys::image_prefix(pool, &id);
        let data = self.data_store(pool, &id, &h, false)?;
        let mut r = shale_engine::check(data.as_ref(), &prefix, &snaps, progress)?;
        if let Some(p) = &h.parent {
            let what = format!(
                "parent {}/{}@{} of this clone",
                p.pool, p.image_name, p.snap_name
            );
            let pkey = format!(
                "{}{}",
                shale_format::keys::image_prefix(&p.pool, &p.image_id),
                SnapInfo::key(p.snap_id)
            );
            match self.load_header(&p.pool, &p.image_id) {
                Err(e) => r.problems.push(Problem {
                    object: shale_format::keys::header(&p.pool, &p.image_id),
                    what: format!("{what}: {e}"),
                }),
                Ok((ph, _)) if !ph.snapshots.iter().any(|s| s.id == p.snap_id) => {
                    r.problems.push(Problem {
                        object: pkey,
                        what: format!("{what}: the parent has no such snapshot any more"),
                    })
                }
                Ok((ph, _)) => {
                    if let Err(e) = self
                        .data_store(&p.pool, &p.image_id, &ph, false)
                        .and_then(|s| s.get(&pkey))
                        .and_then(|(b, _)| shale_format::checkpoint::decode(&b))
                    {
                        r.problems.push(Problem {
                            object: pkey,
                            what: format!("{what}: snapshot checkpoint unusable: {e}"),
                        });
                    }
                }
            }
        }
        Ok(r)
    }

    /// Rebuild an image's map from its surviving checkpoints and segments (see the engine's
    /// `repair`). Refused while a live client holds the image's exclusive lock. Deletes
    /// nothing.
    pub fn repair_image(&self, pool: &str, name: &str) -> Result<RepairReport> {
        let id = self.image_id(pool, name)?;
        if let Some(owner) = crate::lock::live_owner(self, pool, &id)? {
            return Err(err!(
                Busy,
                "image {pool}/{name} is in use by {owner}; close it there first (or break its \
                 lock with `shale lock break`)"
            ));
        }
        let (h, _) = self.load_header(pool, &id)?;
        let prefix = shale_format::keys::image_prefix(pool, &id);
        let data = self.data_store(pool, &id, &h, false)?;
        shale_engine::repair(data.as_ref(), &prefix, h.epoch, h.fence)
    }
}
