// Fused attention on CUDA (see attention.h for the math and layouts): forward with online
// softmax saving the row logsumexp, backward recomputing the probabilities from it.
//   q, k, v, out, dout, dq, dk, dv: rows of D elements addressed by AttentionLayout; lse f32 [B, H, S].
// Floor: 4*B*H*S^2*D FLOPs forward, 2.5x that backward (3.5x for both; causal halves each).
// At S = 197, D = 64, B = 256, H = 12 forward+backward is 0.93 TFLOP: about 1.2 ms at
// H100's ~800 TFLOP/s bf16 matrix rate, against 0.3 ms to move its 0.7 GB once.
//
// Kernels (numbered as explored; see bench/notes/attention.md for what each predicts):
//   1. simt_*  (any D <= 256, f32 or bf16 storage, any row alignment): CUDA-core f32 math.
//      Warps own 4 rows; K/V (or Q/dO) tiles of 32 rows are staged in shared memory as f32,
//      and lane j scores row j of the tile, so a dot product is one lane's serial loop and
//      the softmax statistics are warp reductions.
//   2. mma_*   (bf16, D in {32, 64, 80, 96, 128}, 16-byte aligned rows): tensor cores,
//      mma.sync m16n8k16 with bf16 inputs and f32 accumulation, FlashAttention-2 style.
//      A CTA has 4 warps of 16 rows; tiles of 64 rows are staged in shared memory with
//      cp.async, fragments read with ldmatrix (.trans where the operand is row-contiguous);
//      P and dS go from accumulators to A fragments in registers, never through memory.
// Both families run the backward as two kernels without atomics: dq_* (query-stationary:
// also writes delta = rowsum(dO * O)) then dkdv_* (key-stationary, reading delta), so
// results are deterministic. Tails are masked: rows past S are zero-filled in shared memory,
// their scores masked to -inf, and nothing past S is written.
//
// Short sequences (CLIP: S = 17..257): the grid is (query or key tiles) x (batch * heads),
// flattened so that consecutive CTAs share a head's K and V in L2, and rows are assigned in
// 16-row warp slices, so S = 50 wastes 14 of 64 rows and S = 197 wastes 11 of 208 (the
// 128-row tiles of FlashAttention-2 waste 61% and 23%). Warps whose rows all lie past S or
// above the causal diagonal skip their math but keep the CTA's barriers.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "attention.h"
#include "check.cuh"
#include "workspace.cuh"
#include "mma.cuh"

namespace cf::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Everything a kernel reads: pointers are to element 0 of each tensor (k and v may point
// into q's storage for the packed layout).
template <typename T>
struct Params {
  const T *q, *k, *v;
  const T *o, *dout;
  T* out;
  T *dq, *dk, *dv;
  float* lse;
  float* delta;  // backward workspace [B*H, S]: rowsum(dO * O), written by dq_*, read by dkdv_*
  AttentionLayout in, outl;
  int heads, seq, dim;
  int tiles;     // row tiles per head (grid.x = tiles * batch * heads)
  float scale, c2;  // c2 = scale * log2(e): scores in base 2
  bool causal;

  __device__ __forceinline__ int64_t row(const AttentionLayout& l, int bh, int s) const {
    return static_cast<int64_t>(bh / heads) * l.batch + static_cast<int64_t>(bh % heads) * l.head + static_cast<int64_t>(s) * l.seq;
  }
};

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---------------------------------------------------------------------------------------
// 1. SIMT kernels. 4 warps x kRows rows = 16 rows per CTA; staged tiles of 32 rows. The
// rows a warp owns are "mine"; the 32 rows of the staged tile are "theirs", one per lane.
// Per lane: dims d = lane + 32 t (t < kDimSlots) of each of its warp's rows' accumulators.
// ---------------------------------------------------------------------------------------
constexpr int kSimtWarps = 4, kRows = 4, kTile = 32, kDimSlots = kAttentionCudaMaxDim / 32;
constexpr int kSimtThreads = kSimtWarps * 32, kSimtRowsPerCta = kSimtWarps * kRows;

// rows [s0, s0 + n) of one head into f32 shared memory with row stride ld, times mul;
// rows past S are zero.
template <typename T>
__device__ __forceinline__ void stage_rows(float* dst, int ld, const T* base, const Params<T>& p, const AttentionLayout& l, int bh,
                                           int s0, int n, float mul) {
  for (int e = threadIdx.x; e < n * p.dim; e += blockDim.x) {
    const int r = e / p.dim, c = e % p.dim, s = s0 + r;
    dst[r * ld + c] = s < p.seq ? Elem<T>::load(base + p.row(l, bh, s), c) * mul : 0.0f;
  }
}

// Forward: m (running max, base 2), l (running sum, this lane's keys), o (unnormalized).
template <typename T>
__global__ void __launch_bounds__(kSimtThreads) simt_forward(Params<T> p) {
  extern __shared__ float smem[];
  const int D = p.dim, ldk = D + 1;  // +1: lanes read different rows at the same column
  float* sQ = smem;                  // [16][D], times c2
  float* sK = sQ + kSimtRowsPerCta * D;  // [32][D + 1]
  float* sV = sK + kTile * ldk;          // [32][D]
  float* sP = sV + kTile * D;            // [4 warps][kRows][32] probabilities, for broadcast
  const int tile = blockIdx.x % p.tiles, bh = blockIdx.x / p.tiles;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int q0 = tile * kSimtRowsPerCta, r0 = q0 + warp * kRows;
  stage_rows(sQ, D, p.q, p, p.in, bh, q0, kSimtRowsPerCta, p.c2);
  float o[kRows][kDimSlots] = {}, m[kRows], l[kRows] = {};
  for (int r = 0; r < kRows; ++r) m[r] = -INFINITY;
  const int kend = p.causal ? min(p.seq, q0 + kSimtRowsPerCta) : p.seq;
  for (int j0 = 0; j0 < kend; j0 += kTile) {
    __syncthreads();
    stage_rows(sK, ldk, p.k, p, p.in, bh, j0, kTile, 1.0f);
    stage_rows(sV, D, p.v, p, p.in, bh, j0, kTile, 1.0f);
    __syncthreads();
    if (r0 >= p.seq || (p.causal && j0 > r0 + kRows - 1)) continue;
    const int j = j0 + lane;
    float s[kRows] = {};
    for (int c = 0; c < D; ++c) {
      const float kv = sK[lane * ldk + c];
      for (int r = 0; r < kRows; ++r) s[r] += sQ[(warp * kRows + r) * D + c] * kv;
    }
    for (int r = 0; r < kRows; ++r) {
      const bool visible = j < p.seq && (!p.causal || j <= r0 + r);
      const float x = visible ? s[r] : -INFINITY;
      const float mn = fmaxf(m[r], warp_max(x));
      const float base = mn == -INFINITY ? 0.0f : mn;  // a row with nothing visible yet
      const float alpha = exp2f(m[r] - base);
      const float pj = exp2f(x - base);
      m[r] = mn;
      l[r] = l[r] * alpha + pj;
      for (int t = 0; t < kDimSlots; ++t) o[r][t] *= alpha;
      sP[(warp * kRows + r) * kTile + lane] = pj;
    }
    __syncwarp();
    const int nj = min(kTile, kend - j0);
    for (int jj = 0; jj < nj; ++jj)
#pragma unroll
      for (int t = 0; t < kDimSlots; ++t) {
        const int c = lane + 32 * t;
        if (c < D) {
          const float vv = sV[jj * D + c];
          for (int r = 0; r < kRows; ++r) o[r][t] += sP[(warp * kRows + r) * kTile + jj] * vv;
        }
      }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = r0 + r;
    const float lsum = warp_sum(l[r]);
    if (i >= p.seq) continue;
    T* dst = p.out + p.row(p.outl, bh, i);
#pragma unroll
    for (int t = 0; t < kDimSlots; ++t)
      if (lane + 32 * t < D) Elem<T>::store(dst, lane + 32 * t, o[r][t] / lsum);
    if (lane == 0) p.lse[static_cast<int64_t>(bh) * p.seq + i] = (m[r] + log2f(lsum)) * kLn2;
  }
}

// Backward, query-stationary: delta, then dq = scale * sum_j ds_ij k_j.
template <typename T>
__global__ void __launch_bounds__(kSimtThreads) simt_backward_dq(Params<T> p) {
  extern __shared__ float smem[];
  const int D = p.dim, ldk = D + 1;
  float* sQ = smem;                           // [16][D], times c2
  float* sG = sQ + kSimtRowsPerCta * D;       // [16][D] dO
  float* sK = sG + kSimtRowsPerCta * D;       // [32][D + 1]
  float* sV = sK + kTile * ldk;               // [32][D + 1]
  float* sS = sV + kTile * ldk;               // [4][kRows][32] dS, for broadcast
  const int tile = blockIdx.x % p.tiles, bh = blockIdx.x / p.tiles;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int q0 = tile * kSimtRowsPerCta, r0 = q0 + warp * kRows;
  stage_rows(sQ, D, p.q, p, p.in, bh, q0, kSimtRowsPerCta, p.c2);
  stage_rows(sG, D, p.dout, p, p.outl, bh, q0, kSimtRowsPerCta, 1.0f);
  __syncthreads();
  float delta[kRows], lse2[kRows], dq[kRows][kDimSlots] = {};
  for (int r = 0; r < kRows; ++r) {
    const int i = r0 + r;
    float part = 0.0f;
    if (i < p.seq) {
      const T* orow = p.o + p.row(p.outl, bh, i);
      for (int c = lane; c < D; c += 32) part += sG[(warp * kRows + r) * D + c] * Elem<T>::load(orow, c);
    }
    delta[r] = warp_sum(part);
    lse2[r] = i < p.seq ? p.lse[static_cast<int64_t>(bh) * p.seq + i] * kLog2e : 0.0f;
    if (lane == 0 && i < p.seq) p.delta[static_cast<int64_t>(bh) * p.seq + i] = delta[r];
  }
  const int kend = p.causal ? min(p.seq, q0 + kSimtRowsPerCta) : p.seq;
  for (int j0 = 0; j0 < kend; j0 += kTile) {
    __syncthreads();
    stage_rows(sK, ldk, p.k, p, p.in, bh, j0, kTile, 1.0f);
    stage_rows(sV, ldk, p.v, p, p.in, bh, j0, kTile, 1.0f);
    __syncthreads();
    if (r0 >= p.seq || (p.causal && j0 > r0 + kRows - 1)) continue;
    const int j = j0 + lane;
    float s[kRows] = {}, dp[kRows] = {};
    for (int c = 0; c < D; ++c) {
      const float kc = sK[lane * ldk + c], vc = sV[lane * ldk + c];
      for (int r = 0; r < kRows; ++r) {
        s[r] += sQ[(warp * kRows + r) * D + c] * kc;
        dp[r] += sG[(warp * kRows + r) * D + c] * vc;
      }
    }
    for (int r = 0; r < kRows; ++r) {
      const bool visible = j < p.seq && r0 + r < p.seq && (!p.causal || j <= r0 + r);
      const float pj = visible ? exp2f(s[r] - lse2[r]) : 0.0f;
      sS[(warp * kRows + r) * kTile + lane] = pj * (dp[r] - delta[r]);
    }
    __syncwarp();
    const int nj = min(kTile, kend - j0);
    for (int jj = 0; jj < nj; ++jj)
#pragma unroll
      for (int t = 0; t < kDimSlots; ++t) {
        const int c = lane + 32 * t;
        if (c < D) {
          const float kc = sK[jj * ldk + c];
          for (int r = 0; r < kRows; ++r) dq[r][t] += sS[(warp * kRows + r) * kTile + jj] * kc;
        }
      }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int i = r0 + r;
    if (i >= p.seq) continue;
    T* dst = p.dq + p.row(p.in, bh, i);
#pragma unroll
    for (int t = 0; t < kDimSlots; ++t)
      if (lane + 32 * t < D) Elem<T>::store(dst, lane + 32 * t, dq[r][t] * p.scale);
  }
}

// Backward, key-stationary: dv_j = sum_i p_ij dO_i, dk_j = scale * sum_i ds_ij q_i.
template <typename T>
__global__ void __launch_bounds__(kSimtThreads) simt_backward_dkdv(Params<T> p) {
  extern __shared__ float smem[];
  const int D = p.dim, ldq = D + 1;
  float* sK = smem;                       // [16][D]
  float* sV = sK + kSimtRowsPerCta * D;   // [16][D]
  float* sQ = sV + kSimtRowsPerCta * D;   // [32][D + 1], times c2
  float* sG = sQ + kTile * ldq;           // [32][D + 1] dO
  float* sL = sG + kTile * ldq;           // [32] lse (base 2)
  float* sD = sL + kTile;                 // [32] delta
  float* sP = sD + kTile;                 // [4][kRows][32] probabilities
  float* sS = sP + kSimtRowsPerCta * kTile;  // [4][kRows][32] dS
  const int tile = blockIdx.x % p.tiles, bh = blockIdx.x / p.tiles;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int k0 = tile * kSimtRowsPerCta, r0 = k0 + warp * kRows;
  stage_rows(sK, D, p.k, p, p.in, bh, k0, kSimtRowsPerCta, 1.0f);
  stage_rows(sV, D, p.v, p, p.in, bh, k0, kSimtRowsPerCta, 1.0f);
  float dk[kRows][kDimSlots] = {}, dv[kRows][kDimSlots] = {};
  // Causal: queries before this CTA's first key see none of its keys.
  for (int i0 = p.causal ? (k0 / kTile) * kTile : 0; i0 < p.seq; i0 += kTile) {
    __syncthreads();
    stage_rows(sQ, ldq, p.q, p, p.in, bh, i0, kTile, p.c2);
    stage_rows(sG, ldq, p.dout, p, p.outl, bh, i0, kTile, 1.0f);
    if (threadIdx.x < kTile) {
      const int i = i0 + threadIdx.x;
      const int64_t at = static_cast<int64_t>(bh) * p.seq + i;
      sL[threadIdx.x] = i < p.seq ? p.lse[at] * kLog2e : 0.0f;
      sD[threadIdx.x] = i < p.seq ? p.delta[at] : 0.0f;
    }
    __syncthreads();
    if (r0 >= p.seq || (p.causal && i0 + kTile - 1 < r0)) continue;
    const int i = i0 + lane;
    float s[kRows] = {}, dp[kRows] = {};
    for (int c = 0; c < D; ++c) {
      const float qc = sQ[lane * ldq + c], gc = sG[lane * ldq + c];
      for (int r = 0; r < kRows; ++r) {
        s[r] += sK[(warp * kRows + r) * D + c] * qc;
        dp[r] += sV[(warp * kRows + r) * D + c] * gc;
      }
    }
    for (int r = 0; r < kRows; ++r) {
      const bool visible = i < p.seq && r0 + r < p.seq && (!p.causal || i >= r0 + r);
      const float pi = visible ? exp2f(s[r] - sL[lane]) : 0.0f;
      sP[(warp * kRows + r) * kTile + lane] = pi;
      sS[(warp * kRows + r) * kTile + lane] = pi * (dp[r] - sD[lane]);
    }
    __syncwarp();
    const int ni = min(kTile, p.seq - i0);
    for (int ii = 0; ii < ni; ++ii)
#pragma unroll
      for (int t = 0; t < kDimSlots; ++t) {
        const int c = lane + 32 * t;
        if (c < D) {
          // sQ holds q * c2; dk wants scale * q, so the c2 comes back out at the store.
          const float qc = sQ[ii * ldq + c], gc = sG[ii * ldq + c];
          for (int r = 0; r < kRows; ++r) {
            dv[r][t] += sP[(warp * kRows + r) * kTile + ii] * gc;
            dk[r][t] += sS[(warp * kRows + r) * kTile + ii] * qc;
          }
        }
      }
    __syncwarp();
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int j = r0 + r;
    if (j >= p.seq) continue;
    T* dkr = p.dk + p.row(p.in, bh, j);
    T* dvr = p.dv + p.row(p.in, bh, j);
#pragma unroll
    for (int t = 0; t < kDimSlots; ++t)
      if (lane + 32 * t < D) {
        Elem<T>::store(dkr, lane + 32 * t, dk[r][t] * kLn2);
        Elem<T>::store(dvr, lane + 32 * t, dv[r][t]);
      }
  }
}

// ---------------------------------------------------------------------------------------
// 2. Tensor-core kernels (bf16), mma.m16n8k16 (fragment layouts in mma.cuh): two adjacent C
// tiles of scores are, packed to bf16, exactly the A fragment of the next product: P and dS
// stay in registers.
// ---------------------------------------------------------------------------------------
constexpr int kMmaWarps = 4, kMmaRows = 16 * kMmaWarps, kMmaThreads = 32 * kMmaWarps;

// Shared-memory tiles are [rows][D + 8] bf16: the 16-byte pad puts the 8 rows an ldmatrix
// reads in 8 different bank groups for every D used here.
template <int D>
struct Tile : SmemFrags<D + 8> {
  static constexpr int kLd = D + 8;
  // Rows [s0, s0 + n) of one head into s, 16 bytes per cp.async; rows past S are zero.
  static __device__ __forceinline__ void load(bf16* s, const bf16* base, const Params<bf16>& p, const AttentionLayout& l, int bh, int s0,
                                              int n) {
    constexpr int kChunks = D / 8;
    for (int e = threadIdx.x; e < n * kChunks; e += blockDim.x) {
      const int r = e / kChunks, c = (e % kChunks) * 8;
      bf16* dst = s + r * kLd + c;
      if (s0 + r < p.seq) cp_async16(dst, base + p.row(l, bh, s0 + r) + c);
      else *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
    }
  }
};

// C tiles [16 x D] of one warp to rows [r0, r0 + 16) of a tensor, times mul; rows past S skipped.
template <int D>
__device__ __forceinline__ void store_rows(const float (&c)[D / 8][4], bf16* base, const Params<bf16>& p, const AttentionLayout& l, int bh,
                                           int r0, int lane, float mul0, float mul1) {
  const int g = lane >> 2, t = lane & 3;
  for (int h = 0; h < 2; ++h) {
    const int s = r0 + g + 8 * h;
    if (s >= p.seq) continue;
    bf16* row = base + p.row(l, bh, s);
    const float mul = h ? mul1 : mul0;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<uint32_t*>(row + n * 8 + 2 * t) = pack_bf16(c[n][2 * h] * mul, c[n][2 * h + 1] * mul);
  }
}

template <int D>
__global__ void __launch_bounds__(kMmaThreads) mma_forward(Params<bf16> p) {
  using Tl = Tile<D>;
  constexpr int kKeys = 64, kLd = Tl::kLd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);  // [64][kLd]
  bf16* sK = sQ + kMmaRows * kLd;                // [64][kLd]
  bf16* sV = sK + kKeys * kLd;                   // [64][kLd]
  const int tile = blockIdx.x % p.tiles, bh = blockIdx.x / p.tiles;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int q0 = tile * kMmaRows, r0 = q0 + 16 * warp;
  Tl::load(sQ, p.q, p, p.in, bh, q0, kMmaRows);
  cp_async_wait_all();
  __syncthreads();
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) Tl::a(qf[kk], sQ, 16 * warp, 16 * kk, lane);
  float o[D / 8][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int kend = p.causal ? min(p.seq, q0 + kMmaRows) : p.seq;
  for (int j0 = 0; j0 < kend; j0 += kKeys) {
    __syncthreads();
    Tl::load(sK, p.k, p, p.in, bh, j0, kKeys);
    Tl::load(sV, p.v, p, p.in, bh, j0, kKeys);
    cp_async_wait_all();
    __syncthreads();
    if (r0 >= p.seq || (p.causal && j0 > r0 + 15)) continue;
    float s[kKeys / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int n = 0; n < kKeys / 16; ++n) {
        uint32_t kf[4];
        Tl::b(kf, sK, 16 * n, 16 * kk, lane);
        mma_bf16(s[2 * n], qf[kk], kf[0], kf[1]);
        mma_bf16(s[2 * n + 1], qf[kk], kf[2], kf[3]);
      }
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = j0 + 8 * n + 2 * t + (e & 1), i = r0 + g + 8 * (e >> 1);
        const bool visible = j < p.seq && (!p.causal || j <= i);
        s[n][e] = visible ? s[n][e] * p.c2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
      }
    float base[2], alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
      const float mn = fmaxf(m[h], mx[h]);
      base[h] = mn == -INFINITY ? 0.0f : mn;  // a row with nothing visible yet
      alpha[h] = exp2f(m[h] - base[h]);
      m[h] = mn;
      l[h] *= alpha[h];
    }
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] = exp2f(s[n][e] - base[e >> 1]);
        l[e >> 1] += s[n][e];
      }
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e >> 1];
#pragma unroll
    for (int kt = 0; kt < kKeys / 16; ++kt) {
      const uint32_t a[4] = {pack_bf16(s[2 * kt][0], s[2 * kt][1]), pack_bf16(s[2 * kt][2], s[2 * kt][3]),
                             pack_bf16(s[2 * kt + 1][0], s[2 * kt + 1][1]), pack_bf16(s[2 * kt + 1][2], s[2 * kt + 1][3])};
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        uint32_t vf[4];
        Tl::bt(vf, sV, 16 * kt, 16 * n, lane);
        mma_bf16(o[2 * n], a, vf[0], vf[1]);
        mma_bf16(o[2 * n + 1], a, vf[2], vf[3]);
      }
    }
  }
  // Each quad (t = 0..3) holds a row's 4 partial sums.
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    inv[h] = 1.0f / l[h];
    const int i = r0 + g + 8 * h;
    if (t == 0 && i < p.seq) p.lse[static_cast<int64_t>(bh) * p.seq + i] = (m[h] + log2f(l[h])) * kLn2;
  }
  store_rows<D>(o, p.out, p, p.outl, bh, r0, lane, inv[0], inv[1]);
}

template <int D>
__global__ void __launch_bounds__(kMmaThreads) mma_backward_dq(Params<bf16> p) {
  using Tl = Tile<D>;
  constexpr int kKeys = 64, kLd = Tl::kLd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sQ = reinterpret_cast<bf16*>(smem_raw);  // [64][kLd]
  bf16* sG = sQ + kMmaRows * kLd;                // [64][kLd] dO
  bf16* sK = sG + kMmaRows * kLd;                // [64][kLd]
  bf16* sV = sK + kKeys * kLd;                   // [64][kLd]
  const int tile = blockIdx.x % p.tiles, bh = blockIdx.x / p.tiles;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int q0 = tile * kMmaRows, r0 = q0 + 16 * warp;
  Tl::load(sQ, p.q, p, p.in, bh, q0, kMmaRows);
  Tl::load(sG, p.dout, p, p.outl, bh, q0, kMmaRows);
  cp_async_wait_all();
  __syncthreads();
  // delta for this warp's 16 rows, each a warp-wide dot product over D; the thread keeps
  // those of its rows g and g + 8.
  float delta[2] = {0.0f, 0.0f}, lse2[2] = {0.0f, 0.0f};
  for (int r = 0; r < 16; ++r) {
    const int i = r0 + r;
    float part = 0.0f;
    if (i < p.seq) {
      const bf16* orow = p.o + p.row(p.outl, bh, i);
      for (int c = lane; c < D; c += 32) part += bf16_to_float(sG[(16 * warp + r) * kLd + c]) * bf16_to_float(orow[c]);
    }
    const float dl = warp_sum(part);
    if (r == g) delta[0] = dl;
    if (r == g + 8) delta[1] = dl;
    if (lane == 0 && i < p.seq) p.delta[static_cast<int64_t>(bh) * p.seq + i] = dl;
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = r0 + g + 8 * h;
    lse2[h] = i < p.seq ? p.lse[static_cast<int64_t>(bh) * p.seq + i] * kLog2e : 0.0f;
  }
  float dq[D / 8][4] = {};
  const int kend = p.causal ? min(p.seq, q0 + kMmaRows) : p.seq;
  for (int j0 = 0; j0 < kend; j0 += kKeys) {
    __syncthreads();
    Tl::load(sK, p.k, p, p.in, bh, j0, kKeys);
    Tl::load(sV, p.v, p, p.in, bh, j0, kKeys);
    cp_async_wait_all();
    __syncthreads();
    if (r0 >= p.seq || (p.causal && j0 > r0 + 15)) continue;
    float s[kKeys / 8][4] = {}, dp[kKeys / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t qa[4], ga[4];
      Tl::a(qa, sQ, 16 * warp, 16 * kk, lane);
      Tl::a(ga, sG, 16 * warp, 16 * kk, lane);
#pragma unroll
      for (int n = 0; n < kKeys / 16; ++n) {
        uint32_t kf[4], vf[4];
        Tl::b(kf, sK, 16 * n, 16 * kk, lane);
        Tl::b(vf, sV, 16 * n, 16 * kk, lane);
        mma_bf16(s[2 * n], qa, kf[0], kf[1]);
        mma_bf16(s[2 * n + 1], qa, kf[2], kf[3]);
        mma_bf16(dp[2 * n], ga, vf[0], vf[1]);
        mma_bf16(dp[2 * n + 1], ga, vf[2], vf[3]);
      }
    }
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = j0 + 8 * n + 2 * t + (e & 1), i = r0 + g + 8 * (e >> 1);
        const bool visible = j < p.seq && i < p.seq && (!p.causal || j <= i);
        const float pij = visible ? exp2f(s[n][e] * p.c2 - lse2[e >> 1]) : 0.0f;
        s[n][e] = pij * (dp[n][e] - delta[e >> 1]);  // dS
      }
#pragma unroll
    for (int kt = 0; kt < kKeys / 16; ++kt) {
      const uint32_t a[4] = {pack_bf16(s[2 * kt][0], s[2 * kt][1]), pack_bf16(s[2 * kt][2], s[2 * kt][3]),
                             pack_bf16(s[2 * kt + 1][0], s[2 * kt + 1][1]), pack_bf16(s[2 * kt + 1][2], s[2 * kt + 1][3])};
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        uint32_t kf[4];
        Tl::bt(kf, sK, 16 * kt, 16 * n, lane);
        mma_bf16(dq[2 * n], a, kf[0], kf[1]);
        mma_bf16(dq[2 * n + 1], a, kf[2], kf[3]);
      }
    }
  }
  store_rows<D>(dq, p.dq, p, p.in, bh, r0, lane, p.scale, p.scale);
}

// Key-stationary: each warp owns 16 keys (rows of the transposed products S^T, dP^T);
// queries stream through in tiles of kQ (32 above D = 64 to keep dK, dV and two score
// tiles within the register file).
template <int D>
__global__ void __launch_bounds__(kMmaThreads) mma_backward_dkdv(Params<bf16> p) {
  using Tl = Tile<D>;
  constexpr int kQ = D <= 64 ? 64 : 32, kLd = Tl::kLd;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* sK = reinterpret_cast<bf16*>(smem_raw);  // [64][kLd]
  bf16* sV = sK + kMmaRows * kLd;                // [64][kLd]
  bf16* sQ = sV + kMmaRows * kLd;                // [kQ][kLd]
  bf16* sG = sQ + kQ * kLd;                      // [kQ][kLd] dO
  float* sL = reinterpret_cast<float*>(sG + kQ * kLd);  // [kQ] lse (base 2)
  float* sD = sL + kQ;                                  // [kQ] delta
  const int tile = blockIdx.x % p.tiles, bh = blockIdx.x / p.tiles;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int k0 = tile * kMmaRows, r0 = k0 + 16 * warp;
  Tl::load(sK, p.k, p, p.in, bh, k0, kMmaRows);
  Tl::load(sV, p.v, p, p.in, bh, k0, kMmaRows);
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};
  // Causal: queries before this CTA's first key see none of its keys.
  for (int i0 = p.causal ? (k0 / kQ) * kQ : 0; i0 < p.seq; i0 += kQ) {
    __syncthreads();
    Tl::load(sQ, p.q, p, p.in, bh, i0, kQ);
    Tl::load(sG, p.dout, p, p.outl, bh, i0, kQ);
    if (threadIdx.x < kQ) {
      const int i = i0 + threadIdx.x;
      const int64_t at = static_cast<int64_t>(bh) * p.seq + i;
      // Rows past S: lse = +inf makes their probabilities exactly 0.
      sL[threadIdx.x] = i < p.seq ? p.lse[at] * kLog2e : INFINITY;
      sD[threadIdx.x] = i < p.seq ? p.delta[at] : 0.0f;
    }
    cp_async_wait_all();
    __syncthreads();
    if (r0 >= p.seq || (p.causal && i0 + kQ - 1 < r0)) continue;
    float st[kQ / 8][4] = {}, dpt[kQ / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t ka[4], va[4];
      Tl::a(ka, sK, 16 * warp, 16 * kk, lane);
      Tl::a(va, sV, 16 * warp, 16 * kk, lane);
#pragma unroll
      for (int n = 0; n < kQ / 16; ++n) {
        uint32_t qf[4], gf[4];
        Tl::b(qf, sQ, 16 * n, 16 * kk, lane);
        Tl::b(gf, sG, 16 * n, 16 * kk, lane);
        mma_bf16(st[2 * n], ka, qf[0], qf[1]);
        mma_bf16(st[2 * n + 1], ka, qf[2], qf[3]);
        mma_bf16(dpt[2 * n], va, gf[0], gf[1]);
        mma_bf16(dpt[2 * n + 1], va, gf[2], gf[3]);
      }
    }
    // st becomes P^T, dpt becomes dS^T.
#pragma unroll
    for (int n = 0; n < kQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int ii = 8 * n + 2 * t + (e & 1), i = i0 + ii, j = r0 + g + 8 * (e >> 1);
        const bool visible = j < p.seq && (!p.causal || i >= j);
        const float pij = visible ? exp2f(st[n][e] * p.c2 - sL[ii]) : 0.0f;
        st[n][e] = pij;
        dpt[n][e] = pij * (dpt[n][e] - sD[ii]);
      }
#pragma unroll
    for (int kt = 0; kt < kQ / 16; ++kt) {
      const uint32_t pa[4] = {pack_bf16(st[2 * kt][0], st[2 * kt][1]), pack_bf16(st[2 * kt][2], st[2 * kt][3]),
                              pack_bf16(st[2 * kt + 1][0], st[2 * kt + 1][1]), pack_bf16(st[2 * kt + 1][2], st[2 * kt + 1][3])};
      const uint32_t sa[4] = {pack_bf16(dpt[2 * kt][0], dpt[2 * kt][1]), pack_bf16(dpt[2 * kt][2], dpt[2 * kt][3]),
                              pack_bf16(dpt[2 * kt + 1][0], dpt[2 * kt + 1][1]), pack_bf16(dpt[2 * kt + 1][2], dpt[2 * kt + 1][3])};
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        uint32_t gf[4], qf[4];
        Tl::bt(gf, sG, 16 * kt, 16 * n, lane);
        Tl::bt(qf, sQ, 16 * kt, 16 * n, lane);
        mma_bf16(dv[2 * n], pa, gf[0], gf[1]);
        mma_bf16(dv[2 * n + 1], pa, gf[2], gf[3]);
        mma_bf16(dk[2 * n], sa, qf[0], qf[1]);
        mma_bf16(dk[2 * n + 1], sa, qf[2], qf[3]);
      }
    }
  }
  store_rows<D>(dk, p.dk, p, p.in, bh, r0, lane, p.scale, p.scale);
  store_rows<D>(dv, p.dv, p, p.in, bh, r0, lane, 1.0f, 1.0f);
}

// ---------------------------------------------------------------------------------------
// Host side.
// ---------------------------------------------------------------------------------------

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }
bool rows_aligned(const AttentionLayout& l) { return l.batch % 8 == 0 && l.head % 8 == 0 && l.seq % 8 == 0; }

// Whether the tensor-core kernels take this problem: bf16, a compiled head dim, and rows
// whose 16-byte chunks cp.async can load.
bool use_mma(DType dtype, int64_t dim, std::initializer_list<const void*> ptrs, const AttentionLayout& in, const AttentionLayout& out) {
  if (dtype != DType::BF16 || !(dim == 32 || dim == 64 || dim == 80 || dim == 96 || dim == 128)) return false;
  for (const void* ptr : ptrs)
    if (!aligned16(ptr)) return false;
  return rows_aligned(in) && rows_aligned(out);
}

template <typename T>
Params<T> make_params(const AttentionDims& d, bool causal, float scale, AttentionLayout in, AttentionLayout outl, int rows_per_cta) {
  Params<T> p{};
  p.in = in;
  p.outl = outl;
  p.heads = static_cast<int>(d.heads);
  p.seq = static_cast<int>(d.seq);
  p.dim = static_cast<int>(d.dim);
  p.tiles = static_cast<int>((d.seq + rows_per_cta - 1) / rows_per_cta);
  p.scale = scale;
  p.c2 = scale * kLog2e;
  p.causal = causal;
  return p;
}

unsigned grid_of(const AttentionDims& d, int tiles) {
  const int64_t n = static_cast<int64_t>(tiles) * d.batch * d.heads;
  if (n > 0x7fffffff) throw Error("attention: " + std::to_string(n) + " thread blocks exceed the CUDA grid limit");
  return static_cast<unsigned>(n);
}

size_t simt_smem_forward(int D) { return sizeof(float) * (kSimtRowsPerCta * D + kTile * (D + 1) + kTile * D + kSimtRowsPerCta * kTile); }
size_t simt_smem_dq(int D) { return sizeof(float) * (2 * kSimtRowsPerCta * D + 2 * kTile * (D + 1) + kSimtRowsPerCta * kTile); }
size_t simt_smem_dkdv(int D) {
  return sizeof(float) * (2 * kSimtRowsPerCta * D + 2 * kTile * (D + 1) + 2 * kTile + 2 * kSimtRowsPerCta * kTile);
}

template <int D>
constexpr size_t mma_smem_forward() { return sizeof(bf16) * 3 * kMmaRows * (D + 8); }
template <int D>
constexpr size_t mma_smem_dq() { return sizeof(bf16) * 4 * kMmaRows * (D + 8); }
template <int D>
constexpr size_t mma_smem_dkdv() {
  constexpr int kQ = D <= 64 ? 64 : 32;
  return sizeof(bf16) * (2 * kMmaRows + 2 * kQ) * (D + 8) + sizeof(float) * 2 * kQ;
}

template <int D>
void mma_forward_launch(const Params<bf16>& p, const AttentionDims& d, Stream s) {
  constexpr size_t smem = mma_smem_forward<D>();
  allow_smem(mma_forward<D>, smem);
  mma_forward<D><<<grid_of(d, p.tiles), kMmaThreads, smem, as_cuda(s)>>>(p);
}

template <int D>
void mma_backward_launch(const Params<bf16>& p, const AttentionDims& d, Stream s) {
  allow_smem(mma_backward_dq<D>, mma_smem_dq<D>());
  allow_smem(mma_backward_dkdv<D>, mma_smem_dkdv<D>());
  mma_backward_dq<D><<<grid_of(d, p.tiles), kMmaThreads, mma_smem_dq<D>(), as_cuda(s)>>>(p);
  mma_backward_dkdv<D><<<grid_of(d, p.tiles), kMmaThreads, mma_smem_dkdv<D>(), as_cuda(s)>>>(p);
}

// The head dims with tensor-core kernels, as one switch so each is instantiated once.
template <typename F>
void with_mma_dim(int64_t dim, F&& f) {
  switch (dim) {
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    case 80: f(std::integral_constant<int, 80>{}); break;
    case 96: f(std::integral_constant<int, 96>{}); break;
    default: f(std::integral_constant<int, 128>{}); break;
  }
}

}  // namespace

void attention_forward(DType dtype, const AttentionDims& dims, bool causal, float scale, const void* q, const void* k,
                       const void* v, AttentionLayout in, void* out, AttentionLayout out_layout, float* lse, Stream s) {
  if (dims.batch * dims.heads * dims.seq == 0 || dims.dim == 0) return;
  if (use_mma(dtype, dims.dim, {q, k, v, out}, in, out_layout)) {
    Params<bf16> p = make_params<bf16>(dims, causal, scale, in, out_layout, kMmaRows);
    p.q = static_cast<const bf16*>(q);
    p.k = static_cast<const bf16*>(k);
    p.v = static_cast<const bf16*>(v);
    p.out = static_cast<bf16*>(out);
    p.lse = lse;
    with_mma_dim(dims.dim, [&](auto dim) { mma_forward_launch<decltype(dim)::value>(p, dims, s); });
    return;
  }
  CF_FLOAT_DTYPE(dtype, T, {
    Params<T> p = make_params<T>(dims, causal, scale, in, out_layout, kSimtRowsPerCta);
    p.q = static_cast<const T*>(q);
    p.k = static_cast<const T*>(k);
    p.v = static_cast<const T*>(v);
    p.out = static_cast<T*>(out);
    p.lse = lse;
    const size_t smem = simt_smem_forward(p.dim);
    allow_smem(simt_forward<T>, smem);
    simt_forward<T><<<grid_of(dims, p.tiles), kSimtThreads, smem, as_cuda(s)>>>(p);
  });
}

void attention_backward(DType dtype, const AttentionDims& dims, bool causal, float scale, const void* q, const void* k,
                        const void* v, AttentionLayout in, const void* out, const void* dout, AttentionLayout out_layout,
                        const float* lse, void* dq, void* dk, void* dv, Stream s) {
  if (dims.batch * dims.heads * dims.seq == 0 || dims.dim == 0) return;
  // delta = rowsum(dO * O): written by the dq kernel, read by the dk/dv kernel after it on
  // the same stream; the caching allocator hands the block on only after both.
  const Workspace delta_ws(current_device(), sizeof(float) * static_cast<size_t>(dims.batch * dims.heads * dims.seq), s);
  float* delta = delta_ws.as<float>();
  auto fill = [&](auto& p, auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    p.q = static_cast<const T*>(q);
    p.k = static_cast<const T*>(k);
    p.v = static_cast<const T*>(v);
    p.o = static_cast<const T*>(out);
    p.dout = static_cast<const T*>(dout);
    p.dq = static_cast<T*>(dq);
    p.dk = static_cast<T*>(dk);
    p.dv = static_cast<T*>(dv);
    p.lse = const_cast<float*>(lse);
    p.delta = delta;
  };
  if (use_mma(dtype, dims.dim, {q, k, v, out, dout, dq, dk, dv}, in, out_layout)) {
    Params<bf16> p = make_params<bf16>(dims, causal, scale, in, out_layout, kMmaRows);
    fill(p, static_cast<bf16*>(nullptr));
    with_mma_dim(dims.dim, [&](auto dim) { mma_backward_launch<decltype(dim)::value>(p, dims, s); });
  } else {
    CF_FLOAT_DTYPE(dtype, T, {
      Params<T> p = make_params<T>(dims, causal, scale, in, out_layout, kSimtRowsPerCta);
      fill(p, static_cast<T*>(nullptr));
      const size_t smem_dq = simt_smem_dq(p.dim), smem_dkdv = simt_smem_dkdv(p.dim);
      allow_smem(simt_backward_dq<T>, smem_dq);
      allow_smem(simt_backward_dkdv<T>, smem_dkdv);
      simt_backward_dq<T><<<grid_of(dims, p.tiles), kSimtThreads, smem_dq, as_cuda(s)>>>(p);
      simt_backward_dkdv<T><<<grid_of(dims, p.tiles), kSimtThreads, smem_dkdv, as_cuda(s)>>>(p);
    });
  }
}

}  // namespace cf::cuda
