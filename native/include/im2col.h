// im2col and col2im over NHWC images: the unfolding that turns a dense 2-D convolution into
// one GEMM (UniRepLKNet's stem and downsampling layers: 3 x 3, stride 2, padding 1).
//
//   cols[(n, oh, ow), (c, kh, kw)] = x[n, oh*s - ph + kh, ow*s - pw + kw, c]   (zero outside x)
//
// x is [N, H, W, C], cols [N * Ho * Wo, C * K * K] with Ho = (H + 2 ph - K) / s + 1 (Wo
// likewise). The column order (c, kh, kw) is PyTorch's weight order, so a Conv2d weight
// [O, C, K, K] is a [O, C*K*K] matrix as stored and the convolution is cols * W^T, with no
// weight copy. col2im is the adjoint: dx[n, h, w, c] = the sum of every cols entry that
// im2col read from x[n, h, w, c]. It gathers (each dx element sums its own K*K / s^2
// candidates), so it needs no atomics and is deterministic on both backends.
//
// Floor: memory bound. im2col reads x about K^2 / s^2 times (from cache) and writes
// N Ho Wo C K^2 elements; col2im reads those and writes N H W C.
#pragma once
#include "core.h"

namespace cf {

struct Im2colGeom {
  int64_t n = 0, h = 0, w = 0, c = 0;  // input
  int64_t oh = 0, ow = 0;              // output pixels
  int k = 1, stride = 1, pad_h = 0, pad_w = 0;
};

inline int64_t im2col_out_size(int64_t in, int k, int stride, int pad) {
  return (in + 2 * static_cast<int64_t>(pad) - k) / stride + 1;
}

}  // namespace cf

#define CF_IM2COL_OPS(NS)                                                                              \
  namespace cf::NS {                                                                                   \
  /* cols [N*Ho*Wo, C*K*K] from x [N, H, W, C] */                                                     \
  void im2col(DType dtype, const Im2colGeom& g, const void* x, void* cols, Stream stream);             \
  /* dx [N, H, W, C] (overwritten) = the adjoint of im2col applied to dcols [N*Ho*Wo, C*K*K] */       \
  void col2im(DType dtype, const Im2colGeom& g, const void* dcols, void* dx, Stream stream);           \
  }

CF_IM2COL_OPS(cpu)
CF_IM2COL_OPS(cuda)
#undef CF_IM2COL_OPS
