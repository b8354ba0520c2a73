//! Elementwise kernels: unary maps, binary ops with broadcasting (through
//! strides, a stride of 0 repeats a dimension), and the fused backward of the
//! activations whose derivative is cheaper from a saved value.
//!
//! Outputs are contiguous row-major. Work above [`crate::PAR_THRESHOLD`]
//! elements is split into [`crate::CHUNK`]-sized pieces run by rayon.

use crate::{simd, Float, CHUNK, PAR_THRESHOLD};
use rayon::prelude::*;

/// Unary elementwise functions. Parameters are stored as f64 and converted to
/// the element type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// −x
    Neg,
    /// eˣ
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// |x|
    Abs,
    /// sign(x) ∈ {−1, 0, 1}
    Sign,
    /// max(x, 0)
    Relu,
    /// x if x > 0 else slope·x
    LeakyRelu(f64),
    /// 1 / (1 + e⁻ˣ)
    Sigmoid,
    /// tanh x
    Tanh,
    /// ln(1 + eˣ), computed stably as max(x,0) + ln(1 + e^−|x|)
    Softplus,
    /// x·Φ(x) with the tanh approximation (PyTorch's `approximate="tanh"`)
    Gelu,
    /// xᵖ for a constant p
    Powf(f64),
    /// x + c
    AddScalar(f64),
    /// c·x
    MulScalar(f64),
    /// min(max(x, lo), hi)
    Clamp(f64, f64),
    /// 1 where lo ≤ x ≤ hi, else 0 (the derivative mask of clamp)
    InRange(f64, f64),
    /// 1 where x > 0 else 0 (the derivative of relu)
    Step,
}

/// √(2/π), the constant of the tanh approximation of GELU.
const GELU_K: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

/// The scalar function of `op` (the single source of truth for the forward
/// of every unary op; the CUDA kernels mirror these formulas).
#[inline(always)]
pub fn unary_scalar<T: Float>(op: UnaryOp, x: T) -> T {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sign => {
            if x > T::ZERO {
                T::ONE
            } else if x < T::ZERO {
                -T::ONE
            } else {
                T::ZERO
            }
        }
        UnaryOp::Relu => {
            if x > T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
        UnaryOp::LeakyRelu(s) => {
            if x > T::ZERO {
                x
            } else {
                T::from_f64(s) * x
            }
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Tanh => x.tanh_fast(),
        UnaryOp::Softplus => x.max_val(T::ZERO) + (-x.abs()).exp().ln_1p(),
        UnaryOp::Gelu => {
            let half = T::from_f64(0.5);
            let inner = T::from_f64(GELU_K) * (x + T::from_f64(GELU_C) * x * x * x);
            half * x * (T::ONE + inner.tanh_fast())
        }
        UnaryOp::Powf(p) => x.powf(T::from_f64(p)),
        UnaryOp::AddScalar(c) => x + T::from_f64(c),
        UnaryOp::MulScalar(c) => x * T::from_f64(c),
        UnaryOp::Clamp(lo, hi) => x.max_val(T::from_f64(lo)).min_val(T::from_f64(hi)),
        UnaryOp::InRange(lo, hi) => {
            if x >= T::from_f64(lo) && x <= T::from_f64(hi) {
                T::ONE
            } else {
                T::ZERO
            }
        }
        UnaryOp::Step => {
            if x > T::ZERO {
                T::ONE
            } else {
                T::ZERO
            }
        }
    }
}

/// Logistic function, stable for any x and branch-free so it vectorises:
/// with e = e^−|x| ∈ (0, 1], σ(x) = 1/(1 + e) for x ≥ 0 and e/(1 + e) below.
#[inline(always)]
pub fn sigmoid<T: Float>(x: T) -> T {
    let e = (-x.abs()).exp_fast();
    let s = T::ONE / (T::ONE + e);
    if x >= T::ZERO {
        s
    } else {
        e * s
    }
}

/// relu (`slope: None`) or leaky relu in place over f32s with AVX2, the
/// bits of [`unary_scalar`]: `max(x, 0)` is `x > 0 ? x : 0` (NaN and −0
/// give +0), and the leaky one selects `slope·x` where `x > 0` fails.
///
/// The compiler turns the plain in-place loop into a masked store of the
/// lanes that change (`vmaskmovps`), which Zen 3 runs microcoded: 0.72 ns
/// per element where a plain loop takes 0.10.
///
/// # Safety
/// AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn relu_in_place_avx2(xs: &mut [f32], slope: Option<f64>) {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: c holds 8 floats.
        unsafe {
            let x = _mm256_loadu_ps(c.as_ptr());
            let y = match slope {
                None => _mm256_max_ps(x, zero),
                Some(s) => _mm256_blendv_ps(
                    _mm256_mul_ps(_mm256_set1_ps(s as f32), x),
                    x,
                    _mm256_cmp_ps::<_CMP_GT_OQ>(x, zero),
                ),
            };
            _mm256_storeu_ps(c.as_mut_ptr(), y);
        }
    }
    let op = slope.map_or(UnaryOp::Relu, UnaryOp::LeakyRelu);
    chunks
        .into_remainder()
        .iter_mut()
        .for_each(|v| *v = unary_scalar(op, *v));
}

/// A vectorised f32 σ/tanh kernel: `dst[i] = op(src[i])` for `i < n`.
type VmathKernel = unsafe fn(UnaryOp, *const f32, *mut f32, usize);

/// The widest f32 σ/tanh kernel this CPU runs, with its name: AVX-512, else
/// AVX2; `None`: the scalar formulas. Every one gives the same bits.
fn vmath_kernel() -> Option<(&'static str, VmathKernel)> {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::has_avx512() {
            return Some(("AVX-512", vmath_avx512::run));
        }
        if crate::has_avx2() {
            return Some(("AVX2", vmath_avx2::run));
        }
    }
    None
}

/// Which kernel runs the f32 sigmoid and tanh on this CPU (see
/// `transcendental_f32`): "AVX-512", "AVX2" or "scalar". Every one gives
/// the bits of the scalar formulas; benchmarks print the name.
pub fn transcendental_kernel() -> &'static str {
    vmath_kernel().map_or("scalar", |(name, _)| name)
}

/// σ or tanh over f32s (`op` one of those two): the AVX-512 or else the
/// AVX2 kernel when the CPU has one, else [`unary_scalar`] element by
/// element (the same bits every way). `x` and `out` have equal lengths;
/// `out` may be `x` itself (`x = None`: in place).
fn transcendental_f32(op: UnaryOp, x: Option<&[f32]>, out: &mut [f32]) {
    if let Some((_, run)) = vmath_kernel() {
        let src = x.map_or(out.as_ptr(), |x| x.as_ptr());
        // SAFETY: the CPU has the kernel's features (vmath_kernel checked
        // them); src and out hold out.len() floats.
        unsafe { run(op, src, out.as_mut_ptr(), out.len()) };
        return;
    }
    match x {
        Some(x) => out.iter_mut().zip(x).for_each(|(o, &v)| *o = unary_scalar(op, v)),
        None => out.iter_mut().for_each(|o| *o = unary_scalar(op, *o)),
    }
}

/// The f32 logistic function and tanh, four AVX2 vectors at a time.
///
/// The same operations in the same order as [`sigmoid`] and `tanh_fast`
/// over `exp_fast` (every `mul_add` an FMA, every plain `*` and `+` a plain
/// multiply and add, the same selects), so the same bits. The compiler
/// vectorises that scalar code one vector per iteration, and each vector is
/// a chain of about 25 dependent operations (the exp polynomial, the
/// divide, the selects) that the core cannot overlap far enough with the
/// next: sigmoid at 1.12 ns per element on one Zen 3 core. Four independent
/// vectors advanced step by step run at 0.76.
#[cfg(target_arch = "x86_64")]
mod vmath_avx2 {
    use std::arch::x86_64::*;

    const LANES: usize = 4;
    type V4 = [__m256; LANES];

    /// Applies `f` to each of the four vectors (one operation across all of
    /// them, so their chains interleave).
    macro_rules! each {
        (|$i:ident| $e:expr) => {
            [0usize, 1, 2, 3].map(|$i| $e)
        };
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn splat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }

    /// `exp_fast` of four vectors.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn exp4(y: V4) -> V4 {
        let (magic, lo, hi) = (splat(12_582_912.0), splat(-103.972_08), splat(88.722_83));
        let xc = each!(|i| _mm256_min_ps(_mm256_max_ps(y[i], lo), hi));
        let t = each!(|i| _mm256_fmadd_ps(xc[i], splat(std::f32::consts::LOG2_E), magic));
        let n = each!(|i| _mm256_sub_ps(t[i], magic));
        let r = each!(|i| _mm256_fmadd_ps(n[i], splat(-0.693_359_4), xc[i]));
        let r = each!(|i| _mm256_fmadd_ps(n[i], splat(2.121_944_4e-4), r[i]));
        let r2 = each!(|i| _mm256_mul_ps(r[i], r[i]));
        let p = each!(|i| _mm256_fmadd_ps(splat(1.987_569_1e-4), r[i], splat(1.398_2e-3)));
        let p = each!(|i| _mm256_fmadd_ps(p[i], r[i], splat(8.333_452e-3)));
        let p = each!(|i| _mm256_fmadd_ps(p[i], r[i], splat(4.166_579_6e-2)));
        let p = each!(|i| _mm256_fmadd_ps(p[i], r[i], splat(1.666_666_5e-1)));
        let p = each!(|i| _mm256_fmadd_ps(p[i], r[i], splat(0.5)));
        let e = each!(|i| _mm256_add_ps(_mm256_fmadd_ps(p[i], r2[i], r[i]), splat(1.0)));
        let k = each!(|i| _mm256_sub_epi32(_mm256_castps_si256(t[i]), _mm256_castps_si256(magic)));
        let k1 = each!(|i| _mm256_srai_epi32::<1>(k[i]));
        let k2 = each!(|i| _mm256_sub_epi32(k[i], k1[i]));
        let bias = _mm256_set1_epi32(127);
        let s1 = each!(|i| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k1[i], bias))));
        let s2 = each!(|i| _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(k2[i], bias))));
        let ev = each!(|i| _mm256_mul_ps(_mm256_mul_ps(e[i], s1[i]), s2[i]));
        // Below −103.97: 0; NaN: the input.
        let ev = each!(|i| _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(y[i], lo), ev[i]));
        each!(|i| _mm256_blendv_ps(ev[i], y[i], _mm256_cmp_ps::<_CMP_UNORD_Q>(y[i], y[i])))
    }

    /// σ of four vectors: e = exp(−|x|), s = 1/(1 + e); s for x ≥ 0, e·s below.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn sigmoid4(x: V4) -> V4 {
        let e = exp4(each!(|i| _mm256_or_ps(x[i], splat(-0.0))));
        let s = each!(|i| _mm256_div_ps(splat(1.0), _mm256_add_ps(splat(1.0), e[i])));
        let below = each!(|i| _mm256_mul_ps(e[i], s[i]));
        each!(|i| _mm256_blendv_ps(below[i], s[i], _mm256_cmp_ps::<_CMP_GE_OQ>(x[i], _mm256_setzero_ps())))
    }

    /// tanh of four vectors: the odd polynomial below |x| = 0.625, else
    /// 1 − 2/(e^{2|x|} + 1) with x's sign; NaN gives the input.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn tanh4(x: V4) -> V4 {
        let sign = splat(-0.0);
        let ax = each!(|i| _mm256_andnot_ps(sign, x[i]));
        let z = each!(|i| _mm256_mul_ps(x[i], x[i]));
        let q = each!(|i| _mm256_add_ps(_mm256_mul_ps(splat(-5.704_988_7e-3), z[i]), splat(2.063_909e-2)));
        let q = each!(|i| _mm256_sub_ps(_mm256_mul_ps(q[i], z[i]), splat(5.373_971_6e-2)));
        let q = each!(|i| _mm256_add_ps(_mm256_mul_ps(q[i], z[i]), splat(1.333_144_2e-1)));
        let q = each!(|i| _mm256_sub_ps(_mm256_mul_ps(q[i], z[i]), splat(3.333_328e-1)));
        let q = each!(|i| _mm256_add_ps(splat(1.0), _mm256_mul_ps(q[i], z[i])));
        let poly = each!(|i| _mm256_mul_ps(x[i], q[i]));
        let t = exp4(each!(|i| _mm256_min_ps(_mm256_mul_ps(splat(2.0), ax[i]), splat(88.0))));
        let d = each!(|i| _mm256_div_ps(splat(2.0), _mm256_add_ps(t[i], splat(1.0))));
        let big = each!(|i| _mm256_sub_ps(splat(1.0), d[i]));
        let signed = each!(|i| _mm256_or_ps(_mm256_andnot_ps(sign, big[i]), _mm256_and_ps(sign, x[i])));
        let r = each!(|i| _mm256_blendv_ps(signed[i], x[i], _mm256_cmp_ps::<_CMP_UNORD_Q>(x[i], x[i])));
        each!(|i| _mm256_blendv_ps(r[i], poly[i], _mm256_cmp_ps::<_CMP_LT_OQ>(ax[i], splat(0.625))))
    }

    /// dst[i] = op(src[i]) for i < n, `op` tanh or else σ (`src` may equal
    /// `dst`).
    ///
    /// # Safety
    /// AVX2 and FMA; `src` and `dst` hold `n` floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run(op: super::UnaryOp, src: *const f32, dst: *mut f32, n: usize) {
        let tanh = op == super::UnaryOp::Tanh;
        const STEP: usize = 8 * LANES;
        let mut i = 0;
        while i + STEP <= n {
            // SAFETY: i + 32 ≤ n.
            unsafe {
                let v = each!(|j| _mm256_loadu_ps(src.add(i + 8 * j)));
                let y = if tanh { tanh4(v) } else { sigmoid4(v) };
                for (j, yj) in y.iter().enumerate() {
                    _mm256_storeu_ps(dst.add(i + 8 * j), *yj);
                }
            }
            i += STEP;
        }
        for j in i..n {
            // SAFETY: j < n.
            unsafe { *dst.add(j) = super::unary_scalar(op, *src.add(j)) };
        }
    }
}

/// [`vmath_avx2`] with AVX-512: the same operations in the same order on
/// 16 lanes, so the same bits, with mask registers where AVX2 blends and 32
/// registers for the four interleaved vectors (AVX2's spill). On Zen 4,
/// which splits each 512-bit operation in two, sigmoid and tanh still run
/// 1.5x faster than with AVX2 (fewer instructions, no spills). Where 512-bit
/// operations run at full width, each also does twice AVX2's work (not
/// measured yet).
#[cfg(target_arch = "x86_64")]
mod vmath_avx512 {
    use std::arch::x86_64::*;

    const LANES: usize = 4;
    type V = [__m512; LANES];

    macro_rules! each {
        (|$i:ident| $e:expr) => {
            [0usize, 1, 2, 3].map(|$i| $e)
        };
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn splat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn or(a: __m512, b: __m512) -> __m512 {
        _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn and(a: __m512, b: __m512) -> __m512 {
        _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
    }

    /// `!a & b`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn andnot(a: __m512, b: __m512) -> __m512 {
        _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn exp(y: V) -> V {
        let (magic, lo, hi) = (splat(12_582_912.0), splat(-103.972_08), splat(88.722_83));
        let xc = each!(|i| _mm512_min_ps(_mm512_max_ps(y[i], lo), hi));
        let t = each!(|i| _mm512_fmadd_ps(xc[i], splat(std::f32::consts::LOG2_E), magic));
        let n = each!(|i| _mm512_sub_ps(t[i], magic));
        let r = each!(|i| _mm512_fmadd_ps(n[i], splat(-0.693_359_4), xc[i]));
        let r = each!(|i| _mm512_fmadd_ps(n[i], splat(2.121_944_4e-4), r[i]));
        let r2 = each!(|i| _mm512_mul_ps(r[i], r[i]));
        let p = each!(|i| _mm512_fmadd_ps(splat(1.987_569_1e-4), r[i], splat(1.398_2e-3)));
        let p = each!(|i| _mm512_fmadd_ps(p[i], r[i], splat(8.333_452e-3)));
        let p = each!(|i| _mm512_fmadd_ps(p[i], r[i], splat(4.166_579_6e-2)));
        let p = each!(|i| _mm512_fmadd_ps(p[i], r[i], splat(1.666_666_5e-1)));
        let p = each!(|i| _mm512_fmadd_ps(p[i], r[i], splat(0.5)));
        let e = each!(|i| _mm512_add_ps(_mm512_fmadd_ps(p[i], r2[i], r[i]), splat(1.0)));
        let k = each!(|i| _mm512_sub_epi32(_mm512_castps_si512(t[i]), _mm512_castps_si512(magic)));
        let k1 = each!(|i| _mm512_srai_epi32::<1>(k[i]));
        let k2 = each!(|i| _mm512_sub_epi32(k[i], k1[i]));
        let bias = _mm512_set1_epi32(127);
        let s1 = each!(|i| _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(k1[i], bias))));
        let s2 = each!(|i| _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(k2[i], bias))));
        let ev = each!(|i| _mm512_mul_ps(_mm512_mul_ps(e[i], s1[i]), s2[i]));
        let ev =
            each!(|i| _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(y[i], lo), ev[i], _mm512_setzero_ps()));
        each!(|i| _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(y[i], y[i]), ev[i], y[i]))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn sigmoid(x: V) -> V {
        let e = exp(each!(|i| or(x[i], splat(-0.0))));
        let s = each!(|i| _mm512_div_ps(splat(1.0), _mm512_add_ps(splat(1.0), e[i])));
        let below = each!(|i| _mm512_mul_ps(e[i], s[i]));
        each!(|i| _mm512_mask_blend_ps(
            _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x[i], _mm512_setzero_ps()),
            below[i],
            s[i]
        ))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn tanh(x: V) -> V {
        let sign = splat(-0.0);
        let ax = each!(|i| andnot(sign, x[i]));
        let z = each!(|i| _mm512_mul_ps(x[i], x[i]));
        let q = each!(|i| _mm512_add_ps(_mm512_mul_ps(splat(-5.704_988_7e-3), z[i]), splat(2.063_909e-2)));
        let q = each!(|i| _mm512_sub_ps(_mm512_mul_ps(q[i], z[i]), splat(5.373_971_6e-2)));
        let q = each!(|i| _mm512_add_ps(_mm512_mul_ps(q[i], z[i]), splat(1.333_144_2e-1)));
        let q = each!(|i| _mm512_sub_ps(_mm512_mul_ps(q[i], z[i]), splat(3.333_328e-1)));
        let q = each!(|i| _mm512_add_ps(splat(1.0), _mm512_mul_ps(q[i], z[i])));
        let poly = each!(|i| _mm512_mul_ps(x[i], q[i]));
        let t = exp(each!(|i| _mm512_min_ps(_mm512_mul_ps(splat(2.0), ax[i]), splat(88.0))));
        let d = each!(|i| _mm512_div_ps(splat(2.0), _mm512_add_ps(t[i], splat(1.0))));
        let big = each!(|i| _mm512_sub_ps(splat(1.0), d[i]));
        let signed = each!(|i| or(andnot(sign, big[i]), and(sign, x[i])));
        let r = each!(|i| _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x[i], x[i]), signed[i], x[i]));
        each!(|i| _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(ax[i], splat(0.625)), r[i], poly[i]))
    }

    /// dst[i] = op(src[i]) for i < n, `op` tanh or else σ (`src` may equal
    /// `dst`).
    ///
    /// # Safety
    /// AVX-512F; `src` and `dst` hold `n` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run(op: super::UnaryOp, src: *const f32, dst: *mut f32, n: usize) {
        let tanh_op = op == super::UnaryOp::Tanh;
        const STEP: usize = 16 * LANES;
        let mut i = 0;
        // SAFETY (closure): callers pass 64 readable floats at `from` and
        // 64 writable ones at `to`.
        let block = |from: *const f32, to: *mut f32| unsafe {
            let v = each!(|j| _mm512_loadu_ps(from.add(16 * j)));
            let y = if tanh_op { tanh(v) } else { sigmoid(v) };
            for (j, yj) in y.iter().enumerate() {
                _mm512_storeu_ps(to.add(16 * j), *yj);
            }
        };
        while i + STEP <= n {
            // SAFETY: i + STEP ≤ n.
            unsafe { block(src.add(i), dst.add(i)) };
            i += STEP;
        }
        if i < n {
            // The tail (a GEMM epilogue's row may end in one) through a
            // zero-padded block: each lane is computed on its own, so the
            // same bits as whole blocks.
            let mut buf = [0.0f32; STEP];
            // SAFETY: n - i < STEP floats from each side.
            unsafe {
                std::ptr::copy_nonoverlapping(src.add(i), buf.as_mut_ptr(), n - i);
                block(buf.as_ptr(), buf.as_mut_ptr());
                std::ptr::copy_nonoverlapping(buf.as_ptr(), dst.add(i), n - i);
            }
        }
    }
}

/// Runs `f` over matching chunks of `x` and `out`, in parallel when large.
#[inline]
fn for_chunks<T: Float>(x: &[T], out: &mut [T], f: impl Fn(&[T], &mut [T]) + Sync) {
    assert_eq!(x.len(), out.len(), "elementwise length mismatch");
    if out.len() < PAR_THRESHOLD {
        simd(
            #[inline(always)]
            || f(x, out),
        );
    } else {
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, i)| {
            simd(
                #[inline(always)]
                || f(i, o),
            )
        });
    }
}

/// `out[i] = op(x[i])` over contiguous slices of equal length.
pub fn unary<T: Float>(op: UnaryOp, x: &[T], out: &mut [T]) {
    // One monomorphic loop per op keeps the match out of the inner loop.
    macro_rules! run {
        ($op:expr) => {
            for_chunks(x, out, |xs, os| {
                for (o, &v) in os.iter_mut().zip(xs) {
                    *o = unary_scalar($op, v);
                }
            })
        };
    }
    if let (UnaryOp::Sigmoid | UnaryOp::Tanh, Some(x), Some(out)) = (op, crate::as_f32(x), crate::as_f32_mut(out)) {
        return for_chunks(x, out, |xs, os| transcendental_f32(op, Some(xs), os));
    }
    match op {
        UnaryOp::Relu => run!(UnaryOp::Relu),
        UnaryOp::Sigmoid => run!(UnaryOp::Sigmoid),
        UnaryOp::Tanh => run!(UnaryOp::Tanh),
        UnaryOp::Neg => run!(UnaryOp::Neg),
        UnaryOp::Exp => run!(UnaryOp::Exp),
        UnaryOp::LeakyRelu(s) => run!(UnaryOp::LeakyRelu(s)),
        UnaryOp::MulScalar(c) => run!(UnaryOp::MulScalar(c)),
        UnaryOp::AddScalar(c) => run!(UnaryOp::AddScalar(c)),
        UnaryOp::Step => run!(UnaryOp::Step),
        other => run!(other),
    }
}

/// `x[i] = op(x[i])` in place on the caller's thread (the same formulas and
/// bits as [`unary`]): the activation a fused linear layer applies to each
/// finished row of its output while it is in cache.
pub fn unary_in_place<T: Float>(op: UnaryOp, xs: &mut [T]) {
    macro_rules! run {
        ($op:expr) => {
            simd(
                #[inline(always)]
                || xs.iter_mut().for_each(|v| *v = unary_scalar($op, *v)),
            )
        };
    }
    if let Some(xs) = crate::as_f32_mut(xs) {
        #[cfg(target_arch = "x86_64")]
        if let (UnaryOp::Relu | UnaryOp::LeakyRelu(_), true) = (op, crate::has_avx2()) {
            let slope = match op {
                UnaryOp::LeakyRelu(s) => Some(s),
                _ => None,
            };
            // SAFETY: AVX2 + FMA checked.
            return unsafe { relu_in_place_avx2(xs, slope) };
        }
        if let UnaryOp::Sigmoid | UnaryOp::Tanh = op {
            return transcendental_f32(op, None, xs);
        }
    }
    match op {
        UnaryOp::Relu => run!(UnaryOp::Relu),
        UnaryOp::Sigmoid => run!(UnaryOp::Sigmoid),
        UnaryOp::Tanh => run!(UnaryOp::Tanh),
        UnaryOp::LeakyRelu(s) => run!(UnaryOp::LeakyRelu(s)),
        other => run!(other),
    }
}

/// Fused activation backward: `dx[i] = dy[i]·f'(·)` where f' is computed from
/// the saved value `s` (the input for relu/leaky relu, the output for sigmoid
/// and tanh). Only the ops listed have a fused backward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActBackward {
    /// s = x: `dy·[x > 0]`
    Relu,
    /// s = x: dy·(x > 0 ? 1 : slope)
    LeakyRelu(f64),
    /// s = y: dy·y·(1−y)
    Sigmoid,
    /// s = y: dy·(1−y²)
    Tanh,
}

/// Evaluates `$body` with `$f` bound to `op`'s rule `f(s, dy)` as a plain
/// closure over `$t`: one monomorphic copy of the caller's loop per rule,
/// which the AVX2 wrapper can vectorise (a `match` inside the loop would not).
macro_rules! with_rule {
    ($op:expr, $t:ty, |$f:ident| $body:expr) => {
        match $op {
            ActBackward::Relu => {
                let $f = |v: $t, gy: $t| if v > <$t>::ZERO { gy } else { <$t>::ZERO };
                $body
            }
            ActBackward::LeakyRelu(slope) => {
                let slope = <$t>::from_f64(slope);
                let $f = move |v: $t, gy: $t| if v > <$t>::ZERO { gy } else { gy * slope };
                $body
            }
            ActBackward::Sigmoid => {
                let $f = |y: $t, gy: $t| gy * y * (<$t>::ONE - y);
                $body
            }
            ActBackward::Tanh => {
                let $f = |y: $t, gy: $t| gy * (<$t>::ONE - y * y);
                $body
            }
        }
    };
}

/// `dx = dy·f'(s)` for an `[rows, cols]` tensor, and `colsum[i] = Σⱼ dx[j, i]`
/// (a linear layer's bias gradient) in the same pass, so dx is not read
/// again. Each column is summed from 0 in row order, as
/// [`crate::reduce::reduce_dim`] sums it: the same bits as `act_backward`
/// followed by that reduction, at any thread count (threads split columns).
pub fn act_backward_colsum<T: Float>(
    op: ActBackward,
    saved: &[T],
    dy: &[T],
    dx: &mut [T],
    cols: usize,
    colsum: &mut [T],
) {
    assert_eq!(saved.len(), dy.len());
    assert_eq!(dy.len(), dx.len());
    assert_eq!(colsum.len(), cols);
    assert!(
        cols > 0 && dx.len().is_multiple_of(cols),
        "act_backward_colsum: not whole rows"
    );
    fn run<T: Float>(
        f: impl Fn(T, T) -> T + Copy + Sync + Send,
        saved: &[T],
        dy: &[T],
        dx: &mut [T],
        cols: usize,
        colsum: &mut [T],
    ) {
        let rows = dx.len() / cols;
        let dxp = crate::SharedMut(dx.as_mut_ptr());
        // Columns c0..c0 + sums.len(), all rows: each row's run of the
        // block is computed, stored and added into the block's sums.
        let block = |c0: usize, sums: &mut [T]| {
            let w = sums.len();
            sums.fill(T::ZERO);
            for j in 0..rows {
                let at = j * cols + c0;
                // SAFETY: blocks cover disjoint columns, so this row run
                // of dx is written by this call only; it lies inside dx.
                let d = unsafe { std::slice::from_raw_parts_mut(dxp.get().add(at), w) };
                let (s, g) = (&saved[at..at + w], &dy[at..at + w]);
                for (((d, sum), &v), &gy) in d.iter_mut().zip(sums.iter_mut()).zip(s).zip(g) {
                    let x = f(v, gy);
                    *d = x;
                    *sum += x;
                }
            }
        };
        // Whole rows on one thread: each operand streams through in one
        // contiguous run (column blocks of 2048 measured 1.3x slower at
        // [100, 12288], their 8 KB runs 48 KB apart). On the pool, a
        // couple of wide column blocks per thread.
        if dx.len() < PAR_THRESHOLD || rayon::current_num_threads() == 1 {
            simd(
                #[inline(always)]
                || block(0, colsum),
            );
        } else {
            let width = cols.div_ceil(2 * rayon::current_num_threads()).next_multiple_of(256);
            colsum.par_chunks_mut(width).enumerate().for_each(|(b, sums)| {
                simd(
                    #[inline(always)]
                    || block(b * width, sums),
                )
            });
        }
    }
    with_rule!(op, T, |f| run(f, saved, dy, dx, cols, colsum))
}

/// dx = dy·f'(s) for the fused activation backward rules.
pub fn act_backward<T: Float>(op: ActBackward, saved: &[T], dy: &[T], dx: &mut [T]) {
    assert_eq!(saved.len(), dy.len());
    assert_eq!(dy.len(), dx.len());
    // One monomorphic loop per op (a capture-free closure `f(s, dy)`), so
    // the AVX2 wrapper gets a loop it can vectorise.
    fn run<T: Float>(f: impl Fn(T, T) -> T + Copy + Sync, saved: &[T], dy: &[T], dx: &mut [T]) {
        let body = |start: usize, dxs: &mut [T]| {
            let s = &saved[start..start + dxs.len()];
            let g = &dy[start..start + dxs.len()];
            for ((d, &v), &gy) in dxs.iter_mut().zip(s).zip(g) {
                *d = f(v, gy);
            }
        };
        if dx.len() < PAR_THRESHOLD {
            simd(
                #[inline(always)]
                || body(0, dx),
            );
        } else {
            dx.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| {
                simd(
                    #[inline(always)]
                    || body(i * CHUNK, c),
                )
            });
        }
    }
    with_rule!(op, T, |f| run(f, saved, dy, dx))
}

/// Binary elementwise functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// max(a, b)
    Maximum,
    /// 1 where a == b else 0 (no gradient; used for max's backward mask)
    Eq,
    /// 1 where a > b else 0
    Gt,
}

/// The scalar function of a binary op.
#[inline(always)]
pub fn binary_scalar<T: Float>(op: BinaryOp, a: T, b: T) -> T {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Maximum => a.max_val(b),
        BinaryOp::Eq => {
            if a == b {
                T::ONE
            } else {
                T::ZERO
            }
        }
        BinaryOp::Gt => {
            if a > b {
                T::ONE
            } else {
                T::ZERO
            }
        }
    }
}

/// A strided operand of a broadcasting binary op: `data[offset + Σ idx·stride]`.
/// Broadcast dimensions have stride 0.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a, T> {
    /// The underlying storage.
    pub data: &'a [T],
    /// Element offset of index (0, …, 0).
    pub offset: usize,
    /// One stride per output dimension (0 where broadcast).
    pub strides: &'a [isize],
}

impl<'a, T> Strided<'a, T> {
    /// A whole contiguous 1-D slice.
    pub fn vector(data: &'a [T]) -> Self {
        Strided {
            data,
            offset: 0,
            strides: &[1],
        }
    }

    fn is_contiguous(&self, shape: &[usize]) -> bool {
        let mut expect = 1isize;
        for (&d, &s) in shape.iter().zip(self.strides).rev() {
            if d != 1 && s != expect {
                return false;
            }
            expect *= d as isize;
        }
        true
    }
    fn is_scalar(&self) -> bool {
        self.strides.iter().all(|&s| s == 0)
    }
}

/// out = op(a, b) over the output `shape` (row-major, contiguous), reading
/// `a` and `b` through their (broadcast) strides.
pub fn binary<T: Float>(op: BinaryOp, a: Strided<T>, b: Strided<T>, shape: &[usize], out: &mut [T]) {
    let n: usize = shape.iter().product();
    assert_eq!(out.len(), n);
    assert_eq!(a.strides.len(), shape.len());
    assert_eq!(b.strides.len(), shape.len());
    if n == 0 {
        return;
    }
    // Each arm passes a capture-free closure, so the op is part of the loop's
    // type and the loop vectorises even inside the AVX2 wrapper (a captured
    // `op` value would be matched per element).
    macro_rules! run {
        (BinaryOp::$v:ident) => {
            binary_impl(|u, v| binary_scalar(BinaryOp::$v, u, v), a, b, shape, out)
        };
        ($op:expr) => {
            binary_impl(|u, v| binary_scalar($op, u, v), a, b, shape, out)
        };
    }
    match op {
        BinaryOp::Add => run!(BinaryOp::Add),
        BinaryOp::Sub => run!(BinaryOp::Sub),
        BinaryOp::Mul => run!(BinaryOp::Mul),
        BinaryOp::Div => run!(BinaryOp::Div),
        other => run!(other),
    }
}

#[inline(always)]
fn binary_impl<T: Float>(
    op: impl Fn(T, T) -> T + Copy + Sync,
    a: Strided<T>,
    b: Strided<T>,
    shape: &[usize],
    out: &mut [T],
) {
    let n = out.len();
    let a_contig = a.is_contiguous(shape);
    let b_contig = b.is_contiguous(shape);
    // Fast paths: both contiguous, or one side a scalar.
    if a_contig && b_contig {
        let (xa, xb) = (&a.data[a.offset..a.offset + n], &b.data[b.offset..b.offset + n]);
        let body = |start: usize, o: &mut [T]| {
            let len = o.len();
            for ((r, &u), &v) in o.iter_mut().zip(&xa[start..start + len]).zip(&xb[start..start + len]) {
                *r = op(u, v);
            }
        };
        return par_fill(out, body);
    }
    if a_contig && b.is_scalar() {
        let (xa, v) = (&a.data[a.offset..a.offset + n], b.data[b.offset]);
        return par_fill(out, |start, o: &mut [T]| {
            let len = o.len();
            for (r, &u) in o.iter_mut().zip(&xa[start..start + len]) {
                *r = op(u, v);
            }
        });
    }
    if b_contig && a.is_scalar() {
        let (u, xb) = (a.data[a.offset], &b.data[b.offset..b.offset + n]);
        return par_fill(out, |start, o: &mut [T]| {
            let len = o.len();
            for (r, &v) in o.iter_mut().zip(&xb[start..start + len]) {
                *r = op(u, v);
            }
        });
    }
    // General case: walk rows of the last dimension; each row is strided.
    let last = *shape.last().unwrap();
    let rows = n / last;
    let row_body = |row: usize, o: &mut [T]| {
        // Decompose the row index into the leading dimensions.
        let (mut ia, mut ib) = (a.offset as isize, b.offset as isize);
        let mut rem = row;
        for d in (0..shape.len() - 1).rev() {
            let i = rem % shape[d];
            rem /= shape[d];
            ia += i as isize * a.strides[d];
            ib += i as isize * b.strides[d];
        }
        let (sa, sb) = (a.strides[shape.len() - 1], b.strides[shape.len() - 1]);
        for (j, r) in o.iter_mut().enumerate() {
            let u = a.data[(ia + j as isize * sa) as usize];
            let v = b.data[(ib + j as isize * sb) as usize];
            *r = op(u, v);
        }
    };
    if n < PAR_THRESHOLD {
        for (row, o) in out.chunks_mut(last).enumerate() {
            row_body(row, o);
        }
    } else {
        out.par_chunks_mut(last)
            .enumerate()
            .with_min_len((CHUNK / last).max(1))
            .for_each(|(row, o)| row_body(row, o));
    }
    let _ = rows;
}

/// Fills `out` by calling `body(start, chunk)` on fixed chunks, in parallel above the threshold.
#[inline(always)]
fn par_fill<T: Float>(out: &mut [T], body: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() < PAR_THRESHOLD {
        simd(
            #[inline(always)]
            || body(0, out),
        );
    } else {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| {
            simd(
                #[inline(always)]
                || body(i * CHUNK, c),
            )
        });
    }
}

/// Copies a strided view into a contiguous buffer of `shape` (used by
/// `Tensor::contiguous`).
pub fn copy_strided<T: Float>(src: Strided<T>, shape: &[usize], out: &mut [T]) {
    let n: usize = shape.iter().product();
    assert_eq!(out.len(), n);
    if n == 0 {
        return;
    }
    if shape.is_empty() {
        out[0] = src.data[src.offset];
        return;
    }
    if src.is_contiguous(shape) {
        out.copy_from_slice(&src.data[src.offset..src.offset + n]);
        return;
    }
    let last = *shape.last().unwrap();
    let body = |row: usize, o: &mut [T]| {
        let mut base = src.offset as isize;
        let mut rem = row;
        for d in (0..shape.len() - 1).rev() {
            let i = rem % shape[d];
            rem /= shape[d];
            base += i as isize * src.strides[d];
        }
        let s = src.strides[shape.len() - 1];
        for (j, r) in o.iter_mut().enumerate() {
            *r = src.data[(base + j as isize * s) as usize];
        }
    };
    if n < PAR_THRESHOLD {
        for (row, o) in out.chunks_mut(last).enumerate() {
            body(row, o);
        }
    } else {
        out.par_chunks_mut(last)
            .enumerate()
            .with_min_len((CHUNK / last).max(1))
            .for_each(|(row, o)| body(row, o));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused activation backward with column sums gives the bits of
    /// `act_backward` followed by `reduce_dim`'s column sums, for every rule,
    /// both float types, one and several column blocks, below and above the
    /// parallel threshold, and on 1 or 3 threads.
    #[test]
    fn act_backward_colsum_matches_the_two_passes_bit_for_bit() {
        fn case<T: Float + std::fmt::Debug>(rows: usize, cols: usize) {
            let val = |i: usize, m: usize| T::from_f64(((i * m) % 1999) as f64 / 1999.0 - 0.3);
            let n = rows * cols;
            let saved: Vec<T> = (0..n).map(|i| val(i, 7919)).collect();
            let dy: Vec<T> = (0..n).map(|i| val(i, 104_729)).collect();
            for op in [
                ActBackward::Relu,
                ActBackward::LeakyRelu(0.2),
                ActBackward::Sigmoid,
                ActBackward::Tanh,
            ] {
                let mut want = vec![T::ZERO; n];
                act_backward(op, &saved, &dy, &mut want);
                let mut want_sums = vec![T::ZERO; cols];
                crate::reduce::reduce_dim(crate::reduce::ReduceOp::Sum, &want, 1, rows, cols, &mut want_sums);
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    // Leftovers in the outputs must not leak into them.
                    let (mut dx, mut sums) = (vec![T::ONE; n], vec![T::ONE; cols]);
                    pool.install(|| act_backward_colsum(op, &saved, &dy, &mut dx, cols, &mut sums));
                    let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&dx), bits(&want), "{op:?} {rows}x{cols} dx, {threads} threads");
                    assert_eq!(
                        bits(&sums),
                        bits(&want_sums),
                        "{op:?} {rows}x{cols} sums, {threads} threads"
                    );
                }
            }
        }
        for (rows, cols) in [(1, 1), (5, 3), (37, 70), (3, 5000), (100, 12288 + 5)] {
            case::<f32>(rows, cols);
            case::<f64>(rows, cols);
        }
    }

    #[test]
    fn fast_tanh_is_within_a_few_ulp_of_the_exact_one() {
        // Every 2^-12 over [-12, 12], plus the tails, the signed zeros and NaN.
        let mut worst = 0.0f64;
        for i in -49_152..=49_152 {
            let x = i as f32 / 4096.0;
            let (got, want) = (x.tanh_fast() as f64, (x as f64).tanh());
            let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE) as f64 * f32::EPSILON as f64;
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 4.0, "worst error {worst} ulp");
        for x in [
            1e-30f32,
            -1e-30,
            1e-6,
            -3e-4,
            50.0,
            -50.0,
            1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            let want = (x as f64).tanh();
            assert!(
                (x.tanh_fast() as f64 - want).abs() <= 2.0 * f32::EPSILON as f64 * want.abs().max(1e-38),
                "{x}"
            );
        }
        assert!(f32::NAN.tanh_fast().is_nan());
        assert_eq!(0.0f32.tanh_fast().to_bits(), 0.0f32.to_bits());
        assert_eq!((-0.0f32).tanh_fast().to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn vectorised_loops_round_exactly_like_the_scalar_formulas() {
        // The AVX2 builds of the loops (taken on CPUs that have it) must give
        // the bits of the one-element formulas: no FMA contraction, no
        // reassociation. Large enough for the parallel path too.
        let n = PAR_THRESHOLD + 1000;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2001) as f32 / 250.0 - 4.0).collect();
        let y: Vec<f32> = (0..n).map(|i| ((i * 104_729) % 1999) as f32 / 1000.0 - 1.0).collect();
        let mut out = vec![0.0f32; n];
        for op in [
            UnaryOp::Sigmoid,
            UnaryOp::LeakyRelu(0.2),
            UnaryOp::Relu,
            UnaryOp::MulScalar(0.3),
        ] {
            unary(op, &x, &mut out);
            assert!(
                out.iter()
                    .zip(&x)
                    .all(|(o, &v)| o.to_bits() == unary_scalar(op, v).to_bits()),
                "{op:?}"
            );
        }
        for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Div] {
            binary(op, Strided::vector(&x), Strided::vector(&y), &[n], &mut out);
            let want = x.iter().zip(&y).map(|(&u, &v)| binary_scalar(op, u, v));
            assert!(out.iter().zip(want).all(|(o, w)| o.to_bits() == w.to_bits()), "{op:?}");
        }
        act_backward(ActBackward::Sigmoid, &x, &y, &mut out);
        let want = x.iter().zip(&y).map(|(&s, &g)| g * s * (1.0 - s));
        assert!(out.iter().zip(want).all(|(o, w)| o.to_bits() == w.to_bits()));
    }

    #[test]
    fn broadcast_row_matches_naive_loop() {
        let a: Vec<f64> = (0..6).map(|v| v as f64).collect(); // [2,3]
        let b = [10.0f64, 20.0, 30.0]; // [3] broadcast over rows
        let mut out = [0.0; 6];
        binary(
            BinaryOp::Add,
            Strided {
                data: &a,
                offset: 0,
                strides: &[3, 1],
            },
            Strided {
                data: &b,
                offset: 0,
                strides: &[0, 1],
            },
            &[2, 3],
            &mut out,
        );
        assert_eq!(out, [10.0, 21.0, 32.0, 13.0, 24.0, 35.0]);
    }

    #[test]
    fn copy_strided_transposes() {
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // [2,3]
        let mut out = [0.0f32; 6];
        copy_strided(
            Strided {
                data: &a,
                offset: 0,
                strides: &[1, 3],
            },
            &[3, 2],
            &mut out,
        );
        assert_eq!(out, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn the_f32_sigmoid_and_tanh_kernels_give_the_bits_of_the_scalar_formulas() {
        // A spread of bit patterns over the whole f32 line (both signs,
        // subnormals, huge values) plus the edges of exp's range and of
        // tanh's polynomial, then the kernels' block paths and their tails,
        // out of place and in place.
        let mut xs: Vec<f32> = vec![
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -1e-45,
            88.722_83,
            -88.722_83,
            103.972_08,
            -103.972_08,
            -103.972_09,
            103.972_07,
            87.5,
            -87.5,
            0.625,
            -0.625,
            0.624_999_94,
            44.0,
            -44.0,
        ];
        let mut state = 0x9e37_79b9u32;
        xs.extend((0..200_003).map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f32::from_bits(state)
        }));
        xs.extend((-4000..4000).map(|i| i as f32 * 0.03));
        // Every kernel this CPU can run, called directly (the dispatch takes
        // only the widest), and the dispatch.
        let mut kernels: Vec<(&str, VmathKernel)> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if crate::has_avx2() {
                kernels.push(("avx2", vmath_avx2::run));
            }
            if crate::has_avx512() {
                kernels.push(("avx512", vmath_avx512::run));
            }
        }
        for op in [UnaryOp::Sigmoid, UnaryOp::Tanh] {
            let want: Vec<u32> = xs.iter().map(|&x| unary_scalar(op, x).to_bits()).collect();
            let check = |name: &str, out: &[f32], from: usize| {
                for (i, (&w, o)) in want[from..].iter().zip(out).enumerate() {
                    let x = xs[from + i];
                    assert_eq!(o.to_bits(), w, "{name} {op:?}, x = {x:e} ({:#x})", x.to_bits());
                }
            };
            for &(name, kernel) in &kernels {
                let mut out = vec![0.0f32; xs.len()];
                // SAFETY: the CPU has the kernel's features; both hold xs.len().
                unsafe { kernel(op, xs.as_ptr(), out.as_mut_ptr(), xs.len()) };
                check(name, &out, 0);
                let mut inplace = xs.clone();
                // SAFETY: as above, in place.
                unsafe { kernel(op, inplace.as_ptr(), inplace.as_mut_ptr(), inplace.len()) };
                check(name, &inplace, 0);
                // Every tail length, from an unaligned start.
                for len in 1..=70 {
                    let mut out = vec![0.0f32; len];
                    // SAFETY: as above; 3 + len ≤ xs.len().
                    unsafe { kernel(op, xs[3..].as_ptr(), out.as_mut_ptr(), len) };
                    check(name, &out, 3);
                }
            }
            let mut out = vec![0.0f32; xs.len()];
            transcendental_f32(op, Some(&xs), &mut out);
            check("dispatch", &out, 0);
            let mut inplace = xs.clone();
            transcendental_f32(op, None, &mut inplace);
            check("dispatch in place", &inplace, 0);
            // Through the public entry points.
            let mut via_unary = vec![0.0f32; xs.len()];
            unary(op, &xs, &mut via_unary);
            let mut via_in_place = xs.clone();
            unary_in_place(op, &mut via_in_place);
            assert!(via_unary.iter().zip(&want).all(|(o, &w)| o.to_bits() == w), "{op:?}");
            assert!(via_in_place.iter().zip(&want).all(|(o, &w)| o.to_bits() == w), "{op:?}");
        }
    }

    #[test]
    fn the_named_transcendental_kernel_follows_the_cpu() {
        #[cfg(target_arch = "x86_64")]
        let want = if is_x86_feature_detected!("avx512f") {
            "AVX-512"
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            "AVX2"
        } else {
            "scalar"
        };
        #[cfg(not(target_arch = "x86_64"))]
        let want = "scalar";
        assert_eq!(transcendental_kernel(), want);
    }

    #[test]
    fn in_place_activations_give_the_bits_of_the_scalar_ops() {
        // f32 (relu and leaky relu take the AVX2 path: whole vectors, then a
        // tail) and f64, with the signed zeros, infinities and NaN.
        let mut xs: Vec<f32> = (0..77).map(|i| (i as f32 - 40.0) * 0.37).collect();
        xs.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, -1e-45]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for op in [UnaryOp::Relu, UnaryOp::LeakyRelu(0.2), UnaryOp::Tanh, UnaryOp::Sigmoid] {
            let mut got = xs.clone();
            unary_in_place(op, &mut got);
            let want: Vec<f32> = xs.iter().map(|&x| unary_scalar(op, x)).collect();
            assert_eq!(bits(&got), bits(&want), "{op:?}");
            let x64: Vec<f64> = xs.iter().map(|&x| x as f64).collect();
            let mut got = x64.clone();
            unary_in_place(op, &mut got);
            let want: Vec<f64> = x64.iter().map(|&x| unary_scalar(op, x)).collect();
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{op:?} f64"
            );
        }
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(-1000.0f32), 0.0);
        assert_eq!(sigmoid(1000.0f32), 1.0);
        assert!((sigmoid(0.0f64) - 0.5).abs() < 1e-15);
    }
}

#[cfg(test)]
mod exp_tests {
    use crate::Float;

    #[test]
    fn fast_exp_matches_f64_exp_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            // (normal range only: subnormal results carry fewer bits)
            let got = x.exp_fast() as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "max relative error {worst:e}");
        assert_eq!(0.0f32.exp_fast(), 1.0);
        assert!(f32::NAN.exp_fast().is_nan());
        assert_eq!((-1000.0f32).exp_fast(), 0.0);
        let tiny = (-100.0f32).exp_fast() as f64;
        assert!(
            (tiny / (-100.0f64).exp() - 1.0).abs() < 0.05,
            "subnormal e^-100 = {tiny:e}"
        );
    }
}
