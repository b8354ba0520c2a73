//! Training data: 2-D Gaussian mixtures, procedural images, IDX files (MNIST, Fashion-MNIST)
//! and directories of PNG/JPEG images, behind one [`Dataset`] enum whose
//! [`batch`](Dataset::batch) fills a row-major `[n, dim]` buffer.
//!
//! Every random choice comes from the `ChaCha8Rng` the caller passes, so a run is
//! reproducible from its seed. Finite data sets are read in epochs: each epoch visits every
//! sample once in an order shuffled from that rng, and [`EpochState`] captures where a run
//! is, for checkpoints.

use std::fmt;
use std::path::{Path, PathBuf};

use kiln_core::smallvec::{smallvec, SmallVec};
use kiln_core::{Error, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::idx::read_idx_images;
use crate::images::{load_image_dir, resize, to_planar};
use crate::png_out::RgbImage;

/// `(channels, height, width)` of one image, planar CHW as in PyTorch.
pub type ImageShape = (usize, usize, usize);

/// The CLI names of the built-in data sets, for help texts and errors.
pub const DATA_SPEC_HELP: &str =
    "ring8, grid25, shapes64, fashion-mnist, mnist, idx:PATH (an IDX images file, raw or .gz), images:DIR (PNG/JPEG files)";

/// Where `fashion-mnist` is looked for unless `KILN_FASHION_MNIST_DIR` is set (Debian's
/// `dataset-fashion-mnist` package installs it here).
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Where `mnist` is looked for unless `KILN_MNIST_DIR` is set. Debian does not package MNIST;
/// this path mirrors the Fashion-MNIST one.
pub const MNIST_DIR: &str = "/usr/share/datasets/mnist";

/// A mixture of equally likely isotropic 2-D Gaussians: the toy data sets on which mode
/// collapse is visible and measurable (see [`crate::metrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixture {
    name: &'static str,
    modes: Vec<[f32; 2]>,
    std: f32,
    plot_range: f32,
}

impl GaussianMixture {
    /// 8 Gaussians evenly spaced on a circle of radius 2 (the first at angle 0), std 0.02.
    pub fn ring8() -> Self {
        let modes = (0..8)
            .map(|k| {
                let angle = k as f64 * std::f64::consts::TAU / 8.0;
                [(2.0 * angle.cos()) as f32, (2.0 * angle.sin()) as f32]
            })
            .collect();
        GaussianMixture {
            name: "ring8",
            modes,
            std: 0.02,
            plot_range: 3.0,
        }
    }

    /// 25 Gaussians on the grid `{-4, -2, 0, 2, 4}²`, std 0.05.
    pub fn grid25() -> Self {
        let axis = [-4.0f32, -2.0, 0.0, 2.0, 4.0];
        let modes = axis.iter().flat_map(|&x| axis.iter().map(move |&y| [x, y])).collect();
        GaussianMixture {
            name: "grid25",
            modes,
            std: 0.05,
            plot_range: 5.5,
        }
    }

    /// The data set's CLI name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The mode centres.
    pub fn modes(&self) -> Vec<[f32; 2]> {
        self.modes.clone()
    }

    /// The standard deviation of every component.
    pub fn std(&self) -> f32 {
        self.std
    }

    /// Half-width of the square a scatter plot of this data should show.
    pub fn plot_range(&self) -> f32 {
        self.plot_range
    }

    /// Append `n` samples `[x, y]`: a uniformly chosen mode plus `N(0, std²)` noise per axis.
    pub fn sample(&self, n: usize, rng: &mut ChaCha8Rng, out: &mut Vec<f32>) {
        let start = out.len();
        out.resize(start + 2 * n, 0.0);
        self.sample_into(rng, &mut out[start..]);
    }

    /// Fill `out` (an even length) with samples `[x, y]`, as [`sample`](Self::sample) draws them.
    pub fn sample_into(&self, rng: &mut ChaCha8Rng, out: &mut [f32]) {
        for point in out.chunks_exact_mut(2) {
            let mode = self.modes[rng.gen_range(0..self.modes.len())];
            let dx: f32 = rng.sample(StandardNormal);
            let dy: f32 = rng.sample(StandardNormal);
            point[0] = mode[0] + self.std * dx;
            point[1] = mode[1] + self.std * dy;
        }
    }
}

/// `shapes64`: an endless stream of procedural pictures — one to three anti-aliased discs,
/// squares (rotated) and striped squares in random colours, positions and sizes on a gradient
/// or striped background. Rendered at any `(c, h, w)`, by default 3×64×64.
#[derive(Debug, Clone, PartialEq)]
pub struct Shapes {
    shape: ImageShape,
}

/// An RGB colour with components in `[0, 1]`.
type Color = [f32; 3];

/// HSV → RGB with all components in `[0, 1]`.
fn hsv(h: f32, s: f32, v: f32) -> Color {
    let h6 = (h.fract() * 6.0).min(5.999);
    let sector = h6.floor();
    let f = h6 - sector;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match sector as u8 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

impl Shapes {
    /// A generator of images of `shape`; `c` must be 1 (grey) or 3 (RGB).
    pub fn new(shape: ImageShape) -> Result<Self> {
        let (c, h, w) = shape;
        if !(c == 1 || c == 3) || h < 4 || w < 4 {
            return Err(Error::Invalid(format!(
                "shapes64 renders 1 or 3 channels of at least 4x4 pixels, not {shape:?}"
            )));
        }
        Ok(Shapes { shape })
    }

    /// The image shape it renders.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Fill `out` with images drawn from `rng` (`c·h·w` values each; every value is
    /// written). The batch draws one seed from `rng`, and image i renders from stream i of a
    /// generator with that seed (ChaCha's independent streams): the images of a batch render
    /// in parallel, and the batch is the same at any thread count.
    pub fn batch_into(&self, rng: &mut ChaCha8Rng, out: &mut [f32]) {
        let (c, h, w) = self.shape;
        let dim = c * h * w;
        let seed: u64 = rng.gen();
        out.par_chunks_exact_mut(dim).enumerate().for_each_init(
            || vec![0f32; if c == 3 { 0 } else { 3 * h * w }],
            |scratch, (i, image)| {
                let mut image_rng = ChaCha8Rng::seed_from_u64(seed);
                image_rng.set_stream(i as u64);
                self.render(&mut image_rng, scratch, image)
            },
        );
    }

    /// Render one image into `out` (planar CHW, `c·h·w` values in `[0, 1]`). A grey image
    /// is rendered in colour into `scratch` (`3·h·w` values) first; RGB needs no scratch.
    pub fn render(&self, rng: &mut ChaCha8Rng, scratch: &mut [f32], out: &mut [f32]) {
        let (c, h, w) = self.shape;
        assert_eq!(out.len(), c * h * w, "Shapes::render: output size");
        if c == 3 {
            self.render_rgb(rng, out);
        } else {
            assert_eq!(scratch.len(), 3 * h * w, "Shapes::render: scratch size");
            self.render_rgb(rng, scratch);
            let (r, rest) = scratch.split_at(h * w);
            let (g, b) = rest.split_at(h * w);
            for (i, o) in out.iter_mut().enumerate() {
                *o = (0.299 * r[i] + 0.587 * g[i] + 0.114 * b[i]).clamp(0.0, 1.0);
            }
        }
    }

    /// Render one colour image into three planes (`planes` holds `3·h·w` values). The
    /// per-pixel loops have no branches (a figure's kind is a type parameter and every
    /// pixel of its box is blended, by 0 where it does not reach), so they vectorise.
    fn render_rgb(&self, rng: &mut ChaCha8Rng, planes: &mut [f32]) {
        let (_, h, w) = self.shape;
        let size = h.min(w) as f32;

        // Background: muted, dark or light, so objects of the opposite brightness stand out.
        let dark_background = rng.gen_bool(0.5);
        let background_value = |rng: &mut ChaCha8Rng| {
            if dark_background {
                rng.gen_range(0.08..0.35)
            } else {
                rng.gen_range(0.7..0.95)
            }
        };
        let hue = rng.gen::<f32>();
        let top = hsv(hue, rng.gen_range(0.1..0.5), background_value(rng));
        let bottom = hsv(
            hue + rng.gen_range(-0.1..0.1),
            rng.gen_range(0.1..0.5),
            background_value(rng),
        );
        let background_stripes = rng.gen_bool(0.25).then(|| {
            let angle: f32 = rng.gen_range(0.0..std::f32::consts::PI);
            (angle.cos(), angle.sin(), size / rng.gen_range(3.0..8.0))
        });
        // One row of stripe coverage, shared by the three planes (no allocation without stripes).
        let mut stripe: SmallVec<[f32; 128]> = if background_stripes.is_some() {
            smallvec![0f32; w]
        } else {
            SmallVec::new()
        };
        for y in 0..h {
            let t = y as f32 / (h - 1) as f32;
            let row = mix(top, bottom, t);
            if let Some((cos, sin, period)) = background_stripes {
                for (x, s) in stripe.iter_mut().enumerate() {
                    let along = (x as f32 * cos + y as f32 * sin) / period;
                    *s = 0.35 * stripe_coverage(along, period);
                }
            }
            for (k, plane) in planes.chunks_exact_mut(h * w).enumerate() {
                let line = &mut plane[y * w..(y + 1) * w];
                if background_stripes.is_some() {
                    for (p, &s) in line.iter_mut().zip(&stripe) {
                        *p = row[k] + (bottom[k] - row[k]) * s;
                    }
                } else {
                    line.fill(row[k]);
                }
            }
        }

        let figures = rng.gen_range(1..=3);
        for _ in 0..figures {
            let object_value = if dark_background {
                rng.gen_range(0.65..1.0)
            } else {
                rng.gen_range(0.2..0.55)
            };
            let color = hsv(rng.gen(), rng.gen_range(0.5..1.0), object_value);
            let kind = rng.gen_range(0..3);
            let stripes = (kind == 2).then(|| {
                let period = size * rng.gen_range(0.06..0.14);
                (period, hsv(rng.gen(), rng.gen_range(0.3..1.0), rng.gen_range(0.3..1.0)))
            });
            let radius = size * rng.gen_range(0.1..0.3);
            let cx = rng.gen_range(radius * 0.5..w as f32 - radius * 0.5);
            let cy = rng.gen_range(radius * 0.5..h as f32 - radius * 0.5);
            let angle: f32 = rng.gen_range(0.0..std::f32::consts::FRAC_PI_2);
            let figure = Figure {
                color,
                radius,
                center: (cx, cy),
                rotation: (angle.cos(), angle.sin()),
            };
            if kind == 0 {
                figure.draw::<DISC>(planes, (h, w), None)
            } else {
                figure.draw::<SQUARE>(planes, (h, w), stripes)
            }
        }
        for p in planes.iter_mut() {
            *p = p.clamp(0.0, 1.0);
        }
    }
}

/// Figure kinds, as the const parameter of [`Figure::draw`].
const DISC: u8 = 0;
const SQUARE: u8 = 1;

/// One disc or (rotated, possibly striped) square.
struct Figure {
    color: Color,
    radius: f32,
    center: (f32, f32),
    /// cos and sin of the square's rotation.
    rotation: (f32, f32),
}

impl Figure {
    /// Blend the figure into `planes` (three `h·w` planes) with a one-pixel anti-aliased
    /// edge; `stripes` (period, second colour) stripes it along its rotated x axis.
    fn draw<const KIND: u8>(&self, planes: &mut [f32], (h, w): (usize, usize), stripes: Option<(f32, Color)>) {
        let (cx, cy) = self.center;
        let (cos, sin) = self.rotation;
        // Only pixels near the figure can change: a rotated square reaches 0.85·√2·r.
        let reach = 1.25 * self.radius + 1.0;
        let rows = (cy - reach).max(0.0) as usize..((cy + reach).ceil() as usize).min(h);
        let columns = (cx - reach).max(0.0) as usize..((cx + reach).ceil() as usize).min(w);
        let side = self.radius * 0.85;
        let (period, other) = stripes.unwrap_or((1.0, self.color));
        let (plane_r, rest) = planes.split_at_mut(h * w);
        let (plane_g, plane_b) = rest.split_at_mut(h * w);
        for y in rows {
            let span = y * w + columns.start..y * w + columns.end;
            let (r, g, b) = (
                &mut plane_r[span.clone()],
                &mut plane_g[span.clone()],
                &mut plane_b[span],
            );
            let dy = y as f32 + 0.5 - cy;
            for (i, ((r, g), b)) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()).enumerate() {
                // Pixel centre relative to the figure, in the figure's rotated frame.
                let dx = (columns.start + i) as f32 + 0.5 - cx;
                let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
                // Signed distance in pixels to the outline (negative inside).
                let distance = if KIND == DISC {
                    (dx * dx + dy * dy).sqrt() - self.radius
                } else {
                    let (qx, qy) = (u.abs() - side, v.abs() - side);
                    let outside = (qx.max(0.0) * qx.max(0.0) + qy.max(0.0) * qy.max(0.0)).sqrt();
                    outside + qx.max(qy).min(0.0)
                };
                let coverage = (0.5 - distance).clamp(0.0, 1.0);
                let s = if stripes.is_some() {
                    stripe_coverage(u, period)
                } else {
                    0.0
                };
                let fill = mix(self.color, other, s);
                *r += (fill[0] - *r) * coverage;
                *g += (fill[1] - *g) * coverage;
                *b += (fill[2] - *b) * coverage;
            }
        }
    }
}

fn mix(a: Color, b: Color, t: f32) -> Color {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// How much of a pixel at coordinate `along` (pixels) lies in the "on" half of stripes with
/// the given period, with a one-pixel soft edge.
fn stripe_coverage(along: f32, period: f32) -> f32 {
    // `along mod period`, in [0, period]. Without SSE4.1 in the baseline target, `rem_euclid`
    // and `floor` are libm calls per pixel; the truncating conversion is one instruction
    // (`along / period` is far inside i32's range: images are at most a few thousand pixels).
    let t = along / period;
    let truncated = t as i32 as f32;
    let floor = if truncated > t { truncated - 1.0 } else { truncated };
    let phase = along - period * floor;
    let half = period / 2.0;
    // Distance to the nearest stripe edge, positive inside the "on" first half-period.
    let edge = if phase < half {
        phase.min(half - phase)
    } else {
        -(phase - half).min(period - phase)
    };
    (edge + 0.5).clamp(0.0, 1.0)
}

/// Where a finite data set is in its epochs: enough, with the rng, to continue bit-for-bit
/// after a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochState {
    /// Epochs started so far (the current one included); 0 before the first batch.
    pub epoch: u64,
    /// Samples of the current epoch already handed out.
    pub cursor: usize,
    /// Seed of the current epoch's permutation (drawn from the caller's rng at epoch start).
    pub order_seed: u64,
}

/// A finite set of `u8` images held in memory (IDX files, image directories), read in shuffled
/// epochs and scaled to `[0, 1]`.
#[derive(Debug, Clone)]
pub struct ImageSet {
    name: String,
    shape: ImageShape,
    count: usize,
    pixels: Vec<u8>,
    order: Vec<usize>,
    state: EpochState,
}

impl ImageSet {
    /// Wrap `count` images of `shape` (planar CHW `u8`, concatenated).
    pub fn new(name: impl Into<String>, shape: ImageShape, count: usize, pixels: Vec<u8>) -> Result<Self> {
        let dim = shape.0 * shape.1 * shape.2;
        if count == 0 || dim == 0 || pixels.len() != count * dim {
            return Err(Error::BadShape {
                op: "ImageSet::new",
                msg: format!(
                    "{count} images of {shape:?} need {} bytes, got {}",
                    count * dim,
                    pixels.len()
                ),
            });
        }
        Ok(ImageSet {
            name: name.into(),
            shape,
            count,
            pixels,
            order: Vec::new(),
            state: EpochState {
                epoch: 0,
                cursor: 0,
                order_seed: 0,
            },
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: an `ImageSet` holds at least one image.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Shape of one image.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Image `index` as `u8`, planar CHW.
    pub fn image(&self, index: usize) -> &[u8] {
        let dim = self.shape.0 * self.shape.1 * self.shape.2;
        &self.pixels[index * dim..(index + 1) * dim]
    }

    /// Where the reader is in its epochs.
    pub fn epoch_state(&self) -> EpochState {
        self.state
    }

    /// Continue from a state saved by [`epoch_state`](Self::epoch_state).
    pub fn set_epoch_state(&mut self, state: EpochState) -> Result<()> {
        if state.cursor > self.count {
            return Err(Error::Invalid(format!(
                "epoch cursor {} is past the {} images of {}",
                state.cursor, self.count, self.name
            )));
        }
        self.state = state;
        self.order = if state.epoch == 0 {
            Vec::new()
        } else {
            self.permutation(state.order_seed)
        };
        Ok(())
    }

    fn permutation(&self, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.count).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        order
    }

    /// Fill `out` with the next images (`c·h·w` values each) scaled to `[0, 1]`, continuing
    /// the current epoch and starting a new, freshly shuffled one whenever it is used up (a
    /// batch may span two epochs).
    pub fn batch_into(&mut self, rng: &mut ChaCha8Rng, out: &mut [f32]) {
        let dim = self.shape.0 * self.shape.1 * self.shape.2;
        for dst in out.chunks_exact_mut(dim) {
            if self.state.epoch == 0 || self.state.cursor == self.count {
                let order_seed = rng.gen();
                self.state = EpochState {
                    epoch: self.state.epoch + 1,
                    cursor: 0,
                    order_seed,
                };
                self.order = self.permutation(order_seed);
            }
            let index = self.order[self.state.cursor];
            self.state.cursor += 1;
            for (d, &p) in dst.iter_mut().zip(self.image(index)) {
                *d = p as f32 / 255.0;
            }
        }
    }
}

/// Any training data set. Samplers (mixtures, shapes) are endless; image sets are finite and
/// read in epochs.
#[derive(Debug, Clone)]
pub enum Dataset {
    /// A 2-D Gaussian mixture (`ring8`, `grid25`).
    Mixture(GaussianMixture),
    /// Procedural images (`shapes64`).
    Shapes(Shapes),
    /// Images held in memory (`fashion-mnist`, `mnist`, `idx:PATH`, `images:DIR`).
    Images(ImageSet),
}

impl Dataset {
    /// A short name for logs and plot titles.
    pub fn name(&self) -> String {
        match self {
            Dataset::Mixture(m) => m.name().to_string(),
            Dataset::Shapes(_) => "shapes64".to_string(),
            Dataset::Images(set) => set.name.clone(),
        }
    }

    /// Features per sample: 2 for mixtures, `c·h·w` for images.
    pub fn dim(&self) -> usize {
        match self.image_shape() {
            Some((c, h, w)) => c * h * w,
            None => 2,
        }
    }

    /// `(c, h, w)` of an image data set; `None` for 2-D points.
    pub fn image_shape(&self) -> Option<ImageShape> {
        match self {
            Dataset::Mixture(_) => None,
            Dataset::Shapes(shapes) => Some(shapes.shape()),
            Dataset::Images(set) => Some(set.shape()),
        }
    }

    /// Number of samples of a finite data set; `None` for endless samplers.
    pub fn len(&self) -> Option<usize> {
        match self {
            Dataset::Images(set) => Some(set.len()),
            _ => None,
        }
    }

    /// Always false: every data set has at least one sample (and samplers are endless).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The mixture behind a 2-D data set, for metrics and scatter plots.
    pub fn mixture(&self) -> Option<&GaussianMixture> {
        match self {
            Dataset::Mixture(m) => Some(m),
            _ => None,
        }
    }

    /// Replace `out` with a row-major `[n, dim]` batch. Images are in `[0, 1]` (the trainer
    /// rescales to the generator's output range); points are raw coordinates.
    pub fn batch(&mut self, n: usize, rng: &mut ChaCha8Rng, out: &mut Vec<f32>) {
        // Every value is written: a buffer of the right length is not cleared first.
        out.resize(n * self.dim(), 0.0);
        self.batch_into(rng, out);
    }

    /// Fill `out` with a row-major batch of `out.len() / dim` samples, the values
    /// [`batch`](Self::batch) gives (every value is written). `out.len()` must be a multiple
    /// of [`dim`](Self::dim).
    pub fn batch_into(&mut self, rng: &mut ChaCha8Rng, out: &mut [f32]) {
        assert_eq!(out.len() % self.dim(), 0, "Dataset::batch_into: not whole samples");
        match self {
            Dataset::Mixture(m) => m.sample_into(rng, out),
            Dataset::Shapes(shapes) => shapes.batch_into(rng, out),
            Dataset::Images(set) => set.batch_into(rng, out),
        }
    }

    /// The epoch position of a finite data set (save it in checkpoints); `None` for samplers,
    /// whose state is the rng alone.
    pub fn epoch_state(&self) -> Option<EpochState> {
        match self {
            Dataset::Images(set) => Some(set.epoch_state()),
            _ => None,
        }
    }

    /// Restore an epoch position saved by [`epoch_state`](Self::epoch_state); an error for
    /// samplers or a cursor past the end.
    pub fn set_epoch_state(&mut self, state: EpochState) -> Result<()> {
        match self {
            Dataset::Images(set) => set.set_epoch_state(state),
            other => Err(Error::Invalid(format!(
                "{} is an endless sampler and has no epoch state",
                other.name()
            ))),
        }
    }
}

/// A data set named on the command line (`--data`), before it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSpec {
    /// `ring8`: 8 Gaussians on a circle.
    Ring8,
    /// `grid25`: 25 Gaussians on a grid.
    Grid25,
    /// `shapes64`: procedural 3×64×64 images.
    Shapes64,
    /// `fashion-mnist`: the installed Fashion-MNIST training images.
    FashionMnist,
    /// `mnist`: MNIST training images from `KILN_MNIST_DIR` or [`MNIST_DIR`].
    Mnist,
    /// `idx:PATH`: an IDX images file, raw or gzip-compressed.
    Idx(PathBuf),
    /// `images:DIR`: the PNG/JPEG files in a directory.
    Images(PathBuf),
}

/// Parse a `--data` value; an unknown name is an error listing the valid ones.
pub fn parse_data_spec(spec: &str) -> Result<DataSpec> {
    let spec = spec.trim();
    let path = |prefix: &str, rest: &str| {
        if rest.is_empty() {
            Err(Error::Invalid(format!("--data {prefix}: needs a path after the colon")))
        } else {
            Ok(PathBuf::from(rest))
        }
    };
    if let Some(rest) = spec.strip_prefix("idx:") {
        return Ok(DataSpec::Idx(path("idx", rest)?));
    }
    if let Some(rest) = spec.strip_prefix("images:") {
        return Ok(DataSpec::Images(path("images", rest)?));
    }
    match spec {
        "ring8" => Ok(DataSpec::Ring8),
        "grid25" => Ok(DataSpec::Grid25),
        "shapes64" => Ok(DataSpec::Shapes64),
        "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Ok(DataSpec::FashionMnist),
        "mnist" => Ok(DataSpec::Mnist),
        other => Err(Error::Invalid(format!(
            "unknown data set '{other}'; valid: {DATA_SPEC_HELP}"
        ))),
    }
}

impl std::str::FromStr for DataSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_data_spec(s)
    }
}

impl fmt::Display for DataSpec {
    /// The canonical CLI spelling, which [`parse_data_spec`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Ring8 => write!(f, "ring8"),
            DataSpec::Grid25 => write!(f, "grid25"),
            DataSpec::Shapes64 => write!(f, "shapes64"),
            DataSpec::FashionMnist => write!(f, "fashion-mnist"),
            DataSpec::Mnist => write!(f, "mnist"),
            DataSpec::Idx(path) => write!(f, "idx:{}", path.display()),
            DataSpec::Images(dir) => write!(f, "images:{}", dir.display()),
        }
    }
}

impl DataSpec {
    /// The image shape the data set has when loaded without a requested shape: `None` for 2-D
    /// data, `(3, 64, 64)` for shapes64 and image directories, `(1, 28, 28)` for the MNISTs.
    /// (`idx:PATH` reports `(1, 28, 28)` too, though its true size is read from the file.)
    pub fn default_image_shape(&self) -> Option<ImageShape> {
        match self {
            DataSpec::Ring8 | DataSpec::Grid25 => None,
            DataSpec::Shapes64 | DataSpec::Images(_) => Some((3, 64, 64)),
            DataSpec::FashionMnist | DataSpec::Mnist | DataSpec::Idx(_) => Some((1, 28, 28)),
        }
    }

    /// Where `fashion-mnist` / `mnist` are read from, honouring `KILN_FASHION_MNIST_DIR` and
    /// `KILN_MNIST_DIR`; `None` for other specs.
    pub fn installed_path(&self) -> Option<PathBuf> {
        let (var, default) = match self {
            DataSpec::FashionMnist => ("KILN_FASHION_MNIST_DIR", FASHION_MNIST_DIR),
            DataSpec::Mnist => ("KILN_MNIST_DIR", MNIST_DIR),
            _ => return None,
        };
        let dir = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
        let gz = dir.join("train-images-idx3-ubyte.gz");
        let raw = dir.join("train-images-idx3-ubyte");
        Some(if !gz.exists() && raw.exists() { raw } else { gz })
    }

    /// Load the data set. `image_shape`, when given, is the shape the model wants: image data
    /// is converted (grey ↔ RGB) and resized to it; 2-D data ignores it.
    pub fn load(&self, image_shape: Option<ImageShape>) -> Result<Dataset> {
        match self {
            DataSpec::Ring8 => Ok(Dataset::Mixture(GaussianMixture::ring8())),
            DataSpec::Grid25 => Ok(Dataset::Mixture(GaussianMixture::grid25())),
            DataSpec::Shapes64 => Ok(Dataset::Shapes(Shapes::new(image_shape.unwrap_or((3, 64, 64)))?)),
            DataSpec::FashionMnist | DataSpec::Mnist => {
                let path = self.installed_path().unwrap_or_default();
                if !path.exists() {
                    let how = if *self == DataSpec::FashionMnist {
                        "install it with: apt-get install dataset-fashion-mnist (or pass --data idx:PATH)"
                    } else {
                        "Debian does not package MNIST: put train-images-idx3-ubyte.gz in a directory and set KILN_MNIST_DIR to it (or pass --data idx:PATH)"
                    };
                    return Err(Error::Invalid(format!("{self} not found at {}; {how}", path.display())));
                }
                load_idx(&self.to_string(), &path, image_shape)
            }
            DataSpec::Idx(path) => load_idx(&self.to_string(), path, image_shape),
            DataSpec::Images(dir) => {
                let shape = image_shape.unwrap_or((3, 64, 64));
                let (count, pixels) = load_image_dir(dir, shape)?;
                Ok(Dataset::Images(ImageSet::new(self.to_string(), shape, count, pixels)?))
            }
        }
    }
}

/// Read an IDX images file and convert it to `image_shape` if one is requested.
fn load_idx(name: &str, path: &Path, image_shape: Option<ImageShape>) -> Result<Dataset> {
    let idx = read_idx_images(path)?;
    if idx.count == 0 {
        return Err(Error::bad_file(path.display(), "holds no images"));
    }
    let native = (1, idx.rows, idx.cols);
    let shape = image_shape.unwrap_or(native);
    if shape == native {
        return Ok(Dataset::Images(ImageSet::new(name, native, idx.count, idx.pixels)?));
    }
    let (c, h, w) = shape;
    if h == 0 || w == 0 {
        return Err(Error::Invalid(format!("cannot resize images to {h}x{w}")));
    }
    let mut pixels = Vec::with_capacity(idx.count * c * h * w);
    for grey in idx.pixels.chunks_exact(idx.rows * idx.cols) {
        let image = RgbImage {
            width: idx.cols,
            height: idx.rows,
            rgb: grey.iter().flat_map(|&v| [v, v, v]).collect(),
        };
        pixels.extend(to_planar(&resize(&image, w, h), c)?);
    }
    Ok(Dataset::Images(ImageSet::new(name, shape, idx.count, pixels)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_cover_half_the_period() {
        let period = 8.0;
        let mean: f32 = (0..800).map(|i| stripe_coverage(i as f32 * 0.01, period)).sum::<f32>() / 800.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
    }

    #[test]
    fn hsv_primaries() {
        assert_eq!(hsv(0.0, 1.0, 1.0), [1.0, 0.0, 0.0]);
        assert_eq!(hsv(0.0, 0.0, 0.5), [0.5, 0.5, 0.5]);
    }

    #[test]
    fn spec_display_parses_back() {
        for text in [
            "ring8",
            "grid25",
            "shapes64",
            "fashion-mnist",
            "mnist",
            "idx:/a/b.gz",
            "images:dir",
        ] {
            assert_eq!(parse_data_spec(text).unwrap().to_string(), text);
        }
    }
}
