//! The one error type of kiln. Every message carries the facts (shapes, dtypes,
//! op names, paths) a user needs to fix the call.

use std::fmt;

/// Everything that can go wrong on user input or I/O. Panics are reserved for
/// internal bugs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two shapes that should agree do not: `shape mismatch in matmul: [64, 784] x [128, 784]`.
    #[error("shape mismatch in {op}: {lhs:?} x {rhs:?}")]
    ShapeMismatch {
        op: &'static str,
        lhs: Vec<usize>,
        rhs: Vec<usize>,
    },
    /// A shape is invalid on its own (wrong rank, bad dim, element count mismatch).
    #[error("bad shape in {op}: {msg}")]
    BadShape { op: &'static str, msg: String },
    /// Operands of different dtypes.
    #[error("dtype mismatch in {op}: {lhs} vs {rhs}")]
    DTypeMismatch {
        op: &'static str,
        lhs: crate::DType,
        rhs: crate::DType,
    },
    /// Operands on different devices.
    #[error("device mismatch in {op}: {lhs} vs {rhs}")]
    DeviceMismatch {
        op: &'static str,
        lhs: crate::Device,
        rhs: crate::Device,
    },
    /// The op is not available for this dtype or device.
    #[error("{op} is not supported for {what}")]
    Unsupported { op: &'static str, what: String },
    /// No GPU, no driver, or no NVRTC.
    #[error("no device: {0}")]
    NoDevice(String),
    /// Misuse of autograd: backward twice, grad of a non-scalar, …
    #[error("autograd: {0}")]
    Autograd(String),
    /// A tensor saved for backward was modified in place after it was saved.
    #[error("a tensor saved by {op} (forward called at {location}) was modified in place before backward: saved at version {saved}, now at version {now}")]
    InplaceModified {
        op: &'static str,
        location: String,
        saved: u64,
        now: u64,
    },
    /// Anomaly mode: a backward rule produced NaN or Inf.
    #[error("anomaly: backward of {op} (forward called at {location}) produced {what}")]
    Anomaly {
        op: &'static str,
        location: String,
        what: String,
    },
    /// A file that cannot be read as what it should be (truncated, corrupt, wrong format).
    #[error("bad file {path}: {msg}")]
    BadFile { path: String, msg: String },
    /// I/O failure with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Invalid argument value (a config, a flag, a hyper-parameter).
    #[error("{0}")]
    Invalid(String),
    /// A CUDA driver, NVRTC or launch failure.
    #[error("cuda: {0}")]
    Cuda(String),
}

/// `Result` with kiln's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
    /// A bad-file error with the path and what is wrong.
    pub fn bad_file(path: impl fmt::Display, msg: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.to_string(),
            msg: msg.into(),
        }
    }
}
