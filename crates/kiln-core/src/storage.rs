//! Storage: the buffer behind one or more tensor views, with the version
//! counter that in-place writes bump.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The data of a storage, per device and dtype (internal: reachable only through `Element`).
#[derive(Debug)]
pub enum Data {
    /// f32 elements.
    F32(Vec<f32>),
    /// f64 elements.
    F64(Vec<f64>),
    /// f32 elements in GPU memory (kiln-cuda's pooled buffer; returns to its pool on drop).
    #[cfg(feature = "cuda")]
    Cuda(kiln_cuda::DeviceBuffer),
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
    /// `n` copies of `value`.
    pub(crate) fn filled(dtype: crate::DType, n: usize, value: f64) -> Data {
        match dtype {
            crate::DType::F32 => {
                let mut v = take::<f32>(n);
                v.fill(value as f32);
                Data::F32(v)
            }
            crate::DType::F64 => {
                let mut v = take::<f64>(n);
                v.fill(value);
                Data::F64(v)
            }
        }
    }
    /// `n` elements whose values are unspecified: for kernels that write every element.
    pub(crate) fn uninit(dtype: crate::DType, n: usize) -> Data {
        match dtype {
            crate::DType::F32 => Data::F32(take(n)),
            crate::DType::F64 => Data::F64(take(n)),
        }
    }
}

// ---------------------------------------------------------------- buffer pool
//
// A caching allocator: a dropped storage returns its buffer to a per-thread
// free list keyed by length, and the next tensor of that length reuses it. In
// the steady state of a training step every shape repeats, so no step after
// the first asks the system allocator for tensor memory.

/// Most bytes a thread's pool keeps; beyond it, buffers are freed.
const POOL_MAX_BYTES: usize = 1 << 30;
/// Most free buffers of one length.
const POOL_MAX_PER_LEN: usize = 32;

/// Element types with a buffer pool.
pub trait Pooled: Sized + Default + Clone + 'static {
    #[doc(hidden)]
    fn with_pool<R>(f: impl FnOnce(&mut Pool<Self>) -> R) -> R;
}

/// Hasher for `usize` keys (buffer lengths here, node addresses in the
/// autograd engine): one multiply (Fibonacci hashing), which spreads aligned
/// values over the high bits the table uses. Both maps see a few operations
/// per op; SipHash made them a visible share of the per-op cost.
#[derive(Default)]
pub(crate) struct UsizeHasher(u64);

impl Hasher for UsizeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, k: usize) {
        self.0 = (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Free buffers of one element type, by length.
#[doc(hidden)]
pub struct Pool<T> {
    free: HashMap<usize, Vec<Vec<T>>, BuildHasherDefault<UsizeHasher>>,
    bytes: usize,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            free: HashMap::default(),
            bytes: 0,
        }
    }
}

thread_local! {
    static POOL_F32: RefCell<Pool<f32>> = RefCell::new(Pool::default());
    static POOL_F64: RefCell<Pool<f64>> = RefCell::new(Pool::default());
}

impl Pooled for f32 {
    fn with_pool<R>(f: impl FnOnce(&mut Pool<Self>) -> R) -> R {
        POOL_F32.with(|p| f(&mut p.borrow_mut()))
    }
}

impl Pooled for f64 {
    fn with_pool<R>(f: impl FnOnce(&mut Pool<Self>) -> R) -> R {
        POOL_F64.with(|p| f(&mut p.borrow_mut()))
    }
}

/// A buffer of exactly `n` elements, reused from the pool when one is free
/// (its contents are then whatever the last user left).
pub(crate) fn take<T: Pooled>(n: usize) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    let reused = T::with_pool(|p| {
        let v = p.free.get_mut(&n)?.pop()?;
        p.bytes -= n * std::mem::size_of::<T>();
        Some(v)
    });
    reused.unwrap_or_else(|| fresh(n))
}

/// A new zeroed buffer of `n` elements. A large one is first advised to the
/// kernel as a candidate for transparent huge pages (2 MiB), before any page
/// of it is touched: the GEMMs of a 12288-wide layer stride through their
/// operands 48 KiB at a time, and with 4 KiB pages the TLB misses cost them
/// 1–7 % (both page sizes alternated call by call on the article's GEMMs).
fn fresh<T: Pooled>(n: usize) -> Vec<T> {
    let v = vec![T::default(); n];
    #[cfg(target_os = "linux")]
    advise_huge_pages(&v);
    v
}

/// `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned part of a buffer of at least
/// 2 MiB (a hint: where the kernel's THP mode is `never`, or the call fails,
/// nothing changes).
#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if hi > lo {
        // SAFETY: [lo, hi) lies inside the live allocation behind `v`, and
        // MADV_HUGEPAGE changes no contents, only how pages are backed.
        unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
    }
}

/// Returns a buffer to the pool (or frees it when the pool is full).
pub(crate) fn give<T: Pooled>(v: Vec<T>) {
    let n = v.len();
    if n == 0 || v.capacity() != n {
        return;
    }
    let bytes = n * std::mem::size_of::<T>();
    T::with_pool(|p| {
        if p.bytes + bytes > POOL_MAX_BYTES {
            return;
        }
        let list = p.free.entry(n).or_default();
        if list.len() < POOL_MAX_PER_LEN {
            list.push(v);
            p.bytes += bytes;
        }
    });
}

/// Bytes currently held by this thread's pools.
pub fn pooled_bytes() -> usize {
    f32::with_pool(|p| p.bytes) + f64::with_pool(|p| p.bytes)
}

impl Drop for Storage {
    fn drop(&mut self) {
        let data = self.data.get_mut().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(data, Data::F32(Vec::new())) {
            Data::F32(v) => give(v),
            Data::F64(v) => give(v),
            #[cfg(feature = "cuda")]
            Data::Cuda(_) => {}
        }
    }
}
