// gemm_warptile.cu — v6 of the SGEMM (see gemm.cu for v1–v5 and the layouts):
//
//   C[M,N] = alpha · op(A) · op(B) + beta · C, row-major; layout 0 = NN, 1 = NT, 2 = TN.
//
// v6 adds a warp level to v4's tiling. The block tile (BM×BN) is cut into warp tiles (WM×WN),
// each warp tile into WMITER×WNITER sub-tiles of 32 lanes, and each lane owns a TM×TN patch of
// every sub-tile. What changes against v4:
//   - a warp's outputs form a compact WM×WN square instead of a 16×128 strip, so per k step a
//     warp reads fewer distinct shared-memory words (WM + WN instead of 16 + 128) and more of
//     its loads are broadcasts;
//   - BK = 16 halves the __syncthreads per flop, and 128-thread blocks with 8×16 outputs per
//     thread (config 1) trade occupancy for registers, as the register file allows;
//   - the next k tile is fetched into registers while the current one is multiplied (as v4).
// The configuration is a compile-time template, chosen with -DSGEMM6_CFG=n (see below), so
// `kiln bench` can time several in one run. (A linear-layer version with gemm.cu's bias +
// activation epilogue spilled 20–72 bytes at the 128 registers of two blocks per SM, so the
// fused linear layer stays on v4's loop.)

#ifndef SGEMM6_CFG
#define SGEMM6_CFG 2
#endif

#define LAYOUT_NN 0
#define LAYOUT_NT 1
#define LAYOUT_TN 2

// (threads, BM, BN, BK, WM, WN, WNITER, TM, TN), and the blocks per SM the register
// allocation must allow (__launch_bounds__'s second argument).
#if SGEMM6_CFG == 1
#define V6_ARGS 128, 128, 128, 16, 64, 64, 4, 8, 4
#define V6_MIN_BLOCKS 2
#elif SGEMM6_CFG == 2
#define V6_ARGS 256, 128, 128, 16, 64, 32, 2, 8, 4
#define V6_MIN_BLOCKS 2
#elif SGEMM6_CFG == 3
#define V6_ARGS 128, 64, 128, 16, 32, 64, 2, 8, 4
#define V6_MIN_BLOCKS 3
#elif SGEMM6_CFG == 4
#define V6_ARGS 256, 128, 256, 16, 64, 64, 4, 8, 4
#define V6_MIN_BLOCKS 1
#elif SGEMM6_CFG == 5
#define V6_ARGS 256, 128, 128, 16, 64, 32, 1, 8, 8
#define V6_MIN_BLOCKS 2
#elif SGEMM6_CFG == 6
#define V6_ARGS 256, 128, 128, 16, 32, 64, 2, 8, 4
#define V6_MIN_BLOCKS 2
#elif SGEMM6_CFG == 7
#define V6_ARGS 256, 128, 128, 8, 64, 32, 2, 8, 4
#define V6_MIN_BLOCKS 2
#elif SGEMM6_CFG == 8
#define V6_ARGS 256, 256, 128, 16, 64, 64, 4, 8, 4
#define V6_MIN_BLOCKS 1
#else
#error "unknown SGEMM6_CFG"
#endif
// The thread count alone, for __launch_bounds__.
#define V6_FIRST(t, ...) t
#define V6_THREADS_OF(...) V6_FIRST(__VA_ARGS__)
#define V6_THREADS V6_THREADS_OF(V6_ARGS)

// 4 consecutive floats src[base .. base+4), `valid` of them in bounds; one 16-byte load when
// all 4 are and the leading dimension keeps them aligned (`vec_ok`).
__device__ __forceinline__ float4 v6_load4(const float* src, long base, int valid, bool vec_ok) {
    if (vec_ok && valid >= 4) return *reinterpret_cast<const float4*>(src + base);
    float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (valid > 0) r.x = src[base];
    if (valid > 1) r.y = src[base + 1];
    if (valid > 2) r.z = src[base + 2];
    if (valid > 3) r.w = src[base + 3];
    return r;
}

// One operand's ROWS×BK tile (A: ROWS = BM over m; B: ROWS = BN over n) as float4 groups.
// `along_rows`: the operand is stored contiguous along m (A in TN) or n (B in NN/TN), so a
// group is 4 consecutive rows of one k and lands in shared memory as one float4; otherwise a
// group is 4 consecutive k of one row and is transposed into shared memory (k-major).
template <int NT, int ROWS, int BK>
struct TileLoader {
    static constexpr int GROUPS = ROWS * BK / 4;
    static constexpr int PER_THREAD = (GROUPS + NT - 1) / NT;
    float4 reg[PER_THREAD];

    // rows of the operand start at r0; k at k0; `extent` is M or N; ld is the stored row
    // length (extent when along_rows, else K).
    __device__ __forceinline__ void fetch(const float* src, bool along_rows, int extent, int K,
                                          int r0, int k0, int tid) {
#pragma unroll
        for (int l = 0; l < PER_THREAD; ++l) {
            int g = tid + l * NT;
            if (GROUPS % NT != 0 && g >= GROUPS) break;
            if (along_rows) {
                int kk = g / (ROWS / 4), rr = (g % (ROWS / 4)) * 4;
                int gk = k0 + kk, gr = r0 + rr;
                int valid = gk < K ? min(4, extent - gr) : 0;
                reg[l] = v6_load4(src, (long)gk * extent + gr, valid, (extent & 3) == 0);
            } else {
                int rr = g / (BK / 4), kk = (g % (BK / 4)) * 4;
                int gr = r0 + rr, gk = k0 + kk;
                int valid = gr < extent ? min(4, K - gk) : 0;
                reg[l] = v6_load4(src, (long)gr * K + gk, valid, (K & 3) == 0);
            }
        }
    }

    __device__ __forceinline__ void store(float (*tile)[ROWS], bool along_rows, int tid) const {
#pragma unroll
        for (int l = 0; l < PER_THREAD; ++l) {
            int g = tid + l * NT;
            if (GROUPS % NT != 0 && g >= GROUPS) break;
            if (along_rows) {
                int kk = g / (ROWS / 4), rr = (g % (ROWS / 4)) * 4;
                *reinterpret_cast<float4*>(&tile[kk][rr]) = reg[l];
            } else {
                int rr = g / (BK / 4), kk = (g % (BK / 4)) * 4;
                tile[kk + 0][rr] = reg[l].x;
                tile[kk + 1][rr] = reg[l].y;
                tile[kk + 2][rr] = reg[l].z;
                tile[kk + 3][rr] = reg[l].w;
            }
        }
    }
};

// Epilogue: C = alpha·acc + beta·C; beta == 0 never reads C.
template <int NT, int BM, int BN, int BK, int WM, int WN, int WNITER, int TM, int TN>
__device__ __forceinline__ void sgemm_v6_body(int layout, int M, int N, int K, float alpha,
                                              const float* __restrict__ A,
                                              const float* __restrict__ B, float beta,
                                              float* __restrict__ C) {
    constexpr int WMITER = (WM * WN) / (32 * TM * TN * WNITER);
    constexpr int WSUBM = WM / WMITER, WSUBN = WN / WNITER;
    constexpr int LANES_N = WSUBN / TN;
    static_assert(WMITER >= 1 && LANES_N * (WSUBM / TM) == 32, "a warp sub-tile is 32 lanes");
    static_assert((BM / WM) * (BN / WN) * 32 == NT, "the warps cover the block tile");
    static_assert(TM % 4 == 0 && TN % 4 == 0, "fragments are read as float4");

    __shared__ __align__(16) float As[2][BK][BM];
    __shared__ __align__(16) float Bs[2][BK][BN];
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int wm0 = (warp / (BN / WN)) * WM, wn0 = (warp % (BN / WN)) * WN;
    const int lm = (lane / LANES_N) * TM, ln = (lane % LANES_N) * TN;
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    const bool a_rows = layout == LAYOUT_TN, b_rows = layout != LAYOUT_NT;

    float acc[WMITER * TM][WNITER * TN];
#pragma unroll
    for (int i = 0; i < WMITER * TM; ++i)
#pragma unroll
        for (int j = 0; j < WNITER * TN; ++j) acc[i][j] = 0.0f;

    TileLoader<NT, BM, BK> a_ld;
    TileLoader<NT, BN, BK> b_ld;
    a_ld.fetch(A, a_rows, M, K, m0, 0, tid);
    b_ld.fetch(B, b_rows, N, K, n0, 0, tid);
    a_ld.store(As[0], a_rows, tid);
    b_ld.store(Bs[0], b_rows, tid);
    __syncthreads();

    int stage = 0;
    for (int k0 = 0; k0 < K; k0 += BK) {
        const bool has_next = k0 + BK < K;
        if (has_next) {  // in flight while the current stage is multiplied
            a_ld.fetch(A, a_rows, M, K, m0, k0 + BK, tid);
            b_ld.fetch(B, b_rows, N, K, n0, k0 + BK, tid);
        }
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a_frag[WMITER * TM], b_frag[WNITER * TN];
#pragma unroll
            for (int wm = 0; wm < WMITER; ++wm)
#pragma unroll
                for (int i = 0; i < TM; i += 4) {
                    float4 v = *reinterpret_cast<const float4*>(&As[stage][kk][wm0 + wm * WSUBM + lm + i]);
                    a_frag[wm * TM + i + 0] = v.x;
                    a_frag[wm * TM + i + 1] = v.y;
                    a_frag[wm * TM + i + 2] = v.z;
                    a_frag[wm * TM + i + 3] = v.w;
                }
#pragma unroll
            for (int wn = 0; wn < WNITER; ++wn)
#pragma unroll
                for (int j = 0; j < TN; j += 4) {
                    float4 v = *reinterpret_cast<const float4*>(&Bs[stage][kk][wn0 + wn * WSUBN + ln + j]);
                    b_frag[wn * TN + j + 0] = v.x;
                    b_frag[wn * TN + j + 1] = v.y;
                    b_frag[wn * TN + j + 2] = v.z;
                    b_frag[wn * TN + j + 3] = v.w;
                }
#pragma unroll
            for (int i = 0; i < WMITER * TM; ++i)
#pragma unroll
                for (int j = 0; j < WNITER * TN; ++j) acc[i][j] = fmaf(a_frag[i], b_frag[j], acc[i][j]);
        }
        if (has_next) {
            // The other stage was last read before the previous __syncthreads, so it is free.
            a_ld.store(As[stage ^ 1], a_rows, tid);
            b_ld.store(Bs[stage ^ 1], b_rows, tid);
            __syncthreads();
            stage ^= 1;
        }
    }

#pragma unroll
    for (int wm = 0; wm < WMITER; ++wm)
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            const int gm = m0 + wm0 + wm * WSUBM + lm + i;
            if (gm >= M) continue;
#pragma unroll
            for (int wn = 0; wn < WNITER; ++wn)
#pragma unroll
                for (int j = 0; j < TN; j += 4) {
                    const int gn = n0 + wn0 + wn * WSUBN + ln + j;
                    const long base = (long)gm * N + gn;
                    float v[4];
#pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        float a = alpha * acc[wm * TM + i][wn * TN + j + q];
                        v[q] = (gn + q < N && beta != 0.0f) ? fmaf(beta, C[base + q], a) : a;
                    }
                    if ((N & 3) == 0 && gn + 4 <= N) {
                        *reinterpret_cast<float4*>(C + base) = make_float4(v[0], v[1], v[2], v[3]);
                    } else {
#pragma unroll
                        for (int q = 0; q < 4; ++q)
                            if (gn + q < N) C[base + q] = v[q];
                    }
                }
        }
}

extern "C" __global__ void __launch_bounds__(V6_THREADS, V6_MIN_BLOCKS)
sgemm_fwd_v6_f32(int layout, int M, int N, int K, float alpha, const float* __restrict__ A,
                 const float* __restrict__ B, float beta, float* __restrict__ C) {
    sgemm_v6_body<V6_ARGS>(layout, M, N, K, alpha, A, B, beta, C);
}
