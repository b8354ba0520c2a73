// optim.cu — fused optimizer updates, PyTorch semantics, one launch per parameter tensor.
//
// A fused update reads param, grad and the state once and writes param and state once:
// 4 loads + 3 stores per element for Adam, versus ~10 separate elementwise kernels (and
// their temporaries) for the composed version. That makes it memory bound at
// 28 bytes/element, which is what `kiln bench adam` compares to memcpy bandwidth.
//
// Kernels:
//   adam_step_v1_f32  Adam / AdamW (AdamParams.decoupled):
//                       Adam:  g ← g + wd·p                         (L2 in the gradient)
//                       AdamW: p ← p·(1 − lr·wd)                    (decoupled decay)
//                       m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//                       p ← p − (lr / bc1) · m / (√v / √bc2 + ε)    bc_i = 1 − β_i^t
//                     ε is added after the square root of the bias-corrected v, as PyTorch.
//                     The host computes bc1, bc2 in f64 from the step count.
//   adam_step_v2_f32  v1 with float4 loads/stores (n % 4 tail in scalar code).
//   sgd_step_v1_f32   SGD with momentum, dampening, Nesterov and weight decay:
//                       g ← g + wd·p
//                       buf ← g (first step)  or  μ·buf + (1 − dampening)·g
//                       g ← g + μ·buf (nesterov)  or  buf
//                       p ← p − lr·g
//                     momentum == 0 never touches buf (it may be an empty buffer).

// Mirrored by `AdamParams` in crates/kiln-cuda/src/optim.rs (#[repr(C)]).
struct AdamParams {
    float lr;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
    float bias_correction1;  // 1 − β1^t
    float bias_correction2;  // 1 − β2^t
    int decoupled;           // 1 = AdamW
};

// Mirrored by `SgdParams` in crates/kiln-cuda/src/optim.rs (#[repr(C)]).
struct SgdParams {
    float lr;
    float momentum;
    float dampening;
    float weight_decay;
    int nesterov;
    int first_step;  // 1 on the first step: buf is initialised to g, as PyTorch does
};

__device__ __forceinline__ void adam_update(const AdamParams& h, float& p, float g, float& m,
                                            float& v, float step_size, float inv_sqrt_bc2) {
    if (h.decoupled) {
        p *= 1.0f - h.lr * h.weight_decay;
    } else {
        g = fmaf(h.weight_decay, p, g);
    }
    m = fmaf(h.beta1, m, (1.0f - h.beta1) * g);
    v = fmaf(h.beta2, v, (1.0f - h.beta2) * g * g);
    float denom = sqrtf(v) * inv_sqrt_bc2 + h.eps;
    p -= step_size * m / denom;
}

extern "C" __global__ void adam_step_v1_f32(AdamParams h, float* __restrict__ param,
                                            const float* __restrict__ grad, float* __restrict__ m,
                                            float* __restrict__ v, long long n) {
    float step_size = h.lr / h.bias_correction1;
    float inv_sqrt_bc2 = 1.0f / sqrtf(h.bias_correction2);
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float p = param[i], mi = m[i], vi = v[i];
        adam_update(h, p, grad[i], mi, vi, step_size, inv_sqrt_bc2);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" __global__ void adam_step_v2_f32(AdamParams h, float* __restrict__ param,
                                            const float* __restrict__ grad, float* __restrict__ m,
                                            float* __restrict__ v, long long n) {
    float step_size = h.lr / h.bias_correction1;
    float inv_sqrt_bc2 = 1.0f / sqrtf(h.bias_correction2);
    long long n4 = n / 4;
    long long stride = (long long)gridDim.x * blockDim.x;
    long long start = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    float4* p4 = reinterpret_cast<float4*>(param);
    const float4* g4 = reinterpret_cast<const float4*>(grad);
    float4* m4 = reinterpret_cast<float4*>(m);
    float4* v4 = reinterpret_cast<float4*>(v);
    for (long long i = start; i < n4; i += stride) {
        float4 p = p4[i], g = g4[i], mi = m4[i], vi = v4[i];
        adam_update(h, p.x, g.x, mi.x, vi.x, step_size, inv_sqrt_bc2);
        adam_update(h, p.y, g.y, mi.y, vi.y, step_size, inv_sqrt_bc2);
        adam_update(h, p.z, g.z, mi.z, vi.z, step_size, inv_sqrt_bc2);
        adam_update(h, p.w, g.w, mi.w, vi.w, step_size, inv_sqrt_bc2);
        p4[i] = p;
        m4[i] = mi;
        v4[i] = vi;
    }
    for (long long i = n4 * 4 + start; i < n; i += stride) {
        float p = param[i], mi = m[i], vi = v[i];
        adam_update(h, p, grad[i], mi, vi, step_size, inv_sqrt_bc2);
        param[i] = p;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" __global__ void sgd_step_v1_f32(SgdParams h, float* __restrict__ param,
                                           const float* __restrict__ grad, float* __restrict__ buf,
                                           long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float p = param[i];
        float g = fmaf(h.weight_decay, p, grad[i]);
        if (h.momentum != 0.0f) {
            float b = h.first_step ? g : fmaf(h.momentum, buf[i], (1.0f - h.dampening) * g);
            buf[i] = b;
            g = h.nesterov ? fmaf(h.momentum, b, g) : b;
        }
        param[i] = p - h.lr * g;
    }
}
