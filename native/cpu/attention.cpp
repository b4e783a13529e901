// Fused attention on the CPU (see attention.h for the math, layouts and floor).
//
// Work is split into tasks of (batch, head, run of query blocks); the thread pool runs them.
// A task transposes its head's K (and, for the backward, V) once into an f32 [D, keys] panel,
// so score tiles are plain row-times-panel products, then for each query block of at most
// kMaxQueryBlock rows walks the keys in blocks of at most kKeyBlock:
//   forward:  scores = Q K^T (a per-task [rows, key block] scratch, never S x S), online
//             softmax (running max m and sum l per row, O rescaled when m grows), O += P V.
//   backward: P = exp(scores - lse) recomputed, dP = dO V^T, dS = P (dP - delta), then
//             dV += P^T dO, dK += dS^T Q, dQ += dS K, with dK and dV accumulated in f32 over
//             the task's query blocks.
// Every product runs through one register-blocked kernel (6 rows x 16 columns, 12 vector
// accumulators) that reads its left operand through two strides, so P^T and dS^T need no
// copies, and scales the product as it stores it, so the softmax scale costs nothing. Rows of
// Q, K, V and dO that are f32 with D a multiple of 8 are read where they lie (any layout);
// others are first converted into f32 scratch. Scores are kept in base 2 (the scale carries
// log2(e)), so the softmax is exp2.
//
// When a head is split across tasks (few heads, many threads), each task writes its dK and
// dV partial sums to a shared f32 buffer and a second pass adds them in a fixed order.
//
// The vector code is written once with GCC/Clang vector extensions and compiled twice: for
// AVX2 + FMA through a function attribute (picked at run time when the CPU has both) and for
// the baseline target (SSE2 on x86-64, NEON on ARM), so the addon loads on any CPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>

#include "attention.h"
#include "isa.h"
#include "threadpool.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CF_ATTN_AVX2 1
#endif

namespace cf::cpu {
namespace {

#define CF_ALWAYS_INLINE inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__)
// The 32-byte vectors below never cross a call boundary (everything is inlined into the
// per-ISA functions), so GCC's note about their ABI without AVX does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));

#if defined(__clang__)
#define CF_SHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define CF_SHUFFLE(a, b, ...) __builtin_shuffle(a, b, v8i{__VA_ARGS__})
#endif

constexpr int64_t kMaxQueryBlock = 96;  // rows of Q per block: the score tile stays in L2
// Causal blocks are shorter: a block computes scores up to its last row's key, so smaller
// blocks skip more of the masked triangle (at S = 77, 36% fewer products than one block).
constexpr int64_t kMaxQueryBlockCausal = 32;
constexpr int64_t kKeyBlock = 512;      // keys per online-softmax step; CLIP's S fits one step
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// (A scalar operand of a vector op is what GCC turns into one vbroadcastss.)
CF_ALWAYS_INLINE v8f splat(float x) { return v8f{} + x; }
CF_ALWAYS_INLINE v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// bf16 is the top half of an f32: widen, shift into place.
CF_ALWAYS_INLINE v8f load8(const bf16* p) {
  v8h h;
  std::memcpy(&h, p, sizeof h);
  return (v8f)(__builtin_convertvector(h, v8i) << 16);
}
CF_ALWAYS_INLINE void store8(float* p, const v8f& v) { std::memcpy(p, &v, sizeof v); }
CF_ALWAYS_INLINE v8f select(const v8i& mask, const v8f& a, const v8f& b) { return (v8f)((mask & (v8i)a) | (~mask & (v8i)b)); }
CF_ALWAYS_INLINE float hmax(const v8f& v) {
  float m = v[0];
  for (int i = 1; i < 8; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
CF_ALWAYS_INLINE float hsum(const v8f& v) { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }

// 2^x for x <= ~0 (every caller subtracts a row max or logsumexp): x = n + f with n an
// integer and |f| <= 1/2, 2^f by its degree-6 Taylor series in f ln 2 (relative error below
// 2e-7), 2^n built in the exponent bits. Below -126 the result is 0 (so 2^-inf = 0); NaN
// stays NaN.
CF_ALWAYS_INLINE v8f exp2v(const v8f& x) {
  const v8i tiny = x < splat(-126.0f);
  const v8f xc = select(tiny, splat(-126.0f), x);
  const v8f t = xc + splat(12582912.0f);  // 1.5 * 2^23: rounds to an integer n in the low bits
  const v8f f = xc - (t - splat(12582912.0f));
  v8f p = splat(1.5403530393381606e-4f);
  p = p * f + splat(1.3333558146428443e-3f);
  p = p * f + splat(9.6181291076284772e-3f);
  p = p * f + splat(5.5504108664821580e-2f);
  p = p * f + splat(2.4022650695910071e-1f);
  p = p * f + splat(6.9314718055994531e-1f);
  p = p * f + splat(1.0f);
  const v8i bits = ((v8i)t - 0x4B400000 + 127) << 23;
  return select(tiny, splat(0.0f), p * (v8f)bits);
}

// C[MR x 8*NV] = (accumulate ? C : 0) + alpha * sum_k A(i, k) B[k, :], with
// A(i, k) = A[i * ars + k * aks] and B's rows ldb apart.
template <int MR, int NV>
CF_ALWAYS_INLINE void tile(int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb, float* C,
                           int64_t ldc, bool accumulate, float alpha) {
  v8f c[MR][NV] = {};
  for (int64_t k = 0; k < K; ++k, A += aks, B += ldb) {
    v8f b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load8(B + 8 * v);
    for (int r = 0; r < MR; ++r) {
      const float a = A[r * ars];
      for (int v = 0; v < NV; ++v) c[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      float* dst = C + r * ldc + 8 * v;
      store8(dst, accumulate ? load8(dst) + alpha * c[r][v] : alpha * c[r][v]);
    }
}

template <int NV>
CF_ALWAYS_INLINE void tile_rows(int64_t m, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B, int64_t ldb,
                                float* C, int64_t ldc, bool acc, float alpha) {
  switch (m) {
    case 1: tile<1, NV>(K, A, ars, aks, B, ldb, C, ldc, acc, alpha); break;
    case 2: tile<2, NV>(K, A, ars, aks, B, ldb, C, ldc, acc, alpha); break;
    case 3: tile<3, NV>(K, A, ars, aks, B, ldb, C, ldc, acc, alpha); break;
    case 4: tile<4, NV>(K, A, ars, aks, B, ldb, C, ldc, acc, alpha); break;
    case 5: tile<5, NV>(K, A, ars, aks, B, ldb, C, ldc, acc, alpha); break;
    default: tile<6, NV>(K, A, ars, aks, B, ldb, C, ldc, acc, alpha); break;
  }
}

// C[M x N] = (acc ? C : 0) + alpha * A(M x K) B(K x N), N a multiple of 8, A as in tile().
CF_ALWAYS_INLINE void gemm_body(int64_t M, int64_t N, int64_t K, const float* A, int64_t ars, int64_t aks, const float* B,
                                int64_t ldb, float* C, int64_t ldc, bool acc, float alpha) {
  for (int64_t j = 0; j < N; j += 16) {
    for (int64_t i = 0; i < M; i += 6) {
      const int64_t m = std::min<int64_t>(6, M - i);
      if (j + 16 <= N) tile_rows<2>(m, K, A + i * ars, ars, aks, B + j, ldb, C + i * ldc + j, ldc, acc, alpha);
      else tile_rows<1>(m, K, A + i * ars, ars, aks, B + j, ldb, C + i * ldc + j, ldc, acc, alpha);
    }
  }
}

// One out-of-line copy per ISA: inlined into the task bodies, the tiles would compete for
// vector registers with the softmax's constants and spill accumulators.
#define CF_GEMM_PARAMS                                                                                      \
  int64_t M, int64_t N, int64_t K, const float *A, int64_t ars, int64_t aks, const float *B, int64_t ldb, \
      float *C, int64_t ldc, bool acc, float alpha
#define CF_GEMM_ARGS M, N, K, A, ars, aks, B, ldb, C, ldc, acc, alpha
__attribute__((noinline)) void gemm_generic(CF_GEMM_PARAMS) { gemm_body(CF_GEMM_ARGS); }
#ifdef CF_ATTN_AVX2
__attribute__((noinline, target("avx2,fma"))) void gemm_avx2(CF_GEMM_PARAMS) { gemm_body(CF_GEMM_ARGS); }
#endif

template <bool kAvx2>
CF_ALWAYS_INLINE void gemm(CF_GEMM_PARAMS) {
#ifdef CF_ATTN_AVX2
  if constexpr (kAvx2) return gemm_avx2(CF_GEMM_ARGS);
#endif
  gemm_generic(CF_GEMM_ARGS);
}
#undef CF_GEMM_PARAMS
#undef CF_GEMM_ARGS

// Row max of x[0, n) (n a multiple of 8).
CF_ALWAYS_INLINE float row_max(const float* x, int64_t n) {
  v8f m = splat(-INFINITY);
  for (int64_t j = 0; j < n; j += 8) {
    const v8f v = load8(x + j);
    m = select(v > m, v, m);
  }
  return hmax(m);
}

// x[j] = 2^(x[j] - sub) in place over [0, n) (n a multiple of 8); returns the sum.
CF_ALWAYS_INLINE float exp2_row(float* x, int64_t n, float sub) {
  v8f s = splat(0.0f);
  const v8f vs = splat(sub);
  for (int64_t j = 0; j < n; j += 8) {
    const v8f p = exp2v(load8(x + j) - vs);
    store8(x + j, p);
    s += p;
  }
  return hsum(s);
}

// Rows r0..r0+7 of an [8, 8] block, transposed: out row c = (in[0][c], ..., in[7][c]).
CF_ALWAYS_INLINE void transpose8(v8f r[8]) {
  v8f t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = CF_SHUFFLE(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = CF_SHUFFLE(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4)
    for (int j = 0; j < 2; ++j) {
      u[i + 2 * j] = CF_SHUFFLE(t[i + j], t[i + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[i + 2 * j + 1] = CF_SHUFFLE(t[i + j], t[i + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int j = 0; j < 4; ++j) {
    r[j] = CF_SHUFFLE(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[j + 4] = CF_SHUFFLE(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

inline int64_t round8(int64_t n) { return (n + 7) & ~int64_t{7}; }

// A task's f32 working memory, kept per thread across tasks and calls when small (CLIP's
// shapes need about 1 MB): a fresh allocation of this size comes from mmap and pays a page
// fault per 4 KB on first touch, which cost more than the math at S = 50.
class Scratch {
 public:
  explicit Scratch(int64_t n) {
    constexpr int64_t kKeep = int64_t{1} << 20;
    thread_local std::unique_ptr<float[]> cached;
    thread_local int64_t cached_n = 0;
    if (n > kKeep) {
      own_.reset(new float[n]);
      ptr_ = own_.get();
      return;
    }
    if (n > cached_n) {
      cached.reset(new float[n]);
      cached_n = n;
    }
    ptr_ = cached.get();
  }
  float* get() const { return ptr_; }

 private:
  std::unique_ptr<float[]> own_;
  float* ptr_ = nullptr;
};

template <typename T>
struct Problem {
  AttentionDims d;
  bool causal;
  float scale;
  const T *q, *k, *v;
  AttentionLayout in, outl;
  const T* o;  // backward: the forward's output
  const T* dout;
  T* out;      // forward output
  float* lse;  // forward writes, backward reads
  T *dq, *dk, *dv;
  float* partial;  // backward with split heads: [B*H][nchunk][2][S][Dp] f32 dK, dV
  int64_t nqb, bq, nchunk;

  int64_t Dp() const { return round8(d.dim); }
  // Whether rows can be read in place: f32 with every 8-wide load inside the row.
  bool direct() const { return std::is_same_v<T, float> && d.dim % 8 == 0; }
  int64_t row(const AttentionLayout& l, int64_t bh, int64_t s) const {
    return (bh / d.heads) * l.batch + (bh % d.heads) * l.head + s * l.seq;
  }
  // Query rows [begin, end) of chunk c of a head.
  void chunk_rows(int64_t c, int64_t* begin, int64_t* end) const {
    *begin = (c * nqb / nchunk) * bq;
    *end = std::min(d.seq, ((c + 1) * nqb / nchunk) * bq);
  }
};

// An f32 [rows, Dp] operand: where its rows start and how far apart they are.
struct Rows {
  const float* p;
  int64_t ld;
};

// Rows s0..s0+rows of one head, in place when direct(), else converted into `scratch`
// ([rows, Dp], columns past D zero).
template <typename T>
CF_ALWAYS_INLINE Rows rows_of(const Problem<T>& p, const T* base, const AttentionLayout& l, int64_t bh, int64_t s0, int64_t rows,
                              float* scratch) {
  if constexpr (std::is_same_v<T, float>) {
    if (p.direct()) return {base + p.row(l, bh, s0), l.seq};
  }
  const int64_t D = p.d.dim, Dp = p.Dp();
  for (int64_t r = 0; r < rows; ++r) {
    const T* src = base + p.row(l, bh, s0 + r);
    float* dst = scratch + r * Dp;
    int64_t c = 0;
    for (; c + 8 <= D; c += 8) store8(dst + c, load8(src + c));
    for (; c < D; ++c) dst[c] = Elem<T>::load(src, c);
    for (; c < Dp; ++c) dst[c] = 0.0f;
  }
  return {scratch, Dp};
}

// dst[c * ld + r] = element c of row r of one head (a transposed [D, ld] panel); keys
// [rows, ld) are 0. Full 8 x 8 blocks go through registers; the edges element by element.
template <typename T>
CF_ALWAYS_INLINE void pack_cols(const Problem<T>& p, const T* base, const AttentionLayout& l, int64_t bh, int64_t rows,
                                float* dst, int64_t ld) {
  const int64_t D = p.d.dim, D8 = D & ~int64_t{7};
  for (int64_t r0 = 0; r0 < ld; r0 += 8) {
    const int64_t n = std::max<int64_t>(0, std::min<int64_t>(8, rows - r0));
    const T* src[8];
    for (int64_t r = 0; r < n; ++r) src[r] = base + p.row(l, bh, r0 + r);
    int64_t c0 = 0;
    if (n == 8) {
      for (; c0 < D8; c0 += 8) {
        v8f blk[8];
        for (int r = 0; r < 8; ++r) blk[r] = load8(src[r] + c0);
        transpose8(blk);
        for (int c = 0; c < 8; ++c) store8(dst + (c0 + c) * ld + r0, blk[c]);
      }
    }
    for (int64_t c = c0; c < D; ++c) {
      float* d = dst + c * ld + r0;
      for (int64_t r = 0; r < n; ++r) d[r] = Elem<T>::load(src[r], c);
      for (int64_t r = n; r < 8; ++r) d[r] = 0.0f;
    }
  }
}

// Masks scores of keys j0 + j that row i may not see (padding past nk, or j0 + j > i when
// causal) to -inf, over [0, nkp).
CF_ALWAYS_INLINE void mask_row(float* x, bool causal, int64_t i, int64_t j0, int64_t nk, int64_t nkp) {
  const int64_t visible = causal ? std::max<int64_t>(0, std::min<int64_t>(nk, i + 1 - j0)) : nk;
  for (int64_t j = visible; j < nkp; ++j) x[j] = -INFINITY;
}

template <typename T, bool kAvx2>
CF_ALWAYS_INLINE void forward_task(const Problem<T>& p, int64_t task) {
  const int64_t bh = task / p.nchunk, S = p.d.seq, D = p.d.dim, Dp = p.Dp(), bq = p.bq;
  int64_t i_begin, i_end;
  p.chunk_rows(task % p.nchunk, &i_begin, &i_end);
  if (i_begin >= i_end) return;
  const int64_t kmax = p.causal ? i_end : S;
  const int64_t ldk = round8(kmax), lds = std::min(ldk, kKeyBlock);
  const bool direct = p.direct();
  Scratch buf(D * ldk + (direct ? 0 : kmax * Dp + bq * Dp) + bq * (Dp + lds + 2));
  float* Kt = buf.get();                             // [D, ldk]: keys along rows
  float* Vs = Kt + D * ldk;                          // [kmax, Dp] when V is converted
  float* Qs = Vs + (direct ? 0 : kmax * Dp);         // [bq, Dp] when Q is converted
  float* Sc = Qs + (direct ? 0 : bq * Dp);           // [bq, lds] scores, then probabilities
  float* O = Sc + bq * lds;                          // [bq, Dp] unnormalized output
  float* m = O + bq * Dp;                            // running max (base 2)
  float* l = m + bq;                                 // running sum
  const float c2 = p.scale * kLog2e;
  pack_cols(p, p.k, p.in, bh, kmax, Kt, ldk);
  const Rows V = rows_of(p, p.v, p.in, bh, 0, kmax, Vs);
  for (int64_t ib = i_begin; ib < i_end; ib += bq) {
    const int64_t M = std::min(bq, i_end - ib);
    const Rows Q = rows_of(p, p.q, p.in, bh, ib, M, Qs);
    std::fill(O, O + M * Dp, 0.0f);
    std::fill(m, m + M, -INFINITY);
    std::fill(l, l + M, 0.0f);
    const int64_t kend = p.causal ? ib + M : S;
    for (int64_t j0 = 0; j0 < kend; j0 += kKeyBlock) {
      const int64_t nk = std::min(kKeyBlock, kend - j0), nkp = round8(nk);
      gemm<kAvx2>(M, nkp, D, Q.p, Q.ld, 1, Kt + j0, ldk, Sc, lds, false, c2);
      for (int64_t r = 0; r < M; ++r) {
        float* x = Sc + r * lds;
        mask_row(x, p.causal, ib + r, j0, nk, nkp);
        // Every row sees key 0 in the first block, so m is finite from then on.
        const float mx = std::max(m[r], row_max(x, nkp));
        const float alpha = std::exp2(m[r] - mx);
        l[r] = l[r] * alpha + exp2_row(x, nkp, mx);
        m[r] = mx;
        if (alpha != 1.0f && j0 > 0) {
          float* o = O + r * Dp;
          for (int64_t c = 0; c < Dp; ++c) o[c] *= alpha;
        }
      }
      gemm<kAvx2>(M, Dp, nk, Sc, lds, 1, V.p + j0 * V.ld, V.ld, O, Dp, true, 1.0f);
    }
    for (int64_t r = 0; r < M; ++r) {
      const float inv = 1.0f / l[r];
      T* dst = p.out + p.row(p.outl, bh, ib + r);
      for (int64_t c = 0; c < D; ++c) Elem<T>::store(dst, c, O[r * Dp + c] * inv);
      p.lse[bh * S + ib + r] = (m[r] + std::log2(l[r])) * kLn2;
    }
  }
}

template <typename T, bool kAvx2>
CF_ALWAYS_INLINE void backward_task(const Problem<T>& p, int64_t task) {
  const int64_t bh = task / p.nchunk, chunk = task % p.nchunk, S = p.d.seq, D = p.d.dim, Dp = p.Dp(), bq = p.bq;
  int64_t i_begin, i_end;
  p.chunk_rows(chunk, &i_begin, &i_end);
  if (i_begin >= i_end) return;
  const int64_t kmax = p.causal ? i_end : S;
  const int64_t ldk = round8(kmax), lds = std::min(ldk, kKeyBlock);
  const bool direct = p.direct();
  Scratch buf(2 * D * ldk + 2 * kmax * Dp + (direct ? 0 : kmax * Dp + 2 * bq * Dp) + bq * (Dp + 2 * lds + 2));
  float* Kt = buf.get();                       // [D, ldk]
  float* Vt = Kt + D * ldk;                    // [D, ldk]
  float* dK = Vt + D * ldk;                    // [kmax, Dp] accumulators
  float* dV = dK + kmax * Dp;                  // [kmax, Dp]
  float* Ks = dV + kmax * Dp;                  // [kmax, Dp] when K is converted
  float* Qs = Ks + (direct ? 0 : kmax * Dp);   // [bq, Dp] when Q is converted
  float* dOs = Qs + (direct ? 0 : bq * Dp);    // [bq, Dp] when dO is converted
  float* dQ = dOs + (direct ? 0 : bq * Dp);    // [bq, Dp]
  float* P = dQ + bq * Dp;                     // [bq, lds]
  float* dS = P + bq * lds;                    // [bq, lds]: dP, then dS in place
  float* lse2 = dS + bq * lds;                 // lse in base 2
  float* delta = lse2 + bq;
  const float c2 = p.scale * kLog2e;
  pack_cols(p, p.k, p.in, bh, kmax, Kt, ldk);
  pack_cols(p, p.v, p.in, bh, kmax, Vt, ldk);
  const Rows K = rows_of(p, p.k, p.in, bh, 0, kmax, Ks);
  std::fill(dK, dK + 2 * kmax * Dp, 0.0f);
  for (int64_t ib = i_begin; ib < i_end; ib += bq) {
    const int64_t M = std::min(bq, i_end - ib);
    const Rows Q = rows_of(p, p.q, p.in, bh, ib, M, Qs);
    const Rows dO = rows_of(p, p.dout, p.outl, bh, ib, M, dOs);
    for (int64_t r = 0; r < M; ++r) {
      const T* o = p.o + p.row(p.outl, bh, ib + r);
      const float* g = dO.p + r * dO.ld;
      float s = 0.0f;
      for (int64_t c = 0; c < D; ++c) s += g[c] * Elem<T>::load(o, c);
      delta[r] = s;
      lse2[r] = p.lse[bh * S + ib + r] * kLog2e;
    }
    std::fill(dQ, dQ + M * Dp, 0.0f);
    const int64_t kend = p.causal ? ib + M : S;
    for (int64_t j0 = 0; j0 < kend; j0 += kKeyBlock) {
      const int64_t nk = std::min(kKeyBlock, kend - j0), nkp = round8(nk);
      gemm<kAvx2>(M, nkp, D, Q.p, Q.ld, 1, Kt + j0, ldk, P, lds, false, c2);
      gemm<kAvx2>(M, nkp, D, dO.p, dO.ld, 1, Vt + j0, ldk, dS, lds, false, 1.0f);
      for (int64_t r = 0; r < M; ++r) {
        float* x = P + r * lds;
        float* ds = dS + r * lds;
        mask_row(x, p.causal, ib + r, j0, nk, nkp);
        exp2_row(x, nkp, lse2[r]);
        const v8f dl = splat(delta[r]);
        for (int64_t j = 0; j < nkp; j += 8) store8(ds + j, load8(x + j) * (load8(ds + j) - dl));
      }
      gemm<kAvx2>(nk, Dp, M, P, 1, lds, dO.p, dO.ld, dV + j0 * Dp, Dp, true, 1.0f);
      gemm<kAvx2>(nk, Dp, M, dS, 1, lds, Q.p, Q.ld, dK + j0 * Dp, Dp, true, p.scale);
      gemm<kAvx2>(M, Dp, nk, dS, lds, 1, K.p + j0 * K.ld, K.ld, dQ, Dp, true, p.scale);
    }
    for (int64_t r = 0; r < M; ++r) {
      T* dst = p.dq + p.row(p.in, bh, ib + r);
      for (int64_t c = 0; c < D; ++c) Elem<T>::store(dst, c, dQ[r * Dp + c]);
    }
  }
  if (p.nchunk == 1) {
    for (int64_t j = 0; j < kmax; ++j) {
      T* dk = p.dk + p.row(p.in, bh, j);
      T* dv = p.dv + p.row(p.in, bh, j);
      for (int64_t c = 0; c < D; ++c) {
        Elem<T>::store(dk, c, dK[j * Dp + c]);
        Elem<T>::store(dv, c, dV[j * Dp + c]);
      }
    }
  } else {
    float* part = p.partial + (bh * p.nchunk + chunk) * 2 * S * Dp;
    std::copy(dK, dK + kmax * Dp, part);
    std::copy(dV, dV + kmax * Dp, part + S * Dp);
  }
}

template <typename T>
using TaskFn = void (*)(const Problem<T>&, int64_t);

template <typename T>
void forward_generic(const Problem<T>& p, int64_t t) {
  forward_task<T, false>(p, t);
}
template <typename T>
void backward_generic(const Problem<T>& p, int64_t t) {
  backward_task<T, false>(p, t);
}

#ifdef CF_ATTN_AVX2
template <typename T>
__attribute__((target("avx2,fma"))) void forward_avx2(const Problem<T>& p, int64_t t) {
  forward_task<T, true>(p, t);
}
template <typename T>
__attribute__((target("avx2,fma"))) void backward_avx2(const Problem<T>& p, int64_t t) {
  backward_task<T, true>(p, t);
}

#endif

template <typename T>
TaskFn<T> pick(bool backward) {
#ifdef CF_ATTN_AVX2
  if (has_avx2_fma()) return backward ? backward_avx2<T> : forward_avx2<T>;
#endif
  return backward ? backward_generic<T> : forward_generic<T>;
}

// Query blocks of at most kMaxQueryBlock(Causal) rows, balanced so no block is a sliver;
// heads split into up to `max_chunks` runs of blocks when there are too few heads to feed
// every thread.
template <typename T>
void plan(Problem<T>& p, int64_t tasks_per_thread, int64_t max_chunks) {
  const int64_t S = p.d.seq, bh = p.d.batch * p.d.heads;
  const int64_t max_rows = p.causal ? kMaxQueryBlockCausal : kMaxQueryBlock;
  p.nqb = (S + max_rows - 1) / max_rows;
  p.bq = (S + p.nqb - 1) / p.nqb;
  p.nqb = (S + p.bq - 1) / p.bq;
  const int64_t want = (tasks_per_thread * num_threads() + bh - 1) / bh;
  p.nchunk = std::max<int64_t>(1, std::min({p.nqb, want, max_chunks}));
}

}  // namespace

void attention_forward(DType dtype, const AttentionDims& dims, bool causal, float scale, const void* q, const void* k,
                       const void* v, AttentionLayout in, void* out, AttentionLayout out_layout, float* lse, Stream) {
  if (dims.batch * dims.heads * dims.seq == 0 || dims.dim == 0) return;
  CF_FLOAT_DTYPE(dtype, T, {
    Problem<T> p{};
    p.d = dims;
    p.causal = causal;
    p.scale = scale;
    p.q = static_cast<const T*>(q);
    p.k = static_cast<const T*>(k);
    p.v = static_cast<const T*>(v);
    p.in = in;
    p.outl = out_layout;
    p.out = static_cast<T*>(out);
    p.lse = lse;
    plan(p, 8, INT64_MAX);
    const TaskFn<T> fn = pick<T>(false);
    parallel_for(dims.batch * dims.heads * p.nchunk, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) fn(p, t);
    });
  });
}

void attention_backward(DType dtype, const AttentionDims& dims, bool causal, float scale, const void* q, const void* k,
                        const void* v, AttentionLayout in, const void* out, const void* dout, AttentionLayout out_layout,
                        const float* lse, void* dq, void* dk, void* dv, Stream) {
  if (dims.batch * dims.heads * dims.seq == 0 || dims.dim == 0) return;
  CF_FLOAT_DTYPE(dtype, T, {
    Problem<T> p{};
    p.d = dims;
    p.causal = causal;
    p.scale = scale;
    p.q = static_cast<const T*>(q);
    p.k = static_cast<const T*>(k);
    p.v = static_cast<const T*>(v);
    p.in = in;
    p.outl = out_layout;
    p.o = static_cast<const T*>(out);
    p.dout = static_cast<const T*>(dout);
    p.lse = const_cast<float*>(lse);
    p.dq = static_cast<T*>(dq);
    p.dk = static_cast<T*>(dk);
    p.dv = static_cast<T*>(dv);
    const int64_t bh = dims.batch * dims.heads, S = dims.seq, Dp = round8(dims.dim);
    // Split heads only as far as 256 MB of f32 partial sums allows.
    const int64_t per_chunk = bh * 2 * S * Dp * static_cast<int64_t>(sizeof(float));
    plan(p, 2, std::max<int64_t>(1, (int64_t{256} << 20) / per_chunk));
    std::unique_ptr<float[]> partial;
    if (p.nchunk > 1) {
      partial.reset(new float[p.nchunk * bh * 2 * S * Dp]);
      p.partial = partial.get();
    }
    const TaskFn<T> fn = pick<T>(true);
    parallel_for(bh * p.nchunk, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) fn(p, t);
    });
    if (p.nchunk > 1) {
      // dK, dV row j = sum over the chunks whose keys reach j (all of them unless causal).
      parallel_for(bh * S, 64, [&](int64_t b, int64_t e) {
        std::unique_ptr<float[]> acc(new float[2 * Dp]);
        for (int64_t t = b; t < e; ++t) {
          const int64_t h = t / S, j = t % S;
          std::fill(acc.get(), acc.get() + 2 * Dp, 0.0f);
          for (int64_t ch = 0; ch < p.nchunk; ++ch) {
            int64_t i_begin, i_end;
            p.chunk_rows(ch, &i_begin, &i_end);
            if (causal && j >= i_end) continue;
            const float* part = p.partial + (h * p.nchunk + ch) * 2 * S * Dp + j * Dp;
            for (int64_t c = 0; c < Dp; ++c) {
              acc[c] += part[c];
              acc[Dp + c] += part[S * Dp + c];
            }
          }
          T* dkr = p.dk + p.row(p.in, h, j);
          T* dvr = p.dv + p.row(p.in, h, j);
          for (int64_t c = 0; c < dims.dim; ++c) {
            Elem<T>::store(dkr, c, acc[c]);
            Elem<T>::store(dvr, c, acc[Dp + c]);
          }
        }
      });
    }
  });
}

}  // namespace cf::cpu
