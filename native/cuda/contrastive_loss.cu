// CUDA contrastive losses (CLIP softmax cross-entropy and SigLIP sigmoid); the math, shapes and
// floor are in native/include/contrastive_loss.h. The logit matrix is never stored.
//
// One kernel, row_pass, does all the tile work. A block owns 64 rows of one side ("own", e.g. A)
// and sweeps every 64-row tile of the other side: it computes the 64×64 logit tile
// (SIMT f32: 16 k per step through shared memory, 4×4 logits per thread, f32 or bf16 storage),
// then, by mode:
//   Stats    online max / sum of exp per own row -> lse, and lse − logit at the label (CLIP forward);
//   ClipGrad the gradient tile G from the saved lse of both sides; dt per row += Σ G·logit and,
//            when asked, d_own += exp(t) · G · other through shared memory (CLIP backward);
//   Siglip   softplus per logit -> loss per row and, when asked, G = weight·(σ(L) − label),
//            dt and dbias per row and d_own += exp(t) · G · other (SigLIP loss + gradients).
// The block owns its rows' statistics and gradient rows, so there are no atomics and the result
// is deterministic; column-side work (CLIP's column log-sum-exps, dB) is the same kernel with the
// two sides swapped. Labels sit where (other index − own index) == delta.
//
// Work (FLOPs, 2·na·nb·d per pass): CLIP forward 2 passes (rows, columns), backward 2 passes each
// with a tile product and a rank-64 update per tile (4 in all): 12·na·nb·d. SigLIP: one pass
// for the loss and dA, one for dB: 8·na·nb·d. Scratch: O(na + nb) doubles from the caching
// allocator. Per-row partial sums are combined in a fixed order by a one-block finish kernel.
//
// This version runs on CUDA cores in f32 (for bf16 features too); its purpose is to be right.
// The tensor-core version (mma.sync / wgmma bf16 tiles, one-pass row and column statistics, one
// recompute for both dA and dB) replaces the tile product once it can be measured on a GPU.
#include <cfloat>
#include <cmath>

#include "check.cuh"
#include "contrastive_loss.h"
#include "memory.h"

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

__device__ __forceinline__ float read_param(DType dtype, const void* p) {
  return dtype == DType::BF16 ? bf16_to_float(*static_cast<const bf16*>(p)) : *static_cast<const float*>(p);
}

// Reductions over the 16 lanes that share a row (a half warp): every lane gets the same bits.
__device__ __forceinline__ float half_max(float v) {
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float half_sum(float v) {
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double half_sum(double v) {
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// log(1 + e^x) without overflow, accurate for large |x|.
__device__ __forceinline__ float softplus(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }

template <typename T, Mode M>
__global__ void __launch_bounds__(kThreads, 1) row_pass(RowPass p) {
  __shared__ __align__(16) float As[kBK][kBM + 4];
  __shared__ __align__(16) float Bs[kBK][kBN + 4];
  __shared__ float Gs[kBM][kBN + 1];
  __shared__ __align__(16) float Os[kBN][kBD + 4];

  const T* own = static_cast<const T*>(p.own);
  const T* other = static_cast<const T*>(p.other);
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int64_t d = p.d;
  const float scale = expf(read_param(p.scale_dtype, p.log_scale));
  const float bias = M == Mode::Siglip ? read_param(p.bias_dtype, p.bias) : 0.0f;
  const float g = M == Mode::ClipGrad ? *p.dloss : 1.0f;
  const float c_own = static_cast<float>(p.w_own) * g, c_other = static_cast<float>(p.w_other) * g;
  const bool grads = M == Mode::ClipGrad || (M == Mode::Siglip && (p.d_own || p.dt_rows));
  const bool want_loss = M == Mode::Siglip && p.loss_rows;

  // State of this thread's 4 rows (identical in the 16 lanes of the row's half warp).
  float m[4], l[4], lse_row[4], lab[4];
  bool has_lab[4];
  double acc_loss[4], acc_dt[4], acc_db[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int64_t i = i0 + ty * 4 + r;
    m[r] = -INFINITY;
    l[r] = 0.0f;
    lab[r] = 0.0f;
    has_lab[r] = false;
    acc_loss[r] = acc_dt[r] = acc_db[r] = 0.0;
    lse_row[r] = (M == Mode::ClipGrad && p.lse_own && i < p.n_own) ? p.lse_own[i] : 0.0f;
  }

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
        const int64_t k = k0 + kk;
        const int64_t gi = i0 + r, gj = j0 + r;
        As[kk][r] = (gi < p.n_own && k < d) ? Elem<T>::load(own, gi * d + k) : 0.0f;
        Bs[kk][r] = (gj < p.n_other && k < d) ? Elem<T>::load(other, gj * d + k) : 0.0f;
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

    // Logits, masks and labels of this thread's 4×4 block.
    const int64_t jb = j0 + tx * 4;
    bool col_ok[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) col_ok[c] = jb + c < p.n_other;
    // In the gradient modes each logit is replaced by its gradient G once it has been used.
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t i = i0 + ty * 4 + r;
      const bool row_ok = i < p.n_own;
#pragma unroll
      for (int c = 0; c < 4; ++c) s[r][c] = scale * s[r][c] + bias;
      if (M == Mode::Stats) {
        float tmax = -INFINITY;
#pragma unroll
        for (int c = 0; c < 4; ++c)
          if (col_ok[c]) tmax = fmaxf(tmax, s[r][c]);
        // Every tile has a valid column, so mnew is finite and exp(m − mnew) is 0 on the first.
        const float mnew = fmaxf(m[r], half_max(tmax));
        float sum = 0.0f;
#pragma unroll
        for (int c = 0; c < 4; ++c)
          if (col_ok[c]) sum += expf(s[r][c] - mnew);
        l[r] = l[r] * expf(m[r] - mnew) + half_sum(sum);
        m[r] = mnew;
        const int64_t jl = i + p.delta - jb;
        if (p.term_out && row_ok && jl >= 0 && jl < 4) {
#pragma unroll
          for (int c = 0; c < 4; ++c)
            if (c == jl) lab[r] = s[r][c];
          has_lab[r] = true;
        }
      } else if (M == Mode::ClipGrad) {
        float dts = 0.0f;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int64_t j = jb + c;
          float gv = 0.0f;
          if (row_ok && col_ok[c]) {
            if (p.lse_own) gv = c_own * (expf(s[r][c] - lse_row[r]) - (j - i == p.delta_own ? 1.0f : 0.0f));
            if (p.lse_other) gv += c_other * (expf(s[r][c] - p.lse_other[j]) - (j - i == p.delta_other ? 1.0f : 0.0f));
          }
          dts += gv * s[r][c];
          s[r][c] = gv;
        }
        acc_dt[r] += static_cast<double>(dts);
      } else {
        float ls = 0.0f, dts = 0.0f, dbs = 0.0f;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int64_t j = jb + c;
          float gv = 0.0f;
          if (row_ok && col_ok[c]) {
            const bool pos = j - i == p.delta;
            const float x = s[r][c];
            if (want_loss) ls += softplus(pos ? -x : x);
            // σ(x) for negatives; σ(x) − 1 = −σ(−x) for the positive (no cancellation).
            if (grads) gv = static_cast<float>(p.weight) * (pos ? -1.0f / (1.0f + expf(x)) : 1.0f / (1.0f + expf(-x)));
          }
          dts += gv * (s[r][c] - bias);
          dbs += gv;
          s[r][c] = gv;
        }
        acc_loss[r] += static_cast<double>(ls);
        acc_dt[r] += static_cast<double>(dts);
        acc_db[r] += static_cast<double>(dbs);
      }
    }

    // d_own[rows, :] += exp(t) · G · other[tile rows, :], 64 columns of d at a time.
    if (grads && p.d_own) {
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) Gs[ty * 4 + r][tx * 4 + c] = scale * s[r][c];
      for (int64_t d0 = 0; d0 < d; d0 += kBD) {
        __syncthreads();  // Gs written, and the previous Os consumed
#pragma unroll
        for (int e = 0; e < kBN * kBD / kThreads; ++e) {
          const int idx = tid + e * kThreads;
          const int jj = idx / kBD, dd = idx % kBD;
          const int64_t gj = j0 + jj, k = d0 + dd;
          Os[jj][dd] = (gj < p.n_other && k < d) ? Elem<T>::load(other, gj * d + k) : 0.0f;
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
          const int64_t i = i0 + ty * 4 + r;
          if (i >= p.n_own) continue;
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const int64_t k = d0 + tx * 4 + c;
            if (k < d) p.d_own[i * d + k] += o[r][c];
          }
        }
      }
      __syncthreads();  // Gs and Os are rewritten by the next tile
    }
  }

#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int64_t i = i0 + ty * 4 + r;
    if (M == Mode::Stats) {
      const float lse = m[r] + logf(l[r]);
      if (i < p.n_own && tx == 0) p.lse_out[i] = lse;
      if (has_lab[r]) p.term_out[i] = static_cast<double>(lse) - static_cast<double>(lab[r]);
    } else {
      // Lane-identical sums; every lane takes part in the shuffles, lane 0 of the row writes.
      const double dt = half_sum(acc_dt[r]);
      const double lo = half_sum(acc_loss[r]);
      const double db = half_sum(acc_db[r]);
      if (i < p.n_own && tx == 0) {
        if (p.dt_rows) p.dt_rows[i] = dt;
        if (M == Mode::Siglip && p.loss_rows) p.loss_rows[i] = lo;
        if (M == Mode::Siglip && p.dbias_rows) p.dbias_rows[i] = db;
      }
    }
  }
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

// Scratch of the caching allocator on the current device, released on the stream after use.
class Scratch {
 public:
  Scratch(size_t bytes, Stream stream) : stream_(stream) {
    CF_CUDA_CHECK(cudaGetDevice(&device_));
    ptr_ = alloc(device_, bytes, stream);
  }
  ~Scratch() { free(device_, ptr_, stream_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename U> U* as() const { return static_cast<U*>(ptr_); }

 private:
  Stream stream_;
  int device_ = 0;
  void* ptr_ = nullptr;
};

template <Mode M>
void launch(DType dtype, const RowPass& p, Stream s) {
  const unsigned blocks = static_cast<unsigned>((p.n_own + kBM - 1) / kBM);
  CF_FLOAT_DTYPE(dtype, T, (row_pass<T, M><<<blocks, kThreads, 0, as_cuda(s)>>>(p)));
  CF_CUDA_CHECK(cudaGetLastError());
}

void run_finish(const double* x0, int64_t n0, double w0, const double* x1, int64_t n1, double w1, float* out, Stream s) {
  finish<<<1, kFinishThreads, 0, as_cuda(s)>>>(x0, n0, w0, x1, n1, w1, out);
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

void clip_loss_forward(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                       float* loss, float* lse_row, float* lse_col, Stream s) {
  Scratch term_r(sizeof(double) * (spec.rows ? spec.na : 1), s), term_c(sizeof(double) * (spec.cols ? spec.nb : 1), s);
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
  if (da) CF_CUDA_CHECK(cudaMemsetAsync(da, 0, sizeof(float) * spec.na * spec.d, as_cuda(s)));
  if (db) CF_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * spec.nb * spec.d, as_cuda(s)));
  Scratch dt(sizeof(double) * spec.na, s);
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
  const bool grads = da || db || dlog_scale || dbias;
  if (da) CF_CUDA_CHECK(cudaMemsetAsync(da, 0, sizeof(float) * spec.na * spec.d, as_cuda(s)));
  if (db) CF_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * spec.nb * spec.d, as_cuda(s)));
  Scratch rows(sizeof(double) * spec.na * 3, s);
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
