// CUDA contrastive losses (CLIP softmax cross-entropy and SigLIP sigmoid); the math, shapes and
// floor are in native/include/contrastive_loss.h. The logit matrix is never stored.
//
// One kernel per tile family does all the tile work. A block owns 64 rows of one side ("own",
// e.g. A) and sweeps every 64-row tile of the other side: it computes the 64×64 logit tile, then,
// by mode (tile_row, shared by both families, so they turn the same products into the same bits):
//   Stats    online max / sum of exp per own row -> lse, and lse − logit at the label (CLIP forward);
//   ClipGrad the gradient tile G from the saved lse of both sides; dt per row += Σ G·logit and,
//            when asked, d_own += exp(t) · G · other (CLIP backward);
//   Siglip   softplus per logit -> loss per row and, when asked, G = weight·(σ(L) − label),
//            dt and dbias per row and d_own += exp(t) · G · other (SigLIP loss + gradients).
// The block owns its rows' statistics and gradient rows, so there are no atomics and the result
// is deterministic; column-side work (CLIP's column log-sum-exps, dB) is the same kernel with the
// two sides swapped. Labels sit where (other index − own index) == delta.
//
// On Hopper GPUs, bf16 features with d % 8 == 0 take contrastive_loss_sm90.cu instead (the tile
// products on the TMA + wgmma GEMM, 8·na·nb·d for CLIP); everything else comes here.
//
// Tile families, chosen per call by the features' dtype and layout:
//   row_pass_tc  bf16 features with d % 8 == 0 and 16-byte aligned rows: tensor cores. 4 warps,
//                each 16 own rows × 64 columns, mma.sync m16n8k16 (bf16 in, f32 accumulate; sm_80
//                and sm_90a) with fragments from ldmatrix; both operands staged in [64][64 + 8]
//                bf16 shared-memory stages by cp.async, two deep (36.9 KB). k past d is zero in
//                the stages, so d needs no other padding. The d_own update takes G from the
//                logit accumulators straight into A fragments (rounded to bf16, see the kernel)
//                and the other rows through ldmatrix.trans from the same stage layout.
//   row_pass     everything else (f32 features, whose 1e-4 accuracy bf16 operands cannot give;
//                bf16 with d % 8 != 0 or unaligned rows): SIMT f32, 256 threads with 4×4 logits
//                each, 16 k per shared-memory step, the update through shared memory.
//
// Work (FLOPs, 2·na·nb·d per product): CLIP forward 2 passes (rows, columns), backward 2 passes
// each with a tile product and a rank-64 update per tile (4 in all): 12·na·nb·d. SigLIP: one
// pass for the loss and dA, one for dB: 8·na·nb·d. Scratch: O(na + nb) doubles from the caching
// allocator. Per-row partial sums are combined in a fixed order by a one-block finish kernel.
// Both operands are re-read from L2 for every tile, and d_own is read and written once per
// tile; bench/notes/loss.md has what that predicts and what to change once it is measured.
#include <cfloat>
#include <cmath>

#include "contrastive_loss.cuh"
#include "mma.cuh"
#include "workspace.cuh"

namespace cf::cuda {
namespace {

constexpr int kBM = 64;       // own rows per block
constexpr int kBN = 64;       // other rows per tile
constexpr int kBK = 16;       // k per shared-memory step
constexpr int kBD = 64;       // d columns per step of the gradient update
constexpr int kThreads = 256;  // 16 × 16 threads, 4 × 4 logits each

enum class Mode { Stats, ClipGrad, Siglip };

struct RowPass {
  const void* own = nullptr;
  const void* other = nullptr;
  int64_t n_own = 0, n_other = 0, d = 0;
  DType scale_dtype = DType::F32;
  const void* log_scale = nullptr;
  DType bias_dtype = DType::F32;
  const void* bias = nullptr;  // SigLIP only
  // Stats: lse per own row, and lse − logit at the label (other = own + delta) when term is set.
  float* lse_out = nullptr;
  double* term_out = nullptr;
  int64_t delta = 0;
  // ClipGrad: the own term (lse_own, w_own, delta_own) and the other side's (lse_other, w_other,
  // delta_other), each present when its lse is; both scaled by *dloss.
  const float* lse_own = nullptr;
  const float* lse_other = nullptr;
  double w_own = 0, w_other = 0;
  int64_t delta_own = 0, delta_other = 0;
  const float* dloss = nullptr;
  // Siglip: positives at other = own + delta; G scaled by weight (the loss's own gradient).
  double weight = 0;
  double* loss_rows = nullptr;
  // Gradient outputs (null when not wanted): d_own [n_own, d] (accumulated into, zeroed first),
  // dt and dbias per own row.
  float* d_own = nullptr;
  double* dt_rows = nullptr;
  double* dbias_rows = nullptr;
};

// Reductions over the kLanes consecutive, aligned lanes that share a row (16 in the SIMT tiles,
// a quad in the mma ones): every lane gets the same bits.
template <int kLanes>
__device__ __forceinline__ float group_max(float v) {
#pragma unroll
  for (int o = kLanes / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <int kLanes, typename V>
__device__ __forceinline__ V group_sum(V v) {
#pragma unroll
  for (int o = kLanes / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// What every tile of a pass needs, read once per block.
struct PassConsts {
  float scale, bias, c_own, c_other;
  bool grads, want_loss;
};
template <Mode M>
__device__ __forceinline__ PassConsts pass_consts(const RowPass& p) {
  PassConsts k;
  k.scale = expf(read_param(p.scale_dtype, p.log_scale));
  k.bias = M == Mode::Siglip ? read_param(p.bias_dtype, p.bias) : 0.0f;
  const float g = M == Mode::ClipGrad ? *p.dloss : 1.0f;
  k.c_own = static_cast<float>(p.w_own) * g;
  k.c_other = static_cast<float>(p.w_other) * g;
  k.grads = M == Mode::ClipGrad || (M == Mode::Siglip && (p.d_own || p.dt_rows));
  k.want_loss = M == Mode::Siglip && p.loss_rows;
  return k;
}

// The running state of one own row, identical in every lane of the row's group.
struct RowState {
  float m, l, lse, lab;
  bool has_lab;
  double loss, dt, db;
};
template <Mode M>
__device__ __forceinline__ RowState row_start(const RowPass& p, int64_t i) {
  RowState st;
  st.m = -INFINITY;
  st.l = 0.0f;
  st.lab = 0.0f;
  st.has_lab = false;
  st.loss = st.dt = st.db = 0.0;
  st.lse = (M == Mode::ClipGrad && p.lse_own && i < p.n_own) ? p.lse_own[i] : 0.0f;
  return st;
}

// Own row i against the tile of other rows [j0, j0 + 64): this lane holds in v[c] the product
// with other row j0 + col(c), and the kLanes lanes of the row's group hold the 64 columns once
// each. Turns the products into logits and updates the row's state by mode; in the gradient
// modes each v[c] is replaced by its gradient G (0 outside the matrix) once it has been used.
// Written once for both tile layouts, so the SIMT and mma kernels compute the same bits from
// the same products.
template <Mode M, int kLanes, int C, typename Col>
__device__ __forceinline__ void tile_row(const RowPass& p, const PassConsts& k, RowState& st, float (&v)[C], int64_t i, int64_t j0, Col col) {
  const bool row_ok = i < p.n_own;
  const int ncol = static_cast<int>(min(p.n_other - j0, static_cast<int64_t>(kBN)));  // columns col(c) < ncol exist
  // Label columns as tile offsets (−1 when outside the tile), compared in 32 bits per element.
  const auto offset = [j0](int64_t j) { return j >= j0 && j < j0 + kBN ? static_cast<int>(j - j0) : -1; };
#pragma unroll
  for (int c = 0; c < C; ++c) v[c] = k.scale * v[c] + k.bias;
  if constexpr (M == Mode::Stats) {
    float tmax = -INFINITY;
#pragma unroll
    for (int c = 0; c < C; ++c)
      if (col(c) < ncol) tmax = fmaxf(tmax, v[c]);
    // Every tile has a valid column, so mnew is finite and exp(m − mnew) is 0 on the first.
    const float mnew = fmaxf(st.m, group_max<kLanes>(tmax));
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < C; ++c)
      if (col(c) < ncol) sum += expf(v[c] - mnew);
    st.l = st.l * expf(st.m - mnew) + group_sum<kLanes>(sum);
    st.m = mnew;
    if (p.term_out && row_ok) {
      const int lab = offset(i + p.delta);
#pragma unroll
      for (int c = 0; c < C; ++c)
        if (col(c) == lab) {
          st.lab = v[c];
          st.has_lab = true;
        }
    }
  } else if constexpr (M == Mode::ClipGrad) {
    const int lab_own = offset(i + p.delta_own), lab_other = offset(i + p.delta_other);
    float dts = 0.0f;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int jj = col(c);
      float gv = 0.0f;
      if (row_ok && jj < ncol) {
        if (p.lse_own) gv = k.c_own * (expf(v[c] - st.lse) - (jj == lab_own ? 1.0f : 0.0f));
        if (p.lse_other) gv += k.c_other * (expf(v[c] - p.lse_other[j0 + jj]) - (jj == lab_other ? 1.0f : 0.0f));
      }
      dts += gv * v[c];
      v[c] = gv;
    }
    st.dt += static_cast<double>(dts);
  } else {
    const int lab = offset(i + p.delta);
    float ls = 0.0f, dts = 0.0f, dbs = 0.0f;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int jj = col(c);
      float gv = 0.0f;
      if (row_ok && jj < ncol) {
        const bool pos = jj == lab;
        const float x = v[c];
        if (k.want_loss) ls += softplus(pos ? -x : x);
        // σ(x) for negatives; σ(x) − 1 = −σ(−x) for the positive (no cancellation).
        if (k.grads) gv = static_cast<float>(p.weight) * (pos ? -1.0f / (1.0f + expf(x)) : 1.0f / (1.0f + expf(-x)));
      }
      dts += gv * (v[c] - k.bias);
      dbs += gv;
      v[c] = gv;
    }
    st.loss += static_cast<double>(ls);
    st.dt += static_cast<double>(dts);
    st.db += static_cast<double>(dbs);
  }
}

// Writes row i's results; every lane of the group takes part in the shuffles, the leader writes.
template <Mode M, int kLanes>
__device__ __forceinline__ void finish_row(const RowPass& p, const RowState& st, int64_t i, bool leader) {
  if constexpr (M == Mode::Stats) {
    const float lse = st.m + logf(st.l);
    if (i < p.n_own && leader) p.lse_out[i] = lse;
    // Only the lane that met the label has has_lab.
    if (st.has_lab) p.term_out[i] = static_cast<double>(lse) - static_cast<double>(st.lab);
  } else {
    const double dt = group_sum<kLanes>(st.dt);
    const double lo = group_sum<kLanes>(st.loss);
    const double db = group_sum<kLanes>(st.db);
    if (i < p.n_own && leader) {
      if (p.dt_rows) p.dt_rows[i] = dt;
      if (M == Mode::Siglip && p.loss_rows) p.loss_rows[i] = lo;
      if (M == Mode::Siglip && p.dbias_rows) p.dbias_rows[i] = db;
    }
  }
}

// ---------------------------------------------------------------------------------------
// SIMT tiles (f32 features; bf16 ones whose rows cannot be copied in 16-byte pieces).

template <typename T, Mode M>
__global__ void __launch_bounds__(kThreads, 1) row_pass(RowPass p) {
  __shared__ __align__(16) float As[kBK][kBM + 4];
  __shared__ __align__(16) float Bs[kBK][kBN + 4];
  __shared__ float Gs[kBM][kBN + 1];
  __shared__ __align__(16) float Os[kBN][kBD + 4];

  const T* own = static_cast<const T*>(p.own);
  const T* other = static_cast<const T*>(p.other);
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kBM + ty * 4;  // this thread's first row
  const int64_t d = p.d;
  const PassConsts k = pass_consts<M>(p);
  const auto col = [tx](int c) { return tx * 4 + c; };

  RowState st[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) st[r] = row_start<M>(p, i0 + r);

  for (int64_t j0 = 0; j0 < p.n_other; j0 += kBN) {
    float s[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) s[r][c] = 0.0f;

    for (int64_t k0 = 0; k0 < d; k0 += kBK) {
      // 64 rows × 16 k of each side, 4 elements per thread, stored k-major for the outer products.
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int idx = tid + e * kThreads;
        const int r = idx / kBK, kk = idx % kBK;
        const int64_t kd = k0 + kk;
        const int64_t gi = static_cast<int64_t>(blockIdx.x) * kBM + r, gj = j0 + r;
        As[kk][r] = (gi < p.n_own && kd < d) ? Elem<T>::load(own, gi * d + kd) : 0.0f;
        Bs[kk][r] = (gj < p.n_other && kd < d) ? Elem<T>::load(other, gj * d + kd) : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBK; ++kk) {
        const float4 a = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
        const float4 b = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
        const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < 4; ++c) s[r][c] = fmaf(av[r], bv[c], s[r][c]);
      }
      __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < 4; ++r) tile_row<M, 16>(p, k, st[r], s[r], i0 + r, j0, col);

    // d_own[rows, :] += exp(t) · G · other[tile rows, :], 64 columns of d at a time.
    if (k.grads && p.d_own) {
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) Gs[ty * 4 + r][tx * 4 + c] = k.scale * s[r][c];
      for (int64_t d0 = 0; d0 < d; d0 += kBD) {
        __syncthreads();  // Gs written, and the previous Os consumed
#pragma unroll
        for (int e = 0; e < kBN * kBD / kThreads; ++e) {
          const int idx = tid + e * kThreads;
          const int jj = idx / kBD, dd = idx % kBD;
          const int64_t gj = j0 + jj, kd = d0 + dd;
          Os[jj][dd] = (gj < p.n_other && kd < d) ? Elem<T>::load(other, gj * d + kd) : 0.0f;
        }
        __syncthreads();
        float o[4][4];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < 4; ++c) o[r][c] = 0.0f;
#pragma unroll 8
        for (int jj = 0; jj < kBN; ++jj) {
          const float4 ov = *reinterpret_cast<const float4*>(&Os[jj][tx * 4]);
          const float ovv[4] = {ov.x, ov.y, ov.z, ov.w};
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const float gv = Gs[ty * 4 + r][jj];
#pragma unroll
            for (int c = 0; c < 4; ++c) o[r][c] = fmaf(gv, ovv[c], o[r][c]);
          }
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int64_t i = i0 + r;
          if (i >= p.n_own) continue;
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const int64_t kd = d0 + tx * 4 + c;
            if (kd < d) p.d_own[i * d + kd] += o[r][c];
          }
        }
      }
      __syncthreads();  // Gs and Os are rewritten by the next tile
    }
  }

#pragma unroll
  for (int r = 0; r < 4; ++r) finish_row<M, 16>(p, st[r], i0 + r, tx == 0);
}

// ---------------------------------------------------------------------------------------
// Tensor-core tiles (bf16 features, d % 8 == 0, 16-byte aligned rows). 4 warps; warp w owns
// own rows [16 w, 16 w + 16) of the block's 64 and computes their 16 × 64 logit tile with
// mma.m16n8k16: lane (g, t) holds rows g and g + 8, columns 8 n + 2 t + {0, 1} (n < 8), so a
// row's 64 columns are spread over the quad that shares g and the row reductions are two
// shuffles. Both operands pass through shared memory in [64 rows][64 k] stages (cp.async,
// double-buffered); k past d is zero there, so any d % 8 == 0 works.

constexpr int kTcWarps = 4, kTcThreads = 32 * kTcWarps;
constexpr int kTcBK = 64;           // k (S product) or d (gradient update) per stage
constexpr int kTcLd = kTcBK + 8;    // row stride of a stage in elements; see SmemFrags
using TcFrags = SmemFrags<kTcLd>;
static_assert(16 * kTcWarps == kBM && kBN == 64, "a warp owns 16 of the block's rows, and a tile has 64 columns");

// Rows [r0, r0 + 64) × columns [k0, k0 + 64) of a bf16 [n, d] matrix into a stage. With
// d % 8 == 0 each 16-byte piece is wholly inside or outside the matrix; outside pieces are zero.
__device__ __forceinline__ void stage_rows(bf16* dst, const bf16* src, int64_t n, int64_t d, int64_t r0, int64_t k0) {
  constexpr int kPieces = kTcBK / 8;
#pragma unroll
  for (int e = 0; e < kBN * kPieces / kTcThreads; ++e) {
    const int idx = threadIdx.x + e * kTcThreads;
    const int r = idx / kPieces, c = (idx % kPieces) * 8;
    bf16* to = dst + r * kTcLd + c;
    if (r0 + r < n && k0 + c < d) cp_async16(to, src + (r0 + r) * d + k0 + c);
    else *reinterpret_cast<uint4*>(to) = make_uint4(0, 0, 0, 0);
  }
}

// use(c, buffer) for stages c = 0 .. n − 1, with stage(c, buffer) copying stage c + 1 into the
// other buffer while stage c is in use. Every thread of the block calls it (barriers inside).
template <typename Stage, typename Use>
__device__ __forceinline__ void double_buffered(int64_t n, Stage stage, Use use) {
  stage(0, 0);
  cp_async_commit();
  for (int64_t c = 0; c < n; ++c) {
    if (c + 1 < n) {
      stage(c + 1, static_cast<int>((c + 1) & 1));
      cp_async_commit();
      cp_async_wait<1>();  // stage c has landed, stage c + 1 may still be in flight
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // every thread's copies (and zero stores) of stage c are visible
    use(c, static_cast<int>(c & 1));
    __syncthreads();  // stage c's buffer is free for stage c + 2
  }
}

template <Mode M>
__global__ void __launch_bounds__(kTcThreads, 3) row_pass_tc(RowPass p) {
  __shared__ __align__(16) bf16 s_own[2][kBM * kTcLd];
  __shared__ __align__(16) bf16 s_other[2][kBN * kTcLd];

  const bf16* own = static_cast<const bf16*>(p.own);
  const bf16* other = static_cast<const bf16*>(p.other);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t b0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int64_t i0 = b0 + 16 * warp + g;  // this lane's rows: i0 and i0 + 8
  const int64_t d = p.d, stages = (d + kTcBK - 1) / kTcBK;
  const PassConsts k = pass_consts<M>(p);
  // Element c of a row's 16 values is column 8 (c / 2) + 2 t + c % 2 of the tile: C tile c / 2,
  // element c % 2 of the pair the lane holds.
  const auto col = [t](int c) { return 8 * (c / 2) + 2 * t + c % 2; };

  RowState st[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) st[h] = row_start<M>(p, i0 + 8 * h);

  for (int64_t j0 = 0; j0 < p.n_other; j0 += kBN) {
    // s[n] is the C tile of columns [8 n, 8 n + 8): S = own rows · other rowsᵀ, i.e.
    // A(m, k) = s_own[m][k] and B(k, n) = s_other[n][k].
    float s[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
    double_buffered(
        stages,
        [&](int64_t c, int buf) {
          stage_rows(s_own[buf], own, p.n_own, d, b0, c * kTcBK);
          stage_rows(s_other[buf], other, p.n_other, d, j0, c * kTcBK);
        },
        [&](int64_t, int buf) {
#pragma unroll
          for (int ks = 0; ks < kTcBK; ks += 16) {
            uint32_t a[4];
            TcFrags::a(a, s_own[buf], 16 * warp, ks, lane);
#pragma unroll
            for (int n = 0; n < 4; ++n) {
              uint32_t b[4];
              TcFrags::b(b, s_other[buf], 16 * n, ks, lane);
              mma_bf16(s[2 * n], a, b[0], b[1]);
              mma_bf16(s[2 * n + 1], a, b[2], b[3]);
            }
          }
        });

#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float v[16];
#pragma unroll
      for (int c = 0; c < 16; ++c) v[c] = s[c / 2][2 * h + c % 2];
      tile_row<M, 4>(p, k, st[h], v, i0 + 8 * h, j0, col);
#pragma unroll
      for (int c = 0; c < 16; ++c) s[c / 2][2 * h + c % 2] = v[c];
    }

    // d_own[rows, :] += exp(t) · G · other[tile rows, :], 64 columns of d per stage. The C
    // tiles of G, scaled and rounded to bf16, are the A fragments (k = the tile's 64 other
    // rows, 16 per step); B(k, n) = s_other[k][n] is row-contiguous, hence ldmatrix.trans.
    // Rounding G to bf16 costs a relative 2^-9 per element of G, the rounding the other
    // operand already has, and PyTorch's bf16 matmul of the logit gradient under autocast;
    // the sum over a tile's 64 columns (and over all tiles) averages it, far inside the 1e-2
    // that bf16 results are held to. Keeping this product on CUDA cores in f32 would make it
    // the slowest half of the backward.
    if (k.grads && p.d_own) {
      uint32_t ga[4][4];
#pragma unroll
      for (int kt = 0; kt < 4; ++kt)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          // a0, a1, a2, a3: (row g, k 2t..), (row g + 8, k 2t..), (row g, k 2t + 8..), (row g + 8, k 2t + 8..).
          const float* cv = s[2 * kt + r / 2];
          const int e = 2 * (r % 2);
          ga[kt][r] = pack_bf16(k.scale * cv[e], k.scale * cv[e + 1]);
        }
      double_buffered(
          stages, [&](int64_t c, int buf) { stage_rows(s_other[buf], other, p.n_other, d, j0, c * kTcBK); },
          [&](int64_t c, int buf) {
            float acc[8][4];
#pragma unroll
            for (int n = 0; n < 8; ++n)
#pragma unroll
              for (int e = 0; e < 4; ++e) acc[n][e] = 0.0f;
#pragma unroll
            for (int kt = 0; kt < 4; ++kt)
#pragma unroll
              for (int n = 0; n < 4; ++n) {
                uint32_t b[4];
                TcFrags::bt(b, s_other[buf], 16 * kt, 16 * n, lane);
                mma_bf16(acc[2 * n], ga[kt], b[0], b[1]);
                mma_bf16(acc[2 * n + 1], ga[kt], b[2], b[3]);
              }
            // The block owns these rows: plain read-modify-writes, in a fixed order.
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const int64_t i = i0 + 8 * h;
              if (i >= p.n_own) continue;
#pragma unroll
              for (int n = 0; n < 8; ++n) {
                const int64_t kd = c * kTcBK + 8 * n + 2 * t;
                if (kd >= d) continue;  // d % 8 == 0: the pair is wholly in or out
                float2* q = reinterpret_cast<float2*>(p.d_own + i * d + kd);
                float2 o = *q;
                o.x += acc[n][2 * h];
                o.y += acc[n][2 * h + 1];
                *q = o;
              }
            }
          });
    }
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) finish_row<M, 4>(p, st[h], i0 + 8 * h, t == 0);
}

// out = (float)(w0 · Σ x0 + w1 · Σ x1) in one block: each thread sums a fixed stride, then a fixed
// tree, so the bits do not vary from run to run. x1 may be null.
constexpr int kFinishThreads = 1024;
__global__ void __launch_bounds__(kFinishThreads) finish(const double* x0, int64_t n0, double w0, const double* x1, int64_t n1, double w1, float* out) {
  __shared__ double part[kFinishThreads];
  double s0 = 0.0, s1 = 0.0;
  for (int64_t i = threadIdx.x; i < n0; i += kFinishThreads) s0 += x0[i];
  if (x1)
    for (int64_t i = threadIdx.x; i < n1; i += kFinishThreads) s1 += x1[i];
  part[threadIdx.x] = w0 * s0 + w1 * s1;
  __syncthreads();
  for (int h = kFinishThreads / 2; h > 0; h >>= 1) {
    if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = static_cast<float>(part[0]);
}

bool aligned(const void* ptr, size_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

// The mma tiles copy feature rows in 16-byte pieces and add float pairs into d_own.
bool tensor_core_tiles(DType dtype, const RowPass& p) {
  return dtype == DType::BF16 && p.d % 8 == 0 && aligned(p.own, 16) && aligned(p.other, 16) && aligned(p.d_own, 8);
}

template <Mode M>
void launch(DType dtype, const RowPass& p, Stream s) {
  const unsigned blocks = static_cast<unsigned>((p.n_own + kBM - 1) / kBM);
  if (tensor_core_tiles(dtype, p)) {
    row_pass_tc<M><<<blocks, kTcThreads, 0, as_cuda(s)>>>(p);
  } else {
    CF_FLOAT_DTYPE(dtype, T, (row_pass<T, M><<<blocks, kThreads, 0, as_cuda(s)>>>(p)));
  }
  CF_CUDA_CHECK(cudaGetLastError());
}

RowPass base_pass(const void* own, const void* other, int64_t n_own, int64_t n_other, int64_t d, DType scale_dtype, const void* log_scale) {
  RowPass p;
  p.own = own;
  p.other = other;
  p.n_own = n_own;
  p.n_other = n_other;
  p.d = d;
  p.scale_dtype = scale_dtype;
  p.log_scale = log_scale;
  return p;
}

}  // namespace

void run_finish(const double* x0, int64_t n0, double w0, const double* x1, int64_t n1, double w1, float* out, Stream s) {
  finish<<<1, kFinishThreads, 0, as_cuda(s)>>>(x0, n0, w0, x1, n1, w1, out);
  CF_CUDA_CHECK(cudaGetLastError());
}

void clip_loss_forward(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                       float* loss, float* lse_row, float* lse_col, Stream s) {
  if (clip_loss_forward_sm90(dtype, a, b, scale_dtype, log_scale, spec, loss, lse_row, lse_col, s)) return;
  const int dev = current_device();
  const Workspace term_r(dev, sizeof(double) * (spec.rows ? spec.na : 1), s), term_c(dev, sizeof(double) * (spec.cols ? spec.nb : 1), s);
  if (spec.rows) {
    // Row i of A: log-sum-exp over B, label at column i + row_offset.
    RowPass p = base_pass(a, b, spec.na, spec.nb, spec.d, scale_dtype, log_scale);
    p.lse_out = lse_row;
    p.term_out = term_r.as<double>();
    p.delta = spec.row_offset;
    launch<Mode::Stats>(dtype, p, s);
  }
  if (spec.cols) {
    // Column j: row j of B against A, label at row j + col_offset.
    RowPass p = base_pass(b, a, spec.nb, spec.na, spec.d, scale_dtype, log_scale);
    p.lse_out = lse_col;
    p.term_out = term_c.as<double>();
    p.delta = spec.col_offset;
    launch<Mode::Stats>(dtype, p, s);
  }
  run_finish(spec.rows ? term_r.as<double>() : term_c.as<double>(), spec.rows ? spec.na : spec.nb, spec.rows ? spec.w_row : spec.w_col,
             spec.rows && spec.cols ? term_c.as<double>() : nullptr, spec.nb, spec.w_col, loss, s);
}

void clip_loss_backward(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                        const float* lse_row, const float* lse_col, const float* dloss, float* da, float* db, float* dlog_scale, Stream s) {
  if (clip_loss_backward_sm90(dtype, a, b, scale_dtype, log_scale, spec, lse_row, lse_col, dloss, da, db, dlog_scale, s)) return;
  if (da) CF_CUDA_CHECK(cudaMemsetAsync(da, 0, sizeof(float) * spec.na * spec.d, as_cuda(s)));
  if (db) CF_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * spec.nb * spec.d, as_cuda(s)));
  const Workspace dt(current_device(), sizeof(double) * spec.na, s);
  if (da || dlog_scale) {
    // Rows of A: own term = the row term (label j = i + row_offset), other = the column term
    // (label i = j + col_offset, i.e. j − i = −col_offset).
    RowPass p = base_pass(a, b, spec.na, spec.nb, spec.d, scale_dtype, log_scale);
    p.lse_own = spec.rows ? lse_row : nullptr;
    p.w_own = spec.w_row;
    p.delta_own = spec.row_offset;
    p.lse_other = spec.cols ? lse_col : nullptr;
    p.w_other = spec.w_col;
    p.delta_other = -spec.col_offset;
    p.dloss = dloss;
    p.d_own = da;
    p.dt_rows = dt.as<double>();
    launch<Mode::ClipGrad>(dtype, p, s);
  }
  if (db) {
    // Rows of B: own term = the column term (label i = j + col_offset), other = the row term.
    RowPass p = base_pass(b, a, spec.nb, spec.na, spec.d, scale_dtype, log_scale);
    p.lse_own = spec.cols ? lse_col : nullptr;
    p.w_own = spec.w_col;
    p.delta_own = spec.col_offset;
    p.lse_other = spec.rows ? lse_row : nullptr;
    p.w_other = spec.w_row;
    p.delta_other = -spec.row_offset;
    p.dloss = dloss;
    p.d_own = db;
    launch<Mode::ClipGrad>(dtype, p, s);
  }
  if (dlog_scale) run_finish(dt.as<double>(), spec.na, 1.0, nullptr, 0, 0.0, dlog_scale, s);
}

void siglip_loss(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, DType bias_dtype, const void* bias,
                 const SiglipLossSpec& spec, float* loss, float* da, float* db, float* dlog_scale, float* dbias, Stream s) {
  if (siglip_loss_sm90(dtype, a, b, scale_dtype, log_scale, bias_dtype, bias, spec, loss, da, db, dlog_scale, dbias, s)) return;
  const bool grads = da || db || dlog_scale || dbias;
  if (da) CF_CUDA_CHECK(cudaMemsetAsync(da, 0, sizeof(float) * spec.na * spec.d, as_cuda(s)));
  if (db) CF_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * spec.nb * spec.d, as_cuda(s)));
  const Workspace rows(current_device(), sizeof(double) * spec.na * 3, s);
  double* loss_rows = rows.as<double>();
  double* dt_rows = loss_rows + spec.na;
  double* db_rows = dt_rows + spec.na;
  {
    // Rows of A: the loss, dA, dt and dbias; positives at j = i + offset.
    RowPass p = base_pass(a, b, spec.na, spec.nb, spec.d, scale_dtype, log_scale);
    p.bias_dtype = bias_dtype;
    p.bias = bias;
    p.delta = spec.offset;
    p.weight = spec.weight;
    p.loss_rows = loss_rows;
    p.d_own = da;
    p.dt_rows = grads ? dt_rows : nullptr;
    p.dbias_rows = grads ? db_rows : nullptr;
    launch<Mode::Siglip>(dtype, p, s);
  }
  if (db) {
    // Rows of B: dB only; positives at i = j − offset.
    RowPass p = base_pass(b, a, spec.nb, spec.na, spec.d, scale_dtype, log_scale);
    p.bias_dtype = bias_dtype;
    p.bias = bias;
    p.delta = -spec.offset;
    p.weight = spec.weight;
    p.d_own = db;
    launch<Mode::Siglip>(dtype, p, s);
  }
  run_finish(loss_rows, spec.na, spec.weight, nullptr, 0, 0.0, loss, s);
  if (dlog_scale) run_finish(dt_rows, spec.na, 1.0, nullptr, 0, 0.0, dlog_scale, s);
  if (dbias) run_finish(db_rows, spec.na, 1.0, nullptr, 0, 0.0, dbias, s);
}

}  // namespace cf::cuda
