//! Reduction launch wrappers (`kernels/reduce.cu`). Deterministic: no atomics, fixed order.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::backend::{check_len, launch_err, CudaBackend};
use crate::error::{CudaError, Result};
use crate::nvrtc::REDUCE;
use crate::pool::DeviceBuffer;

/// Threads per block of the reduction kernels (REDUCE_THREADS / LOSS_THREADS in the .cu files).
pub(crate) const REDUCE_THREADS: u32 = 256;
/// Upper bound on the number of first-pass blocks (and so of partial sums).
const MAX_PARTIALS: usize = 1024;

/// What a reduction computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Σ x
    Sum,
    /// Σ x / count
    Mean,
    /// max x
    Max,
}

impl ReduceOp {
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum | ReduceOp::Mean => 0,
            ReduceOp::Max => 1,
        }
    }
}

/// Number of first-pass blocks for n elements: a function of n only, so the summation order
/// (and the result) does not change from run to run.
pub(crate) fn partial_count(n: usize) -> usize {
    n.div_ceil(REDUCE_THREADS as usize * 4).clamp(1, MAX_PARTIALS)
}

impl CudaBackend {
    /// out[0] = op over all of x. `out` has 1 element. Mean of nothing is NaN, sum of
    /// nothing 0, max of nothing an error (as in PyTorch).
    pub fn reduce_all(&self, op: ReduceOp, x: &DeviceBuffer, out: &mut DeviceBuffer) -> Result<()> {
        check_len(&format!("reduce_all {op:?} out"), out.len(), 1)?;
        let n = x.len();
        if n == 0 {
            return match op {
                ReduceOp::Sum => self.fill(out, 0.0),
                ReduceOp::Mean => self.fill(out, f32::NAN),
                ReduceOp::Max => Err(CudaError::Shape("max of an empty tensor".into())),
            };
        }
        let scale = if op == ReduceOp::Mean { 1.0 / n as f32 } else { 1.0 };
        let blocks = partial_count(n);
        if blocks == 1 {
            return self.reduce_all_pass(op.code(), x, n, scale, out, 1);
        }
        let mut partials = self.alloc(blocks)?;
        self.reduce_all_pass(op.code(), x, n, 1.0, &mut partials, blocks)?;
        self.reduce_all_pass(op.code(), &partials, blocks, scale, out, 1)
    }

    /// Sum of all elements (1-element `out`).
    pub fn reduce_sum(&self, x: &DeviceBuffer, out: &mut DeviceBuffer) -> Result<()> {
        self.reduce_all(ReduceOp::Sum, x, out)
    }

    /// Maximum of all elements (1-element `out`).
    pub fn reduce_max(&self, x: &DeviceBuffer, out: &mut DeviceBuffer) -> Result<()> {
        self.reduce_all(ReduceOp::Max, x, out)
    }

    /// One pass of `reduce_all_fwd_v1_f32`: `blocks` partial results of the first n elements
    /// of x, each multiplied by `scale` (sum only).
    pub(crate) fn reduce_all_pass(
        &self,
        op_code: i32,
        x: &DeviceBuffer,
        n: usize,
        scale: f32,
        out: &mut DeviceBuffer,
        blocks: usize,
    ) -> Result<()> {
        debug_assert!(n <= x.len() && blocks <= out.len());
        let n_i64 = n as i64;
        let name = "reduce_all_fwd_v1_f32";
        let func = self.function(&REDUCE, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&op_code)
            .arg(x.slice())
            .arg(&n_i64)
            .arg(&scale)
            .arg(out.slice_mut());
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches `reduce_all_fwd_v1_f32(int op, const float* x, long long n,
        // float scale, float* out)`; x has ≥ n floats, out ≥ blocks floats (one per block);
        // blockDim is REDUCE_THREADS as the kernel's block_reduce requires.
        unsafe { launch.launch(cfg) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// Reduces the middle dim of x viewed as [outer, r, inner] into out [outer, inner].
    pub fn reduce_dim(
        &self,
        op: ReduceOp,
        x: &DeviceBuffer,
        outer: usize,
        r: usize,
        inner: usize,
        out: &mut DeviceBuffer,
    ) -> Result<()> {
        let what = format!("reduce_dim {op:?} [{outer}, {r}, {inner}]");
        check_len(&format!("{what} x"), x.len(), outer * r * inner)?;
        check_len(&format!("{what} out"), out.len(), outer * inner)?;
        if outer * inner == 0 {
            return Ok(());
        }
        if r == 0 {
            return match op {
                ReduceOp::Sum => self.fill(out, 0.0),
                ReduceOp::Mean => self.fill(out, f32::NAN),
                ReduceOp::Max => Err(CudaError::Shape(format!("{what}: max over an empty dim"))),
            };
        }
        let to_i32 = |v: usize| i32::try_from(v).map_err(|_| CudaError::Shape(format!("{what}: {v} exceeds i32")));
        let (outer_i, r_i, inner_i) = (to_i32(outer)?, to_i32(r)?, to_i32(inner)?);
        let code = op.code();
        let scale = if op == ReduceOp::Mean { 1.0 / r as f32 } else { 1.0 };
        if inner == 1 {
            let name = "reduce_dim_fwd_v2_f32";
            let func = self.function(&REDUCE, name)?;
            let warps_per_block = REDUCE_THREADS as usize / 32;
            let blocks = outer.div_ceil(warps_per_block).min(self.sm_count() as usize * 32);
            let mut launch = self.stream().launch_builder(&func);
            launch
                .arg(&code)
                .arg(x.slice())
                .arg(&outer_i)
                .arg(&r_i)
                .arg(&scale)
                .arg(out.slice_mut());
            let cfg = LaunchConfig {
                grid_dim: (blocks as u32, 1, 1),
                block_dim: (REDUCE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: matches `reduce_dim_fwd_v2_f32(int op, const float* x, int outer, int R,
            // float scale, float* out)`; x holds outer·R floats, out holds outer; blockDim is a
            // multiple of 32 as the warp-per-row kernel requires.
            unsafe { launch.launch(cfg) }.map_err(launch_err(name))?;
        } else {
            let name = "reduce_dim_fwd_v1_f32";
            let func = self.function(&REDUCE, name)?;
            let mut launch = self.stream().launch_builder(&func);
            launch
                .arg(&code)
                .arg(x.slice())
                .arg(&outer_i)
                .arg(&r_i)
                .arg(&inner_i)
                .arg(&scale)
                .arg(out.slice_mut());
            // SAFETY: matches `reduce_dim_fwd_v1_f32(int op, const float* x, int outer, int R,
            // int inner, float scale, float* out)`; lengths checked above.
            unsafe { launch.launch(self.grid_1d(outer * inner)) }.map_err(launch_err(name))?;
        }
        Ok(())
    }
}
