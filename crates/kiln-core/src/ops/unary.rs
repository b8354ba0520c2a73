//! Elementwise functions of one tensor. Each backward rule sits under its
//! forward; rules that are cheaper from the output (exp, sigmoid, tanh, sqrt)
//! use the saved output. relu/leaky_relu/sigmoid/tanh have a fused kernel for
//! plain backward and a composite rule (Tensor ops) when the backward pass is
//! itself recorded (`create_graph`), so second derivatives work.

use super::map_contig;
use crate::autograd::{record, record_with_output, BackwardCtx, SavedTensor};
use crate::{Result, Tensor};
use kiln_cpu::elementwise::{act_backward, act_backward_colsum, unary, ActBackward, UnaryOp};
use smallvec::smallvec;

impl Tensor {
    /// Applies a unary kernel without recording anything.
    pub(crate) fn unary_raw(&self, op: UnaryOp) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return crate::cuda::unary(self, op);
        }
        let n = self.numel();
        Ok(map_contig!(self, self.shape(), |x| {
            let mut out = take_like(x, n);
            unary(op, x, &mut out);
            out
        }))
    }

    /// −x
    #[track_caller]
    pub fn neg(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Neg)?;
        Ok(record("neg", out, &[self], |_, g| Ok(smallvec![Some(g.neg()?)])))
    }

    /// eˣ. d/dx = eˣ = y.
    #[track_caller]
    pub fn exp(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Exp)?;
        Ok(record_with_output("exp", out, &[self], |ctx, g| {
            Ok(smallvec![Some(g.mul(&ctx.output()?)?)])
        }))
    }

    /// ln x. d/dx = 1/x.
    #[track_caller]
    pub fn log(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Log)?;
        let x = SavedTensor::new(self);
        Ok(record("log", out, &[self], move |ctx, g| {
            Ok(smallvec![Some(g.div(&ctx.unpack(&x)?)?)])
        }))
    }

    /// √x. d/dx = 1/(2√x) = 0.5/y.
    #[track_caller]
    pub fn sqrt(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Sqrt)?;
        Ok(record_with_output("sqrt", out, &[self], |ctx, g| {
            Ok(smallvec![Some(g.mul_scalar(0.5)?.div(&ctx.output()?)?)])
        }))
    }

    /// |x|. d/dx = sign(x) (0 at 0, as PyTorch).
    #[track_caller]
    pub fn abs(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Abs)?;
        let x = SavedTensor::new(self);
        Ok(record("abs", out, &[self], move |ctx, g| {
            Ok(smallvec![Some(g.mul(&ctx.unpack(&x)?.unary_raw(UnaryOp::Sign)?)?)])
        }))
    }

    /// xᵖ for a constant exponent. d/dx = p·xᵖ⁻¹.
    #[track_caller]
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Powf(p))?;
        let x = SavedTensor::new(self);
        Ok(record("powf", out, &[self], move |ctx, g| {
            let x = ctx.unpack(&x)?;
            let d = if p == 2.0 {
                x.mul_scalar(2.0)?
            } else {
                x.powf(p - 1.0)?.mul_scalar(p)?
            };
            Ok(smallvec![Some(g.mul(&d)?)])
        }))
    }

    /// x + c
    #[track_caller]
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::AddScalar(c))?;
        Ok(record("add_scalar", out, &[self], |_, g| {
            Ok(smallvec![Some(g.clone())])
        }))
    }

    /// x − c
    #[track_caller]
    pub fn sub_scalar(&self, c: f64) -> Result<Tensor> {
        self.add_scalar(-c)
    }

    /// c − x
    #[track_caller]
    pub fn rsub_scalar(&self, c: f64) -> Result<Tensor> {
        self.neg()?.add_scalar(c)
    }

    /// c·x
    #[track_caller]
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::MulScalar(c))?;
        Ok(record("mul_scalar", out, &[self], move |_, g| {
            Ok(smallvec![Some(g.mul_scalar(c)?)])
        }))
    }

    /// x / c
    #[track_caller]
    pub fn div_scalar(&self, c: f64) -> Result<Tensor> {
        self.mul_scalar(1.0 / c)
    }

    /// min(max(x, lo), hi). d/dx = 1 inside [lo, hi], 0 outside.
    #[track_caller]
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Clamp(lo, hi))?;
        let x = SavedTensor::new(self);
        Ok(record("clamp", out, &[self], move |ctx, g| {
            Ok(smallvec![Some(
                g.mul(&ctx.unpack(&x)?.unary_raw(UnaryOp::InRange(lo, hi))?)?,
            )])
        }))
    }

    /// max(x, 0). d/dx = `[x > 0]`.
    #[track_caller]
    pub fn relu(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Relu)?;
        let x = SavedTensor::new(self);
        Ok(record("relu", out, &[self], move |ctx, g| {
            let x = ctx.unpack(&x)?;
            act_grad(ctx, ActBackward::Relu, &x, g, relu_composite)
        }))
    }

    /// x for x > 0, slope·x otherwise. d/dx = 1 or slope.
    #[track_caller]
    pub fn leaky_relu(&self, slope: f64) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::LeakyRelu(slope))?;
        let x = SavedTensor::new(self);
        Ok(record("leaky_relu", out, &[self], move |ctx, g| {
            let x = ctx.unpack(&x)?;
            act_grad(ctx, ActBackward::LeakyRelu(slope), &x, g, |x, g| {
                leaky_relu_composite(slope, x, g)
            })
        }))
    }

    /// 1/(1 + e⁻ˣ). d/dx = s·(1 − s).
    #[track_caller]
    pub fn sigmoid(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Sigmoid)?;
        Ok(record_with_output("sigmoid", out, &[self], |ctx, g| {
            let y = ctx.output()?;
            act_grad(ctx, ActBackward::Sigmoid, &y, g, sigmoid_composite)
        }))
    }

    /// tanh x. d/dx = 1 − t².
    #[track_caller]
    pub fn tanh(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Tanh)?;
        Ok(record_with_output("tanh", out, &[self], |ctx, g| {
            let y = ctx.output()?;
            act_grad(ctx, ActBackward::Tanh, &y, g, tanh_composite)
        }))
    }

    /// ln(1 + eˣ). d/dx = sigmoid(x).
    #[track_caller]
    pub fn softplus(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Softplus)?;
        let x = SavedTensor::new(self);
        Ok(record("softplus", out, &[self], move |ctx, g| {
            Ok(smallvec![Some(g.mul(&ctx.unpack(&x)?.sigmoid()?)?)])
        }))
    }

    /// GELU, tanh approximation: 0.5·x·(1 + tanh(k(x + c·x³))), k = √(2/π), c = 0.044715.
    /// d/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·k·(1 + 3c·x²).
    #[track_caller]
    pub fn gelu(&self) -> Result<Tensor> {
        let out = self.unary_raw(UnaryOp::Gelu)?;
        let x = SavedTensor::new(self);
        Ok(record("gelu", out, &[self], move |ctx, g| {
            const K: f64 = 0.797_884_560_802_865_4;
            const C: f64 = 0.044_715;
            let x = ctx.unpack(&x)?;
            let x2 = x.mul(&x)?;
            let t = x.add(&x2.mul(&x)?.mul_scalar(C)?)?.mul_scalar(K)?.tanh()?;
            let left = t.add_scalar(1.0)?.mul_scalar(0.5)?;
            let right = x
                .mul(&t.mul(&t)?.rsub_scalar(1.0)?)?
                .mul(&x2.mul_scalar(3.0 * C)?.add_scalar(1.0)?)?
                .mul_scalar(0.5 * K)?;
            Ok(smallvec![Some(g.mul(&left.add(&right)?)?)])
        }))
    }

    /// sign(x) ∈ {−1, 0, 1}; not differentiable (the result never requires grad).
    pub fn sign(&self) -> Result<Tensor> {
        self.unary_raw(UnaryOp::Sign)
    }
}

/// relu's backward as Tensor ops (recorded under create_graph): g·[x > 0].
fn relu_composite(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    g.mul(&x.unary_raw(UnaryOp::Step)?)
}

/// leaky relu's: g·([x > 0]·(1 − slope) + slope).
fn leaky_relu_composite(slope: f64, x: &Tensor, g: &Tensor) -> Result<Tensor> {
    let d = x.unary_raw(UnaryOp::Step)?.unary_raw(UnaryOp::MulScalar(1.0 - slope))?;
    g.mul(&d.unary_raw(UnaryOp::AddScalar(slope))?)
}

/// sigmoid's, from the output: g·y·(1 − y).
fn sigmoid_composite(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    g.mul(&y.mul(&y.rsub_scalar(1.0)?)?)
}

/// tanh's, from the output: g·(1 − y²).
fn tanh_composite(y: &Tensor, g: &Tensor) -> Result<Tensor> {
    g.mul(&y.mul(y)?.rsub_scalar(1.0)?)
}

/// The gradient through relu, leaky relu with a positive slope, sigmoid or
/// tanh computed from the output `y`: for relu and such a leaky relu `y > 0`
/// exactly where `x > 0`, so the output stands in for the input their rules
/// use, with the same bits.
pub(crate) fn act_grad_from_output(ctx: &BackwardCtx, op: UnaryOp, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let Some(rule) = rule_from_output(op) else {
        return Err(crate::Error::Unsupported {
            op: "activation gradient from the output",
            what: format!("{op:?}"),
        });
    };
    let composite = |y: &Tensor, g: &Tensor| match rule {
        ActBackward::Relu => relu_composite(y, g),
        ActBackward::LeakyRelu(s) => leaky_relu_composite(s, y, g),
        ActBackward::Sigmoid => sigmoid_composite(y, g),
        ActBackward::Tanh => tanh_composite(y, g),
    };
    act_grad(ctx, rule, y, g, composite)?
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| crate::Error::Autograd("activation backward returned no gradient".into()))
}

/// The fused backward rule of an activation whose gradient the output
/// determines (see [`act_grad_from_output`]).
fn rule_from_output(op: UnaryOp) -> Option<ActBackward> {
    match op {
        UnaryOp::Relu => Some(ActBackward::Relu),
        UnaryOp::LeakyRelu(s) if s > 0.0 => Some(ActBackward::LeakyRelu(s)),
        UnaryOp::Sigmoid => Some(ActBackward::Sigmoid),
        UnaryOp::Tanh => Some(ActBackward::Tanh),
        _ => None,
    }
}

/// [`act_grad_from_output`] for a 2-D output `y`, together with the column
/// sums of that gradient (a linear layer's bias gradient), both from one
/// pass on the CPU: the gradient is not read back for the sums. The same
/// bits as the two steps apart. `None` where the pass does not apply (a
/// recorded backward, CUDA tensors, another activation): the caller then
/// computes them apart.
pub(crate) fn act_grad_and_colsum(
    ctx: &BackwardCtx,
    op: UnaryOp,
    y: &Tensor,
    g: &Tensor,
) -> Result<Option<(Tensor, Tensor)>> {
    let Some(rule) = rule_from_output(op) else {
        return Ok(None);
    };
    if ctx.create_graph || y.is_cuda() || y.shape().len() != 2 || y.shape() != g.shape() || y.numel() == 0 {
        return Ok(None);
    }
    let (n, cols) = (y.numel(), y.shape()[1]);
    let (s, gc) = (y.slices()?, g.slices()?);
    let (dz, sums) = s.with(|sr| {
        gc.with(|gr| match (sr, gr) {
            (crate::tensor::SliceRef::F32(s), crate::tensor::SliceRef::F32(d)) => {
                let (mut dz, mut sums) = (crate::storage::take::<f32>(n), crate::storage::take::<f32>(cols));
                act_backward_colsum(rule, s, d, &mut dz, cols, &mut sums);
                Ok((crate::storage::Data::F32(dz), crate::storage::Data::F32(sums)))
            }
            (crate::tensor::SliceRef::F64(s), crate::tensor::SliceRef::F64(d)) => {
                let (mut dz, mut sums) = (crate::storage::take::<f64>(n), crate::storage::take::<f64>(cols));
                act_backward_colsum(rule, s, d, &mut dz, cols, &mut sums);
                Ok((crate::storage::Data::F64(dz), crate::storage::Data::F64(sums)))
            }
            _ => Err(crate::Error::DTypeMismatch {
                op: "activation backward",
                lhs: y.dtype(),
                rhs: g.dtype(),
            }),
        })
    })?;
    Ok(Some((
        Tensor::from_data(dz, y.shape(), y.device()),
        Tensor::from_data(sums, &[cols], y.device()),
    )))
}

/// Activation backward: the fused kernel when the backward pass is not
/// recorded, the composite rule (differentiable again) when it is.
fn act_grad(
    ctx: &BackwardCtx,
    op: ActBackward,
    saved: &Tensor,
    g: &Tensor,
    composite: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<crate::autograd::InputGrads> {
    if ctx.create_graph {
        return Ok(smallvec![Some(composite(saved, g)?)]);
    }
    #[cfg(feature = "cuda")]
    if saved.is_cuda() {
        return Ok(smallvec![Some(crate::cuda::act_backward(op, saved, g)?)]);
    }
    let (s, gc) = (saved.slices()?, g.slices()?);
    let n = saved.numel();
    let data = s.with(|sr| {
        gc.with(|gr| match (sr, gr) {
            (crate::tensor::SliceRef::F32(s), crate::tensor::SliceRef::F32(d)) => {
                let mut out = crate::storage::take::<f32>(n);
                act_backward(op, s, d, &mut out);
                Ok(crate::storage::Data::F32(out))
            }
            (crate::tensor::SliceRef::F64(s), crate::tensor::SliceRef::F64(d)) => {
                let mut out = crate::storage::take::<f64>(n);
                act_backward(op, s, d, &mut out);
                Ok(crate::storage::Data::F64(out))
            }
            _ => Err(crate::Error::DTypeMismatch {
                op: "activation backward",
                lhs: saved.dtype(),
                rhs: g.dtype(),
            }),
        })
    })?;
    Ok(smallvec![Some(Tensor::from_data(data, saved.shape(), saved.device()))])
}

/// A pooled buffer of `n` elements of the slice's element type (contents unspecified).
#[inline]
pub(crate) fn take_like<T: crate::storage::Pooled>(_: &[T], n: usize) -> crate::storage::Buf<T> {
    crate::storage::take::<T>(n)
}
