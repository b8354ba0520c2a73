//! A training step in its steady state asks the system allocator for
//! nothing: tensor buffers come back from kiln's pool, tensor handles,
//! storages, graph nodes and the boxes of backward rules from per-thread
//! lists, and the engine's maps keep their capacity. Counted with a counting
//! global allocator, tensor-sized and small allocations apart.

use kiln::gan::config::TrainConfig;
use kiln::gan::config::{Act, GanLoss};
use kiln::gan::losses::{d_loss, g_loss};
use kiln::gan::trainer::{mlp, Trainer};
use kiln::nn::{Activation, Adam, AdamConfig, Module, Optimizer};
use kiln::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Allocations at least this large count as tensor-sized.
const LARGE: usize = 4096;

struct Counting;
static ON: AtomicBool = AtomicBool::new(false);
static LARGE_ALLOCS: AtomicUsize = AtomicUsize::new(0);
static SMALL_ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// The counters are process-wide: the tests of this file take turns, or one
/// would count the other's allocations.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn count(size: usize) {
    if ON.load(Ordering::Relaxed) {
        if size >= LARGE {
            LARGE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        } else {
            SMALL_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: forwards every call to the system allocator unchanged; counting
// touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: ptr was allocated by System with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (large, small) allocations per call of `step` over 10 calls, after 5 of warm-up.
fn count_per_step(mut step: impl FnMut()) -> (usize, usize) {
    for _ in 0..5 {
        step();
    }
    let steps = 10;
    LARGE_ALLOCS.store(0, Ordering::Relaxed);
    SMALL_ALLOCS.store(0, Ordering::Relaxed);
    ON.store(true, Ordering::Relaxed);
    for _ in 0..steps {
        step();
    }
    ON.store(false, Ordering::Relaxed);
    (
        LARGE_ALLOCS.load(Ordering::Relaxed) / steps,
        SMALL_ALLOCS.load(Ordering::Relaxed) / steps,
    )
}

/// (large, small) allocations per step of the engine's GAN step.
fn measure(g_w: &[usize], d_w: &[usize], d_sigmoid: bool, loss: GanLoss, batch: usize) -> (usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let g = mlp(g_w, Act::Relu, None, &mut rng).unwrap();
    let d = mlp(d_w, Act::Relu, d_sigmoid.then_some(Activation::Sigmoid), &mut rng).unwrap();
    let mut opt_g = Adam::new(g.parameters(), AdamConfig::default());
    let mut opt_d = Adam::new(d.parameters(), AdamConfig::default());
    let real = Tensor::rand(&[batch, d_w[0]], DType::F32, Device::Cpu, &mut rng).unwrap();
    let mut step = |rng: &mut ChaCha8Rng| {
        let z = Tensor::randn(&[batch, g_w[0]], DType::F32, Device::Cpu, rng).unwrap();
        let fake = g.forward(&z).unwrap();
        opt_d.zero_grad();
        // Both batches through D together, as `kiln bench gan-step` and the
        // trainer run them.
        let ys = d.forward_many(&[&real, &fake.detach()]).unwrap();
        let ld = d_loss(loss, &ys[0], &ys[1], d_sigmoid).unwrap();
        ld.backward().unwrap();
        opt_d.step().unwrap();
        opt_g.zero_grad();
        let lg = g_loss(loss, &d.forward(&fake).unwrap(), d_sigmoid).unwrap();
        lg.backward().unwrap();
        opt_g.step().unwrap();
    };
    count_per_step(|| step(&mut rng))
}

#[test]
fn gan_steps_allocate_nothing_in_steady_state() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Run on one thread so every buffer returns to the pool it came from.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        let (large, small) = measure(&[2, 128, 128, 2], &[2, 128, 128, 1], false, GanLoss::Ns, 256);
        println!("toy2d: {large} tensor-sized and {small} small allocations per step");
        assert_eq!((large, small), (0, 0), "toy2d step allocated");
        let (large, small) = measure(&[100, 128, 784], &[784, 128, 1], true, GanLoss::Ns, 64);
        println!("seed: {large} tensor-sized and {small} small allocations per step");
        assert_eq!((large, small), (0, 0), "seed step allocated");
        // Every loss, with and without D's sigmoid (WGAN-GP differentiates
        // twice), on layers wide enough for kiln's own GEMM kernels: products
        // under 4096 multiply-adds go to matrixmultiply, which allocates its
        // packing buffers on every call.
        for loss in [
            GanLoss::Bce,
            GanLoss::Ns,
            GanLoss::Lsgan,
            GanLoss::Hinge,
            GanLoss::WganGp,
        ] {
            for sigmoid in [false, true] {
                let (large, small) = measure(&[16, 64, 64], &[64, 64, 1], sigmoid, loss, 64);
                assert_eq!((large, small), (0, 0), "{loss:?} step (D sigmoid: {sigmoid}) allocated");
            }
        }
    });
}

#[test]
fn trainer_steps_on_shapes64_allocate_nothing_in_steady_state() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The trainer's own work around the engine's step: the real batch drawn into a pooled
    // tensor, the gradient norms, the loss and D(x) read-outs. The article's model on shapes64.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| {
        let mut config = TrainConfig::preset("seed", None).unwrap();
        config.batch = 16;
        let mut trainer = Trainer::new(config).unwrap();
        let (large, small) = count_per_step(|| {
            trainer.train_step().unwrap();
        });
        println!("trainer, seed preset: {large} tensor-sized and {small} small allocations per step");
        assert_eq!((large, small), (0, 0), "the trainer's step allocated");
    });
}
