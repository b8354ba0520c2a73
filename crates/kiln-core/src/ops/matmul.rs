//! Matrix products. Operands are read through their strides, so a transposed
//! view (`w.t()`) costs nothing: the GEMM kernel reads it column-wise.
//!
//! Shape letters: `N` batch, `I` input features, `O` output features.

use super::check_same;
use crate::autograd::{record, SavedTensor};
use crate::storage::Data;
use crate::{Device, Error, Result, Tensor};
use kiln_cpu::matmul::gemm;

/// C = A·B (+ C when `accumulate`), all 2-D, A and B read through their strides.
fn gemm_into(a: &Tensor, b: &Tensor, out: &mut Data, accumulate: bool) {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let sa = [a.strides()[0], a.strides()[1]];
    let sb = [b.strides()[0], b.strides()[1]];
    let ga = a.0.storage.read();
    let gb = b.0.storage.read();
    let (oa, ob) = (a.0.offset, b.0.offset);
    let beta: f64 = if accumulate { 1.0 } else { 0.0 };
    match (&*ga, &*gb, out) {
        (Data::F32(x), Data::F32(y), Data::F32(c)) => gemm(
            m,
            n,
            k,
            1.0,
            &x[oa..],
            sa,
            &y[ob..],
            sb,
            beta as f32,
            c,
            [n as isize, 1],
        ),
        (Data::F64(x), Data::F64(y), Data::F64(c)) => {
            gemm(m, n, k, 1.0, &x[oa..], sa, &y[ob..], sb, beta, c, [n as isize, 1])
        }
        _ => unreachable!("dtypes checked by the caller"),
    }
}

/// acc += A·B in place on the CPU (A, B read through their strides; `acc`
/// a contiguous [M, N] of their dtype): a weight gradient added straight
/// into the `.grad` it accumulates in (see `BackwardCtx::accumulate_into_grad`).
/// The GEMM adds each finished dot product to acc once, `acc + Σ`, as adding
/// a fresh product would (for K up to one k block of the packed driver;
/// beyond, it adds the partial sums of each block in turn).
fn gemm_acc(a: &Tensor, b: &Tensor, acc: &Tensor) -> Result<()> {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    if a.device() != Device::Cpu || b.device() != Device::Cpu || acc.shape() != [m, n] {
        return Err(Error::Invalid(format!(
            "gemm_acc: [{m}, {k}]·[{k}, {n}] into {:?} on {}",
            acc.shape(),
            acc.device()
        )));
    }
    let sa = [a.strides()[0], a.strides()[1]];
    let sb = [b.strides()[0], b.strides()[1]];
    let (oa, ob) = (a.0.offset, b.0.offset);
    let ga = a.0.storage.read();
    let gb = b.0.storage.read();
    match (&*ga, &*gb) {
        (Data::F32(x), Data::F32(y)) => {
            acc.update::<f32, _>(|c| gemm(m, n, k, 1.0, &x[oa..], sa, &y[ob..], sb, 1.0, c, [n as isize, 1]))
        }
        (Data::F64(x), Data::F64(y)) => {
            acc.update::<f64, _>(|c| gemm(m, n, k, 1.0, &x[oa..], sa, &y[ob..], sb, 1.0, c, [n as isize, 1]))
        }
        _ => Err(Error::Invalid("gemm_acc: operands of different dtypes".into())),
    }
}

/// A rule's weight gradient `at`·`b` (`at` a transposed view): added
/// in place into the leaf's held `.grad` when the engine allows it (input
/// `i`), else returned as a fresh tensor.
fn weight_grad(ctx: &crate::autograd::BackwardCtx, i: usize, at: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    if ctx.accumulate_into_grad(i, |acc| gemm_acc(at, b, acc))? {
        Ok(None)
    } else {
        Ok(Some(at.matmul(b)?))
    }
}

/// x·Wᵀ (+ b) on the CPU: the bias rows are written first and the GEMM accumulates onto them.
fn linear_cpu(x: &Tensor, wt: &Tensor, bias: Option<&Tensor>, n: usize, o: usize) -> Result<Tensor> {
    let mut data = match bias {
        Some(b) => {
            let c = b.slices()?;
            c.with(|r| match r {
                crate::tensor::SliceRef::F32(r) => Data::F32(Data::repeat_rows(r, n)),
                crate::tensor::SliceRef::F64(r) => Data::F64(Data::repeat_rows(r, n)),
            })
        }
        None => Data::uninit(x.dtype(), n * o),
    };
    gemm_into(x, wt, &mut data, bias.is_some());
    Ok(Tensor::from_data(data, &[n, o], x.device()))
}

fn check_2d(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    check_same(op, a, b)?;
    if a.rank() != 2 || b.rank() != 2 {
        return Err(Error::BadShape {
            op,
            msg: format!("expects 2-D operands, got {:?} and {:?}", a.shape(), b.shape()),
        });
    }
    Ok(())
}

impl Tensor {
    /// Matrix product of 2-D tensors: [M, K] · [K, N] → [M, N].
    /// d/dA = dC·Bᵀ, d/dB = Aᵀ·dC (transposes are free views).
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        check_2d("matmul", self, other)?;
        if self.shape()[1] != other.shape()[0] {
            return Err(Error::ShapeMismatch {
                op: "matmul",
                lhs: self.shape().to_vec(),
                rhs: other.shape().to_vec(),
            });
        }
        let out = match self.device() {
            Device::Cpu => {
                let (m, n) = (self.shape()[0], other.shape()[1]);
                let mut data = Data::uninit(self.dtype(), m * n);
                gemm_into(self, other, &mut data, false);
                Tensor::from_data(data, &[m, n], self.device())
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => crate::cuda::gemm(self, other, None)?,
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => unreachable!("no CUDA tensors without the cuda feature"),
        };
        let (a, b) = (SavedTensor::new(self), SavedTensor::new(other));
        let (ra, rb) = (self.0.requires_grad, other.0.requires_grad);
        Ok(record("matmul", out, &[self, other], move |ctx, g| {
            let (a, b) = (ctx.unpack(&a)?, ctx.unpack(&b)?);
            let ga = if ra && ctx.needs_input_grad(0) {
                Some(g.matmul(&b.t()?)?)
            } else {
                None
            };
            let gb = if rb && ctx.needs_input_grad(1) {
                weight_grad(ctx, 1, &a.t()?, g)?
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    /// A linear layer as in PyTorch: x[N, I] · W[O, I]ᵀ + b[O] → [N, O].
    /// The bias is written into the output first and the GEMM accumulates
    /// onto it, so the bias add costs no extra pass.
    /// dx = dy·W, dW = dyᵀ·x, db = Σₙ dy.
    #[track_caller]
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        check_2d("linear", self, weight)?;
        if self.shape()[1] != weight.shape()[1] {
            return Err(Error::ShapeMismatch {
                op: "linear (x vs weight [out, in])",
                lhs: self.shape().to_vec(),
                rhs: weight.shape().to_vec(),
            });
        }
        let (n, o) = (self.shape()[0], weight.shape()[0]);
        if let Some(b) = bias {
            check_same("linear (bias)", self, b)?;
            if b.shape() != [o] {
                return Err(Error::ShapeMismatch {
                    op: "linear (bias vs weight rows)",
                    lhs: b.shape().to_vec(),
                    rhs: weight.shape().to_vec(),
                });
            }
        }
        let wt = weight.transpose_raw(0, 1);
        let out = match self.device() {
            Device::Cpu => linear_cpu(self, &wt, bias, n, o)?,
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => {
                let init = bias.map(|b| crate::cuda::repeat_rows(b, n)).transpose()?;
                crate::cuda::gemm(self, &wt, init)?
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => unreachable!("no CUDA tensors without the cuda feature"),
        };
        let (x, w) = (SavedTensor::new(self), SavedTensor::new(weight));
        let (rx, rw) = (self.0.requires_grad, weight.0.requires_grad);
        let inputs: Vec<&Tensor> = match bias {
            Some(b) => vec![self, weight, b],
            None => vec![self, weight],
        };
        let has_bias = bias.is_some();
        Ok(record("linear", out, &inputs, move |ctx, g| {
            let (x, w) = (ctx.unpack(&x)?, ctx.unpack(&w)?);
            let gx = if rx && ctx.needs_input_grad(0) {
                Some(g.matmul(&w)?)
            } else {
                None
            };
            let gw = if rw && ctx.needs_input_grad(1) {
                weight_grad(ctx, 1, &g.t()?, &x)?
            } else {
                None
            };
            let mut grads = vec![gx, gw];
            if has_bias && ctx.needs_input_grad(2) {
                grads.push(Some(g.sum_dims(&[0], false)?));
            } else if has_bias {
                grads.push(None);
            }
            Ok(grads)
        }))
    }
}
