#include <cmath>
#include <type_traits>

#include "check.cuh"
#include "creation.h"
#include "philox.h"

namespace cf::cuda {
namespace {

__device__ __forceinline__ int32_t to_i32(double v) {
  if (isnan(v)) return 0;
  if (v >= 2147483647.0) return 2147483647;
  if (v <= -2147483648.0) return -2147483647 - 1;
  return static_cast<int32_t>(v);
}

template <typename T>
__device__ __forceinline__ void store_value(T* o, int64_t i, double v) {
  Elem<T>::store(o, i, static_cast<float>(v));
}
template <>
__device__ __forceinline__ void store_value<int32_t>(int32_t* o, int64_t i, double v) {
  o[i] = to_i32(v);
}

// mode 0 fill, 1 arange, 2 uniform, 3 normal
template <typename T>
__global__ void generate_kernel(T* out, int64_t n, int mode, double p0, double p1, uint64_t seed, uint64_t offset) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double v;
    if (mode == 0) {
      v = p0;
    } else if (mode == 1) {
      v = p0 + static_cast<double>(i) * p1;
    } else if (mode == 2) {
      const float a = static_cast<float>(p0), b = static_cast<float>(p1);
      v = a + (b - a) * philox_uniform(seed, offset + i);
    } else {
      const float a = static_cast<float>(p0), b = static_cast<float>(p1);
      v = a + b * philox_normal(seed, offset + i);
    }
    store_value<T>(out, i, v);
  }
}

template <typename TI, typename TO>
__global__ void cast_kernel(const TI* in, TO* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double v;
    if constexpr (std::is_same<TI, int32_t>::value) v = static_cast<double>(in[i]);
    else v = static_cast<double>(Elem<TI>::load(in, i));
    store_value<TO>(out, i, v);
  }
}

void generate(DType dtype, void* out, int64_t n, int mode, double p0, double p1, uint64_t seed, uint64_t offset, Stream s) {
  if (n == 0) return;
  const unsigned grid = grid_1d(n, 256);
  switch (dtype) {
    case DType::F32: generate_kernel<<<grid, 256, 0, as_cuda(s)>>>(static_cast<float*>(out), n, mode, p0, p1, seed, offset); break;
    case DType::BF16: generate_kernel<<<grid, 256, 0, as_cuda(s)>>>(static_cast<bf16*>(out), n, mode, p0, p1, seed, offset); break;
    case DType::I32: generate_kernel<<<grid, 256, 0, as_cuda(s)>>>(static_cast<int32_t*>(out), n, mode, p0, p1, seed, offset); break;
  }
}

template <typename TI>
void cast_from(const TI* in, DType out_dtype, void* out, int64_t n, Stream s) {
  const unsigned grid = grid_1d(n, 256);
  switch (out_dtype) {
    case DType::F32: cast_kernel<<<grid, 256, 0, as_cuda(s)>>>(in, static_cast<float*>(out), n); break;
    case DType::BF16: cast_kernel<<<grid, 256, 0, as_cuda(s)>>>(in, static_cast<bf16*>(out), n); break;
    case DType::I32: cast_kernel<<<grid, 256, 0, as_cuda(s)>>>(in, static_cast<int32_t*>(out), n); break;
  }
}

}  // namespace

void fill(DType dtype, void* out, int64_t n, double value, Stream s) { generate(dtype, out, n, 0, value, 0, 0, 0, s); }

void arange(DType dtype, void* out, int64_t n, double start, double step, Stream s) {
  generate(dtype, out, n, 1, start, step, 0, 0, s);
}

void random(DType dtype, void* out, int64_t n, RandomKind kind, uint64_t seed, uint64_t offset, float a, float b, Stream s) {
  generate(dtype, out, n, kind == RandomKind::Uniform ? 2 : 3, a, b, seed, offset, s);
}

void cast(DType in_dtype, const void* in, DType out_dtype, void* out, int64_t n, Stream s) {
  if (n == 0) return;
  switch (in_dtype) {
    case DType::F32: cast_from(static_cast<const float*>(in), out_dtype, out, n, s); break;
    case DType::BF16: cast_from(static_cast<const bf16*>(in), out_dtype, out, n, s); break;
    case DType::I32: cast_from(static_cast<const int32_t*>(in), out_dtype, out, n, s); break;
  }
}

}  // namespace cf::cuda
