//! Optimizers with PyTorch's semantics. Each step runs one fused kernel per
//! parameter (kiln-cpu's `adam_step` / `sgd_step`): parameter, gradient and
//! state are read once and written once. Updates mutate the parameters in
//! place under `no_grad`, bumping their version counters. Parameters on a GPU
//! (feature `cuda`) take kiln-cuda's fused `adam_step` / `sgd_step` kernels,
//! with the state tensors on the device too.

#[cfg(feature = "cuda")]
use kiln_core::{kiln_cuda, Device};
use kiln_core::{no_grad, DType, Element, Error, Result, Tensor};
use kiln_cpu::optim::{adam_step, sgd_step, AdamStep, SgdStep};

/// What every optimizer offers the trainer.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// Clears the gradients of all parameters.
    fn zero_grad(&self) {
        self.params().iter().for_each(Tensor::zero_grad);
    }
    /// Current learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (schedules).
    fn set_lr(&mut self, lr: f64);
    /// The parameters, in order.
    fn params(&self) -> &[Tensor];
    /// Optimizer state as named tensors (for checkpoints), plus the step count.
    fn state(&self) -> (Vec<(String, Tensor)>, u64);
    /// Restores state saved by [`Optimizer::state`].
    fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> Result<()>;
}

/// Adam / AdamW hyper-parameters (PyTorch defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (1e-3).
    pub lr: f64,
    /// (β₁, β₂) = (0.9, 0.999).
    pub betas: (f64, f64),
    /// 1e-8, added after the square root.
    pub eps: f64,
    /// 0: L2 penalty for Adam, decoupled decay for AdamW.
    pub weight_decay: f64,
    /// true = AdamW.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }
}

impl AdamConfig {
    /// AdamW defaults (weight_decay 0.01, decoupled).
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled_weight_decay: true,
            ..Default::default()
        }
    }
}

/// Adam (and AdamW with `decoupled_weight_decay`).
///
/// As in PyTorch, each parameter counts its own steps (a parameter without a
/// gradient on some step is skipped and its bias correction does not advance).
pub struct Adam {
    params: Vec<Tensor>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Hyper-parameters.
    pub config: AdamConfig,
    step: u64,
    param_steps: Vec<u64>,
}

impl Adam {
    /// Adam over `params` with zero-initialised moments.
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Self {
        let zeros = |p: &Tensor| p.zeros_like().expect("zeros_like of a parameter");
        let m = params.iter().map(zeros).collect();
        let v = params.iter().map(zeros).collect();
        let param_steps = vec![0; params.len()];
        Adam {
            params,
            m,
            v,
            config,
            step: 0,
            param_steps,
        }
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }
}

fn fused<T: Element>(
    p: &Tensor,
    g: &Tensor,
    states: &[&Tensor],
    f: impl FnOnce(&mut [T], &[T], &mut [&mut [T]]),
) -> Result<()> {
    // Nest the borrows: parameter (write), gradient (read), each state (write).
    g.with_slice::<T, _>(|gs| {
        p.update::<T, _>(|ps| match states {
            [] => {
                f(ps, gs, &mut []);
                Ok(())
            }
            [a] => a.update::<T, _>(|a| f(ps, gs, &mut [a])),
            [a, b] => a.update::<T, _>(|a| b.update::<T, _>(|b| f(ps, gs, &mut [a, b])))?,
            _ => unreachable!("at most two state tensors"),
        })?
    })?
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.step += 1;
        let config = self.config;
        no_grad(|| {
            for (((p, m), v), t) in self.params.iter().zip(&self.m).zip(&self.v).zip(&mut self.param_steps) {
                let Some(g) = p.grad() else { continue };
                *t += 1;
                let h = AdamStep {
                    lr: config.lr,
                    betas: config.betas,
                    eps: config.eps,
                    weight_decay: config.weight_decay,
                    decoupled: config.decoupled_weight_decay,
                    step: *t,
                };
                #[cfg(feature = "cuda")]
                if let Device::Cuda(_) = p.device() {
                    // One fused kernel on the device: no host round trip.
                    let gpu_config = kiln_cuda::AdamConfig {
                        lr: h.lr as f32,
                        beta1: h.betas.0 as f32,
                        beta2: h.betas.1 as f32,
                        eps: h.eps as f32,
                        weight_decay: h.weight_decay as f32,
                        decoupled: h.decoupled,
                    };
                    p.update_cuda(&g, &[m, v], |gpu, p, g, s| {
                        let [m, v] = s else { unreachable!("two state tensors") };
                        gpu.adam_step(&gpu_config, h.step, p, g, m, v)
                    })?;
                    continue;
                }
                match p.dtype() {
                    DType::F32 => fused::<f32>(p, &g, &[m, v], |p, g, s| {
                        let [m, v] = s else { unreachable!() };
                        adam_step(&h, p, g, m, v)
                    })?,
                    DType::F64 => fused::<f64>(p, &g, &[m, v], |p, g, s| {
                        let [m, v] = s else { unreachable!() };
                        adam_step(&h, p, g, m, v)
                    })?,
                }
            }
            Ok(())
        })
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.push((format!("{i}.exp_avg"), m.clone()));
            out.push((format!("{i}.exp_avg_sq"), v.clone()));
            out.push((format!("{i}.step"), step_tensor(self.param_steps[i])));
        }
        (out, self.step)
    }
    fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> Result<()> {
        load_named(&mut self.m, tensors, "exp_avg")?;
        load_named(&mut self.v, tensors, "exp_avg_sq")?;
        self.param_steps = load_steps(tensors, self.params.len(), step)?;
        self.step = step;
        Ok(())
    }
}

/// A parameter's step count as a 0-d f64 tensor (as PyTorch's `state["step"]`).
fn step_tensor(step: u64) -> Tensor {
    Tensor::scalar(step as f64, DType::F64, kiln_core::Device::Cpu).expect("scalar on the CPU")
}

/// Per-parameter step counts from `<i>.step`; states saved without them
/// (every parameter stepped every time) fall back to the global count.
fn load_steps(tensors: &[(String, Tensor)], n: usize, global: u64) -> Result<Vec<u64>> {
    (0..n)
        .map(|i| {
            let name = format!("{i}.step");
            match tensors.iter().find(|(k, _)| *k == name) {
                Some((_, t)) => {
                    let v = t.item()?;
                    if !(v >= 0.0 && v.fract() == 0.0) {
                        return Err(Error::Invalid(format!(
                            "optimizer state {name} = {v} is not a step count"
                        )));
                    }
                    Ok(v as u64)
                }
                None => Ok(global),
            }
        })
        .collect()
}

/// Copies `<i>.<suffix>` tensors into `dst[i]`, checking shapes.
fn load_named(dst: &mut [Tensor], tensors: &[(String, Tensor)], suffix: &str) -> Result<()> {
    for (i, d) in dst.iter_mut().enumerate() {
        let name = format!("{i}.{suffix}");
        let src = tensors
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::Invalid(format!("optimizer state is missing {name}")))?;
        if src.1.shape() != d.shape() {
            return Err(Error::ShapeMismatch {
                op: "load optimizer state",
                lhs: d.shape().to_vec(),
                rhs: src.1.shape().to_vec(),
            });
        }
        *d = src.1.to_dtype(d.dtype())?.to(d.device())?.deep_clone()?;
    }
    Ok(())
}

/// SGD hyper-parameters (PyTorch defaults apart from lr).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor.
    pub momentum: f64,
    /// Dampening of momentum.
    pub dampening: f64,
    /// L2 penalty.
    pub weight_decay: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-2,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// Stochastic gradient descent with optional (Nesterov) momentum. The
/// momentum buffer of a parameter starts as its first gradient (PyTorch).
pub struct Sgd {
    params: Vec<Tensor>,
    buf: Vec<Tensor>,
    /// Hyper-parameters.
    pub config: SgdConfig,
    step: u64,
    param_steps: Vec<u64>,
}

impl Sgd {
    /// SGD over `params`. Errors on Nesterov without momentum or with dampening.
    pub fn new(params: Vec<Tensor>, config: SgdConfig) -> Result<Self> {
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::Invalid(
                "Nesterov momentum requires a momentum and zero dampening".into(),
            ));
        }
        let buf = params.iter().map(|p| p.zeros_like()).collect::<Result<_>>()?;
        let param_steps = vec![0; params.len()];
        Ok(Sgd {
            params,
            buf,
            config,
            step: 0,
            param_steps,
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        self.step += 1;
        let config = self.config;
        no_grad(|| {
            for ((p, b), t) in self.params.iter().zip(&self.buf).zip(&mut self.param_steps) {
                let Some(g) = p.grad() else { continue };
                *t += 1;
                let h = SgdStep {
                    lr: config.lr,
                    momentum: config.momentum,
                    dampening: config.dampening,
                    weight_decay: config.weight_decay,
                    nesterov: config.nesterov,
                    first_step: *t == 1,
                };
                #[cfg(feature = "cuda")]
                if let Device::Cuda(_) = p.device() {
                    let gpu_config = kiln_cuda::SgdConfig {
                        lr: h.lr as f32,
                        momentum: h.momentum as f32,
                        dampening: h.dampening as f32,
                        weight_decay: h.weight_decay as f32,
                        nesterov: h.nesterov,
                    };
                    p.update_cuda(&g, &[b], |gpu, p, g, s| {
                        gpu.sgd_step(&gpu_config, h.first_step, p, g, s[0])
                    })?;
                    continue;
                }
                match p.dtype() {
                    DType::F32 => fused::<f32>(p, &g, &[b], |p, g, s| sgd_step(&h, p, g, s[0]))?,
                    DType::F64 => fused::<f64>(p, &g, &[b], |p, g, s| sgd_step(&h, p, g, s[0]))?,
                }
            }
            Ok(())
        })
    }
    fn lr(&self) -> f64 {
        self.config.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn params(&self) -> &[Tensor] {
        &self.params
    }
    fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let out = self
            .buf
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                [
                    (format!("{i}.momentum_buffer"), b.clone()),
                    (format!("{i}.step"), step_tensor(self.param_steps[i])),
                ]
            })
            .collect();
        (out, self.step)
    }
    fn load_state(&mut self, tensors: &[(String, Tensor)], step: u64) -> Result<()> {
        load_named(&mut self.buf, tensors, "momentum_buffer")?;
        self.param_steps = load_steps(tensors, self.params.len(), step)?;
        self.step = step;
        Ok(())
    }
}
