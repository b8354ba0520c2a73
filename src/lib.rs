//! kiln: a from-scratch neural-network engine — reverse-mode autograd,
//! hand-written CPU (and CUDA) kernels, Adam and friends, and a GAN trainer.
//!
//! This facade re-exports the workspace crates:
//! - [`core`] (kiln-core): `Tensor`, autograd, gradcheck;
//! - [`cpu`] (kiln-cpu): the CPU kernels on plain slices;
//! - [`nn`] (kiln-nn): layers, optimizers, state dicts;
//! - [`gan`] (kiln-gan): datasets, GAN losses, the trainer;
//! - `cuda` (kiln-cuda, feature `cuda`): the CUDA backend.
//!
//! ```
//! use kiln::{Device, Tensor};
//! let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2], Device::Cpu)?.requires_grad(true);
//! let y = x.matmul(&x)?.relu()?.sum()?;
//! y.backward()?;
//! assert_eq!(x.grad().unwrap().to_vec::<f32>()?, vec![7.0, 11.0, 9.0, 13.0]);
//! # Ok::<(), kiln::Error>(())
//! ```

pub mod bench;
pub mod cli;

pub use kiln_core as core;
pub use kiln_core::{autograd, no_grad, DType, Device, Error, KeepWarm, Result, Tensor};
pub use kiln_cpu as cpu;
#[cfg(feature = "cuda")]
pub use kiln_cuda as cuda;
pub use kiln_gan as gan;
pub use kiln_nn as nn;
