//! Every op of the engine: forward dispatch and backward rule side by side,
//! one file per op family.
//!
//! | file | ops |
//! |---|---|
//! | `unary.rs` | neg, exp, log, sqrt, abs, powf, clamp, relu, leaky_relu, sigmoid, tanh, softplus, gelu, scalar add/mul |
//! | `binary.rs` | add, sub, mul, div, maximum with NumPy broadcasting |
//! | `matmul.rs` | matmul (2-D, strided operands), linear (x·Wᵀ + b) |
//! | `reduce.rs` | sum, mean, max (all or dims, keepdim), log_softmax |
//! | `shape.rs` | reshape, transpose, permute, narrow, broadcast_to, contiguous, concat, stack |
//! | `loss.rs` | mse, bce, bce_with_logits, cross_entropy |

pub mod binary;
pub mod loss;
pub mod matmul;
pub mod reduce;
pub mod shape;
pub mod unary;

use crate::{Error, Result, Tensor};

/// Checks that two operands share dtype and device.
pub(crate) fn check_same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            lhs: a.device(),
            rhs: b.device(),
        });
    }
    Ok(())
}

/// Runs a generic CPU kernel on a contiguous input, producing a new tensor of
/// `shape`: `$f` is called as `$f(slice)` and must return a `Vec<T>`.
macro_rules! map_contig {
    ($t:expr, $shape:expr, |$s:ident| $body:expr) => {{
        let c = $t.slices()?;
        let data = c.with(|sr| match sr {
            $crate::tensor::SliceRef::F32($s) => $crate::storage::Data::F32($body),
            $crate::tensor::SliceRef::F64($s) => $crate::storage::Data::F64($body),
        });
        $crate::Tensor::from_data(data, $shape, $t.device())
    }};
}
pub(crate) use map_contig;
