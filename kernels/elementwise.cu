// elementwise.cu — unary ops (forward and backward), binary ops with broadcasting,
// strided copy and fill. All loops are grid-stride loops, so any grid size is correct and the
// host picks one that fills the GPU.
//
// Unary op codes (the `op` argument; p0/p1 are the scalar parameters):
//   0 relu   1 leaky_relu(p0 = slope)   2 sigmoid   3 tanh   4 exp   5 log   6 sqrt
//   7 abs    8 neg   9 softplus (β = 1, log1p(exp(x)) computed stably)
//   10 gelu — the tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
//   11 pow(p0)   12 clamp(p0 = min, p1 = max)   13 add_scalar(p0)   14 mul_scalar(p0)
//   15 sign (−1, 0, 1)   16 step ([x > 0])   17 in_range ([p0 ≤ x ≤ p1]) — masks for backward
//   rules; their own derivative is 0.
//
// Variants:
//   unary_fwd_v1_f32   scalar grid-stride loop: one load and one store per element.
//   unary_fwd_v2_f32   float4: each thread moves 16 bytes per load/store instruction, a quarter
//                      of the memory instructions of v1; the tail (n % 4) is done by scalar
//                      code. Needs 16-byte aligned x and y (whole allocations are).
//   unary_bwd_v1_f32   dx = dy · f'(x), using the saved output y where that is cheaper
//                      (sigmoid: y(1−y), tanh: 1−y², exp: y, sqrt: 1/(2y)).
//   binary_fwd_v1_f32  out = a ∘ b with numpy broadcasting: up to 6 dims, per-operand strides
//                      (0 on broadcast dims) in a BroadcastParams struct, so broadcast and
//                      strided views need no copy. Index math per element.
//   binary_fwd_v2_f32  contiguous same-shape fast path, float4 — no index math at all.
//   copy_strided_v1_f32  out (contiguous) = x viewed through shape/strides (makes a view
//                      contiguous; uses the `a` half of BroadcastParams).
//   fill_v1_f32        out[i] = value.
// Binary op codes: 0 add, 1 sub, 2 mul, 3 div, 4 maximum (NaN in a wins, as kiln-cpu),
//   5 eq ([a == b]), 6 gt ([a > b]) — the last two are masks for max's backward.

#define MAX_DIMS 6

// Mirrored by `BroadcastParams` in crates/kiln-cuda/src/elementwise.rs (#[repr(C)]).
struct BroadcastParams {
    int ndim;                       // informational: dims in use (right-aligned below)
    int shape[MAX_DIMS];            // output shape, right-aligned, leading entries 1
    long long a_strides[MAX_DIMS];  // element strides of a, 0 where a is broadcast
    long long b_strides[MAX_DIMS];
};

__device__ __forceinline__ float unary_fwd_scalar(int op, float x, float p0, float p1) {
    switch (op) {
        case 0: return fmaxf(x, 0.0f);
        case 1: return x > 0.0f ? x : p0 * x;
        case 2: return 1.0f / (1.0f + expf(-x));
        case 3: return tanhf(x);
        case 4: return expf(x);
        case 5: return logf(x);
        case 6: return sqrtf(x);
        case 7: return fabsf(x);
        case 8: return -x;
        case 9: return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
        case 10: {
            const float k = 0.7978845608028654f;  // sqrt(2/pi)
            return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
        }
        case 11: return powf(x, p0);
        case 12: return fminf(fmaxf(x, p0), p1);
        case 13: return x + p0;
        case 14: return x * p0;
        case 15: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case 16: return x > 0.0f ? 1.0f : 0.0f;
        case 17: return (x >= p0 && x <= p1) ? 1.0f : 0.0f;
        default: return __int_as_float(0x7fc00000);  // NaN marks an unknown op code
    }
}

// f'(x)·dy. x is the input, y = f(x) the saved output.
__device__ __forceinline__ float unary_bwd_scalar(int op, float x, float y, float dy, float p0,
                                                  float p1) {
    switch (op) {
        case 0: return x > 0.0f ? dy : 0.0f;
        case 1: return x > 0.0f ? dy : p0 * dy;
        case 2: return dy * y * (1.0f - y);        // σ' = σ(1−σ)
        case 3: return dy * (1.0f - y * y);        // tanh' = 1 − tanh²
        case 4: return dy * y;                     // exp' = exp
        case 5: return dy / x;                     // log' = 1/x
        case 6: return dy * 0.5f / y;              // √' = 1/(2√x)
        case 7: return x > 0.0f ? dy : (x < 0.0f ? -dy : 0.0f);
        case 8: return -dy;
        case 9: return dy / (1.0f + expf(-x));     // softplus' = σ(x)
        case 10: {
            // d/dx 0.5x(1+tanh(u)), u = k(x + c x³): 0.5(1+t) + 0.5x(1−t²)·k(1 + 3c x²)
            const float k = 0.7978845608028654f, c = 0.044715f;
            float t = tanhf(k * (x + c * x * x * x));
            return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x * x));
        }
        case 11: return dy * p0 * powf(x, p0 - 1.0f);
        case 12: return (x >= p0 && x <= p1) ? dy : 0.0f;  // PyTorch: gradient flows at the bounds
        case 13: return dy;
        case 14: return dy * p0;
        case 15: case 16: case 17: return 0.0f;    // piecewise constant masks
        default: return __int_as_float(0x7fc00000);
    }
}

__device__ __forceinline__ float binary_scalar(int op, float a, float b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return (a >= b || a != a) ? a : b;
        case 5: return a == b ? 1.0f : 0.0f;
        case 6: return a > b ? 1.0f : 0.0f;
        default: return __int_as_float(0x7fc00000);
    }
}

extern "C" __global__ void unary_fwd_v1_f32(int op, float p0, float p1, const float* __restrict__ x,
                                            float* __restrict__ y, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] = unary_fwd_scalar(op, x[i], p0, p1);
    }
}

extern "C" __global__ void unary_fwd_v2_f32(int op, float p0, float p1, const float* __restrict__ x,
                                            float* __restrict__ y, long long n) {
    long long n4 = n / 4;
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    long long stride = (long long)gridDim.x * blockDim.x;
    long long start = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    for (long long i = start; i < n4; i += stride) {
        float4 v = x4[i];
        v.x = unary_fwd_scalar(op, v.x, p0, p1);
        v.y = unary_fwd_scalar(op, v.y, p0, p1);
        v.z = unary_fwd_scalar(op, v.z, p0, p1);
        v.w = unary_fwd_scalar(op, v.w, p0, p1);
        y4[i] = v;
    }
    for (long long i = n4 * 4 + start; i < n; i += stride) y[i] = unary_fwd_scalar(op, x[i], p0, p1);
}

extern "C" __global__ void unary_bwd_v1_f32(int op, float p0, float p1, const float* __restrict__ x,
                                            const float* __restrict__ y, const float* __restrict__ dy,
                                            float* __restrict__ dx, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        dx[i] = unary_bwd_scalar(op, x[i], y[i], dy[i], p0, p1);
    }
}

// Offsets into a and b of the output element with linear (row-major) index i.
__device__ __forceinline__ void broadcast_offsets(const BroadcastParams& p, long long i,
                                                  long long* oa, long long* ob) {
    long long a = 0, b = 0;
    // The host right-aligns the shape into MAX_DIMS slots (leading dims = 1), so the loop has
    // a constant trip count and unrolls; with a runtime bound (ndim) the struct would be
    // indexed dynamically and copied to local memory (a 128-byte stack frame).
#pragma unroll
    for (int d = MAX_DIMS - 1; d >= 0; --d) {
        long long coord = i % p.shape[d];
        i /= p.shape[d];
        a += coord * p.a_strides[d];
        b += coord * p.b_strides[d];
    }
    *oa = a;
    *ob = b;
}

extern "C" __global__ void binary_fwd_v1_f32(int op, BroadcastParams p, const float* __restrict__ a,
                                             const float* __restrict__ b, float* __restrict__ out,
                                             long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long oa, ob;
        broadcast_offsets(p, i, &oa, &ob);
        out[i] = binary_scalar(op, a[oa], b[ob]);
    }
}

extern "C" __global__ void binary_fwd_v2_f32(int op, const float* __restrict__ a,
                                             const float* __restrict__ b, float* __restrict__ out,
                                             long long n) {
    long long n4 = n / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* o4 = reinterpret_cast<float4*>(out);
    long long stride = (long long)gridDim.x * blockDim.x;
    long long start = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    for (long long i = start; i < n4; i += stride) {
        float4 u = a4[i], v = b4[i];
        o4[i] = make_float4(binary_scalar(op, u.x, v.x), binary_scalar(op, u.y, v.y),
                            binary_scalar(op, u.z, v.z), binary_scalar(op, u.w, v.w));
    }
    for (long long i = n4 * 4 + start; i < n; i += stride) out[i] = binary_scalar(op, a[i], b[i]);
}

extern "C" __global__ void copy_strided_v1_f32(BroadcastParams p, const float* __restrict__ x,
                                               float* __restrict__ out, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long oa, ob;
        broadcast_offsets(p, i, &oa, &ob);
        out[i] = x[oa];
    }
}

extern "C" __global__ void fill_v1_f32(float value, float* __restrict__ out, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        out[i] = value;
    }
}
