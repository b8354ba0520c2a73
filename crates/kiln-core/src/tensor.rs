//! The `Tensor` handle: storage + shape + strides + dtype + device, and (when
//! it takes part in autograd) a node of the graph. Constructors, host
//! transfers, ndarray interop and the few in-place updates optimizers need.

use crate::autograd::{self, Hook, Node};
use crate::shape::{contiguous_strides, Dims, Strides};
use crate::storage::{Buf, Data, Storage};
use crate::{Error, Result};
use kiln_cpu::elementwise::{copy_strided, Strided};
use smallvec::smallvec;
use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: the working type everywhere.
    F32,
    /// 64-bit float: CPU only, for gradcheck and reference tests.
    F64,
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        })
    }
}

impl DType {
    /// Size of one element in bytes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// Where a tensor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; kernels from kiln-cpu.
    Cpu,
    /// An NVIDIA GPU by ordinal; kernels from kiln-cuda (feature `cuda`).
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| Error::Invalid(format!("unknown device {s:?}: expected cpu, cuda or cuda:N"))),
        }
    }
}

/// Rust element types a tensor can hold (f32, f64).
pub trait Element: kiln_cpu::Float + crate::storage::Pooled {
    /// The matching [`DType`].
    const DTYPE: DType;
    #[doc(hidden)]
    fn wrap(v: Buf<Self>) -> Data;
    #[doc(hidden)]
    fn slice(d: &Data) -> Option<&[Self]>;
    #[doc(hidden)]
    fn slice_mut(d: &mut Data) -> Option<&mut [Self]>;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn wrap(v: Buf<Self>) -> Data {
        Data::F32(v)
    }
    fn slice(d: &Data) -> Option<&[Self]> {
        match d {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(d: &mut Data) -> Option<&mut [Self]> {
        match d {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn wrap(v: Buf<Self>) -> Data {
        Data::F64(v)
    }
    fn slice(d: &Data) -> Option<&[Self]> {
        match d {
            Data::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(d: &mut Data) -> Option<&mut [Self]> {
        match d {
            Data::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// A cheap, clonable handle to an n-dimensional array that may take part in
/// autograd. Cloning shares the data (and the graph node).
#[derive(Clone)]
pub struct Tensor(pub(crate) ManuallyDrop<Arc<Inner>>);

impl Drop for Tensor {
    fn drop(&mut self) {
        // SAFETY: the field is not used again: this is the handle's drop.
        release_handle(unsafe { ManuallyDrop::take(&mut self.0) });
    }
}

pub(crate) struct Inner {
    /// Taken (not dropped) by `Inner`'s `Drop`, which hands a storage no
    /// other handle shares to [`crate::storage::release`].
    pub(crate) storage: ManuallyDrop<Arc<Storage>>,
    pub(crate) shape: Dims,
    pub(crate) strides: Strides,
    pub(crate) offset: usize,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    pub(crate) requires_grad: bool,
    /// The node that produced this tensor; None for leaves and constants.
    pub(crate) grad_fn: Option<Arc<Node>>,
    /// Accumulated gradient of a leaf.
    pub(crate) grad: Mutex<Option<Tensor>>,
    /// Hooks of a leaf (non-leaf hooks live on the node).
    pub(crate) hooks: Mutex<Vec<Hook>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: `storage` is not used again: this is the handle's drop.
        let storage = unsafe { ManuallyDrop::take(&mut self.storage) };
        crate::storage::release(storage);
        if let Some(node) = self.grad_fn.take() {
            autograd::drop_node(node);
        }
    }
}

// ---------------------------------------------------------------- handle shells
//
// Every op's output, view and gradient is a new `Tensor`, an `Arc<Inner>`
// allocation of its own: about half the small allocations of a training
// step. As with the storages (storage.rs), the allocation outlives its
// tensor: when the last `Tensor` on an `Inner` drops, the `Inner` gives up
// what it holds (its storage goes back as before; its node, gradient and
// hooks are dropped), and the emptied `Arc` waits on a per-thread list for
// the next tensor, which is written into it. An `Inner` that a graph edge
// (`Edge::Leaf`) holds last is freed as before.

thread_local! {
    static HANDLE_SHELLS: crate::storage::ShellList<Shell> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An emptied handle: the only reference to its `Inner`, whose storage has
/// been taken (the field is not a valid `Arc` until [`Shell::fill`] writes
/// a whole new `Inner`) and whose other fields own no memory.
struct Shell(Arc<Inner>);

impl Shell {
    /// Empties the last handle on an `Inner`, or gives it back when it is
    /// shared (another `Tensor`, a graph edge).
    fn empty(arc: Arc<Inner>) -> std::result::Result<Shell, Arc<Inner>> {
        // The only handle, with no weak one: then none can appear. Plain loads
        // instead of `Arc::get_mut`, whose compare-exchange cost more than the
        // allocation this saves; the fence orders what follows after the other
        // handles' drops, as `Arc`'s own drop does.
        if Arc::strong_count(&arc) != 1 || Arc::weak_count(&arc) != 0 {
            return Err(arc);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let slot = Arc::into_raw(arc).cast_mut();
        // SAFETY: the `Arc` is unique (above), so this is the only reference
        // to its `Inner` until `from_raw` below takes the pointer back.
        let inner = unsafe { &mut *slot };
        // What the handle holds is moved out first and dropped last, once the
        // shell is whole again, so that a panicking drop in it (a hook's, a
        // custom function's) unwinds through a droppable shell instead of
        // leaking the handle. A `Mutex` is replaced, not cleared: on some
        // platforms it owns a heap-allocated lock once it has been locked.
        let node = inner.grad_fn.take();
        let grad = std::mem::replace(&mut inner.grad, Mutex::new(None));
        let hooks = std::mem::replace(&mut inner.hooks, Mutex::new(Vec::new()));
        // A rank above the inline size lives on the heap.
        inner.shape = Dims::new();
        inner.strides = Strides::new();
        // SAFETY: the storage is taken once; from here the `Inner` is only
        // reached through the `Shell`, whose drop or `fill` writes a new one.
        let storage = unsafe { ManuallyDrop::take(&mut inner.storage) };
        // SAFETY: the pointer `into_raw` gave, taken back once.
        let shell = Shell(unsafe { Arc::from_raw(slot) });
        crate::storage::release(storage);
        drop((grad, hooks));
        // Dropping the node may drop a whole graph, and with it more tensors
        // that come back here: nothing is borrowed meanwhile, and the graph
        // is taken down without recursion (`autograd::drop_node`).
        if let Some(node) = node {
            autograd::drop_node(node);
        }
        Ok(shell)
    }

    /// The handle with `inner` written into it.
    fn fill(self, inner: Inner) -> Arc<Inner> {
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the `Arc` is moved out once.
        let arc = unsafe { std::ptr::read(&this.0) };
        let slot = Arc::into_raw(arc).cast_mut();
        // SAFETY: a shell is the only reference to its `Inner` (made from a
        // unique `Arc`, never cloned), so writing through the pointer races
        // with nothing; the emptied `Inner` owns nothing (see `empty`), so
        // overwriting it without a drop leaks nothing and drops no taken
        // storage. `from_raw` takes back the pointer `into_raw` gave.
        unsafe {
            std::ptr::write(slot, inner);
            Arc::from_raw(slot)
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // A shell freed (thread exit, or a full list) gets a storage back, so
        // its `Inner` drops as any other.
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            let empty = Arc::new(Storage::new(Data::empty()));
            // SAFETY: the field holds no valid storage (taken in `empty`).
            unsafe { std::ptr::write(&mut inner.storage, ManuallyDrop::new(empty)) };
        }
    }
}

/// A tensor's handle: an emptied one of this thread's when there is one,
/// else a new allocation.
fn new_handle(inner: Inner) -> Tensor {
    let arc = match crate::storage::reuse(&HANDLE_SHELLS) {
        Some(shell) => shell.fill(inner),
        None => Arc::new(inner),
    };
    Tensor(ManuallyDrop::new(arc))
}

/// The last `Tensor` on `arc` gone: its `Inner` is emptied and kept for the
/// next tensor while this thread's list has room (a shell not kept is freed).
fn release_handle(arc: Arc<Inner>) {
    if let Ok(shell) = Shell::empty(arc) {
        crate::storage::keep(&HANDLE_SHELLS, shell);
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?}, {}, {}", self.shape(), self.dtype(), self.device())?;
        if let Some(node) = &self.0.grad_fn {
            write!(f, ", grad_fn={}", node.op)?;
        } else if self.0.requires_grad {
            write!(f, ", requires_grad")?;
        }
        if self.numel() <= 16 {
            if let Ok(v) = self.to_vec_f64() {
                write!(f, ", {v:?}")?;
            }
        }
        write!(f, ")")
    }
}

impl Tensor {
    // ---------------------------------------------------------------- construction

    pub(crate) fn from_data(data: Data, shape: &[usize], device: Device) -> Tensor {
        let dtype = match &data {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            #[cfg(feature = "cuda")]
            Data::Cuda(_) => DType::F32,
        };
        new_handle(Inner {
            storage: ManuallyDrop::new(crate::storage::storage_for(data)),
            shape: Dims::from_slice(shape),
            strides: contiguous_strides(shape),
            offset: 0,
            dtype,
            device,
            requires_grad: false,
            grad_fn: None,
            grad: Mutex::new(None),
            hooks: Mutex::new(Vec::new()),
        })
    }

    /// A view of the same storage with another layout, no autograd.
    pub(crate) fn view_of(&self, shape: &[usize], strides: &[isize], offset: usize) -> Tensor {
        new_handle(Inner {
            storage: self.0.storage.clone(),
            shape: Dims::from_slice(shape),
            strides: Strides::from_slice(strides),
            offset,
            dtype: self.0.dtype,
            device: self.0.device,
            requires_grad: false,
            grad_fn: None,
            grad: Mutex::new(None),
            hooks: Mutex::new(Vec::new()),
        })
    }

    /// The same data attached to a graph node (used by the recorder).
    pub(crate) fn with_grad_fn(&self, node: Option<Arc<Node>>, requires_grad: bool) -> Tensor {
        new_handle(Inner {
            storage: self.0.storage.clone(),
            shape: Dims::from_slice(&self.0.shape),
            strides: Strides::from_slice(&self.0.strides),
            offset: self.0.offset,
            dtype: self.0.dtype,
            device: self.0.device,
            requires_grad,
            grad_fn: node,
            grad: Mutex::new(None),
            hooks: Mutex::new(Vec::new()),
        })
    }

    /// Ok when tensors can be created on `device`: always for the CPU; for a GPU when the
    /// `cuda` feature is built in and the driver opens the device (else `NoDevice`).
    fn check_device(device: Device) -> Result<()> {
        match device {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => crate::cuda::backend(device).map(|_| ()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => Err(Error::NoDevice(format!(
                "{device}: this kiln build has no CUDA backend (rebuild with --features cuda); use --device cpu"
            ))),
        }
    }

    /// True when the data lives in GPU memory.
    pub fn is_cuda(&self) -> bool {
        matches!(self.device(), Device::Cuda(_))
    }

    /// A tensor of `shape` holding `data` (row-major). Errors when the length
    /// does not match the shape.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize], device: Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::BadShape {
                op: "from_vec",
                msg: format!("{} values do not fill shape {shape:?} ({n} elements)", data.len()),
            });
        }
        Self::check_device(device)?;
        Self::from_data(T::wrap(data.into()), shape, Device::Cpu).to(device)
    }

    /// A tensor of `shape` whose values `fill` writes straight into a pooled
    /// buffer: data made on the host (a training batch) without a copy
    /// through a `Vec` first. `fill` must write every element: the buffer
    /// holds whatever its last user left (the caller's values otherwise, never
    /// uninitialised memory).
    pub fn from_fill<T: Element>(shape: &[usize], device: Device, fill: impl FnOnce(&mut [T])) -> Result<Tensor> {
        Self::check_device(device)?;
        let mut v = crate::storage::take::<T>(shape.iter().product());
        fill(&mut v);
        Self::from_data(T::wrap(v), shape, Device::Cpu).to(device)
    }

    /// A tensor of `shape` holding a copy of `data` in a pooled buffer (no
    /// allocation in a steady state, unlike [`Tensor::from_vec`] with a fresh `Vec`).
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize], device: Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::BadShape {
                op: "from_slice",
                msg: format!("{} values do not fill shape {shape:?} ({n} elements)", data.len()),
            });
        }
        Self::check_device(device)?;
        let mut v = crate::storage::take::<T>(n);
        v.copy_from_slice(data);
        Self::from_data(T::wrap(v), shape, Device::Cpu).to(device)
    }

    /// A 0-d tensor holding one value.
    pub fn scalar(value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(&[], value, dtype, device)
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        Self::check_device(device)?;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(_) = device {
            crate::cuda::check_f32("full", dtype)?;
            return crate::cuda::full(shape, value, device);
        }
        let n: usize = shape.iter().product();
        Ok(Self::from_data(Data::filled(dtype, n, value), shape, device))
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(shape, 0.0, dtype, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(shape, 1.0, dtype, device)
    }

    /// Zeros with the shape, dtype and device of `self`.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(self.shape(), self.dtype(), self.device())
    }

    /// Ones with the shape, dtype and device of `self`.
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape(), self.dtype(), self.device())
    }

    /// 1-D tensor `start, start+step, …` up to (excluding) `end`.
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let steps = (end - start) / step;
        if step == 0.0 || !step.is_finite() || !steps.is_finite() || steps < 0.0 {
            return Err(Error::Invalid(format!(
                "arange({start}, {end}, {step}): empty or infinite range"
            )));
        }
        let n = steps.ceil() as usize;
        let vals: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
        Self::check_device(device)?;
        match dtype {
            DType::F32 => Self::from_data(
                Data::F32(vals.iter().map(|&v| v as f32).collect::<Vec<_>>().into()),
                &[n],
                Device::Cpu,
            ),
            DType::F64 => Self::from_data(Data::F64(vals.into()), &[n], Device::Cpu),
        }
        .to(device)
    }

    /// Standard-normal samples from `rng` (same seed → same numbers on every machine).
    pub fn randn<R: rand::Rng + ?Sized>(shape: &[usize], dtype: DType, device: Device, rng: &mut R) -> Result<Tensor> {
        use rand_distr::{Distribution, StandardNormal};
        Self::check_device(device)?;
        let n: usize = shape.iter().product();
        let data = match dtype {
            DType::F32 => Data::F32(pooled_fill(n, || StandardNormal.sample(rng))),
            DType::F64 => Data::F64(pooled_fill(n, || StandardNormal.sample(rng))),
        };
        Self::from_data(data, shape, Device::Cpu).to(device)
    }

    /// Uniform samples in [0, 1) from `rng`.
    pub fn rand<R: rand::Rng + ?Sized>(shape: &[usize], dtype: DType, device: Device, rng: &mut R) -> Result<Tensor> {
        Self::check_device(device)?;
        let n: usize = shape.iter().product();
        let data = match dtype {
            DType::F32 => Data::F32(pooled_fill(n, || rng.gen::<f32>())),
            DType::F64 => Data::F64(pooled_fill(n, || rng.gen::<f64>())),
        };
        Self::from_data(data, shape, Device::Cpu).to(device)
    }

    /// Uniform samples in [lo, hi) from `rng`.
    pub fn uniform<R: rand::Rng + ?Sized>(
        shape: &[usize],
        lo: f64,
        hi: f64,
        dtype: DType,
        device: Device,
        rng: &mut R,
    ) -> Result<Tensor> {
        Self::check_device(device)?;
        let n: usize = shape.iter().product();
        let data = match dtype {
            DType::F32 => Data::F32(pooled_fill(n, || rng.gen_range(lo as f32..hi as f32))),
            DType::F64 => Data::F64(pooled_fill(n, || rng.gen_range(lo..hi))),
        };
        Self::from_data(data, shape, Device::Cpu).to(device)
    }

    /// A copy of an ndarray array (any dimensionality).
    pub fn from_ndarray<T: Element, D: ndarray::Dimension>(a: &ndarray::Array<T, D>) -> Result<Tensor> {
        let shape = a.shape().to_vec();
        Self::from_vec(a.iter().copied().collect(), &shape, Device::Cpu)
    }

    /// A copy as an ndarray array.
    pub fn to_ndarray<T: Element>(&self) -> Result<ndarray::ArrayD<T>> {
        let v = self.to_vec::<T>()?;
        ndarray::ArrayD::from_shape_vec(self.shape().to_vec(), v).map_err(|e| Error::BadShape {
            op: "to_ndarray",
            msg: e.to_string(),
        })
    }

    // ---------------------------------------------------------------- metadata

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    /// Element strides of each dimension.
    pub fn strides(&self) -> &[isize] {
        &self.0.strides
    }
    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.shape.iter().product()
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    /// Device the data lives on.
    pub fn device(&self) -> Device {
        self.0.device
    }
    /// Size of dimension `dim` (negative counts from the end).
    pub fn dim(&self, dim: isize) -> Result<usize> {
        let d = crate::shape::normalize_dim("dim", dim, self.rank())?;
        self.0.shape.get(d).copied().ok_or_else(|| Error::BadShape {
            op: "dim",
            msg: format!("a 0-d tensor has no dim {dim}"),
        })
    }
    /// True when the elements are laid out row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1isize;
        for (&d, &s) in self.0.shape.iter().zip(&self.0.strides).rev() {
            if d != 1 && s != expect {
                return false;
            }
            expect *= d as isize;
        }
        true
    }
    /// Whether gradients flow to this tensor.
    pub fn requires_grad_flag(&self) -> bool {
        self.0.requires_grad
    }
    /// A leaf is a tensor not produced by a recorded op (parameters, inputs).
    pub fn is_leaf(&self) -> bool {
        self.0.grad_fn.is_none()
    }
    /// Name of the op that produced this tensor, if recorded.
    pub fn grad_fn_name(&self) -> Option<&'static str> {
        self.0.grad_fn.as_ref().map(|n| n.op)
    }
    /// Version counter of the underlying storage (bumped by in-place writes).
    pub fn version(&self) -> u64 {
        self.0.storage.version()
    }
    /// True when both tensors share one storage (one is a view of the other).
    pub fn shares_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }
    /// Whether this is a dense CPU tensor that no other handle, view or
    /// saved tensor can observe, so it may be changed in place unseen.
    pub(crate) fn is_exclusive_cpu(&self) -> bool {
        self.device() == Device::Cpu
            && Arc::strong_count(&self.0) == 1
            && Arc::strong_count(&self.0.storage) == 1
            && !self.0.requires_grad
            && self.is_contiguous()
    }
    /// Same tensor handle (same node / same leaf).
    pub fn same(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    // ---------------------------------------------------------------- autograd entry points

    /// Marks a leaf as requiring grad (returns a handle sharing the data).
    /// `requires_grad(false)` on a non-leaf is the same as [`Tensor::detach`].
    pub fn requires_grad(self, on: bool) -> Tensor {
        if self.0.grad_fn.is_some() {
            return if on { self } else { self.detach() };
        }
        if self.0.requires_grad == on {
            return self;
        }
        self.with_grad_fn(None, on)
    }

    /// The same data cut from the graph: a leaf that does not require grad.
    pub fn detach(&self) -> Tensor {
        self.with_grad_fn(None, false)
    }

    /// The accumulated gradient: of a leaf, or of a non-leaf after `retain_grad()`.
    pub fn grad(&self) -> Option<Tensor> {
        match &self.0.grad_fn {
            None => self.0.grad.lock().unwrap().clone(),
            Some(node) => node.retained_grad.lock().unwrap().clone(),
        }
    }

    /// Sets (or clears) the gradient of a leaf, e.g. when loading optimizer state.
    pub fn set_grad(&self, grad: Option<Tensor>) -> Result<()> {
        if let Some(g) = &grad {
            if g.shape() != self.shape() {
                return Err(Error::ShapeMismatch {
                    op: "set_grad",
                    lhs: self.shape().to_vec(),
                    rhs: g.shape().to_vec(),
                });
            }
        }
        match &self.0.grad_fn {
            None => *self.0.grad.lock().unwrap() = grad,
            Some(node) => *node.retained_grad.lock().unwrap() = grad,
        }
        Ok(())
    }

    /// Clears the gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        let _ = self.set_grad(None);
    }

    /// Keep the gradient of this non-leaf after backward (leaves always keep theirs).
    pub fn retain_grad(&self) {
        if let Some(node) = &self.0.grad_fn {
            node.retain.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Registers a hook called with this tensor's gradient during backward;
    /// returning `Some(g)` replaces the gradient.
    pub fn register_hook(&self, hook: impl Fn(&Tensor) -> Option<Tensor> + Send + Sync + 'static) {
        let hook: Hook = Arc::new(hook);
        match &self.0.grad_fn {
            None => self.0.hooks.lock().unwrap().push(hook),
            Some(node) => node.hooks.lock().unwrap().push(hook),
        }
    }

    /// Backpropagates from this scalar: gradients accumulate into leaves.
    #[track_caller]
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a scalar output, got shape {:?}; use backward_with(grad)",
                self.shape()
            )));
        }
        let one = Tensor::ones(self.shape(), self.dtype(), self.device())?;
        autograd::backward(std::slice::from_ref(self), &[one], false, false)
    }

    /// Backpropagates from this scalar into the `.grad` of `inputs` only
    /// (leaves that require grad), running just the part of the graph that
    /// leads to them — PyTorch's `backward(inputs=...)`. Other leaves'
    /// gradients are neither computed nor touched.
    pub fn backward_to(&self, inputs: &[Tensor]) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward_to() needs a scalar output, got shape {:?}",
                self.shape()
            )));
        }
        let one = Tensor::ones(self.shape(), self.dtype(), self.device())?;
        autograd::backward_to(std::slice::from_ref(self), &[one], inputs, false, false)
    }

    /// Backpropagates with an explicit output gradient (any shape).
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        autograd::backward(std::slice::from_ref(self), std::slice::from_ref(grad), false, false)
    }

    /// Backpropagates keeping saved tensors (so backward can run again) and
    /// optionally recording the backward pass for higher-order gradients.
    pub fn backward_opts(&self, grad: Option<&Tensor>, retain_graph: bool, create_graph: bool) -> Result<()> {
        let g = match grad {
            Some(g) => g.clone(),
            None => Tensor::ones(self.shape(), self.dtype(), self.device())?,
        };
        autograd::backward(std::slice::from_ref(self), &[g], retain_graph, create_graph)
    }

    /// Graphviz DOT text of the graph that produced this tensor.
    pub fn to_dot(&self) -> String {
        autograd::to_dot(self)
    }

    // ---------------------------------------------------------------- host access

    /// Reads the elements (row-major, whatever the strides) as `T`; errors if
    /// `T` is not the tensor's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch {
                op: "to_vec",
                lhs: self.dtype(),
                rhs: T::DTYPE,
            });
        }
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            let host = crate::cuda::download(self)?;
            return Ok(host.into_iter().map(|v| T::from_f64(f64::from(v))).collect());
        }
        let mut out = vec![T::ZERO; self.numel()];
        self.gather_into(&mut out);
        Ok(out)
    }

    /// The elements (row-major) in a pooled buffer; the dtype must be `T`'s.
    fn gather<T: Element>(&self) -> Result<Buf<T>> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return Ok(self.to_vec::<T>()?.into());
        }
        let mut out = crate::storage::take::<T>(self.numel());
        self.gather_into(&mut out);
        Ok(out)
    }

    /// Copies the elements (row-major, whatever the strides) of a CPU tensor
    /// of `T`'s dtype into `out` (numel long).
    fn gather_into<T: Element>(&self, out: &mut [T]) {
        let guard = self.0.storage.read();
        let src = T::slice(&guard).expect("dtype checked");
        copy_strided(
            Strided {
                data: src,
                offset: self.0.offset,
                strides: &self.0.strides,
            },
            &self.0.shape,
            out,
        );
    }

    /// The elements converted to f64 (any dtype).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        match self.dtype() {
            DType::F64 => self.to_vec::<f64>(),
            DType::F32 => Ok(self.to_vec::<f32>()?.into_iter().map(f64::from).collect()),
        }
    }

    /// The elements converted to f32 (any dtype).
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        match self.dtype() {
            DType::F32 => self.to_vec::<f32>(),
            DType::F64 => Ok(self.to_vec::<f64>()?.into_iter().map(|v| v as f32).collect()),
        }
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::BadShape {
                op: "item",
                msg: format!("item() needs one element, shape is {:?}", self.shape()),
            });
        }
        // Read in place (a training loop reads its losses every step).
        match self.dtype() {
            DType::F64 => self.with_slice::<f64, _>(|v| v[0]),
            DType::F32 => self.with_slice::<f32, _>(|v| f64::from(v[0])),
        }
    }

    /// Calls `f` with the contiguous elements of this tensor (copying only if
    /// it is a strided view, or to the host for a CUDA tensor).
    pub fn with_slice<T: Element, R>(&self, f: impl FnOnce(&[T]) -> R) -> Result<R> {
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch {
                op: "with_slice",
                lhs: self.dtype(),
                rhs: T::DTYPE,
            });
        }
        if self.is_contiguous() && !self.is_cuda() {
            let guard = self.0.storage.read();
            let s = T::slice(&guard).expect("dtype checked");
            Ok(f(&s[self.0.offset..self.0.offset + self.numel()]))
        } else {
            Ok(f(&self.to_vec::<T>()?))
        }
    }

    /// In-place update of a contiguous tensor's elements. Bumps the version
    /// counter. Refused on tensors that require grad while grad mode is on
    /// (wrap optimizer updates in `no_grad`). On CUDA the elements make a host
    /// round trip; hot paths use `Tensor::update_cuda` (feature `cuda`) instead.
    pub fn update<T: Element, R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R> {
        self.check_inplace("update")?;
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch {
                op: "update",
                lhs: self.dtype(),
                rhs: T::DTYPE,
            });
        }
        if !self.is_contiguous() {
            return Err(Error::Unsupported {
                op: "update",
                what: format!(
                    "a non-contiguous view (shape {:?}, strides {:?})",
                    self.shape(),
                    self.strides()
                ),
            });
        }
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            crate::cuda::check_dense("update", self)?;
            let mut host = self.to_vec::<T>()?;
            let r = f(&mut host);
            let host: Vec<f32> = host.iter().map(|v| v.to_f64() as f32).collect();
            crate::cuda::overwrite(self, &host)?;
            return Ok(r);
        }
        let mut guard = self.0.storage.write();
        let s = T::slice_mut(&mut guard).expect("dtype checked");
        Ok(f(&mut s[self.0.offset..self.0.offset + self.numel()]))
    }

    /// In-place update of a CUDA parameter by a fused kernel: `f` gets the backend, the
    /// parameter's device buffer (written), the gradient's (read) and one buffer per state
    /// tensor (written), e.g. Adam's moments. All must be dense f32 tensors on the same GPU;
    /// versions are bumped as by [`Tensor::update`].
    #[cfg(feature = "cuda")]
    pub fn update_cuda<R>(
        &self,
        grad: &Tensor,
        states: &[&Tensor],
        f: impl FnOnce(
            &kiln_cuda::CudaBackend,
            &mut kiln_cuda::DeviceBuffer,
            &kiln_cuda::DeviceBuffer,
            &mut [&mut kiln_cuda::DeviceBuffer],
        ) -> kiln_cuda::Result<R>,
    ) -> Result<R> {
        self.check_inplace("update_cuda")?;
        if grad.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "update_cuda",
                lhs: self.shape().to_vec(),
                rhs: grad.shape().to_vec(),
            });
        }
        crate::cuda::update_fused(self, grad, states, f)
    }

    /// Like [`Tensor::update`] with a second, read-only tensor (e.g. a
    /// parameter and its gradient). `other` must not share storage with `self`.
    pub fn update_with<T: Element, R>(&self, other: &Tensor, f: impl FnOnce(&mut [T], &[T]) -> R) -> Result<R> {
        if self.shares_storage(other) {
            return Err(Error::Invalid("update_with: the two tensors share storage".into()));
        }
        if other.device() != self.device() {
            return Err(Error::DeviceMismatch {
                op: "update_with",
                lhs: self.device(),
                rhs: other.device(),
            });
        }
        if other.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "update_with",
                lhs: self.shape().to_vec(),
                rhs: other.shape().to_vec(),
            });
        }
        other.with_slice::<T, _>(|src| self.update::<T, R>(|dst| f(dst, src)))?
    }

    fn check_inplace(&self, op: &str) -> Result<()> {
        if self.0.requires_grad && autograd::is_grad_enabled() {
            return Err(Error::Autograd(format!(
                "{op}: in-place change of a tensor that requires grad while grad mode is on; wrap it in no_grad"
            )));
        }
        Ok(())
    }

    /// Copies `src` (same shape and dtype) into this tensor in place.
    pub fn copy_(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() {
            return Err(Error::ShapeMismatch {
                op: "copy_",
                lhs: self.shape().to_vec(),
                rhs: src.shape().to_vec(),
            });
        }
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            self.check_inplace("copy_")?;
            let src = src.detach().to_dtype(DType::F32)?.to(self.device())?;
            return crate::cuda::copy_into(self, &src);
        }
        match self.dtype() {
            DType::F32 => {
                let v = src.to_vec_f32()?;
                self.update::<f32, _>(|d| d.copy_from_slice(&v))
            }
            DType::F64 => {
                let v = src.to_vec_f64()?;
                self.update::<f64, _>(|d| d.copy_from_slice(&v))
            }
        }
    }

    /// Sets every element to `value` in place.
    pub fn fill_(&self, value: f64) -> Result<()> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            self.check_inplace("fill_")?;
            return crate::cuda::copy_into(self, &crate::cuda::full(self.shape(), value, self.device())?);
        }
        match self.dtype() {
            DType::F32 => self.update::<f32, _>(|d| d.fill(value as f32)),
            DType::F64 => self.update::<f64, _>(|d| d.fill(value)),
        }
    }

    /// Multiplies every element by `c` in place.
    pub fn mul_scalar_(&self, c: f64) -> Result<()> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            self.check_inplace("mul_scalar_")?;
            let scaled = self.unary_raw(kiln_cpu::elementwise::UnaryOp::MulScalar(c))?;
            return crate::cuda::copy_into(self, &scaled);
        }
        match self.dtype() {
            DType::F32 => self.update::<f32, _>(|d| d.iter_mut().for_each(|v| *v *= c as f32)),
            DType::F64 => self.update::<f64, _>(|d| d.iter_mut().for_each(|v| *v *= c)),
        }
    }

    /// self += alpha·other in place (same shape).
    pub fn add_scaled_(&self, other: &Tensor, alpha: f64) -> Result<()> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            self.check_inplace("add_scaled_")?;
            if other.shape() != self.shape() {
                return Err(Error::ShapeMismatch {
                    op: "add_scaled_",
                    lhs: self.shape().to_vec(),
                    rhs: other.shape().to_vec(),
                });
            }
            let scaled = other.unary_raw(kiln_cpu::elementwise::UnaryOp::MulScalar(alpha))?;
            let sum = self.binary_raw(&scaled, kiln_cpu::elementwise::BinaryOp::Add, "add_scaled_")?;
            return crate::cuda::copy_into(self, &sum);
        }
        match self.dtype() {
            DType::F32 => self.update_with::<f32, _>(other, |d, s| {
                d.iter_mut().zip(s).for_each(|(a, &b)| *a += alpha as f32 * b)
            }),
            DType::F64 => {
                self.update_with::<f64, _>(other, |d, s| d.iter_mut().zip(s).for_each(|(a, &b)| *a += alpha * b))
            }
        }
    }

    /// A contiguous deep copy that does not share storage (no autograd).
    pub fn deep_clone(&self) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return crate::cuda::copy(self);
        }
        Ok(match self.dtype() {
            DType::F32 => Self::from_data(Data::F32(self.gather::<f32>()?), self.shape(), self.device()),
            DType::F64 => Self::from_data(Data::F64(self.gather::<f64>()?), self.shape(), self.device()),
        })
    }

    /// Copies the tensor to `device` (a no-op when it is already there). Differentiable:
    /// the gradient is copied back. `NoDevice` when the device cannot be opened (or the
    /// build has no `cuda` feature); `Unsupported` for f64 headed for a GPU.
    #[track_caller]
    pub fn to(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        Self::check_device(device)?;
        #[cfg(feature = "cuda")]
        {
            let out = match device {
                Device::Cpu => Self::from_data(
                    Data::F32(crate::cuda::download(self)?.into()),
                    self.shape(),
                    Device::Cpu,
                ),
                Device::Cuda(_) => {
                    crate::cuda::check_f32("to", self.dtype())?;
                    crate::cuda::upload(&self.to_vec::<f32>()?, self.shape(), device)?
                }
            };
            let from = self.device();
            Ok(autograd::record("to", out, &[self], move |_, g| {
                Ok(smallvec![Some(g.to(from)?)])
            }))
        }
        #[cfg(not(feature = "cuda"))]
        unreachable!("check_device refuses every GPU without the cuda feature")
    }

    /// Converts to another dtype (differentiable).
    #[track_caller]
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            crate::cuda::check_f32("to_dtype", dtype)?;
        }
        let out = match dtype {
            DType::F32 => Self::from_data(Data::F32(self.to_vec_f32()?.into()), self.shape(), self.device()),
            DType::F64 => Self::from_data(Data::F64(self.to_vec_f64()?.into()), self.shape(), self.device()),
        };
        let from = self.dtype();
        Ok(autograd::record("to_dtype", out, &[self], move |_, g| {
            Ok(smallvec![Some(g.to_dtype(from)?)])
        }))
    }

    /// Runs `f` on the contiguous data as a dtype-tagged slice (internal op plumbing).
    pub(crate) fn slices(&self) -> Result<Contig> {
        let t = if self.is_contiguous() {
            self.clone()
        } else {
            self.contiguous_data()?
        };
        Ok(Contig(t))
    }

    /// A contiguous copy without autograd.
    pub(crate) fn contiguous_data(&self) -> Result<Tensor> {
        #[cfg(feature = "cuda")]
        if self.is_cuda() {
            return crate::cuda::dense(self);
        }
        if self.is_contiguous() {
            return Ok(self.detach());
        }
        self.deep_clone()
    }
}

/// A contiguous tensor whose data can be borrowed as a slice.
pub(crate) struct Contig(pub(crate) Tensor);

impl Contig {
    /// The dtype-tagged slice of exactly `numel` elements.
    pub(crate) fn with<R>(&self, f: impl FnOnce(SliceRef<'_>) -> R) -> R {
        let t = &self.0;
        let guard = t.0.storage.read();
        let (o, n) = (t.0.offset, t.numel());
        match &*guard {
            Data::F32(v) => f(SliceRef::F32(&v[o..o + n])),
            Data::F64(v) => f(SliceRef::F64(&v[o..o + n])),
            #[cfg(feature = "cuda")]
            Data::Cuda(_) => unreachable!("CUDA tensors dispatch to crate::cuda before reading host slices"),
        }
    }
}

/// A borrowed contiguous slice tagged with its dtype.
pub(crate) enum SliceRef<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// A pooled buffer of `n` values drawn in order from `next` (random constructors).
fn pooled_fill<T: crate::storage::Pooled>(n: usize, mut next: impl FnMut() -> T) -> Buf<T> {
    let mut v = crate::storage::take::<T>(n);
    v.iter_mut().for_each(|x| *x = next());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_handle_is_reused_whole_and_only_when_unshared() {
        let a = Tensor::from_vec(vec![1.0f32, 2.0], &[2], Device::Cpu).unwrap();
        let at = Arc::as_ptr(&a.0);
        // Another handle on the same Inner: dropping one keeps it.
        let b = a.clone();
        drop(a);
        let c = Tensor::from_vec(vec![3.0f32], &[1], Device::Cpu).unwrap();
        assert_ne!(Arc::as_ptr(&c.0), at);
        assert_eq!(b.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
        // The last handle gone, the next tensor is written into it, all of it
        // its own: shape, strides, dtype, flags, no node, no gradient.
        let x = Tensor::from_vec(vec![1.0f64; 6], &[2, 3], Device::Cpu)
            .unwrap()
            .requires_grad(true);
        let y = x.mul(&x).unwrap();
        y.sum().unwrap().backward().unwrap();
        drop(b);
        let t = x.t().unwrap();
        assert_eq!(Arc::as_ptr(&t.0), at);
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(&t.0.strides[..], &[1, 3]);
        assert_eq!(t.dtype(), DType::F64);
        assert!(t.0.grad_fn.is_some() && t.grad().is_none());
        assert_eq!(t.to_vec::<f64>().unwrap(), vec![1.0; 6]);
    }

    #[test]
    fn an_emptied_handle_holds_no_node_gradient_or_data() {
        let x = Tensor::from_vec(vec![2.0f32; 3], &[3], Device::Cpu)
            .unwrap()
            .requires_grad(true);
        let y = x.mul(&x).unwrap();
        let node = y.grad_fn_weak().unwrap();
        let data = Arc::clone(&y.0.storage);
        y.sum().unwrap().backward().unwrap();
        let g = x.grad().unwrap();
        assert_eq!(Arc::strong_count(&g.0), 2, "the leaf holds its gradient");
        // Dropping the last handles frees the node and lets go of the data and
        // the gradient at once, not when the handle is next reused.
        drop(y);
        assert!(node.upgrade().is_none(), "the node outlived its tensor");
        assert_eq!(Arc::strong_count(&data), 1, "the emptied handle kept its storage");
        drop(x);
        assert_eq!(Arc::strong_count(&g.0), 1, "the emptied leaf kept its gradient");
        assert_eq!(g.to_vec::<f32>().unwrap(), vec![4.0; 3]);
    }
}
