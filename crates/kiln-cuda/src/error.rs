//! The crate's error type. kiln-core maps it onto `kiln::Error`.

use cudarc::driver::DriverError;

/// Everything that can go wrong in the CUDA backend.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// No usable GPU: libcuda or libnvrtc cannot be loaded, or the driver reports no device.
    /// The message says which, and what to do about it.
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// A CUDA driver call failed (launch, copy, allocation, module load).
    #[error("CUDA driver error in {context}: {source}")]
    Driver {
        /// What kiln was doing when the driver failed.
        context: String,
        /// The driver's error code.
        #[source]
        source: DriverError,
    },
    /// NVRTC failed to compile a kernel file; `log` is the compiler's output.
    #[error("NVRTC failed to compile {file}: {message}\n{log}")]
    Nvrtc {
        /// The kernel file, e.g. `gemm.cu`.
        file: String,
        /// The NVRTC status or a short reason.
        message: String,
        /// The program log (compiler diagnostics).
        log: String,
    },
    /// Buffer lengths or shapes do not match what the kernel needs.
    #[error("shape error: {0}")]
    Shape(String),
}

impl CudaError {
    /// Wraps a driver error with what was being done.
    pub fn driver(context: impl Into<String>, source: DriverError) -> Self {
        CudaError::Driver {
            context: context.into(),
            source,
        }
    }
}

/// Result alias used throughout kiln-cuda.
pub type Result<T> = std::result::Result<T, CudaError>;
