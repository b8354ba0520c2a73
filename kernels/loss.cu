// loss.cu — losses with mean reduction (PyTorch's default), forward and backward.
//
// Forward losses are two-pass and deterministic like reduce.cu: a *_fwd kernel computes the
// per-element loss and writes one partial sum per block; the host then runs
// reduce_all_fwd_v1_f32 (reduce.cu) with one block over the partials and scale = 1/count.
// Backward kernels read the upstream gradient `dloss` from device memory (a 1-element
// buffer), so a training step never copies the loss to the host.
//
// Kernels (all v1; the block-partials pattern is the interesting part):
//   mse_fwd_v1_f32 / mse_bwd_v1_f32          (p − t)²,  d/dp = 2(p − t)/n
//   bce_fwd_v1_f32 / bce_bwd_v1_f32          −[t·log p + (1−t)·log(1−p)], each log clamped
//                                            at −100 like PyTorch; d/dp = (p − t)/max(p(1−p), 1e-12)/n
//   bce_with_logits_fwd_v1_f32 / _bwd        max(x,0) − x·t + log1p(e^{−|x|}) (never
//                                            overflows); d/dx = (σ(x) − t)/n
//   log_softmax_fwd_v1_f32 / _bwd            rows of a [rows, cols] matrix, one warp per
//                                            row: max and Σexp by shuffles;
//                                            bwd dx = dy − exp(y)·Σdy
//   cross_entropy_fwd_v1_f32 / _bwd          logits [rows, cols], targets = class indices
//                                            stored as floats; per-row loss
//                                            logsumexp(x) − x[t] written to row_loss (the host
//                                            then averages it); bwd (softmax − onehot)/rows

#define LOSS_THREADS 256
#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(FULL_MASK, v, offset);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, offset));
    return v;
}

// Block-wide sum (blockDim.x == LOSS_THREADS); thread 0 holds the result.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float warp_partials[LOSS_THREADS / 32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) warp_partials[warp] = v;
    __syncthreads();
    v = threadIdx.x < LOSS_THREADS / 32 ? warp_partials[threadIdx.x] : 0.0f;
    if (warp == 0) v = warp_sum(v);
    return v;
}

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

#define GRID_STRIDE(i, n)                                                            \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)gridDim.x * blockDim.x)

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
mse_fwd_v1_f32(const float* __restrict__ pred, const float* __restrict__ target, long long n,
               float* __restrict__ partials) {
    float acc = 0.0f;
    GRID_STRIDE(i, n) {
        float d = pred[i] - target[i];
        acc = fmaf(d, d, acc);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

extern "C" __global__ void mse_bwd_v1_f32(const float* __restrict__ pred,
                                          const float* __restrict__ target,
                                          const float* __restrict__ dloss, long long n,
                                          float* __restrict__ dpred) {
    float g = 2.0f * dloss[0] / (float)n;
    GRID_STRIDE(i, n) dpred[i] = g * (pred[i] - target[i]);
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
bce_fwd_v1_f32(const float* __restrict__ pred, const float* __restrict__ target, long long n,
               float* __restrict__ partials) {
    float acc = 0.0f;
    GRID_STRIDE(i, n) {
        float p = pred[i], t = target[i];
        float log_p = fmaxf(logf(p), -100.0f);
        float log_1mp = fmaxf(logf(1.0f - p), -100.0f);
        acc -= t * log_p + (1.0f - t) * log_1mp;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

extern "C" __global__ void bce_bwd_v1_f32(const float* __restrict__ pred,
                                          const float* __restrict__ target,
                                          const float* __restrict__ dloss, long long n,
                                          float* __restrict__ dpred) {
    float g = dloss[0] / (float)n;
    GRID_STRIDE(i, n) {
        float p = pred[i];
        dpred[i] = g * (p - target[i]) / fmaxf(p * (1.0f - p), 1e-12f);
    }
}

extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
bce_with_logits_fwd_v1_f32(const float* __restrict__ logits, const float* __restrict__ target,
                           long long n, float* __restrict__ partials) {
    float acc = 0.0f;
    GRID_STRIDE(i, n) {
        float x = logits[i];
        acc += fmaxf(x, 0.0f) - x * target[i] + log1pf(expf(-fabsf(x)));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

extern "C" __global__ void bce_with_logits_bwd_v1_f32(const float* __restrict__ logits,
                                                      const float* __restrict__ target,
                                                      const float* __restrict__ dloss, long long n,
                                                      float* __restrict__ dlogits) {
    float g = dloss[0] / (float)n;
    GRID_STRIDE(i, n) dlogits[i] = g * (sigmoidf(logits[i]) - target[i]);
}

// One warp per row; returns (max, log Σ exp(x − max)) of the row in every lane.
__device__ __forceinline__ void row_logsumexp(const float* row, int cols, float* max_out,
                                              float* lse_out) {
    int lane = threadIdx.x & 31;
    float m = -__int_as_float(0x7f800000);
    for (int c = lane; c < cols; c += 32) m = fmaxf(m, row[c]);
    m = warp_max(m);
    float s = 0.0f;
    for (int c = lane; c < cols; c += 32) s += expf(row[c] - m);
    s = warp_sum(s);
    *max_out = m;
    *lse_out = logf(s);
}

#define ROW_LOOP(row, rows)                                                                   \
    for (long long row = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32;        \
         row < (rows); row += (long long)gridDim.x * (blockDim.x / 32))

extern "C" __global__ void log_softmax_fwd_v1_f32(const float* __restrict__ x, int rows, int cols,
                                                  float* __restrict__ y) {
    int lane = threadIdx.x & 31;
    ROW_LOOP(row, rows) {
        const float* xr = x + row * cols;
        float m, lse;
        row_logsumexp(xr, cols, &m, &lse);
        for (int c = lane; c < cols; c += 32) y[row * cols + c] = xr[c] - m - lse;
    }
}

extern "C" __global__ void log_softmax_bwd_v1_f32(const float* __restrict__ y,
                                                  const float* __restrict__ dy, int rows, int cols,
                                                  float* __restrict__ dx) {
    int lane = threadIdx.x & 31;
    ROW_LOOP(row, rows) {
        long long base = row * cols;
        float s = 0.0f;
        for (int c = lane; c < cols; c += 32) s += dy[base + c];
        s = warp_sum(s);
        for (int c = lane; c < cols; c += 32) dx[base + c] = dy[base + c] - expf(y[base + c]) * s;
    }
}

extern "C" __global__ void cross_entropy_fwd_v1_f32(const float* __restrict__ logits,
                                                    const float* __restrict__ targets, int rows,
                                                    int cols, float* __restrict__ row_loss) {
    int lane = threadIdx.x & 31;
    ROW_LOOP(row, rows) {
        const float* xr = logits + row * cols;
        float m, lse;
        row_logsumexp(xr, cols, &m, &lse);
        if (lane == 0) {
            int t = (int)targets[row];
            // An out-of-range class gives NaN rather than reading out of bounds.
            row_loss[row] = (t >= 0 && t < cols) ? m + lse - xr[t] : __int_as_float(0x7fc00000);
        }
    }
}

extern "C" __global__ void cross_entropy_bwd_v1_f32(const float* __restrict__ logits,
                                                    const float* __restrict__ targets,
                                                    const float* __restrict__ dloss, int rows,
                                                    int cols, float* __restrict__ dlogits) {
    int lane = threadIdx.x & 31;
    float g = dloss[0] / (float)rows;
    ROW_LOOP(row, rows) {
        const float* xr = logits + row * cols;
        float m, lse;
        row_logsumexp(xr, cols, &m, &lse);
        int t = (int)targets[row];
        for (int c = lane; c < cols; c += 32) {
            float softmax = expf(xr[c] - m - lse);
            dlogits[row * cols + c] = g * (softmax - (c == t ? 1.0f : 0.0f));
        }
    }
}
