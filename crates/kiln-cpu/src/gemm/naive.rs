//! The two unpacked variants: the textbook triple loop and its cache-aware
//! reordering. They are the lesson's starting point and the reference the
//! packed variants improve on.

use super::{scale_c, store_scaled};

/// v1: the definition, `C[i][j] = alpha·Σ_p A[i][p]·B[p][j] + beta·C[i][j]`.
///
/// The inner loop walks B down a column: with row-major B every step is a new
/// cache line, and the single running sum is one long dependent chain of adds,
/// so the CPU waits on add latency instead of using its SIMD units.
///
/// # Safety
/// The pointers must cover the extents implied by the sizes and strides.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm_v1_naive(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    [ars, acs]: [isize; 2],
    b: *const f32,
    [brs, bcs]: [isize; 2],
    beta: f32,
    c: *mut f32,
    [crs, ccs]: [isize; 2],
) {
    for i in 0..m as isize {
        for j in 0..n as isize {
            let mut acc = 0.0f32;
            for p in 0..k as isize {
                // SAFETY: i < m, j < n, p < k lie inside the caller's extents.
                acc += unsafe { *a.offset(i * ars + p * acs) * *b.offset(p * brs + j * bcs) };
            }
            // SAFETY: (i, j) is inside C.
            unsafe { store_scaled(c.offset(i * crs + j * ccs), acc, alpha, beta) };
        }
    }
}

/// Columns of B (and C) per block in v2: a KB×NB block of B is 32 KiB, about
/// an L1 cache.
const V2_NB: usize = 128;
/// Rows of B per block in v2.
const V2_KB: usize = 64;

/// v2: loop order i-p-j with k and n blocking.
///
/// Reordering turns the inner loop into `C[i][j..] += a_ip · B[p][j..]` — an
/// axpy over contiguous rows of B and C when they are row-major, which the
/// compiler vectorises and which has no loop-carried dependency. Blocking
/// keeps a KB×NB block of B in cache while every row of A streams past it.
/// Still no register blocking: each FMA loads and stores C, so it is bound by
/// load/store bandwidth, not by the FMA units.
///
/// # Safety
/// The pointers must cover the extents implied by the sizes and strides.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm_v2_blocked(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: *const f32,
    [ars, acs]: [isize; 2],
    b: *const f32,
    [brs, bcs]: [isize; 2],
    beta: f32,
    c: *mut f32,
    [crs, ccs]: [isize; 2],
) {
    // SAFETY: forwarded from the caller's contract.
    unsafe { scale_c(m, n, beta, c, [crs, ccs]) };
    for jb in (0..n).step_by(V2_NB) {
        let nb = V2_NB.min(n - jb);
        for pb in (0..k).step_by(V2_KB) {
            let kb = V2_KB.min(k - pb);
            for i in 0..m {
                // SAFETY: row i of C, columns jb..jb+nb, are inside C.
                let c_row = unsafe { c.offset(i as isize * crs + jb as isize * ccs) };
                for p in pb..pb + kb {
                    // SAFETY: (i, p) is inside A; row p of B, columns jb.., inside B.
                    let (a_ip, b_row) = unsafe {
                        (
                            alpha * *a.offset(i as isize * ars + p as isize * acs),
                            b.offset(p as isize * brs + jb as isize * bcs),
                        )
                    };
                    if bcs == 1 && ccs == 1 {
                        // SAFETY: unit column strides make the nb elements
                        // contiguous; C does not alias A or B (caller's contract).
                        let (b_row, c_row) = unsafe {
                            (
                                std::slice::from_raw_parts(b_row, nb),
                                std::slice::from_raw_parts_mut(c_row, nb),
                            )
                        };
                        for (cv, bv) in c_row.iter_mut().zip(b_row) {
                            *cv += a_ip * bv;
                        }
                    } else {
                        for j in 0..nb as isize {
                            // SAFETY: j < nb keeps both accesses inside B and C.
                            unsafe { *c_row.offset(j * ccs) += a_ip * *b_row.offset(j * bcs) };
                        }
                    }
                }
            }
        }
    }
}
