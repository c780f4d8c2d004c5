//! The library's log output: the process's `tracing` subscriber (crate `shale-log`, stderr, no
//! colours), installed at the first `rados_create*`, `rados_connect` or `rbd_open*`.
//!
//! ```text
//!   level: SHALE_LOG if set  >  ceph.conf / rados_conf_set `shale_log` or `debug_shale`
//!          (applied at rados_connect; the last connect of the process wins)  >  warn
//! ```
//!
//! Levels are names (`error` ... `trace`), Ceph debug levels (`0` → error, `1` → warn,
//! `5` → info, `10` → debug, `20` → trace; `1/5` counts as 1) or `tracing` directives such as
//! `warn,shale_engine=debug`. A host process that installed its own subscriber first keeps it.

use crate::conf::Conf;

/// Conf keys naming the level, the first set one wins.
pub(crate) const KEYS: [&str; 2] = ["shale_log", "debug_shale"];

/// Install the subscriber if this process has none yet (never panics).
pub(crate) fn ensure() {
    shale_log::init_from_env();
}

/// Apply the level `conf` names, if any; a bad value is reported and otherwise ignored.
pub(crate) fn apply(conf: &Conf) {
    ensure();
    let Some((key, value)) = KEYS.iter().find_map(|k| {
        let v = conf.get(k).ok()?;
        (!v.trim().is_empty()).then_some((*k, v))
    }) else {
        return;
    };
    if let Err(e) = shale_log::set_filter(&value) {
        tracing::warn!("ignoring {key} = {value:?}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::Identity;

    #[test]
    fn conf_keys_are_accepted_and_bad_values_do_not_fail() {
        let mut c = Conf::new(Identity::client(None, None));
        assert_eq!(c.set("debug shale", "1/5"), Ok(()));
        assert_eq!(c.set("shale_log", "not-a-level"), Ok(()));
        apply(&c); // reported, not fatal
        assert_eq!(c.set("shale_log", "warn"), Ok(()));
        apply(&c);
    }
}
