//! The training loop: builds G and D from a [`TrainConfig`], alternates D and
//! G steps, logs metrics, writes samples, plots and checkpoints, and resumes
//! bit for bit.
//!
//! One step (with `d_steps = 1`): draw a real batch and noise; fake = G(z);
//! D step on real and `fake.detach()`; G step through D on the same fake.

use crate::checkpoint::{self, RngState};
use crate::config::{Act, GOut, GanLoss, TrainConfig};
use crate::data::{parse_data_spec, Dataset};
use crate::losses::{d_loss, g_loss, gradient_penalty};
use crate::metrics::{mode_metrics, ModeMetrics};
use crate::plot::{write_loss_plot, write_scatter_plot, Scatter, Series};
use crate::png_out::{image_grid, write_png_rgb, GridOptions};
use kiln_core::{no_grad, set_anomaly_enabled, DType, Device, Error, KeepWarm, Result, Tensor};
use kiln_nn::{Activation, Adam, AdamConfig, Linear, Module, Optimizer, Sequential};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Samples used for the 2-D metrics (modes covered, high quality, reverse KL).
pub const EVAL_SAMPLES: usize = 2500;
/// Images in a sample grid.
const GRID_SAMPLES: usize = 64;

/// An MLP: Linear → act → … → Linear → out.
pub fn mlp<R: rand::Rng>(dims: &[usize], act: Act, out: Option<Activation>, rng: &mut R) -> Result<Sequential> {
    let mut net = Sequential::new();
    for (i, w) in dims.windows(2).enumerate() {
        net = net.push(Linear::new(w[0], w[1], true, rng)?);
        if i + 2 < dims.len() {
            net = net.push(match act {
                Act::Relu => Activation::Relu,
                Act::LeakyRelu(s) => Activation::LeakyRelu(s),
            });
        }
    }
    if let Some(o) = out {
        net = net.push(o);
    }
    Ok(net)
}

/// Generator and discriminator of a config, initialised from `rng`.
pub fn build_models(c: &TrainConfig, data_dim: usize, rng: &mut ChaCha8Rng) -> Result<(Sequential, Sequential)> {
    let mut gd = vec![c.z_dim];
    gd.extend(&c.g_hidden);
    gd.push(data_dim);
    let g_out = match c.g_out {
        GOut::Sigmoid => Some(Activation::Sigmoid),
        GOut::Tanh => Some(Activation::Tanh),
        GOut::Identity => None,
    };
    let g = mlp(&gd, c.act, g_out, rng)?;
    let mut dd = vec![data_dim * c.pack];
    dd.extend(&c.d_hidden);
    dd.push(1);
    let d = mlp(&dd, c.act, c.d_sigmoid.then_some(Activation::Sigmoid), rng)?;
    Ok((g, d))
}

/// Numbers of one training step.
#[derive(Clone, Debug, Default)]
pub struct StepStats {
    /// Discriminator loss.
    pub loss_d: f64,
    /// Generator loss.
    pub loss_g: f64,
    /// Mean D(x) on real data, as a probability.
    pub d_real: f64,
    /// Mean D(G(z)), as a probability.
    pub d_fake: f64,
    /// L2 norm of D's gradient (last D step).
    pub grad_norm_d: f64,
    /// L2 norm of G's gradient.
    pub grad_norm_g: f64,
}

/// What a finished (or interrupted) run reports.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Steps done in total.
    pub steps: u64,
    /// Seconds spent in this process's training loop.
    pub seconds: f64,
    /// Steps per second in this process.
    pub steps_per_sec: f64,
    /// Last step's numbers.
    pub last: StepStats,
    /// 2-D metrics at the end (mixture data only).
    pub modes: Option<ModeMetrics>,
    /// True when stopped early (Ctrl-C or `stop_at`).
    pub interrupted: bool,
    /// Run directory.
    pub out: PathBuf,
}

/// A GAN run in progress.
pub struct Trainer {
    /// The run's settings.
    pub config: TrainConfig,
    /// Generator.
    pub g: Sequential,
    /// Discriminator.
    pub d: Sequential,
    /// EMA copy of the generator's weights (used for samples and metrics).
    pub g_ema: Option<Sequential>,
    /// Where models, batches and noise live (`--device`).
    pub device: Device,
    /// Generator optimizer.
    pub opt_g: Adam,
    /// Discriminator optimizer.
    pub opt_d: Adam,
    data: Dataset,
    rng_noise: ChaCha8Rng,
    rng_data: ChaCha8Rng,
    /// Steps done.
    pub step: u64,
    dim: usize,
    sample_noise: Tensor,
    eval_noise: Tensor,
    history: Vec<(u64, f64, f64)>,
}

/// The device of `--device`, checked: creating a tensor there fails with `NoDevice` (and a
/// reason) when the build has no `cuda` feature or the GPU cannot be opened.
fn device_of(c: &TrainConfig) -> Result<Device> {
    let d: Device = c.device.parse()?;
    Tensor::zeros(&[], DType::F32, d)?;
    Ok(d)
}

impl Trainer {
    /// A fresh run: models initialised from the seed, output directory
    /// prepared (previous outputs of a run with the same directory removed).
    pub fn new(config: TrainConfig) -> Result<Self> {
        config.validate()?;
        let device = device_of(&config)?;
        let spec = parse_data_spec(&config.data)?;
        let data = spec.load(spec.default_image_shape())?;
        let dim = data.dim();
        let mut init = ChaCha8Rng::seed_from_u64(config.seed);
        // Initialised on the host from the seed (the same weights on every device), then moved.
        let (mut g, mut d) = build_models(&config, dim, &mut init)?;
        g.to_device(device)?;
        d.to_device(device)?;
        let g_ema = match config.ema {
            Some(_) => {
                let (mut copy, _) = build_models(&config, dim, &mut ChaCha8Rng::seed_from_u64(config.seed))?;
                copy.to_device(device)?;
                Some(copy)
            }
            None => None,
        };
        let adam = |lr| AdamConfig {
            lr,
            betas: config.betas,
            ..Default::default()
        };
        let opt_g = Adam::new(g.parameters(), adam(config.lr_g));
        let opt_d = Adam::new(d.parameters(), adam(config.lr_d));
        let mut fixed = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5a4d_504c_4553);
        let n_sample = if data.mixture().is_some() {
            EVAL_SAMPLES
        } else {
            GRID_SAMPLES
        };
        let sample_noise = Tensor::randn(&[n_sample, config.z_dim], DType::F32, Device::Cpu, &mut fixed)?.to(device)?;
        let eval_noise =
            Tensor::randn(&[EVAL_SAMPLES, config.z_dim], DType::F32, Device::Cpu, &mut fixed)?.to(device)?;
        let t = Trainer {
            rng_noise: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1)),
            rng_data: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(2)),
            config,
            g,
            d,
            g_ema,
            device,
            opt_g,
            opt_d,
            data,
            step: 0,
            dim,
            sample_noise,
            eval_noise,
            history: Vec::new(),
        };
        Ok(t)
    }

    /// Prepares a fresh run directory: writes config.json, clears old outputs.
    pub fn init_run_dir(&self) -> Result<()> {
        let out = &self.config.out;
        for sub in ["samples", "checkpoints"] {
            let p = out.join(sub);
            if p.exists() {
                fs::remove_dir_all(&p).map_err(|e| Error::io(p.display(), e))?;
            }
        }
        for name in ["metrics.jsonl", "generator.safetensors", "losses.png"] {
            let old = out.join(name);
            if old.exists() {
                fs::remove_file(&old).map_err(|e| Error::io(old.display(), e))?;
            }
        }
        fs::create_dir_all(out.join("samples")).map_err(|e| Error::io(out.display(), e))?;
        fs::create_dir_all(out.join("checkpoints")).map_err(|e| Error::io(out.display(), e))?;
        let text = serde_json::to_string_pretty(&self.config).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::png_out::write_atomic(&out.join("config.json"), text.as_bytes())
    }

    /// Continues the run in `dir` from its last checkpoint; `steps` (if
    /// given) replaces the total number of steps.
    pub fn resume(dir: &Path, steps: Option<u64>) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.exists() {
            return Err(Error::Invalid(format!(
                "no run to resume in {}: {} is missing (train without --resume first)",
                dir.display(),
                cfg_path.display()
            )));
        }
        let text = fs::read_to_string(&cfg_path).map_err(|e| Error::io(cfg_path.display(), e))?;
        let mut config: TrainConfig =
            serde_json::from_str(&text).map_err(|e| Error::bad_file(cfg_path.display(), e.to_string()))?;
        config.out = dir.to_path_buf();
        if let Some(s) = steps {
            config.steps = s;
        }
        let mut t = Trainer::new(config)?;
        let ck = checkpoint::load(&dir.join("checkpoints").join(checkpoint::FILE))?;
        t.restore(ck)?;
        t.truncate_metrics()?;
        Ok(t)
    }

    fn restore(&mut self, ck: checkpoint::Checkpoint) -> Result<()> {
        checkpoint::load_module(&self.g, &ck.tensors, "G.")?;
        checkpoint::load_module(&self.d, &ck.tensors, "D.")?;
        if let Some(e) = &self.g_ema {
            checkpoint::load_module(e, &ck.tensors, "G_ema.")?;
        }
        self.opt_g
            .load_state(&checkpoint::with_prefix(&ck.tensors, "opt_g."), ck.opt_g_step)?;
        self.opt_d
            .load_state(&checkpoint::with_prefix(&ck.tensors, "opt_d."), ck.opt_d_step)?;
        self.rng_noise = ck.rng_noise.restore();
        self.rng_data = ck.rng_data.restore();
        if let Some(es) = ck.epoch {
            self.data.set_epoch_state(es)?;
        }
        self.step = ck.step;
        Ok(())
    }

    /// Drops metrics lines written after the checkpoint and reloads the loss history.
    fn truncate_metrics(&mut self) -> Result<()> {
        let path = self.config.out.join("metrics.jsonl");
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(());
        };
        let mut kept = String::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let step = v["step"].as_u64().unwrap_or(u64::MAX);
            if step <= self.step {
                kept.push_str(line);
                kept.push('\n');
                if let (Some(a), Some(b)) = (v["loss_d"].as_f64(), v["loss_g"].as_f64()) {
                    self.history.push((step, a, b));
                }
            }
        }
        crate::png_out::write_atomic(&path, kept.as_bytes())
    }

    fn real_batch(&mut self) -> Result<Tensor> {
        let (data, rng, tanh) = (&mut self.data, &mut self.rng_data, self.config.g_out == GOut::Tanh);
        Tensor::from_fill(&[self.config.batch, self.dim], self.device, |batch: &mut [f32]| {
            data.batch_into(rng, batch);
            if tanh {
                batch.iter_mut().for_each(|x| *x = *x * 2.0 - 1.0);
            }
        })
    }

    fn noise(&mut self, n: usize) -> Result<Tensor> {
        // Drawn on the host (the same noise on every device), then uploaded.
        Tensor::randn(&[n, self.config.z_dim], DType::F32, Device::Cpu, &mut self.rng_noise)?.to(self.device)
    }

    /// Mean of D's output as a probability.
    fn prob(&self, out: &Tensor) -> Result<f64> {
        let p = if self.config.d_sigmoid {
            out.clone()
        } else {
            no_grad(|| out.sigmoid())?
        };
        p.mean()?.item()
    }

    fn apply_schedule(&mut self) {
        let f = self.config.schedule.factor(self.step, self.config.steps);
        self.opt_g.set_lr(self.config.lr_g * f);
        self.opt_d.set_lr(self.config.lr_d * f);
    }

    /// Checks a loss and the gradients for NaN/Inf before the update; on a
    /// bad gradient, reruns `recompute` in anomaly mode to name the op.
    /// Returns the loss and the gradient norm (each read from the device once).
    fn check_finite(
        &self,
        what: &str,
        loss: &Tensor,
        params: &[Tensor],
        recompute: impl Fn() -> Result<()>,
    ) -> Result<(f64, f64)> {
        let v = loss.item()?;
        if !v.is_finite() {
            return Err(Error::Invalid(format!(
                "training diverged at step {}: {what} is {v} (produced by op `{}`); the last good checkpoint is kept",
                self.step + 1,
                loss.grad_fn_name().unwrap_or("input")
            )));
        }
        let norm = grad_norm(params)?;
        // Beyond √f32::MAX a squared gradient overflows Adam's second moment.
        if norm > 1.8e19 && norm.is_finite() {
            return Err(Error::Invalid(format!(
                "training diverged at step {}: the gradient norm of {what} is {norm:.3e} (it would overflow Adam's state); \
                 the last good checkpoint is kept",
                self.step + 1
            )));
        }
        if !norm.is_finite() {
            params.iter().for_each(Tensor::zero_grad);
            set_anomaly_enabled(true);
            let r = recompute();
            set_anomaly_enabled(false);
            let detail = match r {
                Err(e) => e.to_string(),
                Ok(()) => "a non-finite gradient".into(),
            };
            return Err(Error::Invalid(format!(
                "training diverged at step {} in the gradient of {what}: {detail}; the last good checkpoint is kept",
                self.step + 1
            )));
        }
        Ok((v, norm))
    }

    /// One generator step with its `d_steps` discriminator steps.
    pub fn train_step(&mut self) -> Result<StepStats> {
        // Through the step the pool's other workers poll between its small
        // parallel products instead of sleeping (each wake-up costs about
        // what a split saves).
        let _warm = (self.device == Device::Cpu).then(KeepWarm::new);
        self.apply_schedule();
        let (loss_kind, sig, b) = (self.config.loss, self.config.d_sigmoid, self.config.batch);
        let mut stats = StepStats::default();
        let mut fake = None;
        for k in 0..self.config.d_steps {
            let real = self.real_batch()?;
            let z = self.noise(b)?;
            let f = self.g.forward(&z)?;
            let eps = if loss_kind == GanLoss::WganGp {
                Some(
                    Tensor::rand(&[b / self.config.pack, 1], DType::F32, Device::Cpu, &mut self.rng_noise)?
                        .to(self.device)?,
                )
            } else {
                None
            };
            let pack = |t: &Tensor| t.reshape(&[b / self.config.pack, self.dim * self.config.pack]);
            let d_forward = |d: &Sequential, f: &Tensor| -> Result<(Tensor, Tensor, Tensor)> {
                let real = pack(&real)?;
                let f = pack(f)?;
                // Both batches through each of D's linear layers together:
                // one read of each weight for the two (same values as two forwards).
                let ys = d.forward_many(&[&real, &f.detach()])?;
                let (d_real, d_fake) = (ys[0].clone(), ys[1].clone());
                let mut loss = d_loss(loss_kind, &d_real, &d_fake, sig)?;
                if let Some(eps) = &eps {
                    let gp = gradient_penalty(d, &real, &f.detach(), eps)?;
                    loss = loss.add(&gp.mul_scalar(self.config.gp_weight)?)?;
                }
                Ok((loss, d_real, d_fake))
            };
            let (loss, d_real, d_fake) = d_forward(&self.d, &f)?;
            self.opt_d.zero_grad();
            loss.backward()?;
            (stats.loss_d, stats.grad_norm_d) = self.check_finite("loss_d", &loss, self.opt_d.params(), || {
                d_forward(&self.d, &f)?.0.backward()
            })?;
            self.opt_d.step()?;
            stats.d_real = self.prob(&d_real)?;
            stats.d_fake = self.prob(&d_fake)?;
            if k + 1 == self.config.d_steps {
                fake = Some(f);
            }
        }
        // G step through D, reusing the last fake batch.
        let fake = fake.expect("d_steps >= 1");
        let packed = fake.reshape(&[b / self.config.pack, self.dim * self.config.pack])?;
        let loss = g_loss(loss_kind, &self.d.forward(&packed)?, sig)?;
        self.opt_g.zero_grad();
        // Only G's gradients: D's weight gradients (a GEMM per D layer) are
        // never computed, only the input gradients that flow through D.
        loss.backward_to(self.opt_g.params())?;
        (stats.loss_g, stats.grad_norm_g) = self.check_finite("loss_g", &loss, self.opt_g.params(), || Ok(()))?;
        self.opt_g.step()?;
        self.opt_d.zero_grad();
        if let (Some(ema), Some(decay)) = (&self.g_ema, self.config.ema) {
            update_ema(ema, &self.g, decay)?;
        }
        self.step += 1;
        Ok(stats)
    }

    /// The generator used for samples and metrics (the EMA copy when enabled).
    pub fn sampler(&self) -> &Sequential {
        self.g_ema.as_ref().unwrap_or(&self.g)
    }

    /// G's outputs for the fixed evaluation noise, as data in the dataset's range.
    pub fn generate(&self, z: &Tensor) -> Result<Vec<f32>> {
        let out = no_grad(|| self.sampler().forward(z))?.to_vec::<f32>()?;
        Ok(if self.config.g_out == GOut::Tanh {
            out.into_iter().map(|v| (v + 1.0) * 0.5).collect()
        } else {
            out
        })
    }

    /// 2-D metrics on [`EVAL_SAMPLES`] samples (None for image data).
    pub fn mode_metrics(&self) -> Result<Option<ModeMetrics>> {
        let Some(mix) = self.data.mixture() else {
            return Ok(None);
        };
        let samples = self.generate(&self.eval_noise)?;
        Ok(Some(mode_metrics(&samples, &mix.modes(), mix.std())?))
    }

    /// Writes the sample picture for the current step and the loss plot.
    pub fn write_samples(&self) -> Result<()> {
        let dir = self.config.out.join("samples");
        let path = dir.join(format!("step_{:06}.png", self.step));
        let gen = self.generate(&self.sample_noise)?;
        if let Some(mix) = self.data.mixture() {
            let mut real = Vec::new();
            mix.sample(
                EVAL_SAMPLES,
                &mut ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x7265_616c),
                &mut real,
            );
            let title = format!("{} step {}", mix.name(), self.step);
            write_scatter_plot(
                &path,
                &Scatter {
                    title: &title,
                    range: mix.plot_range(),
                    real: &real,
                    generated: &gen,
                    modes: &mix.modes(),
                },
            )?;
        } else if let Some(shape) = self.data.image_shape() {
            let n = gen.len() / self.dim;
            let img = image_grid(&gen, n, shape, &GridOptions::default())?;
            write_png_rgb(&path, img.width as u32, img.height as u32, &img.rgb)?;
        }
        self.write_loss_plot()
    }

    fn write_loss_plot(&self) -> Result<()> {
        if self.history.is_empty() {
            return Ok(());
        }
        let series = vec![
            Series {
                name: "loss_d".into(),
                points: self.history.iter().map(|&(s, d, _)| (s as f64, d)).collect(),
            },
            Series {
                name: "loss_g".into(),
                points: self.history.iter().map(|&(s, _, g)| (s as f64, g)).collect(),
            },
        ];
        write_loss_plot(
            self.config.out.join("losses.png"),
            &format!("{} losses", self.config.preset),
            &series,
        )
    }

    /// Writes the checkpoint (all state needed to resume) and the generator's
    /// state dict with PyTorch names, both atomically.
    pub fn save_checkpoint(&self) -> Result<()> {
        let mut tensors = Vec::new();
        let mut add = |prefix: &str, named: Vec<(String, Tensor)>| {
            tensors.extend(named.into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)));
        };
        add("G.", self.g.named_parameters());
        add("D.", self.d.named_parameters());
        if let Some(e) = &self.g_ema {
            add("G_ema.", e.named_parameters());
        }
        let (sg, step_g) = self.opt_g.state();
        let (sd, step_d) = self.opt_d.state();
        add("opt_g.", sg);
        add("opt_d.", sd);
        let ck = checkpoint::Checkpoint {
            tensors,
            step: self.step,
            opt_g_step: step_g,
            opt_d_step: step_d,
            rng_noise: RngState::of(&self.rng_noise),
            rng_data: RngState::of(&self.rng_data),
            epoch: self.data.epoch_state(),
        };
        let dir = self.config.out.join("checkpoints");
        fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
        checkpoint::save(&dir.join(checkpoint::FILE), &ck)?;
        kiln_nn::save_state_dict(self.sampler(), self.config.out.join("generator.safetensors"))
    }

    fn log(&mut self, stats: &StepStats, steps_per_sec: f64, modes: Option<&ModeMetrics>) -> Result<()> {
        let mut v = json!({
            "step": self.step,
            "loss_d": stats.loss_d,
            "loss_g": stats.loss_g,
            "d_real": stats.d_real,
            "d_fake": stats.d_fake,
            "grad_norm_d": stats.grad_norm_d,
            "grad_norm_g": stats.grad_norm_g,
            "lr_g": self.opt_g.lr(),
            "lr_d": self.opt_d.lr(),
            "steps_per_sec": steps_per_sec,
        });
        if let Some(m) = modes {
            v["modes_covered"] = json!(m.modes_covered);
            v["modes_total"] = json!(m.modes_total);
            v["high_quality"] = json!(m.high_quality_fraction);
            v["reverse_kl"] = json!(m.reverse_kl);
        }
        self.history.push((self.step, stats.loss_d, stats.loss_g));
        let path = self.config.out.join("metrics.jsonl");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        writeln!(f, "{v}").map_err(|e| Error::io(path.display(), e))
    }

    /// Trains until `config.steps` (or `stop_at`, or until `stop` is set),
    /// logging, sampling and checkpointing on the way.
    pub fn run(&mut self, stop: &AtomicBool, stop_at: Option<u64>, progress: bool) -> Result<Summary> {
        let total = self.config.steps;
        let bar = if progress {
            let pb = indicatif::ProgressBar::new(total);
            pb.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}<{eta}] {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            pb.set_position(self.step);
            Some(pb)
        } else {
            None
        };
        let start = Instant::now();
        let first = self.step;
        let mut window = (Instant::now(), self.step);
        let mut last = StepStats::default();
        let mut interrupted = false;
        while self.step < total {
            if stop.load(Ordering::Relaxed) || stop_at.is_some_and(|s| self.step >= s) {
                interrupted = true;
                break;
            }
            last = self.train_step()?;
            let s = self.step;
            let sample_now = s.is_multiple_of(self.config.sample_every) || s == total;
            if s.is_multiple_of(self.config.log_every) || sample_now {
                let dt = window.0.elapsed().as_secs_f64();
                let sps = (s - window.1) as f64 / dt.max(1e-9);
                window = (Instant::now(), s);
                let modes = if sample_now { self.mode_metrics()? } else { None };
                self.log(&last, sps, modes.as_ref())?;
                if let Some(pb) = &bar {
                    let mut msg = format!(
                        "D {:.3} G {:.3} D(x) {:.2} D(G(z)) {:.2}",
                        last.loss_d, last.loss_g, last.d_real, last.d_fake
                    );
                    if let Some(m) = &modes {
                        msg.push_str(&format!(
                            " modes {}/{} hq {:.1}%",
                            m.modes_covered,
                            m.modes_total,
                            100.0 * m.high_quality_fraction
                        ));
                    }
                    pb.set_message(msg);
                }
            }
            if sample_now {
                self.write_samples()?;
            }
            if s.is_multiple_of(self.config.checkpoint_every) || s == total {
                self.save_checkpoint()?;
            }
            if let Some(pb) = &bar {
                pb.set_position(s);
            }
        }
        if interrupted {
            self.save_checkpoint()?;
            self.write_loss_plot()?;
        }
        if let Some(pb) = bar {
            pb.finish_and_clear();
        }
        let seconds = start.elapsed().as_secs_f64();
        Ok(Summary {
            steps: self.step,
            seconds,
            steps_per_sec: (self.step - first) as f64 / seconds.max(1e-9),
            last,
            modes: self.mode_metrics()?,
            interrupted,
            out: self.config.out.clone(),
        })
    }
}

/// L2 norm of the gradients of `params` (missing gradients count as zero).
/// Host gradients are summed in f64 ([`Tensor::sum_squares_f64`]); device
/// ones on the device, with one scalar read for all of them (one wait for the
/// GPU per call instead of one per parameter).
pub fn grad_norm(params: &[Tensor]) -> Result<f64> {
    let mut sq = 0.0f64;
    let mut on_device: Option<Tensor> = None;
    for p in params {
        let Some(g) = p.grad() else { continue };
        if g.is_cuda() {
            let s = no_grad(|| g.mul(&g)?.sum())?;
            on_device = Some(match on_device {
                Some(total) => no_grad(|| total.add(&s))?,
                None => s,
            });
        } else {
            sq += g.sum_squares_f64()?;
        }
    }
    if let Some(total) = on_device {
        sq += total.item()?;
    }
    Ok(sq.sqrt())
}

/// ema ← decay·ema + (1 − decay)·params, in place.
fn update_ema(ema: &Sequential, model: &Sequential, decay: f64) -> Result<()> {
    no_grad(|| {
        for (e, p) in ema.parameters().iter().zip(model.parameters()) {
            e.mul_scalar_(decay)?;
            e.add_scaled_(&p, 1.0 - decay)?;
        }
        Ok(())
    })
}
