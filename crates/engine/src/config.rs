//! Engine tuning knobs and the choice of log device (the image layer fills them from Shale's
//! settings).

use std::time::Duration;

/// When a flush returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Once everything before it is durable on the local log device (the default).
    Journal,
    /// Once everything before it is in the object store.
    Backend,
}

/// Where acknowledged writes wait for their segment to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogConfig {
    /// Nowhere: a flush seals and stores the open segment.
    Memory,
    /// A ring journal of `size` bytes in the file `place` names (a real file, or a simulated
    /// one for crash tests); `owner` identifies the image (a stable hash).
    Ring {
        place: LogPlaceRef,
        size: u64,
        owner: u64,
    },
    /// Records go straight into the open segment's staging file (on a local-directory store:
    /// next to the segments; the device sees each byte once).
    InPlace(StagingRef),
}

/// The staging area of an in-place log, handed to the engine; equal when the same one.
#[derive(Debug, Clone)]
pub struct StagingRef(pub std::sync::Arc<dyn shale_journal::Staging>);

impl PartialEq for StagingRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for StagingRef {}

/// Where the engine's ring journal lives, handed to it; equal when it names the same file.
#[derive(Debug, Clone)]
pub struct LogPlaceRef(pub std::sync::Arc<dyn shale_journal::LogPlace>);

impl PartialEq for LogPlaceRef {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.name() == other.0.name()
    }
}
impl Eq for LogPlaceRef {}

impl LogPlaceRef {
    /// A real journal file at `path`.
    pub fn file(path: impl Into<std::path::PathBuf>) -> Self {
        LogPlaceRef(std::sync::Arc::new(shale_journal::DirectPlace(path.into())))
    }
    /// One file handed in (e.g. a simulated [`shale_journal::CrashFile`]).
    pub fn fixed(file: std::sync::Arc<dyn shale_journal::LogFile>) -> Self {
        LogPlaceRef(std::sync::Arc::new(shale_journal::FixedPlace(file)))
    }
}

/// Whether this writer may still act as the image's owner (its exclusive-lock lease has time
/// left). A writer that may not never deletes anything.
#[derive(Clone)]
pub struct LeaseCheck(pub std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for LeaseCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseCheck")
    }
}

/// How the engine batches and uploads.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Seal the open segment when its data reaches this many bytes.
    pub segment_size: u64,
    /// Segment uploads in flight at once.
    pub upload_threads: usize,
    /// Write a checkpoint after this many segments.
    pub checkpoint_interval: u64,
    /// Sealed segments waiting for upload before writers are held back.
    pub max_pending: usize,
    /// Attempts per segment upload before the image is marked failed (without a journal
    /// device; with one, unavailable stores are retried until they come back).
    pub upload_attempts: u32,
    pub durability: Durability,
    /// Longest time a writer waits for journal or memory space before its write fails.
    pub full_wait: Duration,
    /// Bytes reserved for the segment header in in-place segment files.
    pub header_reserve: u64,
    /// Which records the in-place log writes in pieces, overlapping the device with the
    /// encoding of the rest (see `shale_journal::RecordPieces`).
    pub record_pieces: shale_journal::RecordPieces,
    pub log: LogConfig,
    /// (epoch, first segment number) of the newest writer epoch: segments from that number on
    /// written under an older epoch belong to a writer that lost the image and are ignored.
    pub fence: Option<(u64, u64)>,
    /// Seal an open segment that has waited this long with no new writes coming in.
    pub seal_after: Duration,
    /// Segments whose live fraction is below this are collected (0 disables automatic GC).
    pub gc_threshold: f64,
    /// Run GC automatically after this many stored segments. An automatic run relocates at
    /// most the bytes stored since the previous one, emptiest victims first (an explicit
    /// `Volume::gc` takes every victim).
    pub gc_every: u64,
    /// The exclusive-lock lease, for writers that hold one (None: no lock, always owner).
    pub lease: Option<LeaseCheck>,
    /// Time and randomness (injected: the simulator drives them).
    pub clock: std::sync::Arc<dyn shale_clock::Clock>,
    pub entropy: std::sync::Arc<dyn shale_clock::Entropy>,
    /// Longest time `close` waits for the store to take the last segments (a journal keeps
    /// them past it).
    pub close_wait: Duration,
    /// Local cache of stored segment blocks, and this log's name in it.
    pub cache: Option<(std::sync::Arc<dyn shale_cache::BlockCache>, u64)>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            segment_size: 8 << 20,
            upload_threads: 4,
            checkpoint_interval: 64,
            max_pending: 8,
            upload_attempts: 5,
            durability: Durability::Journal,
            full_wait: Duration::from_secs(60),
            header_reserve: 64 << 10,
            record_pieces: shale_journal::RecordPieces::default(),
            log: LogConfig::Memory,
            cache: None,
            fence: None,
            seal_after: Duration::from_secs(1),
            gc_threshold: 0.0,
            gc_every: 16,
            close_wait: Duration::from_secs(15),
            lease: None,
            clock: shale_clock::system(),
            entropy: shale_clock::os(),
        }
    }
}

impl EngineConfig {
    /// Largest accepted segment size (sector offsets inside a segment must fit in 24 bits).
    pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;
    /// Smallest accepted segment size.
    pub const MIN_SEGMENT_SIZE: u64 = 64 << 10;
}
