//! The `shale` binary end to end on a local-directory store: happy paths, JSON output, and bad
//! input that must fail with a clear message, a nonzero exit and no change to the store.

use std::path::Path;
use std::process::{Command, Output};

fn shale(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shale"))
        .arg("--store")
        .arg(format!("file://{}", store.display()))
        .args(args)
        .env_remove("SHALE_CONF")
        .output()
        .expect("run shale")
}

fn ok(store: &Path, args: &[&str]) -> String {
    let o = shale(store, args);
    assert!(
        o.status.success(),
        "shale {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn tree(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    fn walk(d: &Path, base: &Path, out: &mut Vec<(String, u64)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if rel.starts_with(".shale-tmp") || rel.starts_with(".shale-lock") {
                continue;
            }
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push((rel, e.metadata().unwrap().len()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn create_import_export_roundtrip_and_json() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    ok(&store, &["create", "rbd/a", "--size", "10M"]);
    let info: serde_json::Value =
        serde_json::from_str(&ok(&store, &["info", "rbd/a", "--format", "json"])).unwrap();
    assert_eq!(info["size"], 10 << 20);
    let src = t.path().join("src.raw");
    let mut data = vec![0u8; 3_000_001];
    for (i, b) in data.iter_mut().enumerate().skip(1_000_000).take(70_000) {
        *b = (i % 251) as u8 + 1;
    }
    std::fs::write(&src, &data).unwrap();
    let out = ok(
        &store,
        &["import", src.to_str().unwrap(), "rbd/b", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["skipped_zero"].as_u64().unwrap() > 2_000_000,
        "import must skip zero runs: {v}"
    );
    let dst = t.path().join("dst.raw");
    ok(&store, &["export", "rbd/b", dst.to_str().unwrap()]);
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    let ls: serde_json::Value =
        serde_json::from_str(&ok(&store, &["ls", "--format", "json"])).unwrap();
    assert_eq!(ls, serde_json::json!(["a", "b"]));
    ok(
        &store,
        &["resize", "rbd/b", "--size", "1M", "--allow-shrink"],
    );
    ok(&store, &["rm", "rbd/b"]);
    ok(&store, &["rename", "rbd/a", "rbd/c"]);
    assert_eq!(ok(&store, &["ls"]).trim(), "c");
    let w = ok(
        &store,
        &[
            "bench",
            "rbd/c",
            "--io-type",
            "write",
            "--io-total",
            "1M",
            "--io-pattern",
            "rand",
            "--format",
            "json",
        ],
    );
    assert!(w.contains("ops_per_sec"));
}

#[test]
fn bad_input_fails_clearly_and_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    ok(&store, &["create", "rbd/a", "--size", "1M"]);
    let before = tree(&store);
    let long = format!("rbd/{}", "x".repeat(300));
    let cases: Vec<Vec<&str>> = vec![
        vec!["create", "../x", "--size", "1G"],
        vec!["create", "a/b/c", "--size", "1G"],
        vec!["create", "rbd/", "--size", "1G"],
        vec!["create", &long, "--size", "1G"],
        vec!["create", "rbd/n", "--size", "-1"],
        vec!["create", "rbd/n", "--size", "100000P"],
        vec!["create", "rbd/n", "--size", "ten"],
        vec!["create", "nopool/n", "--size", "1G"],
        vec!["create", "rbd/a", "--size", "1G"],
        vec!["info", "rbd/missing"],
        vec!["rm", "rbd/missing"],
        vec!["resize", "rbd/a", "--size", "1K"],
        vec!["export", "rbd/missing", "/tmp/never"],
        vec!["import", "/nonexistent/file", "rbd/z"],
        vec!["pool", "rm", "rbd"],
        vec!["pool", "create", "../p"],
        vec!["bench", "rbd/a", "--io-type", "write", "--io-size", "0"],
    ];
    for args in cases {
        let o = shale(&store, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains("error"), "{args:?}: no clear error: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(tree(&store), before, "{args:?} changed the store");
    }
    let bad_store = Command::new(env!("CARGO_BIN_EXE_shale"))
        .args(["--store", "ftp://x", "ls"])
        .output()
        .unwrap();
    assert!(!bad_store.status.success());
    assert!(
        String::from_utf8_lossy(&bad_store.stderr).contains("file://"),
        "should list supported schemes"
    );
}
