//! What reaches stderr: the test re-runs itself as a child process (one subscriber per process)
//! with different `SHALE_LOG` values and levels, and reads the child's stderr.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::process::Command;

const ME: &str = "child_process_logs";

/// The child: installs with `SHALE_LOG_TEST_INIT` as the caller's level, optionally changes it
/// to `SHALE_LOG_TEST_SET` (as librados does from ceph.conf), then logs one line per level.
#[test]
fn child_process_logs() {
    let Some(init) = std::env::var_os("SHALE_LOG_TEST_INIT") else {
        return; // run directly: nothing to do (the parent test drives it)
    };
    let init = init.to_string_lossy().into_owned();
    shale_log::init((!init.is_empty()).then_some(init.as_str()));
    if let Ok(set) = std::env::var("SHALE_LOG_TEST_SET") {
        shale_log::set_filter(&set).expect("valid level");
    }
    tracing::error!("an error line");
    tracing::warn!("a warning for people");
    tracing::info!("an info line");
    tracing::debug!("a debug detail");
}

fn child(shale_log: Option<&str>, init: &str, set: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", ME, "--nocapture", "--test-threads=1"])
        .env("SHALE_LOG_TEST_INIT", init)
        .env_remove("SHALE_LOG_TEST_SET")
        .env_remove("SHALE_LOG");
    if let Some(v) = shale_log {
        cmd.env("SHALE_LOG", v);
    }
    if let Some(v) = set {
        cmd.env("SHALE_LOG_TEST_SET", v);
    }
    let out = cmd.output().expect("run the child");
    assert!(out.status.success(), "child failed: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn warn_reaches_stderr_by_default() {
    let err = child(None, "", None);
    assert!(
        err.contains("WARN") && err.contains("a warning for people"),
        "{err}"
    );
    assert!(err.contains("an error line"), "{err}");
    assert!(
        !err.contains("an info line") && !err.contains("a debug detail"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "no colour codes: {err:?}");
}

#[test]
fn shale_log_error_suppresses_warnings() {
    let err = child(Some("error"), "", None);
    assert!(err.contains("an error line"), "{err}");
    assert!(!err.contains("a warning for people"), "{err}");
}

#[test]
fn shale_log_debug_and_target_filters() {
    let err = child(Some("debug"), "", None);
    assert!(
        err.contains("a debug detail") && err.contains("an info line"),
        "{err}"
    );
    // A filter naming another target only: this test's own lines are off.
    let err = child(Some("shale_engine=debug"), "", None);
    assert!(!err.contains("a warning for people"), "{err}");
}

#[test]
fn ceph_levels_from_config_and_env_wins() {
    // A config's Ceph level (librados: debug_shale = 0/5) lowers the caller's default.
    let err = child(None, "", Some("0/5"));
    assert!(
        err.contains("an error line") && !err.contains("a warning for people"),
        "{err}"
    );
    let err = child(None, "", Some("10"));
    assert!(err.contains("a debug detail"), "{err}");
    // SHALE_LOG wins over the config.
    let err = child(Some("warn"), "", Some("20"));
    assert!(
        err.contains("a warning for people") && !err.contains("a debug detail"),
        "{err}"
    );
    // A bad SHALE_LOG is reported and the caller's level used.
    let err = child(Some("loud"), "info", None);
    assert!(
        err.contains("SHALE_LOG") && err.contains("an info line"),
        "{err}"
    );
}
