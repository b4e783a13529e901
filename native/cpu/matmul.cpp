// Batched GEMM on the CPU (contract in matmul.h), structured as in BLIS / Goto's GEMM:
//   for jc (NC columns of C):  for pc (KC of K):  pack B[pc, jc] into NR-wide panels (shared);
//     for each work unit (a range of MR-row micro-rows x a range of B panels), in parallel:
//       pack its A rows into MR-tall panels (per thread), then for each B panel, each A panel:
//       micro-kernel (gemm_kernel.h) on one MR x NR tile of C.
// Packing makes the kernel's loads contiguous and aligned whatever the trans flags, and
// widens bf16 to f32 once per element instead of once per use. A KC x NR panel of B (16 KB)
// stays in L1 while the A block (MC x KC, <= 144 KB) streams from L2, and C is read and
// written once per KC step. Work units are balanced across threads (row blocks in a multiple
// of the thread count); a batch of small matrices instead runs one whole GEMM per thread.
// C accumulates in f32: bf16 outputs go through an f32 workspace (480 rows at a time) and are
// rounded once at the end.
// Floor: 2 * batch * M * N * K FLOPs at the machine's FMA rate (see bench/gemm.bench.ts).
#include <algorithm>
#include <new>
#include <type_traits>

#include "gemm_kernel.h"
#include "matmul.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {

constexpr int64_t MR = kGemmMR, NR = kGemmNR;
constexpr int64_t kKC = 256;           // 256 x 16 x 4 B = 16 KB B panel: half of a 32 KB L1
constexpr int64_t kMCMicro = 24;       // 144 rows: a 144 KB A block in a 512 KB L2
constexpr int64_t kNC = 4080;          // 255 panels: the packed B block (4 MB) lives in L3
constexpr double kParallelMacs = 1 << 18;        // below this, waking the pool costs more than it saves
constexpr double kSmallForBatchMacs = 1 << 22;   // per-matrix size under which batch items run one per thread
constexpr int64_t kBf16ChunkRows = 480;          // bf16 C goes through an f32 workspace this many rows at a time

// A growable, 64-byte aligned float buffer; one of each kind per thread, kept between calls
// so that steady-state training allocates nothing here.
class Scratch {
 public:
  ~Scratch() { release(); }
  float* get(int64_t n) {
    if (n > cap_) {
      release();
      ptr_ = static_cast<float*>(::operator new(static_cast<size_t>(n) * sizeof(float), std::align_val_t(64)));
      cap_ = n;
    }
    return ptr_;
  }

 private:
  void release() {
    if (ptr_) ::operator delete(ptr_, std::align_val_t(64));
    ptr_ = nullptr;
    cap_ = 0;
  }
  float* ptr_ = nullptr;
  int64_t cap_ = 0;
};

thread_local Scratch tl_pack_a, tl_pack_b, tl_c32, tl_bias32;

template <typename T>
inline float ld(const T* p, int64_t i) {
  return Elem<T>::load(p, i);
}

// Rows [i0, i0 + mc) and columns [p0, p0 + kc) of op(A) into ceil(mc / MR) panels of kc x MR.
template <typename T>
void pack_a(const T* A, bool trans, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* out) {
  for (int64_t ir = 0; ir < mc; ir += MR, out += kc * MR) {
    const int64_t mr = std::min(MR, mc - ir);
    if (!trans) {
      for (int64_t r = 0; r < mr; ++r) {
        const T* src = A + (i0 + ir + r) * lda + p0;
        for (int64_t k = 0; k < kc; ++k) out[k * MR + r] = ld(src, k);
      }
      for (int64_t r = mr; r < MR; ++r)
        for (int64_t k = 0; k < kc; ++k) out[k * MR + r] = 0.0f;
    } else {
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = A + (p0 + k) * lda + i0 + ir;
        float* d = out + k * MR;
        for (int64_t r = 0; r < mr; ++r) d[r] = ld(src, r);
        for (int64_t r = mr; r < MR; ++r) d[r] = 0.0f;
      }
    }
  }
}

// Rows [p0, p0 + kc) and columns [j0, j0 + nc), nc <= NR, of op(B) into one kc x NR panel.
template <typename T>
void pack_b(const T* B, bool trans, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* out) {
  if (!trans) {
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = B + (p0 + k) * ldb + j0;
      float* d = out + k * NR;
      for (int64_t j = 0; j < nc; ++j) d[j] = ld(src, j);
      for (int64_t j = nc; j < NR; ++j) d[j] = 0.0f;
    }
  } else {
    for (int64_t j = 0; j < nc; ++j) {
      const T* src = B + (j0 + j) * ldb + p0;
      for (int64_t k = 0; k < kc; ++k) out[k * NR + j] = ld(src, k);
    }
    for (int64_t j = nc; j < NR; ++j)
      for (int64_t k = 0; k < kc; ++k) out[k * NR + j] = 0.0f;
  }
}

template <typename F>
void run(int64_t n, bool parallel, F&& fn) {
  if (parallel) {
    parallel_for(n, 1, fn);
  } else {
    fn(0, n);
  }
}

// One GEMM into an f32 C (row stride N), using up to `threads` threads. lda is A's row
// stride as stored (K, or A's full column count when ta and M is a slice of it).
template <typename T>
void gemm_one(const T* A, int64_t lda, const T* B, const float* bias, float* C, int64_t M, int64_t N, int64_t K, bool ta,
              bool tb, bool accumulate, int threads) {
  if (K == 0) {
    for (int64_t i = 0; i < M; ++i) {
      float* row = C + i * N;
      for (int64_t j = 0; j < N; ++j) row[j] = (accumulate ? row[j] : 0.0f) + (bias ? bias[j] : 0.0f);
    }
    return;
  }
  const GemmMicroKernel kernel = gemm_micro_kernel();
  const int64_t ldb = tb ? K : N;
  const int64_t micro_rows = (M + MR - 1) / MR;
  const int64_t want = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) >= kParallelMacs ? threads : 1;
  const bool parallel = want > 1;
  const int64_t all_panels = (N + NR - 1) / NR;
  if (parallel && K > kKC && micro_rows <= kMCMicro && N <= kNC && all_panels >= want) {
    // Few rows, long K (the weight gradients: [out, in] = dY^T X summed over every token):
    // one parallel region in which each thread takes a share of the column panels and runs
    // the whole K loop on its own packed copies (A, small here, is packed by every thread).
    // The general path below pays two pool dispatches per KC step, which cost as much as the
    // work itself at these sizes (64 x 2176 x 192 ran at half speed).
    run(want, true, [&](int64_t t0, int64_t t1) {
      float* apack = tl_pack_a.get(micro_rows * MR * kKC);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t q0 = all_panels * t / want, q1 = all_panels * (t + 1) / want;
        float* bp = tl_pack_b.get((q1 - q0) * NR * kKC);
        for (int64_t pc = 0; pc < K; pc += kKC) {
          const int64_t kc = std::min(kKC, K - pc);
          pack_a(A, ta, lda, 0, M, pc, kc, apack);
          for (int64_t q = q0; q < q1; ++q) {
            const int64_t j = q * NR;
            const int n = static_cast<int>(std::min(NR, N - j));
            float* panel = bp + (q - q0) * kc * NR;
            pack_b(B, tb, ldb, pc, kc, j, n, panel);
            const float* bias_tile = pc == 0 && bias ? bias + j : nullptr;
            for (int64_t i = 0; i < M; i += MR) {
              const int m = static_cast<int>(std::min(MR, M - i));
              kernel(kc, apack + i * kc, panel, C + i * N + j, N, m, n, bias_tile, accumulate || pc > 0);
            }
          }
        }
      }
    });
    return;
  }
  // Row blocks small enough for L2, as many as a multiple of the thread count so that
  // every thread gets the same share; columns are split only when there are too few rows.
  int64_t mb = (micro_rows + kMCMicro - 1) / kMCMicro;
  if (parallel) mb = std::min(micro_rows, (mb + want - 1) / want * want);
  const int64_t max_rows = ((micro_rows + mb - 1) / mb) * MR;
  float* bpack = tl_pack_b.get(std::min(kNC, (N + NR - 1) / NR * NR) * std::min(kKC, K));

  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    const int64_t panels = (nc + NR - 1) / NR;
    const int64_t nb = mb >= want ? 1 : std::min(panels, (want + mb - 1) / mb);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      run(panels, parallel && panels > 1, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) pack_b(B, tb, ldb, pc, kc, jc + p * NR, std::min(NR, nc - p * NR), bpack + p * kc * NR);
      });
      const bool load = accumulate || pc > 0;
      const float* bias_block = pc == 0 && bias ? bias + jc : nullptr;
      run(mb * nb, parallel, [&](int64_t u0, int64_t u1) {
        float* apack = tl_pack_a.get(max_rows * kc);
        for (int64_t u = u0; u < u1; ++u) {
          const int64_t mi = u / nb, ni = u % nb;
          const int64_t i0 = micro_rows * mi / mb * MR;
          const int64_t i1 = std::min(M, micro_rows * (mi + 1) / mb * MR);
          const int64_t q0 = panels * ni / nb, q1 = panels * (ni + 1) / nb;
          if (i0 >= i1 || q0 >= q1) continue;
          pack_a(A, ta, lda, i0, i1 - i0, pc, kc, apack);
          for (int64_t q = q0; q < q1; ++q) {
            const int64_t j = jc + q * NR;
            const int n = static_cast<int>(std::min(NR, N - j));
            const float* bp = bpack + q * kc * NR;
            const float* bias_tile = bias_block ? bias_block + q * NR : nullptr;
            for (int64_t i = i0; i < i1; i += MR) {
              const int m = static_cast<int>(std::min(MR, i1 - i));
              kernel(kc, apack + (i - i0) * kc, bp, C + i * N + j, N, m, n, bias_tile, load);
            }
          }
        }
      });
    }
  }
}

template <typename T>
void gemm_typed(const T* A, const T* B, const T* bias, T* C, const GemmShape& s) {
  const int64_t M = s.m, N = s.n, K = s.k, MN = M * N;
  const float* bias32 = nullptr;
  if (bias) {
    if constexpr (std::is_same_v<T, float>) {
      bias32 = bias;
    } else {
      float* w = tl_bias32.get(N);
      for (int64_t j = 0; j < N; ++j) w[j] = ld(bias, j);
      bias32 = w;
    }
  }
  const int threads = num_threads();
  const double macs = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  // Many small matrices (attention heads): one whole GEMM per thread, no sharing, no barriers.
  const bool by_batch = threads > 1 && (s.batch >= 4 * threads || (s.batch >= threads && macs <= kSmallForBatchMacs));
  const int inner_threads = by_batch ? 1 : threads;
  auto one = [&](int64_t b) {
    const T* Ab = A + b * s.stride_a;
    const T* Bb = B + b * s.stride_b;
    T* Cb = C + b * MN;
    const int64_t lda = s.trans_a ? M : K;
    if constexpr (std::is_same_v<T, float>) {
      gemm_one(Ab, lda, Bb, bias32, Cb, M, N, K, s.trans_a, s.trans_b, s.accumulate, inner_threads);
    } else {
      // Row chunks bound the workspace; each repacks B, which costs 1/kBf16ChunkRows of the work.
      const int64_t chunk = std::min(M, kBf16ChunkRows);
      float* w = tl_c32.get(chunk * N);
      for (int64_t r0 = 0; r0 < M; r0 += chunk) {
        const int64_t rows = std::min(chunk, M - r0);
        T* Cc = Cb + r0 * N;
        const bool par = !by_batch && rows * N >= (1 << 16);
        if (s.accumulate)
          run(rows, par, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0 * N; i < i1 * N; ++i) w[i] = ld(Cc, i);
          });
        gemm_one(Ab + (s.trans_a ? r0 : r0 * K), lda, Bb, bias32, w, rows, N, K, s.trans_a, s.trans_b, s.accumulate, inner_threads);
        run(rows, par, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0 * N; i < i1 * N; ++i) Elem<T>::store(Cc, i, w[i]);
        });
      }
    }
  };
  if (by_batch) {
    parallel_for(s.batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) one(b);
    });
  } else {
    for (int64_t b = 0; b < s.batch; ++b) one(b);
  }
}

}  // namespace

void gemm(DType dtype, const void* a, const void* b, const void* bias, void* c, const GemmShape& shape, Stream stream) {
  const GemmShape s = fold_shared_batch(shape);
  if (s.batch == 0 || s.m == 0 || s.n == 0) return;
  // The epilogue runs as the elementwise ops themselves, after the product: here the product's
  // rows have left the cache by then either way, and the values are theirs by construction.
  const GemmEpilogue& e = s.epilogue;
  void* product = e.kind == GemmEpilogueKind::Activation && e.aux ? e.aux : c;
  CF_FLOAT_DTYPE(dtype, T,
                 gemm_typed<T>(static_cast<const T*>(a), static_cast<const T*>(b), static_cast<const T*>(bias), static_cast<T*>(product), s));
  const int64_t n = s.batch * s.m * s.n;
  if (e.kind == GemmEpilogueKind::Activation) unary(e.op, dtype, product, c, n, 0.0f, 0.0f, stream);
  else if (e.kind == GemmEpilogueKind::ActivationGrad) unary_backward(e.op, dtype, e.aux, c, c, n, 0.0f, 0.0f, stream);
}

}  // namespace cf::cpu
