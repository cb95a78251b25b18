//! The crate's one error type: a kind that decides what happens next, plus context.

use std::fmt;

/// What went wrong, in the terms that decide what the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The device does not exist (unplugged, wrong path): retry with backoff.
    NoDevice,
    /// The device exists but gave no frame in time: retry, report `no_frame`.
    NoSignal,
    /// The device or peer went away mid-stream: reopen with backoff.
    Disconnected,
    /// The device cannot do what was asked (format, size): stop, tell the user.
    Unsupported,
    /// Bad configuration or bad request input: refuse, name the key.
    InvalidInput,
    /// Asked for something that does not exist (camera, clip, experiment).
    NotFound,
    /// The request does not fit the current state (already recording, ...).
    WrongState,
    /// Storage is full or below the configured reserve: pause, retry later.
    StorageFull,
    /// The data directory's filesystem is gone or read-only (drive pulled out,
    /// unmounted, remounted read-only after errors): pause, retry when it is back.
    StorageRemoved,
    /// Any other I/O failure.
    Io,
    /// Encoder or muxer failure.
    Codec,
    /// A frame from the camera is damaged (torn or truncated JPEG): skip it, count it.
    Corrupt,
}

impl ErrorKind {
    /// Stable snake_case name used in JSON errors and logs.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NoDevice => "no_device",
            ErrorKind::NoSignal => "no_signal",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::WrongState => "wrong_state",
            ErrorKind::StorageFull => "storage_full",
            ErrorKind::StorageRemoved => "storage_removed",
            ErrorKind::Io => "io_error",
            ErrorKind::Codec => "codec_error",
            ErrorKind::Corrupt => "corrupt_frame",
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::NoDevice
                | ErrorKind::NoSignal
                | ErrorKind::Disconnected
                | ErrorKind::StorageFull
                | ErrorKind::StorageRemoved
                | ErrorKind::Io
        )
    }
}

/// An error with its kind and a human-readable context chain.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub context: String,
    /// The errno of a wrapped I/O error.
    errno: Option<i32>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Error {
            kind,
            context: context.into(),
            errno: None,
        }
    }

    /// Wraps an I/O error, mapping the errno values that mean something to us.
    pub fn io(err: std::io::Error, context: impl Into<String>) -> Self {
        let kind = match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorKind::StorageFull,
            Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ENXIO) => ErrorKind::NoDevice,
            _ => match err.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Io,
            },
        };
        Error {
            kind,
            errno: err.raw_os_error(),
            context: format!("{}: {err}", context.into()),
        }
    }

    /// The errno of the I/O error this wraps, if it wraps one.
    pub fn os_error(&self) -> Option<i32> {
        self.errno
    }

    /// Adds an outer layer of context ("opening cam0: ...").
    pub fn context(mut self, outer: impl fmt::Display) -> Self {
        self.context = format!("{outer}: {}", self.context);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl std::error::Error for Error {}

/// `result.ctx("opening clip")?` — attaches context to any error convertible to `Error`.
pub trait ResultExt<T> {
    fn ctx(self, context: impl fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::io(e, context.to_string()))
    }
}

impl<T> ResultExt<T> for Result<T> {
    fn ctx(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(context))
    }
}
