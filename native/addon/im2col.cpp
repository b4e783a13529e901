// Unfolding for dense convolution, NHWC (see im2col.h):
//   im2col(x, cols, kernelSize, stride, padH, padW)
//   col2im(dcols, dx, kernelSize, stride, padH, padW)
// x and dx [N, H, W, C]; cols and dcols [N * Ho * Wo, C * K * K]. dx is overwritten.
#include "args.h"
#include "im2col.h"
#include "register.h"

namespace cf::addon {
namespace {

constexpr int kMaxKernel = 31;
constexpr int kMaxStride = 8;

// Geometry of the image `img` [N, H, W, C] under the attributes at info[i..i+3].
Im2colGeom geometry(const Napi::CallbackInfo& info, size_t i, const char* op, const TensorArg& img, const char* name) {
  Napi::Env env = info.Env();
  expect_rank(env, op, img, name, 4, 4);
  Im2colGeom g;
  g.k = static_cast<int>(integer(info, i, op, "kernelSize", 1, kMaxKernel));
  g.stride = static_cast<int>(integer(info, i + 1, op, "stride", 1, kMaxStride));
  // Padding of K or more would only add output pixels that see nothing but padding.
  g.pad_h = static_cast<int>(integer(info, i + 2, op, "padH", 0, g.k - 1));
  g.pad_w = static_cast<int>(integer(info, i + 3, op, "padW", 0, g.k - 1));
  g.n = img.dim(0);
  g.h = img.dim(1);
  g.w = img.dim(2);
  g.c = img.dim(3);
  if (g.h + 2 * g.pad_h < g.k || g.w + 2 * g.pad_w < g.k)
    fail_arg(env, op, (std::string(name) + ".shape").c_str(),
             "H + 2 padH and W + 2 padW of at least the kernel size " + std::to_string(g.k), img.shape_str());
  g.oh = im2col_out_size(g.h, g.k, g.stride, g.pad_h);
  g.ow = im2col_out_size(g.w, g.k, g.stride, g.pad_w);
  return g;
}

std::vector<int64_t> cols_shape(const Im2colGeom& g) { return {g.n * g.oh * g.ow, g.c * g.k * g.k}; }

Napi::Value im2col(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "im2col";
  check_arg_count(info, 6, op);
  TensorArg x = tensor(info, 0, op, "x"), cols = tensor(info, 1, op, "cols");
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  const Im2colGeom g = geometry(info, 2, op, x, "x");
  expect_same_dtype(env, op, x, "x", cols, "cols");
  same_device(env, op, x, "x", cols, "cols");
  expect_shape(env, op, cols, "cols", cols_shape(g));
  no_overlap(env, op, cols, x, "x");
  Stream s = prepare_device(env, x.device(), op);
  CF_BACKEND_CALL(x.device(), im2col, x.dtype, g, x.data(), cols.data(), s);
  return env.Undefined();
}

Napi::Value col2im(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "col2im";
  check_arg_count(info, 6, op);
  TensorArg dcols = tensor(info, 0, op, "dcols"), dx = tensor(info, 1, op, "dx");
  expect_dtype(env, op, dx, "dx", {DType::F32, DType::BF16});
  const Im2colGeom g = geometry(info, 2, op, dx, "dx");
  expect_same_dtype(env, op, dx, "dx", dcols, "dcols");
  same_device(env, op, dx, "dx", dcols, "dcols");
  expect_shape(env, op, dcols, "dcols", cols_shape(g));
  no_overlap(env, op, dx, dcols, "dcols");
  Stream s = prepare_device(env, dx.device(), op);
  CF_BACKEND_CALL(dx.device(), col2im, dx.dtype, g, dcols.data(), dx.data(), s);
  return env.Undefined();
}

}  // namespace

void register_im2col(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "im2col", im2col);
  CF_EXPORT(exports, "col2im", col2im);
}

}  // namespace cf::addon
