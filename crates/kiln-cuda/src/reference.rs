//! CPU references for every kernel: straightforward loops, accumulating in f64 where a sum
//! is involved, used by the GPU tests and the validating benchmarks.

use crate::elementwise::{broadcast_shape, BinaryOp, UnaryOp};
use crate::error::Result;
use crate::gemm::{Activation, GemmLayout};
use crate::loss::PairLoss;
use crate::optim::{AdamConfig, AdamParams, SgdConfig};
use crate::reduce::ReduceOp;

/// Entry (i, j) of op(A)·op(B), summed in f64.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_entry(layout: GemmLayout, m: usize, n: usize, k: usize, a: &[f32], b: &[f32], i: usize, j: usize) -> f64 {
    let mut acc = 0.0f64;
    for p in 0..k {
        let av = match layout {
            GemmLayout::TN => a[p * m + i],
            _ => a[i * k + p],
        };
        let bv = match layout {
            GemmLayout::NT => b[j * k + p],
            _ => b[p * n + j],
        };
        acc += av as f64 * bv as f64;
    }
    acc
}

/// C = alpha·op(A)·op(B) + beta·C, row-major (beta = 0 ignores C's contents).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    layout: GemmLayout,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    for i in 0..m {
        for j in 0..n {
            let prod = alpha as f64 * sgemm_entry(layout, m, n, k, a, b, i, j);
            c[i * n + j] = if beta == 0.0 {
                prod as f32
            } else {
                (prod + beta as f64 * c[i * n + j] as f64) as f32
            };
        }
    }
}

/// `out[N,O] = act(x[N,I]·W[O,I]ᵀ + b[O])`.
pub fn linear_fwd(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    batch: usize,
    in_features: usize,
    out_features: usize,
    activation: Activation,
) -> Vec<f32> {
    let mut out = vec![0.0; batch * out_features];
    sgemm(
        GemmLayout::NT,
        batch,
        out_features,
        in_features,
        1.0,
        x,
        weight,
        0.0,
        &mut out,
    );
    for row in out.chunks_mut(out_features) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = activation.apply(*v + b);
        }
    }
    out
}

/// op(x) for one value.
pub fn unary_fwd(op: UnaryOp, x: f32) -> f32 {
    let x64 = x as f64;
    let y = match op {
        UnaryOp::Relu => x64.max(0.0),
        UnaryOp::LeakyRelu(s) => {
            if x64 > 0.0 {
                x64
            } else {
                s as f64 * x64
            }
        }
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x64).exp()),
        UnaryOp::Tanh => x64.tanh(),
        UnaryOp::Exp => x64.exp(),
        UnaryOp::Log => x64.ln(),
        UnaryOp::Sqrt => x64.sqrt(),
        UnaryOp::Abs => x64.abs(),
        UnaryOp::Neg => -x64,
        UnaryOp::Softplus => x64.max(0.0) + (-x64.abs()).exp().ln_1p(),
        UnaryOp::Gelu => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x64 * (1.0 + (k * (x64 + 0.044715 * x64 * x64 * x64)).tanh())
        }
        UnaryOp::Pow(p) => x64.powf(p as f64),
        UnaryOp::Clamp(lo, hi) => x64.max(lo as f64).min(hi as f64),
        UnaryOp::AddScalar(s) => x64 + s as f64,
        UnaryOp::MulScalar(s) => x64 * s as f64,
        UnaryOp::Sign => {
            if x64 > 0.0 {
                1.0
            } else if x64 < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryOp::Step => f64::from(u8::from(x64 > 0.0)),
        UnaryOp::InRange(lo, hi) => f64::from(u8::from(x64 >= lo as f64 && x64 <= hi as f64)),
    };
    y as f32
}

/// dy·op'(x), given the input x and output y = op(x).
pub fn unary_bwd(op: UnaryOp, x: f32, y: f32, dy: f32) -> f32 {
    let (x, y, dy) = (x as f64, y as f64, dy as f64);
    let dx = match op {
        UnaryOp::Relu => {
            if x > 0.0 {
                dy
            } else {
                0.0
            }
        }
        UnaryOp::LeakyRelu(s) => {
            if x > 0.0 {
                dy
            } else {
                s as f64 * dy
            }
        }
        UnaryOp::Sigmoid => dy * y * (1.0 - y),
        UnaryOp::Tanh => dy * (1.0 - y * y),
        UnaryOp::Exp => dy * y,
        UnaryOp::Log => dy / x,
        UnaryOp::Sqrt => dy * 0.5 / y,
        UnaryOp::Abs => {
            dy * if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryOp::Neg => -dy,
        UnaryOp::Softplus => dy / (1.0 + (-x).exp()),
        UnaryOp::Gelu => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            let c = 0.044715;
            let t = (k * (x + c * x * x * x)).tanh();
            dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x))
        }
        UnaryOp::Pow(p) => dy * p as f64 * x.powf(p as f64 - 1.0),
        UnaryOp::Clamp(lo, hi) => {
            if x >= lo as f64 && x <= hi as f64 {
                dy
            } else {
                0.0
            }
        }
        UnaryOp::AddScalar(_) => dy,
        UnaryOp::MulScalar(s) => dy * s as f64,
        UnaryOp::Sign | UnaryOp::Step | UnaryOp::InRange(..) => 0.0,
    };
    dx as f32
}

/// Visits every index of `shape` in row-major order, passing the offset through `strides`.
fn for_each_offset(shape: &[usize], strides: &[usize], mut f: impl FnMut(usize)) {
    let n: usize = shape.iter().product();
    let mut index = vec![0usize; shape.len()];
    for _ in 0..n {
        f(index.iter().zip(strides).map(|(i, s)| i * s).sum());
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

/// a ∘ b with numpy broadcasting over strided views; returns the contiguous result.
pub fn binary(
    op: BinaryOp,
    a: &[f32],
    a_shape: &[usize],
    a_strides: &[usize],
    b: &[f32],
    b_shape: &[usize],
    b_strides: &[usize],
) -> Result<Vec<f32>> {
    let out_shape = broadcast_shape(a_shape, b_shape)?;
    let expand = |shape: &[usize], strides: &[usize]| -> Vec<usize> {
        let offset = out_shape.len() - shape.len();
        (0..out_shape.len())
            .map(|i| {
                if i < offset || shape[i - offset] == 1 {
                    0
                } else {
                    strides[i - offset]
                }
            })
            .collect()
    };
    let a_view = copy_strided(a, &out_shape, &expand(a_shape, a_strides));
    let b_view = copy_strided(b, &out_shape, &expand(b_shape, b_strides));
    Ok(a_view.iter().zip(&b_view).map(|(&x, &y)| op.apply(x, y)).collect())
}

/// The view of x with `shape`/`strides`, copied contiguously.
pub fn copy_strided(x: &[f32], shape: &[usize], strides: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(shape.iter().product());
    for_each_offset(shape, strides, |off| out.push(x[off]));
    out
}

/// Reduction over all elements.
pub fn reduce_all(op: ReduceOp, x: &[f32]) -> f32 {
    match op {
        ReduceOp::Sum => x.iter().map(|&v| v as f64).sum::<f64>() as f32,
        ReduceOp::Mean => (x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64) as f32,
        ReduceOp::Max => x.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    }
}

/// Reduction of the middle dim of [outer, r, inner] into [outer, inner].
pub fn reduce_dim(op: ReduceOp, x: &[f32], outer: usize, r: usize, inner: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let column: Vec<f32> = (0..r).map(|k| x[(o * r + k) * inner + i]).collect();
            out.push(reduce_all(op, &column));
        }
    }
    out
}

/// Mean loss between pred and target.
pub fn pair_loss_fwd(loss: PairLoss, pred: &[f32], target: &[f32]) -> f32 {
    let sum: f64 = pred
        .iter()
        .zip(target)
        .map(|(&p, &t)| {
            let (p, t) = (p as f64, t as f64);
            match loss {
                PairLoss::Mse => (p - t) * (p - t),
                PairLoss::Bce => -(t * p.ln().max(-100.0) + (1.0 - t) * (1.0 - p).ln().max(-100.0)),
                PairLoss::BceWithLogits => p.max(0.0) - p * t + (-p.abs()).exp().ln_1p(),
            }
        })
        .sum();
    (sum / pred.len() as f64) as f32
}

/// dloss·∂(mean loss)/∂pred.
pub fn pair_loss_bwd(loss: PairLoss, pred: &[f32], target: &[f32], dloss: f32) -> Vec<f32> {
    let g = dloss as f64 / pred.len() as f64;
    pred.iter()
        .zip(target)
        .map(|(&p, &t)| {
            let (p, t) = (p as f64, t as f64);
            let d = match loss {
                PairLoss::Mse => 2.0 * (p - t),
                PairLoss::Bce => (p - t) / (p * (1.0 - p)).max(1e-12),
                PairLoss::BceWithLogits => 1.0 / (1.0 + (-p).exp()) - t,
            };
            (g * d) as f32
        })
        .collect()
}

/// log_softmax over rows of x [rows, cols].
pub fn log_softmax_fwd(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            row.iter().map(move |&v| (v as f64 - m - lse) as f32)
        })
        .collect()
}

/// Backward of log_softmax from its output y: dx = dy − exp(y)·Σdy.
pub fn log_softmax_bwd(y: &[f32], dy: &[f32], cols: usize) -> Vec<f32> {
    y.chunks(cols)
        .zip(dy.chunks(cols))
        .flat_map(|(yr, dyr)| {
            let s: f64 = dyr.iter().map(|&v| v as f64).sum();
            yr.iter()
                .zip(dyr)
                .map(move |(&y, &d)| (d as f64 - (y as f64).exp() * s) as f32)
        })
        .collect()
}

/// Mean cross-entropy of logits [rows, cols] against class indices (as f32).
pub fn cross_entropy_fwd(logits: &[f32], targets: &[f32], cols: usize) -> f32 {
    let logp = log_softmax_fwd(logits, cols);
    let sum: f64 = targets
        .iter()
        .enumerate()
        .map(|(r, &t)| -(logp[r * cols + t as usize] as f64))
        .sum();
    (sum / targets.len() as f64) as f32
}

/// dloss·(softmax − onehot)/rows.
pub fn cross_entropy_bwd(logits: &[f32], targets: &[f32], dloss: f32, cols: usize) -> Vec<f32> {
    let rows = targets.len();
    let logp = log_softmax_fwd(logits, cols);
    let g = dloss as f64 / rows as f64;
    (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            let onehot = if c == targets[r] as usize { 1.0 } else { 0.0 };
            (g * ((logp[i] as f64).exp() - onehot)) as f32
        })
        .collect()
}

/// One Adam/AdamW step in place (PyTorch semantics; `step` from 1).
pub fn adam_step(config: &AdamConfig, step: u64, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    let h = AdamParams::new(config, step);
    let step_size = h.lr as f64 / h.bias_correction1 as f64;
    let sqrt_bc2 = (h.bias_correction2 as f64).sqrt();
    for i in 0..param.len() {
        let mut p = param[i] as f64;
        let mut g = grad[i] as f64;
        if config.decoupled {
            p *= 1.0 - h.lr as f64 * h.weight_decay as f64;
        } else {
            g += h.weight_decay as f64 * p;
        }
        let mi = h.beta1 as f64 * m[i] as f64 + (1.0 - h.beta1 as f64) * g;
        let vi = h.beta2 as f64 * v[i] as f64 + (1.0 - h.beta2 as f64) * g * g;
        let denom = vi.sqrt() / sqrt_bc2 + h.eps as f64;
        param[i] = (p - step_size * mi / denom) as f32;
        m[i] = mi as f32;
        v[i] = vi as f32;
    }
}

/// One SGD step in place (PyTorch semantics).
pub fn sgd_step(config: &SgdConfig, first_step: bool, param: &mut [f32], grad: &[f32], momentum_buf: &mut [f32]) {
    for i in 0..param.len() {
        let p = param[i] as f64;
        let mut g = grad[i] as f64 + config.weight_decay as f64 * p;
        if config.momentum != 0.0 {
            let mu = config.momentum as f64;
            let b = if first_step {
                g
            } else {
                mu * momentum_buf[i] as f64 + (1.0 - config.dampening as f64) * g
            };
            momentum_buf[i] = b as f32;
            g = if config.nesterov { g + mu * b } else { b };
        }
        param[i] = (p - config.lr as f64 * g) as f32;
    }
}

/// `n` deterministic pseudo-random values, uniform in [lo, hi) (xorshift64*; no rand
/// dependency, same values on every machine).
pub fn uniform(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 random bits
            lo + (hi - lo) * (bits as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

/// Largest violation of |got − want| ≤ atol + rtol·|want| as a ratio (≤ 1 passes), with
/// the index of the worst element. NaN in `got` where `want` is finite counts as failure.
pub fn max_violation(got: &[f32], want: &[f32], atol: f64, rtol: f64) -> (f64, usize) {
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        let ratio = if g == w {
            0.0
        } else if g.is_nan() || w.is_nan() {
            f64::INFINITY
        } else {
            (g - w).abs() / (atol + rtol * w.abs())
        };
        if ratio > worst.0 || ratio.is_nan() {
            worst = (ratio, i);
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgemm_layouts_agree_on_a_small_case() {
        // A = [[1,2],[3,4]], B = [[5,6],[7,8]]
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut c = [0.0; 4];
        sgemm(GemmLayout::NN, 2, 2, 2, 1.0, &a, &b, 0.0, &mut c);
        assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
        // A·Bᵀ
        sgemm(GemmLayout::NT, 2, 2, 2, 1.0, &a, &b, 0.0, &mut c);
        assert_eq!(c, [17.0, 23.0, 39.0, 53.0]);
        // Aᵀ·B
        sgemm(GemmLayout::TN, 2, 2, 2, 1.0, &a, &b, 0.0, &mut c);
        assert_eq!(c, [26.0, 30.0, 38.0, 44.0]);
    }

    #[test]
    fn binary_broadcasts_a_row_over_a_matrix() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [10.0, 20.0, 30.0];
        let out = binary(BinaryOp::Add, &a, &[2, 3], &[3, 1], &b, &[3], &[1]).unwrap();
        assert_eq!(out, vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    }

    #[test]
    fn copy_strided_transposes() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2,3]
        assert_eq!(copy_strided(&x, &[3, 2], &[1, 3]), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With zero moments, step 1 gives m̂ = g, v̂ = g², so Δp ≈ −lr·sign(g).
        let cfg = AdamConfig::default();
        let (mut p, mut m, mut v) = (vec![1.0f32], vec![0.0], vec![0.0]);
        adam_step(&cfg, 1, &mut p, &[0.5], &mut m, &mut v);
        assert!((p[0] - (1.0 - 1e-3)).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn bce_clamps_log_at_minus_100() {
        assert_eq!(pair_loss_fwd(PairLoss::Bce, &[0.0], &[1.0]), 100.0);
    }

    #[test]
    fn reduce_dim_sums_columns() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [1, 2, 3]
        assert_eq!(reduce_dim(ReduceOp::Sum, &x, 1, 2, 3), vec![5.0, 7.0, 9.0]);
    }
}
