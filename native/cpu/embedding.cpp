// Embedding on the CPU: out[p, :] = weight[ids[p], :]; dweight[v, :] = sum of dy[p, :] over
// the positions p holding id v. Shapes: weight / dweight [vocab, dim], ids [n], out / dy
// [n, dim]. Floor: memory bound, forward n * dim * 2 * sizeof(T) bytes, backward
// (n + vocab) * dim * sizeof(T) bytes (plus the ids).
//
// The backward is deterministic and race-free: a stable counting sort groups the positions
// by id, then each task owns whole rows of dweight and sums that row's dy rows in position
// order, so the result does not depend on the thread count and each row is written once.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "embedding.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {

// Throws before any work starts: parallel_for must not see an exception.
void check_ids(const int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t p = 0; p < n; ++p)
    if (ids[p] < 0 || ids[p] >= vocab)
      throw Error("embedding: expected ids in [0, " + std::to_string(vocab) + ") for ids, got " + std::to_string(ids[p]) +
                  " at flat index " + std::to_string(p));
}

}  // namespace

void embedding_forward(DType dtype, const void* weight, const int32_t* ids, void* out, int64_t n, int64_t vocab, int64_t dim,
                       Stream) {
  check_ids(ids, n, vocab);
  const size_t row = static_cast<size_t>(dim) * dtype_size(dtype);
  const char* w = static_cast<const char*>(weight);
  char* o = static_cast<char*>(out);
  parallel_for(n, std::max<int64_t>(1, (1 << 16) / std::max<size_t>(row, 1)), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) memcpy(o + p * row, w + ids[p] * row, row);
  });
}

void embedding_backward(DType dtype, const void* dyv, const int32_t* ids, void* dweight, int64_t n, int64_t vocab, int64_t dim,
                        Stream) {
  check_ids(ids, n, vocab);
  // start[v] .. start[v + 1] indexes `order`, the positions holding id v in increasing order.
  std::vector<int64_t> start(vocab + 1, 0);
  for (int64_t p = 0; p < n; ++p) ++start[ids[p] + 1];
  for (int64_t v = 0; v < vocab; ++v) start[v + 1] += start[v];
  std::vector<int64_t> order(n), fill(start.begin(), start.end() - 1);
  for (int64_t p = 0; p < n; ++p) order[fill[ids[p]]++] = p;
  CF_FLOAT_DTYPE(dtype, T, {
    const T* dy = static_cast<const T*>(dyv);
    T* dw = static_cast<T*>(dweight);
    parallel_for(vocab, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(dim, 1)), [&](int64_t b, int64_t e) {
      std::vector<double> acc(dim);
      for (int64_t v = b; v < e; ++v) {
        T* row = dw + v * dim;
        if (start[v] == start[v + 1]) {
          // All-zero bits are +0.0 in both f32 and bf16.
          memset(row, 0, dim * sizeof(T));
          continue;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t k = start[v]; k < start[v + 1]; ++k) {
          const T* src = dy + order[k] * dim;
          for (int64_t d = 0; d < dim; ++d) acc[d] += Elem<T>::load(src, d);
        }
        for (int64_t d = 0; d < dim; ++d) Elem<T>::store(row, d, static_cast<float>(acc[d]));
      }
    });
  });
}

}  // namespace cf::cpu
