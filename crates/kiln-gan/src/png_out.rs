//! PNG output: sample grids, plain RGB images, and the atomic file write every output of a run
//! goes through (a temp file in the same directory, then a rename), so a crash never leaves a
//! half-written file under the final name.

use std::path::Path;

use kiln_core::{Error, Result};

/// Write `bytes` to `path` atomically: a temp file beside it, fsynced, then renamed over
/// `path` (the same writer the state dicts and checkpoints use).
pub use kiln_nn::state_dict::write_atomic;

/// Encode an 8-bit RGB image (`width · height · 3` bytes, row-major, interleaved) as PNG.
pub fn encode_png_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>> {
    if rgb.len() != width as usize * height as usize * 3 {
        return Err(Error::BadShape {
            op: "encode_png_rgb",
            msg: format!(
                "{width}x{height} RGB needs {} bytes, got {}",
                width as usize * height as usize * 3,
                rgb.len()
            ),
        });
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let png_error = |e: png::EncodingError| Error::Invalid(format!("PNG encoding failed: {e}"));
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(bytes)
}

/// Write an 8-bit RGB image to `path` as PNG, atomically.
pub fn write_png_rgb(path: impl AsRef<Path>, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    write_atomic(path.as_ref(), &encode_png_rgb(width, height, rgb)?)
}

/// How [`image_grid`] lays out and colours a batch of images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridOptions {
    /// Images per row; `None` picks `ceil(sqrt(n))`, a near-square grid.
    pub columns: Option<usize>,
    /// Pixels between images and around the border.
    pub padding: usize,
    /// Input values mapped to black and white: `(0, 1)` for data in `[0, 1]`, `(-1, 1)` for a
    /// tanh generator. Values outside are clamped; NaN shows as black.
    pub range: (f32, f32),
    /// Grey level of the padding.
    pub pad_value: u8,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            columns: None,
            padding: 2,
            range: (0.0, 1.0),
            pad_value: 32,
        }
    }
}

/// An 8-bit RGB picture: `width · height · 3` bytes, row-major, interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The pixels, `[height, width, 3]`.
    pub rgb: Vec<u8>,
}

/// Tile `n` images of shape `(c, h, w)` (planar CHW, row-major, one image per row of
/// `samples`: `[n, c·h·w]`) into one RGB picture. `c` must be 1 (grey) or 3 (RGB).
pub fn image_grid(
    samples: &[f32],
    n: usize,
    (c, h, w): (usize, usize, usize),
    options: &GridOptions,
) -> Result<RgbImage> {
    let bad_shape = |msg: String| Error::BadShape { op: "image_grid", msg };
    if c != 1 && c != 3 {
        return Err(bad_shape(format!("images need 1 or 3 channels, got {c}")));
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(bad_shape(format!("empty grid: {n} images of {h}x{w}")));
    }
    let dim = c * h * w;
    if samples.len() != n * dim {
        return Err(bad_shape(format!(
            "{n} images of [{c}, {h}, {w}] need {} values, got {}",
            n * dim,
            samples.len()
        )));
    }
    let columns = options
        .columns
        .unwrap_or_else(|| (n as f64).sqrt().ceil() as usize)
        .clamp(1, n);
    let rows = n.div_ceil(columns);
    let pad = options.padding;
    let width = columns * (w + pad) + pad;
    let height = rows * (h + pad) + pad;
    let mut rgb = vec![options.pad_value; width * height * 3];

    let (lo, hi) = options.range;
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let to_u8 = |v: f32| ((v - lo) * scale).clamp(0.0, 255.0).round() as u8; // NaN → 0
    for (index, image) in samples.chunks_exact(dim).enumerate() {
        let (top, left) = (pad + (index / columns) * (h + pad), pad + (index % columns) * (w + pad));
        for y in 0..h {
            for x in 0..w {
                let out = ((top + y) * width + left + x) * 3;
                for channel in 0..3 {
                    let plane = if c == 1 { 0 } else { channel };
                    rgb[out + channel] = to_u8(image[plane * h * w + y * w + x]);
                }
            }
        }
    }
    Ok(RgbImage { width, height, rgb })
}

/// Tile a batch with [`image_grid`] and write it to `path` as PNG, atomically.
pub fn write_image_grid(
    path: impl AsRef<Path>,
    samples: &[f32],
    n: usize,
    shape: (usize, usize, usize),
    options: &GridOptions,
) -> Result<()> {
    let grid = image_grid(samples, n, shape, options)?;
    write_png_rgb(path, grid.width as u32, grid.height as u32, &grid.rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_size_includes_padding() {
        let samples = vec![0.5; 5 * 2 * 3];
        let grid = image_grid(&samples, 5, (1, 2, 3), &GridOptions::default()).unwrap();
        // 3 columns x 2 rows of 3x2 images with 2 px around each.
        assert_eq!((grid.width, grid.height), (3 * 5 + 2, 2 * 4 + 2));
        assert_eq!(&grid.rgb[(2 * grid.width + 2) * 3..][..3], &[128, 128, 128]);
    }

    #[test]
    fn range_maps_tanh_output_to_black_and_white() {
        let options = GridOptions {
            range: (-1.0, 1.0),
            padding: 0,
            ..GridOptions::default()
        };
        let grid = image_grid(&[-1.0, 1.0, f32::NAN, 7.0], 1, (1, 2, 2), &options).unwrap();
        let reds: Vec<u8> = grid.rgb.iter().step_by(3).copied().collect();
        assert_eq!(reds, vec![0, 255, 0, 255]);
    }

    #[test]
    fn wrong_length_is_a_shape_error() {
        let err = image_grid(&[0.0; 5], 2, (1, 2, 2), &GridOptions::default());
        assert!(matches!(err, Err(Error::BadShape { .. })));
    }
}
