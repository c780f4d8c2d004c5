//! The conformance suite on the local-directory store, plus what only a directory can show:
//! durability layout, crash leftovers, path safety, and a Create race between processes.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shale_store::{conformance, ErrorKind, LocalStore, ObjectStore, PutMode};

#[test]
fn local_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    conformance::run_all(&store);
    conformance::identical_rewrite_changes_version(&store);
    // Everything was deleted again, and empty directories went with it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, [".shale-lock", ".shale-tmp"]);
    assert_eq!(
        std::fs::read_dir(dir.path().join(".shale-tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn two_handles_on_one_directory_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let a = LocalStore::open(dir.path()).unwrap();
    let b = LocalStore::open(dir.path()).unwrap();
    let v = a
        .put(
            "pool/names/img",
            Bytes::from_static(b"id1"),
            PutMode::Create,
        )
        .unwrap();
    assert_eq!(
        b.get("pool/names/img").unwrap(),
        (Bytes::from_static(b"id1"), v.clone())
    );
    assert_eq!(
        b.put("pool/names/img", Bytes::new(), PutMode::Create)
            .unwrap_err()
            .kind(),
        ErrorKind::Exists
    );
    b.put(
        "pool/names/img",
        Bytes::from_static(b"id2"),
        PutMode::Update(v),
    )
    .unwrap();
    assert_eq!(a.get("pool/names/img").unwrap().0.as_ref(), b"id2");
}

#[test]
fn objects_are_plain_files_and_reserved_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    store
        .put(
            "p/images/1/seg/0001",
            Bytes::from_static(b"data"),
            PutMode::Create,
        )
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("p/images/1/seg/0001")).unwrap(),
        b"data"
    );
    for key in [".shale-tmp/x", ".shale-lock", ".shale-tmp"] {
        let e = store
            .put(key, Bytes::new(), PutMode::Overwrite)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{key}: {e}");
    }
    // A stray temp file (a crashed put) is never listed or read.
    std::fs::write(dir.path().join(".shale-tmp/999-1"), b"partial").unwrap();
    let keys: Vec<_> = store.list("").unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["p/images/1/seg/0001"]);
}

#[test]
fn a_key_cannot_be_both_object_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    store
        .put("a/b", Bytes::from_static(b"file"), PutMode::Create)
        .unwrap();
    let e = store
        .put("a/b/c", Bytes::new(), PutMode::Create)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    store
        .put("x/y/z", Bytes::from_static(b"deep"), PutMode::Create)
        .unwrap();
    let e = store
        .put("x/y", Bytes::new(), PutMode::Overwrite)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    assert_eq!(store.get("x/y").unwrap_err().kind(), ErrorKind::NotFound);
    store.delete("x/y").unwrap(); // a directory is not an object: nothing to delete
    assert_eq!(store.get("x/y/z").unwrap().0.as_ref(), b"deep");
    assert_eq!(store.get("a/b").unwrap().0.as_ref(), b"file");
}

#[test]
fn objects_outside_the_store_are_unreachable() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join("secret"), b"s").unwrap();
    let store = LocalStore::open(parent.path().join("store")).unwrap();
    for key in ["../secret", "a/../../secret", "/secret"] {
        assert_eq!(
            store.get(key).unwrap_err().kind(),
            ErrorKind::Invalid,
            "{key}"
        );
    }
    // A list prefix is a plain string; one that looks like a path escape finds nothing.
    assert!(store.list("../").unwrap().is_empty());
    assert!(store.list("/").unwrap().is_empty());
}

const CHILD_ENV: &str = "SHALE_STORE_RACE_CHILD";

/// Run in a child process by `create_race_between_processes`: wait for the start signal, then
/// try to Create the shared key and report the outcome on stdout.
#[test]
fn race_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as a child
    };
    let (root, id) = spec.split_once('|').unwrap();
    let root = Path::new(root);
    let store = LocalStore::open(root).unwrap();
    let go = root.join("go");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "no start signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut results = Vec::new();
    for round in 0..20 {
        let r = store.put(
            &format!("race/{round}"),
            Bytes::from(id.to_string()),
            PutMode::Create,
        );
        results.push(match r {
            Ok(_) => "WON".to_string(),
            Err(e) if e.kind() == ErrorKind::Exists => "EXISTS".to_string(),
            Err(e) => format!("ERROR {e}"),
        });
    }
    println!("RESULTS {id} {}", results.join(","));
}

#[test]
fn create_race_between_processes() {
    let dir = tempfile::tempdir().unwrap();
    LocalStore::open(dir.path()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..6)
        .map(|i| {
            Command::new(&exe)
                .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, format!("{}|child{i}", dir.path().display()))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.path().join("go"), b"").unwrap();
    let mut per_round_winners = vec![Vec::new(); 20];
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        // libtest may print "test race_child ... " on the same line first.
        let line = text
            .lines()
            .find_map(|l| l.find("RESULTS ").map(|i| &l[i..]))
            .expect("child printed no result");
        let mut parts = line.split(' ').skip(1);
        let id = parts.next().unwrap().to_string();
        for (round, r) in parts.next().unwrap().split(',').enumerate() {
            match r {
                "WON" => per_round_winners[round].push(id.clone()),
                "EXISTS" => {}
                other => panic!("{id} round {round}: {other}"),
            }
        }
    }
    let store = LocalStore::open(dir.path()).unwrap();
    for (round, winners) in per_round_winners.iter().enumerate() {
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let data = store.get(&format!("race/{round}")).unwrap().0;
        assert_eq!(
            data.as_ref(),
            winners[0].as_bytes(),
            "round {round}: the winner's bytes"
        );
    }
}

/// `rename_local` moves an object's file to another key without copying it: the old key is
/// gone (even for a handle the store kept from an earlier ranged read), the bytes are under
/// the new key, a taken destination or a missing source is an error that changes nothing, and
/// an emptied directory goes away. Stores that are not local directories decline.
#[test]
fn rename_local_moves_the_file_and_forgets_its_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let body = Bytes::from(vec![5u8; 10_000]);
    store.put("p/seg/1", body.clone(), PutMode::Create).unwrap();
    store
        .put("p/free/2", Bytes::from_static(b"x"), PutMode::Create)
        .unwrap();
    assert_eq!(
        store.get_range("p/seg/1", 0..10).unwrap(),
        body.slice(0..10)
    );
    let ino = |p: &str| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.path().join(p)).unwrap())
    };
    let before = ino("p/seg/1");
    // Destination taken: nothing moves.
    let e = store.rename_local("p/seg/1", "p/free/2").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exists, "{e}");
    assert_eq!(store.get("p/seg/1").unwrap().0, body);
    assert!(store.rename_local("p/seg/1", "p/free/1").unwrap());
    assert_eq!(ino("p/free/1"), before, "the same file, not a copy");
    assert_eq!(store.get("p/free/1").unwrap().0, body);
    for r in [
        store.get_range("p/seg/1", 0..10).map(|_| ()),
        store.get("p/seg/1").map(|_| ()),
    ] {
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NotFound);
    }
    assert!(
        !dir.path().join("p/seg").exists(),
        "the empty directory is pruned"
    );
    let e = store.rename_local("p/seg/1", "p/free/3").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let mem = shale_store::MemoryStore::new();
    mem.put("a", body, PutMode::Create).unwrap();
    assert!(!mem.rename_local("a", "b").unwrap());
    assert!(mem.get("a").is_ok());
}
