//! Every CUDA kernel against its CPU reference in `kiln_cuda::reference`.
//!
//! Without a GPU each test prints why it skips and passes; with `KILN_REQUIRE_GPU=1` (how the
//! GPU machine runs them) a missing device is a failure. Tolerances are stated per test as
//! |gpu − ref| ≤ atol + rtol·|ref|.

use kiln_cuda::gemm::V6_CONFIGS;
use kiln_cuda::reference::{self, max_violation, uniform};
use kiln_cuda::{
    driver_available, Activation, AdamConfig, BinaryOp, CudaBackend, CudaError, DeviceBuffer, ElementwiseVariant,
    GemmLayout, GemmTuning, GemmVariant, PairLoss, ReduceOp, SgdConfig, UnaryOp,
};

fn gpu() -> Option<&'static CudaBackend> {
    match CudaBackend::global() {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            if std::env::var("KILN_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("KILN_REQUIRE_GPU=1 but no usable GPU: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (ratio, i) = max_violation(got, want, atol, rtol);
    assert!(
        ratio <= 1.0,
        "{what}: element {i}: gpu {} vs cpu {} (atol {atol}, rtol {rtol}, ratio {ratio:.2})",
        got[i],
        want[i]
    );
}

fn download(gpu: &CudaBackend, buf: &DeviceBuffer) -> Vec<f32> {
    gpu.dtoh(buf).expect("device-to-host copy")
}

#[test]
fn backend_without_driver_reports_no_device_instead_of_panicking() {
    if driver_available() {
        eprintln!("libcuda present; nothing to check here");
        return;
    }
    match CudaBackend::new(0) {
        Err(CudaError::NoDevice(msg)) => assert!(msg.contains("libcuda"), "{msg}"),
        other => panic!("expected NoDevice, got {other:?}"),
    }
}

#[test]
fn every_gemm_variant_and_layout_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let sizes = [
        (1, 1, 1),
        (17, 33, 9),
        (64, 64, 64),
        (130, 67, 45),
        (128, 256, 128),
        (257, 129, 70),
        // Long K over few tiles: v5 splits these (7 and 16 slices), the second with K % 4 != 0.
        (100, 128, 1000),
        (37, 70, 2050),
    ];
    for (m, n, k) in sizes {
        let a_host = uniform(m * k, 1, -1.0, 1.0);
        let b_host = uniform(k * n, 2, -1.0, 1.0);
        let c0 = uniform(m * n, 3, -1.0, 1.0);
        let a = gpu.htod(&a_host).unwrap();
        let b = gpu.htod(&b_host).unwrap();
        for layout in GemmLayout::ALL {
            for variant in GemmVariant::ALL {
                // C = A·B, C starting as NaN (beta = 0 must not read it).
                let mut c = gpu.alloc(m * n).unwrap();
                gpu.fill(&mut c, f32::NAN).unwrap();
                gpu.sgemm(layout, m, n, k, &a, &b, &mut c, variant).unwrap();
                let mut want = vec![0.0; m * n];
                reference::sgemm(layout, m, n, k, 1.0, &a_host, &b_host, 0.0, &mut want);
                let what = format!("{variant:?} {layout:?} {m}x{n}x{k}");
                assert_close(&what, &download(gpu, &c), &want, 1e-5 * k as f64, 1e-4);

                // C = 0.5·A·B − 2·C
                let mut c = gpu.htod(&c0).unwrap();
                gpu.sgemm_ex(layout, m, n, k, 0.5, &a, &b, -2.0, &mut c, variant)
                    .unwrap();
                let mut want = c0.clone();
                reference::sgemm(layout, m, n, k, 0.5, &a_host, &b_host, -2.0, &mut want);
                assert_close(
                    &format!("{what} alpha/beta"),
                    &download(gpu, &c),
                    &want,
                    1e-5 * k as f64,
                    1e-4,
                );
            }
            // The tuning candidates `kiln bench` times: other split-K slice lengths, v6's
            // other configurations.
            let d = GemmTuning::default();
            let candidates = [
                (
                    GemmVariant::V5SplitK,
                    GemmTuning {
                        min_split_chunk: 64,
                        ..d
                    },
                ),
                (
                    GemmVariant::V5SplitK,
                    GemmTuning {
                        min_split_chunk: 256,
                        ..d
                    },
                ),
            ];
            let v6 = (1..=V6_CONFIGS.len()).map(|v6_config| (GemmVariant::V6WarpTile, GemmTuning { v6_config, ..d }));
            for (variant, tuning) in candidates.into_iter().chain(v6) {
                let mut c = gpu.htod(&c0).unwrap();
                gpu.sgemm_tuned(layout, (m, n, k), 0.5, &a, &b, -2.0, &mut c, variant, &tuning)
                    .unwrap();
                let mut want = c0.clone();
                reference::sgemm(layout, m, n, k, 0.5, &a_host, &b_host, -2.0, &mut want);
                let what = format!("{variant:?} {tuning:?} {layout:?} {m}x{n}x{k}");
                assert_close(&what, &download(gpu, &c), &want, 1e-5 * k as f64, 1e-4);
            }
        }
    }
}

#[test]
fn linear_fwd_refuses_a_variant_without_a_fused_kernel() {
    let Some(gpu) = gpu() else { return };
    // N = 2, I = 2, O = 3: x [2, 2], W [3, 2], b [3], out [2, 3].
    let (x, w, b) = (gpu.zeros(4).unwrap(), gpu.zeros(6).unwrap(), gpu.zeros(3).unwrap());
    let mut out = gpu.alloc(6).unwrap();
    for variant in [GemmVariant::V1Naive, GemmVariant::V6WarpTile] {
        let err = gpu
            .linear_fwd_with(&x, &w, &b, &mut out, (2, 2, 3), Activation::Relu, variant)
            .unwrap_err();
        assert!(err.to_string().contains("no fused linear kernel"), "{variant:?}: {err}");
    }
}

#[test]
fn sgemm_rejects_mismatched_buffers() {
    let Some(gpu) = gpu() else { return };
    let a = gpu.zeros(6).unwrap();
    let b = gpu.zeros(6).unwrap();
    let mut c = gpu.zeros(5).unwrap();
    let err = gpu
        .sgemm(GemmLayout::NN, 2, 2, 3, &a, &b, &mut c, GemmVariant::V4Vectorized)
        .unwrap_err();
    assert!(matches!(err, CudaError::Shape(_)), "{err}");
}

#[test]
fn linear_fwd_with_each_activation_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let activations = [
        Activation::None,
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Sigmoid,
        Activation::Tanh,
    ];
    // The last two run split-K (the epilogue in the reduction), the last with I % 4 != 0.
    for (batch, inf, outf) in [(37, 29, 19), (64, 128, 256), (1, 784, 3), (37, 2050, 70)] {
        let x_host = uniform(batch * inf, 4, -1.0, 1.0);
        let w_host = uniform(outf * inf, 5, -0.5, 0.5);
        let b_host = uniform(outf, 6, -0.5, 0.5);
        let x = gpu.htod(&x_host).unwrap();
        let w = gpu.htod(&w_host).unwrap();
        let b = gpu.htod(&b_host).unwrap();
        for act in activations {
            let want = reference::linear_fwd(&x_host, &w_host, &b_host, batch, inf, outf, act);
            let mut out = gpu.alloc(batch * outf).unwrap();
            gpu.linear_fwd(&x, &w, &b, &mut out, batch, inf, outf, act).unwrap();
            let what = format!("linear {act:?} N={batch} I={inf} O={outf}");
            assert_close(&what, &download(gpu, &out), &want, 1e-5 * inf as f64, 1e-4);
            let dims = (batch, inf, outf);
            for variant in [GemmVariant::V4Vectorized, GemmVariant::V5SplitK] {
                gpu.fill(&mut out, f32::NAN).unwrap();
                gpu.linear_fwd_with(&x, &w, &b, &mut out, dims, act, variant).unwrap();
                let what = format!("linear {variant:?} {act:?} N={batch} I={inf} O={outf}");
                assert_close(&what, &download(gpu, &out), &want, 1e-5 * inf as f64, 1e-4);
            }
        }
    }
}

/// Inputs inside each op's domain (log, sqrt, pow of positive numbers).
fn unary_inputs(op: UnaryOp, n: usize) -> Vec<f32> {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Pow(_) => uniform(n, 7, 0.1, 3.0),
        _ => uniform(n, 7, -4.0, 4.0),
    }
}

#[test]
fn every_unary_op_forward_and_backward_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    for n in [1, 1003, 4096] {
        for op in UnaryOp::ALL {
            let x_host = unary_inputs(op, n);
            let dy_host = uniform(n, 8, -1.0, 1.0);
            let y_want: Vec<f32> = x_host.iter().map(|&v| reference::unary_fwd(op, v)).collect();
            let x = gpu.htod(&x_host).unwrap();
            for variant in [ElementwiseVariant::V1Scalar, ElementwiseVariant::V2Float4] {
                let mut y = gpu.alloc(n).unwrap();
                gpu.unary_variant(op, &x, &mut y, variant).unwrap();
                // atol/rtol 1e-5: fast-math-free f32 transcendental functions are within a few ulp.
                assert_close(
                    &format!("{op:?} fwd {variant:?} n={n}"),
                    &download(gpu, &y),
                    &y_want,
                    1e-5,
                    1e-5,
                );
            }
            let y = gpu.htod(&y_want).unwrap();
            let dy = gpu.htod(&dy_host).unwrap();
            let mut dx = gpu.alloc(n).unwrap();
            gpu.unary_bwd(op, &x, &y, &dy, &mut dx).unwrap();
            let dx_want: Vec<f32> = (0..n)
                .map(|i| reference::unary_bwd(op, x_host[i], y_want[i], dy_host[i]))
                .collect();
            assert_close(&format!("{op:?} bwd n={n}"), &download(gpu, &dx), &dx_want, 1e-5, 1e-4);
        }
    }
}

#[test]
fn binary_ops_broadcast_and_follow_strides_like_cpu() {
    let Some(gpu) = gpu() else { return };
    // (a shape, a strides, b shape, b strides)
    type Case = (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>);
    let cases: Vec<Case> = vec![
        (vec![1001], vec![1], vec![1001], vec![1]), // contiguous fast path, odd n
        (vec![2, 3, 4], vec![12, 4, 1], vec![3, 1], vec![1, 1]), // column broadcast
        (vec![4], vec![1], vec![2, 3, 4], vec![12, 4, 1]), // a broadcast over leading dims
        (vec![3, 2], vec![1, 3], vec![3, 2], vec![2, 1]), // a is a transposed view
        (
            vec![2, 1, 3, 1, 2, 2],
            vec![12, 12, 4, 4, 2, 1],
            vec![5, 3, 1, 1, 2],
            vec![6, 2, 2, 2, 1],
        ), // 6-D
    ];
    for (a_shape, a_strides, b_shape, b_strides) in cases {
        let a_len = 1 + a_shape.iter().zip(&a_strides).map(|(d, s)| (d - 1) * s).sum::<usize>();
        let b_len = 1 + b_shape.iter().zip(&b_strides).map(|(d, s)| (d - 1) * s).sum::<usize>();
        let a_host = uniform(a_len, 9, -2.0, 2.0);
        let b_host = uniform(b_len, 10, 0.5, 2.0); // away from 0 for div
        let a = gpu.htod(&a_host).unwrap();
        let b = gpu.htod(&b_host).unwrap();
        for op in BinaryOp::ALL {
            let want = reference::binary(op, &a_host, &a_shape, &a_strides, &b_host, &b_shape, &b_strides).unwrap();
            let mut out = gpu.alloc(want.len()).unwrap();
            gpu.binary(op, &a, &a_shape, &a_strides, &b, &b_shape, &b_strides, &mut out)
                .unwrap();
            let what = format!("{op:?} {a_shape:?}/{a_strides:?} with {b_shape:?}/{b_strides:?}");
            assert_close(&what, &download(gpu, &out), &want, 1e-6, 1e-6);
        }
    }
    // Contiguous variants agree with each other.
    let n = 4099;
    let a = gpu.htod(&uniform(n, 11, -1.0, 1.0)).unwrap();
    let b = gpu.htod(&uniform(n, 12, -1.0, 1.0)).unwrap();
    let mut v1 = gpu.alloc(n).unwrap();
    let mut v2 = gpu.alloc(n).unwrap();
    gpu.binary_contiguous(BinaryOp::Mul, &a, &b, &mut v1, ElementwiseVariant::V1Scalar)
        .unwrap();
    gpu.binary_contiguous(BinaryOp::Mul, &a, &b, &mut v2, ElementwiseVariant::V2Float4)
        .unwrap();
    assert_eq!(download(gpu, &v1), download(gpu, &v2));
}

#[test]
fn binary_rejects_incompatible_shapes() {
    let Some(gpu) = gpu() else { return };
    let a = gpu.zeros(6).unwrap();
    let b = gpu.zeros(4).unwrap();
    let mut out = gpu.zeros(6).unwrap();
    let err = gpu
        .binary(BinaryOp::Add, &a, &[2, 3], &[3, 1], &b, &[4], &[1], &mut out)
        .unwrap_err();
    assert!(
        err.to_string().contains("[2, 3]") && err.to_string().contains("[4]"),
        "{err}"
    );
}

#[test]
fn copy_strided_and_fill_match_cpu() {
    let Some(gpu) = gpu() else { return };
    let x_host = uniform(24, 13, -1.0, 1.0);
    let x = gpu.htod(&x_host).unwrap();
    // [2,3,4] permuted to [4,2,3]
    let (shape, strides) = ([4, 2, 3], [1, 12, 4]);
    let mut out = gpu.alloc(24).unwrap();
    gpu.copy_strided(&x, &shape, &strides, &mut out).unwrap();
    assert_eq!(download(gpu, &out), reference::copy_strided(&x_host, &shape, &strides));
    gpu.fill(&mut out, 2.5).unwrap();
    assert_eq!(download(gpu, &out), vec![2.5; 24]);
}

#[test]
fn reductions_match_cpu_and_are_deterministic() {
    let Some(gpu) = gpu() else { return };
    for n in [1, 1000, (1 << 20) + 3] {
        let x_host = uniform(n, 14, -1.0, 1.0);
        let x = gpu.htod(&x_host).unwrap();
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            let mut out = gpu.alloc(1).unwrap();
            gpu.reduce_all(op, &x, &mut out).unwrap();
            let first = download(gpu, &out);
            // f32 pairwise-ish summation vs f64: error ~ √n·ε.
            assert_close(
                &format!("{op:?} n={n}"),
                &first,
                &[reference::reduce_all(op, &x_host)],
                1e-4,
                1e-5,
            );
            gpu.reduce_all(op, &x, &mut out).unwrap();
            assert_eq!(
                first[0].to_bits(),
                download(gpu, &out)[0].to_bits(),
                "{op:?} n={n} not deterministic"
            );
        }
    }
    // v3 alone (few outputs, short dim), v3 split into slices then v1 (long dims), v1 (many
    // outputs), v2 (rows).
    for (outer, r, inner) in [
        (3, 5, 7),
        (64, 100, 1),
        (1, 1000, 33),
        (5, 1, 4),
        (2, 4000, 40),
        (2, 50, 20_000),
    ] {
        let x_host = uniform(outer * r * inner, 15, -1.0, 1.0);
        let x = gpu.htod(&x_host).unwrap();
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            let mut out = gpu.alloc(outer * inner).unwrap();
            gpu.reduce_dim(op, &x, outer, r, inner, &mut out).unwrap();
            let want = reference::reduce_dim(op, &x_host, outer, r, inner);
            // Sequential f32 sums over r = 1000 drift by ~√r·ulp(partial) ≈ 3e-5.
            assert_close(
                &format!("{op:?} dim [{outer},{r},{inner}]"),
                &download(gpu, &out),
                &want,
                1e-4,
                1e-5,
            );
        }
    }
}

#[test]
fn pair_losses_forward_and_backward_match_cpu() {
    let Some(gpu) = gpu() else { return };
    for n in [1, 999, 70_000] {
        for loss in PairLoss::ALL {
            let pred_host = match loss {
                PairLoss::Bce => uniform(n, 16, 0.01, 0.99),
                _ => uniform(n, 16, -3.0, 3.0),
            };
            let target_host = uniform(n, 17, 0.0, 1.0);
            let pred = gpu.htod(&pred_host).unwrap();
            let target = gpu.htod(&target_host).unwrap();
            let mut out = gpu.alloc(1).unwrap();
            gpu.loss_fwd(loss, &pred, &target, &mut out).unwrap();
            let want = reference::pair_loss_fwd(loss, &pred_host, &target_host);
            assert_close(
                &format!("{loss:?} fwd n={n}"),
                &download(gpu, &out),
                &[want],
                1e-5,
                1e-5,
            );

            let dloss = gpu.htod(&[0.7]).unwrap();
            let mut dpred = gpu.alloc(n).unwrap();
            gpu.loss_bwd(loss, &pred, &target, &dloss, &mut dpred).unwrap();
            let want = reference::pair_loss_bwd(loss, &pred_host, &target_host, 0.7);
            assert_close(
                &format!("{loss:?} bwd n={n}"),
                &download(gpu, &dpred),
                &want,
                1e-7,
                1e-4,
            );
        }
    }
    // BCE saturates like PyTorch: log(0) is clamped to −100.
    let pred = gpu.htod(&[0.0, 1.0]).unwrap();
    let target = gpu.htod(&[1.0, 0.0]).unwrap();
    let mut out = gpu.alloc(1).unwrap();
    gpu.loss_fwd(PairLoss::Bce, &pred, &target, &mut out).unwrap();
    assert_eq!(download(gpu, &out), vec![100.0]);
}

#[test]
fn log_softmax_and_cross_entropy_match_cpu() {
    let Some(gpu) = gpu() else { return };
    for (rows, cols) in [(1, 1), (7, 10), (300, 33), (4, 1000)] {
        let x_host = uniform(rows * cols, 18, -5.0, 5.0);
        let x = gpu.htod(&x_host).unwrap();
        let mut y = gpu.alloc(rows * cols).unwrap();
        gpu.log_softmax_fwd(&x, rows, cols, &mut y).unwrap();
        let y_want = reference::log_softmax_fwd(&x_host, cols);
        assert_close(
            &format!("log_softmax [{rows},{cols}]"),
            &download(gpu, &y),
            &y_want,
            1e-5,
            1e-5,
        );

        let dy_host = uniform(rows * cols, 19, -1.0, 1.0);
        let dy = gpu.htod(&dy_host).unwrap();
        let mut dx = gpu.alloc(rows * cols).unwrap();
        gpu.log_softmax_bwd(&y, &dy, rows, cols, &mut dx).unwrap();
        let dx_want = reference::log_softmax_bwd(&y_want, &dy_host, cols);
        assert_close(
            &format!("log_softmax_bwd [{rows},{cols}]"),
            &download(gpu, &dx),
            &dx_want,
            1e-5,
            1e-4,
        );

        let targets_host: Vec<f32> = (0..rows).map(|r| ((r * 7 + 3) % cols) as f32).collect();
        let targets = gpu.htod(&targets_host).unwrap();
        let mut loss = gpu.alloc(1).unwrap();
        gpu.cross_entropy_fwd(&x, &targets, rows, cols, &mut loss).unwrap();
        let want = reference::cross_entropy_fwd(&x_host, &targets_host, cols);
        assert_close(
            &format!("cross_entropy [{rows},{cols}]"),
            &download(gpu, &loss),
            &[want],
            1e-5,
            1e-5,
        );

        let dloss = gpu.htod(&[1.3]).unwrap();
        let mut dlogits = gpu.alloc(rows * cols).unwrap();
        gpu.cross_entropy_bwd(&x, &targets, &dloss, rows, cols, &mut dlogits)
            .unwrap();
        let want = reference::cross_entropy_bwd(&x_host, &targets_host, 1.3, cols);
        assert_close(
            &format!("cross_entropy_bwd [{rows},{cols}]"),
            &download(gpu, &dlogits),
            &want,
            1e-6,
            1e-4,
        );
    }
}

#[test]
fn adam_and_adamw_steps_match_cpu_over_several_steps() {
    let Some(gpu) = gpu() else { return };
    let n = 1027;
    for decoupled in [false, true] {
        let cfg = AdamConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            decoupled,
            ..AdamConfig::default()
        };
        for variant in [ElementwiseVariant::V1Scalar, ElementwiseVariant::V2Float4] {
            let mut p_ref = uniform(n, 20, -1.0, 1.0);
            let (mut m_ref, mut v_ref) = (vec![0.0; n], vec![0.0; n]);
            let mut param = gpu.htod(&p_ref).unwrap();
            let mut m = gpu.zeros(n).unwrap();
            let mut v = gpu.zeros(n).unwrap();
            for step in 1..=5u64 {
                let g_host = uniform(n, 100 + step, -1.0, 1.0);
                let grad = gpu.htod(&g_host).unwrap();
                gpu.adam_step_variant(&cfg, step, &mut param, &grad, &mut m, &mut v, variant)
                    .unwrap();
                reference::adam_step(&cfg, step, &mut p_ref, &g_host, &mut m_ref, &mut v_ref);
            }
            let what = format!("adam decoupled={decoupled} {variant:?}");
            assert_close(&format!("{what} param"), &download(gpu, &param), &p_ref, 1e-6, 1e-5);
            assert_close(&format!("{what} m"), &download(gpu, &m), &m_ref, 1e-7, 1e-5);
            assert_close(&format!("{what} v"), &download(gpu, &v), &v_ref, 1e-8, 1e-5);
        }
    }
}

#[test]
fn sgd_variants_match_cpu_over_several_steps() {
    let Some(gpu) = gpu() else { return };
    let n = 513;
    let configs = [
        SgdConfig {
            lr: 0.1,
            ..Default::default()
        },
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            ..Default::default()
        },
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.5,
            ..Default::default()
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.8,
            nesterov: true,
            weight_decay: 1e-3,
            ..Default::default()
        },
    ];
    for cfg in configs {
        let mut p_ref = uniform(n, 30, -1.0, 1.0);
        let mut buf_ref = vec![0.0; n];
        let mut param = gpu.htod(&p_ref).unwrap();
        let mut buf = gpu.alloc(if cfg.momentum != 0.0 { n } else { 0 }).unwrap();
        for step in 0..4u64 {
            let g_host = uniform(n, 200 + step, -1.0, 1.0);
            let grad = gpu.htod(&g_host).unwrap();
            gpu.sgd_step(&cfg, step == 0, &mut param, &grad, &mut buf).unwrap();
            reference::sgd_step(&cfg, step == 0, &mut p_ref, &g_host, &mut buf_ref);
        }
        assert_close(&format!("sgd {cfg:?}"), &download(gpu, &param), &p_ref, 1e-6, 1e-5);
    }
}

#[test]
fn pool_reuses_freed_buffers_of_the_same_length() {
    let Some(gpu) = gpu() else { return };
    let len = 12_345; // a length no other test uses
    drop(gpu.alloc(len).unwrap());
    let before = gpu.pool_stats();
    let buf = gpu.alloc(len).unwrap();
    let after = gpu.pool_stats();
    assert!(after.hits > before.hits, "{before:?} -> {after:?}");
    drop(buf);
}

#[test]
fn empty_buffers_round_trip() {
    let Some(gpu) = gpu() else { return };
    let x = gpu.htod(&[]).unwrap();
    assert!(x.is_empty());
    assert!(download(gpu, &x).is_empty());
    let mut y = gpu.alloc(0).unwrap();
    gpu.unary(UnaryOp::Relu, &x, &mut y).unwrap();
    let mut s = gpu.alloc(1).unwrap();
    gpu.reduce_sum(&x, &mut s).unwrap();
    assert_eq!(download(gpu, &s), vec![0.0]);
}

#[test]
fn copy_strided_at_reads_a_view_with_an_offset() {
    let Some(gpu) = gpu() else { return };
    let x_host = uniform(30, 21, -1.0, 1.0);
    let x = gpu.htod(&x_host).unwrap();
    // Columns 1..4 of a [5, 6] matrix, transposed: shape [3, 5], strides [1, 6], offset 1.
    let (offset, shape, strides) = (1, [3, 5], [1, 6]);
    let mut out = gpu.alloc(15).unwrap();
    gpu.copy_strided_at(&x, offset, &shape, &strides, &mut out).unwrap();
    assert_eq!(
        download(gpu, &out),
        reference::copy_strided(&x_host[offset..], &shape, &strides)
    );
    // A view running past the end of the buffer is refused.
    assert!(gpu.copy_strided_at(&x, 20, &shape, &strides, &mut out).is_err());
    // dtod_at copies a sub-range into a sub-range.
    let mut dst = gpu.zeros(10).unwrap();
    gpu.dtod_at(&x, 3, &mut dst, 4, 5).unwrap();
    let mut want = vec![0.0; 10];
    want[4..9].copy_from_slice(&x_host[3..8]);
    assert_eq!(download(gpu, &dst), want);
}

#[test]
fn mask_ops_handle_ties_like_cpu() {
    let Some(gpu) = gpu() else { return };
    let a_host = [1.0f32, 2.0, 3.0, -1.0];
    let b_host = [1.0f32, 3.0, 2.0, -1.0];
    let a = gpu.htod(&a_host).unwrap();
    let b = gpu.htod(&b_host).unwrap();
    for op in [BinaryOp::Maximum, BinaryOp::Eq, BinaryOp::Gt] {
        let mut out = gpu.alloc(4).unwrap();
        gpu.binary(op, &a, &[4], &[1], &b, &[4], &[1], &mut out).unwrap();
        let want: Vec<f32> = a_host.iter().zip(&b_host).map(|(&x, &y)| op.apply(x, y)).collect();
        assert_eq!(download(gpu, &out), want, "{op:?}");
    }
}
