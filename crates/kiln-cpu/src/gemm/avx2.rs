//! v4: the AVX2 + FMA micro-kernel, 6×16.
//!
//! Register budget (16 ymm registers of 8 floats): the 6×16 tile of C is 12
//! accumulators, one step of p needs 2 registers for the 16 values of B and 1
//! for the broadcast value of A — 15 in all. Per step the kernel issues 12
//! independent FMAs against 2 vector loads and 6 broadcasts, enough
//! independent chains (12 > 2 FMA pipes × 4 cycles latency) to keep both FMA
//! pipes busy every cycle.

use super::packed::{store_tile, Blocking};
use std::arch::x86_64::*;

/// Rows of the v4 tile.
pub(super) const MR: usize = 6;
/// Columns of the v4 tile (two ymm registers).
pub(super) const NR: usize = 16;
/// Steps of p per trip of the unrolled k loop.
const UNROLL: usize = 4;

/// v4 blocking: A block 144×256 (144 KiB, in a 512 KiB L2), B micro-panel
/// 256×16 (16 KiB, in L1), B block 256×3072 (3 MiB, in L3).
pub(super) const BLOCKING: Blocking = Blocking {
    mc: 144,
    kc: 256,
    nc: 3072,
};

/// The v4 micro-kernel (see [`super::packed::MicroKernel`]).
///
/// # Safety
/// The CPU must support AVX2 and FMA; otherwise as for `MicroKernel`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel_v4_avx2_6x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs_c: isize,
    cs_c: isize,
    alpha: f32,
    beta: f32,
    mr: usize,
    nr: usize,
) {
    // SAFETY: the caller checked AVX2 + FMA (the variant is only selected
    // when `is_x86_feature_detected!` says so).
    unsafe { kernel_impl(kc, a, b, c, rs_c, cs_c, alpha, beta, mr, nr) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_impl(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    rs_c: isize,
    cs_c: isize,
    alpha: f32,
    beta: f32,
    mr: usize,
    nr: usize,
) {
    // Start pulling the C tile into cache now; it is needed only after the
    // k loop, so the misses overlap with the FMAs instead of stalling the
    // stores.
    for i in 0..mr {
        // SAFETY: prefetch never faults; the address is inside the C tile.
        unsafe {
            let cp = c.offset(i as isize * rs_c) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(cp);
            _mm_prefetch::<_MM_HINT_T0>(cp.offset((nr as isize - 1) * cs_c * 4));
        }
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    // One step of p: a rank-1 update of the tile with 6 values of A and 16 of B.
    let step = |acc: &mut [[__m256; 2]; MR], a: *const f32, b: *const f32| {
        // SAFETY: the caller passes pointers to a whole step of each panel.
        unsafe {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
        }
    };
    let (mut a, mut b) = (a, b);
    // Unrolled by UNROLL so the loop counter and pointer updates are paid
    // once per UNROLL steps.
    for _ in 0..kc / UNROLL {
        for u in 0..UNROLL {
            // SAFETY: step u of this group is inside both panels.
            unsafe { step(&mut acc, a.add(u * MR), b.add(u * NR)) };
        }
        // SAFETY: advancing by whole steps stays inside (or one past) the panels.
        unsafe {
            a = a.add(UNROLL * MR);
            b = b.add(UNROLL * NR);
        }
    }
    for _ in 0..kc % UNROLL {
        step(&mut acc, a, b);
        // SAFETY: as above.
        unsafe {
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    let va = _mm256_set1_ps(alpha);
    if mr == MR && nr == NR && cs_c == 1 {
        // Full tile with contiguous rows: vector read-modify-write of C.
        let vb = _mm256_set1_ps(beta);
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: full tile, unit column stride: 16 floats per row.
            unsafe {
                let cp = c.offset(i as isize * rs_c);
                let (mut r0, mut r1) = (_mm256_mul_ps(row[0], va), _mm256_mul_ps(row[1], va));
                if beta != 0.0 {
                    r0 = _mm256_fmadd_ps(_mm256_loadu_ps(cp), vb, r0);
                    r1 = _mm256_fmadd_ps(_mm256_loadu_ps(cp.add(8)), vb, r1);
                }
                _mm256_storeu_ps(cp, r0);
                _mm256_storeu_ps(cp.add(8), r1);
            }
        }
    } else {
        let mut tile = [0.0f32; MR * NR];
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: row i of `tile` has NR = 16 floats.
            unsafe {
                _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR), row[0]);
                _mm256_storeu_ps(tile.as_mut_ptr().add(i * NR + 8), row[1]);
            }
        }
        // SAFETY: forwarded from the caller's contract.
        unsafe { store_tile(&tile, NR, c, rs_c, cs_c, alpha, beta, mr, nr) };
    }
}
