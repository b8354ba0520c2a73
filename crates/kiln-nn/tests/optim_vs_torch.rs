//! Optimizer trajectories against PyTorch (fixtures/optim.json, made by
//! fixtures/make_optim_fixtures.py): the same initial parameters and the same
//! ten gradients give the same parameters after every step.

use kiln_core::{DType, Device, Result, Tensor};
use kiln_nn::{load_tensors, save_tensors, Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use serde_json::Value;
use std::collections::HashMap;

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/optim.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn shapes(fx: &Value) -> Vec<Vec<usize>> {
    fx["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect()
        })
        .collect()
}

fn tensor(values: &[f64], shape: &[usize], dtype: DType) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape, Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn optimizer(case: &Value, params: Vec<Tensor>) -> Box<dyn Optimizer> {
    let hp = &case["hyper"];
    let get = |k: &str, default: f64| hp.get(k).and_then(Value::as_f64).unwrap_or(default);
    match case["kind"].as_str().unwrap() {
        kind @ ("adam" | "adamw") => {
            let base = if kind == "adamw" {
                AdamConfig::adamw()
            } else {
                AdamConfig::default()
            };
            let betas = hp.get("betas").map(floats).map(|b| (b[0], b[1])).unwrap_or(base.betas);
            Box::new(Adam::new(
                params,
                AdamConfig {
                    lr: get("lr", base.lr),
                    betas,
                    eps: get("eps", base.eps),
                    weight_decay: get("weight_decay", base.weight_decay),
                    ..base
                },
            ))
        }
        "sgd" => Box::new(
            Sgd::new(
                params,
                SgdConfig {
                    lr: get("lr", 0.0),
                    momentum: get("momentum", 0.0),
                    dampening: get("dampening", 0.0),
                    weight_decay: get("weight_decay", 0.0),
                    nesterov: hp.get("nesterov").and_then(Value::as_bool).unwrap_or(false),
                },
            )
            .unwrap(),
        ),
        other => panic!("unknown optimizer kind {other}"),
    }
}

fn dtype_of(case: &Value) -> DType {
    match case["dtype"].as_str().unwrap() {
        "float32" => DType::F32,
        "float64" => DType::F64,
        other => panic!("dtype {other}"),
    }
}

/// f32: 1e-6 relative (floored at 1e-6 absolute near 0); f64: 1e-12.
fn assert_close(case: &str, step: usize, got: &[f64], want: &[f64], rel: f64) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * w.abs().max(1.0),
            "{case} step {step} element {i}: kiln {g} vs torch {w}"
        );
    }
}

fn set_grads(params: &[Tensor], grads: &Value, shapes: &[Vec<usize>], dtype: DType) {
    for ((p, g), s) in params.iter().zip(grads.as_array().unwrap()).zip(shapes) {
        p.set_grad(Some(tensor(&floats(g), s, dtype))).unwrap();
    }
}

fn initial_params(fx: &Value, dtype: DType) -> Vec<Tensor> {
    let shapes = shapes(fx);
    fx["init"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&shapes)
        .map(|(v, s)| tensor(&floats(v), s, dtype).requires_grad(true))
        .collect()
}

#[test]
fn every_optimizer_follows_torch_step_by_step() {
    let fx = fixture();
    let shapes = shapes(&fx);
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 14, "7 optimizers × 2 dtypes");
    for case in cases {
        let dtype = dtype_of(case);
        let name = format!("{} {}", case["name"].as_str().unwrap(), dtype);
        let rel = if dtype == DType::F32 { 1e-6 } else { 1e-12 };
        let params = initial_params(&fx, dtype);
        let mut opt = optimizer(case, params.clone());
        for (step, (grads, want)) in fx["grads"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["params_after_step"].as_array().unwrap())
            .enumerate()
        {
            set_grads(&params, grads, &shapes, dtype);
            opt.step().unwrap();
            for (p, w) in params.iter().zip(want.as_array().unwrap()) {
                assert_close(&name, step + 1, &p.to_vec_f64().unwrap(), &floats(w), rel);
            }
        }
    }
}

/// Runs `steps` of `case` from the fixture's step `from`, on `params`.
fn run_steps(opt: &mut dyn Optimizer, fx: &Value, range: std::ops::Range<usize>, dtype: DType) {
    let shapes = shapes(fx);
    for step in range {
        set_grads(opt.params(), &fx["grads"][step], &shapes, dtype);
        opt.step().unwrap();
    }
}

#[test]
fn optimizer_state_round_trip_through_a_checkpoint_continues_identically() -> Result<()> {
    let fx = fixture();
    let dir = std::env::temp_dir().join(format!("kiln-nn-optim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for case in fx["cases"].as_array().unwrap() {
        let dtype = dtype_of(case);
        // Uninterrupted: 10 steps.
        let mut straight = optimizer(case, initial_params(&fx, dtype));
        run_steps(straight.as_mut(), &fx, 0..10, dtype);

        // Interrupted: 5 steps, checkpoint params + state + step, restore into fresh objects, 5 more.
        let mut first = optimizer(case, initial_params(&fx, dtype));
        run_steps(first.as_mut(), &fx, 0..5, dtype);
        let (state, step) = first.state();
        let mut tensors: Vec<(String, Tensor)> = state.into_iter().map(|(n, t)| (format!("optim.{n}"), t)).collect();
        tensors.extend(
            first
                .params()
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("param.{i}"), p.clone())),
        );
        let meta = HashMap::from([("step".to_string(), step.to_string())]);
        let path = dir.join(format!("{}-{dtype}.safetensors", case["name"].as_str().unwrap()));
        save_tensors(&tensors, meta, &path)?;

        let (loaded, meta) = load_tensors(&path)?;
        let get = |name: &str| loaded.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let params: Vec<Tensor> = (0..3).map(|i| get(&format!("param.{i}")).requires_grad(true)).collect();
        let state: Vec<(String, Tensor)> = loaded
            .iter()
            .filter_map(|(n, t)| n.strip_prefix("optim.").map(|s| (s.to_string(), t.clone())))
            .collect();
        let mut resumed = optimizer(case, params);
        resumed.load_state(&state, meta["step"].parse().unwrap())?;
        run_steps(resumed.as_mut(), &fx, 5..10, dtype);

        for (a, b) in straight.params().iter().zip(resumed.params()) {
            assert_eq!(
                a.to_vec_f64()?,
                b.to_vec_f64()?,
                "{} {dtype}: resumed run differs",
                case["name"]
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    Ok(())
}
