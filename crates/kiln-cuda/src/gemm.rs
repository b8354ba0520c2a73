//! SGEMM launch wrappers (`kernels/gemm.cu`) and the fused linear layer.
//!
//! Shape letters: `m`, `n`, `k` of C[m,n] = op(A)[m,k] · op(B)[k,n]; for a linear layer
//! `N` batch, `I` in-features, `O` out-features.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::backend::{check_len, launch_err, CudaBackend};
use crate::error::{CudaError, Result};
use crate::nvrtc::GEMM;
use crate::pool::DeviceBuffer;

/// Which operands are transposed; all matrices are row-major and contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmLayout {
    /// C = A·B with A [m,k], B [k,n].
    NN,
    /// C = A·Bᵀ with A [m,k], B [n,k] (linear forward: x·Wᵀ).
    NT,
    /// C = Aᵀ·B with A [k,m], B [k,n] (linear weight gradient: dyᵀ·x).
    TN,
}

impl GemmLayout {
    /// Every layout.
    pub const ALL: [GemmLayout; 3] = [GemmLayout::NN, GemmLayout::NT, GemmLayout::TN];

    /// The `layout` code the kernels take.
    pub fn code(self) -> i32 {
        match self {
            GemmLayout::NN => 0,
            GemmLayout::NT => 1,
            GemmLayout::TN => 2,
        }
    }
}

/// The SGEMM kernel variants of `kernels/gemm.cu`, in teaching order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmVariant {
    /// v1: one thread per output, operands straight from global memory.
    V1Naive,
    /// v2: 32×32 shared-memory tiles.
    V2SmemTiled,
    /// v3: 128×128 block tile, 8×8 outputs per thread in registers.
    V3RegBlock,
    /// v4: v3 + float4 loads, conflict-free fragment reads, double buffering (the default).
    V4Vectorized,
}

impl GemmVariant {
    /// Every variant.
    pub const ALL: [GemmVariant; 4] = [
        GemmVariant::V1Naive,
        GemmVariant::V2SmemTiled,
        GemmVariant::V3RegBlock,
        GemmVariant::V4Vectorized,
    ];

    /// The CUDA kernel's name.
    pub fn kernel_name(self) -> &'static str {
        match self {
            GemmVariant::V1Naive => "sgemm_fwd_v1_f32",
            GemmVariant::V2SmemTiled => "sgemm_fwd_v2_f32",
            GemmVariant::V3RegBlock => "sgemm_fwd_v3_f32",
            GemmVariant::V4Vectorized => "sgemm_fwd_v4_f32",
        }
    }

    /// A short human-readable name for tables.
    pub fn label(self) -> &'static str {
        match self {
            GemmVariant::V1Naive => "sgemm_v1_naive",
            GemmVariant::V2SmemTiled => "sgemm_v2_smem_tiled",
            GemmVariant::V3RegBlock => "sgemm_v3_regblock",
            GemmVariant::V4Vectorized => "sgemm_v4_vectorized",
        }
    }

    fn launch_config(self, m: usize, n: usize) -> LaunchConfig {
        // Must match the #define defaults in gemm.cu.
        const V1_BLOCK: u32 = 16;
        const V2_TILE: u32 = 32;
        const BLOCK_TILE: u32 = 128;
        let (tile, block_dim) = match self {
            GemmVariant::V1Naive => (V1_BLOCK, (V1_BLOCK, V1_BLOCK, 1)),
            GemmVariant::V2SmemTiled => (V2_TILE, (V2_TILE, V2_TILE, 1)),
            GemmVariant::V3RegBlock | GemmVariant::V4Vectorized => (BLOCK_TILE, (256, 1, 1)),
        };
        LaunchConfig {
            grid_dim: ((n as u32).div_ceil(tile), (m as u32).div_ceil(tile), 1),
            block_dim,
            shared_mem_bytes: 0,
        }
    }
}

/// Activation fused into [`CudaBackend::linear_fwd`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// Identity.
    None,
    /// max(x, 0).
    Relu,
    /// x if x > 0 else slope·x.
    LeakyRelu(f32),
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// tanh(x).
    Tanh,
}

impl Activation {
    /// (code, slope) as the kernel takes them.
    pub fn code(self) -> (i32, f32) {
        match self {
            Activation::None => (0, 0.0),
            Activation::Relu => (1, 0.0),
            Activation::LeakyRelu(slope) => (2, slope),
            Activation::Sigmoid => (3, 0.0),
            Activation::Tanh => (4, 0.0),
        }
    }

    /// The activation applied to one value (the CPU definition the kernel must match).
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => v.max(0.0),
            Activation::LeakyRelu(slope) => {
                if v > 0.0 {
                    v
                } else {
                    slope * v
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Activation::Tanh => v.tanh(),
        }
    }
}

fn dims_to_i32(dims: &[usize]) -> Result<Vec<i32>> {
    dims.iter()
        .map(|&d| i32::try_from(d).map_err(|_| CudaError::Shape(format!("dimension {d} exceeds i32"))))
        .collect()
}

impl CudaBackend {
    /// C = op(A)·op(B) with the given variant (see [`GemmVariant`]); C is overwritten.
    pub fn sgemm(
        &self,
        layout: GemmLayout,
        m: usize,
        n: usize,
        k: usize,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
        c: &mut DeviceBuffer,
        variant: GemmVariant,
    ) -> Result<()> {
        self.sgemm_ex(layout, m, n, k, 1.0, a, b, 0.0, c, variant)
    }

    /// C = alpha·op(A)·op(B) + beta·C. With beta = 0, C is not read (it may hold NaN).
    pub fn sgemm_ex(
        &self,
        layout: GemmLayout,
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
        beta: f32,
        c: &mut DeviceBuffer,
        variant: GemmVariant,
    ) -> Result<()> {
        let ctx = || format!("sgemm {layout:?} m={m} n={n} k={k}");
        check_len(&format!("{} A", ctx()), a.len(), m * k)?;
        check_len(&format!("{} B", ctx()), b.len(), k * n)?;
        check_len(&format!("{} C", ctx()), c.len(), m * n)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        let dims = dims_to_i32(&[m, n, k])?;
        let (mi, ni, ki) = (dims[0], dims[1], dims[2]);
        let code = layout.code();
        let name = variant.kernel_name();
        let func = self.function(&GEMM, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&code)
            .arg(&mi)
            .arg(&ni)
            .arg(&ki)
            .arg(&alpha)
            .arg(a.slice())
            .arg(b.slice())
            .arg(&beta)
            .arg(c.slice_mut());
        // SAFETY: argument order and types match `sgemm_fwd_vN_f32(int layout, int M, int N,
        // int K, float alpha, const float* A, const float* B, float beta, float* C)`; A, B, C
        // hold m·k, k·n, m·n floats (checked above), which is all the kernel indexes for this
        // layout; the grid covers C exactly as the kernel's tiling expects.
        unsafe { launch.launch(variant.launch_config(m, n)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// Fused linear layer: out[N,O] = act(x[N,I]·W[O,I]ᵀ + b[O]) (PyTorch weight layout).
    pub fn linear_fwd(
        &self,
        x: &DeviceBuffer,
        weight: &DeviceBuffer,
        bias: &DeviceBuffer,
        out: &mut DeviceBuffer,
        batch: usize,
        in_features: usize,
        out_features: usize,
        activation: Activation,
    ) -> Result<()> {
        let ctx = format!("linear_fwd N={batch} I={in_features} O={out_features}");
        check_len(&format!("{ctx} x"), x.len(), batch * in_features)?;
        check_len(&format!("{ctx} weight"), weight.len(), out_features * in_features)?;
        check_len(&format!("{ctx} bias"), bias.len(), out_features)?;
        check_len(&format!("{ctx} out"), out.len(), batch * out_features)?;
        if batch == 0 || out_features == 0 {
            return Ok(());
        }
        let dims = dims_to_i32(&[batch, out_features, in_features])?;
        let (act, slope) = activation.code();
        let name = "linear_fwd_v1_f32";
        let func = self.function(&GEMM, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&dims[0])
            .arg(&dims[1])
            .arg(&dims[2])
            .arg(x.slice())
            .arg(weight.slice())
            .arg(bias.slice())
            .arg(&act)
            .arg(&slope)
            .arg(out.slice_mut());
        // SAFETY: matches `linear_fwd_v1_f32(int M, int N, int K, const float* x, const float* w,
        // const float* b, int act, float slope, float* out)`; buffer lengths checked above.
        let cfg = GemmVariant::V4Vectorized.launch_config(batch, out_features);
        unsafe { launch.launch(cfg) }.map_err(launch_err(name))?;
        Ok(())
    }
}
