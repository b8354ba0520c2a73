//! Matrix multiply entry point used by the engine: C = alpha·A·B + beta·C with
//! arbitrary row/column strides (so transposed operands are views, not copies).
//!
//! Strides are `[row_stride, col_stride]` in elements. The engine calls
//! [`gemm`]; it dispatches to the fastest correct kernel for the shape (our
//! packed micro-kernels in [`crate::gemm`] where they win, matrixmultiply
//! otherwise — matrixmultiply is also the reference every variant is tested
//! against).

use crate::elementwise::{unary_in_place, UnaryOp};
use crate::Float;
use crate::{as_f32, as_f32_pairs};
use std::any::TypeId;

/// C[m×n] = alpha·A[m×k]·B[k×n] + beta·C, all with explicit strides.
///
/// When `beta == 0`, C is overwritten (NaNs in C are not propagated).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &[T],
    a_strides: [isize; 2],
    b: &[T],
    b_strides: [isize; 2],
    beta: T,
    c: &mut [T],
    c_strides: [isize; 2],
) {
    if m == 0 || n == 0 {
        return;
    }
    check_extent(a.len(), m, k, a_strides);
    check_extent(b.len(), k, n, b_strides);
    check_extent(c.len(), m, n, c_strides);
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32 (checked by TypeId), so the casts are identity
        // reinterpretations; extents were checked above.
        unsafe {
            crate::gemm::sgemm_dispatch(
                m,
                n,
                k,
                alpha.to_f64() as f32,
                a.as_ptr() as *const f32,
                a_strides,
                b.as_ptr() as *const f32,
                b_strides,
                beta.to_f64() as f32,
                c.as_mut_ptr() as *mut f32,
                c_strides,
            )
        }
    } else {
        // SAFETY: T is f64 (the only other Float); extents checked above.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                alpha.to_f64(),
                a.as_ptr() as *const f64,
                a_strides[0],
                a_strides[1],
                b.as_ptr() as *const f64,
                b_strides[0],
                b_strides[1],
                beta.to_f64(),
                c.as_mut_ptr() as *mut f64,
                c_strides[0],
                c_strides[1],
            )
        }
    }
}

/// A linear layer's forward into a contiguous row-major `c` of m×n:
/// `c = x·wt + bias` (bias n values broadcast down the rows), then `act` on
/// every element. f32 goes through [`crate::gemm::sgemm_fused`], which
/// writes the bias and applies `act` row panel by row panel inside the
/// GEMM's own pass over C; f64 prefills, multiplies and maps. The bits are
/// those of the separate steps either way.
#[allow(clippy::too_many_arguments)]
pub fn linear_fused<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    x: &[T],
    x_strides: [isize; 2],
    wt: &[T],
    wt_strides: [isize; 2],
    bias: Option<&[T]>,
    act: Option<UnaryOp>,
    c: &mut [T],
) {
    linear_fused_batches(m, n, k, &mut [(x, c)], x_strides, wt, wt_strides, bias, act);
}

/// [`linear_fused`] for several batches of the same shape through one
/// layer: `c_i = act(x_i·wt + bias)` for each `(x_i, c_i)`. For f32 the
/// batches go through [`crate::gemm::sgemm_fused_batches`], which packs each
/// block of `wt` once for all of them where it can; every `c_i` has the bits
/// [`linear_fused`] gives it alone.
#[allow(clippy::too_many_arguments)]
pub fn linear_fused_batches<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    batches: &mut [(&[T], &mut [T])],
    x_strides: [isize; 2],
    wt: &[T],
    wt_strides: [isize; 2],
    bias: Option<&[T]>,
    act: Option<UnaryOp>,
) {
    if let (Some(wt), Some(f32_batches)) = (as_f32(wt), as_f32_pairs(batches)) {
        let f = act.map(|op| move |row: &mut [f32]| unary_in_place(op, row));
        let epi = crate::gemm::Epilogue {
            bias: bias.and_then(as_f32),
            act: f.as_ref().map(|f| f as &(dyn Fn(&mut [f32]) + Sync)),
        };
        return crate::gemm::sgemm_fused_batches(m, n, k, f32_batches, x_strides, wt, wt_strides, epi);
    }
    let f = act.map(|op| move |row: &mut [T]| unary_in_place(op, row));
    for (x, c) in batches.iter_mut() {
        linear_unfused(
            m,
            n,
            k,
            x,
            x_strides,
            wt,
            wt_strides,
            bias,
            f.as_ref().map(|f| f as &dyn Fn(&mut [T])),
            c,
        );
    }
}

/// A linear layer's forward in separate passes, the definition the fused
/// epilogue matches bit for bit: C's rows set to `bias` and the product
/// added onto them (beta = 1), or C overwritten (beta = 0); then `act` on
/// each row of the m×n contiguous C. The fallback of
/// [`crate::gemm::sgemm_fused`] and of [`linear_fused`] for f64.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_unfused<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    x: &[T],
    x_strides: [isize; 2],
    wt: &[T],
    wt_strides: [isize; 2],
    bias: Option<&[T]>,
    act: Option<&dyn Fn(&mut [T])>,
    c: &mut [T],
) {
    assert!(c.len() >= m * n, "linear: output shorter than {m}×{n}");
    if m == 0 || n == 0 {
        // No output (and rows of width 0 cannot be chunked).
        return;
    }
    let c = &mut c[..m * n];
    let beta = match bias {
        Some(b) => {
            c.chunks_exact_mut(n).for_each(|row| row.copy_from_slice(b));
            T::ONE
        }
        None => T::ZERO,
    };
    gemm(m, n, k, T::ONE, x, x_strides, wt, wt_strides, beta, c, [n as isize, 1]);
    if let Some(act) = act {
        c.chunks_exact_mut(n).for_each(act);
    }
}

/// Reference SGEMM through matrixmultiply (the baseline every variant is
/// checked and benchmarked against).
///
/// # Safety
/// The pointers must cover the extents implied by the sizes and strides.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_matrixmultiply(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    a_strides: [isize; 2],
    b: *const f32,
    b_strides: [isize; 2],
    beta: f32,
    c: *mut f32,
    c_strides: [isize; 2],
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a,
            a_strides[0],
            a_strides[1],
            b,
            b_strides[0],
            b_strides[1],
            beta,
            c,
            c_strides[0],
            c_strides[1],
        )
    }
}

/// Panics (an internal bug, not user input) if a strided matrix would read
/// outside its slice. Negative strides are not used by the engine.
fn check_extent(len: usize, rows: usize, cols: usize, strides: [isize; 2]) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(strides[0] >= 0 && strides[1] >= 0, "negative strides");
    let last = (rows - 1) * strides[0] as usize + (cols - 1) * strides[1] as usize;
    assert!(last < len, "gemm operand out of bounds: {last} >= {len}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer with no outputs (or no rows) writes nothing, in every dtype
    /// and with a bias and an activation: empty rows cannot be chunked.
    #[test]
    fn linear_with_an_empty_output_writes_nothing() {
        fn check<T: Float>(m: usize, n: usize, k: usize, act: UnaryOp) {
            let (x, w, b) = (vec![T::ONE; m * k], vec![T::ONE; k * n], vec![T::ZERO; n]);
            let mut c = vec![T::from_f64(7.0); 1];
            let s = |cols: usize| [cols.max(1) as isize, 1];
            linear_fused(m, n, k, &x, s(k), &w, s(n), Some(&b), Some(act), &mut c);
            assert_eq!(c[0].to_f64(), 7.0, "{m}×{n}×{k}");
        }
        for (m, n, k) in [(3, 0, 2), (0, 4, 2), (0, 0, 0)] {
            check::<f64>(m, n, k, UnaryOp::Sigmoid);
            check::<f32>(m, n, k, UnaryOp::Relu);
        }
    }
}
