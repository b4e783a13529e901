// The Hopper (sm_90a) bf16 GEMM mainloop, with the epilogue as a template parameter: matmul.cu
// stores C with it, and the contrastive losses turn each logit tile into row and column
// statistics or a gradient tile without ever storing the logits.
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
// from there.
//
// The epilogue is called once per work item by every consumer warp, with the accumulators of
// the warp's 16 rows (see wgmma.cuh for the fragment): an object with
//   template <int N> __device__ void operator()(const Sm90Work& t, int row0, int lane, const float (&acc)[N]) const
// where row0 = t.m0 + the warp's first row in the tile. It may not use shared memory (the
// producer is already filling the stages with the next item's operands).
//
// Split K (matmul.cu's weight gradients): each tile's K range is cut into `splits` slices and
// the epilogue sees each slice's partial sums (t.split).
//
// Floor per work item: 2 * 128 * BN * 64 FLOPs per stage against (128 + BN) * 64 * 2 bytes
// from L2: 64 (BN 128) or 85 (BN 256) FLOP/byte.
#pragma once
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "check.cuh"
#include "wgmma.cuh"

namespace cf::cuda {

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

// The schedule: work item w is split w % splits of tile w / splits; tiles run along N first,
// then M, then the batch.
struct Sm90Args {
  int k;
  int tiles_m, tiles_n, splits, kblocks_per_split;
  int64_t work;  // tiles_m * tiles_n * batch * splits
  bool batched_a, batched_b;  // the operand has its own matrix per batch item (else shared)
};

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

constexpr int kSm90AtomBytes = 64 * 128;  // an MN-major box: 64 k rows of 128 bytes

// TA / TB: op(A) is stored [K, M] / op(B) is stored [N, K] (matmul.h's trans flags).
template <int BN, bool TA, bool TB, class Epilogue>
__global__ void __launch_bounds__(kSm90Threads, 1)
    gemm_sm90_kernel(const __grid_constant__ TmaDesc map_a, const __grid_constant__ TmaDesc map_b, Sm90Args p, Epilogue epi) {
#if CF_SM90_DEVICE_CODE
  using Cfg = Sm90<BN>;
  constexpr int kStages = Cfg::kStages;
  // op(A) is MN-major when A is stored [K, M]; op(B) when B is stored [K, N].
  constexpr bool AMN = TA, BMN = !TB;
  unsigned char* smem_raw = dynamic_smem();
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
  const int warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;
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
    epi(t, t.m0 + 64 * c + 16 * warp, lane, acc);
  }
#endif
}

// ---- host side -----------------------------------------------------------------------------

// Compute capability 9.x: TMA, wgmma and setmaxnreg.
inline bool hopper(int device) { return device_attribute<cudaDevAttrComputeCapabilityMajor>(device) == 9; }

// 16-byte loads of an operand are safe when its contiguous extent, its batch (or row) stride
// and its base address all keep every 8-element chunk 16-byte aligned; TMA asks the same.
inline bool vec_ok(const void* base, int64_t contiguous, int64_t stride) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && contiguous % 8 == 0 && stride % 8 == 0;
}

struct Sm90Plan {
  int bn = 256, splits = 1, kblocks_per_split = 0;
  int64_t tiles_m = 0, tiles_n = 0, work = 0;
};

// Picks the tile width (among `widths`) and, when max_splits > 1, the K split by a cost model:
// waves of work items over the SMs, each item's time proportional to its FLOPs (a 128-wide
// tile at 0.85 of a 256-wide one's rate: it re-reads A from L2 twice as often), plus the
// split's f32 partials written and read back (at the ratio of the H100's tensor-core rate to
// its memory bandwidth, ~265 FLOP per byte). The constants are estimates until measured on the GPU.
inline Sm90Plan plan_sm90(int64_t m, int64_t n, int64_t k, int64_t batch, int sms, std::initializer_list<int> widths, int max_splits) {
  const int64_t kblocks = (k + kSm90BK - 1) / kSm90BK;
  Sm90Plan best;
  double best_cost = 0;
  for (int bn : widths) {
    const int64_t tiles_m = (m + kSm90BM - 1) / kSm90BM, tiles_n = (n + bn - 1) / bn;
    const int64_t tiles = tiles_m * tiles_n * batch;
    for (int splits = 1; splits <= max_splits; ++splits) {
      const int64_t per = (kblocks + splits - 1) / splits;
      if (splits > 1 && per < 4) break;                    // each slice >= 256 k
      if (splits > 1 && (splits - 1) * per >= kblocks) continue;  // none empty (a larger split may fit again)
      const int64_t work = tiles * splits;
      const double waves = static_cast<double>((work + sms - 1) / sms);
      const double item = 2.0 * kSm90BM * bn * per * kSm90BK / (bn == 256 ? 1.0 : 0.85);
      const double partial_bytes = splits > 1 ? 2.0 * 4.0 * splits * batch * m * n : 0.0;
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

inline Sm90Args sm90_args(const Sm90Plan& plan, int64_t k, bool batched_a, bool batched_b) {
  Sm90Args p;
  p.k = static_cast<int>(k);
  p.tiles_m = static_cast<int>(plan.tiles_m);
  p.tiles_n = static_cast<int>(plan.tiles_n);
  p.splits = plan.splits;
  p.kblocks_per_split = plan.kblocks_per_split;
  p.work = plan.work;
  p.batched_a = batched_a;
  p.batched_b = batched_b;
  return p;
}

// The tensor map of one operand with `rows` rows (M or N) and K columns, stored k-contiguous
// ([rows, K], rows `ld` elements apart) or not ([K, rows], k rows `ld` apart); batch items
// `batch_stride` elements apart (0: one shared matrix). Boxes: 64 k x `box_rows` rows for a
// k-contiguous operand, 64 rows x 64 k otherwise.
inline TmaDesc sm90_operand_map(const char* op, const void* base, bool k_contiguous, int64_t rows, int64_t k, int64_t ld,
                                int64_t batch_stride, int64_t batch, int box_rows) {
  const uint64_t contiguous = k_contiguous ? k : rows, other = k_contiguous ? rows : k;
  const uint64_t row_bytes = static_cast<uint64_t>(ld) * 2, matrix_bytes = (row_bytes * other + 15) / 16 * 16;
  const uint64_t dims[3] = {contiguous, other, static_cast<uint64_t>(batch_stride ? batch : 1)};
  const uint64_t strides[2] = {row_bytes, batch_stride ? static_cast<uint64_t>(batch_stride) * 2 : matrix_bytes};
  const uint32_t box[3] = {64, static_cast<uint32_t>(k_contiguous ? box_rows : 64), 1};
  TmaDesc desc;
  const std::string why = encode_tma_bf16(&desc, base, dims, strides, box);
  if (!why.empty())
    throw Error(std::string(op) + ": TMA descriptor for a " + std::to_string(dims[0]) + " x " + std::to_string(dims[1]) + " x " +
                std::to_string(dims[2]) + " bf16 operand: " + why);
  return desc;
}

// Whether bf16 GEMMs (and the contrastive losses' tile products) on `device` take this kernel:
// a Hopper GPU, unless tests or the benchmark forced the mma.sync kernels (matmul.cu).
bool sm90_enabled(int device);

// C [m, n] f32 (row-major) = (accumulate ? C : 0) + op(A) · op(B) with bf16 operands whose
// rows are lda / ldb elements apart (multiples of 8, 16-byte aligned bases): the Hopper kernel
// with an f32 store, split K as the shape asks. For callers that checked sm90_enabled.
void gemm_sm90_f32(const void* a, int64_t lda, bool trans_a, const void* b, int64_t ldb, bool trans_b, int64_t m, int64_t n,
                   int64_t k, float* c, bool accumulate, Stream stream);

}  // namespace cf::cuda
