//! The conformance suite against a real S3 server (SeaweedFS in CI).
//!
//! Configured from the environment: `SHALE_TEST_S3=s3://bucket/prefix` plus the `AWS_*`
//! variables `shared/peers/s3/start.sh` prints. Without `SHALE_TEST_S3` the test is skipped.
//! Each run works under its own `run-<pid>-<time>/` prefix, so runs never see each other.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time
#![cfg(feature = "s3")]

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use shale_store::{conformance, ErrorKind, ObjectStore, PutMode, S3Store};

fn store() -> Option<S3Store> {
    let Ok(base) = std::env::var("SHALE_TEST_S3") else {
        println!("skipped: set SHALE_TEST_S3=s3://bucket/prefix (and the AWS_* variables) to run");
        return None;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!(
        "{}/run-{}-{nanos:x}",
        base.trim_end_matches('/'),
        std::process::id()
    );
    Some(S3Store::open(&url).unwrap())
}

#[test]
fn s3_conformance() {
    let Some(store) = store() else { return };
    conformance::run_all(&store);
    let racers = 16;
    conformance::create_race(&store, racers);
    conformance::update_race(&store, racers);
}

#[test]
fn s3_missing_bucket_is_created_on_first_put() {
    if store().is_none() {
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let store = S3Store::open(&format!("s3://shale-new-{nanos:x}/p")).unwrap();
    assert!(
        store.list("").unwrap().is_empty(),
        "a missing bucket lists as empty"
    );
    assert_eq!(store.get("k").unwrap_err().kind(), ErrorKind::NotFound);
    store
        .put("k", Bytes::from_static(b"v"), PutMode::Create)
        .unwrap();
    assert_eq!(store.get("k").unwrap().0.as_ref(), b"v");
    store.delete("k").unwrap();
}

#[test]
fn s3_ensure_bucket_creates_it_once() {
    if store().is_none() {
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let store = S3Store::open(&format!("s3://shale-ensure-{nanos:x}")).unwrap();
    assert!(
        store.ensure_bucket().unwrap(),
        "first call creates the bucket"
    );
    assert!(!store.ensure_bucket().unwrap(), "second call finds it");
    store
        .put("k", Bytes::from_static(b"v"), PutMode::Create)
        .unwrap();
    assert_eq!(store.get("k").unwrap().0.as_ref(), b"v");
    store.delete("k").unwrap();
}

#[test]
fn s3_unreachable_endpoint_is_unavailable() {
    if std::env::var("SHALE_TEST_S3").is_err() {
        println!("skipped: set SHALE_TEST_S3");
        return;
    }
    // Nothing listens on port 1 of the loopback address.
    let store = S3Store::open_with(
        "s3://b/p",
        &[
            ("aws_endpoint", "http://127.0.0.1:1"),
            ("aws_allow_http", "true"),
        ],
    )
    .unwrap();
    let e = store.get("k").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        e.to_string().contains("\"k\"") && e.to_string().contains("s3://b/p"),
        "{e}"
    );
}

#[test]
fn s3_works_when_called_from_inside_a_tokio_runtime() {
    let Some(store) = store() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        store
            .put("inside", Bytes::from_static(b"v"), PutMode::Create)
            .unwrap();
        assert_eq!(store.get("inside").unwrap().0.as_ref(), b"v");
        store.delete("inside").unwrap();
    });
}
