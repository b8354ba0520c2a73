//! Binary elementwise ops with NumPy broadcasting. Broadcasting never copies:
//! a broadcast dimension is read with stride 0. In backward, each input's
//! gradient is summed back to the input's shape ([`Tensor::sum_to_shape`]).

use super::check_same;
use crate::autograd::{record, record_with_output, SavedTensor};
use crate::shape::{broadcast_dims, same_dims, Dims, Strides};
use crate::storage::Data;
use crate::{Error, Result, Tensor};
use kiln_cpu::elementwise::{binary, BinaryOp, Strided};
use smallvec::smallvec;

/// Strides that read `t` as if it had shape `out` (stride 0 on broadcast dims).
fn broadcast_strides(t: &Tensor, out: &[usize]) -> Strides {
    let lead = out.len() - t.rank();
    (0..out.len())
        .map(|i| {
            if i < lead || t.shape()[i - lead] == 1 {
                0
            } else {
                t.strides()[i - lead]
            }
        })
        .collect()
}

/// A pooled output of `shape` filled with op(a, b), each operand given as
/// (storage, offset, broadcast strides).
fn binary_into<T: crate::Element>(
    op: BinaryOp,
    (a, oa, sa): (&[T], usize, &[isize]),
    (b, ob, sb): (&[T], usize, &[isize]),
    shape: &[usize],
) -> crate::storage::Buf<T> {
    let mut out = crate::storage::take::<T>(shape.iter().product());
    let a = Strided {
        data: a,
        offset: oa,
        strides: sa,
    };
    let b = Strided {
        data: b,
        offset: ob,
        strides: sb,
    };
    binary(op, a, b, shape, &mut out);
    out
}

impl Tensor {
    /// Applies a binary kernel with broadcasting, without recording.
    pub(crate) fn binary_raw(&self, other: &Tensor, op: BinaryOp, name: &'static str) -> Result<Tensor> {
        check_same(name, self, other)?;
        // Operands of one shape (most ops, and every gradient a backward rule
        // combines) need no broadcast: the output takes that shape and each
        // operand is read through its own strides (a size-1 dimension's
        // stride multiplies only index 0, so it need not be zeroed).
        let (shape, sa, sb) = if same_dims(self.shape(), other.shape()) {
            (
                Dims::from_slice(&self.0.shape),
                Strides::from_slice(&self.0.strides),
                Strides::from_slice(&other.0.strides),
            )
        } else {
            let shape = broadcast_dims(name, self.shape(), other.shape())?;
            let (sa, sb) = (broadcast_strides(self, &shape), broadcast_strides(other, &shape));
            (shape, sa, sb)
        };
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return crate::cuda::binary(self, other, op, &shape);
        }
        let ga = self.0.storage.read();
        let gb = other.0.storage.read();
        let (oa, ob) = (self.0.offset, other.0.offset);
        let data = match (&*ga, &*gb) {
            (Data::F32(a), Data::F32(b)) => Data::F32(binary_into(op, (a, oa, &sa), (b, ob, &sb), &shape)),
            (Data::F64(a), Data::F64(b)) => Data::F64(binary_into(op, (a, oa, &sa), (b, ob, &sb), &shape)),
            _ => unreachable!("dtypes checked"),
        };
        drop((ga, gb));
        Ok(Tensor::from_data(data, &shape, self.device()))
    }

    /// a + b (broadcasting).
    #[track_caller]
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        let out = self.binary_raw(other, BinaryOp::Add, "add")?;
        let (sa, sb) = (Dims::from_slice(&self.0.shape), Dims::from_slice(&other.0.shape));
        Ok(record("add", out, &[self, other], move |_, g| {
            Ok(smallvec![Some(g.sum_to_shape(&sa)?), Some(g.sum_to_shape(&sb)?)])
        }))
    }

    /// a − b (broadcasting).
    #[track_caller]
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        let out = self.binary_raw(other, BinaryOp::Sub, "sub")?;
        let (sa, sb) = (Dims::from_slice(&self.0.shape), Dims::from_slice(&other.0.shape));
        Ok(record("sub", out, &[self, other], move |_, g| {
            Ok(smallvec![Some(g.sum_to_shape(&sa)?), Some(g.neg()?.sum_to_shape(&sb)?)])
        }))
    }

    /// a · b elementwise (broadcasting). d/da = b, d/db = a.
    #[track_caller]
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        let out = self.binary_raw(other, BinaryOp::Mul, "mul")?;
        let (a, b) = (SavedTensor::new(self), SavedTensor::new(other));
        let (ra, rb) = (self.0.requires_grad, other.0.requires_grad);
        Ok(record("mul", out, &[self, other], move |ctx, g| {
            let (a, b) = (ctx.unpack(&a)?, ctx.unpack(&b)?);
            let ga = if ra {
                Some(g.mul(&b)?.sum_to_shape(a.shape())?)
            } else {
                None
            };
            let gb = if rb {
                Some(g.mul(&a)?.sum_to_shape(b.shape())?)
            } else {
                None
            };
            Ok(smallvec![ga, gb])
        }))
    }

    /// a / b elementwise (broadcasting). d/da = 1/b, d/db = −a/b² = −y/b.
    #[track_caller]
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        let out = self.binary_raw(other, BinaryOp::Div, "div")?;
        let (a, b) = (SavedTensor::new(self), SavedTensor::new(other));
        let (ra, rb) = (self.0.requires_grad, other.0.requires_grad);
        Ok(record_with_output("div", out, &[self, other], move |ctx, g| {
            let (a, b) = (ctx.unpack(&a)?, ctx.unpack(&b)?);
            let ga = if ra {
                Some(g.div(&b)?.sum_to_shape(a.shape())?)
            } else {
                None
            };
            let gb = if rb {
                Some(g.mul(&ctx.output()?)?.div(&b)?.neg()?.sum_to_shape(b.shape())?)
            } else {
                None
            };
            Ok(smallvec![ga, gb])
        }))
    }

    /// max(a, b) elementwise (broadcasting); ties split the gradient evenly.
    #[track_caller]
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        let out = self.binary_raw(other, BinaryOp::Maximum, "maximum")?;
        let (a, b) = (SavedTensor::new(self), SavedTensor::new(other));
        Ok(record("maximum", out, &[self, other], move |ctx, g| {
            let (a, b) = (ctx.unpack(&a)?, ctx.unpack(&b)?);
            let tie = a.binary_raw(&b, BinaryOp::Eq, "maximum")?.mul_scalar(0.5)?;
            let wa = a.binary_raw(&b, BinaryOp::Gt, "maximum")?.add(&tie)?;
            let wb = b.binary_raw(&a, BinaryOp::Gt, "maximum")?.add(&tie)?;
            Ok(smallvec![
                Some(g.mul(&wa)?.sum_to_shape(a.shape())?),
                Some(g.mul(&wb)?.sum_to_shape(b.shape())?),
            ])
        }))
    }

    /// 1 where a == b else 0 (broadcasting); not differentiable.
    pub fn eq_mask(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_raw(other, BinaryOp::Eq, "eq")
    }

    /// 1 where a > b else 0 (broadcasting); not differentiable.
    pub fn gt_mask(&self, other: &Tensor) -> Result<Tensor> {
        self.binary_raw(other, BinaryOp::Gt, "gt")
    }

    /// Sums a broadcast gradient back to `shape` (the inverse of broadcasting).
    #[track_caller]
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if same_dims(self.shape(), shape) {
            return Ok(self.clone());
        }
        if shape.len() > self.rank() {
            return Err(Error::ShapeMismatch {
                op: "sum_to_shape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        let lead = self.rank() - shape.len();
        let dims: Vec<isize> = (0..self.rank())
            .filter(|&i| i < lead || (shape[i - lead] == 1 && self.shape()[i] != 1))
            .map(|i| i as isize)
            .collect();
        let summed = if dims.is_empty() {
            self.clone()
        } else {
            self.sum_dims(&dims, true)?
        };
        summed.reshape(shape)
    }
}
