//! A caching allocator: freed device buffers go to a free list keyed by their length and are
//! handed out again for the next request of the same length, so a training step that repeats
//! the same shapes never calls the driver's allocator after the first step.

use cudarc::driver::{CudaSlice, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{CudaError, Result};

/// Counters describing the pool's behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Requests served from a free list.
    pub hits: u64,
    /// Requests that had to call the driver's allocator.
    pub misses: u64,
    /// Bytes currently held in free lists (allocated from the driver, not in use).
    pub cached_bytes: usize,
}

/// The shared state behind every [`DeviceBuffer`] of one backend.
#[derive(Debug)]
pub(crate) struct Pool {
    stream: Arc<CudaStream>,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    free: HashMap<usize, Vec<CudaSlice<f32>>>,
    stats: PoolStats,
}

impl Pool {
    pub(crate) fn new(stream: Arc<CudaStream>) -> Self {
        Pool {
            stream,
            state: Mutex::new(PoolState::default()),
        }
    }

    /// A buffer of `len` floats with unspecified contents.
    pub(crate) fn take(self: &Arc<Self>, len: usize) -> Result<DeviceBuffer> {
        // cuMemAlloc rejects 0 bytes; an empty buffer still owns one element.
        let capacity = len.max(1);
        let reused = {
            let mut state = self.state.lock().expect("pool mutex poisoned");
            let slice = state.free.get_mut(&capacity).and_then(Vec::pop);
            if slice.is_some() {
                state.stats.hits += 1;
                state.stats.cached_bytes -= capacity * 4;
            } else {
                state.stats.misses += 1;
            }
            slice
        };
        let slice = match reused {
            Some(s) => s,
            None => {
                // SAFETY (both calls): the memory is uninitialised, but every bit pattern is a
                // valid f32 and the buffer is only read through device kernels or copies.
                match unsafe { self.stream.alloc::<f32>(capacity) } {
                    Ok(s) => s,
                    Err(_) => {
                        // Out of memory is often only fragmentation by cached buffers of other
                        // sizes: give them back to the driver and try once more.
                        self.empty();
                        unsafe { self.stream.alloc::<f32>(capacity) }
                            .map_err(|e| CudaError::driver(format!("allocating {capacity} floats"), e))?
                    }
                }
            }
        };
        Ok(DeviceBuffer {
            slice: Some(slice),
            len,
            pool: Arc::clone(self),
        })
    }

    fn give_back(&self, slice: CudaSlice<f32>) {
        let mut state = self.state.lock().expect("pool mutex poisoned");
        state.stats.cached_bytes += slice.len() * 4;
        state.free.entry(slice.len()).or_default().push(slice);
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.state.lock().expect("pool mutex poisoned").stats
    }

    /// Returns every cached buffer to the driver.
    pub(crate) fn empty(&self) {
        let mut state = self.state.lock().expect("pool mutex poisoned");
        state.free.clear();
        state.stats.cached_bytes = 0;
    }
}

/// A device buffer of `f32` from the backend's pool; returns to the pool when dropped.
///
/// All work runs on the backend's single stream, so a buffer dropped while a kernel that uses
/// it is still queued is only reused by work queued after that kernel: stream order keeps it
/// safe without events.
#[derive(Debug)]
pub struct DeviceBuffer {
    slice: Option<CudaSlice<f32>>,
    len: usize,
    pool: Arc<Pool>,
}

impl DeviceBuffer {
    /// Number of `f32` elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The underlying cudarc slice (its length is `max(len, 1)`).
    pub fn slice(&self) -> &CudaSlice<f32> {
        self.slice.as_ref().expect("buffer present until drop")
    }

    /// The underlying cudarc slice, mutably.
    pub fn slice_mut(&mut self) -> &mut CudaSlice<f32> {
        self.slice.as_mut().expect("buffer present until drop")
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Some(slice) = self.slice.take() {
            self.pool.give_back(slice);
        }
    }
}
