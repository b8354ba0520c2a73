use super::*;
use proptest::prelude::*;

/// Deterministic floats in [-1, 1).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    crate::probe::bench_data(len, seed, 1.0)
}

/// A strided operand: storage, strides, and the element accessor.
struct Mat {
    data: Vec<f32>,
    strides: [isize; 2],
}

impl Mat {
    /// rows×cols, row-major with 3 padding columns, or column-major
    /// (`transposed`) with 2 padding rows, so no stride is the trivial one.
    fn new(rows: usize, cols: usize, transposed: bool, seed: u64) -> Mat {
        let (strides, len) = if transposed {
            let ld = rows + 2;
            ([1, ld as isize], ld * cols.max(1))
        } else {
            let ld = cols + 3;
            ([ld as isize, 1], ld * rows.max(1))
        };
        Mat {
            data: fill(len, seed),
            strides,
        }
    }
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.strides[0] as usize + j * self.strides[1] as usize]
    }
}

/// Checks `variant` against an f64 reference on one problem.
#[allow(clippy::too_many_arguments)]
fn check(variant: Variant, m: usize, n: usize, k: usize, ta: bool, tb: bool, tc: bool, alpha: f32, beta: f32) {
    let a = Mat::new(m, k, ta, 1);
    let b = Mat::new(k, n, tb, 2);
    let mut c = Mat::new(m, n, tc, 3);
    if beta == 0.0 {
        // beta == 0 must overwrite, even NaN.
        c.data.iter_mut().step_by(2).for_each(|x| *x = f32::NAN);
    }
    let c0: Vec<f32> = (0..m * n).map(|x| c.at(x / n, x % n)).collect();
    sgemm_variant(
        variant,
        m,
        n,
        k,
        alpha,
        &a.data,
        a.strides,
        &b.data,
        b.strides,
        beta,
        &mut c.data,
        c.strides,
    );
    for i in 0..m {
        for j in 0..n {
            let (mut dot, mut mag) = (0.0f64, 0.0f64);
            for p in 0..k {
                let t = a.at(i, p) as f64 * b.at(p, j) as f64;
                dot += t;
                mag += t.abs();
            }
            let prev = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c0[i * n + j] as f64
            };
            let want = alpha as f64 * dot + prev;
            let tol = 4.0 * (k as f64 + 2.0) * f32::EPSILON as f64 * (alpha.abs() as f64 * mag + prev.abs()) + 1e-6;
            let got = c.at(i, j) as f64;
            assert!(
                (got - want).abs() <= tol,
                "{variant} m={m} n={n} k={k} ta={ta} tb={tb} tc={tc} alpha={alpha} beta={beta}: C[{i}][{j}] = {got}, want {want} (tol {tol})"
            );
        }
    }
}

#[test]
fn every_variant_matches_f64_reference_on_odd_shapes() {
    let shapes = [
        (1, 1, 1),
        (1, 37, 19),
        (29, 1, 23),
        (7, 13, 1),
        (6, 16, 256),
        (13, 33, 300),
        (65, 47, 129),
        // Two k blocks for every packed variant (v4's run up to 640 deep).
        (150, 70, 700),
        // Many B panels in groups, with a short last group and an edge panel,
        // and a second NC block that is not a whole number of groups.
        (100, 600, 300),
        (7, 3100, 20),
    ];
    for &v in &Variant::available() {
        for &(m, n, k) in &shapes {
            for (ta, tb, tc) in [
                (false, false, false),
                (true, false, false),
                (false, true, false),
                (true, true, true),
            ] {
                check(v, m, n, k, ta, tb, tc, 1.0, 0.0);
            }
            check(v, m, n, k, false, false, false, 0.5, 1.0);
            check(v, m, n, k, false, true, false, -1.5, 0.25);
        }
    }
}

#[test]
fn skinny_shapes_match_reference_in_every_layout() {
    // The toy MLP's first/last layers and their gradients, plus odd sizes
    // around v6's block widths (8, 16, 32) and both sides of SKINNY.
    let shapes = [
        (256, 2, 128),
        (256, 128, 2),
        (2, 128, 256),
        (128, 2, 256),
        (256, 1, 128),
        (1, 128, 256),
        (37, 7, 19),
        (7, 45, 17),
        (33, 71, 7),
        (19, 3, 8),
        (5, 5, 5),
        (9, 8, 9),
    ];
    for &v in &Variant::available() {
        for &(m, n, k) in &shapes {
            for ta in [false, true] {
                for tb in [false, true] {
                    for tc in [false, true] {
                        check(v, m, n, k, ta, tb, tc, 1.0, 0.0);
                    }
                }
            }
            check(v, m, n, k, true, false, false, 0.5, 1.0);
            check(v, m, n, k, false, true, true, -1.5, 0.25);
        }
    }
}

#[test]
fn k_zero_scales_c_by_beta() {
    for &v in &Variant::available() {
        check(v, 5, 7, 0, false, false, false, 1.0, 0.0);
        check(v, 5, 7, 0, false, false, false, 1.0, 2.0);
    }
}

#[test]
fn gan_layer_shapes_match_reference() {
    for &v in &Variant::available() {
        // forward x·Wᵀ, grad-input dy·W, grad-weight dyᵀ·x of the 784→128 layer.
        check(v, 64, 128, 784, false, true, false, 1.0, 0.0);
        check(v, 64, 784, 128, false, false, false, 1.0, 0.0);
        check(v, 128, 784, 64, true, false, false, 1.0, 1.0);
    }
}

#[test]
fn dispatch_sends_large_products_to_the_packed_kernel() {
    // v5 only where 512-bit FMAs run at full width, else v4 where there is AVX2.
    let big = choose_variant(1024, 1024, 1024);
    assert!(big.is_available());
    if Variant::V5Avx512.is_available() && !super::avx512_is_split() {
        assert_eq!(big, Variant::V5Avx512);
    } else if Variant::V4Avx2.is_available() {
        assert_eq!(big, Variant::V4Avx2);
    }
    let skinny = if Variant::V6Skinny.is_available() {
        Variant::V6Skinny
    } else {
        Variant::V2Blocked
    };
    for (m, n, k) in [(256, 2, 128), (256, 128, 2), (2, 128, 256), (256, 1, 128)] {
        assert_eq!(choose_variant(m, n, k), skinny, "{m}x{n}x{k}");
    }
}

#[test]
fn cpu_families_decode_from_cpuid_signatures() {
    // CPUID leaf 1 EAX of real parts: EPYC 9004 (Zen 4) and 7003 (Zen 3)
    // are both family 19h, EPYC 9005 (Zen 5) is 1Ah, a Sapphire Rapids Xeon 6.
    for (eax, family) in [
        (0x00a1_0f11, 0x19),
        (0x00a0_0f11, 0x19),
        (0x00b0_0f21, 0x1a),
        (0x0008_06f8, 6),
    ] {
        assert_eq!(super::x86_family(eax), family, "{eax:#x}");
    }
}

#[test]
fn variant_names_round_trip() {
    for &v in Variant::all() {
        assert_eq!(Variant::from_name(v.name()), Some(v));
    }
    assert_eq!(Variant::from_name("v4"), Some(Variant::V4Avx2));
    assert_eq!(Variant::from_name("nope"), None);
}

fn run_in_pool(threads: usize, v: Variant, m: usize, n: usize, k: usize) -> Vec<u32> {
    let a = fill(m * k, 7);
    let b = fill(k * n, 8);
    let mut c = fill(m * n, 9);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        sgemm_variant(
            v,
            m,
            n,
            k,
            0.7,
            &a,
            [k as isize, 1],
            &b,
            [1, k as isize],
            0.3,
            &mut c,
            [n as isize, 1],
        )
    });
    c.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn results_are_bit_identical_across_thread_counts() {
    // Above the parallel threshold (2·m·n·k ≥ PAR_MIN_FLOPS), with edge
    // tiles in both directions and several k blocks: row blocks split over
    // threads, a batch just above the small-batch limit (the B-panel split),
    // and a batch below it (column slabs, each in the single-threaded
    // small-m order); last, the seed's 784-wide product and the toy's
    // 128-wide one, just above the threshold.
    for (m, n, k) in [
        (301, 603, 777),
        (150, 1000, 900),
        (100, 1100, 1300),
        (100, 48, 2000),
        (64, 784, 128),
        (256, 128, 128),
    ] {
        assert!(2 * m * n * k >= super::packed::PAR_MIN_FLOPS);
        for &v in Variant::available().iter().filter(|v| v.is_parallel()) {
            let one = run_in_pool(1, v, m, n, k);
            for threads in [2, 3] {
                assert!(
                    one == run_in_pool(threads, v, m, n, k),
                    "{v} differs with {threads} threads"
                );
            }
        }
    }
}

#[test]
fn k_blocks_are_evened_out_without_adding_passes() {
    let blocking = |kc| super::packed::Blocking {
        mc: 48,
        kc,
        nc: 3072,
        small_m: 144,
        long_kc: 0,
    };
    let blk = blocking(256);
    assert_eq!(blk.depth(100), 100);
    assert_eq!(blk.depth(256), 256);
    assert_eq!(blk.depth(300), 300, "one block up to 5/4·KC");
    assert_eq!(blk.depth(784), 262, "784 = 262 + 262 + 260, not 3·256 + 16");
    assert_eq!(blk.depth(12288), 256);
    // v4's KC of 512: the seed's 784 in two halves, 1024 in two blocks.
    let v4 = blocking(512);
    assert_eq!((v4.depth(640), v4.depth(784), v4.depth(1024)), (640, 392, 512));
    // A long batch (at most small_m rows, deeper than KC) with a long_kc
    // of 1024: 784 in one block, 12288 in twelve, and B blocks half as
    // wide; anything else keeps KC and NC.
    let long = super::packed::Blocking { long_kc: 1024, ..v4 };
    assert_eq!(long.blocks(64, 784), (784, 1536));
    assert_eq!(long.blocks(100, 12288), (1024, 1536));
    assert_eq!(long.blocks(100, 512), (512, 3072), "not deeper than KC");
    assert_eq!(long.blocks(150, 784), (392, 3072), "taller than small_m");
    assert_eq!(v4.blocks(64, 784), (392, 3072), "no long_kc");
    // The small-batch order: up to small_m rows, or a row-major A of at most
    // small_m·KC elements read in place (the toy's 256×128 hidden layers).
    assert!(v4.small_order(false, false, 144, 5000));
    assert!(v4.small_order(true, true, 256, 128));
    assert!(
        !v4.small_order(true, false, 256, 128),
        "a column-major A is packed per mc rows"
    );
    assert!(!v4.small_order(false, true, 256, 128), "no in-place kernel");
    assert!(!v4.small_order(true, true, 256, 512), "A larger than small_m·KC");
    for kc in [256, 512] {
        let blk = blocking(kc);
        for k in kc + 1..20_000 {
            let d = blk.depth(k);
            let blocks = k.div_ceil(d);
            let last = k - (blocks - 1) * d;
            assert!(d <= kc + kc / 4, "KC {kc}, k {k}: depth {d}");
            assert!(blocks <= k.div_ceil(kc), "KC {kc}, k {k}: {blocks} blocks of {d}");
            assert!(2 * last >= d, "KC {kc}, k {k}: last block {last} of {d}");
        }
    }
}

#[test]
fn short_and_narrow_edge_tiles_give_the_bits_of_full_tiles() {
    // The last row panel of 1–4 rows and the last column panel of 1–8
    // columns run shorter k loops. Each C element must still get the same
    // FMAs in the same order as in a full tile: the product on the leading
    // m×n corner of operands whose full tiles cover it (m rounded up to 6, n
    // to 16, same storage and strides) has to give the same bits, and leave
    // the rest of C alone. Shapes: the small-m order with a packed and an
    // in-place A (k > KC), the blocked order (m > 144), and a single short
    // panel. (With beta·C added, edge tiles round `alpha·acc + beta·C` twice
    // where full tiles use one FMA, so beta is 0, or 1 with alpha 1, as in
    // a gradient accumulated into C.) v4 and v5 are the kernels with such
    // tiles (v5's: 1–4 and 5–8 rows, 1–16 columns); v6 sends some of the
    // padded shapes down its skinny paths instead.
    for (v, tile_m, tile_n) in [(Variant::V4Avx2, 6, 16), (Variant::V5Avx512, 12, 32)] {
        if !v.is_available() {
            eprintln!("skipped: {v} is not available on this CPU");
            continue;
        }
        for (m, n, k, ta) in [
            (64usize, 100usize, 300, false),
            (100, 120, 700, false),
            (100, 40, 700, true),
            (62, 8, 10, false),
            (148, 36, 64, false),
            (4, 20, 30, false),
            (65, 47, 129, false),
            (64, 100, 128, false),
            (7, 14, 500, true),
        ] {
            let (mf, nf) = (m.div_ceil(tile_m) * tile_m, n.div_ceil(tile_n) * tile_n);
            let a = Mat::new(mf, k, ta, 31);
            let b = Mat::new(k, nf, false, 32);
            let ldc = nf + 1;
            let c0 = fill(mf * ldc, 33);
            let run = |m: usize, n: usize, alpha: f32, beta: f32| {
                let mut c = c0.clone();
                sgemm_variant(
                    v,
                    m,
                    n,
                    k,
                    alpha,
                    &a.data,
                    a.strides,
                    &b.data,
                    b.strides,
                    beta,
                    &mut c,
                    [ldc as isize, 1],
                );
                c.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            for (alpha, beta) in [(0.7, 0.0), (1.0, 1.0)] {
                let (part, full) = (run(m, n, alpha, beta), run(mf, nf, alpha, beta));
                for i in 0..mf {
                    for j in 0..ldc {
                        let want = if i < m && j < n {
                            full[i * ldc + j]
                        } else {
                            c0[i * ldc + j].to_bits()
                        };
                        assert_eq!(
                            part[i * ldc + j],
                            want,
                            "{v} {m}x{n}x{k} (A transposed: {ta}, beta {beta}) at ({i}, {j})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn reading_a_in_place_gives_the_bits_of_packing_it() {
    // A small batch with a long row-major A, and a short batch with a
    // short one, take the in-place kernel; the same values stored
    // column-major are packed. Same FMAs, same order.
    if !Variant::V4Avx2.is_available() {
        return;
    }
    // One thread: above the split threshold the block order packs A anyway.
    // 203 rows end on an overlapping panel read in place.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    for (m, n, k) in [(100, 70, 700), (256, 70, 128), (250, 40, 200), (203, 40, 300)] {
        let a = fill(m * k, 21);
        let a_cm: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
        let b = fill(k * n, 22);
        let run = |a: &[f32], strides: [isize; 2]| {
            let mut c = fill(m * n, 23);
            sgemm_variant(
                Variant::V4Avx2,
                m,
                n,
                k,
                0.9,
                a,
                strides,
                &b,
                [n as isize, 1],
                0.5,
                &mut c,
                [n as isize, 1],
            );
            c.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        let (in_place, packed) = pool.install(|| (run(&a, [k as isize, 1]), run(&a_cm, [1, m as isize])));
        assert!(in_place == packed, "{m}x{n}x{k}");
    }
}

#[test]
fn dispatch_runs_through_matmul_gemm() {
    let (m, n, k) = (33, 45, 70);
    let a = fill(m * k, 4);
    let b = fill(k * n, 5);
    let mut c = vec![0.0f32; m * n];
    let mut r = vec![0.0f32; m * n];
    crate::matmul::gemm(
        m,
        n,
        k,
        1.0,
        &a,
        [k as isize, 1],
        &b,
        [n as isize, 1],
        0.0,
        &mut c,
        [n as isize, 1],
    );
    sgemm_variant(
        Variant::V1Naive,
        m,
        n,
        k,
        1.0,
        &a,
        [k as isize, 1],
        &b,
        [n as isize, 1],
        0.0,
        &mut r,
        [n as isize, 1],
    );
    for (x, y) in c.iter().zip(&r) {
        assert!((x - y).abs() < 1e-4);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn packed_variants_match_reference_on_random_shapes(
        m in 1usize..40, n in 1usize..40, k in 0usize..300,
        ta: bool, tb: bool, tc: bool,
        ab in prop::sample::select(vec![(1.0f32, 0.0f32), (2.0, 1.0), (-0.5, 0.5)]),
    ) {
        for &v in Variant::available().iter().filter(|v| **v != Variant::V1Naive) {
            check(v, m, n, k, ta, tb, tc, ab.0, ab.1);
        }
    }
}

#[test]
fn skinny_paths_handle_operands_without_a_unit_stride() {
    // Views like a narrowed-then-transposed tensor have no unit stride;
    // v6 copies them before its vector loops. Compared with v1 on the same
    // strided data.
    for (m, n, k) in [(20, 3, 40), (3, 30, 40), (20, 30, 5), (17, 1, 9)] {
        let (sa, sb) = ([2 * k as isize + 1, 2], [2, 2 * k as isize + 3]);
        let a = fill(m * (2 * k + 1) + 2 * k, 11);
        let b = fill(2 * k + n * (2 * k + 3), 12);
        let run = |v: Variant| {
            let mut c = fill(m * n * 2, 13);
            sgemm_variant(v, m, n, k, 1.5, &a, sa, &b, sb, 0.5, &mut c, [1, 2 * m as isize]);
            c
        };
        let want = run(Variant::V1Naive);
        for &v in &Variant::available() {
            for (x, y) in run(v).iter().zip(&want) {
                assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{v} {m}x{n}x{k}: {x} vs {y}");
            }
        }
    }
}

/// sgemm_fused against its definition: bias rows, `sgemm(beta = 1)` and a
/// separate activation pass, bit for bit, on `threads` threads.
fn check_fused(
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    tb: bool,
    bias: bool,
    act: Option<crate::elementwise::UnaryOp>,
) {
    let a = Mat::new(m, k, false, 11);
    let b = Mat::new(k, n, tb, 12);
    let bias_v = fill(n, 13);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let f = move |row: &mut [f32]| {
        if let Some(op) = act {
            crate::elementwise::unary_in_place(op, row)
        }
    };
    let mut got = vec![f32::NAN; m * n];
    let epi = Epilogue {
        bias: bias.then_some(&bias_v[..]),
        act: act.map(|_| &f as &(dyn Fn(&mut [f32]) + Sync)),
    };
    pool.install(|| sgemm_fused(m, n, k, &a.data, a.strides, &b.data, b.strides, epi, &mut got));
    let mut want: Vec<f32> = if bias { bias_v.repeat(m) } else { vec![f32::NAN; m * n] };
    let beta = if bias { 1.0 } else { 0.0 };
    let v = choose_variant(m, n, k);
    pool.install(|| {
        sgemm_variant(
            v,
            m,
            n,
            k,
            1.0,
            &a.data,
            a.strides,
            &b.data,
            b.strides,
            beta,
            &mut want,
            [n as isize, 1],
        )
    });
    if let Some(op) = act {
        let x = want.clone();
        crate::elementwise::unary(op, &x, &mut want);
    }
    let same = got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
    assert!(
        same,
        "{m}×{n}×{k} (B transposed: {tb}), bias {bias}, {act:?}, {threads} threads ({v})"
    );
}

#[test]
fn fused_bias_and_activation_give_the_bits_of_separate_passes() {
    use crate::elementwise::UnaryOp::{LeakyRelu, Relu, Sigmoid, Tanh};
    // Small batch (one and several k blocks, in-place A), a short batch above
    // 144 rows read in place (200×300), one too large for that (the block
    // order, 300×300), edge tiles, the skinny small-k path's own epilogue
    // (the toy's 2-wide input; 8-wide and scalar column tails), and shapes
    // that fall back (skinny, tiny); with and without bias and activation.
    for (m, n, k) in [
        (100, 300, 130),
        (100, 200, 700),
        (200, 150, 300),
        (300, 150, 300),
        (256, 128, 2),
        (13, 37, 5),
        (5, 45, 1),
        (3, 40, 50),
        (7, 9, 11),
    ] {
        for tb in [false, true] {
            for (bias, act) in [
                (true, Some(Sigmoid)),
                (true, None),
                (false, Some(Relu)),
                (true, Some(Tanh)),
            ] {
                check_fused(1, m, n, k, tb, bias, act);
            }
        }
    }
    // Above the parallel threshold: column slabs and row blocks on threads.
    for (m, n, k) in [(100, 1100, 1300), (301, 603, 777)] {
        for threads in [1, 3] {
            check_fused(threads, m, n, k, true, true, Some(LeakyRelu(0.2)));
        }
    }
}

/// `sgemm_fused_batches` against `sgemm_fused` run batch by batch: every C
/// bit for bit, for `count` batches of m×k (A row-major or not) sharing B.
#[allow(clippy::too_many_arguments)]
fn check_batches(threads: usize, count: usize, m: usize, n: usize, k: usize, ta: bool, tb: bool, bias: bool) {
    let a: Vec<Mat> = (0..count).map(|i| Mat::new(m, k, ta, 20 + i as u64)).collect();
    let b = Mat::new(k, n, tb, 12);
    let bias_v = fill(n, 13);
    let sig = |row: &mut [f32]| crate::elementwise::unary_in_place(crate::elementwise::UnaryOp::Sigmoid, row);
    let epi = Epilogue {
        bias: bias.then_some(&bias_v[..]),
        act: Some(&sig),
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut got: Vec<Vec<f32>> = vec![vec![f32::NAN; m * n]; count];
    let mut batches: Vec<(&[f32], &mut [f32])> = a
        .iter()
        .map(|x| &x.data[..])
        .zip(got.iter_mut().map(|c| &mut c[..]))
        .collect();
    pool.install(|| sgemm_fused_batches(m, n, k, &mut batches, a[0].strides, &b.data, b.strides, epi));
    for (i, x) in a.iter().enumerate() {
        let mut want = vec![f32::NAN; m * n];
        pool.install(|| sgemm_fused(m, n, k, &x.data, x.strides, &b.data, b.strides, epi, &mut want));
        let same = got[i].iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
        assert!(
            same,
            "batch {i} of {count}: {m}×{n}×{k} (A transposed: {ta}, B transposed: {tb}), bias {bias}, {threads} threads"
        );
    }
}

#[test]
fn batches_sharing_b_give_each_the_bits_it_has_alone() {
    // The small-batch order with A read in place (a long batch: k beyond
    // KC; 100 rows end in a short panel, 50 in an overlapping one), with a
    // packed A (short k, or A column-major), several B groups and k blocks;
    // a short batch above 144 rows (row-major A: the small-batch order, read
    // in place; column-major: the block order, batch by batch), and one too
    // large to read in place (the block order either way); more batches
    // than run together (6 > MAX_BATCHES); and a shape that falls back to
    // the unfused path.
    for (m, n, k) in [
        (100, 300, 1300),
        (50, 200, 700),
        (64, 784, 128),
        (200, 150, 300),
        (300, 150, 300),
        (7, 9, 11),
    ] {
        for (ta, tb) in [(false, true), (false, false), (true, true)] {
            for count in [1, 2, 6] {
                check_batches(1, count, m, n, k, ta, tb, true);
            }
        }
    }
    check_batches(1, 3, 100, 128, 2000, false, true, false);
    // Above the parallel threshold: column slabs (a small batch, and the
    // toy's short row-major A taller than small_m, whose slabs read A in
    // place), and row blocks.
    for (m, n, k) in [(100, 1100, 1300), (256, 128, 128), (256, 200, 128), (301, 603, 777)] {
        for threads in [2, 3] {
            check_batches(threads, 2, m, n, k, false, true, true);
        }
    }
}
