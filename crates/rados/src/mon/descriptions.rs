//! `get_command_descriptions`: the signatures of the commands Shale answers, in the JSON layout
//! of Ceph's monitor. The `ceph` CLI fetches them on every run and validates the command line
//! against them before sending it (`ceph_argparse.validate_command`), so every prefix
//! [`super::commands::run`] answers is here, and nothing else is.

use serde_json::{json, Map, Value};

/// The `var` choices of `osd pool get`, as Ceph 16.2 lists them.
pub(crate) const POOL_GET_VARS: &str = "size|min_size|pg_num|pgp_num|crush_rule|hashpspool|\
nodelete|nopgchange|nosizechange|write_fadvise_dontneed|noscrub|nodeep-scrub|hit_set_type|\
hit_set_period|hit_set_count|hit_set_fpp|use_gmt_hitset|target_max_objects|target_max_bytes|\
cache_target_dirty_ratio|cache_target_dirty_high_ratio|cache_target_full_ratio|\
cache_min_flush_age|cache_min_evict_age|erasure_code_profile|min_read_recency_for_promote|all|\
min_write_recency_for_promote|fast_read|hit_set_grade_decay_rate|hit_set_search_last_n|\
scrub_min_interval|scrub_max_interval|deep_scrub_interval|recovery_priority|\
recovery_op_priority|scrub_priority|compression_mode|compression_algorithm|\
compression_required_ratio|compression_max_blob_size|compression_min_blob_size|csum_type|\
csum_min_block|csum_max_block|allow_ec_overwrites|fingerprint_algorithm|pg_autoscale_mode|\
pg_autoscale_bias|pg_num_min|pg_num_max|target_size_bytes|target_size_ratio|dedup_tier|\
dedup_chunk_algorithm|dedup_cdc_chunk_size|bulk";

/// Every prefix Shale answers (besides `get_command_descriptions`).
pub(crate) const PREFIXES: &[&str] = &[
    "fsid",
    "status",
    "health",
    "df",
    "versions",
    "mon dump",
    "osd dump",
    "osd pool ls",
    "osd pool get",
    "osd pool application enable",
    "osd pool application get",
];

fn detail() -> Value {
    json!({ "name": "detail", "type": "CephChoices", "strings": "detail", "req": "false" })
}

fn epoch() -> Value {
    json!({ "name": "epoch", "type": "CephInt", "range": "0", "req": "false" })
}

fn pool() -> Value {
    json!({ "name": "pool", "type": "CephPoolname" })
}

/// (signature, help, module, perm) of each command.
fn commands() -> Vec<(Vec<Value>, &'static str, &'static str, &'static str)> {
    let words = |s: &str| s.split(' ').map(|w| json!(w)).collect::<Vec<_>>();
    let with = |s: &str, extra: Vec<Value>| {
        let mut w = words(s);
        w.extend(extra);
        w
    };
    vec![
        (words("fsid"), "show cluster FSID/UUID", "mon", "r"),
        (words("status"), "show cluster status", "mon", "r"),
        (
            with("health", vec![detail()]),
            "show cluster health",
            "mon",
            "r",
        ),
        (
            with("df", vec![detail()]),
            "show cluster free space stats",
            "mon",
            "r",
        ),
        (
            words("versions"),
            "check running versions of ceph daemons",
            "mon",
            "r",
        ),
        (
            with("mon dump", vec![epoch()]),
            "dump formatted monmap (optionally from epoch)",
            "mon",
            "r",
        ),
        (
            with("osd dump", vec![epoch()]),
            "print summary of OSD map",
            "osd",
            "r",
        ),
        (
            with("osd pool ls", vec![detail()]),
            "list pools",
            "osd",
            "r",
        ),
        (
            with(
                "osd pool get",
                vec![
                    pool(),
                    json!({ "name": "var", "type": "CephChoices", "strings": POOL_GET_VARS }),
                ],
            ),
            "get pool parameter <var>",
            "osd",
            "r",
        ),
        (
            with(
                "osd pool application enable",
                vec![
                    pool(),
                    json!({ "name": "app", "type": "CephString", "goodchars": "[A-Za-z0-9-_.]" }),
                    json!({ "name": "yes_i_really_mean_it", "type": "CephBool", "req": "false" }),
                ],
            ),
            "enable use of an application <app> [cephfs,rbd,rgw] on pool <poolname>",
            "osd",
            "rw",
        ),
        (
            with(
                "osd pool application get",
                vec![
                    pool(),
                    json!({ "name": "app", "type": "CephString", "req": "false" }),
                    json!({ "name": "key", "type": "CephString", "req": "false" }),
                ],
            ),
            "get value of key <key> of application <app> on pool <poolname>",
            "osd",
            "r",
        ),
    ]
}

/// The JSON text `get_command_descriptions` returns.
pub(crate) fn all() -> String {
    let mut m = Map::new();
    for (i, (sig, help, module, perm)) in commands().into_iter().enumerate() {
        m.insert(
            format!("cmd{:03}", i + 1),
            json!({ "sig": sig, "help": help, "module": module, "perm": perm, "flags": 0 }),
        );
    }
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_is_described_once() {
        let v: Value = serde_json::from_str(&all()).expect("valid JSON");
        let mut prefixes: Vec<String> = v
            .as_object()
            .expect("object")
            .values()
            .map(|c| {
                c["sig"]
                    .as_array()
                    .expect("sig")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        prefixes.sort();
        let mut want: Vec<String> = PREFIXES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(prefixes, want);
    }
}
