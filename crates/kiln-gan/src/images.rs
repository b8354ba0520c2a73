//! User images (`--data images:DIR`): decode PNG and JPEG files, centre-crop them to the
//! model's aspect ratio, resize, and lay them out as planar `u8` CHW arrays.
//!
//! Resizing is separable: each output pixel of a shrinking axis averages the source pixels its
//! footprint covers (area / box filter, weighted by overlap, which does not alias the way
//! point sampling does); each output pixel of a growing axis interpolates linearly between
//! the two nearest source pixels (bilinear).

use std::path::{Path, PathBuf};

use kiln_core::{Error, Result};

use crate::png_out::RgbImage;

/// The PNG and JPEG files directly inside `dir` (no recursion), sorted by name so that the
/// data set, and with it every run, does not depend on directory order.
pub fn image_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir.display(), e))?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"));
        if is_image && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Decode a PNG or JPEG file (detected from its first bytes, not its name) to 8-bit RGB.
pub fn decode_image(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    decode_image_bytes(&bytes, &path.display().to_string())
}

/// Decode PNG or JPEG bytes to 8-bit RGB; `path` only names the file in errors. Alpha is
/// dropped, grey is replicated, 16-bit samples keep their high byte.
pub fn decode_image_bytes(bytes: &[u8], path: &str) -> Result<RgbImage> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes, path)
    } else if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes, path)
    } else {
        Err(Error::bad_file(path, "not a PNG or JPEG file"))
    }
}

fn decode_png(bytes: &[u8], path: &str) -> Result<RgbImage> {
    let bad = |e: png::DecodingError| Error::bad_file(path, format!("cannot decode PNG: {e}"));
    // A 1 GiB cap on the decoded size (the default 64 MiB refuses big photos).
    let mut decoder = png::Decoder::new_with_limits(bytes, png::Limits { bytes: 1 << 30 });
    // Palette and low-bit-depth grey become 8-bit samples; 16-bit becomes 8-bit.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(bad)?;
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).map_err(bad)?;
    let (width, height) = (frame.width as usize, frame.height as usize);
    let samples_per_pixel = match frame.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(Error::bad_file(path, "palette PNG was not expanded"));
        }
    };
    let rgb = buffer[..frame.buffer_size()]
        .chunks_exact(samples_per_pixel)
        .flat_map(|p| match samples_per_pixel {
            1 | 2 => [p[0], p[0], p[0]],
            _ => [p[0], p[1], p[2]],
        })
        .collect::<Vec<u8>>();
    check_size(path, width, height, rgb)
}

fn decode_jpeg(bytes: &[u8], path: &str) -> Result<RgbImage> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(1 << 30);
    let pixels = decoder
        .decode()
        .map_err(|e| Error::bad_file(path, format!("cannot decode JPEG: {e}")))?;
    let info = decoder
        .info()
        .ok_or_else(|| Error::bad_file(path, "JPEG has no frame header"))?;
    let (width, height) = (info.width as usize, info.height as usize);
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        // Big-endian 16-bit grey: keep the high byte.
        jpeg_decoder::PixelFormat::L16 => pixels.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let ink = |c: u8| ((255 - c as u32) * (255 - p[3] as u32) / 255) as u8;
                [ink(p[0]), ink(p[1]), ink(p[2])]
            })
            .collect(),
    };
    check_size(path, width, height, rgb)
}

fn check_size(path: &str, width: usize, height: usize, rgb: Vec<u8>) -> Result<RgbImage> {
    if width == 0 || height == 0 || rgb.len() != width * height * 3 {
        return Err(Error::bad_file(
            path,
            format!("decoded {} bytes for a {width}x{height} image", rgb.len()),
        ));
    }
    Ok(RgbImage { width, height, rgb })
}

/// The central crop of `image` with the aspect ratio `width : height` (the whole image when
/// it already has it), so that resizing does not stretch faces or objects.
pub fn center_crop_to_aspect(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    // Compare image.w / image.h with width / height without division.
    let (crop_w, crop_h) = if image.width * height > width * image.height {
        (((image.height * width) / height).max(1), image.height)
    } else {
        (image.width, ((image.width * height) / width).max(1))
    };
    let (left, top) = ((image.width - crop_w) / 2, (image.height - crop_h) / 2);
    let mut rgb = Vec::with_capacity(crop_w * crop_h * 3);
    for y in top..top + crop_h {
        let start = (y * image.width + left) * 3;
        rgb.extend_from_slice(&image.rgb[start..start + crop_w * 3]);
    }
    RgbImage {
        width: crop_w,
        height: crop_h,
        rgb,
    }
}

/// For each output coordinate along one axis, the source coordinates and weights (summing to 1)
/// that make it: area averaging when shrinking, linear interpolation when growing.
fn axis_weights(source: usize, target: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = source as f64 / target as f64;
    (0..target)
        .map(|out| {
            if scale >= 1.0 {
                let (start, end) = (out as f64 * scale, (out + 1) as f64 * scale);
                let mut taps = Vec::new();
                let mut src = start.floor() as usize;
                while (src as f64) < end && src < source {
                    let overlap = (end.min(src as f64 + 1.0) - start.max(src as f64)) as f32;
                    if overlap > 0.0 {
                        taps.push((src, overlap / scale as f32));
                    }
                    src += 1;
                }
                taps
            } else {
                let center = ((out as f64 + 0.5) * scale - 0.5).clamp(0.0, (source - 1) as f64);
                let low = center.floor() as usize;
                let high = (low + 1).min(source - 1);
                let t = (center - low as f64) as f32;
                vec![(low, 1.0 - t), (high, t)]
            }
        })
        .collect()
}

/// Resize to `width × height` (area averaging when shrinking, bilinear when growing), without
/// keeping the aspect ratio; see [`center_crop_to_aspect`].
pub fn resize(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let columns = axis_weights(image.width, width);
    let rows = axis_weights(image.height, height);
    // Horizontal pass: [image.height, width, 3] in f32.
    let mut horizontal = vec![0f32; image.height * width * 3];
    for y in 0..image.height {
        for (x, taps) in columns.iter().enumerate() {
            for channel in 0..3 {
                horizontal[(y * width + x) * 3 + channel] = taps
                    .iter()
                    .map(|&(src, weight)| weight * image.rgb[(y * image.width + src) * 3 + channel] as f32)
                    .sum();
            }
        }
    }
    let mut rgb = vec![0u8; width * height * 3];
    for (y, taps) in rows.iter().enumerate() {
        for x in 0..width {
            for channel in 0..3 {
                let value: f32 = taps
                    .iter()
                    .map(|&(src, weight)| weight * horizontal[(src * width + x) * 3 + channel])
                    .sum();
                rgb[(y * width + x) * 3 + channel] = value.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage { width, height, rgb }
}

/// Planar CHW bytes of an RGB image: 3 channels as is, or 1 channel of ITU-R BT.601 luma
/// `0.299 R + 0.587 G + 0.114 B`.
pub fn to_planar(image: &RgbImage, channels: usize) -> Result<Vec<u8>> {
    let pixels = image.rgb.chunks_exact(3);
    match channels {
        1 => Ok(pixels
            .map(|p| (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).round() as u8)
            .collect()),
        3 => {
            let plane = image.width * image.height;
            let mut planar = vec![0u8; 3 * plane];
            for (i, p) in pixels.enumerate() {
                for channel in 0..3 {
                    planar[channel * plane + i] = p[channel];
                }
            }
            Ok(planar)
        }
        other => Err(Error::Invalid(format!(
            "images can be loaded with 1 (grey) or 3 (RGB) channels, not {other}"
        ))),
    }
}

/// Load every PNG/JPEG in `dir` as `(c, h, w)` planar `u8`: decode, centre-crop to the aspect
/// ratio, resize, convert channels. Returns the number of images and their concatenated
/// pixels. An empty directory or an undecodable file is an error naming the path.
pub fn load_image_dir(dir: impl AsRef<Path>, (c, h, w): (usize, usize, usize)) -> Result<(usize, Vec<u8>)> {
    let dir = dir.as_ref();
    if h == 0 || w == 0 {
        return Err(Error::Invalid(format!("cannot resize images to {h}x{w}")));
    }
    let files = image_files(dir)?;
    if files.is_empty() {
        return Err(Error::bad_file(
            dir.display(),
            "no PNG or JPEG files (*.png, *.jpg, *.jpeg) in this directory",
        ));
    }
    let mut pixels = Vec::with_capacity(files.len() * c * h * w);
    for file in &files {
        let image = decode_image(file)?;
        let image = resize(&center_crop_to_aspect(&image, w, h), w, h);
        pixels.extend(to_planar(&image, c)?);
    }
    Ok((files.len(), pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: usize, height: usize, color: [u8; 3]) -> RgbImage {
        RgbImage {
            width,
            height,
            rgb: color.repeat(width * height),
        }
    }

    #[test]
    fn resizing_a_solid_image_keeps_its_colour() {
        for (w, h) in [(7, 5), (64, 64), (200, 3)] {
            let out = resize(&solid(37, 23, [10, 200, 90]), w, h);
            assert!(out.rgb.chunks_exact(3).all(|p| p == [10, 200, 90]), "{w}x{h}");
        }
    }

    #[test]
    fn halving_averages_pairs() {
        let image = RgbImage {
            width: 2,
            height: 1,
            rgb: vec![0, 0, 0, 100, 100, 100],
        };
        assert_eq!(resize(&image, 1, 1).rgb, vec![50, 50, 50]);
    }

    #[test]
    fn crop_keeps_the_centre() {
        let mut image = solid(4, 2, [0, 0, 0]);
        image.rgb[3..6].copy_from_slice(&[9, 9, 9]); // pixel (1, 0)
        let crop = center_crop_to_aspect(&image, 1, 1);
        assert_eq!((crop.width, crop.height), (2, 2));
        assert_eq!(&crop.rgb[..3], &[9, 9, 9]);
    }

    #[test]
    fn grey_uses_luma_weights() {
        let planar = to_planar(&solid(1, 1, [255, 0, 0]), 1).unwrap();
        assert_eq!(planar, vec![76]);
    }
}
