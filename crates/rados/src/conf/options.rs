//! The option names librados accepts: every Ceph 16.2 option (`ceph-conf --show-config`, in
//! `abi/ceph-config-option-names.txt`) plus any `shale_*` name, which carries Shale's own
//! settings through the same ceph.conf / `rados_conf_set` channels, and `debug_shale` (the
//! log level, Ceph-style; see [`crate::logging`]).

use std::collections::BTreeSet;
use std::sync::OnceLock;

const CEPH_OPTION_NAMES: &str = include_str!("../../abi/ceph-config-option-names.txt");

/// The prefix of Shale's own option names.
pub(crate) const SHALE_PREFIX: &str = "shale_";

/// Canonical form of an option name: spaces are underscores, as in Ceph (dashes are not: the
/// real librados refuses `rbd-cache` with `-ENOENT`, checked against Ceph 16.2.15).
pub(crate) fn normalize(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| if c == ' ' { '_' } else { c })
        .collect()
}

fn ceph_names() -> &'static BTreeSet<&'static str> {
    static NAMES: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        CEPH_OPTION_NAMES
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Whether a normalized name is an option librados knows.
pub(crate) fn is_known(normalized: &str) -> bool {
    (normalized.starts_with(SHALE_PREFIX) && normalized.len() > SHALE_PREFIX.len())
        || normalized == "debug_shale"
        || ceph_names().contains(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_ceph_and_shale_names() {
        assert!(ceph_names().len() > 1800);
        assert!(is_known(&normalize("rbd cache")));
        assert!(is_known(&normalize("mon host")));
        assert!(!is_known(&normalize("mon-host")));
        assert!(is_known("shale_data_dir"));
        assert!(is_known(&normalize("debug shale")));
        assert!(!is_known("shale_"));
        assert!(!is_known("no_such_option"));
    }
}
