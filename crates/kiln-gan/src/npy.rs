//! NumPy `.npy` files of `f32`: the exchange format for `kiln sample --noise z.npy --out x.npy`.
//!
//! Format (NumPy's `format.py`): the magic `\x93NUMPY`, a major and minor version byte, a
//! little-endian header length (`u16` in v1.0, `u32` in v2.0/v3.0), then an ASCII Python dict
//! literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with
//! spaces and a final `\n` so that the data starts on a 64-byte boundary, then the raw data.
//!
//! The writer produces v1.0 files of little-endian `f32` in C order. The reader accepts
//! v1.0–v3.0, C order, `<f4` or `<f8` (converted to `f32`, since `np.save` defaults to
//! float64), and checks that the data length is exactly the product of the shape.

use std::path::Path;

use kiln_core::{Error, Result};

use crate::png_out::write_atomic;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// An n-dimensional array of `f32` in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The dimensions, outermost first; `[]` for a scalar.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values in C order.
    pub data: Vec<f32>,
}

/// Encode `data` with `shape` as a v1.0 `.npy` file in memory.
///
/// Errors with [`Error::BadShape`] when the shape's element count is not `data.len()`.
pub fn encode_npy(data: &[f32], shape: &[usize]) -> Result<Vec<u8>> {
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    if count != data.len() {
        return Err(Error::BadShape {
            op: "write_npy",
            msg: format!("shape {shape:?} holds {count} values but {} were given", data.len()),
        });
    }
    let shape_text = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic(6) + version(2) + header_len(2) + header + '\n' must be a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len =
        u16::try_from(header.len()).map_err(|_| Error::Invalid(format!("npy header too long for shape {shape:?}")))?;

    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    Ok(bytes)
}

/// Write `data` with `shape` to `path` as a v1.0 `.npy` file, atomically (temp file + rename).
pub fn write_npy(path: impl AsRef<Path>, data: &[f32], shape: &[usize]) -> Result<()> {
    let bytes = encode_npy(data, shape)?;
    write_atomic(path.as_ref(), &bytes)
}

/// Read a `.npy` file of `f32` or `f64` (converted) in C order.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    parse_npy(&bytes, &path.display().to_string())
}

/// Parse the bytes of a `.npy` file; `path` only names the file in errors.
///
/// Never panics: a truncated, corrupt or unsupported file is an [`Error::BadFile`] that says
/// what is wrong.
pub fn parse_npy(bytes: &[u8], path: &str) -> Result<NpyArray> {
    let bad = |msg: String| Error::bad_file(path, msg);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file (missing the \\x93NUMPY magic)".into()));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header length".into()));
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        _ => return Err(bad(format!("unsupported .npy version {major}.{minor}"))),
    };
    let data_start = header_start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            bad(format!(
                "truncated: header says {header_len} header bytes but the file has {}",
                bytes.len()
            ))
        })?;
    let header = std::str::from_utf8(&bytes[header_start..data_start]).map_err(|_| bad("header is not text".into()))?;
    let header = parse_header(header).map_err(|msg| bad(format!("bad header: {msg}")))?;

    if header.fortran_order {
        return Err(bad(
            "Fortran-order arrays are not supported; save with np.ascontiguousarray(x)".into(),
        ));
    }
    let item_size = match header.descr.as_str() {
        "<f4" => 4,
        "<f8" => 8,
        other => {
            return Err(bad(format!(
                "dtype '{other}' is not supported; use float32 ('<f4') or float64 ('<f8')"
            )))
        }
    };
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("shape {:?} overflows", header.shape)))?;
    let payload = &bytes[data_start..];
    let expected = count.checked_mul(item_size);
    if expected != Some(payload.len()) {
        return Err(bad(format!(
            "shape {:?} of {} needs {} data bytes but the file has {}",
            header.shape,
            header.descr,
            expected.map_or("too many".to_string(), |n| n.to_string()),
            payload.len()
        )));
    }
    let data = if item_size == 4 {
        payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        payload
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b) as f32
            })
            .collect()
    };
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parse the dict literal NumPy writes. Accepts keys in any order and either quote style;
/// this is not a general Python parser.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let text = text.trim_end_matches(['\n', ' ', '\0']).trim();
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("expected a {...} dict")?;
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after_key) = take_quoted(rest).ok_or("expected a quoted key")?;
        let after_colon = after_key
            .trim_start()
            .strip_prefix(':')
            .ok_or("expected ':' after a key")?
            .trim_start();
        rest = match key {
            "descr" => {
                let (value, after) = take_quoted(after_colon).ok_or("descr must be a string")?;
                descr = Some(value.to_string());
                after
            }
            "fortran_order" => {
                if let Some(after) = after_colon.strip_prefix("False") {
                    fortran_order = Some(false);
                    after
                } else if let Some(after) = after_colon.strip_prefix("True") {
                    fortran_order = Some(true);
                    after
                } else {
                    return Err("fortran_order must be True or False".into());
                }
            }
            "shape" => {
                let body = after_colon.strip_prefix('(').ok_or("shape must be a tuple")?;
                let close = body.find(')').ok_or("unclosed shape tuple")?;
                let dims = body[..close]
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| d.trim_end_matches('L').parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| format!("bad shape ({})", &body[..close]))?;
                shape = Some(dims);
                &body[close + 1..]
            }
            other => return Err(format!("unexpected key '{other}'")),
        }
        .trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(Header {
        descr: descr.ok_or("missing 'descr'")?,
        fortran_order: fortran_order.ok_or("missing 'fortran_order'")?,
        shape: shape.ok_or("missing 'shape'")?,
    })
}

/// Split `'text'rest` or `"text"rest` into `(text, rest)`.
fn take_quoted(s: &str) -> Option<(&str, &str)> {
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &s[1..];
    let end = body.find(quote)?;
    Some((&body[..end], &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_padded_to_64_bytes() {
        let bytes = encode_npy(&[1.0, 2.0, 3.0], &[3]).unwrap();
        assert_eq!((bytes.len() - 12) % 64, 0);
        assert_eq!(bytes[bytes.len() - 13], b'\n');
    }

    #[test]
    fn parses_numpy_written_f64_header() {
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in [0.5f64, -2.0] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let array = parse_npy(&bytes, "x.npy").unwrap();
        assert_eq!(array.shape, vec![2]);
        assert_eq!(array.data, vec![0.5, -2.0]);
    }

    #[test]
    fn scalar_and_empty_shapes_round_trip() {
        let scalar = parse_npy(&encode_npy(&[7.0], &[]).unwrap(), "s").unwrap();
        assert_eq!(scalar.shape, Vec::<usize>::new());
        assert_eq!(scalar.data, vec![7.0]);
        let empty = parse_npy(&encode_npy(&[], &[0, 4]).unwrap(), "e").unwrap();
        assert_eq!(empty.shape, vec![0, 4]);
    }

    #[test]
    fn fortran_order_is_rejected() {
        let mut bytes = encode_npy(&[1.0], &[1]).unwrap();
        let at = bytes.windows(5).position(|w| w == b"False").unwrap();
        bytes[at..at + 5].copy_from_slice(b"True ");
        let err = parse_npy(&bytes, "f.npy").unwrap_err().to_string();
        assert!(err.contains("Fortran"), "{err}");
    }
}
