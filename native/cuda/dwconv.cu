// Depthwise convolution on CUDA, NHWC, f32 or bf16 storage with f32 accumulation (dwconv.h
// defines the op and how the forward and the input gradient become passes).
//
// Floor: 2 K^2 N C Ho Wo FLOPs per pass (forward, input grad, weight grad); bytes (x + y +
// w) * sizeof(T). At UniRepLKNet's K 13 that is ~84 FLOP per bf16 byte: compute bound on the
// CUDA cores (fp32 FMA ridge ~20 FLOP/byte on H100), so the kernels are organized around
// FMAs per shared-memory load.
//
// Kernels:
//  - pass_s1: a stride-1 pass. A block owns 32 channels (one per lane) and an 8 x 8 tile of
//    output pixels taken from one dilation residue class (rows and columns congruent mod d),
//    in which a dilated correlation is a dense one: tap i of sub-row u reads sub-row u + i.
//    Input rows stream through a ring of 8 shared-memory rows: kernel row i needs sub-rows
//    u0 + i .. u0 + i + 7, so each step loads one new row (prefetched into registers while the
//    current row is computed) and one row of the f32 sub-kernel. Warp t computes sub-row t;
//    each thread keeps 8 outputs along the row and a rotating window of the 8 inputs they
//    share, so a tap costs 8 FMAs for one input and one weight load from shared memory.
//  - pass_direct: any pass, one thread per output element reading global memory; used for
//    stride 2 (no target model has a hot strided depthwise layer; RepLKNet's 3 x 3 stride-2
//    transitions are memory bound).
//  - wgrad: dw[c, kh, kw] = sum over n, oh, ow of dy * x, a reduction over batch and space.
//    A block owns 32 channels, a range of output rows, a tile of up to 32 output columns and a
//    group of kernel rows; per output row it stages the dy row and the x rows of its kernel
//    rows in shared memory. Each warp holds two (kernel row, 8 consecutive taps) slots in
//    registers for the whole range and walks the row with the same rotating window. Small
//    kernels replicate slots over column segments. Partials go to an f32 workspace
//    [part][C][K*K] and a second kernel sums them in a fixed order: deterministic, no atomics.
//  - bias_grad: db[c] = sum of dy, per-part partials summed the same way.
#include <algorithm>

#include "check.cuh"
#include "dwconv.h"
#include "workspace.cuh"

namespace cf::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTile = 8;                                           // pass_s1: sub-rows and sub-columns per block
constexpr int kRowLoads = (kTile + kDwMaxKernel + kWarps - 1) / kWarps;  // ring-row pixels per thread
constexpr int kWLoads = (kDwMaxKernel + kWarps - 1) / kWarps;            // weight-row taps per thread
constexpr int kSlots = 2 * kWarps;                                 // wgrad: (kernel row, 8 taps) slots per block
constexpr int kWgradCols = 32;                                     // wgrad: output columns per block
constexpr int64_t kWorkspaceCap = int64_t(64) << 20;               // wgrad partials, bytes

struct PassArgs {
  int64_t c, in_h, in_w, out_h, out_w, out_img, out_base, out_row, out_col, oy, ox;
  int stride, dil, kh, kw;
  int64_t tiles_h, tiles_w;  // pass_s1: tiles per residue class (the largest class)
};

// wt[(i * kw + j) * C + c] = w[c, wh0 + i * whs, ww0 + j * wws] in f32.
template <typename T>
__global__ void prep_weights_kernel(const T* __restrict__ w, float* __restrict__ wt, int64_t C, int k, int kh, int kw, int wh0,
                                    int whs, int ww0, int wws) {
  const int64_t total = static_cast<int64_t>(kh) * kw * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i % C, tap = i / C;
    const int ti = static_cast<int>(tap / kw), tj = static_cast<int>(tap % kw);
    wt[i] = Elem<T>::load(w, (c * k + (wh0 + ti * whs)) * k + (ww0 + tj * wws));
  }
}

// Stores v at out[i], or with accumulate adds it to what out[i] holds (rounded once).
template <typename T>
__device__ __forceinline__ void put(T* out, int64_t i, float v, bool accumulate) {
  Elem<T>::store(out, i, accumulate ? v + Elem<T>::load(out, i) : v);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) pass_s1_kernel(PassArgs a, const T* __restrict__ in, const float* __restrict__ wt,
                                                           const T* __restrict__ bias, T* __restrict__ out, bool accumulate) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c = blockIdx.y * 32 + lane;
  const bool cok = c < a.c;
  int64_t bx = blockIdx.x;
  const int64_t tw_i = bx % a.tiles_w;
  bx /= a.tiles_w;
  const int64_t th_i = bx % a.tiles_h;
  bx /= a.tiles_h;
  const int d = a.dil;
  const int res = static_cast<int>(bx % (d * d));
  const int64_t n = bx / (d * d);
  const int rr = res / d, rc = res % d;
  const int64_t sub_h = (a.out_h - rr + d - 1) / d, sub_w = (a.out_w - rc + d - 1) / d;
  const int64_t u0 = th_i * kTile, v0 = tw_i * kTile;
  if (u0 >= sub_h || v0 >= sub_w) return;  // the whole block: its residue class is smaller

  const int rowlen = kTile + a.kw;  // pixels per ring row: 8 outputs' taps plus the window's last prefetch
  float* s_rows = smem;             // [kTile][rowlen][32]
  float* s_w = smem + kTile * rowlen * 32;  // [kw][32]
  const T* in_n = in + n * a.in_h * a.in_w * a.c;
  const int64_t col0 = rc + a.ox + static_cast<int64_t>(d) * v0;  // input column of ring pixel 0

  float pre[kRowLoads], prew[kWLoads];
  auto fetch_row = [&](int64_t u) {
    const int64_t ih = rr + a.oy + static_cast<int64_t>(d) * u;
    const bool rok = cok && ih >= 0 && ih < a.in_h;
#pragma unroll
    for (int k = 0; k < kRowLoads; ++k) {
      const int v = warp + k * kWarps;
      const int64_t iw = col0 + static_cast<int64_t>(d) * v;
      pre[k] = (rok && v < rowlen && iw >= 0 && iw < a.in_w) ? Elem<T>::load(in_n, (ih * a.in_w + iw) * a.c + c) : 0.0f;
    }
  };
  auto store_row = [&](int slot) {
    float* dst = s_rows + slot * rowlen * 32 + lane;
#pragma unroll
    for (int k = 0; k < kRowLoads; ++k) {
      const int v = warp + k * kWarps;
      if (v < rowlen) dst[v * 32] = pre[k];
    }
  };
  auto fetch_w = [&](int i) {
#pragma unroll
    for (int k = 0; k < kWLoads; ++k) {
      const int j = warp + k * kWarps;
      prew[k] = (cok && j < a.kw) ? wt[(static_cast<int64_t>(i) * a.kw + j) * a.c + c] : 0.0f;
    }
  };
  auto store_w = [&]() {
#pragma unroll
    for (int k = 0; k < kWLoads; ++k) {
      const int j = warp + k * kWarps;
      if (j < a.kw) s_w[j * 32 + lane] = prew[k];
    }
  };

  float acc[kTile];
  const float b0 = (bias != nullptr && cok) ? Elem<T>::load(bias, c) : 0.0f;
#pragma unroll
  for (int r = 0; r < kTile; ++r) acc[r] = b0;

  if (a.kh > 0 && a.kw > 0) {
    // Ring invariant: sub-row u0 + q lives in slot q % kTile.
    for (int t = 0; t < kTile; ++t) {
      fetch_row(u0 + t);
      store_row(t);
    }
    fetch_w(0);
    store_w();
    __syncthreads();
    for (int i = 0; i < a.kh; ++i) {
      const bool more = i + 1 < a.kh;
      if (more) {
        fetch_row(u0 + i + kTile);
        fetch_w(i + 1);
      }
      // Warp t: sub-row u0 + t at kernel row i reads sub-row u0 + t + i.
      const float* xr = s_rows + ((warp + i) % kTile) * rowlen * 32 + lane;
      const float* wr = s_w + lane;
      // win[(j + r) % 8] holds input pixel j + r before tap j.
      float win[kTile];
#pragma unroll
      for (int r = 0; r < kTile; ++r) win[r] = xr[r * 32];
      for (int m = 0; m < a.kw; m += kTile) {
#pragma unroll
        for (int u = 0; u < kTile; ++u) {
          const int j = m + u;
          if (j < a.kw) {
            const float wv = wr[j * 32];
#pragma unroll
            for (int r = 0; r < kTile; ++r) acc[r] = fmaf(wv, win[(u + r) & (kTile - 1)], acc[r]);
            win[u] = xr[(j + kTile) * 32];
          }
        }
      }
      __syncthreads();
      if (more) {
        store_row(i % kTile);
        store_w();
      }
      __syncthreads();
    }
  }

  const int64_t u = u0 + warp;
  if (u < sub_h && cok) {
    const int64_t oa = rr + static_cast<int64_t>(d) * u;
#pragma unroll
    for (int r = 0; r < kTile; ++r) {
      const int64_t v = v0 + r;
      if (v < sub_w) {
        const int64_t ob = rc + static_cast<int64_t>(d) * v;
        put(out, (n * a.out_img + a.out_base + oa * a.out_row + ob * a.out_col) * a.c + c, acc[r], accumulate);
      }
    }
  }
}

template <typename T>
__global__ void pass_direct_kernel(PassArgs a, int64_t n_img, const T* __restrict__ in, const float* __restrict__ wt,
                                   const T* __restrict__ bias, T* __restrict__ out, bool accumulate) {
  const int64_t total = n_img * a.out_h * a.out_w * a.c;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total; idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = idx % a.c;
    int64_t rest = idx / a.c;
    const int64_t ob = rest % a.out_w;
    rest /= a.out_w;
    const int64_t oa = rest % a.out_h;
    const int64_t n = rest / a.out_h;
    float acc = bias != nullptr ? Elem<T>::load(bias, c) : 0.0f;
    const T* in_n = in + n * a.in_h * a.in_w * a.c + c;
    for (int i = 0; i < a.kh; ++i) {
      const int64_t ih = oa * a.stride + a.oy + static_cast<int64_t>(i) * a.dil;
      if (ih < 0 || ih >= a.in_h) continue;
      for (int j = 0; j < a.kw; ++j) {
        const int64_t iw = ob * a.stride + a.ox + static_cast<int64_t>(j) * a.dil;
        if (iw < 0 || iw >= a.in_w) continue;
        acc = fmaf(wt[(static_cast<int64_t>(i) * a.kw + j) * a.c + c], Elem<T>::load(in_n, (ih * a.in_w + iw) * a.c), acc);
      }
    }
    put(out, (n * a.out_img + a.out_base + oa * a.out_row + ob * a.out_col) * a.c + c, acc, accumulate);
  }
}

struct WgradArgs {
  int64_t n, c, h, w, oh, ow;
  int k, stride, dil, pad_h, pad_w;
  int nchunk;      // ceil(K / 8): 8-tap slots per kernel row
  int group_rows;  // kernel rows per tap group
  int64_t rows;    // n * oh
  int parts, col_tiles, xw;  // row parts, column tiles, staged pixels per x row
};

// Slots of a block: pair p = (kernel row kh_lo + p / nchunk, taps 8 (p % nchunk) ..), and
// when there are fewer pairs than slots, `rep` copies of each pair over column segments.
template <typename T, int S>
__global__ void __launch_bounds__(kThreads, 2) wgrad_kernel(WgradArgs a, const T* __restrict__ x, const T* __restrict__ dy,
                                                         float* __restrict__ ws) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c = blockIdx.y * 32 + lane;
  const bool cok = c < a.c;
  const int ct = static_cast<int>(blockIdx.x % a.col_tiles);
  const int part = static_cast<int>(blockIdx.x / a.col_tiles);
  const int kh_lo = blockIdx.z * a.group_rows;
  const int nkh = min(a.group_rows, a.k - kh_lo);
  const int np = nkh * a.nchunk;
  const int rep = kSlots / np;
  const int64_t b0 = static_cast<int64_t>(ct) * kWgradCols;
  const int bw = static_cast<int>(a.ow - b0 < kWgradCols ? a.ow - b0 : kWgradCols);
  const int seg = (bw + rep - 1) / rep;
  const int d = a.dil;

  float* s_dy = smem;                 // [kWgradCols][32]
  float* s_x = smem + kWgradCols * 32;  // [nkh][xw][32]

  // This thread's two slots.
  int s_kh[2], s_j0[2], s_b[2], s_e[2];
  bool s_on[2];
#pragma unroll
  for (int q = 0; q < 2; ++q) {
    const int slot = warp * 2 + q;
    s_on[q] = slot < np * rep;
    const int p = slot % np, r = slot / np;
    s_kh[q] = p / a.nchunk;  // relative to kh_lo
    s_j0[q] = (p % a.nchunk) * 8;
    s_b[q] = min(bw, r * seg);
    s_e[q] = min(bw, (r + 1) * seg);
  }
  float acc[2][8];
#pragma unroll
  for (int q = 0; q < 2; ++q)
#pragma unroll
    for (int t = 0; t < 8; ++t) acc[q][t] = 0.0f;

  const int64_t r_begin = a.rows * part / a.parts, r_end = a.rows * (part + 1) / a.parts;
  for (int64_t row = r_begin; row < r_end; ++row) {
    const int64_t n = row / a.oh, oa = row % a.oh;
    // Stage the dy row segment and the x rows of this group's kernel rows.
    for (int v = warp; v < kWgradCols; v += kWarps)
      s_dy[v * 32 + lane] = (cok && v < bw) ? Elem<T>::load(dy, ((n * a.oh + oa) * a.ow + b0 + v) * a.c + c) : 0.0f;
    const int64_t col0 = b0 * S - a.pad_w;
    for (int e = warp; e < nkh * a.xw; e += kWarps) {
      const int kr = e / a.xw, q = e % a.xw;
      const int64_t ih = oa * S - a.pad_h + static_cast<int64_t>(kh_lo + kr) * d, iw = col0 + q;
      s_x[e * 32 + lane] =
          (cok && ih >= 0 && ih < a.h && iw >= 0 && iw < a.w) ? Elem<T>::load(x, ((n * a.h + ih) * a.w + iw) * a.c + c) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int64_t ih = oa * S - a.pad_h + static_cast<int64_t>(kh_lo + s_kh[q]) * d;
      if (!s_on[q] || ih < 0 || ih >= a.h) continue;  // warp-uniform; rows of padding add nothing
      const float* xr = s_x + s_kh[q] * a.xw * 32 + lane;
      const float* dr = s_dy + lane;
      const int j0 = s_j0[q];
      if constexpr (S == 1) {
        // Columns b = beta + d m of one residue class read x at beta + d (m + tap): a dense
        // window over m. X(i) = x pixel beta + d i, clamped: clamped reads only feed taps >= K.
        for (int beta = 0; beta < d; ++beta) {
          const int bf = s_b[q] + beta;
          if (bf >= s_e[q]) break;
          const int cnt = (s_e[q] - bf + d - 1) / d;
          auto X = [&](int i) { return xr[min(bf + d * i, a.xw - 1) * 32]; };
          float win[8];
#pragma unroll
          for (int t = 0; t < 8; ++t) win[t] = X(j0 + t);
          for (int m0 = 0; m0 < cnt; m0 += 8) {
#pragma unroll
            for (int u = 0; u < 8; ++u) {
              const int m = m0 + u;
              if (m < cnt) {
                const float dv = dr[(bf + d * m) * 32];
#pragma unroll
                for (int t = 0; t < 8; ++t) acc[q][t] = fmaf(dv, win[(u + t) & 7], acc[q][t]);
                win[u] = X(m + j0 + 8);
              }
            }
          }
        }
      } else {
        for (int b = s_b[q]; b < s_e[q]; ++b) {
          const float dv = dr[b * 32];
#pragma unroll
          for (int t = 0; t < 8; ++t) acc[q][t] = fmaf(dv, xr[min(S * b + (j0 + t) * d, a.xw - 1) * 32], acc[q][t]);
        }
      }
    }
    __syncthreads();
  }

  // Replicas of a pair summed in replica order through shared memory, then one partial per
  // (part, column tile, channel, tap) of this group.
  float* red = smem;  // [kSlots][8][32]
#pragma unroll
  for (int q = 0; q < 2; ++q)
#pragma unroll
    for (int t = 0; t < 8; ++t) red[((warp * 2 + q) * 8 + t) * 32 + lane] = acc[q][t];
  __syncthreads();
  const int64_t kk = static_cast<int64_t>(a.k) * a.k;
  float* wsp = ws + (static_cast<int64_t>(part) * a.col_tiles + ct) * a.c * kk;
  for (int item = warp; item < np * 8; item += kWarps) {
    const int p = item / 8, t = item % 8;
    const int kw = (p % a.nchunk) * 8 + t;
    if (kw >= a.k || !cok) continue;
    float sum = 0.0f;
    for (int r = 0; r < rep; ++r) sum += red[((r * np + p) * 8 + t) * 32 + lane];
    const int kh = kh_lo + p / a.nchunk;
    wsp[c * kk + kh * a.k + kw] = sum;
  }
}

// db partials: block (part, channel group) sums dy over its rows; warps split the rows and
// are added in warp order.
template <typename T>
__global__ void __launch_bounds__(kThreads) bias_grad_kernel(const T* __restrict__ dy, int64_t rows, int64_t ow, int64_t C, int parts,
                                                             float* __restrict__ ws) {
  __shared__ float red[kWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c = blockIdx.y * 32 + lane;
  const int part = blockIdx.x;
  const int64_t r_begin = rows * part / parts, r_end = rows * (part + 1) / parts;
  float sum = 0.0f;
  if (c < C)
    for (int64_t r = r_begin + warp; r < r_end; r += kWarps)
      for (int64_t b = 0; b < ow; ++b) sum += Elem<T>::load(dy, (r * ow + b) * C + c);
  red[warp][lane] = sum;
  __syncthreads();
  if (warp == 0 && c < C) {
    float s = 0.0f;
    for (int k = 0; k < kWarps; ++k) s += red[k][lane];
    ws[static_cast<int64_t>(part) * C + c] = s;
  }
}

// out[i] = sum over p of ws[p * m + i], in p order.
template <typename T>
__global__ void sum_parts_kernel(const float* __restrict__ ws, int64_t parts, int64_t m, T* __restrict__ out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < m; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int64_t p = 0; p < parts; ++p) s += ws[p * m + i];
    Elem<T>::store(out, i, s);
  }
}

void check_grid(int64_t blocks, int64_t cgroups, const char* what) {
  if (blocks > 0x7fffffffLL || cgroups > 65535)
    throw Error(std::string("dwconv: ") + what + " needs a grid of " + std::to_string(blocks) + " x " + std::to_string(cgroups) +
                " blocks, more than CUDA allows");
}

template <typename T>
void run_pass(const DwGeom& g, const DwPass& p, const T* in, const T* w, const T* bias, T* out, bool accumulate, Stream s) {
  if (g.n == 0 || g.c == 0 || p.out_h == 0 || p.out_w == 0) return;
  const int dev = current_device();
  cudaStream_t st = as_cuda(s);
  const int64_t taps = static_cast<int64_t>(p.kh) * p.kw;
  Workspace wt(dev, static_cast<size_t>(taps * g.c) * sizeof(float), s);
  if (taps > 0)
    prep_weights_kernel<T><<<grid_1d(taps * g.c, 256), 256, 0, st>>>(w, wt.as<float>(), g.c, g.k, p.kh, p.kw, p.wh0, p.whs, p.ww0, p.wws);
  PassArgs a{g.c, p.in_h, p.in_w, p.out_h, p.out_w, p.out_img, p.out_base, p.out_row, p.out_col, p.oy, p.ox,
             p.stride, p.dil, p.kh, p.kw, 0, 0};
  if (p.stride == 1) {
    a.tiles_h = ((p.out_h + p.dil - 1) / p.dil + kTile - 1) / kTile;
    a.tiles_w = ((p.out_w + p.dil - 1) / p.dil + kTile - 1) / kTile;
    const int64_t blocks = g.n * p.dil * p.dil * a.tiles_h * a.tiles_w;
    check_grid(blocks, (g.c + 31) / 32, "a convolution pass");
    const size_t smem = static_cast<size_t>(kTile * (kTile + p.kw) + p.kw) * 32 * sizeof(float);  // <= 44 KB
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>((g.c + 31) / 32));
    pass_s1_kernel<T><<<grid, kThreads, smem, st>>>(a, in, wt.as<float>(), bias, out, accumulate);
  } else {
    pass_direct_kernel<T><<<grid_1d(g.n * p.out_h * p.out_w * g.c, 256), 256, 0, st>>>(a, g.n, in, wt.as<float>(), bias, out, accumulate);
  }
}

template <typename T, int S>
void launch_wgrad(const WgradArgs& a, dim3 grid, size_t smem, cudaStream_t st, const T* x, const T* dy, float* ws) {
  allow_smem(wgrad_kernel<T, S>, smem);
  wgrad_kernel<T, S><<<grid, kThreads, smem, st>>>(a, x, dy, ws);
}

template <typename T>
void run_wgrad(const DwGeom& g, const T* x, const T* dy, T* dw, T* db, Stream s) {
  const int64_t kk = static_cast<int64_t>(g.k) * g.k;
  cudaStream_t st = as_cuda(s);
  if (g.c == 0) return;
  const int64_t rows = g.n * g.oh;
  if (rows == 0 || g.ow == 0) {
    // No output pixels: both gradients are zero.
    if (dw) CF_CUDA_CHECK(cudaMemsetAsync(dw, 0, static_cast<size_t>(g.c * kk) * sizeof(T), st));
    if (db) CF_CUDA_CHECK(cudaMemsetAsync(db, 0, static_cast<size_t>(g.c) * sizeof(T), st));
    return;
  }
  const int dev = current_device();
  const int sms = sm_count(dev);
  const int64_t cgroups = (g.c + 31) / 32;
  if (dw) {
    WgradArgs a{};
    a.n = g.n;
    a.c = g.c;
    a.h = g.h;
    a.w = g.w;
    a.oh = g.oh;
    a.ow = g.ow;
    a.k = g.k;
    a.stride = g.stride;
    a.dil = g.dil;
    a.pad_h = g.pad_h;
    a.pad_w = g.pad_w;
    a.rows = rows;
    a.nchunk = (g.k + 7) / 8;
    a.col_tiles = static_cast<int>((g.ow + kWgradCols - 1) / kWgradCols);
    a.xw = (kWgradCols - 1) * g.stride + (g.k - 1) * g.dil + 1;
    // Kernel rows per group: as many as fill the slots, within ~96 KB of staged rows.
    const int64_t row_bytes = static_cast<int64_t>(a.xw) * 32 * sizeof(float);
    const int64_t fit = std::max<int64_t>(1, (96 * 1024 - kWgradCols * 32 * int64_t(sizeof(float))) / row_bytes);
    a.group_rows = static_cast<int>(std::min<int64_t>({kSlots / a.nchunk, fit, g.k}));
    const int64_t tgroups = (g.k + a.group_rows - 1) / a.group_rows;
    // Row parts: about 8 blocks per SM, within the workspace cap and one row per part at least.
    const int64_t per_part = a.col_tiles * cgroups * tgroups;
    const int64_t cap = std::max<int64_t>(1, kWorkspaceCap / (a.col_tiles * g.c * kk * int64_t(sizeof(float))));
    a.parts = static_cast<int>(std::max<int64_t>(1, std::min({rows, (8 * sms + per_part - 1) / per_part, cap, int64_t(65535)})));
    const int64_t partials = static_cast<int64_t>(a.parts) * a.col_tiles;
    check_grid(partials, cgroups, "the weight gradient");
    Workspace ws(dev, static_cast<size_t>(partials * g.c * kk) * sizeof(float), s);
    const size_t smem = static_cast<size_t>(std::max<int64_t>(kWgradCols * 32 + a.group_rows * a.xw * 32, kSlots * 8 * 32)) * sizeof(float);
    const dim3 grid(static_cast<unsigned>(partials), static_cast<unsigned>(cgroups), static_cast<unsigned>(tgroups));
    if (g.stride == 1)
      launch_wgrad<T, 1>(a, grid, smem, st, x, dy, ws.as<float>());
    else
      launch_wgrad<T, 2>(a, grid, smem, st, x, dy, ws.as<float>());
    sum_parts_kernel<T><<<grid_1d(g.c * kk, 256), 256, 0, st>>>(ws.as<float>(), partials, g.c * kk, dw);
  }
  if (db) {
    const int parts = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({rows, (4 * sms + cgroups - 1) / cgroups, 65535})));
    Workspace ws(dev, static_cast<size_t>(parts * g.c) * sizeof(float), s);
    bias_grad_kernel<T><<<dim3(parts, static_cast<unsigned>(cgroups)), kThreads, 0, st>>>(dy, rows, g.ow, g.c, parts, ws.as<float>());
    sum_parts_kernel<T><<<grid_1d(g.c, 256), 256, 0, st>>>(ws.as<float>(), parts, g.c, db);
  }
}

}  // namespace

void dwconv_forward(DType dtype, const DwGeom& g, const void* x, const void* w, const void* bias, void* y, Stream s) {
  CF_FLOAT_DTYPE(dtype, T,
                 run_pass<T>(g, dw_forward_pass(g), static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias),
                             static_cast<T*>(y), false, s));
}

void dwconv_backward_input(DType dtype, const DwGeom& g, const void* dy, const void* w, void* dx, bool accumulate, Stream s) {
  DwPass passes[4];
  const int np = dw_backward_input_passes(g, passes);
  CF_FLOAT_DTYPE(dtype, T, {
    for (int i = 0; i < np; ++i)
      run_pass<T>(g, passes[i], static_cast<const T*>(dy), static_cast<const T*>(w), nullptr, static_cast<T*>(dx), accumulate, s);
  });
}

void dwconv_backward_weight(DType dtype, const DwGeom& g, const void* x, const void* dy, void* dw, void* db, Stream s) {
  CF_FLOAT_DTYPE(dtype, T,
                 run_wgrad<T>(g, static_cast<const T*>(x), static_cast<const T*>(dy), static_cast<T*>(dw), static_cast<T*>(db), s));
}

}  // namespace cf::cuda
