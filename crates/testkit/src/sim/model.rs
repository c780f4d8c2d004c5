//! The model the simulator checks the engine against: a history of content operations in the
//! order the engine received them, and the "prefix" rule of the contract — after any crash the
//! image equals the model after some prefix of that history, no shorter than the last flush
//! (or store-durability point) that completed.

/// One content operation, as the engine received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Bytes `data(seed, off, len)` at `off`.
    Write { off: u64, len: u64, seed: u64 },
    /// Zeros (write-zeroes / discard) at [off, off+len).
    Zero { off: u64, len: u64 },
    /// The image became `size` bytes (shrinking trims; growing reads zeros).
    Resize { size: u64 },
}

/// Outcome of an operation as seen by its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Ok,
    Failed,
}

/// One entry of the history; `id` orders entries (ids are unique, increasing, with gaps).
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub op: Op,
    pub status: Status,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The master-seed → scenario-seed derivation (and a general mixer).
pub fn mix(a: u64, b: u64) -> u64 {
    splitmix(a ^ splitmix(b))
}

/// The bytes a write carries: one pseudo-random 64-bit word per absolute 8-byte word of the
/// image, keyed by the write's seed, so that every write is distinguishable from every other
/// and from zeros, and any mix of two writes (or a shifted copy) is detected.
pub fn data(seed: u64, off: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let end = off + len;
    let mut pos = off;
    let k = splitmix(seed);
    while pos < end {
        let w = pos / 8;
        let v = splitmix(k ^ w.wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes();
        let a = (pos % 8) as usize;
        let take = ((8 - a) as u64).min(end - pos) as usize;
        out.extend_from_slice(&v[a..a + take]);
        pos += take as u64;
    }
    out
}

/// Apply one operation to a model disk.
pub fn apply(m: &mut Vec<u8>, op: &Op) {
    match *op {
        Op::Write { off, len, seed } => {
            let (a, z) = (off as usize, (off + len) as usize);
            assert!(z <= m.len(), "model: write {off}+{len} past {}", m.len());
            m[a..z].copy_from_slice(&data(seed, off, len));
        }
        Op::Zero { off, len } => {
            let (a, z) = (off as usize, (off + len) as usize);
            assert!(z <= m.len(), "model: zero {off}+{len} past {}", m.len());
            m[a..z].fill(0);
        }
        Op::Resize { size } => m.resize(size as usize, 0),
    }
}

/// Does the image (read at the current size) equal model `m` shown at that size?
pub fn same(m: &[u8], image: &[u8]) -> bool {
    let n = m.len().min(image.len());
    m[..n] == image[..n] && image[n..].iter().all(|&b| b == 0)
}

/// First byte where the image differs from model `m` (at the image's size).
pub fn first_diff(m: &[u8], image: &[u8]) -> Option<usize> {
    (0..image.len()).find(|&i| image[i] != m.get(i).copied().unwrap_or(0))
}

/// The largest `p >= lower` such that the image equals `base` plus every `Ok` entry with
/// `id < p`; candidates are `lower` and `id + 1` of each `Ok` entry at or past `lower`.
/// Returns (p, the model at p).
pub fn find_prefix(
    base: &[u8],
    entries: &[Entry],
    lower: u64,
    image: &[u8],
) -> Option<(u64, Vec<u8>)> {
    let mut m = base.to_vec();
    let mut i = 0;
    while i < entries.len() && entries[i].id < lower {
        if entries[i].status == Status::Ok {
            apply(&mut m, &entries[i].op);
        }
        i += 1;
    }
    let mut best = if same(&m, image) {
        Some((lower, m.clone()))
    } else {
        None
    };
    for e in &entries[i..] {
        if e.status == Status::Ok {
            apply(&mut m, &e.op);
            if same(&m, image) {
                best = Some((e.id + 1, m.clone()));
            }
        }
    }
    best
}

/// The model after every `Ok` entry with `id < p`.
pub fn model_at(base: &[u8], entries: &[Entry], p: u64) -> Vec<u8> {
    let mut m = base.to_vec();
    for e in entries
        .iter()
        .filter(|e| e.id < p && e.status == Status::Ok)
    {
        apply(&mut m, &e.op);
    }
    m
}

/// Which entry wrote the byte at `at` last in the model after entries `< p` (for reports), and
/// which entry's data (at any point of the history) the image's bytes there equal.
pub fn explain(base: &[u8], entries: &[Entry], p: u64, image: &[u8], at: usize) -> String {
    let mut last = None;
    for e in entries
        .iter()
        .filter(|e| e.id < p && e.status == Status::Ok)
    {
        let (o, l) = match e.op {
            Op::Write { off, len, .. } | Op::Zero { off, len } => (off, len),
            Op::Resize { .. } => continue,
        };
        if (o..o + l).contains(&(at as u64)) {
            last = Some(e.clone());
        }
    }
    // The word of the image at `at`: whose data is it?
    let w0 = at / 8 * 8;
    let got: Vec<u8> = (w0..(w0 + 8).min(image.len())).map(|i| image[i]).collect();
    let mut from = None;
    if got.iter().any(|&b| b != 0) {
        for e in entries {
            if let Op::Write { off, len, seed } = e.op {
                if (off..off + len).contains(&(w0 as u64))
                    && (w0 + got.len()) as u64 <= off + len
                    && data(seed, w0 as u64, got.len() as u64) == got
                {
                    from = Some(e.clone());
                }
            }
        }
    }
    let base_b = base.get(at).copied();
    format!(
        "byte {at}: image has {:#04x}; last op covering it in the model: {last:?}; image word \
         at {w0} comes from {from:?}; base byte {base_b:?}",
        image[at]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_search_finds_the_longest_match() {
        let base = vec![0u8; 4096];
        let e = |id, op| Entry {
            id,
            op,
            status: Status::Ok,
        };
        let entries = vec![
            e(
                1,
                Op::Write {
                    off: 0,
                    len: 100,
                    seed: 1,
                },
            ),
            e(
                2,
                Op::Write {
                    off: 50,
                    len: 100,
                    seed: 2,
                },
            ),
            e(3, Op::Zero { off: 0, len: 10 }),
        ];
        let img = model_at(&base, &entries, 3);
        assert_eq!(find_prefix(&base, &entries, 0, &img).unwrap().0, 3);
        assert!(find_prefix(&base, &entries, 4, &img).is_none());
        let mut torn = img.clone();
        torn[60] ^= 1;
        assert!(find_prefix(&base, &entries, 0, &torn).is_none());
        assert_ne!(data(1, 0, 64), data(2, 0, 64));
        assert_eq!(data(7, 3, 20), data(7, 0, 30)[3..23].to_vec());
    }
}
