// Batched GEMM on CUDA (contract in matmul.h):
//   C[b] = (accumulate ? C[b] : 0) + op(A[b]) · op(B[b]) + bias,   op(A) [M, K], op(B) [K, N], C[b] [M, N]
// with transA / transB selecting the stored layouts ([K, M] / [N, K]), batch strides (0: a
// shared 2-D operand), an optional bias [N] and activation (matmul.h) fused into the epilogue, f32 accumulation.
// Floor: 2 * batch * M * N * K FLOPs at the tensor-core rate (bf16) or the FMA rate (f32);
// bytes (batch * (M * K + K * N + M * N) + N) * sizeof(T). Above ~300 FLOP/byte (bf16,
// H100) the FLOPs are the floor; CLIP's projections and MLPs (M = batch x tokens in the
// thousands, N and K 512 to 4096) are well above it.
//
// Kernels:
// 1. gemm_f32_kernel: SIMT. A 64 x 64 tile of C per 256-thread block, K in steps of 16 through
//    shared memory (both operands stored k-major so the inner loop reads rows), 4 x 4 outputs
//    per thread in registers. Global loads are coalesced along whichever dim is contiguous
//    for the given trans flag.
// 2. gemm_bf16_kernel: tensor cores through mma.sync.m16n8k16 (bf16 in, f32 accumulate), for
//    sm_80 and later. A 128 x 128 tile per 256-thread block, 8 warps of 64 x 32, K in steps
//    of 32. Each operand tile keeps in shared memory the orientation it has in global memory
//    (so global reads and shared writes are both 16-byte chunks): k-contiguous tiles give
//    the mma fragments as 32-bit loads, row-contiguous ones (A with transA, B without
//    transB) through ldmatrix.trans, which transposes 8 x 8 blocks on the way to registers.
//    Global loads move 8 elements per thread when the contiguous dim allows (16-byte
//    aligned), element by element with bounds checks otherwise; the next K step is loaded
//    into registers while the current one is multiplied.
// 3. bf16 on Hopper (compute capability 9.x, operands TMA can read): gemm_sm90.cuh's TMA +
//    wgmma mainloop with this file's store epilogue (section 3 below).
// Tails in M, N and K are zero-filled on load and masked on store, so any shape works.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>

#ifndef CLIPFORGE_CUDA_EMULATION
#include <cudaTypedefs.h>
#endif

#include "check.cuh"
#include "elementwise_math.h"
#include "matmul.h"
#include "gemm_sm90.cuh"
#include "mma.cuh"
#include "workspace.cuh"

namespace cf::cuda {
namespace {

constexpr int64_t kMaxGridZ = 65535;

struct Args {
  const void* a;
  const void* b;
  const void* bias;
  void* c;
  int m, n, k;
  int64_t stride_a, stride_b;
  bool accumulate;
  bool vec_a, vec_b;  // bf16 only: 16-byte loads along the operand's contiguous dim are safe
  int tiles_n;
  int64_t batch0;  // batch item of blockIdx.z == 0 (launches are split at 65535 items)
  GemmEpilogue epi;
};

// What every kernel here stores at C[at]: v (the product plus bias and old C) through the
// epilogue of matmul.h, rounded to T wherever the separate ops would store it. aux is indexed
// like C.
template <typename T>
__device__ __forceinline__ void store_c(T* c, int64_t at, float v, const GemmEpilogue& e) {
  if (e.kind == GemmEpilogueKind::None) {
    Elem<T>::store(c, at, v);
    return;
  }
  T product[1];
  Elem<T>::store(product, 0, v);
  const float z = Elem<T>::load(product, 0);
  const bool quick = e.op == UnaryOp::QuickGelu;
  if (e.kind == GemmEpilogueKind::Activation) {
    if (e.aux) static_cast<T*>(e.aux)[at] = product[0];
    Elem<T>::store(c, at, quick ? unary_fn(UnaryOp::QuickGelu, z, 0.0f, 0.0f) : unary_fn(UnaryOp::GeluErf, z, 0.0f, 0.0f));
  } else {
    const float pre = Elem<T>::load(static_cast<const T*>(e.aux), at);
    Elem<T>::store(c, at, z * (quick ? unary_grad(UnaryOp::QuickGelu, pre, 0.0f, 0.0f) : unary_grad(UnaryOp::GeluErf, pre, 0.0f, 0.0f)));
  }
}

// ---------------------------------------------------------------------------------------
// 1. f32, SIMT

constexpr int kF32BM = 64, kF32BN = 64, kF32BK = 16, kF32Threads = 256;

template <bool TA, bool TB>
__global__ void __launch_bounds__(kF32Threads) gemm_f32_kernel(Args p) {
  __shared__ float As[kF32BK][kF32BM + 4];  // op(A)(m, k) at As[k][m]
  __shared__ float Bs[kF32BK][kF32BN + 4];  // op(B)(k, n) at Bs[k][n]
  const int64_t z = p.batch0 + blockIdx.z;
  const float* A = static_cast<const float*>(p.a) + z * p.stride_a;
  const float* B = static_cast<const float*>(p.b) + z * p.stride_b;
  const int64_t c0 = z * static_cast<int64_t>(p.m) * p.n;
  float* C = static_cast<float*>(p.c) + c0;
  const int m0 = (blockIdx.x / p.tiles_n) * kF32BM, n0 = (blockIdx.x % p.tiles_n) * kF32BN;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;

  float acc[4][4] = {};
  for (int k0 = 0; k0 < p.k; k0 += kF32BK) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      // Consecutive threads take consecutive addresses: along k for A [M, K], along m for A [K, M].
      const int mm = TA ? tid % kF32BM : tid / kF32BK + 16 * i;
      const int kk = TA ? tid / kF32BM + 4 * i : tid % kF32BK;
      const int gm = m0 + mm, gk = k0 + kk;
      float v = 0.0f;
      if (gm < p.m && gk < p.k) v = TA ? A[static_cast<int64_t>(gk) * p.m + gm] : A[static_cast<int64_t>(gm) * p.k + gk];
      As[kk][mm] = v;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int nn = TB ? tid / kF32BK + 16 * i : tid % kF32BN;
      const int kk = TB ? tid % kF32BK : tid / kF32BN + 4 * i;
      const int gn = n0 + nn, gk = k0 + kk;
      float v = 0.0f;
      if (gn < p.n && gk < p.k) v = TB ? B[static_cast<int64_t>(gn) * p.k + gk] : B[static_cast<int64_t>(gk) * p.n + gn];
      Bs[kk][nn] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kF32BK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }

  const float* bias = static_cast<const float*>(p.bias);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int gm = m0 + ty + 16 * i;
    if (gm >= p.m) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int gn = n0 + tx + 16 * j;
      if (gn >= p.n) continue;
      const int64_t idx = static_cast<int64_t>(gm) * p.n + gn;
      float v = acc[i][j];
      if (bias) v += bias[gn];
      if (p.accumulate) v += C[idx];
      store_c(static_cast<float*>(p.c), c0 + idx, v, p.epi);
    }
  }
}

// ---------------------------------------------------------------------------------------
// 2. bf16, tensor cores (mma.sync m16n8k16)

constexpr int kBM = 128, kBN = 128, kBK = 32, kThreads = 256;
// Shared-memory layouts of an operand tile, by the operand's contiguous dim in global memory:
//   k-contiguous: [128 rows][kLdsK] (k fastest), fragments read as 32-bit words;
//   row-contiguous: [32 k][kLdsR] (rows fastest), fragments read with ldmatrix.trans.
// The 8-element pads put the rows a fragment load touches on distinct banks (row strides of
// 20 and 68 words), and keep every row 16-byte aligned for the uint4 stores.
constexpr int kLdsK = kBK + 8;
constexpr int kLdsR = kBM + 8;
constexpr int kTileElems = kBM * kLdsK;
static_assert(kBM == kBN && kBK * kLdsR <= kTileElems, "one buffer size fits both layouts");

// One operand tile (128 rows x 32 k) in flight between global and shared memory: 512 chunks
// of 8 elements (16 bytes), two per thread.
struct Stage {
  uint4 v[2];
};

// Chunk c of a tile: 8 consecutive k of one row (KC), or 8 consecutive rows at one k.
template <bool KC>
__device__ __forceinline__ int chunk_row(int c) {
  return KC ? c / 4 : (c % 16) * 8;
}
template <bool KC>
__device__ __forceinline__ int chunk_k(int c) {
  return KC ? (c % 4) * 8 : c / 16;
}

// Loads rows [r0, r0 + 128) x k [k0, k0 + 32) of an operand with `rows` rows and K columns,
// stored [rows, K] when KC, else [K, rows]. Threads next to each other read next to each
// other along the contiguous dim. Out-of-range elements read as 0.
template <bool KC>
__device__ __forceinline__ void load_tile(Stage& s, const uint16_t* src, bool vec, int rows, int K, int r0, int k0) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int c = threadIdx.x + kThreads * i;
    const int row = r0 + chunk_row<KC>(c), k = k0 + chunk_k<KC>(c);
    const int64_t off = KC ? static_cast<int64_t>(row) * K + k : static_cast<int64_t>(k) * rows + row;
    if (vec) {
      // The contiguous extent is a multiple of 8, so a chunk is wholly in range or out.
      s.v[i] = row < rows && k < K ? *reinterpret_cast<const uint4*>(src + off) : make_uint4(0, 0, 0, 0);
    } else {
      uint16_t e[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const bool ok = KC ? (row < rows && k + j < K) : (row + j < rows && k < K);
        e[j] = ok ? src[off + j] : 0;  // element j of the chunk is the next along the contiguous dim
      }
      s.v[i] = make_uint4(e[0] | (uint32_t(e[1]) << 16), e[2] | (uint32_t(e[3]) << 16), e[4] | (uint32_t(e[5]) << 16),
                          e[6] | (uint32_t(e[7]) << 16));
    }
  }
}

// Writes a staged tile into shared memory; a chunk is contiguous in both layouts.
template <bool KC>
__device__ __forceinline__ void store_tile(const Stage& s, uint16_t* smem) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int c = threadIdx.x + kThreads * i;
    const int at = KC ? chunk_row<KC>(c) * kLdsK + chunk_k<KC>(c) : chunk_k<KC>(c) * kLdsR + chunk_row<KC>(c);
    *reinterpret_cast<uint4*>(smem + at) = s.v[i];
  }
}

// The bf16 epilogue of every kernel here: c[at] = product (+ bias) (+ old c[at]) through the
// activation epilogue, bias pointing at the column's entry.
__device__ __forceinline__ void store_bf16(bf16* c, int64_t at, float v, const bf16* bias, bool accumulate, const GemmEpilogue& e) {
  if (bias) v += bf16_to_float(*bias);
  if (accumulate) v += bf16_to_float(c[at]);
  store_c(c, at, v, e);
}

__device__ __forceinline__ uint32_t lds32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// The A fragment (16 x 16, rows m0.., k ks..) in mma.m16n8k16 order: a[0] (m g, k 2t..),
// a[1] (m g + 8), a[2] (k + 8), a[3] (m g + 8, k + 8), with g = lane / 4, t = lane % 4.
template <bool KC>
__device__ __forceinline__ void load_a_frag(uint32_t (&a)[4], const uint16_t* smem, int m0, int ks, int lane) {
  if (KC) {
    const uint16_t* r = smem + (m0 + lane / 4) * kLdsK + ks + 2 * (lane % 4);
    a[0] = lds32(r);
    a[1] = lds32(r + 8 * kLdsK);
    a[2] = lds32(r + 8);
    a[3] = lds32(r + 8 * kLdsK + 8);
  } else {
    // Matrix i covers m 8 (i % 2) and k 8 (i / 2) of the fragment; smem rows are k.
    const int i = lane / 8;
    ldmatrix_x4_trans(a, smem + (ks + lane % 8 + 8 * (i / 2)) * kLdsR + m0 + 8 * (i % 2));
  }
}

// The B fragments of two adjacent 8-column blocks (n0.. and n0 + 8..; k ks..): b0[0] (n g,
// k 2t..), b0[1] (k + 8), and the same for b1.
template <bool KC>
__device__ __forceinline__ void load_b_frags(uint32_t (&b0)[2], uint32_t (&b1)[2], const uint16_t* smem, int n0, int ks, int lane) {
  if (KC) {
    const uint16_t* r = smem + (n0 + lane / 4) * kLdsK + ks + 2 * (lane % 4);
    b0[0] = lds32(r);
    b0[1] = lds32(r + 8);
    b1[0] = lds32(r + 8 * kLdsK);
    b1[1] = lds32(r + 8 * kLdsK + 8);
  } else {
    // Matrix i covers k 8 (i % 2) and n 8 (i / 2); smem rows are k.
    const int i = lane / 8;
    uint32_t d[4];
    ldmatrix_x4_trans(d, smem + (ks + lane % 8 + 8 * (i % 2)) * kLdsR + n0 + 8 * (i / 2));
    b0[0] = d[0];
    b0[1] = d[1];
    b1[0] = d[2];
    b1[1] = d[3];
  }
}

// Activation: whether p.epi has one. Its math in a variant of its own keeps the plain
// kernels' registers as they were (with it inline, ptxas spilled in the TA && TB variant).
template <bool TA, bool TB, bool Activation>
__global__ void __launch_bounds__(kThreads) gemm_bf16_kernel(Args p) {
  // op(A) is k-contiguous when A is stored [M, K]; op(B) when B is stored [N, K].
  constexpr bool AK = !TA, BK = TB;
  __shared__ __align__(16) uint16_t As[kTileElems];
  __shared__ __align__(16) uint16_t Bs[kTileElems];
  const int64_t z = p.batch0 + blockIdx.z;
  const uint16_t* A = static_cast<const uint16_t*>(p.a) + z * p.stride_a;
  const uint16_t* B = static_cast<const uint16_t*>(p.b) + z * p.stride_b;
  const int m0 = (blockIdx.x / p.tiles_n) * kBM, n0 = (blockIdx.x % p.tiles_n) * kBN;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 4) * 64, wn = (warp % 4) * 32;  // this warp's 64 x 32 of the tile

  float acc[4][4][4] = {};
  Stage sa, sb;
  load_tile<AK>(sa, A, p.vec_a, p.m, p.k, m0, 0);
  load_tile<BK>(sb, B, p.vec_b, p.n, p.k, n0, 0);
  store_tile<AK>(sa, As);
  store_tile<BK>(sb, Bs);
  __syncthreads();

  for (int k0 = 0; k0 < p.k; k0 += kBK) {
    const bool more = k0 + kBK < p.k;
    if (more) {
      load_tile<AK>(sa, A, p.vec_a, p.m, p.k, m0, k0 + kBK);
      load_tile<BK>(sb, B, p.vec_b, p.n, p.k, n0, k0 + kBK);
    }
#pragma unroll
    for (int ks = 0; ks < kBK; ks += 16) {
      uint32_t af[4][4], bf[4][2];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) load_a_frag<AK>(af[mi], As, wm + mi * 16, ks, lane);
#pragma unroll
      for (int ni = 0; ni < 4; ni += 2) load_b_frags<BK>(bf[ni], bf[ni + 1], Bs, wn + ni * 8, ks, lane);
#pragma unroll
      for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) mma_bf16(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
    }
    __syncthreads();
    if (more) {
      store_tile<AK>(sa, As);
      store_tile<BK>(sb, Bs);
      __syncthreads();
    }
  }

  // Accumulator acc[mi][ni][2 h + e] is C(m g + 8 h, n 2 t + e) of block (mi, ni).
  const int g = lane / 4, t = lane % 4;
  const int64_t c0 = z * static_cast<int64_t>(p.m) * p.n;
  const bf16* bias = static_cast<const bf16*>(p.bias);
  const GemmEpilogue epi = Activation ? p.epi : GemmEpilogue{};
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gm = m0 + wm + mi * 16 + g + 8 * h;
      if (gm >= p.m) continue;
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int gn = n0 + wn + ni * 8 + 2 * t + e;
          if (gn >= p.n) continue;
          store_bf16(static_cast<bf16*>(p.c), c0 + static_cast<int64_t>(gm) * p.n + gn, acc[mi][ni][2 * h + e], bias ? bias + gn : nullptr,
                     p.accumulate, epi);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. bf16 on Hopper (sm_90a): TMA + wgmma, warp-specialized and persistent (gemm_sm90.cuh),
// with this epilogue: bias and the old C added and rounded to bf16 (or kept in f32 for the
// contrastive losses' gradient updates) straight from the accumulator registers. Split K
// (a weight gradient: M and N a few hundred, K the batch's tokens) writes each slice's f32
// partials to a workspace instead, and a second kernel sums them in slice order
// (deterministic) and applies the same store.
struct StoreEpilogue {
  const bf16* bias;  // bf16 output only
  void* c;           // bf16, or f32 when f32_out
  float* partial;    // split K: [splits][batch][m][n] f32, else null
  int64_t m, n, batch;
  bool accumulate, f32_out;
  GemmEpilogue epi;  // bf16 output only

  // Element `at` of C, in column `col`.
  __device__ __forceinline__ void store(int64_t at, int64_t col, float v) const {
    if (f32_out) {
      float* out = static_cast<float*>(c) + at;
      *out = accumulate ? *out + v : v;
    } else {
      store_bf16(static_cast<bf16*>(c), at, v, bias ? bias + col : nullptr, accumulate, epi);
    }
  }

  // acc[4 j + 2 h + e] is C(row0 + g + 8 h, n0 + 8 j + 2 t + e).
  template <int N>
  __device__ __forceinline__ void operator()(const Sm90Work& t, int row0, int lane, const float (&acc)[N]) const {
    const int g = lane / 4, t4 = lane % 4;
    const int64_t mn = m * n;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gm = row0 + g + 8 * h;
      if (gm >= m) continue;
      const int64_t row = t.z * mn + int64_t(gm) * n;
#pragma unroll
      for (int j = 0; j < N / 4; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int gn = t.n0 + 8 * j + 2 * t4 + e;
          if (gn >= n) continue;
          if (partial) partial[t.split * batch * mn + row + gn] = acc[4 * j + 2 * h + e];
          else store(row + gn, gn, acc[4 * j + 2 * h + e]);
        }
    }
  }
};

// Split K's second pass: C = sum of the slices in order (+ bias, + old C), stored once.
__global__ void gemm_split_sum_kernel(const float* partial, int splits, int64_t elems, StoreEpilogue out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < elems; i += int64_t(gridDim.x) * blockDim.x) {
    float v = 0.0f;
    for (int s = 0; s < splits; ++s) v += partial[s * elems + i];
    out.store(i, i % out.n, v);
  }
}

template <typename F>
void with_trans(bool ta, bool tb, F&& f) {
  using T = std::true_type;
  using N = std::false_type;
  if (ta) {
    if (tb) f(T{}, T{});
    else f(T{}, N{});
  } else {
    if (tb) f(N{}, T{});
    else f(N{}, N{});
  }
}

// ---- Hopper path: eligibility, schedule, tensor maps -------------------------------------

// Which bf16 kernel gemm() runs on a Hopper GPU; tests switch it to cover both.
std::atomic<bool> g_force_mma_sync{false};

// TMA reads a tensor whose base is 16-byte aligned and whose rows and batch items start a
// multiple of 16 bytes apart (the rule of the mma.sync kernel's 16-byte loads); K = 0 has
// nothing to load (the mma.sync kernel writes bias or C alone).
bool sm90_fits(const GemmShape& s, const void* a, const void* b) {
  return s.k > 0 && vec_ok(a, s.trans_a ? s.m : s.k, s.stride_a) && vec_ok(b, s.trans_b ? s.k : s.n, s.stride_b);
}

template <int BN>
void launch_sm90(bool ta, bool tb, const TmaDesc& ma, const TmaDesc& mb, const Sm90Args& p, const StoreEpilogue& epi, int sms,
                 cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(p.work, sms));
  with_trans(ta, tb, [&](auto tA, auto tB) {
    allow_smem(gemm_sm90_kernel<BN, tA.value, tB.value, StoreEpilogue>, Sm90<BN>::kSmemBytes);
    gemm_sm90_kernel<BN, tA.value, tB.value, StoreEpilogue><<<grid, kSm90Threads, Sm90<BN>::kSmemBytes, stream>>>(ma, mb, p, epi);
  });
}

// C = op(A) op(B) (+ bias, + old C) on the Hopper kernel: operands `lda` / `ldb` elements per
// row, batch items stride_a / stride_b apart (0: shared), C dense [batch][m][n].
void gemm_sm90(const GemmShape& s, const void* a, int64_t lda, const void* b, int64_t ldb, StoreEpilogue epi, int device,
               Stream stream) {
  const int sms = sm_count(device);
  const Sm90Plan plan = plan_sm90(s.m, s.n, s.k, s.batch, sms, {256, 128}, 16);
  const TmaDesc ma = sm90_operand_map("matmul", a, !s.trans_a, s.m, s.k, lda, s.stride_a, s.batch, kSm90BM);
  const TmaDesc mb = sm90_operand_map("matmul", b, s.trans_b, s.n, s.k, ldb, s.stride_b, s.batch, plan.bn);
  const Sm90Args p = sm90_args(plan, s.k, s.stride_a != 0, s.stride_b != 0);
  const int64_t elems = s.batch * s.m * s.n;
  Workspace partial(device, plan.splits > 1 ? static_cast<size_t>(plan.splits * elems) * sizeof(float) : 0, stream);
  StoreEpilogue tile = epi;
  tile.partial = partial.as<float>();
  if (plan.bn == 256) launch_sm90<256>(s.trans_a, s.trans_b, ma, mb, p, tile, sms, as_cuda(stream));
  else launch_sm90<128>(s.trans_a, s.trans_b, ma, mb, p, tile, sms, as_cuda(stream));
  if (plan.splits > 1) gemm_split_sum_kernel<<<grid_1d(elems, 256), 256, 0, as_cuda(stream)>>>(tile.partial, plan.splits, elems, epi);
}

StoreEpilogue store_epilogue(const GemmShape& s, void* c, const void* bias, bool f32_out) {
  StoreEpilogue e;
  e.bias = static_cast<const bf16*>(bias);
  e.c = c;
  e.partial = nullptr;
  e.m = s.m;
  e.n = s.n;
  e.batch = s.batch;
  e.accumulate = s.accumulate;
  e.f32_out = f32_out;
  e.epi = s.epilogue;
  return e;
}

}  // namespace

#ifndef CLIPFORGE_CUDA_EMULATION
std::string encode_tma_bf16(TmaDesc* desc, const void* base, const uint64_t (&dims)[3], const uint64_t (&strides)[2],
                            const uint32_t (&box)[3]) {
  // The driver's cuTensorMapEncodeTiled, found through the runtime so the addon needs no libcuda at link time.
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
#if CUDART_VERSION >= 12050
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &found);
#endif
    return e == cudaSuccess && found == cudaDriverEntryPointSuccess ? reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn)
                                                                     : nullptr;
  }();
  if (!encode) return "the driver has no cuTensorMapEncodeTiled";
  const cuuint64_t dim[3] = {dims[0], dims[1], dims[2]};
  const cuuint64_t stride[2] = {strides[0], strides[1]};
  const cuuint32_t box_dim[3] = {box[0], box[1], box[2]};
  const cuuint32_t unit[3] = {1, 1, 1};
  const CUresult r = encode(desc, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dim, stride, box_dim, unit,
                            CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? "" : "cuTensorMapEncodeTiled failed with CUresult " + std::to_string(static_cast<int>(r));
}
#endif

void gemm(DType dtype, const void* a, const void* b, const void* bias, void* c, const GemmShape& shape, Stream stream) {
  const GemmShape s = fold_shared_batch(shape);
  if (s.batch == 0 || s.m == 0 || s.n == 0) return;
  if (s.m > INT_MAX || s.n > INT_MAX || s.k > INT_MAX)
    throw Error("matmul: M, N and K must each be below 2^31 on CUDA, got " + std::to_string(s.m) + ", " + std::to_string(s.n) + ", " +
                std::to_string(s.k));
  const bool is_bf16 = dtype == DType::BF16;
  if (!is_bf16 && dtype != DType::F32) throw Error(std::string("matmul: unsupported dtype ") + dtype_name(dtype));
  if (is_bf16 && sm90_fits(s, a, b)) {
    const int device = current_device();
    if (sm90_enabled(device)) {
      gemm_sm90(s, a, s.trans_a ? s.m : s.k, b, s.trans_b ? s.k : s.n, store_epilogue(s, c, bias, false), device, stream);
      return;
    }
  }
  const int bm = is_bf16 ? kBM : kF32BM, bn = is_bf16 ? kBN : kF32BN;
  const int64_t tiles_m = (s.m + bm - 1) / bm, tiles_n = (s.n + bn - 1) / bn;
  if (tiles_m * tiles_n > INT_MAX)
    throw Error("matmul: " + std::to_string(s.m) + " x " + std::to_string(s.n) + " output is too large for one launch");

  Args p;
  p.a = a;
  p.b = b;
  p.bias = bias;
  p.c = c;
  p.m = static_cast<int>(s.m);
  p.n = static_cast<int>(s.n);
  p.k = static_cast<int>(s.k);
  p.stride_a = s.stride_a;
  p.stride_b = s.stride_b;
  p.accumulate = s.accumulate;
  p.vec_a = vec_ok(a, s.trans_a ? s.m : s.k, s.stride_a);
  p.vec_b = vec_ok(b, s.trans_b ? s.k : s.n, s.stride_b);
  p.tiles_n = static_cast<int>(tiles_n);
  p.epi = s.epilogue;
  for (int64_t b0 = 0; b0 < s.batch; b0 += kMaxGridZ) {
    p.batch0 = b0;
    const dim3 grid(static_cast<unsigned>(tiles_m * tiles_n), 1, static_cast<unsigned>(std::min(kMaxGridZ, s.batch - b0)));
    // The trans flags are template arguments: each of the four layouts gets its own index
    // arithmetic, and ptxas keeps every variant free of spills.
    with_trans(s.trans_a, s.trans_b, [&](auto ta, auto tb) {
      if (is_bf16 && s.epilogue.kind != GemmEpilogueKind::None) {
        gemm_bf16_kernel<ta.value, tb.value, true><<<grid, kThreads, 0, as_cuda(stream)>>>(p);
      } else if (is_bf16) {
        gemm_bf16_kernel<ta.value, tb.value, false><<<grid, kThreads, 0, as_cuda(stream)>>>(p);
      } else {
        gemm_f32_kernel<ta.value, tb.value><<<grid, kF32Threads, 0, as_cuda(stream)>>>(p);
      }
    });
  }
}

void force_mma_sync_gemm(bool force) { g_force_mma_sync.store(force, std::memory_order_relaxed); }

bool sm90_enabled(int device) { return !g_force_mma_sync.load(std::memory_order_relaxed) && hopper(device); }

const char* gemm_kernel_name(int device) { return sm90_enabled(device) ? "wgmma + TMA (sm_90a)" : "mma.sync (sm_80)"; }

void gemm_sm90_f32(const void* a, int64_t lda, bool trans_a, const void* b, int64_t ldb, bool trans_b, int64_t m, int64_t n, int64_t k,
                   float* c, bool accumulate, Stream stream) {
  GemmShape s;
  s.m = m;
  s.n = n;
  s.k = k;
  s.trans_a = trans_a;
  s.trans_b = trans_b;
  s.accumulate = accumulate;
  gemm_sm90(s, a, lda, b, ldb, store_epilogue(s, c, nullptr, true), current_device(), stream);
}

}  // namespace cf::cuda
