//! kiln-cpu: the CPU kernels of kiln, as plain functions over slices.
//!
//! Nothing here knows about tensors or autograd: every kernel takes its
//! shapes and strides in the signature, allocates nothing, and runs on the
//! caller's thread unless the work is large enough to pay for rayon.
//! Reductions split work into fixed-size chunks combined in a fixed order, so
//! their results are bit-identical whatever the thread count.
//!
//! ```
//! let a = [1.0f32, 2.0, 3.0, 4.0]; // [2, 2] row-major
//! let b = [1.0f32, 0.0, 0.0, 1.0];
//! let mut c = [0.0f32; 4];
//! kiln_cpu::matmul::gemm(2, 2, 2, 1.0, &a, [2, 1], &b, [2, 1], 0.0, &mut c, [2, 1]);
//! assert_eq!(c, a);
//! ```

pub mod elementwise;
pub mod gemm;
pub mod matmul;
pub mod optim;
pub mod probe;
pub mod reduce;
pub mod warm;

/// The floating-point element types kiln computes in: f32 everywhere, f64 on
/// the CPU for gradcheck and reference tests.
pub trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    /// eˣ in a branch-free form the compiler can vectorise (f32: a Cephes-style
    /// polynomial in fused multiply-adds, relative error < 3e-7; f64: `exp`).
    fn exp_fast(self) -> Self;
    /// tanh x in a branch-free form the compiler can vectorise (f32: an odd
    /// polynomial below |x| = 0.625, 1 − 2/(e^{2|x|} + 1) above; f64: `tanh`).
    fn tanh_fast(self) -> Self;
    fn ln(self) -> Self;
    fn sqrt(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
    fn powf(self, e: Self) -> Self;
    fn ln_1p(self) -> Self;
    fn max_val(self, o: Self) -> Self;
    fn min_val(self, o: Self) -> Self;
    fn is_finite(self) -> bool;
    fn neg_infinity() -> Self;
}

macro_rules! impl_float {
    ($t:ty) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn exp_fast(self) -> Self {
                exp_fast_impl(self)
            }
            #[inline(always)]
            fn tanh_fast(self) -> Self {
                self.tanh_fast_impl()
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn max_val(self, o: Self) -> Self {
                if self >= o || self.is_nan() {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn min_val(self, o: Self) -> Self {
                if self <= o || self.is_nan() {
                    self
                } else {
                    o
                }
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn neg_infinity() -> Self {
                <$t>::NEG_INFINITY
            }
        }
    };
}
impl_float!(f32);
impl_float!(f64);

trait ExpFast {
    fn exp_fast_impl(self) -> Self;
    fn tanh_fast_impl(self) -> Self;
}

#[inline(always)]
fn exp_fast_impl<T: ExpFast>(x: T) -> T {
    x.exp_fast_impl()
}

impl ExpFast for f64 {
    #[inline(always)]
    fn exp_fast_impl(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn tanh_fast_impl(self) -> Self {
        self.tanh()
    }
}

impl ExpFast for f32 {
    /// eˣ = 2ⁿ·eʳ with n = round(x·log₂e) and r = x − n·ln2 ∈ [−ln2/2, ln2/2]
    /// (ln2 split in two parts for exactness), eʳ by a degree-6 polynomial,
    /// 2ⁿ built in the exponent bits as 2^⌊n/2⌋·2^⌈n/2⌉ so that results in
    /// the subnormal range (x down to −103.9) come out right. Rounding uses
    /// the 1.5·2²³ trick instead of `floor`.
    ///
    /// The reduction and the Horner steps are fused multiply-adds
    /// (`mul_add`, one rounding each): in the AVX2 build and on aarch64 each
    /// is one instruction, and the chain of dependent operations is half as
    /// long, which is what limits a vectorised exp (sigmoid over 1.2 M
    /// floats: 2.0 → 1.5 ms on one Zen 3 core). `mul_add` rounds the same
    /// everywhere, so results still do not depend on the CPU; only an x86
    /// CPU without FMA pays for a software fma.
    #[inline(always)]
    fn exp_fast_impl(self) -> Self {
        const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
        let x = self.clamp(-103.972_08, 88.722_83);
        let t = x.mul_add(std::f32::consts::LOG2_E, MAGIC);
        let n = t - MAGIC;
        let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
        let r2 = r * r;
        let p = 1.987_569_1e-4f32
            .mul_add(r, 1.398_2e-3)
            .mul_add(r, 8.333_452e-3)
            .mul_add(r, 4.166_579_6e-2)
            .mul_add(r, 1.666_666_5e-1)
            .mul_add(r, 0.5);
        let e = p.mul_add(r2, r) + 1.0;
        let k = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
        let (k1, k2) = (k >> 1, k - (k >> 1));
        let s1 = f32::from_bits(((k1 + 127) << 23) as u32);
        let s2 = f32::from_bits(((k2 + 127) << 23) as u32);
        if self.is_nan() {
            self
        } else if self < -103.972_08 {
            0.0 // below the smallest subnormal
        } else {
            e * s1 * s2
        }
    }

    /// Near 0, 1 − 2/(e^{2|x|} + 1) cancels, so |x| < 0.625 uses the odd
    /// minimax polynomial x + x³·P(x²) (the classic single-precision one);
    /// above, the exp form, whose error is then a few ulp. Both are computed
    /// and one is selected, so the loop stays branch-free. |x| ≥ 44 gives
    /// e^{2|x|} = +inf (clamped in exp_fast) and so exactly ±1.
    #[inline(always)]
    fn tanh_fast_impl(self) -> Self {
        let ax = self.abs();
        let z = self * self;
        // x·(1 + z·P(z)) rather than x + x·z·P(z): keeps the sign of −0.
        let poly = self
            * (1.0
                + ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z
                    - 3.333_328e-1)
                    * z);
        let t = (2.0 * ax).min(88.0).exp_fast_impl();
        let big = 1.0 - 2.0 / (t + 1.0);
        if ax < 0.625 {
            poly
        } else if self.is_nan() {
            self
        } else {
            big.copysign(self)
        }
    }
}

/// `s` as f32s when T is f32.
pub(crate) fn as_f32<T: Float>(s: &[T]) -> Option<&[f32]> {
    // SAFETY: T is f32 (checked by TypeId): an identity reinterpretation.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr().cast(), s.len()) })
}

/// `s` as f32s when T is f32.
pub(crate) fn as_f32_mut<T: Float>(s: &mut [T]) -> Option<&mut [f32]> {
    // SAFETY: as for `as_f32`.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) })
}

/// `(input, output)` slice pairs as f32 pairs when T is f32 (no copy).
pub(crate) fn as_f32_pairs<'s, 'a, 'b, T: Float>(
    s: &'s mut [(&'a [T], &'b mut [T])],
) -> Option<&'s mut [(&'a [f32], &'b mut [f32])]> {
    // SAFETY: T is f32 (checked by TypeId), so the element type is the same
    // type: an identity reinterpretation of the slice.
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast(), s.len()) })
}

/// Runs `f` compiled for AVX2+FMA when the CPU has them, else as is.
///
/// The elementwise and optimizer loops are written as plain Rust that the
/// compiler vectorises; built for baseline x86-64 it can only use 4-wide SSE.
/// Called through this wrapper, the (inlined) loop is vectorised again 8
/// wide. Rust never contracts `a·b + c` into an FMA on its own (the loops
/// that want one say `mul_add`, which rounds once in both builds), so both
/// versions round identically: results do not depend on the CPU.
///
/// Mark the closure `#[inline(always)]`: otherwise LLVM may keep it out of
/// line and compile it on its own for baseline x86-64, which `perf` shows as
/// SSE registers in a `{{closure}}` symbol. It did so for the max and the
/// column sums in the `kiln` binary (max at 3 GB/s from L3, column sums at
/// half a copy's speed) while it inlined the elementwise and Adam loops.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { with_avx2(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// Whether the CPU has AVX-512F (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

/// A raw output pointer that may cross to rayon workers, for kernels whose
/// workers each write a disjoint part of one buffer (the GEMM driver's
/// tiles, a column block of `act_backward_colsum`).
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
// SAFETY: every user hands each worker a disjoint set of elements, so no two
// threads touch the same one.
unsafe impl<T> Send for SharedMut<T> {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The pointer. Closures call this instead of reading `.0`, so they
    /// capture the Send/Sync wrapper rather than the bare pointer field.
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Below this many elements a kernel runs on the caller's thread: spawning
/// rayon tasks costs more than the work.
pub const PAR_THRESHOLD: usize = 1 << 18;

/// Fixed chunk length of parallel kernels and reductions. Reductions sum each
/// chunk sequentially and then the chunk sums in order, so the result does not
/// depend on how many threads ran the chunks.
pub const CHUNK: usize = 1 << 14;
