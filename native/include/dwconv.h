// Depthwise 2-D convolution (groups = channels), the large-kernel layer of UniRepLKNet and
// RepLKNet: forward, gradient with respect to the input, and gradient with respect to the
// weight and bias.
//
// Layout: activations are NHWC ([N, H, W, C], channels innermost), weights are PyTorch's
// [C, 1, K, K] (equivalently [C, K, K]), bias [C]. NHWC was measured faster on the CPU (see
// bench/notes/dwconv.md) and lets the GPU load whole channel vectors per pixel; the
// TypeScript op converts NCHW inputs on request.
//
//   y[n, oh, ow, c] = bias[c] + sum_{kh, kw < K} w[c, kh, kw] * x[n, oh*s - ph + kh*d, ow*s - pw + kw*d, c]
//
// with reads outside the image being zero, Ho = (H + 2 ph - d (K - 1) - 1) / s + 1 (and Wo
// likewise). K odd in [1, 31], stride s in {1, 2}, dilation d in [1, 5], padding in
// [0, d (K - 1)] (the addon checks all of it).
//
// Floor: 2 K^2 N C Ho Wo FLOPs per pass (forward, input grad and weight grad each), of which
// taps that land on padding may be skipped; compulsory bytes (x + y + w) * sizeof(T), e.g.
// K 13 at UniRepLKNet-L's stage 3 (N 128, C 768, 14 x 14) is 6.5 GFLOP against 77 MB of x + y
// in bf16 (84 FLOP/byte): compute bound from K ~ 7 up on CUDA cores.
//
// Both backends reduce the forward and the input gradient to one primitive, a pass (below):
// out = bias + the stride-s correlation of an input image with a sub-kernel of w, written
// through a strided view of the output. The forward is one pass. The input gradient is the
// correlation of dy with the flipped kernel; with stride 2 it splits into the 4 row/column
// phases of dx (dx[2a + rho] only receives the taps kh with (rho + ph - kh d) even), each a
// stride-1 pass over dy with its own sub-kernel, written to every second row and column.
#pragma once
#include "core.h"

namespace cf {

constexpr int kDwMaxKernel = 31;
constexpr int kDwMaxDilation = 5;

// The convolution's geometry, as validated by the addon.
struct DwGeom {
  int64_t n = 0, c = 0, h = 0, w = 0;  // input
  int64_t oh = 0, ow = 0;              // output
  int k = 1, stride = 1, dil = 1, pad_h = 0, pad_w = 0;
};

inline int64_t dw_out_size(int64_t in, int k, int stride, int dil, int pad) {
  return (in + 2 * static_cast<int64_t>(pad) - static_cast<int64_t>(dil) * (k - 1) - 1) / stride + 1;
}

// One correlation pass over every image n and channel c:
//   out[n, a, b, c] = bias[c] + sum_{i < kh, j < kw} w[c, wh0 + i*whs, ww0 + j*wws] * in[n, a*stride + oy + i*dil, b*stride + ox + j*dil, c]
// for a < out_h, b < out_w, where in is an [in_h, in_w] image (zero outside) and out[n, a, b]
// is the pixel n*out_img + out_base + a*out_row + b*out_col of the output tensor. kh or kw may
// be 0 (a dx phase no tap reaches): the pass then writes zeros.
struct DwPass {
  int64_t in_h = 0, in_w = 0;
  int64_t out_h = 0, out_w = 0;
  int64_t out_img = 0, out_base = 0, out_row = 0, out_col = 0;
  int stride = 1, dil = 1, kh = 0, kw = 0;
  int64_t oy = 0, ox = 0;
  int wh0 = 0, whs = 1, ww0 = 0, wws = 1;
};

inline DwPass dw_forward_pass(const DwGeom& g) {
  DwPass p;
  p.in_h = g.h;
  p.in_w = g.w;
  p.out_h = g.oh;
  p.out_w = g.ow;
  p.out_img = g.oh * g.ow;
  p.out_row = g.ow;
  p.out_col = 1;
  p.stride = g.stride;
  p.dil = g.dil;
  p.kh = p.kw = g.k;
  p.oy = -g.pad_h;
  p.ox = -g.pad_w;
  return p;
}

// The taps of one dx phase along one axis: dx index s*a + rho receives w[t] for the taps t
// with (rho + pad - t*d) divisible by s, at dy index a + (rho + pad - t*d) / s. Those taps
// form the progression t_max, t_max - step, ...; walked in that order their dy offsets grow
// by step*d/s, so the phase is a correlation with dilation step*d/s starting at `origin`.
struct DwPhaseTaps {
  int count = 0, t_max = 0, step = 1, dil = 1;
  int64_t origin = 0;
};

inline DwPhaseTaps dw_phase_taps(int rho, int pad, int k, int stride, int dil) {
  DwPhaseTaps t;
  t.step = stride / (dil % stride == 0 ? stride : 1);  // stride / gcd(stride, dil) for stride in {1, 2}
  t.dil = t.step * dil / stride;
  for (int tap = k - 1; tap >= 0; --tap) {
    const int64_t off = rho + static_cast<int64_t>(pad) - static_cast<int64_t>(tap) * dil;
    if (off % stride == 0) {
      t.t_max = tap;
      t.count = tap / t.step + 1;
      t.origin = off / stride;
      return t;
    }
  }
  return t;
}

// Fills `out` with the passes of the input gradient (1 for stride 1, 4 for stride 2); returns
// how many. Every pixel of dx is written by exactly one pass.
inline int dw_backward_input_passes(const DwGeom& g, DwPass out[4]) {
  int n = 0;
  for (int rho = 0; rho < g.stride; ++rho) {
    for (int sig = 0; sig < g.stride; ++sig) {
      DwPass p;
      p.in_h = g.oh;
      p.in_w = g.ow;
      p.out_h = (g.h - rho + g.stride - 1) / g.stride;
      p.out_w = (g.w - sig + g.stride - 1) / g.stride;
      if (p.out_h <= 0 || p.out_w <= 0) continue;
      const DwPhaseTaps th = dw_phase_taps(rho, g.pad_h, g.k, g.stride, g.dil);
      const DwPhaseTaps tw = dw_phase_taps(sig, g.pad_w, g.k, g.stride, g.dil);
      p.out_img = g.h * g.w;
      p.out_base = rho * g.w + sig;
      p.out_row = g.stride * g.w;
      p.out_col = g.stride;
      p.stride = 1;
      p.dil = th.dil;  // equal to tw.dil: both axes share stride and dilation
      p.kh = th.count;
      p.kw = tw.count;
      p.oy = th.origin;
      p.ox = tw.origin;
      p.wh0 = th.t_max;
      p.whs = -th.step;
      p.ww0 = tw.t_max;
      p.wws = -tw.step;
      out[n++] = p;
    }
  }
  return n;
}

}  // namespace cf

#define CF_DWCONV_OPS(NS)                                                                                          \
  namespace cf::NS {                                                                                               \
  /* y = dwconv(x, w) + bias; x [N, H, W, C], w [C, K, K], bias [C] or null, y [N, Ho, Wo, C] */                   \
  void dwconv_forward(DType dtype, const DwGeom& g, const void* x, const void* w, const void* bias, void* y,       \
                      Stream stream);                                                                              \
  /* dx = gradient of the forward with respect to x, given dy [N, Ho, Wo, C]; with accumulate, dx += it instead    \
     (parallel convolutions of one input sum their input gradients in place, rounded once) */                      \
  void dwconv_backward_input(DType dtype, const DwGeom& g, const void* dy, const void* w, void* dx, bool accumulate, \
                             Stream stream);                                                                       \
  /* dw [C, K, K] and db [C] (either may be null) from x and dy; f32 accumulation, deterministic */                \
  void dwconv_backward_weight(DType dtype, const DwGeom& g, const void* x, const void* dy, void* dw, void* db,    \
                              Stream stream);                                                                      \
  }

CF_DWCONV_OPS(cpu)
CF_DWCONV_OPS(cuda)
#undef CF_DWCONV_OPS
