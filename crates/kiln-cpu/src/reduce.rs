//! Reductions with a fixed order of operations, so results are bit-identical
//! at 1, 2 or N threads: work is cut into fixed [`CHUNK`]-sized pieces (never
//! into "one piece per thread"), each piece is reduced sequentially, and the
//! piece results are combined sequentially in index order.
//!
//! Layout: a reduction over one dimension sees its input as `[outer, r, inner]`
//! (row-major) and writes `[outer, inner]`.

use crate::{simd, Float, CHUNK, PAR_THRESHOLD};
use rayon::prelude::*;

/// What a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Σ
    Sum,
    /// max (NaN propagates)
    Max,
}

#[inline(always)]
fn combine<T: Float>(op: ReduceOp, acc: T, v: T) -> T {
    match op {
        ReduceOp::Sum => acc + v,
        ReduceOp::Max => {
            if v > acc || v.to_f64().is_nan() {
                v
            } else {
                acc
            }
        }
    }
}

#[inline(always)]
fn identity<T: Float>(op: ReduceOp) -> T {
    match op {
        ReduceOp::Sum => T::ZERO,
        ReduceOp::Max => T::neg_infinity(),
    }
}

/// Σ f(x) over one piece: eight independent partial sums (lane l takes the
/// elements ≡ l mod 8), combined pairwise in a fixed order. The lanes
/// vectorise where a single running sum would be a chain of dependent
/// additions, one per element.
#[inline(always)]
fn lane_sum<T: Float, A: Float>(x: &[T], f: impl Fn(T) -> A) -> A {
    let mut acc = [A::ZERO; 8];
    let mut it = x.chunks_exact(8);
    for c in &mut it {
        for l in 0..8 {
            acc[l] += f(c[l]);
        }
    }
    let mut s = A::ZERO;
    for &v in it.remainder() {
        s += f(v);
    }
    let pairs = [acc[0] + acc[4], acc[1] + acc[5], acc[2] + acc[6], acc[3] + acc[7]];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]) + s
}

fn reduce_seq<T: Float>(op: ReduceOp, x: &[T]) -> T {
    match op {
        ReduceOp::Sum => lane_sum(x, |v| v),
        ReduceOp::Max => x.iter().fold(identity(op), |a, &v| combine(op, a, v)),
    }
}

/// `piece` over fixed [`CHUNK`]-sized pieces of `x` (on the pool from
/// [`PAR_THRESHOLD`] elements), their results folded with `combine` from
/// `init` in index order: the same bits at any thread count.
fn fold_pieces<T: Float, A: Copy + Send>(
    x: &[T],
    piece: impl Fn(&[T]) -> A + Sync + Send,
    init: A,
    combine: impl Fn(A, A) -> A,
) -> A {
    if x.len() < PAR_THRESHOLD {
        return x.chunks(CHUNK).map(piece).fold(init, combine);
    }
    // The pieces' results go to a buffer on the stack, a group of pieces at
    // a time (no heap memory: gradient norms run every training step), and
    // are folded in index order as they would be all at once.
    const GROUP: usize = 128;
    let mut acc = init;
    for group in x.chunks(CHUNK * GROUP) {
        let mut partial = [init; GROUP];
        let partial = &mut partial[..group.len().div_ceil(CHUNK)];
        partial
            .par_iter_mut()
            .zip(group.par_chunks(CHUNK))
            .for_each(|(p, c)| *p = piece(c));
        acc = partial.iter().fold(acc, |a, &v| combine(a, v));
    }
    acc
}

/// Reduces every element of `x`.
pub fn reduce_all<T: Float>(op: ReduceOp, x: &[T]) -> T {
    if x.len() <= CHUNK {
        return reduce_seq(op, x);
    }
    fold_pieces(x, |c| reduce_seq(op, c), identity(op), |a, v| combine(op, a, v))
}

/// Σ x² of every element, accumulated in f64 (gradient norms: a sum of
/// millions of f32 squares keeps its precision; four f64 squares per
/// instruction with AVX2), in fixed pieces added in index order.
pub fn sum_squares_f64<T: Float>(x: &[T]) -> f64 {
    let square = |v: T| {
        let v = v.to_f64();
        v * v
    };
    fold_pieces(x, |c| simd(|| lane_sum(c, square)), 0.0, |a, v| a + v)
}

/// `dst[i]` = reduce over `j < r` of `x[j·stride + i]`: whole rows in j order,
/// which vectorises over i and keeps a fixed order per output element.
#[inline(always)]
fn reduce_rows<T: Float>(op: ReduceOp, x: &[T], r: usize, stride: usize, dst: &mut [T]) {
    dst.fill(identity(op));
    for j in 0..r {
        let row = &x[j * stride..j * stride + dst.len()];
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = combine(op, *d, v);
        }
    }
}

/// out[o, i] = reduce over j of x[o, j, i], for x of shape [outer, r, inner].
pub fn reduce_dim<T: Float>(op: ReduceOp, x: &[T], outer: usize, r: usize, inner: usize, out: &mut [T]) {
    assert_eq!(x.len(), outer * r * inner, "reduce_dim: input length");
    assert_eq!(out.len(), outer * inner, "reduce_dim: output length");
    if inner == 1 {
        // Reduce contiguous rows.
        let body = |o: usize, dst: &mut T| *dst = reduce_seq(op, &x[o * r..(o + 1) * r]);
        if x.len() < PAR_THRESHOLD {
            out.iter_mut().enumerate().for_each(|(o, d)| body(o, d));
        } else {
            out.par_iter_mut()
                .enumerate()
                .with_min_len((CHUNK / r.max(1)).max(1))
                .for_each(|(o, d)| body(o, d));
        }
        return;
    }
    // Reduce strided columns: accumulate whole rows of length `inner` in j
    // order (see `reduce_rows`). `simd` wraps the inlined loop itself, not a
    // closure around it, which would compile the loop for baseline x86-64.
    let body = |o: usize, dst: &mut [T]| simd(|| reduce_rows(op, &x[o * r * inner..], r, inner, dst));
    if x.len() < PAR_THRESHOLD {
        out.chunks_mut(inner).enumerate().for_each(|(o, d)| body(o, d));
    } else if outer >= 4 {
        out.par_chunks_mut(inner).enumerate().for_each(|(o, d)| body(o, d));
    } else {
        // Few outer slices (a bias gradient: the column sums of dy): split
        // the inner dimension into a couple of column blocks per thread
        // instead. Wide blocks keep every row's run long (a 256-column block
        // of a 12288-wide dy read 1 KB runs 48 KB apart, which the hardware
        // prefetchers do not follow); each element's order is j order
        // whatever the blocks, so the bits do not depend on the thread count.
        const COLS: usize = 256;
        let cols = inner.div_ceil(2 * rayon::current_num_threads()).next_multiple_of(COLS);
        for (o, d) in out.chunks_mut(inner).enumerate() {
            d.par_chunks_mut(cols)
                .enumerate()
                .for_each(|(b, dc)| simd(|| reduce_rows(op, &x[o * r * inner + b * cols..], r, inner, dc)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_all_is_identical_across_thread_counts() {
        let x: Vec<f32> = (0..1_000_003)
            .map(|i: u64| ((i * 7919) % 1000) as f32 * 1e-3 - 0.37)
            .collect();
        let run = |t: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| reduce_all(ReduceOp::Sum, &x))
        };
        let one = run(1);
        assert_eq!(one.to_bits(), run(2).to_bits());
        assert_eq!(one.to_bits(), run(5).to_bits());
        let exact: f64 = x.iter().map(|&v| v as f64).sum();
        assert!((one as f64 - exact).abs() < 1e-2 * exact.abs().max(1.0));
    }

    #[test]
    fn sum_squares_matches_an_exact_sum_and_ignores_the_thread_count() {
        // Lengths around the chunk and parallel thresholds and an odd tail.
        for n in [0, 7, 8, 9, CHUNK + 3, PAR_THRESHOLD + 5] {
            let x: Vec<f32> = (0..n as u64).map(|i| ((i * 7919) % 1013) as f32 * 1e-2 - 4.9).collect();
            let run = |t: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap()
                    .install(|| sum_squares_f64(&x))
            };
            let one = run(1);
            assert_eq!(one.to_bits(), run(2).to_bits(), "n = {n}");
            assert_eq!(one.to_bits(), run(3).to_bits(), "n = {n}");
            // Against one running f64 sum: another order, within rounding.
            let exact: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
            assert!(
                (one - exact).abs() <= 1e-12 * exact.max(1.0),
                "n = {n}: {one} vs {exact}"
            );
        }
        let big = [1e20f32, -3e19, f32::MAX];
        assert!(
            sum_squares_f64(&big[..2]).is_finite(),
            "f32 squares overflow, f64 ones do not"
        );
        assert_eq!(sum_squares_f64(&big[2..]), (f32::MAX as f64).powi(2));
        assert!(sum_squares_f64(&[1.0f32, f32::NAN]).is_nan());
        assert_eq!(sum_squares_f64(&[3.0f64, 4.0]), 25.0);
    }

    #[test]
    fn reduce_dim_matches_naive() {
        let (outer, r, inner) = (3, 5, 4);
        let x: Vec<f64> = (0..outer * r * inner).map(|i| (i as f64).sin()).collect();
        let mut out = vec![0.0; outer * inner];
        reduce_dim(ReduceOp::Sum, &x, outer, r, inner, &mut out);
        for o in 0..outer {
            for i in 0..inner {
                let want: f64 = (0..r).map(|j| x[(o * r + j) * inner + i]).sum();
                assert!((out[o * inner + i] - want).abs() < 1e-12);
            }
        }
        reduce_dim(ReduceOp::Max, &x, outer, r, inner, &mut out);
        for o in 0..outer {
            for i in 0..inner {
                let want = (0..r).map(|j| x[(o * r + j) * inner + i]).fold(f64::MIN, f64::max);
                assert_eq!(out[o * inner + i], want);
            }
        }
    }

    #[test]
    fn reduce_dim_deterministic_across_threads() {
        let (outer, r, inner) = (2, 3000, 700);
        let x: Vec<f32> = (0..outer * r * inner).map(|i| ((i % 977) as f32).sqrt()).collect();
        let run = |t: usize| {
            let mut out = vec![0.0f32; outer * inner];
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| reduce_dim(ReduceOp::Sum, &x, outer, r, inner, &mut out));
            out
        };
        let a = run(1);
        assert!(a.iter().zip(run(3)).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
}
