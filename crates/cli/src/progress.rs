//! Progress bars on a terminal (stderr); nothing when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar titled `msg` over `total` units (bytes or objects); hidden off a terminal.
pub fn bar(msg: &'static str, total: u64) -> ProgressBar {
    let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg}: {percent:>3}% [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(msg);
    b
}

/// A bar counting objects rather than bytes.
pub fn count_bar(msg: &'static str, total: u64) -> ProgressBar {
    let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg}: {percent:>3}% [{bar:30}] {pos}/{len}") {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(msg);
    b
}
