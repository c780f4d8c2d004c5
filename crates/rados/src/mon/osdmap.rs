//! The OSD map and monitor map answers (`osd dump`, `osd pool ls detail`, `osd pool get`,
//! `mon dump`) of Shale's one-OSD, one-monitor picture of a store (see [`super::facts`]).

use super::commands::{einval, now_stamp, stamp, Failure, EPOCH};
use super::descriptions;
use super::facts::{Facts, Pool, FULL_RATIO, MON_NAME, NEARFULL_RATIO};
use serde_json::{json, Value};

/// The address of Shale's in-process daemons: none (Ceph's blank address).
const NO_ADDR: &str = "0.0.0.0:0/0";

fn addrvec() -> Value {
    json!({ "addrvec": [{ "type": "any", "addr": "0.0.0.0:0", "nonce": 0 }] })
}

pub(crate) fn mon_dump(facts: &Facts) -> Value {
    let since = stamp(super::started_secs(), 0);
    json!({
        "epoch": EPOCH,
        "fsid": facts.fsid,
        "modified": since,
        "created": since,
        "min_mon_release": 16,
        "min_mon_release_name": "pacific",
        "election_strategy": 1,
        "disallowed_leaders: ": "",
        "stretch_mode": false,
        "tiebreaker_mon": "",
        "removed_ranks: ": "",
        "features": {
            "persistent": ["kraken", "luminous", "mimic", "osdmap-prune", "nautilus", "octopus",
                "pacific", "elector-pinging"],
            "optional": [],
        },
        "mons": [{
            "rank": 0,
            "name": MON_NAME,
            "public_addrs": addrvec(),
            "addr": NO_ADDR,
            "public_addr": NO_ADDR,
            "priority": 0,
            "weight": 0,
            "crush_location": "{}",
        }],
        "quorum": [0],
    })
}

/// A pool as `osd dump` and `osd pool ls detail` print it (`id_key` is `pool` in the first and
/// `pool_id` in the second). Shale pools are replicated, one copy, one placement group, with
/// self-managed snapshots and the rbd application.
pub(crate) fn pool(p: &Pool, id_key: &str) -> Value {
    let mut v = json!({
        "pool_name": p.name,
        "create_time": stamp(0, 0),
        "flags": 1,
        "flags_names": "hashpspool",
        "type": 1,
        "size": 1,
        "min_size": 1,
        "crush_rule": 0,
        "peering_crush_bucket_count": 0,
        "peering_crush_bucket_target": 0,
        "peering_crush_bucket_barrier": 0,
        "peering_crush_bucket_mandatory_member": 2_147_483_647,
        "object_hash": 2,
        "pg_autoscale_mode": "off",
        "pg_num": 1,
        "pg_placement_num": 1,
        "pg_placement_num_target": 1,
        "pg_num_target": 1,
        "pg_num_pending": 1,
        "last_pg_merge_meta": {
            "source_pgid": "0.0",
            "ready_epoch": 0,
            "last_epoch_started": 0,
            "last_epoch_clean": 0,
            "source_version": "0'0",
            "target_version": "0'0",
        },
        "last_change": EPOCH.to_string(),
        "last_force_op_resend": "0",
        "last_force_op_resend_prenautilus": "0",
        "last_force_op_resend_preluminous": "0",
    });
    let rest = json!({
        "auid": 0,
        "snap_mode": "selfmanaged",
        "snap_seq": 0,
        "snap_epoch": 0,
        "pool_snaps": [],
        "removed_snaps": "[]",
        "quota_max_bytes": 0,
        "quota_max_objects": 0,
        "tiers": [],
        "tier_of": -1,
        "read_tier": -1,
        "write_tier": -1,
        "cache_mode": "none",
        "target_max_bytes": 0,
        "target_max_objects": 0,
        "cache_target_dirty_ratio_micro": 400_000,
        "cache_target_dirty_high_ratio_micro": 600_000,
        "cache_target_full_ratio_micro": 800_000,
        "cache_min_flush_age": 0,
        "cache_min_evict_age": 0,
        "erasure_code_profile": "",
        "hit_set_params": { "type": "none" },
        "hit_set_period": 0,
        "hit_set_count": 0,
        "use_gmt_hitset": true,
        "min_read_recency_for_promote": 0,
        "min_write_recency_for_promote": 0,
        "hit_set_grade_decay_rate": 0,
        "hit_set_search_last_n": 0,
        "grade_table": [],
        "stripe_width": 0,
        "expected_num_objects": 0,
        "fast_read": false,
        "options": {},
        "application_metadata": { "rbd": {} },
    });
    if let (Some(m), Value::Object(r)) = (v.as_object_mut(), rest) {
        m.extend(r);
    }
    v[id_key] = json!(p.id);
    v
}

pub(crate) fn osd_dump(facts: &Facts) -> Value {
    let since = super::started_secs();
    let t = stamp(since, 0);
    let up = u32::from(facts.up);
    let state: Vec<&str> = if facts.up {
        vec!["exists", "up"]
    } else {
        vec!["exists"]
    };
    let mut head = json!({
        "epoch": EPOCH,
        "fsid": facts.fsid,
        "created": t,
        "modified": now_stamp(),
        "last_up_change": t,
        "last_in_change": t,
        "flags": "sortbitwise,recovery_deletes,purged_snapdirs,pglog_hardlimit",
        "flags_num": 5_799_936,
        "flags_set": ["pglog_hardlimit", "purged_snapdirs", "recovery_deletes", "sortbitwise"],
        "crush_version": 1,
        "full_ratio": FULL_RATIO,
        "backfillfull_ratio": 0.9,
        "nearfull_ratio": NEARFULL_RATIO,
        "cluster_snapshot": "",
        "pool_max": facts.pools.iter().map(|p| p.id).max().unwrap_or(0),
        "max_osd": 1,
        "require_min_compat_client": "luminous",
        "min_compat_client": "jewel",
        "require_osd_release": "pacific",
        "pools": facts.pools.iter().map(|p| pool(p, "pool")).collect::<Vec<_>>(),
    });
    let osds = json!({
        "osds": [{
            "osd": 0,
            "uuid": facts.fsid,
            "up": up,
            "in": 1,
            "weight": 1,
            "primary_affinity": 1,
            "last_clean_begin": 0,
            "last_clean_end": 0,
            "up_from": EPOCH,
            "up_thru": EPOCH,
            "down_at": 0,
            "lost_at": 0,
            "public_addrs": addrvec(),
            "cluster_addrs": addrvec(),
            "heartbeat_back_addrs": addrvec(),
            "heartbeat_front_addrs": addrvec(),
            "public_addr": NO_ADDR,
            "cluster_addr": NO_ADDR,
            "heartbeat_back_addr": NO_ADDR,
            "heartbeat_front_addr": NO_ADDR,
            "state": state,
        }],
        "osd_xinfo": [{
            "osd": 0,
            "down_stamp": "0.000000",
            "laggy_probability": 0,
            "laggy_interval": 0,
            "features": 4_540_138_314_316_775_423_u64,
            "old_weight": 0,
            "last_purged_snaps_scrub": t,
            "dead_epoch": 0,
        }],
    });
    let rest = json!({
        "pg_upmap": [],
        "pg_upmap_items": [],
        "pg_temp": [],
        "primary_temp": [],
        "blocklist": {},
        "range_blocklist": {},
        "erasure_code_profiles": {
            "default": { "k": "2", "m": "2", "plugin": "jerasure", "technique": "reed_sol_van" },
        },
        "removed_snaps_queue": [],
        "new_removed_snaps": [],
        "new_purged_snaps": [],
        "crush_node_flags": {},
        "device_class_flags": {},
        "stretch_mode": {
            "stretch_mode_enabled": false,
            "stretch_bucket_count": 0,
            "degraded_stretch_mode": 0,
            "recovering_stretch_mode": 0,
            "stretch_mode_bucket": 0,
        },
    });
    for part in [osds, rest] {
        if let (Some(m), Value::Object(r)) = (head.as_object_mut(), part) {
            m.extend(r);
        }
    }
    head
}

/// The variables `osd pool get` knows and Shale's value of each (as JSON and as text).
fn pool_vars() -> Vec<(&'static str, Value, String)> {
    let b = |x: bool| (json!(x), x.to_string());
    let n = |x: u64| (json!(x), x.to_string());
    let mut out = Vec::new();
    for (name, (j, t)) in [
        ("size", n(1)),
        ("min_size", n(1)),
        ("pg_num", n(1)),
        ("pgp_num", n(1)),
        (
            "crush_rule",
            (json!("replicated_rule"), "replicated_rule".into()),
        ),
        ("hashpspool", b(true)),
        ("nodelete", b(false)),
        ("nopgchange", b(false)),
        ("nosizechange", b(false)),
        ("write_fadvise_dontneed", b(false)),
        ("noscrub", b(false)),
        ("nodeep-scrub", b(false)),
        ("use_gmt_hitset", (json!(true), "1".into())),
        ("fast_read", n(0)),
        ("pg_autoscale_mode", (json!("off"), "off".into())),
        ("bulk", b(false)),
    ] {
        out.push((name, j, t));
    }
    out
}

/// Variables that exist only on cache-tier pools (`-EACCES` on others, as Ceph).
const TIER_VARS: &[&str] = &[
    "hit_set_type",
    "hit_set_period",
    "hit_set_count",
    "hit_set_fpp",
    "target_max_objects",
    "target_max_bytes",
    "cache_target_dirty_ratio",
    "cache_target_dirty_high_ratio",
    "cache_target_full_ratio",
    "cache_min_flush_age",
    "cache_min_evict_age",
    "min_read_recency_for_promote",
    "min_write_recency_for_promote",
    "hit_set_grade_decay_rate",
    "hit_set_search_last_n",
];

pub(crate) fn pool_get(p: &Pool, var: &str) -> Result<(Value, String), Failure> {
    let vars = pool_vars();
    let mut v = json!({ "pool": p.name, "pool_id": p.id });
    if var == "all" {
        let mut text = String::new();
        for (name, j, t) in vars {
            v[name] = j;
            text.push_str(&format!("{name}: {t}\n"));
        }
        return Ok((v, text));
    }
    if let Some((name, j, t)) = vars.into_iter().find(|(n, _, _)| *n == var) {
        v[name] = j;
        return Ok((v, format!("{name}: {t}\n")));
    }
    let name = &p.name;
    if TIER_VARS.contains(&var) {
        return Err((
            -libc::EACCES,
            format!("pool '{name}' is not a tier pool: variable not applicable"),
        ));
    }
    if var == "erasure_code_profile" || var == "allow_ec_overwrites" {
        return Err((
            -libc::EACCES,
            format!("pool '{name}' is not a erasure pool: variable not applicable"),
        ));
    }
    if descriptions::POOL_GET_VARS.split('|').any(|v| v == var) {
        return Err((
            -libc::ENOENT,
            format!("option '{var}' is not set on pool '{name}'"),
        ));
    }
    Err(einval(format!("pool '{name}': invalid variable: '{var}'")))
}
