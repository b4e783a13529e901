// Slab copy on CUDA: dst[o, dst_start + k, i] = src[o, src_start + k, i] for k < count,
// with src [outer, src_len, inner] and dst [outer, dst_len, inner]. Floor: memory bound,
// 2 * outer * count * inner * sizeof(T) bytes.
//
// A strided 2-D copy of `outer` rows of `width` bytes. One thread per unit, the unit being
// the widest of 16, 8, 4 or 2 bytes that divides the width, both pitches and both base
// addresses, so rows of a few bytes and rows of megabytes both move at full width.
#include <cstdint>

#include "check.cuh"
#include "slice.h"

namespace cf::cuda {
namespace {

template <typename U, typename I>
__global__ void copy_rows(const U* src, U* dst, I rows, I units, I spitch, I dpitch) {
  const I total = rows * units;
  for (I i = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; i < total; i += static_cast<I>(gridDim.x) * blockDim.x) {
    const I r = i / units, c = i - r * units;
    dst[r * dpitch + c] = src[r * spitch + c];
  }
}

template <typename U>
void launch(const char* s, char* d, int64_t rows, int64_t width, int64_t spitch, int64_t dpitch, cudaStream_t st) {
  const int64_t u = sizeof(U), units = width / u, total = rows * units;
  // 32-bit index math when every index (the largest is the last row's source or destination
  // offset) fits.
  const int64_t span = (rows - 1) * (spitch > dpitch ? spitch : dpitch) / u + units;
  if (total <= 0x7fffffff && span <= 0x7fffffff)
    copy_rows<U, uint32_t><<<grid_1d(total, 256), 256, 0, st>>>(reinterpret_cast<const U*>(s), reinterpret_cast<U*>(d), static_cast<uint32_t>(rows),
                                                                 static_cast<uint32_t>(units), static_cast<uint32_t>(spitch / u),
                                                                 static_cast<uint32_t>(dpitch / u));
  else
    copy_rows<U, int64_t><<<grid_1d(total, 256), 256, 0, st>>>(reinterpret_cast<const U*>(s), reinterpret_cast<U*>(d), rows, units, spitch / u,
                                                                dpitch / u);
}

}  // namespace

void slice_copy(DType dtype, const void* src, int64_t src_len, int64_t src_start, void* dst, int64_t dst_len, int64_t dst_start,
                int64_t outer, int64_t count, int64_t inner, Stream stream) {
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  const int64_t width = count * inner * es;
  if (outer == 0 || width == 0) return;
  const char* s = static_cast<const char*>(src) + src_start * inner * es;
  char* d = static_cast<char*>(dst) + dst_start * inner * es;
  const int64_t spitch = src_len * inner * es, dpitch = dst_len * inner * es;
  const cudaStream_t st = as_cuda(stream);
  auto fits = [&](int64_t u) {
    return width % u == 0 && spitch % u == 0 && dpitch % u == 0 && reinterpret_cast<uintptr_t>(s) % u == 0 &&
           reinterpret_cast<uintptr_t>(d) % u == 0;
  };
  if (fits(16)) launch<uint4>(s, d, outer, width, spitch, dpitch, st);
  else if (fits(8)) launch<uint2>(s, d, outer, width, spitch, dpitch, st);
  else if (fits(4)) launch<uint32_t>(s, d, outer, width, spitch, dpitch, st);
  else launch<uint16_t>(s, d, outer, width, spitch, dpitch, st);
}

}  // namespace cf::cuda
