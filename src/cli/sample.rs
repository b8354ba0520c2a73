//! `kiln sample`: G's outputs for fresh or given noise, as .npy (PyTorch
//! layout [N, C, H, W] or [N, 2]) or as a PNG (image grid / scatter plot).

use kiln_core::{no_grad, DType, Device, Error, Result, Tensor};
use kiln_gan::config::GOut;
use kiln_gan::data::parse_data_spec;
use kiln_gan::npy::{read_npy, write_npy};
use kiln_gan::plot::{write_scatter_plot, Scatter};
use kiln_gan::png_out::{image_grid, write_png_rgb, GridOptions};
use kiln_gan::trainer::build_models;
use kiln_gan::TrainConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `kiln sample`.
#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// Run directory (holds config.json and generator.safetensors).
    #[arg(long)]
    run: PathBuf,
    /// Number of samples (ignored with --noise).
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Noise as a .npy of shape [N, z_dim] (float32) instead of --n/--seed.
    #[arg(long)]
    noise: Option<PathBuf>,
    /// Output: x.npy (raw outputs) or grid.png (picture).
    #[arg(long)]
    out: PathBuf,
}

/// Runs `kiln sample`.
pub fn run(a: SampleArgs) -> Result<ExitCode> {
    let cfg_path = a.run.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(cfg_path.display(), e))?;
    let config: TrainConfig =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(cfg_path.display(), e.to_string()))?;
    let spec = parse_data_spec(&config.data)?;
    let image = spec.default_image_shape();
    let dim = image.map_or(2, |(c, h, w)| c * h * w);
    let (g, _) = build_models(&config, dim, &mut ChaCha8Rng::seed_from_u64(0))?;
    kiln_nn::load_state_dict(&g, a.run.join("generator.safetensors"))?;
    let z = match &a.noise {
        Some(p) => {
            let arr = read_npy(p)?;
            if arr.shape.len() != 2 || arr.shape[1] != config.z_dim {
                return Err(Error::BadShape {
                    op: "kiln sample --noise",
                    msg: format!(
                        "{} has shape {:?}; the generator needs [N, {}]",
                        p.display(),
                        arr.shape,
                        config.z_dim
                    ),
                });
            }
            Tensor::from_vec(arr.data, &arr.shape, Device::Cpu)?
        }
        None => {
            if a.n == 0 {
                return Err(Error::Invalid("--n must be at least 1".into()));
            }
            Tensor::randn(
                &[a.n, config.z_dim],
                DType::F32,
                Device::Cpu,
                &mut ChaCha8Rng::seed_from_u64(a.seed),
            )?
        }
    };
    let n = z.shape()[0];
    let out = no_grad(|| kiln_nn::Module::forward(&g, &z))?.to_vec::<f32>()?;
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "npy" => {
            let shape: Vec<usize> = match image {
                Some((c, h, w)) => vec![n, c, h, w],
                None => vec![n, 2],
            };
            write_npy(&a.out, &out, &shape)?;
        }
        "png" => {
            let unit: Vec<f32> = if config.g_out == GOut::Tanh {
                out.iter().map(|v| (v + 1.0) * 0.5).collect()
            } else {
                out
            };
            match image {
                Some(shape) => {
                    let img = image_grid(&unit, n, shape, &GridOptions::default())?;
                    write_png_rgb(&a.out, img.width as u32, img.height as u32, &img.rgb)?;
                }
                None => {
                    let data = spec.load(None)?;
                    let mix = data.mixture().expect("2-D data is a mixture");
                    let mut real = Vec::new();
                    mix.sample(2500, &mut ChaCha8Rng::seed_from_u64(a.seed ^ 1), &mut real);
                    write_scatter_plot(
                        &a.out,
                        &Scatter {
                            title: "kiln sample",
                            range: mix.plot_range(),
                            real: &real,
                            generated: &unit,
                            modes: &mix.modes(),
                        },
                    )?;
                }
            }
        }
        _ => {
            return Err(Error::Invalid(format!(
                "--out {}: expected a .npy or .png file name",
                a.out.display()
            )))
        }
    }
    println!("kiln: wrote {n} samples to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
