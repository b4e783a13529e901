// l2Normalize(x, y, norm, eps) and l2NormalizeBackward(x, norm, dy, dx, eps), over the last
// axis. x [..., D]; norm f32 [...] holds the unclamped row norms for the backward.
#include "args.h"
#include "l2norm.h"
#include "register.h"
#include "rows.h"

namespace cf::addon {
namespace {

Napi::Value l2_normalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "l2Normalize";
  TensorArg x = tensor(info, 0, op, "x"), y = tensor(info, 1, op, "y"), norm = tensor(info, 2, op, "norm");
  const float eps = nonnegative_number(info, 3, op, "eps");
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  const RowsView rv = rows_of(env, op, x, "x");
  expect_same_dtype(env, op, x, "x", y, "y");
  same_device(env, op, x, "x", y, "y");
  expect_shape(env, op, y, "y", x.shape);
  expect_row_stats(env, op, norm, "norm", x, "x");
  no_overlap(env, op, y, x, "x");
  no_overlap(env, op, norm, x, "x");
  no_overlap(env, op, norm, y, "y");
  Stream s = prepare_device(env, x.device(), op);
  CF_BACKEND_CALL(x.device(), l2norm_forward, x.dtype, x.data(), y.data(), norm.as<float>(), rv.rows, rv.n, eps, s);
  return env.Undefined();
}

Napi::Value l2_normalize_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "l2NormalizeBackward";
  TensorArg x = tensor(info, 0, op, "x"), norm = tensor(info, 1, op, "norm"), dy = tensor(info, 2, op, "dy"),
            dx = tensor(info, 3, op, "dx");
  const float eps = nonnegative_number(info, 4, op, "eps");
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  const RowsView rv = rows_of(env, op, x, "x");
  expect_row_stats(env, op, norm, "norm", x, "x");
  expect_same_dtype(env, op, x, "x", dy, "dy");
  expect_same_dtype(env, op, x, "x", dx, "dx");
  same_device(env, op, x, "x", dy, "dy");
  same_device(env, op, x, "x", dx, "dx");
  expect_shape(env, op, dy, "dy", x.shape);
  expect_shape(env, op, dx, "dx", x.shape);
  no_overlap(env, op, dx, x, "x");
  no_overlap(env, op, dx, norm, "norm");
  no_overlap(env, op, dx, dy, "dy");
  Stream s = prepare_device(env, x.device(), op);
  CF_BACKEND_CALL(x.device(), l2norm_backward, x.dtype, x.data(), norm.as<float>(), dy.data(), dx.data(), rv.rows, rv.n, eps, s);
  return env.Undefined();
}

}  // namespace

void register_l2norm(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "l2Normalize", l2_normalize);
  CF_EXPORT(exports, "l2NormalizeBackward", l2_normalize_backward);
}

}  // namespace cf::addon
