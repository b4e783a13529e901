// Embedding on CUDA: out[p, :] = weight[ids[p], :]; dweight[v, :] = sum of dy[p, :] over the
// positions p holding id v. Shapes: weight / dweight [vocab, dim], ids [n], out / dy
// [n, dim]. Floor: memory bound, forward n * dim * 2 * sizeof(T) bytes, backward
// (n + vocab) * dim * sizeof(T) bytes plus the zeroing of dweight.
//
// Forward copies rows in the widest unit (16, 8, 4 or 2 bytes) that divides the row and
// both base addresses. Backward zeroes an f32 accumulator (dweight itself for f32 tables,
// a pooled workspace for bf16, cast once at the end so bf16 rounds once), then scatters dy
// with atomicAdd: sums are exact up to f32 rounding order, which may differ between runs.
// Out-of-range ids read as a zero row and are dropped from the gradient (no host sync here
// to report them; the CPU backend throws instead).
#include <cstdint>

#include "check.cuh"
#include "embedding.h"
#include "workspace.cuh"

namespace cf::cuda {
namespace {

template <typename U, typename I>
__global__ void gather_rows(const U* w, const int32_t* ids, U* out, I n, I units_per_row, int64_t vocab) {
  const I total = n * units_per_row;
  for (I i = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; i < total; i += static_cast<I>(gridDim.x) * blockDim.x) {
    const I p = i / units_per_row, k = i - p * units_per_row;
    const int32_t id = ids[p];
    U v{};
    if (id >= 0 && id < vocab) v = w[static_cast<int64_t>(id) * units_per_row + k];
    out[i] = v;
  }
}

template <typename T, typename I>
__global__ void scatter_add(const T* dy, const int32_t* ids, float* acc, I n, I dim, int64_t vocab) {
  const I total = n * dim;
  for (I i = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; i < total; i += static_cast<I>(gridDim.x) * blockDim.x) {
    const I p = i / dim, d = i - p * dim;
    const int32_t id = ids[p];
    if (id >= 0 && id < vocab) atomicAdd(acc + static_cast<int64_t>(id) * dim + d, Elem<T>::load(dy, i));
  }
}

__global__ void f32_to_bf16(const float* in, bf16* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = float_to_bf16(in[i]);
}

template <typename U>
void launch_gather(const void* w, const int32_t* ids, void* out, int64_t n, int64_t units_per_row, int64_t vocab, cudaStream_t s) {
  const int64_t total = n * units_per_row;
  if (total <= 0x7fffffff) {
    gather_rows<U, uint32_t><<<grid_1d(total, 256), 256, 0, s>>>(static_cast<const U*>(w), ids, static_cast<U*>(out),
                                                                   static_cast<uint32_t>(n), static_cast<uint32_t>(units_per_row), vocab);
  } else {
    gather_rows<U, int64_t><<<grid_1d(total, 256), 256, 0, s>>>(static_cast<const U*>(w), ids, static_cast<U*>(out), n, units_per_row, vocab);
  }
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

void embedding_forward(DType dtype, const void* weight, const int32_t* ids, void* out, int64_t n, int64_t vocab, int64_t dim, Stream stream) {
  if (n == 0 || dim == 0) return;
  const size_t row = static_cast<size_t>(dim) * dtype_size(dtype);
  const cudaStream_t s = as_cuda(stream);
  auto fits = [&](size_t u) { return row % u == 0 && aligned(weight, u) && aligned(out, u); };
  if (fits(16)) launch_gather<uint4>(weight, ids, out, n, row / 16, vocab, s);
  else if (fits(8)) launch_gather<uint2>(weight, ids, out, n, row / 8, vocab, s);
  else if (fits(4)) launch_gather<uint32_t>(weight, ids, out, n, row / 4, vocab, s);
  else launch_gather<uint16_t>(weight, ids, out, n, row / 2, vocab, s);
}

void embedding_backward(DType dtype, const void* dy, const int32_t* ids, void* dweight, int64_t n, int64_t vocab, int64_t dim, Stream stream) {
  const int64_t table = vocab * dim;
  if (table == 0) return;
  const cudaStream_t s = as_cuda(stream);
  // bf16 gradients accumulate in an f32 table, rounded once at the end.
  const Workspace ws(current_device(), dtype == DType::BF16 ? table * sizeof(float) : 0, stream);
  float* acc = ws.ptr ? ws.as<float>() : static_cast<float*>(dweight);
  CF_CUDA_CHECK(cudaMemsetAsync(acc, 0, table * sizeof(float), s));
  const int64_t total = n * dim;
  if (total > 0) {
    CF_FLOAT_DTYPE(dtype, T, {
      if (total <= 0x7fffffff) {
        scatter_add<T, uint32_t><<<grid_1d(total, 256), 256, 0, s>>>(static_cast<const T*>(dy), ids, acc, static_cast<uint32_t>(n),
                                                                      static_cast<uint32_t>(dim), vocab);
      } else {
        scatter_add<T, int64_t><<<grid_1d(total, 256), 256, 0, s>>>(static_cast<const T*>(dy), ids, acc, n, dim, vocab);
      }
    });
  }
  // The pool hands the workspace out again only to later work on this stream, which runs
  // after this cast.
  if (ws.ptr) f32_to_bf16<<<grid_1d(table, 256), 256, 0, s>>>(acc, static_cast<bf16*>(dweight), table);
}

}  // namespace cf::cuda
