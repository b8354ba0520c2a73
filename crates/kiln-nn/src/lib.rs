//! kiln-nn: layers, losses and optimizers on top of kiln-core's autograd.
//!
//! ```
//! use kiln_core::{Device, DType, Tensor};
//! use kiln_nn::{Activation, Adam, AdamConfig, Linear, Module, Optimizer, Sequential};
//! use rand::SeedableRng;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let net = Sequential::new()
//!     .push(Linear::new(2, 8, true, &mut rng)?)
//!     .push(Activation::Relu)
//!     .push(Linear::new(8, 1, true, &mut rng)?);
//! let mut opt = Adam::new(net.parameters(), AdamConfig::default());
//! let x = Tensor::randn(&[4, 2], DType::F32, Device::Cpu, &mut rng)?;
//! let loss = net.forward(&x)?.powf(2.0)?.mean()?;
//! loss.backward()?;
//! opt.step()?;
//! # Ok::<(), kiln_core::Error>(())
//! ```

mod dropout;
mod layers;
mod loss;
mod norm;
mod optim;
pub mod state_dict;

pub use dropout::Dropout;
pub use layers::{tensor_to_device, Activation, Linear, Module, Sequential};
pub use loss::{BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss};
pub use norm::{batch_norm, BatchNorm1d, BatchNormConfig};
pub use optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
pub use state_dict::{load_state_dict, load_tensors, save_state_dict, save_tensors};
