//! v6: skinny products — one of m, n, k below [`SKINNY`] — with AVX2+FMA.
//!
//! A 6×16 packed tile (v4) is the right shape when all three dimensions are
//! large. The first and last layers of a small MLP are not: `x[256×2]·Wᵀ`
//! has k = 2, `h[256×128]·Wᵀ[128×1]` has n = 1, and the weight gradient of
//! a 2-wide layer has m or n = 2. There a 16-wide tile is mostly zero
//! padding, and packing the large operand costs as much as the arithmetic.
//! v6 never pads and packs only the small operand:
//!
//! - **small k** (`C[i,:] = Σ_p A[i,p]·B[p,:]`): B (k×n, small) is copied
//!   row-major, then each row of C is a sum of k scaled rows of B, computed
//!   32 columns at a time in registers and stored once.
//! - **small n, A rows contiguous** (`x·Wᵀ` with an out-width of 1 or 2):
//!   every C element is a dot product of a row of A with a column of B, both
//!   read with unit stride (B's n columns are copied contiguously first);
//!   4×2 or 8×1 blocks of dot products keep 8 independent FMA chains busy,
//!   and one horizontal sum per element finishes them.
//! - **small n, A columns contiguous** (a transposed A, `dyᵀ·x`): vectorise
//!   over rows instead, 16 rows × n columns of C in registers, one broadcast
//!   of `B[p][j]` per column per step.
//! - **small m**: the transposed problem `Cᵀ = Bᵀ·Aᵀ` has a small n.
//!
//! Anything else (no dimension below [`SKINNY`]) runs v4. Every product is
//! computed by one thread in a fixed order, so results never depend on the
//! thread count.

use super::packed::{with_scratch, Epilogue};
use super::store_scaled;
use std::arch::x86_64::*;

/// Dimensions below this are "skinny" and take v6's paths.
pub(crate) const SKINNY: usize = 8;

/// v6 entry: picks the path for the shape (see the module docs).
///
/// # Safety
/// The CPU must support AVX2 and FMA; the pointers must cover the extents
/// implied by the sizes and strides; C must not alias A or B; m, n, k > 0.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm_v6_skinny(
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
    let t = |[r, c]: [isize; 2]| [c, r];
    // SAFETY (all arms): forwarded from the caller's contract; the
    // transposed problem describes the same memory with swapped strides.
    unsafe {
        if k < SKINNY {
            small_k(
                m,
                n,
                k,
                alpha,
                a,
                a_strides,
                b,
                b_strides,
                beta,
                c,
                c_strides,
                Epilogue::NONE,
            )
        } else if n < SKINNY {
            small_n(m, n, k, alpha, a, a_strides, b, b_strides, beta, c, c_strides)
        } else if m < SKINNY {
            small_n(n, m, k, alpha, b, t(b_strides), a, t(a_strides), beta, c, t(c_strides))
        } else {
            super::packed::sgemm_packed_batches::<{ super::avx2::MR }, { super::avx2::NR }>(
                super::avx2::kernel_v4_avx2_6x16,
                super::avx2::BLOCKING,
                super::avx2::PACKERS,
                m,
                n,
                k,
                alpha,
                &[super::packed::Batch { a, c }],
                a_strides,
                b,
                b_strides,
                beta,
                c_strides,
                super::packed::Epilogue::NONE,
            )
        }
    }
}

/// Copies the r×c operand at `x` (strides `[rs, cs]`) into `out` row-major
/// (`out[i·c + j] = x[i][j]`).
///
/// # Safety
/// `x` must cover r×c elements with the given strides; `out.len() == r·c`.
unsafe fn copy_rows(r: usize, c: usize, x: *const f32, [rs, cs]: [isize; 2], out: &mut [f32]) {
    for (i, row) in out.chunks_exact_mut(c).enumerate().take(r) {
        // SAFETY: row i < r is inside x.
        let src = unsafe { x.offset(i as isize * rs) };
        if cs == 1 {
            // SAFETY: unit stride: c contiguous elements.
            row.copy_from_slice(unsafe { std::slice::from_raw_parts(src, c) });
        } else {
            for (j, d) in row.iter_mut().enumerate() {
                // SAFETY: j < c.
                *d = unsafe { *src.offset(j as isize * cs) };
            }
        }
    }
}

/// A linear layer with k < [`SKINNY`] inputs (the first layer of a 2-D
/// toy model) in one pass over C: `C = A·B + bias`, then `act` on each row
/// while it is in L1, with the bits of prefilling C with the bias, adding
/// the product (beta = 1) and applying `act` in a separate pass, which
/// took three passes over C.
///
/// # Safety
/// As for [`sgemm_v6_skinny`] with k < [`SKINNY`]; C is m×n row-major
/// (strides `[n, 1]`); the bias, if any, holds n values.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn linear_small_k(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    a_strides: [isize; 2],
    b: *const f32,
    b_strides: [isize; 2],
    c: *mut f32,
    epi: Epilogue,
) {
    debug_assert!(k < SKINNY && epi.bias.is_none_or(|b| b.len() >= n));
    // SAFETY: forwarded; C's column stride is 1, as the epilogue needs.
    unsafe { small_k(m, n, k, 1.0, a, a_strides, b, b_strides, 0.0, c, [n as isize, 1], epi) }
}

/// Small k: `C[i,:] = alpha·Σ_p A[i,p]·B[p,:] + beta·C[i,:]`, or with an
/// epilogue (C's column stride 1, beta 0) `Σ_p A[i,p]·B[p,:] + bias`, then
/// `act` on the row.
///
/// # Safety
/// AVX2+FMA available; the pointers cover the extents implied by the sizes
/// and strides; C does not alias A or B; m, n, k > 0.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_k(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    [ars, acs]: [isize; 2],
    b: *const f32,
    b_strides: [isize; 2],
    beta: f32,
    c: *mut f32,
    [crs, ccs]: [isize; 2],
    epi: Epilogue,
) {
    // The epilogue writes contiguous rows over C's old values.
    assert!((epi.bias.is_none() && epi.act.is_none()) || (ccs == 1 && beta == 0.0));
    // The bias stands where beta·C would: `v + 1·bias`, the bits of a
    // bias-prefilled C with beta = 1.
    let beta = if epi.bias.is_some() { 1.0 } else { beta };
    with_scratch(k * n, |bt| {
        // SAFETY: B covers k×n (caller's contract).
        unsafe { copy_rows(k, n, b, b_strides, bt) };
        let mut row = vec![0.0f32; if ccs == 1 { 0 } else { n }];
        for i in 0..m {
            let mut ai = [0.0f32; SKINNY];
            for (p, v) in ai.iter_mut().enumerate().take(k) {
                // SAFETY: (i, p) is inside A.
                *v = alpha * unsafe { *a.offset(i as isize * ars + p as isize * acs) };
            }
            // SAFETY: row i of C is inside C.
            let ci = unsafe { c.offset(i as isize * crs) };
            // Contiguous rows of C are written in place; others go through `row`.
            let dst = if ccs == 1 { ci } else { row.as_mut_ptr() };
            let (beta_here, mut j) = (if ccs == 1 { beta } else { 0.0 }, 0);
            // What beta scales: this row of C, or the bias.
            let old = epi.bias.map_or(dst.cast_const(), <[f32]>::as_ptr);
            // SAFETY (both loops): j + width ≤ n keeps every load inside bt's
            // rows and every store inside the destination row.
            unsafe {
                while j + 32 <= n {
                    let mut acc = [_mm256_setzero_ps(); 4];
                    for (p, &av) in ai.iter().enumerate().take(k) {
                        let va = _mm256_set1_ps(av);
                        for (q, s) in acc.iter_mut().enumerate() {
                            *s = _mm256_fmadd_ps(va, _mm256_loadu_ps(bt.as_ptr().add(p * n + j + 8 * q)), *s);
                        }
                    }
                    for (q, s) in acc.iter().enumerate() {
                        store8(dst.add(j + 8 * q), *s, beta_here, old.add(j + 8 * q));
                    }
                    j += 32;
                }
                while j + 8 <= n {
                    let mut s = _mm256_setzero_ps();
                    for (p, &av) in ai.iter().enumerate().take(k) {
                        s = _mm256_fmadd_ps(_mm256_set1_ps(av), _mm256_loadu_ps(bt.as_ptr().add(p * n + j)), s);
                    }
                    store8(dst.add(j), s, beta_here, old.add(j));
                    j += 8;
                }
            }
            for jj in j..n {
                let s: f32 = (0..k).map(|p| ai[p] * bt[p * n + jj]).sum();
                // SAFETY: jj < n (in C's row and in the bias). `s + beta·old`,
                // as `store_scaled` computes it with alpha 1.
                unsafe {
                    *dst.add(jj) = if beta_here == 0.0 {
                        s
                    } else {
                        s + beta_here * *old.add(jj)
                    }
                };
            }
            if let Some(act) = epi.act {
                // SAFETY: row i of C, n contiguous values (ccs == 1).
                act(unsafe { std::slice::from_raw_parts_mut(ci, n) });
            }
            if ccs != 1 {
                for (jj, &v) in row.iter().enumerate() {
                    // SAFETY: (i, jj) is inside C.
                    unsafe { store_scaled(ci.offset(jj as isize * ccs), v, 1.0, beta) };
                }
            }
        }
    });
}

/// `dst[0..8] = v + beta·old[0..8]` (`old` not read when `beta == 0`; it is
/// `dst` itself, or a bias row).
///
/// # Safety
/// `dst` and `old` must be valid for 8 floats; AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store8(dst: *mut f32, v: __m256, beta: f32, old: *const f32) {
    // SAFETY: caller's contract.
    unsafe {
        let r = if beta == 0.0 {
            v
        } else {
            _mm256_fmadd_ps(_mm256_loadu_ps(old), _mm256_set1_ps(beta), v)
        };
        _mm256_storeu_ps(dst, r);
    }
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Small n: C (m×n, n < [`SKINNY`]) as dot products (A rows contiguous) or
/// as column axpys (A columns contiguous). A with neither unit stride is
/// copied row-major first.
///
/// # Safety
/// AVX2+FMA available; the pointers cover the extents implied by the sizes
/// and strides; C does not alias A or B; m, n, k > 0.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_n(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    a_strides: [isize; 2],
    b: *const f32,
    [brs, bcs]: [isize; 2],
    beta: f32,
    c: *mut f32,
    c_strides: [isize; 2],
) {
    let [ars, acs] = a_strides;
    // Bᵀ, n×k row-major: column j of B becomes a contiguous row.
    with_scratch(n * k, |bt| {
        // SAFETY: B covers k×n; its transpose is the same memory.
        unsafe { copy_rows(n, k, b, [bcs, brs], bt) };
        if ars == 1 && acs != 1 {
            // SAFETY: forwarded; bt holds Bᵀ.
            unsafe { small_n_columns(m, n, k, alpha, a, acs, bt, beta, c, c_strides) };
        } else if acs == 1 {
            // SAFETY: forwarded; A rows are contiguous.
            unsafe { small_n_dots(m, n, k, alpha, a, ars, bt, beta, c, c_strides) };
        } else {
            let mut packed = vec![0.0f32; m * k];
            // SAFETY: A covers m×k.
            unsafe {
                copy_rows(m, k, a, a_strides, &mut packed);
                small_n_dots(m, n, k, alpha, packed.as_ptr(), k as isize, bt, beta, c, c_strides)
            };
        }
    });
}

/// Dot-product form: `C[i][j] = alpha·⟨A[i,:], Bᵀ[j,:]⟩ + beta·C[i][j]`
/// with A rows `lda` apart and unit-stride along k.
///
/// # Safety
/// AVX2+FMA available; the pointers cover the extents implied by the sizes
/// and strides; C does not alias A or B; m, n, k > 0.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_n_dots(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    lda: isize,
    bt: &[f32],
    beta: f32,
    c: *mut f32,
    [crs, ccs]: [isize; 2],
) {
    let row = |i: usize| {
        // SAFETY: callers pass i < m.
        unsafe { a.offset(i as isize * lda) }
    };
    let col = |j: usize| bt[j * k..].as_ptr();
    let put = |i: usize, j: usize, s: f32| {
        // SAFETY: (i, j) is inside C.
        unsafe { store_scaled(c.offset(i as isize * crs + j as isize * ccs), s, alpha, beta) };
    };
    let mut i = 0;
    // SAFETY (every block): rows i..i+R < m of A and columns j..j+J < n of
    // Bᵀ hold k floats each.
    unsafe {
        if n == 1 {
            while i + 8 <= m {
                let s = dot_block::<8, 1>(std::array::from_fn(|r| row(i + r)), [col(0)], k);
                (0..8).for_each(|r| put(i + r, 0, s[r][0]));
                i += 8;
            }
        }
        while i + 4 <= m {
            let rows = std::array::from_fn(|r| row(i + r));
            let mut j = 0;
            while j + 2 <= n {
                let s = dot_block::<4, 2>(rows, [col(j), col(j + 1)], k);
                (0..4).for_each(|r| (0..2).for_each(|q| put(i + r, j + q, s[r][q])));
                j += 2;
            }
            if j < n {
                let s = dot_block::<4, 1>(rows, [col(j)], k);
                (0..4).for_each(|r| put(i + r, j, s[r][0]));
            }
            i += 4;
        }
        for i in i..m {
            for j in 0..n {
                put(i, j, dot_block::<1, 1>([row(i)], [col(j)], k)[0][0]);
            }
        }
    }
}

/// R×J dot products of length k between rows `a[r]` and `b[q]` (unit
/// stride), in 8-wide lanes, then a scalar tail.
///
/// # Safety
/// Every pointer must be valid for k floats; AVX2 available.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_block<const R: usize, const J: usize>(a: [*const f32; R], b: [*const f32; J], k: usize) -> [[f32; J]; R] {
    let mut acc = [[_mm256_setzero_ps(); J]; R];
    let mut p = 0;
    // SAFETY: p + 8 ≤ k for every vector load; the tail reads p < k.
    unsafe {
        while p + 8 <= k {
            let bv: [__m256; J] = std::array::from_fn(|q| _mm256_loadu_ps(b[q].add(p)));
            for (r, accr) in acc.iter_mut().enumerate() {
                let av = _mm256_loadu_ps(a[r].add(p));
                for (s, bq) in accr.iter_mut().zip(&bv) {
                    *s = _mm256_fmadd_ps(av, *bq, *s);
                }
            }
            p += 8;
        }
        let mut out = [[0.0f32; J]; R];
        for r in 0..R {
            for q in 0..J {
                let mut s = hsum(acc[r][q]);
                for t in p..k {
                    s += *a[r].add(t) * *b[q].add(t);
                }
                out[r][q] = s;
            }
        }
        out
    }
}

/// Column form for an A whose columns are contiguous (`A[i][p]` at
/// `a + i + p·acs`): 16 rows of C at a time, all n < 8 columns in
/// registers, `acc[j] += A[i.., p] · B[p][j]` for each p.
///
/// # Safety
/// AVX2+FMA available; the pointers cover the extents implied by the sizes
/// and strides; C does not alias A or B; m, n, k > 0.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_n_columns(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    acs: isize,
    bt: &[f32],
    beta: f32,
    c: *mut f32,
    c_strides: [isize; 2],
) {
    macro_rules! run {
        ($($n:literal)*) => {
            match n {
                // SAFETY: forwarded from small_n's contract.
                $($n => unsafe { columns::<$n>(m, k, alpha, a, acs, bt, beta, c, c_strides) },)*
                _ => unreachable!("small n is below SKINNY"),
            }
        };
    }
    run!(1 2 3 4 5 6 7)
}

/// [`small_n_columns`] for a fixed n = N.
///
/// # Safety
/// AVX2+FMA available; the pointers cover the extents implied by the sizes
/// and strides; C does not alias A or B; m, n, k > 0.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn columns<const N: usize>(
    m: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    acs: isize,
    bt: &[f32],
    beta: f32,
    c: *mut f32,
    [crs, ccs]: [isize; 2],
) {
    let mut i = 0;
    let mut tile = [[0.0f32; 16]; N];
    while i + 16 <= m {
        let mut acc = [[_mm256_setzero_ps(); 2]; N];
        for p in 0..k {
            // SAFETY: rows i..i+16 of column p are inside A.
            let (a0, a1) = unsafe {
                let ap = a.offset(p as isize * acs).add(i);
                (_mm256_loadu_ps(ap), _mm256_loadu_ps(ap.add(8)))
            };
            for (j, s) in acc.iter_mut().enumerate() {
                let bv = _mm256_set1_ps(bt[j * k + p]);
                s[0] = _mm256_fmadd_ps(a0, bv, s[0]);
                s[1] = _mm256_fmadd_ps(a1, bv, s[1]);
            }
        }
        for (j, s) in acc.iter().enumerate() {
            if crs == 1 {
                // Column j of C is contiguous (the transposed small-m problem).
                let va = _mm256_set1_ps(alpha);
                // SAFETY: C[i..i+16][j] are 16 consecutive floats inside C.
                unsafe {
                    let cp = c.offset(j as isize * ccs).add(i);
                    store8(cp, _mm256_mul_ps(s[0], va), beta, cp);
                    store8(cp.add(8), _mm256_mul_ps(s[1], va), beta, cp.add(8));
                }
            } else {
                // SAFETY: tile row j holds 16 floats.
                unsafe {
                    _mm256_storeu_ps(tile[j].as_mut_ptr(), s[0]);
                    _mm256_storeu_ps(tile[j].as_mut_ptr().add(8), s[1]);
                }
                for (r, &v) in tile[j].iter().enumerate() {
                    // SAFETY: (i + r, j) is inside C.
                    unsafe { store_scaled(c.offset((i + r) as isize * crs + j as isize * ccs), v, alpha, beta) };
                }
            }
        }
        i += 16;
    }
    for i in i..m {
        for j in 0..N {
            let s: f32 = (0..k)
                // SAFETY: (i, p) is inside A.
                .map(|p| unsafe { *a.offset(p as isize * acs).add(i) } * bt[j * k + p])
                .sum();
            // SAFETY: (i, j) is inside C.
            unsafe { store_scaled(c.offset(i as isize * crs + j as isize * ccs), s, alpha, beta) };
        }
    }
}
