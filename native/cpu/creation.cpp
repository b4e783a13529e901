#include "creation.h"

#include <cmath>
#include <limits>

#include "philox.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {
constexpr int64_t kGrain = 1 << 14;

int32_t to_i32(double v) {
  if (std::isnan(v)) return 0;
  if (v >= 2147483647.0) return std::numeric_limits<int32_t>::max();
  if (v <= -2147483648.0) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(v);
}

template <typename F>
void write_each(DType dtype, void* out, int64_t n, F value_of) {
  if (dtype == DType::I32) {
    int32_t* o = static_cast<int32_t*>(out);
    parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = to_i32(value_of(i));
    });
    return;
  }
  CF_FLOAT_DTYPE(dtype, T, {
    T* o = static_cast<T*>(out);
    parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) Elem<T>::store(o, i, static_cast<float>(value_of(i)));
    });
  });
}
}  // namespace

void fill(DType dtype, void* out, int64_t n, double value, Stream) {
  write_each(dtype, out, n, [=](int64_t) { return value; });
}

void arange(DType dtype, void* out, int64_t n, double start, double step, Stream) {
  write_each(dtype, out, n, [=](int64_t i) { return start + static_cast<double>(i) * step; });
}

void random(DType dtype, void* out, int64_t n, RandomKind kind, uint64_t seed, uint64_t offset, float a, float b, Stream) {
  if (kind == RandomKind::Uniform)
    write_each(dtype, out, n, [=](int64_t i) { return a + (b - a) * philox_uniform(seed, offset + i); });
  else
    write_each(dtype, out, n, [=](int64_t i) { return a + b * philox_normal(seed, offset + i); });
}

void cast(DType in_dtype, const void* in, DType out_dtype, void* out, int64_t n, Stream s) {
  if (in_dtype == DType::I32) {
    const int32_t* x = static_cast<const int32_t*>(in);
    write_each(out_dtype, out, n, [=](int64_t i) { return static_cast<double>(x[i]); });
    return;
  }
  CF_FLOAT_DTYPE(in_dtype, T, {
    const T* x = static_cast<const T*>(in);
    write_each(out_dtype, out, n, [=](int64_t i) { return static_cast<double>(Elem<T>::load(x, i)); });
  });
}

}  // namespace cf::cpu
