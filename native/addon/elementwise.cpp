// Unary and broadcasting binary ops: argument checks, the broadcast plan, dispatch.
#include <cmath>

#include "args.h"
#include "elementwise.h"
#include "register.h"

namespace cf::addon {
namespace {

const char* const kUnaryNames[] = {"neg",  "exp",  "log",     "sqrt",     "rsqrt",     "abs",    "square", "reciprocal", "sigmoid",
                                   "tanh", "relu", "geluErf", "geluTanh", "quickGelu", "affine", "pow",    "clamp"};
const char* const kBinaryNames[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
static_assert(sizeof(kUnaryNames) / sizeof(kUnaryNames[0]) == static_cast<size_t>(UnaryOp::Count), "unary names");
static_assert(sizeof(kBinaryNames) / sizeof(kBinaryNames[0]) == static_cast<size_t>(BinaryOp::Count), "binary names");

template <typename E, size_t N>
E parse_enum(const Napi::CallbackInfo& info, size_t i, const char* op, const char* const (&names)[N]) {
  const std::string s = string(info, i, op, "op");
  for (size_t k = 0; k < N; ++k)
    if (s == names[k]) return static_cast<E>(k);
  std::string all;
  for (size_t k = 0; k < N; ++k) all += (k ? ", " : "") + std::string(names[k]);
  fail_arg(info.Env(), op, "op", "one of " + all, "'" + s + "'");
}

// Broadcast shape of a and b, or an error naming both shapes.
std::vector<int64_t> broadcast_shape(Napi::Env env, const char* op, const TensorArg& a, const TensorArg& b) {
  const int r = std::max(a.rank(), b.rank());
  std::vector<int64_t> out(r);
  for (int d = 0; d < r; ++d) {
    const int da = d - (r - a.rank()), db = d - (r - b.rank());
    const int64_t sa = da >= 0 ? a.shape[da] : 1, sb = db >= 0 ? b.shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      fail(env, std::string(op) + ": shapes " + a.shape_str() + " and " + b.shape_str() + " do not broadcast (dim " + std::to_string(d) +
                    ": " + std::to_string(sa) + " vs " + std::to_string(sb) + ")");
    out[d] = sa == 1 ? sb : sa;
  }
  return out;
}

std::vector<int64_t> broadcast_strides(const TensorArg& t, const std::vector<int64_t>& out) {
  const int r = static_cast<int>(out.size());
  std::vector<int64_t> st(r, 0);
  int64_t s = 1;
  for (int d = t.rank() - 1; d >= 0; --d) {
    const int od = d + (r - t.rank());
    st[od] = t.shape[d] == 1 ? 0 : s;
    s *= t.shape[d];
  }
  return st;
}

// Drops size-1 dims and merges neighbours that are contiguous for both inputs.
BroadcastPlan make_plan(const std::vector<int64_t>& shape, const std::vector<int64_t>& as, const std::vector<int64_t>& bs) {
  BroadcastPlan p;
  p.numel = 1;
  for (int64_t s : shape) p.numel *= s;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (p.rank > 0) {
      const int k = p.rank - 1;
      const bool merge_a = p.a_stride[k] == as[d] * shape[d];
      const bool merge_b = p.b_stride[k] == bs[d] * shape[d];
      if (merge_a && merge_b) {
        p.shape[k] *= shape[d];
        p.a_stride[k] = as[d];
        p.b_stride[k] = bs[d];
        continue;
      }
    }
    p.shape[p.rank] = shape[d];
    p.a_stride[p.rank] = as[d];
    p.b_stride[p.rank] = bs[d];
    ++p.rank;
  }
  return p;
}

BroadcastPlan checked_plan(Napi::Env env, const char* op, const TensorArg& a, const TensorArg& b, const TensorArg& out) {
  const std::vector<int64_t> shape = broadcast_shape(env, op, a, b);
  expect_shape(env, op, out, "out", shape);
  return make_plan(shape, broadcast_strides(a, shape), broadcast_strides(b, shape));
}

void float_operand(Napi::Env env, const char* op, const TensorArg& t, const char* name, const TensorArg& ref) {
  expect_dtype(env, op, t, name, {DType::F32, DType::BF16});
  expect_same_dtype(env, op, t, name, ref, "out");
  same_device(env, op, t, name, ref, "out");
}

// unary(op, x, out, p0, p1)
Napi::Value unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "unary";
  const UnaryOp u = parse_enum<UnaryOp>(info, 0, op, kUnaryNames);
  TensorArg x = tensor(info, 1, op, "x"), out = tensor(info, 2, op, "out");
  const float p0 = static_cast<float>(number(info, 3, op, "p0")), p1 = static_cast<float>(number(info, 4, op, "p1"));
  if (u == UnaryOp::Affine || u == UnaryOp::Pow || u == UnaryOp::Clamp) {
    if (std::isnan(p0)) fail_arg(env, op, "p0", "a number that is not NaN", "NaN");
    if (u != UnaryOp::Pow && std::isnan(p1)) fail_arg(env, op, "p1", "a number that is not NaN", "NaN");
  }
  float_operand(env, op, x, "x", out);
  expect_shape(env, op, out, "out", x.shape);
  no_partial_overlap(env, op, out, x, "x");
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), unary, u, out.dtype, x.data(), out.data(), out.numel, p0, p1, s);
  return env.Undefined();
}

// unaryBackward(op, x, dy, dx, p0, p1)
Napi::Value unary_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "unaryBackward";
  const UnaryOp u = parse_enum<UnaryOp>(info, 0, op, kUnaryNames);
  TensorArg x = tensor(info, 1, op, "x"), dy = tensor(info, 2, op, "dy"), dx = tensor(info, 3, op, "dx");
  const float p0 = static_cast<float>(number(info, 4, op, "p0")), p1 = static_cast<float>(number(info, 5, op, "p1"));
  float_operand(env, op, x, "x", dx);
  float_operand(env, op, dy, "dy", dx);
  expect_shape(env, op, dy, "dy", x.shape);
  expect_shape(env, op, dx, "dx", x.shape);
  no_partial_overlap(env, op, dx, x, "x");
  no_partial_overlap(env, op, dx, dy, "dy");
  Stream s = prepare_device(env, dx.device(), op);
  CF_BACKEND_CALL(dx.device(), unary_backward, u, dx.dtype, x.data(), dy.data(), dx.data(), dx.numel, p0, p1, s);
  return env.Undefined();
}

// An input may be the output itself (in-place) only if it is not broadcast.
void alias_ok(Napi::Env env, const char* op, const TensorArg& out, const TensorArg& in, const char* name) {
  no_partial_overlap(env, op, out, in, name);
  if (in.data() == out.data() && in.storage == out.storage && in.shape != out.shape)
    fail(env, std::string(op) + ": out may alias " + name + " only when " + name + " is not broadcast");
}

// The operands' dtypes (each f32 or bf16, on out's device); `result` (out, or a backward's
// dy) must have the promoted dtype: f32 when either operand is f32.
BinaryDTypes binary_dtypes(Napi::Env env, const char* op, const TensorArg& a, const TensorArg& b, const TensorArg& result,
                           const char* result_name) {
  for (const auto& [t, name] : {std::pair<const TensorArg&, const char*>{a, "a"}, {b, "b"}}) {
    expect_dtype(env, op, t, name, {DType::F32, DType::BF16});
    same_device(env, op, t, name, result, result_name);
  }
  const BinaryDTypes dt{a.dtype, b.dtype};
  if (result.dtype != dt.out())
    fail(env, std::string(op) + ": expected dtype " + dtype_name(dt.out()) + " for " + result_name + " (a is " + dtype_name(a.dtype) +
                  ", b " + dtype_name(b.dtype) + "), got " + dtype_name(result.dtype));
  return dt;
}

// binary(op, a, b, out)
Napi::Value binary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "binary";
  const BinaryOp bop = parse_enum<BinaryOp>(info, 0, op, kBinaryNames);
  TensorArg a = tensor(info, 1, op, "a"), b = tensor(info, 2, op, "b"), out = tensor(info, 3, op, "out");
  const BinaryDTypes dt = binary_dtypes(env, op, a, b, out, "out");
  const BroadcastPlan plan = checked_plan(env, op, a, b, out);
  alias_ok(env, op, out, a, "a");
  alias_ok(env, op, out, b, "b");
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), binary, bop, dt, a.data(), b.data(), out.data(), plan, s);
  return env.Undefined();
}

// binaryBackward(op, side, a, b, dy, out): out has the broadcast shape.
Napi::Value binary_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "binaryBackward";
  const BinaryOp bop = parse_enum<BinaryOp>(info, 0, op, kBinaryNames);
  const int side = static_cast<int>(integer(info, 1, op, "side", 0, 1));
  TensorArg a = tensor(info, 2, op, "a"), b = tensor(info, 3, op, "b"), dy = tensor(info, 4, op, "dy"), out = tensor(info, 5, op, "out");
  const BinaryDTypes dt = binary_dtypes(env, op, a, b, dy, "dy");
  float_operand(env, op, dy, "dy", out);
  const BroadcastPlan plan = checked_plan(env, op, a, b, out);
  expect_shape(env, op, dy, "dy", out.shape);
  no_overlap(env, op, out, a, "a");
  no_overlap(env, op, out, b, "b");
  no_partial_overlap(env, op, out, dy, "dy");
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), binary_backward, bop, side, dt, a.data(), b.data(), dy.data(), out.data(), plan, s);
  return env.Undefined();
}

}  // namespace

void register_elementwise(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "unary", unary);
  CF_EXPORT(exports, "unaryBackward", unary_backward);
  CF_EXPORT(exports, "binary", binary);
  CF_EXPORT(exports, "binaryBackward", binary_backward);
}

}  // namespace cf::addon
