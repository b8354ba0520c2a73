//! v4: the AVX2 + FMA micro-kernel, 6×16.
//!
//! Register budget (16 ymm registers of 8 floats): the 6×16 tile of C is 12
//! accumulators, one step of p needs 2 registers for the 16 values of B and 2
//! for broadcast values of A — all 16. Per step the kernel issues 12
//! independent FMAs against 2 vector loads and 6 broadcasts, enough
//! independent chains (12 > 2 FMA pipes × 4 cycles latency) to keep both FMA
//! pipes busy every cycle. The k loop is inline assembly ([`k_loop`]) so that
//! this register plan is the one that runs.
//!
//! Edge tiles run shorter loops with the same per-element arithmetic: a last
//! row panel of at most 4 rows ([`k_loop_4x16`]) and a last column panel of
//! at most 8 columns ([`k_loop_6x8`]) take 4 cycles per step (the FMA latency
//! of their 8 or 6 chains) instead of the full tile's 6.

use super::packed::{pack_a, pack_b_panel, pack_b_panels, prefetch_c_tile, store_tile, Blocking, Packers};
use std::arch::x86_64::*;

/// Rows of the v4 tile.
pub(super) const MR: usize = 6;
/// Columns of the v4 tile (two ymm registers).
pub(super) const NR: usize = 16;

/// v4 blocking: k blocks of 512 (at most 640 once evened out), A blocks of
/// 48×512 (96 KiB) next to a group of 8 B micro-panels (8 × 32 KiB) in a
/// 512 KiB L2, the tile's A panel (12 KiB) in L1, B block 512×3072 (6 MiB,
/// in L3); batches of up to 144 rows run in the small-batch order.
///
/// Deep k blocks halve what a k block costs besides its FMAs: the passes
/// over C (each tile loaded, added to, stored) and the kernel calls (each
/// one's C prefetches, loop exit and store). Measured against 144×256 (the
/// textbook values for this tile) with the two alternating in one process,
/// 1 thread on the Zen 3 host of docs/benchmarks-log.md: 1.045–1.05× at 1024³,
/// 1.04× at 512³, 1.00× at 2048³, and 0.97–1.06× (median 1.007×)
/// on the GAN's layer GEMMs. The A block shrinks so that it and the B group
/// stay well inside L2 (96 KiB + 256 KiB); 48 and 72 rows measured alike.
///
/// A long batch (at most 144 rows, deeper than 512; a row-major A is read
/// in place) runs k blocks of 1024 (so the seed's 784 in one), B groups of
/// 4 panels, no prefetch of the next group ([`Blocking::long_kc`]).
/// Alternated with the
/// blocking above call by call in one process (1 thread, Zen 4 host of
/// docs/benchmarks-log.md, operands cycled through nine copies or one):
/// `x·W1ᵀ` [100×12288]·[12288×128] 1.03–1.14×, `dy·W2` with W2 row-major
/// 0.98–1.07×, the seed's [64×784]·[784×128] 1.05–1.08× (Wᵀ) and
/// 0.99–1.05× (row-major). Keeping the prefetch with the deeper blocks
/// lost most of it (0.91–1.07×).
pub(super) const BLOCKING: Blocking = Blocking {
    mc: 48,
    kc: 512,
    nc: 3072,
    small_m: 144,
    long_kc: 1024,
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
    // The k loop is written in both arms on purpose: with one call before a
    // shared `if full` store, LLVM spills the twelve accumulators to the
    // stack on every tile, because the edge arm needs them in memory.
    if mr == MR && nr == NR && cs_c == 1 {
        prefetch_full_tile(c, rs_c);
        // SAFETY: the panels hold kc steps of MR and NR floats.
        let acc = unsafe { k_loop(kc, a, b) };
        // SAFETY: a full tile with unit column stride (caller's contract).
        unsafe { store_full(&acc, c, rs_c, alpha, beta) };
    } else {
        prefetch_c_tile(c, rs_c, cs_c, mr, nr);
        // SAFETY: as above; the short and narrow loops read a subset of it.
        let acc = unsafe {
            if mr <= SHORT_MR {
                k_loop_4x16(kc, a, b)
            } else if nr <= NARROW_NR {
                k_loop_6x8(kc, a, b)
            } else {
                k_loop(kc, a, b)
            }
        };
        // SAFETY: forwarded from the caller's contract.
        unsafe { store_edge(&acc, c, rs_c, cs_c, alpha, beta, mr, nr) };
    }
}

/// [`prefetch_c_tile`] for a full tile with unit column stride (each row's
/// 16 floats span at most two lines), with a constant trip count.
#[inline(always)]
fn prefetch_full_tile(c: *mut f32, rs_c: isize) {
    for i in 0..MR {
        let row = c.wrapping_offset(i as isize * rs_c);
        super::packed::prefetch_line(row);
        super::packed::prefetch_line(row.wrapping_add(NR - 1));
    }
}

/// Writes the accumulators into a full 6×16 tile whose rows are contiguous:
/// `C = alpha·acc + beta·C` (C not read when `beta == 0`). Inlined into the
/// kernels, so the accumulators go from registers straight to C; the edge
/// path ([`store_edge`]) is a call that spills them.
///
/// # Safety
/// AVX2 and FMA; the full tile at `c` (row stride `rs_c`, unit column
/// stride) must be writable.
#[inline(always)]
unsafe fn store_full(acc: &[[__m256; 2]; MR], c: *mut f32, rs_c: isize, alpha: f32, beta: f32) {
    // SAFETY: the caller runs with AVX2 + FMA (these intrinsics are inlined
    // into a `target_feature` function).
    unsafe {
        let va = _mm256_set1_ps(alpha);
        let vb = _mm256_set1_ps(beta);
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: full tile, unit column stride: 16 floats per row.
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
}

/// Writes the accumulators into the `mr×nr` corner of the C tile at `c`
/// (an edge tile, or one with a column stride): `C = alpha·acc + beta·C`
/// (C not read when `beta == 0`). Out of line: edge tiles are few.
///
/// # Safety
/// AVX2 and FMA; the tile must be writable.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_edge(
    acc: &[[__m256; 2]; MR],
    c: *mut f32,
    rs_c: isize,
    cs_c: isize,
    alpha: f32,
    beta: f32,
    mr: usize,
    nr: usize,
) {
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

/// Two rows of one step of p as assembly text: the A values at `$ra` and
/// `$rb` broadcast into ymm2 and ymm3, each times the 16 values of B in
/// ymm0/ymm1, added into the accumulators `$a0 $a1` and `$b0 $b1`.
macro_rules! rows_16 {
    ($ra:literal, $rb:literal, $a0:literal, $a1:literal, $b0:literal, $b1:literal) => {
        concat!(
            "vbroadcastss ymm2, [",
            $ra,
            "]\n",
            "vbroadcastss ymm3, [",
            $rb,
            "]\n",
            "vfmadd231ps ",
            $a0,
            ", ymm2, ymm0\n",
            "vfmadd231ps ",
            $a1,
            ", ymm2, ymm1\n",
            "vfmadd231ps ",
            $b0,
            ", ymm3, ymm0\n",
            "vfmadd231ps ",
            $b1,
            ", ymm3, ymm1\n",
        )
    };
}

/// [`rows_16`] against the first 8 values of B (ymm0) only.
macro_rules! rows_8 {
    ($ra:literal, $rb:literal, $a0:literal, $b0:literal) => {
        concat!(
            "vbroadcastss ymm2, [",
            $ra,
            "]\n",
            "vbroadcastss ymm3, [",
            $rb,
            "]\n",
            "vfmadd231ps ",
            $a0,
            ", ymm2, ymm0\n",
            "vfmadd231ps ",
            $b0,
            ", ymm3, ymm0\n",
        )
    };
}

/// The 16 values of B at byte offset `$b` from `{b}` into ymm0/ymm1.
macro_rules! load_b16 {
    ($b:literal) => {
        concat!(
            "vmovups ymm0, [{b} + ",
            $b,
            "]\n",
            "vmovups ymm1, [{b} + ",
            $b,
            " + 32]\n"
        )
    };
}

/// One step of p of the 6×16 kernel as assembly text: the 16 values of B at
/// byte offset `$b` from `{b}` into ymm0/ymm1, then the six values of A
/// (addresses `$r0`…`$r5`) broadcast in pairs into ymm2/ymm3, each pair
/// followed by its four FMAs into the accumulators ymm4–ymm15 (row i in
/// ymm(4+2i), ymm(5+2i)).
macro_rules! step_6x16 {
    ($b:literal, $r0:literal, $r1:literal, $r2:literal, $r3:literal, $r4:literal, $r5:literal) => {
        concat!(
            load_b16!($b),
            rows_16!($r0, $r1, "ymm4", "ymm5", "ymm6", "ymm7"),
            rows_16!($r2, $r3, "ymm8", "ymm9", "ymm10", "ymm11"),
            rows_16!($r4, $r5, "ymm12", "ymm13", "ymm14", "ymm15"),
        )
    };
}

/// The k loop shared by the v4 kernels: `four` is the text of four steps
/// and the pointer updates after them, `one` of a single step (the kc % 4
/// remainder), `operands` the kernel's own register operands (`{a}`, `{b}`,
/// …). Returns the 12 accumulators as `[row][half]`.
macro_rules! k_loop_6x16 {
    (kc: $kc:expr, four: { $($four:tt)* }, one: { $($one:tt)* }, operands: { $($ops:tt)* }) => {{
        let z = _mm256_setzero_ps();
        let [mut c00, mut c01, mut c10, mut c11, mut c20, mut c21] = [z; 6];
        let [mut c30, mut c31, mut c40, mut c41, mut c50, mut c51] = [z; 6];
        // SAFETY: reads kc steps of A and of the B panel (the calling
        // kernel's contract); touches no other memory and no stack.
        unsafe {
            std::arch::asm!(
                "test {n4}, {n4}",
                "jz 3f",
                "2:",
                $($four)*
                "dec {n4}",
                "jnz 2b",
                "3:",
                "test {n1}, {n1}",
                "jz 5f",
                "4:",
                $($one)*
                "dec {n1}",
                "jnz 4b",
                "5:",
                $($ops)*
                n4 = inout(reg) $kc / 4 => _,
                n1 = inout(reg) $kc % 4 => _,
                out("ymm0") _,
                out("ymm1") _,
                out("ymm2") _,
                out("ymm3") _,
                inout("ymm4") c00,
                inout("ymm5") c01,
                inout("ymm6") c10,
                inout("ymm7") c11,
                inout("ymm8") c20,
                inout("ymm9") c21,
                inout("ymm10") c30,
                inout("ymm11") c31,
                inout("ymm12") c40,
                inout("ymm13") c41,
                inout("ymm14") c50,
                inout("ymm15") c51,
                options(nostack, readonly),
            );
        }
        [[c00, c01], [c10, c11], [c20, c21], [c30, c31], [c40, c41], [c50, c51]]
    }};
}

/// [`k_loop_6x16`] over a packed A panel (the MR values of a step
/// consecutive, 24 bytes per step) and a packed B panel (64 bytes per step),
/// with `$step` the macro that writes one step from B's byte offset and the
/// addresses of the step's six values of A. The v4 loops that read packed
/// panels differ only in that macro.
macro_rules! k_loop_packed {
    ($kc:expr, $a:expr, $b:expr, $step:ident) => {
        k_loop_6x16!(
            kc: $kc,
            four: {
                $step!("0", "{a}", "{a} + 4", "{a} + 8", "{a} + 12", "{a} + 16", "{a} + 20"),
                $step!("64", "{a} + 24", "{a} + 28", "{a} + 32", "{a} + 36", "{a} + 40", "{a} + 44"),
                $step!("128", "{a} + 48", "{a} + 52", "{a} + 56", "{a} + 60", "{a} + 64", "{a} + 68"),
                $step!("192", "{a} + 72", "{a} + 76", "{a} + 80", "{a} + 84", "{a} + 88", "{a} + 92"),
                "add {a}, 96",
                "add {b}, 256",
            },
            one: {
                $step!("0", "{a}", "{a} + 4", "{a} + 8", "{a} + 12", "{a} + 16", "{a} + 20"),
                "add {a}, 24",
                "add {b}, 64",
            },
            operands: {
                a = inout(reg) $a => _,
                b = inout(reg) $b => _,
            }
        )
    };
}

/// The k loop of the v4 kernel: the 6×16 tile `Σ_p a[p]·b[p]ᵀ` in 12
/// accumulators, returned as `[row][half]`.
///
/// Written in assembly because the compiler, given the same loop as
/// intrinsics, rotates the twelve accumulators through spare registers (18
/// register moves per four steps) once it hoists the next step's loads. Here
/// the registers are fixed: ymm4–ymm15 accumulate, ymm0/ymm1 hold the 16
/// values of B, ymm2/ymm3 the broadcast values of A. Every accumulator is
/// updated with one FMA per step in increasing p, the same arithmetic as the
/// portable kernels' `acc += a·b`, so the bits match theirs.
///
/// # Safety
/// AVX2 and FMA; `a` must hold `kc·MR` floats and `b` `kc·NR`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn k_loop(kc: usize, a: *const f32, b: *const f32) -> [[__m256; 2]; MR] {
    // The MR values of A for one step are consecutive in the panel.
    k_loop_packed!(kc, a, b, step_6x16)
}

/// The v4 kernel reading A in place (see [`super::packed::DirectAKernel`]):
/// a full 6-row panel of a row-major A, rows `lda` floats apart, instead of
/// a packed panel. For a small batch whose rows are long (`[100×12288]`),
/// packing A costs about as much core time as the FMAs it feeds save, while
/// the kernel can stream six rows itself: each broadcast reads the next float
/// of its row, and every line it touches is used for 16 steps.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must cover 6 rows × `kc` floats
/// with row stride `lda`; otherwise as for `MicroKernel` with `mr = 6`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel_v4_direct_a(
    kc: usize,
    a: *const f32,
    lda: isize,
    b: *const f32,
    c: *mut f32,
    rs_c: isize,
    cs_c: isize,
    alpha: f32,
    beta: f32,
    nr: usize,
) {
    // SAFETY: as for kernel_v4_avx2_6x16.
    unsafe { kernel_direct_impl(kc, a, lda, b, c, rs_c, cs_c, alpha, beta, nr) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_direct_impl(
    kc: usize,
    a: *const f32,
    lda: isize,
    b: *const f32,
    c: *mut f32,
    rs_c: isize,
    cs_c: isize,
    alpha: f32,
    beta: f32,
    nr: usize,
) {
    // Two arms, each with its k loop, as in `kernel_impl`.
    if nr == NR && cs_c == 1 {
        prefetch_full_tile(c, rs_c);
        // SAFETY: the rows hold kc floats, the B panel kc steps of NR.
        let acc = unsafe { k_loop_direct_a(kc, a, lda, b) };
        // SAFETY: a full tile with unit column stride (caller's contract).
        unsafe { store_full(&acc, c, rs_c, alpha, beta) };
    } else {
        prefetch_c_tile(c, rs_c, cs_c, MR, nr);
        // SAFETY: as above.
        let acc = unsafe { k_loop_direct_a(kc, a, lda, b) };
        // SAFETY: forwarded from the caller's contract.
        unsafe { store_edge(&acc, c, rs_c, cs_c, alpha, beta, MR, nr) };
    }
}

/// [`k_loop`] with A read in place: rows 0–2 addressed from `a`, rows 3–5
/// from `a + 3·lda`, each as base + lda·{0, 1, 2}. Same FMAs in the same
/// order as [`k_loop`], so the same bits as the packed kernel.
///
/// # Safety
/// AVX2 and FMA; six rows of `kc` floats at `a` with row stride `lda`;
/// `b` must hold `kc·NR` floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn k_loop_direct_a(kc: usize, a: *const f32, lda: isize, b: *const f32) -> [[__m256; 2]; MR] {
    k_loop_6x16!(
        kc: kc,
        four: {
            step_6x16!("0", "{a}", "{a} + {lda}", "{a} + {lda}*2", "{a3}", "{a3} + {lda}", "{a3} + {lda}*2"),
            step_6x16!(
                "64",
                "{a} + 4",
                "{a} + {lda} + 4",
                "{a} + {lda}*2 + 4",
                "{a3} + 4",
                "{a3} + {lda} + 4",
                "{a3} + {lda}*2 + 4"
            ),
            step_6x16!(
                "128",
                "{a} + 8",
                "{a} + {lda} + 8",
                "{a} + {lda}*2 + 8",
                "{a3} + 8",
                "{a3} + {lda} + 8",
                "{a3} + {lda}*2 + 8"
            ),
            step_6x16!(
                "192",
                "{a} + 12",
                "{a} + {lda} + 12",
                "{a} + {lda}*2 + 12",
                "{a3} + 12",
                "{a3} + {lda} + 12",
                "{a3} + {lda}*2 + 12"
            ),
            "add {a}, 16",
            "add {a3}, 16",
            "add {b}, 256",
        },
        one: {
            step_6x16!("0", "{a}", "{a} + {lda}", "{a} + {lda}*2", "{a3}", "{a3} + {lda}", "{a3} + {lda}*2"),
            "add {a}, 4",
            "add {a3}, 4",
            "add {b}, 64",
        },
        operands: {
            a = inout(reg) a => _,
            a3 = inout(reg) a.wrapping_offset(3 * lda) => _,
            lda = in(reg) lda * 4,
            b = inout(reg) b => _,
        }
    )
}

/// Tiles of at most this many rows run the 4-row loop ([`k_loop_4x16`]).
pub(super) const SHORT_MR: usize = 4;
/// Tiles of at most this many columns (and more than [`SHORT_MR`] rows) run
/// the 8-column loop ([`k_loop_6x8`]).
const NARROW_NR: usize = 8;

/// One step of p of the 4×16 loop: [`step_6x16`] without rows 4 and 5
/// (their addresses are taken, so that every packed-A step has the same
/// arguments, and not read).
macro_rules! step_4x16 {
    ($b:literal, $r0:literal, $r1:literal, $r2:literal, $r3:literal, $r4:literal, $r5:literal) => {
        concat!(
            load_b16!($b),
            rows_16!($r0, $r1, "ymm4", "ymm5", "ymm6", "ymm7"),
            rows_16!($r2, $r3, "ymm8", "ymm9", "ymm10", "ymm11"),
        )
    };
}

/// One step of p of the 6×8 loop: [`step_6x16`] on the first 8 values of
/// the B panel only (the accumulators of the right half are not touched).
macro_rules! step_6x8 {
    ($b:literal, $r0:literal, $r1:literal, $r2:literal, $r3:literal, $r4:literal, $r5:literal) => {
        concat!(
            "vmovups ymm0, [{b} + ",
            $b,
            "]\n",
            rows_8!($r0, $r1, "ymm4", "ymm6"),
            rows_8!($r2, $r3, "ymm8", "ymm10"),
            rows_8!($r4, $r5, "ymm12", "ymm14"),
        )
    };
}

/// [`k_loop`] for a tile of at most 4 rows (the last row panel of a batch
/// such as 64, 100 or 256 rows, which are 4 more than a multiple of 6):
/// rows 0–3 of the packed panel only. Eight FMA chains take four cycles per
/// step (the FMA latency) where the full loop takes six, so such a panel
/// costs two thirds of a full one instead of a whole one. Each accumulator
/// sees the same FMAs in the same order as in [`k_loop`], so the same bits;
/// rows 4 and 5 come back zero.
///
/// # Safety
/// AVX2 and FMA; `a` must hold `kc` groups of MR floats whose first four are
/// read, `b` `kc·NR` floats.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn k_loop_4x16(kc: usize, a: *const f32, b: *const f32) -> [[__m256; 2]; MR] {
    k_loop_packed!(kc, a, b, step_4x16)
}

/// [`k_loop`] for a tile of at most 8 columns (the last column panel of a
/// 100-wide product, say): the left half of the B panel only. Six FMA chains
/// take four cycles per step where the full loop takes six. Same bits as
/// [`k_loop`] for the columns it computes; the right half comes back zero.
///
/// # Safety
/// AVX2 and FMA; `a` must hold `kc·MR` floats, `b` `kc` groups of NR floats
/// whose first eight are read.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn k_loop_6x8(kc: usize, a: *const f32, b: *const f32) -> [[__m256; 2]; MR] {
    k_loop_packed!(kc, a, b, step_6x8)
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
    a: pack_a_avx2::<MR>,
    b: pack_b_avx2::<NR>,
    direct_a: Some(kernel_v4_direct_a),
    short_rows: SHORT_MR,
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

/// [`pack_a`] for panels of R rows (6 for v4, 12 for v5; see [`PACKERS`]),
/// vectorised with AVX2.
///
/// # Safety
/// As for [`pack_a`]; the CPU must support AVX2 and FMA.
pub(super) unsafe fn pack_a_avx2<const R: usize>(
    mc: usize,
    kc: usize,
    a: *const f32,
    strides: [isize; 2],
    out: &mut [f32],
) {
    // SAFETY: the variants using these packers are selected only on CPUs
    // with AVX2 and FMA; the rest is forwarded.
    unsafe { pack_a_impl::<R>(mc, kc, a, strides, out) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn pack_a_impl<const R: usize>(mc: usize, kc: usize, a: *const f32, [ars, acs]: [isize; 2], out: &mut [f32]) {
    let full = mc / R;
    if ars == 1 && acs != 1 {
        // Column-major A (a transposed operand such as dyᵀ): a strip of 8
        // columns at a time, walked down panel by panel. Each panel's part of
        // the strip is 8 runs of R contiguous floats in and 8·R contiguous
        // floats out, while the 8 columns are read as 8 streams in memory
        // order. Dealing one whole column out to the panels instead wrote R
        // floats into each of mc/R panels per column, and packing cost twice
        // as much per float as packing B.
        assert!(out.len() >= full * R * kc);
        for p0 in (0..kc).step_by(8) {
            let w = 8.min(kc - p0);
            for ip in 0..full {
                // SAFETY: rows ip·R..ip·R + R ≤ mc of columns p0..p0 + w ≤ kc
                // are inside the block (contiguous within a column); the R·w
                // floats written are panel ip's groups p0..p0 + w.
                unsafe {
                    let src = a.add(ip * R).offset(p0 as isize * acs);
                    let dst = out.as_mut_ptr().add(ip * R * kc + p0 * R);
                    for q in 0..w {
                        copy_run(src.offset(q as isize * acs), dst.add(q * R), R);
                    }
                }
            }
        }
        if full * R < mc {
            // SAFETY: the partial last panel; forwarded.
            unsafe {
                pack_a::<R>(
                    mc - full * R,
                    kc,
                    a.add(full * R),
                    [ars, acs],
                    &mut out[full * R * kc..],
                )
            };
        }
        return;
    }
    for (ip, panel) in out.chunks_exact_mut(R * kc).enumerate().take(mc.div_ceil(R)) {
        let rows = R.min(mc - ip * R);
        // SAFETY: row ip·R < mc is inside A.
        let a0 = unsafe { a.offset((ip * R) as isize * ars) };
        if acs == 1 {
            // Row-major A: per 8 rows of the panel (fewer in the last group),
            // 8 columns in, one 8×8 transpose, 8 column pieces out (a partial
            // panel: its rows, then zeros).
            let mut p = 0;
            while p + 8 <= kc {
                for r0 in (0..R).step_by(8) {
                    let mut r = [_mm256_setzero_ps(); 8];
                    for (i, ri) in r.iter_mut().enumerate().take(rows.saturating_sub(r0)) {
                        // SAFETY: row r0 + i < rows, columns p..p+8 ≤ kc.
                        *ri = unsafe { _mm256_loadu_ps(a0.offset((r0 + i) as isize * ars).add(p)) };
                    }
                    for (q, col) in transpose8(r).iter().enumerate() {
                        // SAFETY: group p + q < kc of the panel holds R
                        // floats, of which rows r0..r0 + min(8, R - r0).
                        unsafe { store_first(panel.as_mut_ptr().add((p + q) * R + r0), *col, 8.min(R - r0)) };
                    }
                }
                p += 8;
            }
            for p in p..kc {
                for i in 0..R {
                    // SAFETY: (i, p) inside the block when i < rows.
                    panel[p * R + i] = if i < rows {
                        unsafe { *a0.offset(i as isize * ars + p as isize) }
                    } else {
                        0.0
                    };
                }
            }
        } else {
            // Neither stride is 1 (a column-major A went the first way).
            // SAFETY: forwarded; one panel of `rows` rows.
            unsafe { pack_a::<R>(rows, kc, a0, [ars, acs], panel) };
        }
    }
}

/// Copies `n` contiguous floats with vector moves (8, then 4, 2, 1 at a time).
///
/// # Safety
/// `src` readable and `dst` writable for `n` floats; AVX2.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn copy_run(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY: every move stays below n floats of both (caller's contract).
    unsafe {
        let mut i = 0;
        while i + 8 <= n {
            _mm256_storeu_ps(dst.add(i), _mm256_loadu_ps(src.add(i)));
            i += 8;
        }
        if i + 4 <= n {
            _mm_storeu_ps(dst.add(i), _mm_loadu_ps(src.add(i)));
            i += 4;
        }
        if i + 2 <= n {
            let two = _mm_loadl_epi64(src.add(i) as *const __m128i);
            _mm_storel_epi64(dst.add(i) as *mut __m128i, two);
            i += 2;
        }
        if i < n {
            *dst.add(i) = *src.add(i);
        }
    }
}

/// Stores the first `n ≤ 8` lanes of `v` at `dst`.
///
/// # Safety
/// `dst` writable for `n` floats; AVX2.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store_first(dst: *mut f32, v: __m256, n: usize) {
    // SAFETY: every store stays below n floats (caller's contract).
    unsafe {
        if n == 8 {
            return _mm256_storeu_ps(dst, v);
        }
        let (mut part, mut i) = (_mm256_castps256_ps128(v), 0);
        if n >= 4 {
            _mm_storeu_ps(dst, part);
            (part, i) = (_mm256_extractf128_ps::<1>(v), 4);
        }
        if n - i >= 2 {
            _mm_storel_epi64(dst.add(i) as *mut __m128i, _mm_castps_si128(part));
            (part, i) = (_mm_movehl_ps(part, part), i + 2);
        }
        if n > i {
            _mm_store_ss(dst.add(i), part);
        }
    }
}

/// [`pack_b_panels`] for panels of C columns (16 for v4, 32 for v5; a
/// multiple of 8; see [`PACKERS`]), vectorised with AVX2.
///
/// # Safety
/// As for [`pack_b_panels`]; the CPU must support AVX2 and FMA.
pub(super) unsafe fn pack_b_avx2<const C: usize>(
    jp: usize,
    kc: usize,
    nc: usize,
    b: *const f32,
    strides: [isize; 2],
    panel: &mut [f32],
) {
    // SAFETY: the variants using these packers are selected only on CPUs
    // with AVX2 and FMA; the rest is forwarded.
    unsafe { pack_b_impl::<C>(jp, kc, nc, b, strides, panel) }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b_impl<const C: usize>(
    jp: usize,
    kc: usize,
    nc: usize,
    b: *const f32,
    [brs, bcs]: [isize; 2],
    panels: &mut [f32],
) {
    let count = panels.len() / (C * kc);
    let full = count.min((nc / C).saturating_sub(jp));
    if bcs == 1 && full > 0 {
        // Row-major B: row by row, C·full contiguous floats each, dealt out
        // to the panels (whole cache lines per row instead of 64 bytes).
        // SAFETY: column jp·C + full·C - 1 < nc is inside B.
        let b0 = unsafe { b.add(jp * C) };
        for p in 0..kc {
            // SAFETY: row p < kc of the block.
            let row = unsafe { b0.offset(p as isize * brs) };
            for q in 0..full {
                // SAFETY: columns q·C..q·C + C of this row are inside the
                // block; panel q has kc groups of C.
                unsafe { copy_run(row.add(q * C), panels.as_mut_ptr().add(q * C * kc + p * C), C) };
            }
        }
        // SAFETY: forwarded: the edge panel, if any, after the full ones.
        return unsafe { pack_b_panels::<C>(jp + full, kc, nc, b, [brs, bcs], &mut panels[full * C * kc..]) };
    }
    for (i, panel) in panels.chunks_exact_mut(C * kc).enumerate() {
        // SAFETY: forwarded; panel jp + i is inside the block.
        unsafe { pack_b_panel_avx2::<C>(jp + i, kc, nc, b, [brs, bcs], panel) };
    }
}

/// One panel of [`pack_b_impl`] that is not a full row-major one.
#[target_feature(enable = "avx2,fma")]
unsafe fn pack_b_panel_avx2<const C: usize>(
    jp: usize,
    kc: usize,
    nc: usize,
    b: *const f32,
    [brs, bcs]: [isize; 2],
    panel: &mut [f32],
) {
    if nc - jp * C < C || brs != 1 {
        // SAFETY: forwarded (edge panel or not column-major).
        return unsafe { pack_b_panel::<C>(jp, kc, nc, b, [brs, bcs], panel) };
    }
    // SAFETY: column jp·C + C - 1 < nc is inside B.
    let b0 = unsafe { b.offset((jp * C) as isize * bcs) };
    // Column-major B (Wᵀ of a linear layer): 8 columns × 8 rows in, one
    // 8×8 transpose, 8 pieces of panel rows out. The p loop runs in steps
    // of 16 with the column groups outside, so each 8 columns' cache lines
    // (which a large column stride maps to one cache set) are used up by two
    // consecutive transposes rather than fetched again after the other groups.
    // SAFETY (closure): callers pass p + 8 ≤ kc and part < C / 8.
    let out = panel.as_mut_ptr();
    let block = |p: usize, part: usize| {
        let mut r = [_mm256_setzero_ps(); 8];
        for (j, rj) in r.iter_mut().enumerate() {
            // SAFETY: column 8·part + j < C, rows p..p+8 ≤ kc.
            *rj = unsafe { _mm256_loadu_ps(b0.offset((8 * part + j) as isize * bcs).add(p)) };
        }
        for (q, row) in transpose8(r).iter().enumerate() {
            // SAFETY: row p + q < kc of the panel, 8 floats at 8·part.
            unsafe { _mm256_storeu_ps(out.add((p + q) * C + 8 * part), *row) };
        }
    };
    let mut p = 0;
    while p + 16 <= kc {
        for part in 0..C / 8 {
            block(p, part);
            block(p + 8, part);
        }
        p += 16;
    }
    while p + 8 <= kc {
        for part in 0..C / 8 {
            block(p, part);
        }
        p += 8;
    }
    for p in p..kc {
        for j in 0..C {
            // SAFETY: (p, j) inside the block.
            panel[p * C + j] = unsafe { *b0.offset(j as isize * bcs + p as isize) };
        }
    }
}
