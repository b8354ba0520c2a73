//! Every differentiable op passes an F64 central-difference gradcheck on
//! random shapes drawn from several seeds (including broadcasting cases).

use kiln_core::gradcheck::op_suite;
use kiln_core::{gradcheck, GradcheckOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn every_op_passes_gradcheck_on_random_shapes() {
    let mut failures = Vec::new();
    let mut count = 0;
    for seed in 0..4 {
        let mut rng = ChaCha8Rng::seed_from_u64(100 + seed);
        for case in op_suite(seed) {
            let inputs = case.inputs(&mut rng).unwrap();
            let r = gradcheck(&case.f, &inputs, GradcheckOptions::default())
                .unwrap_or_else(|e| panic!("{} failed to run: {e}", case.name));
            count += 1;
            if !r.ok || r.checked == 0 {
                failures.push(format!(
                    "{} {:?}: abs {:.2e} rel {:.2e}",
                    case.name, case.shapes, r.max_abs_err, r.max_rel_err
                ));
            }
        }
    }
    assert!(count >= 4 * 45, "suite too small: {count}");
    assert!(failures.is_empty(), "gradcheck failures:\n{}", failures.join("\n"));
}

#[test]
fn gradcheck_detects_a_wrong_backward_rule() {
    use kiln_core::{Function, Result, Tensor};
    // y = x², with a deliberately wrong derivative 3x.
    struct WrongSquare;
    impl Function for WrongSquare {
        fn name(&self) -> &'static str {
            "wrong_square"
        }
        fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
            x[0].mul(&x[0])
        }
        fn backward(&self, x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
            Ok(vec![Some(g.mul(&x[0].mul_scalar(3.0)?)?)])
        }
    }
    let x = Tensor::from_vec(vec![0.5f64, -1.0, 2.0], &[3], kiln_core::Device::Cpu).unwrap();
    let r = gradcheck(|x| WrongSquare.apply(&[&x[0]]), &[x], GradcheckOptions::default()).unwrap();
    assert!(!r.ok);
    assert!(r.max_abs_err > 0.1);
}
