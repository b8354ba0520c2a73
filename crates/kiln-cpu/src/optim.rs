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
    let k = AdamConsts {
        b1: b1t,
        b2: b2t,
        omb1,
        omb2,
        step_size,
        inv_sqrt_bc2,
        eps,
        wd,
        decay,
    };
    let body = |start: usize, pc: &mut [T], mc: &mut [T], vc: &mut [T]| {
        let gc = &g[start..start + pc.len()];
        // `simd` around the (always inlined) loop itself: around `body`,
        // a closure of its own that is not inlined, it would leave the loop
        // compiled for baseline x86-64.
        let (decay, decoupled) = (h.weight_decay != 0.0, h.decoupled);
        simd(
            #[inline(always)]
            || match (decay, decoupled) {
                (false, _) => adam_chunk::<T, false, false>(&k, pc, gc, mc, vc),
                (true, false) => adam_chunk::<T, true, false>(&k, pc, gc, mc, vc),
                (true, true) => adam_chunk::<T, true, true>(&k, pc, gc, mc, vc),
            },
        )
    };
    if n < PAR_THRESHOLD {
        body(0, p, m, v);
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, ((pc, mc), vc))| body(i * CHUNK, pc, mc, vc));
    }
}

/// The per-element constants of one Adam step.
struct AdamConsts<T> {
    b1: T,
    b2: T,
    omb1: T,
    omb2: T,
    step_size: T,
    inv_sqrt_bc2: T,
    eps: T,
    wd: T,
    decay: T,
}

/// Adam over one chunk for one setting of the weight-decay flags. Slices of
/// one length (no bounds checks in the loop) and the flags as constants
/// leave a branch-free loop that vectorises: 8 square roots and divisions
/// per instruction instead of one, which makes the step memory-bound.
/// Vector `sqrt` and `/` are correctly rounded like the scalar ones, so the
/// bits are the same.
#[inline(always)]
fn adam_chunk<T: Float, const WD: bool, const DECOUPLED: bool>(
    k: &AdamConsts<T>,
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
) {
    let n = p.len();
    let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        let (mut gi, mut pi) = (g[i], p[i]);
        if WD {
            if DECOUPLED {
                pi = pi * k.decay;
            } else {
                gi += k.wd * pi;
            }
        }
        let mi = k.b1 * m[i] + k.omb1 * gi;
        let vi = k.b2 * v[i] + k.omb2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - k.step_size * mi / (vi.sqrt() * k.inv_sqrt_bc2 + k.eps);
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
    let k = SgdConsts { lr, mu, damp, wd };
    let body = |start: usize, pc: &mut [T], bc: &mut [T]| {
        let gc = &g[start..start + pc.len()];
        // `simd` around the inlined loop (see adam_step).
        let (first, nesterov) = (h.first_step, h.nesterov);
        simd(
            #[inline(always)]
            || match (use_buf, first, nesterov) {
                (false, _, _) => sgd_chunk::<T, false, false, false>(&k, pc, gc, bc),
                (true, true, false) => sgd_chunk::<T, true, true, false>(&k, pc, gc, bc),
                (true, true, true) => sgd_chunk::<T, true, true, true>(&k, pc, gc, bc),
                (true, false, false) => sgd_chunk::<T, true, false, false>(&k, pc, gc, bc),
                (true, false, true) => sgd_chunk::<T, true, false, true>(&k, pc, gc, bc),
            },
        )
    };
    if !use_buf {
        body(0, p, &mut []);
        return;
    }
    if n < PAR_THRESHOLD {
        body(0, p, buf);
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(buf.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(i, (pc, bc))| body(i * CHUNK, pc, bc));
    }
}

/// The per-element constants of one SGD step.
struct SgdConsts<T> {
    lr: T,
    mu: T,
    damp: T,
    wd: T,
}

/// SGD over one chunk for one setting of the flags (momentum buffer, first
/// step, Nesterov): a branch-free loop that vectorises, as in [`adam_chunk`].
/// `buf` is ignored (and may be empty) without momentum.
#[inline(always)]
fn sgd_chunk<T: Float, const BUF: bool, const FIRST: bool, const NESTEROV: bool>(
    k: &SgdConsts<T>,
    p: &mut [T],
    g: &[T],
    buf: &mut [T],
) {
    let n = p.len();
    let g = &g[..n];
    let buf = if BUF { &mut buf[..n] } else { &mut buf[..0] };
    for i in 0..n {
        let gi = g[i] + k.wd * p[i];
        let d = if BUF {
            let b = if FIRST { gi } else { k.mu * buf[i] + k.damp * gi };
            buf[i] = b;
            if NESTEROV {
                gi + k.mu * b
            } else {
                b
            }
        } else {
            gi
        };
        p[i] = p[i] - k.lr * d;
    }
}
