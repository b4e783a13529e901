// Contrastive losses on Hopper (sm_90a): the logit tiles come from the TMA + wgmma GEMM mainloop
// (gemm_sm90.cuh) with epilogues of the loss's own, and the gradient products dA = exp(t) G B and
// dB = exp(t) Gᵀ A run on the same GEMM. The math and the contract are contrastive_loss.h's.
//
// The rows of A are taken in chunks of `cap` rows (a multiple of 128 up to 4096; chunk_cap says
// how it is chosen). Per chunk:
//   CLIP forward   logits = A_chunk · Bᵀ in 128 × 256 tiles. The epilogue writes, per tile,
//                  each row's partial log-sum-exp over the tile's 256 columns and each column's
//                  over the warp's 16 rows (a butterfly over the 8 lanes that share a column),
//                  and the label logits; small kernels merge the partials in a fixed order: the
//                  rows' log-sum-exps are complete after the chunk, the columns' state is carried
//                  from chunk to chunk.
//   CLIP backward, the same product; the epilogue writes the gradient tile exp(t) · G in bf16
//   SigLIP         into a [cap, nb] buffer, and per-row partial sums (dt; SigLIP's loss and
//                  dbias); then dA_chunk = G_chunk · B and dB (+)= G_chunkᵀ · A_chunk, f32.
// Work: CLIP 2·na·nb·d forward and 6·na·nb·d backward (8 in all, against 12 for the materialized
// formulation and for the mma.sync tiles); SigLIP 6·na·nb·d (8 for the mma.sync tiles).
// Memory: the gradient tile (2·cap·nb bytes) and partials (8·nb·cap/16 + 12·cap·nb/256 bytes):
// O(nb) for a fixed cap, never na × nb. Traffic beyond the operands: the gradient tile written
// once and read twice (6·na·nb bytes), dB read and written once per chunk (8·nb·d·na/cap bytes),
// the column partials (na·nb/2 bytes). Every sum has a fixed order (no atomics): deterministic.
//
// Partial log-sum-exps are pairs (m, l): the largest logit and Σ exp(logit − m); the epilogues
// take the exponentials in base 2 (exp2 is one MUFU instruction).
#include <atomic>
#include <cfloat>
#include <climits>
#include <cmath>

#include "contrastive_loss.cuh"
#include "gemm_sm90.cuh"
#include "mma.cuh"
#include "workspace.cuh"

namespace cf::cuda {
namespace {

constexpr int kLossBN = 256;          // logit tile columns
constexpr int kRowGroup = 16;         // rows of one column partial: a consumer warp's rows of a tile
constexpr int64_t kMaxCap = 4096, kMinCap = 1024;
constexpr float kLog2e = 1.4426950408889634f;

std::atomic<int64_t> g_chunk_rows{0};

// Two partial sums Σ exp(logit − m) of one row or column, merged into (m, l) at the larger
// maximum with one exp2. A part with m = −inf is empty.
__device__ __forceinline__ void merge(float& m, float& l, float m2, float l2) {
  const float hi = fmaxf(m, m2), lo = fminf(m, m2);
  const float l_hi = m >= m2 ? l : l2, l_lo = m >= m2 ? l2 : l;
  l = lo == -INFINITY ? l_hi : l_hi + l_lo * exp2f((lo - hi) * kLog2e);
  m = hi;
}

// One step of a reduce-scatter over the lanes `mask` apart (a bit of the lane's row index g):
// of the first K of this lane's partials the lane keeps the half its mask bit selects, merged
// with the partner's copy of that half, in entries [0, K / 2).
template <int K, int L>
__device__ __forceinline__ void scatter_merge(float (&m)[L], float (&l)[L], int mask, int lane) {
  const bool upper = (lane & mask) != 0;
#pragma unroll
  for (int i = 0; i < K / 2; ++i) {
    const float send_m = upper ? m[i] : m[K / 2 + i], send_l = upper ? l[i] : l[K / 2 + i];
    float keep_m = upper ? m[K / 2 + i] : m[i], keep_l = upper ? l[K / 2 + i] : l[i];
    merge(keep_m, keep_l, __shfl_xor_sync(0xffffffffu, send_m, mask), __shfl_xor_sync(0xffffffffu, send_l, mask));
    m[i] = keep_m;
    l[i] = keep_l;
  }
}

// What all three epilogues know: the chunk and the scale.
struct ChunkTiles {
  DType scale_dtype;
  const void* log_scale;
  int rows, cols;   // the chunk's rows (tile rows past them are padding), B's rows
  int64_t r0;       // the chunk's first row in A
  int64_t cap;      // rows per chunk: the stride of per-row partials
};

}  // namespace

// The logit tile as a consumer warp holds it (wgmma.cuh's fragment). Slot q of a thread's
// accumulators (q < N / 2, two rows each: acc[4 (q / 2) + 2 h + q % 2] for row g + 8 h) is
// column 8 (q / 2) + 2 t + q % 2 of the tile.
// Outside the anonymous namespace: the sm_80 pass of this file compiles the kernels empty, and
// unused file-local functions would each draw a warning.
struct LossFrag {
  static __device__ __forceinline__ int col(int q, int t4) { return 8 * (q / 2) + 2 * t4 + (q % 2); }
  static __device__ __forceinline__ int acc(int q, int h) { return 4 * (q / 2) + 2 * h + (q % 2); }
  // Where column `col` of B lies in the tile starting at n0 (−1 when outside it).
  static __device__ __forceinline__ int offset(int64_t col, int n0) {
    return col >= n0 && col < int64_t(n0) + kLossBN ? static_cast<int>(col - n0) : -1;
  }
  // Row h of this thread's slots: G = gradient(c, v) for each column c of the tile that B has
  // (v the product; the others give 0 without a call), stored times `scale` in bf16 pairs into
  // row `row` of the gradient tile (when grad is set) up to ld, so the columns past B's rows
  // hold zeros (the update GEMMs read whole 16-byte chunks).
  template <int N, class F>
  static __device__ __forceinline__ void gradient_row(const float (&acc)[N], int h, int t4, int ncol, bf16* grad, int64_t ld, int row,
                                                      int n0, float scale, F gradient) {
#pragma unroll
    for (int q = 0; q < N / 2; q += 2) {
      float gv[2];
#pragma unroll
      for (int e = 0; e < 2; ++e) gv[e] = col(q + e, t4) < ncol ? gradient(col(q + e, t4), acc[LossFrag::acc(q + e, h)]) : 0.0f;
      if (grad && n0 + col(q, t4) < ld) *reinterpret_cast<uint32_t*>(grad + row * ld + n0 + col(q, t4)) = pack_bf16(gv[0] * scale, gv[1] * scale);
    }
  }
};

namespace {

// CLIP forward: per-tile partial log-sum-exps of rows (row_part [tiles_n][cap], when the row
// term is wanted) and of columns (col_part [cap / 16][cols], when the column term is), and the
// logits at the labels (row_label [na] at column i + row_offset; col_label [nb] at row
// j + col_offset), each written by the one thread that holds it.
struct ClipStatsEpilogue {
  ChunkTiles k;
  float2* row_part;
  float2* col_part;
  float* row_label;
  float* col_label;
  int64_t row_offset, col_offset;

  template <int N>
  __device__ __forceinline__ void operator()(const Sm90Work& t, int row0, int lane, const float (&acc)[N]) const {
    constexpr int kSlots = N / 2;
    const int g = lane / 4, t4 = lane % 4;
    const float scale = expf(read_param(k.scale_dtype, k.log_scale)), s2 = scale * kLog2e;
    const int ncol = min(k.cols - t.n0, kLossBN);
    const bool ok[2] = {row0 + g < k.rows, row0 + g + 8 < k.rows};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gm = row0 + g + 8 * h;
      if (row_part) {
        // exp(t) > 0, so the largest product gives the largest logit.
        float m = -INFINITY;
#pragma unroll
        for (int q = 0; q < kSlots; ++q)
          if (LossFrag::col(q, t4) < ncol) m = fmaxf(m, acc[LossFrag::acc(q, h)]);
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
        // The same rounded product for every element, so the largest term is exactly 1 (a
        // one-column row's log-sum-exp is its logit, bit for bit, as on the CPU).
        const float m2 = __fmul_rn(m, s2);
        float l = 0.0f;
#pragma unroll
        for (int q = 0; q < kSlots; ++q)
          if (LossFrag::col(q, t4) < ncol) l += exp2f(__fmul_rn(acc[LossFrag::acc(q, h)], s2) - m2);
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        if (ok[h] && t4 == 0) row_part[(t.n0 / kLossBN) * k.cap + gm] = make_float2(scale * m, l);
      }
      if (ok[h] && (row_label || col_label)) {
        const int64_t i = k.r0 + gm;
        const int lab_r = row_label ? LossFrag::offset(i + row_offset, t.n0) : -1;
        const int lab_c = col_label ? LossFrag::offset(i - col_offset, t.n0) : -1;
#pragma unroll
        for (int q = 0; q < kSlots; ++q) {
          const int c = LossFrag::col(q, t4);
          if (c == lab_r) row_label[i] = scale * acc[LossFrag::acc(q, h)];
          if (c == lab_c) col_label[t.n0 + c] = scale * acc[LossFrag::acc(q, h)];
        }
      }
    }
    if (!col_part || row0 >= k.rows) return;
    // Columns, 16 slots at a time (the accumulators stay live, so the registers hold no more):
    // first the pair of rows this thread holds (one exp2, as one of the two terms is 1), then
    // a reduce-scatter over the lanes of the other rows, after which entries 0 and 1 hold
    // slots base and base + 1 (neighbouring columns) over the warp's 16 rows.
    constexpr int kGroup = 16;
    const int base = (lane & 16 ? kGroup / 2 : 0) + (lane & 8 ? kGroup / 4 : 0) + (lane & 4 ? kGroup / 8 : 0);
    float2* out = col_part + int64_t(row0 / kRowGroup) * k.cols + t.n0;
#pragma unroll
    for (int q0 = 0; q0 < kSlots; q0 += kGroup) {
      float cm[kGroup], cl[kGroup];
#pragma unroll
      for (int i = 0; i < kGroup; ++i) {
        const float v0 = ok[0] ? acc[LossFrag::acc(q0 + i, 0)] : -INFINITY, v1 = ok[1] ? acc[LossFrag::acc(q0 + i, 1)] : -INFINITY;
        cm[i] = scale * fmaxf(v0, v1);
        cl[i] = cm[i] == -INFINITY ? 0.0f : 1.0f + exp2f(-fabsf(__fmul_rn(v0, s2) - __fmul_rn(v1, s2)));
      }
      scatter_merge<kGroup>(cm, cl, 16, lane);
      scatter_merge<kGroup / 2>(cm, cl, 8, lane);
      scatter_merge<kGroup / 4>(cm, cl, 4, lane);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int c = LossFrag::col(q0 + base + i, t4);
        if (c < ncol) out[c] = make_float2(cm[i], cl[i]);
      }
    }
  }
};

// CLIP backward: G = dloss · (w_row (softmax over the row − label) + w_col (softmax over the
// column − label)) from the saved log-sum-exps; writes exp(t) · G in bf16 into grad [rows][ld]
// (zeros in the columns past B's rows) and Σ G · logit per row and tile into dt_part
// [tiles_n][cap]. Either output may be null.
struct ClipGradEpilogue {
  ChunkTiles k;
  const float* lse_row;  // [na], null without the row term
  const float* lse_col;  // [nb], null without the column term
  double w_row, w_col;
  int64_t row_offset, col_offset;
  const float* dloss;
  bf16* grad;
  int64_t ld;
  float* dt_part;

  template <int N>
  __device__ __forceinline__ void operator()(const Sm90Work& t, int row0, int lane, const float (&acc)[N]) const {
    const int g = lane / 4, t4 = lane % 4;
    const float scale = expf(read_param(k.scale_dtype, k.log_scale));
    const float c_row = static_cast<float>(w_row) * *dloss, c_col = static_cast<float>(w_col) * *dloss;
    const int ncol = min(k.cols - t.n0, kLossBN);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gm = row0 + g + 8 * h;
      const bool ok = gm < k.rows;
      const int64_t i = k.r0 + gm;
      const float lse_i = ok && lse_row ? lse_row[i] : 0.0f;
      const int lab_r = ok ? LossFrag::offset(i + row_offset, t.n0) : -1, lab_c = ok ? LossFrag::offset(i - col_offset, t.n0) : -1;
      float dts = 0.0f;
      if (ok)
        LossFrag::gradient_row(acc, h, t4, ncol, grad, ld, gm, t.n0, scale, [&](int c, float v) {
          // The logit rounded as the forward rounded it, so exp(logit − lse) is exactly 1
          // where a row or column has one element.
          const float L = __fmul_rn(v, scale);
          float gv = 0.0f;
          if (lse_row) gv = c_row * (exp2f((L - lse_i) * kLog2e) - (c == lab_r ? 1.0f : 0.0f));
          if (lse_col) gv += c_col * (exp2f((L - lse_col[t.n0 + c]) * kLog2e) - (c == lab_c ? 1.0f : 0.0f));
          dts += gv * L;
          return gv;
        });
      dts += __shfl_xor_sync(0xffffffffu, dts, 1);
      dts += __shfl_xor_sync(0xffffffffu, dts, 2);
      if (dt_part && ok && t4 == 0) dt_part[(t.n0 / kLossBN) * k.cap + gm] = dts;
    }
  }
};

// SigLIP: per logit L = exp(t) · product + bias, the loss softplus(−z L) and G = weight ·
// (σ(L) − [positive]); writes exp(t) · G like ClipGradEpilogue, and per row and tile Σ loss,
// Σ G · (L − bias) and Σ G into sums [3][tiles_n][cap].
struct SiglipEpilogue {
  ChunkTiles k;
  DType bias_dtype;
  const void* bias;
  int64_t offset;
  double weight;
  bool grads;
  bf16* grad;
  int64_t ld;
  float* sums;
  int64_t plane;  // tiles_n * cap

  template <int N>
  __device__ __forceinline__ void operator()(const Sm90Work& t, int row0, int lane, const float (&acc)[N]) const {
    const int g = lane / 4, t4 = lane % 4;
    const float scale = expf(read_param(k.scale_dtype, k.log_scale)), b = read_param(bias_dtype, bias);
    const float w = static_cast<float>(weight);
    const int ncol = min(k.cols - t.n0, kLossBN);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gm = row0 + g + 8 * h;
      const bool ok = gm < k.rows;
      const int lab = ok ? LossFrag::offset(k.r0 + gm + offset, t.n0) : -1;
      float ls = 0.0f, dts = 0.0f, dbs = 0.0f;
      if (ok)
        LossFrag::gradient_row(acc, h, t4, ncol, grad, ld, gm, t.n0, scale, [&](int c, float product) {
          const bool pos = c == lab;
          const float v = product * scale, x = v + b;
          // One exp for the loss and σ: with e = exp(−|x|), softplus(±x) = max(±x, 0) + log1p(e),
          // σ(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) below; σ(x) − 1 = −σ(−x) for the positive.
          const float ex = expf(-fabsf(x)), r = 1.0f / (1.0f + ex);
          ls += fmaxf(pos ? -x : x, 0.0f) + log1pf(ex);
          const float sig = x >= 0.0f ? r : ex * r, sig_neg = x >= 0.0f ? ex * r : r;
          const float gv = grads ? (pos ? -w * sig_neg : w * sig) : 0.0f;
          dts += gv * v;
          dbs += gv;
          return gv;
        });
#pragma unroll
      for (int o = 1; o <= 2; o *= 2) {
        ls += __shfl_xor_sync(0xffffffffu, ls, o);
        dts += __shfl_xor_sync(0xffffffffu, dts, o);
        dbs += __shfl_xor_sync(0xffffffffu, dbs, o);
      }
      if (ok && t4 == 0) {
        float* at = sums + (t.n0 / kLossBN) * k.cap + gm;
        at[0] = ls;
        at[plane] = dts;
        at[2 * plane] = dbs;
      }
    }
  }
};

// ---- merges, one thread per row or column, each in a fixed order --------------------------

// Row i's log-sum-exp from its `tiles` partials [tiles][cap]; term[i] = lse − label logit.
__global__ void merge_rows(const float2* part, int tiles, int64_t cap, int rows, float* lse, const float* label, double* term) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  float m = -INFINITY, l = 0.0f;
  for (int tn = 0; tn < tiles; ++tn) {
    const float2 p = part[tn * cap + i];
    merge(m, l, p.x, p.y);
  }
  const float v = m + logf(l);
  lse[i] = v;
  term[i] = static_cast<double>(v) - static_cast<double>(label[i]);
}

__global__ void start_columns(float2* state, int64_t cols) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j < cols) state[j] = make_float2(-INFINITY, 0.0f);
}

// Column j's running state merged with a chunk's `groups` partials [groups][cols].
__global__ void merge_columns(const float2* part, int groups, int64_t cols, float2* state) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= cols) return;
  float2 s = state[j];
  for (int r = 0; r < groups; ++r) {
    const float2 p = part[r * cols + j];
    merge(s.x, s.y, p.x, p.y);
  }
  state[j] = s;
}

__global__ void finish_columns(const float2* state, int64_t cols, float* lse, const float* label, double* term) {
  const int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (j >= cols) return;
  const float v = state[j].x + logf(state[j].y);
  lse[j] = v;
  term[j] = static_cast<double>(v) - static_cast<double>(label[j]);
}

// out_p[i] = Σ over tiles of sums [p][tiles][cap] at row i, for the planes whose out_p is set.
__global__ void sum_rows(const float* sums, int tiles, int64_t cap, int rows, double* out0, double* out1, double* out2) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  double* out[3] = {out0, out1, out2};
  for (int p = 0; p < 3; ++p) {
    if (!out[p]) continue;
    double s = 0.0;
    for (int tn = 0; tn < tiles; ++tn) s += sums[(int64_t(p) * tiles + tn) * cap + i];
    out[p][i] = s;
  }
}

// ---- host ---------------------------------------------------------------------------------

bool applies(DType dtype, const void* a, const void* b, int64_t na, int64_t nb, int64_t d) {
  const auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (dtype != DType::BF16 || d % 8 != 0 || !aligned16(a) || !aligned16(b)) return false;
  if (na >= INT_MAX || nb >= INT_MAX - kLossBN || d >= INT_MAX) return false;
  return sm90_enabled(current_device());
}

// The gradient tile's row stride: B's rows rounded up to 8 (TMA reads rows 16-byte aligned).
int64_t grad_ld(int64_t nb) { return (nb + 7) / 8 * 8; }

// Rows per chunk: at most 4096, and fewer when B has so many rows that the gradient tile would
// pass 1 GiB (but not under 1024); at most a quarter of A's rows (rounded down to 128, at least
// 128), so the tile never holds the whole logit matrix.
int64_t chunk_cap(int64_t na, int64_t nb) {
  const auto round_down = [](int64_t x) { return std::max<int64_t>(kSm90BM, x / kSm90BM * kSm90BM); };
  int64_t cap = g_chunk_rows.load(std::memory_order_relaxed);
  if (cap == 0) cap = std::min(std::clamp<int64_t>(round_down((int64_t(1) << 29) / grad_ld(nb)), kMinCap, kMaxCap), round_down(na / 4));
  return std::min(cap, (na + kSm90BM - 1) / kSm90BM * kSm90BM);
}

ChunkTiles chunk_tiles(DType scale_dtype, const void* log_scale, int64_t nb, int64_t cap) {
  ChunkTiles k;
  k.scale_dtype = scale_dtype;
  k.log_scale = log_scale;
  k.rows = 0;
  k.cols = static_cast<int>(nb);
  k.r0 = 0;
  k.cap = cap;
  return k;
}

// Logit tiles of A rows [r0, r0 + rows) against all of B, handed to `epi`.
template <class Epi>
void run_tiles(const void* a, const void* b, int64_t r0, int64_t rows, int64_t nb, int64_t d, Epi epi, Stream s) {
  const int sms = sm_count(current_device());
  const Sm90Plan plan = plan_sm90(rows, nb, d, 1, sms, {kLossBN}, 1);
  const void* a_chunk = static_cast<const bf16*>(a) + r0 * d;
  const TmaDesc ma = sm90_operand_map("contrastive loss", a_chunk, true, rows, d, d, 0, 1, kSm90BM);
  const TmaDesc mb = sm90_operand_map("contrastive loss", b, true, nb, d, d, 0, 1, kLossBN);
  const Sm90Args p = sm90_args(plan, d, false, false);
  epi.k.rows = static_cast<int>(rows);
  epi.k.r0 = r0;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(p.work, sms));
  allow_smem(gemm_sm90_kernel<kLossBN, false, true, Epi>, Sm90<kLossBN>::kSmemBytes);
  gemm_sm90_kernel<kLossBN, false, true, Epi><<<grid, kSm90Threads, Sm90<kLossBN>::kSmemBytes, as_cuda(s)>>>(ma, mb, p, epi);
  CF_CUDA_CHECK(cudaGetLastError());
}

// dA rows [r0, r0 + rows) = G_chunk · B; dB (+)= G_chunkᵀ · A_chunk (added from the second chunk on).
void update_grads(const bf16* grad, int64_t ld, const void* a, const void* b, int64_t r0, int64_t rows, int64_t nb, int64_t d, float* da,
                  float* db, Stream s) {
  if (da) gemm_sm90_f32(grad, ld, false, b, d, false, rows, d, nb, da + r0 * d, false, s);
  if (db) gemm_sm90_f32(grad, ld, true, static_cast<const bf16*>(a) + r0 * d, d, false, nb, d, rows, db, r0 > 0, s);
}

unsigned blocks(int64_t n) { return grid_1d(n, 256); }

}  // namespace

void set_loss_chunk_rows(int64_t rows) { g_chunk_rows.store(rows, std::memory_order_relaxed); }

bool clip_loss_forward_sm90(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                            float* loss, float* lse_row, float* lse_col, Stream s) {
  if (!applies(dtype, a, b, spec.na, spec.nb, spec.d)) return false;
  const int dev = current_device();
  const int64_t na = spec.na, nb = spec.nb, cap = chunk_cap(na, nb), tiles_n = (nb + kLossBN - 1) / kLossBN;
  const Workspace row_part(dev, spec.rows ? sizeof(float2) * tiles_n * cap : 0, s), row_label(dev, spec.rows ? sizeof(float) * na : 0, s),
      term_r(dev, spec.rows ? sizeof(double) * na : 0, s);
  const Workspace col_part(dev, spec.cols ? sizeof(float2) * (cap / kRowGroup) * nb : 0, s),
      col_state(dev, spec.cols ? sizeof(float2) * nb : 0, s), col_label(dev, spec.cols ? sizeof(float) * nb : 0, s),
      term_c(dev, spec.cols ? sizeof(double) * nb : 0, s);
  if (spec.cols) start_columns<<<blocks(nb), 256, 0, as_cuda(s)>>>(col_state.as<float2>(), nb);
  ClipStatsEpilogue epi;
  epi.k = chunk_tiles(scale_dtype, log_scale, nb, cap);
  epi.row_part = row_part.as<float2>();
  epi.col_part = col_part.as<float2>();
  epi.row_label = row_label.as<float>();
  epi.col_label = col_label.as<float>();
  epi.row_offset = spec.row_offset;
  epi.col_offset = spec.col_offset;
  for (int64_t r0 = 0; r0 < na; r0 += cap) {
    const int rows = static_cast<int>(std::min(cap, na - r0));
    run_tiles(a, b, r0, rows, nb, spec.d, epi, s);
    if (spec.rows)
      merge_rows<<<blocks(rows), 256, 0, as_cuda(s)>>>(row_part.as<float2>(), static_cast<int>(tiles_n), cap, rows, lse_row + r0,
                                                       row_label.as<float>() + r0, term_r.as<double>() + r0);
    if (spec.cols)
      merge_columns<<<blocks(nb), 256, 0, as_cuda(s)>>>(col_part.as<float2>(), (rows + kRowGroup - 1) / kRowGroup, nb,
                                                        col_state.as<float2>());
  }
  if (spec.cols)
    finish_columns<<<blocks(nb), 256, 0, as_cuda(s)>>>(col_state.as<float2>(), nb, lse_col, col_label.as<float>(), term_c.as<double>());
  CF_CUDA_CHECK(cudaGetLastError());
  run_finish(spec.rows ? term_r.as<double>() : term_c.as<double>(), spec.rows ? na : nb, spec.rows ? spec.w_row : spec.w_col,
             spec.rows && spec.cols ? term_c.as<double>() : nullptr, nb, spec.w_col, loss, s);
  return true;
}

bool clip_loss_backward_sm90(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                             const float* lse_row, const float* lse_col, const float* dloss, float* da, float* db, float* dlog_scale,
                             Stream s) {
  if (!applies(dtype, a, b, spec.na, spec.nb, spec.d)) return false;
  if (!da && !db && !dlog_scale) return true;
  const int dev = current_device();
  const int64_t na = spec.na, nb = spec.nb, d = spec.d, cap = chunk_cap(na, nb), tiles_n = (nb + kLossBN - 1) / kLossBN, ld = grad_ld(nb);
  const Workspace grad(dev, da || db ? sizeof(bf16) * cap * ld : 0, s), dt_part(dev, dlog_scale ? sizeof(float) * tiles_n * cap : 0, s),
      dt_rows(dev, dlog_scale ? sizeof(double) * na : 0, s);
  ClipGradEpilogue epi;
  epi.k = chunk_tiles(scale_dtype, log_scale, nb, cap);
  epi.lse_row = spec.rows ? lse_row : nullptr;
  epi.lse_col = spec.cols ? lse_col : nullptr;
  epi.w_row = spec.w_row;
  epi.w_col = spec.w_col;
  epi.row_offset = spec.row_offset;
  epi.col_offset = spec.col_offset;
  epi.dloss = dloss;
  epi.grad = grad.as<bf16>();
  epi.ld = ld;
  epi.dt_part = dt_part.as<float>();
  for (int64_t r0 = 0; r0 < na; r0 += cap) {
    const int rows = static_cast<int>(std::min(cap, na - r0));
    run_tiles(a, b, r0, rows, nb, d, epi, s);
    update_grads(grad.as<bf16>(), ld, a, b, r0, rows, nb, d, da, db, s);
    if (dlog_scale)
      sum_rows<<<blocks(rows), 256, 0, as_cuda(s)>>>(dt_part.as<float>(), static_cast<int>(tiles_n), cap, rows, dt_rows.as<double>() + r0,
                                                     nullptr, nullptr);
  }
  CF_CUDA_CHECK(cudaGetLastError());
  if (dlog_scale) run_finish(dt_rows.as<double>(), na, 1.0, nullptr, 0, 0.0, dlog_scale, s);
  return true;
}

bool siglip_loss_sm90(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, DType bias_dtype,
                      const void* bias, const SiglipLossSpec& spec, float* loss, float* da, float* db, float* dlog_scale, float* dbias,
                      Stream s) {
  if (!applies(dtype, a, b, spec.na, spec.nb, spec.d)) return false;
  const int dev = current_device();
  const int64_t na = spec.na, nb = spec.nb, d = spec.d, cap = chunk_cap(na, nb), tiles_n = (nb + kLossBN - 1) / kLossBN, ld = grad_ld(nb);
  const Workspace grad(dev, da || db ? sizeof(bf16) * cap * ld : 0, s), sums(dev, sizeof(float) * 3 * tiles_n * cap, s),
      rows_out(dev, sizeof(double) * 3 * na, s);
  double* loss_rows = rows_out.as<double>();
  double* dt_rows = loss_rows + na;
  double* db_rows = dt_rows + na;
  SiglipEpilogue epi;
  epi.k = chunk_tiles(scale_dtype, log_scale, nb, cap);
  epi.bias_dtype = bias_dtype;
  epi.bias = bias;
  epi.offset = spec.offset;
  epi.weight = spec.weight;
  epi.grads = da || db || dlog_scale || dbias;
  epi.grad = grad.as<bf16>();
  epi.ld = ld;
  epi.sums = sums.as<float>();
  epi.plane = tiles_n * cap;
  for (int64_t r0 = 0; r0 < na; r0 += cap) {
    const int rows = static_cast<int>(std::min(cap, na - r0));
    run_tiles(a, b, r0, rows, nb, d, epi, s);
    update_grads(grad.as<bf16>(), ld, a, b, r0, rows, nb, d, da, db, s);
    sum_rows<<<blocks(rows), 256, 0, as_cuda(s)>>>(sums.as<float>(), static_cast<int>(tiles_n), cap, rows, loss_rows + r0,
                                                   dlog_scale ? dt_rows + r0 : nullptr, dbias ? db_rows + r0 : nullptr);
  }
  CF_CUDA_CHECK(cudaGetLastError());
  run_finish(loss_rows, na, spec.weight, nullptr, 0, 0.0, loss, s);
  if (dlog_scale) run_finish(dt_rows, na, 1.0, nullptr, 0, 0.0, dlog_scale, s);
  if (dbias) run_finish(db_rows, na, 1.0, nullptr, 0, 0.0, dbias, s);
  return true;
}

}  // namespace cf::cuda
