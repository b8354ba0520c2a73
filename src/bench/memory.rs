//! Memory-bound kernels (elementwise, reductions, Adam): GB/s against a plain
//! copy measured in the same run and the machine's copy bandwidth.
//!
//! The harness is a list of named cases, each a closure that runs the kernel
//! once, the bytes one call moves, and a check against a plain f64 reference,
//! so adding a kernel is adding one entry. Every operand and output sits on a
//! 64-byte aligned buffer, as the engine's tensors do.

use super::timing::time_interleaved;
use super::{finish_case, AlignedBuf, BenchConfig, BenchReport, Measurement, Status};
use kiln_cpu::elementwise::{self, ActBackward, BinaryOp, Strided, UnaryOp};
use kiln_cpu::optim::{adam_step, AdamStep};
use kiln_cpu::probe::bench_data;
use kiln_cpu::reduce::{reduce_all, reduce_dim, ReduceOp};

/// Name of the same-run reference case.
const REFERENCE: &str = "copy (copy_from_slice)";

/// One benchmarked memory-bound kernel.
struct Case<'a> {
    name: String,
    /// Bytes read + written per call.
    bytes: f64,
    /// Runs the kernel once (what gets timed).
    run: Box<dyn FnMut() + 'a>,
    /// Runs the kernel on fresh data and compares with the reference.
    check: Box<dyn FnMut() -> Result<(), String> + 'a>,
}

/// Compares `got` with an f64 reference elementwise (`atol + rtol·|want|`).
fn compare(got: &[f32], want: impl Fn(usize) -> f64, atol: f64, rtol: f64) -> Result<(), String> {
    for (i, &g) in got.iter().enumerate() {
        let w = want(i);
        // Written so that a NaN counts as a mismatch.
        let within = (g as f64 - w).abs() <= atol + rtol * w.abs();
        if !within {
            return Err(format!("element {i}: got {g}, want {w}"));
        }
    }
    Ok(())
}

/// Compares column sums of a `[rows, cols]` matrix, whose element `i` (row
/// major) is `term(i)`, with f64 sums.
///
/// The bound is that of an f32 sum added row after row, whose additions each
/// round by up to half an ulp of the running sum s_k: independent roundings
/// add up to about u·√(Σ s_k²), u = 2⁻²⁴, plus the terms' own rounding
/// (about 4u·√(Σ t²)), allowed ten times over. A bound relative to the
/// result rejected correct 65 536-row sums whose terms cancel (2e-3 off on
/// -6.93); one relative to the sum of magnitudes rejected correct sums whose
/// terms do not (0.12 off on -43 672). This one holds for both and still
/// sees a dropped row of cancelling terms.
fn compare_sums(got: &[f32], rows: usize, cols: usize, term: impl Fn(usize) -> f64) -> Result<(), String> {
    const U: f64 = 1.0 / (1u64 << 24) as f64;
    for (j, &g) in got.iter().enumerate().take(cols) {
        let (mut sum, mut running_sq, mut terms_sq) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..rows {
            let t = term(i * cols + j);
            sum += t;
            running_sq += sum * sum;
            terms_sq += t * t;
        }
        let bound = 1e-4 + 10.0 * U * (running_sq.sqrt() + 4.0 * terms_sq.sqrt());
        // Written so that a NaN counts as a mismatch.
        let within = (g as f64 - sum).abs() <= bound;
        if !within {
            return Err(format!("column {j}: got {g}, want {sum} (bound {bound:.3e})"));
        }
    }
    Ok(())
}

fn label(n: usize) -> String {
    if n.is_multiple_of(1 << 20) {
        format!("{}M", n >> 20)
    } else if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn unary_case<'a>(name: &str, op: UnaryOp, reference: fn(f64) -> f64, x: &'a [f32]) -> Case<'a> {
    let mut out = AlignedBuf::filled(x.len(), 0.0);
    let mut out2 = AlignedBuf::filled(x.len(), 0.0);
    Case {
        name: name.into(),
        bytes: 8.0 * x.len() as f64,
        run: Box::new(move || elementwise::unary(op, x, &mut out)),
        check: Box::new(move || {
            elementwise::unary(op, x, &mut out2);
            compare(&out2, |i| reference(x[i] as f64), 1e-6, 1e-5)
        }),
    }
}

fn elementwise_cases<'a>(x: &'a [f32], y: &'a [f32]) -> Vec<Case<'a>> {
    let n = x.len();
    let shape = [n];
    let mut out = AlignedBuf::filled(n, 0.0);
    let mut out2 = AlignedBuf::filled(n, 0.0);
    let (mut dx, mut dx2) = (AlignedBuf::filled(n, 0.0), AlignedBuf::filled(n, 0.0));
    let (mut dx3, mut dx4, mut dx5) = (
        AlignedBuf::filled(n, 0.0),
        AlignedBuf::filled(n, 0.0),
        AlignedBuf::filled(n, 0.0),
    );
    // A linear layer's sigmoid backward with its bias gradient (the column
    // sums of dx over [n/256, 256]): two passes, then the fused one pass.
    let cols = 256;
    let rows = n / cols;
    let (mut sums, mut sums2, mut sums3) = (
        AlignedBuf::filled(cols, 0.0),
        AlignedBuf::filled(cols, 0.0),
        AlignedBuf::filled(cols, 0.0),
    );
    let dsig = move |i: usize| y[i] as f64 * x[i] as f64 * (1.0 - x[i] as f64);
    let check_bias = move |dx: &[f32], sums: &[f32]| {
        compare(dx, dsig, 1e-5, 1e-5)?;
        compare_sums(sums, rows, cols, dsig)
    };
    let m = rows * cols;
    vec![
        unary_case("relu", UnaryOp::Relu, |v| v.max(0.0), x),
        unary_case(
            "leaky_relu(0.2)",
            UnaryOp::LeakyRelu(0.2),
            |v| if v > 0.0 { v } else { 0.2 * v },
            x,
        ),
        unary_case("sigmoid", UnaryOp::Sigmoid, |v| 1.0 / (1.0 + (-v).exp()), x),
        unary_case("tanh", UnaryOp::Tanh, f64::tanh, x),
        Case {
            name: "add (binary, 12 B/elem)".into(),
            bytes: 12.0 * n as f64,
            run: Box::new(move || {
                elementwise::binary(BinaryOp::Add, Strided::vector(x), Strided::vector(y), &shape, &mut out)
            }),
            check: Box::new(move || {
                elementwise::binary(BinaryOp::Add, Strided::vector(x), Strided::vector(y), &shape, &mut out2);
                compare(&out2, |i| x[i] as f64 + y[i] as f64, 1e-6, 1e-6)
            }),
        },
        Case {
            name: "sigmoid_backward (12 B/elem)".into(),
            bytes: 12.0 * n as f64,
            run: Box::new(move || elementwise::act_backward(ActBackward::Sigmoid, x, y, &mut dx)),
            check: Box::new(move || {
                elementwise::act_backward(ActBackward::Sigmoid, x, y, &mut dx2);
                compare(&dx2, dsig, 1e-5, 1e-5)
            }),
        },
        Case {
            name: "sigmoid_backward, then column sum of [n/256, 256] (two passes, 16 B/elem)".into(),
            bytes: 16.0 * m as f64,
            run: Box::new(move || {
                elementwise::act_backward(ActBackward::Sigmoid, &x[..m], &y[..m], &mut dx3[..m]);
                reduce_dim(ReduceOp::Sum, &dx3[..m], 1, rows, cols, &mut sums);
            }),
            check: Box::new(move || {
                elementwise::act_backward(ActBackward::Sigmoid, &x[..m], &y[..m], &mut dx4[..m]);
                reduce_dim(ReduceOp::Sum, &dx4[..m], 1, rows, cols, &mut sums2);
                check_bias(&dx4[..m], &sums2)
            }),
        },
        Case {
            name: "sigmoid_backward + column sum of [n/256, 256] (act_backward_colsum, one pass, 12 B/elem)".into(),
            bytes: 12.0 * m as f64,
            run: Box::new(move || {
                elementwise::act_backward_colsum(
                    ActBackward::Sigmoid,
                    &x[..m],
                    &y[..m],
                    &mut dx5[..m],
                    cols,
                    &mut sums3,
                )
            }),
            check: {
                let (mut dx6, mut sums4) = (AlignedBuf::filled(m, 0.0), AlignedBuf::filled(cols, 0.0));
                Box::new(move || {
                    elementwise::act_backward_colsum(
                        ActBackward::Sigmoid,
                        &x[..m],
                        &y[..m],
                        &mut dx6,
                        cols,
                        &mut sums4,
                    );
                    check_bias(&dx6, &sums4)
                })
            },
        },
    ]
}

fn reduce_cases(x: &[f32]) -> Vec<Case<'_>> {
    let n = x.len();
    let sum64: f64 = x.iter().map(|&v| v as f64).sum();
    let abs64: f64 = x.iter().map(|&v| v.abs() as f64).sum();
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Column sums of an [n/256, 256] matrix: the bias gradient of a layer.
    let cols = 256;
    let rows = n / cols;
    let (mut out, mut out2) = (AlignedBuf::filled(cols, 0.0), AlignedBuf::filled(cols, 0.0));
    vec![
        Case {
            name: "sum (reduce_all)".into(),
            bytes: 4.0 * n as f64,
            run: Box::new(move || {
                std::hint::black_box(reduce_all(ReduceOp::Sum, x));
            }),
            check: Box::new(move || {
                let s = reduce_all(ReduceOp::Sum, x) as f64;
                let tol = 1e-5 * abs64 + 1e-3;
                ((s - sum64).abs() <= tol)
                    .then_some(())
                    .ok_or(format!("sum {s}, want {sum64}"))
            }),
        },
        Case {
            name: "max (reduce_all)".into(),
            bytes: 4.0 * n as f64,
            run: Box::new(move || {
                std::hint::black_box(reduce_all(ReduceOp::Max, x));
            }),
            check: Box::new(move || {
                let m = reduce_all(ReduceOp::Max, x);
                (m == max).then_some(()).ok_or(format!("max {m}, want {max}"))
            }),
        },
        Case {
            name: "column sum of [n/256, 256] (reduce_dim)".into(),
            bytes: 4.0 * (rows * cols + cols) as f64,
            run: Box::new(move || reduce_dim(ReduceOp::Sum, &x[..rows * cols], 1, rows, cols, &mut out)),
            check: Box::new(move || {
                reduce_dim(ReduceOp::Sum, &x[..rows * cols], 1, rows, cols, &mut out2);
                compare_sums(&out2, rows, cols, |i| x[i] as f64)
            }),
        },
    ]
}

/// PyTorch's Adam update in f64, for checking one step.
fn adam_reference(h: &AdamStep, p: f64, g: f64, m: f64, v: f64) -> f64 {
    let (b1, b2) = h.betas;
    let m = b1 * m + (1.0 - b1) * g;
    let v = b2 * v + (1.0 - b2) * g * g;
    let bc1 = 1.0 - b1.powi(h.step as i32);
    let bc2 = 1.0 - b2.powi(h.step as i32);
    p - h.lr / bc1 * m / ((v.sqrt() / bc2.sqrt()) + h.eps)
}

fn adam_cases(x: &[f32]) -> Vec<Case<'_>> {
    let n = x.len();
    let h = AdamStep {
        lr: 1e-3,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        step: 1,
    };
    let g = AlignedBuf::new(&x.iter().map(|v| v * 1e-2).collect::<Vec<f32>>());
    let (mut p, mut m, mut v) = (
        AlignedBuf::new(x),
        AlignedBuf::filled(n, 0.0),
        AlignedBuf::filled(n, 0.0),
    );
    let g2 = AlignedBuf::new(&g);
    vec![Case {
        name: "adam_step (28 B/param)".into(),
        bytes: 28.0 * n as f64,
        run: Box::new(move || adam_step(&h, &mut p, &g, &mut m, &mut v)),
        check: Box::new(move || {
            let (mut p, mut m, mut v) = (
                AlignedBuf::new(x),
                AlignedBuf::filled(n, 0.1),
                AlignedBuf::filled(n, 0.01),
            );
            adam_step(&h, &mut p, &g2, &mut m, &mut v);
            compare(
                &p,
                |i| adam_reference(&h, x[i] as f64, g2[i] as f64, 0.1, 0.01),
                1e-6,
                1e-5,
            )
        }),
    }]
}

/// Benchmarks one memory-bound family (`elementwise`, `reduce`, `adam`) for
/// each element count in `cfg.sizes` (default 1M and 16M, 1M and 10M for Adam).
pub(super) fn bench(kernel: &str, cfg: &BenchConfig, report: &mut BenchReport) -> Result<(), String> {
    let sizes = match (cfg.sizes.is_empty(), kernel) {
        (false, _) => cfg.sizes.clone(),
        (true, "adam") => vec![1_000_000, 10_000_000],
        (true, _) => vec![1 << 20, 1 << 24],
    };
    if sizes.iter().any(|&n| n < 256) {
        return Err(format!("{kernel} sizes must be at least 256 elements"));
    }
    for n in sizes {
        let x = AlignedBuf::new(&bench_data(n, 11, 2.0));
        let y = AlignedBuf::new(&bench_data(n, 12, 2.0));
        let mut cases = {
            let mut dst = AlignedBuf::filled(n, 0.0);
            let x = &x;
            vec![Case {
                name: REFERENCE.into(),
                bytes: 8.0 * n as f64,
                run: Box::new(move || dst.copy_from_slice(x)),
                check: Box::new(|| Ok(())),
            }]
        };
        cases.extend(match kernel {
            "elementwise" => elementwise_cases(&x, &y),
            "reduce" => reduce_cases(&x),
            "adam" => adam_cases(&x),
            other => return Err(format!("unknown memory kernel `{other}`")),
        });
        let mut measured = Vec::new();
        let mut runs: Vec<(usize, Box<dyn FnMut() + '_>)> = Vec::new();
        for mut c in cases {
            let mut meas = Measurement {
                kernel: kernel.into(),
                case: label(n),
                size: n,
                implementation: c.name.clone(),
                status: Status::Ok,
                work: c.bytes,
                unit: "GB/s",
                timing: None,
                frac_of_peak: None,
                vs_reference: None,
            };
            match (c.check)() {
                Ok(()) => runs.push((measured.len(), c.run)),
                Err(why) => meas.status = Status::Failed(why),
            }
            measured.push(meas);
        }
        // Time everything that validated, round-robin with the copy reference.
        let mut fs: Vec<&mut dyn FnMut()> = runs.iter_mut().map(|(_, f)| &mut **f as &mut dyn FnMut()).collect();
        let timings = time_interleaved(&mut fs, cfg.repeats, cfg.min_time);
        for ((idx, _), t) in runs.iter().zip(timings) {
            measured[*idx].timing = Some(t);
        }
        finish_case(&report.machine, &mut measured, REFERENCE);
        report.measurements.extend(measured);
    }
    report.notes.push(format!(
        "{kernel}: GB/s counts bytes read + written once per element; % of the copy bandwidth probe (256 MiB); \
         vs ref = rate / a single-threaded copy_from_slice of the same size in this run."
    ));
    if kernel == "elementwise" {
        report.notes.push(format!(
            "elementwise: f32 sigmoid and tanh run the {} kernel on this CPU (every kernel gives the bits of the scalar formulas).",
            kiln_cpu::elementwise::transcendental_kernel()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::compare_sums;

    #[test]
    fn column_sums_are_held_to_the_rounding_of_a_running_sum() {
        // 65 536 rows, the default elementwise size's.
        let (rows, cols) = (65_536, 4);
        let hash = |i: usize, k: u64, m: u64| ((i as u64 * k + 17) % m) as f32 / m as f32 * 4.0 - 2.0;
        // The sigmoid backward's terms, y·x·(1 − x), x and y in [-2, 2)
        // drawn apart: they cancel, as in the benchmark.
        let cancelling = |i: usize| {
            let (x, y) = (hash(i, 2_654_435_761, 10_007), hash(i, 40_503, 10_009));
            (y * x * (1.0 - x)) as f64
        };
        // All of one sign: the running sum grows to tens of thousands.
        let one_signed = |i: usize| {
            let x = hash(i, 2_654_435_761, 10_007);
            (x * x + 0.1) as f64
        };
        let f32_sums = |term: &dyn Fn(usize) -> f64, skip: Option<usize>| -> Vec<f32> {
            (0..cols)
                .map(|j| {
                    (0..rows)
                        .filter(|&i| Some(i) != skip)
                        .fold(0.0f32, |s, i| s + term(i * cols + j) as f32)
                })
                .collect()
        };
        for term in [&cancelling as &dyn Fn(usize) -> f64, &one_signed] {
            compare_sums(&f32_sums(term, None), rows, cols, term).unwrap();
        }
        // A dropped row of cancelling terms is still caught, and a NaN.
        assert!(compare_sums(&f32_sums(&cancelling, Some(777)), rows, cols, cancelling).is_err());
        let mut nan = f32_sums(&cancelling, None);
        nan[2] = f32::NAN;
        assert!(compare_sums(&nan, rows, cols, cancelling).is_err());
    }
}
