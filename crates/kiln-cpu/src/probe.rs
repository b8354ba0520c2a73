//! Measured peaks of the machine we run on, so benchmarks can report a
//! kernel's speed as a fraction of what this CPU can actually do:
//!
//! - [`fma_peak_gflops`]: f32 FMA throughput with the widest vector set the
//!   CPU has (AVX-512F, else AVX2+FMA, else scalar `mul_add`), with enough
//!   independent accumulator chains to hide FMA latency on every pipe.
//! - [`copy_bandwidth_gbs`]: a large `memcpy`, counting bytes read + written.
//! - [`cpu_features`], [`cpu_model`]: what to print next to the numbers.
//! - [`bench_data`]: deterministic inputs for benchmarks and kernel tests.

use std::hint::black_box;
use std::time::Instant;

/// SIMD features relevant to kiln's kernels that this CPU reports, e.g.
/// `"avx avx2 fma"` (empty on CPUs without any of them).
pub fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut found = Vec::new();
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if is_x86_feature_detected!($f) {
                    found.push($f);
                }
            )*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512bf16"
        );
        found.join(" ")
    }
    #[cfg(target_arch = "aarch64")]
    {
        String::from("neon")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        String::new()
    }
}

/// The CPU model name from `/proc/cpuinfo` (`model name`), if readable.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The instruction set an FMA probe ran with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmaIsa {
    /// 512-bit FMAs (16 f32 lanes).
    Avx512,
    /// 256-bit FMAs (8 f32 lanes).
    Avx2Fma,
    /// Scalar `f32::mul_add` (whatever the compiler makes of it).
    Scalar,
}

impl FmaIsa {
    /// The widest FMA this CPU supports.
    pub fn detect() -> FmaIsa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return FmaIsa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return FmaIsa::Avx2Fma;
            }
        }
        FmaIsa::Scalar
    }

    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FmaIsa::Avx512 => "avx512 fma",
            FmaIsa::Avx2Fma => "avx2 fma",
            FmaIsa::Scalar => "scalar mul_add",
        }
    }
}

/// One FMA-peak measurement.
#[derive(Clone, Debug)]
pub struct FmaPeak {
    /// Instruction set used.
    pub isa: FmaIsa,
    /// Threads that ran the probe at once.
    pub threads: usize,
    /// Best observed f32 GFLOP/s over all threads together (an FMA counts 2).
    pub gflops: f64,
}

/// Independent accumulator chains per probe: FMA latency (4–5 cycles) × 2
/// FMA pipes needs at least 10 in flight.
const CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains_avx2(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    // c ← c·a + b with a ≈ 1 keeps every value finite for any iteration count.
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut c = [_mm256_setzero_ps(); CHAINS];
    for (i, ci) in c.iter_mut().enumerate() {
        *ci = _mm256_set1_ps(seed + 0.01 * i as f32);
    }
    for _ in 0..iters {
        for ci in c.iter_mut() {
            *ci = _mm256_fmadd_ps(*ci, a, b);
        }
    }
    let mut s = _mm256_setzero_ps();
    for ci in c {
        s = _mm256_add_ps(s, ci);
    }
    let mut out = [0.0f32; 8];
    // SAFETY: `out` holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_chains_avx512(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut c = [_mm512_setzero_ps(); CHAINS + 4];
    for (i, ci) in c.iter_mut().enumerate() {
        *ci = _mm512_set1_ps(seed + 0.01 * i as f32);
    }
    for _ in 0..iters {
        for ci in c.iter_mut() {
            *ci = _mm512_fmadd_ps(*ci, a, b);
        }
    }
    let mut s = _mm512_setzero_ps();
    for ci in c {
        s = _mm512_add_ps(s, ci);
    }
    _mm512_reduce_add_ps(s)
}

fn fma_chains_scalar(iters: u64, seed: f32) -> f32 {
    let mut c = [0.0f32; CHAINS * 8];
    for (i, ci) in c.iter_mut().enumerate() {
        *ci = seed + 0.01 * i as f32;
    }
    for _ in 0..iters {
        for ci in c.iter_mut() {
            *ci = ci.mul_add(0.999_999, 1e-7);
        }
    }
    c.iter().sum()
}

/// Runs `iters` iterations of the probe kernel; returns flops done.
fn fma_run(isa: FmaIsa, iters: u64, seed: f32) -> f64 {
    let iters = black_box(iters);
    let (sink, flops_per_iter) = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `FmaIsa::detect` found AVX-512F before this ISA is used.
        FmaIsa::Avx512 => (unsafe { fma_chains_avx512(iters, seed) }, (CHAINS + 4) * 16 * 2),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `FmaIsa::detect` found AVX2 and FMA before this ISA is used.
        FmaIsa::Avx2Fma => (unsafe { fma_chains_avx2(iters, seed) }, CHAINS * 8 * 2),
        _ => (fma_chains_scalar(iters, seed), CHAINS * 8 * 2),
    };
    black_box(sink);
    iters as f64 * flops_per_iter as f64
}

/// Measures f32 FMA throughput on `threads` threads at once (each runs the
/// probe for about `seconds`), taking the best of `repeats` runs: contention
/// from other processes only ever slows a run down.
pub fn fma_peak(threads: usize, repeats: usize, seconds: f64) -> FmaPeak {
    let threads = threads.max(1);
    // Calibrate the iteration count on one thread.
    let FmaBurst { isa, iters } = FmaBurst::calibrated(seconds);
    let mut best = 0.0f64;
    for _ in 0..repeats.max(1) {
        let barrier = std::sync::Barrier::new(threads);
        let (flops, secs) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let f = fma_run(isa, iters, 1.0 + t as f32);
                        (f, start.elapsed().as_secs_f64())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread"))
                .fold((0.0, 0.0f64), |(f, s), (f1, s1)| (f + f1, s.max(s1)))
        });
        best = best.max(flops / secs / 1e9);
    }
    FmaPeak {
        isa,
        threads,
        gflops: best,
    }
}

/// A fixed amount of FMA-probe work, to time next to a kernel: a benchmark
/// that runs one burst right before and after each repeat of a kernel gets
/// the peak of that moment, so its fraction of peak holds up on a machine
/// whose speed drifts (a shared host) where a peak probed minutes apart
/// would not.
#[derive(Clone, Copy, Debug)]
pub struct FmaBurst {
    isa: FmaIsa,
    iters: u64,
}

impl FmaBurst {
    /// A burst that lasts about `seconds` on one thread now (timed from a
    /// trial run of at least half that, or 20 ms for long bursts).
    pub fn calibrated(seconds: f64) -> FmaBurst {
        let isa = FmaIsa::detect();
        let mut iters = 1u64 << 12;
        loop {
            let t = Instant::now();
            fma_run(isa, iters, 1.0);
            let dt = t.elapsed().as_secs_f64();
            if dt > (seconds / 2.0).min(0.02) || iters >= 1 << 40 {
                let iters = ((iters as f64) * seconds / dt.max(1e-9)).max(1.0) as u64;
                return FmaBurst { isa, iters };
            }
            iters *= 2;
        }
    }

    /// Runs the burst once on every thread of the current rayon pool at
    /// once (the threads a kernel timed in that pool would use); returns
    /// the flops done by all of them together.
    pub fn run(&self) -> f64 {
        let flops = rayon::broadcast(|ctx| fma_run(self.isa, self.iters, 1.0 + ctx.index() as f32));
        flops.iter().sum()
    }

    /// The instruction set the burst runs with.
    pub fn isa(&self) -> FmaIsa {
        self.isa
    }
}

/// [`fma_peak`] with defaults good for a report: best of 10 runs of ~0.05 s.
pub fn fma_peak_gflops(threads: usize) -> FmaPeak {
    fma_peak(threads, 10, 0.05)
}

/// Measures copy bandwidth in GB/s (bytes read + bytes written per second)
/// with `threads` threads each copying its share of a `bytes`-sized buffer;
/// best of `repeats`. Pages are touched before timing.
pub fn copy_bandwidth(bytes: usize, threads: usize, repeats: usize) -> f64 {
    let n = (bytes / 4).max(1024);
    let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; n];
    let threads = threads.max(1);
    let chunk = n.div_ceil(threads);
    let mut best = 0.0f64;
    for _ in 0..repeats.max(1) + 1 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (d, sr) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(sr));
            }
        });
        let dt = t.elapsed().as_secs_f64();
        black_box(&mut dst);
        best = best.max(2.0 * 4.0 * n as f64 / dt / 1e9);
    }
    best
}

/// [`copy_bandwidth`] of a 256 MiB buffer, best of 5.
pub fn copy_bandwidth_gbs(threads: usize) -> f64 {
    copy_bandwidth(256 << 20, threads, 5)
}

/// Deterministic data in [−amplitude, amplitude) (xorshift), the same on
/// every machine and without an RNG dependency: the inputs of `kiln bench`
/// and of the GEMM tests.
pub fn bench_data(len: usize, seed: u64, amplitude: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 * amplitude - amplitude
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma_probe_reports_positive_throughput() {
        let p = fma_peak(1, 1, 0.01);
        assert!(p.gflops > 0.1, "{p:?}");
        assert_eq!(p.isa, FmaIsa::detect());
    }

    #[test]
    fn fma_burst_does_the_same_work_on_every_call() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let burst = FmaBurst::calibrated(0.002);
        let (one, again) = pool.install(|| (burst.run(), burst.run()));
        assert_eq!(one, again);
        // Two threads, each `iters` iterations of CHAINS vector FMAs.
        let lanes = match burst.isa() {
            FmaIsa::Avx512 => (CHAINS + 4) * 16,
            _ => CHAINS * 8,
        };
        assert_eq!(one, 2.0 * burst.iters as f64 * lanes as f64 * 2.0);
    }

    #[test]
    fn copy_probe_reports_positive_bandwidth() {
        assert!(copy_bandwidth(4 << 20, 2, 1) > 0.01);
    }

    #[test]
    fn cpu_model_and_features_do_not_panic() {
        let _ = cpu_model();
        let f = cpu_features();
        if FmaIsa::detect() == FmaIsa::Avx2Fma {
            assert!(f.contains("avx2") && f.contains("fma"), "{f}");
        }
    }
}
