//! Reductions with a fixed order of operations, so results are bit-identical
//! at 1, 2 or N threads: work is cut into fixed [`CHUNK`]-sized pieces (never
//! into "one piece per thread"), each piece is reduced sequentially, and the
//! piece results are combined sequentially in index order.
//!
//! Layout: a reduction over one dimension sees its input as `[outer, r, inner]`
//! (row-major) and writes `[outer, inner]`.

#[cfg(target_arch = "x86_64")]
use crate::{as_f32, has_avx2};
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

/// Independent accumulators of [`lane_sum`] and [`lane_max`]: lane `l` takes
/// the elements ≡ l mod `LANES`, and [`fold_lanes`] combines them in a fixed
/// order. 32 keep four AVX2 registers of f32 (eight of f64) in flight, so a
/// sum is not one chain of dependent vector additions. The f32 sums run as
/// intrinsics (`x86`) that add the same lanes in the same order.
const LANES: usize = 32;

/// Folds the lanes pairwise, lane l with lane l + half, halving until one
/// is left: a fixed order, so a fixed result.
#[inline(always)]
fn fold_lanes<A: Copy>(mut acc: [A; LANES], combine: impl Fn(A, A) -> A) -> A {
    let mut half = LANES / 2;
    while half > 0 {
        for l in 0..half {
            acc[l] = combine(acc[l], acc[l + half]);
        }
        half /= 2;
    }
    acc[0]
}

/// Σ f(x) over one piece: [`LANES`] independent partial sums, folded in a
/// fixed order, then the tail. The lanes vectorise where a single running
/// sum would be a chain of dependent additions, one per element.
#[inline(always)]
fn lane_sum<T: Float, A: Float>(x: &[T], f: impl Fn(T) -> A) -> A {
    let mut acc = [A::ZERO; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            acc[l] += f(c[l]);
        }
    }
    let mut s = A::ZERO;
    for &v in it.remainder() {
        s += f(v);
    }
    fold_lanes(acc, |a, b| a + b) + s
}

/// max over one piece, NaN propagating: [`LANES`] running maxima, each a
/// compare and a blend per vector. One running maximum over the elements was
/// a dependent compare-and-select per element (3 GB/s). Of equal elements
/// (+0 and −0) the one a lane met first stays, so which zero comes out
/// depends on where the zeros lie, never on the thread count.
#[inline(always)]
fn lane_max<T: Float>(x: &[T]) -> T {
    let mut acc = [T::neg_infinity(); LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            acc[l] = combine(ReduceOp::Max, acc[l], c[l]);
        }
    }
    let tail = it
        .remainder()
        .iter()
        .fold(T::neg_infinity(), |a, &v| combine(ReduceOp::Max, a, v));
    combine(
        ReduceOp::Max,
        fold_lanes(acc, |a, b| combine(ReduceOp::Max, a, b)),
        tail,
    )
}

fn reduce_seq<T: Float>(op: ReduceOp, x: &[T]) -> T {
    match op {
        ReduceOp::Sum => {
            #[cfg(target_arch = "x86_64")]
            if let (Some(x), true) = (as_f32(x), has_avx2()) {
                // SAFETY: the CPU has AVX2 (checked just above).
                return T::from_f64(unsafe { x86::sum_f32(x) } as f64);
            }
            simd(
                #[inline(always)]
                || lane_sum(x, |v| v),
            )
        }
        ReduceOp::Max => simd(
            #[inline(always)]
            || lane_max(x),
        ),
    }
}

/// [`lane_sum`] for f32 in AVX2 intrinsics: the same lanes added in the same
/// order, so the same bits as the portable loop, which the compiler
/// vectorised only two lanes wide (`vmovsd` loads and `vaddps` on half an
/// xmm register, accumulators spilled to the stack: 39 GB/s from L3 for the
/// f32 sum, 29 GB/s for the sum of squares, on a Zen 4 core that copies at
/// 90).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// Σ x over one piece: 32 f32 lanes in four registers.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sum_f32(x: &[f32]) -> f32 {
        let whole = x.len() / LANES * LANES;
        let p = x.as_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in (0..whole).step_by(LANES) {
            for (g, a) in acc.iter_mut().enumerate() {
                // SAFETY: i + 8g + 8 ≤ whole ≤ x.len().
                *a = _mm256_add_ps(*a, unsafe { _mm256_loadu_ps(p.add(i + 8 * g)) });
            }
        }
        // `fold_lanes`: lane l += lane l + 16 (registers 0 and 1 take 2 and
        // 3), then l += l + 8 (0 takes 1), l += l + 4, l += l + 2, l += l + 1.
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_shuffle_ps::<1>(h, h));
        let mut tail = 0.0f32;
        for &v in &x[whole..] {
            tail += v;
        }
        _mm_cvtss_f32(h) + tail
    }

    /// Σ x² in f64 over one piece: 32 f64 lanes in eight registers, each
    /// square a multiply and an add (not a fused multiply-add, as in the
    /// portable loop).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sum_squares_f32(x: &[f32]) -> f64 {
        let whole = x.len() / LANES * LANES;
        let p = x.as_ptr();
        let mut acc = [_mm256_setzero_pd(); 8];
        for i in (0..whole).step_by(LANES) {
            for (g, a) in acc.iter_mut().enumerate() {
                // SAFETY: i + 4g + 4 ≤ whole ≤ x.len().
                let v = _mm256_cvtps_pd(unsafe { _mm_loadu_ps(p.add(i + 4 * g)) });
                *a = _mm256_add_pd(*a, _mm256_mul_pd(v, v));
            }
        }
        // `fold_lanes`: l += l + 16 (registers 0–3 take 4–7), l += l + 8 (0
        // and 1 take 2 and 3), l += l + 4 (0 takes 1), then within a register.
        let b: [__m256d; 4] = std::array::from_fn(|g| _mm256_add_pd(acc[g], acc[g + 4]));
        let v = _mm256_add_pd(_mm256_add_pd(b[0], b[2]), _mm256_add_pd(b[1], b[3]));
        let h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        let h = _mm_add_sd(h, _mm_unpackhi_pd(h, h));
        let mut tail = 0.0f64;
        for &v in &x[whole..] {
            tail += v as f64 * v as f64;
        }
        _mm_cvtsd_f64(h) + tail
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
    #[cfg(target_arch = "x86_64")]
    if let (Some(x), true) = (as_f32(x), has_avx2()) {
        // SAFETY: the CPU has AVX2 (checked just above).
        return fold_pieces(x, |c| unsafe { x86::sum_squares_f32(c) }, 0.0, |a, v| a + v);
    }
    fold_pieces(
        x,
        |c| {
            simd(
                #[inline(always)]
                || lane_sum(c, square),
            )
        },
        0.0,
        |a, v| a + v,
    )
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
    // order (see `reduce_rows`).
    let body = |o: usize, dst: &mut [T]| {
        simd(
            #[inline(always)]
            || reduce_rows(op, &x[o * r * inner..], r, inner, dst),
        )
    };
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
            d.par_chunks_mut(cols).enumerate().for_each(|(b, dc)| {
                simd(
                    #[inline(always)]
                    || reduce_rows(op, &x[o * r * inner + b * cols..], r, inner, dc),
                )
            });
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

    /// Values over a wide range of magnitudes and both signs, so that the
    /// order of the additions shows in the low bits.
    fn wide(n: usize) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let u = ((i * 2_654_435_761) % 10_007) as f32 / 10_007.0;
                (u - 0.43) * 10f32.powi((i % 7) as i32 - 3)
            })
            .collect()
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn intrinsic_sums_give_the_portable_lanes_bits() {
        if !has_avx2() {
            eprintln!("skipped: no AVX2 on this CPU");
            return;
        }
        let square = |v: f32| v as f64 * v as f64;
        for n in [0, 1, 31, 32, 33, 95, 1000, CHUNK + 7] {
            let x = wide(n);
            // SAFETY: AVX2 checked above.
            let (s, q) = unsafe { (x86::sum_f32(&x), x86::sum_squares_f32(&x)) };
            assert_eq!(s.to_bits(), lane_sum(&x, |v| v).to_bits(), "sum, n = {n}");
            assert_eq!(q.to_bits(), lane_sum(&x, square).to_bits(), "squares, n = {n}");
        }
    }

    #[test]
    fn max_is_the_largest_element_and_propagates_nan() {
        for n in [0, 1, 31, 32, 33, 100, CHUNK + 5, PAR_THRESHOLD + 9] {
            let mut x = wide(n);
            let seq = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(reduce_all(ReduceOp::Max, &x), seq, "n = {n}");
            // A single NaN anywhere (a lane's first element, the middle, the
            // tail past the last whole group of lanes) wins.
            for at in [0, n / 2, n.saturating_sub(1)] {
                if n == 0 {
                    continue;
                }
                let keep = x[at];
                x[at] = f32::NAN;
                assert!(reduce_all(ReduceOp::Max, &x).is_nan(), "n = {n}, NaN at {at}");
                x[at] = keep;
            }
        }
        assert_eq!(reduce_all(ReduceOp::Max, &[f32::NEG_INFINITY; 40]), f32::NEG_INFINITY);
        assert_eq!(reduce_all(ReduceOp::Max, &[-3.0f64, -1.0, -2.0]), -1.0);
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
