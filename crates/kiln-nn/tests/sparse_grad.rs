//! Parameters that get no gradient on some steps: Adam's bias correction and
//! SGD's momentum buffer start per parameter, as in PyTorch (fixture made by
//! fixtures/make_sparse_grad_fixture.py).

use kiln_core::{Device, Tensor};
use kiln_nn::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use serde_json::Value;

fn vecf(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn run(name: &str, make: impl Fn(Vec<Tensor>) -> Box<dyn Optimizer>) {
    let fx: Value = serde_json::from_str(include_str!("fixtures/sparse_grad.json")).unwrap();
    let case = &fx[name];
    let a = Tensor::from_vec(vecf(&case["init_a"]), &[3], Device::Cpu)
        .unwrap()
        .requires_grad(true);
    let b = Tensor::from_vec(vecf(&case["init_b"]), &[2], Device::Cpu)
        .unwrap()
        .requires_grad(true);
    let mut opt = make(vec![a.clone(), b.clone()]);
    for g in case["grads"].as_array().unwrap() {
        a.set_grad(Some(Tensor::from_vec(vecf(&g["a"]), &[3], Device::Cpu).unwrap()))
            .unwrap();
        let gb = (!g["b"].is_null()).then(|| Tensor::from_vec(vecf(&g["b"]), &[2], Device::Cpu).unwrap());
        b.set_grad(gb).unwrap();
        opt.step().unwrap();
    }
    for (t, key) in [(&a, "final_a"), (&b, "final_b")] {
        let got = t.to_vec::<f64>().unwrap();
        for (x, y) in got.iter().zip(vecf(&case[key])) {
            assert!(
                (x - y).abs() <= 1e-12 * y.abs().max(1.0),
                "{name} {key}: {got:?} vs torch {y}"
            );
        }
    }
}

#[test]
fn adam_counts_steps_per_parameter_like_pytorch() {
    run("adam", |p| {
        Box::new(Adam::new(
            p,
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
        ))
    });
}

#[test]
fn sgd_momentum_buffer_starts_per_parameter_like_pytorch() {
    run("sgd", |p| {
        Box::new(
            Sgd::new(
                p,
                SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    dampening: 0.1,
                    ..Default::default()
                },
            )
            .unwrap(),
        )
    });
}
