//! Run-time compilation of `kernels/*.cu` with NVRTC, and parsing of ptxas resource reports.
//!
//! The sources are embedded in the binary with `include_str!`, so a binary built on a machine
//! without CUDA carries its kernels to the GPU machine. libnvrtc is loaded on first use.

use crate::error::{CudaError, Result};
use cudarc::nvrtc::{result as nvrtc_result, sys as nvrtc_sys};
use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::sync::{Mutex, OnceLock};

/// One embedded kernel file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelSource {
    /// File name under `kernels/`, e.g. `gemm.cu`.
    pub file: &'static str,
    /// The CUDA C source text.
    pub source: &'static str,
}

/// `kernels/gemm.cu`: SGEMM variants and the fused linear layer.
pub const GEMM: KernelSource = KernelSource {
    file: "gemm.cu",
    source: include_str!("../../../kernels/gemm.cu"),
};
/// `kernels/gemm_warptile.cu`: SGEMM v6, warp-tiled, its configuration chosen with
/// `-DSGEMM6_CFG=n`.
pub const GEMM_WARPTILE: KernelSource = KernelSource {
    file: "gemm_warptile.cu",
    source: include_str!("../../../kernels/gemm_warptile.cu"),
};
/// `kernels/elementwise.cu`: unary/binary ops, strided copy, fill.
pub const ELEMENTWISE: KernelSource = KernelSource {
    file: "elementwise.cu",
    source: include_str!("../../../kernels/elementwise.cu"),
};
/// `kernels/reduce.cu`: sum/mean/max reductions.
pub const REDUCE: KernelSource = KernelSource {
    file: "reduce.cu",
    source: include_str!("../../../kernels/reduce.cu"),
};
/// `kernels/loss.cu`: MSE, BCE, BCE-with-logits, log-softmax, cross-entropy.
pub const LOSS: KernelSource = KernelSource {
    file: "loss.cu",
    source: include_str!("../../../kernels/loss.cu"),
};
/// `kernels/optim.cu`: fused Adam/AdamW and SGD.
pub const OPTIM: KernelSource = KernelSource {
    file: "optim.cu",
    source: include_str!("../../../kernels/optim.cu"),
};

/// Every kernel file, in a fixed order.
pub const ALL_SOURCES: [KernelSource; 6] = [GEMM, GEMM_WARPTILE, ELEMENTWISE, REDUCE, LOSS, OPTIM];

/// True when libnvrtc can be loaded. Every NVRTC call must be guarded by this: cudarc panics
/// when the library is missing.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen libnvrtc by its usual names; no symbol is called.
    unsafe { nvrtc_sys::is_culib_present() }
}

/// The output of one NVRTC compilation.
#[derive(Debug, Clone)]
pub struct CompiledModule {
    /// The cubin for the requested real architecture (`sm_XY`), loadable without a JIT.
    pub cubin: Vec<u8>,
    /// The program log: warnings and, with `--ptxas-options=-v`, the resource report.
    pub log: String,
}

/// Compiles `source` for `arch` (e.g. `"sm_90"`) with the extra NVRTC `options`
/// (e.g. `-DSGEMM_BK=16`, `--ptxas-options=-v`).
///
/// Results are cached for the life of the process, keyed by (file, arch, options), so each
/// file is compiled once however many backends load it. Returns `CudaError::NoDevice` when
/// libnvrtc is not loadable and `CudaError::Nvrtc` with the compiler log when compilation
/// fails.
pub fn compile(source: &KernelSource, arch: &str, options: &[String]) -> Result<CompiledModule> {
    type CacheKey = (&'static str, String, Vec<String>);
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, CompiledModule>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (source.file, arch.to_string(), options.to_vec());
    if let Some(hit) = cache.lock().expect("NVRTC cache poisoned").get(&key) {
        return Ok(hit.clone());
    }
    let compiled = compile_uncached(source, arch, options)?;
    cache
        .lock()
        .expect("NVRTC cache poisoned")
        .insert(key, compiled.clone());
    Ok(compiled)
}

fn compile_uncached(source: &KernelSource, arch: &str, options: &[String]) -> Result<CompiledModule> {
    if !nvrtc_available() {
        return Err(CudaError::NoDevice(
            "libnvrtc could not be loaded (set LD_LIBRARY_PATH to a directory containing \
             libnvrtc.so, e.g. /usr/local/cuda/lib64 or the output of .ci/install-nvrtc)"
                .into(),
        ));
    }
    let nvrtc_err = |message: String, log: String| CudaError::Nvrtc {
        file: source.file.to_string(),
        message,
        log,
    };
    let src = CString::new(source.source).map_err(|_| nvrtc_err("source contains a NUL byte".into(), String::new()))?;
    let name = CString::new(source.file).expect("kernel file names contain no NUL");
    let prog = nvrtc_result::create_program(&src, Some(&name))
        .map_err(|e| nvrtc_err(format!("nvrtcCreateProgram: {e}"), String::new()))?;

    let mut all_options = vec![format!("--gpu-architecture={arch}"), "--std=c++17".into()];
    all_options.extend(options.iter().cloned());

    // SAFETY: `prog` was just created and is destroyed exactly once below; `src` and `name`
    // outlive it.
    let compiled = unsafe { nvrtc_result::compile_program(prog, &all_options) };
    // SAFETY: `prog` is a live program.
    let log = unsafe { nvrtc_result::get_program_log(prog) }
        .map(|raw| c_chars_to_string(&raw))
        .unwrap_or_default();
    let cubin = compiled
        .map_err(|e| nvrtc_err(format!("{e} (options {all_options:?})"), log.clone()))
        .and_then(|()| {
            // SAFETY: `prog` compiled successfully for a real architecture, so a cubin exists;
            // the buffer is sized by nvrtcGetCUBINSize.
            unsafe { get_cubin(prog) }.map_err(|e| nvrtc_err(format!("nvrtcGetCUBIN: {e}"), log.clone()))
        });
    // SAFETY: `prog` is live and not used after this.
    let _ = unsafe { nvrtc_result::destroy_program(prog) };
    Ok(CompiledModule { cubin: cubin?, log })
}

/// # Safety
/// `prog` must be a live, successfully compiled program for a real (`sm_`) architecture.
unsafe fn get_cubin(prog: nvrtc_sys::nvrtcProgram) -> std::result::Result<Vec<u8>, nvrtc_result::NvrtcError> {
    let mut size = 0usize;
    nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size).result()?;
    let mut cubin = vec![0u8; size];
    nvrtc_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut c_char).result()?;
    Ok(cubin)
}

fn c_chars_to_string(raw: &[c_char]) -> String {
    let bytes: Vec<u8> = raw.iter().map(|&c| c as u8).collect();
    match CStr::from_bytes_until_nul(&bytes) {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The resources ptxas reports for one kernel (`--ptxas-options=-v`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelResources {
    /// Kernel (entry function) name.
    pub kernel: String,
    /// Registers per thread.
    pub registers: u32,
    /// Static shared memory per block, bytes.
    pub smem_bytes: u32,
    /// Per-thread stack frame, bytes.
    pub stack_bytes: u32,
    /// Bytes spilled to local memory (stores).
    pub spill_store_bytes: u32,
    /// Bytes reloaded from local memory.
    pub spill_load_bytes: u32,
}

/// Parses the ptxas `-v` report in an NVRTC log into one entry per kernel, in log order.
///
/// The report looks like:
/// ```text
/// ptxas info    : Compiling entry function 'k' for 'sm_90'
/// ptxas info    : Function properties for k
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 40 registers, used 1 barriers, 8192 bytes smem, 400 bytes cmem[0]
/// ```
pub fn parse_ptxas_log(log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default();
            out.push(KernelResources {
                kernel: name.to_string(),
                ..Default::default()
            });
            continue;
        }
        let Some(current) = out.last_mut() else {
            continue;
        };
        if line.contains("stack frame") {
            current.stack_bytes = number_before(line, "bytes stack frame");
            current.spill_store_bytes = number_before(line, "bytes spill stores");
            current.spill_load_bytes = number_before(line, "bytes spill loads");
        } else if line.contains("Used") && line.contains("registers") {
            current.registers = number_before(line, "registers");
            current.smem_bytes = number_before(line, "bytes smem");
        }
    }
    out
}

/// The integer just before `marker` in `line` (0 when absent).
fn number_before(line: &str, marker: &str) -> u32 {
    line.find(marker)
        .and_then(|pos| line[..pos].split_whitespace().last())
        .and_then(|tok| tok.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ptxas_report() {
        let log = "ptxas info    : 0 bytes gmem\n\
            ptxas info    : Compiling entry function 'sgemm_fwd_v3_f32' for 'sm_90'\n\
            ptxas info    : Function properties for sgemm_fwd_v3_f32\n\
            \x20   8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n\
            ptxas info    : Used 127 registers, used 1 barriers, 8192 bytes smem, 400 bytes cmem[0]\n\
            ptxas info    : Compiling entry function 'fill_v1_f32' for 'sm_90'\n\
            ptxas info    : Function properties for fill_v1_f32\n\
            \x20   0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
            ptxas info    : Used 10 registers, used 0 barriers, 372 bytes cmem[0]\n";
        let r = parse_ptxas_log(log);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            KernelResources {
                kernel: "sgemm_fwd_v3_f32".into(),
                registers: 127,
                smem_bytes: 8192,
                stack_bytes: 8,
                spill_store_bytes: 4,
                spill_load_bytes: 4,
            }
        );
        assert_eq!(r[1].registers, 10);
        assert_eq!(r[1].smem_bytes, 0);
    }
}
