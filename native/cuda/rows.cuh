// Building blocks for the row-wise CUDA kernels (softmax, cross-entropy, layernorm, l2norm).
//
// A row of n elements is owned by a group of kGroup threads: one warp (kGroup = 32, with
// kWarpRowsBlock / 32 rows per block) for rows of up to kWarpRowMax elements, or a whole
// block (kGroup = kBlockRowThreads) for longer rows. Thread t of a group takes elements t,
// t + kGroup, ..., so every load is coalesced. Kernels that need several passes over a row
// read it again; a row is at most a few tens of KB, so the later passes are served by
// L1/L2 and DRAM traffic stays at one read. Rows are visited with a grid-stride loop, so any
// number of rows fits any grid, and the loop is uniform across a group, so block-wide
// barriers are safe. Group reductions combine lanes in a fixed pattern (xor shuffles, then
// one value per warp through shared memory), so results are deterministic and every thread
// of the group gets the same value.
#pragma once
#include <cuda_runtime.h>

#include <type_traits>

#include "check.cuh"

namespace cf::cuda::rows {

constexpr int kWarpRowMax = 1024;
constexpr int kWarpRowsBlock = 256;
constexpr int kBlockRowThreads = 512;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

template <int kGroup>
struct Group {
  static_assert(kGroup % 32 == 0 && kGroup <= 1024, "a group is one warp or a whole block of whole warps");
  static constexpr int kThreads = kGroup;
  static constexpr int kWarps = kGroup / 32;
  // Threads per block when launched with this group size.
  static constexpr int kBlock = kGroup == 32 ? kWarpRowsBlock : kGroup;

  __device__ static int lane() { return kGroup == 32 ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x); }
  __device__ static int64_t first_row() {
    return kGroup == 32 ? static_cast<int64_t>(blockIdx.x) * (kBlock / 32) + (threadIdx.x >> 5) : static_cast<int64_t>(blockIdx.x);
  }
  __device__ static int64_t row_stride() {
    return kGroup == 32 ? static_cast<int64_t>(gridDim.x) * (kBlock / 32) : static_cast<int64_t>(gridDim.x);
  }

  // Shared memory for one reduction: kWarps float2 (unused by a single warp).
  struct Scratch {
    float2 v[kWarps];
  };

  __device__ static float sum(float v, Scratch& s) {
    v = warp_sum(v);
    if constexpr (kGroup == 32) {
      return v;
    } else {
      const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
      if (l == 0) s.v[w].x = v;
      __syncthreads();
      v = warp_sum(l < kWarps ? s.v[l].x : 0.0f);
      __syncthreads();  // the scratch is reused by the next reduction
      return v;
    }
  }

  __device__ static float max(float v, Scratch& s) {
    v = warp_max(v);
    if constexpr (kGroup == 32) {
      return v;
    } else {
      const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
      if (l == 0) s.v[w].x = v;
      __syncthreads();
      v = warp_max(l < kWarps ? s.v[l].x : -INFINITY);
      __syncthreads();
      return v;
    }
  }

  // Two sums at once (one barrier pair instead of two).
  __device__ static float2 sum2(float2 v, Scratch& s) {
    v.x = warp_sum(v.x);
    v.y = warp_sum(v.y);
    if constexpr (kGroup == 32) {
      return v;
    } else {
      const int w = threadIdx.x >> 5, l = threadIdx.x & 31;
      if (l == 0) s.v[w] = v;
      __syncthreads();
      const float2 p = l < kWarps ? s.v[l] : make_float2(0.0f, 0.0f);
      v = make_float2(warp_sum(p.x), warp_sum(p.y));
      __syncthreads();
      return v;
    }
  }
};

// Calls launch(Group<kGroup>{}, grid, threads) with the group size suited to rows of n
// elements; the callee launches its kernel instantiated for that group.
template <typename F>
void for_rows(int64_t rows, int64_t n, F&& launch) {
  if (n <= kWarpRowMax) {
    launch(Group<32>{}, grid_1d(rows, kWarpRowsBlock / 32), Group<32>::kBlock);
  } else {
    launch(Group<kBlockRowThreads>{}, grid_1d(rows, 1), Group<kBlockRowThreads>::kBlock);
  }
}

}  // namespace cf::cuda::rows
