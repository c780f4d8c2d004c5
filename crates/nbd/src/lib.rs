//! An NBD server for Shale images (the role of Ceph's `rbd-nbd`, without a kernel device):
//! `shale nbd serve rbd/vm1 rbd/base@gold --socket /run/shale.sock`.
//!
//! - [`proto`]: the wire format, pure (decoders and encoders, no I/O); fuzzed.
//! - [`status`]: `base:allocation` from the extent map, pure.
//! - [`server`]: exports, handshake, pipelined transmission, shutdown.
//! - [`net`]: TCP / Unix / socket-activated listeners, TLS settings.
//! - [`run`]: `shale nbd serve` (open images, listen, signals, metrics endpoint).
//!
//! See docs/adr/0007-nbd-server.md for the design and docs/FORMAT.md for the wire subset.
#![forbid(unsafe_code)]
// A front end: real time (request latency, shutdown grace) is what it measures and waits on.
#![allow(clippy::disallowed_methods)]

pub mod proto;
pub mod status;

#[cfg(feature = "server")]
pub mod net;
#[cfg(feature = "server")]
pub mod run;
#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "server")]
pub use net::{activated_listener, tls_config, Listener, Stream};
#[cfg(feature = "server")]
pub use run::{serve, ServeOptions};
#[cfg(feature = "server")]
pub use server::{Export, Server};
