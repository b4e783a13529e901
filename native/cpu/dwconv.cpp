// Depthwise convolution on the CPU, NHWC (dwconv.h defines the op and its passes).
//
// Forward and input-gradient passes: a task owns one image, a block of output rows and one
// group of 16 channels. It first copies the input rows the block reads into a scratch
// [rows][cols][16] of f32 (zero where the pass reads padding or channels past C, bf16
// widened), so the micro-kernel needs no bounds checks and every load is one aligned 32-byte
// vector of a pixel's channels. Rows outside the image are skipped rather than stored. The
// micro-kernel holds 6 output pixels x 16 channels in 12 accumulators; per tap it loads the
// tap's two weight vectors and issues 12 FMAs that take the input as a memory operand.
//
// Weight gradient: dw[c, kh, kw] = sum over n, oh, ow of dy[n, oh, ow, c] * x[n, oh s - ph + kh d, ow s - pw + kw d, c],
// computed as that reduction directly (no im2col, so nothing is read K^2 times). A task owns
// one channel group and a fixed range of output rows; for each output row and kernel row it
// holds 6 taps x 16 channels in 12 accumulators while it walks the row once, then adds them
// to its own [K][K][16] partial. The row ranges depend only on the shape, and a last pass sums
// the partials in a fixed order, so the result does not depend on the thread count. The bias
// gradient is summed from the same dy rows.
//
// Floor: 2 K^2 N C Ho Wo FLOPs per pass. The vector code is written once with GCC/Clang
// vector extensions and compiled twice, for AVX2 + FMA by a function attribute (chosen at run
// time when the CPU has both) and for the baseline target (SSE2, NEON), so the addon loads on
// any CPU. Stride and dilation stay run-time values in the inner loops on purpose: with them
// known to be 1, GCC turns the overlapping loads of neighbouring pixels into a rotating
// register window and spills the accumulators (measured 2x slower).
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "dwconv.h"
#include "isa.h"
#include "threadpool.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CF_DW_AVX2 1
#endif

namespace cf::cpu {
namespace {

#define CF_DW_INLINE inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__)
// The 32-byte vectors never cross a call boundary (everything is inlined into the per-ISA
// task functions), so GCC's note about their ABI without AVX does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float v8f __attribute__((vector_size(32)));

constexpr int kG = 16;                    // channels per group: two vectors
constexpr int kR = 6;                     // output pixels per forward micro-tile
constexpr int kT = 6;                     // taps per weight-gradient micro-tile
constexpr int64_t kScratchBytes = 256 << 10;  // input rows of one task, sized to stay in L2

CF_DW_INLINE v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
CF_DW_INLINE void store8(float* p, const v8f& v) { std::memcpy(p, &v, sizeof v); }

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }
int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Per-thread scratch, 32-byte aligned (vector storage), grown on demand.
thread_local std::vector<v8f> tl_rows, tl_dy;
float* scratch(std::vector<v8f>& buf, int64_t floats) {
  const size_t need = static_cast<size_t>((floats + 7) / 8);
  if (buf.size() < need) buf.resize(need);
  return reinterpret_cast<float*>(buf.data());
}

// One image row into scratch columns [0, cols): column q holds input column first + q, or
// zeros outside [0, in_w); channels [nc, 16) are zero. src points at channel c0 of pixel 0.
template <typename T>
CF_DW_INLINE void load_row(const T* src, int64_t C, int nc, float* dst, int64_t cols, int64_t first, int64_t in_w) {
  const int64_t q0 = std::min(cols, std::max<int64_t>(0, -first));
  const int64_t q1 = std::max(q0, std::min(cols, in_w - first));
  std::memset(dst, 0, sizeof(float) * q0 * kG);
  for (int64_t q = q0; q < q1; ++q) {
    const T* s = src + (first + q) * C;
    float* o = dst + q * kG;
    if (std::is_same<T, float>::value && nc == kG) {
      std::memcpy(o, s, sizeof(float) * kG);
    } else {
      for (int c = 0; c < nc; ++c) o[c] = Elem<T>::load(s, c);
      for (int c = nc; c < kG; ++c) o[c] = 0.0f;
    }
  }
  std::memset(dst + q1 * kG, 0, sizeof(float) * (cols - q1) * kG);
}

// Stores (or, with accumulate, adds to what dst holds) one pixel's nc channels.
template <typename T>
CF_DW_INLINE void store_pixel(T* dst, const v8f& lo, const v8f& hi, int nc, bool accumulate) {
  if (std::is_same<T, float>::value && nc == kG) {
    float* f = reinterpret_cast<float*>(dst);
    store8(f, accumulate ? lo + load8(f) : lo);
    store8(f + 8, accumulate ? hi + load8(f + 8) : hi);
    return;
  }
  float tmp[kG];
  store8(tmp, lo);
  store8(tmp + 8, hi);
  for (int c = 0; c < nc; ++c) Elem<T>::store(dst, c, accumulate ? tmp[c] + Elem<T>::load(dst, c) : tmp[c]);
}

template <typename T>
struct PassJob {
  DwPass p;
  int64_t C = 0, Cp = 0, groups = 0, block_rows = 0, blocks = 0, cols = 0;
  const T* in = nullptr;
  T* out = nullptr;
  const float* wt = nullptr;    // [kh][kw][Cp] f32 sub-kernel
  const float* bias = nullptr;  // [Cp] or null
  bool accumulate = false;      // out += the pass's values
};

template <typename T>
CF_DW_INLINE void pass_task(const PassJob<T>& J, int64_t task) {
  const DwPass& p = J.p;
  const int64_t grp = task % J.groups;
  const int64_t blk = (task / J.groups) % J.blocks;
  const int64_t n = task / (J.groups * J.blocks);
  const int64_t a0 = blk * J.block_rows, a1 = std::min(p.out_h, a0 + J.block_rows);
  const int64_t c0 = grp * kG;
  const int nc = static_cast<int>(std::min<int64_t>(kG, J.C - c0));
  const int64_t s = p.stride, d = p.dil, cols = J.cols;
  // Input rows of the block, clipped to the image; taps on rows outside it are skipped.
  const int64_t r_lo = std::max<int64_t>(0, a0 * s + p.oy);
  const int64_t r_hi = std::min<int64_t>(p.in_h - 1, (a1 - 1) * s + p.oy + static_cast<int64_t>(p.kh - 1) * d);
  const bool any = p.kh > 0 && p.kw > 0 && r_lo <= r_hi;
  float* xs = nullptr;
  if (any) {
    xs = scratch(tl_rows, (r_hi - r_lo + 1) * cols * kG);
    for (int64_t r = r_lo; r <= r_hi; ++r)
      load_row(J.in + (n * p.in_h + r) * p.in_w * J.C + c0, J.C, nc, xs + (r - r_lo) * cols * kG, cols, p.ox, p.in_w);
  }
  v8f bias0 = {}, bias1 = {};
  if (J.bias) {
    bias0 = load8(J.bias + c0);
    bias1 = load8(J.bias + c0 + 8);
  }
  for (int64_t a = a0; a < a1; ++a) {
    const int64_t top = a * s + p.oy;  // input row of tap 0
    const int64_t i0 = any ? std::max<int64_t>(0, ceil_div(r_lo - top, d)) : 0;
    const int64_t i1 = any ? std::min<int64_t>(p.kh - 1, floor_div(r_hi - top, d)) : -1;
    T* orow = J.out + (n * p.out_img + p.out_base + a * p.out_row) * J.C + c0;
    for (int64_t b0 = 0; b0 < p.out_w; b0 += kR) {
      v8f acc[kR][2];
      for (int r = 0; r < kR; ++r) {
        acc[r][0] = bias0;
        acc[r][1] = bias1;
      }
      // Taps whose column is padding for all kR pixels of the tile add nothing: skip them
      // (the edges of a large kernel on a small map).
      const int j0 = static_cast<int>(std::max<int64_t>(0, ceil_div(-p.ox - (b0 + kR - 1) * s, d)));
      const int j1 = static_cast<int>(std::min<int64_t>(p.kw - 1, floor_div(p.in_w - 1 - p.ox - b0 * s, d)));
      for (int64_t i = i0; i <= i1; ++i) {
        const float* xr = xs + ((top + i * d - r_lo) * cols + b0 * s) * kG;
        const float* wr = J.wt + i * p.kw * J.Cp + c0;
        for (int j = j0; j <= j1; ++j) {
          const v8f w0 = load8(wr + j * J.Cp), w1 = load8(wr + j * J.Cp + 8);
          const float* xj = xr + j * d * kG;
          for (int r = 0; r < kR; ++r) {
            acc[r][0] += w0 * load8(xj + r * s * kG);
            acc[r][1] += w1 * load8(xj + r * s * kG + 8);
          }
        }
      }
      const int nb = static_cast<int>(std::min<int64_t>(kR, p.out_w - b0));
      for (int r = 0; r < nb; ++r) store_pixel(orow + (b0 + r) * p.out_col * J.C, acc[r][0], acc[r][1], nc, J.accumulate);
    }
  }
}

template <typename T>
struct WgradJob {
  DwGeom g;
  int64_t groups = 0, parts = 0, rows = 0, chunk = 0, cols = 0;
  const T* x = nullptr;
  const T* dy = nullptr;
  float* part_w = nullptr;  // [groups][parts][K * K][16], or null when dw is not wanted
  float* part_b = nullptr;  // [groups][parts][16], or null
};

template <typename T>
CF_DW_INLINE void wgrad_task(const WgradJob<T>& J, int64_t task) {
  const DwGeom& g = J.g;
  const int64_t grp = task % J.groups, part = task / J.groups;
  const int64_t c0 = grp * kG;
  const int nc = static_cast<int>(std::min<int64_t>(kG, g.c - c0));
  const int K = g.k;
  const int64_t s = g.stride, d = g.dil, cols = J.cols;
  float* pw = J.part_w ? J.part_w + (grp * J.parts + part) * K * K * kG : nullptr;
  if (pw) std::memset(pw, 0, sizeof(float) * K * K * kG);
  v8f db0 = {}, db1 = {};
  const int64_t q_end = J.rows * (part + 1) / J.parts;
  for (int64_t q = J.rows * part / J.parts; q < q_end;) {
    const int64_t n = q / g.oh, a0 = q % g.oh;
    const int64_t a1 = std::min({g.oh, a0 + J.chunk, a0 + (q_end - q)});
    q += a1 - a0;
    // dy rows of the chunk as [rows][ow][16] f32; the bias gradient is their sum.
    float* ds = scratch(tl_dy, (a1 - a0) * g.ow * kG);
    for (int64_t a = a0; a < a1; ++a) {
      float* drow = ds + (a - a0) * g.ow * kG;
      load_row(J.dy + (n * g.oh + a) * g.ow * g.c + c0, g.c, nc, drow, g.ow, 0, g.ow);
      for (int64_t b = 0; b < g.ow; ++b) {
        db0 += load8(drow + b * kG);
        db1 += load8(drow + b * kG + 8);
      }
    }
    if (!pw) continue;
    const int64_t r_lo = std::max<int64_t>(0, a0 * s - g.pad_h);
    const int64_t r_hi = std::min<int64_t>(g.h - 1, (a1 - 1) * s - g.pad_h + static_cast<int64_t>(K - 1) * d);
    if (r_lo > r_hi) continue;
    float* xs = scratch(tl_rows, (r_hi - r_lo + 1) * cols * kG);
    for (int64_t r = r_lo; r <= r_hi; ++r)
      load_row(J.x + (n * g.h + r) * g.w * g.c + c0, g.c, nc, xs + (r - r_lo) * cols * kG, cols, -g.pad_w, g.w);
    for (int64_t a = a0; a < a1; ++a) {
      const int64_t top = a * s - g.pad_h;
      const int64_t i0 = std::max<int64_t>(0, ceil_div(r_lo - top, d));
      const int64_t i1 = std::min<int64_t>(K - 1, floor_div(r_hi - top, d));
      const float* drow = ds + (a - a0) * g.ow * kG;
      for (int64_t i = i0; i <= i1; ++i) {
        const float* xr = xs + (top + i * d - r_lo) * cols * kG;
        float* prow = pw + i * K * kG;
        // Taps j0 .. j0 + kT - 1; the scratch is wide enough for the ones past K, which are dropped.
        for (int j0 = 0; j0 < K; j0 += kT) {
          v8f acc[kT][2];
          for (int t = 0; t < kT; ++t) acc[t][0] = acc[t][1] = v8f{};
          const float* xj = xr + j0 * d * kG;
          // Output columns for which every tap of the block reads padding add nothing.
          const int64_t b_lo = std::max<int64_t>(0, ceil_div(g.pad_w - static_cast<int64_t>(j0 + kT - 1) * d, s));
          const int64_t b_hi = std::min<int64_t>(g.ow - 1, floor_div(g.w - 1 + g.pad_w - static_cast<int64_t>(j0) * d, s));
          for (int64_t b = b_lo; b <= b_hi; ++b) {
            const v8f d0 = load8(drow + b * kG), d1 = load8(drow + b * kG + 8);
            const float* xb = xj + b * s * kG;
            for (int t = 0; t < kT; ++t) {
              acc[t][0] += d0 * load8(xb + t * d * kG);
              acc[t][1] += d1 * load8(xb + t * d * kG + 8);
            }
          }
          const int nt = std::min(kT, K - j0);
          for (int t = 0; t < nt; ++t) {
            float* o = prow + (j0 + t) * kG;
            store8(o, load8(o) + acc[t][0]);
            store8(o + 8, load8(o + 8) + acc[t][1]);
          }
        }
      }
    }
  }
  if (J.part_b) {
    float* pb = J.part_b + (grp * J.parts + part) * kG;
    store8(pb, db0);
    store8(pb + 8, db1);
  }
}

template <typename T>
void pass_generic(const PassJob<T>& J, int64_t t) {
  pass_task(J, t);
}
template <typename T>
void wgrad_generic(const WgradJob<T>& J, int64_t t) {
  wgrad_task(J, t);
}

#ifdef CF_DW_AVX2
template <typename T>
__attribute__((target("avx2,fma"))) void pass_avx2(const PassJob<T>& J, int64_t t) {
  pass_task(J, t);
}
template <typename T>
__attribute__((target("avx2,fma"))) void wgrad_avx2(const WgradJob<T>& J, int64_t t) {
  wgrad_task(J, t);
}

#endif

template <typename T>
void run_pass(const DwGeom& g, const DwPass& p, const T* in, const T* w, const T* bias, T* out, bool accumulate) {
  if (g.n == 0 || g.c == 0 || p.out_h == 0 || p.out_w == 0) return;
  PassJob<T> J;
  J.p = p;
  J.accumulate = accumulate;
  J.C = g.c;
  J.groups = (g.c + kG - 1) / kG;
  J.Cp = J.groups * kG;
  J.in = in;
  J.out = out;
  // The pass's sub-kernel as [kh][kw][Cp] f32, channels past C zero.
  std::vector<v8f> wbuf(static_cast<size_t>((p.kh * p.kw * J.Cp + 7) / 8 + 1));
  float* wt = reinterpret_cast<float*>(wbuf.data());
  std::memset(wt, 0, sizeof(v8f) * wbuf.size());
  const int64_t kk = static_cast<int64_t>(g.k) * g.k;
  for (int i = 0; i < p.kh; ++i)
    for (int j = 0; j < p.kw; ++j) {
      const int64_t tap = static_cast<int64_t>(p.wh0 + i * p.whs) * g.k + (p.ww0 + j * p.wws);
      for (int64_t c = 0; c < g.c; ++c) wt[(i * p.kw + j) * J.Cp + c] = Elem<T>::load(w, c * kk + tap);
    }
  J.wt = wt;
  std::vector<v8f> bbuf;
  if (bias) {
    bbuf.assign(static_cast<size_t>(J.Cp / 8), v8f{});
    float* b = reinterpret_cast<float*>(bbuf.data());
    for (int64_t c = 0; c < g.c; ++c) b[c] = Elem<T>::load(bias, c);
    J.bias = b;
  }
  // Scratch columns: every pixel of the last (padded) micro-tile at every tap.
  J.cols = (round_up(p.out_w, kR) - 1) * p.stride + (p.kw > 0 ? static_cast<int64_t>(p.kw - 1) * p.dil : 0) + 1;
  // Row blocks: enough tasks to keep every thread busy, and a block's input rows within the
  // scratch budget (so at least one output row per block).
  const int64_t base_tasks = g.n * J.groups;
  const int64_t want_blocks = std::max<int64_t>(1, (4 * num_threads() + base_tasks - 1) / base_tasks);
  int64_t rows = (p.out_h + want_blocks - 1) / want_blocks;
  const int64_t budget_rows = kScratchBytes / (J.cols * kG * static_cast<int64_t>(sizeof(float)));
  const int64_t halo = p.kh > 0 ? static_cast<int64_t>(p.kh - 1) * p.dil : 0;
  rows = std::max<int64_t>(1, std::min(rows, (budget_rows - halo - 1) / p.stride + 1));
  J.block_rows = rows;
  J.blocks = (p.out_h + rows - 1) / rows;
  void (*fn)(const PassJob<T>&, int64_t) = pass_generic<T>;
#ifdef CF_DW_AVX2
  if (has_avx2_fma()) fn = pass_avx2<T>;
#endif
  parallel_for(g.n * J.blocks * J.groups, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) fn(J, t);
  });
}

template <typename T>
void run_wgrad(const DwGeom& g, const T* x, const T* dy, T* dw, T* db) {
  const int64_t K = g.k, kk = K * K;
  if (g.c == 0) return;
  if (g.n == 0 || g.oh == 0 || g.ow == 0) {
    if (dw)
      for (int64_t i = 0; i < g.c * kk; ++i) Elem<T>::store(dw, i, 0.0f);
    if (db)
      for (int64_t c = 0; c < g.c; ++c) Elem<T>::store(db, c, 0.0f);
    return;
  }
  WgradJob<T> J;
  J.g = g;
  J.x = x;
  J.dy = dy;
  J.groups = (g.c + kG - 1) / kG;
  J.rows = g.n * g.oh;
  // About 64 tasks whatever the thread count, so the summation order is fixed by the shape.
  J.parts = std::max<int64_t>(1, std::min(J.rows, (64 + J.groups - 1) / J.groups));
  J.cols = (g.ow - 1) * g.stride + (round_up(K, kT) - 1) * g.dil + 1;
  const int64_t budget_rows = kScratchBytes / (J.cols * kG * static_cast<int64_t>(sizeof(float)));
  J.chunk = std::max<int64_t>(1, (budget_rows - (K - 1) * g.dil - 1) / g.stride + 1);
  std::vector<float> part_w(dw ? static_cast<size_t>(J.groups * J.parts * kk * kG) : 0);
  std::vector<float> part_b(db ? static_cast<size_t>(J.groups * J.parts * kG) : 0);
  J.part_w = dw ? part_w.data() : nullptr;
  J.part_b = db ? part_b.data() : nullptr;
  void (*fn)(const WgradJob<T>&, int64_t) = wgrad_generic<T>;
#ifdef CF_DW_AVX2
  if (has_avx2_fma()) fn = wgrad_avx2<T>;
#endif
  parallel_for(J.groups * J.parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) fn(J, t);
  });
  // Partials summed in part order.
  parallel_for(J.groups, 1, [&](int64_t b, int64_t e) {
    for (int64_t grp = b; grp < e; ++grp) {
      const int64_t c0 = grp * kG, nc = std::min<int64_t>(kG, g.c - c0);
      if (dw) {
        for (int64_t t = 0; t < kk; ++t) {
          float sum[kG] = {};
          for (int64_t pt = 0; pt < J.parts; ++pt) {
            const float* src = J.part_w + ((grp * J.parts + pt) * kk + t) * kG;
            for (int c = 0; c < kG; ++c) sum[c] += src[c];
          }
          for (int64_t c = 0; c < nc; ++c) Elem<T>::store(dw, (c0 + c) * kk + t, sum[c]);
        }
      }
      if (db) {
        float sum[kG] = {};
        for (int64_t pt = 0; pt < J.parts; ++pt) {
          const float* src = J.part_b + (grp * J.parts + pt) * kG;
          for (int c = 0; c < kG; ++c) sum[c] += src[c];
        }
        for (int64_t c = 0; c < nc; ++c) Elem<T>::store(db, c0 + c, sum[c]);
      }
    }
  });
}

}  // namespace

void dwconv_forward(DType dtype, const DwGeom& g, const void* x, const void* w, const void* bias, void* y, Stream) {
  CF_FLOAT_DTYPE(dtype, T,
                 run_pass<T>(g, dw_forward_pass(g), static_cast<const T*>(x), static_cast<const T*>(w),
                             static_cast<const T*>(bias), static_cast<T*>(y), false));
}

void dwconv_backward_input(DType dtype, const DwGeom& g, const void* dy, const void* w, void* dx, bool accumulate, Stream) {
  DwPass passes[4];
  const int np = dw_backward_input_passes(g, passes);
  CF_FLOAT_DTYPE(dtype, T, {
    for (int i = 0; i < np; ++i)
      run_pass<T>(g, passes[i], static_cast<const T*>(dy), static_cast<const T*>(w), nullptr, static_cast<T*>(dx), accumulate);
  });
}

void dwconv_backward_weight(DType dtype, const DwGeom& g, const void* x, const void* dy, void* dw, void* db, Stream) {
  CF_FLOAT_DTYPE(dtype, T,
                 run_wgrad<T>(g, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw), static_cast<T*>(db)));
}

}  // namespace cf::cpu
