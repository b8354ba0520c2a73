//! Fused optimizer updates: one pass over a parameter tensor reads the
//! parameter, its gradient and the optimizer state once and writes them once.
//! Semantics follow PyTorch's `torch.optim` exactly.

use crate::{simd, Float, CHUNK, PAR_THRESHOLD};
use rayon::prelude::*;

/// Hyper-parameters of one Adam/AdamW step, with the bias corrections for
/// this step already folded in.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// Added to √v̂ (after the square root, as PyTorch does).
    pub eps: f64,
    /// L2 penalty (Adam: added to the gradient) or decoupled decay (AdamW).
    pub weight_decay: f64,
    /// true: AdamW's decoupled decay p ← p·(1 − lr·wd); false: Adam's g ← g + wd·p.
    pub decoupled: bool,
    /// The 1-based step number t (for the bias corrections 1 − βᵗ).
    pub step: u64,
}

/// One Adam/AdamW step over a parameter `p` with gradient `g` and moments `m`, `v`:
/// m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; p ← p − lr·m̂ / (√v̂ + eps).
pub fn adam_step<T: Float>(h: &AdamStep, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    let n = p.len();
    assert!(
        g.len() == n && m.len() == n && v.len() == n,
        "adam_step: lengths differ"
    );
    let (b1, b2) = h.betas;
    let bc1 = 1.0 - b1.powi(h.step as i32);
    let bc2 = 1.0 - b2.powi(h.step as i32);
    // PyTorch: step_size = lr / bc1; denom = sqrt(v) / sqrt(bc2) + eps.
    let step_size = T::from_f64(h.lr / bc1);
    let inv_sqrt_bc2 = T::from_f64(1.0 / bc2.sqrt());
    let (b1t, b2t) = (T::from_f64(b1), T::from_f64(b2));
    let (omb1, omb2) = (T::from_f64(1.0 - b1), T::from_f64(1.0 - b2));
    let eps = T::from_f64(h.eps);
    let wd = T::from_f64(h.weight_decay);
    let decay = T::from_f64(1.0 - h.lr * h.weight_decay);
    let (decoupled, has_wd) = (h.decoupled, h.weight_decay != 0.0);
    let body = |start: usize, pc: &mut [T], mc: &mut [T], vc: &mut [T]| {
        let gc = &g[start..start + pc.len()];
        for i in 0..pc.len() {
            let mut gi = gc[i];
            let mut pi = pc[i];
            if has_wd {
                if decoupled {
                    pi = pi * decay;
                } else {
                    gi += wd * pi;
                }
            }
            let mi = b1t * mc[i] + omb1 * gi;
            let vi = b2t * vc[i] + omb2 * gi * gi;
            mc[i] = mi;
            vc[i] = vi;
            pc[i] = pi - step_size * mi / (vi.sqrt() * inv_sqrt_bc2 + eps);
        }
    };
    if n < PAR_THRESHOLD {
        simd(|| body(0, p, m, v));
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, ((pc, mc), vc))| simd(|| body(i * CHUNK, pc, mc, vc)));
    }
}

/// Hyper-parameters of one SGD step (PyTorch semantics).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor (0 disables the buffer).
    pub momentum: f64,
    /// Dampening of the momentum update.
    pub dampening: f64,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// true on the first step: the buffer is initialised to the gradient.
    pub first_step: bool,
}

/// One SGD step: g ← g + wd·p; buf ← μ·buf + (1−dampening)·g (buf = g on the
/// first step); d = nesterov ? g + μ·buf : buf; p ← p − lr·d.
pub fn sgd_step<T: Float>(h: &SgdStep, p: &mut [T], g: &[T], buf: &mut [T]) {
    let n = p.len();
    assert!(g.len() == n, "sgd_step: lengths differ");
    let use_buf = h.momentum != 0.0;
    assert!(!use_buf || buf.len() == n, "sgd_step: momentum buffer length");
    let (lr, mu, damp, wd) = (
        T::from_f64(h.lr),
        T::from_f64(h.momentum),
        T::from_f64(1.0 - h.dampening),
        T::from_f64(h.weight_decay),
    );
    let body = |start: usize, pc: &mut [T], bc: &mut [T]| {
        let gc = &g[start..start + pc.len()];
        for i in 0..pc.len() {
            let gi = gc[i] + wd * pc[i];
            let d = if use_buf {
                let b = if h.first_step { gi } else { mu * bc[i] + damp * gi };
                bc[i] = b;
                if h.nesterov {
                    gi + mu * b
                } else {
                    b
                }
            } else {
                gi
            };
            pc[i] = pc[i] - lr * d;
        }
    };
    if !use_buf {
        simd(|| body(0, p, &mut []));
        return;
    }
    if n < PAR_THRESHOLD {
        simd(|| body(0, p, buf));
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(buf.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, (pc, bc))| simd(|| body(i * CHUNK, pc, bc)));
    }
}
