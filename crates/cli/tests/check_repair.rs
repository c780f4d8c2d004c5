//! `shale check` and `shale repair` on a damaged store, and the reproduction of "one lost
//! checkpoint destroys the image": no open may start from an empty map or delete segments.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shale(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shale"))
        .arg("--store")
        .arg(format!("file://{}", store.display()))
        .args(args)
        .env_remove("SHALE_CONF")
        .env("SHALE_SEGMENT_SIZE", "64K")
        .env("SHALE_CHECKPOINT_INTERVAL", "4")
        .env("SHALE_CACHE_DIR", store.with_extension("cache"))
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

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn image_dir(store: &Path) -> PathBuf {
    files(&store.join("rbd/images")).into_iter().next().unwrap()
}

/// An imported image with random overwrites and one GC: returns its export.
fn churned(t: &Path, store: &Path) -> Vec<u8> {
    let src = t.join("src.raw");
    let data: Vec<u8> = (0..4u64 << 20)
        .map(|i| ((i / 4096) * 7 + i % 13) as u8 | 1)
        .collect();
    std::fs::write(&src, &data).unwrap();
    ok(store, &["import", src.to_str().unwrap(), "rbd/a"]);
    ok(
        store,
        &[
            "bench",
            "rbd/a",
            "--io-type",
            "write",
            "--io-pattern",
            "rand",
            "--io-total",
            "1M",
        ],
    );
    ok(store, &["gc", "rbd/a", "--threshold", "0.9"]);
    export(t, store)
}

fn export(t: &Path, store: &Path) -> Vec<u8> {
    let out = t.join("out.raw");
    let _ = std::fs::remove_file(&out);
    ok(store, &["export", "rbd/a", out.to_str().unwrap()]);
    std::fs::read(&out).unwrap()
}

#[test]
fn losing_checkpoints_never_loses_segments_and_repair_recovers() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let before = churned(t.path(), &store);
    let img = image_dir(&store);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&store, &["check", "rbd/a", "--format", "json"])).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["segments_verified"].as_u64().unwrap() > 0);

    // The newest checkpoint gone: the previous one serves, nothing changes.
    let ckpts = files(&img.join("ckpt"));
    assert!(
        ckpts.len() >= 2,
        "the previous checkpoint must be kept: {ckpts:?}"
    );
    std::fs::remove_file(ckpts.last().unwrap()).unwrap();
    assert!(
        export(t.path(), &store) == before,
        "export after losing the newest checkpoint"
    );

    // Every checkpoint gone (one damaged, the rest removed): opens fail, nothing is deleted.
    let ckpts = files(&img.join("ckpt"));
    for (i, c) in ckpts.iter().enumerate() {
        if i == 0 {
            let mut b = std::fs::read(c).unwrap();
            let n = b.len() / 2;
            b[n] ^= 0x10;
            std::fs::write(c, b).unwrap();
        } else {
            std::fs::remove_file(c).unwrap();
        }
    }
    let segs = files(&img.join("seg"));
    let out = t.path().join("bad.raw");
    let o = shale(&store, &["export", "rbd/a", out.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "export must fail without a usable checkpoint"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shale repair"), "{err}");
    let o = shale(
        &store,
        &["bench", "rbd/a", "--io-type", "write", "--io-total", "64K"],
    );
    assert!(!o.status.success(), "a writable open must fail too");
    assert_eq!(
        files(&img.join("seg")),
        segs,
        "a failed open deleted segments"
    );

    let o = shale(&store, &["check", "rbd/a", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(!v["problems"].as_array().unwrap().is_empty(), "{v}");

    ok(&store, &["repair", "rbd/a"]);
    assert_eq!(files(&img.join("seg")), segs, "repair deleted segments");
    assert!(
        export(t.path(), &store) == before,
        "repair did not bring the data back"
    );
    ok(&store, &["check", "rbd/a"]);
    // And the image is writable again.
    ok(
        &store,
        &["bench", "rbd/a", "--io-type", "write", "--io-total", "64K"],
    );
}

#[test]
fn check_reports_a_missing_segment_and_a_flipped_byte() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    churned(t.path(), &store);
    let img = image_dir(&store);
    let segs = files(&img.join("seg"));
    assert!(segs.len() >= 3);
    // Flip a data byte in one segment, remove another.
    let mut b = std::fs::read(&segs[0]).unwrap();
    let n = b.len() - 100;
    b[n] ^= 1;
    std::fs::write(&segs[0], b).unwrap();
    std::fs::remove_file(&segs[1]).unwrap();
    let o = shale(&store, &["check", "rbd/a", "--format", "json"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let probs: Vec<(String, String)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["object"].as_str().unwrap().into(),
                p["problem"].as_str().unwrap().into(),
            )
        })
        .collect();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        probs
            .iter()
            .any(|(o, w)| o.ends_with(&name(&segs[0])) && w.contains("checksum")),
        "{probs:?}"
    );
    assert!(
        probs
            .iter()
            .any(|(o, w)| o.ends_with(&name(&segs[1])) && w.contains("missing")),
        "{probs:?}"
    );
    // Plain output names them too.
    let o = shale(&store, &["check", "rbd/a"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("PROBLEM"), "{text}");
}
