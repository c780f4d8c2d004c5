//! Replication semantics of `Replicated`, on memory stores with injected faults.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shale_format::keys;
use shale_format::segment::{self, JournalMark};
use shale_locations::{Location, Mode, OnFailure, Options, Replicated};
use shale_store::{ErrorKind, FaultStore, MemoryStore, ObjectStore, PutMode};

const PREFIX: &str = "rbd/images/abc/";

fn seg(seq: u64, epoch: u64, fill: u8) -> Bytes {
    let data = vec![fill; 4096];
    Bytes::from(segment::encode(seq, epoch, JournalMark::default(), &[], &data).unwrap())
}

struct World {
    home: Arc<dyn ObjectStore>,
    dc2: Arc<FaultStore>,
    dc3: Arc<FaultStore>,
}

fn world() -> World {
    World {
        home: Arc::new(MemoryStore::new()),
        dc2: Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), 1)),
        dc3: Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), 2)),
    }
}

fn open(w: &World, modes: [Mode; 3], opts: Options) -> Replicated {
    let locs = vec![
        Location {
            name: "home".into(),
            mode: modes[0],
            store: w.home.clone(),
        },
        Location {
            name: "dc2".into(),
            mode: modes[1],
            store: w.dc2.clone(),
        },
        Location {
            name: "dc3".into(),
            mode: modes[2],
            store: w.dc3.clone(),
        },
    ];
    Replicated::open(
        w.home.clone(),
        PREFIX,
        locs,
        Options {
            retry: Duration::from_millis(20),
            ..opts
        },
        shale_clock::system(),
    )
    .unwrap()
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn has(s: &dyn ObjectStore, key: &str) -> bool {
    s.get(key).is_ok()
}

#[test]
fn sync_locations_have_the_object_when_put_returns_async_ones_follow_in_order() {
    let w = world();
    // dc3 async and slow: the copier is behind while puts return.
    w.dc3.update(|c| c.latency = Duration::from_millis(30));
    let r = open(
        &w,
        [Mode::Sync, Mode::Sync, Mode::Async],
        Options::default(),
    );
    for seq in 1..=10 {
        let k = keys::seg(PREFIX, seq);
        r.put(&k, seg(seq, 1, seq as u8), PutMode::Create).unwrap();
        assert!(
            has(w.home.as_ref(), &k) && has(w.dc2.as_ref(), &k),
            "sync copies of {seq}"
        );
        // The async copy is always a prefix: never seq without every earlier one.
        let at3: Vec<u64> = w
            .dc3
            .inner()
            .list(&keys::seg_dir(PREFIX))
            .unwrap()
            .iter()
            .filter_map(|m| keys::parse_seg(PREFIX, &m.key))
            .collect();
        assert_eq!(at3, (1..=at3.len() as u64).collect::<Vec<_>>(), "prefix");
    }
    wait_for("dc3 to catch up", || {
        r.report().iter().all(|l| l.objects_behind == 0)
    });
    let rep = r.report();
    assert_eq!(rep[2].objects_in_sync, 10);
    assert_eq!(rep[2].state, "ok");
}

#[test]
fn a_failed_sync_location_degrades_then_resyncs_and_nothing_is_lost() {
    let w = world();
    let r = open(&w, [Mode::Sync, Mode::Sync, Mode::Sync], Options::default());
    r.put(&keys::seg(PREFIX, 1), seg(1, 1, 1), PutMode::Create)
        .unwrap();
    w.dc2.set_offline(true);
    for seq in 2..=5 {
        r.put(&keys::seg(PREFIX, seq), seg(seq, 1, 2), PutMode::Create)
            .unwrap();
    }
    let rep = r.report();
    assert_eq!(rep[1].state, "error", "{rep:?}");
    assert!(rep[1].last_error.is_some());
    assert_eq!(rep[1].objects_behind, 4);
    // Writes go on at the others.
    assert_eq!(rep[0].objects_in_sync, 5);
    assert_eq!(rep[2].objects_in_sync, 5);
    w.dc2.set_offline(false);
    wait_for("dc2 to resync", || r.report()[1].objects_behind == 0);
    for seq in 1..=5 {
        let k = keys::seg(PREFIX, seq);
        assert_eq!(w.dc2.get(&k).unwrap().0, w.home.get(&k).unwrap().0);
    }
    assert_eq!(r.report()[1].state, "ok");
}

#[test]
fn block_mode_waits_for_the_sync_location() {
    let w = world();
    let r = Arc::new(open(
        &w,
        [Mode::Sync, Mode::Sync, Mode::Async],
        Options {
            on_failure: OnFailure::Block,
            ..Options::default()
        },
    ));
    w.dc2.set_offline(true);
    let r2 = r.clone();
    let t = std::thread::spawn(move || {
        r2.put(&keys::seg(PREFIX, 1), seg(1, 1, 1), PutMode::Create)
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.is_finished(), "the put must wait while dc2 is down");
    w.dc2.set_offline(false);
    t.join().unwrap();
    assert!(has(w.dc2.as_ref(), &keys::seg(PREFIX, 1)));
}

#[test]
fn reads_prefer_the_nearest_in_sync_copy_and_fall_back() {
    let w = world();
    let r = open(
        &w,
        [Mode::Sync, Mode::Sync, Mode::Sync],
        Options {
            prefer: vec!["dc2".into(), "home".into()],
            ..Options::default()
        },
    );
    let k = keys::seg(PREFIX, 1);
    r.put(&k, seg(1, 1, 7), PutMode::Create).unwrap();
    let before = r.report()[1].bytes_read;
    let got = r.get_range(&k, 0..10).unwrap();
    assert_eq!(got.len(), 10);
    assert!(
        r.report()[1].bytes_read > before,
        "read from dc2, the nearest"
    );
    w.dc2.update(|c| c.fail_gets = true);
    let all = r.get(&k).unwrap().0;
    assert_eq!(all, w.home.get(&k).unwrap().0, "fell back to another copy");
}

#[test]
fn a_new_location_fills_in_order_and_a_reopen_trusts_only_what_the_record_covers() {
    let w = world();
    // Home only, first.
    {
        let r = Replicated::open(
            w.home.clone(),
            PREFIX,
            vec![Location {
                name: "home".into(),
                mode: Mode::Sync,
                store: w.home.clone(),
            }],
            Options::default(),
            shale_clock::system(),
        )
        .unwrap();
        for seq in 1..=6 {
            r.put(&keys::seg(PREFIX, seq), seg(seq, 1, 3), PutMode::Create)
                .unwrap();
        }
        r.close();
    }
    // A stale copy of segment 6 at dc2 (a fenced writer's, epoch 0): it must never be served.
    w.dc2
        .put(&keys::seg(PREFIX, 6), seg(6, 0, 0xee), PutMode::Overwrite)
        .unwrap();
    let r = open(
        &w,
        [Mode::Sync, Mode::Async, Mode::Async],
        Options {
            prefer: vec!["dc2".into()],
            epoch: 1,
            ..Options::default()
        },
    );
    // Reads of 6 come from home (dc2's copy is not trusted) until it is replaced.
    let k6 = keys::seg(PREFIX, 6);
    assert_eq!(r.get(&k6).unwrap().0, w.home.get(&k6).unwrap().0);
    wait_for("dc2 and dc3 to fill", || {
        r.report().iter().all(|l| l.objects_behind == 0)
    });
    assert_eq!(
        w.dc2.get(&k6).unwrap().0,
        w.home.get(&k6).unwrap().0,
        "replaced"
    );
    r.close();
    let rec = shale_format::envelope::decode(
        shale_format::envelope::Kind::LocationStatus,
        &w.home.get(&format!("{PREFIX}loc/dc2")).unwrap().0,
    )
    .unwrap()
    .to_vec();
    let rec: serde_json::Value = serde_json::from_slice(&rec).unwrap();
    assert_eq!(rec["trusted_below"], 7, "{rec}");
    // A writer of epoch 2 fenced at 5 and wrote its own segment 6 at home (dc2 still has
    // epoch 1's): past the fence, dc2's copy is checked again, and the newer one wins.
    w.home
        .put(&k6, seg(6, 2, 0x66), PutMode::Overwrite)
        .unwrap();
    let r = open(
        &w,
        [Mode::Sync, Mode::Async, Mode::Async],
        Options {
            epoch: 2,
            fence: Some((2, 5)),
            active: false,
            ..Options::default()
        },
    );
    let rep = r.report();
    assert_eq!(rep[1].objects_behind, 1, "{rep:?}");
    assert_eq!(rep[0].objects_behind, 0, "{rep:?}");
    assert_eq!(r.get(&k6).unwrap().0, seg(6, 2, 0x66));
}

#[test]
fn deletes_wait_while_a_location_is_behind() {
    let w = world();
    let r = open(&w, [Mode::Sync, Mode::Sync, Mode::Sync], Options::default());
    for seq in 1..=3 {
        r.put(&keys::seg(PREFIX, seq), seg(seq, 1, 1), PutMode::Create)
            .unwrap();
    }
    w.dc3.set_offline(true);
    r.put(&keys::seg(PREFIX, 4), seg(4, 1, 1), PutMode::Create)
        .unwrap();
    // GC moved segment 1's data into 4 and deletes 1: dc3 lacks 4, so it keeps 1.
    r.delete(&keys::seg(PREFIX, 1)).unwrap();
    assert!(!has(w.home.as_ref(), &keys::seg(PREFIX, 1)));
    assert!(!has(w.dc2.as_ref(), &keys::seg(PREFIX, 1)));
    assert!(has(w.dc3.inner().as_ref(), &keys::seg(PREFIX, 1)));
    w.dc3.set_offline(false);
    wait_for("dc3 to catch up and delete", || {
        !has(w.dc3.inner().as_ref(), &keys::seg(PREFIX, 1))
            && has(w.dc3.inner().as_ref(), &keys::seg(PREFIX, 4))
    });
}

#[test]
fn metadata_stays_at_home_and_listing_is_the_union() {
    let w = world();
    let r = open(
        &w,
        [Mode::Async, Mode::Sync, Mode::Async],
        Options::default(),
    );
    r.put(
        &keys::header_in(PREFIX),
        Bytes::from_static(b"h"),
        PutMode::Create,
    )
    .unwrap();
    assert!(has(w.home.as_ref(), &keys::header_in(PREFIX)));
    assert!(!has(w.dc2.as_ref(), &keys::header_in(PREFIX)));
    r.put(&keys::seg(PREFIX, 1), seg(1, 1, 1), PutMode::Create)
        .unwrap();
    let l = r.list(PREFIX).unwrap();
    assert!(l.iter().any(|m| m.key == keys::seg(PREFIX, 1)));
    assert!(l.iter().any(|m| m.key == keys::header_in(PREFIX)));
    // Create-only: a second put of the number is refused as by one store.
    let e = r
        .put(&keys::seg(PREFIX, 1), seg(1, 1, 1), PutMode::Create)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exists);
}

#[test]
fn sync_now_copies_a_selection_with_progress() {
    let w = world();
    let r = open(
        &w,
        [Mode::Sync, Mode::Async, Mode::Async],
        Options {
            active: false,
            ..Options::default()
        },
    );
    for seq in 1..=4 {
        r.put(&keys::seg(PREFIX, seq), seg(seq, 1, 1), PutMode::Create)
            .unwrap();
    }
    let mut last = (0, 0);
    let n = r
        .sync_now(
            Some("dc2"),
            &|_, k| keys::parse_seg(PREFIX, k).is_some_and(|s| s <= 2),
            &mut |d, t| last = (d, t),
        )
        .unwrap();
    assert!(n > 0 && last.0 == last.1 && last.1 == n, "{n} {last:?}");
    assert!(has(w.dc2.as_ref(), &keys::seg(PREFIX, 2)));
    assert!(!has(w.dc2.as_ref(), &keys::seg(PREFIX, 3)));
    assert!(!has(w.dc3.as_ref(), &keys::seg(PREFIX, 1)));
}

/// A store that remembers the order of the puts it took (the copy of a location).
#[derive(Debug, Default)]
struct Recorder {
    inner: MemoryStore,
    puts: std::sync::Mutex<Vec<String>>,
}

impl ObjectStore for Recorder {
    fn get(&self, key: &str) -> shale_error::Result<(Bytes, shale_store::Version)> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> shale_error::Result<Bytes> {
        self.inner.get_range(key, range)
    }
    fn put(
        &self,
        key: &str,
        data: Bytes,
        mode: PutMode,
    ) -> shale_error::Result<shale_store::Version> {
        let v = self.inner.put(key, data, mode)?;
        self.puts.lock().unwrap().push(key.to_string());
        Ok(v)
    }
    fn delete(&self, key: &str) -> shale_error::Result<()> {
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> shale_error::Result<Vec<shale_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn url(&self) -> String {
        "recorder://".into()
    }
}

#[test]
fn objects_deleted_while_a_location_is_behind_still_reach_it_in_order() {
    // dc2 is down from the start: it misses the first checkpoint, and the image deletes that
    // checkpoint (rotation) and segment 1 (GC) before dc2 comes back. Handed only what is
    // left (segment 2, then the new checkpoint), dc2's copy would hold segments and no
    // checkpoint — unreadable alone. They stay at home until dc2 has them.
    let rec = Arc::new(Recorder::default());
    let w = World {
        home: Arc::new(MemoryStore::new()),
        dc2: Arc::new(FaultStore::new(rec.clone(), 1)),
        dc3: Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), 2)),
    };
    w.dc2.set_offline(true);
    let r = open(
        &w,
        [Mode::Sync, Mode::Async, Mode::Async],
        Options::default(),
    );
    let c1 = keys::ckpt(PREFIX, 1, 1);
    let c3 = keys::ckpt(PREFIX, 1, 3);
    let (s1, s2) = (keys::seg(PREFIX, 1), keys::seg(PREFIX, 2));
    r.put(&c1, Bytes::from_static(b"c1"), PutMode::Overwrite)
        .unwrap();
    r.put(&s1, seg(1, 1, 1), PutMode::Create).unwrap();
    r.put(&s2, seg(2, 1, 2), PutMode::Create).unwrap();
    r.put(&c3, Bytes::from_static(b"c3"), PutMode::Overwrite)
        .unwrap();
    r.delete(&c1).unwrap();
    r.delete(&s1).unwrap();
    // Gone for the image, kept where they are for dc2.
    assert_eq!(r.get(&c1).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(r.get(&s1).unwrap_err().kind(), ErrorKind::NotFound);
    let listed: Vec<String> = r.list(PREFIX).unwrap().into_iter().map(|m| m.key).collect();
    assert!(!listed.contains(&c1) && !listed.contains(&s1), "{listed:?}");
    assert!(listed.contains(&s2) && listed.contains(&c3), "{listed:?}");
    assert!(has(w.home.as_ref(), &c1) && has(w.home.as_ref(), &s1));
    // A restart in between keeps them too (the held-back deletes are recorded).
    r.crash();
    drop(r);
    let r = open(
        &w,
        [Mode::Sync, Mode::Async, Mode::Async],
        Options::default(),
    );
    assert_eq!(r.get(&c1).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(has(w.home.as_ref(), &c1) && has(w.home.as_ref(), &s1));
    w.dc2.set_offline(false);
    wait_for("dc2 to catch up and every location to delete", || {
        let inner = w.dc2.inner();
        has(inner.as_ref(), &c3)
            && !has(inner.as_ref(), &c1)
            && !has(inner.as_ref(), &s1)
            && !has(w.home.as_ref(), &c1)
            && !has(w.home.as_ref(), &s1)
            && !has(w.dc3.inner().as_ref(), &s1)
    });
    assert_eq!(
        *rec.puts.lock().unwrap(),
        vec![c1.clone(), s1.clone(), s2.clone(), c3.clone()],
        "dc2 received the history in order"
    );
    let rep = r.report();
    assert!(rep.iter().all(|l| l.deletes_held == 0), "{rep:?}");
    assert!(rep.iter().all(|l| l.objects_behind == 0), "{rep:?}");
}
