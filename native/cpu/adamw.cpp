// AdamW over a list of parameter tensors (formula in adamw.h). The list is flattened into
// chunks so that many small tensors and one large one spread over the threads alike.
// Floor: memory bound; 28 + sizeof(grad) bytes per element.
// The update's sqrt only sees v >= 0, so it never sets errno; without math-errno GCC can
// vectorize the loop (errno semantics otherwise keep sqrtf a scalar library call).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-math-errno")
#endif
#include "adamw.h"

#include <algorithm>
#include <vector>

#include "threadpool.h"

namespace cf::cpu {
namespace {

constexpr int64_t kChunk = 1 << 14;

struct Chunk {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

// The buffers never overlap (the addon checks) and the factors are local copies, so the
// compiler may keep the factors in registers and vectorize the loop.
template <typename G>
void update_range(const AdamWTensor t, const AdamWBetas b, int64_t begin, int64_t end) {
  const G* __restrict g = static_cast<const G*>(t.grad);
  float* __restrict param = t.param;
  float* __restrict m = t.exp_avg;
  float* __restrict v = t.exp_avg_sq;
  for (int64_t i = begin; i < end; ++i) {
    float pi = param[i], mi = m[i], vi = v[i];
    adamw_element(pi, Elem<G>::load(g, i), mi, vi, t, b);
    param[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void adamw_multi(DType grad_dtype, const AdamWTensor* tensors, int64_t count, const AdamWBetas& betas, Stream) {
  std::vector<Chunk> chunks;
  for (int64_t k = 0; k < count; ++k) {
    for (int64_t s = 0; s < tensors[k].numel; s += kChunk) chunks.push_back({k, s, std::min(s + kChunk, tensors[k].numel)});
  }
  CF_FLOAT_DTYPE(grad_dtype, G, {
    parallel_for(static_cast<int64_t>(chunks.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) update_range<G>(tensors[chunks[c].tensor], betas, chunks[c].begin, chunks[c].end);
    });
  });
}

}  // namespace cf::cpu
