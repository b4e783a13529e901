// The CPU GEMM micro-kernel: one MR x NR tile of C from packed panels of A and B.
//   a: kc x MR floats, a[k * MR + i] = op(A)(i0 + i, p0 + k)   (rows past the edge are 0)
//   b: kc x NR floats, b[k * NR + j] = op(B)(p0 + k, j0 + j)   (columns past the edge are 0)
//   c[i * ldc + j] = (load ? c[i * ldc + j] : 0) + (bias ? bias[j] : 0) + sum_k a[k * MR + i] * b[k * NR + j]
// for i < m <= MR and j < n <= NR. b is 32-byte aligned. 6 x 16 fills 12 of AVX2's 16 ymm
// registers with accumulators and leaves room for two B vectors and one A broadcast; the
// packing in matmul.cpp is written for these sizes whichever kernel runs.
#pragma once
#include <cstdint>

namespace cf::cpu {

constexpr int kGemmMR = 6;
constexpr int kGemmNR = 16;

using GemmMicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int m, int n,
                                 const float* bias, bool load);

// The kernel in use: by default the fastest this CPU runs (AVX2 + FMA on x86-64 when
// present, else the portable one); select_gemm_kernel (matmul.h) changes it.
GemmMicroKernel gemm_micro_kernel();

// Shared epilogue for kernels that computed the whole tile into acc[MR][NR].
inline void gemm_store_tile(const float* acc, float* c, int64_t ldc, int m, int n, const float* bias, bool load) {
  for (int i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    const float* ar = acc + i * kGemmNR;
    for (int j = 0; j < n; ++j) row[j] = (load ? row[j] : 0.0f) + (bias ? bias[j] : 0.0f) + ar[j];
  }
}

}  // namespace cf::cpu
