// Batched matrix multiply (GEMM), the op behind linear layers, attention projections and
// their gradients:
//   C[b] = (accumulate ? C[b] : 0) + op(A[b]) · op(B[b]) + bias      for b < batch
// op(A) is [M, K] (A stored [M, K], or [K, M] when trans_a); op(B) is [K, N] (B stored
// [K, N], or [N, K] when trans_b); C[b] is [M, N]; bias (optional) is [N], added to every
// row. All matrices are contiguous and row-major. A[b] starts at a + b * stride_a (elements),
// B[b] at b + b * stride_b: stride 0 shares one matrix across the batch (a 2-D weight);
// C[b] starts at c + b * M * N. A, B, C and bias share one dtype (f32 or bf16); products are
// accumulated in f32 and rounded once when C is stored.
// An activation can be fused into the store (the transformer MLP's, forward and backward), so
// that the product is not written and read again by a separate elementwise op:
//   Activation:      with v = the product + bias rounded to C's dtype, aux = v (the
//                    pre-activation the backward needs; skipped when aux is null) and
//                    C = act(v), rounded
//   ActivationGrad:  with v = the product rounded to C's dtype (no bias), C = v * act'(aux),
//                    rounded (aux: the pre-activation; the product is the activation's output
//                    gradient)
// Both give exactly what the separate matmul and unary (backward) ops give. aux is [batch, M, N]
// like C, in C's dtype; neither goes with accumulate.
// Floor: 2 * batch * M * N * K FLOPs; bytes = (batch * (M * K + K * N + M * N) + N) * sizeof(T)
// when nothing is shared (GEMMs of these sizes are compute bound), plus batch * M * N *
// sizeof(T) for aux.
#pragma once
#include "core.h"
#include "elementwise.h"

namespace cf {

enum class GemmEpilogueKind { None, Activation, ActivationGrad };

struct GemmEpilogue {
  GemmEpilogueKind kind = GemmEpilogueKind::None;
  UnaryOp op = UnaryOp::GeluErf;  // GeluErf or QuickGelu
  void* aux = nullptr;
};

struct GemmShape {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  int64_t stride_a = 0, stride_b = 0;  // elements between consecutive batch items; 0: shared
  bool accumulate = false;
  GemmEpilogue epilogue;
};

// A batch that multiplies every A[b] (stored [M, K], consecutive in memory) by one shared B
// is a single GEMM with M' = batch * M, because C[b] are consecutive too. Both backends run
// it that way: one large GEMM keeps the shared B's packed panels (CPU) or tiles (CUDA) busy.
// M' stays below 2^31, which the CUDA kernels index rows in.
inline GemmShape fold_shared_batch(GemmShape s) {
  if (s.batch > 1 && s.stride_b == 0 && !s.trans_a && s.stride_a == s.m * s.k && s.m * s.batch <= INT32_MAX) {
    s.m *= s.batch;
    s.batch = 1;
    s.stride_a = 0;
  }
  return s;
}

}  // namespace cf

#define CF_MATMUL_OPS(NS)                                                                                      \
  namespace cf::NS {                                                                                           \
  /* bias may be null; c must not overlap a, b or bias */                                                      \
  void gemm(DType dtype, const void* a, const void* b, const void* bias, void* c, const GemmShape& shape,       \
            Stream stream);                                                                                    \
  }

CF_MATMUL_OPS(cpu)
CF_MATMUL_OPS(cuda)
#undef CF_MATMUL_OPS

namespace cf::cpu {
// The CPU micro-kernel gemm() runs, by name ("avx2-fma 6x16", "generic 6x16").
const char* gemm_kernel_name();
// Chooses it: "auto" (the fastest this CPU supports, the default), "avx2" or "generic" (the
// portable one, so tests can cover it on any machine). False when the CPU cannot run it.
bool select_gemm_kernel(const std::string& which);
}  // namespace cf::cpu

namespace cf::cuda {
// The bf16 kernel gemm() runs on `device`: the TMA + wgmma kernel on Hopper GPUs (for operands
// TMA can read: 16-byte aligned rows), else the mma.sync one, by name.
const char* gemm_kernel_name(int device);
// Makes every bf16 GEMM (and the contrastive losses' tile products) take the mma.sync kernels
// (true) or lets Hopper GPUs use theirs (false, the default), so tests can cover both on one GPU.
void force_mma_sync_gemm(bool force);
}  // namespace cf::cuda
