//! The `shale` binary end to end on a local-directory store: happy paths, JSON output, and bad
//! input that must fail with a clear message, a nonzero exit and no change to the store.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

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

#[test]
fn snapshots_clones_diffs_and_locks_from_the_command_line() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let raw = t.path().join("base.raw");
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&raw, &data).unwrap();
    ok(&store, &["import", raw.to_str().unwrap(), "rbd/base"]);
    ok(&store, &["snap", "create", "rbd/base@s1"]);
    let snaps: serde_json::Value =
        serde_json::from_str(&ok(&store, &["snap", "ls", "rbd/base", "--format", "json"])).unwrap();
    assert_eq!(snaps[0]["name"], "s1");
    // Refusals say what to do.
    let o = shale(&store, &["clone", "rbd/base@s1", "rbd/vm"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("protect"));
    ok(&store, &["snap", "protect", "rbd/base@s1"]);
    ok(&store, &["clone", "rbd/base@s1", "rbd/vm"]);
    assert_eq!(ok(&store, &["children", "rbd/base@s1"]).trim(), "rbd/vm");
    let o = shale(&store, &["snap", "unprotect", "rbd/base@s1"]);
    assert!(!o.status.success(), "unprotect with a clone must fail");
    let o = shale(&store, &["rm", "rbd/base"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("snapshot"));
    // Change the head, diff it, ship the diff into a copy, compare.
    ok(&store, &["create", "rbd/scratch", "--size", "1M"]);
    let d0 = t.path().join("full.diff");
    let d1 = t.path().join("inc.diff");
    ok(
        &store,
        &["export-diff", "rbd/base@s1", d0.to_str().unwrap()],
    );
    ok(
        &store,
        &[
            "bench",
            "rbd/base",
            "--io-type",
            "write",
            "--io-size",
            "4K",
            "--io-total",
            "64K",
            "--io-threads",
            "1",
        ],
    );
    ok(&store, &["snap", "create", "rbd/base@s2"]);
    ok(
        &store,
        &[
            "export-diff",
            "--from-snap",
            "s1",
            "rbd/base@s2",
            d1.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::metadata(&d1).unwrap().len() > 65536,
        "the incremental diff must carry the new writes"
    );
    let s2 = t.path().join("s2.raw");
    ok(&store, &["export", "rbd/base@s2", s2.to_str().unwrap()]);
    let s2 = std::fs::read(&s2).unwrap();
    assert!(s2 != data);
    // The object map is derived: the head's first object changed since s2? No: since s2 nothing.
    let om: serde_json::Value = serde_json::from_str(&ok(
        &store,
        &["object-map", "rbd/base@s2", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(om[0], "exists", "object 0 was written between s1 and s2");
    let om: serde_json::Value =
        serde_json::from_str(&ok(&store, &["object-map", "rbd/base", "--format", "json"])).unwrap();
    assert_eq!(om[0], "exists-clean", "nothing written since s2");
    ok(&store, &["create", "rbd/copy", "--size", "1"]);
    ok(&store, &["import-diff", d0.to_str().unwrap(), "rbd/copy"]);
    ok(&store, &["import-diff", d1.to_str().unwrap(), "rbd/copy"]);
    let back = t.path().join("copy.raw");
    ok(&store, &["export", "rbd/copy@s2", back.to_str().unwrap()]);
    assert!(
        std::fs::read(&back).unwrap() == s2,
        "import-diff of export-diff must reproduce the snapshot"
    );
    let s1back = t.path().join("copy1.raw");
    ok(&store, &["export", "rbd/copy@s1", s1back.to_str().unwrap()]);
    assert!(
        std::fs::read(&s1back).unwrap() == data,
        "the first diff's end snapshot must hold the first state"
    );
    let o = shale(
        &store,
        &["import-diff", d1.to_str().unwrap(), "rbd/scratch"],
    );
    assert!(
        !o.status.success(),
        "a diff from a snapshot the target lacks must be refused"
    );
    let du: serde_json::Value =
        serde_json::from_str(&ok(&store, &["du", "--format", "json"])).unwrap();
    assert!(du["total_used_size"].as_u64().unwrap() >= 2_000_000);
    // Flatten, then the base can go.
    ok(&store, &["flatten", "rbd/vm"]);
    ok(&store, &["snap", "unprotect", "rbd/base@s1"]);
    ok(&store, &["snap", "purge", "rbd/base"]);
    ok(&store, &["rm", "rbd/base"]);
    ok(&store, &["snap", "purge", "rbd/copy"]);
    ok(&store, &["rm", "rbd/copy"]);
    let vm = t.path().join("vm.raw");
    ok(&store, &["export", "rbd/vm", vm.to_str().unwrap()]);
    assert!(
        std::fs::read(&vm).unwrap() == data,
        "a flattened clone keeps its data"
    );
    // Advisory locks.
    ok(&store, &["lock", "add", "rbd/vm", "mylock"]);
    let l: serde_json::Value =
        serde_json::from_str(&ok(&store, &["lock", "ls", "rbd/vm", "--format", "json"])).unwrap();
    let locker = l["lockers"][0]["locker"].as_str().unwrap().to_string();
    let o = shale(&store, &["lock", "add", "rbd/vm", "other"]);
    assert!(
        !o.status.success(),
        "a second exclusive lock must be refused"
    );
    ok(&store, &["lock", "rm", "rbd/vm", "mylock", &locker]);
    ok(&store, &["gc", "rbd/vm"]);
}
