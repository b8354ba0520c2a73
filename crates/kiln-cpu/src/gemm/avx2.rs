//! v4: the AVX2 + FMA micro-kernel, 6×16.
//!
//! Register budget (16 ymm registers of 8 floats): the 6×16 tile of C is 12
//! accumulators, one step of p needs 2 registers for the 16 values of B and 1
//! for the broadcast value of A — 15 in all. Per step the kernel issues 12
//! independent FMAs against 2 vector loads and 6 broadcasts, enough
//! independent chains (12 > 2 FMA pipes × 4 cycles latency) to keep both FMA
//! pipes busy every cycle.

use super::packed::{pack_a, pack_b_panel, store_tile, Blocking, Packers};
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

/// v4's packers: the portable ones with the common layouts vectorised.
///
/// Packing is pure data movement, but for the GAN's skinny layers
/// (`[100×12288]·[12288×128]`) every packed element feeds only ~100 FMAs,
/// so an element-at-a-time gather costs about as much as the micro-kernel.
/// The vectorised paths move 8×8 blocks through registers with an AVX
/// transpose (row-major A, column-major B) or copy whole 16-float rows with
/// two vector moves (row-major B) instead of a `memcpy` call per row.
pub(super) const PACKERS: Packers = Packers {
    a: pack_a_6,
    b: pack_b_16,
};

/// Transposes the 8×8 block in `r` (row i = `r[i]`) in registers.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    // u0 holds columns 0 (low half) and 4 (high half) of rows 0-3, u1
    // columns 1 and 5, and so on; u4..u7 the same for rows 4-7.
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// [`pack_a`] for MR = 6 (see [`PACKERS`]).
///
/// # Safety
/// As for [`pack_a`]; the CPU must support AVX2.
unsafe fn pack_a_6(mc: usize, kc: usize, a: *const f32, strides: [isize; 2], out: &mut [f32]) {
    // SAFETY: AVX2 is checked before v4 is selected; the rest is forwarded.
    unsafe { pack_a_6_impl(mc, kc, a, strides, out) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn pack_a_6_impl(mc: usize, kc: usize, a: *const f32, [ars, acs]: [isize; 2], out: &mut [f32]) {
    let full = mc / MR;
    for (ip, panel) in out.chunks_exact_mut(MR * kc).enumerate().take(full) {
        // SAFETY: row ip·MR + MR - 1 < mc is inside A.
        let a0 = unsafe { a.offset((ip * MR) as isize * ars) };
        if acs == 1 {
            // Row-major A: 6 rows × 8 columns in, 8 groups of 6 out.
            let mut p = 0;
            while p + 8 <= kc {
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, ri) in r.iter_mut().enumerate().take(MR) {
                    // SAFETY: row i < MR, columns p..p+8 ≤ kc.
                    *ri = unsafe { _mm256_loadu_ps(a0.offset(i as isize * ars).add(p)) };
                }
                for (q, col) in transpose8(r).iter().enumerate() {
                    // SAFETY: group p + q < kc of the panel holds MR = 6
                    // floats: 4 + 2 stores.
                    unsafe {
                        let dst = panel.as_mut_ptr().add((p + q) * MR);
                        _mm_storeu_ps(dst, _mm256_castps256_ps128(*col));
                        _mm_storel_epi64(
                            dst.add(4) as *mut __m128i,
                            _mm_castps_si128(_mm256_extractf128_ps::<1>(*col)),
                        );
                    }
                }
                p += 8;
            }
            for p in p..kc {
                for i in 0..MR {
                    // SAFETY: (i, p) inside the block.
                    panel[p * MR + i] = unsafe { *a0.offset(i as isize * ars + p as isize) };
                }
            }
        } else if ars == 1 {
            // Column-major A (a transposed operand): 6 contiguous floats per p.
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                // SAFETY: column p < kc, rows ip·MR..+6 are contiguous.
                dst.copy_from_slice(unsafe { std::slice::from_raw_parts(a0.offset(p as isize * acs), MR) });
            }
        } else {
            // SAFETY: forwarded; one full panel of MR rows.
            unsafe { pack_a::<MR>(MR, kc, a0, [ars, acs], panel) };
        }
    }
    if full * MR < mc {
        // SAFETY: the partial last panel; forwarded.
        unsafe {
            pack_a::<MR>(
                mc - full * MR,
                kc,
                a.offset((full * MR) as isize * ars),
                [ars, acs],
                &mut out[full * MR * kc..],
            )
        };
    }
}

/// [`pack_b_panel`] for NR = 16 (see [`PACKERS`]).
///
/// # Safety
/// As for [`pack_b_panel`]; the CPU must support AVX2.
unsafe fn pack_b_16(jp: usize, kc: usize, nc: usize, b: *const f32, strides: [isize; 2], panel: &mut [f32]) {
    // SAFETY: AVX2 is checked before v4 is selected; the rest is forwarded.
    unsafe { pack_b_16_impl(jp, kc, nc, b, strides, panel) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b_16_impl(jp: usize, kc: usize, nc: usize, b: *const f32, [brs, bcs]: [isize; 2], panel: &mut [f32]) {
    if nc - jp * NR < NR || (bcs != 1 && brs != 1) {
        // SAFETY: forwarded (edge panel or unusual strides).
        return unsafe { pack_b_panel::<NR>(jp, kc, nc, b, [brs, bcs], panel) };
    }
    // SAFETY: column jp·NR + NR - 1 < nc is inside B.
    let b0 = unsafe { b.offset((jp * NR) as isize * bcs) };
    if bcs == 1 {
        // Row-major B: each p is 16 contiguous floats.
        for (p, dst) in panel.chunks_exact_mut(NR).enumerate().take(kc) {
            // SAFETY: row p < kc, 16 columns inside the block.
            unsafe {
                let row = b0.offset(p as isize * brs);
                _mm256_storeu_ps(dst.as_mut_ptr(), _mm256_loadu_ps(row));
                _mm256_storeu_ps(dst.as_mut_ptr().add(8), _mm256_loadu_ps(row.add(8)));
            }
        }
        return;
    }
    // Column-major B (Wᵀ of a linear layer): 16 columns × 8 rows in, two
    // 8×8 transposes, 8 rows of 16 out.
    let mut p = 0;
    while p + 8 <= kc {
        for half in 0..2 {
            let mut r = [_mm256_setzero_ps(); 8];
            for (j, rj) in r.iter_mut().enumerate() {
                // SAFETY: column 8·half + j < 16, rows p..p+8 ≤ kc.
                *rj = unsafe { _mm256_loadu_ps(b0.offset((8 * half + j) as isize * bcs).add(p)) };
            }
            for (q, row) in transpose8(r).iter().enumerate() {
                // SAFETY: row p + q < kc of the panel, 8 floats at 8·half.
                unsafe { _mm256_storeu_ps(panel.as_mut_ptr().add((p + q) * NR + 8 * half), *row) };
            }
        }
        p += 8;
    }
    for p in p..kc {
        for j in 0..NR {
            // SAFETY: (p, j) inside the block.
            panel[p * NR + j] = unsafe { *b0.offset(j as isize * bcs + p as isize) };
        }
    }
}
