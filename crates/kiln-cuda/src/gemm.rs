//! SGEMM launch wrappers (`kernels/gemm.cu`) and the fused linear layer.
//!
//! Shape letters: `m`, `n`, `k` of `C[m,n] = op(A)[m,k] · op(B)[k,n]`; for a linear layer
//! `N` batch, `I` in-features, `O` out-features.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use crate::backend::{check_len, launch_err, CudaBackend};
use crate::error::{CudaError, Result};
use crate::nvrtc::{GEMM, GEMM_WARPTILE};
use crate::pool::DeviceBuffer;

/// Which operands are transposed; all matrices are row-major and contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmLayout {
    /// C = A·B with A `[m,k]`, B `[k,n]`.
    NN,
    /// C = A·Bᵀ with A `[m,k]`, B `[n,k]` (linear forward: x·Wᵀ).
    NT,
    /// C = Aᵀ·B with A `[k,m]`, B `[k,n]` (linear weight gradient: dyᵀ·x).
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
    /// v4: v3 + float4 loads, conflict-free fragment reads, double buffering.
    V4Vectorized,
    /// v5: v4, with K split across grid z when the output has too few tiles to fill the GPU
    /// (see [`GemmTuning::split_k`]), then a fixed-order sum of the slices (the engine's choice).
    V5SplitK,
    /// v6: warp tiles inside the block tile, BK = 16 (`kernels/gemm_warptile.cu`); its
    /// configuration is [`GemmTuning::v6_config`].
    V6WarpTile,
    /// The engine's choice: v5's split-K where it splits (an output under one wave, long K),
    /// v6 everywhere else.
    Auto,
}

impl GemmVariant {
    /// Every variant.
    pub const ALL: [GemmVariant; 7] = [
        GemmVariant::V1Naive,
        GemmVariant::V2SmemTiled,
        GemmVariant::V3RegBlock,
        GemmVariant::V4Vectorized,
        GemmVariant::V5SplitK,
        GemmVariant::V6WarpTile,
        GemmVariant::Auto,
    ];

    /// The CUDA kernel's name.
    pub fn kernel_name(self) -> &'static str {
        match self {
            GemmVariant::V1Naive => "sgemm_fwd_v1_f32",
            GemmVariant::V2SmemTiled => "sgemm_fwd_v2_f32",
            GemmVariant::V3RegBlock => "sgemm_fwd_v3_f32",
            GemmVariant::V4Vectorized => "sgemm_fwd_v4_f32",
            GemmVariant::V5SplitK => "sgemm_fwd_v5_splitk_f32",
            GemmVariant::V6WarpTile | GemmVariant::Auto => "sgemm_fwd_v6_f32",
        }
    }

    /// A short human-readable name for tables.
    pub fn label(self) -> &'static str {
        match self {
            GemmVariant::V1Naive => "sgemm_v1_naive",
            GemmVariant::V2SmemTiled => "sgemm_v2_smem_tiled",
            GemmVariant::V3RegBlock => "sgemm_v3_regblock",
            GemmVariant::V4Vectorized => "sgemm_v4_vectorized",
            GemmVariant::V5SplitK => "sgemm_v5_splitk",
            GemmVariant::V6WarpTile => "sgemm_v6_warptile",
            GemmVariant::Auto => "sgemm_auto",
        }
    }

    fn launch_config(self, m: usize, n: usize, tuning: &GemmTuning) -> LaunchConfig {
        // Must match the #define defaults in gemm.cu.
        const V1_BLOCK: u32 = 16;
        const V2_TILE: u32 = 32;
        let (tile, block_dim) = match self {
            GemmVariant::V1Naive => (V1_BLOCK, (V1_BLOCK, V1_BLOCK, 1)),
            GemmVariant::V2SmemTiled => (V2_TILE, (V2_TILE, V2_TILE, 1)),
            GemmVariant::V3RegBlock | GemmVariant::V4Vectorized | GemmVariant::V5SplitK => {
                (BLOCK_TILE as u32, (256, 1, 1))
            }
            GemmVariant::V6WarpTile | GemmVariant::Auto => {
                let (threads, bm, bn) = V6_CONFIGS[tuning.v6_config_index()];
                return LaunchConfig {
                    grid_dim: (n.div_ceil(bn) as u32, m.div_ceil(bm) as u32, 1),
                    block_dim: (threads, 1, 1),
                    shared_mem_bytes: 0,
                };
            }
        };
        LaunchConfig {
            grid_dim: ((n as u32).div_ceil(tile), (m as u32).div_ceil(tile), 1),
            block_dim,
            shared_mem_bytes: 0,
        }
    }
}

/// Output tile of the v3–v5 kernels (`SGEMM_BM` = `SGEMM_BN` in gemm.cu).
const BLOCK_TILE: usize = 128;

/// k per main-loop step of v4/v5 (`SGEMM_BK`); split-K chunks are multiples of it.
const BLOCK_K: usize = 8;

/// v6's configurations (`-DSGEMM6_CFG=1..=8` in `kernels/gemm_warptile.cu`): threads, BM, BN.
pub const V6_CONFIGS: [(u32, usize, usize); 8] = [
    (128, 128, 128),
    (256, 128, 128),
    (128, 64, 128),
    (256, 128, 256),
    (256, 128, 128),
    (256, 128, 128),
    (256, 128, 128),
    (256, 256, 128),
];
/// The configuration the engine uses (`SGEMM6_CFG`'s default in the kernel file).
const V6_DEFAULT: usize = 2;

/// The tunable knobs of v5 and v6; [`GemmTuning::default`] is what the engine runs. `kiln
/// bench gemm --device cuda` times other settings next to it. On the H200, for the article's
/// 100×128×12288 product, slices of at least 64 / 128 / 256 ran at 93 / 96 / 60 % of cuBLAS.
/// (`SGEMM_BK = 16` in v4 was a candidate too: at 143 registers per thread it fits one block
/// per SM instead of two, over the budget.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmTuning {
    /// The shortest K slice split-K gives a block of its own.
    pub min_split_chunk: usize,
    /// v6's configuration, 1 to 8 (see [`V6_CONFIGS`] and the kernel's header).
    pub v6_config: usize,
}

impl Default for GemmTuning {
    fn default() -> Self {
        GemmTuning {
            min_split_chunk: 128,
            v6_config: V6_DEFAULT,
        }
    }
}

impl GemmTuning {
    /// Index of `v6_config` into [`V6_CONFIGS`] (out-of-range values count as the default).
    fn v6_config_index(&self) -> usize {
        if (1..=V6_CONFIGS.len()).contains(&self.v6_config) {
            self.v6_config - 1
        } else {
            V6_DEFAULT - 1
        }
    }

    /// The `-D` options that compile v6 in this configuration (none for the default).
    pub fn v6_defines(&self) -> Vec<String> {
        match self.v6_config_index() + 1 {
            V6_DEFAULT => Vec::new(),
            cfg => vec![format!("-DSGEMM6_CFG={cfg}")],
        }
    }

    /// How many K slices v5 cuts an m×n×k product into (1: run v4 as is), and the chunk
    /// length (a multiple of the kernel's k step).
    ///
    /// Two 128×128-tile blocks fit on an SM, so 2·SMs blocks are one wave. Split K into as
    /// many slices as still fit in that one wave (a second, partial wave costs more than the
    /// split saves), each at least `min_split_chunk` long. On the H200 (132 SMs): the
    /// article's `x·W1ᵀ` (100×128×12288, one tile) becomes 96 slices of 128, a 1024³ product
    /// (64 tiles) 4 slices of 256, and 2048³ (256 tiles) is not split.
    pub fn split_k(&self, m: usize, n: usize, k: usize, sm_count: usize) -> (usize, usize) {
        let tiles = m.div_ceil(BLOCK_TILE) * n.div_ceil(BLOCK_TILE);
        let slices = (2 * sm_count / tiles).min(k / self.min_split_chunk);
        if slices <= 1 {
            return (1, k);
        }
        let chunk = k.div_ceil(slices).div_ceil(BLOCK_K) * BLOCK_K;
        (k.div_ceil(chunk), chunk)
    }
}

/// What the split-K reduction applies to the summed slices.
#[derive(Clone, Copy)]
enum SplitEpilogue<'a> {
    /// C = alpha·Σ + beta·C.
    AlphaBeta(f32, f32),
    /// C = act(Σ + bias[col]).
    BiasAct(&'a DeviceBuffer, Activation),
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

pub(crate) fn dims_to_i32(dims: &[usize]) -> Result<Vec<i32>> {
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
        let tuning = GemmTuning::default();
        self.sgemm_tuned(layout, (m, n, k), alpha, a, b, beta, c, variant, &tuning)
    }

    /// [`CudaBackend::sgemm_ex`] with other settings of v5's and v6's knobs (for tuning runs;
    /// `tuning` does not change v1–v4).
    #[allow(clippy::too_many_arguments)]
    pub fn sgemm_tuned(
        &self,
        layout: GemmLayout,
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: &DeviceBuffer,
        b: &DeviceBuffer,
        beta: f32,
        c: &mut DeviceBuffer,
        variant: GemmVariant,
        tuning: &GemmTuning,
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
        if let Some(split) = self.split_plan(variant, (m, n, k), tuning) {
            let epilogue = SplitEpilogue::AlphaBeta(alpha, beta);
            return self.sgemm_split_k(layout, (m, n, k), split, a, b, epilogue, c);
        }
        // Unsplit, v5 is v4 and Auto is v6.
        let variant = match variant {
            GemmVariant::V5SplitK => GemmVariant::V4Vectorized,
            GemmVariant::Auto => GemmVariant::V6WarpTile,
            v => v,
        };
        let name = variant.kernel_name();
        let func = match variant {
            GemmVariant::V6WarpTile => self.function_with_defines(&GEMM_WARPTILE, name, &tuning.v6_defines())?,
            _ => self.function(&GEMM, name)?,
        };
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
        unsafe { launch.launch(variant.launch_config(m, n, tuning)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// The (slices, chunk) that v5 and Auto cut an m×n×k product into, or `None` where they
    /// run it unsplit (and for every other variant).
    fn split_plan(
        &self,
        variant: GemmVariant,
        (m, n, k): (usize, usize, usize),
        tuning: &GemmTuning,
    ) -> Option<(usize, usize)> {
        matches!(variant, GemmVariant::V5SplitK | GemmVariant::Auto)
            .then(|| tuning.split_k(m, n, k, self.sm_count() as usize))
            .filter(|&(slices, _)| slices > 1)
    }

    /// v5 with `slices` > 1: partial products of `chunk`-long K slices into a pooled
    /// workspace, then their fixed-order sum into C with `epilogue`.
    #[allow(clippy::too_many_arguments)]
    fn sgemm_split_k(
        &self,
        layout: GemmLayout,
        (m, n, k): (usize, usize, usize),
        (slices, chunk): (usize, usize),
        a: &DeviceBuffer,
        b: &DeviceBuffer,
        epilogue: SplitEpilogue<'_>,
        c: &mut DeviceBuffer,
    ) -> Result<()> {
        let dims = dims_to_i32(&[m, n, k, chunk, slices])?;
        let mut part = self.alloc(slices * m * n)?;
        let code = layout.code();
        let name = GemmVariant::V5SplitK.kernel_name();
        let func = self.function(&GEMM, name)?;
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&code)
            .arg(&dims[0])
            .arg(&dims[1])
            .arg(&dims[2])
            .arg(&dims[3])
            .arg(a.slice())
            .arg(b.slice())
            .arg(part.slice_mut());
        let mut cfg = GemmVariant::V5SplitK.launch_config(m, n, &GemmTuning::default());
        cfg.grid_dim.2 = dims[4] as u32;
        // SAFETY: matches `sgemm_fwd_v5_splitk_f32(int layout, int M, int N, int K, int kchunk,
        // const float* A, const float* B, float* part)`; A and B hold m·k and k·n floats
        // (checked by the caller), part holds slices·m·n, and grid z = slices =
        // ceil(k / chunk), so every slice writes only its own m·n block of part.
        unsafe { launch.launch(cfg) }.map_err(launch_err(name))?;

        let name = "sgemm_splitk_reduce_f32";
        let func = self.function(&GEMM, name)?;
        let mn = (m * n) as i64;
        let null: u64 = 0;
        let (alpha, beta, (act, slope)) = match epilogue {
            SplitEpilogue::AlphaBeta(alpha, beta) => (alpha, beta, Activation::None.code()),
            SplitEpilogue::BiasAct(_, activation) => (1.0, 0.0, activation.code()),
        };
        let mut launch = self.stream().launch_builder(&func);
        launch
            .arg(&mn)
            .arg(&dims[1])
            .arg(&dims[4])
            .arg(&alpha)
            .arg(part.slice())
            .arg(&beta)
            .arg(c.slice_mut());
        match epilogue {
            SplitEpilogue::AlphaBeta(..) => launch.arg(&null),
            SplitEpilogue::BiasAct(bias, _) => launch.arg(bias.slice()),
        };
        launch.arg(&act).arg(&slope);
        // SAFETY: matches `sgemm_splitk_reduce_f32(long long mn, int N, int slices, float
        // alpha, const float* part, float beta, float* C, const float* bias, int act, float
        // slope)`; part holds slices·mn floats, C holds mn = m·n, and bias (when not null)
        // holds n (checked by `linear_fwd`); the kernel reads bias[i % n] only.
        unsafe { launch.launch(self.grid_1d(m * n)) }.map_err(launch_err(name))?;
        Ok(())
    }

    /// Fused linear layer: `out[N,O] = act(x[N,I]·W[O,I]ᵀ + b[O])` (PyTorch weight layout), as
    /// the engine runs it: [`CudaBackend::linear_fwd_with`] and [`GemmVariant::Auto`].
    #[allow(clippy::too_many_arguments)]
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
        let dims = (batch, in_features, out_features);
        self.linear_fwd_with(x, weight, bias, out, dims, activation, GemmVariant::Auto)
    }

    /// The fused linear layer through one GEMM variant, the bias and activation in its
    /// epilogue: `V4Vectorized` (`linear_fwd_v1_f32`), or `Auto`/`V5SplitK`, which split K
    /// where [`GemmTuning::split_k`] does (the epilogue then runs in the reduction of the
    /// slices) and otherwise run v4's. (v6 has no fused linear kernel: with the epilogue it
    /// spilled at the register count of two blocks per SM.) `dims` is (N, I, O).
    #[allow(clippy::too_many_arguments)]
    pub fn linear_fwd_with(
        &self,
        x: &DeviceBuffer,
        weight: &DeviceBuffer,
        bias: &DeviceBuffer,
        out: &mut DeviceBuffer,
        (batch, in_features, out_features): (usize, usize, usize),
        activation: Activation,
        variant: GemmVariant,
    ) -> Result<()> {
        let ctx = format!("linear_fwd N={batch} I={in_features} O={out_features}");
        check_len(&format!("{ctx} x"), x.len(), batch * in_features)?;
        check_len(&format!("{ctx} weight"), weight.len(), out_features * in_features)?;
        check_len(&format!("{ctx} bias"), bias.len(), out_features)?;
        check_len(&format!("{ctx} out"), out.len(), batch * out_features)?;
        if batch == 0 || out_features == 0 {
            return Ok(());
        }
        let tuning = GemmTuning::default();
        let dims = (batch, out_features, in_features);
        if let Some(split) = self.split_plan(variant, dims, &tuning) {
            // Few output tiles, long K: split-K, with the bias and activation applied where the
            // slices are summed.
            let epilogue = SplitEpilogue::BiasAct(bias, activation);
            return self.sgemm_split_k(GemmLayout::NT, dims, split, x, weight, epilogue, out);
        }
        if !matches!(
            variant,
            GemmVariant::V4Vectorized | GemmVariant::V5SplitK | GemmVariant::Auto
        ) {
            return Err(CudaError::Shape(format!(
                "{ctx}: no fused linear kernel for {variant:?} (v4, v5 or Auto)"
            )));
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
        let cfg = GemmVariant::V4Vectorized.launch_config(batch, out_features, &tuning);
        unsafe { launch.launch(cfg) }.map_err(launch_err(name))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_defines_name_every_configuration_but_the_kernels_default() {
        let d = GemmTuning::default();
        assert!(d.v6_defines().is_empty());
        for cfg in (1..=V6_CONFIGS.len()).filter(|&c| c != d.v6_config) {
            let t = GemmTuning { v6_config: cfg, ..d };
            assert_eq!(t.v6_defines(), vec![format!("-DSGEMM6_CFG={cfg}")]);
        }
        // Out of range: the default.
        assert!(GemmTuning { v6_config: 0, ..d }.v6_defines().is_empty());
    }

    #[test]
    fn split_k_only_when_tiles_cannot_fill_the_gpu() {
        let t = GemmTuning::default();
        // The article's D forward: one tile, K = 12288 → 96 slices of 128.
        assert_eq!(t.split_k(100, 128, 12288, 132), (96, 128));
        // 1024³: 64 tiles, so 4 slices keep the 256 blocks in one wave of 264.
        assert_eq!(t.split_k(1024, 1024, 1024, 132), (4, 256));
        // A full wave already: 2048² has 256 tiles, 4096² 1024.
        assert_eq!(t.split_k(2048, 2048, 2048, 132).0, 1);
        assert_eq!(t.split_k(4096, 4096, 4096, 132).0, 1);
        // Short K is never split.
        assert_eq!(t.split_k(100, 128, 255, 132).0, 1);
        // Slices cover K exactly once, in chunks that are multiples of BLOCK_K.
        let short = GemmTuning {
            min_split_chunk: 64,
            ..GemmTuning::default()
        };
        for t in [t, short] {
            for (m, n, k) in [(64, 128, 784), (100, 128, 1000), (37, 70, 2050), (300, 300, 100_000)] {
                let (s, chunk) = t.split_k(m, n, k, 132);
                assert_eq!(chunk % BLOCK_K, 0, "{m}x{n}x{k}");
                assert!(s * chunk >= k && (s - 1) * chunk < k, "{m}x{n}x{k}: {s} x {chunk}");
                assert!(s == 1 || chunk >= t.min_split_chunk, "{m}x{n}x{k}: chunk {chunk}");
            }
        }
    }
}
