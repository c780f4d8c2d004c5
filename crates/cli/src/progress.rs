//! Progress on stderr for long operations, in one of three styles chosen once per process by
//! the front end:
//!
//! - `Bar` (the `shale` command): an indicatif bar, drawn only when stderr is a terminal;
//! - `Rbd` (the command invoked as `rbd`): Ceph's `Importing image: 42% complete...` lines,
//!   ended by `done.` or, when the operation fails (the reporter is dropped unfinished),
//!   `failed.`; printed whether or not stderr is a terminal, as rbd does;
//! - `Quiet` (`rbd --no-progress`): nothing.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown; see the module header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Bar = 0,
    Rbd = 1,
    Quiet = 2,
}

static STYLE: AtomicU8 = AtomicU8::new(Style::Bar as u8);

/// Choose the style for every reporter made from now on (front ends call this once).
pub fn set_style(s: Style) {
    STYLE.store(s as u8, Ordering::Relaxed);
}

fn style() -> Style {
    match STYLE.load(Ordering::Relaxed) {
        1 => Style::Rbd,
        2 => Style::Quiet,
        _ => Style::Bar,
    }
}

/// A progress reporter; its methods take `&self` so that progress callbacks can borrow it.
pub struct Progress {
    inner: Inner,
}

enum Inner {
    Bar(ProgressBar),
    Rbd {
        msg: &'static str,
        len: AtomicU64,
        pos: AtomicU64,
        /// Last percentage printed (u64::MAX: none yet).
        shown: AtomicU64,
        finished: AtomicBool,
    },
    Quiet,
}

impl Progress {
    fn new(msg: &'static str, total: u64, template: &str) -> Progress {
        let inner = match style() {
            Style::Bar => {
                let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                if let Ok(st) = ProgressStyle::with_template(template) {
                    b.set_style(st.progress_chars("=> "));
                }
                b.set_message(msg);
                Inner::Bar(b)
            }
            Style::Rbd => Inner::Rbd {
                msg,
                len: AtomicU64::new(total),
                pos: AtomicU64::new(0),
                shown: AtomicU64::new(u64::MAX),
                finished: AtomicBool::new(false),
            },
            Style::Quiet => Inner::Quiet,
        };
        Progress { inner }
    }

    pub fn set_length(&self, n: u64) {
        match &self.inner {
            Inner::Bar(b) => b.set_length(n),
            Inner::Rbd { len, .. } => {
                len.store(n, Ordering::Relaxed);
                self.redraw();
            }
            Inner::Quiet => {}
        }
    }

    pub fn set_position(&self, n: u64) {
        match &self.inner {
            Inner::Bar(b) => b.set_position(n),
            Inner::Rbd { pos, .. } => {
                pos.store(n, Ordering::Relaxed);
                self.redraw();
            }
            Inner::Quiet => {}
        }
    }

    pub fn inc(&self, n: u64) {
        match &self.inner {
            Inner::Bar(b) => b.inc(n),
            Inner::Rbd { pos, .. } => {
                pos.fetch_add(n, Ordering::Relaxed);
                self.redraw();
            }
            Inner::Quiet => {}
        }
    }

    /// The operation succeeded: clear the bar, or print rbd's `100% complete...done.`.
    pub fn finish_and_clear(&self) {
        match &self.inner {
            Inner::Bar(b) => b.finish_and_clear(),
            Inner::Rbd { msg, finished, .. } => {
                if !finished.swap(true, Ordering::Relaxed) {
                    eprint_flush(&format!("\r{msg}: 100% complete...done.\n"));
                }
            }
            Inner::Quiet => {}
        }
    }

    fn percent(&self) -> u64 {
        match &self.inner {
            Inner::Rbd { len, pos, .. } => {
                let (l, p) = (len.load(Ordering::Relaxed), pos.load(Ordering::Relaxed));
                if l == 0 {
                    0
                } else {
                    (p.min(l) as u128 * 100 / l as u128) as u64
                }
            }
            _ => 0,
        }
    }

    fn redraw(&self) {
        if let Inner::Rbd {
            msg,
            shown,
            finished,
            ..
        } = &self.inner
        {
            let pct = self.percent();
            if !finished.load(Ordering::Relaxed) && shown.swap(pct, Ordering::Relaxed) != pct {
                eprint_flush(&format!("\r{msg}: {pct}% complete..."));
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Inner::Rbd { msg, finished, .. } = &self.inner {
            if !finished.load(Ordering::Relaxed) {
                let pct = self.percent();
                eprint_flush(&format!("\r{msg}: {pct}% complete...failed.\n"));
            }
        }
    }
}

fn eprint_flush(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes());
    let _ = e.flush();
}

/// A reporter titled `msg` over `total` bytes.
pub fn bar(msg: &'static str, total: u64) -> Progress {
    Progress::new(
        msg,
        total,
        "{msg}: {percent:>3}% [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
}

/// A reporter counting objects rather than bytes.
pub fn count_bar(msg: &'static str, total: u64) -> Progress {
    Progress::new(msg, total, "{msg}: {percent:>3}% [{bar:30}] {pos}/{len}")
}
