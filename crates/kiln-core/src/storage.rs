//! Storage: the buffer behind one or more tensor views, with the version
//! counter that in-place writes bump.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The data of a storage, per device and dtype (internal: reachable only through `Element`).
#[derive(Debug)]
pub enum Data {
    /// f32 elements.
    F32(Vec<f32>),
    /// f64 elements.
    F64(Vec<f64>),
}

/// A buffer shared by all views of it. Views never own a copy.
#[derive(Debug)]
pub(crate) struct Storage {
    data: RwLock<Data>,
    /// Bumped by every in-place write; saved tensors remember the value they saw.
    version: AtomicU64,
}

impl Storage {
    pub(crate) fn new(data: Data) -> Self {
        Storage {
            data: RwLock::new(data),
            version: AtomicU64::new(0),
        }
    }
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Data> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }
    /// Write access; bumps the version counter.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Data> {
        self.version.fetch_add(1, Ordering::Relaxed);
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }
}

impl Data {
    /// `n` zeros of `dtype`.
    pub(crate) fn zeros(dtype: crate::DType, n: usize) -> Data {
        match dtype {
            crate::DType::F32 => Data::F32(vec![0.0; n]),
            crate::DType::F64 => Data::F64(vec![0.0; n]),
        }
    }
    /// `rows` copies of `row`, row-major.
    pub(crate) fn repeat_rows(dtype: crate::DType, row: &[f64], rows: usize) -> Data {
        match dtype {
            crate::DType::F32 => {
                let r: Vec<f32> = row.iter().map(|&v| v as f32).collect();
                Data::F32(r.iter().copied().cycle().take(r.len() * rows).collect())
            }
            crate::DType::F64 => {
                Data::F64(row.iter().copied().cycle().take(row.len() * rows).collect())
            }
        }
    }
}
