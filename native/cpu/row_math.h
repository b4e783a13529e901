// Row primitives for the CPU row-wise kernels (softmax, cross-entropy, layernorm, l2norm) and
// their parameter vectors as f32 (also GRN's).
//
// Reductions keep kLanes independent partial sums and add them up at the end. The build
// does not use -ffast-math, so the compiler may not reorder one float accumulator; the
// fixed lane loop is what lets -O3 turn these loops into SIMD adds. The order of additions
// depends only on n, never on the thread count, so kernels built on them are deterministic.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core.h"

namespace cf::cpu::rowmath {

constexpr int64_t kLanes = 16;

// The n values of a T vector (a norm's parameters) as f32, converted once; n zeros when p is null.
template <typename T>
std::vector<float> values_f32(const void* p, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n), 0.0f);
  if (p)
    for (int64_t i = 0; i < n; ++i) v[i] = Elem<T>::load(static_cast<const T*>(p), i);
  return v;
}

// sum_{i < n} term(i), accumulated in kLanes lanes.
template <typename F>
inline float lane_sum(int64_t n, F&& term) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) acc[j] += term(i + j);
  for (int64_t j = 0; i + j < n; ++j) acc[j] += term(i + j);
  float s = 0.0f;
  for (int64_t j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// Two sums in one pass: term(i, a, b) adds its two terms into a and b.
template <typename F>
inline void lane_sum2(int64_t n, float* sa, float* sb, F&& term) {
  float a[kLanes] = {}, b[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) term(i + j, a[j], b[j]);
  for (int64_t j = 0; i + j < n; ++j) term(i + j, a[j], b[j]);
  float ra = 0.0f, rb = 0.0f;
  for (int64_t j = 0; j < kLanes; ++j) {
    ra += a[j];
    rb += b[j];
  }
  *sa = ra;
  *sb = rb;
}

// max_i x_i (n >= 1). NaN is not propagated here; callers feed the max into sums of
// exp(x - max), which carry any NaN of the row into every output.
inline float lane_max(const float* x, int64_t n) {
  float acc[kLanes];
  for (int64_t j = 0; j < kLanes; ++j) acc[j] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  for (int64_t j = 0; i + j < n; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  float m = acc[0];
  for (int64_t j = 1; j < kLanes; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

// out[i] = e^(x[i] - shift) for i < n (out may be x). Vectorizable, no calls: e^d with
// d = k ln2 + r, |r| <= ln2/2, e^r from Cephes' expf polynomial (about 1 ulp) and 2^k built
// in the exponent bits. d is clamped to [-87.3, 88.3] (where 2^k stays a normal float);
// below -87.3 the result is 0, so e^-inf = 0; NaN gives NaN. Callers shift by the row max or
// logsumexp, so d <= 0 up to rounding.
// Two loops per block of kExpBlock: the first classifies d on its bit pattern (as unsigned, a
// pattern with the sign bit set is more negative the larger it is; -inf and negative NaNs
// are largest) and stores the clamped value and two masks; the second is pure arithmetic.
// In one loop GCC specializes the constant path of a range test into a branch, and then
// (under -ftrapping-math) will not vectorize; through memory it cannot.
inline void exp_shifted(const float* x, float shift, float* out, int64_t n) {
  constexpr int64_t kExpBlock = 64;
  constexpr uint32_t kLo = 0xC2AE999Au;  // bits of -87.3f
  constexpr uint32_t kHi = 0x42B0999Au;  // bits of 88.3f
  uint32_t clamped[kExpBlock], keep[kExpBlock], nan[kExpBlock];
  for (int64_t b = 0; b < n; b += kExpBlock) {
    const int64_t c = std::min(kExpBlock, n - b);
    for (int64_t j = 0; j < c; ++j) {
      const float d = x[b + j] - shift;
      uint32_t u;
      std::memcpy(&u, &d, 4);
      keep[j] = u > kLo ? 0u : ~0u;                                  // 0 below the range
      nan[j] = (u & 0x7FFFFFFFu) > 0x7F800000u ? 0x7FC00000u : 0u;  // forces a NaN result
      // Unsigned min clamps the negative side; signed min then the positive side (negative
      // patterns are negative as int32 and pass through).
      clamped[j] = static_cast<uint32_t>(std::min(static_cast<int32_t>(std::min(u, kLo)), static_cast<int32_t>(kHi)));
    }
    for (int64_t j = 0; j < c; ++j) {
      float xc;
      std::memcpy(&xc, &clamped[j], 4);
      const float t = xc * 1.44269504088896341f + 12582912.0f;  // + 1.5 * 2^23 rounds to an integer k in the low bits
      const float k = t - 12582912.0f;
      float r = xc - k * 0.693359375f;
      r = r + k * 2.12194440e-4f;
      float p = 1.9875691500e-4f;
      p = p * r + 1.3981999507e-3f;
      p = p * r + 8.3334519073e-3f;
      p = p * r + 4.1665795894e-2f;
      p = p * r + 1.6666665459e-1f;
      p = p * r + 5.0000001201e-1f;
      p = p * r * r + r + 1.0f;
      uint32_t tb;
      std::memcpy(&tb, &t, 4);
      const uint32_t sbits = ((tb - 0x4B400000u + 127u) << 23) & keep[j];  // 2^k, or +0 below the range
      float scale;
      std::memcpy(&scale, &sbits, 4);
      const float e = p * scale;
      uint32_t ue;
      std::memcpy(&ue, &e, 4);
      ue |= nan[j];
      std::memcpy(&out[b + j], &ue, 4);
    }
  }
}

// A row of T seen as f32: f32 rows are used in place, bf16 rows go through a scratch
// buffer (converted on load, rounded back on store).
template <typename T>
class Row {
 public:
  explicit Row(int64_t n) : n_(n), buf_(std::is_same_v<T, float> ? 0 : n) {}

  const float* load(const T* src) {
    if constexpr (std::is_same_v<T, float>) {
      return src;
    } else {
      for (int64_t i = 0; i < n_; ++i) buf_[i] = bf16_to_float(src[i]);
      return buf_.data();
    }
  }
  // Where to write a row bound for dst; call store(dst) after writing.
  float* target(T* dst) {
    if constexpr (std::is_same_v<T, float>) {
      return dst;
    } else {
      return buf_.data();
    }
  }
  // A row to add into: dst's current values, written back by store(dst).
  float* update(T* dst) { return const_cast<float*>(load(dst)); }
  void store(T* dst) {
    if constexpr (!std::is_same_v<T, float>) {
      for (int64_t i = 0; i < n_; ++i) dst[i] = float_to_bf16(buf_[i]);
    }
  }

 private:
  int64_t n_;
  std::vector<float> buf_;
};

// Rows per parallel_for task: about 16k elements of work each.
inline int64_t row_grain(int64_t n) { return n >= (1 << 14) ? 1 : (1 << 14) / n; }

}  // namespace cf::cpu::rowmath
