// Slab copy along one axis, the one kernel behind slice, concat, split and slice's backward.
// src is viewed as [outer, src_len, inner] and dst as [outer, dst_len, inner]:
//   dst[o, dst_start + k, i] = src[o, src_start + k, i]   for k in [0, count)
// Each of the outer rows is one contiguous block of count * inner elements on both sides,
// so this is a strided 2-D memcpy; any dtype works by its element size.
// Floor: memory bound, bytes = 2 * outer * count * inner * sizeof(T).
#pragma once
#include "core.h"

#define CF_SLICE_OPS(NS)                                                                                    \
  namespace cf::NS {                                                                                        \
  void slice_copy(DType dtype, const void* src, int64_t src_len, int64_t src_start, void* dst,             \
                  int64_t dst_len, int64_t dst_start, int64_t outer, int64_t count, int64_t inner,          \
                  Stream stream);                                                                           \
  }

CF_SLICE_OPS(cpu)
CF_SLICE_OPS(cuda)
#undef CF_SLICE_OPS
