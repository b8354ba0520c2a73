//! `kiln bench`: validated kernel benchmarks with the machine's measured peak
//! and a reference measured in the same run.
//!
//! Every implementation is first checked against a reference; a wrong kernel
//! is reported as FAILED and never timed. Timings are medians over repeats
//! with the min–max spread, converted to the figure that matters (GFLOP/s for
//! GEMM, GB/s for memory-bound kernels) and to a fraction of this machine's
//! peak (an FMA-throughput probe for GEMM, copy bandwidth for the rest).
//!
//! ```no_run
//! let cfg = kiln::bench::BenchConfig { kernel: "gemm".into(), sizes: vec![256, 1024], ..Default::default() };
//! let report = kiln::bench::run(&cfg).unwrap();
//! println!("{report}");
//! ```

mod gemm;
mod memory;
mod plot;
mod timing;

pub use timing::{time_fn, time_interleaved, Timing};

use kiln_cpu::probe;
use serde_json::json;
use std::fmt;
use std::path::PathBuf;

/// What to benchmark; plain fields so a CLI can fill them directly.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// `gemm` (square n³ products), `layers` (the GAN's layer GEMMs, forward
    /// and both backward products; also `gemm-layers`), `elementwise`,
    /// `reduce`, `adam`, or `all`.
    pub kernel: String,
    /// Problem sizes: n of an n×n×n GEMM, or element counts for the memory
    /// kernels. Empty: the kernel's defaults.
    pub sizes: Vec<usize>,
    /// Rayon threads (a local pool); `None`: rayon's default (all cores).
    pub threads: Option<usize>,
    /// Write the report as JSON here.
    pub json: Option<PathBuf>,
    /// Draw a PNG plot (rate vs case, one line per implementation, peak as
    /// a horizontal line) here.
    pub plot: Option<PathBuf>,
    /// Timed repeats per measurement (each ≥ `min_time` seconds).
    pub repeats: usize,
    /// Minimum seconds per timed repeat.
    pub min_time: f64,
    /// Only these implementations (names or short tags such as `v4`, `mm`);
    /// empty: all available.
    pub impls: Vec<String>,
    /// `gemm`: these products instead of the square ones (`--shapes`).
    pub shapes: Vec<GemmShape>,
}

/// A GEMM problem for `kiln bench gemm --shapes`: C[m×n] = op(A)·op(B),
/// written `MxNxK`, optionally followed by the operands' layout: `:nn` (the
/// default: A is [m×k] and B [k×n], both row-major), `:nt` (B stored as
/// [n×k], as a linear layer's weight in x·Wᵀ), `:tn` (A stored as [k×m], as
/// dyᵀ in a weight gradient) or `:tt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// Depth of the product.
    pub k: usize,
    /// A is stored transposed ([k×m] row-major).
    pub a_transposed: bool,
    /// B is stored transposed ([n×k] row-major).
    pub b_transposed: bool,
}

impl std::str::FromStr for GemmShape {
    type Err = String;

    fn from_str(text: &str) -> Result<GemmShape, String> {
        let bad = || {
            format!(
                "bad GEMM shape `{text}`: expected MxNxK with an optional :nn, :nt, :tn or :tt (e.g. 100x128x12288:nt)"
            )
        };
        let (dims, layout) = text.split_once(':').unwrap_or((text, "nn"));
        let dims: Vec<usize> = dims
            .split(['x', 'X', '×'])
            .map(|d| d.trim().parse::<usize>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let (a_transposed, b_transposed) = match layout.to_ascii_lowercase().as_str() {
            "nn" => (false, false),
            "nt" => (false, true),
            "tn" => (true, false),
            "tt" => (true, true),
            _ => return Err(bad()),
        };
        match dims[..] {
            [m, n, k] if m > 0 && n > 0 && k > 0 => Ok(GemmShape {
                m,
                n,
                k,
                a_transposed,
                b_transposed,
            }),
            [_, _, _] => Err(format!("bad GEMM shape `{text}`: every dimension must be positive")),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for GemmShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.m, self.n, self.k)?;
        match (self.a_transposed, self.b_transposed) {
            (false, false) => Ok(()),
            (a, b) => write!(f, ":{}{}", if a { 't' } else { 'n' }, if b { 't' } else { 'n' }),
        }
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            kernel: "gemm".into(),
            sizes: Vec::new(),
            threads: None,
            json: None,
            plot: None,
            repeats: 7,
            min_time: 0.1,
            impls: Vec::new(),
            shapes: Vec::new(),
        }
    }
}

/// The machine the numbers were measured on.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// SIMD features detected at run time.
    pub features: String,
    /// Logical CPUs.
    pub logical_cpus: usize,
    /// Threads the benchmark ran with.
    pub threads: usize,
    /// Instruction set of the FMA probe.
    pub fma_isa: String,
    /// Measured f32 FMA peak, 1 thread (GFLOP/s).
    pub fma_peak_1t: f64,
    /// Measured f32 FMA peak with `threads` threads (GFLOP/s).
    pub fma_peak: f64,
    /// Measured copy bandwidth of a 256 MiB buffer with `threads` threads
    /// (GB/s, read + write).
    pub copy_gbs: f64,
}

/// Outcome of validating one implementation.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Matched the reference and was timed.
    Ok,
    /// Did not match the reference (why); not timed.
    Failed(String),
    /// Not run (why: not supported by this CPU, too slow at this size…).
    Skipped(String),
}

/// One implementation on one case.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Kernel family (`gemm`, `layers`, `elementwise`, `reduce`, `adam`).
    pub kernel: String,
    /// The case, e.g. `1024x1024x1024` or `relu 16M`.
    pub case: String,
    /// Position on the plot's x axis (n for square GEMM, element count…).
    pub size: usize,
    /// Implementation name.
    pub implementation: String,
    /// Whether it was validated and timed.
    pub status: Status,
    /// Work per call: flops (GEMM) or bytes moved (memory kernels).
    pub work: f64,
    /// `GFLOP/s` or `GB/s`.
    pub unit: &'static str,
    /// Per-call times (present when `status` is Ok).
    pub timing: Option<Timing>,
    /// Median rate over this machine's measured peak for the unit.
    pub frac_of_peak: Option<f64>,
    /// Median rate over the same-run reference's median rate.
    pub vs_reference: Option<f64>,
}

impl Measurement {
    /// Median rate in `unit` (GFLOP/s or GB/s).
    pub fn rate(&self) -> Option<f64> {
        self.timing.as_ref().map(|t| self.work / t.median / 1e9)
    }
    /// The median over repeats of each repeat's rate over the peak probed
    /// around it (GEMM benchmarks probe between every two repeats).
    pub fn frac_of_paired_peak(&self) -> Option<f64> {
        self.timing.as_ref()?.frac_of_paired_peak(self.work)
    }
    /// (slowest, fastest) repeat as rates.
    pub fn rate_range(&self) -> Option<(f64, f64)> {
        self.timing
            .as_ref()
            .map(|t| (self.work / t.max / 1e9, self.work / t.min / 1e9))
    }
}

/// Everything one `kiln bench` run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// The machine.
    pub machine: MachineInfo,
    /// The kernel family asked for.
    pub kernel: String,
    /// All measurements, grouped by case.
    pub measurements: Vec<Measurement>,
    /// Notes printed under the tables (what the reference is, caveats).
    pub notes: Vec<String>,
}

/// Runs the benchmarks `cfg` asks for inside a rayon pool of `cfg.threads`
/// threads, writes the JSON and plot files if asked, and returns the report.
pub fn run(cfg: &BenchConfig) -> Result<BenchReport, String> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(t) = cfg.threads {
        if t == 0 {
            return Err("--threads must be at least 1".into());
        }
        builder = builder.num_threads(t);
    }
    let pool = builder
        .build()
        .map_err(|e| format!("cannot build a thread pool: {e}"))?;
    let mut report = pool.install(|| run_in_pool(cfg))?;
    if let Some(path) = &cfg.json {
        let text = serde_json::to_string_pretty(&report.to_json()).map_err(|e| e.to_string())?;
        kiln_nn::state_dict::write_atomic(path, text.as_bytes()).map_err(|e| e.to_string())?;
    }
    if let Some(path) = &cfg.plot {
        let written = plot::write_plots(&report, path)?;
        if written.len() > 1 {
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            report.notes.push(format!("plots, one per unit: {}", names.join(", ")));
        }
    }
    Ok(report)
}

/// `MachineInfo::fma_isa` of a report that describes a GPU run (see [`write_device_plot`]).
const GPU_ISA: &str = "CUDA";

/// One timed row of a benchmark that ran elsewhere (the CUDA backend's `kiln bench
/// --device cuda`), for [`write_device_plot`].
#[derive(Clone, Debug)]
pub struct PlotPoint {
    /// The case (its label on the x axis), e.g. `1024x1024x1024 NN`.
    pub case: String,
    /// Implementation name (one line each).
    pub implementation: String,
    /// Median rate in `unit`.
    pub rate: f64,
    /// `GFLOP/s` or `GB/s`.
    pub unit: &'static str,
}

/// Draws `points` as `kiln bench --plot` draws a CPU run: rate against case, one line per
/// implementation, with `peak_gflops` or `peak_gbps` (the device's, by its attributes) as
/// the dashed peak line, and `device` in the title.
pub fn write_device_plot(
    device: &str,
    kernel: &str,
    (peak_gflops, peak_gbps): (f64, f64),
    points: &[PlotPoint],
    path: &std::path::Path,
) -> Result<(), String> {
    let machine = MachineInfo {
        cpu_model: device.to_string(),
        features: String::new(),
        logical_cpus: 0,
        threads: 0,
        fma_isa: GPU_ISA.into(),
        fma_peak_1t: peak_gflops,
        fma_peak: peak_gflops,
        copy_gbs: peak_gbps,
    };
    let mut cases: Vec<&str> = Vec::new();
    let measurements = points
        .iter()
        .map(|p| Measurement {
            kernel: kernel.to_string(),
            case: p.case.clone(),
            // The case's index in order of first appearance: its place on the x axis.
            size: match cases.iter().position(|c| *c == p.case) {
                Some(i) => i,
                None => {
                    cases.push(&p.case);
                    cases.len() - 1
                }
            },
            implementation: p.implementation.clone(),
            status: Status::Ok,
            // A rate of `rate` as 1 s per call of rate·1e9 units of work.
            work: p.rate * 1e9,
            unit: p.unit,
            timing: Some(Timing::constant(1.0)),
            frac_of_peak: None,
            vs_reference: None,
        })
        .collect();
    let report = BenchReport {
        machine,
        kernel: kernel.to_string(),
        measurements,
        notes: Vec::new(),
    };
    plot::write_plots(&report, path).map(|_| ())
}

/// Rejects options that would otherwise be dropped without a word: a
/// misspelt implementation ran nothing but the reference, `--repeats 0` one
/// repeat, and `--sizes` with `layers` the layers' own shapes.
fn check_options(cfg: &BenchConfig, kernels: &[&str]) -> Result<(), String> {
    if cfg.repeats == 0 {
        return Err("--repeats must be at least 1".into());
    }
    let gemm = kernels.iter().any(|k| matches!(*k, "gemm" | "layers"));
    if !cfg.impls.is_empty() && !gemm {
        return Err(format!(
            "--impls picks GEMM variants (gemm, layers); {} has one implementation per case",
            cfg.kernel
        ));
    }
    let known = |name: &str| name == "dispatch" || kiln_cpu::gemm::Variant::from_name(name).is_some();
    if let Some(bad) = cfg.impls.iter().find(|n| !known(n)) {
        let names: Vec<&str> = kiln_cpu::gemm::Variant::all().iter().map(|v| v.name()).collect();
        return Err(format!(
            "unknown implementation `{bad}`: expected dispatch, v1 to v6, mm, or one of {}",
            names.join(", ")
        ));
    }
    if !cfg.shapes.is_empty() && !kernels.contains(&"gemm") {
        return Err(format!("--shapes gives GEMM problems; {} has none", cfg.kernel));
    }
    if !cfg.shapes.is_empty() && !cfg.sizes.is_empty() && cfg.kernel == "gemm" {
        return Err("give --sizes (n×n×n products) or --shapes, not both".into());
    }
    if !cfg.sizes.is_empty() && kernels == ["layers"] {
        return Err("kiln bench layers times the GAN's own layer shapes: --sizes does not apply".into());
    }
    Ok(())
}

fn run_in_pool(cfg: &BenchConfig) -> Result<BenchReport, String> {
    let kernels: Vec<&str> = match cfg.kernel.as_str() {
        "all" => vec!["gemm", "layers", "elementwise", "reduce", "adam"],
        "gemm-layers" => vec!["layers"],
        k @ ("gemm" | "layers" | "elementwise" | "reduce" | "adam") => vec![k],
        other => {
            return Err(format!(
                "unknown kernel `{other}`: expected gemm, layers, elementwise, reduce, adam or all"
            ))
        }
    };
    check_options(cfg, &kernels)?;
    let threads = rayon::current_num_threads();
    let peak_1t = probe::fma_peak_gflops(1);
    let peak = if threads > 1 {
        probe::fma_peak_gflops(threads).gflops
    } else {
        peak_1t.gflops
    };
    let machine = MachineInfo {
        cpu_model: probe::cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        features: probe::cpu_features(),
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads,
        fma_isa: peak_1t.isa.name().into(),
        fma_peak_1t: peak_1t.gflops,
        fma_peak: peak,
        copy_gbs: probe::copy_bandwidth_gbs(threads),
    };
    let mut report = BenchReport {
        machine,
        kernel: cfg.kernel.clone(),
        measurements: Vec::new(),
        notes: Vec::new(),
    };
    for k in kernels {
        match k {
            "gemm" => gemm::bench_square(cfg, &mut report)?,
            "layers" => gemm::bench_layers(cfg, &mut report)?,
            _ => memory::bench(k, cfg, &mut report)?,
        }
    }
    // Probe again after the benchmarks and keep the best: load from other
    // processes only ever lowers a probe, and a low peak would flatter every
    // "% of peak" figure.
    let m = &mut report.machine;
    m.fma_peak_1t = m.fma_peak_1t.max(probe::fma_peak_gflops(1).gflops);
    m.fma_peak = if threads > 1 {
        m.fma_peak.max(probe::fma_peak_gflops(threads).gflops)
    } else {
        m.fma_peak_1t
    };
    m.copy_gbs = m.copy_gbs.max(probe::copy_bandwidth_gbs(threads));
    let machine = report.machine.clone();
    for x in &mut report.measurements {
        if let Some(r) = x.rate() {
            x.frac_of_peak = Some(r / peak_for(&machine, x.unit));
        }
    }
    Ok(report)
}

/// A buffer whose first element is 64-byte aligned, as the engine's tensors
/// are. Plain `Vec`s land wherever the allocator puts them (a 128 KiB one
/// from glibc's mmap path at 16 bytes past a page), and where they land moved
/// the toy's `[256×2]·[2×128]` between 3.5 and 6.2 µs, the same kernel in two
/// rows of one table. Every benchmark operand and output lives on one.
struct AlignedBuf {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A copy of `data`, aligned.
    fn new(data: &[f32]) -> AlignedBuf {
        let mut out = AlignedBuf::filled(data.len(), 0.0);
        out.copy_from_slice(data);
        out
    }

    /// `len` copies of `value`, aligned.
    fn filled(len: usize, value: f32) -> AlignedBuf {
        const LANES: usize = 64 / std::mem::size_of::<f32>();
        let buf = vec![value; len + LANES];
        let start = buf.as_ptr().align_offset(64).min(LANES);
        AlignedBuf { buf, start, len }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// Peak for a unit: the FMA probe for GFLOP/s, copy bandwidth for GB/s.
fn peak_for(machine: &MachineInfo, unit: &str) -> f64 {
    if unit == "GFLOP/s" {
        machine.fma_peak
    } else {
        machine.copy_gbs
    }
}

/// Fills `frac_of_peak` and `vs_reference` of the measurements of one case,
/// given the reference implementation's name.
fn finish_case(machine: &MachineInfo, case: &mut [Measurement], reference: &str) {
    let ref_rate = case
        .iter()
        .find(|m| m.implementation == reference)
        .and_then(|m| m.rate());
    for m in case.iter_mut() {
        if let Some(r) = m.rate() {
            m.frac_of_peak = Some(r / peak_for(machine, m.unit));
            m.vs_reference = ref_rate.map(|rr| r / rr);
        }
    }
}

fn fmt_time(t: f64) -> String {
    // The bounds sit where one decimal rounds up to the next unit: 999.96 ns
    // prints as 1.0 us, not 1000.0 ns.
    if t < 999.95e-9 {
        format!("{:.1} ns", t * 1e9)
    } else if t < 999.95e-6 {
        format!("{:.1} us", t * 1e6)
    } else {
        format!("{:.3} ms", t * 1e3)
    }
}

impl BenchReport {
    /// The report as a JSON object (machine, then one object per measurement).
    pub fn to_json(&self) -> serde_json::Value {
        let m = &self.machine;
        let rows: Vec<_> = self
            .measurements
            .iter()
            .map(|x| {
                let (status, why) = match &x.status {
                    Status::Ok => ("ok", String::new()),
                    Status::Failed(w) => ("failed", w.clone()),
                    Status::Skipped(w) => ("skipped", w.clone()),
                };
                json!({
                    "kernel": x.kernel, "case": x.case, "size": x.size,
                    "impl": x.implementation, "status": status, "reason": why,
                    "work": x.work, "unit": x.unit,
                    "time_median_s": x.timing.as_ref().map(|t| t.median),
                    "time_min_s": x.timing.as_ref().map(|t| t.min),
                    "time_max_s": x.timing.as_ref().map(|t| t.max),
                    "time_p10_s": x.timing.as_ref().map(|t| t.p10),
                    "time_p90_s": x.timing.as_ref().map(|t| t.p90),
                    "repeats": x.timing.as_ref().map(|t| t.repeats),
                    "calls_per_repeat": x.timing.as_ref().map(|t| t.inner),
                    "rate": x.rate(),
                    "rate_min": x.rate_range().map(|r| r.0),
                    "rate_max": x.rate_range().map(|r| r.1),
                    "frac_of_peak": x.frac_of_peak,
                    "frac_of_peak_paired": x.frac_of_paired_peak(),
                    "vs_reference": x.vs_reference,
                })
            })
            .collect();
        json!({
            "kernel": self.kernel,
            "machine": {
                "cpu_model": m.cpu_model, "features": m.features,
                "logical_cpus": m.logical_cpus, "threads": m.threads,
                "fma_isa": m.fma_isa, "fma_peak_gflops_1t": m.fma_peak_1t,
                "fma_peak_gflops": m.fma_peak, "copy_gbs": m.copy_gbs,
            },
            "notes": self.notes,
            "measurements": rows,
        })
    }
}

impl fmt::Display for BenchReport {
    /// Markdown tables, one per kernel family.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        writeln!(
            f,
            "machine: {} ({} logical CPUs; {}), {} thread(s)",
            m.cpu_model, m.logical_cpus, m.features, m.threads
        )?;
        writeln!(
            f,
            "measured peak: {} {:.1} GFLOP/s on 1 thread, {:.1} GFLOP/s on {} thread(s); copy {:.1} GB/s (256 MiB, read+write)",
            m.fma_isa, m.fma_peak_1t, m.fma_peak, m.threads, m.copy_gbs
        )?;
        let mut kernels: Vec<&str> = Vec::new();
        for x in &self.measurements {
            if !kernels.contains(&x.kernel.as_str()) {
                kernels.push(&x.kernel);
            }
        }
        for k in kernels {
            let rows: Vec<&Measurement> = self.measurements.iter().filter(|x| x.kernel == k).collect();
            let unit = rows[0].unit;
            let peak_name = if unit == "GFLOP/s" { "FMA peak" } else { "copy BW" };
            writeln!(f)?;
            writeln!(f, "### {k}")?;
            writeln!(f)?;
            // A column for the peak probed next to each repeat, where one was.
            let paired = rows.iter().any(|x| x.frac_of_paired_peak().is_some());
            let (head, rule, pad) = if paired {
                (format!(" % of {peak_name} at the time |"), "---|", " |")
            } else {
                (String::new(), "", "")
            };
            writeln!(
                f,
                "| case | impl | time (median) | {unit} median (min-max) | % of {peak_name} |{head} vs ref |"
            )?;
            writeln!(f, "|---|---|---|---|---|{rule}---|")?;
            for x in rows {
                match (&x.status, &x.timing) {
                    (Status::Ok, Some(t)) => {
                        let (lo, hi) = x.rate_range().unwrap_or_default();
                        let at_time = match (paired, x.frac_of_paired_peak()) {
                            (false, _) => String::new(),
                            (true, Some(fr)) => format!(" {:.1} % |", 100.0 * fr),
                            (true, None) => " - |".into(),
                        };
                        writeln!(
                            f,
                            "| {} | {} | {} | {:.1} ({:.1}-{:.1}) | {:.1} % |{at_time} {} |",
                            x.case,
                            x.implementation,
                            fmt_time(t.median),
                            x.rate().unwrap_or_default(),
                            lo,
                            hi,
                            100.0 * x.frac_of_peak.unwrap_or_default(),
                            x.vs_reference.map_or("-".into(), |r| format!("{r:.2}x")),
                        )?;
                    }
                    (Status::Failed(why), _) => {
                        writeln!(f, "| {} | {} | FAILED: {why} | | | |{pad}", x.case, x.implementation)?
                    }
                    (Status::Skipped(why), _) => {
                        writeln!(f, "| {} | {} | skipped: {why} | | | |{pad}", x.case, x.implementation)?
                    }
                    (Status::Ok, None) => writeln!(f, "| {} | {} | not timed | | | |{pad}", x.case, x.implementation)?,
                }
            }
        }
        for n in &self.notes {
            writeln!(f)?;
            write!(f, "note: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every implementation of every case validated and was timed.
    fn assert_every_row_timed(r: &BenchReport) {
        for m in &r.measurements {
            assert!(
                matches!(m.status, Status::Ok) && m.rate().is_some(),
                "{} {}: {} {:?}",
                m.kernel,
                m.case,
                m.implementation,
                m.status
            );
        }
    }

    #[test]
    fn aligned_buffers_start_on_a_cache_line_and_hold_the_data() {
        for len in [1usize, 7, 32_768, 32_769] {
            let data: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let mut buf = AlignedBuf::new(&data);
            assert_eq!(&*buf, &data[..]);
            assert_eq!(buf.as_ptr() as usize % 64, 0, "{len}");
            buf[len - 1] = -1.0;
            assert_eq!(buf[len - 1], -1.0);
            let nan = AlignedBuf::filled(len, f32::NAN);
            assert_eq!((nan.len(), nan.as_ptr() as usize % 64), (len, 0));
            assert!(nan.iter().all(|v| v.is_nan()));
        }
    }

    #[test]
    fn small_gemm_report_validates_every_implementation() {
        let cfg = BenchConfig {
            kernel: "gemm".into(),
            sizes: vec![48],
            threads: Some(1),
            repeats: 2,
            min_time: 0.001,
            ..Default::default()
        };
        let r = run(&cfg).unwrap();
        assert!(r.measurements.iter().all(|m| !matches!(m.status, Status::Failed(_))));
        assert!(r.measurements.iter().any(|m| m.rate().is_some()));
        let text = r.to_string();
        assert!(text.contains("matrixmultiply"), "{text}");
        assert!(r.to_json()["measurements"].as_array().unwrap().len() == r.measurements.len());
        // Every timed GEMM has a peak probed around each of its repeats, and
        // the table shows the column for it.
        for m in r.measurements.iter().filter(|m| m.timing.is_some()) {
            let t = m.timing.as_ref().unwrap();
            assert_eq!(t.peak_around.len(), t.repeats, "{}", m.implementation);
            let frac = m.frac_of_paired_peak().unwrap();
            assert!(frac > 0.0 && frac.is_finite(), "{}: {frac}", m.implementation);
        }
        assert!(text.contains("% of FMA peak at the time"), "{text}");
    }

    #[test]
    fn memory_bound_reports_validate_every_case() {
        // A size that is not a whole number of 256-wide rows: the column-sum
        // cases use the whole rows only.
        for kernel in ["elementwise", "reduce", "adam"] {
            let cfg = BenchConfig {
                kernel: kernel.into(),
                sizes: vec![5000],
                threads: Some(1),
                repeats: 2,
                min_time: 0.001,
                ..Default::default()
            };
            let r = run(&cfg).unwrap();
            assert_every_row_timed(&r);
            if kernel == "elementwise" {
                let text = r.to_string();
                assert!(text.contains("(two passes, 16 B/elem)"), "{text}");
                assert!(text.contains("(act_backward_colsum, one pass, 12 B/elem)"), "{text}");
            }
        }
    }

    #[test]
    fn options_that_would_be_ignored_are_errors() {
        let err = |kernel: &str, f: &dyn Fn(&mut BenchConfig)| {
            let mut cfg = BenchConfig {
                kernel: kernel.into(),
                sizes: vec![64],
                threads: Some(1),
                repeats: 1,
                min_time: 0.0,
                ..Default::default()
            };
            f(&mut cfg);
            run(&cfg).unwrap_err()
        };
        assert!(err("gemm", &|c| c.repeats = 0).contains("--repeats"));
        let e = err("gemm", &|c| c.impls = vec!["v4".into(), "v9".into()]);
        assert!(e.contains("`v9`") && e.contains("sgemm_v4_avx2_6x16"), "{e}");
        assert!(err("reduce", &|c| {
            c.sizes = vec![1024];
            c.impls = vec!["v4".into()]
        })
        .contains("--impls"));
        assert!(err("layers", &|_| ()).contains("--sizes"));
        assert!(err("gemm-layers", &|_| ()).contains("--sizes"));
        // What the checks accept still runs: the short and full names, and
        // `dispatch`.
        let cfg = BenchConfig {
            kernel: "gemm".into(),
            sizes: vec![16],
            threads: Some(1),
            repeats: 1,
            min_time: 0.0,
            impls: vec!["dispatch".into(), "v3".into(), "sgemm_v2_blocked".into()],
            ..Default::default()
        };
        let names: Vec<String> = run(&cfg)
            .unwrap()
            .measurements
            .iter()
            .map(|m| m.implementation.clone())
            .collect();
        assert_eq!(
            names,
            [
                "dispatch (matmul::gemm)",
                "sgemm_v2_blocked",
                "sgemm_v3_packed_scalar_4x8",
                "matrixmultiply"
            ]
        );
    }

    #[test]
    fn gemm_shapes_parse_and_every_layout_validates() {
        let s: GemmShape = "100x128x12288:nt".parse().unwrap();
        assert_eq!(
            (s.m, s.n, s.k, s.a_transposed, s.b_transposed),
            (100, 128, 12288, false, true)
        );
        assert_eq!(s.to_string(), "100x128x12288:nt");
        assert_eq!("7X5×3".parse::<GemmShape>().unwrap().to_string(), "7x5x3");
        for bad in ["3x4", "3x4x5x6", "0x4x5", "3x4x5:xx", "axbxc", ""] {
            assert!(bad.parse::<GemmShape>().is_err(), "{bad}");
        }
        // Odd sizes in every layout, against matrixmultiply: a stride mix-up
        // fails the check.
        let shapes: Vec<GemmShape> = ["33x17x65", "20x30x40:nt", "19x23x9:tn", "8x9x10:tt"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let cfg = BenchConfig {
            kernel: "gemm".into(),
            shapes: shapes.clone(),
            threads: Some(1),
            repeats: 1,
            min_time: 0.0,
            ..Default::default()
        };
        let r = run(&cfg).unwrap();
        assert_every_row_timed(&r);
        let cases: Vec<&str> = r.measurements.iter().map(|m| m.case.as_str()).collect();
        for s in &shapes {
            assert!(cases.contains(&s.to_string().as_str()), "{s}");
        }
        let both = BenchConfig {
            sizes: vec![64],
            ..cfg.clone()
        };
        assert!(run(&both).unwrap_err().contains("not both"));
        let reduce = BenchConfig {
            kernel: "reduce".into(),
            ..cfg
        };
        assert!(run(&reduce).unwrap_err().contains("--shapes"));
    }

    #[test]
    fn times_print_in_a_unit_that_keeps_their_digits() {
        // A 300-element copy takes 21 ns: "0.0 us" said nothing.
        assert_eq!(fmt_time(2.09e-8), "20.9 ns");
        assert_eq!(fmt_time(5.04e-6), "5.0 us");
        assert_eq!(fmt_time(1.23456e-2), "12.346 ms");
        assert_eq!(fmt_time(999.96e-9), "1.0 us");
        assert_eq!(fmt_time(999.96e-6), "1.000 ms");
    }

    #[test]
    fn unknown_kernel_is_an_error() {
        let cfg = BenchConfig {
            kernel: "fft".into(),
            ..Default::default()
        };
        assert!(run(&cfg).unwrap_err().contains("unknown kernel `fft`"));
    }
}
