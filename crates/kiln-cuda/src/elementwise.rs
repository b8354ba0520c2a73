//! Elementwise launch wrappers (`kernels/elementwise.cu`): unary ops forward/backward, binary
//! ops with numpy broadcasting, strided copy, fill.

use cudarc::driver::{DeviceRepr, PushKernelArg};

use crate::backend::{check_len, launch_err, CudaBackend};
use crate::error::{CudaError, Result};
use crate::nvrtc::ELEMENTWISE;
use crate::pool::DeviceBuffer;

/// Most dimensions a broadcast or strided operand may have.
pub const MAX_DIMS: usize = 6;

/// Elementwise functions of one tensor. Parameters travel with the op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// max(x, 0)
    Relu,
    /// x if x > 0 else slope·x
    LeakyRelu(f32),
    /// 1/(1+e^−x)
    Sigmoid,
    /// tanh x
    Tanh,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// |x|
    Abs,
    /// −x
    Neg,
    /// ln(1+e^x), β = 1, computed stably
    Softplus,
    /// GELU, tanh approximation: 0.5x(1+tanh(√(2/π)(x+0.044715x³)))
    Gelu,
    /// x^p
    Pow(f32),
    /// min(max(x, lo), hi)
    Clamp(f32, f32),
    /// x + s
    AddScalar(f32),
    /// x·s
    MulScalar(f32),
    /// sign(x) ∈ {−1, 0, 1}
    Sign,
    /// `[x > 0]` (relu's derivative as a mask)
    Step,
    /// [lo ≤ x ≤ hi] (clamp's derivative as a mask)
    InRange(f32, f32),
}

impl UnaryOp {
    /// (op code, p0, p1) as `elementwise.cu` takes them.
    pub fn code(self) -> (i32, f32, f32) {
        match self {
            UnaryOp::Relu => (0, 0.0, 0.0),
            UnaryOp::LeakyRelu(s) => (1, s, 0.0),
            UnaryOp::Sigmoid => (2, 0.0, 0.0),
            UnaryOp::Tanh => (3, 0.0, 0.0),
            UnaryOp::Exp => (4, 0.0, 0.0),
            UnaryOp::Log => (5, 0.0, 0.0),
            UnaryOp::Sqrt => (6, 0.0, 0.0),
            UnaryOp::Abs => (7, 0.0, 0.0),
            UnaryOp::Neg => (8, 0.0, 0.0),
            UnaryOp::Softplus => (9, 0.0, 0.0),
            UnaryOp::Gelu => (10, 0.0, 0.0),
            UnaryOp::Pow(p) => (11, p, 0.0),
            UnaryOp::Clamp(lo, hi) => (12, lo, hi),
            UnaryOp::AddScalar(s) => (13, s, 0.0),
            UnaryOp::MulScalar(s) => (14, s, 0.0),
            UnaryOp::Sign => (15, 0.0, 0.0),
            UnaryOp::Step => (16, 0.0, 0.0),
            UnaryOp::InRange(lo, hi) => (17, lo, hi),
        }
    }

    /// One instance of every op (with sample parameters), for tests and benchmarks.
    pub const ALL: [UnaryOp; 18] = [
        UnaryOp::Relu,
        UnaryOp::LeakyRelu(0.2),
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Abs,
        UnaryOp::Neg,
        UnaryOp::Softplus,
        UnaryOp::Gelu,
        UnaryOp::Pow(3.0),
        UnaryOp::Clamp(-0.5, 0.5),
        UnaryOp::AddScalar(1.5),
        UnaryOp::MulScalar(-2.0),
        UnaryOp::Sign,
        UnaryOp::Step,
        UnaryOp::InRange(-0.5, 0.5),
    ];
}

/// Elementwise functions of two tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// max(a, b); a NaN in `a` propagates (as kiln-cpu)
    Maximum,
    /// 1 where a == b else 0
    Eq,
    /// 1 where a > b else 0
    Gt,
}

impl BinaryOp {
    /// Every op.
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Eq,
        BinaryOp::Gt,
    ];

    /// The op code `elementwise.cu` takes.
    pub fn code(self) -> i32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
            BinaryOp::Maximum => 4,
            BinaryOp::Eq => 5,
            BinaryOp::Gt => 6,
        }
    }

    /// The op on scalars (the CPU definition the kernel must match).
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Maximum => {
                if a >= b || a.is_nan() {
                    a
                } else {
                    b
                }
            }
            BinaryOp::Eq => f32::from(u8::from(a == b)),
            BinaryOp::Gt => f32::from(u8::from(a > b)),
        }
    }
}

/// Which elementwise kernel variant to launch on contiguous data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementwiseVariant {
    /// v1: one float per load/store, grid-stride loop.
    V1Scalar,
    /// v2: float4 loads/stores (the default for contiguous data).
    V2Float4,
}

/// Output shape and per-operand element strides for the broadcasting kernels.
/// Mirrors `struct BroadcastParams` in `kernels/elementwise.cu`: dims are right-aligned into
/// `MAX_DIMS` slots, leading unused slots have shape 1 and stride 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastParams {
    /// Number of dims in use (informational; the kernel always walks all slots).
    pub ndim: i32,
    /// Output shape.
    pub shape: [i32; MAX_DIMS],
    /// Element strides of operand a (0 on broadcast dims).
    pub a_strides: [i64; MAX_DIMS],
    /// Element strides of operand b (0 on broadcast dims).
    pub b_strides: [i64; MAX_DIMS],
}

// SAFETY: plain-old-data #[repr(C)] struct of i32/i64 arrays whose layout (including the 4
// bytes of padding after `shape`) matches the C struct, so it can be passed by value.
unsafe impl DeviceRepr for BroadcastParams {}

/// Row-major contiguous strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// The numpy broadcast of two shapes, or a `Shape` error naming both.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let ndim = a.len().max(b.len());
    let mut out = vec![0; ndim];
    for i in 0..ndim {
        let da = if i < ndim - a.len() { 1 } else { a[i - (ndim - a.len())] };
        let db = if i < ndim - b.len() { 1 } else { b[i - (ndim - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(CudaError::Shape(format!("cannot broadcast {a:?} with {b:?}"))),
        };
    }
    Ok(out)
}

/// Strides of an operand with `shape`/`strides` seen through the broadcast `out_shape`
/// (right-aligned, 0 where the operand has extent 1 or is missing).
fn broadcast_strides(shape: &[usize], strides: &[usize], out_shape: &[usize]) -> Vec<i64> {
    let offset = out_shape.len() - shape.len();
    (0..out_shape.len())
        .map(|i| {
            if i < offset || shape[i - offset] == 1 {
                0
            } else {
                strides[i - offset] as i64
            }
        })
        .collect()
}

impl BroadcastParams {
    /// Builds the kernel parameters for `out_shape` and the two operands' broadcast strides.
    pub fn new(out_shape: &[usize], a_strides: &[i64], b_strides: &[i64]) -> Result<Self> {
        if out_shape.len() > MAX_DIMS {
            return Err(CudaError::Shape(format!(
                "{} dims in {out_shape:?}; the CUDA kernels take at most {MAX_DIMS}",
                out_shape.len()
            )));
        }
        let mut p = BroadcastParams {
            ndim: out_shape.len() as i32,
            shape: [1; MAX_DIMS],
            a_strides: [0; MAX_DIMS],
            b_strides: [0; MAX_DIMS],
        };
        let offset = MAX_DIMS - out_shape.len();
        for (i, &d) in out_shape.iter().enumerate() {
            p.shape[offset + i] =
                i32::try_from(d).map_err(|_| CudaError::Shape(format!("dimension {d} exceeds i32")))?;
            p.a_strides[offset + i] = a_strides[i];
            p.b_strides[offset + i] = b_strides[i];
        }
        Ok(p)
    }
}

/// The largest element offset reachable through `shape`/`strides`, plus one (0 if empty).
fn extent(shape: &[usize], strides: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    1 + shape.iter().zip(strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>()
}

fn check_view(what: &str, buf: &DeviceBuffer, shape: &[usize], strides: &[usize]) -> Result<()> {
    if shape.len() != strides.len() {
        return Err(CudaError::Shape(format!(
            "{what}: shape {shape:?} and strides {strides:?} differ in rank"
        )));
    }
    let needed = extent(shape, strides);
    if needed > buf.len() {
        return Err(CudaError::Shape(format!(
            "{what}: view {shape:?} with strides {strides:?} needs {needed} elements, buffer has {}",
            buf.len()
        )));
    }
    Ok(())
}

impl CudaBackend {
    /// out = op(x), contiguous, float4 kernel.
    pub fn unary(&self, op: UnaryOp, x: &DeviceBuffer, out: &mut DeviceBuffer) -> Result<()> {
        self.unary_variant(op, x, out, ElementwiseVariant::V2Float4)
    }

    /// out = op(x) with an explicit kernel variant (for benchmarks and tests).
    pub fn unary_variant(
        &self,
        op: UnaryOp,
        x: &DeviceBuffer,
        out: &mut DeviceBuffer,
        variant: ElementwiseVariant,
    ) -> Result<()> {
        check_len(&format!("unary {op:?} out"), out.len(), x.len())?;
        let n = x.len() as i64;
        if n == 0 {
            return Ok(());
        }
        let (code, p0, p1) = op.code();
        let name = match variant {
            ElementwiseVariant::V1Scalar => "unary_fwd_v1_f32",
            ElementwiseVariant::V2Float4 => "unary_fwd_v2_f32",
        };
        let func = self.function(&ELEMENTWISE, name)?;
        let cfg = self.grid_1d(match variant {
            ElementwiseVariant::V1Scalar => x.len(),
            ElementwiseVariant::V2Float4 => x.len().div_ceil(4),
        });
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&code)
            .arg(&p0)
            .arg(&p1)
            .arg(x.slice())
            .arg(out.slice_mut())
            .arg(&n);
        // SAFETY: matches `unary_fwd_vN_f32(int op, float p0, float p1, const float* x,
        // float* y, long long n)`; x and out hold n floats and are whole (256-byte aligned)
        // allocations, as the float4 variant requires.
        unsafe { launch.launch(cfg) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// dx = dy · op'(x), using the saved forward output y where cheaper. All contiguous, same
    /// length.
    pub fn unary_bwd(
        &self,
        op: UnaryOp,
        x: &DeviceBuffer,
        y: &DeviceBuffer,
        dy: &DeviceBuffer,
        dx: &mut DeviceBuffer,
    ) -> Result<()> {
        let what = format!("unary_bwd {op:?}");
        check_len(&format!("{what} y"), y.len(), x.len())?;
        check_len(&format!("{what} dy"), dy.len(), x.len())?;
        check_len(&format!("{what} dx"), dx.len(), x.len())?;
        let n = x.len() as i64;
        if n == 0 {
            return Ok(());
        }
        let (code, p0, p1) = op.code();
        let name = "unary_bwd_v1_f32";
        let func = self.function(&ELEMENTWISE, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&code)
            .arg(&p0)
            .arg(&p1)
            .arg(x.slice())
            .arg(y.slice())
            .arg(dy.slice())
            .arg(dx.slice_mut())
            .arg(&n);
        // SAFETY: matches `unary_bwd_v1_f32(int op, float p0, float p1, const float* x,
        // const float* y, const float* dy, float* dx, long long n)`; all hold n floats.
        unsafe { launch.launch(self.grid_1d(x.len())) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// out = a ∘ b with numpy broadcasting. `a`/`b` are views (shape + element strides) into
    /// their buffers; `out` is contiguous with the broadcast shape. Same-shape contiguous
    /// operands take the float4 fast path.
    pub fn binary(
        &self,
        op: BinaryOp,
        a: &DeviceBuffer,
        a_shape: &[usize],
        a_strides: &[usize],
        b: &DeviceBuffer,
        b_shape: &[usize],
        b_strides: &[usize],
        out: &mut DeviceBuffer,
    ) -> Result<()> {
        check_view(&format!("binary {op:?} a"), a, a_shape, a_strides)?;
        check_view(&format!("binary {op:?} b"), b, b_shape, b_strides)?;
        let out_shape = broadcast_shape(a_shape, b_shape)?;
        let n: usize = out_shape.iter().product();
        check_len(&format!("binary {op:?} out {out_shape:?}"), out.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let contiguous = contiguous_strides(&out_shape);
        if a_shape == b_shape && a_strides == contiguous && b_strides == contiguous {
            return self.binary_contiguous(op, a, b, out, ElementwiseVariant::V2Float4);
        }
        let params = BroadcastParams::new(
            &out_shape,
            &broadcast_strides(a_shape, a_strides, &out_shape),
            &broadcast_strides(b_shape, b_strides, &out_shape),
        )?;
        self.binary_broadcast_kernel(op, &params, a, b, out, n)
    }

    /// Launches `binary_fwd_v1_f32`. Callers have bounds-checked `params` against a and b.
    fn binary_broadcast_kernel(
        &self,
        op: BinaryOp,
        params: &BroadcastParams,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
        out: &mut DeviceBuffer,
        n: usize,
    ) -> Result<()> {
        let code = op.code();
        let n_i64 = n as i64;
        let name = "binary_fwd_v1_f32";
        let func = self.function(&ELEMENTWISE, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&code)
            .arg(params)
            .arg(a.slice())
            .arg(b.slice())
            .arg(out.slice_mut())
            .arg(&n_i64);
        // SAFETY: matches `binary_fwd_v1_f32(int op, BroadcastParams p, const float* a,
        // const float* b, float* out, long long n)`; the callers proved every offset the
        // strides can produce lies inside a and b; out holds n floats.
        unsafe { launch.launch(self.grid_1d(n)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// out = a ∘ b for contiguous operands of equal length, with an explicit variant
    /// (v1 = the broadcasting kernel on trivial strides, v2 = float4).
    pub fn binary_contiguous(
        &self,
        op: BinaryOp,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
        out: &mut DeviceBuffer,
        variant: ElementwiseVariant,
    ) -> Result<()> {
        check_len(&format!("binary {op:?} b"), b.len(), a.len())?;
        check_len(&format!("binary {op:?} out"), out.len(), a.len())?;
        let n = a.len();
        if n == 0 {
            return Ok(());
        }
        if variant == ElementwiseVariant::V1Scalar {
            let params = BroadcastParams::new(&[n], &[1], &[1])?;
            return self.binary_broadcast_kernel(op, &params, a, b, out, n);
        }
        let code = op.code();
        let n_i64 = n as i64;
        let name = "binary_fwd_v2_f32";
        let func = self.function(&ELEMENTWISE, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&code)
            .arg(a.slice())
            .arg(b.slice())
            .arg(out.slice_mut())
            .arg(&n_i64);
        // SAFETY: matches `binary_fwd_v2_f32(int op, const float* a, const float* b,
        // float* out, long long n)`; all three hold n floats in whole, 16-byte-aligned
        // allocations.
        unsafe { launch.launch(self.grid_1d(n.div_ceil(4))) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// out (contiguous, `shape`) = the view of `x` given by `shape` and element `strides`
    /// (transpose, slice, expand with stride 0 …).
    pub fn copy_strided(
        &self,
        x: &DeviceBuffer,
        shape: &[usize],
        strides: &[usize],
        out: &mut DeviceBuffer,
    ) -> Result<()> {
        check_view("copy_strided x", x, shape, strides)?;
        let n: usize = shape.iter().product();
        check_len(&format!("copy_strided out {shape:?}"), out.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        let a_strides: Vec<i64> = strides.iter().map(|&s| s as i64).collect();
        let params = BroadcastParams::new(shape, &a_strides, &vec![0; shape.len()])?;
        let n_i64 = n as i64;
        let name = "copy_strided_v1_f32";
        let func = self.function(&ELEMENTWISE, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(&params).arg(x.slice()).arg(out.slice_mut()).arg(&n_i64);
        // SAFETY: matches `copy_strided_v1_f32(BroadcastParams p, const float* x, float* out,
        // long long n)`; check_view bounds every offset inside x; out holds n floats.
        unsafe { launch.launch(self.grid_1d(n)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// Like [`CudaBackend::copy_strided`] for a view that starts `offset` elements into `x`
    /// (a narrowed tensor): out = x[offset + Σ idx·stride].
    pub fn copy_strided_at(
        &self,
        x: &DeviceBuffer,
        offset: usize,
        shape: &[usize],
        strides: &[usize],
        out: &mut DeviceBuffer,
    ) -> Result<()> {
        let n: usize = shape.iter().product();
        check_len(&format!("copy_strided_at out {shape:?}"), out.len(), n)?;
        if n == 0 {
            return Ok(());
        }
        if shape.len() != strides.len() || offset + extent(shape, strides) > x.len() {
            return Err(CudaError::Shape(format!(
                "copy_strided_at: view {shape:?} with strides {strides:?} at offset {offset} does not fit a buffer of {}",
                x.len()
            )));
        }
        let a_strides: Vec<i64> = strides.iter().map(|&s| s as i64).collect();
        let params = BroadcastParams::new(shape, &a_strides, &vec![0; shape.len()])?;
        let n_i64 = n as i64;
        let name = "copy_strided_v1_f32";
        let func = self.function(&ELEMENTWISE, name)?;
        let view = x.slice().slice(offset..);
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(&params).arg(&view).arg(out.slice_mut()).arg(&n_i64);
        // SAFETY: matches `copy_strided_v1_f32(BroadcastParams p, const float* x, float* out,
        // long long n)`; x is the buffer from `offset` on and every offset the strides reach
        // lies inside it (checked above); out holds n floats.
        unsafe { launch.launch(self.grid_1d(n)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// Copies `len` elements from `src[src_offset..]` to `dst[dst_offset..]` (device to
    /// device; used to assemble concatenations).
    pub fn dtod_at(
        &self,
        src: &DeviceBuffer,
        src_offset: usize,
        dst: &mut DeviceBuffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        if src_offset + len > src.len() || dst_offset + len > dst.len() {
            return Err(CudaError::Shape(format!(
                "dtod_at: {len} elements from offset {src_offset} of {} to offset {dst_offset} of {}",
                src.len(),
                dst.len()
            )));
        }
        if len == 0 {
            return Ok(());
        }
        let from = src.slice().slice(src_offset..src_offset + len);
        let mut to = dst.slice_mut().slice_mut(dst_offset..dst_offset + len);
        self.stream()
            .memcpy_dtod(&from, &mut to)
            .map_err(|e| CudaError::driver("device-to-device copy", e))
    }

    /// Sets every element of `out` to `value`.
    pub fn fill(&self, out: &mut DeviceBuffer, value: f32) -> Result<()> {
        let n = out.len();
        if n == 0 {
            return Ok(());
        }
        let n_i64 = n as i64;
        let name = "fill_v1_f32";
        let func = self.function(&ELEMENTWISE, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(&value).arg(out.slice_mut()).arg(&n_i64);
        // SAFETY: matches `fill_v1_f32(float value, float* out, long long n)`; out holds n
        // floats.
        unsafe { launch.launch(self.grid_1d(n)) }.map_err(launch_err(name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_params_match_the_c_struct_layout() {
        // int ndim; int shape[6]; (4 bytes padding) long long a_strides[6], b_strides[6];
        assert_eq!(std::mem::size_of::<BroadcastParams>(), 128);
        assert_eq!(std::mem::offset_of!(BroadcastParams, a_strides), 32);
        assert_eq!(std::mem::offset_of!(BroadcastParams, b_strides), 80);
    }

    #[test]
    fn broadcast_shape_follows_numpy() {
        assert_eq!(broadcast_shape(&[2, 3, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
        assert_eq!(broadcast_shape(&[4], &[2, 1, 1]).unwrap(), vec![2, 1, 4]);
        assert_eq!(broadcast_shape(&[], &[5]).unwrap(), vec![5]);
        let err = broadcast_shape(&[2, 3], &[4]).unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains("[4]"), "{err}");
    }

    #[test]
    fn params_right_align_dims_and_zero_broadcast_strides() {
        let out = [2, 3];
        let a = broadcast_strides(&[3], &[1], &out);
        let b = broadcast_strides(&[2, 1], &[1, 1], &out);
        assert_eq!(a, vec![0, 1]);
        assert_eq!(b, vec![1, 0]);
        let p = BroadcastParams::new(&out, &a, &b).unwrap();
        assert_eq!(p.shape, [1, 1, 1, 1, 2, 3]);
        assert_eq!(p.a_strides, [0, 0, 0, 0, 0, 1]);
        assert_eq!(p.b_strides, [0, 0, 0, 0, 1, 0]);
        assert!(BroadcastParams::new(&[1; 7], &[0; 7], &[0; 7]).is_err());
    }
}
