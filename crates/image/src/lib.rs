//! RBD semantics over the engine: settings, pools, image names and headers, open images.
//!
//! Object layout in a store (a pool is a key prefix):
//! ```text
//! .shale                       store marker (created once; the first init also creates pool `rbd`)
//! .pools/<pool>                pool entry (id, created)
//! <pool>/names/<name>          image name -> id          (put-if-absent)
//! <pool>/images/<id>/header    size, features, metadata   (replace-if-version)
//! <pool>/images/<id>/seg/…     the engine's segments and checkpoints
//! ```
#![forbid(unsafe_code)]

mod check;
mod cluster;
pub mod features;
mod image;
pub mod iostats;
pub mod locations;
mod lock;
mod names;
mod settings;
pub mod size;
pub mod snaps;

pub use cluster::{Cluster, ImageEntry, PoolStats};
pub use image::{ChildRef, Image, ImageInfo, ParentRef, SnapInfo};
pub use locations::{ImageLocation, LocationEntry, LocationProbe, HOME};
pub use lock::Locker;
pub use names::{validate_image_name, validate_pool_name, ImageSpec};
pub use settings::{JournalMode, Settings};
pub use shale_engine::{Done, Stats};
pub use shale_error::{Error, ErrorKind, Result};
pub use shale_locations::{LocationReport, Mode as LocationMode};
