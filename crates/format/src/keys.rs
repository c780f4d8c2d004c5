//! Every object key Shale builds or parses, in one place (docs/FORMAT.md, "Object layout").
//!
//! ```text
//! <pool>/names/<image-name>                         image name -> id
//! <pool>/images/<id>/header                         image header
//! <pool>/images/<id>/lock                           exclusive-lock object
//! <pool>/images/<id>/seg/<seq:016x>                 segment
//! <pool>/images/<id>/ckpt/<epoch:016x>-<n:016x>[-k] checkpoint (k: a copy)
//! <pool>/images/<id>/snap/<snap-id:016x>            snapshot checkpoint
//! <pool>/images/<id>/open/<epoch:016x>-<seq:016x>   in-place staging file
//! <pool>/images/<id>/adopt/<epoch:016x>-<seq:016x>  staging adopted from a fenced writer
//! ```
//! An image's log lives under its *prefix* `<pool>/images/<id>/`; the functions taking
//! `prefix` expect that form (with the trailing slash).

/// `<pool>/images/<id>/`: where an image's objects live.
pub fn image_prefix(pool: &str, id: &str) -> String {
    format!("{pool}/images/{id}/")
}

/// The header key of the image whose prefix is `prefix`.
pub fn header_in(prefix: &str) -> String {
    format!("{prefix}header")
}

pub fn header(pool: &str, id: &str) -> String {
    format!("{pool}/images/{id}/header")
}

pub fn lock(pool: &str, id: &str) -> String {
    format!("{pool}/images/{id}/lock")
}

/// `<pool>/names/`: the directory of image names.
pub fn names_dir(pool: &str) -> String {
    format!("{pool}/names/")
}

pub fn name(pool: &str, image: &str) -> String {
    format!("{pool}/names/{image}")
}

pub fn seg_dir(prefix: &str) -> String {
    format!("{prefix}seg/")
}

pub fn seg(prefix: &str, seq: u64) -> String {
    format!("{prefix}seg/{seq:016x}")
}

/// The number of a segment key listed under `seg_dir(prefix)`.
pub fn parse_seg(prefix: &str, key: &str) -> Option<u64> {
    hex16(key.strip_prefix(prefix)?.strip_prefix("seg/")?)
}

pub fn ckpt_dir(prefix: &str) -> String {
    format!("{prefix}ckpt/")
}

/// Checkpoint keys sort by writer epoch first: a writer fenced by a newer epoch can never
/// shadow (or rotate away) the checkpoints of the writer that replaced it.
pub fn ckpt(prefix: &str, epoch: u64, next_seq: u64) -> String {
    format!("{prefix}ckpt/{epoch:016x}-{next_seq:016x}")
}

/// A second copy of a checkpoint (`k` ≥ 1): same epoch and next_seq, sorts right after it.
pub fn ckpt_copy(key: &str, k: u32) -> String {
    format!("{key}-{k}")
}

/// (epoch, next_seq) of a checkpoint key (or a copy's) listed under `ckpt_dir(prefix)`.
pub fn parse_ckpt(prefix: &str, key: &str) -> Option<(u64, u64)> {
    let name = key.strip_prefix(prefix)?.strip_prefix("ckpt/")?;
    let mut parts = name.split('-');
    let (e, n) = (hex16(parts.next()?)?, hex16(parts.next()?)?);
    match parts.next() {
        None => Some((e, n)),
        Some(k) if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => {
            parts.next().is_none().then_some((e, n))
        }
        Some(_) => None,
    }
}

/// The newest segment number among `keys` (listed from `seg_dir` and `ckpt_dir`) that is
/// stored or covered by a checkpoint: a new writer's fence lies past it (0 for none).
/// Checkpoints count because GC may delete dead segments at the end of the log.
pub fn max_covered_segment<'a>(prefix: &str, keys: impl IntoIterator<Item = &'a str>) -> u64 {
    keys.into_iter()
        .filter_map(|k| {
            parse_seg(prefix, k).or_else(|| parse_ckpt(prefix, k).map(|(_, n)| n.saturating_sub(1)))
        })
        .max()
        .unwrap_or(0)
}

pub fn snap_dir(prefix: &str) -> String {
    format!("{prefix}snap/")
}

/// A snapshot's checkpoint key, relative to the image prefix.
pub fn snap_rel(id: u64) -> String {
    format!("snap/{id:016x}")
}

pub fn open_dir(prefix: &str) -> String {
    format!("{prefix}open/")
}

pub fn adopt_dir(prefix: &str) -> String {
    format!("{prefix}adopt/")
}

/// Where the files of collected segments wait to be written over as staging files (in-place
/// log on a local-directory store).
pub fn free_dir(prefix: &str) -> String {
    format!("{prefix}free/")
}

/// Key of the kept file of collected segment `seq`.
pub fn free(prefix: &str, seq: u64) -> String {
    format!("{prefix}free/{seq:016x}")
}

/// Key of the staging file of an open segment written in place by a writer of `epoch`.
pub fn staging(prefix: &str, epoch: u64, seq: u64) -> String {
    format!("{prefix}open/{epoch:016x}-{seq:016x}")
}

/// (epoch, seq) of a staging key listed under `dir` (`open_dir` or `adopt_dir`).
pub fn parse_staging(dir: &str, key: &str) -> Option<(u64, u64)> {
    let (e, n) = key.strip_prefix(dir)?.split_once('-')?;
    Some((hex16(e)?, hex16(n)?))
}

/// A 16-digit lower-case hex number.
pub fn hex16(s: &str) -> Option<u64> {
    (s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let p = image_prefix("rbd", "abc");
        assert_eq!(p, "rbd/images/abc/");
        assert_eq!(parse_seg(&p, &seg(&p, 0x2a)), Some(0x2a));
        assert_eq!(parse_seg(&p, "rbd/images/abc/seg/2a"), None);
        assert_eq!(parse_seg(&p, "rbd/images/abd/seg/000000000000002a"), None);
        let c = ckpt(&p, 3, 9);
        assert_eq!(parse_ckpt(&p, &c), Some((3, 9)));
        assert_eq!(parse_ckpt(&p, &ckpt_copy(&c, 1)), Some((3, 9)));
        assert!(ckpt_copy(&c, 1) > c);
        assert_eq!(parse_ckpt(&p, &format!("{c}-x")), None);
        assert_eq!(parse_ckpt(&p, &format!("{c}-1-2")), None);
        let s = staging(&p, 2, 7);
        assert_eq!(parse_staging(&open_dir(&p), &s), Some((2, 7)));
        assert_eq!(
            format!("{p}{}", snap_rel(4)),
            "rbd/images/abc/snap/0000000000000004"
        );
    }

    #[test]
    fn max_covered_segment_counts_segments_and_checkpoints() {
        let p = "rbd/images/abc/";
        assert_eq!(max_covered_segment(p, []), 0);
        let keys = [seg(p, 3), seg(p, 7), ckpt(p, 2, 12), format!("{p}header")];
        assert_eq!(max_covered_segment(p, keys.iter().map(String::as_str)), 11);
        let keys = [seg(p, 9), ckpt(p, 1, 4)];
        assert_eq!(max_covered_segment(p, keys.iter().map(String::as_str)), 9);
    }
}
