//! The one test suite every [`ObjectStore`] implementation and decorator must pass.
//!
//! Each check is a public function taking `&dyn ObjectStore`, so the tests of any crate can run
//! it against any store; [`run_all`] runs them all. A check panics (like `assert!`) on failure.
//! Every check works under its own fresh key prefix ([`unique_prefix`]) and never lists from the
//! root, so the suite can run against a shared, non-empty bucket, and several runs at once.
//!
//! [`identical_rewrite_changes_version`] is not in [`run_all`]: S3's ETag names the content, so
//! it holds for the local and memory stores only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::{ErrorKind, ObjectStore, PutMode, Version};

/// A key prefix (ending in `/`) that no other check, thread or process uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conformance/{}-{nanos:x}-{}/{test}/",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run every check that all stores must pass.
pub fn run_all(store: &dyn ObjectStore) {
    put_get(store);
    empty_and_large_objects(store);
    get_range(store);
    overwrite(store);
    delete(store);
    list(store);
    invalid_keys(store);
    create_conflict(store);
    update_versions(store);
    update_missing(store);
    create_race(store, 8);
    update_race(store, 8);
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[track_caller]
fn expect_kind<T: std::fmt::Debug>(
    r: crate::Result<T>,
    kind: ErrorKind,
    what: &str,
) -> crate::Error {
    match r {
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: wrong error kind: {e}");
            e
        }
    }
}

/// put then get returns the bytes and the version put returned; errors name the key.
pub fn put_get(store: &dyn ObjectStore) {
    let p = unique_prefix("put_get");
    let key = format!("{p}obj");
    let v = store
        .put(&key, b("hello"), PutMode::Overwrite)
        .expect("put");
    let (data, v2) = store.get(&key).expect("get");
    assert_eq!(data, b("hello"));
    assert_eq!(v, v2, "get must return the version put returned");
    let missing = format!("{p}missing");
    let e = expect_kind(
        store.get(&missing),
        ErrorKind::NotFound,
        "get of a missing key",
    );
    assert!(
        e.to_string().contains(&missing),
        "error should name the key: {e}"
    );
    assert!(
        e.to_string().contains(&store.url()),
        "error should name the store: {e}"
    );
    expect_kind(
        store.get_range(&missing, 0..1),
        ErrorKind::NotFound,
        "get_range of a missing key",
    );
    store.delete(&key).expect("delete");
}

/// A zero-byte object and a multi-MiB one round-trip.
pub fn empty_and_large_objects(store: &dyn ObjectStore) {
    let p = unique_prefix("sizes");
    let empty = format!("{p}empty");
    store
        .put(&empty, Bytes::new(), PutMode::Create)
        .expect("put empty");
    assert!(store.get(&empty).expect("get empty").0.is_empty());
    assert!(store
        .get_range(&empty, 0..10)
        .expect("range of empty")
        .is_empty());
    let big = format!("{p}big");
    let data: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    store
        .put(&big, Bytes::from(data.clone()), PutMode::Create)
        .expect("put big");
    assert_eq!(store.get(&big).expect("get big").0.as_ref(), &data[..]);
    let r = store
        .get_range(&big, 1_000_003..2_500_000)
        .expect("range of big");
    assert_eq!(r.as_ref(), &data[1_000_003..2_500_000]);
    let listed = store.list(&p).expect("list");
    let sizes: Vec<(String, u64)> = listed.into_iter().map(|m| (m.key, m.size)).collect();
    assert_eq!(sizes, vec![(big.clone(), 3 << 20), (empty.clone(), 0)]);
    store.delete(&empty).expect("delete");
    store.delete(&big).expect("delete");
}

/// Ranges: inside, whole, clamped at the end, starting at or past the end, empty, reversed.
pub fn get_range(store: &dyn ObjectStore) {
    let p = unique_prefix("get_range");
    let key = format!("{p}digits");
    store
        .put(&key, b("0123456789"), PutMode::Overwrite)
        .expect("put");
    let cases: &[(u64, u64, &str)] = &[
        (2, 5, "234"),
        (0, 10, "0123456789"),
        (0, 1, "0"),
        (9, 10, "9"),
        (5, 100, "56789"),
        (0, u64::MAX, "0123456789"),
        (3, 3, ""),
        (10, 20, ""),
        (50, 60, ""),
    ];
    for &(s, e, want) in cases {
        let got = store
            .get_range(&key, s..e)
            .unwrap_or_else(|err| panic!("get_range {s}..{e}: {err}"));
        assert_eq!(got, b(want), "get_range {s}..{e}");
    }
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 5..2;
    expect_kind(
        store.get_range(&key, reversed),
        ErrorKind::Invalid,
        "reversed range",
    );
    store.delete(&key).expect("delete");
}

/// Overwrite replaces the bytes and the version.
pub fn overwrite(store: &dyn ObjectStore) {
    let p = unique_prefix("overwrite");
    let key = format!("{p}obj");
    let v1 = store
        .put(&key, b("first"), PutMode::Overwrite)
        .expect("put 1");
    let v2 = store
        .put(&key, b("second, longer"), PutMode::Overwrite)
        .expect("put 2");
    assert_ne!(v1, v2, "different content must get a different version");
    assert_eq!(store.get(&key).expect("get"), (b("second, longer"), v2));
    let v3 = store.put(&key, b("3"), PutMode::Overwrite).expect("put 3");
    assert_eq!(store.get(&key).expect("get"), (b("3"), v3));
    store.delete(&key).expect("delete");
}

/// Delete removes the object; deleting again, or a key never written, succeeds.
pub fn delete(store: &dyn ObjectStore) {
    let p = unique_prefix("delete");
    let key = format!("{p}a/b/obj");
    let other = format!("{p}a/keep");
    store.put(&key, b("x"), PutMode::Overwrite).expect("put");
    store.put(&other, b("y"), PutMode::Overwrite).expect("put");
    store.delete(&key).expect("delete");
    expect_kind(store.get(&key), ErrorKind::NotFound, "get after delete");
    expect_kind(
        store.get_range(&key, 0..1),
        ErrorKind::NotFound,
        "get_range after delete",
    );
    store.delete(&key).expect("second delete");
    store
        .delete(&format!("{p}never/written"))
        .expect("delete of a missing key");
    let keys: Vec<String> = store
        .list(&p)
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, vec![other.clone()]);
    // The key can be created again after a delete.
    store
        .put(&key, b("again"), PutMode::Create)
        .expect("create after delete");
    assert_eq!(store.get(&key).expect("get").0, b("again"));
    store.delete(&key).expect("delete");
    store.delete(&other).expect("delete");
    assert!(store.list(&p).expect("list").is_empty());
}

/// list: plain string prefixes, nested keys, sorted, sizes, nothing outside the prefix.
pub fn list(store: &dyn ObjectStore) {
    let p = unique_prefix("list");
    let names = ["c", "a", "b/d/e", "ba", "b/c", "b/d/f/g", "bz/x"];
    for (i, n) in names.iter().enumerate() {
        store
            .put(
                &format!("{p}{n}"),
                Bytes::from(vec![7u8; i]),
                PutMode::Create,
            )
            .expect("put");
    }
    let keys = |prefix: &str| -> Vec<String> {
        store
            .list(&format!("{p}{prefix}"))
            .unwrap_or_else(|e| panic!("list {prefix:?}: {e}"))
            .into_iter()
            .map(|m| m.key.strip_prefix(&p).unwrap_or(&m.key).to_string())
            .collect()
    };
    assert_eq!(
        keys(""),
        ["a", "b/c", "b/d/e", "b/d/f/g", "ba", "bz/x", "c"]
    );
    assert_eq!(keys("b"), ["b/c", "b/d/e", "b/d/f/g", "ba", "bz/x"]);
    assert_eq!(keys("b/"), ["b/c", "b/d/e", "b/d/f/g"]);
    assert_eq!(keys("b/d"), ["b/d/e", "b/d/f/g"]);
    assert_eq!(keys("b/d/f/g"), ["b/d/f/g"]);
    assert_eq!(keys("bz"), ["bz/x"]);
    assert!(keys("zz").is_empty());
    assert!(keys("b/q/").is_empty());
    let metas = store.list(&p).expect("list");
    for m in &metas {
        let name = m.key.strip_prefix(&p).unwrap_or(&m.key);
        let i = names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("unexpected {name}"));
        assert_eq!(m.size, i as u64, "size of {name}");
    }
    for n in names {
        store.delete(&format!("{p}{n}")).expect("delete");
    }
    assert!(keys("").is_empty());
}

/// Malformed keys are `Invalid` for every call and write nothing.
pub fn invalid_keys(store: &dyn ObjectStore) {
    let p = unique_prefix("invalid");
    let long = format!("{p}{}", "x".repeat(1100));
    let bad = [
        String::new(),
        "/abs".to_string(),
        format!("{p}a//b"),
        format!("{p}./x"),
        format!("{p}../x"),
        format!("{p}x/.."),
        format!("{p}x/"),
        format!("{p}x\0y"),
        long,
    ];
    for key in &bad {
        let what = format!("key {key:?}");
        for mode in [
            PutMode::Overwrite,
            PutMode::Create,
            PutMode::Update(Version("1".into())),
        ] {
            expect_kind(
                store.put(key, b("x"), mode),
                ErrorKind::Invalid,
                &format!("put {what}"),
            );
        }
        expect_kind(store.get(key), ErrorKind::Invalid, &format!("get {what}"));
        expect_kind(
            store.get_range(key, 0..1),
            ErrorKind::Invalid,
            &format!("get_range {what}"),
        );
        expect_kind(
            store.delete(key),
            ErrorKind::Invalid,
            &format!("delete {what}"),
        );
    }
    let listed = store.list(&p).expect("list");
    assert!(listed.is_empty(), "invalid puts wrote {listed:?}");
}

/// Create on an existing key fails `Exists` and leaves the object alone.
pub fn create_conflict(store: &dyn ObjectStore) {
    let p = unique_prefix("create");
    let key = format!("{p}obj");
    let v = store.put(&key, b("one"), PutMode::Create).expect("create");
    let e = expect_kind(
        store.put(&key, b("two"), PutMode::Create),
        ErrorKind::Exists,
        "second create",
    );
    assert!(
        e.to_string().contains(&key),
        "error should name the key: {e}"
    );
    assert_eq!(store.get(&key).expect("get"), (b("one"), v));
    store.delete(&key).expect("delete");
}

/// Update succeeds only with the current version; a failed one changes nothing.
pub fn update_versions(store: &dyn ObjectStore) {
    let p = unique_prefix("update");
    let key = format!("{p}obj");
    let v1 = store.put(&key, b("v1"), PutMode::Create).expect("create");
    let v2 = store
        .put(&key, b("v2"), PutMode::Update(v1.clone()))
        .expect("update with current version");
    assert_ne!(v1, v2);
    assert_eq!(store.get(&key).expect("get"), (b("v2"), v2.clone()));
    expect_kind(
        store.put(&key, b("stale"), PutMode::Update(v1)),
        ErrorKind::Busy,
        "update with old version",
    );
    let bogus = Version("no-such-version".into());
    expect_kind(
        store.put(&key, b("bogus"), PutMode::Update(bogus)),
        ErrorKind::Busy,
        "update, bogus version",
    );
    assert_eq!(store.get(&key).expect("get"), (b("v2"), v2.clone()));
    let v3 = store
        .put(&key, b("v3"), PutMode::Update(v2))
        .expect("second update");
    assert_eq!(store.get(&key).expect("get"), (b("v3"), v3));
    store.delete(&key).expect("delete");
}

/// Update of an absent object is `NotFound` and creates nothing.
pub fn update_missing(store: &dyn ObjectStore) {
    let p = unique_prefix("update_missing");
    let key = format!("{p}obj");
    let v = store.put(&key, b("x"), PutMode::Create).expect("create");
    store.delete(&key).expect("delete");
    expect_kind(
        store.put(&key, b("y"), PutMode::Update(v)),
        ErrorKind::NotFound,
        "update after delete",
    );
    expect_kind(
        store.get(&key),
        ErrorKind::NotFound,
        "get after failed update",
    );
}

/// Rewriting identical bytes yields a new version, and the old one no longer updates.
/// (Local and memory stores; not S3, whose ETag is a content hash.)
pub fn identical_rewrite_changes_version(store: &dyn ObjectStore) {
    let p = unique_prefix("identical");
    let key = format!("{p}obj");
    let v1 = store.put(&key, b("same"), PutMode::Create).expect("create");
    let v2 = store
        .put(&key, b("same"), PutMode::Overwrite)
        .expect("rewrite");
    assert_ne!(v1, v2, "an identical rewrite must change the version");
    let v3 = store
        .put(&key, b("same"), PutMode::Update(v2.clone()))
        .expect("update");
    assert_ne!(v2, v3);
    expect_kind(
        store.put(&key, b("same"), PutMode::Update(v1)),
        ErrorKind::Busy,
        "update, old version",
    );
    expect_kind(
        store.put(&key, b("same"), PutMode::Update(v2)),
        ErrorKind::Busy,
        "update, old version",
    );
    // Many rewrites in a row never repeat a version (no A-B-A).
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let v = store
            .put(&key, b("same"), PutMode::Overwrite)
            .expect("rewrite");
        assert!(seen.insert(v.clone()), "version {v:?} repeated");
    }
    store.delete(&key).expect("delete");
}

/// `threads` threads Create the same key at once: exactly one wins, the rest get `Exists`, and
/// the object holds the winner's bytes.
pub fn create_race(store: &dyn ObjectStore, threads: usize) {
    let p = unique_prefix("create_race");
    let key = format!("{p}obj");
    let barrier = Barrier::new(threads);
    let results: Vec<(usize, crate::Result<Version>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (key, barrier) = (&key, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (
                        i,
                        store.put(key, Bytes::from(format!("writer {i}")), PutMode::Create),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer panicked"))
            .collect()
    });
    let mut winners = Vec::new();
    for (i, r) in results {
        match r {
            Ok(v) => winners.push((i, v)),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Exists, "loser {i}: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one creator must win: {winners:?}"
    );
    let (i, v) = &winners[0];
    assert_eq!(
        store.get(&key).expect("get"),
        (Bytes::from(format!("writer {i}")), v.clone())
    );
    store.delete(&key).expect("delete");
}

/// `threads` threads Update the same key from the same version at once: exactly one wins, the
/// rest get `Busy`.
pub fn update_race(store: &dyn ObjectStore, threads: usize) {
    let p = unique_prefix("update_race");
    let key = format!("{p}obj");
    let v0 = store
        .put(&key, b("start"), PutMode::Create)
        .expect("create");
    let barrier = Barrier::new(threads);
    let results: Vec<(usize, crate::Result<Version>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (key, barrier, v0) = (&key, &barrier, &v0);
                s.spawn(move || {
                    barrier.wait();
                    (
                        i,
                        store.put(
                            key,
                            Bytes::from(format!("writer {i}")),
                            PutMode::Update(v0.clone()),
                        ),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer panicked"))
            .collect()
    });
    let mut winners = Vec::new();
    for (i, r) in results {
        match r {
            Ok(v) => winners.push((i, v)),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Busy, "loser {i}: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one updater must win: {winners:?}"
    );
    let (i, v) = &winners[0];
    assert_eq!(
        store.get(&key).expect("get"),
        (Bytes::from(format!("writer {i}")), v.clone())
    );
    store.delete(&key).expect("delete");
}
