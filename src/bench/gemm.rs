//! GEMM benchmarks: every SGEMM variant of `kiln_cpu::gemm` and the engine's
//! dispatch, validated and compared with matrixmultiply in the same run.

use super::{finish_case, AlignedBuf, BenchConfig, BenchReport, GemmShape, Measurement, Status};
use kiln_cpu::gemm::{sgemm_variant, Variant};
use kiln_cpu::probe::{bench_data, FmaBurst};
use std::time::Instant;

/// Name of the engine's entry point in reports.
const DISPATCH: &str = "dispatch (matmul::gemm)";
/// The same-run reference.
const REFERENCE: &str = "matrixmultiply";

/// Length of the FMA burst timed between repeats (one thread's time;
/// every thread of the pool runs one): long enough to time to well under
/// 1 %, short next to a repeat.
const PAIRED_BURST_SECONDS: f64 = 0.01;

/// Default n of the square n×n×n products.
const DEFAULT_SIZES: [usize; 6] = [64, 128, 256, 512, 768, 1024];

/// One GEMM problem: C[m×n] = A[m×k]·B[k×n], with operand strides.
struct Problem {
    case: String,
    size: usize,
    m: usize,
    n: usize,
    k: usize,
    a_strides: [isize; 2],
    b_strides: [isize; 2],
}

/// Whether `name` passes the `--impls` filter.
fn wanted(cfg: &BenchConfig, v: Variant) -> bool {
    cfg.impls.is_empty()
        || v == Variant::Matrixmultiply // the reference always runs
        || cfg.impls.iter().any(|s| Variant::from_name(s) == Some(v))
}

/// Variants too slow to time at this size (seconds per call otherwise).
fn too_slow(v: Variant, flops: f64) -> Option<String> {
    let limit = match v {
        Variant::V1Naive => 3e8,
        Variant::V2Blocked => 3e9,
        _ => return None,
    };
    (flops > limit).then(|| format!("over {:.1} GFLOP per call", limit / 1e9))
}

/// Validates and times every implementation on one problem.
fn bench_problem(cfg: &BenchConfig, report: &mut BenchReport, kernel: &str, p: &Problem, variants: &[Variant]) {
    let (m, n, k) = (p.m, p.n, p.k);
    let flops = 2.0 * (m * n * k) as f64;
    let extent = |rows: usize, cols: usize, s: [isize; 2]| (rows - 1) * s[0] as usize + (cols - 1) * s[1] as usize + 1;
    let (a_buf, b_buf) = (
        AlignedBuf::new(&bench_data(extent(m, k, p.a_strides), 1, 1.0)),
        AlignedBuf::new(&bench_data(extent(k, n, p.b_strides), 2, 1.0)),
    );
    let (a, b) = (&*a_buf, &*b_buf);
    let c_strides = [n as isize, 1];
    // Reference result and the error bound per element: |A|·|B| scales the
    // rounding error of a k-term dot product.
    let mut c_ref = vec![0.0f32; m * n];
    sgemm_variant(
        Variant::Matrixmultiply,
        m,
        n,
        k,
        1.0,
        a,
        p.a_strides,
        b,
        p.b_strides,
        0.0,
        &mut c_ref,
        c_strides,
    );
    let (a_abs, b_abs): (Vec<f32>, Vec<f32>) =
        (a.iter().map(|x| x.abs()).collect(), b.iter().map(|x| x.abs()).collect());
    let mut mag = vec![0.0f32; m * n];
    sgemm_variant(
        Variant::Matrixmultiply,
        m,
        n,
        k,
        1.0,
        &a_abs,
        p.a_strides,
        &b_abs,
        p.b_strides,
        0.0,
        &mut mag,
        c_strides,
    );
    let tol_scale = 4.0 * (k as f32 + 2.0) * f32::EPSILON;

    let mut impls: Vec<(String, Option<Variant>)> = vec![(DISPATCH.to_string(), None)];
    impls.extend(
        variants
            .iter()
            .filter(|v| wanted(cfg, **v))
            .map(|v| (v.name().to_string(), Some(*v))),
    );
    let mut case = Vec::new();
    // One output buffer and one call per implementation that validates.
    let mut outputs: Vec<AlignedBuf> = Vec::new();
    let mut runnable: Vec<(usize, Option<Variant>)> = Vec::new();
    let call = |variant: Option<Variant>, c: &mut [f32]| match variant {
        Some(v) => sgemm_variant(v, m, n, k, 1.0, a, p.a_strides, b, p.b_strides, 0.0, c, c_strides),
        None => kiln_cpu::matmul::gemm(m, n, k, 1.0, a, p.a_strides, b, p.b_strides, 0.0, c, c_strides),
    };
    for (name, variant) in impls {
        let mut meas = Measurement {
            kernel: kernel.into(),
            case: p.case.clone(),
            size: p.size,
            implementation: name,
            status: Status::Ok,
            work: flops,
            unit: "GFLOP/s",
            timing: None,
            frac_of_peak: None,
            vs_reference: None,
        };
        if let Some(v) = variant {
            if !v.is_available() {
                meas.status = Status::Skipped("not supported by this CPU".into());
            } else if let Some(why) = too_slow(v, flops) {
                meas.status = Status::Skipped(why);
            }
        }
        if meas.status == Status::Ok {
            let mut out = AlignedBuf::filled(m * n, f32::NAN);
            let c = &mut *out;
            call(variant, c);
            // Written so that a NaN counts as a mismatch.
            let bad = (0..m * n).find(|&i| {
                let within = (c[i] - c_ref[i]).abs() <= tol_scale * mag[i] + 1e-6;
                !within
            });
            if let Some(i) = bad {
                meas.status = Status::Failed(format!(
                    "C[{}][{}] = {} but the reference gives {}",
                    i / n,
                    i % n,
                    c[i],
                    c_ref[i]
                ));
            } else {
                runnable.push((case.len(), variant));
                outputs.push(out);
            }
        }
        case.push(meas);
    }
    // Time everything that validated, round-robin.
    let mut closures: Vec<Box<dyn FnMut() + '_>> = runnable
        .iter()
        .zip(outputs.iter_mut())
        .map(|(&(_, variant), c)| Box::new(move || call(variant, c)) as Box<dyn FnMut()>)
        .collect();
    let mut fs: Vec<&mut dyn FnMut()> = closures.iter_mut().map(|f| &mut **f as &mut dyn FnMut()).collect();
    // An FMA burst on the pool's threads between consecutive repeats: the
    // "% at the time" column divides each repeat by the higher of the peaks
    // probed just before and just after it.
    let burst = FmaBurst::calibrated(PAIRED_BURST_SECONDS);
    let mut probe = || {
        let t = Instant::now();
        let flops = burst.run();
        flops / t.elapsed().as_secs_f64() / 1e9
    };
    let timings = super::timing::time_interleaved_paired(&mut fs, cfg.repeats, cfg.min_time, &mut probe);
    for (&(idx, _), t) in runnable.iter().zip(timings) {
        case[idx].timing = Some(t);
    }
    finish_case(&report.machine, &mut case, REFERENCE);
    report.measurements.extend(case);
}

/// Square n×n×n products for each size in `cfg.sizes` (default 64…1024), or
/// the products of `cfg.shapes`.
pub(super) fn bench_square(cfg: &BenchConfig, report: &mut BenchReport) -> Result<(), String> {
    let sizes = if cfg.sizes.is_empty() {
        DEFAULT_SIZES.to_vec()
    } else {
        cfg.sizes.clone()
    };
    if sizes.contains(&0) {
        return Err("gemm sizes must be positive".into());
    }
    let shapes: Vec<GemmShape> = if cfg.shapes.is_empty() {
        sizes
            .iter()
            .map(|&n| GemmShape {
                m: n,
                n,
                k: n,
                a_transposed: false,
                b_transposed: false,
            })
            .collect()
    } else {
        cfg.shapes.clone()
    };
    for (i, s) in shapes.iter().enumerate() {
        let (m, n, k) = (s.m, s.n, s.k);
        let p = Problem {
            case: s.to_string(),
            // Squares keep n (the x axis of the plot); given shapes, their index.
            size: if cfg.shapes.is_empty() { n } else { i },
            m,
            n,
            k,
            a_strides: if s.a_transposed {
                [1, m as isize]
            } else {
                [k as isize, 1]
            },
            b_strides: if s.b_transposed {
                [1, k as isize]
            } else {
                [n as isize, 1]
            },
        };
        bench_problem(cfg, report, "gemm", &p, Variant::all());
    }
    report.notes.push(format!(
        "gemm: C = A·B, row-major unless a shape says :nt, :tn or :tt (that operand stored transposed); GFLOP/s = 2·m·n·k / time; % of the FMA peak measured with {} thread(s) \
         (best probe of the run; \"at the time\": median over repeats of each repeat's rate over the higher of the FMA bursts run just before and after it); \
         vs ref = rate / matrixmultiply's rate in this run (matrixmultiply is single-threaded as built here).",
        report.machine.threads
    ));
    report.notes.push(dispatch_note());
    Ok(())
}

/// Which packed kernel `dispatch` runs on this CPU, and why not v5 where
/// the CPU has AVX-512 but runs it as two 256-bit halves.
fn dispatch_note() -> String {
    let packed = kiln_cpu::gemm::best_packed();
    let (small, min_mnk) = (kiln_cpu::gemm::SMALL_DIM, kiln_cpu::gemm::PACKED_MIN_MNK);
    if packed == Variant::V3PackedScalar {
        return format!(
            "dispatch: matrixmultiply (no AVX2 on this CPU), the blocked v2 for products with a dimension below {small}."
        );
    }
    let why = if packed != Variant::V5Avx512 && Variant::V5Avx512.is_available() {
        " (this CPU runs each 512-bit FMA as two 256-bit halves, where v4 measured faster)"
    } else {
        ""
    };
    format!(
        "dispatch: {} for products with every dimension ≥ {small} and at least {min_mnk} multiply-adds{why}; \
         v6 for thinner ones, matrixmultiply for smaller ones.{}",
        packed.name(),
        v5_blocking_note()
    )
}

/// v5's blocking, where it can run; said in full when the environment set it.
#[cfg(target_arch = "x86_64")]
fn v5_blocking_note() -> String {
    if !Variant::V5Avx512.is_available() {
        return String::new();
    }
    let (mc, kc, nc, small_m, long_kc) = kiln_cpu::gemm::v5_blocking();
    let from = match std::env::var(kiln_cpu::gemm::V5_BLOCKING_ENV) {
        Ok(v) => format!(" ({}={v})", kiln_cpu::gemm::V5_BLOCKING_ENV),
        Err(_) => String::new(),
    };
    format!(" v5 blocking: mc {mc}, kc {kc}, nc {nc}, small_m {small_m}, long_kc {long_kc}{from}.")
}

#[cfg(not(target_arch = "x86_64"))]
fn v5_blocking_note() -> String {
    String::new()
}

/// The GAN's linear layers as (config, batch, in, out); the same list as
/// the PyTorch reference script, plus the article's two 12288-wide layers.
pub const GAN_LAYERS: [(&str, usize, usize, usize); 13] = [
    ("seed", 64, 100, 128),
    ("seed", 64, 128, 784),
    ("seed", 64, 784, 128),
    ("article", 100, 128, 12288),
    ("article", 100, 12288, 128),
    ("mlp-large", 256, 100, 256),
    ("mlp-large", 256, 256, 512),
    ("mlp-large", 256, 512, 1024),
    ("mlp-large", 256, 1024, 784),
    ("mlp-large", 256, 784, 512),
    ("mlp-large", 256, 512, 256),
    ("toy2d", 256, 2, 128),
    ("toy2d", 256, 128, 128),
];

/// For every GAN layer, the three GEMMs of a training step with the layouts
/// the engine uses (nn.Linear's weight W is [out, in], row-major):
/// forward `x·Wᵀ` (B is a transposed view), grad-input `dy·W`, and
/// grad-weight `dyᵀ·x` (A is a transposed view).
pub(super) fn bench_layers(cfg: &BenchConfig, report: &mut BenchReport) -> Result<(), String> {
    let variants: Vec<Variant> = Variant::all()
        .iter()
        .copied()
        .filter(|v| *v != Variant::V1Naive)
        .collect();
    for (i, &(name, batch, d_in, d_out)) in GAN_LAYERS.iter().enumerate() {
        let problems = [
            Problem {
                case: format!("{name} fwd x[{batch}x{d_in}]@W^T[{d_in}x{d_out}]"),
                size: 3 * i,
                m: batch,
                n: d_out,
                k: d_in,
                a_strides: [d_in as isize, 1],
                b_strides: [1, d_in as isize],
            },
            Problem {
                case: format!("{name} bwd-in dy[{batch}x{d_out}]@W[{d_out}x{d_in}]"),
                size: 3 * i + 1,
                m: batch,
                n: d_in,
                k: d_out,
                a_strides: [d_out as isize, 1],
                b_strides: [d_in as isize, 1],
            },
            Problem {
                case: format!("{name} bwd-w dy^T[{d_out}x{batch}]@x[{batch}x{d_in}]"),
                size: 3 * i + 2,
                m: d_out,
                n: d_in,
                k: batch,
                a_strides: [1, d_out as isize],
                b_strides: [d_in as isize, 1],
            },
        ];
        for p in &problems {
            bench_problem(cfg, report, "layers", p, &variants);
        }
    }
    report.notes.push(
        "layers: the three GEMMs of each GAN linear layer (W is [out, in] as in nn.Linear; Wᵀ and dyᵀ are \
         strided views, not copies); \"% at the time\": each repeat's rate over the FMA bursts run just before and after it (see gemm); \
         compare with torch.mm / torch.addmm from the PyTorch reference script pytorch_kernels.py."
            .into(),
    );
    report.notes.push(dispatch_note());
    Ok(())
}
