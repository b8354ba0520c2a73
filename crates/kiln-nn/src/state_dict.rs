//! State dicts and checkpoints as safetensors files.
//!
//! Names and layouts are PyTorch's (`0.weight` as [out, in], `0.bias`,
//! `1.running_mean`, …), stored little-endian in the tensor's dtype (F32 for
//! models), so `safetensors.torch.load_file` + `load_state_dict(strict=True)`
//! reads kiln's files and kiln reads PyTorch's.
//!
//! Writes are atomic: the bytes go to a temporary file in the same directory,
//! which is fsynced and then renamed over the target, so a crash leaves either
//! the old file or the new one, never a partial one.
//!
//! Reads treat the file as untrusted: a truncated or corrupt file, an
//! unsupported dtype, a missing or unexpected key or a shape mismatch is an
//! [`Error::BadFile`] naming the path (and the key), never a panic. A failed
//! [`load_state_dict`] leaves the module untouched: everything is validated
//! before the first value is copied.
//!
//! ```
//! use kiln_nn::{load_state_dict, save_state_dict, Linear};
//! use rand::SeedableRng;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let (saved, restored) = (Linear::new(3, 2, true, &mut rng)?, Linear::new(3, 2, true, &mut rng)?);
//! let path = std::env::temp_dir().join(format!("kiln-doc-{}.safetensors", std::process::id()));
//! save_state_dict(&saved, &path)?;
//! load_state_dict(&restored, &path)?; // copies into restored's existing tensors
//! assert_eq!(saved.weight.to_vec::<f32>()?, restored.weight.to_vec::<f32>()?);
//! # std::fs::remove_file(&path).unwrap();
//! # Ok::<(), kiln_core::Error>(())
//! ```

use crate::Module;
use kiln_core::{no_grad, DType, Device, Error, Result, Tensor};
use safetensors::tensor::{Dtype, SafeTensors};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Named tensors in file order, as [`load_tensors`] returns them.
pub type NamedTensors = Vec<(String, Tensor)>;

/// The state dict of a module: its parameters then its buffers, with their names.
pub fn state_dict(module: &dyn Module) -> Vec<(String, Tensor)> {
    let mut entries = module.named_parameters();
    entries.extend(module.named_buffers());
    entries
}

/// Saves the parameters and buffers of `module` to a safetensors file.
pub fn save_state_dict(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    save_tensors(&state_dict(module), HashMap::new(), path)
}

/// Loads a safetensors file into the existing parameters and buffers of
/// `module`, in place (under `no_grad`), so optimizers holding the
/// parameters keep working. Values are converted to each tensor's dtype.
/// The file must hold exactly the module's keys with the same shapes.
pub fn load_state_dict(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let (tensors, _) = load_tensors(path)?;
    copy_into(module, &tensors, &path.display().to_string())
}

/// Copies named tensors (e.g. from [`load_tensors`]) into the parameters and
/// buffers of `module` in place, with the checks of [`load_state_dict`];
/// errors name `source` as the file.
pub fn load_state_dict_from(module: &dyn Module, tensors: &[(String, Tensor)], source: &str) -> Result<()> {
    copy_into(module, tensors, source)
}

fn copy_into(module: &dyn Module, tensors: &[(String, Tensor)], source: &str) -> Result<()> {
    let expected = state_dict(module);
    let given: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let expected_names: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<&str> = expected_names
        .iter()
        .copied()
        .filter(|n| !given.contains_key(n))
        .collect();
    let mut unexpected: Vec<&str> = given.keys().copied().filter(|n| !expected_names.contains(n)).collect();
    unexpected.sort_unstable();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(Error::bad_file(
            source,
            format!("state dict does not match the module: missing keys {missing:?}, unexpected keys {unexpected:?}"),
        ));
    }
    for (name, dst) in &expected {
        let src = given[name.as_str()];
        if src.shape() != dst.shape() {
            return Err(Error::bad_file(
                source,
                format!(
                    "shape mismatch for {name}: file has {:?}, module has {:?}",
                    src.shape(),
                    dst.shape()
                ),
            ));
        }
    }
    no_grad(|| {
        expected
            .iter()
            .try_for_each(|(name, dst)| dst.copy_(&given[name.as_str()].to_dtype(dst.dtype())?))
    })
}

/// Little-endian bytes of one tensor (f32 or f64), as stored in the file.
fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    Ok(match t.dtype() {
        DType::F32 => t.to_vec::<f32>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::F64 => t.to_vec::<f64>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
    })
}

/// The safetensors header for `tensors` (in this order, data back to back)
/// and `metadata`: JSON with `__metadata__` first, keys in sorted order,
/// padded with spaces to a multiple of 8 bytes. Built by hand rather than by
/// the safetensors crate, whose metadata map is a `HashMap`: the same
/// checkpoint must give the same bytes.
fn safetensors_header(tensors: &[(&str, &Tensor)], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let mut parts = Vec::new();
    if !metadata.is_empty() {
        let kv: Vec<String> = metadata.iter().map(|(k, v)| format!("{}:{}", q(k), q(v))).collect();
        parts.push(format!("\"__metadata__\":{{{}}}", kv.join(",")));
    }
    let mut offset = 0;
    for (name, t) in tensors {
        let len = t.numel() * t.dtype().size_in_bytes();
        let dtype = match t.dtype() {
            DType::F32 => "F32",
            DType::F64 => "F64",
        };
        let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
        parts.push(format!(
            "{}:{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            q(name),
            shape.join(","),
            offset + len
        ));
        offset += len;
    }
    let mut header = format!("{{{}}}", parts.join(",")).into_bytes();
    header.resize(header.len().div_ceil(8) * 8, b' ');
    header
}

/// Saves named tensors (in their own dtype) and string metadata to a
/// safetensors file, atomically. Used for checkpoints: optimizer state, step
/// counts and RNG positions go into `tensors` and `metadata`. Tensors are
/// written f64 before f32, each group in name order, one at a time (a checkpoint never holds a second
/// copy of itself in memory), and the same tensors and metadata always give
/// the same bytes.
pub fn save_tensors(
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    let mut seen = BTreeSet::new();
    if let Some((dup, _)) = tensors.iter().find(|(n, _)| !seen.insert(n.as_str())) {
        return Err(Error::Invalid(format!(
            "save_tensors {}: tensor name {dup:?} appears twice",
            path.display()
        )));
    }
    let mut sorted: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    // Wider dtypes first, then by name: every tensor's data starts at a
    // multiple of its element size (readers may map it in place).
    sorted.sort_by_key(|(n, t)| (std::cmp::Reverse(t.dtype().size_in_bytes()), *n));
    let header = safetensors_header(&sorted, &metadata.into_iter().collect());
    let failed = RefCell::new(None);
    let written = write_atomic_with(path, |tmp| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        f.write_all(&(header.len() as u64).to_le_bytes())?;
        f.write_all(&header)?;
        for (_, t) in &sorted {
            match tensor_bytes(t) {
                Ok(b) => f.write_all(&b)?,
                Err(e) => {
                    let msg = e.to_string();
                    failed.borrow_mut().get_or_insert(e);
                    return Err(std::io::Error::other(msg));
                }
            }
        }
        f.flush()
    });
    match failed.into_inner() {
        Some(e) => Err(e),
        None => written,
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory:
/// write, fsync, rename (and fsync the directory where the OS allows it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| std::fs::File::create(tmp)?.write_all(bytes))
}

/// [`write_atomic`] for a writer that creates the temporary file itself:
/// `write(tmp)` fills it, then it is fsynced and renamed over `path`. On any
/// error the temporary file is removed and `path` is untouched.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> std::io::Result<()> {
        write(&tmp)?;
        std::fs::OpenOptions::new().write(true).open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path.display(), e));
    }
    // Make the rename itself durable; not every platform can open a directory.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Loads every tensor and the string metadata of a safetensors file. F32
/// and F64 tensors keep their dtype; I64 tensors (PyTorch's counters such as
/// `num_batches_tracked`) become F64. Other dtypes are refused.
pub fn load_tensors(path: impl AsRef<Path>) -> Result<(NamedTensors, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    parse_tensors(&bytes, &path.display().to_string())
}

/// Parses the bytes of a safetensors file (see [`load_tensors`]); errors name `source`.
pub fn parse_tensors(bytes: &[u8], source: &str) -> Result<(NamedTensors, HashMap<String, String>)> {
    let bad = |msg: String| Error::bad_file(source, msg);
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::with_capacity(file.len());
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let tensor = match view.dtype() {
            Dtype::F32 => Tensor::from_vec(le_values(data, f32::from_le_bytes), &shape, Device::Cpu)?,
            Dtype::F64 => Tensor::from_vec(le_values(data, f64::from_le_bytes), &shape, Device::Cpu)?,
            Dtype::I64 => {
                let ints = le_values(data, i64::from_le_bytes);
                Tensor::from_vec(
                    ints.into_iter().map(|v| v as f64).collect::<Vec<f64>>(),
                    &shape,
                    Device::Cpu,
                )?
            }
            other => {
                return Err(bad(format!(
                    "tensor {name} has dtype {other:?}; kiln reads F32, F64 and I64"
                )))
            }
        };
        out.push((name, tensor));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata))
}

/// Decodes little-endian values; the length was validated by the safetensors parser.
fn le_values<T, const N: usize>(data: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| from_le(c.try_into().expect("chunks_exact yields N bytes")))
        .collect()
}
