//! `kiln bench`: kernel benchmarks (see [`crate::bench`]) and the GAN
//! training-step benchmark that mirrors the PyTorch reference script.

use crate::bench::{self, BenchConfig};
use kiln_core::{DType, Device, Error, KeepWarm, Result, Tensor};
use kiln_gan::config::{Act, GanLoss};
use kiln_gan::losses::{d_loss, g_loss};
use kiln_gan::trainer::mlp;
use kiln_nn::{Activation, Adam, AdamConfig, Module, Optimizer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Flags of `kiln bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to benchmark: gemm, layers, elementwise, reduce, adam, gan-step, all.
    kernel: String,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Sizes, comma-separated (n of n³ GEMMs, or element counts).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Only these implementations (names or tags like v4, mm), comma-separated.
    #[arg(long, value_delimiter = ',')]
    impls: Vec<String>,
    /// gemm: these products instead of squares, MxNxK with an optional
    /// layout :nn, :nt (B stored transposed), :tn or :tt; comma-separated.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// Timed repeats per measurement.
    #[arg(long, default_value_t = 7)]
    repeats: usize,
    /// gan-step: preset(s) seed, article, toy (comma-separated).
    #[arg(long, default_value = "seed,article,toy", value_delimiter = ',')]
    preset: Vec<String>,
    /// gan-step: timed steps per repeat.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// gan-step: backpropagate the G step into D's weights too (as the
    /// PyTorch script's `loss_g.backward()` does) instead of G's only.
    #[arg(long)]
    full_g_backward: bool,
    /// gan-step: also print the median time of each phase of the step (G
    /// forward, D forward, D backward, D's Adam, the G step's D forward,
    /// its backward, G's Adam), as the PyTorch reference script's
    /// `--breakdown` does. CPU only.
    #[arg(long)]
    breakdown: bool,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw a PNG plot of the results.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// Runs `kiln bench`.
pub fn run(a: BenchArgs) -> Result<ExitCode> {
    let device: Device = a.device.parse()?;
    if a.repeats == 0 {
        return Err(Error::Invalid("--repeats must be at least 1".into()));
    }
    // Options the path taken would drop without a word.
    let is_gan_step = a.kernel == "gan-step";
    let dropped = [
        // It times the phases of a CPU gan-step only.
        (a.breakdown && (!is_gan_step || device != Device::Cpu), "--breakdown"),
        (!a.impls.is_empty() && (is_gan_step || device != Device::Cpu), "--impls"),
        (!a.sizes.is_empty() && is_gan_step, "--sizes"),
        (
            !a.shapes.is_empty() && (is_gan_step || device != Device::Cpu),
            "--shapes",
        ),
        (a.full_g_backward && !is_gan_step, "--full-g-backward"),
    ];
    if let Some((_, flag)) = dropped.iter().find(|(bad, _)| *bad) {
        return Err(Error::Invalid(format!(
            "{flag} does not apply to kiln bench {} --device {device}",
            a.kernel
        )));
    }
    if device != Device::Cpu {
        return cuda_bench(&a, device);
    }
    if is_gan_step {
        return gan_step(&a, Device::Cpu, None);
    }
    let cfg = BenchConfig {
        kernel: a.kernel.clone(),
        sizes: a.sizes.clone(),
        threads: a.threads,
        json: a.json.clone(),
        plot: a.plot.clone(),
        repeats: a.repeats,
        impls: a.impls.clone(),
        shapes: a
            .shapes
            .iter()
            .map(|s| s.parse())
            .collect::<std::result::Result<_, String>>()
            .map_err(Error::Invalid)?,
        ..Default::default()
    };
    let report = bench::run(&cfg).map_err(Error::Invalid)?;
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "cuda")]
fn cuda_bench(a: &BenchArgs, device: Device) -> Result<ExitCode> {
    use kiln_cuda::backend::CudaBackend;
    use kiln_cuda::bench::{bench_adam, bench_elementwise, bench_gemm, bench_reduce, device_info, BenchOptions};
    use kiln_cuda::gemm::GemmLayout;
    let cuda = |e: kiln_cuda::error::CudaError| match e {
        kiln_cuda::error::CudaError::NoDevice(m) => Error::NoDevice(m),
        other => Error::Cuda(other.to_string()),
    };
    let gpu = CudaBackend::global().map_err(cuda)?;
    let info = device_info(gpu).map_err(cuda)?;
    if a.kernel == "gan-step" {
        let peak = info.peak_gflops.map(|g| (format!("{} FP32", info.name), g));
        return gan_step(a, device, peak);
    }
    println!(
        "kiln bench {} --device cuda: {} (sm_{}{}, {} SMs), peak {:.0} GFLOP/s FP32, {:.0} GB/s",
        a.kernel,
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.sm_count,
        info.peak_gflops.unwrap_or(f64::NAN),
        info.peak_gbps.unwrap_or(f64::NAN)
    );
    let opts = BenchOptions {
        repeats: a.repeats,
        ..Default::default()
    };
    let results = match a.kernel.as_str() {
        "gemm" => {
            let sizes = if a.sizes.is_empty() {
                vec![1024, 2048, 4096, 8192]
            } else {
                a.sizes.clone()
            };
            let shapes: Vec<(usize, usize, usize)> = sizes.iter().map(|&n| (n, n, n)).collect();
            let mut all = Vec::new();
            for layout in [GemmLayout::NN, GemmLayout::NT, GemmLayout::TN] {
                all.extend(bench_gemm(gpu, &shapes, layout, &opts).map_err(cuda)?);
            }
            all
        }
        "layers" => {
            let shapes = vec![
                (64, 128, 100),
                (64, 784, 128),
                (64, 128, 784),
                (100, 12288, 128),
                (100, 128, 12288),
            ];
            bench_gemm(gpu, &shapes, GemmLayout::NT, &opts).map_err(cuda)?
        }
        "elementwise" => {
            let sizes = if a.sizes.is_empty() {
                vec![1 << 20, 1 << 24, 1 << 26]
            } else {
                a.sizes.clone()
            };
            bench_elementwise(gpu, &sizes, &opts).map_err(cuda)?
        }
        "adam" => {
            let sizes = if a.sizes.is_empty() {
                vec![1 << 20, 1 << 24]
            } else {
                a.sizes.clone()
            };
            bench_adam(gpu, &sizes, &opts).map_err(cuda)?
        }
        "reduce" => {
            let sizes = if a.sizes.is_empty() {
                vec![1 << 20, 1 << 24, 1 << 26]
            } else {
                a.sizes.clone()
            };
            bench_reduce(gpu, &sizes, &opts).map_err(cuda)?
        }
        other => {
            return Err(Error::Invalid(format!(
                "kiln bench {other} --device cuda: expected gemm, layers, elementwise, reduce, adam or gan-step"
            )))
        }
    };
    println!("| kernel | size | median ms | spread | GFLOP/s | GB/s | % of reference | % of peak | validated |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let fmt = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |x| format!("{x:.d$}"));
    for r in &results {
        println!(
            "| {} | {} | {:.4} | {:.1}% | {} | {} | {} | {} | {} |",
            r.name,
            r.size,
            r.median_ms,
            100.0 * r.spread,
            fmt(r.gflops, 0),
            fmt(r.gbps, 0),
            fmt(r.pct_ref, 1),
            fmt(r.pct_peak, 1),
            if r.validated { "yes" } else { "FAILED" }
        );
    }
    if let Some(path) = &a.plot {
        let points: Vec<crate::bench::PlotPoint> = results
            .iter()
            .filter_map(|r| {
                let (rate, unit) = match (r.gflops, r.gbps) {
                    (Some(g), _) => (g, "GFLOP/s"),
                    (None, Some(b)) => (b, "GB/s"),
                    (None, None) => return None,
                };
                Some(crate::bench::PlotPoint {
                    case: r.size.clone(),
                    implementation: r.name.clone(),
                    rate,
                    unit,
                })
            })
            .collect();
        let peaks = (info.peak_gflops.unwrap_or(0.0), info.peak_gbps.unwrap_or(0.0));
        crate::bench::write_device_plot(&info.name, &a.kernel, peaks, &points, path).map_err(Error::Invalid)?;
    }
    if let Some(p) = &a.json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                serde_json::json!({"name": r.name, "size": r.size, "median_ms": r.median_ms, "spread": r.spread,
                "gflops": r.gflops, "gbps": r.gbps, "pct_ref": r.pct_ref, "pct_peak": r.pct_peak, "validated": r.validated})
            })
            .collect();
        let doc = serde_json::json!({"device": info.name, "kernel": a.kernel, "results": rows});
        write_json(p, &doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "cuda"))]
fn cuda_bench(_: &BenchArgs, _: Device) -> Result<ExitCode> {
    Err(Error::NoDevice(
        "this kiln was built without CUDA; rebuild with --features cuda".into(),
    ))
}

/// One GAN configuration of the step benchmark (same as the PyTorch script's).
struct StepConfig {
    name: &'static str,
    g: Vec<usize>,
    d: Vec<usize>,
    g_out: Option<Activation>,
    d_sigmoid: bool,
    loss: GanLoss,
    batch: usize,
}

fn step_config(name: &str) -> Result<StepConfig> {
    Ok(match name {
        "seed" => StepConfig {
            name: "seed",
            g: vec![100, 128, 784],
            d: vec![784, 128, 1],
            g_out: Some(Activation::Sigmoid),
            d_sigmoid: true,
            loss: GanLoss::Ns,
            batch: 64,
        },
        "article" => StepConfig {
            name: "article",
            g: vec![100, 128, 12288],
            d: vec![12288, 128, 1],
            g_out: Some(Activation::Sigmoid),
            d_sigmoid: true,
            loss: GanLoss::Lsgan,
            batch: 100,
        },
        "toy" | "toy2d" => StepConfig {
            name: "toy2d",
            g: vec![2, 128, 128, 2],
            d: vec![2, 128, 128, 1],
            g_out: None,
            d_sigmoid: false,
            loss: GanLoss::Ns,
            batch: 256,
        },
        other => {
            return Err(Error::Invalid(format!(
                "unknown gan-step preset {other:?}: expected seed, article, toy"
            )))
        }
    })
}

/// Times full GAN steps: noise, G forward, D step on real + detached fake, G
/// step (as kiln's trainer does it: gradients for G's parameters only, unless
/// `--full-g-backward`). On a GPU the models and data live on the device, noise
/// is drawn on the host and copied (as the trainer does), and every step ends
/// with reading the G loss, which waits for the device (the PyTorch script
/// synchronises once per step too).
///
/// Next to steps/s it prints the rate of the step's matrix products
/// ([`step_gemm_flops`] per step over the step's time) as a fraction of the
/// machine's peak: on the CPU the FMA probe's (run once, before the steps, on
/// as many threads), on a GPU its FP32 peak (`peak`, from its attributes).
fn gan_step(a: &BenchArgs, device: Device, peak: Option<(String, f64)>) -> Result<ExitCode> {
    if a.plot.is_some() {
        return Err(Error::Invalid(
            "kiln bench gan-step draws no plot (--plot is for the kernel benchmarks); use --json".into(),
        ));
    }
    if a.steps == 0 {
        return Err(Error::Invalid(
            "kiln bench gan-step --steps 0: a repeat needs at least one step to time".into(),
        ));
    }
    let configs = a.preset.iter().map(|p| step_config(p)).collect::<Result<Vec<_>>>()?;
    crate::cli::set_threads(a.threads)?;
    let peak = match peak {
        Some(p) => Some(p),
        None if device == Device::Cpu => {
            let p = kiln_cpu::probe::fma_peak_gflops(rayon::current_num_threads());
            Some((format!("{} probe, {} thread(s)", p.isa.name(), p.threads), p.gflops))
        }
        None => None,
    };
    // On a worker of the pool, as training runs (see `cli::on_pool`).
    crate::cli::on_pool(device, || gan_step_steps(a, device, &configs, peak))
}

/// The multiply-adds of one benchmark step's matrix products, ×2 (FLOPs):
/// G forward once (its fake serves both steps); D forward three times (real
/// and detached fake in the D step, fake in the G step); D step backward:
/// weight gradients of both D forwards and input gradients inside D (not into
/// the first layer: its inputs are data and a detached fake); G step backward:
/// input gradients through all of D, D's weight gradients only with
/// `full_g_backward`, G's weight gradients, and input gradients inside G (not
/// into the noise). Bias gradients, activations, losses and Adam are not
/// counted: they are memory-bound work that a GEMM-bound step hides.
fn step_gemm_flops(c: &StepConfig, full_g_backward: bool) -> f64 {
    let layers = |dims: &[usize], skip_first: bool| -> f64 {
        dims.windows(2)
            .skip(usize::from(skip_first))
            .map(|w| 2.0 * (c.batch * w[0] * w[1]) as f64)
            .sum()
    };
    let (g, d) = (layers(&c.g, false), layers(&c.d, false));
    let (g_inner, d_inner) = (layers(&c.g, true), layers(&c.d, true));
    let d_step = 2.0 * d + 2.0 * d + 2.0 * d_inner;
    let g_step = d + d + if full_g_backward { d } else { 0.0 } + g + g_inner;
    g + d_step + g_step
}

/// The phases `--breakdown` times, named as the PyTorch reference script
/// names them.
const PHASES: [&str; 7] = [
    "G fwd",
    "D fwd x2 + loss",
    "D bwd",
    "D Adam",
    "D fwd + loss (G step)",
    "bwd through D and G",
    "G Adam",
];

fn gan_step_steps(
    a: &BenchArgs,
    device: Device,
    configs: &[StepConfig],
    peak: Option<(String, f64)>,
) -> Result<ExitCode> {
    println!(
        "kiln bench gan-step --device {device}: {} threads; median over {} repeats of {} steps",
        rayon::current_num_threads(),
        a.repeats,
        a.steps
    );
    match &peak {
        Some((what, g)) => println!("peak: {g:.1} GFLOP/s ({what})"),
        None => println!("peak: unknown for this device"),
    }
    println!(
        "| config | batch | median ms/step | steps/s | min-max ms | GEMM GFLOP/s | % of peak | steps/s at peak | loss D/G end |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    let mut breakdowns = Vec::new();
    for c in configs {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut g = mlp(&c.g, Act::Relu, c.g_out, &mut rng)?;
        let mut d = mlp(&c.d, Act::Relu, c.d_sigmoid.then_some(Activation::Sigmoid), &mut rng)?;
        g.to_device(device)?;
        d.to_device(device)?;
        let params: usize = g.parameters().iter().chain(&d.parameters()).map(Tensor::numel).sum();
        let mut opt_g = Adam::new(g.parameters(), AdamConfig::default());
        let mut opt_d = Adam::new(d.parameters(), AdamConfig::default());
        let real_pool = Tensor::rand(&[4 * c.batch, c.d[0]], DType::F32, Device::Cpu, &mut rng)?.to(device)?;
        // `marks` gets the time at the start of the step and at the end of
        // each of its PHASES (a clock read costs tens of nanoseconds).
        let mut step = |i: usize, rng: &mut ChaCha8Rng, marks: &mut [Instant; 8]| -> Result<(Tensor, f64)> {
            marks[0] = Instant::now();
            let real = real_pool.narrow(0, (i % 4) * c.batch, c.batch)?;
            let z = Tensor::randn(&[c.batch, c.g[0]], DType::F32, Device::Cpu, rng)?.to(device)?;
            let fake = g.forward(&z)?;
            marks[1] = Instant::now();
            opt_d.zero_grad();
            // D's linear layers take both batches together (`forward_many`:
            // one read of each weight; the values of two forwards).
            let ys = d.forward_many(&[&real, &fake.detach()])?;
            let ld = d_loss(c.loss, &ys[0], &ys[1], c.d_sigmoid)?;
            marks[2] = Instant::now();
            ld.backward()?;
            marks[3] = Instant::now();
            opt_d.step()?;
            marks[4] = Instant::now();
            opt_g.zero_grad();
            let lg = g_loss(c.loss, &d.forward(&fake)?, c.d_sigmoid)?;
            marks[5] = Instant::now();
            if a.full_g_backward {
                lg.backward()?;
            } else {
                lg.backward_to(opt_g.params())?;
            }
            marks[6] = Instant::now();
            opt_g.step()?;
            marks[7] = Instant::now();
            let lg = lg.item()?;
            Ok((ld, lg))
        };
        // As the trainer does: through each step the pool's workers poll
        // between its small parallel products instead of sleeping.
        let warm = || (device == Device::Cpu).then(KeepWarm::new);
        let mut marks = [Instant::now(); 8];
        for i in 0..10 {
            let _warm = warm();
            step(i, &mut rng, &mut marks)?;
        }
        let mut meds = Vec::new();
        let mut last = (0.0, 0.0);
        let mut last_d = None;
        // Per phase, its time in every timed step (`--breakdown`).
        let mut phase_times: Vec<Vec<f64>> = vec![Vec::new(); if a.breakdown { PHASES.len() } else { 0 }];
        for _ in 0..a.repeats {
            let t0 = Instant::now();
            for i in 0..a.steps {
                let _warm = warm();
                let (ld, lg) = step(i, &mut rng, &mut marks)?;
                for (k, times) in phase_times.iter_mut().enumerate() {
                    times.push((marks[k + 1] - marks[k]).as_secs_f64());
                }
                last_d = Some(ld);
                last.1 = lg;
            }
            meds.push(t0.elapsed().as_secs_f64() / a.steps as f64);
        }
        let phase_meds: Vec<f64> = phase_times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            })
            .collect();
        if !phase_meds.is_empty() {
            breakdowns.push((c.name, phase_meds.clone()));
        }
        if let Some(ld) = &last_d {
            last.0 = ld.item()?;
        }
        meds.sort_by(f64::total_cmp);
        let med = meds[meds.len() / 2];
        let flops = step_gemm_flops(c, a.full_g_backward);
        let gflops = flops / med / 1e9;
        let frac = peak.as_ref().map(|(_, p)| gflops / p);
        // The step's ceiling: its products alone at the peak.
        let at_peak = peak.as_ref().map(|(_, p)| p * 1e9 / flops);
        println!(
            "| {} | {} | {:.3} | {:.1} | {:.3}-{:.3} | {:.1} | {} | {} | {:.3}/{:.3} |",
            c.name,
            c.batch,
            med * 1e3,
            1.0 / med,
            meds[0] * 1e3,
            meds[meds.len() - 1] * 1e3,
            gflops,
            frac.map_or("-".into(), |f| format!("{:.1} %", 100.0 * f)),
            at_peak.map_or("-".into(), |r| format!("{r:.1}")),
            last.0,
            last.1
        );
        rows.push(
            serde_json::json!({"config": c.name, "batch": c.batch, "median_ms": med * 1e3, "steps_per_sec": 1.0 / med,
            "min_ms": meds[0] * 1e3, "max_ms": meds[meds.len() - 1] * 1e3, "threads": rayon::current_num_threads(),
            "gemm_gflop_per_step": flops / 1e9, "gemm_gflops": gflops, "frac_of_peak": frac, "params": params,
            "steps_per_sec_at_peak": at_peak,
            "phases_ms": (!phase_meds.is_empty()).then(|| PHASES.iter().zip(&phase_meds)
                .map(|(name, t)| serde_json::json!({"phase": name, "median_ms": t * 1e3})).collect::<Vec<_>>())}),
        );
    }
    println!(
        "note: GEMM GFLOP/s = the step's matrix products (2·m·n·k each: {}) over the median step time; \
         % of peak = that rate over the peak above, which is the share of the step its products would \
         take at the peak. The rest is the products' own shortfall and the memory-bound work not \
         counted (Adam, activations, losses, bias gradients). steps/s at peak = the step's ceiling: its \
         products alone at the peak, everything else free; no f32 implementation of the same step runs \
         faster here.",
        if a.full_g_backward {
            "with D's weight gradients in the G step"
        } else {
            "G's gradients only in the G step"
        }
    );
    if !breakdowns.is_empty() {
        println!();
        println!("| config | {} | sum of medians |", PHASES.join(" | "));
        println!("|---|{}---|", "---|".repeat(PHASES.len()));
        for (name, meds) in &breakdowns {
            let cells: Vec<String> = meds.iter().map(|t| format!("{:.3}", t * 1e3)).collect();
            println!(
                "| {name} | {} | {:.3} |",
                cells.join(" | "),
                meds.iter().sum::<f64>() * 1e3
            );
        }
        println!(
            "note: median ms of each phase over every timed step (the PyTorch reference script's \
             --breakdown names and bounds); G fwd includes drawing the noise and taking the real batch."
        );
    }
    if let Some(p) = &a.json {
        let doc = serde_json::json!({"kernel": "gan-step", "device": device.to_string(),
            "peak": peak.as_ref().map(|(what, g)| serde_json::json!({"what": what, "gflops": g})), "rows": rows});
        write_json(p, &doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `doc` to `path` whole or not at all (a temporary file renamed over it).
fn write_json(path: &std::path::Path, doc: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(doc).map_err(|e| Error::Invalid(e.to_string()))?;
    kiln_nn::state_dict::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_flops_count_each_product_of_the_step_once() {
        // The article, product by product. U: a 100-row batch through the
        // 12288-wide layers (2·100·128·12288); s1: G's first layer
        // (2·100·100·128); s2: D's last layer (2·100·128·1).
        let (u, s1, s2) = (
            2.0 * 100.0 * 128.0 * 12288.0,
            2.0 * 100.0 * 100.0 * 128.0,
            2.0 * 100.0 * 128.0,
        );
        let g_only = [
            s1 + u,   // G forward (the fake serves both steps)
            2.0 * u,  // D step: D's first layer on real and on fake
            2.0 * s2, // D step: D's last layer on both
            2.0 * u,  // D step: dW1 for real and fake
            2.0 * s2, // D step: dW2 for real and fake
            2.0 * s2, // D step: the gradient into D's hidden layer, both batches
            u + s2,   // G step: D forward on the fake
            s2 + u,   // G step: input gradients through D, down to the fake
            u + s1,   // G step: G's weight gradients
            u,        // G step: the gradient into G's hidden layer (none into the noise)
        ];
        let c = step_config("article").unwrap();
        let want: f64 = g_only.iter().sum();
        assert_eq!(step_gemm_flops(&c, false), want);
        // --full-g-backward adds D's weight gradients in the G step.
        assert_eq!(step_gemm_flops(&c, true), want + u + s2);
        // Nine products of U: the count docs/benchmarks-log.md works from.
        assert!((step_gemm_flops(&c, false) - 9.0 * u) / u < 0.02);
        // A deeper model: every hidden layer of G takes an input gradient.
        let toy = step_config("toy").unwrap();
        let l = |i: usize, o: usize| 2.0 * 256.0 * (i * o) as f64;
        let (g, d) = (l(2, 128) + l(128, 128) + l(128, 2), l(2, 128) + l(128, 128) + l(128, 1));
        let (g_in, d_in) = (g - l(2, 128), d - l(2, 128));
        assert_eq!(
            step_gemm_flops(&toy, false),
            g + (4.0 * d + 2.0 * d_in) + (2.0 * d + g + g_in)
        );
    }
}
