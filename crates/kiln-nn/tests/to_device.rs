//! `Module::to_device`: a no-op on the device the module is already on, and a readable
//! `NoDevice` error for a GPU that is not there.

use kiln_core::{Device, Error};
use kiln_nn::{Activation, BatchNorm1d, Linear, Module, Sequential};
use rand::SeedableRng;

fn net() -> Sequential {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    Sequential::new()
        .push(Linear::new(3, 4, true, &mut rng).unwrap())
        .push(BatchNorm1d::new(4).unwrap())
        .push(Activation::Relu)
}

#[test]
fn to_device_on_the_same_device_keeps_every_parameter_handle() {
    let mut m = net();
    let before = m.parameters();
    m.to_device(Device::Cpu).unwrap();
    for (a, b) in before.iter().zip(m.parameters()) {
        assert!(a.same(&b));
    }
}

#[test]
fn to_device_without_a_gpu_is_a_no_device_error() {
    #[cfg(feature = "cuda")]
    if kiln_core::kiln_cuda::CudaBackend::global().is_ok() {
        eprintln!("a GPU is present; nothing to check here");
        return;
    }
    let mut m = net();
    match m.to_device(Device::Cuda(0)) {
        Err(Error::NoDevice(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected NoDevice, got {other:?}"),
    }
}
