//! kiln against PyTorch: forward values and gradients of gelu (tanh), softplus,
//! log_softmax, leaky_relu, bce (with its clamps), bce_with_logits,
//! cross_entropy and a small MLP, in f64, to 1e-10.
//!
//! The reference numbers live in `fixtures/torch_ops.json`, written by
//! `fixtures/make_fixtures.py` (PyTorch is not needed to run this test).

use kiln_core::{Device, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;

const TOL: f64 = 1e-10;

struct Case {
    name: String,
    op: String,
    params: Value,
    inputs: BTreeMap<String, Tensor>,
    output: Tensor,
    grad_output: Tensor,
    grads: BTreeMap<String, Tensor>,
    raw: Value,
}

fn tensor(v: &Value) -> Tensor {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data: Vec<f64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    Tensor::from_vec(data, &shape, Device::Cpu).unwrap()
}

fn tensors(v: &Value) -> BTreeMap<String, Tensor> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), tensor(t)))
        .collect()
}

fn load() -> Vec<Case> {
    let text = include_str!("fixtures/torch_ops.json");
    let root: Value = serde_json::from_str(text).expect("torch_ops.json parses");
    root["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            op: c["op"].as_str().unwrap().to_string(),
            params: c["params"].clone(),
            inputs: tensors(&c["inputs"]),
            output: tensor(&c["output"]),
            grad_output: tensor(&c["grad_output"]),
            grads: tensors(&c["grads"]),
            raw: c.clone(),
        })
        .collect()
}

/// |a − b| ≤ TOL·max(1, |b|) element by element (relative for large values,
/// absolute near zero).
///
/// One exception: the ±4.6e10 gradients bce produces where p(1 − p) hits its
/// 1e-12 clamp. kiln computes (p − t)/1e-12 · g/n exactly; PyTorch's value is
/// 4e-9 larger (its clamp constant is not exactly 1e-12 in f64), so those
/// entries are checked to 1e-8 relative.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f64>().unwrap(), want.to_vec::<f64>().unwrap());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(a.is_finite(), "{what}[{i}]: kiln gave {a}");
        let tol = if b.abs() > 1e9 { 1e-8 } else { TOL };
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}[{i}]: kiln {a:e} vs torch {b:e} (diff {:e})",
            (a - b).abs()
        );
    }
}

/// Runs the kiln version of `case` on leaves built from its inputs.
fn run(case: &Case, leaves: &BTreeMap<String, Tensor>) -> Tensor {
    let x = |k: &str| &leaves[k];
    let r = match case.op.as_str() {
        "gelu" => x("x").gelu(),
        "softplus" => x("x").softplus(),
        "log_softmax" => x("x").log_softmax(case.params["dim"].as_i64().unwrap() as isize),
        "leaky_relu" => x("x").leaky_relu(case.params["slope"].as_f64().unwrap()),
        "bce" => x("p").bce_loss(x("t")),
        "bce_with_logits" => x("x").bce_with_logits(x("t")),
        "cross_entropy" => {
            let targets: Vec<usize> = case.raw["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as usize)
                .collect();
            x("x").cross_entropy(&targets)
        }
        "mlp_bce" => {
            let target = tensor(&case.raw["target"]);
            (|| {
                let hidden = x("x").linear(x("w1"), Some(x("b1")))?.relu()?;
                hidden.linear(x("w2"), Some(x("b2")))?.sigmoid()?.bce_loss(&target)
            })()
        }
        other => panic!("fixture op {other} has no kiln mapping"),
    };
    r.unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

#[test]
fn fixture_file_covers_every_listed_op() {
    let ops: Vec<String> = load().into_iter().map(|c| c.op).collect();
    for op in [
        "gelu",
        "softplus",
        "log_softmax",
        "leaky_relu",
        "bce",
        "bce_with_logits",
        "cross_entropy",
        "mlp_bce",
    ] {
        assert!(ops.iter().any(|o| o == op), "no fixture for {op}");
    }
}

#[test]
fn forward_values_and_gradients_match_pytorch_f64() {
    for case in load() {
        let leaves: BTreeMap<String, Tensor> = case
            .inputs
            .iter()
            .map(|(k, t)| (k.clone(), t.clone().requires_grad(case.grads.contains_key(k))))
            .collect();
        let out = run(&case, &leaves);
        assert_close(&format!("{} forward", case.name), &out, &case.output);
        out.backward_with(&case.grad_output).unwrap();
        for (k, want) in &case.grads {
            let got = leaves[k]
                .grad()
                .unwrap_or_else(|| panic!("{}: no gradient for {k}", case.name));
            assert_close(&format!("{} d/d{k}", case.name), &got, want);
        }
    }
}

#[test]
fn f32_forward_values_match_pytorch_to_f32_precision() {
    for case in load() {
        let leaves: BTreeMap<String, Tensor> = case
            .inputs
            .iter()
            .map(|(k, t)| (k.clone(), t.to_dtype(kiln_core::DType::F32).unwrap()))
            .collect();
        if case.op == "mlp_bce" {
            continue; // its target is built in f64 inside `run`
        }
        let out = run(&case, &leaves).to_vec_f64().unwrap();
        let want = case.output.to_vec::<f64>().unwrap();
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{} f32 forward [{i}]: {a} vs {b}",
                case.name
            );
        }
    }
}
