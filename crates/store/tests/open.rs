//! `open_store` URL parsing.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use shale_store::{open_store, ErrorKind};

#[test]
fn bad_urls_are_invalid_and_name_the_schemes() {
    for url in [
        "",
        "/var/lib/shale",
        "ftp://x",
        "file://relative/path",
        "s3://",
        "s3:///prefix",
    ] {
        let e = open_store(url)
            .err()
            .unwrap_or_else(|| panic!("{url:?} opened"));
        assert_eq!(e.kind(), ErrorKind::Invalid, "{url:?}: {e}");
    }
    let e = open_store("ftp://x").err().unwrap();
    for scheme in ["file://", "memory://", "s3://"] {
        assert!(e.to_string().contains(scheme), "{e}");
    }
}

#[cfg(feature = "s3")]
#[test]
fn bad_s3_urls_are_invalid() {
    for url in ["s3://", "s3:///prefix", "s3://bucket/a//b"] {
        let e = open_store(url)
            .err()
            .unwrap_or_else(|| panic!("{url:?} opened"));
        assert_eq!(e.kind(), ErrorKind::Invalid, "{url:?}: {e}");
    }
}

#[test]
fn file_url_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new/store");
    let url = format!("file://{}", root.display());
    let store = open_store(&url).unwrap();
    assert!(root.is_dir());
    assert_eq!(store.url(), url);
    assert!(store.list("").unwrap().is_empty());
}

#[cfg(feature = "s3")]
#[test]
fn s3_url_opens_without_network() {
    // Opening sends nothing; a bad prefix is refused up front.
    assert!(open_store("s3://bucket/some/prefix").is_ok());
    assert_eq!(
        open_store("s3://bucket/a/../b").err().unwrap().kind(),
        ErrorKind::Invalid
    );
}
