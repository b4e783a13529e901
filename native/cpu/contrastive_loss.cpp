// CPU contrastive losses (CLIP softmax cross-entropy and SigLIP sigmoid); the math, shapes and
// floor are in native/include/contrastive_loss.h. The logit matrix is never stored: it is
// visited in T×T tiles that are computed into per-task scratch and consumed at once.
//
// Work layout. Rows and columns are cut into P groups each (P depends on na, nb and d only). In
// step t, row group p works on column group (p + t) mod P, so within a step each row and each
// column belongs to one task: row statistics, column statistics, dA rows and dB rows are updated
// without locks or per-thread copies, always in the same order. The result's bits therefore do
// not depend on the thread count. Forward: one tile product per logit (with online row and
// column log-sum-exps for CLIP). Backward: the tile is recomputed, turned into the gradient
// tile H, and followed by two rank-T updates dA += H·B_tile and dB += Hᵀ·A_tile.
//
// Kernels. Each chunk of A rows and B rows is first copied (converted from bf16) into f32 buffers
// with padded rows. The tile product is a register-blocked dot-product kernel, 4 rows × 3 columns,
// vectorized over d. The rank-T updates broadcast H entries against 2 vectors of B (or A) rows,
// 6 rows × 16 columns. Both keep 12 accumulators in registers and the FMA units busy on AVX2.
//
// ISA. The kernels are written once against a small vector type V and compiled twice by
// including this file into itself: for AVX2+FMA (chosen at run time when the CPU has it) and
// for plain scalar code (any CPU). CLIPFORGE_CPU_KERNELS=generic forces the scalar build,
// which lets the tests check it on any machine.
#ifndef CF_CONTRASTIVE_KERNELS

#include "contrastive_loss.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "isa.h"
#include "memory.h"
#include "threadpool.h"

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define CF_CL_X86 1
#include <immintrin.h>
#if defined(__clang__)
#define CF_CL_AVX2_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define CF_CL_AVX2_END _Pragma("clang attribute pop")
#else
#define CF_CL_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define CF_CL_AVX2_END _Pragma("GCC pop_options")
#endif
#else
#define CF_CL_X86 0
#endif

namespace cf::cpu::closs {

// One-lane "vector": the portable build of the kernels.
struct VecScalar {
  using R = float;
  static constexpr int W = 1;
  static R zero() { return 0.0f; }
  static R set1(float v) { return v; }
  static R load(const float* p) { return *p; }
  static void store(float* p, R v) { *p = v; }
  // Partial loads and stores never happen with one lane; they exist so the kernels compile.
  static R load_n(const float* p, int) { return *p; }
  static void store_n(float* p, R v, int) { *p = v; }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R div(R a, R b) { return a / b; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static R max(R a, R b) { return std::isnan(a) || std::isnan(b) ? a + b : (a > b ? a : b); }
  static R abs(R a) { return std::fabs(a); }
  static R select_nonneg(R x, R a, R b) { return x >= 0.0f ? a : b; }  // x >= 0 ? a : b
  static R exp(R x) { return std::exp(x); }
  static R log(R x) { return std::log(x); }
  static float hsum(R v) { return v; }
  static float hmax(R v) { return v; }
  static void hsum4(R a, R b, R c, R d, float* out) {
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = d;
  }
};

#if CF_CL_X86
CF_CL_AVX2_BEGIN
// Eight f32 lanes of AVX2 with FMA. exp and log are the Cephes single-precision polynomials
// (about 1 ulp on the ranges used here); NaN inputs give NaN.
struct VecAvx2 {
  using R = __m256;
  static constexpr int W = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float v) { return _mm256_set1_ps(v); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  static __m256i lanes(int n) {
    alignas(32) static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + 8 - n));
  }
  static R load_n(const float* p, int n) { return _mm256_maskload_ps(p, lanes(n)); }
  static void store_n(float* p, R v, int n) { _mm256_maskstore_ps(p, lanes(n), v); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  // max_ps returns its second operand when either is NaN: b's NaN survives.
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R abs(R a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static R select_nonneg(R x, R a, R b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ)); }
  static R exp(R x) {
    // Clamped so that 2^n stays a normal float; the operand order keeps NaN.
    x = _mm256_max_ps(_mm256_set1_ps(-87.3365478515625f), x);
    x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
    const R fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    R r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
    R y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
  }
  // Natural log for positive normal inputs.
  static R log(R x) {
    const __m256i xi = _mm256_castps_si256(x);
    R e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126)));
    // Mantissa in [0.5, 1).
    R m = _mm256_or_ps(_mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x007fffff))), _mm256_set1_ps(0.5f));
    const R small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
    e = _mm256_sub_ps(e, _mm256_and_ps(_mm256_set1_ps(1.0f), small));
    m = _mm256_add_ps(_mm256_sub_ps(m, _mm256_set1_ps(1.0f)), _mm256_and_ps(m, small));
    const R z = _mm256_mul_ps(m, m);
    R y = _mm256_set1_ps(7.0376836292e-2f);
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.1514610310e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.1676998740e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.2420140846e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.4249322787e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.6668057665e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.0000714765e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.4999993993e-1f));
    y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.3333331174e-1f));
    y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
    return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(m, y));
  }
  static float hsum(R v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
  }
  static float hmax(R v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  // out[k] = the sum of the lanes of the k-th argument.
  static void hsum4(R a, R b, R c, R d, float* out) {
    const R abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
};
CF_CL_AVX2_END
#endif

// Scratch from the CPU allocator, so memoryStats() counts it.
template <typename T>
class Buffer {
 public:
  explicit Buffer(size_t n) : bytes_(std::max<size_t>(n, 1) * sizeof(T)), p_(static_cast<T*>(cf::cpu::alloc(bytes_))) {}
  ~Buffer() { cf::cpu::free(p_, bytes_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() const { return p_; }

 private:
  size_t bytes_;
  T* p_;
};

float read_scalar(DType dtype, const void* p) {
  return dtype == DType::BF16 ? bf16_to_float(*static_cast<const bf16*>(p)) : *static_cast<const float*>(p);
}

// The tiling of one problem: T×T sub-tiles, P groups of whole sub-tiles on each side.
struct Plan {
  int64_t na = 0, nb = 0, d = 0;
  int64_t T = 0, P = 1, row_tiles = 0, col_tiles = 0;

  Plan(int64_t na_, int64_t nb_, int64_t d_) : na(na_), nb(nb_), d(d_) {
    // A tile of A rows and one of B rows (2·T·d floats) should stay in a 512 KiB L2 with room
    // to spare; T is a multiple of 12 so the 4×3 and 6-row kernels see whole blocks.
    T = std::min<int64_t>(96, std::max<int64_t>(24, (40960 / std::max<int64_t>(d, 1)) / 12 * 12));
    row_tiles = (na + T - 1) / T;
    col_tiles = (nb + T - 1) / T;
    // 16 groups keep 2–16 threads busy; fewer when the matrix has fewer tiles.
    P = std::max<int64_t>(1, std::min<int64_t>({16, row_tiles, col_tiles}));
  }
  int64_t row_begin(int64_t p) const { return std::min(na, row_tiles * p / P * T); }
  int64_t col_begin(int64_t q) const { return std::min(nb, col_tiles * q / P * T); }
};

// Runs unit(p, q) for every pair of groups, one diagonal of pairs per step.
template <typename F>
void for_each_step(const Plan& plan, const F& unit) {
  for (int64_t t = 0; t < plan.P; ++t)
    parallel_for(plan.P, 1, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) unit(p, (p + t) % plan.P);
    });
}

// Everything one pass over the tiles needs; pointers that a pass does not use stay null.
enum class Pass { ClipForward, ClipBackward, Siglip };
struct Job {
  Pass pass = Pass::ClipForward;
  DType dtype = DType::F32;
  const void* a = nullptr;
  const void* b = nullptr;
  float scale = 1, shift = 0;   // logit = scale · a·b + shift
  bool rows = false, cols = false;
  int64_t row_offset = 0, col_offset = 0;
  float c_row = 0, c_col = 0;   // CLIP: dloss · w_row, dloss · w_col; SigLIP: c_row = dloss · weight
  const float* lse_row = nullptr;
  const float* lse_col = nullptr;
  float* row_m = nullptr;       // CLIP forward: running row max and sum of exp
  float* row_l = nullptr;
  float* col_m = nullptr;
  float* col_l = nullptr;
  double* loss_row = nullptr;   // SigLIP: loss per row
  double* dt_row = nullptr;     // dloss/dt per row (CLIP backward; SigLIP with gradients)
  double* dbias_row = nullptr;  // SigLIP with gradients: dloss/dbias per row
  float* da = nullptr;
  float* db = nullptr;
};

}  // namespace cf::cpu::closs

#if CF_CL_X86
CF_CL_AVX2_BEGIN
namespace cf::cpu::closs::avx2 {
using V = VecAvx2;
#define CF_CONTRASTIVE_KERNELS
#include "contrastive_loss.cpp"
#undef CF_CONTRASTIVE_KERNELS
}  // namespace cf::cpu::closs::avx2
CF_CL_AVX2_END
#endif

namespace cf::cpu::closs::generic {
using V = VecScalar;
#define CF_CONTRASTIVE_KERNELS
#include "contrastive_loss.cpp"
#undef CF_CONTRASTIVE_KERNELS
}  // namespace cf::cpu::closs::generic

namespace cf::cpu {
namespace {

bool use_avx2() {
  static const bool yes = [] {
    const char* force = std::getenv("CLIPFORGE_CPU_KERNELS");
    if (force && std::strcmp(force, "generic") == 0) return false;
    return has_avx2_fma();
  }();
  return yes;
}

void run_job(const closs::Plan& plan, const closs::Job& job) {
#if CF_CL_X86
  if (use_avx2()) {
    closs::for_each_step(plan, [&](int64_t p, int64_t q) { closs::avx2::run_unit(plan, job, p, q); });
    return;
  }
#endif
  closs::for_each_step(plan, [&](int64_t p, int64_t q) { closs::generic::run_unit(plan, job, p, q); });
}

// scale · a_i · b_(i + offset) for each i < n, into out.
void label_logits(DType dtype, const void* a, const void* b, int64_t n, int64_t d, int64_t offset, float scale, float shift, float* out) {
#if CF_CL_X86
  if (use_avx2()) return closs::avx2::label_logits(dtype, a, b, n, d, offset, scale, shift, out);
#endif
  closs::generic::label_logits(dtype, a, b, n, d, offset, scale, shift, out);
}

}  // namespace

void clip_loss_forward(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                       float* loss, float* lse_row, float* lse_col, Stream) {
  using closs::Buffer;
  const closs::Plan plan(spec.na, spec.nb, spec.d);
  closs::Job job;
  job.pass = closs::Pass::ClipForward;
  job.dtype = dtype;
  job.a = a;
  job.b = b;
  job.scale = std::exp(closs::read_scalar(scale_dtype, log_scale));
  job.rows = spec.rows;
  job.cols = spec.cols;
  // Running maxima start at -inf and sums at 0; the first tile's rescale factor is exp(-inf) = 0.
  Buffer<float> rm(spec.rows ? spec.na : 0), rl(spec.rows ? spec.na : 0), cm(spec.cols ? spec.nb : 0), cl(spec.cols ? spec.nb : 0);
  if (spec.rows) {
    std::fill(rm.get(), rm.get() + spec.na, -std::numeric_limits<float>::infinity());
    std::fill(rl.get(), rl.get() + spec.na, 0.0f);
    job.row_m = rm.get();
    job.row_l = rl.get();
  }
  if (spec.cols) {
    std::fill(cm.get(), cm.get() + spec.nb, -std::numeric_limits<float>::infinity());
    std::fill(cl.get(), cl.get() + spec.nb, 0.0f);
    job.col_m = cm.get();
    job.col_l = cl.get();
  }
  run_job(plan, job);
  double total = 0;
  if (spec.rows) {
    Buffer<float> lab(spec.na);
    label_logits(dtype, a, b, spec.na, spec.d, spec.row_offset, job.scale, 0.0f, lab.get());
    double s = 0;
    for (int64_t i = 0; i < spec.na; ++i) {
      lse_row[i] = rm.get()[i] + std::log(rl.get()[i]);
      s += static_cast<double>(lse_row[i]) - lab.get()[i];
    }
    total += spec.w_row * s;
  }
  if (spec.cols) {
    // Column j's label is row j + col_offset: the same dot products with the roles swapped.
    Buffer<float> lab(spec.nb);
    label_logits(dtype, b, a, spec.nb, spec.d, spec.col_offset, job.scale, 0.0f, lab.get());
    double s = 0;
    for (int64_t j = 0; j < spec.nb; ++j) {
      lse_col[j] = cm.get()[j] + std::log(cl.get()[j]);
      s += static_cast<double>(lse_col[j]) - lab.get()[j];
    }
    total += spec.w_col * s;
  }
  *loss = static_cast<float>(total);
}

void clip_loss_backward(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, const ClipLossSpec& spec,
                        const float* lse_row, const float* lse_col, const float* dloss, float* da, float* db, float* dlog_scale, Stream) {
  const closs::Plan plan(spec.na, spec.nb, spec.d);
  if (da) std::fill(da, da + spec.na * spec.d, 0.0f);
  if (db) std::fill(db, db + spec.nb * spec.d, 0.0f);
  if (!da && !db && !dlog_scale) return;
  closs::Buffer<double> dt(dlog_scale ? spec.na : 0);
  if (dlog_scale) std::fill(dt.get(), dt.get() + spec.na, 0.0);
  closs::Job job;
  job.pass = closs::Pass::ClipBackward;
  job.dtype = dtype;
  job.a = a;
  job.b = b;
  job.scale = std::exp(closs::read_scalar(scale_dtype, log_scale));
  job.rows = spec.rows;
  job.cols = spec.cols;
  job.row_offset = spec.row_offset;
  job.col_offset = spec.col_offset;
  job.c_row = static_cast<float>(*dloss * spec.w_row);
  job.c_col = static_cast<float>(*dloss * spec.w_col);
  job.lse_row = lse_row;
  job.lse_col = lse_col;
  job.dt_row = dlog_scale ? dt.get() : nullptr;
  job.da = da;
  job.db = db;
  run_job(plan, job);
  if (dlog_scale) {
    double s = 0;
    for (int64_t i = 0; i < spec.na; ++i) s += dt.get()[i];
    *dlog_scale = static_cast<float>(s);
  }
}

void siglip_loss(DType dtype, const void* a, const void* b, DType scale_dtype, const void* log_scale, DType bias_dtype, const void* bias,
                 const SiglipLossSpec& spec, float* loss, float* da, float* db, float* dlog_scale, float* dbias, Stream) {
  const closs::Plan plan(spec.na, spec.nb, spec.d);
  const bool grads = da || db || dlog_scale || dbias;
  if (da) std::fill(da, da + spec.na * spec.d, 0.0f);
  if (db) std::fill(db, db + spec.nb * spec.d, 0.0f);
  closs::Buffer<double> lr(spec.na), dt(grads ? spec.na : 0), dbi(grads ? spec.na : 0);
  std::fill(lr.get(), lr.get() + spec.na, 0.0);
  closs::Job job;
  job.pass = closs::Pass::Siglip;
  job.dtype = dtype;
  job.a = a;
  job.b = b;
  job.scale = std::exp(closs::read_scalar(scale_dtype, log_scale));
  job.shift = closs::read_scalar(bias_dtype, bias);
  job.row_offset = spec.offset;
  job.c_row = static_cast<float>(spec.weight);
  job.loss_row = lr.get();
  if (grads) {
    // dt and dbias per row come with any gradient: cheap next to the tile products.
    std::fill(dt.get(), dt.get() + spec.na, 0.0);
    std::fill(dbi.get(), dbi.get() + spec.na, 0.0);
    job.dt_row = dt.get();
    job.dbias_row = dbi.get();
  }
  job.da = da;
  job.db = db;
  run_job(plan, job);
  double sl = 0, st = 0, sb = 0;
  for (int64_t i = 0; i < spec.na; ++i) {
    sl += lr.get()[i];
    if (grads) {
      st += dt.get()[i];
      sb += dbi.get()[i];
    }
  }
  *loss = static_cast<float>(spec.weight * sl);
  if (dlog_scale) *dlog_scale = static_cast<float>(st);
  if (dbias) *dbias = static_cast<float>(sb);
}

}  // namespace cf::cpu

#else  // CF_CONTRASTIVE_KERNELS: the kernels, compiled once per vector type V.

using R = V::R;
using S1 = VecScalar;  // for the last n % W columns of a tile and per-row scalars
constexpr int W = V::W;

// Rows of A and B are first copied (and converted from bf16) into f32 buffers whose rows are
// `ld` floats apart, ld = d rounded up to W plus 16: the kernels then need no tail code (the
// padding is zero) and rows no longer start at multiples of 2–4 KiB, which would map a column
// strip of many rows onto a few L1 sets.
int64_t padded_ld(int64_t d) { return (d + 7) / 8 * 8 + 16; }

void copy_rows(DType dtype, const void* x, int64_t i0, int64_t m, int64_t d, int64_t ld, float* dst) {
  for (int64_t i = 0; i < m; ++i) {
    float* o = dst + i * ld;
    if (dtype == DType::F32) {
      std::memcpy(o, static_cast<const float*>(x) + (i0 + i) * d, d * sizeof(float));
    } else {
      const bf16* src = static_cast<const bf16*>(x) + (i0 + i) * d;
      for (int64_t k = 0; k < d; ++k) o[k] = bf16_to_float(src[k]);
    }
    std::fill(o + d, o + ld, 0.0f);
  }
}

// out[r·ldo + c] = scale · (a_r · b_c) + shift for r < MR, c < NR, over dk (a multiple of W)
// entries of rows lda / ldb floats apart.
template <int MR, int NR>
void dot_block(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t dk, float scale, float shift, float* out, int64_t ldo) {
  R acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = V::zero();
  for (int64_t k = 0; k < dk; k += W) {
    R bv[NR];
    for (int c = 0; c < NR; ++c) bv[c] = V::load(b + c * ldb + k);
    for (int r = 0; r < MR; ++r) {
      const R av = V::load(a + r * lda + k);
      for (int c = 0; c < NR; ++c) acc[r][c] = V::fma(av, bv[c], acc[r][c]);
    }
  }
  if constexpr (MR == 4) {
    for (int c = 0; c < NR; ++c) {
      float s[4];
      V::hsum4(acc[0][c], acc[1][c], acc[2][c], acc[3][c], s);
      for (int r = 0; r < 4; ++r) out[r * ldo + c] = scale * s[r] + shift;
    }
  } else {
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NR; ++c) out[r * ldo + c] = scale * V::hsum(acc[r][c]) + shift;
  }
}

using DotFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float, float, float*, int64_t);
// clang-format off
const DotFn kDot[4][3] = {{dot_block<1, 1>, dot_block<1, 2>, dot_block<1, 3>},
                          {dot_block<2, 1>, dot_block<2, 2>, dot_block<2, 3>},
                          {dot_block<3, 1>, dot_block<3, 2>, dot_block<3, 3>},
                          {dot_block<4, 1>, dot_block<4, 2>, dot_block<4, 3>}};
// clang-format on

// The m×n logit tile of a rows against b rows (both ld floats apart, dk entries) into out
// (leading dimension ldo). A 4-row block of a stays in L1 while b's rows stream past it.
void dot_tile(const float* a, int64_t m, const float* b, int64_t n, int64_t ld, int64_t dk, float scale, float shift, float* out, int64_t ldo) {
  for (int64_t i = 0; i < m; i += 4) {
    const int64_t mr = std::min<int64_t>(4, m - i);
    for (int64_t j = 0; j < n; j += 3) {
      const int64_t nr = std::min<int64_t>(3, n - j);
      kDot[mr - 1][nr - 1](a + i * ld, ld, b + j * ld, ld, dk, scale, shift, out + i * ldo + j, ldo);
    }
  }
}

// out[r, 0:w] += Σ_c coef[r·ldc + c] · src[c·lds + 0:w] for r < MR, c < kk, w <= 2W. src may be
// read up to 2W entries (its rows are padded); out only up to w.
template <int MR>
void update_block(float* out, int64_t ldo, const float* coef, int64_t ldc, const float* src, int64_t lds, int64_t kk, int64_t w) {
  R acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = V::zero();
  for (int64_t c = 0; c < kk; ++c) {
    const R s0 = V::load(src + c * lds), s1 = V::load(src + c * lds + W);
    for (int r = 0; r < MR; ++r) {
      const R f = V::set1(coef[r * ldc + c]);
      acc[r][0] = V::fma(f, s0, acc[r][0]);
      acc[r][1] = V::fma(f, s1, acc[r][1]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* o = out + r * ldo;
    if (w == 2 * W) {
      V::store(o, V::add(V::load(o), acc[r][0]));
      V::store(o + W, V::add(V::load(o + W), acc[r][1]));
    } else {
      const int n0 = static_cast<int>(std::min<int64_t>(W, w)), n1 = static_cast<int>(w - n0);
      V::store_n(o, V::add(V::load_n(o, n0), acc[r][0]), n0);
      if (n1 > 0) V::store_n(o + W, V::add(V::load_n(o + W, n1), acc[r][1]), n1);
    }
  }
}

using UpdateFn = void (*)(float*, int64_t, const float*, int64_t, const float*, int64_t, int64_t, int64_t);
const UpdateFn kUpdate[6] = {update_block<1>, update_block<2>, update_block<3>, update_block<4>, update_block<5>, update_block<6>};

// out [m, d] (rows d floats apart) += coef [m, kk] (leading dimension ldc) · src [kk, d] (rows lds
// apart, padded). A strip of 2W columns of src stays in L1 while every row block of out uses it.
void update_tile(float* out, int64_t m, int64_t d, const float* coef, int64_t ldc, const float* src, int64_t lds, int64_t kk) {
  for (int64_t k0 = 0; k0 < d; k0 += 2 * W) {
    const int64_t w = std::min<int64_t>(2 * W, d - k0);
    for (int64_t r = 0; r < m; r += 6) {
      const int64_t mr = std::min<int64_t>(6, m - r);
      kUpdate[mr - 1](out + r * d + k0, d, coef + r * ldc, ldc, src + k0, lds, kk, w);
    }
  }
}

float row_max(const float* x, int64_t n) {
  int64_t j = 0;
  float m = -std::numeric_limits<float>::infinity();
  if (n >= W) {
    R mv = V::load(x);
    for (j = W; j + W <= n; j += W) mv = V::max(mv, V::load(x + j));
    m = V::hmax(mv);
  }
  for (; j < n; ++j) m = S1::max(m, x[j]);
  return m;
}

// Σ_j exp(x_j − m).
float row_sum_exp(const float* x, int64_t n, float m) {
  R acc = V::zero();
  const R mv = V::set1(m);
  int64_t j = 0;
  for (; j + W <= n; j += W) acc = V::add(acc, V::exp(V::sub(V::load(x + j), mv)));
  float s = V::hsum(acc);
  for (; j < n; ++j) s += std::exp(x[j] - m);
  return s;
}

// Σ_j x_j · y_j in double per row (the tile is short; the total runs over all tiles).
double row_dot(const float* x, const float* y, int64_t n) {
  R acc = V::zero();
  int64_t j = 0;
  for (; j + W <= n; j += W) acc = V::fma(V::load(x + j), V::load(y + j), acc);
  double s = V::hsum(acc);
  for (; j < n; ++j) s += static_cast<double>(x[j]) * y[j];
  return s;
}

double row_sum(const float* x, int64_t n) {
  R acc = V::zero();
  int64_t j = 0;
  for (; j + W <= n; j += W) acc = V::add(acc, V::load(x + j));
  double s = V::hsum(acc);
  for (; j < n; ++j) s += x[j];
  return s;
}

// For one vector of logits x: softplus(x) = log(1 + e^x) and, when sig is given, σ(x), sharing
// y = e^(−|x|): softplus = max(x, 0) + log1p(y), σ = 1/(1 + y) for x >= 0 and y/(1 + y) below.
// log1p(y) = log(u) − ((u − 1) − y)/u with u = 1 + y stays accurate for y far below 1 (SigLIP's
// negatives start at y ≈ 4.5e-5, where log(1 + y) in f32 would lose 1e-3 of each term).
template <typename U>
typename U::R softplus_sigmoid(typename U::R x, typename U::R* sig) {
  using UR = typename U::R;
  const UR one = U::set1(1.0f);
  const UR y = U::exp(U::sub(U::zero(), U::abs(x)));
  const UR u = U::add(one, y);
  const UR r = U::div(one, u);
  if (sig) *sig = U::select_nonneg(x, r, U::mul(y, r));
  const UR l1p = U::sub(U::log(u), U::mul(U::sub(U::sub(u, one), y), r));
  return U::add(U::max(U::zero(), x), l1p);
}

// CLIP forward: folds tile s [m, n] into the running row (rm, rl) and column (cm, cl) maxima and
// sums of exp. tmp holds 2·n floats.
void clip_forward_tile(const Job& job, const float* s, int64_t lds, int64_t m, int64_t n, int64_t i0, int64_t j0, float* tmp) {
  if (job.rows) {
    float* rm = job.row_m + i0;
    float* rl = job.row_l + i0;
    for (int64_t i = 0; i < m; ++i) {
      const float* x = s + i * lds;
      const float mnew = S1::max(rm[i], row_max(x, n));
      rl[i] = rl[i] * std::exp(rm[i] - mnew) + row_sum_exp(x, n, mnew);
      rm[i] = mnew;
    }
  }
  if (job.cols) {
    float* cm = job.col_m + j0;
    float* cl = job.col_l + j0;
    float* tmax = tmp;
    float* tsum = tmp + n;
    std::copy(cm, cm + n, tmax);
    std::fill(tsum, tsum + n, 0.0f);
    for (int64_t i = 0; i < m; ++i) {
      const float* x = s + i * lds;
      int64_t j = 0;
      for (; j + W <= n; j += W) V::store(tmax + j, V::max(V::load(tmax + j), V::load(x + j)));
      for (; j < n; ++j) tmax[j] = S1::max(tmax[j], x[j]);
    }
    for (int64_t i = 0; i < m; ++i) {
      const float* x = s + i * lds;
      int64_t j = 0;
      for (; j + W <= n; j += W) V::store(tsum + j, V::add(V::load(tsum + j), V::exp(V::sub(V::load(x + j), V::load(tmax + j)))));
      for (; j < n; ++j) tsum[j] += std::exp(x[j] - tmax[j]);
    }
    for (int64_t j = 0; j < n; ++j) {
      cl[j] = cl[j] * std::exp(cm[j] - tmax[j]) + tsum[j];
      cm[j] = tmax[j];
    }
  }
}

// CLIP backward: the gradient tile G = dL/dlogits into h; dt per row += Σ_j G·logit.
void clip_backward_tile(const Job& job, const float* s, float* h, int64_t ld, int64_t m, int64_t n, int64_t i0, int64_t j0) {
  const R cr = V::set1(job.c_row), cc = V::set1(job.c_col);
  for (int64_t i = 0; i < m; ++i) {
    const float* x = s + i * ld;
    float* g = h + i * ld;
    const float lr = job.rows ? job.lse_row[i0 + i] : 0.0f;
    const R lrv = V::set1(lr);
    const float* lc = job.cols ? job.lse_col + j0 : nullptr;
    int64_t j = 0;
    for (; j + W <= n; j += W) {
      const R v = V::load(x + j);
      R gv = V::zero();
      if (job.rows) gv = V::mul(cr, V::exp(V::sub(v, lrv)));
      if (job.cols) gv = V::fma(cc, V::exp(V::sub(v, V::load(lc + j))), gv);
      V::store(g + j, gv);
    }
    for (; j < n; ++j) {
      float gv = 0.0f;
      if (job.rows) gv = job.c_row * std::exp(x[j] - lr);
      if (job.cols) gv += job.c_col * std::exp(x[j] - lc[j]);
      g[j] = gv;
    }
  }
  // One-hot labels: row i's at column i + row_offset, column j's at row j + col_offset.
  if (job.rows)
    for (int64_t i = 0; i < m; ++i) {
      const int64_t jl = i0 + i + job.row_offset - j0;
      if (jl >= 0 && jl < n) h[i * ld + jl] -= job.c_row;
    }
  if (job.cols)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t il = j0 + j + job.col_offset - i0;
      if (il >= 0 && il < m) h[il * ld + j] -= job.c_col;
    }
  if (job.dt_row)
    for (int64_t i = 0; i < m; ++i) job.dt_row[i0 + i] += row_dot(h + i * ld, s + i * ld, n);
}

// SigLIP: loss per row += Σ_j softplus(−z·logit); with gradients, G = c · (σ(logit) − label)
// into h, dt per row += Σ G·(logit − bias) and dbias per row += Σ G. The positive is handled
// apart, as softplus(−x) and −c·σ(−x) in double: softplus(x) − x and σ(x) − 1 would cancel to
// nothing once x is large.
void siglip_tile(const Job& job, float* s, float* h, int64_t ld, int64_t m, int64_t n, int64_t i0, int64_t j0) {
  const bool grads = job.dt_row != nullptr;
  const R c = V::set1(job.c_row);
  const R shift = V::set1(job.shift);
  for (int64_t i = 0; i < m; ++i) {
    float* x = s + i * ld;
    float* g = grads ? h + i * ld : nullptr;
    const int64_t jl = i0 + i + job.row_offset - j0;
    const bool has_label = jl >= 0 && jl < n;
    const double xl = has_label ? x[jl] : 0.0;
    // Out of the sums below: softplus(−inf) = 0, σ(−inf) = 0.
    if (has_label) x[jl] = -std::numeric_limits<float>::infinity();
    R acc = V::zero();
    int64_t j = 0;
    for (; j + W <= n; j += W) {
      R sig;
      acc = V::add(acc, softplus_sigmoid<V>(V::load(x + j), grads ? &sig : nullptr));
      if (grads) V::store(g + j, V::mul(c, sig));
    }
    double sum = V::hsum(acc);
    for (; j < n; ++j) {
      float sig;
      sum += softplus_sigmoid<S1>(x[j], grads ? &sig : nullptr);
      if (grads) g[j] = job.c_row * sig;
    }
    if (has_label) {
      sum += std::max(-xl, 0.0) + std::log1p(std::exp(-std::fabs(xl)));
      x[jl] = static_cast<float>(xl);
    }
    job.loss_row[i0 + i] += sum;
    if (!grads) continue;
    if (has_label) g[jl] = static_cast<float>(-job.c_row / (1.0 + std::exp(xl)));
    R dt = V::zero();
    j = 0;
    for (; j + W <= n; j += W) dt = V::fma(V::load(g + j), V::sub(V::load(x + j), shift), dt);
    double sdt = V::hsum(dt);
    for (; j < n; ++j) sdt += static_cast<double>(g[j]) * (x[j] - job.shift);
    job.dt_row[i0 + i] += sdt;
    job.dbias_row[i0 + i] += row_sum(g, n);
  }
}

// Scales h by `scale` (dlogits/dA carries the logit scale) and writes its transpose to ht.
void scale_and_transpose(float* h, float* ht, int64_t ld, int64_t m, int64_t n, float scale, bool transpose) {
  const R sv = V::set1(scale);
  for (int64_t i = 0; i < m; ++i) {
    float* g = h + i * ld;
    int64_t j = 0;
    for (; j + W <= n; j += W) V::store(g + j, V::mul(sv, V::load(g + j)));
    for (; j < n; ++j) g[j] *= scale;
  }
  if (transpose)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) ht[j * ld + i] = h[i * ld + j];
}

// One task: row group p against column group q. Rows are copied in chunks of up to kChunkTiles
// tiles per side (bounded scratch whatever the group size), then visited tile by tile.
constexpr int64_t kChunkTiles = 8;

void run_unit(const Plan& plan, const Job& job, int64_t p, int64_t q) {
  const int64_t T = plan.T, d = plan.d, ld = padded_ld(d), dk = (d + W - 1) / W * W;
  const int64_t r0 = plan.row_begin(p), r1 = plan.row_begin(p + 1);
  const int64_t c0 = plan.col_begin(q), c1 = plan.col_begin(q + 1);
  if (r0 >= r1 || c0 >= c1) return;
  // Gradient tiles (and the two rank-T updates) in the CLIP backward and in SigLIP with gradients.
  const bool backward = job.pass == Pass::ClipBackward || (job.pass == Pass::Siglip && job.dt_row != nullptr);
  const int64_t chunk = kChunkTiles * T;
  Buffer<float> s(T * T), h(backward ? T * T : 0), ht(backward && job.db ? T * T : 0), tmp(2 * T);
  Buffer<float> abuf(std::min(chunk, r1 - r0) * ld), bbuf(std::min(chunk, c1 - c0) * ld);
  for (int64_t ia = r0; ia < r1; ia += chunk) {
    const int64_t ma = std::min(chunk, r1 - ia);
    copy_rows(job.dtype, job.a, ia, ma, d, ld, abuf.get());
    for (int64_t jb = c0; jb < c1; jb += chunk) {
      const int64_t nbc = std::min(chunk, c1 - jb);
      copy_rows(job.dtype, job.b, jb, nbc, d, ld, bbuf.get());
      for (int64_t i0 = ia; i0 < ia + ma; i0 += T) {
        const int64_t m = std::min(T, ia + ma - i0);
        const float* ar = abuf.get() + (i0 - ia) * ld;
        for (int64_t j0 = jb; j0 < jb + nbc; j0 += T) {
          const int64_t n = std::min(T, jb + nbc - j0);
          const float* br = bbuf.get() + (j0 - jb) * ld;
          dot_tile(ar, m, br, n, ld, dk, job.scale, job.shift, s.get(), T);
          switch (job.pass) {
            case Pass::ClipForward: clip_forward_tile(job, s.get(), T, m, n, i0, j0, tmp.get()); break;
            case Pass::ClipBackward: clip_backward_tile(job, s.get(), h.get(), T, m, n, i0, j0); break;
            case Pass::Siglip: siglip_tile(job, s.get(), h.get(), T, m, n, i0, j0); break;
          }
          if (!backward || (!job.da && !job.db)) continue;
          scale_and_transpose(h.get(), ht.get(), T, m, n, job.scale, job.db != nullptr);
          if (job.da) update_tile(job.da + i0 * d, m, d, h.get(), T, br, ld, n);
          if (job.db) update_tile(job.db + j0 * d, n, d, ht.get(), T, ar, ld, m);
        }
      }
    }
  }
}

// out[i] = scale · a_i · b_(i + offset) + shift for i < n, rows copied in blocks of 64.
void label_logits(DType dtype, const void* a, const void* b, int64_t n, int64_t d, int64_t offset, float scale, float shift, float* out) {
  constexpr int64_t kBlock = 64;
  const int64_t ld = padded_ld(d), dk = (d + W - 1) / W * W;
  parallel_for((n + kBlock - 1) / kBlock, 1, [&](int64_t bb, int64_t be) {
    Buffer<float> abuf(kBlock * ld), bbuf(kBlock * ld);
    for (int64_t blk = bb; blk < be; ++blk) {
      const int64_t i0 = blk * kBlock, m = std::min(kBlock, n - i0);
      copy_rows(dtype, a, i0, m, d, ld, abuf.get());
      copy_rows(dtype, b, i0 + offset, m, d, ld, bbuf.get());
      for (int64_t i = 0; i < m; ++i) dot_block<1, 1>(abuf.get() + i * ld, ld, bbuf.get() + i * ld, ld, dk, scale, shift, out + i0 + i, 1);
    }
  });
}

#endif  // CF_CONTRASTIVE_KERNELS
