//! Results are bit-identical whatever the rayon thread count: a 1M-element
//! sum, sum_dims both ways, a 256³ matmul and a small MLP's forward and
//! backward, each run in pools of 1, 2 and 4 threads.

use kiln_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn bits(t: &Tensor) -> Vec<u64> {
    t.to_vec_f64().unwrap().into_iter().map(f64::to_bits).collect()
}

fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    Tensor::randn(shape, dtype, Device::Cpu, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
}

/// Runs `f` at 1, 2 and 4 threads and asserts the three results are identical.
#[track_caller]
fn same_at_all_thread_counts(what: &str, f: impl Fn() -> Vec<Vec<u64>> + Sync) {
    let one = in_pool(1, &f);
    assert!(one.iter().all(|v| !v.is_empty()), "{what}: nothing computed");
    for threads in [2, 4] {
        let many = in_pool(threads, &f);
        assert!(one == many, "{what}: {threads} threads differ from 1 thread");
    }
}

#[test]
fn sum_of_a_million_elements_is_bit_identical_across_thread_counts() {
    for dtype in [DType::F32, DType::F64] {
        let x = randn(&[1 << 20], dtype, 1);
        same_at_all_thread_counts("sum", || vec![bits(&x.sum().unwrap()), bits(&x.mean().unwrap())]);
    }
}

#[test]
fn sum_dims_is_bit_identical_across_thread_counts() {
    let x = randn(&[512, 1024], DType::F32, 2);
    let y = randn(&[3, 20000, 2], DType::F32, 3);
    same_at_all_thread_counts("sum_dims", || {
        vec![
            bits(&x.sum_dims(&[0], false).unwrap()),
            bits(&x.sum_dims(&[1], true).unwrap()),
            bits(&y.sum_dims(&[1], false).unwrap()),
            bits(&x.max_dims(&[0], false).unwrap()),
            bits(&x.log_softmax(1).unwrap().sum_dims(&[1], false).unwrap()),
        ]
    });
}

#[test]
fn matmul_256_cubed_is_bit_identical_across_thread_counts() {
    for dtype in [DType::F32, DType::F64] {
        let a = randn(&[256, 256], dtype, 4);
        let b = randn(&[256, 256], dtype, 5);
        same_at_all_thread_counts("matmul", || {
            vec![
                bits(&a.matmul(&b).unwrap()),
                bits(&a.t().unwrap().matmul(&b).unwrap()),
                bits(&a.linear(&b, None).unwrap()),
            ]
        });
    }
}

#[test]
fn mlp_forward_and_backward_are_bit_identical_across_thread_counts() {
    let x = randn(&[64, 128], DType::F32, 6);
    let w1 = randn(&[256, 128], DType::F32, 7).mul_scalar(0.05).unwrap();
    let b1 = randn(&[256], DType::F32, 8).mul_scalar(0.05).unwrap();
    let w2 = randn(&[10, 256], DType::F32, 9).mul_scalar(0.05).unwrap();
    let b2 = randn(&[10], DType::F32, 10).mul_scalar(0.05).unwrap();
    let targets: Vec<usize> = (0..64).map(|i| (i * 7) % 10).collect();
    same_at_all_thread_counts("mlp", || {
        let params: Vec<Tensor> = [&w1, &b1, &w2, &b2]
            .iter()
            .map(|p| p.detach().requires_grad(true))
            .collect();
        let h = x.linear(&params[0], Some(&params[1])).unwrap().gelu().unwrap();
        let loss = h
            .linear(&params[2], Some(&params[3]))
            .unwrap()
            .cross_entropy(&targets)
            .unwrap();
        loss.backward().unwrap();
        let mut out = vec![bits(&loss)];
        out.extend(params.iter().map(|p| bits(&p.grad().unwrap())));
        out
    });
}
