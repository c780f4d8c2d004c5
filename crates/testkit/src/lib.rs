//! Crash-test harness shared by the writer child process and the verifying test.
//!
//! The writer appends one fixed-size record to an operation log *before* it issues each
//! operation, and one record *after* each flush returns. A SIGKILL can land anywhere; the log
//! then says which operations might have happened (all that were recorded) and which must have
//! (all before the last completed flush). The verifier replays the log on a model disk and
//! accepts the image if it equals the model after some prefix k of the operations with
//! `last_flush <= k <= recorded`.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a front end / tool / device layer: real time is fine here
pub mod sim;

use std::io::Write;

/// One logged operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write {
        off: u64,
        len: u64,
        seed: u64,
    },
    Zero {
        off: u64,
        len: u64,
    },
    /// Every operation before this record's index is durable.
    Flushed {
        upto: u64,
    },
    /// Snapshot `s<id>` was created holding exactly the operations before `upto`.
    Snap {
        upto: u64,
        id: u64,
    },
}

const REC: usize = 32;

impl Op {
    pub fn encode(&self) -> [u8; REC] {
        let mut b = [0u8; REC];
        let (k, a, c, d) = match *self {
            Op::Write { off, len, seed } => (1u64, off, len, seed),
            Op::Zero { off, len } => (2, off, len, 0),
            Op::Flushed { upto } => (3, upto, 0, 0),
            Op::Snap { upto, id } => (4, upto, id, 0),
        };
        for (i, v) in [k, a, c, d].iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decode a log; a torn last record (short) is ignored.
    pub fn decode_log(bytes: &[u8]) -> Vec<Op> {
        bytes
            .chunks_exact(REC)
            .filter_map(|r| {
                let w = |i: usize| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&r[i * 8..i * 8 + 8]);
                    u64::from_le_bytes(a)
                };
                match w(0) {
                    1 => Some(Op::Write {
                        off: w(1),
                        len: w(2),
                        seed: w(3),
                    }),
                    2 => Some(Op::Zero {
                        off: w(1),
                        len: w(2),
                    }),
                    3 => Some(Op::Flushed { upto: w(1) }),
                    4 => Some(Op::Snap {
                        upto: w(1),
                        id: w(2),
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// Append to a log file with one write call (a kill cannot split a record in the page cache
    /// except at the very end, which decode ignores).
    pub fn append(&self, f: &mut std::fs::File) -> std::io::Result<()> {
        f.write_all(&self.encode())
    }
}

/// Deterministic data of a write: a function of (seed, absolute byte offset).
pub fn pattern(seed: u64, off: u64, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let x = ((off + i) / 8) ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Small seeded generator (xorshift64*), so runs replay from a printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x6a09_e667_f3bc_c909 | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Apply one operation to a model disk.
pub fn apply(model: &mut [u8], op: &Op) {
    match *op {
        Op::Write { off, len, seed } => {
            model[off as usize..(off + len) as usize].copy_from_slice(&pattern(seed, off, len));
        }
        Op::Zero { off, len } => model[off as usize..(off + len) as usize].fill(0),
        Op::Flushed { .. } | Op::Snap { .. } => {}
    }
}
