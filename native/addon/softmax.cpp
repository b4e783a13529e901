// softmax(x, y, log) and softmaxBackward(y, dy, dx, log), over the last axis; log selects
// log-softmax. Outputs are preallocated by the caller and may not share memory with inputs.
#include "args.h"
#include "register.h"
#include "rows.h"
#include "softmax.h"

namespace cf::addon {
namespace {

Napi::Value softmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "softmax";
  TensorArg x = tensor(info, 0, op, "x"), y = tensor(info, 1, op, "y");
  const bool log = boolean(info, 2, op, "log");
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  expect_same_dtype(env, op, x, "x", y, "y");
  same_device(env, op, x, "x", y, "y");
  const RowsView rv = rows_of(env, op, x, "x");
  expect_shape(env, op, y, "y", x.shape);
  no_overlap(env, op, y, x, "x");
  Stream s = prepare_device(env, x.device(), op);
  CF_BACKEND_CALL(x.device(), softmax_forward, x.dtype, log, x.data(), y.data(), rv.rows, rv.n, s);
  return env.Undefined();
}

Napi::Value softmax_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "softmaxBackward";
  TensorArg y = tensor(info, 0, op, "y"), dy = tensor(info, 1, op, "dy"), dx = tensor(info, 2, op, "dx");
  const bool log = boolean(info, 3, op, "log");
  expect_dtype(env, op, y, "y", {DType::F32, DType::BF16});
  expect_same_dtype(env, op, y, "y", dy, "dy");
  expect_same_dtype(env, op, y, "y", dx, "dx");
  same_device(env, op, y, "y", dy, "dy");
  same_device(env, op, y, "y", dx, "dx");
  const RowsView rv = rows_of(env, op, y, "y");
  expect_shape(env, op, dy, "dy", y.shape);
  expect_shape(env, op, dx, "dx", y.shape);
  no_overlap(env, op, dx, y, "y");
  no_overlap(env, op, dx, dy, "dy");
  Stream s = prepare_device(env, y.device(), op);
  CF_BACKEND_CALL(y.device(), softmax_backward, y.dtype, log, y.data(), dy.data(), dx.data(), rv.rows, rv.n, s);
  return env.Undefined();
}

}  // namespace

void register_softmax(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "softmax", softmax);
  CF_EXPORT(exports, "softmaxBackward", softmax_backward);
}

}  // namespace cf::addon
