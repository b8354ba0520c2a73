//! kiln's own SGEMM, `C = alpha·A·B + beta·C` with arbitrary strides, as a
//! lesson in numbered variants from naive to fast, plus the dispatch the
//! engine uses.
//!
//! - v1 [`Variant::V1Naive`]: the triple loop of the definition.
//! - v2 [`Variant::V2Blocked`]: loop order i-p-j (a vectorisable axpy over
//!   rows) with k/n cache blocking.
//! - v3 [`Variant::V3PackedScalar`]: BLIS-style packing of A and B into
//!   contiguous micro-panels with MC/KC/NC cache blocking and a portable 4×8
//!   register-blocked micro-kernel.
//! - v4 [`Variant::V4Avx2`]: the same driver with a 6×16 AVX2+FMA
//!   micro-kernel (its k loop in inline assembly, fixed registers), plus a
//!   twin that reads a long row-major A in place instead of packing it.
//! - v5 [`Variant::V5Avx512`]: a 12×32 AVX-512 micro-kernel, packed with
//!   v4's vectorised packers. The engine takes it where 512-bit FMAs run at
//!   full width, v4 elsewhere ([`best_packed`]).
//! - v6 [`Variant::V6Skinny`]: products with a dimension below 8 (the first
//!   and last layers of small MLPs) without padding or packing the large
//!   operand; v4 for everything else.
//!
//! v3–v5 split large products over rayon's current pool by output tiles only,
//! so their results are bit-identical for any thread count. v4/v5 are compiled
//! with `#[target_feature]` and chosen at run time with
//! `is_x86_feature_detected!`; other CPUs fall back to v3 or matrixmultiply.
//! Shape letters: C is m×n, A is m×k, B is k×n; strides are
//! `[row_stride, col_stride]` in elements.

mod naive;
mod packed;
pub use packed::Epilogue;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
pub use avx512::{blocking_in_use as v5_blocking, BLOCKING_ENV as V5_BLOCKING_ENV};
#[cfg(target_arch = "x86_64")]
mod skinny;

use std::fmt;

/// One SGEMM implementation that can be run and benchmarked on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// v1: naive triple loop.
    V1Naive,
    /// v2: loop-reordered (i-p-j) and cache-blocked, no packing.
    V2Blocked,
    /// v3: packed A/B panels, MC/KC/NC blocking, portable 4×8 micro-kernel.
    V3PackedScalar,
    /// v4: packed, 6×16 AVX2+FMA micro-kernel (x86-64 with AVX2 and FMA).
    V4Avx2,
    /// v5: packed, 12×32 AVX-512 micro-kernel (x86-64 with AVX-512F, and
    /// AVX2+FMA for its packers).
    V5Avx512,
    /// v6: skinny products (m, n or k below 8) with AVX2+FMA, v4 otherwise.
    V6Skinny,
    /// The `matrixmultiply` crate: the reference every variant is compared with.
    Matrixmultiply,
}

impl Variant {
    /// Every variant in lesson order, the reference last.
    pub fn all() -> &'static [Variant] {
        &[
            Variant::V1Naive,
            Variant::V2Blocked,
            Variant::V3PackedScalar,
            Variant::V4Avx2,
            Variant::V5Avx512,
            Variant::V6Skinny,
            Variant::Matrixmultiply,
        ]
    }

    /// Kernel name, as printed by benchmarks (`sgemm_v4_avx2_6x16`, …).
    pub fn name(self) -> &'static str {
        match self {
            Variant::V1Naive => "sgemm_v1_naive",
            Variant::V2Blocked => "sgemm_v2_blocked",
            Variant::V3PackedScalar => "sgemm_v3_packed_scalar_4x8",
            Variant::V4Avx2 => "sgemm_v4_avx2_6x16",
            Variant::V5Avx512 => "sgemm_v5_avx512_12x32",
            Variant::V6Skinny => "sgemm_v6_skinny_avx2",
            Variant::Matrixmultiply => "matrixmultiply",
        }
    }

    /// Looks a variant up by [`Variant::name`] or by its short tag
    /// (`v1` … `v5`, `mm`).
    pub fn from_name(name: &str) -> Option<Variant> {
        let short = ["v1", "v2", "v3", "v4", "v5", "v6", "mm"];
        Variant::all()
            .iter()
            .zip(short)
            .find(|(v, s)| v.name() == name || *s == name)
            .map(|(v, _)| *v)
    }

    /// Whether this CPU can run the variant (AVX2+FMA for v4, AVX-512F and
    /// AVX2+FMA for v5).
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Variant::V4Avx2 | Variant::V6Skinny => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Variant::V5Avx512 => {
                // v5 packs with v4's AVX2 packers.
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Variant::V4Avx2 | Variant::V5Avx512 | Variant::V6Skinny => false,
            _ => true,
        }
    }

    /// The variants this CPU can run, in lesson order.
    pub fn available() -> Vec<Variant> {
        Variant::all().iter().copied().filter(|v| v.is_available()).collect()
    }

    /// Whether the variant splits large products over rayon threads.
    pub fn is_parallel(self) -> bool {
        matches!(
            self,
            Variant::V3PackedScalar | Variant::V4Avx2 | Variant::V5Avx512 | Variant::V6Skinny
        )
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fastest packed kernel this CPU has: v5 where 512-bit FMAs run at
/// full width, else v4, else v3.
pub fn best_packed() -> Variant {
    static BEST: std::sync::OnceLock<Variant> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| {
        if Variant::V5Avx512.is_available() && !avx512_is_split() {
            Variant::V5Avx512
        } else if Variant::V4Avx2.is_available() {
            Variant::V4Avx2
        } else {
            Variant::V3PackedScalar
        }
    })
}

/// Whether this CPU executes each 512-bit FMA as two 256-bit halves: AMD's
/// family 19h (Zen 4; its Zen 3 members have no AVX-512). There v5 has no
/// more FMA throughput than v4, and v4's hand-scheduled loop is the faster
/// one: measured on an AMD EPYC Zen 4 (1 thread, docs/benchmarks-log.md), v4
/// ran 1.03× v5 at 1024³ and 1.00–1.07× on the GAN's layer shapes (with
/// v5's vectorised packers; 1.0–1.17× before them). On an Intel Xeon
/// (Sapphire Rapids) v5 ran 1.8× v4 at 1024³. The rule reads the
/// CPU's identity, not a timing, so the choice (and with it every bit of
/// the results) is the same on every run on one machine.
fn avx512_is_split() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        let id = __cpuid(0);
        let vendor = [id.ebx, id.edx, id.ecx].map(u32::to_le_bytes);
        vendor == [*b"Auth", *b"enti", *b"cAMD"] && x86_family(__cpuid(1).eax) == 0x19
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The x86 family number from CPUID leaf 1's EAX: the base family, plus the
/// extended family when the base is 0xF.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn x86_family(eax: u32) -> u32 {
    let base = (eax >> 8) & 0xf;
    if base == 0xf {
        base + ((eax >> 20) & 0xff)
    } else {
        base
    }
}

/// The variant [`sgemm_dispatch`] runs for an m×k·k×n product.
///
/// The choice depends on the shape only, never on the thread count, so the
/// engine's results are bit-identical however many threads run them.
/// The packed kernel is v5 or v4, as [`best_packed`] decides for this CPU.
/// Measured on an AMD EPYC (Zen 3, AVX2, 1 thread; see docs/benchmarks-log.md):
/// v4 is 1.0–1.2× matrixmultiply on the GAN's layer shapes and 1.1–1.2× at
/// 1024³, at parity with MKL's `torch.mm` on the seed layers; any dimension
/// below 8 goes to v6,
/// 1.5–6× matrixmultiply there; tiny products (< 4096 multiply-adds) to
/// matrixmultiply. CPUs without AVX2 keep matrixmultiply for everything but
/// skinny shapes (its SSE kernels beat the portable v3).
pub fn choose_variant(m: usize, n: usize, k: usize) -> Variant {
    let best = best_packed();
    if k < SMALL_DIM || n < SMALL_DIM || m < SMALL_DIM {
        // A 16-wide tile would be mostly padding: v6 where the CPU has
        // AVX2, else the blocked loop, which needs no packing.
        if Variant::V6Skinny.is_available() {
            Variant::V6Skinny
        } else {
            Variant::V2Blocked
        }
    } else if best == Variant::V3PackedScalar || m.saturating_mul(n).saturating_mul(k) < PACKED_MIN_MNK {
        Variant::Matrixmultiply
    } else {
        best
    }
}

/// Products with fewer multiply-adds than this go to matrixmultiply.
pub const PACKED_MIN_MNK: usize = 1 << 12;
/// Products with any dimension shorter than this take v6 (or v2 without
/// AVX2): a 6×16 tile would be mostly padding.
pub const SMALL_DIM: usize = skinny_dim();

const fn skinny_dim() -> usize {
    #[cfg(target_arch = "x86_64")]
    return skinny::SKINNY;
    #[cfg(not(target_arch = "x86_64"))]
    return 8;
}

/// SGEMM entry used by [`crate::matmul::gemm`] for f32: runs the variant
/// [`choose_variant`] picks for the shape.
///
/// # Safety
/// The pointers must cover the extents implied by the sizes and strides, and
/// C must not alias A or B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_dispatch(
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
    let variant = choose_variant(m, n, k);
    // SAFETY: forwarded from the caller's contract; the chosen variant is
    // available on this CPU.
    unsafe { sgemm_variant_raw(variant, m, n, k, alpha, a, a_strides, b, b_strides, beta, c, c_strides) }
}

/// Runs one SGEMM variant on slices: `C = alpha·A·B + beta·C` (with
/// `beta == 0` C is overwritten, NaNs in it are not propagated).
///
/// # Panics
/// If a strided operand reaches past its slice, a stride is negative, or the
/// variant is not available on this CPU ([`Variant::is_available`]).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_variant(
    variant: Variant,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    a_strides: [isize; 2],
    b: &[f32],
    b_strides: [isize; 2],
    beta: f32,
    c: &mut [f32],
    c_strides: [isize; 2],
) {
    check_extent("A", a.len(), m, k, a_strides);
    check_extent("B", b.len(), k, n, b_strides);
    check_extent("C", c.len(), m, n, c_strides);
    // SAFETY: extents checked above; `&mut c` cannot alias `a` or `b`.
    unsafe {
        sgemm_variant_raw(
            variant,
            m,
            n,
            k,
            alpha,
            a.as_ptr(),
            a_strides,
            b.as_ptr(),
            b_strides,
            beta,
            c.as_mut_ptr(),
            c_strides,
        )
    }
}

/// Raw-pointer form of [`sgemm_variant`].
///
/// # Safety
/// The pointers must cover the extents implied by the sizes and strides, C
/// must not alias A or B, and the variant must be available on this CPU.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_variant_raw(
    variant: Variant,
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
    assert!(variant.is_available(), "{variant} is not supported by this CPU");
    if m == 0 || n == 0 {
        return;
    }
    if variant == Variant::Matrixmultiply {
        // SAFETY: forwarded from the caller's contract.
        return unsafe {
            crate::matmul::sgemm_matrixmultiply(m, n, k, alpha, a, a_strides, b, b_strides, beta, c, c_strides)
        };
    }
    if k == 0 || alpha == 0.0 {
        // SAFETY: C covers m×n (caller's contract).
        return unsafe { scale_c(m, n, beta, c, c_strides) };
    }
    if c_strides[1] != 1 && c_strides[0] == 1 {
        // Column-major C: compute Cᵀ = Bᵀ·Aᵀ instead, so the kernels see
        // contiguous rows of C. Transposing a view is swapping its strides.
        let t = |[r, c]: [isize; 2]| [c, r];
        // SAFETY: the same memory, described as the transposed problem.
        return unsafe {
            sgemm_variant_raw(
                variant,
                n,
                m,
                k,
                alpha,
                b,
                t(b_strides),
                a,
                t(a_strides),
                beta,
                c,
                t(c_strides),
            )
        };
    }
    // SAFETY (all arms): forwarded from the caller's contract; m, n, k > 0.
    unsafe {
        match variant {
            Variant::V1Naive => naive::sgemm_v1_naive(m, n, k, alpha, a, a_strides, b, b_strides, beta, c, c_strides),
            Variant::V2Blocked => {
                naive::sgemm_v2_blocked(m, n, k, alpha, a, a_strides, b, b_strides, beta, c, c_strides)
            }
            Variant::V3PackedScalar | Variant::V4Avx2 | Variant::V5Avx512 => run_packed(
                variant,
                m,
                n,
                k,
                alpha,
                &[packed::Batch { a, c }],
                a_strides,
                b,
                b_strides,
                beta,
                c_strides,
                packed::Epilogue::NONE,
            ),
            #[cfg(target_arch = "x86_64")]
            Variant::V6Skinny => {
                skinny::sgemm_v6_skinny(m, n, k, alpha, a, a_strides, b, b_strides, beta, c, c_strides)
            }
            _ => unreachable!("unavailable variants were rejected above"),
        }
    }
}

/// The packed variants (v3, v4, v5) through the shared driver, with an
/// epilogue around the tiles.
///
/// # Safety
/// As for [`sgemm_variant_raw`], with m, n, k > 0; `variant` is one of the
/// three; with an epilogue, C has unit column stride and a bias n values.
#[allow(clippy::too_many_arguments)]
unsafe fn run_packed(
    variant: Variant,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    batches: &[packed::Batch],
    a_strides: [isize; 2],
    b: *const f32,
    b_strides: [isize; 2],
    beta: f32,
    c_strides: [isize; 2],
    epi: Epilogue,
) {
    // SAFETY (all arms): forwarded from the caller's contract.
    unsafe {
        match variant {
            Variant::V3PackedScalar => packed::sgemm_packed_batches::<{ packed::V3_MR }, { packed::V3_NR }>(
                packed::kernel_v3_scalar_4x8,
                packed::V3_BLOCKING,
                packed::Packers::portable::<{ packed::V3_MR }, { packed::V3_NR }>(),
                m,
                n,
                k,
                alpha,
                batches,
                a_strides,
                b,
                b_strides,
                beta,
                c_strides,
                epi,
            ),
            #[cfg(target_arch = "x86_64")]
            Variant::V4Avx2 => packed::sgemm_packed_batches::<{ avx2::MR }, { avx2::NR }>(
                avx2::kernel_v4_avx2_6x16,
                avx2::BLOCKING,
                avx2::PACKERS,
                m,
                n,
                k,
                alpha,
                batches,
                a_strides,
                b,
                b_strides,
                beta,
                c_strides,
                epi,
            ),
            #[cfg(target_arch = "x86_64")]
            Variant::V5Avx512 => packed::sgemm_packed_batches::<{ avx512::MR }, { avx512::NR }>(
                avx512::kernel_v5_avx512_12x32,
                avx512::blocking(),
                avx512::PACKERS,
                m,
                n,
                k,
                alpha,
                batches,
                a_strides,
                b,
                b_strides,
                beta,
                c_strides,
                epi,
            ),
            _ => unreachable!("run_packed is only called for the packed variants"),
        }
    }
}

/// A linear layer's forward in one pass over C: `C = A·B + bias` (bias a
/// row of n values broadcast down the rows; zeros without one), then `act`
/// applied to every element, for a contiguous row-major C of m×n. The
/// packed variants write the bias into each row panel of C just before its
/// first tiles and apply `act` right after its last, while those lines are
/// in L1; other shapes prefill C, multiply, then apply `act`. Either way the
/// bits are those of prefill + `sgemm(beta = 1)` + a separate `act` pass.
///
/// # Panics
/// As for [`sgemm_variant`], and if the bias is not n long or C is shorter than m·n.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_fused(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_strides: [isize; 2],
    b: &[f32],
    b_strides: [isize; 2],
    epi: Epilogue,
    c: &mut [f32],
) {
    sgemm_fused_batches(m, n, k, &mut [(a, c)], a_strides, b, b_strides, epi);
}

/// [`sgemm_fused`] for several products that share B, each `(A_i, C_i)` of
/// the same sizes and strides (a linear layer's weight applied to several
/// batches): `C_i = A_i·B + bias`, then `act`. Where the packed driver runs
/// its small-batch order (at most `small_m` rows, or a short row-major A on
/// one thread), each B group is packed once for every batch and their row
/// panels run against it while it is in L2, instead of B streaming from
/// memory once per batch. Every `C_i` gets the bits [`sgemm_fused`] gives it
/// alone.
///
/// # Panics
/// As for [`sgemm_fused`], for every batch.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_fused_batches(
    m: usize,
    n: usize,
    k: usize,
    batches: &mut [(&[f32], &mut [f32])],
    a_strides: [isize; 2],
    b: &[f32],
    b_strides: [isize; 2],
    epi: Epilogue,
) {
    for (a, c) in batches.iter() {
        check_extent("A", a.len(), m, k, a_strides);
        check_extent("C", c.len(), m, n, [n as isize, 1]);
    }
    check_extent("B", b.len(), k, n, b_strides);
    assert!(epi.bias.is_none_or(|b| b.len() == n), "bias of the wrong length");
    if m == 0 || n == 0 {
        return;
    }
    let variant = choose_variant(m, n, k);
    if k > 0 && matches!(variant, Variant::V3PackedScalar | Variant::V4Avx2 | Variant::V5Avx512) {
        for chunk in batches.chunks_mut(packed::MAX_BATCHES) {
            let mut ptrs = [packed::Batch::NONE; packed::MAX_BATCHES];
            for (p, (a, c)) in ptrs.iter_mut().zip(chunk.iter_mut()) {
                *p = packed::Batch {
                    a: a.as_ptr(),
                    c: c.as_mut_ptr(),
                };
            }
            // SAFETY: extents checked above; unit column stride; k > 0; the
            // batches' C are distinct `&mut` slices, so none aliases another
            // batch's A or C.
            unsafe {
                run_packed(
                    variant,
                    m,
                    n,
                    k,
                    1.0,
                    &ptrs[..chunk.len()],
                    a_strides,
                    b.as_ptr(),
                    b_strides,
                    0.0,
                    [n as isize, 1],
                    epi,
                )
            };
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if k > 0 && k < skinny::SKINNY && variant == Variant::V6Skinny {
        for (a, c) in batches.iter_mut() {
            // SAFETY: extents checked above, AVX2 checked by the variant's
            // availability; C is m×n contiguous and a distinct `&mut`.
            unsafe {
                skinny::linear_small_k(
                    m,
                    n,
                    k,
                    a.as_ptr(),
                    a_strides,
                    b.as_ptr(),
                    b_strides,
                    c.as_mut_ptr(),
                    epi,
                )
            };
        }
        return;
    }
    for (a, c) in batches.iter_mut() {
        crate::matmul::linear_unfused(
            m,
            n,
            k,
            a,
            a_strides,
            b,
            b_strides,
            epi.bias,
            epi.act.map(|f| f as &dyn Fn(&mut [f32])),
            c,
        );
    }
}

/// `C = beta·C` (zeros when `beta == 0`, so NaNs in C do not survive).
///
/// # Safety
/// C must cover m×n elements with the given strides.
unsafe fn scale_c(m: usize, n: usize, beta: f32, c: *mut f32, [crs, ccs]: [isize; 2]) {
    if beta == 1.0 {
        return;
    }
    for i in 0..m as isize {
        for j in 0..n as isize {
            // SAFETY: (i, j) is inside C.
            unsafe {
                let cij = c.offset(i * crs + j * ccs);
                *cij = if beta == 0.0 { 0.0 } else { beta * *cij };
            }
        }
    }
}

/// `*c = alpha·acc + beta·*c`, not reading `*c` when `beta == 0`.
///
/// # Safety
/// `c` must be valid for reads and writes.
#[inline(always)]
unsafe fn store_scaled(c: *mut f32, acc: f32, alpha: f32, beta: f32) {
    // SAFETY: caller's contract.
    unsafe {
        *c = if beta == 0.0 {
            alpha * acc
        } else {
            alpha * acc + beta * *c
        }
    };
}

/// Panics if a strided `rows×cols` operand reaches past `len`.
fn check_extent(name: &str, len: usize, rows: usize, cols: usize, strides: [isize; 2]) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(strides[0] >= 0 && strides[1] >= 0, "sgemm: negative strides for {name}");
    let last = (rows - 1) * strides[0] as usize + (cols - 1) * strides[1] as usize;
    assert!(
        last < len,
        "sgemm: {name} [{rows}x{cols}] strides {strides:?} need {} elements, slice has {len}",
        last + 1
    );
}

#[cfg(test)]
mod tests;
