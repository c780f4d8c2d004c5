//! What the monitor commands report, gathered from the store once per command.
//!
//! Shale has no monitors, managers or OSDs; it presents itself as the smallest Ceph cluster
//! that says true things about the store:
//!
//! ```text
//!   mon.shale, mgr.shale   this process (always in quorum / active)
//!   osd.0                  the store: "up" while it answers a listing, "in" always
//!   pools                  Shale's pools, one placement group each
//!   health                 HEALTH_OK, or a check per problem (store unreachable, store full)
//! ```

use crate::cluster::fs_usage;
use crate::state::Store;
use core::ffi::c_int;

/// The name of Shale's one monitor (and manager).
pub(crate) const MON_NAME: &str = "shale";

/// Fraction of the store's filesystem in use at which health warns and errs (Ceph's default
/// `mon_osd_nearfull_ratio` and `mon_osd_full_ratio`).
pub(crate) const NEARFULL_RATIO: f64 = 0.85;
pub(crate) const FULL_RATIO: f64 = 0.95;

/// One pool and its usage.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) id: i64,
    pub(crate) objects: u64,
    pub(crate) bytes: u64,
}

/// One failed health check, as Ceph reports it.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub(crate) code: &'static str,
    /// `HEALTH_WARN` or `HEALTH_ERR`.
    pub(crate) severity: &'static str,
    pub(crate) summary: String,
    pub(crate) detail: Vec<String>,
}

/// Everything a command may report, read from one store.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub(crate) fsid: String,
    pub(crate) url: String,
    /// Pools sorted by id; empty when the store is unreachable.
    pub(crate) pools: Vec<Pool>,
    /// Capacity of the store's filesystem (1 PiB free for object stores).
    pub(crate) total: u64,
    pub(crate) avail: u64,
    /// Whether the store answered.
    pub(crate) up: bool,
    /// Why it did not: (negative errno, message) for the commands that need its pools.
    pub(crate) error: Option<(c_int, String)>,
    pub(crate) checks: Vec<Check>,
}

impl Facts {
    /// Read the store: with `pools`, list every pool (what `df`, `status` and `osd ...`
    /// report; it reads the listing of every object); without, only check that the store
    /// answers (enough for `health`, `fsid`, `mon dump`, `versions`).
    pub(crate) fn gather(store: &Store, pools: bool) -> Self {
        let read = if pools {
            read_pools(store)
        } else {
            check_marker(store).map(|()| Vec::new())
        };
        let (pools, error) = match read {
            Ok(p) => (p, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let usage = fs_usage(store);
        let mut checks = Vec::new();
        if let Some((_, e)) = &error {
            checks.push(Check {
                code: "STORE_UNREACHABLE",
                severity: "HEALTH_ERR",
                summary: format!("store {} is unreachable", store.url),
                detail: vec![e.clone()],
            });
        }
        if let Some(u) = usage {
            let ratio = u.fill_ratio();
            let (code, severity, what) = if ratio >= FULL_RATIO {
                ("STORE_FULL", "HEALTH_ERR", "full")
            } else if ratio >= NEARFULL_RATIO {
                ("STORE_NEARFULL", "HEALTH_WARN", "nearly full")
            } else {
                ("", "", "")
            };
            if !code.is_empty() {
                checks.push(Check {
                    code,
                    severity,
                    summary: format!("store filesystem is {what}"),
                    detail: vec![format!(
                        "store {} is on a filesystem {:.1}% full",
                        store.url,
                        ratio * 100.0
                    )],
                });
            }
        }
        let (total, avail) = usage.map_or((PIB, PIB), |u| (u.total, u.avail));
        Facts {
            fsid: store.fsid(),
            url: store.url.clone(),
            pools,
            total,
            avail,
            up: error.is_none(),
            error: error.map(|(rc, e)| (rc, format!("store {} is unreachable: {e}", store.url))),
            checks,
        }
    }

    /// `HEALTH_OK`, or the worst severity of the failed checks.
    pub(crate) fn status(&self) -> &'static str {
        if self.checks.iter().any(|c| c.severity == "HEALTH_ERR") {
            "HEALTH_ERR"
        } else if self.checks.is_empty() {
            "HEALTH_OK"
        } else {
            "HEALTH_WARN"
        }
    }

    pub(crate) fn stored(&self) -> u64 {
        self.pools.iter().map(|p| p.bytes).sum()
    }

    pub(crate) fn objects(&self) -> u64 {
        self.pools.iter().map(|p| p.objects).sum()
    }

    pub(crate) fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
}

const PIB: u64 = 1 << 50;

fn fail(e: shale_image::Error) -> (c_int, String) {
    (crate::errno::of(&e), e.to_string())
}

/// Whether the store still holds the marker object `rados_connect` found or wrote (a local
/// store whose directory was removed lists as empty, not as an error).
fn check_marker(store: &Store) -> Result<(), (c_int, String)> {
    match store.cluster.store().get(".shale") {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == shale_image::ErrorKind::NotFound => {
            let why = "its marker object .shale is gone (store removed or moved?)";
            Err((-libc::EIO, why.into()))
        }
        Err(e) => Err(fail(e)),
    }
}

/// The pools, after [`check_marker`].
fn read_pools(store: &Store) -> Result<Vec<Pool>, (c_int, String)> {
    check_marker(store)?;
    let c = &store.cluster;
    let mut out = Vec::new();
    for (name, id) in c.pool_list().map_err(fail)? {
        let st = c.pool_stats(&name).map_err(fail)?;
        out.push(Pool {
            name,
            id,
            objects: st.objects,
            bytes: st.bytes,
        });
    }
    out.sort_by_key(|p| p.id);
    Ok(out)
}
