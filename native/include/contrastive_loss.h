// Contrastive losses of CLIP (softmax cross-entropy, InfoNCE) and SigLIP (pairwise sigmoid),
// computed from the features without ever materializing the logit matrix.
//
// A [na, d] and B [nb, d] are feature rows (f32 or bf16; L2-normalized by the caller). The
// logit matrix is L = exp(t) · A · Bᵀ (+ bias for SigLIP), where t is the learned log-scale
// parameter (OpenCLIP's `logit_scale`, used as `logit_scale.exp()`), read from device memory.
// The kernels visit L in tiles that they recompute as needed; the extra memory is O(na + nb)
// floats (row and column log-sum-exps, per-row partial sums) plus per-thread tile scratch.
//
// CLIP, with the row and/or column term:
//   loss = w_row · Σ_i (logsumexp_j L[i, j] − L[i, i + row_offset])
//        + w_col · Σ_j (logsumexp_i L[i, j] − L[j + col_offset, j])
//   The full symmetric loss is na = nb = N, both terms, offsets 0, weights 1 / (2N) (the mean
//   of the image->text and text->image cross-entropies). OpenCLIP's local loss is two calls
//   with the row term only (local rows against all gathered columns, offset rank · n).
//   The forward saves lse_row [na] / lse_col [nb] (f32) for the backward, which recomputes
//   the tiles: with P = softmax over rows, Q = softmax over columns and g = dloss,
//   G = g · (w_row (P − Y_row) + w_col (Q − Y_col)) where Y are the one-hot labels;
//   dA = exp(t) G B, dB = exp(t) Gᵀ A, dt = Σ G ⊙ L.
//
// SigLIP, z = +1 on the label diagonal L[i, i + offset] and −1 elsewhere:
//   loss = weight · Σ_i Σ_j softplus(−z_ij L[i, j])       (= −weight Σ log σ(z L))
//   OpenCLIP and the SigLIP paper use weight = 1 / na (the number of images); the local form
//   is img_local against all gathered texts with offset rank · n.
//   Its gradient needs no global statistic, so one pass gives the loss and, when asked for, the
//   gradients of the loss itself (dloss = 1; the caller scales them by the upstream gradient):
//   G = weight · (σ(L) − Y); dA = exp(t) G B, dB = exp(t) Gᵀ A, dt = Σ G ⊙ (L − bias),
//   dbias = Σ G. That saves the tile product a separate backward would recompute.
//
// Floor (forward + backward). The materialized formulation (OpenCLIP) does 2·na·nb·d FLOPs per
// logit product: two products forward and four backward for CLIP (12·na·nb·d), one forward and
// two backward for SigLIP (6·na·nb·d). The CPU kernels do 8·na·nb·d for CLIP (one tile product
// forward; recompute + two products backward) and 6·na·nb·d for SigLIP; so does the CUDA path
// for Hopper GPUs (bf16, d % 8 == 0: row and column statistics from one tile product, the
// gradient products on the GEMM); the CUDA tiles for other GPUs and dtypes do 12·na·nb·d for
// CLIP (separate row and column passes in both directions) and 8·na·nb·d for SigLIP. Transcendentals: 2 exp per logit forward and backward for CLIP; one exp, one log and
// one division per logit for SigLIP. Bytes are O((na + nb) · d): the loss is compute-bound.
//
// Outputs: loss is one f32; gradients are f32 (da [na, d], db [nb, d], dlog_scale [1],
// dbias [1]); any gradient pointer may be null when that gradient is not wanted. The scale
// and bias may be f32 or bf16 independently of the features. Results are deterministic: the
// same inputs give the same bits whatever the number of threads.
#pragma once
#include "core.h"

namespace cf {

struct ClipLossSpec {
  int64_t na = 0, nb = 0, d = 0;
  bool rows = true;            // include the row (A -> B) term; needs 0 <= row_offset, na + row_offset <= nb
  bool cols = true;            // include the column (B -> A) term; needs 0 <= col_offset, nb + col_offset <= na
  int64_t row_offset = 0, col_offset = 0;
  double w_row = 0, w_col = 0;
};

struct SiglipLossSpec {
  int64_t na = 0, nb = 0, d = 0;
  int64_t offset = 0;  // positives at L[i, i + offset]; needs 0 <= offset, na + offset <= nb
  double weight = 0;
};

}  // namespace cf

#define CF_CONTRASTIVE_LOSS_OPS(NS)                                                                                    \
  namespace cf::NS {                                                                                                   \
  /* lse_row (when spec.rows) and lse_col (when spec.cols) receive the log-sum-exps the backward reads. */            \
  void clip_loss_forward(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale,         \
                         const ClipLossSpec& spec, float* loss, float* lse_row, float* lse_col, Stream stream);        \
  void clip_loss_backward(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale,        \
                          const ClipLossSpec& spec, const float* lse_row, const float* lse_col, const float* dloss,    \
                          float* da, float* db, float* dlog_scale, Stream stream);                                    \
  /* The gradients (of the loss itself, dloss = 1) are written where their pointers are not null. */               \
  void siglip_loss(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale,               \
                   DType bias_dtype, const void* bias, const SiglipLossSpec& spec, float* loss, float* da, float* db,   \
                   float* dlog_scale, float* dbias, Stream stream);                                                    \
  }

CF_CONTRASTIVE_LOSS_OPS(cpu)
CF_CONTRASTIVE_LOSS_OPS(cuda)
#undef CF_CONTRASTIVE_LOSS_OPS

namespace cf::cuda {
// Rows of A per chunk on the Hopper path (a multiple of 128; 0, the default, chooses by size),
// so tests can cover several chunks with small inputs.
void set_loss_chunk_rows(int64_t rows);
}  // namespace cf::cuda
