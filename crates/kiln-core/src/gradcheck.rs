//! Finite-difference gradient checks in F64.
//!
//! [`gradcheck`] compares the analytic gradient of L = Σ f(x)·w (w a fixed
//! random weighting of the outputs, so every output element matters) with
//! central differences (L(x + eps) − L(x − eps)) / 2eps, element by element.
//! [`op_suite`] lists every differentiable op on random shapes (including
//! broadcasting cases); `kiln gradcheck` runs it and prints the table.

use crate::{autograd, DType, Device, Error, Result, Tensor};
use kiln_cpu::elementwise::UnaryOp;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Tolerances of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (times |numeric|).
    pub rtol: f64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
        }
    }
}

/// The outcome of one gradient check.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Largest |analytic − numeric| over all input elements.
    pub max_abs_err: f64,
    /// Largest |analytic − numeric| / |numeric| (numeric ≠ 0).
    pub max_rel_err: f64,
    /// Number of input elements checked.
    pub checked: usize,
    /// Every element within atol + rtol·|numeric|.
    pub ok: bool,
}

/// Checks the gradients of `f` at `inputs` (F64 tensors) against central
/// finite differences.
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradcheckOptions,
) -> Result<GradcheckReport> {
    if let Some(bad) = inputs.iter().find(|t| t.dtype() != DType::F64) {
        return Err(Error::Invalid(format!(
            "gradcheck needs f64 inputs (got {} for shape {:?})",
            bad.dtype(),
            bad.shape()
        )));
    }
    let base: Vec<Vec<f64>> = inputs.iter().map(|t| t.to_vec::<f64>()).collect::<Result<_>>()?;
    let leaves = |vals: &[Vec<f64>], grad: bool| -> Result<Vec<Tensor>> {
        vals.iter()
            .zip(inputs)
            .map(|(v, t)| Ok(Tensor::from_vec(v.clone(), t.shape(), Device::Cpu)?.requires_grad(grad)))
            .collect()
    };
    let xs = leaves(&base, true)?;
    let out = f(&xs)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b696c6e);
    let w = Tensor::uniform(out.shape(), 0.5, 1.5, DType::F64, Device::Cpu, &mut rng)?;
    let weight = |o: &Tensor| -> Result<f64> { o.mul(&w)?.sum()?.item() };
    let loss = out.mul(&w)?.sum()?;
    let analytic = autograd::grad_allow_unused(&[loss], &xs, None, false, false)?;

    let mut report = GradcheckReport {
        max_abs_err: 0.0,
        max_rel_err: 0.0,
        checked: 0,
        ok: true,
    };
    for (i, x) in inputs.iter().enumerate() {
        let a = match &analytic[i] {
            Some(g) => g.to_vec::<f64>()?,
            None => vec![0.0; x.numel()],
        };
        for j in 0..x.numel() {
            let mut vals = base.clone();
            vals[i][j] = base[i][j] + opts.eps;
            let plus = weight(&f(&leaves(&vals, true)?)?)?;
            vals[i][j] = base[i][j] - opts.eps;
            let minus = weight(&f(&leaves(&vals, true)?)?)?;
            let numeric = (plus - minus) / (2.0 * opts.eps);
            let err = (a[j] - numeric).abs();
            report.max_abs_err = report.max_abs_err.max(err);
            if numeric != 0.0 {
                report.max_rel_err = report.max_rel_err.max(err / numeric.abs());
            }
            if err > opts.atol + opts.rtol * numeric.abs() || err.is_nan() {
                report.ok = false;
            }
            report.checked += 1;
        }
    }
    Ok(report)
}

/// Where an op's inputs are sampled (so the op is smooth there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Uniform in [−2, 2], kept away from 0 (kinks of relu/abs/clamp).
    Any,
    /// Uniform in [0.2, 2] (log, sqrt, pow, division).
    Positive,
    /// Uniform in [0.05, 0.95] (probabilities).
    Prob,
}

/// A function of tensors under test.
pub type OpFn = Box<dyn Fn(&[Tensor]) -> Result<Tensor>>;

/// One entry of the op suite: a name, input shapes and domains, the function.
pub struct OpCase {
    /// Op name as printed by `kiln gradcheck`.
    pub name: &'static str,
    /// Input shapes.
    pub shapes: Vec<Vec<usize>>,
    /// Sampling domain of each input.
    pub domains: Vec<Domain>,
    /// The function under test.
    pub f: OpFn,
}

impl OpCase {
    /// Random F64 inputs for this case.
    pub fn inputs(&self, rng: &mut ChaCha8Rng) -> Result<Vec<Tensor>> {
        self.shapes
            .iter()
            .zip(&self.domains)
            .map(|(s, d)| {
                let n: usize = s.iter().product();
                let v: Vec<f64> = (0..n)
                    .map(|_| match d {
                        Domain::Any => {
                            let m = rng.gen_range(0.1..2.0);
                            if rng.gen::<bool>() {
                                m
                            } else {
                                -m
                            }
                        }
                        Domain::Positive => rng.gen_range(0.2..2.0),
                        Domain::Prob => rng.gen_range(0.05..0.95),
                    })
                    .collect();
                Tensor::from_vec(v, s, Device::Cpu)
            })
            .collect()
    }
}

fn case(
    name: &'static str,
    shapes: Vec<Vec<usize>>,
    domains: Vec<Domain>,
    f: impl Fn(&[Tensor]) -> Result<Tensor> + 'static,
) -> OpCase {
    OpCase {
        name,
        shapes,
        domains,
        f: Box::new(f),
    }
}

/// Every differentiable op on random shapes drawn from `seed`, including
/// broadcasting cases, views, second derivatives and a custom function.
pub fn op_suite(seed: u64) -> Vec<OpCase> {
    use Domain::*;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut d = || rng.gen_range(1..5usize);
    let (n, i, o) = (d() + 1, d() + 1, d());
    let (p, q) = (d(), d() + 1);
    let mut cases = vec![
        case("neg", vec![vec![n, i]], vec![Any], |x| x[0].neg()),
        case("exp", vec![vec![n, i]], vec![Any], |x| x[0].exp()),
        case("log", vec![vec![n, i]], vec![Positive], |x| x[0].log()),
        case("sqrt", vec![vec![n, i]], vec![Positive], |x| x[0].sqrt()),
        case("abs", vec![vec![n, i]], vec![Any], |x| x[0].abs()),
        case("powf", vec![vec![n, i]], vec![Positive], |x| x[0].powf(2.5)),
        case("clamp", vec![vec![n, i]], vec![Any], |x| x[0].clamp(-1.05, 0.95)),
        case("add_scalar", vec![vec![n]], vec![Any], |x| x[0].add_scalar(3.0)),
        case("mul_scalar", vec![vec![n]], vec![Any], |x| x[0].mul_scalar(-1.5)),
        case("relu", vec![vec![n, i]], vec![Any], |x| x[0].relu()),
        case("leaky_relu", vec![vec![n, i]], vec![Any], |x| x[0].leaky_relu(0.2)),
        case("sigmoid", vec![vec![n, i]], vec![Any], |x| x[0].sigmoid()),
        case("tanh", vec![vec![n, i]], vec![Any], |x| x[0].tanh()),
        case("softplus", vec![vec![n, i]], vec![Any], |x| x[0].softplus()),
        case("gelu", vec![vec![n, i]], vec![Any], |x| x[0].gelu()),
        case("add", vec![vec![n, i], vec![n, i]], vec![Any, Any], |x| x[0].add(&x[1])),
        case("add (broadcast row)", vec![vec![n, i], vec![i]], vec![Any, Any], |x| {
            x[0].add(&x[1])
        }),
        case(
            "sub (broadcast col)",
            vec![vec![n, i], vec![n, 1]],
            vec![Any, Any],
            |x| x[0].sub(&x[1]),
        ),
        case(
            "mul (broadcast 3-d)",
            vec![vec![p, 1, q], vec![n, 1]],
            vec![Any, Any],
            |x| x[0].mul(&x[1]),
        ),
        case("mul (scalar tensor)", vec![vec![n, i], vec![]], vec![Any, Any], |x| {
            x[0].mul(&x[1])
        }),
        case("div", vec![vec![n, i], vec![n, i]], vec![Any, Positive], |x| {
            x[0].div(&x[1])
        }),
        case("div (broadcast)", vec![vec![n, 1], vec![i]], vec![Any, Positive], |x| {
            x[0].div(&x[1])
        }),
        case("maximum", vec![vec![n, i], vec![i]], vec![Any, Any], |x| {
            x[0].maximum(&x[1])
        }),
        case("matmul", vec![vec![n, i], vec![i, o]], vec![Any, Any], |x| {
            x[0].matmul(&x[1])
        }),
        case(
            "matmul (transposed views)",
            vec![vec![i, n], vec![o, i]],
            vec![Any, Any],
            |x| x[0].t()?.matmul(&x[1].t()?),
        ),
        case(
            "linear",
            vec![vec![n, i], vec![o, i], vec![o]],
            vec![Any, Any, Any],
            |x| x[0].linear(&x[1], Some(&x[2])),
        ),
        case("linear (no bias)", vec![vec![n, i], vec![o, i]], vec![Any, Any], |x| {
            x[0].linear(&x[1], None)
        }),
        case(
            "linear_act (sigmoid)",
            vec![vec![n, i], vec![o, i], vec![o]],
            vec![Any, Any, Any],
            |x| x[0].linear_act(&x[1], Some(&x[2]), UnaryOp::Sigmoid),
        ),
        case(
            "linear_act (tanh, no bias)",
            vec![vec![n, i], vec![o, i]],
            vec![Any, Any],
            |x| x[0].linear_act(&x[1], None, UnaryOp::Tanh),
        ),
        case(
            "linear_act (relu)",
            vec![vec![n, i], vec![o, i], vec![o]],
            vec![Any, Any, Any],
            |x| x[0].linear_act(&x[1], Some(&x[2]), UnaryOp::Relu),
        ),
        case(
            "linear_act (leaky relu)",
            vec![vec![n, i], vec![o, i], vec![o]],
            vec![Any, Any, Any],
            |x| x[0].linear_act(&x[1], Some(&x[2]), UnaryOp::LeakyRelu(0.2)),
        ),
        case(
            "linear_many (two inputs, sigmoid)",
            vec![vec![n, i], vec![o, i], vec![o], vec![n, i]],
            vec![Any, Any, Any, Any],
            |x| {
                let ys = Tensor::linear_many(&[&x[0], &x[3]], &x[1], Some(&x[2]), Some(UnaryOp::Sigmoid))?;
                // Weighted apart, so a gradient routed to the wrong input shows.
                ys[0].add(&ys[1].mul_scalar(3.0)?)
            },
        ),
        case("sum", vec![vec![n, i]], vec![Any], |x| x[0].sum()),
        case("sum_dims", vec![vec![p, n, q]], vec![Any], |x| {
            x[0].sum_dims(&[0, 2], false)
        }),
        case("sum_dims (keepdim)", vec![vec![p, n, q]], vec![Any], |x| {
            x[0].sum_dims(&[-1], true)
        }),
        case("mean", vec![vec![n, i]], vec![Any], |x| x[0].mean()),
        case("mean_dims", vec![vec![n, i]], vec![Any], |x| x[0].mean_dims(&[0], true)),
        case("max", vec![vec![n, i]], vec![Any], |x| x[0].max()),
        case("max_dims", vec![vec![n, i, q]], vec![Any], |x| {
            x[0].max_dims(&[1], false)
        }),
        case("log_softmax", vec![vec![n, i]], vec![Any], |x| x[0].log_softmax(1)),
        case("softmax", vec![vec![n, i]], vec![Any], |x| x[0].softmax(0)),
        case("reshape", vec![vec![n, i]], vec![Any], move |x| {
            x[0].reshape(&[i, n])?.mul(&x[0].reshape(&[i, n])?)
        }),
        case("transpose", vec![vec![n, i, q]], vec![Any], |x| {
            x[0].transpose(0, 2)?.exp()
        }),
        case("permute", vec![vec![n, i, q]], vec![Any], |x| {
            x[0].permute(&[2, 0, 1])?.tanh()
        }),
        case("narrow", vec![vec![n, i + 2]], vec![Any], |x| {
            x[0].narrow(1, 1, 2)?.exp()
        }),
        case("broadcast_to", vec![vec![1, i]], vec![Any], move |x| {
            x[0].broadcast_to(&[n, i])?.sin_free()
        }),
        case("contiguous", vec![vec![n, i]], vec![Any], |x| {
            x[0].t()?.contiguous()?.exp()
        }),
        case("concat", vec![vec![n, i], vec![n, q]], vec![Any, Any], |x| {
            Tensor::concat(&[&x[0], &x[1]], 1)?.tanh()
        }),
        case("stack", vec![vec![n, i], vec![n, i]], vec![Any, Any], |x| {
            Tensor::stack(&[&x[0], &x[1]], 0)?.tanh()
        }),
        case("mse_loss", vec![vec![n, i], vec![n, i]], vec![Any, Any], |x| {
            x[0].mse_loss(&x[1])
        }),
        case("bce_loss", vec![vec![n, 1], vec![n, 1]], vec![Prob, Prob], |x| {
            x[0].bce_loss(&x[1])
        }),
        case("bce_with_logits", vec![vec![n, i], vec![n, i]], vec![Any, Prob], |x| {
            x[0].bce_with_logits(&x[1])
        }),
        case("cross_entropy", vec![vec![n, i + 1]], vec![Any], move |x| {
            let targets: Vec<usize> = (0..n).map(|r| r % (i + 1)).collect();
            x[0].cross_entropy(&targets)
        }),
        case("grad of tanh (2nd order)", vec![vec![n, i]], vec![Any], |x| {
            let y = x[0].tanh()?.sum()?;
            Ok(autograd::grad(&[y], &[x[0].clone()], None, true, true)?.remove(0))
        }),
        case(
            "gradient penalty through linear_act (2nd order)",
            vec![vec![n, i], vec![o, i], vec![o]],
            vec![Any, Any, Any],
            |x| {
                let h = x[0].linear_act(&x[1], Some(&x[2]), UnaryOp::Sigmoid)?.sum()?;
                let gx = autograd::grad(&[h], &[x[0].clone()], None, true, true)?.remove(0);
                gx.mul(&gx)?.sum()
            },
        ),
        case(
            "gradient penalty (2nd order)",
            vec![vec![n, i], vec![o, i], vec![o]],
            vec![Any, Any, Any],
            |x| {
                let h = x[0].linear(&x[1], Some(&x[2]))?.tanh()?.sum()?;
                let gx = autograd::grad(&[h], &[x[0].clone()], None, true, true)?.remove(0);
                gx.mul(&gx)?.sum()
            },
        ),
    ];
    cases.retain(|c| !c.shapes.is_empty());
    cases
}

impl Tensor {
    /// A smooth non-linear function used by gradcheck cases to make views'
    /// gradients non-trivial: x·tanh(x).
    fn sin_free(&self) -> Result<Tensor> {
        self.mul(&self.tanh()?)
    }
}
