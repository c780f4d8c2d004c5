//! librados.so.2 of Shale: Ceph's librados C ABI, and the implementation behind librbd.so.1.
//!
//! ```text
//!   client (qemu, fio, python3-rbd, python3-rados)
//!      | rbd_X                          | rados_X
//!      v                                v
//!   librbd.so.1 (shale-rbd) ----> librados.so.2 (this crate)
//!      forwards rbd_X to shale_rbd_X    every implementation + all global state
//! ```
//!
//! Both libraries must share one object model (an ioctx made by librados is handed to librbd),
//! so all state lives here and librbd.so.1 is a generated forwarder.
//!
//! Every exported function is either hand-written (in the modules below) or a generated stub in
//! [`generated`] that returns `-ENOSYS` / 0 / NULL. `scripts/gen-ffi.py` skips every name a
//! hand-written module defines and checks its prototype at compile time. Every hand-written entry
//! point runs its body under [`guard::ffi`], so no panic crosses the C boundary.

#![allow(clippy::disallowed_methods)] // a front end / tool / device layer: real time is fine here
mod admin;
mod aio;
mod clone;
mod cluster;
mod completion;
mod conf;
mod cstr;
mod diff;
mod errno;
mod guard;
mod handle;
mod image;
mod io;
mod locks;
mod logging;
mod metadata;
mod mirror;
mod mon;
mod options;
mod outlist;
mod owner;
mod pools;
mod snaps;
mod state;
mod types;
mod version;

#[rustfmt::skip]
mod generated;
