//! kiln-core: the [`Tensor`] and kiln's reverse-mode autograd.
//!
//! A `Tensor` is a cheap handle to storage plus shape and strides. While grad
//! mode is on and any input requires grad, every op records a node of a
//! dynamic graph; [`Tensor::backward`] walks that graph in reverse topological
//! order. Backward rules are written with `Tensor` ops themselves, so with
//! `create_graph` they are recorded too and higher-order gradients work.
//!
//! ```
//! use kiln_core::{Tensor, Device};
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], Device::Cpu)?.requires_grad(true);
//! let y = x.mul(&x)?.sum()?;          // y = Σ x²
//! y.backward()?;
//! assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![2.0, 4.0, 6.0]);
//! # Ok::<(), kiln_core::Error>(())
//! ```
//!
//! Tensors on `Device::Cuda(0)` (feature `cuda`) keep their data in GPU memory; every op's
//! forward dispatches on the device (`cuda.rs` holds the CUDA half), and values reach the
//! host only through `to_vec`, `item` or `to(Device::Cpu)`.
//!
//! Where to look: `autograd.rs` (graph, engine, hooks, anomaly mode, DOT
//! export), `ops/` (one file per op family, forward and backward side by
//! side), `gradcheck.rs` (finite-difference checks).

pub mod autograd;
#[cfg(feature = "cuda")]
mod cuda;
mod error;
pub mod gradcheck;
pub mod ops;
mod rules;
mod shape;
mod storage;
mod tensor;

pub use autograd::{is_grad_enabled, no_grad, set_anomaly_enabled, Function, NoGradGuard};
pub use error::{Error, Result};
pub use gradcheck::{gradcheck, GradcheckOptions, GradcheckReport};
/// Keeps the CPU pool's workers polling through a loop of small ops (training steps).
pub use kiln_cpu::warm::KeepWarm;
pub use shape::broadcast_shapes;
pub use storage::pooled_bytes;
pub use tensor::{DType, Device, Element, Tensor};

/// A short list of tensors, two of them held inline (no heap memory): what
/// [`Tensor::linear_many`] returns, for a discriminator's real and fake
/// batches.
pub type Tensors = smallvec::SmallVec<[Tensor; 2]>;
/// The `smallvec` crate, whose `SmallVec` is [`Tensors`] and
/// [`autograd::InputGrads`].
pub use smallvec;

/// kiln's CUDA backend crate (feature `cuda`), for code that drives device buffers directly
/// (fused optimizer steps through [`Tensor::update_cuda`]).
#[cfg(feature = "cuda")]
pub use kiln_cuda;
