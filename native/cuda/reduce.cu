// Reductions over one axis of [outer, n, inner]. Two kernels: when there are many outputs,
// one thread per output column walks k (reads coalesced across i); when there are few
// outputs (e.g. a full sum to a scalar), one block per output splits k across its threads
// and combines them in shared memory.
#include <cfloat>

#include "check.cuh"
#include "reduce.h"

namespace cf::cuda {
namespace {

struct Acc {
  float v;
  int32_t k;
};

__device__ __forceinline__ Acc combine(ReduceOp op, Acc a, Acc b) {
  if (op != ReduceOp::Max) return Acc{a.v + b.v, 0};
  // The first NaN wins, as on the CPU; the block tree combines partials whose indices are not
  // ordered (thread 0 may hold k = 256, thread 1 k = 1), so two NaNs compare by index.
  const bool an = isnan(a.v), bn = isnan(b.v);
  if (an || bn) return an && (!bn || a.k < b.k) ? a : b;
  if (b.v > a.v || (b.v == a.v && b.k < a.k)) return b;
  return a;
}

template <typename T, typename TO>
__global__ void reduce_columns(ReduceOp op, const T* x, TO* out, int32_t* idx, int64_t outer, int64_t n, int64_t inner) {
  const int64_t total = outer * inner;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < total; j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = j / inner, i = j % inner;
    const T* base = x + o * n * inner + i;
    Acc a{op == ReduceOp::Max ? -FLT_MAX : 0.0f, 0};
    if (op == ReduceOp::Max && n > 0) a = Acc{Elem<T>::load(base, 0), 0};
    for (int64_t k = (op == ReduceOp::Max ? 1 : 0); k < n; ++k) a = combine(op, a, Acc{Elem<T>::load(base, k * inner), static_cast<int32_t>(k)});
    if (op == ReduceOp::Mean) a.v /= static_cast<float>(n);
    Elem<TO>::store(out, j, a.v);
    if (idx) idx[j] = a.k;
  }
}

template <typename T, typename TO>
__global__ void reduce_blocks(ReduceOp op, const T* x, TO* out, int32_t* idx, int64_t outer, int64_t n, int64_t inner) {
  __shared__ float sv[256];
  __shared__ int32_t sk[256];
  const int64_t j = blockIdx.x;
  const int64_t o = j / inner, i = j % inner;
  const T* base = x + o * n * inner + i;
  Acc a{op == ReduceOp::Max ? Elem<T>::load(base, 0) : 0.0f, 0};
  for (int64_t k = threadIdx.x; k < n; k += blockDim.x) a = combine(op, a, Acc{Elem<T>::load(base, k * inner), static_cast<int32_t>(k)});
  sv[threadIdx.x] = a.v;
  sk[threadIdx.x] = a.k;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      const Acc r = combine(op, Acc{sv[threadIdx.x], sk[threadIdx.x]}, Acc{sv[threadIdx.x + s], sk[threadIdx.x + s]});
      sv[threadIdx.x] = r.v;
      sk[threadIdx.x] = r.k;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    float v = sv[0];
    if (op == ReduceOp::Mean) v /= static_cast<float>(n);
    Elem<TO>::store(out, j, v);
    if (idx) idx[j] = sk[0];
  }
}

template <typename T>
__global__ void max_backward_kernel(const T* dy, const int32_t* idx, T* dx, int64_t outer, int64_t n, int64_t inner) {
  const int64_t total = outer * n * inner;
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < total; j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = j % inner, k = (j / inner) % n, o = j / (inner * n);
    const int64_t r = o * inner + i;
    Elem<T>::store(dx, j, idx[r] == k ? Elem<T>::load(dy, r) : 0.0f);
  }
}

}  // namespace

void reduce(ReduceOp op, DType dtype, DType out_dtype, const void* x, void* out, int32_t* indices, int64_t outer, int64_t n, int64_t inner,
            Stream s) {
  const int64_t outputs = outer * inner;
  if (outputs == 0) return;
  CF_SAME_OR_WIDER_DTYPES(dtype, out_dtype, T, TO, {
    if (outputs >= 4096 || n < 256 || outputs > 0x7fffffff) {
      reduce_columns<<<grid_1d(outputs, 256), 256, 0, as_cuda(s)>>>(op, static_cast<const T*>(x), static_cast<TO*>(out), indices, outer, n, inner);
    } else {
      reduce_blocks<<<static_cast<unsigned>(outputs), 256, 0, as_cuda(s)>>>(op, static_cast<const T*>(x), static_cast<TO*>(out), indices, outer, n,
                                                                            inner);
    }
  });
}

void reduce_max_backward(DType dtype, const void* dy, const int32_t* indices, void* dx, int64_t outer, int64_t n, int64_t inner, Stream s) {
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  CF_FLOAT_DTYPE(dtype, T,
                 max_backward_kernel<<<grid_1d(total, 256), 256, 0, as_cuda(s)>>>(static_cast<const T*>(dy), indices, static_cast<T*>(dx),
                                                                                  outer, n, inner));
}

}  // namespace cf::cuda
