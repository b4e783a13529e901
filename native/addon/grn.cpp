// GRN's memory passes over [N, P, C] activations (see grn.h):
//   sampleChannelDot(a, b | null, out, gelu, aSums | null, xBias | null)            out, aSums [N, C] f32
//   sampleChannelAffine(a, fa, b | null, fb | null, beta | null, y, gelu, xBias | null, ySums | null)
// a, b, y [N, P, C] f32 or bf16 of one dtype; fa, fb, ySums [N, C] f32; beta [C] or [N, C] (one
// shift per sample) and xBias [C] (added to the normalized operand x, b or a when b is null)
// with a's dtype or f32 beside bf16 a, one dtype when both are given. b and fb come together or
// not at all; with gelu (the GELU forms), beta only without b. Outputs must not overlap inputs.
#include "args.h"
#include "grn.h"
#include "register.h"
#include "rows.h"

namespace cf::addon {
namespace {

constexpr int64_t kMaxSamples = 65535;  // one CUDA grid row per sample

void* data_or_null(const std::optional<TensorArg>& t) { return t ? t->data() : nullptr; }

void expect_samples(Napi::Env env, const char* op, const TensorArg& a) {
  expect_dtype(env, op, a, "a", {DType::F32, DType::BF16});
  expect_rank(env, op, a, "a", 3, 3);
  if (a.dim(0) > kMaxSamples) fail_arg(env, op, "a.shape", "at most " + std::to_string(kMaxSamples) + " samples", a.shape_str());
}

void expect_like_a(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const TensorArg& a) {
  expect_same_dtype(env, op, a, "a", t, arg);
  same_device(env, op, a, "a", t, arg);
  expect_shape(env, op, t, arg, a.shape);
}

void expect_factors(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const TensorArg& a) {
  expect_dtype(env, op, t, arg, {DType::F32});
  same_device(env, op, a, "a", t, arg);
  expect_shape(env, op, t, arg, {a.dim(0), a.dim(2)});
}

// A parameter beside a: its dtype or f32 beside bf16 a, on a's device.
void expect_param(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const TensorArg& a) {
  expect_same_or_wider(env, op, a, "a", t, arg);
  same_device(env, op, a, "a", t, arg);
}

// The input bias: [C], a parameter beside a.
void expect_x_bias(Napi::Env env, const char* op, const std::optional<TensorArg>& x_bias, const TensorArg& a) {
  if (!x_bias) return;
  expect_param(env, op, *x_bias, "xBias", a);
  expect_shape(env, op, *x_bias, "xBias", {a.dim(2)});
}

Napi::Value dot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "sampleChannelDot";
  check_arg_count(info, 6, op);
  TensorArg a = tensor(info, 0, op, "a");
  std::optional<TensorArg> b = optional_tensor(info, 1, op, "b");
  TensorArg out = tensor(info, 2, op, "out");
  const bool gelu = boolean(info, 3, op, "gelu");
  std::optional<TensorArg> a_sums = optional_tensor(info, 4, op, "aSums"), x_bias = optional_tensor(info, 5, op, "xBias");
  expect_samples(env, op, a);
  if (b) expect_like_a(env, op, *b, "b", a);
  expect_x_bias(env, op, x_bias, a);
  expect_factors(env, op, out, "out", a);
  no_overlap(env, op, out, a, "a");
  if (b) no_overlap(env, op, out, *b, "b");
  if (a_sums) {
    expect_factors(env, op, *a_sums, "aSums", a);
    no_overlap(env, op, *a_sums, "aSums", a, "a");
    if (b) no_overlap(env, op, *a_sums, "aSums", *b, "b");
    no_overlap(env, op, out, *a_sums, "aSums");
  }
  Stream s = prepare_device(env, a.device(), op);
  CF_BACKEND_CALL(a.device(), sample_channel_dot, a.dtype, x_bias ? x_bias->dtype : a.dtype, a.data(), data_or_null(b), data_or_null(x_bias),
                  out.as<float>(), a_sums ? a_sums->as<float>() : nullptr, a.dim(0), a.dim(1), a.dim(2), gelu, s);
  return env.Undefined();
}

Napi::Value affine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "sampleChannelAffine";
  check_arg_count(info, 9, op);
  TensorArg a = tensor(info, 0, op, "a"), fa = tensor(info, 1, op, "fa");
  std::optional<TensorArg> b = optional_tensor(info, 2, op, "b"), fb = optional_tensor(info, 3, op, "fb"), beta = optional_tensor(info, 4, op, "beta");
  TensorArg y = tensor(info, 5, op, "y");
  const bool gelu = boolean(info, 6, op, "gelu");
  std::optional<TensorArg> x_bias = optional_tensor(info, 7, op, "xBias"), y_sums = optional_tensor(info, 8, op, "ySums");
  expect_samples(env, op, a);
  expect_factors(env, op, fa, "fa", a);
  if (b.has_value() != fb.has_value()) fail_arg(env, op, "fb", b ? "a tensor (b is given)" : "null (b is null)", fb ? fb->shape_str() : "null");
  if (b) {
    expect_like_a(env, op, *b, "b", a);
    expect_factors(env, op, *fb, "fb", a);
  }
  if (gelu && b && beta) fail_arg(env, op, "beta", "null (the GELU form's gradient, b given, has no shift)", beta->shape_str());
  if (beta) {
    expect_param(env, op, *beta, "beta", a);
    const std::vector<int64_t> per_channel{a.dim(2)}, per_sample{a.dim(0), a.dim(2)};
    if (beta->shape != per_channel && beta->shape != per_sample)
      fail_arg(env, op, "beta", "shape " + shape_str(per_channel) + " or " + shape_str(per_sample), beta->shape_str());
  }
  expect_x_bias(env, op, x_bias, a);
  if (beta && x_bias) expect_same_dtype(env, op, *beta, "beta", *x_bias, "xBias");
  if (y_sums) expect_factors(env, op, *y_sums, "ySums", a);
  expect_like_a(env, op, y, "y", a);
  no_overlap(env, op, y, a, "a");
  no_overlap(env, op, y, fa, "fa");
  if (b) no_overlap(env, op, y, *b, "b");
  if (fb) no_overlap(env, op, y, *fb, "fb");
  if (beta) no_overlap(env, op, y, *beta, "beta");
  if (x_bias) no_overlap(env, op, y, *x_bias, "xBias");
  if (y_sums) {
    no_overlap(env, op, y, *y_sums, "ySums");
    const auto apart = [&](const std::optional<TensorArg>& in, const char* name) {
      if (in) no_overlap(env, op, *y_sums, "ySums", *in, name);
    };
    apart(a, "a");
    apart(fa, "fa");
    apart(b, "b");
    apart(fb, "fb");
    apart(beta, "beta");
    apart(x_bias, "xBias");
  }
  const DType param_dtype = beta ? beta->dtype : x_bias ? x_bias->dtype : a.dtype;
  Stream s = prepare_device(env, a.device(), op);
  CF_BACKEND_CALL(a.device(), sample_channel_affine, a.dtype, param_dtype, a.data(), fa.as<float>(), data_or_null(b), fb ? fb->as<float>() : nullptr,
                  data_or_null(beta), beta && beta->rank() == 2, data_or_null(x_bias), y.data(), y_sums ? y_sums->as<float>() : nullptr,
                  a.dim(0), a.dim(1), a.dim(2), gelu, s);
  return env.Undefined();
}

}  // namespace

void register_grn(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "sampleChannelDot", dot);
  CF_EXPORT(exports, "sampleChannelAffine", affine);
}

}  // namespace cf::addon
