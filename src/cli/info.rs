//! `kiln info`: what this binary is and what it runs on.

use std::process::ExitCode;

/// Prints versions, threads, CPU features and CUDA devices.
pub fn run() -> kiln_core::Result<ExitCode> {
    println!("kiln {}", env!("CARGO_PKG_VERSION"));
    println!("threads: {} (rayon; set with --threads)", rayon::current_num_threads());
    println!(
        "cpu: {}",
        kiln_cpu::probe::cpu_model().unwrap_or_else(|| "unknown".into())
    );
    println!("cpu features: {}", kiln_cpu::probe::cpu_features());
    println!(
        "sgemm kernel for 1024³: {}",
        kiln_cpu::gemm::choose_variant(1024, 1024, 1024).name()
    );
    println!("cuda: {}", cuda_line());
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "cuda")]
fn cuda_line() -> String {
    match kiln_cuda::backend::CudaBackend::global() {
        Ok(b) => format!(
            "{} (sm_{}{}, {} SMs)",
            b.device_name().unwrap_or_else(|e| e.to_string()),
            b.compute_capability().0,
            b.compute_capability().1,
            b.sm_count()
        ),
        Err(e) => format!("no device: {e}"),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_line() -> String {
    "not built in (build with --features cuda)".into()
}
