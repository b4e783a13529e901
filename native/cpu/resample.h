// Separable antialiased bicubic resampling of 8-bit RGB rows into normalized CHW floats, for
// the JPEG op (jpeg.cpp). The taps are computed the way lib/data/resample.ts computes its
// triangle filter's, and PIL its BICUBIC: output sample o of an axis sits at
// start + (o + 0.5) * scale in source pixels; when downscaling the kernel is stretched by
// the scale, so every source pixel contributes (no aliasing); taps are limited to a source
// range [lo, hi) and renormalized, as if the image ended there (crop, then resize).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace cf::cpu {

#if defined(__GNUC__) && !defined(__clang__)
// The vectors never cross a call boundary (everything here is inline), so GCC's note about
// their ABI does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
// One RGB pixel in 4 float lanes (the last unused): a tap is one vector multiply-add.
typedef float v4f __attribute__((vector_size(16)));

// Keys' cubic with a = -0.5 (Catmull-Rom): PIL's BICUBIC, torchvision's and libvips' 'cubic'.
inline double cubic_kernel(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

// One axis's filter: output o reads count[o] source pixels from first[o], with weights
// weights[o * stride + k] summing to 1.
struct Taps {
  std::vector<int> first, count;
  std::vector<float> weights;
  int stride = 0;

  int lowest() const { return first.front(); }
  int end() const { return first.back() + count.back(); }
};

// `out` samples covering [start, start + extent) of a source axis; taps within [lo, hi).
inline void cubic_taps(double start, double extent, int out, int lo, int hi, Taps& t) {
  const double scale = extent / out;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2 * filter_scale;
  t.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.assign(out, 0);
  t.count.assign(out, 0);
  t.weights.assign(static_cast<size_t>(out) * t.stride, 0.f);
  for (int o = 0; o < out; ++o) {
    const double center = start + (o + 0.5) * scale;
    int a = std::max(lo, static_cast<int>(std::floor(center - support + 0.5)));
    int b = std::min(hi, static_cast<int>(std::floor(center + support + 0.5)));
    // A box edge that falls within half a pixel of the range's end can leave no tap: take the
    // nearest pixel.
    if (b <= a) {
      a = std::clamp(static_cast<int>(std::floor(center)), lo, hi - 1);
      b = a + 1;
    }
    float* w = &t.weights[static_cast<size_t>(o) * t.stride];
    double total = 0;
    for (int s = a; s < b; ++s) total += w[s - a] = static_cast<float>(cubic_kernel((s + 0.5 - center) / filter_scale));
    if (total == 0) {
      w[0] = 1;
      total = 1;
    }
    for (int k = 0; k < b - a; ++k) w[k] = static_cast<float>(w[k] / total);
    t.first[o] = a;
    t.count[o] = b - a;
  }
}

// A row of n RGBX pixels (4 bytes each, X ignored later) as pixel vectors.
inline __attribute__((always_inline)) void widen_row(const uint8_t* src, int n, v4f* dst) {
  float* f = reinterpret_cast<float*>(dst);
  for (int i = 0; i < 4 * n; ++i) f[i] = src[i];
}

// Horizontal pass of one widened row whose pixel 0 is source column `x0`, into row `r` of
// three planes (R, G, B) of `plane` floats each, rows out_width long.
inline __attribute__((always_inline)) void resample_row(const v4f* src, int x0, const Taps& h, float* planes, size_t plane, size_t r) {
  const int n_out = static_cast<int>(h.first.size());
  float* dst = planes + r * n_out;
  for (int x = 0; x < n_out; ++x) {
    const float* w = &h.weights[static_cast<size_t>(x) * h.stride];
    const v4f* p = src + (h.first[x] - x0);
    // Two accumulators halve the chain of dependent adds (a tap loop is only ~7 long, so its
    // latency, not its arithmetic, sets the pace).
    v4f acc = {0, 0, 0, 0}, acc2 = {0, 0, 0, 0};
    const int n = h.count[x];
    int k = 0;
    for (; k + 1 < n; k += 2) {
      acc += w[k] * p[k];
      acc2 += w[k + 1] * p[k + 1];
    }
    if (k < n) acc += w[k] * p[k];
    acc += acc2;
    dst[x] = acc[0];
    dst[plane + x] = acc[1];
    dst[2 * plane + x] = acc[2];
  }
}

// Vertical pass over the planes resampled horizontally (source row y0 first, rows `width`
// long, `plane` floats per channel), clamped to [0, 255] as an 8-bit result would be, then
// normalized: out[c, y, x] = value * gain[c] + shift[c].
inline __attribute__((always_inline)) void resample_columns_chw(const float* planes, size_t plane, int y0, int width, const Taps& v, const float gain[3],
                                 const float shift[3], float* out) {
  const int height = static_cast<int>(v.first.size());
  std::vector<float> acc(width);
  for (int c = 0; c < 3; ++c) {
    const float* src_plane = planes + c * plane;
    for (int y = 0; y < height; ++y) {
      std::fill(acc.begin(), acc.end(), 0.f);
      const float* w = &v.weights[static_cast<size_t>(y) * v.stride];
      for (int k = 0, n = v.count[y]; k < n; ++k) {
        const float* src = src_plane + static_cast<size_t>(v.first[y] - y0 + k) * width;
        const float wk = w[k];
        for (int x = 0; x < width; ++x) acc[x] += wk * src[x];
      }
      float* dst = out + (static_cast<size_t>(c) * height + y) * width;
      for (int x = 0; x < width; ++x) dst[x] = std::min(std::max(acc[x], 0.f), 255.f) * gain[c] + shift[c];
    }
  }
}

}  // namespace cf::cpu
