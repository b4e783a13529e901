// Depthwise convolution, NHWC (see dwconv.h):
//   dwconvForward(x, w, bias | null, y, stride, padH, padW, dilation)
//   dwconvBackwardInput(dy, w, dx, stride, padH, padW, dilation, accumulate)   accumulate: dx += the gradient
//   dwconvBackwardWeight(x | null, dy, dw | null, db | null, kernelSize, stride, padH, padW, dilation)
// x [N, H, W, C], w and dw [C, K, K] or [C, 1, K, K], bias and db [C], y and dy [N, Ho, Wo, C].
// x may be null in the weight gradient only when dw is (the bias gradient needs dy alone).
#include "args.h"
#include "dwconv.h"
#include "register.h"

namespace cf::addon {
namespace {

struct Attrs {
  int stride = 1, pad_h = 0, pad_w = 0, dil = 1;
};

bool present(const Napi::CallbackInfo& info, size_t i) { return i < info.Length() && !info[i].IsUndefined() && !info[i].IsNull(); }

// Kernel size from a weight of shape [C, K, K] or [C, 1, K, K]: square, odd, at most 31.
int kernel_size(Napi::Env env, const char* op, const TensorArg& w, const char* arg) {
  const bool shape_ok = (w.rank() == 3 || (w.rank() == 4 && w.dim(1) == 1)) && w.dim(-1) == w.dim(-2);
  if (!shape_ok) fail_arg(env, op, (std::string(arg) + ".shape").c_str(), "[C, K, K] or [C, 1, K, K]", w.shape_str());
  const int64_t k = w.dim(-1);
  if (k < 1 || k > kDwMaxKernel || k % 2 == 0)
    fail_arg(env, op, (std::string(arg) + ".shape").c_str(), "an odd kernel size K in [1, " + std::to_string(kDwMaxKernel) + "]",
             w.shape_str());
  return static_cast<int>(k);
}

Attrs attrs(const Napi::CallbackInfo& info, size_t i, const char* op, int k) {
  Attrs a;
  a.stride = static_cast<int>(integer(info, i, op, "stride", 1, 2));
  a.dil = static_cast<int>(integer(info, i + 3, op, "dilation", 1, kDwMaxDilation));
  // Padding past d (K - 1) would only add output pixels that see nothing but padding.
  const int64_t max_pad = static_cast<int64_t>(a.dil) * (k - 1);
  a.pad_h = static_cast<int>(integer(info, i + 1, op, "padH", 0, max_pad));
  a.pad_w = static_cast<int>(integer(info, i + 2, op, "padW", 0, max_pad));
  return a;
}

// Geometry of x [N, H, W, C] under the attributes; the dilated kernel must fit the padded input.
DwGeom geometry(Napi::Env env, const char* op, const TensorArg& x, const char* xname, int k, const Attrs& a) {
  expect_rank(env, op, x, xname, 4, 4);
  DwGeom g;
  g.n = x.dim(0);
  g.h = x.dim(1);
  g.w = x.dim(2);
  g.c = x.dim(3);
  g.k = k;
  g.stride = a.stride;
  g.dil = a.dil;
  g.pad_h = a.pad_h;
  g.pad_w = a.pad_w;
  const int64_t extent = static_cast<int64_t>(a.dil) * (k - 1) + 1;
  if (g.h + 2 * a.pad_h < extent || g.w + 2 * a.pad_w < extent)
    fail_arg(env, op, (std::string(xname) + ".shape").c_str(),
             "H + 2 padH and W + 2 padW of at least the dilated kernel extent " + std::to_string(extent) + " (padding " +
                 std::to_string(a.pad_h) + ", " + std::to_string(a.pad_w) + ")",
             x.shape_str());
  g.oh = dw_out_size(g.h, k, a.stride, a.dil, a.pad_h);
  g.ow = dw_out_size(g.w, k, a.stride, a.dil, a.pad_w);
  return g;
}

void expect_weight_channels(Napi::Env env, const char* op, const TensorArg& w, const char* arg, int64_t c) {
  if (w.dim(0) != c)
    fail_arg(env, op, (std::string(arg) + ".shape").c_str(), "one filter per channel (" + std::to_string(c) + ")", w.shape_str());
}

Napi::Value forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dwconvForward";
  check_arg_count(info, 8, op);
  TensorArg x = tensor(info, 0, op, "x"), w = tensor(info, 1, op, "w"), y = tensor(info, 3, op, "y");
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  const int k = kernel_size(env, op, w, "w");
  const Attrs a = attrs(info, 4, op, k);
  const DwGeom g = geometry(env, op, x, "x", k, a);
  expect_weight_channels(env, op, w, "w", g.c);
  expect_same_dtype(env, op, x, "x", w, "w");
  expect_same_dtype(env, op, x, "x", y, "y");
  same_device(env, op, x, "x", w, "w");
  same_device(env, op, x, "x", y, "y");
  expect_shape(env, op, y, "y", {g.n, g.oh, g.ow, g.c});
  no_overlap(env, op, y, x, "x");
  no_overlap(env, op, y, w, "w");
  const void* bias = nullptr;
  if (present(info, 2)) {
    TensorArg b = tensor(info, 2, op, "bias");
    expect_same_dtype(env, op, x, "x", b, "bias");
    same_device(env, op, x, "x", b, "bias");
    expect_shape(env, op, b, "bias", {g.c});
    no_overlap(env, op, y, b, "bias");
    bias = b.data();
  }
  Stream s = prepare_device(env, y.device(), op);
  CF_BACKEND_CALL(y.device(), dwconv_forward, x.dtype, g, x.data(), w.data(), bias, y.data(), s);
  return env.Undefined();
}

Napi::Value backward_input(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dwconvBackwardInput";
  check_arg_count(info, 8, op);
  TensorArg dy = tensor(info, 0, op, "dy"), w = tensor(info, 1, op, "w"), dx = tensor(info, 2, op, "dx");
  const bool accumulate = boolean(info, 7, op, "accumulate");
  expect_dtype(env, op, dx, "dx", {DType::F32, DType::BF16});
  const int k = kernel_size(env, op, w, "w");
  const Attrs a = attrs(info, 3, op, k);
  const DwGeom g = geometry(env, op, dx, "dx", k, a);
  expect_weight_channels(env, op, w, "w", g.c);
  expect_same_dtype(env, op, dx, "dx", w, "w");
  expect_same_dtype(env, op, dx, "dx", dy, "dy");
  same_device(env, op, dx, "dx", w, "w");
  same_device(env, op, dx, "dx", dy, "dy");
  expect_shape(env, op, dy, "dy", {g.n, g.oh, g.ow, g.c});
  no_overlap(env, op, dx, dy, "dy");
  no_overlap(env, op, dx, w, "w");
  Stream s = prepare_device(env, dx.device(), op);
  CF_BACKEND_CALL(dx.device(), dwconv_backward_input, dx.dtype, g, dy.data(), w.data(), dx.data(), accumulate, s);
  return env.Undefined();
}

Napi::Value backward_weight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "dwconvBackwardWeight";
  check_arg_count(info, 9, op);
  TensorArg dy = tensor(info, 1, op, "dy");
  expect_dtype(env, op, dy, "dy", {DType::F32, DType::BF16});
  expect_rank(env, op, dy, "dy", 4, 4);
  const int64_t kv = integer(info, 4, op, "kernelSize", 1, kDwMaxKernel);
  if (kv % 2 == 0) fail_arg(env, op, "kernelSize", "an odd integer in [1, " + std::to_string(kDwMaxKernel) + "]", std::to_string(kv));
  const int k = static_cast<int>(kv);
  const Attrs a = attrs(info, 5, op, k);
  const bool has_x = present(info, 0), has_dw = present(info, 2), has_db = present(info, 3);
  if (!has_dw && !has_db) fail_arg(env, op, "dw and db", "at least one output tensor", "null for both");
  if (has_dw && !has_x) fail_arg(env, op, "x", "a Tensor (dw needs the input)", "null");
  DwGeom g;
  TensorArg x;
  if (has_x) {
    x = tensor(info, 0, op, "x");
    g = geometry(env, op, x, "x", k, a);
    expect_same_dtype(env, op, dy, "dy", x, "x");
    same_device(env, op, dy, "dy", x, "x");
    expect_shape(env, op, dy, "dy", {g.n, g.oh, g.ow, g.c});
  } else {
    // Only the bias gradient: the output grid is dy's own.
    g.n = dy.dim(0);
    g.oh = dy.dim(1);
    g.ow = dy.dim(2);
    g.c = dy.dim(3);
    g.k = k;
  }
  void* dw = nullptr;
  void* db = nullptr;
  TensorArg dwt, dbt;
  if (has_dw) {
    dwt = tensor(info, 2, op, "dw");
    if (kernel_size(env, op, dwt, "dw") != k)
      fail_arg(env, op, "dw.shape", "a kernel of size kernelSize " + std::to_string(k), dwt.shape_str());
    expect_weight_channels(env, op, dwt, "dw", g.c);
    expect_same_dtype(env, op, dy, "dy", dwt, "dw");
    same_device(env, op, dy, "dy", dwt, "dw");
    no_overlap(env, op, dwt, dy, "dy");
    no_overlap(env, op, dwt, x, "x");
    dw = dwt.data();
  }
  if (has_db) {
    dbt = tensor(info, 3, op, "db");
    expect_shape(env, op, dbt, "db", {g.c});
    expect_same_dtype(env, op, dy, "dy", dbt, "db");
    same_device(env, op, dy, "dy", dbt, "db");
    no_overlap(env, op, dbt, dy, "dy");
    if (has_x) no_overlap(env, op, dbt, x, "x");
    if (has_dw) no_overlap(env, op, dbt, dwt, "dw");
    db = dbt.data();
  }
  Stream s = prepare_device(env, dy.device(), op);
  CF_BACKEND_CALL(dy.device(), dwconv_backward_weight, dy.dtype, g, has_x ? x.data() : nullptr, dy.data(), dw, db, s);
  return env.Undefined();
}

}  // namespace

void register_dwconv(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "dwconvForward", forward);
  CF_EXPORT(exports, "dwconvBackwardInput", backward_input);
  CF_EXPORT(exports, "dwconvBackwardWeight", backward_weight);
}

}  // namespace cf::addon
