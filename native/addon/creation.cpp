// fill, arange, random and cast: argument checks and dispatch.
#include <cmath>

#include "args.h"
#include "creation.h"
#include "register.h"

namespace cf::addon {
namespace {

Napi::Value fill(const Napi::CallbackInfo& info) {
  const char* op = "fill";
  TensorArg out = tensor(info, 0, op, "out");
  const double v = number(info, 1, op, "value");
  if (out.dtype == DType::I32 && !std::isfinite(v)) fail_arg(info.Env(), op, "value", "a finite number for an i32 tensor", describe(info[1]));
  Stream s = prepare_device(info.Env(), out.device(), op);
  CF_BACKEND_CALL(out.device(), fill, out.dtype, out.data(), out.numel, v, s);
  return info.Env().Undefined();
}

Napi::Value arange(const Napi::CallbackInfo& info) {
  const char* op = "arange";
  TensorArg out = tensor(info, 0, op, "out");
  const double start = finite_number(info, 1, op, "start"), step = finite_number(info, 2, op, "step");
  Stream s = prepare_device(info.Env(), out.device(), op);
  CF_BACKEND_CALL(out.device(), arange, out.dtype, out.data(), out.numel, start, step, s);
  return info.Env().Undefined();
}

// random(out, kind: 'uniform' | 'normal', seed, offset, a, b)
Napi::Value random(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "random";
  TensorArg out = tensor(info, 0, op, "out");
  expect_dtype(env, op, out, "out", {DType::F32, DType::BF16});
  const std::string kind = string(info, 1, op, "kind");
  if (kind != "uniform" && kind != "normal") fail_arg(env, op, "kind", "'uniform' or 'normal'", "'" + kind + "'");
  const int64_t seed = integer(info, 2, op, "seed", 0, 9007199254740991LL);
  const int64_t offset = integer(info, 3, op, "offset", 0, 9007199254740991LL);
  const double a = finite_number(info, 4, op, "a"), b = finite_number(info, 5, op, "b");
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), random, out.dtype, out.data(), out.numel, kind == "uniform" ? RandomKind::Uniform : RandomKind::Normal,
                  static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), static_cast<float>(a), static_cast<float>(b), s);
  return env.Undefined();
}

Napi::Value cast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "cast";
  TensorArg x = tensor(info, 0, op, "x"), out = tensor(info, 1, op, "out");
  same_device(env, op, x, "x", out, "out");
  if (x.numel != out.numel)
    fail(env, std::string(op) + ": expected x and out with the same number of elements, got " + x.shape_str() + " and " +
                  out.shape_str());
  no_overlap(env, op, out, x, "x");
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), cast, x.dtype, x.data(), out.dtype, out.data(), out.numel, s);
  return env.Undefined();
}

}  // namespace

void register_creation(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "fill", fill);
  CF_EXPORT(exports, "arange", arange);
  CF_EXPORT(exports, "random", random);
  CF_EXPORT(exports, "cast", cast);
}

}  // namespace cf::addon
