//! v5: the AVX-512 micro-kernel, 12×32.
//!
//! Twice the vector width of v4 and twice the registers (32 zmm of 16
//! floats): the 12×32 tile of C is 24 accumulators, plus 2 for B and 1 for
//! the broadcast of A — 27 of 32. Each step issues 24 independent FMAs for 2
//! loads and 12 broadcasts, so the kernel stays FMA-bound; a taller tile than
//! v4 also halves how often each B value is reloaded per flop.

use super::avx2::{pack_a_avx2, pack_b_avx2};
use super::packed::{prefetch_c_tile, store_tile, Blocking, Packers};
use std::arch::x86_64::*;

/// Rows of the v5 tile.
pub(super) const MR: usize = 12;
/// Columns of the v5 tile (two zmm registers).
pub(super) const NR: usize = 32;
/// v5 blocking: A block 144×384 (216 KiB, L2), B micro-panel 384×32
/// (48 KiB, L1), B block 384×3072 (4.5 MiB, L3).
///
/// The depth comes from `scripts/tune-v5.sh` on an Intel Xeon (Sapphire
/// Rapids, 48 KiB L1d, 2 MiB L2), 1 thread: 144×384 ran 157 and 171 GFLOP/s
/// at 1024³ and 2048³ (86.5 % and 87.6 % of the FMA peak) where 144×256 ran
/// 142–148 and 148–152 (82 % and 86–87 %); none of 13 other blockings (mc
/// 96–480, kc 192–512, nc 768–3072) did better. Deeper k blocks halve the
/// passes over C, as they did for v4.
pub(super) const BLOCKING: Blocking = Blocking {
    mc: 144,
    kc: 384,
    nc: 3072,
    small_m: 144,
    long_kc: 0,
};

/// The environment variable that replaces v5's blocking, for tuning it on a
/// CPU at hand: `mc,kc,nc`, `mc,kc,nc,small_m` or `mc,kc,nc,small_m,long_kc`
/// (elements; `mc` and `small_m` multiples of 12, `nc` of 32, all positive;
/// `long_kc` 0, v5's default, or deeper than `kc`: the depth of the k
/// blocks of a long batch, at most `small_m` rows deeper than `kc`, as v4
/// runs the article's 100 × 12288 batches).
pub const BLOCKING_ENV: &str = "KILN_V5_BLOCKING";

/// v5's blocking: [`BLOCKING`], or what [`BLOCKING_ENV`] says (read once per
/// process). A value that does not parse as above is ignored: the sizes in
/// use are what [`blocking_in_use`] reports.
pub(super) fn blocking() -> Blocking {
    static CHOSEN: std::sync::OnceLock<Blocking> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        std::env::var(BLOCKING_ENV)
            .ok()
            .and_then(|v| parse_blocking(&v))
            .unwrap_or(BLOCKING)
    })
}

/// `mc,kc,nc[,small_m[,long_kc]]` as a v5 blocking, if well formed.
fn parse_blocking(text: &str) -> Option<Blocking> {
    let sizes: Vec<usize> = text.split(',').map(|s| s.trim().parse().ok()).collect::<Option<_>>()?;
    let (mc, kc, nc) = match sizes[..] {
        [mc, kc, nc] | [mc, kc, nc, _] | [mc, kc, nc, _, _] => (mc, kc, nc),
        _ => return None,
    };
    let small_m = sizes.get(3).copied().unwrap_or(BLOCKING.small_m);
    let long_kc = sizes.get(4).copied().unwrap_or(BLOCKING.long_kc);
    let fits = |v: usize, unit: usize| v > 0 && v.is_multiple_of(unit);
    // A long batch's B blocks are nc·kc/long_kc wide: whole panels too.
    let long_ok = long_kc == 0 || (long_kc > kc && fits(nc * kc / long_kc, NR));
    (fits(mc, MR) && kc > 0 && fits(nc, NR) && fits(small_m, MR) && long_ok).then_some(Blocking {
        mc,
        kc,
        nc,
        small_m,
        long_kc,
    })
}

/// v5's blocking in use in this process, as `(mc, kc, nc, small_m, long_kc)`.
pub fn blocking_in_use() -> (usize, usize, usize, usize, usize) {
    let b = blocking();
    (b.mc, b.kc, b.nc, b.small_m, b.long_kc)
}

/// v5's packers: v4's vectorised AVX2 ones (every AVX-512 CPU has AVX2)
/// for 12-row and 32-column panels. With the portable packers, packing
/// a column-major B (Wᵀ in `x·Wᵀ`) one float at a time made v5 0.5–0.9×
/// matrixmultiply on the GAN's forward layers on an Intel Xeon (Sapphire
/// Rapids), where it is 1.03–1.3× on square products.
pub(super) const PACKERS: Packers = Packers {
    a: pack_a_avx2::<MR>,
    b: pack_b_avx2::<NR>,
    direct_a: None,
    short_rows: 0,
};

/// The v5 micro-kernel (see [`super::packed::MicroKernel`]).
///
/// # Safety
/// The CPU must support AVX-512F; otherwise as for `MicroKernel`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel_v5_avx512_12x32(
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
    // SAFETY: the caller checked AVX-512F (the variant is only selected when
    // `is_x86_feature_detected!` says so).
    unsafe { kernel_impl(kc, a, b, c, rs_c, cs_c, alpha, beta, mr, nr) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
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
    prefetch_c_tile(c, rs_c, cs_c, mr, nr);
    if mr == MR && nr == NR && cs_c == 1 {
        // SAFETY: the panels hold kc steps of MR and NR floats.
        let acc = unsafe { k_loop::<MR, 2>(kc, a, b) };
        // Full tile with contiguous rows: vector read-modify-write of C.
        let (va, vb) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: full tile, unit column stride: 32 floats per row.
            unsafe {
                let cp = c.offset(i as isize * rs_c);
                let (mut r0, mut r1) = (_mm512_mul_ps(row[0], va), _mm512_mul_ps(row[1], va));
                if beta != 0.0 {
                    r0 = _mm512_fmadd_ps(_mm512_loadu_ps(cp), vb, r0);
                    r1 = _mm512_fmadd_ps(_mm512_loadu_ps(cp.add(16)), vb, r1);
                }
                _mm512_storeu_ps(cp, r0);
                _mm512_storeu_ps(cp.add(16), r1);
            }
        }
        return;
    }
    // An edge tile runs the rows and column halves it has, not all of the
    // tile: the seed's 64-row batch ends in a 4-row panel (a third of the
    // full kernel's FMAs), a 100-column B in a 4-column one (half of them).
    // SAFETY (all arms): forwarded from the caller's contract; the loops
    // read a subset of the panels.
    unsafe {
        match (mr <= 4, mr <= 8, nr <= 16) {
            (true, _, true) => edge::<4, 1>(kc, a, b, c, rs_c, cs_c, alpha, beta, mr, nr),
            (true, _, false) => edge::<4, 2>(kc, a, b, c, rs_c, cs_c, alpha, beta, mr, nr),
            (false, true, true) => edge::<8, 1>(kc, a, b, c, rs_c, cs_c, alpha, beta, mr, nr),
            (false, true, false) => edge::<8, 2>(kc, a, b, c, rs_c, cs_c, alpha, beta, mr, nr),
            (false, false, true) => edge::<MR, 1>(kc, a, b, c, rs_c, cs_c, alpha, beta, mr, nr),
            (false, false, false) => edge::<MR, 2>(kc, a, b, c, rs_c, cs_c, alpha, beta, mr, nr),
        }
    }
}

/// The first `R` rows and `H` halves (16 columns each) of the tile
/// `Σ_p a[p]·b[p]ᵀ`, every accumulator updated once per step in increasing
/// p: the same arithmetic, so the same bits, for any `R` and `H`.
///
/// # Safety
/// AVX-512F; the A panel holds kc steps of MR floats and the B panel kc
/// steps of NR (only the first R and 16·H of each are read).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn k_loop<const R: usize, const H: usize>(kc: usize, a: *const f32, b: *const f32) -> [[__m512; H]; R] {
    let mut acc = [[_mm512_setzero_ps(); H]; R];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: each step reads within the next MR floats of the A panel
        // and NR of the B panel; both panels hold kc steps.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); H];
            for (h, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(b.add(16 * h));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                for (acc, bh) in row.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(ai, *bh, *acc);
                }
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    acc
}

/// An edge tile (`mr ≤ R` rows, `nr ≤ 16·H` columns, or a strided C):
/// [`k_loop`] over what it has, then the generic store.
///
/// # Safety
/// As for [`kernel_v5_avx512_12x32`], with `mr ≤ R` and `nr ≤ 16·H`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn edge<const R: usize, const H: usize>(
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
    // SAFETY: the caller's contract.
    let acc = unsafe { k_loop::<R, H>(kc, a, b) };
    let mut tile = [0.0f32; MR * NR];
    for (i, row) in acc.iter().enumerate() {
        for (h, v) in row.iter().enumerate() {
            // SAFETY: row i of `tile` has NR = 32 floats; 16·h + 16 ≤ 32.
            unsafe { _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR + 16 * h), *v) };
        }
    }
    // SAFETY: forwarded from the caller's contract (mr ≤ R, nr ≤ 16·H).
    unsafe { store_tile(&tile, NR, c, rs_c, cs_c, alpha, beta, mr, nr) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_override_parses_only_sizes_that_fit_the_tile() {
        let b = parse_blocking("96, 192,1536").expect("three sizes");
        assert_eq!((b.mc, b.kc, b.nc, b.small_m), (96, 192, 1536, BLOCKING.small_m));
        let b = parse_blocking("96,192,1536,48").expect("four sizes");
        assert_eq!((b.small_m, b.long_kc), (48, BLOCKING.long_kc));
        let b = parse_blocking("144,384,3072,144,1024").expect("five sizes");
        assert_eq!((b.small_m, b.long_kc), (144, 1024));
        for bad in [
            "",
            "96,192",
            "100,192,1536",
            "96,0,1536",
            "96,192,1000",
            "96,192,1536,50",
            "a,b,c",
            "96,192,1536,48,100",
            "144,384,3072,144,1000",
            "96,192,1536,48,0,1",
        ] {
            assert!(parse_blocking(bad).is_none(), "{bad:?} accepted");
        }
    }
}
