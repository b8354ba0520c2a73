//! Reduction launch wrappers (`kernels/reduce.cu`). Deterministic: no atomics, fixed order.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::backend::{check_len, launch_err, CudaBackend};
use crate::error::{CudaError, Result};
use crate::gemm::dims_to_i32;
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
    /// `out[0]` = op over all of x. `out` has 1 element. Mean of nothing is NaN, sum of
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
        let code = op.code();
        let scale = if op == ReduceOp::Mean { 1.0 / r as f32 } else { 1.0 };
        if inner == 1 {
            let name = "reduce_dim_fwd_v2_f32";
            let func = self.function(&REDUCE, name)?;
            let warps_per_block = REDUCE_THREADS as usize / 32;
            let blocks = outer.div_ceil(warps_per_block).min(self.sm_count() as usize * 32);
            let dims = dims_to_i32(&[outer, r])?;
            let mut launch = self.stream().launch_builder(&func);
            launch
                .arg(&code)
                .arg(x.slice())
                .arg(&dims[0])
                .arg(&dims[1])
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
            let total = outer * inner;
            match dim_plan(total, r, self.sm_count() as usize) {
                DimPlan::PerThread => self.reduce_dim_v1(code, x, (outer, r, inner), scale, out)?,
                DimPlan::Lanes { slices: 1, rchunk } => {
                    self.reduce_dim_v3(code, x, (outer, r, inner), 1, rchunk, scale, out)?
                }
                DimPlan::Lanes { slices, rchunk } => {
                    let mut part = self.alloc(slices * total)?;
                    self.reduce_dim_v3(code, x, (outer, r, inner), slices, rchunk, 1.0, &mut part)?;
                    self.reduce_dim_v1(code, &part, (1, slices, total), scale, out)?;
                }
            }
        }
        Ok(())
    }

    /// `reduce_dim_fwd_v1_f32`: one thread per output.
    fn reduce_dim_v1(
        &self,
        code: i32,
        x: &DeviceBuffer,
        (outer, r, inner): (usize, usize, usize),
        scale: f32,
        out: &mut DeviceBuffer,
    ) -> Result<()> {
        let dims = dims_to_i32(&[outer, r, inner])?;
        let name = "reduce_dim_fwd_v1_f32";
        let func = self.function(&REDUCE, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&code)
            .arg(x.slice())
            .arg(&dims[0])
            .arg(&dims[1])
            .arg(&dims[2])
            .arg(&scale)
            .arg(out.slice_mut());
        // SAFETY: matches `reduce_dim_fwd_v1_f32(int op, const float* x, int outer, int R,
        // int inner, float scale, float* out)`; callers pass x of outer·R·inner floats and out
        // of outer·inner (checked in `reduce_dim`, or sized so for the partials).
        unsafe { launch.launch(self.grid_1d(outer * inner)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// `reduce_dim_fwd_v3_f32` over `slices` slices of `rchunk` rows, into out
    /// [slices, outer·inner].
    #[allow(clippy::too_many_arguments)]
    fn reduce_dim_v3(
        &self,
        code: i32,
        x: &DeviceBuffer,
        (outer, r, inner): (usize, usize, usize),
        slices: usize,
        rchunk: usize,
        scale: f32,
        out: &mut DeviceBuffer,
    ) -> Result<()> {
        let dims = dims_to_i32(&[outer, r, inner, rchunk])?;
        let name = "reduce_dim_fwd_v3_f32";
        let func = self.function(&REDUCE, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&code)
            .arg(x.slice())
            .arg(&dims[0])
            .arg(&dims[1])
            .arg(&dims[2])
            .arg(&dims[3])
            .arg(&scale)
            .arg(out.slice_mut());
        let cfg = LaunchConfig {
            grid_dim: ((outer * inner).div_ceil(32) as u32, slices as u32, 1),
            block_dim: (32, V3_LANES, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches `reduce_dim_fwd_v3_f32(int op, const float* x, int outer, int R,
        // int inner, int rchunk, float scale, float* out)`; x holds outer·R·inner floats, out
        // holds slices·outer·inner, and slices·rchunk ≥ R, so slice y writes only its block.
        unsafe { launch.launch(cfg) }.map_err(launch_err(name))?;
        Ok(())
    }
}

/// Row lanes per output in `reduce_dim_fwd_v3_f32` (`V3_LANES`).
const V3_LANES: u32 = 8;
/// The shortest slice of the reduced dim worth its own blocks (8 rows per lane).
const MIN_SLICE_ROWS: usize = 64;

/// How `reduce_dim` runs a reduction with `total` outputs over a dim of length `r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DimPlan {
    /// v1, one thread per output: enough outputs (256 per SM) to fill the GPU.
    PerThread,
    /// v3, 8 row lanes per output, over `slices` slices of `rchunk` rows; with more than one
    /// slice, v1 then sums the slices' partials in slice order.
    Lanes {
        /// Slices of the reduced dim (grid y).
        slices: usize,
        /// Rows per slice (the last may be shorter).
        rchunk: usize,
    },
}

/// The plan for `total` outputs over a dim of length `r`. With fewer outputs than 256 threads
/// per SM, v3's lanes beat v1's single thread; a long dim is also cut into slices, aiming at
/// four v3 blocks per SM, each slice at least `MIN_SLICE_ROWS` (64) long.
pub fn dim_plan(total: usize, r: usize, sm_count: usize) -> DimPlan {
    if total >= sm_count * REDUCE_THREADS as usize {
        return DimPlan::PerThread;
    }
    if r < 2 * MIN_SLICE_ROWS {
        return DimPlan::Lanes { slices: 1, rchunk: r };
    }
    let blocks_x = total.div_ceil(32);
    let slices = (4 * sm_count).div_ceil(blocks_x).min(r / MIN_SLICE_ROWS).max(1);
    let rchunk = r.div_ceil(slices);
    DimPlan::Lanes {
        slices: r.div_ceil(rchunk),
        rchunk,
    }
}

#[cfg(test)]
mod tests {
    use super::{dim_plan, DimPlan};

    #[test]
    fn long_dims_with_few_outputs_are_split_and_covered_once() {
        // A column sum of [16384, 1024]: 32 blocks across, 17 slices.
        assert!(matches!(dim_plan(1024, 16384, 132), DimPlan::Lanes { slices: 17, .. }));
        // Enough outputs for v1, or a short dim: no split.
        assert_eq!(dim_plan(1 << 20, 16384, 132), DimPlan::PerThread);
        assert_eq!(dim_plan(1024, 100, 132), DimPlan::Lanes { slices: 1, rchunk: 100 });
        for (total, r) in [(1024, 16384), (33, 1000), (7, 129), (5000, 65536)] {
            let DimPlan::Lanes {
                slices: s,
                rchunk: chunk,
            } = dim_plan(total, r, 132)
            else {
                panic!("{total} x {r}: expected lanes");
            };
            assert!(s * chunk >= r && (s - 1) * chunk < r, "{total} x {r}: {s} x {chunk}");
        }
    }
}
