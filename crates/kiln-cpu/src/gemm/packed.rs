//! The packed GEMM driver shared by v3, v4 and v5 (the BLIS loop nest), the
//! packing routines, and v3's portable micro-kernel.
//!
//! ```text
//! for jc in 0..n step NC            B block KC×NC lives in L3
//!   for pc in 0..k step KC          (evened out: Blocking::depth)
//!     pack B[pc.., jc..] into NR-wide micro-panels (zero-padded)
//!     for ic in 0..m step MC        A block MC×KC lives in L2   ← rayon splits here
//!       pack A[ic.., pc..] into MR-tall micro-panels (zero-padded)
//!       for jr in 0..NC step NR     B micro-panel KC×NR lives in L1 ← and here
//!         for ir in 0..MC step MR
//!           micro-kernel: MR×NR tile of C += A panel · B panel (registers)
//! ```
//!
//! Inside a block the tiles run row panel by row panel across a group of 8 B
//! panels, so C is written in whole lines of its rows. A batch of at most
//! `small_m` rows ([`Blocking`]) takes a different order (see the small-m
//! branch): A packed once per k
//! block (or read in place by a kernel that can), B packed a group at a time
//! just before use, the next sources prefetched while the tiles run.
//!
//! Packing reads A and B through their strides, so transposed operands cost
//! nothing extra, and lays them out so the micro-kernel reads both with unit
//! stride. Threads only ever split output tiles (the ic and jr loops, or
//! column slabs for a small batch); k is always summed by one thread in the
//! same order, so results are bit-identical whatever the thread count.

use crate::SharedMut;
use rayon::prelude::*;
use std::cell::RefCell;

/// Cache-blocking sizes of one micro-kernel (elements).
#[derive(Clone, Copy, Debug)]
pub(super) struct Blocking {
    /// Rows of A per packed block (a multiple of MR).
    pub mc: usize,
    /// Depth of one packed block (shared by A and B).
    pub kc: usize,
    /// Columns of B per packed block (a multiple of NR).
    pub nc: usize,
    /// The most rows a product may have to run in the small-batch order
    /// (A packed once per k block, B streamed a group of panels at a time);
    /// taller ones are cut into blocks of `mc` rows, except a short row-major
    /// A read in place ([`Blocking::small_order`]). A multiple of MR.
    pub small_m: usize,
    /// The depth of the k blocks of a *long batch* ([`Blocking::long_batch`]:
    /// at most `small_m` rows, deeper than `kc`; a kernel with
    /// [`Packers::direct_a`] reads a row-major A of it in place); 0 for
    /// kernels that treat it like any other product. Its B groups shrink to keep
    /// their bytes, and the next group's source is not prefetched: its runs
    /// (a row of W for `x·Wᵀ`, a column run of a row-major B) are long
    /// enough for the hardware prefetchers, and the prefetch instructions
    /// stalled on full miss buffers.
    pub long_kc: usize,
}

impl Blocking {
    /// The depth of the k blocks of a product of depth `k`: `k` itself up
    /// to KC; beyond, the depth (at most 5/4·KC) that splits k into the
    /// nearest whole number of near-equal blocks. Every k block costs a pass
    /// over C (each tile loaded, added to and stored) and a packing call, so
    /// a short last block (784 = 3·256 + 16) pays them for a sliver of work;
    /// 784 runs as 262 + 262 + 260 instead.
    pub(super) fn depth(&self, k: usize) -> usize {
        even_depth(self.kc, k)
    }

    /// Whether a product on one thread runs in the small-batch order: at most
    /// `small_m` rows, or a row-major A (`a_row_major`) no larger than
    /// `small_m`·KC that it reads in place (with [`Packers::direct_a`]): a
    /// short batch of a few hundred rows, such as the toy's 256×128 hidden
    /// layers. Each B group then meets every row of A while in L2, A stays
    /// in L2 unpacked, and the product packs B once per group instead of
    /// packing A once per `mc` rows (`x[256×128]·Wᵀ` and `dy[256×128]·W`:
    /// 2–4 % off the toy step).
    pub(super) fn small_order(&self, direct_a: bool, a_row_major: bool, m: usize, k: usize) -> bool {
        m <= self.small_m || (direct_a && a_row_major && m * k <= self.small_m * self.kc)
    }

    /// Whether an m×k product is a long batch: at most `small_m` rows,
    /// deeper than KC (the 100 × 12288 images of the article's D, the
    /// 64 × 784 batch of the seed's), with a `long_kc` to run it at. The
    /// shape alone decides, not A's layout (a row-major A is read in place,
    /// a column-major one packed: same k blocks, same bits) nor the thread
    /// count (same bits on any number of threads).
    pub(super) fn long_batch(&self, m: usize, k: usize) -> bool {
        self.long_kc > 0 && m <= self.small_m && k > self.kc
    }

    /// The k-block depth and the B block width (`nc`) of an m×k product:
    /// [`Blocking::depth`] and `nc`, or for a long batch the depth evened
    /// out from `long_kc` and `nc` narrowed in proportion, so that a B
    /// block keeps its size.
    pub(super) fn blocks(&self, m: usize, k: usize) -> (usize, usize) {
        if self.long_batch(m, k) {
            (even_depth(self.long_kc, k), self.nc * self.kc / self.long_kc)
        } else {
            (self.depth(k), self.nc)
        }
    }
}

/// [`Blocking::depth`] for a nominal depth `kc`.
fn even_depth(kc: usize, k: usize) -> usize {
    let most = kc + kc / 4;
    if k <= kc {
        return k.max(1);
    }
    let mut blocks = ((k + kc / 2) / kc).max(1);
    while k.div_ceil(blocks) > most {
        blocks += 1;
    }
    k.div_ceil(blocks)
}

/// A micro-kernel: `C[mr×nr] = alpha·(Apanel·Bpanel) + beta·C` over depth `kc`.
///
/// `a` holds `kc` groups of MR values, `b` holds `kc` groups of NR values
/// (both zero-padded), `c` points at the tile's top-left element with strides
/// `rs_c`, `cs_c`; only the `mr ≤ MR` by `nr ≤ NR` corner is written. With
/// `beta == 0`, C is overwritten without being read.
pub(super) type MicroKernel = unsafe fn(
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
);

/// A micro-kernel that reads a full MR-row panel of a row-major A in place
/// (rows `lda` floats apart, `kc` floats each) instead of a packed panel;
/// otherwise as [`MicroKernel`] with `mr = MR`.
pub(super) type DirectAKernel = unsafe fn(
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
);

/// How a kernel's operands are packed: [`pack_a`] / [`pack_b_panel`]
/// (portable, any MR/NR) or vectorised versions for one tile shape, and
/// optionally a kernel that needs no packed A.
#[derive(Clone, Copy)]
pub(super) struct Packers {
    /// Packs an mc×kc block of A (see [`pack_a`]).
    pub a: unsafe fn(usize, usize, *const f32, [isize; 2], &mut [f32]),
    /// Packs consecutive micro-panels of a kc×nc block of B, as many as
    /// the output holds (see [`pack_b_panels`]).
    pub b: unsafe fn(usize, usize, usize, *const f32, [isize; 2], &mut [f32]),
    /// The kernel for row-major A read in place, used in the small-m order.
    pub direct_a: Option<DirectAKernel>,
    /// A partial last row panel of at most this many rows (fewer than MR)
    /// is packed as its own rows, zero-padded, and runs as a short tile,
    /// which the kernel computes for less than a full tile's cost. A longer
    /// one is the block's last MR rows (see the driver). 0: never short.
    pub short_rows: usize,
}

impl Packers {
    /// Whether a partial last panel of `rows` rows runs as a short tile.
    fn short(&self, rows: usize) -> bool {
        (1..=self.short_rows).contains(&rows)
    }

    /// How many rows the last panel of an `mc`-row block with MR-row panels
    /// shares with the panel before it: a partial last panel that is not
    /// short, in a block of at least MR rows, is packed and computed as the
    /// block's last MR rows. 0 otherwise. The packer ([`pack_a_block`]) and
    /// the driver's tiles both follow this.
    fn overlap<const MR: usize>(&self, mc: usize) -> usize {
        let left = mc % MR;
        if mc >= MR && left != 0 && !self.short(left) {
            MR - left
        } else {
            0
        }
    }

    /// The portable packers for an MR×NR tile.
    pub const fn portable<const MR: usize, const NR: usize>() -> Packers {
        Packers {
            a: pack_a::<MR>,
            b: pack_b_panels::<NR>,
            direct_a: None,
            short_rows: 0,
        }
    }
}

/// Below this many flops (2·m·n·k) the driver stays on the caller's thread.
///
/// 4 MFLOP is about 50 µs of one core's work, several times what waking
/// rayon's workers costs. The seed's 784-wide products (12.8 MFLOP) and
/// the toy's 128-wide ones (8.4 MFLOP) split; the 100→128 layers of a batch
/// of 64 (1.6 MFLOP) do not. On the 2-core Zen 3 host of docs/benchmarks-log.md
/// this took a training step at 2 threads from 404–499 to 633–728 steps/s
/// (seed) and from 524–670 to 693–873 (toy), against 2²⁸ before. That
/// earlier limit dated from days when the host's two vCPUs shared one core's
/// FMA units, and splitting a small product only added the wake-up.
pub(super) const PAR_MIN_FLOPS: usize = 1 << 22;

/// Work the driver does on C around the tiles, while each row panel's
/// columns are in L1 (a linear layer's bias and activation, fused), for a C
/// with unit column stride.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// A row of n values C starts from (written into each row just before
    /// the first k block's tiles, which then add onto it), instead of beta·C.
    pub bias: Option<&'a [f32]>,
    /// Applied in place to each row's finished columns after the last k
    /// block's tiles.
    pub act: Option<&'a (dyn Fn(&mut [f32]) + Sync)>,
}

impl Epilogue<'_> {
    /// Nothing around the tiles.
    pub const NONE: Epilogue<'static> = Epilogue { bias: None, act: None };
}

/// 64-byte aligned storage for packed panels, so vector loads never split a
/// cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    // Packing buffers are reused across calls: a fresh multi-megabyte
    // allocation would be page-faulted in on every GEMM.
    static PACK_A: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
    // Copies of the small operand in v6's skinny paths.
    static SCRATCH: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a reused thread-local scratch buffer of `len` floats (its
/// contents are left over from earlier calls).
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&SCRATCH, len, f)
}

/// Runs `f` with a thread-local aligned buffer of at least `len` floats.
fn with_buffer<R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<Line>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let lines = len.div_ceil(16);
    let run = |buf: &mut Vec<Line>| {
        if buf.len() < lines {
            buf.resize(lines, Line([0.0; 16]));
        }
        // SAFETY: `Line` is 16 plain f32s with no padding, so `lines` Lines
        // are exactly `16·lines ≥ len` initialised floats.
        let floats = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut f32, lines * 16) };
        f(&mut floats[..len])
    };
    cell.with(|c| match c.try_borrow_mut() {
        Ok(mut buf) => run(&mut buf),
        // Re-entered on the same thread (a GEMM inside a GEMM's task): use a
        // private buffer rather than sharing.
        Err(_) => run(&mut Vec::new()),
    })
}

/// Packs the `mc×kc` block of A at `a` into MR-tall micro-panels: panel `ip`
/// holds, for each p, the MR values `A[ip·MR + 0..MR][p]` (zero past `mc`).
///
/// # Safety
/// `a` must cover `mc×kc` elements with strides `[ars, acs]`; `out` must hold
/// `ceil(mc/MR)·MR·kc` floats.
pub(super) unsafe fn pack_a<const MR: usize>(
    mc: usize,
    kc: usize,
    a: *const f32,
    [ars, acs]: [isize; 2],
    out: &mut [f32],
) {
    for (ip, panel) in out.chunks_exact_mut(MR * kc).enumerate() {
        let rows = MR.min(mc - ip * MR);
        // SAFETY: row ip·MR is inside A.
        let a0 = unsafe { a.offset((ip * MR) as isize * ars) };
        // p outer, i inner: the panel is written sequentially while MR rows
        // (or one column, for a transposed A) are read as parallel streams.
        // A full panel has a constant trip count, so the i loop unrolls.
        if rows == MR {
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (i, d) in dst.iter_mut().enumerate() {
                    // SAFETY: i < MR = rows ≤ mc, p < kc.
                    *d = unsafe { *a0.offset(i as isize * ars + p as isize * acs) };
                }
            }
        } else {
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                for (i, d) in dst[..rows].iter_mut().enumerate() {
                    // SAFETY: i < rows ≤ mc, p < kc.
                    *d = unsafe { *a0.offset(i as isize * ars + p as isize * acs) };
                }
            }
        }
        if rows < MR {
            for p in 0..kc {
                panel[p * MR + rows..(p + 1) * MR].fill(0.0);
            }
        }
    }
}

/// Packs the `mc×kc` block of A at `a` for the driver's tiles, from panel
/// `from` on: full panels as `pack` lays them out, and a partial last panel,
/// when the block has at least MR rows and the panel is not short
/// ([`Packers::short_rows`]), as the full panel of its last MR rows (see the
/// overlapping panel in the driver).
///
/// # Safety
/// As for `pack`: `a` covers the `mc×kc` block with strides `strides`, and
/// `out` holds `ceil(mc/MR)·MR·kc` floats.
unsafe fn pack_a_block<const MR: usize>(
    pack: Packers,
    mc: usize,
    kc: usize,
    a: *const f32,
    strides: [isize; 2],
    from: usize,
    out: &mut [f32],
) {
    let split = if pack.overlap::<MR>(mc) > 0 {
        mc / MR
    } else {
        mc.div_ceil(MR)
    };
    // SAFETY (both calls): rows from·MR.. and the last MR rows are
    // inside the block; each output range holds the panels it is given.
    unsafe {
        if split > from {
            let rows = (split * MR).min(mc) - from * MR;
            (pack.a)(
                rows,
                kc,
                a.offset((from * MR) as isize * strides[0]),
                strides,
                &mut out[from * MR * kc..split * MR * kc],
            );
        }
        if split < mc.div_ceil(MR) && split >= from {
            (pack.a)(
                MR,
                kc,
                a.offset((mc - MR) as isize * strides[0]),
                strides,
                &mut out[split * MR * kc..(split + 1) * MR * kc],
            );
        }
    }
}

/// The most floats of an MR×NR tile of any kernel (v5's 12×32).
const MAX_TILE: usize = 12 * 32;

/// Packs micro-panel `jp` of the `kc×nc` block of B at `b`: for each p, the
/// NR values `B[p][jp·NR + 0..NR]` (zero past `nc`).
///
/// # Safety
/// `b` must cover `kc×nc` elements with strides `[brs, bcs]`; `panel` must
/// hold `NR·kc` floats.
pub(super) unsafe fn pack_b_panel<const NR: usize>(
    jp: usize,
    kc: usize,
    nc: usize,
    b: *const f32,
    [brs, bcs]: [isize; 2],
    panel: &mut [f32],
) {
    let cols = NR.min(nc - jp * NR);
    // SAFETY: column jp·NR is inside B.
    let b0 = unsafe { b.offset((jp * NR) as isize * bcs) };
    if bcs != 1 && brs == 1 {
        // Column-major (transposed) B, e.g. Wᵀ of a linear layer: read each
        // column contiguously and scatter it down the panel.
        for j in 0..cols {
            // SAFETY: column j < cols ≤ nc of the block.
            let col = unsafe { b0.offset(j as isize * bcs) };
            for p in 0..kc {
                // SAFETY: p < kc.
                panel[p * NR + j] = unsafe { *col.add(p) };
            }
        }
        for p in 0..kc {
            panel[p * NR + cols..(p + 1) * NR].fill(0.0);
        }
        return;
    }
    for p in 0..kc {
        let dst = &mut panel[p * NR..(p + 1) * NR];
        // SAFETY: row p < kc of B is inside the block.
        let row = unsafe { b0.offset(p as isize * brs) };
        if bcs == 1 {
            // SAFETY: unit column stride: `cols` contiguous elements.
            dst[..cols].copy_from_slice(unsafe { std::slice::from_raw_parts(row, cols) });
        } else {
            for (j, d) in dst[..cols].iter_mut().enumerate() {
                // SAFETY: j < cols ≤ nc.
                *d = unsafe { *row.offset(j as isize * bcs) };
            }
        }
        dst[cols..].fill(0.0);
    }
}

/// Packs micro-panels `jp, jp+1, …` of the `kc×nc` block of B into
/// `panels` (`NR·kc` floats each, as many as it holds), one at a time with
/// [`pack_b_panel`].
///
/// # Safety
/// As for [`pack_b_panel`], for every panel; `panels.len()` must be a
/// multiple of `NR·kc`.
pub(super) unsafe fn pack_b_panels<const NR: usize>(
    jp: usize,
    kc: usize,
    nc: usize,
    b: *const f32,
    strides: [isize; 2],
    panels: &mut [f32],
) {
    for (i, panel) in panels.chunks_exact_mut(NR * kc).enumerate() {
        // SAFETY: forwarded; panel jp + i is inside the block.
        unsafe { pack_b_panel::<NR>(jp + i, kc, nc, b, strides, panel) };
    }
}

/// Micro-panels of a row-major B packed together: one pass then reads
/// `B_GROUP·NR` contiguous floats of each row (whole cache lines, which the
/// adjacent-line prefetcher pairs up) instead of NR.
const B_GROUP: usize = 4;

/// Prefetches the cache line holding `addr` into L1. A hint: it never
/// faults, whatever the address, so callers may compute it with wrapping
/// arithmetic. A no-op off x86-64.
#[inline(always)]
pub(super) fn prefetch_line<T>(addr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Prefetches the `mr×nr` C tile at `c` (the lines of each row's first and
/// last element): a micro-kernel needs it only after its k loop, so the
/// misses overlap with the FMAs instead of stalling the stores.
#[inline(always)]
pub(super) fn prefetch_c_tile(c: *mut f32, rs_c: isize, cs_c: isize, mr: usize, nr: usize) {
    for i in 0..mr {
        let row = c.wrapping_offset(i as isize * rs_c);
        prefetch_line(row);
        prefetch_line(row.wrapping_offset((nr as isize - 1) * cs_c));
    }
}

/// Prefetches the cache lines of a strided region of an operand a few at a
/// time, so that the next block arrives from memory while the micro-kernel
/// works on this one and the packing routine then reads it from cache.
///
/// The region is `runs` contiguous runs of `len` floats, `stride` floats
/// apart (the rows of a row-major block or the columns of a column-major
/// one). Prefetching never faults, so addresses are computed with wrapping
/// arithmetic and may touch a line just past the region.
#[derive(Clone, Copy)]
struct Prefetch {
    /// Start of the current run.
    run_at: *const u8,
    /// Bytes between runs.
    stride: isize,
    /// Runs left, the current one included.
    runs_left: usize,
    lines_per_run: usize,
    /// Next line of the current run.
    line: usize,
    /// Lines issued per call of [`Prefetch::some`].
    quota: usize,
}

impl Prefetch {
    /// Nothing to prefetch.
    const NONE: Prefetch = Prefetch {
        run_at: std::ptr::null(),
        stride: 0,
        runs_left: 0,
        lines_per_run: 0,
        line: 0,
        quota: 0,
    };

    /// The `rows×cols` block at `base` with strides `[rs, cs]`, spread over
    /// `calls` calls of [`Prefetch::some`]; nothing when neither stride is 1.
    fn block(base: *const f32, [rs, cs]: [isize; 2], rows: usize, cols: usize, calls: usize) -> Prefetch {
        let (runs, len, stride) = match (rs, cs) {
            (_, 1) => (rows, cols, rs),
            (1, _) => (cols, rows, cs),
            _ => return Prefetch::NONE,
        };
        // A run of len floats touches at most len/16 + 2 lines.
        let lines_per_run = len / 16 + 2;
        Prefetch {
            run_at: base.cast(),
            stride: stride * 4,
            runs_left: runs,
            lines_per_run,
            line: 0,
            quota: (runs * lines_per_run).div_ceil(calls.max(1)),
        }
    }

    /// Issues the next `quota` prefetches.
    #[inline]
    fn some(&mut self) {
        for _ in 0..self.quota {
            if self.runs_left == 0 {
                return;
            }
            prefetch_line(self.run_at.wrapping_add(64 * self.line));
            self.line += 1;
            if self.line == self.lines_per_run {
                self.line = 0;
                self.runs_left -= 1;
                self.run_at = self.run_at.wrapping_offset(self.stride);
            }
        }
    }
}

/// B micro-panels whose tiles run together, row panel by row panel (both
/// orders), and which the small-m order packs together (8·NR·KC floats,
/// 256 KiB for v4: in L2 next to the A block).
const TILE_GROUP: usize = 8;

/// [`crate::SharedMut`] for read-only operands.
#[derive(Clone, Copy)]
struct Shared(*const f32);
// SAFETY: A and B are only read while the GEMM runs (caller's contract).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

// Closures call these methods instead of reading `.0`, so they capture the
// Send/Sync wrapper rather than the bare pointer field.
impl Shared {
    fn get(self) -> *const f32 {
        self.0
    }
}

/// A and C of one batch of a product whose other operand, B, several
/// batches share (see [`sgemm_packed_batches`]).
#[derive(Clone, Copy)]
pub(super) struct Batch {
    pub a: *const f32,
    pub c: *mut f32,
}
// SAFETY: the driver only reads A, and hands each rayon worker a disjoint
// set of C's tiles or columns (as for `SharedMut`).
unsafe impl Send for Batch {}
// SAFETY: as above; the pointers themselves are only copied.
unsafe impl Sync for Batch {}

impl Batch {
    /// No batch: fills the unused places of a fixed array of batches.
    pub const NONE: Batch = Batch {
        a: std::ptr::null(),
        c: std::ptr::null_mut(),
    };
}

/// The most batches [`sgemm_packed_batches`] runs together.
pub(super) const MAX_BATCHES: usize = 4;

/// The packed GEMM driver: the loop nest in the module docs around
/// `kernel`, an MR×NR micro-kernel, for up to [`MAX_BATCHES`] products
/// `C_i = A_i·B` of the same sizes and strides (one product, or a linear
/// layer applied to several batches). In the small-m order each B group is
/// packed once and every batch's row panels run against it while it is in
/// L2, instead of one packing of B per batch
/// (for `x·W1ᵀ` of the article's D, a 6 MiB stream from memory each). Each
/// batch's tiles, k blocks and epilogue are those it has alone, so its bits
/// are too; other orders run the batches one after another.
///
/// # Safety
/// For every batch, the pointers must cover the extents implied by the sizes
/// and strides, and C must not alias A, B or another batch's A or C; `k > 0`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm_packed_batches<const MR: usize, const NR: usize>(
    kernel: MicroKernel,
    blk: Blocking,
    pack: Packers,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    batches: &[Batch],
    a_strides: [isize; 2],
    b: *const f32,
    b_strides: [isize; 2],
    beta: f32,
    c_strides: [isize; 2],
    epi: Epilogue,
) {
    debug_assert!(blk.mc.is_multiple_of(MR) && blk.small_m.is_multiple_of(MR));
    debug_assert!(blk.nc.is_multiple_of(NR) && MR * NR <= MAX_TILE);
    debug_assert!((epi.bias.is_none() && epi.act.is_none()) || c_strides[1] == 1);
    debug_assert!(epi.bias.is_none_or(|b| b.len() >= n));
    debug_assert!((1..=MAX_BATCHES).contains(&batches.len()));
    let threads = rayon::current_num_threads();
    let parallel = threads > 1 && 2 * m * n * k >= PAR_MIN_FLOPS;
    let slab = (B_GROUP * NR) * n.div_ceil(threads * B_GROUP * NR);
    let a_row_major = a_strides[1] == 1 && a_strides[0] != 1;
    if parallel && blk.small_order(pack.direct_a.is_some(), a_row_major, m, k) && slab < n {
        // A small batch on several threads: each runs the single-threaded
        // small-m order below on its own slab of columns (A is small or
        // cheap to pack twice, or read in place; B, the large operand, is
        // split). Slabs start on panel boundaries, so the tiles and their k
        // order, and hence the bits, are those of one thread. This includes
        // a short row-major A taller than small_m (the toy's 256-row hidden
        // layers): one fork-join and no A packing, where the general order
        // below packs B in one parallel pass and every A block again for
        // each column group in a second (1.45x on two threads against
        // 1.8x here).
        let b = Shared(b);
        (0..n.div_ceil(slab)).into_par_iter().for_each(|s| {
            let (j0, w) = (s * slab, slab.min(n - s * slab));
            // Pointer arithmetic only: column j0 of each C.
            let mut slab_batches = [Batch::NONE; MAX_BATCHES];
            for (to, from) in slab_batches.iter_mut().zip(batches) {
                *to = Batch {
                    a: from.a,
                    c: from.c.wrapping_offset(j0 as isize * c_strides[1]),
                };
            }
            // SAFETY: columns j0..j0 + w of B and of each C are inside them;
            // each slab writes only its own columns of C.
            unsafe {
                sgemm_packed_on::<MR, NR>(
                    false,
                    kernel,
                    blk,
                    pack,
                    m,
                    w,
                    k,
                    alpha,
                    &slab_batches[..batches.len()],
                    a_strides,
                    b.get().offset(j0 as isize * b_strides[1]),
                    b_strides,
                    beta,
                    c_strides,
                    Epilogue {
                        bias: epi.bias.map(|b| &b[j0..j0 + w]),
                        act: epi.act,
                    },
                )
            }
        });
        return;
    }
    // SAFETY: forwarded.
    unsafe {
        sgemm_packed_on::<MR, NR>(
            parallel, kernel, blk, pack, m, n, k, alpha, batches, a_strides, b, b_strides, beta, c_strides, epi,
        )
    }
}

/// [`sgemm_packed_batches`] with the choice of threading made: on rayon's pool
/// (`parallel`) or on the caller's thread alone.
///
/// # Safety
/// As for [`sgemm_packed_batches`].
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_packed_on<const MR: usize, const NR: usize>(
    parallel: bool,
    kernel: MicroKernel,
    blk: Blocking,
    pack: Packers,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    batches: &[Batch],
    a_strides: [isize; 2],
    b: *const f32,
    b_strides: [isize; 2],
    beta: f32,
    c_strides: [isize; 2],
    epi: Epilogue,
) {
    let a_row_major = a_strides[1] == 1 && a_strides[0] != 1;
    let small = !parallel && blk.small_order(pack.direct_a.is_some(), a_row_major, m, k);
    if batches.len() > 1 && !small {
        // Only the small-m order shares B's packing between batches.
        for one in batches {
            // SAFETY: forwarded, one batch at a time.
            unsafe {
                sgemm_packed_on::<MR, NR>(
                    parallel,
                    kernel,
                    blk,
                    pack,
                    m,
                    n,
                    k,
                    alpha,
                    std::slice::from_ref(one),
                    a_strides,
                    b,
                    b_strides,
                    beta,
                    c_strides,
                    epi,
                )
            }
        }
        return;
    }
    let threads = rayon::current_num_threads();
    // The general order below runs one batch (there is one by now).
    let (a, b, c) = (Shared(batches[0].a), Shared(b), SharedMut(batches[0].c));
    let [ars, acs] = a_strides;
    let [brs, bcs] = b_strides;
    let [crs, ccs] = c_strides;

    // The tiles of rows ic..ic+mc of C (the packed A block) against packed
    // B panels (`b_panels`, consecutive, NR columns each, covering columns
    // col0..col0+cols): row panel by row panel across the B panels, so C is
    // written MR rows × `cols` columns at a time, whole cache lines of each
    // row, rather than down one NR-wide column whose rows all fall into one
    // cache set when C's row stride is a multiple of 4 KiB (1024 floats).
    // `pf` are prefetches to interleave with the tiles, a share before each.
    // With `direct` (A at row ic, column pc of the block), full row panels
    // read A in place with `pack.direct_a` and only a partial last panel
    // comes from `a_pack`.
    //
    // Not an `unsafe fn` only because closures cannot be: every call site
    // must pass rows and columns inside C, packs that hold kc groups, and
    // tiles no other thread writes.
    #[allow(clippy::too_many_arguments)]
    let tiles = |c: SharedMut<f32>,
                 a_pack: &[f32],
                 direct: Option<(DirectAKernel, *const f32)>,
                 ic: usize,
                 mc: usize,
                 b_panels: *const f32,
                 col0: usize,
                 cols: usize,
                 kc: usize,
                 beta_blk: f32,
                 (first, last): (bool, bool),
                 pf: &mut [Prefetch]| {
        // The overlapping last panel's tiles land here first (zeroed once
        // per call, not per tile: a memset per tile showed in the profile).
        let mut tmp = [0.0f32; MAX_TILE];
        // A row of the tile row panel at `r`, columns col0..col0 + cols
        // (unit column stride whenever there is an epilogue).
        // SAFETY (for callers): row r and these columns are inside C, and
        // this call is their only writer.
        let row = |r: usize| unsafe {
            std::slice::from_raw_parts_mut(c.get().offset(r as isize * crs + col0 as isize), cols)
        };
        for ip in 0..mc.div_ceil(MR) {
            let rows = ic + ip * MR..ic + ip * MR + MR.min(mc - ip * MR);
            if let (true, Some(bias)) = (first, epi.bias) {
                rows.clone()
                    .for_each(|r| row(r).copy_from_slice(&bias[col0..col0 + cols]));
            }
            // A partial last panel of a block of at least MR rows runs as
            // the full panel ending at the block's last row: its first
            // `shift` rows are the previous panel's last ones, computed again
            // (same sums, same bits) and not stored. This keeps the full
            // tile's kernel (and an in-place A) for the edge rows, where a
            // zero-padded panel took a packed A and an out-of-line store and
            // cost about twice a full panel (`[100×12288]` rows: 2.5 % of
            // the GEMM).
            //
            // A short last panel (`pack.short_rows`) is packed with its own
            // rows and runs as a short tile instead: same sums, less work.
            let left = mc - ip * MR;
            let short = pack.short(left);
            let shift = if left < MR { pack.overlap::<MR>(mc) } else { 0 };
            let in_place = direct.filter(|_| mc >= MR && !short);
            for q in 0..cols.div_ceil(NR) {
                pf.iter_mut().for_each(Prefetch::some);
                // Pointer arithmetic only; the call-site contract keeps both
                // inside their buffers.
                let b_q = b_panels.wrapping_add(q * NR * kc);
                let c_q = c
                    .get()
                    .wrapping_offset((ic + ip * MR) as isize * crs + (col0 + q * NR) as isize * ccs);
                let nr = NR.min(cols - q * NR);
                // An overlapping panel's tile goes whole (MR×nr, plain sums)
                // into `tmp`; its last `left` rows then go into C as an edge
                // tile is stored.
                let (dst, rs, cs, al, be, mr) = if shift > 0 {
                    (tmp.as_mut_ptr(), NR as isize, 1, 1.0, 0.0, MR)
                } else {
                    (c_q, crs, ccs, alpha, beta_blk, MR.min(left))
                };
                match in_place {
                    // SAFETY: the call-site contract above; rows
                    // ip·MR - shift.. of the block are MR full rows of A
                    // (shift > 0 only when the block has at least MR).
                    Some((kd, a_at)) => unsafe {
                        kd(
                            kc,
                            a_at.offset((ip * MR - shift) as isize * ars),
                            ars,
                            b_q,
                            dst,
                            rs,
                            cs,
                            al,
                            be,
                            nr,
                        )
                    },
                    // SAFETY: the call-site contract above; the packer put
                    // an overlapping panel's rows, or a short panel's own
                    // rows (zero-padded), in panel ip.
                    None => unsafe { kernel(kc, a_pack.as_ptr().add(ip * MR * kc), b_q, dst, rs, cs, al, be, mr, nr) },
                }
                if shift > 0 {
                    // SAFETY: the call-site contract above.
                    unsafe { store_tile(&tmp[shift * NR..], NR, c_q, crs, ccs, alpha, beta_blk, left, nr) };
                }
            }
            if let (true, Some(act)) = (last, epi.act) {
                rows.for_each(|r| act(row(r)));
            }
        }
    };
    let long = blk.long_batch(m, k);
    let (depth, nc_blk) = blk.blocks(m, k);
    for jc in (0..n).step_by(nc_blk) {
        let nc = nc_blk.min(n - jc);
        let n_panels = nc.div_ceil(NR);
        for pc in (0..k).step_by(depth) {
            let kc = depth.min(k - pc);
            // Later k blocks add onto what the first one stored; with a
            // bias the first adds onto the bias the epilogue wrote.
            let beta_blk = if pc == 0 && epi.bias.is_none() { beta } else { 1.0 };
            let first_last = (pc == 0, pc + kc == k);
            // SAFETY: (pc, jc) is inside B.
            let b_blk = Shared(unsafe { b.get().offset(pc as isize * brs + jc as isize * bcs) });
            if small {
                // Small m (a batch of ≤ small_m rows, or a short row-major
                // A: `Blocking::small_order`): A is packed once, or read in
                // place, and stays in L2; B is packed a group of TILE_GROUP
                // micro-panels at a time just before the row panels use
                // them, so it goes from memory to L2 once instead of through
                // a block-sized buffer, and a row-major B is read in whole
                // lines. Same tiles, same k order, so the same bits as the
                // path below.
                //
                // The operands stream from memory exactly once here, so while
                // the tiles of one B group run, the source of the next group
                // (after the last group: the next k block's first) is
                // prefetched, a few lines per tile, and so is the next k block
                // of a column-major A. A row-major A's rows are KC-long runs
                // that the hardware prefetchers follow; prefetching them as
                // well crowded the next B group out of L2 (`x·W1ᵀ`, `dy·W2` of
                // the article: 3 % slower).
                let m_panels = m.div_ceil(MR);
                // A long batch's deeper k blocks take fewer panels per
                // group: the group's packed bytes stay the same.
                let group = if long {
                    TILE_GROUP * blk.kc / blk.long_kc
                } else {
                    TILE_GROUP
                };
                let next_k = (pc + kc < k).then(|| depth.min(k - pc - kc));
                // Per batch: the next k block of a column-major A to
                // prefetch, and the A block of this k block, read in place
                // (a long row-major A, deeper than KC: it streams from
                // memory once, like B, so the kernel reads it where it can,
                // saving the core time of packing it; or a row-major A taller
                // than small_m, which `small_order` admits only when it fits
                // in L2 as it lies; only a short last row panel is packed) or
                // packed (a short A: its block is reused for every column
                // block).
                let mut next_a = [Prefetch::NONE; MAX_BATCHES];
                let mut a_blk = [std::ptr::null::<f32>(); MAX_BATCHES];
                for (i, one) in batches.iter().enumerate() {
                    // SAFETY (pointer arithmetic): (0, pc) is inside A.
                    a_blk[i] = unsafe { one.a.offset(pc as isize * acs) };
                    if let Some(kn) = next_k.filter(|_| acs != 1) {
                        // SAFETY (pointer arithmetic): column pc + kc < k is inside A.
                        let at = unsafe { one.a.offset((pc + kc) as isize * acs) };
                        next_a[i] = Prefetch::block(at, a_strides, m, kn, m_panels * n_panels);
                    }
                }
                let mut next_b = Prefetch::NONE;
                let direct_a = pack.direct_a.filter(|_| a_row_major && (k > blk.kc || m > blk.small_m));
                let a_len = m_panels * MR * kc;
                with_buffer(&PACK_A, batches.len() * a_len, |a_packs| {
                    // Read in place, A needs packing only when it has fewer
                    // than MR rows (no full panel to overlap) or a short
                    // last panel (that one alone).
                    let from = match direct_a {
                        Some(_) if m >= MR && pack.short(m % MR) => m / MR,
                        Some(_) if m >= MR => m_panels,
                        _ => 0,
                    };
                    for (i, a_pack) in a_packs.chunks_exact_mut(a_len).enumerate() {
                        // SAFETY: the m×kc block is inside A; a_pack holds its panels.
                        unsafe { pack_a_block::<MR>(pack, m, kc, a_blk[i], a_strides, from, a_pack) };
                    }
                    with_buffer(&PACK_B, group * NR * kc, |panels| {
                        for jp0 in (0..n_panels).step_by(group) {
                            let count = group.min(n_panels - jp0);
                            let panels = &mut panels[..count * NR * kc];
                            // SAFETY: the kc×nc block is inside B; `panels`
                            // holds `count` panels, the last of them jp0 + count - 1 < n_panels.
                            unsafe { (pack.b)(jp0, kc, nc, b_blk.get(), b_strides, panels) };
                            let jn = jp0 + count;
                            // Spread over the tiles of every batch.
                            let calls = count * m_panels * batches.len();
                            next_b = match next_k {
                                _ if long => Prefetch::NONE,
                                _ if jn < n_panels => {
                                    let cols = (group * NR).min(nc - jn * NR);
                                    // SAFETY (pointer arithmetic): column jn·NR < nc of the block.
                                    let at = unsafe { b_blk.get().offset((jn * NR) as isize * bcs) };
                                    Prefetch::block(at, b_strides, kc, cols, calls)
                                }
                                Some(kn) => {
                                    // SAFETY (pointer arithmetic): row pc + kc < k of B.
                                    let at = unsafe { b_blk.get().offset(kc as isize * brs) };
                                    Prefetch::block(at, b_strides, kn, (group * NR).min(nc), calls)
                                }
                                _ => Prefetch::NONE,
                            };
                            // Each batch's rows 0..m against the group's columns.
                            let col0 = jc + jp0 * NR;
                            for (i, one) in batches.iter().enumerate() {
                                let mut pf = [next_a[i], next_b];
                                tiles(
                                    SharedMut(one.c),
                                    &a_packs[i * a_len..(i + 1) * a_len],
                                    direct_a.map(|kd| (kd, a_blk[i])),
                                    0,
                                    m,
                                    panels.as_ptr(),
                                    col0,
                                    (count * NR).min(jc + nc - col0),
                                    kc,
                                    beta_blk,
                                    first_last,
                                    &mut pf,
                                );
                                [next_a[i], next_b] = pf;
                            }
                        }
                    })
                });
                continue;
            }
            with_buffer(&PACK_B, n_panels * NR * kc, |b_pack| {
                if parallel {
                    b_pack
                        .par_chunks_mut(B_GROUP * NR * kc)
                        .enumerate()
                        .for_each(|(g, panels)| {
                            // SAFETY: the kc×nc block is inside B; `panels` holds
                            // whole panels, starting with panel g·B_GROUP.
                            unsafe { (pack.b)(g * B_GROUP, kc, nc, b_blk.get(), b_strides, panels) }
                        });
                } else {
                    // SAFETY: as above, every panel of the block in one call.
                    unsafe { (pack.b)(0, kc, nc, b_blk.get(), b_strides, b_pack) }
                }
                let b_pack = Shared(b_pack.as_ptr());
                // One work item: rows ic.. of A against B panels jp0..jp1.
                let item = |ic: usize, jp0: usize, jp1: usize| {
                    let mc = blk.mc.min(m - ic);
                    let m_panels = mc.div_ceil(MR);
                    with_buffer(&PACK_A, m_panels * MR * kc, |a_pack| {
                        // SAFETY: (ic, pc) is inside A and the mc×kc block too.
                        unsafe {
                            let a_blk = a.get().offset(ic as isize * ars + pc as isize * acs);
                            pack_a_block::<MR>(pack, mc, kc, a_blk, a_strides, 0, a_pack);
                        }
                        // On one thread the next block of a column-major A
                        // (dyᵀ of a weight gradient) is prefetched while this
                        // one's tiles run: it is read in short runs (mc
                        // floats) a whole row of dy apart, which the hardware
                        // prefetchers do not follow. A row-major A's runs are
                        // KC long, and they do.
                        let next = ic + mc;
                        let mut pf = [if !parallel && ars == 1 && acs != 1 && next < m && jp1 > jp0 {
                            // SAFETY (pointer arithmetic): row next < m of A.
                            let at = unsafe { a.get().offset(next as isize * ars + pc as isize * acs) };
                            Prefetch::block(at, a_strides, blk.mc.min(m - next), kc, m_panels * (jp1 - jp0))
                        } else {
                            Prefetch::NONE
                        }];
                        // B panels a group at a time (in L2 together), the
                        // A block's row panels across each group.
                        for jg in (jp0..jp1).step_by(TILE_GROUP) {
                            let count = TILE_GROUP.min(jp1 - jg);
                            // SAFETY: jg < n_panels: the panels are inside b_pack.
                            let b_panels = unsafe { b_pack.get().add(jg * NR * kc) };
                            let col0 = jc + jg * NR;
                            // This item is the only writer of these tiles.
                            tiles(
                                c,
                                a_pack,
                                None,
                                ic,
                                mc,
                                b_panels,
                                col0,
                                (count * NR).min(jc + nc - col0),
                                kc,
                                beta_blk,
                                first_last,
                                &mut pf,
                            );
                        }
                    })
                };
                let m_blocks = m.div_ceil(blk.mc);
                if parallel {
                    // Few row blocks (small batch): also split the B panels so
                    // every thread gets work. Tile boundaries stay the same.
                    let groups = (4 * threads).div_ceil(m_blocks).clamp(1, n_panels);
                    (0..m_blocks * groups).into_par_iter().for_each(|w| {
                        let (ib, g) = (w / groups, w % groups);
                        item(ib * blk.mc, g * n_panels / groups, (g + 1) * n_panels / groups);
                    });
                } else {
                    for ib in 0..m_blocks {
                        item(ib * blk.mc, 0, n_panels);
                    }
                }
            });
        }
    }
}

/// Writes an MR×NR accumulator tile (row-major, leading dimension `ld`) into
/// the `mr×nr` corner of C: `C = alpha·acc + beta·C` (C not read when
/// `beta == 0`). The edge-tile path every micro-kernel shares.
///
/// # Safety
/// The `mr×nr` tile at `c` with strides `rs_c`, `cs_c` must be writable.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(super) unsafe fn store_tile(
    acc: &[f32],
    ld: usize,
    c: *mut f32,
    rs_c: isize,
    cs_c: isize,
    alpha: f32,
    beta: f32,
    mr: usize,
    nr: usize,
) {
    for i in 0..mr {
        for j in 0..nr {
            // SAFETY: i < mr, j < nr: inside the tile.
            unsafe {
                super::store_scaled(
                    c.offset(i as isize * rs_c + j as isize * cs_c),
                    acc[i * ld + j],
                    alpha,
                    beta,
                )
            };
        }
    }
}

/// v3 micro-kernel shape: 4 rows × 8 columns, 32 accumulators. Without SIMD
/// intrinsics the compiler keeps them in (SSE) registers; the point of v3 is
/// the memory layout, not the arithmetic.
pub(super) const V3_MR: usize = 4;
/// See [`V3_MR`].
pub(super) const V3_NR: usize = 8;
/// v3 blocking: A block 96×256 (96 KiB, L2), B block 256×2048 (2 MiB, L3).
pub(super) const V3_BLOCKING: Blocking = Blocking {
    mc: 96,
    kc: 256,
    nc: 2048,
    small_m: 96,
    long_kc: 0,
};

/// v3 micro-kernel: portable Rust over the packed panels. Each step of p
/// loads MR values of A and NR of B (unit stride, from L1/L2) and does MR·NR
/// multiply-adds into accumulators that never leave registers until the end.
///
/// # Safety
/// See [`MicroKernel`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kernel_v3_scalar_4x8(
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
    // SAFETY: the packed panels hold kc groups of MR and NR floats.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * V3_MR),
            std::slice::from_raw_parts(b, kc * V3_NR),
        )
    };
    let mut acc = [[0.0f32; V3_NR]; V3_MR];
    for (ap, bp) in a.chunks_exact(V3_MR).zip(b.chunks_exact(V3_NR)) {
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (cij, &bj) in row.iter_mut().zip(bp) {
                *cij += ai * bj;
            }
        }
    }
    // SAFETY: forwarded from the caller's contract.
    unsafe { store_tile(acc.as_flattened(), V3_NR, c, rs_c, cs_c, alpha, beta, mr, nr) };
}
