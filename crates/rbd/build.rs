//! Link librbd.so.1 like Ceph's (SONAME librbd.so.1, BIND_NOW) with `NEEDED librados.so.2`.
//!
//! The `shale_rbd_*` functions live in Shale's librados.so.2 (crate shale-rados). To record the
//! dependency without ordering the two cdylib builds, we link against a stand-in librados.so
//! built here from abi/librados-link-stub.c (same SONAME, empty functions); at run time the
//! dynamic loader picks the real shale-rados librados.so.2.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let stub = manifest.join("abi").join("librados-link-stub.c");
    println!("cargo:rerun-if-changed={}", stub.display());
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-w", "-Wl,-soname,librados.so.2", "-o"])
        .arg(out.join("librados.so"))
        .arg(&stub)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc} to build the librados link stub: {e}"));
    assert!(
        status.success(),
        "{cc} failed to build the librados link stub"
    );
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=dylib=rados");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librbd.so.1");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
}
