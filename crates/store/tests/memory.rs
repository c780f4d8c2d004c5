//! The conformance suite on the in-memory store, bare and behind the fault decorator.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;

use shale_store::{conformance, open_store, FaultStore, MemoryStore, ObjectStore, PutMode};

#[test]
fn memory_conformance() {
    let store = MemoryStore::new();
    conformance::run_all(&store);
    conformance::identical_rewrite_changes_version(&store);
}

#[test]
fn fault_store_without_faults_conforms() {
    let store = FaultStore::new(Arc::new(MemoryStore::new()), 1);
    conformance::run_all(&store);
    assert_eq!(store.injected(), 0);
}

#[test]
fn named_memory_stores_are_shared() {
    let a = open_store("memory://shared-test").unwrap();
    let b = open_store("memory://shared-test").unwrap();
    let c = open_store("memory://").unwrap();
    a.put("k", bytes::Bytes::from_static(b"v"), PutMode::Create)
        .unwrap();
    assert_eq!(b.get("k").unwrap().0.as_ref(), b"v");
    assert!(c.get("k").is_err());
    assert_eq!(a.url(), "memory://shared-test");
    let fresh: &dyn ObjectStore = &*open_store("memory://").unwrap();
    assert!(fresh.list("").unwrap().is_empty());
}
