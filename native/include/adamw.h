// AdamW with decoupled weight decay, as torch.optim.AdamW (amsgrad off, maximize off), one
// fused in-place update per parameter tensor; a call updates a list of tensors. Per element,
// with g the gradient (f32 or bf16 storage, read as f32) and p, m, v f32:
//   p = p * (1 - lr * wd)                                   (decay: precomputed per tensor)
//   m = lerp(m, g, 1 - beta1)                               (torch's lerp, both branches)
//   v = v * beta2 + (1 - beta2) * g * g
//   p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
// where step_size = lr / (1 - beta1^step) and bc2_sqrt = sqrt(1 - beta2^step) are computed
// per tensor on the host in double (each tensor keeps its own step, as torch does).
// Floor: memory bound; per element 4 f32 reads + 3 f32 writes + the gradient: 28 + sizeof(g) bytes.
#pragma once
#include <cmath>

#include "core.h"

namespace cf {

// One parameter tensor's update: its buffers (numel elements each) and its per-tensor factors.
struct AdamWTensor {
  float* param;
  const void* grad;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t numel;
  float decay;      // 1 - lr * weight_decay
  float step_size;  // lr / (1 - beta1^step)
  float bc2_sqrt;   // sqrt(1 - beta2^step)
};

// 1 - beta1 and 1 - beta2 are rounded from double, as torch passes them to lerp_ and addcmul_.
struct AdamWBetas {
  float avg_weight;  // 1 - beta1
  float beta2;
  float sq_weight;   // 1 - beta2
  float eps;
};

// The per-element update shared by the CPU and CUDA kernels.
CF_HD void adamw_element(float& p, float g, float& m, float& v, const AdamWTensor& t, const AdamWBetas& b) {
  p *= t.decay;
  const float w = b.avg_weight;
  m = w < 0.5f ? m + w * (g - m) : g - (g - m) * (1.0f - w);
  v = v * b.beta2 + b.sq_weight * g * g;
  p += -t.step_size * (m / (sqrtf(v) / t.bc2_sqrt + b.eps));
}

}  // namespace cf

#define CF_ADAMW_OPS(NS)                                                                            \
  namespace cf::NS {                                                                                \
  void adamw_multi(DType grad_dtype, const AdamWTensor* tensors, int64_t count, const AdamWBetas& betas, \
                   Stream stream);                                                                  \
  }

CF_ADAMW_OPS(cpu)
CF_ADAMW_OPS(cuda)
#undef CF_ADAMW_OPS
