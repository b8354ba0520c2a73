//! Fused optimizer launch wrappers (`kernels/optim.cu`), PyTorch semantics.

use cudarc::driver::{DeviceRepr, PushKernelArg};

use crate::backend::{check_len, launch_err, CudaBackend};
use crate::elementwise::ElementwiseVariant;
use crate::error::Result;
use crate::nvrtc::OPTIM;
use crate::pool::DeviceBuffer;

/// Hyper-parameters of Adam / AdamW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment (β1).
    pub beta1: f32,
    /// Decay of the second moment (β2).
    pub beta2: f32,
    /// Added to √v̂ (after the square root, as PyTorch).
    pub eps: f32,
    /// L2 penalty (Adam) or decoupled decay rate (AdamW).
    pub weight_decay: f32,
    /// true = AdamW (decay applied to the weights, not the gradient).
    pub decoupled: bool,
}

impl Default for AdamConfig {
    /// PyTorch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay, Adam.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

/// Kernel parameters of `adam_step_vN_f32`; mirrors `struct AdamParams` in `kernels/optim.cu`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f32,
    /// β1.
    pub beta1: f32,
    /// β2.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// 1 − β1^t.
    pub bias_correction1: f32,
    /// 1 − β2^t.
    pub bias_correction2: f32,
    /// 1 for AdamW.
    pub decoupled: i32,
}

// SAFETY: #[repr(C)] plain-old-data of f32/i32 with the same field order as the C struct.
unsafe impl DeviceRepr for AdamParams {}

impl AdamParams {
    /// Parameters for step `step` (1-based, as PyTorch's `state['step']` after increment).
    pub fn new(config: &AdamConfig, step: u64) -> Self {
        let t = step.max(1) as i32;
        AdamParams {
            lr: config.lr,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay: config.weight_decay,
            bias_correction1: (1.0 - (config.beta1 as f64).powi(t)) as f32,
            bias_correction2: (1.0 - (config.beta2 as f64).powi(t)) as f32,
            decoupled: config.decoupled as i32,
        }
    }
}

/// Hyper-parameters of SGD.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor μ (0 = plain SGD).
    pub momentum: f32,
    /// Dampening of the gradient in the momentum buffer.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Kernel parameters of `sgd_step_v1_f32`; mirrors `struct SgdParams` in `kernels/optim.cu`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdParams {
    /// Learning rate.
    pub lr: f32,
    /// Momentum.
    pub momentum: f32,
    /// Dampening.
    pub dampening: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// 1 for Nesterov.
    pub nesterov: i32,
    /// 1 on the first step (momentum buffer initialised to the gradient).
    pub first_step: i32,
}

// SAFETY: #[repr(C)] plain-old-data of f32/i32 with the same field order as the C struct.
unsafe impl DeviceRepr for SgdParams {}

impl SgdParams {
    /// Parameters for one step; `first_step` is true the first time this parameter is updated.
    pub fn new(config: &SgdConfig, first_step: bool) -> Self {
        SgdParams {
            lr: config.lr,
            momentum: config.momentum,
            dampening: config.dampening,
            weight_decay: config.weight_decay,
            nesterov: config.nesterov as i32,
            first_step: first_step as i32,
        }
    }
}

impl CudaBackend {
    /// One fused Adam/AdamW update of `param` in place, with moments `m`, `v` (zeros before
    /// step 1). `step` counts from 1.
    pub fn adam_step(
        &self,
        config: &AdamConfig,
        step: u64,
        param: &mut DeviceBuffer,
        grad: &DeviceBuffer,
        m: &mut DeviceBuffer,
        v: &mut DeviceBuffer,
    ) -> Result<()> {
        self.adam_step_variant(config, step, param, grad, m, v, ElementwiseVariant::V2Float4)
    }

    /// [`CudaBackend::adam_step`] with an explicit kernel variant (v1 scalar, v2 float4).
    pub fn adam_step_variant(
        &self,
        config: &AdamConfig,
        step: u64,
        param: &mut DeviceBuffer,
        grad: &DeviceBuffer,
        m: &mut DeviceBuffer,
        v: &mut DeviceBuffer,
        variant: ElementwiseVariant,
    ) -> Result<()> {
        let n = param.len();
        check_len("adam grad", grad.len(), n)?;
        check_len("adam m", m.len(), n)?;
        check_len("adam v", v.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let params = AdamParams::new(config, step);
        let n_i64 = n as i64;
        let (name, threads) = match variant {
            ElementwiseVariant::V1Scalar => ("adam_step_v1_f32", n),
            ElementwiseVariant::V2Float4 => ("adam_step_v2_f32", n.div_ceil(4)),
        };
        let func = self.function(&OPTIM, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&params)
            .arg(param.slice_mut())
            .arg(grad.slice())
            .arg(m.slice_mut())
            .arg(v.slice_mut())
            .arg(&n_i64);
        // SAFETY: matches `adam_step_vN_f32(AdamParams h, float* param, const float* grad,
        // float* m, float* v, long long n)`; all four hold n floats in whole (aligned)
        // allocations.
        unsafe { launch.launch(self.grid_1d(threads)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// One fused SGD update of `param` in place. `momentum_buf` must have the parameter's
    /// length when `config.momentum != 0` (it is not touched otherwise and may be empty).
    pub fn sgd_step(
        &self,
        config: &SgdConfig,
        first_step: bool,
        param: &mut DeviceBuffer,
        grad: &DeviceBuffer,
        momentum_buf: &mut DeviceBuffer,
    ) -> Result<()> {
        let n = param.len();
        check_len("sgd grad", grad.len(), n)?;
        if config.momentum != 0.0 {
            check_len("sgd momentum buffer", momentum_buf.len(), n)?;
        }
        if n == 0 {
            return Ok(());
        }
        let params = SgdParams::new(config, first_step);
        let n_i64 = n as i64;
        let name = "sgd_step_v1_f32";
        let func = self.function(&OPTIM, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&params)
            .arg(param.slice_mut())
            .arg(grad.slice())
            .arg(momentum_buf.slice_mut())
            .arg(&n_i64);
        // SAFETY: matches `sgd_step_v1_f32(SgdParams h, float* param, const float* grad,
        // float* buf, long long n)`; param and grad hold n floats; buf is only indexed when
        // momentum != 0, in which case it holds n floats (checked above).
        unsafe { launch.launch(self.grid_1d(n)) }.map_err(launch_err(name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_structs_match_the_c_layout() {
        assert_eq!(std::mem::size_of::<AdamParams>(), 32);
        assert_eq!(std::mem::size_of::<SgdParams>(), 24);
    }

    #[test]
    fn bias_corrections_follow_the_step() {
        let p = AdamParams::new(&AdamConfig::default(), 2);
        assert!((p.bias_correction1 - 0.19).abs() < 1e-6);
        assert!((p.bias_correction2 - (1.0 - 0.999f32 * 0.999)).abs() < 1e-6);
    }
}
