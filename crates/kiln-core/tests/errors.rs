//! Error messages carry the facts: the op, both shapes, both dtypes, the
//! numbers that do not add up.

use kiln_core::{DType, Device, Error, Tensor};

fn zeros(shape: &[usize], dtype: DType) -> Tensor {
    Tensor::zeros(shape, dtype, Device::Cpu).unwrap()
}

#[test]
fn matmul_shape_mismatch_names_both_shapes() {
    let err = zeros(&[64, 784], DType::F32)
        .matmul(&zeros(&[128, 784], DType::F32))
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { op: "matmul", .. }), "{err:?}");
    assert_eq!(err.to_string(), "shape mismatch in matmul: [64, 784] x [128, 784]");
    let err = zeros(&[2, 3, 4], DType::F32)
        .matmul(&zeros(&[4, 5], DType::F32))
        .unwrap_err();
    assert!(
        err.to_string().contains("[2, 3, 4]") && err.to_string().contains("[4, 5]"),
        "{err}"
    );
}

#[test]
fn linear_errors_name_the_operands() {
    let x = zeros(&[8, 784], DType::F32);
    let err = x.linear(&zeros(&[128, 100], DType::F32), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "shape mismatch in linear (x vs weight [out, in]): [8, 784] x [128, 100]"
    );
    let err = x
        .linear(&zeros(&[128, 784], DType::F32), Some(&zeros(&[64], DType::F32)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "shape mismatch in linear (bias vs weight rows): [64] x [128, 784]"
    );
    let err = x.linear(&zeros(&[128, 784], DType::F64), None).unwrap_err();
    assert_eq!(err.to_string(), "dtype mismatch in linear: f32 vs f64");
}

#[test]
fn broadcast_mismatch_names_op_and_shapes() {
    let err = zeros(&[2, 3], DType::F32).add(&zeros(&[4], DType::F32)).unwrap_err();
    assert_eq!(err.to_string(), "shape mismatch in add: [2, 3] x [4]");
    let err = zeros(&[5, 1, 3], DType::F64)
        .maximum(&zeros(&[2, 2], DType::F64))
        .unwrap_err();
    assert_eq!(err.to_string(), "shape mismatch in maximum: [5, 1, 3] x [2, 2]");
}

#[test]
fn dtype_mismatch_names_both_dtypes() {
    let (a, b) = (zeros(&[3], DType::F32), zeros(&[3], DType::F64));
    for (op, r) in [
        ("add", a.add(&b)),
        ("mul", a.mul(&b)),
        ("div", b.div(&a)),
        (
            "matmul",
            a.reshape(&[1, 3]).unwrap().matmul(&b.reshape(&[3, 1]).unwrap()),
        ),
    ] {
        let err = r.unwrap_err();
        assert!(matches!(err, Error::DTypeMismatch { .. }), "{op}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("dtype mismatch in {op}:")) && msg.contains("f32") && msg.contains("f64"),
            "{msg}"
        );
    }
    let err = a.mse_loss(&b).unwrap_err();
    assert_eq!(err.to_string(), "dtype mismatch in mse_loss: f32 vs f64");
    let err = Tensor::concat(&[&a, &b], 0).unwrap_err();
    assert_eq!(err.to_string(), "dtype mismatch in concat: f32 vs f64");
}

#[test]
fn to_vec_of_the_wrong_element_type_errors() {
    let t = Tensor::from_vec(vec![1.0f32, 2.0], &[2], Device::Cpu).unwrap();
    let err = t.to_vec::<f64>().unwrap_err();
    assert!(
        matches!(
            err,
            Error::DTypeMismatch {
                op: "to_vec",
                lhs: DType::F32,
                rhs: DType::F64
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "dtype mismatch in to_vec: f32 vs f64");
    assert!(t.with_slice::<f64, _>(|_| ()).is_err());
    // the converting readers work for either dtype
    assert_eq!(t.to_vec_f64().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn from_vec_of_the_wrong_length_errors() {
    let err = Tensor::from_vec(vec![1.0f32; 5], &[2, 3], Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::BadShape { op: "from_vec", .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "bad shape in from_vec: 5 values do not fill shape [2, 3] (6 elements)"
    );
    assert!(Tensor::from_vec(vec![1.0f64], &[], Device::Cpu).is_ok());
    assert!(Tensor::from_vec(Vec::<f64>::new(), &[], Device::Cpu).is_err());
    assert!(Tensor::from_vec(Vec::<f64>::new(), &[0, 7], Device::Cpu).is_ok());
}

#[test]
fn shape_op_errors_carry_the_facts() {
    let t = zeros(&[2, 3], DType::F32);
    assert_eq!(
        t.reshape(&[4, 2]).unwrap_err().to_string(),
        "shape mismatch in reshape: [2, 3] x [4, 2]"
    );
    assert_eq!(
        t.narrow(1, 2, 2).unwrap_err().to_string(),
        "bad shape in narrow: range 2..4 out of bounds for dim 1 of size 3 (shape [2, 3])"
    );
    assert_eq!(
        t.sum_dims(&[2], false).unwrap_err().to_string(),
        "bad shape in sum_dims: dim 2 out of range for a tensor of rank 2"
    );
    assert_eq!(
        t.sum_dims(&[1, -1], false).unwrap_err().to_string(),
        "bad shape in sum_dims: dim -1 repeated in [1, -1]"
    );
    assert!(t
        .permute(&[0, 0])
        .unwrap_err()
        .to_string()
        .contains("[0, 0] is not a permutation of the 2 dims"));
    assert_eq!(
        Tensor::concat(&[&t, &zeros(&[3, 3], DType::F32)], 1)
            .unwrap_err()
            .to_string(),
        "shape mismatch in concat: [2, 3] x [3, 3]"
    );
    assert_eq!(
        t.broadcast_to(&[3]).unwrap_err().to_string(),
        "shape mismatch in broadcast_to: [2, 3] x [3]"
    );
    assert!(t.item().unwrap_err().to_string().contains("[2, 3]"));
    assert!(t.t().unwrap().t().is_ok() && zeros(&[2], DType::F32).t().is_err());
    // 0-d tensors: dim 0 reduces to the identity, but there is no axis to narrow or join.
    let s = Tensor::scalar(2.0, DType::F64, Device::Cpu).unwrap();
    assert_eq!(s.sum_dims(&[0], false).unwrap().item().unwrap(), 2.0);
    assert_eq!(s.transpose(0, 0).unwrap().item().unwrap(), 2.0);
    assert!(matches!(s.narrow(0, 0, 1), Err(Error::BadShape { .. })));
    assert!(matches!(Tensor::concat(&[&s, &s], 0), Err(Error::BadShape { .. })));
    assert!(matches!(s.dim(0), Err(Error::BadShape { .. })));
    assert!(t.narrow(0, usize::MAX, 2).is_err());
}

#[test]
fn arange_rejects_empty_or_infinite_ranges() {
    for (start, end, step) in [
        (0.0, 1.0, 0.0),
        (0.0, 1.0, -1.0),
        (0.0, f64::INFINITY, 1.0),
        (f64::NAN, 1.0, 1.0),
        (0.0, 1.0, f64::NAN),
    ] {
        let err = Tensor::arange(start, end, step, DType::F32, Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("empty or infinite range"), "{err}");
    }
}

#[test]
fn loss_errors_name_the_shapes() {
    let (p, t) = (zeros(&[4, 1], DType::F32), zeros(&[4], DType::F32));
    assert_eq!(
        p.bce_loss(&t).unwrap_err().to_string(),
        "shape mismatch in bce_loss: [4, 1] x [4]"
    );
    assert_eq!(
        p.bce_with_logits(&t).unwrap_err().to_string(),
        "shape mismatch in bce_with_logits: [4, 1] x [4]"
    );
    let logits = zeros(&[3, 5], DType::F32);
    assert_eq!(
        logits.cross_entropy(&[0, 1]).unwrap_err().to_string(),
        "bad shape in cross_entropy: logits [3, 5] need shape [N, C] with N = 2 targets"
    );
    assert_eq!(
        logits.cross_entropy(&[0, 5, 1]).unwrap_err().to_string(),
        "bad shape in cross_entropy: target class 5 out of range for 5 classes"
    );
}

#[test]
fn device_and_autograd_misuse_errors() {
    assert!(matches!(
        Tensor::zeros(&[2], DType::F32, Device::Cuda(0)),
        Err(Error::NoDevice(_))
    ));
    let err = "tpu".parse::<Device>().unwrap_err();
    assert!(err.to_string().contains("\"tpu\""), "{err}");
    assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
    let x = zeros(&[3], DType::F64).requires_grad(true);
    let err = x.exp().unwrap().backward().unwrap_err();
    assert!(
        err.to_string().contains("needs a scalar output, got shape [3]"),
        "{err}"
    );
    let err = x.exp().unwrap().backward_with(&zeros(&[2], DType::F64)).unwrap_err();
    assert!(
        err.to_string().contains("[3]") && err.to_string().contains("[2]"),
        "{err}"
    );
    assert!(x.set_grad(Some(zeros(&[4], DType::F64))).is_err());
    let plain = zeros(&[3], DType::F64);
    assert!(plain
        .update_with::<f64, _>(&plain.reshape(&[3]).unwrap(), |_, _| ())
        .is_err());
}
