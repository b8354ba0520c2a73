//! Criterion benches of the engine: single ops with their backward, and one
//! full GAN training step (toy2d and seed shapes). The kernel-variant
//! benchmarks with peak and references are `kiln bench`; these track the
//! engine's own overhead over time.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln::cpu::elementwise::UnaryOp;
use kiln::gan::config::{Act, GanLoss};
use kiln::gan::losses::{d_loss, g_loss};
use kiln::gan::trainer::mlp;
use kiln::nn::{Activation, Adam, AdamConfig, Module, Optimizer};
use kiln::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn ops(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = Tensor::randn(&[64, 784], DType::F32, Device::Cpu, &mut rng).unwrap();
    let w = Tensor::randn(&[128, 784], DType::F32, Device::Cpu, &mut rng)
        .unwrap()
        .requires_grad(true);
    let b = Tensor::zeros(&[128], DType::F32, Device::Cpu)
        .unwrap()
        .requires_grad(true);
    let mut g = c.benchmark_group("ops");
    g.throughput(Throughput::Elements((2 * 64 * 784 * 128) as u64));
    g.bench_function("linear fwd [64x784]·[128x784]ᵀ", |bench| {
        bench.iter(|| kiln::no_grad(|| x.linear(&w, Some(&b)).unwrap()))
    });
    g.bench_function("linear+relu fwd+bwd", |bench| {
        bench.iter(|| {
            x.linear(&w, Some(&b))
                .unwrap()
                .relu()
                .unwrap()
                .sum()
                .unwrap()
                .backward()
                .unwrap();
            w.zero_grad();
            b.zero_grad();
        })
    });
    g.bench_function("linear_act(relu) fwd+bwd", |bench| {
        bench.iter(|| {
            x.linear_act(&w, Some(&b), UnaryOp::Relu)
                .unwrap()
                .sum()
                .unwrap()
                .backward()
                .unwrap();
            w.zero_grad();
            b.zero_grad();
        })
    });
    // The article generator's output layer, h[100×128]·W[12288×128]ᵀ + b then
    // sigmoid: two passes over the output against one (`linear_act`).
    let h = Tensor::randn(&[100, 128], DType::F32, Device::Cpu, &mut rng).unwrap();
    let w2 = Tensor::randn(&[12288, 128], DType::F32, Device::Cpu, &mut rng).unwrap();
    let b2 = Tensor::randn(&[12288], DType::F32, Device::Cpu, &mut rng).unwrap();
    g.throughput(Throughput::Elements((2 * 100 * 128 * 12288) as u64));
    g.bench_function("linear then sigmoid [100x128]·[12288x128]ᵀ", |bench| {
        bench.iter(|| kiln::no_grad(|| h.linear(&w2, Some(&b2))?.sigmoid()).unwrap())
    });
    g.bench_function("linear_act(sigmoid) [100x128]·[12288x128]ᵀ", |bench| {
        bench.iter(|| kiln::no_grad(|| h.linear_act(&w2, Some(&b2), UnaryOp::Sigmoid)).unwrap())
    });
    let big = Tensor::randn(&[100, 12288], DType::F32, Device::Cpu, &mut rng).unwrap();
    g.throughput(Throughput::Bytes((2 * 4 * 100 * 12288) as u64));
    g.bench_function("sigmoid [100x12288]", |bench| bench.iter(|| big.sigmoid().unwrap()));
    g.bench_function("sum [100x12288]", |bench| bench.iter(|| big.sum().unwrap()));
    g.finish();
}

fn gan_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("gan step");
    for (name, gw, dw, d_sig, batch) in [
        ("toy2d", vec![2, 128, 128, 2], vec![2, 128, 128, 1], false, 256),
        ("seed", vec![100, 128, 784], vec![784, 128, 1], true, 64),
    ] {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let gen = mlp(&gw, Act::Relu, None, &mut rng).unwrap();
        let disc = mlp(&dw, Act::Relu, d_sig.then_some(Activation::Sigmoid), &mut rng).unwrap();
        let mut opt_g = Adam::new(gen.parameters(), AdamConfig::default());
        let mut opt_d = Adam::new(disc.parameters(), AdamConfig::default());
        let real = Tensor::rand(&[batch, dw[0]], DType::F32, Device::Cpu, &mut rng).unwrap();
        // As the trainer runs it: on a worker of the pool, the other workers
        // kept polling between the step's small parallel products.
        g.bench_function(name, |bench| {
            rayon::scope(|_| {
                bench.iter(|| {
                    let _warm = kiln::KeepWarm::new();
                    let z = Tensor::randn(&[batch, gw[0]], DType::F32, Device::Cpu, &mut rng).unwrap();
                    let fake = gen.forward(&z).unwrap();
                    opt_d.zero_grad();
                    // Both batches through D together, as the trainer runs them.
                    let ys = disc.forward_many(&[&real, &fake.detach()]).unwrap();
                    let ld = d_loss(GanLoss::Ns, &ys[0], &ys[1], d_sig).unwrap();
                    ld.backward().unwrap();
                    opt_d.step().unwrap();
                    opt_g.zero_grad();
                    let lg = g_loss(GanLoss::Ns, &disc.forward(&fake).unwrap(), d_sig).unwrap();
                    lg.backward_to(opt_g.params()).unwrap();
                    opt_g.step().unwrap();
                })
            })
        });
    }
    g.finish();
}

/// Graph bookkeeping: a chain of 100 ops on one-element tensors, forward
/// (recording) and backward, so the arithmetic is negligible and the time is
/// the engine's own cost. Criterion's "elements" are ops: its throughput
/// line reads as ops per second (its inverse is the cost per op, forward and
/// backward together).
fn autograd_overhead(c: &mut Criterion) {
    let x = Tensor::from_vec(vec![0.5f32], &[1], Device::Cpu)
        .unwrap()
        .requires_grad(true);
    // 100 alternating muls and adds, each reading x again.
    let chain = || {
        (0..100).fold(x.clone(), |y, i| {
            if i % 2 == 0 { y.mul(&x) } else { y.add(&x) }.unwrap()
        })
    };
    let mut g = c.benchmark_group("autograd");
    g.throughput(Throughput::Elements(100));
    g.bench_function("100-op chain fwd+bwd (1 element)", |bench| {
        bench.iter(|| {
            chain().sum().unwrap().backward().unwrap();
            x.zero_grad();
        })
    });
    g.bench_function("100-op chain fwd only, no_grad (1 element)", |bench| {
        bench.iter(|| kiln::no_grad(chain))
    });
    g.finish();
}

criterion_group!(benches, ops, gan_step, autograd_overhead);
criterion_main!(benches);
