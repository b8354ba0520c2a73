// reduce.cu — sum / mean / max over all elements, and over one dimension of an
// [outer, R, inner] view. Deterministic: no atomics; every partial result is combined in an
// order fixed by (n, grid size) alone, so the same input gives bit-identical output run to run.
//
// Op codes: 0 sum (the result is multiplied by `scale`: 1 for sum, 1/count for mean), 1 max.
//
// Variants:
//   reduce_all_fwd_v1_f32  two-pass full reduction. Pass 1: each block grid-strides over x,
//                          reduces its 256 values with warp shuffles (__shfl_xor_sync, no
//                          shared-memory round trips inside a warp) then across the 8 warps
//                          through shared memory, and writes one partial per block. Pass 2: the
//                          same kernel, one block, over the partials, applies `scale`.
//   reduce_dim_fwd_v1_f32  one thread per output (o, i), sequential loop over R. Consecutive
//                          threads take consecutive i, so every load is coalesced when
//                          inner ≥ 32. Best for reducing a leading/middle dim (e.g. the batch
//                          dim of a bias gradient).
//   reduce_dim_fwd_v2_f32  one warp per output, lanes stride over R, shuffle tree — for
//                          inner == 1 (row reductions: sum over features), where v1 would
//                          have each thread walk a row alone with uncoalesced loads.
//   reduce_dim_fwd_v3_f32  few outputs, long R (a column sum of a [16384, 1024] matrix: v1
//                          would run 1024 threads, each walking 16384 values alone). A block
//                          is 32 outputs × 8 row lanes; grid y cuts R into slices. Each thread
//                          walks every 8th row of its slice, the 8 lanes are combined in lane
//                          order through shared memory, and each slice writes a partial; v1
//                          then reduces the partials over the slices in slice order. Shorter
//                          sequential chains also make the f32 sum more accurate.

#define REDUCE_THREADS 256
#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float combine(int op, float a, float b) {
    return op == 1 ? fmaxf(a, b) : a + b;
}
__device__ __forceinline__ float identity(int op) {
    return op == 1 ? -__int_as_float(0x7f800000) : 0.0f;  // -inf for max
}

__device__ __forceinline__ float warp_reduce(int op, float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = combine(op, v, __shfl_xor_sync(FULL_MASK, v, offset));
    return v;
}

// Reduces one value per thread across the block (blockDim.x == REDUCE_THREADS); thread 0 gets
// the result.
__device__ __forceinline__ float block_reduce(int op, float v) {
    __shared__ float warp_partials[REDUCE_THREADS / 32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_reduce(op, v);
    if (lane == 0) warp_partials[warp] = v;
    __syncthreads();
    v = threadIdx.x < REDUCE_THREADS / 32 ? warp_partials[threadIdx.x] : identity(op);
    if (warp == 0) v = warp_reduce(op, v);
    return v;
}

// out[blockIdx.x] = scale · reduce(x[i] for i ≡ this block's share). Launch with
// REDUCE_THREADS threads; with gridDim.x == 1 this is the final pass.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
reduce_all_fwd_v1_f32(int op, const float* __restrict__ x, long long n, float scale,
                      float* __restrict__ out) {
    float acc = identity(op);
    for (long long i = blockIdx.x * (long long)REDUCE_THREADS + threadIdx.x; i < n;
         i += (long long)gridDim.x * REDUCE_THREADS) {
        acc = combine(op, acc, x[i]);
    }
    acc = block_reduce(op, acc);
    if (threadIdx.x == 0) out[blockIdx.x] = op == 1 ? acc : acc * scale;
}

// x viewed as [outer, R, inner]; out is [outer, inner].
extern "C" __global__ void reduce_dim_fwd_v1_f32(int op, const float* __restrict__ x, int outer,
                                                 int R, int inner, float scale,
                                                 float* __restrict__ out) {
    long long total = (long long)outer * inner;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        long long o = t / inner, i = t % inner;
        const float* base = x + o * (long long)R * inner + i;
        float acc = identity(op);
        for (int r = 0; r < R; ++r) acc = combine(op, acc, base[(long long)r * inner]);
        out[t] = op == 1 ? acc : acc * scale;
    }
}

// inner == 1: x is [outer, R], one warp per row. blockDim.x must be a multiple of 32.
extern "C" __global__ void reduce_dim_fwd_v2_f32(int op, const float* __restrict__ x, int outer,
                                                 int R, float scale, float* __restrict__ out) {
    int lane = threadIdx.x & 31;
    long long warps_total = (long long)gridDim.x * (blockDim.x / 32);
    for (long long row = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32; row < outer;
         row += warps_total) {
        const float* base = x + row * (long long)R;
        float acc = identity(op);
        for (int r = lane; r < R; r += 32) acc = combine(op, acc, base[r]);
        acc = warp_reduce(op, acc);
        if (lane == 0) out[row] = op == 1 ? acc : acc * scale;
    }
}

// x viewed as [outer, R, inner]; t = o·inner + i. Block (32, 8); grid (⌈outer·inner/32⌉, slices).
// Slice y covers rows [y·rchunk, min(R, (y+1)·rchunk)) and writes out[y·outer·inner + t], times
// `scale` (pass 1 of a split reduction passes 1, and v1 applies the real scale in pass 2).
#define V3_LANES 8
extern "C" __global__ void __launch_bounds__(32 * V3_LANES)
reduce_dim_fwd_v3_f32(int op, const float* __restrict__ x, int outer, int R, int inner, int rchunk,
                      float scale, float* __restrict__ out) {
    __shared__ float lanes[V3_LANES][33];
    long long total = (long long)outer * inner;
    long long t = blockIdx.x * 32LL + threadIdx.x;
    int r0 = blockIdx.y * rchunk, r1 = min(R, r0 + rchunk);
    float acc = identity(op);
    if (t < total) {
        long long o = t / inner, i = t % inner;
        const float* base = x + o * (long long)R * inner + i;
        for (int r = r0 + threadIdx.y; r < r1; r += V3_LANES) acc = combine(op, acc, base[(long long)r * inner]);
    }
    lanes[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && t < total) {
#pragma unroll
        for (int l = 1; l < V3_LANES; ++l) acc = combine(op, acc, lanes[l][threadIdx.x]);
        out[blockIdx.y * total + t] = op == 1 ? acc : acc * scale;
    }
}
