//! Exclusive-lock ownership per open image handle, with librbd's rules.
//!
//! The store-level lock (`shale_image::lock`) is held by the process's one engine per image
//! (see [`crate::state`]); librbd gives every `rbd_image_t` its own lock client instead. So the
//! engine holds the lock for the process, and [`SharedImage::holder`] names the handle that
//! owns it: the one that did the last write or `rbd_lock_acquire` while the engine held the
//! lock without interruption (same [`shale_image::Image::lock_generation`]).
//!
//! ```text
//!   process A                                   process B
//!   handle a1 ─┐                                handle b1 ── engine ── store lock?
//!   handle a2 ─┼─ engine ── store lock (owner)
//!              └─ holder = a2 (generation 7)
//! ```
//!
//! A handle is *automatic* until it calls `rbd_lock_acquire` (even unsuccessfully), then
//! *manual* for good (librbd switches it to its standard lock policy; `rbd_lock_release` does
//! not switch back). Rules, measured on Ceph 16.2.15 (ceph-mini) with two handles in one
//! process and in two processes (tests/lock_handles.py runs the same checks with `REAL=1`):
//!
//! | request from a handle that does not own the lock | owner automatic | owner manual | nobody |
//! |---|---|---|---|
//! | write / discard / write-zeroes / flush, automatic handle | lock moves to it | `-EROFS` | takes it |
//! | ..., manual handle | `-EROFS` | `-EROFS` | `-EROFS` |
//! | `rbd_lock_acquire` | lock moves to it | `-EROFS` | takes it |
//! | `rbd_lock_release` | `-EINVAL` | `-EINVAL` | `-EINVAL` |
//! | `rbd_snap_rollback` | `-EROFS` | `-EROFS` | takes it |
//! | `rbd_snap_set_limit` | done | `-EROFS` | done |
//! | snap create/remove/rename/protect, resize, flatten, metadata, features | done | done (the owner does it) | done, and it owns the lock |
//!
//! A read-only handle or one set to a snapshot never owns the lock; switching a handle to a
//! snapshot or closing it gives its ownership up (a manual owner releases the store lock, so
//! that others may take it). Across processes a manual owner's lock is recorded as explicit
//! in the store, so other processes' writes and `rbd_lock_acquire` get `-EROFS` too, and
//! their `snap_create`, `resize` and `flatten` are forwarded to the owner through the lock
//! object ([`RbdImage::forward_to_owner`]); so are they to an automatic owner in another
//! process, which keeps the lock, as librbd's owner does.

use crate::errno;
use crate::image::RbdImage;
use crate::state::lock;
use core::ffi::c_int;
use shale_image::features::EXCLUSIVE_LOCK;
use shale_image::ErrorKind;
use std::sync::atomic::Ordering;

/// The handle of this process that owns the exclusive lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Holder {
    /// [`RbdImage::instance`] of the owning handle.
    handle: u64,
    /// It took the lock with `rbd_lock_acquire`: it refuses to hand it over.
    manual: bool,
    /// The engine's lock generation when it became the owner.
    generation: u64,
}

/// A lock request refused because another client holds the lock explicitly is `-EROFS` in
/// librbd.
pub(crate) fn lock_errno(e: &shale_image::Error) -> c_int {
    if e.kind() == ErrorKind::Busy {
        -libc::EROFS
    } else {
        errno::of(e)
    }
}

impl RbdImage {
    /// The owner among this process's handles, if the engine still holds the lock it had
    /// when that handle became the owner.
    fn current_holder(&self, head: &shale_image::Image) -> Option<Holder> {
        let h = (*lock(&self.shared.holder))?;
        (head.is_lock_owner() && head.lock_generation() == h.generation).then_some(h)
    }

    fn set_holder(&self, head: &shale_image::Image, manual: bool) {
        *lock(&self.shared.holder) = Some(Holder {
            handle: self.instance,
            manual,
            generation: head.lock_generation(),
        });
    }

    fn manual(&self) -> bool {
        self.manual.load(Ordering::SeqCst)
    }

    /// `rbd_is_exclusive_lock_owner`: this handle owns the lock now.
    pub(crate) fn is_lock_owner(&self) -> bool {
        if self.read_only || self.snap_view().is_some() {
            return false;
        }
        let head = self.head();
        head.features() & EXCLUSIVE_LOCK != 0
            && self
                .current_holder(&head)
                .is_some_and(|h| h.handle == self.instance)
    }

    /// Before a write, discard, write-zeroes or flush through this (writable, head) handle:
    /// make it the owner, taking the lock over when the rules above allow, else `-EROFS`.
    pub(crate) fn claim_for_io(&self) -> Result<(), c_int> {
        let head = self.head();
        if head.features() & EXCLUSIVE_LOCK == 0 || head.is_read_only() {
            return Ok(());
        }
        let manual = self.manual();
        {
            let mut slot = lock(&self.shared.holder);
            if head.is_lock_owner() {
                let cur = slot.filter(|h| h.generation == head.lock_generation());
                match cur {
                    Some(h) if h.handle == self.instance => return Ok(()),
                    Some(h) if h.manual => return Err(-libc::EROFS),
                    _ if manual => return Err(-libc::EROFS),
                    _ => {
                        *slot = Some(Holder {
                            handle: self.instance,
                            manual: false,
                            generation: head.lock_generation(),
                        });
                        return Ok(());
                    }
                }
            }
        }
        if manual {
            return Err(-libc::EROFS);
        }
        // Another process holds it (or nobody): ask for it as librbd's automatic policy does.
        head.lock_take().map_err(|e| lock_errno(&e))?;
        self.set_holder(&head, false);
        Ok(())
    }

    /// `rbd_lock_acquire(EXCLUSIVE)` (argument and feature checks done by the caller).
    pub(crate) fn acquire_explicit(&self, head: &shale_image::Image) -> Result<(), c_int> {
        self.manual.store(true, Ordering::SeqCst);
        if self
            .current_holder(head)
            .is_some_and(|h| h.handle != self.instance && h.manual)
        {
            return Err(-libc::EROFS);
        }
        head.lock_acquire().map_err(|e| lock_errno(&e))?;
        self.set_holder(head, true);
        Ok(())
    }

    /// `rbd_lock_release`: `-EINVAL` unless this handle owns the lock.
    pub(crate) fn release_explicit(&self, head: &shale_image::Image) -> Result<(), c_int> {
        if !self.is_lock_owner() {
            return Err(-libc::EINVAL);
        }
        *lock(&self.shared.holder) = None;
        head.lock_release().map_err(|e| errno::of(&e))
    }

    /// After a maintenance operation that ran with the engine's lock: when no handle owned
    /// it, this one does now (librbd takes a free lock for the operation and keeps it).
    pub(crate) fn adopt_after_op(&self) {
        if self.writable().is_err() {
            return;
        }
        let head = self.head();
        if head.features() & EXCLUSIVE_LOCK == 0 || !head.is_lock_owner() {
            return;
        }
        if self.current_holder(&head).is_none() {
            self.set_holder(&head, self.manual());
        }
    }

    /// Whether another handle or client owns the lock: `Some(manual)`.
    fn owned_elsewhere(&self, head: &shale_image::Image) -> Result<Option<bool>, c_int> {
        if head.features() & EXCLUSIVE_LOCK == 0 {
            return Ok(None);
        }
        if head.is_lock_owner() {
            return Ok(self
                .current_holder(head)
                .filter(|h| h.handle != self.instance)
                .map(|h| h.manual));
        }
        head.lock_held_elsewhere().map_err(|e| errno::of(&e))
    }

    /// Whether another client holds the lock (explicitly or not): then `snap_create`, `resize`
    /// and `flatten` are run by that owner ([`shale_image::Image::snap_create_at_owner`]...),
    /// as librbd forwards them (they need the writer, which only the owner has), and the lock
    /// stays where it is.
    pub(crate) fn forward_to_owner(&self, head: &shale_image::Image) -> Result<bool, c_int> {
        if head.features() & EXCLUSIVE_LOCK == 0 || head.is_lock_owner() {
            return Ok(false);
        }
        Ok(head
            .lock_held_elsewhere()
            .map_err(|e| errno::of(&e))?
            .is_some())
    }

    /// `rbd_snap_rollback` needs the lock locally: `-EROFS` when another handle or client
    /// owns it (librbd does not ask an owner to hand it over for a rollback).
    pub(crate) fn check_rollback(&self, head: &shale_image::Image) -> Result<(), c_int> {
        match self.owned_elsewhere(head)? {
            Some(_) => Err(-libc::EROFS),
            None => Ok(()),
        }
    }

    /// `rbd_snap_set_limit`: `-EROFS` while another handle or client holds the lock
    /// explicitly.
    pub(crate) fn check_not_held_explicitly(&self, head: &shale_image::Image) -> Result<(), c_int> {
        match self.owned_elsewhere(head)? {
            Some(true) => Err(-libc::EROFS),
            _ => Ok(()),
        }
    }

    /// The handle closes or switches to a snapshot: it owns nothing any more. A manual owner
    /// lets the store lock go, so that other handles and clients may take it.
    pub(crate) fn give_up_lock(&self) {
        let mine = {
            let mut slot = lock(&self.shared.holder);
            match *slot {
                Some(h) if h.handle == self.instance => slot.take(),
                _ => None,
            }
        };
        let head = self.head();
        if let Some(h) = mine {
            if h.manual && head.is_lock_owner() && head.lock_generation() == h.generation {
                if let Err(e) = head.lock_release() {
                    tracing::warn!(error = %e, "releasing the exclusive lock");
                }
            }
        }
    }
}
