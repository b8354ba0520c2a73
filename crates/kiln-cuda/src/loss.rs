//! Loss launch wrappers (`kernels/loss.cu`), mean reduction, forward and backward.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::backend::{check_len, launch_err, CudaBackend};
use crate::error::{CudaError, Result};
use crate::nvrtc::LOSS;
use crate::pool::DeviceBuffer;
use crate::reduce::{partial_count, REDUCE_THREADS};

/// Losses between a prediction and a target of the same shape, averaged over elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairLoss {
    /// mean (p − t)²
    Mse,
    /// mean −[t·log p + (1−t)·log(1−p)], logs clamped at −100 (PyTorch `BCELoss`)
    Bce,
    /// BCE on logits, computed stably (PyTorch `BCEWithLogitsLoss`)
    BceWithLogits,
}

impl PairLoss {
    /// Every pair loss.
    pub const ALL: [PairLoss; 3] = [PairLoss::Mse, PairLoss::Bce, PairLoss::BceWithLogits];

    fn kernels(self) -> (&'static str, &'static str) {
        match self {
            PairLoss::Mse => ("mse_fwd_v1_f32", "mse_bwd_v1_f32"),
            PairLoss::Bce => ("bce_fwd_v1_f32", "bce_bwd_v1_f32"),
            PairLoss::BceWithLogits => ("bce_with_logits_fwd_v1_f32", "bce_with_logits_bwd_v1_f32"),
        }
    }
}

/// Launch configuration of the warp-per-row kernels.
fn rows_config(backend: &CudaBackend, rows: usize) -> LaunchConfig {
    let warps_per_block = REDUCE_THREADS as usize / 32;
    let blocks = rows
        .div_ceil(warps_per_block)
        .clamp(1, backend.sm_count() as usize * 32);
    LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (REDUCE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn rows_cols_i32(what: &str, rows: usize, cols: usize) -> Result<(i32, i32)> {
    let conv = |v: usize| i32::try_from(v).map_err(|_| CudaError::Shape(format!("{what}: {v} exceeds i32")));
    Ok((conv(rows)?, conv(cols)?))
}

impl CudaBackend {
    /// `out[0]` = loss(pred, target) averaged over all elements.
    pub fn loss_fwd(
        &self,
        loss: PairLoss,
        pred: &DeviceBuffer,
        target: &DeviceBuffer,
        out: &mut DeviceBuffer,
    ) -> Result<()> {
        check_len(&format!("{loss:?} target"), target.len(), pred.len())?;
        check_len(&format!("{loss:?} out"), out.len(), 1)?;
        let n = pred.len();
        if n == 0 {
            return self.fill(out, f32::NAN);
        }
        let blocks = partial_count(n);
        let mut partials = self.alloc(blocks)?;
        let name = loss.kernels().0;
        let func = self.function(&LOSS, name)?;
        let n_i64 = n as i64;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(pred.slice())
            .arg(target.slice())
            .arg(&n_i64)
            .arg(partials.slice_mut());
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (REDUCE_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: matches `<loss>_fwd_v1_f32(const float* pred, const float* target,
        // long long n, float* partials)`; pred and target hold n floats, partials one per
        // block; blockDim is LOSS_THREADS.
        unsafe { launch.launch(cfg) }.map_err(launch_err(name))?;
        self.reduce_all_pass(0, &partials, blocks, 1.0 / n as f32, out, 1)
    }

    /// dpred = `dloss[0]` · ∂loss/∂pred (mean reduction). `dloss` is a 1-element buffer.
    pub fn loss_bwd(
        &self,
        loss: PairLoss,
        pred: &DeviceBuffer,
        target: &DeviceBuffer,
        dloss: &DeviceBuffer,
        dpred: &mut DeviceBuffer,
    ) -> Result<()> {
        check_len(&format!("{loss:?} bwd target"), target.len(), pred.len())?;
        check_len(&format!("{loss:?} bwd dloss"), dloss.len(), 1)?;
        check_len(&format!("{loss:?} bwd dpred"), dpred.len(), pred.len())?;
        let n = pred.len();
        if n == 0 {
            return Ok(());
        }
        let name = loss.kernels().1;
        let func = self.function(&LOSS, name)?;
        let n_i64 = n as i64;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(pred.slice())
            .arg(target.slice())
            .arg(dloss.slice())
            .arg(&n_i64)
            .arg(dpred.slice_mut());
        // SAFETY: matches `<loss>_bwd_v1_f32(const float* pred, const float* target,
        // const float* dloss, long long n, float* dpred)`; lengths checked above.
        unsafe { launch.launch(self.grid_1d(n)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// y = log_softmax(x) over the last dim of x [rows, cols].
    pub fn log_softmax_fwd(&self, x: &DeviceBuffer, rows: usize, cols: usize, y: &mut DeviceBuffer) -> Result<()> {
        let what = format!("log_softmax [{rows}, {cols}]");
        check_len(&format!("{what} x"), x.len(), rows * cols)?;
        check_len(&format!("{what} y"), y.len(), rows * cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        let (r, c) = rows_cols_i32(&what, rows, cols)?;
        let name = "log_softmax_fwd_v1_f32";
        let func = self.function(&LOSS, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch.arg(x.slice()).arg(&r).arg(&c).arg(y.slice_mut());
        // SAFETY: matches `log_softmax_fwd_v1_f32(const float* x, int rows, int cols,
        // float* y)`; both hold rows·cols floats; blockDim is a multiple of 32.
        unsafe { launch.launch(rows_config(self, rows)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// dx = dy − exp(y)·Σ_row dy, the backward of log_softmax given its output y.
    pub fn log_softmax_bwd(
        &self,
        y: &DeviceBuffer,
        dy: &DeviceBuffer,
        rows: usize,
        cols: usize,
        dx: &mut DeviceBuffer,
    ) -> Result<()> {
        let what = format!("log_softmax_bwd [{rows}, {cols}]");
        for (name, len) in [("y", y.len()), ("dy", dy.len()), ("dx", dx.len())] {
            check_len(&format!("{what} {name}"), len, rows * cols)?;
        }
        if rows * cols == 0 {
            return Ok(());
        }
        let (r, c) = rows_cols_i32(&what, rows, cols)?;
        let name = "log_softmax_bwd_v1_f32";
        let func = self.function(&LOSS, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(y.slice())
            .arg(dy.slice())
            .arg(&r)
            .arg(&c)
            .arg(dx.slice_mut());
        // SAFETY: matches `log_softmax_bwd_v1_f32(const float* y, const float* dy, int rows,
        // int cols, float* dx)`; all hold rows·cols floats.
        unsafe { launch.launch(rows_config(self, rows)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// `out[0]` = mean over rows of `−log softmax(logits)[row, target[row]]`. Targets are class
    /// indices stored as f32 (kiln tensors are f32); an out-of-range class gives NaN.
    pub fn cross_entropy_fwd(
        &self,
        logits: &DeviceBuffer,
        targets: &DeviceBuffer,
        rows: usize,
        cols: usize,
        out: &mut DeviceBuffer,
    ) -> Result<()> {
        let what = format!("cross_entropy [{rows}, {cols}]");
        check_len(&format!("{what} logits"), logits.len(), rows * cols)?;
        check_len(&format!("{what} targets"), targets.len(), rows)?;
        check_len(&format!("{what} out"), out.len(), 1)?;
        if rows == 0 || cols == 0 {
            return self.fill(out, f32::NAN);
        }
        let (r, c) = rows_cols_i32(&what, rows, cols)?;
        let mut row_loss = self.alloc(rows)?;
        let name = "cross_entropy_fwd_v1_f32";
        let func = self.function(&LOSS, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(logits.slice())
            .arg(targets.slice())
            .arg(&r)
            .arg(&c)
            .arg(row_loss.slice_mut());
        // SAFETY: matches `cross_entropy_fwd_v1_f32(const float* logits, const float* targets,
        // int rows, int cols, float* row_loss)`; lengths checked; the kernel range-checks the
        // class index before using it.
        unsafe { launch.launch(rows_config(self, rows)) }.map_err(launch_err(name))?;
        self.reduce_all(crate::reduce::ReduceOp::Mean, &row_loss, out)
    }

    /// dlogits = `dloss[0]`·(softmax(logits) − onehot(targets)) / rows.
    pub fn cross_entropy_bwd(
        &self,
        logits: &DeviceBuffer,
        targets: &DeviceBuffer,
        dloss: &DeviceBuffer,
        rows: usize,
        cols: usize,
        dlogits: &mut DeviceBuffer,
    ) -> Result<()> {
        let what = format!("cross_entropy_bwd [{rows}, {cols}]");
        check_len(&format!("{what} logits"), logits.len(), rows * cols)?;
        check_len(&format!("{what} targets"), targets.len(), rows)?;
        check_len(&format!("{what} dloss"), dloss.len(), 1)?;
        check_len(&format!("{what} dlogits"), dlogits.len(), rows * cols)?;
        if rows * cols == 0 {
            return Ok(());
        }
        let (r, c) = rows_cols_i32(&what, rows, cols)?;
        let name = "cross_entropy_bwd_v1_f32";
        let func = self.function(&LOSS, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(logits.slice())
            .arg(targets.slice())
            .arg(dloss.slice())
            .arg(&r)
            .arg(&c)
            .arg(dlogits.slice_mut());
        // SAFETY: matches `cross_entropy_bwd_v1_f32(const float* logits, const float* targets,
        // const float* dloss, int rows, int cols, float* dlogits)`; lengths checked above.
        unsafe { launch.launch(rows_config(self, rows)) }.map_err(launch_err(name))?;
        Ok(())
    }
}
