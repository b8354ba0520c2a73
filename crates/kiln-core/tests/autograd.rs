//! Autograd semantics: accumulation, no_grad, detach, retain_graph,
//! retain_grad, hooks, version counters, anomaly mode, higher-order grads,
//! custom functions, DOT export, and that graphs are freed.

use kiln_core::autograd::{self, grad};
use kiln_core::{no_grad, DType, Device, Error, Function, Result, Tensor};

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, Device::Cpu).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn grads_accumulate_across_backward_calls() {
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    x.mul(&x).unwrap().sum().unwrap().backward().unwrap();
    x.mul_scalar(3.0).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f64>().unwrap(), vec![5.0, 7.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
}

#[test]
fn accumulation_never_changes_a_gradient_someone_holds() {
    // Sums are accumulated in place only when nothing else can see them.
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let w = t64(&[3.0, 4.0], &[2]).requires_grad(true);
    // w used twice in one graph: the engine adds its two contributions.
    let y = x.mul(&w).unwrap().add(&x.mul(&w).unwrap()).unwrap().sum().unwrap();
    y.backward().unwrap();
    let held = w.grad().unwrap();
    assert_eq!(held.to_vec::<f64>().unwrap(), vec![2.0, 4.0]);
    // A second backward accumulates into w.grad: the held handle keeps its values.
    x.mul(&w).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(held.to_vec::<f64>().unwrap(), vec![2.0, 4.0]);
    assert_eq!(w.grad().unwrap().to_vec::<f64>().unwrap(), vec![3.0, 6.0]);
}

/// A weight used by two linear layers (a discriminator on real and on fake
/// data), f32, shapes whose GEMMs take the packed kernels.
fn shared_weight_loss(w: &Tensor, b: &Tensor, x1: &Tensor, x2: &Tensor) -> Tensor {
    let y1 = x1.linear(w, Some(b)).unwrap().sigmoid().unwrap().sum().unwrap();
    let y2 = x2.linear(w, Some(b)).unwrap().tanh().unwrap().sum().unwrap();
    y1.add(&y2).unwrap()
}

fn shared_weight_case() -> (Tensor, Tensor, Tensor, Tensor) {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut r = |s: &[usize]| Tensor::randn(s, DType::F32, Device::Cpu, &mut rng).unwrap();
    let w = r(&[37, 300]).requires_grad(true);
    let b = r(&[37]).requires_grad(true);
    (w, b, r(&[50, 300]), r(&[23, 300]))
}

#[test]
fn a_weight_gradient_added_into_the_held_grad_has_the_bits_of_a_separate_sum() {
    // backward() lets the second linear add its weight gradient straight into
    // w.grad (a GEMM with beta = 1); grad() captures each contribution and
    // adds them as tensors. Same sums, so the same bits.
    let (w, b, x1, x2) = shared_weight_case();
    shared_weight_loss(&w, &b, &x1, &x2).backward().unwrap();
    let fused = w.grad().unwrap().to_vec::<f32>().unwrap();
    let captured = grad(
        &[shared_weight_loss(&w, &b, &x1, &x2)],
        &[w.clone()],
        None,
        false,
        false,
    )
    .unwrap();
    let separate = captured[0].to_vec::<f32>().unwrap();
    assert!(fused.iter().zip(&separate).all(|(a, b)| a.to_bits() == b.to_bits()));
    // A held gradient is never written into: the next backward makes a new one.
    let held = w.grad().unwrap();
    shared_weight_loss(&w, &b, &x1, &x2).backward().unwrap();
    assert_eq!(held.to_vec::<f32>().unwrap(), fused);
    let twice = w.grad().unwrap().to_vec::<f32>().unwrap();
    assert!(twice
        .iter()
        .zip(&fused)
        .all(|(t, f)| (t - 2.0 * f).abs() <= 1e-4 * (1.0 + f.abs())));
}

#[test]
fn a_leaf_hook_sees_each_weight_gradient_on_its_own() {
    use std::sync::{Arc, Mutex};
    let (w, b, x1, x2) = shared_weight_case();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    w.register_hook(move |g| {
        s2.lock().unwrap().push(g.to_vec::<f32>().unwrap());
        None
    });
    shared_weight_loss(&w, &b, &x1, &x2).backward().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one call per use of w");
    let total = w.grad().unwrap().to_vec::<f32>().unwrap();
    let sum: Vec<f32> = seen[0].iter().zip(&seen[1]).map(|(a, b)| a + b).collect();
    assert!(total.iter().zip(&sum).all(|(t, s)| t.to_bits() == s.to_bits()));
}

#[test]
fn anomaly_mode_checks_a_weight_gradient_that_would_be_added_in_place() {
    // The second use of w gets a non-finite gradient: anomaly mode must see
    // it as an incoming gradient and name the op, not find it added into w.grad.
    let w = Tensor::from_vec(vec![0.5f32; 6], &[2, 3], Device::Cpu)
        .unwrap()
        .requires_grad(true);
    let x1 = Tensor::from_vec(vec![1.0f32; 12], &[4, 3], Device::Cpu).unwrap();
    let x2 = Tensor::from_vec(vec![f32::INFINITY; 12], &[4, 3], Device::Cpu).unwrap();
    // The later op runs first in backward, so x2's linear (recorded first)
    // is the one whose gradient would be added in place.
    let loss = x2
        .linear(&w, None)
        .unwrap()
        .sum()
        .unwrap()
        .add(&x1.linear(&w, None).unwrap().sum().unwrap())
        .unwrap();
    kiln_core::set_anomaly_enabled(true);
    let err = loss.backward().unwrap_err();
    kiln_core::set_anomaly_enabled(false);
    match &err {
        Error::Anomaly { op, .. } => assert_eq!(*op, "linear"),
        other => panic!("expected Anomaly, got {other}"),
    }
}

#[test]
fn backward_to_fills_only_the_requested_leaves_with_the_full_backward_values() {
    // A two-layer "D(G(z))": G's weight gets the same gradient as a full
    // backward; D's weight and bias, not requested, get nothing.
    let z = t64(&[0.5, -1.0, 2.0, 0.25, -0.75, 1.5], &[2, 3]);
    let wg = t64(&[0.1, -0.2, 0.3, 0.4, 0.5, -0.6], &[2, 3]).requires_grad(true);
    let wd = t64(&[0.7, -0.8], &[1, 2]).requires_grad(true);
    let bd = t64(&[0.05], &[1]).requires_grad(true);
    let loss = || {
        z.linear(&wg, None)
            .unwrap()
            .tanh()
            .unwrap()
            .linear(&wd, Some(&bd))
            .unwrap()
            .sigmoid()
            .unwrap()
            .sum()
            .unwrap()
    };
    loss().backward().unwrap();
    let want = wg.grad().unwrap().to_vec::<f64>().unwrap();
    for t in [&wg, &wd, &bd] {
        t.zero_grad();
    }
    loss().backward_to(std::slice::from_ref(&wg)).unwrap();
    assert!(close(&wg.grad().unwrap().to_vec::<f64>().unwrap(), &want, 1e-15));
    assert!(wd.grad().is_none() && bd.grad().is_none());
    // Requesting the middle weight only also works, and a non-leaf or a
    // tensor without requires_grad is refused with a clear error.
    loss().backward_to(std::slice::from_ref(&wd)).unwrap();
    assert!(wd.grad().is_some() && bd.grad().is_none());
    let err = loss().backward_to(&[z.clone()]).unwrap_err().to_string();
    assert!(err.contains("require grad"), "{err}");
}

#[test]
fn grad_runs_only_the_part_of_the_graph_that_reaches_its_inputs() {
    // d/dx of x·w + e·e with e = exp(v): the branch through e is never
    // executed, so a failing rule there (a modified saved tensor) does not matter.
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let w = t64(&[3.0, 4.0], &[2]).requires_grad(true);
    let v = t64(&[0.5, 0.5], &[2]).requires_grad(true);
    let e = v.exp().unwrap();
    let y = x.mul(&w).unwrap().add(&e.mul(&e).unwrap()).unwrap().sum().unwrap();
    no_grad(|| e.mul_scalar_(2.0).unwrap());
    let gx = grad(&[y.clone()], &[x.clone()], None, true, false).unwrap();
    assert_eq!(gx[0].to_vec::<f64>().unwrap(), vec![3.0, 4.0]);
    // The full backward does run that branch and reports the change.
    assert!(y.backward().is_err());
}

#[test]
fn shared_subexpression_gets_summed_gradient() {
    // y = a·b + a, used twice: dy/da = b + 1
    let a = t64(&[3.0], &[1]).requires_grad(true);
    let b = t64(&[4.0], &[1]).requires_grad(true);
    let y = a.mul(&b).unwrap().add(&a).unwrap().sum().unwrap();
    y.backward().unwrap();
    assert_eq!(a.grad().unwrap().to_vec::<f64>().unwrap(), vec![5.0]);
    assert_eq!(b.grad().unwrap().to_vec::<f64>().unwrap(), vec![3.0]);
}

#[test]
fn no_grad_records_nothing_and_detach_cuts() {
    let x = t64(&[1.0], &[1]).requires_grad(true);
    let y = no_grad(|| x.exp().unwrap());
    assert!(y.is_leaf() && !y.requires_grad_flag());
    let z = x.exp().unwrap().detach().mul(&x).unwrap().sum().unwrap();
    z.backward().unwrap();
    // d/dx (c·x) with c = e¹ treated as a constant.
    assert!(close(&x.grad().unwrap().to_vec::<f64>().unwrap(), &[1f64.exp()], 1e-12));
}

#[test]
fn second_backward_without_retain_graph_errors() {
    let x = t64(&[0.5, 1.5], &[2]).requires_grad(true);
    let y = x.sigmoid().unwrap().sum().unwrap();
    y.backward().unwrap();
    let err = y.backward().unwrap_err();
    assert!(matches!(err, Error::Autograd(_)), "{err}");
    assert!(err.to_string().contains("second time"), "{err}");
}

#[test]
fn a_failed_backward_leaves_nothing_behind_for_the_next() {
    // The engine keeps its per-pass maps between passes (per thread); a pass
    // that stops midway must not leave its pending gradients for the next.
    // z = b·a with b = y·1 = inf and a = 2x: the product's backward delivers
    // a finite gradient for b (a = 6) and then a non-finite one for a, which
    // anomaly mode stops at, with b's gradient pending.
    let y = t64(&[f64::INFINITY], &[1]).requires_grad(true);
    let x = t64(&[3.0], &[1]).requires_grad(true);
    let b = y.mul_scalar(1.0).unwrap();
    let a = x.mul_scalar(2.0).unwrap();
    let loss = b.mul(&a).unwrap().sum().unwrap();
    kiln_core::set_anomaly_enabled(true);
    let err = loss.backward_opts(None, true, false).unwrap_err();
    kiln_core::set_anomaly_enabled(false);
    assert!(matches!(err, Error::Anomaly { .. }), "{err}");
    assert!(y.grad().is_none() && x.grad().is_none());
    // The same (retained) graph again, without anomaly mode: y gets a's 6
    // once, not 6 more left over from the failed pass.
    loss.backward().unwrap();
    assert_eq!(y.grad().unwrap().to_vec::<f64>().unwrap(), vec![6.0]);
}

#[test]
fn a_backward_run_inside_a_hook_is_independent() {
    use std::sync::{Arc, Mutex};
    // A hook that runs a whole backward of its own while the outer pass is
    // midway: both passes get their own bookkeeping.
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let u = t64(&[3.0], &[1]).requires_grad(true);
    // Built beforehand: inside a backward pass grad mode is off.
    let inner = u.mul(&u).unwrap().sum().unwrap();
    let ran = Arc::new(Mutex::new(false));
    let ran2 = ran.clone();
    let h = x.mul_scalar(3.0).unwrap();
    h.register_hook(move |_| {
        inner.backward().unwrap();
        *ran2.lock().unwrap() = true;
        None
    });
    h.mul(&h).unwrap().sum().unwrap().backward().unwrap();
    assert!(*ran.lock().unwrap());
    // d/dx Σ(3x)² = 18x; d/du Σu² = 2u.
    assert_eq!(x.grad().unwrap().to_vec::<f64>().unwrap(), vec![18.0, 36.0]);
    assert_eq!(u.grad().unwrap().to_vec::<f64>().unwrap(), vec![6.0]);
}

#[test]
fn a_leaf_gradient_is_a_handle_of_its_own() {
    // The first gradient a leaf receives is stored as it is when the engine
    // holds its only handle; a gradient someone else holds (the output
    // gradient passed to backward) is stored through a handle of its own
    // (on the same data: no copy), and later accumulation never writes into
    // the caller's tensor (it sees the data shared and adds out of place).
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let go = t64(&[5.0, 7.0], &[2]);
    x.backward_opts(Some(&go), false, false).unwrap();
    assert!(!x.grad().unwrap().same(&go));
    x.mul_scalar(2.0).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f64>().unwrap(), vec![7.0, 9.0]);
    assert_eq!(go.to_vec::<f64>().unwrap(), vec![5.0, 7.0]);
}

#[test]
fn retain_graph_allows_a_second_backward() {
    let x = t64(&[0.5, 1.5], &[2]).requires_grad(true);
    let y = x.sigmoid().unwrap().sum().unwrap();
    y.backward_opts(None, true, false).unwrap();
    let first = x.grad().unwrap().to_vec::<f64>().unwrap();
    y.backward().unwrap();
    let second = x.grad().unwrap().to_vec::<f64>().unwrap();
    assert!(close(
        &second,
        &first.iter().map(|v| 2.0 * v).collect::<Vec<_>>(),
        1e-12
    ));
}

#[test]
fn retain_grad_keeps_non_leaf_gradient() {
    let x = t64(&[1.0, -2.0], &[2]).requires_grad(true);
    let h = x.mul_scalar(2.0).unwrap();
    h.retain_grad();
    let y = h.mul(&h).unwrap().sum().unwrap();
    y.backward().unwrap();
    assert_eq!(h.grad().unwrap().to_vec::<f64>().unwrap(), vec![4.0, -8.0]);
    let plain = x.mul_scalar(2.0).unwrap();
    plain.sum().unwrap().backward().unwrap();
    assert!(plain.grad().is_none());
}

#[test]
fn hooks_see_and_can_replace_gradients() {
    use std::sync::{Arc, Mutex};
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let h = x.mul_scalar(3.0).unwrap();
    h.register_hook(move |g| {
        s2.lock().unwrap().push(g.to_vec::<f64>().unwrap());
        Some(g.mul_scalar(10.0).unwrap())
    });
    x.register_hook(|g| Some(g.add_scalar(1.0).unwrap()));
    h.sum().unwrap().backward().unwrap();
    assert_eq!(seen.lock().unwrap()[0], vec![1.0, 1.0]);
    // 10·3 from the doubled hook, +1 from the leaf hook.
    assert_eq!(x.grad().unwrap().to_vec::<f64>().unwrap(), vec![31.0, 31.0]);
}

#[test]
fn inplace_change_of_saved_tensor_is_an_error_naming_the_op() {
    let w = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let x = t64(&[3.0, 4.0], &[2]);
    let y = x.mul(&w).unwrap().sum().unwrap(); // mul saves x
    x.fill_(0.0).unwrap();
    let err = y.backward().unwrap_err();
    match &err {
        Error::InplaceModified { op, location, .. } => {
            assert_eq!(*op, "mul");
            assert!(location.contains("autograd.rs"), "{location}");
        }
        other => panic!("expected InplaceModified, got {other}"),
    }
}

#[test]
fn inplace_on_leaf_requiring_grad_is_refused_in_grad_mode() {
    let w = t64(&[1.0], &[1]).requires_grad(true);
    assert!(w.fill_(2.0).is_err());
    no_grad(|| w.fill_(2.0)).unwrap();
    assert_eq!(w.to_vec::<f64>().unwrap(), vec![2.0]);
}

#[test]
fn anomaly_mode_names_the_op_and_forward_location() {
    kiln_core::set_anomaly_enabled(true);
    let x = t64(&[0.0, 1.0], &[2]).requires_grad(true);
    let y = x.sqrt().unwrap().sum().unwrap(); // d/dx √x at 0 = Inf
    let line = line!() - 1;
    let err = y.backward().unwrap_err();
    kiln_core::set_anomaly_enabled(false);
    match &err {
        Error::Anomaly { op, location, what } => {
            assert_eq!(*op, "sqrt");
            assert!(location.contains(&format!("autograd.rs:{line}:")), "{location}");
            assert_eq!(what, "Inf");
        }
        other => panic!("expected Anomaly, got {other}"),
    }
}

#[test]
fn second_derivatives_match_closed_forms() {
    let xs = [-1.3, -0.2, 0.4, 1.7];
    let x = t64(&xs, &[4]).requires_grad(true);
    type Fd = fn(f64) -> f64;
    let cases: Vec<(&str, Box<dyn Fn(&Tensor) -> Result<Tensor>>, Fd)> = vec![
        ("tanh", Box::new(|x: &Tensor| x.tanh()), |v: f64| {
            let t = v.tanh();
            -2.0 * t * (1.0 - t * t)
        }),
        ("sigmoid", Box::new(|x: &Tensor| x.sigmoid()), |v: f64| {
            let s = 1.0 / (1.0 + (-v).exp());
            s * (1.0 - s) * (1.0 - 2.0 * s)
        }),
        ("exp", Box::new(|x: &Tensor| x.exp()), |v: f64| v.exp()),
    ];
    for (name, f, d2) in cases {
        let y = f(&x).unwrap().sum().unwrap();
        let g = grad(&[y], &[x.clone()], None, false, true).unwrap().remove(0);
        assert!(!g.is_leaf(), "{name}: first derivative must be differentiable");
        let gg = grad(&[g.sum().unwrap()], &[x.clone()], None, false, false)
            .unwrap()
            .remove(0);
        let want: Vec<f64> = xs.iter().map(|&v| d2(v)).collect();
        assert!(close(&gg.to_vec::<f64>().unwrap(), &want, 1e-10), "{name}");
    }
}

#[test]
fn gradient_penalty_gradient_matches_finite_differences() {
    // D(x) = w2·tanh(W1 x + b1); penalty P(W1) = Σ_n ‖∇ₓ D(xₙ)‖². Check dP/dW1 numerically.
    let x = t64(&[0.3, -0.7, 1.1, 0.2, -0.4, 0.9], &[2, 3]).requires_grad(true);
    let w1v = vec![0.5, -0.3, 0.8, 0.1, 0.7, -0.6, -0.2, 0.4, 0.3, 0.9, -0.5, 0.2];
    let w2 = t64(&[0.6, -1.1, 0.4, 0.9], &[1, 4]);
    let penalty = |w1: &Tensor| -> Tensor {
        let d = x
            .linear(w1, None)
            .unwrap()
            .tanh()
            .unwrap()
            .linear(&w2, None)
            .unwrap()
            .sum()
            .unwrap();
        let gx = grad(&[d], &[x.clone()], None, true, true).unwrap().remove(0);
        gx.mul(&gx).unwrap().sum().unwrap()
    };
    let w1 = t64(&w1v, &[4, 3]).requires_grad(true);
    let p = penalty(&w1);
    let analytic = grad(&[p], &[w1.clone()], None, false, false)
        .unwrap()
        .remove(0)
        .to_vec::<f64>()
        .unwrap();
    let eps = 1e-6;
    for j in 0..w1v.len() {
        let mut plus = w1v.clone();
        plus[j] += eps;
        let mut minus = w1v.clone();
        minus[j] -= eps;
        let fp = penalty(&t64(&plus, &[4, 3]).requires_grad(true)).item().unwrap();
        let fm = penalty(&t64(&minus, &[4, 3]).requires_grad(true)).item().unwrap();
        let numeric = (fp - fm) / (2.0 * eps);
        assert!(
            (analytic[j] - numeric).abs() < 1e-5 + 1e-3 * numeric.abs(),
            "W1[{j}]: {} vs {numeric}",
            analytic[j]
        );
    }
}

#[test]
fn grad_does_not_touch_dot_grad_and_reports_unused_inputs() {
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let unused = t64(&[1.0], &[1]).requires_grad(true);
    let y = x.mul(&x).unwrap().sum().unwrap();
    let g = grad(&[y.clone()], &[x.clone()], None, true, false).unwrap();
    assert_eq!(g[0].to_vec::<f64>().unwrap(), vec![2.0, 4.0]);
    assert!(x.grad().is_none());
    assert!(grad(&[y], &[unused], None, false, false).is_err());
}

#[test]
fn grad_of_non_leaf_input() {
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let h = x.mul_scalar(2.0).unwrap();
    let y = h.mul(&h).unwrap().sum().unwrap();
    let g = grad(&[y], &[h.clone()], None, false, false).unwrap();
    assert_eq!(g[0].to_vec::<f64>().unwrap(), vec![4.0, 8.0]);
}

/// Swish as a custom function: y = x·σ(x), dy/dx = σ(x)·(1 + x·(1 − σ(x))).
struct Swish;
impl Function for Swish {
    fn name(&self) -> &'static str {
        "swish"
    }
    fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
        x[0].mul(&x[0].sigmoid()?)
    }
    fn backward(&self, x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let s = x[0].sigmoid()?;
        let d = s.mul(&x[0].mul(&s.rsub_scalar(1.0)?)?.add_scalar(1.0)?)?;
        Ok(vec![Some(g.mul(&d)?)])
    }
}

#[test]
fn custom_function_is_recorded_and_passes_gradcheck() {
    let x = t64(&[-1.0, 0.5, 2.0], &[3]);
    let r = kiln_core::gradcheck(|x| Swish.apply(&[&x[0]]), &[x.clone()], Default::default()).unwrap();
    assert!(r.ok, "{r:?}");
    let xr = x.requires_grad(true);
    let y = Swish.apply(&[&xr]).unwrap();
    assert_eq!(y.grad_fn_name(), Some("swish"));
}

#[test]
fn graph_nodes_are_freed_after_backward_and_drop() {
    let w = t64(&[0.1, 0.2, 0.3, 0.4], &[2, 2]).requires_grad(true);
    let x = t64(&[1.0, 2.0], &[1, 2]);
    let weak = {
        let h = x.matmul(&w).unwrap().tanh().unwrap();
        let loss = h.sum().unwrap();
        let weak = (h.grad_fn_weak().unwrap(), loss.grad_fn_weak().unwrap());
        loss.backward().unwrap();
        weak
    };
    assert!(weak.0.upgrade().is_none(), "tanh node still alive");
    assert!(weak.1.upgrade().is_none(), "sum node still alive");
    assert!(w.grad().is_some());
}

#[test]
fn saved_tensors_are_released_after_backward() {
    let w = t64(&[0.1, 0.2], &[2]).requires_grad(true);
    let x = t64(&[1.0, 2.0], &[2]);
    let loss = x.mul(&w).unwrap().sum().unwrap();
    let dot_before = loss.to_dot();
    loss.backward().unwrap();
    let dot_after = loss.to_dot();
    assert!(!dot_before.contains("(freed)"));
    assert!(dot_after.contains("(freed)"));
}

#[test]
fn to_dot_lists_ops_leaves_and_edges() {
    let w = t64(&[0.1, 0.2, 0.3, 0.4], &[2, 2]).requires_grad(true);
    let b = t64(&[0.0, 0.0], &[2]).requires_grad(true);
    let x = t64(&[1.0, 2.0], &[1, 2]);
    let y = x.linear(&w, Some(&b)).unwrap().relu().unwrap().sum().unwrap();
    let dot = y.to_dot();
    assert!(dot.starts_with("digraph kiln"));
    for needle in ["linear", "relu", "sum", "leaf\\n[2, 2]", "leaf\\n[2]", "->"] {
        assert!(dot.contains(needle), "missing {needle} in\n{dot}");
    }
    assert_eq!(dot.matches("shape=box").count(), 2, "{dot}");
}

#[test]
fn backward_needs_a_scalar_or_an_explicit_gradient() {
    let x = t64(&[1.0, 2.0], &[2]).requires_grad(true);
    let y = x.mul_scalar(2.0).unwrap();
    assert!(y.backward().is_err());
    y.backward_with(&t64(&[1.0, 0.5], &[2])).unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f64>().unwrap(), vec![2.0, 1.0]);
    let wrong = t64(&[1.0], &[1]);
    assert!(matches!(
        x.mul_scalar(1.0).unwrap().backward_with(&wrong),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn training_loop_memory_stays_flat() {
    // 10 000 forward+backward steps: the graph of each step is freed, so the
    // number of live nodes reachable from the parameters never grows.
    let w = Tensor::full(&[8, 4], 0.1, DType::F32, Device::Cpu)
        .unwrap()
        .requires_grad(true);
    let x = Tensor::full(&[16, 4], 0.5, DType::F32, Device::Cpu).unwrap();
    let mut weaks = Vec::new();
    for step in 0..10_000 {
        let y = x.linear(&w, None).unwrap().sigmoid().unwrap().mean().unwrap();
        if step % 1000 == 0 {
            weaks.push(y.grad_fn_weak().unwrap());
        }
        y.backward().unwrap();
        no_grad(|| w.add_scaled_(&w.grad().unwrap(), -0.01)).unwrap();
        w.zero_grad();
    }
    assert!(weaks.iter().all(|w| w.upgrade().is_none()));
    assert_eq!(w.version(), 10_000);
}

#[test]
fn functional_grad_with_explicit_grad_outputs() {
    let x = t64(&[1.0, 2.0, 3.0], &[3]).requires_grad(true);
    let y = x.mul(&x).unwrap();
    let go = t64(&[1.0, 0.0, 2.0], &[3]);
    let g = autograd::grad(&[y], &[x], Some(&[go]), false, false).unwrap();
    assert_eq!(g[0].to_vec::<f64>().unwrap(), vec![2.0, 0.0, 12.0]);
}

#[test]
fn a_long_chain_is_dropped_on_a_small_stack() {
    // Dropping a graph used to recurse once per op (112–256 bytes of stack
    // each): 20 000 ops overflowed a 256 KiB thread stack. The nodes are now
    // taken down from a list, in constant stack.
    let run = std::thread::Builder::new().stack_size(256 * 1024).spawn(|| {
        let x = Tensor::from_vec(vec![1.0f32], &[1], Device::Cpu)
            .unwrap()
            .requires_grad(true);
        let mut y = x.clone();
        for i in 0..20_000 {
            y = if i % 2 == 0 { y.mul(&x) } else { y.add(&x) }.unwrap();
        }
        let first = x.mul(&x).unwrap();
        let node = y.grad_fn_weak().unwrap();
        drop(y);
        assert!(node.upgrade().is_none(), "the chain outlived its last tensor");
        // The thread's next graph is dropped as usual.
        let node = first.grad_fn_weak().unwrap();
        drop(first);
        assert!(node.upgrade().is_none());
    });
    run.unwrap().join().expect("the drop overflowed the stack or panicked");
}
