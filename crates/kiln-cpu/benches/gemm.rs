//! Criterion benchmarks of every SGEMM variant against matrixmultiply (the
//! reference, in the same run) on square sizes and two GAN layer shapes.
//! Throughput is reported in elements = flops, so criterion prints Gelem/s
//! = GFLOP/s. `kiln bench gemm` prints the same comparison with % of peak.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kiln_cpu::gemm::{sgemm_variant, Variant};
use std::time::Duration;

fn fill(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5)
        .collect()
}

/// (label, m, n, k, A strides, B strides) — row-major unless noted.
type Shape = (String, usize, usize, usize, [isize; 2], [isize; 2]);

fn shapes() -> Vec<Shape> {
    let mut v: Vec<_> = [64usize, 256, 512]
        .iter()
        .map(|&n| (format!("{n}^3"), n, n, n, [n as isize, 1], [n as isize, 1]))
        .collect();
    // GAN layers: forward x[64×784]·Wᵀ (W is [128, 784]) and grad-weight dyᵀ·x.
    v.push(("fwd 64x784x128".into(), 64, 128, 784, [784, 1], [1, 784]));
    v.push(("bwd-w 128x784x64".into(), 128, 784, 64, [1, 128], [784, 1]));
    v
}

fn bench_gemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    for (label, m, n, k, sa, sb) in shapes() {
        let a = fill((m - 1) * sa[0] as usize + (k - 1) * sa[1] as usize + 1, 1);
        let b = fill((k - 1) * sb[0] as usize + (n - 1) * sb[1] as usize + 1, 2);
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        for &v in Variant::all() {
            // The naive variants would take minutes at the larger sizes.
            if !v.is_available() || (v == Variant::V1Naive && m * n * k > 1 << 24) {
                continue;
            }
            group.bench_with_input(BenchmarkId::new(v.name(), &label), &v, |bencher, &v| {
                bencher.iter(|| sgemm_variant(v, m, n, k, 1.0, &a, sa, &b, sb, 0.0, &mut out, [n as isize, 1]))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_gemm);
criterion_main!(benches);
