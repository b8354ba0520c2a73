//! `kiln train`: a preset plus flag overrides → a run directory.

use kiln_gan::config::Act;
use kiln_gan::{TrainConfig, Trainer};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Flags of `kiln train`. Every preset setting can be overridden.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Preset: toy (ring8/grid25, default), seed (the article's model), mlp (Fashion-MNIST).
    #[arg(long, default_value = "toy")]
    preset: String,
    /// Data: ring8, grid25, shapes64, fashion-mnist, mnist, idx:PATH, images:DIR.
    #[arg(long)]
    data: Option<String>,
    /// Loss: bce, ns, lsgan, hinge, wgan-gp.
    #[arg(long)]
    loss: Option<String>,
    /// Generator steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Batch size.
    #[arg(long)]
    batch: Option<usize>,
    /// Learning rate of both networks (see --lr-d).
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Learning rate of the discriminator (defaults to --lr).
    #[arg(long, allow_negative_numbers = true)]
    lr_d: Option<f64>,
    /// Adam β₁.
    #[arg(long, allow_negative_numbers = true)]
    beta1: Option<f64>,
    /// Learning-rate schedule: constant, linear, cosine.
    #[arg(long)]
    schedule: Option<String>,
    /// Discriminator steps per generator step.
    #[arg(long)]
    d_steps: Option<usize>,
    /// Gradient-penalty weight (wgan-gp).
    #[arg(long, allow_negative_numbers = true)]
    gp_weight: Option<f64>,
    /// Latent dimension.
    #[arg(long)]
    z_dim: Option<usize>,
    /// Hidden widths of G, comma-separated (e.g. 256,512).
    #[arg(long)]
    g_hidden: Option<String>,
    /// Hidden widths of D, comma-separated.
    #[arg(long)]
    d_hidden: Option<String>,
    /// Hidden activation: relu or leaky-relu[:SLOPE].
    #[arg(long)]
    act: Option<String>,
    /// EMA decay of G's weights for samples (0 disables).
    #[arg(long, allow_negative_numbers = true)]
    ema: Option<f64>,
    /// PacGAN packing: D judges this many samples at once (1 = off).
    #[arg(long)]
    pack: Option<usize>,
    /// Seed of every random number in the run.
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Run directory (default runs/<preset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out (or the preset's directory) from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Log metrics every N steps.
    #[arg(long)]
    log_every: Option<u64>,
    /// Write samples every N steps.
    #[arg(long)]
    sample_every: Option<u64>,
    /// Write a checkpoint every N steps.
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Stop (with a checkpoint) once this many steps are done, as if interrupted.
    #[arg(long)]
    stop_at: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn widths(s: &str, flag: &str) -> kiln_core::Result<Vec<usize>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .ok()
                .filter(|&w| w > 0)
                .ok_or_else(|| kiln_core::Error::Invalid(format!("{flag}: {p:?} is not a positive width")))
        })
        .collect()
}

fn act(s: &str) -> kiln_core::Result<Act> {
    match s.split_once(':') {
        None if s == "relu" => Ok(Act::Relu),
        None if s == "leaky-relu" => Ok(Act::LeakyRelu(0.2)),
        Some(("leaky-relu", slope)) => slope
            .parse()
            .map(Act::LeakyRelu)
            .map_err(|_| kiln_core::Error::Invalid(format!("--act: bad slope {slope:?}"))),
        _ => Err(kiln_core::Error::Invalid(format!(
            "--act {s:?}: expected relu or leaky-relu[:SLOPE]"
        ))),
    }
}

/// Applies the flags on top of the preset.
fn config(a: &TrainArgs) -> kiln_core::Result<TrainConfig> {
    let mut c = TrainConfig::preset(&a.preset, a.data.as_deref())?;
    if let Some(v) = &a.loss {
        c.loss = v.parse()?;
    }
    if let Some(v) = a.steps {
        c.steps = v;
    }
    if let Some(v) = a.batch {
        c.batch = v;
    }
    if let Some(v) = a.lr {
        c.lr_g = v;
        c.lr_d = v;
    }
    if let Some(v) = a.lr_d {
        c.lr_d = v;
    }
    if let Some(v) = a.beta1 {
        c.betas.0 = v;
    }
    if let Some(v) = &a.schedule {
        c.schedule = v.parse()?;
    }
    if let Some(v) = a.d_steps {
        c.d_steps = v;
    }
    if let Some(v) = a.gp_weight {
        c.gp_weight = v;
    }
    if let Some(v) = a.z_dim {
        c.z_dim = v;
    }
    if let Some(v) = &a.g_hidden {
        c.g_hidden = widths(v, "--g-hidden")?;
    }
    if let Some(v) = &a.d_hidden {
        c.d_hidden = widths(v, "--d-hidden")?;
    }
    if let Some(v) = &a.act {
        c.act = act(v)?;
    }
    if let Some(v) = a.ema {
        c.ema = (v > 0.0).then_some(v);
    }
    if let Some(v) = a.pack {
        c.pack = v;
    }
    if let Some(v) = a.seed {
        c.seed = v;
    }
    c.threads = a.threads;
    if let Some(v) = &a.device {
        c.device = v.clone();
    }
    if let Some(v) = &a.out {
        c.out = v.clone();
    }
    if let Some(v) = a.log_every {
        c.log_every = v.max(1);
    }
    if let Some(v) = a.sample_every {
        c.sample_every = v.max(1);
    }
    if let Some(v) = a.checkpoint_every {
        c.checkpoint_every = v.max(1);
    }
    c.validate()?;
    Ok(c)
}

/// Runs `kiln train`.
pub fn run(a: TrainArgs) -> kiln_core::Result<ExitCode> {
    super::set_threads(a.threads)?;
    let mut trainer = if a.resume {
        let dir = match &a.out {
            Some(d) => d.clone(),
            None => TrainConfig::preset(&a.preset, a.data.as_deref())?.out,
        };
        Trainer::resume(&dir, a.steps)?
    } else {
        let c = config(&a)?;
        let t = Trainer::new(c)?;
        t.init_run_dir()?;
        t
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while saving is ignored; the first one stops after the current step.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed));
    }
    let c = &trainer.config;
    if !a.quiet {
        eprintln!(
            "kiln: training preset {} on {} ({} loss, batch {}, {} steps) → {}",
            c.preset,
            c.data,
            c.loss,
            c.batch,
            c.steps,
            c.out.display()
        );
        eprintln!("kiln: G = {}", kiln_nn::Module::describe(&trainer.g));
        eprintln!("kiln: D = {}", kiln_nn::Module::describe(&trainer.d));
    }
    let device = trainer.device;
    let s = super::on_pool(device, || trainer.run(&stop, a.stop_at, !a.quiet))?;
    let mut line = format!(
        "kiln: {} {} steps of {} on {} in {:.1} s ({:.0} steps/s); loss D {:.3}, G {:.3}",
        if s.interrupted { "stopped after" } else { "trained" },
        s.steps,
        trainer.config.preset,
        trainer.config.data,
        s.seconds,
        s.steps_per_sec,
        s.last.loss_d,
        s.last.loss_g
    );
    if let Some(m) = &s.modes {
        line.push_str(&format!(
            "; modes {}/{}, high quality {:.1}%, reverse KL {:.3}",
            m.modes_covered,
            m.modes_total,
            100.0 * m.high_quality_fraction,
            m.reverse_kl
        ));
    }
    line.push_str(&format!("; outputs in {}/", s.out.display()));
    println!("{line}");
    if s.interrupted {
        println!(
            "kiln: checkpoint saved; continue with: kiln train --resume --out {}",
            s.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
