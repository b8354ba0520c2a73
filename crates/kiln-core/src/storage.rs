//! Storage: the buffer behind one or more tensor views, with the version
//! counter that in-place writes bump.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The data of a storage, per device and dtype (internal: reachable only through `Element`).
#[derive(Debug)]
pub enum Data {
    /// f32 elements.
    F32(Buf<f32>),
    /// f64 elements.
    F64(Buf<f64>),
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
    /// No elements and no memory: what an emptied storage holds.
    pub(crate) fn empty() -> Data {
        Data::F32(Buf::from(Vec::new()))
    }

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
    /// `f` on this thread's pool; `None` while the thread exits and the
    /// pool is gone (a tensor dropped from another thread-local's
    /// destructor): its buffer is then freed, and a new one allocated.
    fn with_pool<R>(f: impl FnOnce(&mut Pool<Self>) -> R) -> Option<R>;
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
    free: HashMap<usize, Vec<Buf<T>>, BuildHasherDefault<UsizeHasher>>,
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
    fn with_pool<R>(f: impl FnOnce(&mut Pool<Self>) -> R) -> Option<R> {
        POOL_F32.try_with(|p| f(&mut p.borrow_mut())).ok()
    }
}

impl Pooled for f64 {
    fn with_pool<R>(f: impl FnOnce(&mut Pool<Self>) -> R) -> Option<R> {
        POOL_F64.try_with(|p| f(&mut p.borrow_mut())).ok()
    }
}

/// A buffer of exactly `n` elements, reused from the pool when one is free
/// (its contents are then whatever the last user left).
pub(crate) fn take<T: Pooled>(n: usize) -> Buf<T> {
    if n == 0 {
        return Buf::from(Vec::new());
    }
    let reused = T::with_pool(|p| {
        let v = p.free.get_mut(&n)?.pop()?;
        p.bytes -= n * std::mem::size_of::<T>();
        Some(v)
    });
    reused.flatten().unwrap_or_else(|| fresh(n))
}

/// A new zeroed, 64-byte aligned buffer of `n` elements. A large one is
/// first advised to the kernel as a candidate for transparent huge pages
/// (2 MiB), before any page of it is touched: the GEMMs of a 12288-wide layer
/// stride through their operands 48 KiB at a time, and with 4 KiB pages the
/// TLB misses cost them 1–7 % (both page sizes alternated call by call on the
/// article's GEMMs).
fn fresh<T: Pooled>(n: usize) -> Buf<T> {
    Buf::zeroed(n)
}

/// One cache line of a [`Buf`]'s aligned storage.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A CPU buffer of f32 or f64 elements: 64-byte aligned when the pool
/// allocated it, or a caller's `Vec` as given ([`Tensor::from_vec`]).
///
/// The system allocator puts a large `Vec` 16 bytes past a page boundary, so
/// each row of a `[100 × 12288]` matrix started 16 bytes into a cache line,
/// and a 32-byte load of every other 8 floats spanned two lines. With the
/// operands aligned, the article's `x·W1ᵀ` ran 4.4 % faster (its B packing
/// reads such loads), `dyᵀ·x` 2 %, `h·W2ᵀ` 1.7 %, `dy·W2` 1.2 % (call by
/// call in one process, medians of 200).
///
/// [`Tensor::from_vec`]: crate::Tensor::from_vec
pub struct Buf<T>(Repr<T>);

enum Repr<T> {
    /// `len` elements at the start of zero-initialised lines.
    Aligned(Vec<Line>, usize, std::marker::PhantomData<T>),
    Plain(Vec<T>),
}

impl<T: Pooled> Buf<T> {
    /// `n` zeros in whole cache lines. A large buffer is advised for huge
    /// pages (see [`fresh`]) between the allocation and the zeroing, which
    /// is what first touches its pages. (`alloc_zeroed` with a 64-byte
    /// alignment zeroes them itself, before any advice could be given.)
    fn zeroed(n: usize) -> Buf<T> {
        let lines = (n * std::mem::size_of::<T>()).div_ceil(64);
        if lines == 0 {
            return Buf(Repr::Plain(Vec::new()));
        }
        let layout = std::alloc::Layout::array::<Line>(lines).expect("buffer size overflows");
        // SAFETY: the layout has a non-zero size; the pointer is checked for
        // null. Every byte is zeroed (a valid `Line`) before the `Vec` is
        // made, and it has exactly the layout a `Vec<Line>` of capacity
        // `lines` frees with.
        let v = unsafe {
            let ptr = std::alloc::alloc(layout) as *mut Line;
            if ptr.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            #[cfg(target_os = "linux")]
            advise_huge_pages(ptr as *const u8, lines * 64);
            std::ptr::write_bytes(ptr, 0, lines);
            Vec::from_raw_parts(ptr, lines, lines)
        };
        Buf(Repr::Aligned(v, n, std::marker::PhantomData))
    }

    /// Whether the pool may hand this buffer out again: pooled ones are the
    /// aligned ones.
    fn is_aligned(&self) -> bool {
        matches!(self.0, Repr::Aligned(..))
    }
}

impl<T> From<Vec<T>> for Buf<T> {
    fn from(v: Vec<T>) -> Buf<T> {
        Buf(Repr::Plain(v))
    }
}

impl<T: Pooled> std::ops::Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.0 {
            // SAFETY: the lines hold at least `len` elements' bytes, all
            // initialised. T is f32 or f64: `Pooled` is implemented for
            // nothing else, and this private module seals it. 64 bytes
            // satisfy their alignment, and any bits are a value of them.
            Repr::Aligned(lines, len, _) => unsafe { std::slice::from_raw_parts(lines.as_ptr().cast(), *len) },
            Repr::Plain(v) => v,
        }
    }
}

impl<T: Pooled> std::ops::DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.0 {
            // SAFETY: as for `deref`, with the unique borrow of the lines.
            Repr::Aligned(lines, len, _) => unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast(), *len) },
            Repr::Plain(v) => v,
        }
    }
}

impl<T: Pooled + std::fmt::Debug> std::fmt::Debug for Buf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// `madvise(MADV_HUGEPAGE)` on the 2 MiB-aligned part of a buffer of at least
/// 2 MiB (a hint: where the kernel's THP mode is `never`, or the call fails,
/// nothing changes).
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *const u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    let start = ptr as usize;
    let end = start + bytes;
    let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    // Miri has no madvise; the hint changes nothing it could check.
    if hi > lo && !cfg!(miri) {
        // SAFETY: [lo, hi) lies inside the live allocation at `ptr`, and
        // MADV_HUGEPAGE changes no contents, only how pages are backed.
        unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
    }
}

/// Returns a buffer to the pool (or frees it when the pool is full, or when
/// it is a caller's unaligned `Vec`).
pub(crate) fn give<T: Pooled>(v: Buf<T>) {
    let n = v.len();
    if n == 0 || !v.is_aligned() {
        return;
    }
    let bytes = n * std::mem::size_of::<T>();
    // With the pool gone (thread exit) the closure does not run and the
    // buffer is freed here.
    let _ = T::with_pool(|p| {
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
    f32::with_pool(|p| p.bytes).unwrap_or(0) + f64::with_pool(|p| p.bytes).unwrap_or(0)
}

impl Storage {
    /// Moves the data out (a CPU buffer back to the pool, a GPU buffer back
    /// to its own), leaving the storage empty.
    fn give_back_data(&mut self) {
        let data = self.data.get_mut().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(data, Data::empty()) {
            Data::F32(v) => give(v),
            Data::F64(v) => give(v),
            #[cfg(feature = "cuda")]
            Data::Cuda(_) => {}
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.give_back_data();
    }
}

// ---------------------------------------------------------------- storage shells
//
// Every tensor an op makes has a storage of its own, an `Arc` allocation
// next to the tensor's. When the last tensor on a storage drops, the emptied
// storage (its buffer gone back to the pool) is kept in a per-thread list
// and the next new tensor's data moves into it: one allocation and one free
// fewer per op, which in a backward pass freeing the whole graph at once
// took the system allocator's slow paths.

/// Most emptied allocations a thread keeps on each of its lists (storages
/// here, tensor handles in tensor.rs, graph nodes in autograd.rs).
const MAX_SHELLS: usize = 1024;

/// A per-thread list of emptied allocations kept for reuse.
pub(crate) type ShellList<T> = RefCell<Vec<T>>;

thread_local! {
    static SHELLS: ShellList<Arc<Storage>> = const { RefCell::new(Vec::new()) };
}

/// The allocation `list` kept last, if any (none during thread exit, once
/// the list is gone).
pub(crate) fn reuse<T: 'static>(list: &'static std::thread::LocalKey<ShellList<T>>) -> Option<T> {
    list.try_with(|s| s.borrow_mut().pop()).ok().flatten()
}

/// Keeps `item` on `list` while it has room; otherwise, or during thread
/// exit (the list gone), it is dropped.
pub(crate) fn keep<T: 'static>(list: &'static std::thread::LocalKey<ShellList<T>>, item: T) {
    let _ = list.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < MAX_SHELLS {
            s.push(item);
        }
    });
}

/// A storage holding `data`, with version 0: an emptied one of this thread's
/// when there is one, else a new one.
pub(crate) fn storage_for(data: Data) -> Arc<Storage> {
    match reuse(&SHELLS) {
        Some(mut shell) => {
            // Shells are kept only while nothing else refers to them.
            let st = Arc::get_mut(&mut shell).expect("a kept storage has no other handle");
            *st.data.get_mut().unwrap_or_else(|e| e.into_inner()) = data;
            *st.version.get_mut() = 0;
            shell
        }
        None => Arc::new(Storage::new(data)),
    }
}

/// A tensor handle's release of its storage: when it was the last handle,
/// the data goes back to its pool and the emptied storage to this thread's
/// shells; otherwise the count just drops. A storage whose lock was
/// poisoned (a panic while writing it) is freed, not kept.
pub(crate) fn release(mut storage: Arc<Storage>) {
    let Some(st) = Arc::get_mut(&mut storage) else {
        return;
    };
    if st.data.is_poisoned() {
        return;
    }
    st.give_back_data();
    keep(&SHELLS, storage);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_buffers_are_zeroed_cache_line_aligned_and_reused() {
        // Odd lengths too: the last line is only partly used.
        for n in [1usize, 7, 16, 1000, 100 * 12288 + 3] {
            let b = take::<f32>(n);
            assert_eq!(b.len(), n);
            assert_eq!(b.as_ptr() as usize % 64, 0, "f32 × {n}");
            let d = take::<f64>(n);
            assert_eq!(d.as_ptr() as usize % 64, 0, "f64 × {n}");
            give(b);
            give(d);
        }
        // A fresh buffer reads as zeros; a returned one comes back (same
        // address) for the next request of its length.
        let n = 4099;
        let mut b = Buf::<f32>::zeroed(n);
        assert!(b.iter().all(|&x| x == 0.0));
        b[n - 1] = 2.5;
        let at = b.as_ptr();
        give(b);
        let again = take::<f32>(n);
        assert_eq!((again.as_ptr(), again[n - 1]), (at, 2.5));
        // A caller's Vec is used as given, and not pooled (it need not be
        // aligned).
        let v: Buf<f32> = vec![1.0f32; 333].into();
        assert!(!v.is_aligned() && v.iter().all(|&x| x == 1.0));
        give(v);
        assert!(f32::with_pool(|p| p.free.get(&333).is_none_or(|l| l.is_empty())).unwrap());
    }

    #[test]
    fn a_released_storage_is_reused_empty_at_version_zero_and_only_when_unshared() {
        use crate::{Device, Tensor};
        let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3], Device::Cpu).unwrap();
        t.fill_(5.0).unwrap();
        assert_eq!(t.version(), 1);
        let at = Arc::as_ptr(&t.0.storage);
        // A view shares the storage: dropping the first handle keeps it.
        let view = t.reshape(&[3, 1]).unwrap();
        drop(t);
        let other = Tensor::from_vec(vec![7.0f32; 3], &[3], Device::Cpu).unwrap();
        assert_ne!(Arc::as_ptr(&other.0.storage), at);
        assert_eq!(view.to_vec::<f32>().unwrap(), vec![5.0; 3]);
        // The last handle gone, the next tensor moves into that storage:
        // with its own data, and at version 0.
        drop(view);
        let next = Tensor::from_vec(vec![9.0f64, 8.0], &[2], Device::Cpu).unwrap();
        assert_eq!(Arc::as_ptr(&next.0.storage), at);
        assert_eq!(next.version(), 0);
        assert_eq!(next.to_vec::<f64>().unwrap(), vec![9.0, 8.0]);
        assert_eq!(other.to_vec::<f32>().unwrap(), vec![7.0; 3]);
    }
}
