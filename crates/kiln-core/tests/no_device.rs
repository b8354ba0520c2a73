//! Without a GPU (or without the `cuda` feature) every way onto `Device::Cuda` is a
//! `NoDevice` error with a readable reason, never a panic.

use kiln_core::{DType, Device, Error, Result, Tensor};
use rand::SeedableRng;

/// True when this process can open cuda:0; the checks below then do not apply.
fn gpu_present() -> bool {
    #[cfg(feature = "cuda")]
    {
        kiln_core::kiln_cuda::CudaBackend::global().is_ok()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

#[track_caller]
fn assert_no_device(what: &str, r: Result<Tensor>) {
    match r {
        Err(Error::NoDevice(msg)) => {
            assert!(!msg.is_empty(), "{what}: empty reason");
            let shown = Error::NoDevice(msg).to_string();
            assert!(shown.starts_with("no device: "), "{what}: {shown}");
        }
        other => panic!("{what}: expected NoDevice, got {other:?}"),
    }
}

#[test]
fn tensors_on_cuda_without_a_gpu_are_no_device_errors() {
    if gpu_present() {
        eprintln!("a GPU is present; nothing to check here");
        return;
    }
    let dev = Device::Cuda(0);
    assert_no_device("zeros", Tensor::zeros(&[2, 3], DType::F32, dev));
    assert_no_device("ones", Tensor::ones(&[2], DType::F32, dev));
    assert_no_device("full f64", Tensor::full(&[2], 1.0, DType::F64, dev));
    assert_no_device("from_vec", Tensor::from_vec(vec![1.0f32, 2.0], &[2], dev));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    assert_no_device("randn", Tensor::randn(&[2], DType::F32, dev, &mut rng));
    assert_no_device("arange", Tensor::arange(0.0, 3.0, 1.0, DType::F32, dev));
    let host = Tensor::from_vec(vec![1.0f32, 2.0], &[2], Device::Cpu).unwrap();
    assert_no_device("to(cuda:0)", host.to(dev));
    assert_no_device("to(cuda:1)", host.to(Device::Cuda(1)));
    // The host tensor is untouched and `to(Cpu)` stays a no-op.
    assert_eq!(host.to(Device::Cpu).unwrap().to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
}
