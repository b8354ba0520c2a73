//! Loss modules: named wrappers over kiln-core's loss ops, for code that
//! reads like PyTorch (`let loss = BCEWithLogitsLoss.forward(&logits, &target)?`).
//! All reduce by the mean, PyTorch's default.

use kiln_core::{Result, Tensor};

/// Mean squared error, mean((pred − target)²), as `torch.nn.MSELoss`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MSELoss;

impl MSELoss {
    /// The loss of `pred` against `target` (same shape).
    pub fn forward(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        pred.mse_loss(target)
    }
}

/// Binary cross-entropy on probabilities, as `torch.nn.BCELoss` (logs clamped at −100).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BCELoss;

impl BCELoss {
    /// The loss of probabilities `pred` ∈ [0, 1] against `target` (same shape).
    pub fn forward(&self, pred: &Tensor, target: &Tensor) -> Result<Tensor> {
        pred.bce_loss(target)
    }
}

/// Binary cross-entropy on logits, stable for any input, as `torch.nn.BCEWithLogitsLoss`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BCEWithLogitsLoss;

impl BCEWithLogitsLoss {
    /// The loss of `logits` against `target` (same shape).
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Result<Tensor> {
        logits.bce_with_logits(target)
    }
}

/// Cross-entropy of logits `[N, C]` against class indices, as `torch.nn.CrossEntropyLoss`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrossEntropyLoss;

impl CrossEntropyLoss {
    /// The loss of `logits` `[N, C]` against one class index per row.
    pub fn forward(&self, logits: &Tensor, targets: &[usize]) -> Result<Tensor> {
        logits.cross_entropy(targets)
    }
}
