//! librbd.so.1 of Shale: a generated forwarder.
//!
//! Every `rbd_X` of Ceph's librbd.h is exported here and calls `shale_rbd_X` in librados.so.2
//! (crate shale-rados), where the implementation and all state live: a `rados_ioctx_t` made by
//! librados must be usable by librbd, so the two libraries cannot each keep their own state.
//! Regenerate with `python3 scripts/gen-ffi.py`.

#![allow(clippy::disallowed_methods)] // a front end / tool / device layer: real time is fine here
#[path = "../../rados/src/types.rs"]
mod types;

#[rustfmt::skip]
mod generated;
