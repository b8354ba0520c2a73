//! Losses, all reduced by the mean as PyTorch's defaults. Each takes the
//! prediction first and the target second; shapes must match exactly.
//!
//! bce and bce_with_logits compute their forward with plain kernels and carry
//! an explicit backward rule (cheaper and exact at the clamp boundaries);
//! mse and cross_entropy are compositions of differentiable ops.

use super::check_same;
use crate::autograd::{no_grad, record, SavedTensor};
use crate::{Device, Error, Result, Tensor};
use smallvec::smallvec;

fn check_pair(op: &'static str, pred: &Tensor, target: &Tensor) -> Result<()> {
    check_same(op, pred, target)?;
    if pred.shape() != target.shape() {
        return Err(Error::ShapeMismatch {
            op,
            lhs: pred.shape().to_vec(),
            rhs: target.shape().to_vec(),
        });
    }
    Ok(())
}

impl Tensor {
    /// Mean squared error: mean((pred − target)²).
    #[track_caller]
    pub fn mse_loss(&self, target: &Tensor) -> Result<Tensor> {
        check_pair("mse_loss", self, target)?;
        let d = self.sub(target)?;
        d.mul(&d)?.mean()
    }

    /// Binary cross-entropy on probabilities p ∈ [0, 1]:
    /// −mean(t·log p + (1 − t)·log(1 − p)), each log clamped at −100 as PyTorch does.
    /// dp = (p − t) / max(p(1 − p), 1e−12) / n; dt = (log(1 − p) − log p) / n.
    #[track_caller]
    pub fn bce_loss(&self, target: &Tensor) -> Result<Tensor> {
        check_pair("bce_loss", self, target)?;
        let out = no_grad(|| -> Result<Tensor> {
            let logp = self.log()?.clamp(-100.0, f64::INFINITY)?;
            let log1mp = self.rsub_scalar(1.0)?.log()?.clamp(-100.0, f64::INFINITY)?;
            let t1 = target.rsub_scalar(1.0)?;
            target.mul(&logp)?.add(&t1.mul(&log1mp)?)?.mean()?.neg()
        })?;
        let (p, t) = (SavedTensor::new(self), SavedTensor::new(target));
        let (rp, rt) = (self.0.requires_grad, target.0.requires_grad);
        let n = self.numel().max(1) as f64;
        Ok(record("bce_loss", out, &[self, target], move |ctx, g| {
            let (p, t) = (ctx.unpack(&p)?, ctx.unpack(&t)?);
            let scale = g.mul_scalar(1.0 / n)?;
            let gp = if rp {
                let denom = p.mul(&p.rsub_scalar(1.0)?)?.clamp(1e-12, f64::INFINITY)?;
                Some(p.sub(&t)?.div(&denom)?.mul(&scale)?)
            } else {
                None
            };
            let gt = if rt {
                let logp = p.log()?.clamp(-100.0, f64::INFINITY)?;
                let log1mp = p.rsub_scalar(1.0)?.log()?.clamp(-100.0, f64::INFINITY)?;
                Some(log1mp.sub(&logp)?.mul(&scale)?)
            } else {
                None
            };
            Ok(smallvec![gp, gt])
        }))
    }

    /// Binary cross-entropy on logits, stable for any x:
    /// mean(max(x, 0) − x·t + log(1 + e^−|x|)). dx = (σ(x) − t)/n; dt = −x/n.
    #[track_caller]
    pub fn bce_with_logits(&self, target: &Tensor) -> Result<Tensor> {
        check_pair("bce_with_logits", self, target)?;
        let out = no_grad(|| -> Result<Tensor> {
            let soft = self.abs()?.neg()?.softplus()?;
            self.relu()?.sub(&self.mul(target)?)?.add(&soft)?.mean()
        })?;
        let (x, t) = (SavedTensor::new(self), SavedTensor::new(target));
        let (rx, rt) = (self.0.requires_grad, target.0.requires_grad);
        let n = self.numel().max(1) as f64;
        Ok(record("bce_with_logits", out, &[self, target], move |ctx, g| {
            let (x, t) = (ctx.unpack(&x)?, ctx.unpack(&t)?);
            let scale = g.mul_scalar(1.0 / n)?;
            let gx = if rx {
                Some(x.sigmoid()?.sub(&t)?.mul(&scale)?)
            } else {
                None
            };
            let gt = if rt { Some(x.neg()?.mul(&scale)?) } else { None };
            Ok(smallvec![gx, gt])
        }))
    }

    /// Cross-entropy of logits [N, C] against class indices (one per row):
    /// −mean over rows of `log_softmax(x)[n, targets[n]]`.
    #[track_caller]
    pub fn cross_entropy(&self, targets: &[usize]) -> Result<Tensor> {
        if self.rank() != 2 || self.shape()[0] != targets.len() {
            return Err(Error::BadShape {
                op: "cross_entropy",
                msg: format!(
                    "logits {:?} need shape [N, C] with N = {} targets",
                    self.shape(),
                    targets.len()
                ),
            });
        }
        let (n, c) = (self.shape()[0], self.shape()[1]);
        if let Some(bad) = targets.iter().find(|&&t| t >= c) {
            return Err(Error::BadShape {
                op: "cross_entropy",
                msg: format!("target class {bad} out of range for {c} classes"),
            });
        }
        let mut onehot = vec![0.0f64; n * c];
        for (i, &t) in targets.iter().enumerate() {
            onehot[i * c + t] = 1.0;
        }
        // Built on the host, converted, then copied to the logits' device.
        let onehot = Tensor::from_vec(onehot, &[n, c], Device::Cpu)?
            .to_dtype(self.dtype())?
            .to(self.device())?;
        self.log_softmax(1)?
            .mul(&onehot)?
            .sum()?
            .mul_scalar(-1.0 / n.max(1) as f64)
    }
}
