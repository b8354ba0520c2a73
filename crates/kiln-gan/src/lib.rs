//! kiln's GAN toolkit: the data a GAN trains on and the files a run writes.
//!
//! - [`data`]: 2-D Gaussian mixtures (`ring8`, `grid25`), procedural images (`shapes64`),
//!   MNIST-style IDX files and directories of PNG/JPEG images behind one [`data::Dataset`],
//!   parsed from CLI strings by [`data::parse_data_spec`];
//! - [`idx`], [`images`], [`npy`]: the file formats they come in and go out as;
//! - [`png_out`] and [`plot`]: sample grids, scatter plots and loss curves as PNG, written
//!   atomically;
//! - [`metrics`]: mode coverage on 2-D data — did the GAN learn every mode?
//!
//! Everything random takes the caller's `ChaCha8Rng`, so a run is reproducible from its seed.
//!
//! ```
//! use kiln_gan::{data::parse_data_spec, metrics::mode_metrics};
//! use rand::SeedableRng;
//!
//! let mut data = parse_data_spec("ring8")?.load(None)?;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut batch = Vec::new();
//! data.batch(2500, &mut rng, &mut batch); // [2500, 2]
//! let ring = data.mixture().unwrap();
//! let m = mode_metrics(&batch, &ring.modes(), ring.std())?;
//! assert_eq!(m.modes_covered, 8);
//! # Ok::<(), kiln_core::Error>(())
//! ```

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod idx;
pub mod images;
pub mod losses;
pub mod metrics;
pub mod npy;
pub mod plot;
pub mod png_out;
pub mod trainer;

pub use config::{GanLoss, TrainConfig};
pub use trainer::{Summary, Trainer};
