//! Dropout: in training mode each element is zeroed with probability `p` and
//! the survivors are scaled by 1/(1 − p), so E[y] = x; in evaluation mode it
//! is the identity. The mask comes from a ChaCha8 stream the module owns, so
//! a given seed gives the same masks on every machine and thread count.

use crate::Module;
use kiln_core::{Device, Error, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;

/// `torch.nn.Dropout(p)` with its own seeded random stream.
pub struct Dropout {
    p: f64,
    training: bool,
    seed: u64,
    // forward takes &self; the stream advances on every training forward.
    rng: Mutex<ChaCha8Rng>,
}

impl Dropout {
    /// Dropout with drop probability `p` ∈ [0, 1], drawing masks from
    /// `ChaCha8Rng::seed_from_u64(seed)`. Starts in training mode.
    pub fn new(p: f64, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Invalid(format!("Dropout: p = {p} must lie in [0, 1]")));
        }
        Ok(Dropout {
            p,
            training: true,
            seed,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// The seed given at construction.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Position in the random stream (in 32-bit words), for checkpoints.
    pub fn rng_word_pos(&self) -> u128 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).get_word_pos()
    }

    /// Restores a position saved by [`Dropout::rng_word_pos`]: the next masks
    /// are the ones that would have followed it.
    pub fn set_rng_word_pos(&self, word_pos: u128) {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_word_pos(word_pos);
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training || self.p == 0.0 {
            return Ok(x.clone());
        }
        // p = 1 drops everything (PyTorch returns zeros rather than 0·∞).
        let keep_scale = if self.p < 1.0 { 1.0 / (1.0 - self.p) } else { 0.0 };
        let mask: Vec<f64> = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..x.numel())
                .map(|_| if rng.gen::<f64>() < self.p { 0.0 } else { keep_scale })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), Device::Cpu)?
            .to_dtype(x.dtype())?
            .to(x.device())?;
        // d/dx (x·mask) = mask: dropped elements get no gradient.
        x.mul(&mask)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn set_training(&mut self, on: bool) {
        self.training = on;
    }
    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}
