//! Locations at the image level: registry and refusals, sync and async placement under writes,
//! a location failing (degrade and block), reads falling back, and UKAI's migration between two
//! hosts — with memory stores behind fault injectors, in one process (two `Cluster`s are two
//! hosts).
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use shale_error::ErrorKind;
use shale_image::{Cluster, Image, LocationMode, Settings};
use shale_store::{FaultStore, MemoryStore, ObjectStore};

const MB: u64 = 1 << 20;

struct Hosts {
    home: Arc<dyn ObjectStore>,
    dc2: Arc<FaultStore>,
    dc3: Arc<FaultStore>,
}

fn hosts() -> Hosts {
    Hosts {
        home: Arc::new(MemoryStore::new()),
        dc2: Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), 1)),
        dc3: Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), 2)),
    }
}

fn settings(extra: &[(&str, &str)]) -> Settings {
    let mut s = Settings::default();
    s.set("store", "memory://").unwrap();
    s.set("segment_size", "64K").unwrap();
    s.set("cache_dir", "").unwrap();
    s.set("durability", "backend").unwrap();
    for (k, v) in extra {
        s.set(k, v).unwrap();
    }
    s
}

/// A host: a cluster on the shared home store, with the locations' stores injected.
fn host(h: &Hosts, extra: &[(&str, &str)]) -> Cluster {
    let c = Cluster::with_store(h.home.clone(), settings(extra)).unwrap();
    c.set_location_store("dc2", h.dc2.clone());
    c.set_location_store("dc3", h.dc3.clone());
    c
}

fn register(c: &Cluster) {
    for n in ["dc2", "dc3"] {
        match c.location_create(n, &format!("memory://test-{n}")) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Exists => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn pattern(i: u64) -> Vec<u8> {
    (0..64 * 1024)
        .map(|b| (i as u8).wrapping_mul(31).wrapping_add(b as u8))
        .collect()
}

fn write_range(img: &Image, from: u64, to: u64) {
    for i in from..to {
        img.write(i * 64 * 1024, &pattern(i)).unwrap();
    }
}

fn verify(img: &Image, upto: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..upto {
        img.read(i * 64 * 1024, &mut buf).unwrap();
        assert!(buf == pattern(i), "block {i} differs");
    }
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sync status of one location of the image.
fn report(img: &Image, loc: &str) -> shale_locations::LocationReport {
    img.location_report()
        .unwrap()
        .into_iter()
        .find(|r| r.name == loc)
        .unwrap()
}

fn behind(img: &Image, loc: &str) -> u64 {
    report(img, loc).objects_behind
}

fn data_keys(s: &dyn ObjectStore, img: &Image) -> usize {
    s.list(&format!("rbd/images/{}/seg/", img.id()))
        .unwrap()
        .len()
}

#[test]
fn registry_validates_and_refuses() {
    let h = hosts();
    let c = host(&h, &[]);
    for (name, url) in [
        ("", "file:///tmp/x"),
        ("bad/name", "file:///tmp/x"),
        ("home", "file:///tmp/x"),
        ("ok", "relative/dir"),
        ("ok", "s3://key:secret@bucket"),
        ("ok", "s3://bucket?access_key=x"),
        ("ok", "ftp://x"),
    ] {
        assert!(c.location_create(name, url).is_err(), "{name} {url}");
    }
    assert!(
        c.location_list().unwrap().is_empty(),
        "refusals change nothing"
    );
    register(&c);
    assert_eq!(
        c.location_create("dc2", "memory://again")
            .unwrap_err()
            .kind(),
        ErrorKind::Exists
    );
    c.create_image("rbd", "vm", 8 * MB, 22).unwrap();
    let img = c.open_image("rbd", "vm", false).unwrap();
    assert_eq!(
        img.location_add("nowhere", LocationMode::Sync)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    img.location_add("dc2", LocationMode::Async).unwrap();
    assert_eq!(
        img.location_add("dc2", LocationMode::Sync)
            .unwrap_err()
            .kind(),
        ErrorKind::Exists
    );
    // In use: cannot be unregistered.
    assert_eq!(
        c.location_delete("dc2").unwrap_err().kind(),
        ErrorKind::Busy
    );
    c.location_delete("dc3").unwrap();
    assert!(
        img.location_rm("dc3", false).is_err(),
        "not a location of the image"
    );
    // The last location cannot go.
    img.location_rm("home", false).unwrap();
    assert_eq!(
        img.location_rm("dc2", false).unwrap_err().kind(),
        ErrorKind::Busy
    );
    assert_eq!(img.locations().len(), 1);
    img.close().unwrap();
}

#[test]
fn sync_location_has_every_flushed_write_async_follows() {
    let h = hosts();
    let c = host(&h, &[]);
    register(&c);
    c.create_image("rbd", "vm", 16 * MB, 22).unwrap();
    let img = c.open_image("rbd", "vm", false).unwrap();
    img.location_add("dc2", LocationMode::Sync).unwrap();
    img.location_add("dc3", LocationMode::Async).unwrap();
    // Slow async location: it lags while writes go on.
    h.dc3.update(|f| f.latency = Duration::from_millis(20));
    write_range(&img, 0, 40);
    img.flush().unwrap();
    // durability = backend: the flush returned, so every sync location holds every segment.
    assert_eq!(behind(&img, "dc2"), 0, "{:?}", img.location_report());
    assert_eq!(behind(&img, "home"), 0);
    h.dc3.update(|f| f.latency = Duration::ZERO);
    wait_for("dc3 to catch up", || behind(&img, "dc3") == 0);
    verify(&img, 40);
    img.close().unwrap();
    drop(img);
    // The data reads from dc3 alone.
    let c2 = host(&h, &[("location_preference", "dc3")]);
    let img = c2.open_image("rbd", "vm", false).unwrap();
    img.location_rm("home", false).unwrap();
    img.location_rm("dc2", false).unwrap();
    assert_eq!(
        data_keys(h.home.as_ref(), &img),
        0,
        "home's copies were deleted"
    );
    verify(&img, 40);
    img.close().unwrap();
}

#[test]
fn a_failing_location_degrades_resyncs_and_loses_nothing() {
    let h = hosts();
    let c = host(&h, &[]);
    register(&c);
    c.create_image("rbd", "vm", 16 * MB, 22).unwrap();
    let img = c.open_image("rbd", "vm", false).unwrap();
    img.location_add("dc2", LocationMode::Sync).unwrap();
    write_range(&img, 0, 10);
    img.flush().unwrap();
    h.dc2.set_offline(true);
    write_range(&img, 10, 30);
    img.flush().unwrap(); // degrade: writes go on at home
    let rep = img.location_report().unwrap();
    let dc2 = rep.iter().find(|r| r.name == "dc2").unwrap();
    assert_eq!(dc2.state, "error", "{rep:?}");
    assert!(dc2.objects_behind > 0);
    // Removing home now would lose data: refused.
    let e = img.location_rm("home", false).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Busy | ErrorKind::Io | ErrorKind::Unavailable
        ),
        "{e}"
    );
    assert_eq!(img.locations().len(), 2);
    h.dc2.set_offline(false);
    wait_for("dc2 to resync", || {
        let b = behind(&img, "dc2");
        if b != 0 {
            eprintln!("{:?}", img.location_report());
        }
        b == 0
    });
    img.location_rm("home", false).unwrap();
    verify(&img, 30);
    img.close().unwrap();
    let img = host(&h, &[]).open_image("rbd", "vm", true).unwrap();
    verify(&img, 30);
}

#[test]
fn block_mode_suspends_io_until_the_sync_location_returns() {
    let h = hosts();
    let c = host(&h, &[("on_location_failure", "block")]);
    register(&c);
    c.create_image("rbd", "vm", 16 * MB, 22).unwrap();
    let img = Arc::new(c.open_image("rbd", "vm", false).unwrap());
    img.location_add("dc2", LocationMode::Sync).unwrap();
    write_range(&img, 0, 4);
    img.flush().unwrap();
    h.dc2.set_offline(true);
    let i2 = img.clone();
    let t = std::thread::spawn(move || {
        write_range(&i2, 4, 8);
        i2.flush().unwrap();
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!t.is_finished(), "the flush must wait for dc2");
    h.dc2.set_offline(false);
    t.join().unwrap();
    assert_eq!(behind(&img, "dc2"), 0);
    verify(&img, 8);
}

#[test]
fn reads_fall_back_when_the_preferred_location_dies() {
    let h = hosts();
    let c = host(&h, &[]);
    register(&c);
    c.create_image("rbd", "vm", 16 * MB, 22).unwrap();
    let img = c.open_image("rbd", "vm", false).unwrap();
    img.location_add("dc2", LocationMode::Sync).unwrap();
    write_range(&img, 0, 20);
    img.close().unwrap();
    let reader = host(
        &h,
        &[
            ("location_preference", "dc2,home"),
            ("read_cache_size", "0"),
        ],
    );
    let img = reader.open_image("rbd", "vm", true).unwrap();
    verify(&img, 20);
    h.dc2.update(|f| f.fail_gets = true);
    verify(&img, 20);
}

#[test]
fn ukai_migration_between_two_hosts() {
    let h = hosts();
    // Host A, near home.
    let a = host(&h, &[]);
    register(&a);
    a.create_image("rbd", "vm", 16 * MB, 22).unwrap();
    let img_a = a.open_image("rbd", "vm", false).unwrap();
    write_range(&img_a, 0, 16);
    img_a.flush().unwrap();
    verify(&img_a, 16);
    // Place the disk in dc2 too and fill it.
    img_a.location_add("dc2", LocationMode::Sync).unwrap();
    write_range(&img_a, 16, 24);
    img_a.sync(Some("dc2"), None, &mut |_, _| {}).unwrap();
    verify(&img_a, 24);
    // Host B, in dc2, takes the image over.
    let b = host(&h, &[("location_preference", "dc2,home")]);
    let img_b = b.open_image("rbd", "vm", false).unwrap();
    img_b.lock_acquire().unwrap();
    verify(&img_b, 24);
    img_b.location_rm("home", false).unwrap();
    assert_eq!(data_keys(h.home.as_ref(), &img_b), 0);
    write_range(&img_b, 24, 28);
    img_b.flush().unwrap();
    verify(&img_b, 28);
    // A cannot write any more (B holds the lock explicitly).
    assert!(img_a.write(0, &[1u8; 512]).is_err());
    drop(img_a);
    img_b.close().unwrap();
    let img = b.open_image("rbd", "vm", true).unwrap();
    verify(&img, 28);
    assert!(c_ok(&b));
}

fn c_ok(c: &Cluster) -> bool {
    c.check_image("rbd", "vm", |_, _| {})
        .map(|r| r.problems.is_empty())
        .unwrap_or(false)
}

fn deletes_held(img: &Image, loc: &str) -> u64 {
    report(img, loc).deletes_held
}

#[test]
fn deletes_held_for_a_location_that_is_down_are_released_when_it_is_removed() {
    let h = hosts();
    let c = host(&h, &[("checkpoint_interval", "1")]);
    register(&c);
    c.create_image("rbd", "vm", 16 * MB, 22).unwrap();
    let img = c.open_image("rbd", "vm", false).unwrap();
    img.location_add("dc2", LocationMode::Sync).unwrap();
    img.location_add("dc3", LocationMode::Async).unwrap();
    write_range(&img, 0, 8);
    img.flush().unwrap();
    wait_for("dc3 to catch up", || behind(&img, "dc3") == 0);
    // dc3 goes away for good. Overwrites and GC delete objects dc3 never received: they are
    // kept at home (dc3's copy would need them to stay a prefix), hidden from the image.
    h.dc3.set_offline(true);
    for _ in 0..4 {
        write_range(&img, 0, 8);
        img.flush().unwrap();
    }
    img.gc(0.9).unwrap();
    assert!(
        deletes_held(&img, "home") > 0,
        "{:?}",
        img.location_report()
    );
    let held_segments = data_keys(h.home.as_ref(), &img);
    verify(&img, 8);
    // Removing it (it cannot be reached: --force) lets them go.
    img.location_rm("dc3", true).unwrap();
    wait_for("home to delete what it held for dc3", || {
        deletes_held(&img, "home") == 0
    });
    assert!(
        data_keys(h.home.as_ref(), &img) < held_segments,
        "segments at home: {} before the removal, {} after",
        held_segments,
        data_keys(h.home.as_ref(), &img)
    );
    verify(&img, 8);
    img.close().unwrap();
    drop(img);
    let img = c.open_image("rbd", "vm", false).unwrap();
    verify(&img, 8);
    img.close().unwrap();
}
