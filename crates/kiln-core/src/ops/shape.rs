//! Shape ops. Views (reshape of a contiguous tensor, transpose, permute,
//! narrow, broadcast_to) share storage with their input; concat and stack
//! copy. Each backward rule undoes the view: transpose by transposing back,
//! narrow by padding with zeros, broadcast_to by summing.

use super::check_same;
use crate::autograd::record;
use crate::shape::{contiguous_strides, normalize_dim, Dims, Strides};
use crate::storage::Data;
use crate::{Device, Error, Result, Tensor};
use smallvec::smallvec;

impl Tensor {
    /// Reshape without recording: a view when contiguous, else a copy.
    pub(crate) fn reshape_raw(&self, shape: &[usize]) -> Tensor {
        let base = if self.is_contiguous() {
            self.detach()
        } else {
            self.contiguous_data().expect("copy")
        };
        base.view_of(shape, &contiguous_strides(shape), base.0.offset)
    }

    /// Transposed 2-D view without recording.
    pub(crate) fn transpose_raw(&self, d0: usize, d1: usize) -> Tensor {
        let (mut shape, mut strides) = (Dims::from_slice(&self.0.shape), Strides::from_slice(&self.0.strides));
        shape.swap(d0, d1);
        strides.swap(d0, d1);
        self.view_of(&shape, &strides, self.0.offset)
    }

    /// Same elements, new shape (same count). A view when the tensor is
    /// contiguous, a copy otherwise.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let out = self.reshape_raw(shape);
        let orig = Dims::from_slice(self.shape());
        Ok(record("reshape", out, &[self], move |_, g| {
            Ok(smallvec![Some(g.reshape(&orig)?)])
        }))
    }

    /// Flattens all dims from `start` on into one.
    #[track_caller]
    pub fn flatten_from(&self, start: usize) -> Result<Tensor> {
        let mut shape: Vec<usize> = self.shape()[..start.min(self.rank())].to_vec();
        shape.push(self.shape()[start.min(self.rank())..].iter().product());
        self.reshape(&shape)
    }

    /// Inserts a size-1 dim at `dim`.
    #[track_caller]
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor> {
        if dim > self.rank() {
            return Err(Error::BadShape {
                op: "unsqueeze",
                msg: format!("dim {dim} > rank {}", self.rank()),
            });
        }
        let mut shape = self.shape().to_vec();
        shape.insert(dim, 1);
        self.reshape(&shape)
    }

    /// Swaps two dims (a view). Its backward swaps them back.
    #[track_caller]
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = normalize_dim("transpose", d0, self.rank())?;
        let b = normalize_dim("transpose", d1, self.rank())?;
        if self.rank() == 0 {
            // transpose(0, 0) of a 0-d tensor is the tensor itself (as PyTorch).
            return Ok(self.clone());
        }
        let out = self.transpose_raw(a, b);
        Ok(record("transpose", out, &[self], move |_, g| {
            Ok(smallvec![Some(g.transpose(a as isize, b as isize)?)])
        }))
    }

    /// Transpose of a 2-D tensor (a view).
    #[track_caller]
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() != 2 {
            return Err(Error::BadShape {
                op: "t",
                msg: format!("expects a 2-D tensor, got {:?}", self.shape()),
            });
        }
        self.transpose(0, 1)
    }

    /// Reorders dims: output dim i is input dim `perm[i]` (a view).
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let mut sorted = perm.to_vec();
        sorted.sort_unstable();
        if sorted != (0..self.rank()).collect::<Vec<_>>() {
            return Err(Error::BadShape {
                op: "permute",
                msg: format!("{perm:?} is not a permutation of the {} dims", self.rank()),
            });
        }
        let shape: Dims = perm.iter().map(|&p| self.shape()[p]).collect();
        let strides: Strides = perm.iter().map(|&p| self.strides()[p]).collect();
        let out = self.view_of(&shape, &strides, self.0.offset);
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Ok(record("permute", out, &[self], move |_, g| {
            Ok(smallvec![Some(g.permute(&inverse)?)])
        }))
    }

    /// Elements `start..start+len` along `dim` (a view). Its backward pads the
    /// gradient with zeros back to the input's shape.
    #[track_caller]
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = normalize_dim("narrow", dim, self.rank())?;
        if self.rank() == 0 {
            return Err(Error::BadShape {
                op: "narrow",
                msg: "cannot narrow a 0-d tensor".into(),
            });
        }
        let size = self.shape()[d];
        if !matches!(start.checked_add(len), Some(end) if end <= size) {
            return Err(Error::BadShape {
                op: "narrow",
                msg: format!(
                    "range {start}..{} out of bounds for dim {d} of size {size} (shape {:?})",
                    start.saturating_add(len),
                    self.shape()
                ),
            });
        }
        let mut shape = Dims::from_slice(&self.0.shape);
        shape[d] = len;
        // A view with no elements keeps the input's offset: start·stride can
        // point past the end of the storage (narrowing a zero-size tensor),
        // and kernels slice `offset..offset + numel` even when numel is 0.
        let offset = if len == 0 || self.numel() == 0 {
            self.0.offset
        } else {
            (self.0.offset as isize + start as isize * self.strides()[d]) as usize
        };
        let out = self.view_of(&shape, self.strides(), offset);
        let full = Dims::from_slice(self.shape());
        Ok(record("narrow", out, &[self], move |_, g| {
            let mut parts = Vec::new();
            let mut zshape = full.clone();
            if start > 0 {
                zshape[d] = start;
                parts.push(Tensor::zeros(&zshape, g.dtype(), g.device())?);
            }
            parts.push(g.clone());
            if start + len < size {
                zshape[d] = size - start - len;
                parts.push(Tensor::zeros(&zshape, g.dtype(), g.device())?);
            }
            let refs: Vec<&Tensor> = parts.iter().collect();
            Ok(smallvec![Some(Tensor::concat(&refs, d as isize)?)])
        }))
    }

    /// Repeats size-1 (or missing leading) dims to `shape` without copying
    /// (stride 0). Its backward sums the gradient back.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let ok = shape.len() >= self.rank()
            && self
                .shape()
                .iter()
                .zip(&shape[shape.len() - self.rank()..])
                .all(|(&a, &b)| a == b || a == 1);
        if !ok {
            return Err(Error::ShapeMismatch {
                op: "broadcast_to",
                lhs: self.shape().to_vec(),
                rhs: shape.to_vec(),
            });
        }
        let lead = shape.len() - self.rank();
        let strides: Strides = (0..shape.len())
            .map(|i| {
                if i < lead || self.shape()[i - lead] == 1 {
                    0
                } else {
                    self.strides()[i - lead]
                }
            })
            .collect();
        let out = self.view_of(shape, &strides, self.0.offset);
        let orig = Dims::from_slice(self.shape());
        Ok(record("broadcast_to", out, &[self], move |_, g| {
            Ok(smallvec![Some(g.sum_to_shape(&orig)?)])
        }))
    }

    /// A contiguous tensor with the same elements (the same tensor if it
    /// already is contiguous).
    #[track_caller]
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let out = self.contiguous_data()?;
        Ok(record("contiguous", out, &[self], |_, g| {
            Ok(smallvec![Some(g.clone())])
        }))
    }

    /// Joins tensors along an existing dim; all other dims must agree.
    /// Its backward narrows the gradient back into pieces.
    #[track_caller]
    pub fn concat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::Invalid("concat of no tensors".into()))?;
        let d = normalize_dim("concat", dim, first.rank())?;
        if first.rank() == 0 {
            return Err(Error::BadShape {
                op: "concat",
                msg: "0-d tensors cannot be concatenated (stack them instead)".into(),
            });
        }
        for t in &tensors[1..] {
            check_same("concat", first, t)?;
            let same = t.rank() == first.rank()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == d || a == b);
            if !same {
                return Err(Error::ShapeMismatch {
                    op: "concat",
                    lhs: first.shape().to_vec(),
                    rhs: t.shape().to_vec(),
                });
            }
        }
        let mut shape = first.shape().to_vec();
        shape[d] = tensors.iter().map(|t| t.shape()[d]).sum();
        let out = match first.device() {
            Device::Cpu => concat_cpu(tensors, d, &shape)?,
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => crate::cuda::concat(tensors, d, &shape)?,
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => unreachable!("no CUDA tensors without the cuda feature"),
        };
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[d]).collect();
        Ok(record("concat", out, tensors, move |_, g| {
            let mut start = 0;
            let mut grads = crate::autograd::InputGrads::with_capacity(sizes.len());
            for &s in &sizes {
                grads.push(Some(g.narrow(d as isize, start, s)?));
                start += s;
            }
            Ok(grads)
        }))
    }

    /// Stacks equally shaped tensors along a new dim.
    #[track_caller]
    pub fn stack(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let unsq = tensors.iter().map(|t| t.unsqueeze(dim)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = unsq.iter().collect();
        Tensor::concat(&refs, dim as isize)
    }
}

/// The concatenation of `tensors` along `d` into `shape`, on the host.
fn concat_cpu(tensors: &[&Tensor], d: usize, shape: &[usize]) -> Result<Tensor> {
    let outer: usize = shape[..d].iter().product();
    let inner: usize = shape[d + 1..].iter().product();
    let row = shape[d] * inner;
    let mut data = Data::uninit(tensors[0].dtype(), shape.iter().product());
    let mut col = 0;
    for t in tensors {
        let piece = t.shape()[d] * inner;
        let c = t.slices()?;
        c.with(|src| match (src, &mut data) {
            (crate::tensor::SliceRef::F32(s), Data::F32(o)) => copy_rows(s, o, outer, piece, row, col),
            (crate::tensor::SliceRef::F64(s), Data::F64(o)) => copy_rows(s, o, outer, piece, row, col),
            _ => unreachable!("dtypes checked"),
        });
        col += piece;
    }
    Ok(Tensor::from_data(data, shape, tensors[0].device()))
}

/// Copies `outer` rows of `piece` elements from `src` into `dst` rows of
/// length `row`, starting at column `col`.
fn copy_rows<T: Copy>(src: &[T], dst: &mut [T], outer: usize, piece: usize, row: usize, col: usize) {
    for o in 0..outer {
        dst[o * row + col..o * row + col + piece].copy_from_slice(&src[o * piece..(o + 1) * piece]);
    }
}
