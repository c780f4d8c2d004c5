//! The public error type shared by every Shale crate.
//!
//! Callers branch on [`ErrorKind`] (coarse, stable, mapped one-to-one onto an errno by the C
//! interface); humans read the message, which says what went wrong and, where it can, what to do.
#![forbid(unsafe_code)]

use std::fmt;

/// What kind of failure this is. Front ends map this (and only this) onto their own codes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The pool, image, object or key does not exist.
    NotFound,
    /// Something of that name already exists.
    Exists,
    /// The request itself is wrong (bad name, size, offset, spec ...).
    Invalid,
    /// The object is in use, or a condition (version) did not hold.
    Busy,
    /// The image or handle is read-only.
    ReadOnly,
    /// A store or device is unreachable; retrying later may work.
    Unavailable,
    /// Stored data failed a checksum or does not decode.
    Corruption,
    /// Another writer holds the image; this one must not write.
    Fenced,
    /// Out of space (journal, cache, store quota).
    NoSpace,
    /// Not implemented / not supported.
    Unsupported,
    /// It still has dependents (an image with snapshots, a snapshot with clones).
    NotEmpty,
    /// An I/O error not covered above.
    Io,
    /// A bounded wait ran out (the store did not answer in time).
    TimedOut,
}

impl ErrorKind {
    /// The errno (positive) the C interface uses for this kind.
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::NotFound => 2,     // ENOENT
            ErrorKind::Exists => 17,      // EEXIST
            ErrorKind::Invalid => 22,     // EINVAL
            ErrorKind::Busy => 16,        // EBUSY
            ErrorKind::ReadOnly => 30,    // EROFS
            ErrorKind::Unavailable => 11, // EAGAIN
            ErrorKind::Corruption => 5,   // EIO
            ErrorKind::Fenced => 108,     // ESHUTDOWN
            ErrorKind::NoSpace => 28,     // ENOSPC
            ErrorKind::Unsupported => 38, // ENOSYS
            ErrorKind::NotEmpty => 39,    // ENOTEMPTY
            ErrorKind::Io => 5,           // EIO
            ErrorKind::TimedOut => 110,   // ETIMEDOUT
        }
    }
}

/// An error: a kind, a message, and optionally the error that caused it.
pub struct Error {
    kind: ErrorKind,
    msg: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with Shale's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
            source: None,
        }
    }
    pub fn with_source(
        kind: ErrorKind,
        msg: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            msg: msg.into(),
            source: Some(Box::new(source)),
        }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
    /// Prefix the message with more context, keeping kind and source.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, msg)
    }
    pub fn exists(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Exists, msg)
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg)
    }
    pub fn busy(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Busy, msg)
    }
    pub fn corruption(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corruption, msg)
    }
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, msg)
    }
    pub fn io(msg: impl Into<String>, e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::Exists,
            std::io::ErrorKind::StorageFull => ErrorKind::NoSpace,
            _ => ErrorKind::Io,
        };
        Self::with_source(kind, msg, e)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.msg)?;
        if let Some(s) = &self.source {
            write!(f, " ({s})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Build an error of a kind with `format!` arguments: `err!(Invalid, "bad size {n}")`.
#[macro_export]
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        $crate::Error::new($crate::ErrorKind::$kind, format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn display_and_kind() {
        let e = err!(NotFound, "image {} not found", "rbd/x").context("open");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "open: image rbd/x not found");
        assert_eq!(e.kind().errno(), 2);
    }
}
