// Elementwise kernels: grid-stride loops, f32 math on f32 or bf16 storage. The op is a
// runtime switch (uniform across the grid), which keeps the build small; these kernels are
// bound by memory, not by the branch.
#include "check.cuh"
#include "elementwise_math.h"

namespace cf::cuda {
namespace {

template <typename T>
__global__ void unary_kernel(UnaryOp op, const T* x, T* y, int64_t n, float p0, float p1) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    Elem<T>::store(y, i, unary_fn(op, Elem<T>::load(x, i), p0, p1));
}

template <typename T>
__global__ void unary_backward_kernel(UnaryOp op, const T* x, const T* dy, T* dx, int64_t n, float p0, float p1) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    Elem<T>::store(dx, i, Elem<T>::load(dy, i) * unary_grad(op, Elem<T>::load(x, i), p0, p1));
}

__device__ __forceinline__ void offsets(const BroadcastPlan& p, int64_t i, int64_t* oa, int64_t* ob) {
  int64_t a = 0, b = 0;
  for (int d = p.rank - 1; d >= 0; --d) {
    const int64_t k = i % p.shape[d];
    i /= p.shape[d];
    a += k * p.a_stride[d];
    b += k * p.b_stride[d];
  }
  *oa = a;
  *ob = b;
}

// Same-shape operands (the plan merged into one dim with unit strides) skip offsets(): its
// 64-bit division per element costs more than the memory traffic of a bf16 add.
__device__ __forceinline__ bool contiguous(const BroadcastPlan& p) {
  return p.rank <= 1 && (p.rank == 0 || (p.a_stride[0] == 1 && p.b_stride[0] == 1));
}

template <typename TA, typename TB, typename TO>
__global__ void binary_kernel(BinaryOp op, const TA* a, const TB* b, TO* out, BroadcastPlan p) {
  const bool flat = contiguous(p);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.numel; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t oa = i, ob = i;
    if (!flat) offsets(p, i, &oa, &ob);
    Elem<TO>::store(out, i, binary_fn(op, Elem<TA>::load(a, oa), Elem<TB>::load(b, ob)));
  }
}

template <typename TA, typename TB, typename TO>
__global__ void binary_backward_kernel(BinaryOp op, int side, const TA* a, const TB* b, const TO* dy, TO* out, BroadcastPlan p) {
  const bool flat = contiguous(p);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.numel; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t oa = i, ob = i;
    if (!flat) offsets(p, i, &oa, &ob);
    Elem<TO>::store(out, i, binary_grad(op, side, Elem<TA>::load(a, oa), Elem<TB>::load(b, ob), Elem<TO>::load(dy, i)));
  }
}

}  // namespace

void unary(UnaryOp op, DType dtype, const void* x, void* y, int64_t n, float p0, float p1, Stream s) {
  if (n == 0) return;
  CF_FLOAT_DTYPE(dtype, T, unary_kernel<<<grid_1d(n, 256), 256, 0, as_cuda(s)>>>(op, static_cast<const T*>(x), static_cast<T*>(y), n, p0, p1));
}

void unary_backward(UnaryOp op, DType dtype, const void* x, const void* dy, void* dx, int64_t n, float p0, float p1, Stream s) {
  if (n == 0) return;
  CF_FLOAT_DTYPE(dtype, T,
                 unary_backward_kernel<<<grid_1d(n, 256), 256, 0, as_cuda(s)>>>(op, static_cast<const T*>(x), static_cast<const T*>(dy),
                                                                              static_cast<T*>(dx), n, p0, p1));
}

void binary(BinaryOp op, BinaryDTypes dtypes, const void* a, const void* b, void* out, const BroadcastPlan& plan, Stream s) {
  if (plan.numel == 0) return;
  CF_BINARY_DTYPES(dtypes, TA, TB, TO,
                   binary_kernel<<<grid_1d(plan.numel, 256), 256, 0, as_cuda(s)>>>(op, static_cast<const TA*>(a), static_cast<const TB*>(b),
                                                                                   static_cast<TO*>(out), plan));
}

void binary_backward(BinaryOp op, int side, BinaryDTypes dtypes, const void* a, const void* b, const void* dy, void* out,
                     const BroadcastPlan& plan, Stream s) {
  if (plan.numel == 0) return;
  CF_BINARY_DTYPES(dtypes, TA, TB, TO,
                   binary_backward_kernel<<<grid_1d(plan.numel, 256), 256, 0, as_cuda(s)>>>(
                       op, side, static_cast<const TA*>(a), static_cast<const TB*>(b), static_cast<const TO*>(dy), static_cast<TO*>(out), plan));
}

}  // namespace cf::cuda
