// Slab copy on the CPU: dst[o, dst_start + k, i] = src[o, src_start + k, i] for k < count,
// with src [outer, src_len, inner] and dst [outer, dst_len, inner]. Floor: memory bound,
// 2 * outer * count * inner * sizeof(T) bytes.
//
// Each outer row is one contiguous block on both sides: one memcpy per row, rows split over
// the threads; a single long row (outer == 1) is split by bytes instead.
#include <algorithm>
#include <cstring>

#include "slice.h"
#include "threadpool.h"

namespace cf::cpu {

void slice_copy(DType dtype, const void* src, int64_t src_len, int64_t src_start, void* dst, int64_t dst_len, int64_t dst_start,
                int64_t outer, int64_t count, int64_t inner, Stream) {
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  const int64_t width = count * inner * es;
  if (outer == 0 || width == 0) return;
  const char* s = static_cast<const char*>(src) + src_start * inner * es;
  char* d = static_cast<char*>(dst) + dst_start * inner * es;
  const int64_t spitch = src_len * inner * es, dpitch = dst_len * inner * es;
  constexpr int64_t kGrainBytes = 1 << 16;
  if (outer == 1) {
    parallel_for(width, kGrainBytes * 4, [&](int64_t b, int64_t e) { memcpy(d + b, s + b, e - b); });
    return;
  }
  parallel_for(outer, std::max<int64_t>(1, kGrainBytes / width), [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o) memcpy(d + o * dpitch, s + o * spitch, width);
  });
}

}  // namespace cf::cpu
