// Filling tensors: constants, ranges, seeded random numbers and dtype casts.
// Floor: each writes n elements once (bytes = n * sizeof(T)); cast reads them too.
#pragma once
#include "core.h"

namespace cf {
enum class RandomKind : int32_t { Uniform = 0, Normal = 1 };
}

#define CF_CREATION_OPS(NS)                                                                                   \
  namespace cf::NS {                                                                                          \
  /* out[i] = value, stored as dtype */                                                                       \
  void fill(DType dtype, void* out, int64_t n, double value, Stream stream);                                  \
  /* out[i] = start + i * step */                                                                             \
  void arange(DType dtype, void* out, int64_t n, double start, double step, Stream stream);                   \
  /* uniform: a + (b - a) * U[0,1); normal: a + b * N(0,1); element i from Philox(seed, offset + i) */         \
  void random(DType dtype, void* out, int64_t n, RandomKind kind, uint64_t seed, uint64_t offset, float a,     \
              float b, Stream stream);                                                                        \
  /* out[i] = in[i] converted (float->int truncates toward zero, saturating) */                               \
  void cast(DType in_dtype, const void* in, DType out_dtype, void* out, int64_t n, Stream stream);             \
  }

CF_CREATION_OPS(cpu)
CF_CREATION_OPS(cuda)
#undef CF_CREATION_OPS
