//! Bad input of every kind gets a clear error of the right kind and changes nothing in the store.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;

use shale_error::ErrorKind;
use shale_image::{Cluster, ImageSpec, Settings};
use shale_store::{MemoryStore, ObjectStore};

fn cluster() -> (Cluster, Arc<dyn ObjectStore>) {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let c = Cluster::with_store(store.clone(), Settings::default()).unwrap();
    c.create_image("rbd", "good", 1 << 20, 22).unwrap();
    (c, store)
}

fn snapshot(store: &dyn ObjectStore) -> Vec<(String, Vec<u8>)> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| (o.key.clone(), store.get(&o.key).unwrap().0.to_vec()))
        .collect()
}

#[test]
fn bad_names_are_refused_and_change_nothing() {
    let (c, store) = cluster();
    let before = snapshot(store.as_ref());
    let long = "n".repeat(201);
    for name in [
        "",
        "../x",
        "a/b",
        "x@y",
        ".hidden",
        "..",
        "a\\b",
        "tab\there",
        long.as_str(),
    ] {
        let e = c.create_image("rbd", name, 1 << 20, 22).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{name:?}: {e}");
        assert!(!e.to_string().is_empty());
        assert_eq!(
            c.pool_create(name).unwrap_err().kind(),
            ErrorKind::Invalid,
            "pool {name:?}"
        );
        assert!(c.open_image("rbd", name, true).is_err());
        assert!(c.remove_image("rbd", name, |_, _| {}).is_err());
    }
    for spec in ["a/b/c", "../x", "p/", "/i", "p/i@", ""] {
        assert_eq!(
            ImageSpec::parse(spec, "rbd").unwrap_err().kind(),
            ErrorKind::Invalid,
            "{spec:?}"
        );
    }
    assert_eq!(
        c.rename_image("rbd", "good", "../evil").unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(snapshot(store.as_ref()), before);
}

#[test]
fn bad_sizes_and_missing_things() {
    let (c, store) = cluster();
    let before = snapshot(store.as_ref());
    let e = c.create_image("rbd", "huge", u64::MAX, 22).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.to_string().contains("maximum"), "{e}");
    assert_eq!(
        c.create_image("rbd", "o", 1, 5).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert!(shale_image::size::parse_size("-1G", 1).is_err());
    let e = c.create_image("nopool", "x", 1, 22).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(
        e.to_string().contains("pool create"),
        "error should say what to do: {e}"
    );
    assert_eq!(
        c.open_image("rbd", "missing", false).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.remove_image("rbd", "missing", |_, _| {})
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        c.create_image("rbd", "good", 1, 22).unwrap_err().kind(),
        ErrorKind::Exists
    );
    assert_eq!(c.pool_create("rbd").unwrap_err().kind(), ErrorKind::Exists);
    assert_eq!(
        c.pool_remove("rbd", false).unwrap_err().kind(),
        ErrorKind::Busy
    );
    assert_eq!(
        c.open_image_by_id("rbd", "../x", false).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(snapshot(store.as_ref()), before);
}

#[test]
fn io_past_the_end_is_refused_and_changes_nothing() {
    let (c, store) = cluster();
    let img = c.open_image("rbd", "good", false).unwrap();
    img.write(0, &[7u8; 4096]).unwrap();
    img.flush().unwrap();
    let before = snapshot(store.as_ref());
    let size = img.size();
    for (off, len) in [
        (size, 1usize),
        (size - 100, 101),
        (u64::MAX - 10, 20),
        (size + 4096, 4096),
    ] {
        assert_eq!(
            img.write(off, &vec![1u8; len]).unwrap_err().kind(),
            ErrorKind::Invalid,
            "write {off}+{len}"
        );
        assert_eq!(
            img.write_zeroes(off, len as u64).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }
    assert_eq!(
        img.discard(u64::MAX, u64::MAX).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    // Reads crossing the end are short; starting past the end is an error.
    let mut buf = vec![0u8; 8192];
    assert_eq!(img.read(size - 100, &mut buf).unwrap(), 100);
    assert_eq!(img.read(size, &mut buf).unwrap(), 0);
    assert!(img.read(size + 1, &mut buf).is_err());
    assert_eq!(
        img.resize(u64::MAX, true).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    assert_eq!(
        img.resize(10, false).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    img.flush().unwrap();
    assert_eq!(snapshot(store.as_ref()), before);
    let mut b = vec![0u8; 4096];
    img.read(0, &mut b).unwrap();
    assert_eq!(b, vec![7u8; 4096]);
}

#[test]
fn read_only_images_refuse_writes() {
    let (c, _store) = cluster();
    let img = c.open_image("rbd", "good", true).unwrap();
    assert_eq!(img.write(0, &[1]).unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(
        img.resize(4096, true).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    assert_eq!(
        img.metadata_set("k", "v").unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
}

#[test]
fn any_size_and_unaligned_io() {
    let (c, _store) = cluster();
    c.create_image("rbd", "odd", 1000, 22).unwrap();
    let img = c.open_image("rbd", "odd", false).unwrap();
    img.write(3, b"hello").unwrap();
    img.write(995, b"12345").unwrap();
    img.close().unwrap();
    let img = c.open_image("rbd", "odd", false).unwrap();
    let mut b = vec![0u8; 1000];
    assert_eq!(img.read(0, &mut b).unwrap(), 1000);
    assert_eq!(&b[3..8], b"hello");
    assert_eq!(&b[995..], b"12345");
    img.resize(700, true).unwrap();
    img.resize(1000, false).unwrap();
    img.read(0, &mut b).unwrap();
    assert_eq!(&b[995..], &[0; 5], "shrink then grow must read zeros");
    assert_eq!(&b[3..8], b"hello");
}

#[test]
fn metadata_rename_and_remove() {
    let (c, store) = cluster();
    let img = c.open_image("rbd", "good", false).unwrap();
    img.metadata_set("conf_rbd_cache", "false").unwrap();
    assert_eq!(img.metadata_get("conf_rbd_cache").unwrap(), "false");
    assert_eq!(
        img.metadata_get("nope").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    img.write(0, &[1u8; 65536]).unwrap();
    img.close().unwrap();
    c.rename_image("rbd", "good", "better").unwrap();
    assert_eq!(
        c.list_images("rbd")
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["better"]
    );
    let img = c.open_image("rbd", "better", false).unwrap();
    assert_eq!(img.metadata_list().len(), 1);
    img.close().unwrap();
    drop(img);
    c.remove_image("rbd", "better", |_, _| {}).unwrap();
    let left: Vec<String> = store
        .list("rbd/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(left.is_empty(), "remove left objects behind: {left:?}");
}
