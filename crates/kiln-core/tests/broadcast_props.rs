//! Property tests over random shapes (ranks 0–4, dims 0–4, zero-size dims
//! included): binary ops broadcast exactly as NumPy does or fail with a
//! `ShapeMismatch` naming both shapes; shape-taking ops return `Ok` or `Err`
//! for any shape or dim, and never panic.

use kiln_core::{DType, Device, Error, Tensor};
use proptest::prelude::*;

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..=4, 0..=4)
}

/// A pair of shapes: independent (often incompatible), or the second derived
/// from the first by dropping leading dims and setting some dims to 1
/// (always compatible), so both outcomes are well covered.
fn shape_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    let derived = || {
        (shape(), 0usize..=4, prop::collection::vec(any::<bool>(), 4)).prop_map(|(a, drop, ones)| {
            let drop = drop.min(a.len());
            let b: Vec<usize> = a[drop..]
                .iter()
                .zip(&ones)
                .map(|(&d, &one)| if one { 1 } else { d })
                .collect();
            (a, b)
        })
    };
    prop_oneof![(shape(), shape()), derived(), derived().prop_map(|(a, b)| (b, a)),]
}

/// NumPy's rule, written independently of kiln: walk both shapes from the
/// right; equal dims or a 1 on either side broadcast; a missing dim acts as 1.
fn numpy_broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    let (mut ia, mut ib) = (a.iter().rev(), b.iter().rev());
    loop {
        match (ia.next(), ib.next()) {
            (None, None) => break,
            (Some(&x), None) | (None, Some(&x)) => out.push(x),
            (Some(&x), Some(&y)) if x == y || y == 1 => out.push(x),
            (Some(&1), Some(&y)) => out.push(y),
            _ => return None,
        }
    }
    out.reverse();
    Some(out)
}

/// Deterministic, distinct-ish values: 0.5 + index·0.37 (mod 5) − 2.5, never 0
/// for the divisor.
fn filled(shape: &[usize], salt: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|i| ((i as f64 * 0.37 + salt) % 5.0) - 2.45).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

/// Element of `t` (row-major values `v`, shape `s`) read at output index
/// `idx` of the broadcast shape `out`.
fn read_broadcast(v: &[f64], s: &[usize], out: &[usize], idx: &[usize]) -> f64 {
    let lead = out.len() - s.len();
    let mut flat = 0;
    for (k, &d) in s.iter().enumerate() {
        let i = if d == 1 { 0 } else { idx[lead + k] };
        flat = flat * d + i;
    }
    v[flat]
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        idx[k] = flat % shape[k];
        flat /= shape[k];
    }
    idx
}

type BinOp = fn(&Tensor, &Tensor) -> kiln_core::Result<Tensor>;
const OPS: [(&str, BinOp, fn(f64, f64) -> f64); 5] = [
    ("add", |a, b| a.add(b), |x, y| x + y),
    ("sub", |a, b| a.sub(b), |x, y| x - y),
    ("mul", |a, b| a.mul(b), |x, y| x * y),
    ("div", |a, b| a.div(b), |x, y| x / y),
    ("maximum", |a, b| a.maximum(b), f64::max),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn binary_ops_broadcast_like_numpy_or_name_both_shapes((sa, sb) in shape_pair(), dtype_f32 in any::<bool>()) {
        let dtype = if dtype_f32 { DType::F32 } else { DType::F64 };
        let a = filled(&sa, 0.1).to_dtype(dtype).unwrap();
        let b = filled(&sb, 1.3).to_dtype(dtype).unwrap();
        let (va, vb) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
        let expected = numpy_broadcast(&sa, &sb);
        prop_assert_eq!(kiln_core::broadcast_shapes("t", &sa, &sb).ok(), expected.clone());
        for (name, op, f) in OPS {
            match (&expected, op(&a, &b)) {
                (Some(out_shape), Ok(out)) => {
                    prop_assert_eq!(out.shape(), out_shape.as_slice(), "{}", name);
                    prop_assert_eq!(out.dtype(), dtype);
                    let got = out.to_vec_f64().unwrap();
                    for (flat, g) in got.iter().enumerate() {
                        let idx = unravel(flat, out_shape);
                        let want = f(read_broadcast(&va, &sa, out_shape, &idx), read_broadcast(&vb, &sb, out_shape, &idx));
                        let want = if dtype == DType::F32 { want as f32 as f64 } else { want };
                        prop_assert!((g - want).abs() <= 1e-6 * want.abs().max(1.0), "{} {:?} {:?} [{}]: {} vs {}", name, sa, sb, flat, g, want);
                    }
                }
                (None, Err(e)) => {
                    let msg = e.to_string();
                    let is_shape_mismatch = matches!(e, Error::ShapeMismatch { .. });
                    prop_assert!(is_shape_mismatch, "{}: {}", name, msg);
                    prop_assert!(msg.contains(name), "{}", msg);
                    prop_assert!(msg.contains(&format!("{sa:?}")) && msg.contains(&format!("{sb:?}")), "{}", msg);
                }
                (want, got) => prop_assert!(false, "{} {:?} {:?}: expected {:?}, got {:?}", name, sa, sb, want, got.map(|t| t.shape().to_vec())),
            }
        }
    }

    #[test]
    fn broadcast_to_agrees_with_the_rule((sa, target) in shape_pair()) {
        let a = filled(&sa, 0.2);
        // broadcast_to succeeds exactly when broadcasting sa with target yields target
        let ok = numpy_broadcast(&sa, &target).as_deref() == Some(target.as_slice());
        match a.broadcast_to(&target) {
            Ok(b) => {
                prop_assert!(ok, "{:?} -> {:?} should fail", sa, target);
                prop_assert_eq!(b.shape(), target.as_slice());
                let (va, vb) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
                for (flat, g) in vb.iter().enumerate() {
                    prop_assert_eq!(*g, read_broadcast(&va, &sa, &target, &unravel(flat, &target)));
                }
            }
            Err(e) => {
                let is_shape_mismatch = matches!(e, Error::ShapeMismatch { .. });
                prop_assert!(!ok && is_shape_mismatch, "{:?} -> {:?}: {}", sa, target, e);
            }
        }
    }

    #[test]
    fn matmul_and_linear_never_panic(sa in prop::collection::vec(0usize..=4, 0..=3), sb in prop::collection::vec(0usize..=4, 0..=3), sbias in prop::collection::vec(0usize..=4, 0..=2), with_bias in any::<bool>()) {
        let (a, b, bias) = (filled(&sa, 0.1), filled(&sb, 0.7), filled(&sbias, 1.1));
        match a.matmul(&b) {
            Ok(c) => {
                prop_assert!(sa.len() == 2 && sb.len() == 2 && sa[1] == sb[0]);
                prop_assert_eq!(c.shape(), &[sa[0], sb[1]]);
                if sa[1] == 0 {
                    prop_assert!(c.to_vec::<f64>().unwrap().iter().all(|&v| v == 0.0));
                }
            }
            Err(e) => prop_assert!(!(sa.len() == 2 && sb.len() == 2 && sa[1] == sb[0]), "{}", e),
        }
        let bias_ref = with_bias.then_some(&bias);
        match a.linear(&b, bias_ref) {
            Ok(c) => {
                prop_assert!(sa.len() == 2 && sb.len() == 2 && sa[1] == sb[1]);
                prop_assert!(!with_bias || sbias == [sb[0]]);
                prop_assert_eq!(c.shape(), &[sa[0], sb[0]]);
            }
            Err(e) => prop_assert!(!(sa.len() == 2 && sb.len() == 2 && sa[1] == sb[1] && (!with_bias || sbias == [sb[0]])), "{}", e),
        }
    }

    #[test]
    fn reshape_narrow_never_panic(s in shape(), target in shape(), dim in -5isize..5, start in 0usize..6, len in 0usize..6) {
        let t = filled(&s, 0.3);
        match t.reshape(&target) {
            Ok(r) => {
                prop_assert_eq!(r.shape(), target.as_slice());
                prop_assert_eq!(r.to_vec_f64().unwrap(), t.to_vec_f64().unwrap());
            }
            Err(e) => {
                let is_shape_mismatch = matches!(e, Error::ShapeMismatch { .. });
                prop_assert!(is_shape_mismatch && t.numel() != target.iter().product::<usize>(), "{}", e);
            }
        }
        if let Ok(n) = t.narrow(dim, start, len) {
            let d = if dim < 0 { dim + s.len() as isize } else { dim } as usize;
            prop_assert!(d < s.len() && start + len <= s[d]);
            prop_assert_eq!(n.shape()[d], len);
            prop_assert_eq!(n.numel(), n.to_vec_f64().unwrap().len());
        }
        let _ = t.narrow(dim, usize::MAX, 2);
        let _ = t.transpose(dim, 0);
        let _ = t.dim(dim);
        let _ = t.unsqueeze(start);
        let _ = t.flatten_from(start);
        let perm: Vec<usize> = (0..s.len()).rev().collect();
        prop_assert_eq!(t.permute(&perm).unwrap().shape().len(), s.len());
        prop_assert!(t.permute(&[start, start]).is_err());
    }

    #[test]
    fn ops_on_narrowed_views_never_panic(s in prop::collection::vec(0usize..=4, 1..=3), dim in 0usize..3, start in 0usize..5, len in 0usize..5) {
        // Narrowed views of zero-size tensors used to carry an offset past the
        // end of their storage, and every kernel slicing from it panicked.
        let dim = dim % s.len();
        let t = filled(&s, 0.5).requires_grad(true);
        let Ok(n) = t.narrow(dim as isize, start, len) else { return Ok(()) };
        let numel = n.numel();
        prop_assert_eq!(n.exp().unwrap().to_vec_f64().unwrap().len(), numel);
        prop_assert_eq!(n.add(&n).unwrap().numel(), numel);
        prop_assert_eq!(n.contiguous().unwrap().reshape(&[numel]).unwrap().numel(), numel);
        prop_assert_eq!(Tensor::concat(&[&n, &n], dim as isize).unwrap().numel(), 2 * numel);
        prop_assert!(n.sum_dims(&[dim as isize], true).is_ok());
        if n.rank() == 2 {
            let other = Tensor::zeros(&[n.shape()[1], 2], DType::F64, Device::Cpu).unwrap();
            let product = n.matmul(&other).unwrap();
            prop_assert_eq!(product.shape(), &[n.shape()[0], 2]);
        }
        n.relu().unwrap().sum().unwrap().backward().unwrap();
        let g = t.grad().unwrap().to_vec_f64().unwrap();
        prop_assert_eq!(g.len(), t.numel());
    }

    #[test]
    fn sum_max_dims_never_panic(s in shape(), dims in prop::collection::vec(-5isize..5, 0..=4), keepdim in any::<bool>()) {
        let t = filled(&s, 0.4);
        let rank = s.len() as isize;
        match t.sum_dims(&dims, keepdim) {
            Ok(r) => {
                let norm: Vec<usize> = dims.iter().map(|&d| if d < 0 { d + rank } else { d } as usize).collect();
                let mut want: Vec<usize> = Vec::new();
                for (i, &d) in s.iter().enumerate() {
                    if !norm.contains(&i) { want.push(d) } else if keepdim { want.push(1) }
                }
                prop_assert_eq!(r.shape(), want.as_slice());
                let total: f64 = t.to_vec_f64().unwrap().iter().sum();
                let got: f64 = r.to_vec_f64().unwrap().iter().sum();
                prop_assert!((total - got).abs() < 1e-9, "{} vs {}", total, got);
            }
            Err(e) => {
                let is_bad_shape = matches!(e, Error::BadShape { .. });
                prop_assert!(is_bad_shape, "{}", e);
            }
        }
        let _ = t.max_dims(&dims, keepdim);
        let _ = t.mean_dims(&dims, keepdim);
        if let Some(&d) = dims.first() {
            let _ = t.log_softmax(d);
        }
    }

    #[test]
    fn concat_and_stack_never_panic(shapes in prop::collection::vec(prop::collection::vec(0usize..=3, 0..=3), 1..=3), dim in -4isize..4) {
        let ts: Vec<Tensor> = shapes.iter().enumerate().map(|(i, s)| filled(s, i as f64)).collect();
        let refs: Vec<&Tensor> = ts.iter().collect();
        if let Ok(c) = Tensor::concat(&refs, dim) {
            let expect: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
            prop_assert_eq!(c.numel(), expect);
            prop_assert!(shapes.iter().all(|s| s.len() == shapes[0].len() && !s.is_empty()));
        }
        if let Ok(st) = Tensor::stack(&refs, dim.unsigned_abs()) {
            prop_assert_eq!(st.shape()[dim.unsigned_abs()], shapes.len());
        }
    }
}
