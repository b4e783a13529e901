// What the two CUDA contrastive-loss files share: contrastive_loss.cu (the mma.sync and SIMT
// tiles, every GPU) and contrastive_loss_sm90.cu (Hopper: the tile products on the TMA + wgmma
// GEMM mainloop, gradients through the GEMM).
#pragma once
#include "check.cuh"
#include "contrastive_loss.h"

namespace cf::cuda {

__device__ __forceinline__ float read_param(DType dtype, const void* p) {
  return dtype == DType::BF16 ? bf16_to_float(*static_cast<const bf16*>(p)) : *static_cast<const float*>(p);
}

// log(1 + e^x) without overflow, accurate for large |x|.
__device__ __forceinline__ float softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

// out = (float)(w0 · Σ x0 + w1 · Σ x1) in a fixed order (the same bits every run); x1 may be null.
void run_finish(const double* x0, int64_t n0, double w0, const double* x1, int64_t n1, double w1, float* out, Stream s);

// The Hopper path of clip_loss_forward, clip_loss_backward and siglip_loss (same arguments):
// returns false, having done nothing, when it does not apply (not a Hopper GPU, f32 features,
// d % 8 != 0, rows not 16-byte aligned, or the mma.sync kernels forced).
bool clip_loss_forward_sm90(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                            float* loss, float* lse_row, float* lse_col, Stream s);
bool clip_loss_backward_sm90(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                             const float* lse_row, const float* lse_col, const float* dloss, float* da, float* db, float* dlog_scale,
                             Stream s);
bool siglip_loss_sm90(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, DType bias_dtype,
                      const void* bias, const SiglipLossSpec& spec, float* loss, float* da, float* db, float* dlog_scale, float* dbias,
                      Stream s);

}  // namespace cf::cuda
