//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! An IDX file is a big-endian header followed by the data:
//! `00 00 <type> <ndim>`, then `ndim` dimensions as `u32`, then the values in C order. Images
//! files have type `0x08` (`u8`) and 3 dimensions (magic 2051 = `0x00000803`:
//! `[count, rows, cols]`); labels files have type `0x08` and 1 dimension (magic 2049 =
//! `0x00000801`: `[count]`). The reader checks the magic, the dimensions and that the data
//! length is exactly what the header says, so a truncated or padded file is an error, not a
//! silently shorter data set.

use std::io::{Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use kiln_core::{Error, Result};

use crate::png_out::write_atomic;

/// Magic number of an IDX file of `u8` images `[count, rows, cols]`.
pub const IDX_IMAGES_MAGIC: u32 = 2051;
/// Magic number of an IDX file of `u8` labels `[count]`.
pub const IDX_LABELS_MAGIC: u32 = 2049;

/// Largest decompressed size accepted (1 GiB): far above MNIST's 47 MB, and a guard against a
/// gzip bomb exhausting memory.
const MAX_DECOMPRESSED: u64 = 1 << 30;

/// A stack of grayscale `u8` images as stored in an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// `count · rows · cols` pixels, image after image, each row-major; 0 = black.
    pub pixels: Vec<u8>,
}

/// Read an IDX images file (magic 2051), gzip-compressed or raw (detected from the content).
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    let name = path.display().to_string();
    // Hand the decompressed buffer over instead of copying the pixels out of
    // it: Fashion-MNIST is 47 MB, and peak memory counts.
    let raw = match gunzip_if_needed(&bytes, &name)? {
        std::borrow::Cow::Owned(v) => v,
        std::borrow::Cow::Borrowed(_) => bytes,
    };
    images_from_raw(raw, &name)
}

/// Read an IDX labels file (magic 2049), gzip-compressed or raw.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let bytes = read_maybe_gz(path)?;
    parse_idx_labels(&bytes, &path.display().to_string())
}

/// Parse the bytes of an IDX images file, raw or gzip-compressed; `path` only names the file in
/// errors. Never panics on malformed input.
pub fn parse_idx_images(bytes: &[u8], path: &str) -> Result<IdxImages> {
    images_from_raw(gunzip_if_needed(bytes, path)?.into_owned(), path)
}

/// [`parse_idx_images`] on decompressed bytes it may keep: the header is
/// removed in place and the rest becomes the pixel buffer.
fn images_from_raw(mut bytes: Vec<u8>, path: &str) -> Result<IdxImages> {
    let dims = parse_header(&bytes, IDX_IMAGES_MAGIC, 3, "images", path)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(Error::bad_file(
            path,
            format!("images of {rows}x{cols} pixels are empty"),
        ));
    }
    bytes.drain(..4 + 4 * 3);
    bytes.shrink_to_fit();
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes,
    })
}

/// Parse the bytes of an IDX labels file, raw or gzip-compressed; `path` only names the file in
/// errors. Never panics on malformed input.
pub fn parse_idx_labels(bytes: &[u8], path: &str) -> Result<Vec<u8>> {
    let bytes = gunzip_if_needed(bytes, path)?;
    parse_header(&bytes, IDX_LABELS_MAGIC, 1, "labels", path)?;
    Ok(bytes[8..].to_vec())
}

/// Encode images as an IDX file (magic 2051) in memory, gzip-compressed when `gzip` is true.
pub fn encode_idx_images(images: &IdxImages, gzip: bool) -> Result<Vec<u8>> {
    let expected = images.count * images.rows * images.cols;
    if images.pixels.len() != expected {
        return Err(Error::BadShape {
            op: "encode_idx_images",
            msg: format!(
                "{} images of {}x{} need {expected} pixels, got {}",
                images.count,
                images.rows,
                images.cols,
                images.pixels.len()
            ),
        });
    }
    let mut bytes = IDX_IMAGES_MAGIC.to_be_bytes().to_vec();
    for d in [images.count, images.rows, images.cols] {
        bytes.extend_from_slice(&dim_u32(d)?.to_be_bytes());
    }
    bytes.extend_from_slice(&images.pixels);
    maybe_gzip(bytes, gzip)
}

/// Encode labels as an IDX file (magic 2049) in memory, gzip-compressed when `gzip` is true.
pub fn encode_idx_labels(labels: &[u8], gzip: bool) -> Result<Vec<u8>> {
    let mut bytes = IDX_LABELS_MAGIC.to_be_bytes().to_vec();
    bytes.extend_from_slice(&dim_u32(labels.len())?.to_be_bytes());
    bytes.extend_from_slice(labels);
    maybe_gzip(bytes, gzip)
}

/// Write images as an IDX file, atomically; gzip-compressed when the path ends in `.gz`.
pub fn write_idx_images(path: impl AsRef<Path>, images: &IdxImages) -> Result<()> {
    let path = path.as_ref();
    let gzip = path.extension().is_some_and(|e| e == "gz");
    write_atomic(path, &encode_idx_images(images, gzip)?)
}

fn dim_u32(d: usize) -> Result<u32> {
    u32::try_from(d).map_err(|_| Error::Invalid(format!("IDX dimension {d} exceeds u32")))
}

fn maybe_gzip(bytes: Vec<u8>, gzip: bool) -> Result<Vec<u8>> {
    if !gzip {
        return Ok(bytes);
    }
    let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&bytes)
        .and_then(|_| encoder.finish())
        .map_err(|e| Error::io("<gzip in memory>", e))
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path.display(), e))
}

/// Decompress when the bytes start with the gzip magic `1f 8b`; otherwise borrow them.
fn gunzip_if_needed<'a>(bytes: &'a [u8], path: &str) -> Result<std::borrow::Cow<'a, [u8]>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    // The gzip trailer holds the decompressed size (mod 2³²): reserve it so
    // the buffer is not grown by doubling (a 47 MB file would peak at 64 MB).
    let hint = bytes.len().checked_sub(4).map_or(0, |at| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as u64
    });
    // A corrupt trailer cannot make it reserve more than deflate can expand to.
    let mut out = Vec::with_capacity(hint.min(MAX_DECOMPRESSED).min(1032 * bytes.len() as u64) as usize);
    GzDecoder::new(bytes)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_file(path, format!("corrupt or truncated gzip data: {e}")))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(Error::bad_file(
            path,
            format!("decompresses to more than {MAX_DECOMPRESSED} bytes"),
        ));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Check magic, rank and exact length; return the dimensions.
fn parse_header(bytes: &[u8], magic: u32, ndim: usize, what: &str, path: &str) -> Result<Vec<usize>> {
    let bad = |msg: String| Error::bad_file(path, msg);
    let header_len = 4 + 4 * ndim;
    if bytes.len() < 4 {
        return Err(bad(format!(
            "truncated: {} bytes, too short for an IDX header",
            bytes.len()
        )));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        let hint = match found {
            IDX_IMAGES_MAGIC => " (this is an images file)",
            IDX_LABELS_MAGIC => " (this is a labels file)",
            _ => "",
        };
        return Err(bad(format!(
            "bad magic {found} (0x{found:08x}): expected {magic} for IDX {what}{hint}"
        )));
    }
    if bytes.len() < header_len {
        return Err(bad(format!(
            "truncated header: {} bytes, the {what} header needs {header_len}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_add(header_len));
    match expected {
        Some(n) if n == bytes.len() => Ok(dims),
        Some(n) if n > bytes.len() => Err(bad(format!(
            "truncated: dims {dims:?} need {n} bytes but the file has {}",
            bytes.len()
        ))),
        Some(n) => Err(bad(format!(
            "{} trailing bytes after the {n} bytes that dims {dims:?} describe",
            bytes.len() - n
        ))),
        None => Err(bad(format!("dims {dims:?} overflow"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_file_read_as_images_names_the_mistake() {
        let bytes = encode_idx_labels(&[1, 2, 3], false).unwrap();
        let err = parse_idx_images(&bytes, "l.idx").unwrap_err().to_string();
        assert!(err.contains("labels file"), "{err}");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = encode_idx_labels(&[1, 2, 3], false).unwrap();
        bytes.push(0);
        let err = parse_idx_labels(&bytes, "l.idx").unwrap_err().to_string();
        assert!(err.contains("trailing"), "{err}");
    }
}
