// Argument checks shared by the row-wise ops (softmax, crossEntropy, layerNorm,
// l2Normalize), which see a tensor as [rows, n] over its last axis.
#pragma once
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "args.h"

namespace cf::addon {

struct RowsView {
  int64_t rows = 0;
  int64_t n = 0;
};

// x as [rows, n]: at least one dimension, a last axis of 1 to 2^31 - 1 elements (kernels
// index within a row in 32 bits).
inline RowsView rows_of(Napi::Env env, const char* op, const TensorArg& x, const char* arg) {
  const std::string what = std::string(arg) + ".shape";
  if (x.rank() < 1) fail_arg(env, op, what.c_str(), "at least one dimension", x.shape_str());
  const int64_t n = x.dim(-1);
  if (n < 1) fail_arg(env, op, what.c_str(), "a last axis of size >= 1", x.shape_str());
  if (n > 2147483647) fail_arg(env, op, what.c_str(), "a last axis of at most 2147483647 elements", x.shape_str());
  return RowsView{x.numel / n, n};
}

// The shape without its last axis: the shape of per-row values (labels, statistics).
inline std::vector<int64_t> row_shape(const TensorArg& x) { return std::vector<int64_t>(x.shape.begin(), x.shape.end() - 1); }

// A tensor argument that may be null or undefined.
inline std::optional<TensorArg> optional_tensor(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return std::nullopt;
  return tensor(info, i, op, arg);
}

// A finite number >= 0 (eps attributes); NaN and infinities are rejected.
inline float nonnegative_number(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  const double d = finite_number(info, i, op, arg);
  if (d < 0) fail_arg(info.Env(), op, arg, "a finite number >= 0", describe(info[i]));
  return static_cast<float>(d);
}

// An f32 tensor of per-row statistics (shape x.shape[:-1]) on x's device.
inline void expect_row_stats(Napi::Env env, const char* op, const TensorArg& stats, const char* arg, const TensorArg& x,
                             const char* xname) {
  expect_dtype(env, op, stats, arg, {DType::F32});
  same_device(env, op, x, xname, stats, arg);
  expect_shape(env, op, stats, arg, row_shape(x));
}

}  // namespace cf::addon
