// Batched GEMM on CUDA (contract in matmul.h):
//   C[b] = (accumulate ? C[b] : 0) + op(A[b]) · op(B[b]) + bias,   op(A) [M, K], op(B) [K, N], C[b] [M, N]
// with transA / transB selecting the stored layouts ([K, M] / [N, K]), batch strides (0: a
// shared 2-D operand), an optional bias [N] fused into the epilogue, f32 accumulation.
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
#include "matmul.h"
#include "mma.cuh"
#include "wgmma.cuh"
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
};

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
  float* C = static_cast<float*>(p.c) + z * static_cast<int64_t>(p.m) * p.n;
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
      C[idx] = v;
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

// The bf16 epilogue of every kernel here: *c = product (+ *bias) (+ old *c), rounded once.
__device__ __forceinline__ void store_bf16(bf16* c, float v, const bf16* bias, bool accumulate) {
  if (bias) v += bf16_to_float(*bias);
  if (accumulate) v += bf16_to_float(*c);
  *c = float_to_bf16(v);
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

template <bool TA, bool TB>
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
  bf16* C = static_cast<bf16*>(p.c) + z * static_cast<int64_t>(p.m) * p.n;
  const bf16* bias = static_cast<const bf16*>(p.bias);
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
          store_bf16(C + static_cast<int64_t>(gm) * p.n + gn, acc[mi][ni][2 * h + e], bias ? bias + gn : nullptr, p.accumulate);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. bf16 on Hopper (sm_90a): TMA + wgmma, warp-specialized and persistent.
//
// A 128 x BN tile of C (BN 128 or 256) per work item, K in blocks of 64 through a ring of
// kStages shared-memory stages. Three warpgroups: the first issues the TMA loads of each
// stage (one thread; the others leave after giving up their registers), the other two each
// multiply 64 rows of the tile by the whole BN with wgmma m64nBNk16, f32 accumulators in
// registers. Each stage has a "full" mbarrier (TMA's transaction bytes land) and an "empty"
// one (every consumer warp is done reading it), so loads run up to kStages blocks ahead of the
// products and across tile boundaries. The grid holds one block per SM and walks the work
// items, so the next tile's loads overlap this tile's epilogue.
//
// Operand tiles keep their global orientation (TMA copies boxes, it does not transpose):
// k-contiguous operands are K-major tiles (one box of 64 k x rows), row-contiguous ones are
// MN-major (boxes of 64 rows x 64 k, one per 64 rows), and wgmma's transpose flags take it
// from there. The epilogue adds bias and the old C and rounds to bf16 straight from the
// accumulator registers.
//
// Split K: when the output has too few tiles to fill the SMs (a weight gradient: M and N a
// few hundred, K the batch's tokens), each tile's K range is cut into `splits` slices whose
// f32 partials go to a workspace, and a second kernel sums them in slice order (deterministic)
// and applies the epilogue.
//
// Floor per work item: 2 * 128 * BN * 64 FLOPs per stage against (128 + BN) * 64 * 2 bytes
// from L2: 64 (BN 128) or 85 (BN 256) FLOP/byte.

constexpr int kSm90BM = 128, kSm90BK = 64, kSm90Threads = 384;

template <int BN>
struct Sm90 {
  static constexpr int kStages = BN == 256 ? 4 : 6;
  static constexpr int kABytes = kSm90BM * kSm90BK * 2, kBBytes = BN * kSm90BK * 2;
  static constexpr int kStageBytes = kABytes + kBBytes;
  // The stages, 1024-byte aligned for the swizzle, then the full and empty barriers; the
  // extra 1024 bytes let the kernel align the dynamic shared memory base itself.
  static constexpr size_t kSmemBytes = size_t(kStages) * kStageBytes + 2 * kStages * sizeof(uint64_t) + 1024;
};

struct Sm90Args {
  const bf16* bias;
  bf16* c;
  float* partial;  // split K: [splits][batch][m][n] f32, else null
  int m, n, k;
  int tiles_m, tiles_n, splits, kblocks_per_split;
  int64_t batch;
  int64_t work;  // tiles_m * tiles_n * batch * splits
  bool accumulate;
  bool batched_a, batched_b;  // the operand has its own matrix per batch item (else shared)
};

#if CF_SM90_DEVICE_CODE
constexpr int kSm90AtomBytes = 64 * 128;  // an MN-major box: 64 k rows of 128 bytes

struct Sm90Work {
  int m0, n0, z, split, kb0, kb1;
};

template <int BN>
__device__ __forceinline__ Sm90Work sm90_work(const Sm90Args& p, int64_t w, int kblocks) {
  Sm90Work r;
  r.split = static_cast<int>(w % p.splits);
  const int64_t tile = w / p.splits;
  const int64_t per_batch = int64_t(p.tiles_m) * p.tiles_n;
  r.z = static_cast<int>(tile / per_batch);
  const int64_t in_batch = tile % per_batch;
  r.m0 = static_cast<int>(in_batch / p.tiles_n) * kSm90BM;
  r.n0 = static_cast<int>(in_batch % p.tiles_n) * BN;
  r.kb0 = r.split * p.kblocks_per_split;
  r.kb1 = min(kblocks, r.kb0 + p.kblocks_per_split);
  return r;
}
#endif

template <int BN, bool TA, bool TB>
__global__ void __launch_bounds__(kSm90Threads, 1)
    gemm_sm90_kernel(const __grid_constant__ TmaDesc map_a, const __grid_constant__ TmaDesc map_b, Sm90Args p) {
#if CF_SM90_DEVICE_CODE
  using Cfg = Sm90<BN>;
  constexpr int kStages = Cfg::kStages;
  // op(A) is MN-major when A is stored [K, M]; op(B) when B is stored [K, N].
  constexpr bool AMN = TA, BMN = !TB;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + size_t(kStages) * Cfg::kStageBytes);
  uint64_t* empty = full + kStages;
  const int kblocks = (p.k + kSm90BK - 1) / kSm90BK;

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbar_init(&full[s], 1);
      // One arrival per consumer warp, each after its own wgmma.wait_group: a stage is free
      // only when every warp has seen its products done.
      mbar_init(&empty[s], 8);
    }
    fence_barrier_init();
  }
  __syncthreads();

  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    // Producer: a thread's worth of work, so the warpgroup keeps few registers.
    setmaxnreg_dec<40>();
    if (threadIdx.x != 0) return;
    int stage = 0;
    uint32_t phase = 0;
    for (int64_t w = blockIdx.x; w < p.work; w += gridDim.x) {
      const Sm90Work t = sm90_work<BN>(p, w, kblocks);
      const int za = p.batched_a ? t.z : 0, zb = p.batched_b ? t.z : 0;
      for (int kb = t.kb0; kb < t.kb1; ++kb) {
        mbar_wait(&empty[stage], phase ^ 1);
        unsigned char* a = smem + size_t(stage) * Cfg::kStageBytes;
        unsigned char* b = a + Cfg::kABytes;
        mbar_arrive_expect_tx(&full[stage], Cfg::kStageBytes);
        const int k0 = kb * kSm90BK;
        if (AMN) {
          for (int h = 0; h < kSm90BM / 64; ++h) tma_load_3d(a + h * kSm90AtomBytes, &map_a, &full[stage], t.m0 + 64 * h, k0, za);
        } else {
          tma_load_3d(a, &map_a, &full[stage], k0, t.m0, za);
        }
        if (BMN) {
          for (int h = 0; h < BN / 64; ++h) tma_load_3d(b + h * kSm90AtomBytes, &map_b, &full[stage], t.n0 + 64 * h, k0, zb);
        } else {
          tma_load_3d(b, &map_b, &full[stage], k0, t.n0, zb);
        }
        if (++stage == kStages) {
          stage = 0;
          phase ^= 1;
        }
      }
    }
    return;
  }

  // Consumers: warpgroup c = wg - 1 owns rows [64 c, 64 c + 64) of the tile.
  setmaxnreg_inc<232>();
  const int c = wg - 1, lead = threadIdx.x % 32 == 0;
  const int warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  float acc[BN / 2];
  int stage = 0;
  uint32_t phase = 0;
  for (int64_t w = blockIdx.x; w < p.work; w += gridDim.x) {
    const Sm90Work t = sm90_work<BN>(p, w, kblocks);
    int prev = -1;
    for (int kb = t.kb0; kb < t.kb1; ++kb) {
      mbar_wait(&full[stage], phase);
      const unsigned char* a = smem + size_t(stage) * Cfg::kStageBytes;
      const unsigned char* b = a + Cfg::kABytes;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kSm90BK / 16; ++kk) {
        // K-major: 16 k are 32 bytes along a row; MN-major: 16 k rows are 2048 bytes.
        const uint64_t da = AMN ? wgmma_desc(a + c * kSm90AtomBytes + kk * 2048, kSm90AtomBytes, 1024)
                                : wgmma_desc(a + c * 64 * 128 + kk * 32, 16, 1024);
        const uint64_t db = BMN ? wgmma_desc(b + kk * 2048, kSm90AtomBytes, 1024) : wgmma_desc(b + kk * 32, 16, 1024);
        wgmma_bf16<BN, AMN, BMN>(acc, da, db, kb > t.kb0 || kk > 0);
      }
      wgmma_commit();
      // The previous block's products are done once at most this one is in flight: its stage
      // goes back to the producer.
      wgmma_wait<1>();
      if (prev >= 0 && lead) mbar_arrive(&empty[prev]);
      prev = stage;
      if (++stage == kStages) {
        stage = 0;
        phase ^= 1;
      }
    }
    wgmma_wait<0>();
    wgmma_fence_operands(acc);
    if (prev >= 0 && lead) mbar_arrive(&empty[prev]);

    // acc[4 j + 2 h + e] is C(row g + 8 h of this warp's 16, column 8 j + 2 t + e).
    const int64_t mn = int64_t(p.m) * p.n;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gm = t.m0 + 64 * c + 16 * warp + g + 8 * h;
      if (gm >= p.m) continue;
      const int64_t row = t.z * mn + int64_t(gm) * p.n;
      if (p.partial) {
        float* out = p.partial + t.split * p.batch * mn + row;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int gn = t.n0 + 8 * j + 2 * t4 + e;
            if (gn < p.n) out[gn] = acc[4 * j + 2 * h + e];
          }
        continue;
      }
      bf16* out = p.c + row;
#pragma unroll
      for (int j = 0; j < BN / 8; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int gn = t.n0 + 8 * j + 2 * t4 + e;
          if (gn < p.n) store_bf16(out + gn, acc[4 * j + 2 * h + e], p.bias ? p.bias + gn : nullptr, p.accumulate);
        }
    }
  }
#endif
}

// Split K's second pass: C = sum of the slices in order (+ bias, + old C), rounded once.
__global__ void gemm_split_sum_kernel(const float* partial, int splits, int64_t elems, int n, const bf16* bias, bool accumulate,
                                      bf16* c) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < elems; i += int64_t(gridDim.x) * blockDim.x) {
    float v = 0.0f;
    for (int s = 0; s < splits; ++s) v += partial[s * elems + i];
    store_bf16(c + i, v, bias ? bias + i % n : nullptr, accumulate);
  }
}

// 16-byte loads of an operand are safe when its contiguous extent, its batch stride and its
// base address all keep every 8-element chunk 16-byte aligned.
bool vec_ok(const void* base, int64_t contiguous, int64_t stride) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && contiguous % 8 == 0 && stride % 8 == 0;
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

bool hopper(int device) {
  int major = 0;
  CF_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major == 9;
}

// TMA reads a tensor whose base is 16-byte aligned and whose rows and batch items start a
// multiple of 16 bytes apart (the rule of the mma.sync kernel's 16-byte loads); K = 0 has
// nothing to load (the mma.sync kernel writes bias or C alone).
bool sm90_fits(const GemmShape& s, const void* a, const void* b) {
  return s.k > 0 && vec_ok(a, s.trans_a ? s.m : s.k, s.stride_a) && vec_ok(b, s.trans_b ? s.k : s.n, s.stride_b);
}

struct Sm90Plan {
  int bn = 256, splits = 1, kblocks_per_split = 0;
  int64_t tiles_m = 0, tiles_n = 0, work = 0;
};

// Picks the tile width and the K split by a cost model: waves of work items over the SMs,
// each item's time proportional to its FLOPs (a 128-wide tile at 0.85 of a 256-wide one's
// rate: it re-reads A from L2 twice as often), plus the split's f32 partials written and read
// back (at the ratio of the H100's tensor-core rate to its memory bandwidth, ~265 FLOP per byte).
// The constants are estimates until measured on the GPU.
Sm90Plan plan_sm90(const GemmShape& s, int sms) {
  const int64_t kblocks = (s.k + kSm90BK - 1) / kSm90BK;
  Sm90Plan best;
  double best_cost = 0;
  for (int bn : {256, 128}) {
    const int64_t tiles_m = (s.m + kSm90BM - 1) / kSm90BM, tiles_n = (s.n + bn - 1) / bn;
    const int64_t tiles = tiles_m * tiles_n * s.batch;
    for (int splits = 1; splits <= 16; ++splits) {
      const int64_t per = (kblocks + splits - 1) / splits;
      if (splits > 1 && (per < 4 || (splits - 1) * per >= kblocks)) break;  // each slice >= 256 k, none empty
      const int64_t work = tiles * splits;
      const double waves = static_cast<double>((work + sms - 1) / sms);
      const double item = 2.0 * kSm90BM * bn * per * kSm90BK / (bn == 256 ? 1.0 : 0.85);
      const double partial_bytes = splits > 1 ? 2.0 * 4.0 * splits * s.batch * s.m * s.n : 0.0;
      const double cost = waves * item * sms + 265.0 * partial_bytes;
      if (best.work == 0 || cost < best_cost) {
        best_cost = cost;
        best.bn = bn;
        best.splits = splits;
        best.kblocks_per_split = static_cast<int>(per);
        best.tiles_m = tiles_m;
        best.tiles_n = tiles_n;
        best.work = work;
      }
    }
  }
  return best;
}

// The tensor map of one operand: dims (contiguous, other, batch); a shared operand is one
// batch item. Boxes: 64 k x `rows` rows for a k-contiguous operand, 64 rows x 64 k otherwise.
TmaDesc operand_map(const void* base, bool k_contiguous, int64_t rows, int64_t k, int64_t batch_stride, int64_t batch, int box_rows) {
  const uint64_t contiguous = k_contiguous ? k : rows, other = k_contiguous ? rows : k;
  const uint64_t row_bytes = contiguous * 2, matrix_bytes = (row_bytes * other + 15) / 16 * 16;
  const uint64_t dims[3] = {contiguous, other, static_cast<uint64_t>(batch_stride ? batch : 1)};
  const uint64_t strides[2] = {row_bytes, batch_stride ? static_cast<uint64_t>(batch_stride) * 2 : matrix_bytes};
  const uint32_t box[3] = {64, static_cast<uint32_t>(k_contiguous ? box_rows : 64), 1};
  TmaDesc desc;
  const std::string why = encode_tma_bf16(&desc, base, dims, strides, box);
  if (!why.empty()) throw Error("matmul: TMA descriptor for a " + std::to_string(dims[0]) + " x " + std::to_string(dims[1]) + " x " +
                                std::to_string(dims[2]) + " bf16 operand: " + why);
  return desc;
}

template <int BN>
void launch_sm90(bool ta, bool tb, const TmaDesc& ma, const TmaDesc& mb, const Sm90Args& p, int sms, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(p.work, sms));
  with_trans(ta, tb, [&](auto tA, auto tB) {
    allow_smem(gemm_sm90_kernel<BN, tA.value, tB.value>, Sm90<BN>::kSmemBytes);
    gemm_sm90_kernel<BN, tA.value, tB.value><<<grid, kSm90Threads, Sm90<BN>::kSmemBytes, stream>>>(ma, mb, p);
  });
}

void gemm_sm90(const GemmShape& s, const void* a, const void* b, const void* bias, void* c, int device, Stream stream) {
  const int sms = sm_count(device);
  const Sm90Plan plan = plan_sm90(s, sms);
  const TmaDesc ma = operand_map(a, !s.trans_a, s.m, s.k, s.stride_a, s.batch, kSm90BM);
  const TmaDesc mb = operand_map(b, s.trans_b, s.n, s.k, s.stride_b, s.batch, plan.bn);
  Sm90Args p;
  p.bias = static_cast<const bf16*>(bias);
  p.c = static_cast<bf16*>(c);
  p.m = static_cast<int>(s.m);
  p.n = static_cast<int>(s.n);
  p.k = static_cast<int>(s.k);
  p.tiles_m = static_cast<int>(plan.tiles_m);
  p.tiles_n = static_cast<int>(plan.tiles_n);
  p.splits = plan.splits;
  p.kblocks_per_split = plan.kblocks_per_split;
  p.batch = s.batch;
  p.work = plan.work;
  p.accumulate = s.accumulate;
  p.batched_a = s.stride_a != 0;
  p.batched_b = s.stride_b != 0;
  const int64_t elems = s.batch * s.m * s.n;
  Workspace partial(device, plan.splits > 1 ? static_cast<size_t>(plan.splits * elems) * sizeof(float) : 0, stream);
  p.partial = partial.as<float>();
  if (plan.bn == 256) launch_sm90<256>(s.trans_a, s.trans_b, ma, mb, p, sms, as_cuda(stream));
  else launch_sm90<128>(s.trans_a, s.trans_b, ma, mb, p, sms, as_cuda(stream));
  if (plan.splits > 1)
    gemm_split_sum_kernel<<<grid_1d(elems, 256), 256, 0, as_cuda(stream)>>>(p.partial, plan.splits, elems, p.n, p.bias, p.accumulate,
                                                                         p.c);
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
  if (is_bf16 && !g_force_mma_sync.load(std::memory_order_relaxed) && sm90_fits(s, a, b)) {
    const int device = current_device();
    if (hopper(device)) {
      gemm_sm90(s, a, b, bias, c, device, stream);
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
  for (int64_t b0 = 0; b0 < s.batch; b0 += kMaxGridZ) {
    p.batch0 = b0;
    const dim3 grid(static_cast<unsigned>(tiles_m * tiles_n), 1, static_cast<unsigned>(std::min(kMaxGridZ, s.batch - b0)));
    // The trans flags are template arguments: each of the four layouts gets its own index
    // arithmetic, and ptxas keeps every variant free of spills.
    with_trans(s.trans_a, s.trans_b, [&](auto ta, auto tb) {
      if (is_bf16) {
        gemm_bf16_kernel<ta.value, tb.value><<<grid, kThreads, 0, as_cuda(stream)>>>(p);
      } else {
        gemm_f32_kernel<ta.value, tb.value><<<grid, kF32Threads, 0, as_cuda(stream)>>>(p);
      }
    });
  }
}

void force_mma_sync_gemm(bool force) { g_force_mma_sync.store(force, std::memory_order_relaxed); }

const char* gemm_kernel_name(int device) {
  return !g_force_mma_sync.load(std::memory_order_relaxed) && hopper(device) ? "wgmma + TMA (sm_90a)" : "mma.sync (sm_80)";
}

}  // namespace cf::cuda
