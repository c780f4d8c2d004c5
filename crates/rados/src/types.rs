//! The C types of `librados.h` and `librbd.h` (Ceph 16.2), spelled as in the headers.
//!
//! This file is the one place where the C type names of the two headers map to Rust. It is
//! self-contained (only `core` and `libc`) because the `shale-rbd` crate includes it too, with
//! `#[path]`, so both libraries agree on every prototype.
//!
//! * Handles (`rados_t`, `rbd_image_t`, ...) are `void *` in C and stay `*mut c_void` here.
//! * C enums are passed as `int` on x86_64 / aarch64 and are `c_int` here.
//! * Structs whose layout the library does not touch yet are opaque (`c_void`). A struct gets a
//!   `#[repr(C)]` definition, checked against `/work/shared/abi/struct-layouts.md`, when a
//!   hand-written function starts filling it in.
//! * Callbacks are `Option<unsafe extern "C" fn ...>` so a NULL callback is representable.
#![allow(non_camel_case_types, dead_code)]

use core::ffi::{c_char, c_int, c_void};

// ---- librados handles and scalars -------------------------------------------------------------

/// A cluster handle (`rados_create*`).
pub type rados_t = *mut c_void;
/// A configuration context (`rados_cct`).
pub type rados_config_t = *mut c_void;
/// An I/O context: one pool + namespace of a cluster.
pub type rados_ioctx_t = *mut c_void;
/// A legacy object-listing context.
pub type rados_list_ctx_t = *mut c_void;
/// A cursor of `rados_object_list*`.
pub type rados_object_list_cursor = *mut c_void;
/// Snapshot id.
pub type rados_snap_t = u64;
/// Xattr iterator.
pub type rados_xattrs_iter_t = *mut c_void;
/// Omap iterator.
pub type rados_omap_iter_t = *mut c_void;
/// A compound write operation.
pub type rados_write_op_t = *mut c_void;
/// A compound read operation.
pub type rados_read_op_t = *mut c_void;
/// An asynchronous rados completion.
pub type rados_completion_t = *mut c_void;
/// `enum rados_checksum_type_t`.
pub type rados_checksum_type_t = c_int;

/// `struct rados_pool_stat_t`: 128 bytes at 14.2.0; the Base (pre-14.2) struct is the first 96.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct rados_pool_stat_t {
    pub num_bytes: u64,
    pub num_kb: u64,
    pub num_objects: u64,
    pub num_object_clones: u64,
    pub num_object_copies: u64,
    pub num_objects_missing_on_primary: u64,
    pub num_objects_unfound: u64,
    pub num_objects_degraded: u64,
    pub num_rd: u64,
    pub num_rd_kb: u64,
    pub num_wr: u64,
    pub num_wr_kb: u64,
    pub num_user_bytes: u64,
    pub compressed_bytes_orig: u64,
    pub compressed_bytes: u64,
    pub compressed_bytes_alloc: u64,
}
/// `struct rados_cluster_stat_t` (32 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct rados_cluster_stat_t {
    pub kb: u64,
    pub kb_used: u64,
    pub kb_avail: u64,
    pub num_objects: u64,
}
/// Opaque until implemented: `rados_object_list_item` (48 bytes).
pub type rados_object_list_item = c_void;
/// Opaque until implemented: `struct notify_ack_t`.
pub type notify_ack_t = c_void;
/// Opaque until implemented: `struct notify_timeout_t`.
pub type notify_timeout_t = c_void;

/// `void (*)(rados_completion_t cb, void *arg)`
pub type rados_callback_t = Option<unsafe extern "C" fn(cb: rados_completion_t, arg: *mut c_void)>;
/// `void (*)(uint8_t opcode, uint64_t ver, void *arg)`
pub type rados_watchcb_t = Option<unsafe extern "C" fn(opcode: u8, ver: u64, arg: *mut c_void)>;
/// `void (*)(void *arg, uint64_t notify_id, uint64_t handle, uint64_t notifier_id, void *data,
/// size_t data_len)`
pub type rados_watchcb2_t = Option<
    unsafe extern "C" fn(
        arg: *mut c_void,
        notify_id: u64,
        handle: u64,
        notifier_id: u64,
        data: *mut c_void,
        data_len: usize,
    ),
>;
/// `void (*)(void *pre, uint64_t cookie, int err)`
pub type rados_watcherrcb_t =
    Option<unsafe extern "C" fn(pre: *mut c_void, cookie: u64, err: c_int)>;
/// The cluster-log callback of `rados_monitor_log`.
pub type rados_log_callback_t = Option<
    unsafe extern "C" fn(
        arg: *mut c_void,
        line: *const c_char,
        who: *const c_char,
        sec: u64,
        nsec: u64,
        seq: u64,
        level: *const c_char,
        msg: *const c_char,
    ),
>;
/// The cluster-log callback of `rados_monitor_log2`.
pub type rados_log_callback2_t = Option<
    unsafe extern "C" fn(
        arg: *mut c_void,
        line: *const c_char,
        channel: *const c_char,
        who: *const c_char,
        name: *const c_char,
        sec: u64,
        nsec: u64,
        seq: u64,
        level: *const c_char,
        msg: *const c_char,
    ),
>;

// ---- librbd handles, enums, callbacks ---------------------------------------------------------

/// An open image.
pub type rbd_image_t = *mut c_void;
/// An image-options object (`rbd_image_options_create`).
pub type rbd_image_options_t = *mut c_void;
/// A pool-stats request object.
pub type rbd_pool_stats_t = *mut c_void;
/// An asynchronous rbd completion.
pub type rbd_completion_t = *mut c_void;
/// Encryption options (points at a format-specific struct).
pub type rbd_encryption_options_t = *mut c_void;

/// `void (*)(rbd_completion_t cb, void *arg)`
pub type rbd_callback_t = Option<unsafe extern "C" fn(cb: rbd_completion_t, arg: *mut c_void)>;
/// `int (*)(uint64_t offset, uint64_t total, void *ptr)`
pub type librbd_progress_fn_t =
    Option<unsafe extern "C" fn(offset: u64, total: u64, ptr: *mut c_void) -> c_int>;
/// `void (*)(void *arg)`
pub type rbd_update_callback_t = Option<unsafe extern "C" fn(arg: *mut c_void)>;
/// The callback of `rbd_read_iterate{,2}`: `int (*)(uint64_t, size_t, const char *, void *)`.
pub type rbd_read_iterate_cb_t = Option<
    unsafe extern "C" fn(ofs: u64, len: usize, buf: *const c_char, arg: *mut c_void) -> c_int,
>;
/// The callback of `rbd_diff_iterate{,2}`: `int (*)(uint64_t, size_t, int, void *)`.
pub type rbd_diff_iterate_cb_t =
    Option<unsafe extern "C" fn(ofs: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int>;

/// `enum rbd_lock_mode_t`.
pub type rbd_lock_mode_t = c_int;
/// `enum rbd_mirror_mode_t`.
pub type rbd_mirror_mode_t = c_int;
/// `enum rbd_mirror_image_mode_t`.
pub type rbd_mirror_image_mode_t = c_int;
/// `enum rbd_mirror_image_status_state_t`.
pub type rbd_mirror_image_status_state_t = c_int;
/// `enum rbd_mirror_peer_direction_t`.
pub type rbd_mirror_peer_direction_t = c_int;
/// `enum rbd_snap_namespace_type_t`.
pub type rbd_snap_namespace_type_t = c_int;
/// `enum rbd_encryption_format_t`.
pub type rbd_encryption_format_t = c_int;

/// `rbd_image_info_t` (160 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; 24],
    pub parent_pool: i64,
    pub parent_name: [c_char; 96],
}
/// `rbd_snap_info_t` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_snap_info_t {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}
/// `rbd_image_spec_t` (16 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_image_spec_t {
    pub id: *mut c_char,
    pub name: *mut c_char,
}
/// `rbd_linked_image_spec_t` (48 bytes): strings are malloc'd, freed by the cleanup calls.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_linked_image_spec_t {
    pub pool_id: i64,
    pub pool_name: *mut c_char,
    pub pool_namespace: *mut c_char,
    pub image_id: *mut c_char,
    pub image_name: *mut c_char,
    pub trash: bool,
}
/// `rbd_snap_spec_t` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_snap_spec_t {
    pub id: u64,
    pub namespace_type: rbd_snap_namespace_type_t,
    pub name: *mut c_char,
}
/// `rbd_child_info_t` (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_child_info_t {
    pub pool_name: *mut c_char,
    pub image_name: *mut c_char,
    pub image_id: *mut c_char,
    pub trash: bool,
}
/// `rbd_image_watcher_t` (24 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_image_watcher_t {
    pub addr: *mut c_char,
    pub id: i64,
    pub cookie: u64,
}
/// Opaque until implemented: `rbd_trash_image_info_t` (40 bytes).
pub type rbd_trash_image_info_t = c_void;
/// Opaque until implemented: `rbd_config_option_t` (24 bytes).
pub type rbd_config_option_t = c_void;
/// Opaque until implemented: `rbd_image_migration_status_t` (80 bytes).
pub type rbd_image_migration_status_t = c_void;
/// Opaque until implemented: `rbd_group_info_t`.
pub type rbd_group_info_t = c_void;
/// Opaque until implemented: `rbd_group_image_info_t`.
pub type rbd_group_image_info_t = c_void;
/// Opaque until implemented: `rbd_group_snap_info_t`.
pub type rbd_group_snap_info_t = c_void;
/// Opaque until implemented: `rbd_snap_group_namespace_t`.
pub type rbd_snap_group_namespace_t = c_void;
/// Opaque until implemented: `rbd_snap_mirror_namespace_t`.
pub type rbd_snap_mirror_namespace_t = c_void;
/// Opaque until implemented: `rbd_mirror_image_info_t`.
pub type rbd_mirror_image_info_t = c_void;
/// Opaque until implemented: `rbd_mirror_image_status_t` (deprecated).
pub type rbd_mirror_image_status_t = c_void;
/// Opaque until implemented: `rbd_mirror_image_global_status_t`.
pub type rbd_mirror_image_global_status_t = c_void;
/// Opaque until implemented: `rbd_mirror_peer_t` (deprecated).
pub type rbd_mirror_peer_t = c_void;
/// Opaque until implemented: `rbd_mirror_peer_site_t`.
pub type rbd_mirror_peer_site_t = c_void;

// Layouts checked against /work/shared/abi/struct-layouts.md.
const _: () = {
    assert!(core::mem::size_of::<rbd_image_info_t>() == 160);
    assert!(core::mem::offset_of!(rbd_image_info_t, block_name_prefix) == 28);
    assert!(core::mem::offset_of!(rbd_image_info_t, parent_pool) == 56);
    assert!(core::mem::offset_of!(rbd_image_info_t, parent_name) == 64);
    assert!(core::mem::size_of::<rbd_snap_info_t>() == 24);
    assert!(core::mem::size_of::<rbd_image_spec_t>() == 16);
    assert!(core::mem::size_of::<rbd_linked_image_spec_t>() == 48);
    assert!(core::mem::offset_of!(rbd_linked_image_spec_t, image_name) == 32);
    assert!(core::mem::offset_of!(rbd_linked_image_spec_t, trash) == 40);
    assert!(core::mem::size_of::<rbd_snap_spec_t>() == 24);
    assert!(core::mem::offset_of!(rbd_snap_spec_t, namespace_type) == 8);
    assert!(core::mem::offset_of!(rbd_snap_spec_t, name) == 16);
    assert!(core::mem::size_of::<rbd_child_info_t>() == 32);
    assert!(core::mem::offset_of!(rbd_child_info_t, trash) == 24);
    assert!(core::mem::size_of::<rbd_image_watcher_t>() == 24);
    assert!(core::mem::size_of::<rados_pool_stat_t>() == 128);
    assert!(core::mem::offset_of!(rados_pool_stat_t, num_user_bytes) == 96);
    assert!(core::mem::size_of::<rados_cluster_stat_t>() == 32);
};

// ---- libc structs -----------------------------------------------------------------------------

/// `struct timespec`.
pub type timespec = libc::timespec;
/// `struct timeval`.
pub type timeval = libc::timeval;
/// `struct iovec`.
pub type iovec = libc::iovec;
/// `time_t`.
pub type time_t = libc::time_t;
