//! kiln's CUDA backend: NVRTC-compiled kernels from `kernels/*.cu`, launched with cudarc on
//! plain device buffers.
//!
//! This crate knows nothing about tensors or autograd. It owns the CUDA context, one stream,
//! a caching allocator ([`DeviceBuffer`]s return to a pool on drop) and the compiled kernel
//! modules, and offers launch wrappers that mirror kiln-cpu: GEMM (four teaching variants and
//! a fused linear layer), unary/binary elementwise ops, reductions, losses and fused
//! optimizer steps. Every kernel has a CPU reference in [`reference`](mod@reference).
//!
//! libcuda and libnvrtc are loaded at run time, so a binary built without CUDA runs on a GPU
//! machine; without a GPU, [`CudaBackend::new`] returns [`CudaError::NoDevice`].
//!
//! ```
//! use kiln_cuda::{CudaBackend, UnaryOp};
//! match CudaBackend::new(0) {
//!     Ok(gpu) => {
//!         let x = gpu.htod(&[-1.0, 2.0]).unwrap();
//!         let mut y = gpu.alloc(2).unwrap();
//!         gpu.unary(UnaryOp::Relu, &x, &mut y).unwrap();
//!         assert_eq!(gpu.dtoh(&y).unwrap(), vec![0.0, 2.0]);
//!     }
//!     Err(e) => println!("no GPU here: {e}"),
//! }
//! ```

// Launch wrappers mirror their kernels' signatures (shapes and buffers), which is clearer
// than bundling arguments into one-off structs.
#![allow(clippy::too_many_arguments)]
#![warn(missing_docs)]

pub mod backend;
pub mod bench;
pub mod elementwise;
pub mod error;
pub mod gemm;
pub mod loss;
pub mod nvrtc;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod reference;

pub use backend::{driver_available, CudaBackend};
pub use elementwise::{BinaryOp, BroadcastParams, ElementwiseVariant, UnaryOp};
pub use error::{CudaError, Result};
pub use gemm::{Activation, GemmLayout, GemmTuning, GemmVariant};
pub use loss::PairLoss;
pub use optim::{AdamConfig, SgdConfig};
pub use pool::{DeviceBuffer, PoolStats};
pub use reduce::ReduceOp;
