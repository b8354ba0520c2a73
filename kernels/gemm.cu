// gemm.cu — single-precision matrix multiply, row-major, and the fused linear layer.
//
//   C[M,N] = alpha · op(A) · op(B) + beta · C
//
// Layouts (the `layout` argument, all matrices row-major and contiguous):
//   0 = NN: A is [M,K], B is [K,N]        C = A·B    (Linear grad_input = dy·W)
//   1 = NT: A is [M,K], B is [N,K]        C = A·Bᵀ   (Linear forward x·Wᵀ, W is [O,I])
//   2 = TN: A is [K,M], B is [K,N]        C = Aᵀ·B   (Linear grad_weight = dyᵀ·x)
// beta == 0 never reads C, so C may hold garbage (NaN) on entry.
//
// Variants (every one compiled and selectable; the engine's GEMM is v5 where it splits K,
// else v6 of gemm_warptile.cu; its linear layer is linear_fwd_v1_f32, or v5 where it splits):
//   sgemm_fwd_v1_f32  naive: one thread per C element, K-loop straight from global
//                     memory. Each A/B element is re-read from DRAM/L2 by every thread
//                     that needs it: ~2·K loads per 2·K flops, hopelessly memory bound.
//   sgemm_fwd_v2_f32  shared-memory tiling: a TILE×TILE block stages a TILE-wide slab of
//                     A and B in shared memory, so each global element is read once per
//                     block instead of once per thread (TILE× less global traffic). Still
//                     one output per thread: 2 shared loads per FMA limit it.
//   sgemm_fwd_v3_f32  2-D register blocking: a 128×128 block tile, BK=8, 256 threads, each
//                     thread accumulates an 8×8 sub-tile in registers. Per k step a thread
//                     loads 8+8 values from shared memory and does 64 FMAs (4 FMAs per
//                     shared load instead of 0.5), which moves the bound from shared-memory
//                     bandwidth towards the FMA pipes.
//   sgemm_fwd_v4_f32  v3 + float4 global loads (when the leading dimension is a multiple of
//                     4), float4 shared-memory reads of the register fragments, a
//                     bank-conflict-friendly split thread layout (each thread owns rows
//                     {4ty..4ty+3, 64+4ty..} and the same for columns, so a warp reads
//                     consecutive float4s), and double buffering: the next k-tile is
//                     fetched into registers while the current one is multiplied, so global
//                     latency hides behind math and there is one __syncthreads per k-tile.
//   sgemm_fwd_v5_splitk_f32 + sgemm_splitk_reduce_f32
//                     split-K: when M×N gives fewer 128×128 tiles than one wave (2 blocks per
//                     SM) and K is long, grid z cuts K into slices, each slice's blocks run the v4 loop
//                     over their chunk into a workspace, and a second kernel sums the slices
//                     in a fixed order (deterministic, no atomics) and applies the epilogue
//                     (alpha/beta, or the linear layer's bias + activation).
//   linear_fwd_v1_f32 the v4 main loop in NT layout with a fused epilogue
//                     out = act(x·Wᵀ + b): bias add and activation happen in registers
//                     before the single store, saving two full passes over `out`.
//                     act: 0 none, 1 relu, 2 leaky_relu(slope), 3 sigmoid, 4 tanh.
//
// Tile sizes are #defines with #ifndef defaults so `-D` options can autotune them. The v3/v4
// thread layout assumes SGEMM_BM = SGEMM_BN = 16·SGEMM_TM and SGEMM_TM = SGEMM_TN = 8.

#ifndef SGEMM_V1_BLOCK
#define SGEMM_V1_BLOCK 16
#endif
#ifndef SGEMM_V2_TILE
#define SGEMM_V2_TILE 32
#endif
#ifndef SGEMM_BM
#define SGEMM_BM 128
#endif
#ifndef SGEMM_BN
#define SGEMM_BN 128
#endif
#ifndef SGEMM_BK
#define SGEMM_BK 8
#endif
#ifndef SGEMM_TM
#define SGEMM_TM 8
#endif
#ifndef SGEMM_TN
#define SGEMM_TN 8
#endif
#define SGEMM_THREADS ((SGEMM_BM / SGEMM_TM) * (SGEMM_BN / SGEMM_TN))

#define LAYOUT_NN 0
#define LAYOUT_NT 1
#define LAYOUT_TN 2

#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_LEAKY_RELU 2
#define ACT_SIGMOID 3
#define ACT_TANH 4

// Element (i, k) of op(A) and (k, j) of op(B) for a given layout.
__device__ __forceinline__ float load_a(const float* A, int layout, int M, int K, int i, int k) {
    return layout == LAYOUT_TN ? A[(long)k * M + i] : A[(long)i * K + k];
}
__device__ __forceinline__ float load_b(const float* B, int layout, int N, int K, int k, int j) {
    return layout == LAYOUT_NT ? B[(long)j * K + k] : B[(long)k * N + j];
}

__device__ __forceinline__ float epilogue(float acc, float alpha, float beta, const float* C, long idx) {
    return beta == 0.0f ? alpha * acc : fmaf(beta, C[idx], alpha * acc);
}

// ---------------------------------------------------------------------------------------------
// v1: naive. threadIdx.x walks columns so a warp's C stores (and B loads in NN) are coalesced.
extern "C" __global__ void sgemm_fwd_v1_f32(int layout, int M, int N, int K, float alpha,
                                            const float* __restrict__ A,
                                            const float* __restrict__ B, float beta,
                                            float* __restrict__ C) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    int i = blockIdx.y * blockDim.y + threadIdx.y;
    if (i >= M || j >= N) return;
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) {
        acc = fmaf(load_a(A, layout, M, K, i, k), load_b(B, layout, N, K, k, j), acc);
    }
    long idx = (long)i * N + j;
    C[idx] = epilogue(acc, alpha, beta, C, idx);
}

// ---------------------------------------------------------------------------------------------
// v2: shared-memory tiling, TILE×TILE threads, one output each.
extern "C" __global__ void sgemm_fwd_v2_f32(int layout, int M, int N, int K, float alpha,
                                            const float* __restrict__ A,
                                            const float* __restrict__ B, float beta,
                                            float* __restrict__ C) {
    // +1 column of padding: in TN/NT layouts the tile is written "transposed" and the padding
    // keeps those column writes free of bank conflicts.
    __shared__ float As[SGEMM_V2_TILE][SGEMM_V2_TILE + 1];
    __shared__ float Bs[SGEMM_V2_TILE][SGEMM_V2_TILE + 1];
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * SGEMM_V2_TILE + ty;
    int col = blockIdx.x * SGEMM_V2_TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += SGEMM_V2_TILE) {
        // As[ty][tx] = op(A)(row, k0+tx); Bs[ty][tx] = op(B)(k0+ty, col)
        int ka = k0 + tx, kb = k0 + ty;
        As[ty][tx] = (row < M && ka < K) ? load_a(A, layout, M, K, row, ka) : 0.0f;
        Bs[ty][tx] = (kb < K && col < N) ? load_b(B, layout, N, K, kb, col) : 0.0f;
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SGEMM_V2_TILE; ++kk) acc = fmaf(As[ty][kk], Bs[kk][tx], acc);
        __syncthreads();
    }
    if (row < M && col < N) {
        long idx = (long)row * N + col;
        C[idx] = epilogue(acc, alpha, beta, C, idx);
    }
}

// ---------------------------------------------------------------------------------------------
// v3: 2-D register blocking. Shared tiles are stored k-major (As[k][m], Bs[k][n]) so the
// inner loop reads a column of A and a row of B as contiguous runs.
extern "C" __global__ void __launch_bounds__(SGEMM_THREADS)
sgemm_fwd_v3_f32(int layout, int M, int N, int K, float alpha, const float* __restrict__ A,
                 const float* __restrict__ B, float beta, float* __restrict__ C) {
    __shared__ float As[SGEMM_BK][SGEMM_BM];
    __shared__ float Bs[SGEMM_BK][SGEMM_BN];
    const int tid = threadIdx.x;
    const int ty = tid / (SGEMM_BN / SGEMM_TN), tx = tid % (SGEMM_BN / SGEMM_TN);
    const int m0 = blockIdx.y * SGEMM_BM, n0 = blockIdx.x * SGEMM_BN;

    float acc[SGEMM_TM][SGEMM_TN];
#pragma unroll
    for (int i = 0; i < SGEMM_TM; ++i)
#pragma unroll
        for (int j = 0; j < SGEMM_TN; ++j) acc[i][j] = 0.0f;
    float a_frag[SGEMM_TM], b_frag[SGEMM_TN];

    for (int k0 = 0; k0 < K; k0 += SGEMM_BK) {
        // Cooperative scalar loads; consecutive threads take consecutive m (or n) so the
        // global reads are coalesced in the layouts where that dimension is contiguous.
        for (int idx = tid; idx < SGEMM_BM * SGEMM_BK; idx += SGEMM_THREADS) {
            int kk = idx / SGEMM_BM, mm = idx % SGEMM_BM;
            int gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = (gm < M && gk < K) ? load_a(A, layout, M, K, gm, gk) : 0.0f;
        }
        for (int idx = tid; idx < SGEMM_BN * SGEMM_BK; idx += SGEMM_THREADS) {
            int kk = idx / SGEMM_BN, nn = idx % SGEMM_BN;
            int gn = n0 + nn, gk = k0 + kk;
            Bs[kk][nn] = (gn < N && gk < K) ? load_b(B, layout, N, K, gk, gn) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SGEMM_BK; ++kk) {
#pragma unroll
            for (int i = 0; i < SGEMM_TM; ++i) a_frag[i] = As[kk][ty * SGEMM_TM + i];
#pragma unroll
            for (int j = 0; j < SGEMM_TN; ++j) b_frag[j] = Bs[kk][tx * SGEMM_TN + j];
#pragma unroll
            for (int i = 0; i < SGEMM_TM; ++i)
#pragma unroll
                for (int j = 0; j < SGEMM_TN; ++j) acc[i][j] = fmaf(a_frag[i], b_frag[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < SGEMM_TM; ++i) {
        int gm = m0 + ty * SGEMM_TM + i;
#pragma unroll
        for (int j = 0; j < SGEMM_TN; ++j) {
            int gn = n0 + tx * SGEMM_TN + j;
            if (gm < M && gn < N) {
                long idx = (long)gm * N + gn;
                C[idx] = epilogue(acc[i][j], alpha, beta, C, idx);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// v4 (and the linear layer): float4 loads, split thread layout, double-buffered shared memory.

// Loads 4 consecutive elements src[base .. base+4) where `valid` of them are in bounds
// (valid may be ≤ 0 or ≥ 4).
// `vec_ok` says the leading dimension is a multiple of 4, so an in-bounds group is 16-byte
// aligned (buffers come from cuMemAlloc, which aligns to 256 bytes).
__device__ __forceinline__ float4 load4(const float* src, long base, int valid, bool vec_ok) {
    if (vec_ok && valid >= 4) return *reinterpret_cast<const float4*>(src + base);
    float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (valid > 0) r.x = src[base];
    if (valid > 1) r.y = src[base + 1];
    if (valid > 2) r.z = src[base + 2];
    if (valid > 3) r.w = src[base + 3];  // in bounds but misaligned (ld % 4 != 0)
    return r;
}

// Number of A (resp. B) float4 groups one thread loads per k-tile.
#define V4_A_LOADS ((SGEMM_BM * SGEMM_BK / 4 + SGEMM_THREADS - 1) / SGEMM_THREADS)
#define V4_B_LOADS ((SGEMM_BN * SGEMM_BK / 4 + SGEMM_THREADS - 1) / SGEMM_THREADS)

// Global → registers for the k-tile starting at k0; k ≥ kend reads as zero (K is the leading
// dimension, kend ≤ K the end of the block's slice of k). In the non-transposed layout a group is
// 4 consecutive k of one row of A; transposed, 4 consecutive m of one row of Aᵀ storage.
__device__ __forceinline__ void v4_fetch_a(float4 (&reg)[V4_A_LOADS], const float* A, int layout,
                                           int M, int K, int kend, int m0, int k0, int tid) {
#pragma unroll
    for (int l = 0; l < V4_A_LOADS; ++l) {
        int g = tid + l * SGEMM_THREADS;
        if (g >= SGEMM_BM * SGEMM_BK / 4) break;
        if (layout == LAYOUT_TN) {  // A stored [K, M]: contiguous along m
            int kk = g / (SGEMM_BM / 4), mm = (g % (SGEMM_BM / 4)) * 4;
            int gk = k0 + kk, gm = m0 + mm;
            int valid = gk < kend ? min(4, M - gm) : 0;
            reg[l] = load4(A, (long)gk * M + gm, valid, (M & 3) == 0);
        } else {  // A stored [M, K]: contiguous along k
            int mm = g / (SGEMM_BK / 4), kk = (g % (SGEMM_BK / 4)) * 4;
            int gm = m0 + mm, gk = k0 + kk;
            int valid = gm < M ? min(4, kend - gk) : 0;
            reg[l] = load4(A, (long)gm * K + gk, valid, (K & 3) == 0);
        }
    }
}

__device__ __forceinline__ void v4_store_a(float (*As)[SGEMM_BM], const float4 (&reg)[V4_A_LOADS],
                                           int layout, int tid) {
#pragma unroll
    for (int l = 0; l < V4_A_LOADS; ++l) {
        int g = tid + l * SGEMM_THREADS;
        if (g >= SGEMM_BM * SGEMM_BK / 4) break;
        if (layout == LAYOUT_TN) {
            int kk = g / (SGEMM_BM / 4), mm = (g % (SGEMM_BM / 4)) * 4;
            *reinterpret_cast<float4*>(&As[kk][mm]) = reg[l];
        } else {  // transpose while storing: As is k-major
            int mm = g / (SGEMM_BK / 4), kk = (g % (SGEMM_BK / 4)) * 4;
            As[kk + 0][mm] = reg[l].x;
            As[kk + 1][mm] = reg[l].y;
            As[kk + 2][mm] = reg[l].z;
            As[kk + 3][mm] = reg[l].w;
        }
    }
}

__device__ __forceinline__ void v4_fetch_b(float4 (&reg)[V4_B_LOADS], const float* B, int layout,
                                           int N, int K, int kend, int n0, int k0, int tid) {
#pragma unroll
    for (int l = 0; l < V4_B_LOADS; ++l) {
        int g = tid + l * SGEMM_THREADS;
        if (g >= SGEMM_BN * SGEMM_BK / 4) break;
        if (layout == LAYOUT_NT) {  // B stored [N, K]: contiguous along k
            int nn = g / (SGEMM_BK / 4), kk = (g % (SGEMM_BK / 4)) * 4;
            int gn = n0 + nn, gk = k0 + kk;
            int valid = gn < N ? min(4, kend - gk) : 0;
            reg[l] = load4(B, (long)gn * K + gk, valid, (K & 3) == 0);
        } else {  // B stored [K, N]: contiguous along n
            int kk = g / (SGEMM_BN / 4), nn = (g % (SGEMM_BN / 4)) * 4;
            int gk = k0 + kk, gn = n0 + nn;
            int valid = gk < kend ? min(4, N - gn) : 0;
            reg[l] = load4(B, (long)gk * N + gn, valid, (N & 3) == 0);
        }
    }
}

__device__ __forceinline__ void v4_store_b(float (*Bs)[SGEMM_BN], const float4 (&reg)[V4_B_LOADS],
                                           int layout, int tid) {
#pragma unroll
    for (int l = 0; l < V4_B_LOADS; ++l) {
        int g = tid + l * SGEMM_THREADS;
        if (g >= SGEMM_BN * SGEMM_BK / 4) break;
        if (layout == LAYOUT_NT) {
            int nn = g / (SGEMM_BK / 4), kk = (g % (SGEMM_BK / 4)) * 4;
            Bs[kk + 0][nn] = reg[l].x;
            Bs[kk + 1][nn] = reg[l].y;
            Bs[kk + 2][nn] = reg[l].z;
            Bs[kk + 3][nn] = reg[l].w;
        } else {
            int kk = g / (SGEMM_BN / 4), nn = (g % (SGEMM_BN / 4)) * 4;
            *reinterpret_cast<float4*>(&Bs[kk][nn]) = reg[l];
        }
    }
}

__device__ __forceinline__ float activate(float v, int act, float slope) {
    switch (act) {
        case ACT_RELU: return fmaxf(v, 0.0f);
        case ACT_LEAKY_RELU: return v > 0.0f ? v : slope * v;
        case ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));  // as the unary kernel
        case ACT_TANH: return tanhf(v);
        default: return v;
    }
}

// Shared main loop of v4 and linear_fwd. Thread (ty, tx) of the 16×16 grid owns the rows
// {4ty + i, BM/2 + 4ty + i} and columns {4tx + j, BN/2 + 4tx + j}, i, j in 0..4.
// The block sums k in [kbeg, kend) (kbeg a multiple of 4; the whole of K except for split-K).
// Epilogue: `bias` != null → add bias[col] then activation (linear); else alpha/beta (sgemm).
__device__ __forceinline__ void sgemm_v4_body(int layout, int M, int N, int K, int kbeg, int kend,
                                              float alpha,
                                              const float* __restrict__ A,
                                              const float* __restrict__ B, float beta,
                                              float* __restrict__ C, const float* __restrict__ bias,
                                              int act, float slope) {
    __shared__ __align__(16) float As[2][SGEMM_BK][SGEMM_BM];
    __shared__ __align__(16) float Bs[2][SGEMM_BK][SGEMM_BN];
    const int tid = threadIdx.x;
    const int ty = tid / (SGEMM_BN / SGEMM_TN), tx = tid % (SGEMM_BN / SGEMM_TN);
    const int m0 = blockIdx.y * SGEMM_BM, n0 = blockIdx.x * SGEMM_BN;

    float acc[SGEMM_TM][SGEMM_TN];
#pragma unroll
    for (int i = 0; i < SGEMM_TM; ++i)
#pragma unroll
        for (int j = 0; j < SGEMM_TN; ++j) acc[i][j] = 0.0f;

    float4 a_reg[V4_A_LOADS], b_reg[V4_B_LOADS];
    v4_fetch_a(a_reg, A, layout, M, K, kend, m0, kbeg, tid);
    v4_fetch_b(b_reg, B, layout, N, K, kend, n0, kbeg, tid);
    v4_store_a(As[0], a_reg, layout, tid);
    v4_store_b(Bs[0], b_reg, layout, tid);
    __syncthreads();

    int stage = 0;
    for (int k0 = kbeg; k0 < kend; k0 += SGEMM_BK) {
        const bool has_next = k0 + SGEMM_BK < kend;
        if (has_next) {  // in flight while we multiply the current stage
            v4_fetch_a(a_reg, A, layout, M, K, kend, m0, k0 + SGEMM_BK, tid);
            v4_fetch_b(b_reg, B, layout, N, K, kend, n0, k0 + SGEMM_BK, tid);
        }
#pragma unroll
        for (int kk = 0; kk < SGEMM_BK; ++kk) {
            float a_frag[SGEMM_TM], b_frag[SGEMM_TN];
            float4 a_lo = *reinterpret_cast<const float4*>(&As[stage][kk][ty * 4]);
            float4 a_hi = *reinterpret_cast<const float4*>(&As[stage][kk][SGEMM_BM / 2 + ty * 4]);
            float4 b_lo = *reinterpret_cast<const float4*>(&Bs[stage][kk][tx * 4]);
            float4 b_hi = *reinterpret_cast<const float4*>(&Bs[stage][kk][SGEMM_BN / 2 + tx * 4]);
            a_frag[0] = a_lo.x; a_frag[1] = a_lo.y; a_frag[2] = a_lo.z; a_frag[3] = a_lo.w;
            a_frag[4] = a_hi.x; a_frag[5] = a_hi.y; a_frag[6] = a_hi.z; a_frag[7] = a_hi.w;
            b_frag[0] = b_lo.x; b_frag[1] = b_lo.y; b_frag[2] = b_lo.z; b_frag[3] = b_lo.w;
            b_frag[4] = b_hi.x; b_frag[5] = b_hi.y; b_frag[6] = b_hi.z; b_frag[7] = b_hi.w;
#pragma unroll
            for (int i = 0; i < SGEMM_TM; ++i)
#pragma unroll
                for (int j = 0; j < SGEMM_TN; ++j) acc[i][j] = fmaf(a_frag[i], b_frag[j], acc[i][j]);
        }
        if (has_next) {
            // The other stage was last read before the previous __syncthreads, so it is free.
            v4_store_a(As[stage ^ 1], a_reg, layout, tid);
            v4_store_b(Bs[stage ^ 1], b_reg, layout, tid);
            __syncthreads();
            stage ^= 1;
        }
    }

#pragma unroll
    for (int i = 0; i < SGEMM_TM; ++i) {
        int gm = m0 + (i < 4 ? ty * 4 + i : SGEMM_BM / 2 + ty * 4 + (i - 4));
        if (gm >= M) continue;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            int gn = n0 + half * (SGEMM_BN / 2) + tx * 4;
            float v[4];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                float a = acc[i][half * 4 + j];
                int col = gn + j;
                if (bias != 0) {
                    v[j] = col < N ? activate(a + bias[col], act, slope) : 0.0f;
                } else {
                    v[j] = (col < N) ? epilogue(a, alpha, beta, C, (long)gm * N + col) : 0.0f;
                }
            }
            long base = (long)gm * N + gn;
            if ((N & 3) == 0 && gn + 4 <= N) {
                *reinterpret_cast<float4*>(C + base) = make_float4(v[0], v[1], v[2], v[3]);
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                    if (gn + j < N) C[base + j] = v[j];
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(SGEMM_THREADS)
sgemm_fwd_v4_f32(int layout, int M, int N, int K, float alpha, const float* __restrict__ A,
                 const float* __restrict__ B, float beta, float* __restrict__ C) {
    sgemm_v4_body(layout, M, N, K, 0, K, alpha, A, B, beta, C, 0, ACT_NONE, 0.0f);
}

// v5, split-K, for products with few output tiles and a long K (a linear layer's forward or
// input gradient over 12288 features at batch 100 fills one 128×128 tile: v4 would run one
// block on one SM of 132). Grid z slices K into chunks of `kchunk` (a multiple of SGEMM_BK);
// slice z runs the v4 main loop over its chunk and writes its partial product to
// part[z][M][N]. sgemm_splitk_reduce_f32 then sums the slices in z order and applies the
// epilogue, so the result does not depend on scheduling.
extern "C" __global__ void __launch_bounds__(SGEMM_THREADS)
sgemm_fwd_v5_splitk_f32(int layout, int M, int N, int K, int kchunk, const float* __restrict__ A,
                        const float* __restrict__ B, float* __restrict__ part) {
    int kbeg = blockIdx.z * kchunk;
    int kend = min(K, kbeg + kchunk);
    sgemm_v4_body(layout, M, N, K, kbeg, kend, 1.0f, A, B, 0.0f, part + (long)blockIdx.z * M * N, 0,
                  ACT_NONE, 0.0f);
}

// Sums the slices, z ascending, for each of the M·N outputs i (column i % N), then either
// C[i] = alpha·Σ + beta·C[i] (bias == null: sgemm) or C[i] = act(Σ + bias[i % N]) (the
// linear layer's epilogue, as linear_fwd_v1_f32 applies it).
extern "C" __global__ void sgemm_splitk_reduce_f32(long long mn, int N, int slices, float alpha,
                                                   const float* __restrict__ part, float beta,
                                                   float* __restrict__ C,
                                                   const float* __restrict__ bias, int act,
                                                   float slope) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < mn;
         i += (long long)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int z = 0; z < slices; ++z) acc += part[z * mn + i];
        C[i] = bias != 0 ? activate(acc + bias[i % N], act, slope) : epilogue(acc, alpha, beta, C, i);
    }
}

// out[N_batch, O] = act(x[N_batch, I] · W[O, I]ᵀ + b[O]), i.e. NT layout with M = batch,
// N = O, K = I. `b` must not be null (pass zeros for a bias-free layer).
extern "C" __global__ void __launch_bounds__(SGEMM_THREADS)
linear_fwd_v1_f32(int M, int N, int K, const float* __restrict__ x, const float* __restrict__ w,
                  const float* __restrict__ b, int act, float slope, float* __restrict__ out) {
    sgemm_v4_body(LAYOUT_NT, M, N, K, 0, K, 1.0f, x, w, 0.0f, out, b, act, slope);
}
