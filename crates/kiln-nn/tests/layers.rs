//! Layers against references: BatchNorm1d against a plain f64 computation
//! and PyTorch (fixtures/batchnorm.json) plus a gradcheck; Dropout's
//! determinism and scaling; Linear's initialisation; Sequential's names;
//! the loss modules.

use kiln_core::{gradcheck, DType, Device, GradcheckOptions, Result, Tensor};
use kiln_nn::{
    batch_norm, Activation, BCELoss, BCEWithLogitsLoss, BatchNorm1d, BatchNormConfig, CrossEntropyLoss, Dropout,
    Linear, MSELoss, Module, Sequential,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

fn f64_config() -> BatchNormConfig {
    BatchNormConfig {
        dtype: DType::F64,
        ..Default::default()
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: {g} vs {w}");
    }
}

/// Reference BatchNorm on [N, C] in f64 loops: returns y, batch mean, biased var.
fn reference_batch_norm(
    x: &[f64],
    n: usize,
    c: usize,
    w: &[f64],
    b: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for j in 0..c {
        mean[j] = (0..n).map(|i| x[i * c + j]).sum::<f64>() / n as f64;
        var[j] = (0..n).map(|i| (x[i * c + j] - mean[j]).powi(2)).sum::<f64>() / n as f64;
    }
    let y = (0..n * c)
        .map(|k| {
            let j = k % c;
            (x[k] - mean[j]) / (var[j] + eps).sqrt() * w[j] + b[j]
        })
        .collect();
    (y, mean, var)
}

#[test]
fn batchnorm_train_forward_and_running_stats_match_a_plain_f64_computation() -> Result<()> {
    let (n, c) = (7, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut bn = BatchNorm1d::with_config(c, f64_config())?;
    let (w, b) = (vec![0.5, -1.0, 2.0], vec![0.1, 0.2, -0.3]);
    bn.weight = Some(Tensor::from_vec(w.clone(), &[c], Device::Cpu)?.requires_grad(true));
    bn.bias = Some(Tensor::from_vec(b.clone(), &[c], Device::Cpu)?.requires_grad(true));
    let (mut running_mean, mut running_var) = (vec![0.0; c], vec![1.0; c]);
    for step in 0..4 {
        let x = Tensor::randn(&[n, c], DType::F64, Device::Cpu, &mut rng)?.mul_scalar(1.0 + step as f64)?;
        let xv = x.to_vec::<f64>()?;
        let (y, mean, var) = reference_batch_norm(&xv, n, c, &w, &b, 1e-5);
        assert_close("train y", &bn.forward(&x)?.to_vec::<f64>()?, &y, 1e-12);
        for j in 0..c {
            running_mean[j] = 0.9 * running_mean[j] + 0.1 * mean[j];
            running_var[j] = 0.9 * running_var[j] + 0.1 * var[j] * n as f64 / (n - 1) as f64;
        }
        assert_close("running_mean", &bn.running_mean.to_vec::<f64>()?, &running_mean, 1e-12);
        assert_close("running_var", &bn.running_var.to_vec::<f64>()?, &running_var, 1e-12);
    }
    assert_eq!(bn.num_batches_tracked.item()?, 4.0);

    // Eval: the running estimates, and nothing moves.
    bn.set_training(false);
    let running_before = bn.running_mean.to_vec::<f64>()?;
    let x = Tensor::randn(&[2, c], DType::F64, Device::Cpu, &mut rng)?;
    let xv = x.to_vec::<f64>()?;
    let want: Vec<f64> = (0..2 * c)
        .map(|k| {
            let j = k % c;
            (xv[k] - running_mean[j]) / (running_var[j] + 1e-5).sqrt() * w[j] + b[j]
        })
        .collect();
    assert_close("eval y", &bn.forward(&x)?.to_vec::<f64>()?, &want, 1e-12);
    assert_eq!(
        bn.running_mean.to_vec::<f64>()?,
        running_before,
        "eval leaves the running stats"
    );
    assert_eq!(bn.num_batches_tracked.item()?, 4.0);
    Ok(())
}

#[test]
fn batchnorm_matches_torch_in_train_and_eval_mode_including_ncl_inputs() -> Result<()> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/batchnorm.json")).unwrap();
    let fx: Value = serde_json::from_str(&text).unwrap();
    let mut bn = BatchNorm1d::with_config(4, f64_config())?;
    bn.weight = Some(Tensor::from_vec(floats(&fx["weight"]), &[4], Device::Cpu)?.requires_grad(true));
    bn.bias = Some(Tensor::from_vec(floats(&fx["bias"]), &[4], Device::Cpu)?.requires_grad(true));
    for step in fx["train_steps"].as_array().unwrap() {
        let x = Tensor::from_vec(floats(&step["x"]), &[6, 4], Device::Cpu)?;
        assert_close("train y", &bn.forward(&x)?.to_vec::<f64>()?, &floats(&step["y"]), 1e-12);
        assert_close(
            "running_mean",
            &bn.running_mean.to_vec::<f64>()?,
            &floats(&step["running_mean"]),
            1e-12,
        );
        assert_close(
            "running_var",
            &bn.running_var.to_vec::<f64>()?,
            &floats(&step["running_var"]),
            1e-12,
        );
    }
    let x = Tensor::from_vec(floats(&fx["ncl_x"]), &[2, 4, 3], Device::Cpu)?;
    assert_close(
        "[N, C, L] y",
        &bn.forward(&x)?.to_vec::<f64>()?,
        &floats(&fx["ncl_y"]),
        1e-12,
    );
    assert_close(
        "[N, C, L] running_var",
        &bn.running_var.to_vec::<f64>()?,
        &floats(&fx["ncl_running_var"]),
        1e-12,
    );
    bn.set_training(false);
    let x = Tensor::from_vec(floats(&fx["eval_x"]), &[5, 4], Device::Cpu)?;
    assert_close(
        "eval y",
        &bn.forward(&x)?.to_vec::<f64>()?,
        &floats(&fx["eval_y"]),
        1e-12,
    );
    Ok(())
}

#[test]
fn batchnorm_gradients_pass_gradcheck_in_train_and_eval_mode() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = Tensor::randn(&[5, 3], DType::F64, Device::Cpu, &mut rng)?;
    let w = Tensor::uniform(&[3], 0.5, 1.5, DType::F64, Device::Cpu, &mut rng)?;
    let b = Tensor::randn(&[3], DType::F64, Device::Cpu, &mut rng)?;
    let opts = GradcheckOptions::default();
    // Training: the gradient flows through the batch mean and variance too.
    let train = |t: &[Tensor]| batch_norm(&t[0], None, Some(&t[1]), Some(&t[2]), true, 0.1, 1e-5);
    let report = gradcheck(train, &[x.clone(), w.clone(), b.clone()], opts)?;
    assert!(report.ok, "train: {report:?}");
    let x3 = Tensor::randn(&[2, 3, 4], DType::F64, Device::Cpu, &mut rng)?;
    let report = gradcheck(train, &[x3, w.clone(), b.clone()], opts)?;
    assert!(report.ok, "train [N, C, L]: {report:?}");
    let (rm, rv) = (
        Tensor::randn(&[3], DType::F64, Device::Cpu, &mut rng)?,
        Tensor::uniform(&[3], 0.5, 2.0, DType::F64, Device::Cpu, &mut rng)?,
    );
    let eval = |t: &[Tensor]| batch_norm(&t[0], Some((&rm, &rv)), Some(&t[1]), Some(&t[2]), false, 0.1, 1e-5);
    let report = gradcheck(eval, &[x, w, b], opts)?;
    assert!(report.ok, "eval: {report:?}");
    Ok(())
}

#[test]
fn batchnorm_rejects_bad_inputs_and_names_its_state() -> Result<()> {
    let bn = BatchNorm1d::new(4)?;
    let one_row = Tensor::ones(&[1, 4], DType::F32, Device::Cpu)?;
    assert!(bn
        .forward(&one_row)
        .unwrap_err()
        .to_string()
        .contains("more than 1 value"));
    let wrong = Tensor::ones(&[3, 5], DType::F32, Device::Cpu)?;
    assert!(bn.forward(&wrong).is_err());
    let names: Vec<String> = bn
        .named_parameters()
        .into_iter()
        .chain(bn.named_buffers())
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    );
    assert!(BatchNorm1d::new(0).is_err());
    Ok(())
}

#[test]
fn dropout_is_deterministic_per_seed_and_the_identity_in_eval_mode() -> Result<()> {
    let x = Tensor::ones(&[32, 16], DType::F32, Device::Cpu)?;
    let masks = |seed| -> Result<(Vec<f32>, Vec<f32>)> {
        let d = Dropout::new(0.3, seed)?;
        Ok((d.forward(&x)?.to_vec()?, d.forward(&x)?.to_vec()?))
    };
    let (a1, a2) = masks(7)?;
    let (b1, _) = masks(7)?;
    let (c1, _) = masks(8)?;
    assert_eq!(a1, b1, "same seed, same mask");
    assert_ne!(a1, a2, "the stream advances between calls");
    assert_ne!(a1, c1, "another seed, another mask");
    let scale = 1.0 / 0.7f32;
    assert!(a1.iter().all(|&v| v == 0.0 || (v - scale).abs() < 1e-6));

    let mut d = Dropout::new(0.3, 7)?;
    d.set_training(false);
    let y = d.forward(&x)?;
    assert!(y.shares_storage(&x));
    Ok(())
}

#[test]
fn dropout_preserves_the_mean_and_drops_about_p() -> Result<()> {
    let d = Dropout::new(0.25, 3)?;
    let x = Tensor::full(&[200_000], 2.0, DType::F64, Device::Cpu)?;
    let y = d.forward(&x)?.to_vec::<f64>()?;
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    // Bernoulli(0.25) over 2e5 draws: std of the fraction ≈ 1e-3.
    assert!((dropped - 0.25).abs() < 5e-3, "dropped fraction {dropped}");
    assert!((mean - 2.0).abs() < 0.02, "mean {mean}");
    Ok(())
}

#[test]
fn dropout_gradient_is_the_mask_and_the_stream_position_restores() -> Result<()> {
    let d = Dropout::new(0.5, 11)?;
    let x = Tensor::ones(&[64], DType::F32, Device::Cpu)?.requires_grad(true);
    let y = d.forward(&x)?;
    y.sum()?.backward()?;
    assert_eq!(x.grad().unwrap().to_vec::<f32>()?, y.to_vec::<f32>()?);

    let pos = d.rng_word_pos();
    let next = d.forward(&x)?.to_vec::<f32>()?;
    d.set_rng_word_pos(pos);
    assert_eq!(d.forward(&x)?.to_vec::<f32>()?, next);
    assert!(Dropout::new(1.5, 0).is_err());
    let all = Dropout::new(1.0, 0)?.forward(&x)?.to_vec::<f32>()?;
    assert!(all.iter().all(|&v| v == 0.0));
    Ok(())
}

#[test]
fn linear_init_stays_within_one_over_sqrt_fan_in() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let layer = Linear::new(100, 784, true, &mut rng)?;
    let bound = 1.0 / 10.0;
    for (name, t) in layer.named_parameters() {
        let v = t.to_vec::<f32>()?;
        assert!(v.iter().all(|x| x.abs() <= bound), "{name} outside ±{bound}");
        // Uniform: the extremes come close to the bound, the mean close to 0.
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(max > 0.9 * bound, "{name} max |w| = {max}");
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.02, "{name} mean {mean}");
        assert!(t.requires_grad_flag());
    }
    assert_eq!(layer.weight.shape(), [784, 100]);
    Ok(())
}

#[test]
fn sequential_names_parameters_and_buffers_by_layer_index() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut net = Sequential::new()
        .push(Linear::new(4, 8, true, &mut rng)?)
        .push(BatchNorm1d::new(8)?)
        .push(Activation::Relu)
        .push(Dropout::new(0.5, 1)?)
        .push(Linear::new(8, 2, false, &mut rng)?);
    let params: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(params, ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight"]);
    let buffers: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(buffers, ["1.running_mean", "1.running_var", "1.num_batches_tracked"]);
    assert_eq!(
        net.describe(),
        "Linear(4 → 8) → BatchNorm1d(8) → Relu → Dropout(p=0.5) → Linear(8 → 2)"
    );

    // set_training reaches every layer: eval output is deterministic.
    net.set_training(false);
    let x = Tensor::randn(&[3, 4], DType::F32, Device::Cpu, &mut rng)?;
    assert_eq!(net.forward(&x)?.to_vec::<f32>()?, net.forward(&x)?.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn loss_modules_equal_the_tensor_losses() -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let logits = Tensor::randn(&[4, 3], DType::F32, Device::Cpu, &mut rng)?;
    let target = Tensor::rand(&[4, 3], DType::F32, Device::Cpu, &mut rng)?;
    let probs = logits.sigmoid()?;
    assert_eq!(
        MSELoss.forward(&logits, &target)?.item()?,
        logits.mse_loss(&target)?.item()?
    );
    assert_eq!(
        BCELoss.forward(&probs, &target)?.item()?,
        probs.bce_loss(&target)?.item()?
    );
    assert_eq!(
        BCEWithLogitsLoss.forward(&logits, &target)?.item()?,
        logits.bce_with_logits(&target)?.item()?
    );
    // BCE on σ(x) and BCE-with-logits on x agree.
    let gap = BCELoss.forward(&probs, &target)?.item()? - BCEWithLogitsLoss.forward(&logits, &target)?.item()?;
    assert!(gap.abs() < 1e-5);
    assert_eq!(
        CrossEntropyLoss.forward(&logits, &[0, 2, 1, 2])?.item()?,
        logits.cross_entropy(&[0, 2, 1, 2])?.item()?
    );
    Ok(())
}

#[test]
fn sequential_fuses_linear_with_the_activation_after_it() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let l1 = Linear::new(30, 40, true, &mut rng).unwrap();
    let l2 = Linear::new(40, 20, true, &mut rng).unwrap();
    let l3 = Linear::new(20, 10, true, &mut rng).unwrap();
    let x = Tensor::randn(&[25, 30], DType::F32, Device::Cpu, &mut rng).unwrap();
    // By hand, op by op: the reference values and gradients.
    let manual = |x: &Tensor| -> Tensor {
        let h = l1.forward(x).unwrap().leaky_relu(0.2).unwrap();
        let h = l2.forward(&h).unwrap().gelu().unwrap();
        l3.forward(&h).unwrap().sigmoid().unwrap()
    };
    let want = manual(&x);
    let params: Vec<Tensor> = [&l1, &l2, &l3].iter().flat_map(|l| l.parameters()).collect();
    let grads_want = kiln_core::autograd::grad(&[want.sum().unwrap()], &params, None, false, false).unwrap();
    let copy = |l: &Linear| {
        let p = l.parameters();
        Linear::from_tensors(p[0].clone(), Some(p[1].clone())).unwrap()
    };
    let net = Sequential::new()
        .push(copy(&l1))
        .push(Activation::LeakyRelu(0.2))
        .push(copy(&l2))
        .push(Activation::Gelu)
        .push(copy(&l3))
        .push(Activation::Sigmoid);
    let got = net.forward(&x).unwrap();
    // Linear + sigmoid became one node; Linear + GELU (no fused form) did not.
    assert_eq!(got.grad_fn_name(), Some("linear_sigmoid"));
    assert_eq!(got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    let grads = kiln_core::autograd::grad(&[got.sum().unwrap()], &net.parameters(), None, false, false).unwrap();
    for (g, w) in grads.iter().zip(&grads_want) {
        assert_eq!(g.to_vec::<f32>().unwrap(), w.to_vec::<f32>().unwrap());
    }
}

#[test]
fn forward_many_gives_each_input_what_forward_gives_it() {
    // Linear + leaky relu (fused), Linear + GELU (not fusable), a dropout and
    // a bare Linear then sigmoid (fused): each input's values, graph and
    // gradients as from its own forward. Two nets from one seed, so the
    // dropout masks come from the same stream in the same order.
    let build = || {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        Sequential::new()
            .push(Linear::new(600, 40, true, &mut rng).unwrap())
            .push(Activation::LeakyRelu(0.2))
            .push(Linear::new(40, 20, true, &mut rng).unwrap())
            .push(Activation::Gelu)
            .push(Dropout::new(0.3, 5).unwrap())
            .push(Linear::new(20, 10, false, &mut rng).unwrap())
            .push(Activation::Sigmoid)
    };
    let (net, twin) = (build(), build());
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let xs: Vec<Tensor> = (0..3)
        .map(|_| {
            Tensor::randn(&[50, 600], DType::F32, Device::Cpu, &mut rng)
                .unwrap()
                .requires_grad(true)
        })
        .collect();
    let refs: Vec<&Tensor> = xs.iter().collect();
    let got = net.forward_many(&refs).unwrap();
    let want: Vec<Tensor> = xs.iter().map(|x| twin.forward(x).unwrap()).collect();
    let weighted = |ys: &[Tensor]| {
        ys.iter()
            .enumerate()
            .map(|(j, y)| y.mul_scalar(j as f64 + 1.0).unwrap().sum().unwrap())
            .reduce(|a, b| a.add(&b).unwrap())
            .unwrap()
    };
    for (j, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.grad_fn_name(), Some("linear_sigmoid"), "input {j}");
        assert_eq!(g.to_vec::<f32>().unwrap(), w.to_vec::<f32>().unwrap(), "input {j}");
    }
    let mut with: Vec<Tensor> = net.parameters();
    with.extend(xs.iter().cloned());
    let g1 = kiln_core::autograd::grad(&[weighted(&got)], &with, None, false, false).unwrap();
    let mut with: Vec<Tensor> = twin.parameters();
    with.extend(xs.iter().cloned());
    let g2 = kiln_core::autograd::grad(&[weighted(&want)], &with, None, false, false).unwrap();
    for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap(), "gradient {i}");
    }
}
