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
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
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

/// One tensor as the safetensors writer takes it. Its bytes are produced
/// only when the writer reaches it and dropped once written, so saving a
/// checkpoint holds one tensor's bytes at a time, not a copy of the file.
struct LazyTensor<'a> {
    tensor: &'a Tensor,
    /// The first error met while reading a tensor (the writer cannot take one).
    failed: &'a RefCell<Option<Error>>,
}

impl View for LazyTensor<'_> {
    fn dtype(&self) -> Dtype {
        match self.tensor.dtype() {
            DType::F32 => Dtype::F32,
            DType::F64 => Dtype::F64,
        }
    }
    fn shape(&self) -> &[usize] {
        self.tensor.shape()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let bytes = match self.tensor.dtype() {
            DType::F32 => self
                .tensor
                .to_vec::<f32>()
                .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()),
            DType::F64 => self
                .tensor
                .to_vec::<f64>()
                .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()),
        };
        Cow::Owned(bytes.unwrap_or_else(|e| {
            self.failed.borrow_mut().get_or_insert(e);
            vec![0; self.data_len()]
        }))
    }
    fn data_len(&self) -> usize {
        self.tensor.numel() * self.tensor.dtype().size_in_bytes()
    }
}

/// Saves named tensors (in their own dtype) and string metadata to a
/// safetensors file, atomically. Used for checkpoints: optimizer state, step
/// counts and RNG positions go into `tensors` and `metadata`.
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
    let failed = RefCell::new(None);
    let views = tensors.iter().map(|(n, t)| {
        (
            n.as_str(),
            LazyTensor {
                tensor: t,
                failed: &failed,
            },
        )
    });
    let info = if metadata.is_empty() { None } else { Some(metadata) };
    write_atomic_with(path, |tmp| {
        safetensors::serialize_to_file(views, &info, tmp).map_err(|e| match e {
            safetensors::SafeTensorError::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        match failed.borrow_mut().take() {
            Some(e) => Err(std::io::Error::other(e.to_string())),
            None => Ok(()),
        }
    })
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
