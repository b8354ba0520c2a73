//! Tensors and backward passes in thread-local destructors: the engine's own
//! thread-locals (the buffer pools; the kept storages, tensor handles, graph
//! nodes and rule boxes; the list of nodes being dropped; the backward maps)
//! may already be gone, and a panic there would abort the process.

use kiln_core::{DType, Device, Tensor};
use std::cell::RefCell;
use std::sync::mpsc;

struct Held(Option<Tensor>);

thread_local! {
    static HELD: RefCell<Held> = const { RefCell::new(Held(None)) };
}

#[test]
fn a_tensor_dropped_after_the_buffer_pools_is_freed() {
    // Thread-locals are destroyed in reverse order of first use: HELD is
    // used before any tensor exists, so its tensor drops after the pools.
    let worker = std::thread::spawn(|| {
        HELD.with(|_| {});
        let t = Tensor::zeros(&[16], DType::F32, Device::Cpu).unwrap();
        let u = t.add(&t).unwrap();
        HELD.with(|h| h.borrow_mut().0 = Some(u));
    });
    assert!(worker.join().is_ok());
}

struct BackwardOnDrop(Option<(Tensor, mpsc::Sender<Vec<f64>>)>);

impl Drop for BackwardOnDrop {
    fn drop(&mut self) {
        if let Some((x, done)) = self.0.take() {
            x.mul(&x).unwrap().sum().unwrap().backward().unwrap();
            done.send(x.grad().unwrap().to_vec::<f64>().unwrap()).unwrap();
        }
    }
}

thread_local! {
    static ON_EXIT: RefCell<BackwardOnDrop> = const { RefCell::new(BackwardOnDrop(None)) };
}

#[test]
fn a_backward_run_from_a_thread_local_destructor_works() {
    // ON_EXIT is first used after the pools and before the engine's
    // backward maps, its kept nodes and its rule boxes, so its destructor
    // runs after those are gone and while the pools still live: the backward
    // it runs records and frees nodes and rules without their lists.
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let t = Tensor::zeros(&[4], DType::F64, Device::Cpu).unwrap();
        drop(t.add(&t).unwrap());
        let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2], Device::Cpu)
            .unwrap()
            .requires_grad(true);
        ON_EXIT.with(|b| b.borrow_mut().0 = Some((x.clone(), tx)));
        x.mul(&x).unwrap().sum().unwrap().backward().unwrap();
        x.zero_grad();
    });
    assert!(worker.join().is_ok());
    assert_eq!(rx.recv().unwrap(), vec![2.0, 4.0]);
}
