//! Batch normalisation over the feature dim, as `torch.nn.BatchNorm1d`.
//!
//! Shape letters: `N` batch, `C` features, `L` length (optional third dim).
//!
//! Training:  y = (x − μ_B) / √(σ²_B + eps) · γ + β, with μ_B and the biased
//! variance σ²_B taken over the batch (and length) dims; the running estimates
//! move by `momentum` towards μ_B and the *unbiased* variance σ²_B·n/(n − 1).
//! Evaluation: the same formula with the running estimates.
//!
//! The forward is a composition of differentiable kiln ops (mean_dims, sub,
//! mul, sqrt, div), so autograd derives the backward, including the gradient
//! that flows through the batch statistics.

use crate::Module;
use kiln_core::{no_grad, DType, Device, Error, Result, Tensor};

/// Options of a [`BatchNorm1d`] (PyTorch's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root (1e-5).
    pub eps: f64,
    /// Weight of the new batch statistic in the running estimates (0.1).
    pub momentum: f64,
    /// Learnable per-feature scale `weight` (γ) and shift `bias` (β).
    pub affine: bool,
    /// Element type of parameters and buffers (F32; F64 for reference tests).
    pub dtype: DType,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
            dtype: DType::F32,
        }
    }
}

/// Batch normalisation of `[N, C]` or `[N, C, L]` inputs, as `torch.nn.BatchNorm1d`.
///
/// State-dict names: `weight`, `bias` (parameters), `running_mean`,
/// `running_var`, `num_batches_tracked` (buffers). `num_batches_tracked` is a
/// 0-d tensor of the module's dtype (PyTorch keeps an int64; its
/// `load_state_dict` casts on copy, and kiln reads int64 files back).
pub struct BatchNorm1d {
    /// γ, shape `[C]` (None without `affine`).
    pub weight: Option<Tensor>,
    /// β, shape `[C]` (None without `affine`).
    pub bias: Option<Tensor>,
    /// Running mean, shape `[C]`.
    pub running_mean: Tensor,
    /// Running unbiased variance, shape `[C]`.
    pub running_var: Tensor,
    /// Number of training batches seen, 0-d.
    pub num_batches_tracked: Tensor,
    config: BatchNormConfig,
    training: bool,
}

impl BatchNorm1d {
    /// `BatchNorm1d(num_features)` with PyTorch's defaults, in training mode:
    /// γ = 1, β = 0, running mean 0, running variance 1.
    pub fn new(num_features: usize) -> Result<Self> {
        Self::with_config(num_features, BatchNormConfig::default())
    }

    /// A BatchNorm1d with explicit options.
    pub fn with_config(num_features: usize, config: BatchNormConfig) -> Result<Self> {
        if num_features == 0 {
            return Err(Error::Invalid("BatchNorm1d: num_features must be positive".into()));
        }
        if !(0.0..=1.0).contains(&config.momentum) || config.eps.is_nan() || config.eps <= 0.0 {
            return Err(Error::Invalid(format!(
                "BatchNorm1d: momentum {} must lie in [0, 1] and eps {} be positive",
                config.momentum, config.eps
            )));
        }
        let (c, dt) = ([num_features], config.dtype);
        let (weight, bias) = if config.affine {
            (
                Some(Tensor::ones(&c, dt, Device::Cpu)?.requires_grad(true)),
                Some(Tensor::zeros(&c, dt, Device::Cpu)?.requires_grad(true)),
            )
        } else {
            (None, None)
        };
        Ok(BatchNorm1d {
            weight,
            bias,
            running_mean: Tensor::zeros(&c, dt, Device::Cpu)?,
            running_var: Tensor::ones(&c, dt, Device::Cpu)?,
            num_batches_tracked: Tensor::zeros(&[], dt, Device::Cpu)?,
            config,
            training: true,
        })
    }

    /// Number of features C.
    pub fn num_features(&self) -> usize {
        self.running_mean.shape()[0]
    }

    /// The options.
    pub fn config(&self) -> BatchNormConfig {
        self.config
    }

    /// True in training mode (batch statistics, running estimates updated).
    pub fn is_training(&self) -> bool {
        self.training
    }
}

/// Functional batch norm over dim 1 of `[N, C]` or `[N, C, L]`, as
/// `torch.nn.functional.batch_norm`. In training mode it normalises with the
/// batch statistics and, when `running` is given, moves the running mean and
/// (unbiased) variance towards them in place under `no_grad`. In evaluation
/// mode it normalises with `running`, which is then required.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &Tensor,
    running: Option<(&Tensor, &Tensor)>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f64,
    eps: f64,
) -> Result<Tensor> {
    if x.rank() != 2 && x.rank() != 3 {
        return Err(Error::BadShape {
            op: "batch_norm",
            msg: format!("input must be [N, C] or [N, C, L], got {:?}", x.shape()),
        });
    }
    let c = x.shape()[1];
    for (what, t) in [
        ("running_mean", running.map(|r| r.0)),
        ("running_var", running.map(|r| r.1)),
        ("weight", weight),
        ("bias", bias),
    ] {
        if let Some(t) = t {
            if t.shape() != [c] {
                return Err(Error::BadShape {
                    op: "batch_norm",
                    msg: format!(
                        "{what} has shape {:?}, input {:?} has {c} features",
                        t.shape(),
                        x.shape()
                    ),
                });
            }
        }
    }
    // Statistics are per feature: reduce over every dim but 1; [C] vectors
    // broadcast as [1, C] or [1, C, 1].
    let (reduce_dims, stat_shape): (Vec<isize>, Vec<usize>) = if x.rank() == 2 {
        (vec![0], vec![1, c])
    } else {
        (vec![0, 2], vec![1, c, 1])
    };
    let as_stat = |t: &Tensor| t.reshape(&stat_shape);

    let (mean, var) = if training {
        let n = x.numel() / c.max(1);
        if n <= 1 {
            return Err(Error::BadShape {
                op: "batch_norm",
                msg: format!("training needs more than 1 value per feature, input is {:?}", x.shape()),
            });
        }
        let mean = x.mean_dims(&reduce_dims, true)?;
        let centered = x.sub(&mean)?;
        let var = centered.mul(&centered)?.mean_dims(&reduce_dims, true)?; // biased: / n
        if let Some((running_mean, running_var)) = running {
            no_grad(|| -> Result<()> {
                let unbiased = var.detach().reshape(&[c])?.mul_scalar(n as f64 / (n as f64 - 1.0))?;
                let new_mean = running_mean
                    .mul_scalar(1.0 - momentum)?
                    .add(&mean.detach().reshape(&[c])?.mul_scalar(momentum)?)?;
                let new_var = running_var
                    .mul_scalar(1.0 - momentum)?
                    .add(&unbiased.mul_scalar(momentum)?)?;
                running_mean.copy_(&new_mean)?;
                running_var.copy_(&new_var)
            })?;
        }
        (mean, var)
    } else {
        let (running_mean, running_var) =
            running.ok_or_else(|| Error::Invalid("batch_norm: evaluation mode needs running statistics".into()))?;
        (as_stat(&running_mean.detach())?, as_stat(&running_var.detach())?)
    };
    let x_hat = x.sub(&mean)?.div(&var.add_scalar(eps)?.sqrt()?)?;
    let scaled = match weight {
        Some(w) => x_hat.mul(&as_stat(w)?)?,
        None => x_hat,
    };
    match bias {
        Some(b) => scaled.add(&as_stat(b)?),
        None => Ok(scaled),
    }
}

impl Module for BatchNorm1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = batch_norm(
            x,
            Some((&self.running_mean, &self.running_var)),
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.training,
            self.config.momentum,
            self.config.eps,
        )?;
        if self.training {
            no_grad(|| {
                self.num_batches_tracked
                    .copy_(&self.num_batches_tracked.add_scalar(1.0)?)
            })?;
        }
        Ok(y)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        if let Some(w) = &self.weight {
            v.push(("weight".to_string(), w.clone()));
        }
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
            ("num_batches_tracked".to_string(), self.num_batches_tracked.clone()),
        ]
    }
    fn set_training(&mut self, on: bool) {
        self.training = on;
    }
    fn to_device(&mut self, device: Device) -> Result<()> {
        use crate::layers::tensor_to_device;
        if let Some(w) = &self.weight {
            self.weight = Some(tensor_to_device(w, device)?);
        }
        if let Some(b) = &self.bias {
            self.bias = Some(tensor_to_device(b, device)?);
        }
        self.running_mean = tensor_to_device(&self.running_mean, device)?;
        self.running_var = tensor_to_device(&self.running_var, device)?;
        self.num_batches_tracked = tensor_to_device(&self.num_batches_tracked, device)?;
        Ok(())
    }
    fn describe(&self) -> String {
        format!("BatchNorm1d({})", self.num_features())
    }
}
