// Embedding lookup: gathers rows of a [vocab, dim] table by i32 ids.
// Forward:  out[p, :] = weight[ids[p], :] for p in [0, n).
// Backward: dweight[v, :] = sum over p with ids[p] == v of dy[p, :] (zero rows elsewhere);
// dweight is overwritten, not accumulated into.
// Out-of-range ids: the CPU backend throws cf::Error naming the first bad id before it
// touches memory. The CUDA backend cannot check without a host sync, so it never reads or
// writes out of bounds instead: an out-of-range id gathers a zero row and its dy row is
// dropped from the gradient.
// Floor: memory bound. Forward bytes = n * dim * 2 * sizeof(T) + n * 4. Backward bytes =
// (n * dim + vocab * dim) * sizeof(T) + n * 4 (dweight is written once, every row).
#pragma once
#include "core.h"

#define CF_EMBEDDING_OPS(NS)                                                                                 \
  namespace cf::NS {                                                                                         \
  void embedding_forward(DType dtype, const void* weight, const int32_t* ids, void* out, int64_t n,          \
                         int64_t vocab, int64_t dim, Stream stream);                                         \
  void embedding_backward(DType dtype, const void* dy, const int32_t* ids, void* dweight, int64_t n,         \
                          int64_t vocab, int64_t dim, Stream stream);                                        \
  }

CF_EMBEDDING_OPS(cpu)
CF_EMBEDDING_OPS(cuda)
#undef CF_EMBEDDING_OPS
