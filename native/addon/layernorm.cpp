// layerNorm(x, weight, bias, y, mean, rstd, eps) and
// layerNormBackward(x, weight, mean, rstd, dy, dx, dweight, dbias, accumulate). x [..., D]; weight,
// bias, dweight, dbias [D] with x's dtype, each may be null; mean and rstd f32 [...]; y and
// dy with x's dtype, or bf16 when x is f32.
// Backward outputs that are null are not computed; accumulate (only with dx): dx += the gradient.
#include "args.h"
#include "layernorm.h"
#include "register.h"
#include "rows.h"

namespace cf::addon {
namespace {

// A [D] vector with x's dtype and device.
void expect_param(Napi::Env env, const char* op, const std::optional<TensorArg>& p, const char* arg, const TensorArg& x) {
  if (!p) return;
  expect_same_dtype(env, op, x, "x", *p, arg);
  same_device(env, op, x, "x", *p, arg);
  expect_shape(env, op, *p, arg, {x.dim(-1)});
}

void* data_or_null(const std::optional<TensorArg>& t) { return t ? t->data() : nullptr; }

// y (or dy) has x's dtype, or is bf16 beside an f32 x (a normalized row that feeds a bf16 product).
void expect_output_dtype(Napi::Env env, const char* op, const TensorArg& x, const TensorArg& y, const char* arg) {
  if (y.dtype == x.dtype || (x.dtype == DType::F32 && y.dtype == DType::BF16)) return;
  fail(env, std::string(op) + ": expected dtype " + dtype_name(x.dtype) + (x.dtype == DType::F32 ? " or bf16" : "") + " for " + arg + " (x is " +
                dtype_name(x.dtype) + "), got " + dtype_name(y.dtype));
}

Napi::Value layer_norm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "layerNorm";
  TensorArg x = tensor(info, 0, op, "x");
  std::optional<TensorArg> w = optional_tensor(info, 1, op, "weight"), b = optional_tensor(info, 2, op, "bias");
  TensorArg y = tensor(info, 3, op, "y"), mean = tensor(info, 4, op, "mean"), rstd = tensor(info, 5, op, "rstd");
  const float eps = nonnegative_number(info, 6, op, "eps");
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  const RowsView rv = rows_of(env, op, x, "x");
  expect_param(env, op, w, "weight", x);
  expect_param(env, op, b, "bias", x);
  expect_output_dtype(env, op, x, y, "y");
  same_device(env, op, x, "x", y, "y");
  expect_shape(env, op, y, "y", x.shape);
  expect_row_stats(env, op, mean, "mean", x, "x");
  expect_row_stats(env, op, rstd, "rstd", x, "x");
  for (const TensorArg* out : {&y, &mean, &rstd}) {
    no_overlap(env, op, *out, x, "x");
    if (w) no_overlap(env, op, *out, *w, "weight");
    if (b) no_overlap(env, op, *out, *b, "bias");
  }
  no_overlap(env, op, mean, y, "y");
  no_overlap(env, op, rstd, y, "y");
  no_overlap(env, op, rstd, mean, "mean");
  Stream s = prepare_device(env, x.device(), op);
  CF_BACKEND_CALL(x.device(), layernorm_forward, x.dtype, y.dtype, x.data(), data_or_null(w), data_or_null(b), y.data(), mean.as<float>(),
                  rstd.as<float>(), rv.rows, rv.n, eps, s);
  return env.Undefined();
}

Napi::Value layer_norm_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "layerNormBackward";
  TensorArg x = tensor(info, 0, op, "x");
  std::optional<TensorArg> w = optional_tensor(info, 1, op, "weight");
  TensorArg mean = tensor(info, 2, op, "mean"), rstd = tensor(info, 3, op, "rstd"), dy = tensor(info, 4, op, "dy");
  std::optional<TensorArg> dx = optional_tensor(info, 5, op, "dx"), dw = optional_tensor(info, 6, op, "dweight"),
                           db = optional_tensor(info, 7, op, "dbias");
  const bool accumulate = boolean(info, 8, op, "accumulate");
  if (accumulate && !dx) fail_arg(env, op, "accumulate", "false when dx is null", "true");
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  const RowsView rv = rows_of(env, op, x, "x");
  expect_param(env, op, w, "weight", x);
  expect_row_stats(env, op, mean, "mean", x, "x");
  expect_row_stats(env, op, rstd, "rstd", x, "x");
  expect_output_dtype(env, op, x, dy, "dy");
  same_device(env, op, x, "x", dy, "dy");
  expect_shape(env, op, dy, "dy", x.shape);
  if (dx) {
    expect_same_dtype(env, op, x, "x", *dx, "dx");
    same_device(env, op, x, "x", *dx, "dx");
    expect_shape(env, op, *dx, "dx", x.shape);
  }
  expect_param(env, op, dw, "dweight", x);
  expect_param(env, op, db, "dbias", x);
  std::vector<const TensorArg*> inputs = {&x, &mean, &rstd, &dy};
  const char* input_names[] = {"x", "mean", "rstd", "dy", "weight"};
  if (w) inputs.push_back(&*w);
  std::vector<const TensorArg*> outputs;
  for (auto* o : {&dx, &dw, &db})
    if (*o) outputs.push_back(&**o);
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (size_t k = 0; k < inputs.size(); ++k) no_overlap(env, op, *outputs[i], *inputs[k], input_names[k]);
    for (size_t k = 0; k < i; ++k) no_overlap(env, op, *outputs[i], *outputs[k], "another output");
  }
  Stream s = prepare_device(env, x.device(), op);
  CF_BACKEND_CALL(x.device(), layernorm_backward, x.dtype, dy.dtype, x.data(), data_or_null(w), mean.as<float>(), rstd.as<float>(), dy.data(),
                  data_or_null(dx), accumulate, data_or_null(dw), data_or_null(db), rv.rows, rv.n, s);
  return env.Undefined();
}

}  // namespace

void register_layernorm(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "layerNorm", layer_norm);
  CF_EXPORT(exports, "layerNormBackward", layer_norm_backward);
}

}  // namespace cf::addon
