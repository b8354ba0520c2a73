//! Checkpoints: one safetensors file with every tensor a run needs to
//! continue (G, D, the EMA copy, both optimizers' moments) and metadata for
//! the rest (step, optimizer step counts, RNG positions, data-epoch state).
//! Written to a temporary file and renamed, so a crash never leaves a broken
//! checkpoint behind.

use crate::data::EpochState;
use kiln_core::{no_grad, Error, Result, Tensor};
use kiln_nn::Module;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;

/// File name of the checkpoint inside `checkpoints/`.
pub const FILE: &str = "last.safetensors";
const FORMAT: &str = "kiln-checkpoint-1";

/// The exact position of a ChaCha8 stream: seed, stream and word position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RngState {
    seed: [u8; 32],
    stream: u64,
    word_pos: u128,
}

impl RngState {
    /// Captures where `rng` is.
    pub fn of(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }
    /// An rng continuing exactly where the captured one was.
    pub fn restore(&self) -> ChaCha8Rng {
        use rand::SeedableRng;
        let mut r = ChaCha8Rng::from_seed(self.seed);
        r.set_stream(self.stream);
        r.set_word_pos(self.word_pos);
        r
    }
    fn encode(&self) -> String {
        let seed: String = self.seed.iter().map(|b| format!("{b:02x}")).collect();
        format!("{seed}:{}:{}", self.stream, self.word_pos)
    }
    fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split(':');
        let hex = parts.next()?;
        if hex.len() != 64 {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let stream = parts.next()?.parse().ok()?;
        let word_pos = parts.next()?.parse().ok()?;
        Some(RngState { seed, stream, word_pos })
    }
}

/// Everything saved in a checkpoint.
pub struct Checkpoint {
    /// Named tensors: `G.*`, `D.*`, `G_ema.*`, `opt_g.*`, `opt_d.*`.
    pub tensors: Vec<(String, Tensor)>,
    /// Steps done.
    pub step: u64,
    /// Generator optimizer's step count.
    pub opt_g_step: u64,
    /// Discriminator optimizer's step count.
    pub opt_d_step: u64,
    /// Noise RNG position.
    pub rng_noise: RngState,
    /// Data RNG position.
    pub rng_data: RngState,
    /// Epoch position of a finite data set.
    pub epoch: Option<EpochState>,
}

/// Writes a checkpoint atomically.
pub fn save(path: &Path, ck: &Checkpoint) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("step".into(), ck.step.to_string());
    meta.insert("opt_g_step".into(), ck.opt_g_step.to_string());
    meta.insert("opt_d_step".into(), ck.opt_d_step.to_string());
    meta.insert("rng_noise".into(), ck.rng_noise.encode());
    meta.insert("rng_data".into(), ck.rng_data.encode());
    if let Some(e) = &ck.epoch {
        meta.insert(
            "epoch".into(),
            serde_json::to_string(e).map_err(|e| Error::Invalid(e.to_string()))?,
        );
    }
    kiln_nn::save_tensors(&ck.tensors, meta, path)
}

/// Reads a checkpoint, validating its metadata.
pub fn load(path: &Path) -> Result<Checkpoint> {
    if !path.exists() {
        return Err(Error::Invalid(format!(
            "no checkpoint at {}: nothing to resume (train without --resume first)",
            path.display()
        )));
    }
    let (tensors, meta) = kiln_nn::load_tensors(path)?;
    let bad = |what: &str| Error::bad_file(path.display(), format!("checkpoint metadata: {what}"));
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad("not a kiln checkpoint (format tag missing)"));
    }
    let num = |k: &str| -> Result<u64> { meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| bad(k)) };
    let rng = |k: &str| -> Result<RngState> { meta.get(k).and_then(|v| RngState::decode(v)).ok_or_else(|| bad(k)) };
    let epoch = match meta.get("epoch") {
        Some(e) => Some(serde_json::from_str(e).map_err(|_| bad("epoch"))?),
        None => None,
    };
    Ok(Checkpoint {
        tensors,
        step: num("step")?,
        opt_g_step: num("opt_g_step")?,
        opt_d_step: num("opt_d_step")?,
        rng_noise: rng("rng_noise")?,
        rng_data: rng("rng_data")?,
        epoch,
    })
}

/// The tensors whose names start with `prefix`, with the prefix removed.
pub fn with_prefix(tensors: &[(String, Tensor)], prefix: &str) -> Vec<(String, Tensor)> {
    tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|s| (s.to_string(), t.clone())))
        .collect()
}

/// Copies `<prefix><name>` tensors into the module's parameters in place.
pub fn load_module(module: &dyn Module, tensors: &[(String, Tensor)], prefix: &str) -> Result<()> {
    let found = with_prefix(tensors, prefix);
    no_grad(|| {
        for (name, p) in module.named_parameters() {
            let (_, src) = found
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| Error::Invalid(format!("checkpoint is missing {prefix}{name}")))?;
            if src.shape() != p.shape() {
                return Err(Error::ShapeMismatch {
                    op: "load checkpoint",
                    lhs: p.shape().to_vec(),
                    rhs: src.shape().to_vec(),
                });
            }
            p.copy_(src)?;
        }
        Ok(())
    })
}
