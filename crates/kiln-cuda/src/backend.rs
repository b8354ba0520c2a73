//! The CUDA context: device, one stream, the buffer pool and the compiled-module cache.

use cudarc::driver::{sys as driver_sys, CudaContext, CudaFunction, CudaModule, CudaStream, LaunchConfig};
use cudarc::nvrtc::Ptx;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{CudaError, Result};
use crate::nvrtc::{self, KernelSource};
use crate::pool::{DeviceBuffer, Pool, PoolStats};

/// Threads per block for the 1-D (elementwise, optimizer) kernels.
pub(crate) const BLOCK_1D: u32 = 256;

/// True when libcuda (the driver library) can be loaded.
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen libcuda by its usual names; no symbol is called.
    unsafe { driver_sys::is_culib_present() }
}

type ModuleKey = (&'static str, Vec<String>);
type FunctionKey = (&'static str, Vec<String>, &'static str);

/// One GPU: its context, a single stream on which all work is queued in order, a caching
/// allocator and the NVRTC-compiled kernel modules (each file compiled once per set of `-D`
/// defines).
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pool: Arc<Pool>,
    arch: String,
    compute_capability: (i32, i32),
    sm_count: u32,
    modules: Mutex<HashMap<ModuleKey, Arc<CudaModule>>>,
    functions: Mutex<HashMap<FunctionKey, CudaFunction>>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ctx.ordinal())
            .field("arch", &self.arch)
            .finish_non_exhaustive()
    }
}

impl CudaBackend {
    /// Opens GPU `ordinal`. Returns `CudaError::NoDevice` with a readable reason when libcuda
    /// or libnvrtc cannot be loaded or the driver finds no such device; never panics.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_available() {
            return Err(CudaError::NoDevice(
                "libcuda.so could not be loaded (no NVIDIA driver on this machine)".into(),
            ));
        }
        if !nvrtc::nvrtc_available() {
            return Err(CudaError::NoDevice(
                "libnvrtc.so could not be loaded; add the CUDA lib directory \
                 (e.g. /usr/local/cuda/lib64) to LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let count = CudaContext::device_count()
            .map_err(|e| CudaError::NoDevice(format!("the CUDA driver reports no usable device: {e}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaError::NoDevice(format!(
                "device {ordinal} requested but {count} CUDA device(s) present"
            )));
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| CudaError::NoDevice(format!("cannot open CUDA device {ordinal}: {e}")))?;
        // SAFETY: kiln queues all work on one stream, so stream order alone keeps buffers
        // safe; no slice is shared between streams. Called before any slice is allocated.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| CudaError::driver("querying compute capability", e))?;
        let sm_count = ctx
            .attribute(driver_sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| CudaError::driver("querying SM count", e))? as u32;
        Ok(CudaBackend {
            pool: Arc::new(Pool::new(Arc::clone(&stream))),
            ctx,
            stream,
            arch: format!("sm_{major}{minor}"),
            compute_capability: (major, minor),
            sm_count,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// The process-wide backend for device 0, created on first call. Later calls return the
    /// same instance (or the same error, as `NoDevice`).
    pub fn global() -> Result<&'static CudaBackend> {
        static GLOBAL: OnceLock<std::result::Result<CudaBackend, String>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| CudaBackend::new(0).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|msg| CudaError::NoDevice(msg.clone()))
    }

    /// The cudarc context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every kernel and copy is queued on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The device's name, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn device_name(&self) -> Result<String> {
        self.ctx
            .name()
            .map_err(|e| CudaError::driver("querying device name", e))
    }

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// NVRTC architecture kernels are compiled for, e.g. `sm_90`.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Number of streaming multiprocessors.
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }

    /// An integer device attribute (clock rate, bus width, …).
    pub fn attribute(&self, attribute: driver_sys::CUdevice_attribute) -> Result<i32> {
        self.ctx
            .attribute(attribute)
            .map_err(|e| CudaError::driver(format!("querying {attribute:?}"), e))
    }

    /// Blocks until all queued work has finished; surfaces asynchronous kernel errors.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| CudaError::driver("synchronizing the stream", e))
    }

    // ----- memory --------------------------------------------------------------------------

    /// A buffer of `len` floats with unspecified contents, from the pool.
    pub fn alloc(&self, len: usize) -> Result<DeviceBuffer> {
        self.pool.take(len)
    }

    /// A buffer of `len` zeros.
    pub fn zeros(&self, len: usize) -> Result<DeviceBuffer> {
        let mut buf = self.alloc(len)?;
        self.stream
            .memset_zeros(buf.slice_mut())
            .map_err(|e| CudaError::driver("memset", e))?;
        Ok(buf)
    }

    /// Copies host data into a new device buffer.
    pub fn htod(&self, host: &[f32]) -> Result<DeviceBuffer> {
        let mut buf = self.alloc(host.len())?;
        self.htod_into(host, &mut buf)?;
        Ok(buf)
    }

    /// Copies host data into an existing buffer of the same length.
    pub fn htod_into(&self, host: &[f32], dst: &mut DeviceBuffer) -> Result<()> {
        check_len("htod destination", dst.len(), host.len())?;
        if host.is_empty() {
            return Ok(());
        }
        self.stream
            .memcpy_htod(host, dst.slice_mut())
            .map_err(|e| CudaError::driver("host-to-device copy", e))
    }

    /// Copies a device buffer to a new host vector (waits for queued work).
    pub fn dtoh(&self, src: &DeviceBuffer) -> Result<Vec<f32>> {
        if src.is_empty() {
            return Ok(Vec::new());
        }
        self.stream
            .clone_dtoh(src.slice())
            .map_err(|e| CudaError::driver("device-to-host copy", e))
    }

    /// Device-to-device copy between buffers of equal length.
    pub fn dtod(&self, src: &DeviceBuffer, dst: &mut DeviceBuffer) -> Result<()> {
        check_len("dtod destination", dst.len(), src.len())?;
        if src.is_empty() {
            return Ok(());
        }
        self.stream
            .memcpy_dtod(src.slice(), dst.slice_mut())
            .map_err(|e| CudaError::driver("device-to-device copy", e))
    }

    /// Allocation statistics of the caching allocator.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Frees every cached (unused) buffer back to the driver.
    pub fn empty_cache(&self) {
        self.pool.empty();
    }

    // ----- kernels -------------------------------------------------------------------------

    /// The kernel `name` from `source`, compiling the file with NVRTC on first use.
    pub fn function(&self, source: &KernelSource, name: &'static str) -> Result<CudaFunction> {
        self.function_with_defines(source, name, &[])
    }

    /// Like [`CudaBackend::function`] with extra `-D` options (e.g. `["-DSGEMM_BK=16"]`); each
    /// distinct set of defines is its own cached module. This is the autotuning hook.
    pub fn function_with_defines(
        &self,
        source: &KernelSource,
        name: &'static str,
        defines: &[String],
    ) -> Result<CudaFunction> {
        let key = (source.file, defines.to_vec(), name);
        if let Some(f) = self.functions.lock().expect("function cache poisoned").get(&key) {
            return Ok(f.clone());
        }
        let module = self.module(source, defines)?;
        let func = module
            .load_function(name)
            .map_err(|e| CudaError::driver(format!("loading kernel {name} from {}", source.file), e))?;
        self.functions
            .lock()
            .expect("function cache poisoned")
            .insert(key, func.clone());
        Ok(func)
    }

    fn module(&self, source: &KernelSource, defines: &[String]) -> Result<Arc<CudaModule>> {
        let key = (source.file, defines.to_vec());
        if let Some(m) = self.modules.lock().expect("module cache poisoned").get(&key) {
            return Ok(Arc::clone(m));
        }
        let compiled = nvrtc::compile(source, &self.arch, defines)?;
        let module = self
            .ctx
            .load_module(Ptx::from_binary(compiled.cubin))
            .map_err(|e| CudaError::driver(format!("loading module {}", source.file), e))?;
        self.modules
            .lock()
            .expect("module cache poisoned")
            .insert(key, Arc::clone(&module));
        Ok(module)
    }

    /// Launch configuration for a grid-stride 1-D kernel over `n` elements: enough blocks to
    /// fill the GPU, never more than the work needs.
    pub(crate) fn grid_1d(&self, n: usize) -> LaunchConfig {
        let blocks_needed = n.div_ceil(BLOCK_1D as usize).max(1);
        let blocks = blocks_needed.min(self.sm_count as usize * 16) as u32;
        LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (BLOCK_1D, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// `Shape` error unless `actual == expected`.
pub(crate) fn check_len(what: &str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(CudaError::Shape(format!(
            "{what}: buffer has {actual} elements, expected {expected}"
        )))
    }
}

/// Maps a launch failure to a `Driver` error naming the kernel.
pub(crate) fn launch_err(kernel: &str) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError + '_ {
    move |e| CudaError::driver(format!("launching {kernel}"), e)
}
