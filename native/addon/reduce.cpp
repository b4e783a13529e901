// reduce(op, x, out, axis, indices?) and reduceMaxBackward(dy, indices, dx, axis).
// out keeps the reduced axis with size 1; it has x's dtype, or f32 for a bf16 x's sum or mean.
#include "args.h"
#include "reduce.h"
#include "register.h"

namespace cf::addon {
namespace {

struct Split {
  int64_t outer = 1, n = 1, inner = 1;
};

Split split_at(const TensorArg& x, int axis) {
  Split s;
  for (int d = 0; d < x.rank(); ++d) {
    if (d < axis) s.outer *= x.shape[d];
    else if (d == axis) s.n = x.shape[d];
    else s.inner *= x.shape[d];
  }
  return s;
}

std::vector<int64_t> reduced_shape(const TensorArg& x, int axis) {
  std::vector<int64_t> s = x.shape;
  if (!s.empty()) s[axis] = 1;
  return s;
}

int axis_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const TensorArg& x) {
  const int r = std::max(1, x.rank());
  int64_t a = integer(info, i, op, "axis", -r, r - 1);
  return static_cast<int>(a < 0 ? a + r : a);
}

Napi::Value reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "reduce";
  const std::string name = string(info, 0, op, "op");
  ReduceOp rop;
  if (name == "sum") rop = ReduceOp::Sum;
  else if (name == "mean") rop = ReduceOp::Mean;
  else if (name == "max") rop = ReduceOp::Max;
  else fail_arg(env, op, "op", "'sum', 'mean' or 'max'", "'" + name + "'");
  TensorArg x = tensor(info, 1, op, "x"), out = tensor(info, 2, op, "out");
  const int axis = axis_arg(info, 3, op, x);
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  if (rop == ReduceOp::Max) expect_same_dtype(env, op, x, "x", out, "out");
  else expect_same_or_wider(env, op, x, "x", out, "out");
  same_device(env, op, x, "x", out, "out");
  expect_shape(env, op, out, "out", reduced_shape(x, axis));
  no_overlap(env, op, out, x, "x");
  const Split sp = split_at(x, axis);
  if (rop == ReduceOp::Max && sp.n == 0) fail(env, std::string(op) + ": max over an empty axis of " + x.shape_str());
  int32_t* idx = nullptr;
  if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull()) {
    if (rop != ReduceOp::Max) fail(env, std::string(op) + ": indices are only written by 'max'");
    TensorArg ind = tensor(info, 4, op, "indices");
    expect_dtype(env, op, ind, "indices", {DType::I32});
    same_device(env, op, ind, "indices", out, "out");
    expect_shape(env, op, ind, "indices", out.shape);
    no_overlap(env, op, ind, x, "x");
    no_overlap(env, op, ind, out, "out");
    idx = ind.as<int32_t>();
  }
  if (sp.n > 2147483647) fail(env, std::string(op) + ": axis of " + std::to_string(sp.n) + " elements is too long (at most 2^31 - 1)");
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), reduce, rop, x.dtype, out.dtype, x.data(), out.data(), idx, sp.outer, sp.n, sp.inner, s);
  return env.Undefined();
}

Napi::Value reduce_max_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "reduceMaxBackward";
  TensorArg dy = tensor(info, 0, op, "dy"), ind = tensor(info, 1, op, "indices"), dx = tensor(info, 2, op, "dx");
  const int axis = axis_arg(info, 3, op, dx);
  expect_dtype(env, op, dx, "dx", {DType::F32, DType::BF16});
  expect_same_dtype(env, op, dy, "dy", dx, "dx");
  expect_dtype(env, op, ind, "indices", {DType::I32});
  same_device(env, op, dy, "dy", dx, "dx");
  same_device(env, op, ind, "indices", dx, "dx");
  expect_shape(env, op, dy, "dy", reduced_shape(dx, axis));
  expect_shape(env, op, ind, "indices", dy.shape);
  no_overlap(env, op, dx, dy, "dy");
  no_overlap(env, op, dx, ind, "indices");
  const Split sp = split_at(dx, axis);
  Stream s = prepare_device(env, dx.device(), op);
  CF_BACKEND_CALL(dx.device(), reduce_max_backward, dx.dtype, dy.data(), ind.as<int32_t>(), dx.data(), sp.outer, sp.n, sp.inner, s);
  return env.Undefined();
}

}  // namespace

void register_reduce(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "reduce", reduce);
  CF_EXPORT(exports, "reduceMaxBackward", reduce_max_backward);
}

}  // namespace cf::addon
