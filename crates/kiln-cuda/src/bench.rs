//! Validating kernel benchmarks, for `kiln bench --device cuda`.
//!
//! Every benchmark first checks the kernel's output against a reference (the CPU reference
//! for small sizes, cuBLAS for large GEMMs), then times it with CUDA events: warm-up runs,
//! then `repeats` samples, each a batch of back-to-back launches long enough (≥ ~1 ms) that
//! launch gaps do not dominate. Results carry the median, the spread, the figure that matters
//! (GFLOP/s or GB/s), and two comparisons measured in the same run: against a reference
//! implementation (cuBLAS SGEMM FP32 without TF32, or a device-to-device memcpy) and against
//! the device's theoretical peak.

use cudarc::cublas::{sys as cublas_sys, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::sys::{CUdevice_attribute, CUevent_flags};

use crate::backend::CudaBackend;
use crate::elementwise::{BinaryOp, ElementwiseVariant, UnaryOp};
use crate::error::{CudaError, Result};
use crate::gemm::{GemmLayout, GemmTuning, GemmVariant, V6_CONFIGS};
use crate::optim::AdamConfig;
use crate::pool::DeviceBuffer;
use crate::reduce::ReduceOp;
use crate::reference;

/// How many runs to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchOptions {
    /// Untimed runs before measuring (compilation, caches, clocks).
    pub warmup: usize,
    /// Timed samples; the median and spread are over these.
    pub repeats: usize,
}

impl Default for BenchOptions {
    /// 3 warm-up runs, 20 samples.
    fn default() -> Self {
        BenchOptions { warmup: 3, repeats: 20 }
    }
}

/// One benchmark row.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    /// Kernel or reference name, e.g. `sgemm_v4_vectorized`, `cublas_sgemm`, `memcpy_dtod`.
    pub name: String,
    /// Problem size, e.g. `1024x1024x1024 NN` or `16777216`.
    pub size: String,
    /// Median time of one launch, milliseconds.
    pub median_ms: f64,
    /// (p90 − p10) / median of the samples: 0.02 means the middle 80 % lie within 2 %.
    pub spread: f64,
    /// Achieved GFLOP/s (GEMM rows).
    pub gflops: Option<f64>,
    /// Achieved GB/s of DRAM traffic (memory-bound rows).
    pub gbps: Option<f64>,
    /// Percentage of the reference measured in the same run (cuBLAS or memcpy).
    pub pct_ref: Option<f64>,
    /// Percentage of the device's theoretical peak (FP32 FLOP/s or DRAM bandwidth).
    pub pct_peak: Option<f64>,
    /// Output matched the reference within tolerance before timing.
    pub validated: bool,
}

/// What the device could do in theory, from its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Device name.
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Boost clock, kHz (None when the driver no longer reports it).
    pub clock_khz: Option<u32>,
    /// FP32 FMA lanes per SM for this architecture.
    pub fp32_lanes_per_sm: u32,
    /// SMs × clock × lanes × 2 FLOP per FMA, in GFLOP/s.
    pub peak_gflops: Option<f64>,
    /// 2 (DDR) × memory clock × bus width, in GB/s.
    pub peak_gbps: Option<f64>,
}

/// FP32 lanes per SM: 64 on sm_7x and sm_80 (A100), 128 on sm_86 and later (incl. sm_90).
pub fn fp32_lanes_per_sm(compute_capability: (i32, i32)) -> u32 {
    match compute_capability {
        (8, 0) => 64,
        (major, _) if major >= 8 => 128,
        _ => 64,
    }
}

/// Reads the device's peak figures.
pub fn device_info(gpu: &CudaBackend) -> Result<DeviceInfo> {
    let attr = |a| gpu.attribute(a).ok().filter(|&v| v > 0).map(|v| v as u32);
    let clock_khz = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_CLOCK_RATE);
    let mem_clock_khz = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE);
    let bus_bits = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH);
    let lanes = fp32_lanes_per_sm(gpu.compute_capability());
    Ok(DeviceInfo {
        name: gpu.device_name()?,
        compute_capability: gpu.compute_capability(),
        sm_count: gpu.sm_count(),
        clock_khz,
        fp32_lanes_per_sm: lanes,
        peak_gflops: clock_khz.map(|khz| gpu.sm_count() as f64 * khz as f64 * 1e3 * lanes as f64 * 2.0 / 1e9),
        peak_gbps: mem_clock_khz
            .zip(bus_bits)
            .map(|(khz, bits)| 2.0 * khz as f64 * 1e3 * (bits as f64 / 8.0) / 1e9),
    })
}

/// Per-launch times (ms) of `run`: `opts.warmup` untimed runs, then `opts.repeats` samples of
/// a batch of launches sized to last about a millisecond.
fn time_ms(gpu: &CudaBackend, opts: &BenchOptions, mut run: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let event = |what: &str| {
        gpu.stream()
            .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| CudaError::driver(format!("recording {what} event"), e))
    };
    let batch_ms = |batch: usize, run: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let start = event("start")?;
        for _ in 0..batch {
            run()?;
        }
        let end = event("end")?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| CudaError::driver("reading event time", e))?;
        Ok(ms as f64 / batch as f64)
    };
    for _ in 0..opts.warmup.max(1) {
        run()?;
    }
    let estimate = batch_ms(1, &mut run)?;
    let batch = ((1.0 / estimate.max(1e-4)).ceil() as usize).clamp(1, 1000);
    (0..opts.repeats.max(1)).map(|_| batch_ms(batch, &mut run)).collect()
}

/// (median, (p90 − p10)/median).
fn summarize(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let median = at(0.5);
    (median, (at(0.9) - at(0.1)) / median)
}

fn pct(value: f64, reference: Option<f64>) -> Option<f64> {
    reference.filter(|&r| r > 0.0).map(|r| 100.0 * value / r)
}

fn cublas_available() -> bool {
    // SAFETY: only tries to dlopen libcublas; no symbol is called.
    unsafe { cublas_sys::is_culib_present() }
}

/// Row-major C = op(A)·op(B) through cuBLAS (column-major): computes Cᵀ = op(B)ᵀ·op(A)ᵀ.
fn cublas_sgemm(
    blas: &CudaBlas,
    layout: GemmLayout,
    (m, n, k): (usize, usize, usize),
    a: &DeviceBuffer,
    b: &DeviceBuffer,
    c: &mut DeviceBuffer,
) -> Result<()> {
    use cublas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
    let (transa, lda) = match layout {
        GemmLayout::NT => (CUBLAS_OP_T, k),
        _ => (CUBLAS_OP_N, n),
    };
    let (transb, ldb) = match layout {
        GemmLayout::TN => (CUBLAS_OP_T, m),
        _ => (CUBLAS_OP_N, k),
    };
    let cfg = GemmConfig {
        transa,
        transb,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: lda as i32,
        ldb: ldb as i32,
        beta: 0.0f32,
        ldc: n as i32,
    };
    // SAFETY: the buffers hold m·k, k·n and m·n floats and the leading dimensions above
    // describe exactly those row-major matrices seen column-major, so cuBLAS stays in bounds.
    unsafe { blas.gemm(cfg, b.slice(), a.slice(), c.slice_mut()) }
        .map_err(|e| CudaError::NoDevice(format!("cuBLAS SGEMM failed: {e:?}")))
}

/// Benchmarks every [`GemmVariant`] (and cuBLAS, when libcublas loads) on square or
/// rectangular sizes `(m, n, k)` in `layout`. Validation uses the CPU reference up to
/// m·n·k = 2²⁷ and cuBLAS beyond (unvalidated if cuBLAS is missing).
pub fn bench_gemm(
    gpu: &CudaBackend,
    sizes: &[(usize, usize, usize)],
    layout: GemmLayout,
    opts: &BenchOptions,
) -> Result<Vec<BenchResult>> {
    let info = device_info(gpu)?;
    let blas = if cublas_available() {
        Some(
            CudaBlas::new(gpu.stream().clone())
                .map_err(|e| CudaError::NoDevice(format!("cuBLAS init failed: {e:?}")))?,
        )
    } else {
        None
    };
    let mut rows = Vec::new();
    for &(m, n, k) in sizes {
        let size = format!("{m}x{n}x{k} {layout:?}");
        let flops = 2.0 * m as f64 * n as f64 * k as f64;
        let a_host = reference::uniform(m * k, 1, -1.0, 1.0);
        let b_host = reference::uniform(k * n, 2, -1.0, 1.0);
        let a = gpu.htod(&a_host)?;
        let b = gpu.htod(&b_host)?;
        let mut c = gpu.alloc(m * n)?;

        // Reference output and the cuBLAS row.
        let mut cublas_gflops = None;
        let mut want: Option<Vec<f32>> = None;
        if let Some(blas) = &blas {
            cublas_sgemm(blas, layout, (m, n, k), &a, &b, &mut c)?;
            let cublas_out = gpu.dtoh(&c)?;
            let samples = time_ms(gpu, opts, || cublas_sgemm(blas, layout, (m, n, k), &a, &b, &mut c))?;
            let (median_ms, spread) = summarize(samples);
            let gflops = flops / (median_ms * 1e6);
            cublas_gflops = Some(gflops);
            rows.push(BenchResult {
                name: "cublas_sgemm".into(),
                size: size.clone(),
                median_ms,
                spread,
                gflops: Some(gflops),
                gbps: None,
                pct_ref: Some(100.0),
                pct_peak: pct(gflops, info.peak_gflops),
                validated: false,
            });
            want = Some(cublas_out);
        }
        let small = (m * n * k) as u64 <= 1 << 27;
        if small || want.is_none() {
            want = small.then(|| {
                let mut out = vec![0.0; m * n];
                reference::sgemm(layout, m, n, k, 1.0, &a_host, &b_host, 0.0, &mut out);
                out
            });
        }
        if let Some(last) = rows.last_mut().filter(|r| r.name == "cublas_sgemm" && r.size == size) {
            let got = gpu.dtoh(&c)?;
            last.validated = match (&want, small) {
                (Some(w), true) => gemm_close(&got, w, k),
                // Too big for the whole CPU product: check 256 spread-out entries of it.
                _ => gemm_spot_check(layout, (m, n, k), &a_host, &b_host, &got),
            };
        }

        // Every variant with the engine's settings, then the tuning candidates: v6's other
        // configurations, and where v5 splits K, other minimum slice lengths.
        let default = GemmTuning::default();
        let mut runs: Vec<(String, GemmVariant, GemmTuning)> = GemmVariant::ALL
            .iter()
            .map(|&v| (v.label().to_string(), v, default))
            .collect();
        for v6_config in (1..=V6_CONFIGS.len()).filter(|&c| c != default.v6_config) {
            let t = GemmTuning { v6_config, ..default };
            runs.push((format!("sgemm_v6_cfg{v6_config}"), GemmVariant::V6WarpTile, t));
        }
        if default.split_k(m, n, k, gpu.sm_count() as usize).0 > 1 {
            for min_split_chunk in [64, 256] {
                let t = GemmTuning {
                    min_split_chunk,
                    ..default
                };
                runs.push((format!("sgemm_v5_chunk{min_split_chunk}"), GemmVariant::V5SplitK, t));
            }
        }
        for (label, variant, tuning) in runs {
            let gemm = |c: &mut DeviceBuffer| gpu.sgemm_tuned(layout, (m, n, k), 1.0, &a, &b, 0.0, c, variant, &tuning);
            gpu.fill(&mut c, f32::NAN)?;
            gemm(&mut c)?;
            let validated = match &want {
                Some(w) => gemm_close(&gpu.dtoh(&c)?, w, k),
                None => false,
            };
            let samples = time_ms(gpu, opts, || gemm(&mut c))?;
            let (median_ms, spread) = summarize(samples);
            let gflops = flops / (median_ms * 1e6);
            rows.push(BenchResult {
                name: label,
                size: size.clone(),
                median_ms,
                spread,
                gflops: Some(gflops),
                gbps: None,
                pct_ref: pct(gflops, cublas_gflops),
                pct_peak: pct(gflops, info.peak_gflops),
                validated,
            });
        }
    }
    Ok(rows)
}

/// Tolerance for an FP32 GEMM with inputs in [−1, 1]: the rounding error of a length-k dot
/// product grows roughly like √k·ε·|terms|; 1e-5·k is a generous absolute bound.
fn gemm_close(got: &[f32], want: &[f32], k: usize) -> bool {
    reference::max_violation(got, want, 1e-5 * k.max(1) as f64, 1e-3).0 <= 1.0
}

/// Compares 256 entries of C (a fixed stride through it, corners included) with the f64
/// CPU dot products, at [`gemm_close`]'s tolerance.
fn gemm_spot_check(layout: GemmLayout, (m, n, k): (usize, usize, usize), a: &[f32], b: &[f32], got: &[f32]) -> bool {
    let len = m * n;
    let picks: Vec<usize> = (0..256).map(|s| (s * (len - 1)) / 255).collect();
    let want: Vec<f32> = picks
        .iter()
        .map(|&p| reference::sgemm_entry(layout, m, n, k, a, b, p / n, p % n) as f32)
        .collect();
    let got: Vec<f32> = picks.iter().map(|&p| got[p]).collect();
    gemm_close(&got, &want, k)
}

/// Device-to-device memcpy of `n` floats: the bandwidth reference (bytes = 2·4·n).
fn bench_memcpy(gpu: &CudaBackend, n: usize, opts: &BenchOptions, peak: Option<f64>) -> Result<BenchResult> {
    let src = gpu.zeros(n)?;
    let mut dst = gpu.alloc(n)?;
    let (median_ms, spread) = summarize(time_ms(gpu, opts, || gpu.dtod(&src, &mut dst))?);
    let gbps = 8.0 * n as f64 / (median_ms * 1e6);
    Ok(BenchResult {
        name: "memcpy_dtod".into(),
        size: n.to_string(),
        median_ms,
        spread,
        gflops: None,
        gbps: Some(gbps),
        pct_ref: Some(100.0),
        pct_peak: pct(gbps, peak),
        validated: true,
    })
}

fn bandwidth_row(
    name: &str,
    n: usize,
    bytes_per_elem: f64,
    samples: Vec<f64>,
    memcpy: &BenchResult,
    peak: Option<f64>,
    validated: bool,
) -> BenchResult {
    let (median_ms, spread) = summarize(samples);
    let gbps = bytes_per_elem * n as f64 / (median_ms * 1e6);
    BenchResult {
        name: name.into(),
        size: n.to_string(),
        median_ms,
        spread,
        gflops: None,
        gbps: Some(gbps),
        pct_ref: pct(gbps, memcpy.gbps),
        pct_peak: pct(gbps, peak),
        validated,
    }
}

/// Benchmarks the elementwise kernels (unary GELU and binary add, v1 scalar vs v2 float4) on
/// `n`-element vectors against a device memcpy measured in the same run.
pub fn bench_elementwise(gpu: &CudaBackend, sizes: &[usize], opts: &BenchOptions) -> Result<Vec<BenchResult>> {
    let peak = device_info(gpu)?.peak_gbps;
    let mut rows = Vec::new();
    for &n in sizes {
        let memcpy = bench_memcpy(gpu, n, opts, peak)?;
        let x_host = reference::uniform(n, 3, -3.0, 3.0);
        let y_host = reference::uniform(n, 4, -3.0, 3.0);
        let x = gpu.htod(&x_host)?;
        let y = gpu.htod(&y_host)?;
        let mut out = gpu.alloc(n)?;
        let op = UnaryOp::Gelu;
        let want_unary: Vec<f32> = x_host.iter().map(|&v| reference::unary_fwd(op, v)).collect();
        let want_add: Vec<f32> = x_host.iter().zip(&y_host).map(|(a, b)| a + b).collect();
        for (variant, label) in [
            (ElementwiseVariant::V1Scalar, "v1"),
            (ElementwiseVariant::V2Float4, "v2"),
        ] {
            gpu.unary_variant(op, &x, &mut out, variant)?;
            let ok = reference::max_violation(&gpu.dtoh(&out)?, &want_unary, 1e-5, 1e-4).0 <= 1.0;
            let samples = time_ms(gpu, opts, || gpu.unary_variant(op, &x, &mut out, variant))?;
            rows.push(bandwidth_row(
                &format!("unary_gelu_{label}"),
                n,
                8.0,
                samples,
                &memcpy,
                peak,
                ok,
            ));

            gpu.binary_contiguous(BinaryOp::Add, &x, &y, &mut out, variant)?;
            let ok = reference::max_violation(&gpu.dtoh(&out)?, &want_add, 1e-6, 1e-6).0 <= 1.0;
            let samples = time_ms(gpu, opts, || {
                gpu.binary_contiguous(BinaryOp::Add, &x, &y, &mut out, variant)
            })?;
            rows.push(bandwidth_row(
                &format!("binary_add_{label}"),
                n,
                12.0,
                samples,
                &memcpy,
                peak,
                ok,
            ));
        }
        rows.push(memcpy);
    }
    Ok(rows)
}

/// Benchmarks the deterministic reductions on `n` elements (4 bytes read per element) against
/// a device memcpy measured in the same run: the sum of everything (two passes: fixed
/// per-block partials, then their sum) and the sums of the rows and of the columns of the
/// elements viewed as a `[n / 1024, 1024]` matrix (the shapes of a bias gradient and of a
/// per-sample loss).
pub fn bench_reduce(gpu: &CudaBackend, sizes: &[usize], opts: &BenchOptions) -> Result<Vec<BenchResult>> {
    let peak = device_info(gpu)?.peak_gbps;
    let mut rows = Vec::new();
    for &n in sizes {
        let memcpy = bench_memcpy(gpu, n, opts, peak)?;
        let x_host = reference::uniform(n, 7, -1.0, 1.0);
        let x = gpu.htod(&x_host)?;
        // Sums of n values in [-1, 1): compared with the f64 reference to 1e-6·√n.
        let tol = 1e-6 * (n as f64).sqrt().max(1.0);
        let mut one = gpu.alloc(1)?;
        gpu.reduce_all(ReduceOp::Sum, &x, &mut one)?;
        let ok = reference::max_violation(
            &gpu.dtoh(&one)?,
            &[reference::reduce_all(ReduceOp::Sum, &x_host)],
            tol,
            1e-5,
        )
        .0 <= 1.0;
        let samples = time_ms(gpu, opts, || gpu.reduce_all(ReduceOp::Sum, &x, &mut one))?;
        rows.push(bandwidth_row("reduce_sum_all", n, 4.0, samples, &memcpy, peak, ok));
        let cols = 1024;
        if n % cols == 0 {
            let r = n / cols;
            for (name, outer, len, inner) in [("reduce_sum_rows", r, cols, 1), ("reduce_sum_cols", 1, r, cols)] {
                let mut out = gpu.alloc(outer * inner)?;
                gpu.reduce_dim(ReduceOp::Sum, &x, outer, len, inner, &mut out)?;
                let want = reference::reduce_dim(ReduceOp::Sum, &x_host, outer, len, inner);
                let tol = 1e-6 * (len as f64).sqrt();
                let ok = reference::max_violation(&gpu.dtoh(&out)?, &want, tol, 1e-5).0 <= 1.0;
                let samples = time_ms(gpu, opts, || {
                    gpu.reduce_dim(ReduceOp::Sum, &x, outer, len, inner, &mut out)
                })?;
                rows.push(bandwidth_row(name, n, 4.0, samples, &memcpy, peak, ok));
            }
        }
        rows.push(memcpy);
    }
    Ok(rows)
}

/// Benchmarks the fused Adam step (v1 scalar vs v2 float4; 28 bytes of traffic per element)
/// against a device memcpy measured in the same run.
pub fn bench_adam(gpu: &CudaBackend, sizes: &[usize], opts: &BenchOptions) -> Result<Vec<BenchResult>> {
    let peak = device_info(gpu)?.peak_gbps;
    let cfg = AdamConfig {
        weight_decay: 0.01,
        decoupled: true,
        ..AdamConfig::default()
    };
    let mut rows = Vec::new();
    for &n in sizes {
        let memcpy = bench_memcpy(gpu, n, opts, peak)?;
        let p_host = reference::uniform(n, 5, -1.0, 1.0);
        let g_host = reference::uniform(n, 6, -1.0, 1.0);
        let grad = gpu.htod(&g_host)?;
        for (variant, label) in [
            (ElementwiseVariant::V1Scalar, "adam_step_v1"),
            (ElementwiseVariant::V2Float4, "adam_step_v2"),
        ] {
            let mut param = gpu.htod(&p_host)?;
            let mut m = gpu.zeros(n)?;
            let mut v = gpu.zeros(n)?;
            gpu.adam_step_variant(&cfg, 1, &mut param, &grad, &mut m, &mut v, variant)?;
            let (mut p_ref, mut m_ref, mut v_ref) = (p_host.clone(), vec![0.0; n], vec![0.0; n]);
            reference::adam_step(&cfg, 1, &mut p_ref, &g_host, &mut m_ref, &mut v_ref);
            let ok = reference::max_violation(&gpu.dtoh(&param)?, &p_ref, 1e-6, 1e-5).0 <= 1.0;
            let mut step = 1;
            let samples = time_ms(gpu, opts, || {
                step += 1;
                gpu.adam_step_variant(&cfg, step, &mut param, &grad, &mut m, &mut v, variant)
            })?;
            rows.push(bandwidth_row(label, n, 28.0, samples, &memcpy, peak, ok));
        }
        rows.push(memcpy);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarize_reports_median_and_relative_spread() {
        let (median, spread) = summarize(vec![1.0, 2.0, 3.0, 4.0, 100.0]);
        assert_eq!(median, 3.0);
        assert!(spread > 1.0); // the outlier is the p90 sample
    }

    #[test]
    fn lanes_per_sm_follow_the_architecture() {
        assert_eq!(fp32_lanes_per_sm((9, 0)), 128);
        assert_eq!(fp32_lanes_per_sm((8, 0)), 64);
        assert_eq!(fp32_lanes_per_sm((8, 6)), 128);
        assert_eq!(fp32_lanes_per_sm((7, 5)), 64);
    }
}
