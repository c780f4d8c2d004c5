//! Engine tuning knobs (the image layer fills them from Shale's settings).

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
    /// Attempts per segment upload before the image is marked failed.
    pub upload_attempts: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            segment_size: 8 << 20,
            upload_threads: 4,
            checkpoint_interval: 64,
            max_pending: 8,
            upload_attempts: 5,
        }
    }
}

impl EngineConfig {
    /// Largest accepted segment size (sector offsets inside a segment must fit in 24 bits).
    pub const MAX_SEGMENT_SIZE: u64 = 1 << 30;
    /// Smallest accepted segment size.
    pub const MIN_SEGMENT_SIZE: u64 = 64 << 10;
}
