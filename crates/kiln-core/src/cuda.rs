//! The CUDA half of kiln-core's dispatch (feature `cuda`).
//!
//! Each op's forward in `ops/` matches on the device and, for `Device::Cuda`, calls one
//! function of this file, which launches the kiln-cuda kernel on the operands' device
//! buffers. The functions here know shapes and strides (kiln-cuda only knows buffers); they
//! never copy to the host except in [`download`]. Only f32 lives on the GPU.
//!
//! Layout rules: a CUDA tensor is *dense* when its view covers its whole buffer row-major
//! from offset 0. Kernels that need dense operands get them from [`dense`], which copies a
//! view (transpose, narrow, broadcast) with one `copy_strided` launch and is free otherwise.

use crate::storage::Data;
use crate::{DType, Device, Error, Result, Tensor};
use kiln_cpu::elementwise::{ActBackward, BinaryOp, UnaryOp};
use kiln_cpu::reduce::ReduceOp;
use kiln_cuda::{CudaBackend, CudaError, DeviceBuffer};

impl From<CudaError> for Error {
    fn from(e: CudaError) -> Self {
        match e {
            CudaError::NoDevice(msg) => Error::NoDevice(msg),
            other => Error::Cuda(other.to_string()),
        }
    }
}

/// The backend of `device` (kiln drives one GPU, ordinal 0).
pub(crate) fn backend(device: Device) -> Result<&'static CudaBackend> {
    match device {
        Device::Cuda(0) => Ok(CudaBackend::global()?),
        Device::Cuda(n) => Err(Error::NoDevice(format!("cuda:{n} requested; kiln drives only cuda:0"))),
        Device::Cpu => Err(Error::Invalid("internal: CUDA dispatch of a CPU tensor".into())),
    }
}

/// `Unsupported` for an f64 tensor headed for the GPU.
pub(crate) fn check_f32(op: &'static str, dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 => Ok(()),
        DType::F64 => Err(Error::Unsupported {
            op,
            what: "f64 on CUDA (the GPU backend is f32 only; use to_dtype(F32) first)".into(),
        }),
    }
}

/// A new tensor owning `buf`.
fn wrap(buf: DeviceBuffer, shape: &[usize], device: Device) -> Tensor {
    Tensor::from_data(Data::Cuda(buf), shape, device)
}

/// Calls `f` with the device buffer behind `t` (read lock).
fn read<R>(t: &Tensor, f: impl FnOnce(&DeviceBuffer) -> Result<R>) -> Result<R> {
    let guard = t.0.storage.read();
    match &*guard {
        Data::Cuda(buf) => f(buf),
        _ => Err(Error::Invalid("internal: a CUDA tensor without a device buffer".into())),
    }
}

/// The strides of `t` as kiln-cuda takes them (kiln never makes negative strides).
fn strides_of(t: &Tensor) -> Result<Vec<usize>> {
    t.strides()
        .iter()
        .map(|&s| {
            usize::try_from(s).map_err(|_| Error::Unsupported {
                op: "cuda view",
                what: format!("negative strides {:?}", t.strides()),
            })
        })
        .collect()
}

/// True when the view of `t` is its whole buffer, row-major, from offset 0.
fn is_dense(t: &Tensor) -> Result<bool> {
    if t.0.offset != 0 || !t.is_contiguous() {
        return Ok(false);
    }
    read(t, |buf| Ok(buf.len() == t.numel()))
}

/// `t` as a dense tensor: itself (detached) when it already is, else a copy.
pub(crate) fn dense(t: &Tensor) -> Result<Tensor> {
    if is_dense(t)? {
        return Ok(t.detach());
    }
    copy(t)
}

/// A dense copy of any view of `t`.
pub(crate) fn copy(t: &Tensor) -> Result<Tensor> {
    let gpu = backend(t.device())?;
    let strides = strides_of(t)?;
    let mut out = gpu.alloc(t.numel())?;
    read(t, |buf| {
        Ok(gpu.copy_strided_at(buf, t.0.offset, t.shape(), &strides, &mut out)?)
    })?;
    Ok(wrap(out, t.shape(), t.device()))
}

/// Copies host f32 data to a new tensor on `device`.
pub(crate) fn upload(host: &[f32], shape: &[usize], device: Device) -> Result<Tensor> {
    let gpu = backend(device)?;
    Ok(wrap(gpu.htod(host)?, shape, device))
}

/// The elements of `t`, row-major, on the host (waits for queued work).
pub(crate) fn download(t: &Tensor) -> Result<Vec<f32>> {
    let gpu = backend(t.device())?;
    let d = dense(t)?;
    read(&d, |buf| Ok(gpu.dtoh(buf)?))
}

/// A tensor of `shape` filled with `value`.
pub(crate) fn full(shape: &[usize], value: f64, device: Device) -> Result<Tensor> {
    let gpu = backend(device)?;
    let mut buf = gpu.alloc(shape.iter().product())?;
    gpu.fill(&mut buf, value as f32)?;
    Ok(wrap(buf, shape, device))
}

/// Writes the elements of `src` (same shape, same device) into the dense tensor `dst`.
pub(crate) fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
    let gpu = backend(dst.device())?;
    if !is_dense(dst)? {
        return Err(Error::Unsupported {
            op: "in-place write",
            what: format!("a CUDA view (shape {:?}, strides {:?})", dst.shape(), dst.strides()),
        });
    }
    // A source sharing the destination's buffer is copied first (it is read while the
    // destination is locked for writing).
    let src = if src.shares_storage(dst) {
        copy(src)?
    } else {
        dense(src)?
    };
    let mut guard = dst.0.storage.write();
    let Data::Cuda(dst_buf) = &mut *guard else {
        return Err(Error::Invalid("internal: a CUDA tensor without a device buffer".into()));
    };
    read(&src, |src_buf| Ok(gpu.dtod(src_buf, dst_buf)?))
}

/// Overwrites a dense CUDA tensor with host data (the host round trip of `Tensor::update`).
pub(crate) fn overwrite(dst: &Tensor, host: &[f32]) -> Result<()> {
    let gpu = backend(dst.device())?;
    let mut guard = dst.0.storage.write();
    let Data::Cuda(buf) = &mut *guard else {
        return Err(Error::Invalid("internal: a CUDA tensor without a device buffer".into()));
    };
    Ok(gpu.htod_into(host, buf)?)
}

/// True when `t` is dense on the host's terms but may be updated in place on the device.
pub(crate) fn check_dense(op: &'static str, t: &Tensor) -> Result<()> {
    if is_dense(t)? {
        Ok(())
    } else {
        Err(Error::Unsupported {
            op,
            what: format!("a CUDA view (shape {:?}, strides {:?})", t.shape(), t.strides()),
        })
    }
}

/// Runs a fused in-place kernel (optimizer step): `param` and each of `states` are written,
/// `grad` is read. All must be dense, distinct storages on one device.
pub(crate) fn update_fused<R>(
    param: &Tensor,
    grad: &Tensor,
    states: &[&Tensor],
    f: impl FnOnce(&CudaBackend, &mut DeviceBuffer, &DeviceBuffer, &mut [&mut DeviceBuffer]) -> kiln_cuda::Result<R>,
) -> Result<R> {
    let gpu = backend(param.device())?;
    check_dense("fused update (parameter)", param)?;
    for s in states {
        crate::ops::check_same("fused update (state)", param, s)?;
        check_dense("fused update (state)", s)?;
        if s.shares_storage(param) {
            return Err(Error::Invalid(
                "fused update: a state tensor shares the parameter's storage".into(),
            ));
        }
    }
    crate::ops::check_same("fused update (gradient)", param, grad)?;
    let grad = if grad.shares_storage(param) {
        copy(grad)?
    } else {
        dense(grad)?
    };
    let mut param_guard = param.0.storage.write();
    let mut state_guards: Vec<_> = states.iter().map(|s| s.0.storage.write()).collect();
    let mut state_bufs = Vec::with_capacity(states.len());
    for g in &mut state_guards {
        match &mut **g {
            Data::Cuda(b) => state_bufs.push(b),
            _ => return Err(Error::Invalid("internal: a CUDA tensor without a device buffer".into())),
        }
    }
    let Data::Cuda(param_buf) = &mut *param_guard else {
        return Err(Error::Invalid("internal: a CUDA tensor without a device buffer".into()));
    };
    read(&grad, |grad_buf| Ok(f(gpu, param_buf, grad_buf, &mut state_bufs)?))
}

// ---------------------------------------------------------------- ops

fn unary_op(op: UnaryOp) -> kiln_cuda::UnaryOp {
    use kiln_cuda::UnaryOp as G;
    match op {
        UnaryOp::Neg => G::Neg,
        UnaryOp::Exp => G::Exp,
        UnaryOp::Log => G::Log,
        UnaryOp::Sqrt => G::Sqrt,
        UnaryOp::Abs => G::Abs,
        UnaryOp::Sign => G::Sign,
        UnaryOp::Relu => G::Relu,
        UnaryOp::LeakyRelu(s) => G::LeakyRelu(s as f32),
        UnaryOp::Sigmoid => G::Sigmoid,
        UnaryOp::Tanh => G::Tanh,
        UnaryOp::Softplus => G::Softplus,
        UnaryOp::Gelu => G::Gelu,
        UnaryOp::Powf(p) => G::Pow(p as f32),
        UnaryOp::AddScalar(c) => G::AddScalar(c as f32),
        UnaryOp::MulScalar(c) => G::MulScalar(c as f32),
        UnaryOp::Clamp(lo, hi) => G::Clamp(lo as f32, hi as f32),
        UnaryOp::InRange(lo, hi) => G::InRange(lo as f32, hi as f32),
        UnaryOp::Step => G::Step,
    }
}

/// out = op(x), elementwise.
pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Result<Tensor> {
    let gpu = backend(x.device())?;
    let x = dense(x)?;
    let mut out = gpu.alloc(x.numel())?;
    read(&x, |xb| Ok(gpu.unary(unary_op(op), xb, &mut out)?))?;
    Ok(wrap(out, x.shape(), x.device()))
}

/// dx = dy·f'(saved) for the fused activation backward (saved = x for relu/leaky relu, y for
/// sigmoid/tanh; the kernel reads x or y as the op needs, so `saved` is passed as both).
pub(crate) fn act_backward(op: ActBackward, saved: &Tensor, dy: &Tensor) -> Result<Tensor> {
    crate::ops::check_same("activation backward", saved, dy)?;
    let gpu = backend(saved.device())?;
    let op = match op {
        ActBackward::Relu => kiln_cuda::UnaryOp::Relu,
        ActBackward::LeakyRelu(s) => kiln_cuda::UnaryOp::LeakyRelu(s as f32),
        ActBackward::Sigmoid => kiln_cuda::UnaryOp::Sigmoid,
        ActBackward::Tanh => kiln_cuda::UnaryOp::Tanh,
    };
    let (s, g) = (dense(saved)?, dense(dy)?);
    let mut out = gpu.alloc(s.numel())?;
    read(&s, |sb| read(&g, |gb| Ok(gpu.unary_bwd(op, sb, sb, gb, &mut out)?)))?;
    Ok(wrap(out, saved.shape(), saved.device()))
}

/// out = a ∘ b with broadcasting to `shape`; operands are read through their strides (views
/// with an offset are copied first: the kernel indexes from the buffer start).
pub(crate) fn binary(a: &Tensor, b: &Tensor, op: BinaryOp, shape: &[usize]) -> Result<Tensor> {
    let gpu = backend(a.device())?;
    let op = match op {
        BinaryOp::Add => kiln_cuda::BinaryOp::Add,
        BinaryOp::Sub => kiln_cuda::BinaryOp::Sub,
        BinaryOp::Mul => kiln_cuda::BinaryOp::Mul,
        BinaryOp::Div => kiln_cuda::BinaryOp::Div,
        BinaryOp::Maximum => kiln_cuda::BinaryOp::Maximum,
        BinaryOp::Eq => kiln_cuda::BinaryOp::Eq,
        BinaryOp::Gt => kiln_cuda::BinaryOp::Gt,
    };
    // The kernel indexes from the buffer start, and its dense fast path takes whole buffers:
    // views with an offset, and row-major views of a larger buffer, are copied first.
    let usable = |t: &Tensor| -> Result<Tensor> {
        if t.0.offset == 0 && (!t.is_contiguous() || is_dense(t)?) {
            Ok(t.clone())
        } else {
            dense(t)
        }
    };
    let (a, b) = (usable(a)?, usable(b)?);
    let (sa, sb) = (strides_of(&a)?, strides_of(&b)?);
    let mut out = gpu.alloc(shape.iter().product())?;
    read(&a, |ab| {
        read(&b, |bb| {
            Ok(gpu.binary(op, ab, a.shape(), &sa, bb, b.shape(), &sb, &mut out)?)
        })
    })?;
    Ok(wrap(out, shape, a.device()))
}

/// How a 2-D operand can be fed to the GEMM kernel without a copy: row-major (`N`), or the
/// transpose of a row-major matrix (`T`). `None`: it needs a dense copy first.
fn gemm_side(t: &Tensor) -> Result<Option<bool>> {
    if t.0.offset != 0 || read(t, |b| Ok(b.len() != t.numel()))? {
        return Ok(None);
    }
    if t.is_contiguous() {
        return Ok(Some(false));
    }
    if t.transpose_raw(0, 1).is_contiguous() {
        return Ok(Some(true));
    }
    Ok(None)
}

/// C[m, n] = A[m, k]·B[k, n] (+ `init`, a dense [m, n] tensor consumed as C's start value).
/// Strided operands map onto the NN / NT / TN kernels; other layouts are copied dense.
pub(crate) fn gemm(a: &Tensor, b: &Tensor, init: Option<Tensor>) -> Result<Tensor> {
    let gpu = backend(a.device())?;
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    let side = |t: &Tensor| -> Result<(Tensor, bool)> {
        match gemm_side(t)? {
            Some(transposed) => Ok((t.clone(), transposed)),
            None => Ok((copy(t)?, false)),
        }
    };
    let (a, ta) = side(a)?;
    let (mut b, mut tb) = side(b)?;
    if ta && tb {
        // No TT kernel: make B row-major.
        (b, tb) = (copy(&b)?, false);
    }
    let layout = match (ta, tb) {
        (false, false) => kiln_cuda::GemmLayout::NN,
        (false, true) => kiln_cuda::GemmLayout::NT,
        _ => kiln_cuda::GemmLayout::TN,
    };
    let (c, beta) = match init {
        Some(c) => (dense(&c)?, 1.0),
        None => (wrap(gpu.alloc(m * n)?, &[m, n], a.device()), 0.0),
    };
    {
        let mut guard = c.0.storage.write();
        let Data::Cuda(cb) = &mut *guard else {
            return Err(Error::Invalid("internal: a CUDA tensor without a device buffer".into()));
        };
        read(&a, |ab| {
            read(&b, |bb| {
                Ok(gpu.sgemm_ex(layout, m, n, k, 1.0, ab, bb, beta, cb, kiln_cuda::GemmVariant::Auto)?)
            })
        })?;
    }
    Ok(c)
}

/// act(x·Wᵀ + b) through kiln-cuda's fused linear layer (one GEMM kernel with the bias and the
/// activation in its epilogue, or in its split-K reduction), for a row-major x [N, I], W [O, I]
/// and a bias; `None` where it does not apply (no bias, a strided operand, or an activation
/// the epilogue lacks), and the caller composes the ops.
pub(crate) fn linear_fused(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    act: Option<UnaryOp>,
) -> Result<Option<Tensor>> {
    use kiln_cuda::Activation as A;
    let activation = match act {
        None => A::None,
        Some(UnaryOp::Relu) => A::Relu,
        Some(UnaryOp::LeakyRelu(s)) => A::LeakyRelu(s as f32),
        Some(UnaryOp::Sigmoid) => A::Sigmoid,
        Some(UnaryOp::Tanh) => A::Tanh,
        Some(_) => return Ok(None),
    };
    let Some(b) = bias else { return Ok(None) };
    if !(is_dense(x)? && is_dense(w)? && is_dense(b)?) {
        return Ok(None);
    }
    let gpu = backend(x.device())?;
    let (n, i, o) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    let mut out = gpu.alloc(n * o)?;
    read(x, |xb| {
        read(w, |wb| {
            read(b, |bb| Ok(gpu.linear_fwd(xb, wb, bb, &mut out, n, i, o, activation)?))
        })
    })?;
    Ok(Some(wrap(out, &[n, o], x.device())))
}

/// `rows` copies of the 1-D tensor `row` as a dense [rows, len] tensor (the bias of a linear
/// layer, which the GEMM then accumulates onto).
pub(crate) fn repeat_rows(row: &Tensor, rows: usize) -> Result<Tensor> {
    let view = row.view_of(&[rows, row.numel()], &[0, row.strides()[0]], row.0.offset);
    copy(&view)
}

/// A reduction over all elements → a tensor of `shape` (one element).
pub(crate) fn reduce_all(x: &Tensor, op: ReduceOp, shape: &[usize]) -> Result<Tensor> {
    let gpu = backend(x.device())?;
    let x = dense(x)?;
    let mut out = gpu.alloc(1)?;
    let op = match op {
        ReduceOp::Sum => kiln_cuda::ReduceOp::Sum,
        ReduceOp::Max => kiln_cuda::ReduceOp::Max,
    };
    read(&x, |xb| Ok(gpu.reduce_all(op, xb, &mut out)?))?;
    Ok(wrap(out, shape, x.device()))
}

/// Reduces the middle dim of x viewed as [outer, r, inner] → a tensor of `shape`.
pub(crate) fn reduce_dim(
    x: &Tensor,
    op: ReduceOp,
    (outer, r, inner): (usize, usize, usize),
    shape: &[usize],
) -> Result<Tensor> {
    let gpu = backend(x.device())?;
    let x = dense(x)?;
    let mut out = gpu.alloc(outer * inner)?;
    let op = match op {
        ReduceOp::Sum => kiln_cuda::ReduceOp::Sum,
        ReduceOp::Max => kiln_cuda::ReduceOp::Max,
    };
    read(&x, |xb| Ok(gpu.reduce_dim(op, xb, outer, r, inner, &mut out)?))?;
    Ok(wrap(out, shape, x.device()))
}

/// Concatenation along dim `d` into `shape`: each input is `outer` rows of `piece` elements,
/// copied device-to-device into rows of `shape[d]·inner` elements.
pub(crate) fn concat(tensors: &[&Tensor], d: usize, shape: &[usize]) -> Result<Tensor> {
    let device = tensors[0].device();
    let gpu = backend(device)?;
    let outer: usize = shape[..d].iter().product();
    let inner: usize = shape[d + 1..].iter().product();
    let row = shape[d] * inner;
    let mut out = gpu.alloc(shape.iter().product())?;
    let mut col = 0;
    for t in tensors {
        let piece = t.shape()[d] * inner;
        let src = dense(t)?;
        read(&src, |sb| {
            if outer == 1 || piece == row {
                // One contiguous block (concat along the leading dim).
                return Ok(gpu.dtod_at(sb, 0, &mut out, col, outer * piece)?);
            }
            for o in 0..outer {
                gpu.dtod_at(sb, o * piece, &mut out, o * row + col, piece)?;
            }
            Ok(())
        })?;
        col += piece;
    }
    Ok(wrap(out, shape, device))
}
