//! Matrix products. Operands are read through their strides, so a transposed
//! view (`w.t()`) costs nothing: the GEMM kernel reads it column-wise.
//!
//! Shape letters: `N` batch, `I` input features, `O` output features.

use super::check_same;
use crate::autograd::{record, record_with_output, SavedTensor};
use crate::storage::Data;
use crate::{Device, Error, Result, Tensor};
use kiln_cpu::elementwise::UnaryOp;
use kiln_cpu::matmul::{gemm, linear_fused_batches};
use smallvec::smallvec;
use smallvec::SmallVec;

/// C = A·B + beta·C for 2-D A and B with their storages' elements `xa`, `xb`
/// (read through offset and strides) into a contiguous [M, N] `c`.
fn gemm_typed<T: crate::tensor::Element>(a: &Tensor, xa: &[T], b: &Tensor, xb: &[T], beta: T, c: &mut [T]) {
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let sa = [a.strides()[0], a.strides()[1]];
    let sb = [b.strides()[0], b.strides()[1]];
    gemm(
        m,
        n,
        k,
        T::ONE,
        &xa[a.0.offset..],
        sa,
        &xb[b.0.offset..],
        sb,
        beta,
        c,
        [n as isize, 1],
    );
}

/// C = A·B (+ C when `accumulate`), all 2-D, A and B read through their strides.
fn gemm_into(a: &Tensor, b: &Tensor, out: &mut Data, accumulate: bool) {
    let beta: f64 = if accumulate { 1.0 } else { 0.0 };
    match (&*a.0.storage.read(), &*b.0.storage.read(), out) {
        (Data::F32(x), Data::F32(y), Data::F32(c)) => gemm_typed(a, x, b, y, beta as f32, c),
        (Data::F64(x), Data::F64(y), Data::F64(c)) => gemm_typed(a, x, b, y, beta, c),
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
    match (&*a.0.storage.read(), &*b.0.storage.read()) {
        (Data::F32(x), Data::F32(y)) => acc.update::<f32, _>(|c| gemm_typed(a, x, b, y, 1.0, c)),
        (Data::F64(x), Data::F64(y)) => acc.update::<f64, _>(|c| gemm_typed(a, x, b, y, 1.0, c)),
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

/// act(xᵢ·Wᵀ (+ b)) on the CPU for each of `xs`, inputs of one shape, dtype
/// and layout (checked by the caller; one input is the plain linear layer).
/// The bias is written into each row panel of an output just before the GEMM
/// accumulates onto it, and the activation applied right after, while the
/// lines are in cache (same bits as bias rows + GEMM + a separate activation
/// pass); several inputs' products run together ([`linear_fused_batches`]).
/// Up to two inputs (a layer, or D's real and fake batches) take no heap
/// memory beyond the outputs.
fn linear_cpu(
    xs: &[&Tensor],
    wt: &Tensor,
    bias: Option<&Tensor>,
    act: Option<UnaryOp>,
) -> Result<SmallVec<[Tensor; 2]>> {
    use std::sync::{Arc, RwLockReadGuard};
    // One read guard per distinct storage (the inputs may be views of one).
    let mut guards: SmallVec<[(&Arc<crate::storage::Storage>, RwLockReadGuard<'_, Data>); 2]> = SmallVec::new();
    for x in xs {
        if !guards.iter().any(|(st, _)| Arc::ptr_eq(st, &x.0.storage)) {
            guards.push((&x.0.storage, x.0.storage.read()));
        }
    }
    let x_data: SmallVec<[&Data; 2]> = xs
        .iter()
        .map(|x| {
            &*guards
                .iter()
                .find(|(st, _)| Arc::ptr_eq(st, &x.0.storage))
                .expect("read above")
                .1
        })
        .collect();
    fn typed<T: crate::tensor::Element>(
        xs: &[&Tensor],
        x_data: &[&Data],
        wt: &Tensor,
        ws: &[T],
        bias: Option<&Tensor>,
        act: Option<UnaryOp>,
    ) -> Result<SmallVec<[Data; 2]>> {
        let (n, k, o) = (xs[0].shape()[0], xs[0].shape()[1], wt.shape()[1]);
        let (sx, sw) = (
            [xs[0].strides()[0], xs[0].strides()[1]],
            [wt.strides()[0], wt.strides()[1]],
        );
        let mut outs: SmallVec<[crate::storage::Buf<T>; 2]> =
            xs.iter().map(|_| crate::storage::take::<T>(n * o)).collect();
        let mut batches: SmallVec<[(&[T], &mut [T]); 2]> = SmallVec::new();
        for ((x, d), c) in xs.iter().zip(x_data).zip(outs.iter_mut()) {
            let data = T::slice(d).ok_or_else(|| Error::Invalid("linear: inputs of different dtypes".into()))?;
            batches.push((&data[x.0.offset..], &mut c[..]));
        }
        let ws = &ws[wt.0.offset..];
        match bias {
            Some(b) => {
                b.with_slice::<T, _>(|r| linear_fused_batches(n, o, k, &mut batches, sx, ws, sw, Some(r), act))?
            }
            None => linear_fused_batches(n, o, k, &mut batches, sx, ws, sw, None, act),
        }
        drop(batches);
        Ok(outs.into_iter().map(T::wrap).collect())
    }
    let gw = wt.0.storage.read();
    let datas = match &*gw {
        Data::F32(ws) => typed(xs, &x_data, wt, ws, bias, act)?,
        Data::F64(ws) => typed(xs, &x_data, wt, ws, bias, act)?,
        #[cfg(feature = "cuda")]
        Data::Cuda(_) => unreachable!("CPU tensors checked by the caller"),
    };
    let (shape, device) = ([xs[0].shape()[0], wt.shape()[1]], xs[0].device());
    Ok(datas
        .into_iter()
        .map(|d| Tensor::from_data(d, &shape, device))
        .collect())
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
            Ok(smallvec![ga, gb])
        }))
    }

    /// A linear layer as in PyTorch: `x[N, I] · W[O, I]ᵀ + b[O] → [N, O]`.
    /// The bias is written into the output first and the GEMM accumulates
    /// onto it, so the bias add costs no extra pass.
    /// dx = dy·W, dW = dyᵀ·x, db = Σₙ dy.
    #[track_caller]
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let out = self.linear_raw(weight, bias, None)?;
        Ok(record_linear(self, weight, bias, None, out))
    }

    /// `act(self.linear(weight, bias))` as one op, for `act` one of relu,
    /// leaky relu with a positive slope, sigmoid and tanh: on the CPU the
    /// activation is applied inside the GEMM's pass over the output (row
    /// panel by row panel, while it is in cache) instead of in a second
    /// pass, and the graph holds one node (`linear_relu`, …) whose backward
    /// is the activation's (from the saved output) then the linear layer's.
    /// Same values, bit for bit, as the two ops.
    #[track_caller]
    pub fn linear_act(&self, weight: &Tensor, bias: Option<&Tensor>, act: UnaryOp) -> Result<Tensor> {
        check_fusable(act)?;
        let out = self.linear_raw(weight, bias, Some(act))?;
        Ok(record_linear(self, weight, bias, Some(act), out))
    }

    /// [`Tensor::linear_act`] (or [`Tensor::linear`], for `act` None) of
    /// each of `xs` through the same weight and bias: one graph node per
    /// input, the node that call records, with its values bit for bit. On
    /// the CPU, for inputs of one shape and layout, the GEMM packs each block
    /// of the weight once for all of them and runs every input's rows
    /// against it while it is in cache, instead of streaming the weight from
    /// memory once per input: a discriminator's real and fake batches, which
    /// for the article's 12288-wide D is one 6 MiB pass over W less per step.
    #[track_caller]
    pub fn linear_many(
        xs: &[&Tensor],
        weight: &Tensor,
        bias: Option<&Tensor>,
        act: Option<UnaryOp>,
    ) -> Result<crate::Tensors> {
        if let Some(act) = act {
            check_fusable(act)?;
        }
        let together = xs.len() > 1
            && weight.device() == Device::Cpu
            && xs.iter().all(|x| {
                x.device() == Device::Cpu
                    && x.dtype() == xs[0].dtype()
                    && x.shape() == xs[0].shape()
                    && x.strides() == xs[0].strides()
            });
        // Plain loops, not closures: the nodes take the caller's source
        // location through `#[track_caller]`, which a closure would stop.
        let mut ys = crate::Tensors::with_capacity(xs.len());
        if !together {
            for x in xs {
                ys.push(match act {
                    Some(act) => x.linear_act(weight, bias, act)?,
                    None => x.linear(weight, bias)?,
                });
            }
            return Ok(ys);
        }
        for x in xs {
            check_linear(x, weight, bias)?;
        }
        let outs = linear_cpu(xs, &weight.transpose_raw(0, 1), bias, act)?;
        for (x, out) in xs.iter().zip(outs) {
            ys.push(record_linear(x, weight, bias, act, out));
        }
        Ok(ys)
    }

    /// Whether [`Tensor::linear_act`] fuses `act`: relu, leaky relu with a
    /// positive slope (its output is positive exactly where its input is, so
    /// the backward can use the output), sigmoid and tanh.
    pub fn linear_act_fuses(act: UnaryOp) -> bool {
        linear_act_name(act).is_some()
    }

    /// act(x·Wᵀ + b), checked, not recorded.
    fn linear_raw(&self, weight: &Tensor, bias: Option<&Tensor>, act: Option<UnaryOp>) -> Result<Tensor> {
        check_linear(self, weight, bias)?;
        let wt = weight.transpose_raw(0, 1);
        match self.device() {
            Device::Cpu => Ok(linear_cpu(&[self], &wt, bias, act)?.remove(0)),
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => {
                if let Some(out) = crate::cuda::linear_fused(self, weight, bias, act)? {
                    return Ok(out);
                }
                let init = bias.map(|b| crate::cuda::repeat_rows(b, self.shape()[0])).transpose()?;
                let z = crate::cuda::gemm(self, &wt, init)?;
                match act {
                    Some(op) => z.unary_raw(op),
                    None => Ok(z),
                }
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => unreachable!("no CUDA tensors without the cuda feature"),
        }
    }
}

/// Checks a linear layer's operands: 2-D x [N, I] and weight [O, I], a bias
/// [O], all of one device and dtype.
fn check_linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<()> {
    check_2d("linear", x, weight)?;
    if x.shape()[1] != weight.shape()[1] {
        return Err(Error::ShapeMismatch {
            op: "linear (x vs weight [out, in])",
            lhs: x.shape().to_vec(),
            rhs: weight.shape().to_vec(),
        });
    }
    if let Some(b) = bias {
        check_same("linear (bias)", x, b)?;
        if b.shape() != [weight.shape()[0]] {
            return Err(Error::ShapeMismatch {
                op: "linear (bias vs weight rows)",
                lhs: b.shape().to_vec(),
                rhs: weight.shape().to_vec(),
            });
        }
    }
    Ok(())
}

/// An error unless `linear_act` fuses `act`.
fn check_fusable(act: UnaryOp) -> Result<()> {
    match linear_act_name(act) {
        Some(_) => Ok(()),
        None => Err(Error::Unsupported {
            op: "linear_act",
            what: format!("activation {act:?} (relu, leaky relu with a positive slope, sigmoid, tanh)"),
        }),
    }
}

/// Records the node of `act(x·Wᵀ + b)` (`linear`, or `linear_relu`, … when
/// `act` is fused) for its computed output `out`, at the caller's caller's
/// source location (the public op's, which is `#[track_caller]` too).
#[track_caller]
fn record_linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, act: Option<UnaryOp>, out: Tensor) -> Tensor {
    let inputs = linear_inputs(x, weight, bias);
    let saved = LinearSaved::new(x, weight, bias);
    let Some((act, name)) = act.and_then(|a| Some((a, linear_act_name(a)?))) else {
        return record("linear", out, &inputs, move |ctx, g| saved.grads(ctx, g));
    };
    record_with_output(name, out, &inputs, move |ctx, g| {
        let y = ctx.output()?;
        // With a bias gradient to compute, the activation's gradient and
        // its column sums come from one pass where the CPU kernel has it.
        if saved.has_bias && ctx.needs_input_grad(2) {
            if let Some((dz, db)) = super::unary::act_grad_and_colsum(ctx, act, &y, g)? {
                return saved.grads_with_bias(ctx, &dz, Some(db));
            }
        }
        let dz = super::unary::act_grad_from_output(ctx, act, &y, g)?;
        saved.grads(ctx, &dz)
    })
}

/// The node name of `linear_act` with `act`; None for an activation it does
/// not fuse.
fn linear_act_name(act: UnaryOp) -> Option<&'static str> {
    match act {
        UnaryOp::Relu => Some("linear_relu"),
        UnaryOp::LeakyRelu(s) if s > 0.0 => Some("linear_leaky_relu"),
        UnaryOp::Sigmoid => Some("linear_sigmoid"),
        UnaryOp::Tanh => Some("linear_tanh"),
        _ => None,
    }
}

/// The inputs a linear node records: x, W and the bias if any.
fn linear_inputs<'a>(x: &'a Tensor, w: &'a Tensor, bias: Option<&'a Tensor>) -> smallvec::SmallVec<[&'a Tensor; 3]> {
    match bias {
        Some(b) => smallvec::smallvec![x, w, b],
        None => smallvec::smallvec![x, w],
    }
}

/// What a linear node keeps for its backward.
struct LinearSaved {
    x: SavedTensor,
    w: SavedTensor,
    rx: bool,
    rw: bool,
    has_bias: bool,
}

impl LinearSaved {
    fn new(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Self {
        LinearSaved {
            x: SavedTensor::new(x),
            w: SavedTensor::new(w),
            rx: x.0.requires_grad,
            rw: w.0.requires_grad,
            has_bias: bias.is_some(),
        }
    }

    /// dx = dy·W, dW = dyᵀ·x (added into W's held gradient when the engine
    /// allows), db = Σₙ dy; each only when wanted.
    fn grads(&self, ctx: &crate::autograd::BackwardCtx, g: &Tensor) -> Result<crate::autograd::InputGrads> {
        self.grads_with_bias(ctx, g, None)
    }

    /// [`LinearSaved::grads`] with db already computed (`Σₙ g`) when `db` is given.
    fn grads_with_bias(
        &self,
        ctx: &crate::autograd::BackwardCtx,
        g: &Tensor,
        db: Option<Tensor>,
    ) -> Result<crate::autograd::InputGrads> {
        let (x, w) = (ctx.unpack(&self.x)?, ctx.unpack(&self.w)?);
        let gx = if self.rx && ctx.needs_input_grad(0) {
            Some(g.matmul(&w)?)
        } else {
            None
        };
        let gw = if self.rw && ctx.needs_input_grad(1) {
            weight_grad(ctx, 1, &g.t()?, &x)?
        } else {
            None
        };
        let mut grads: crate::autograd::InputGrads = smallvec![gx, gw];
        if self.has_bias && ctx.needs_input_grad(2) {
            grads.push(Some(match db {
                Some(db) => db,
                None => g.sum_dims(&[0], false)?,
            }));
        } else if self.has_bias {
            grads.push(None);
        }
        Ok(grads)
    }
}
