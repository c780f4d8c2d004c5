//! Logging that reaches people: one `tracing` subscriber per process, writing plain lines
//! (no colours) to stderr.
//!
//! ```text
//!   level:  SHALE_LOG, if set           (the person running the process wins)
//!           else what the caller gives  (the CLI: nothing; librados: ceph.conf shale_log /
//!                                        debug_shale, via set_filter)
//!           else "warn"
//! ```
//!
//! A level is a filter [`parse`] understands: a name (`error`, `warn`, `info`, `debug`,
//! `trace`, `off`), a Ceph debug level (`0`, `1`, `5`, `10`, `20`, or Ceph's `log/memory` pair
//! such as `1/5`, of which the first counts), or `tracing` directives such as
//! `warn,shale_engine=debug` (their levels may be Ceph numbers too).
//!
//! Installing never panics and never replaces a subscriber the host process installed first
//! (a Rust program using the libraries keeps its own); then this crate changes nothing.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a front end / tool / device layer: real time is fine here
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// The environment variable naming the level.
pub const ENV: &str = "SHALE_LOG";
/// The level when neither `SHALE_LOG` nor the caller names one.
pub const DEFAULT: &str = "warn";

struct Installed {
    /// Changes the filter of the subscriber this crate installed.
    handle: reload::Handle<EnvFilter, Registry>,
    /// Whether `SHALE_LOG` chose the filter (then [`set_filter`] leaves it alone).
    from_env: bool,
    /// The filter in force, as [`parse`] wrote it.
    current: Mutex<String>,
}

/// None: another subscriber was installed first (or installing failed).
static STATE: OnceLock<Option<Installed>> = OnceLock::new();

/// Install the process's subscriber once: level from `SHALE_LOG` if set, else `spec`, else
/// [`DEFAULT`]. Later calls do nothing. Never panics; if the host process already installed a
/// global subscriber, that one stays and this crate changes nothing.
pub fn init(spec: Option<&str>) {
    STATE.get_or_init(|| install(spec));
}

/// [`init`] with the level from `SHALE_LOG` or [`DEFAULT`].
pub fn init_from_env() {
    init(None)
}

/// Whether this crate's subscriber is the one in force (false before [`init`], or when the host
/// process had its own).
pub fn installed() -> bool {
    matches!(STATE.get(), Some(Some(_)))
}

/// Change the level of the subscriber [`init`] installed (installing it first if needed), e.g.
/// from a config file. Does nothing when `SHALE_LOG` is set (it wins) or when the host process
/// has its own subscriber. `Err` (and no change) if `spec` is not a valid level.
pub fn set_filter(spec: &str) -> Result<(), String> {
    let directives = parse(spec)?;
    init(None);
    let Some(Some(st)) = STATE.get() else {
        return Ok(());
    };
    if st.from_env {
        return Ok(());
    }
    let mut cur = st.current.lock().unwrap_or_else(|e| e.into_inner());
    if *cur == directives {
        return Ok(());
    }
    let filter = EnvFilter::try_new(&directives).map_err(|e| format!("{spec:?}: {e}"))?;
    st.handle
        .reload(filter)
        .map_err(|e| format!("cannot change the log level: {e}"))?;
    *cur = directives;
    Ok(())
}

/// The filter in force (as [`parse`] wrote it), if this crate installed the subscriber.
pub fn current() -> Option<String> {
    match STATE.get() {
        Some(Some(st)) => Some(st.current.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        _ => None,
    }
}

/// A level as `tracing` filter directives: names pass through (`warning` is `warn`), Ceph
/// numbers map 0 → error, 1-4 → warn, 5-9 → info, 10-19 → debug, 20+ → trace (of a Ceph pair
/// `a/b` the log level `a` counts), directives (`target=level`, comma-separated) are checked
/// and their numeric levels mapped the same way. `Err` says what is wrong.
pub fn parse(spec: &str) -> Result<String, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty log level".to_string());
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mapped = match part.rsplit_once('=') {
            Some((target, level)) => format!("{target}={}", level_name(level).unwrap_or(level)),
            // A bare word must be a level: a typo must not silently become a target name.
            None => level_name(part)
                .ok_or_else(|| {
                    format!("bad log level {spec:?}: {part:?} is not a level (error, warn, info, debug, trace, off, or 0-20)")
                })?
                .to_string(),
        };
        out.push(mapped);
    }
    let directives = out.join(",");
    EnvFilter::try_new(&directives).map_err(|e| format!("bad log level {spec:?}: {e}"))?;
    Ok(directives)
}

/// The `tracing` level a name or Ceph number stands for.
fn level_name(s: &str) -> Option<&'static str> {
    let s = s.trim();
    let first = s.split_once('/').map_or(s, |(a, _)| a).trim();
    if let Ok(n) = first.parse::<u32>() {
        return Some(match n {
            0 => "error",
            1..=4 => "warn",
            5..=9 => "info",
            10..=19 => "debug",
            _ => "trace",
        });
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "off" | "none" => "off",
        "error" | "err" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        _ => return None,
    })
}

fn install(spec: Option<&str>) -> Option<Installed> {
    let env = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty());
    let mut complaint = None;
    let mut from_env = false;
    let chosen = match env.as_deref().map(parse) {
        Some(Ok(d)) => {
            from_env = true;
            d
        }
        Some(Err(e)) => {
            complaint = Some(format!("{ENV}: {e}; ignored"));
            spec.and_then(|s| parse(s).ok())
                .unwrap_or_else(|| DEFAULT.to_string())
        }
        None => spec
            .and_then(|s| parse(s).ok())
            .unwrap_or_else(|| DEFAULT.to_string()),
    };
    let filter = EnvFilter::try_new(&chosen).unwrap_or_else(|_| EnvFilter::new(DEFAULT));
    let (filter, handle) = reload::Layer::new(filter);
    let output = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        // A failed write to stderr must not print (eprint! would panic on a closed stderr).
        .log_internal_errors(false);
    let subscriber = tracing_subscriber::registry().with(filter).with(output);
    if subscriber.try_init().is_err() {
        return None;
    }
    if let Some(c) = complaint {
        tracing::warn!("{c}");
    }
    Some(Installed {
        handle,
        from_env,
        current: Mutex::new(chosen),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceph_levels_names_and_directives() {
        assert_eq!(parse("0").as_deref(), Ok("error"));
        assert_eq!(parse("1").as_deref(), Ok("warn"));
        assert_eq!(parse("0/5").as_deref(), Ok("error"));
        assert_eq!(parse("1/5").as_deref(), Ok("warn"));
        assert_eq!(parse("5").as_deref(), Ok("info"));
        assert_eq!(parse("10").as_deref(), Ok("debug"));
        assert_eq!(parse(" 20/20 ").as_deref(), Ok("trace"));
        assert_eq!(parse("30").as_deref(), Ok("trace"));
        assert_eq!(parse("WARNING").as_deref(), Ok("warn"));
        assert_eq!(parse("debug").as_deref(), Ok("debug"));
        assert_eq!(parse("off").as_deref(), Ok("off"));
        assert_eq!(
            parse("warn,shale_engine=debug").as_deref(),
            Ok("warn,shale_engine=debug")
        );
        assert_eq!(
            parse("shale_engine=10, shale_rados=0").as_deref(),
            Ok("shale_engine=debug,shale_rados=error")
        );
        assert!(parse("").is_err());
        assert!(parse("shale_engine=loud").is_err());
        assert!(parse("wrn").is_err());
    }

    #[test]
    fn never_panics_and_keeps_a_host_subscriber() {
        // Install, change, and install again: the second init is a no-op.
        init(Some("info"));
        init(Some("trace"));
        if installed() && std::env::var(ENV).is_err() {
            assert_eq!(current().as_deref(), Some("info"));
            assert_eq!(set_filter("10"), Ok(()));
            assert_eq!(current().as_deref(), Some("debug"));
        }
        assert!(set_filter("nonsense=loud").is_err());
        // A host's own subscriber: our try_init fails quietly (the global one is taken now).
        assert!(tracing_subscriber::registry().try_init().is_err());
    }
}
