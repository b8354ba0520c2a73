//! Shape arithmetic: contiguous strides, NumPy broadcasting, dim lists.

use crate::{Error, Result};

/// A tensor's shape, held inline up to rank 4: tensors and graph nodes are
/// made per op, and two heap allocations each (shape, strides) were a
/// visible share of the engine's per-op cost.
pub(crate) type Dims = smallvec::SmallVec<[usize; 4]>;
/// A tensor's strides, as [`Dims`].
pub(crate) type Strides = smallvec::SmallVec<[isize; 4]>;

/// Whether two shapes are equal. The engine compares shapes several times
/// per op (broadcast or not, gradient against input); slice `==` on `usize`
/// compiles to a `memcmp` call, which for a rank of 1–4 costs more than the
/// comparison itself.
#[inline]
pub(crate) fn same_dims(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Row-major strides of a contiguous tensor of `shape`.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Strides {
    let mut strides = Strides::from_elem(0, shape.len());
    let mut acc = 1isize;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d.max(1) as isize;
    }
    strides
}

/// The NumPy broadcast of two shapes: align at the right, each pair of dims
/// must be equal or one of them 1.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    broadcast_dims(op, a, b).map(|d| d.to_vec())
}

/// [`broadcast_shapes`] held inline, for the ops themselves.
pub(crate) fn broadcast_dims(op: &'static str, a: &[usize], b: &[usize]) -> Result<Dims> {
    let n = a.len().max(b.len());
    let mut out = Dims::from_elem(0, n);
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::ShapeMismatch {
                op,
                lhs: a.to_vec(),
                rhs: b.to_vec(),
            });
        };
    }
    Ok(out)
}

/// Normalises a possibly negative dim index against `rank`.
pub(crate) fn normalize_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r.max(1) || (rank == 0 && d != 0) {
        return Err(Error::BadShape {
            op,
            msg: format!("dim {dim} out of range for a tensor of rank {rank}"),
        });
    }
    Ok(d as usize)
}

/// Normalises, sorts and dedups a dim list; errors on out-of-range or repeated dims.
pub(crate) fn normalize_dims(op: &'static str, dims: &[isize], rank: usize) -> Result<Dims> {
    let mut out = Dims::with_capacity(dims.len());
    for &d in dims {
        let nd = normalize_dim(op, d, rank)?;
        if out.contains(&nd) {
            return Err(Error::BadShape {
                op,
                msg: format!("dim {d} repeated in {dims:?}"),
            });
        }
        out.push(nd);
    }
    if rank == 0 {
        // A 0-d tensor accepts dim 0 (as PyTorch) but has no axis to
        // reduce: reducing over it is the identity.
        return Ok(Dims::new());
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_rules_follow_numpy() {
        assert_eq!(broadcast_shapes("t", &[2, 3], &[3]).unwrap(), vec![2, 3]);
        assert_eq!(broadcast_shapes("t", &[4, 1, 5], &[3, 1]).unwrap(), vec![4, 3, 5]);
        assert_eq!(broadcast_shapes("t", &[], &[2]).unwrap(), vec![2]);
        assert!(broadcast_shapes("t", &[2, 3], &[2]).is_err());
    }

    #[test]
    fn contiguous_strides_are_row_major() {
        assert_eq!(contiguous_strides(&[2, 3, 4]).as_slice(), &[12, 4, 1]);
        assert!(contiguous_strides(&[]).is_empty());
    }
}
