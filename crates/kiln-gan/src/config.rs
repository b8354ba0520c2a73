//! Training configuration: presets (`toy`, `seed`, `mlp`) and the overrides
//! the CLI applies on top. Serialised to `config.json` in every run.

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The GAN objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GanLoss {
    /// Original minimax: D maximises log D(x) + log(1 − D(G(z))), G minimises log(1 − D(G(z))).
    Bce,
    /// Non-saturating: G maximises log D(G(z)) instead.
    Ns,
    /// Least squares (the article's code): D → 1 on real, 0 on fake; G → 1.
    Lsgan,
    /// Hinge: D minimises relu(1 − D(x)) + relu(1 + D(G(z))); G minimises −D(G(z)).
    Hinge,
    /// Wasserstein with gradient penalty λ·(‖∇D(x̂)‖ − 1)², x̂ between real and fake.
    WganGp,
}

impl std::fmt::Display for GanLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GanLoss::Bce => "bce",
            GanLoss::Ns => "ns",
            GanLoss::Lsgan => "lsgan",
            GanLoss::Hinge => "hinge",
            GanLoss::WganGp => "wgan-gp",
        })
    }
}

impl std::str::FromStr for GanLoss {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "bce" | "minimax" => GanLoss::Bce,
            "ns" | "non-saturating" => GanLoss::Ns,
            "lsgan" | "ls" => GanLoss::Lsgan,
            "hinge" => GanLoss::Hinge,
            "wgan-gp" | "wgangp" => GanLoss::WganGp,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown loss {s:?}: expected bce, ns, lsgan, hinge or wgan-gp"
                )))
            }
        })
    }
}

/// Hidden-layer activation of both networks.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Act {
    /// ReLU
    Relu,
    /// LeakyReLU with the given slope
    LeakyRelu(f64),
}

/// Output activation of the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GOut {
    /// Sigmoid: images in [0, 1].
    Sigmoid,
    /// Tanh: images in [−1, 1] (data rescaled to match).
    Tanh,
    /// None: 2-D points.
    Identity,
}

/// Learning-rate schedule over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// Fixed learning rate.
    Constant,
    /// Linear decay to 0 at the last step.
    Linear,
    /// Cosine decay to 0 at the last step.
    Cosine,
}

impl std::str::FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            _ => Err(Error::Invalid(format!(
                "unknown schedule {s:?}: expected constant, linear or cosine"
            ))),
        }
    }
}

impl Schedule {
    /// Multiplier of the base learning rate at `step` (0-based) of `total`.
    pub fn factor(self, step: u64, total: u64) -> f64 {
        let t = step as f64 / total.max(1) as f64;
        match self {
            Schedule::Constant => 1.0,
            Schedule::Linear => 1.0 - t,
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
        }
    }
}

/// Everything that defines a run. `config.json` holds exactly this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Preset the run started from.
    pub preset: String,
    /// `--data` spec (ring8, grid25, shapes64, fashion-mnist, idx:PATH, images:DIR).
    pub data: String,
    /// Objective.
    pub loss: GanLoss,
    /// Generator steps.
    pub steps: u64,
    /// Batch size.
    pub batch: usize,
    /// Generator learning rate.
    pub lr_g: f64,
    /// Discriminator learning rate.
    pub lr_d: f64,
    /// Adam betas.
    pub betas: (f64, f64),
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Discriminator steps per generator step.
    pub d_steps: usize,
    /// Gradient-penalty weight λ (wgan-gp).
    pub gp_weight: f64,
    /// Latent dimension.
    pub z_dim: usize,
    /// Generator hidden widths.
    pub g_hidden: Vec<usize>,
    /// Discriminator hidden widths.
    pub d_hidden: Vec<usize>,
    /// Hidden activation.
    pub act: Act,
    /// Generator output activation.
    pub g_out: GOut,
    /// The discriminator ends in a sigmoid (the article's model); otherwise it outputs logits.
    pub d_sigmoid: bool,
    /// Exponential moving average of G's weights (decay), used for samples and metrics.
    pub ema: Option<f64>,
    /// PacGAN packing: D judges `pack` samples at once (concatenated), which
    /// penalises mode collapse (Lin et al., 2018). 1 = an ordinary D.
    #[serde(default = "one")]
    pub pack: usize,
    /// Seed of every random number in the run.
    pub seed: u64,
    /// Rayon threads (None: all cores).
    pub threads: Option<usize>,
    /// Device (cpu, cuda, cuda:N).
    pub device: String,
    /// Log metrics every N steps.
    pub log_every: u64,
    /// Write samples every N steps.
    pub sample_every: u64,
    /// Write a checkpoint every N steps (and at the end).
    pub checkpoint_every: u64,
    /// Run directory.
    pub out: PathBuf,
}

fn one() -> usize {
    1
}

/// Names of the presets, for help texts.
pub const PRESETS: &str = "toy (default; 2-D ring8/grid25), seed (the article's model on 3x64x64 images), mlp (larger MLP GAN for Fashion-MNIST)";

impl TrainConfig {
    /// The settings of a preset; `data` picks data-specific settings (grid25).
    pub fn preset(name: &str, data: Option<&str>) -> Result<Self> {
        let mut c = match name {
            "toy" => {
                let data = data.unwrap_or("ring8").to_string();
                let grid = data == "grid25";
                TrainConfig {
                    preset: "toy".into(),
                    loss: GanLoss::Ns,
                    steps: if grid { 30_000 } else { 10_000 },
                    batch: 256,
                    lr_g: if grid { 5e-4 } else { 2e-3 },
                    lr_d: if grid { 1e-3 } else { 4e-3 },
                    betas: (0.5, 0.999),
                    schedule: Schedule::Linear,
                    d_steps: 1,
                    gp_weight: 0.1,
                    z_dim: 2,
                    g_hidden: vec![128, 128, 128],
                    d_hidden: vec![128, 128],
                    act: Act::Relu,
                    g_out: GOut::Identity,
                    d_sigmoid: false,
                    ema: Some(0.999),
                    pack: if grid { 2 } else { 4 },
                    log_every: 100,
                    sample_every: if grid { 5_000 } else { 2_000 },
                    checkpoint_every: if grid { 5_000 } else { 2_000 },
                    out: PathBuf::from(if grid { "runs/toy-grid25" } else { "runs/toy" }),
                    data,
                    ..Self::common()
                }
            }
            // The article's model, objective and batch. Its Adam (lr 1e-3, β₁ 0.9)
            // saturates the sigmoid D on 12288-wide inputs within ~20 steps
            // (D(x) ≈ 1e-7, G's gradient ≈ 1e-19, measured), so the preset uses
            // lr 2e-4, β₁ 0.5; `--lr 1e-3 --beta1 0.9` restores the article's.
            "seed" => TrainConfig {
                preset: "seed".into(),
                data: data.unwrap_or("shapes64").to_string(),
                loss: GanLoss::Lsgan,
                steps: 10_000,
                batch: 100,
                lr_g: 2e-4,
                lr_d: 2e-4,
                betas: (0.5, 0.999),
                schedule: Schedule::Constant,
                d_steps: 1,
                gp_weight: 10.0,
                z_dim: 100,
                g_hidden: vec![128],
                d_hidden: vec![128],
                act: Act::Relu,
                g_out: GOut::Sigmoid,
                d_sigmoid: true,
                ema: None,
                log_every: 100,
                sample_every: 1_000,
                checkpoint_every: 1_000,
                out: PathBuf::from("runs/seed"),
                ..Self::common()
            },
            "mlp" => TrainConfig {
                preset: "mlp".into(),
                data: data.unwrap_or("fashion-mnist").to_string(),
                loss: GanLoss::Ns,
                steps: 20_000,
                batch: 128,
                lr_g: 2e-4,
                lr_d: 2e-4,
                betas: (0.5, 0.999),
                schedule: Schedule::Constant,
                d_steps: 1,
                gp_weight: 10.0,
                z_dim: 100,
                g_hidden: vec![256, 512, 1024],
                d_hidden: vec![512, 256],
                act: Act::LeakyRelu(0.2),
                g_out: GOut::Tanh,
                d_sigmoid: false,
                ema: Some(0.999),
                log_every: 100,
                sample_every: 1_000,
                checkpoint_every: 2_000,
                out: PathBuf::from("runs/mlp"),
                ..Self::common()
            },
            other => return Err(Error::Invalid(format!("unknown preset {other:?}: expected {PRESETS}"))),
        };
        if let Some(d) = data {
            c.data = d.to_string();
        }
        Ok(c)
    }

    fn common() -> Self {
        TrainConfig {
            pack: 1,
            preset: String::new(),
            data: String::new(),
            loss: GanLoss::Ns,
            steps: 0,
            batch: 0,
            lr_g: 0.0,
            lr_d: 0.0,
            betas: (0.9, 0.999),
            schedule: Schedule::Constant,
            d_steps: 1,
            gp_weight: 10.0,
            z_dim: 0,
            g_hidden: vec![],
            d_hidden: vec![],
            act: Act::Relu,
            g_out: GOut::Identity,
            d_sigmoid: false,
            ema: None,
            seed: 0,
            threads: None,
            device: "cpu".into(),
            log_every: 100,
            sample_every: 1000,
            checkpoint_every: 1000,
            out: PathBuf::from("runs/run"),
        }
    }

    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.steps == 0 {
            return bad("--steps must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("--batch must be at least 1".into());
        }
        if !(self.lr_g > 0.0 && self.lr_d > 0.0 && self.lr_g.is_finite() && self.lr_d.is_finite()) {
            return bad(format!(
                "learning rates must be positive and finite (G {}, D {})",
                self.lr_g, self.lr_d
            ));
        }
        if self.pack == 0 || !self.batch.is_multiple_of(self.pack) {
            return bad(format!(
                "--batch ({}) must be a multiple of --pack ({})",
                self.batch, self.pack
            ));
        }
        if self.d_steps == 0 {
            return bad("--d-steps must be at least 1".into());
        }
        if self.z_dim == 0 {
            return bad("--z-dim must be at least 1".into());
        }
        if self.d_sigmoid && matches!(self.loss, GanLoss::Hinge | GanLoss::WganGp) {
            return bad(format!(
                "loss {} needs a discriminator that outputs logits, but preset {} ends D in a sigmoid",
                self.loss, self.preset
            ));
        }
        if let Some(e) = self.ema {
            if !(0.0..1.0).contains(&e) {
                return bad(format!("--ema must be in [0, 1), got {e}"));
            }
        }
        if self.threads == Some(0) {
            return bad("--threads must be at least 1".into());
        }
        Ok(())
    }
}
