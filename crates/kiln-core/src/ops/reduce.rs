//! Reductions: sum, mean and max over all elements or over given dims
//! (keepdim as in PyTorch), and log_softmax. Results are bit-identical at any
//! thread count (kiln-cpu reduces in fixed chunks, in a fixed order).

use super::map_contig;
use crate::autograd::{record, record_with_output, SavedTensor};
use crate::shape::{normalize_dims, Dims};
use crate::{Result, Tensor};
use kiln_cpu::reduce::{reduce_all, reduce_dim, ReduceOp};
use smallvec::smallvec;

impl Tensor {
    /// Reduces the given (sorted, unique) dims, keeping them as size 1.
    fn reduce_raw(&self, op: ReduceOp, dims: &[usize]) -> Result<Tensor> {
        let mut cur = self.clone();
        let mut shape = Dims::from_slice(self.shape());
        for &d in dims.iter().rev() {
            let outer: usize = shape[..d].iter().product();
            let r = shape[d];
            let inner: usize = shape[d + 1..].iter().product();
            shape[d] = 1;
            if outer * inner == 0 {
                // Empty output (a zero-size dim that is kept): nothing to reduce,
                // and the kernel cannot cut zero-length rows.
                cur = Tensor::zeros(&shape, self.dtype(), self.device())?;
                continue;
            }
            #[cfg(feature = "cuda")]
            if cur.is_cuda() {
                cur = crate::cuda::reduce_dim(&cur, op, (outer, r, inner), &shape)?;
                continue;
            }
            cur = map_contig!(cur, &shape, |x| {
                let mut out = super::unary::take_like(x, outer * inner);
                reduce_dim(op, x, outer, r, inner, &mut out);
                out
            });
        }
        Ok(cur)
    }

    /// Reduces every element into a one-element tensor of `shape`.
    fn reduce_all_raw(&self, op: ReduceOp, shape: &[usize]) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return crate::cuda::reduce_all(self, op, shape);
        }
        Ok(map_contig!(self, shape, |x| {
            let mut out = super::unary::take_like(x, 1);
            out[0] = reduce_all(op, x);
            out
        }))
    }

    fn keep_shape(&self, dims: &[usize]) -> Dims {
        let mut s = Dims::from_slice(self.shape());
        for &d in dims {
            s[d] = 1;
        }
        s
    }

    fn drop_dims(shape: &[usize], dims: &[usize]) -> Dims {
        shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !dims.contains(i))
            .map(|(_, &d)| d)
            .collect()
    }

    /// Σ of all elements → a 0-d tensor. d/dx = 1 (the gradient is broadcast back).
    #[track_caller]
    pub fn sum(&self) -> Result<Tensor> {
        let out = self.reduce_all_raw(ReduceOp::Sum, &[])?;
        let shape = Dims::from_slice(self.shape());
        Ok(record("sum", out, &[self], move |_, g| {
            Ok(smallvec![Some(g.broadcast_to(&shape)?)])
        }))
    }

    /// Σ over `dims` (negative dims count from the end), keeping them as size
    /// 1 when `keepdim`.
    #[track_caller]
    pub fn sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let dims = normalize_dims("sum_dims", dims, self.rank())?;
        let kept = self.reduce_raw(ReduceOp::Sum, &dims)?;
        let out = if keepdim {
            kept
        } else {
            kept.reshape_raw(&Self::drop_dims(self.shape(), &dims))
        };
        let (shape, keep) = (Dims::from_slice(self.shape()), self.keep_shape(&dims));
        Ok(record("sum_dims", out, &[self], move |_, g| {
            Ok(smallvec![Some(g.reshape(&keep)?.broadcast_to(&shape)?)])
        }))
    }

    /// Σ x² of every element as an `f64`, accumulated in f64 in a fixed order
    /// (the same bits at any thread count). Not recorded in the graph: it is
    /// for diagnostics such as gradient norms. On a GPU the sum runs on the
    /// device and one scalar crosses to the host.
    pub fn sum_squares_f64(&self) -> Result<f64> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return crate::no_grad(|| self.mul(self)?.sum()?.item());
        }
        match self.dtype() {
            crate::DType::F32 => self.with_slice(kiln_cpu::reduce::sum_squares_f64::<f32>),
            crate::DType::F64 => self.with_slice(kiln_cpu::reduce::sum_squares_f64::<f64>),
        }
    }

    /// Mean of all elements.
    #[track_caller]
    pub fn mean(&self) -> Result<Tensor> {
        let n = self.numel().max(1) as f64;
        self.sum()?.mul_scalar(1.0 / n)
    }

    /// Mean over `dims`.
    #[track_caller]
    pub fn mean_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let nd = normalize_dims("mean_dims", dims, self.rank())?;
        let count: usize = nd.iter().map(|&d| self.shape()[d]).product();
        self.sum_dims(dims, keepdim)?.mul_scalar(1.0 / count.max(1) as f64)
    }

    /// Maximum of all elements → 0-d. The gradient goes to the maximal
    /// elements, split evenly between ties.
    #[track_caller]
    pub fn max(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        self.max_dims(&all, false)
    }

    /// Maximum over `dims`. d/dx = [x == max] / (number of maxima).
    #[track_caller]
    pub fn max_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let nd = normalize_dims("max_dims", dims, self.rank())?;
        let kept = if nd.len() == self.rank() && self.rank() > 0 {
            let shape = self.keep_shape(&nd);
            self.reduce_all_raw(ReduceOp::Max, &shape)?
        } else {
            self.reduce_raw(ReduceOp::Max, &nd)?
        };
        let out = if keepdim {
            kept
        } else {
            kept.reshape_raw(&Self::drop_dims(self.shape(), &nd))
        };
        let x = SavedTensor::new(self);
        let (keep, signed): (Dims, Vec<isize>) = (self.keep_shape(&nd), nd.iter().map(|&d| d as isize).collect());
        Ok(record_with_output("max_dims", out, &[self], move |ctx, g| {
            let x = ctx.unpack(&x)?;
            let y = ctx.output()?.detach().reshape_raw(&keep);
            let mask = x.eq_mask(&y)?;
            let count = mask.sum_dims(&signed, true)?;
            let share = mask.div(&count)?;
            Ok(smallvec![Some(g.reshape(&keep)?.mul(&share)?)])
        }))
    }

    /// log(softmax(x)) along `dim`, computed stably as x − m − log Σ e^(x−m)
    /// with m the (detached) row maximum. Composed of differentiable ops, so
    /// its gradient (softmax-shaped) and higher derivatives follow.
    #[track_caller]
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        let m = self.max_dims(&[dim], true)?.detach();
        let z = self.sub(&m)?;
        let lse = z.exp()?.sum_dims(&[dim], true)?.log()?;
        z.sub(&lse)
    }

    /// softmax along `dim` = exp(log_softmax).
    #[track_caller]
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        self.log_softmax(dim)?.exp()
    }
}
