// BatchNorm over the channel (last) axis of channels-last data (see batchnorm.h):
//   batchNormStats(x, mean, var, rstd, eps)
//   batchNormApply(x, mean, rstd, weight | null, bias | null, residual | null, y)
//                                                             y = residual + the normalized x when
//                                                             a residual is given, in its dtype
//   batchNormSumApply(xs, means, rstds, weights, biases, y)   arrays of 1 to 8 branches; y = the
//                                                             sum of the branches' apply
//                                                             (weights, biases: tensors or nulls)
//   batchNormBackwardReduce(x, dy, mean, rstd, sumDy, sumDyXhat)
//   batchNormSumBackwardReduce(xs, means, rstds, dy, sumDy, sumDyXhats)
//                                                             every branch of a sum at once: sumDy
//                                                             (shared), one sumDyXhat per branch
//   batchNormSumBackwardInput(xs, means, rstds, weights, dy, sumDy, sumDyXhats, dxs, batchStats)
//                                                             dxs: one per branch, or null
//   batchNormBackwardInput(x, dy, mean, rstd, weight | null, sumDy, sumDyXhat, dx, batchStats)
// x, y, dy, dx [..., C] f32 or bf16; weight and bias [C] of one dtype, x's or f32 beside bf16
// x (all of a sum's branches one dtype); residual, and y beside it, and dy of x's shape in x's
// dtype or f32 beside bf16 x; mean, var, rstd, sumDy, sumDyXhat [C] f32. Outputs must not
// overlap inputs.
#include "args.h"
#include "batchnorm.h"
#include "register.h"
#include "rows.h"

namespace cf::addon {
namespace {

void* data_or_null(const std::optional<TensorArg>& t) { return t ? t->data() : nullptr; }

// [C] f32 on x's device.
void expect_channel_stats(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const TensorArg& x, int64_t c) {
  expect_dtype(env, op, t, arg, {DType::F32});
  same_device(env, op, x, "x", t, arg);
  expect_shape(env, op, t, arg, {c});
}

// [C] on x's device, with x's dtype or f32 beside bf16 x.
void expect_channel_param(Napi::Env env, const char* op, const std::optional<TensorArg>& t, const char* arg, const TensorArg& x, int64_t c) {
  if (!t) return;
  expect_same_or_wider(env, op, x, "x", *t, arg);
  same_device(env, op, x, "x", *t, arg);
  expect_shape(env, op, *t, arg, {c});
}

// The parameters' dtype: the given ones' (weight and bias must agree), x's when none is given.
DType param_dtype(Napi::Env env, const char* op, const TensorArg& x, const std::optional<TensorArg>& w, const std::optional<TensorArg>& b) {
  if (w && b) expect_same_dtype(env, op, *w, "weight", *b, "bias");
  return w ? w->dtype : b ? b->dtype : x.dtype;
}

// Like x: same dtype, device and shape.
void expect_like_x(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const TensorArg& x) {
  expect_same_dtype(env, op, x, "x", t, arg);
  same_device(env, op, x, "x", t, arg);
  expect_shape(env, op, t, arg, x.shape);
}

// x's device and shape, x's dtype or f32 beside bf16 x: a residual stream and its gradient.
void expect_stream_like_x(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const TensorArg& x) {
  expect_same_or_wider(env, op, x, "x", t, arg);
  same_device(env, op, x, "x", t, arg);
  expect_shape(env, op, t, arg, x.shape);
}

RowsView channels_last(Napi::Env env, const char* op, const TensorArg& x) {
  expect_dtype(env, op, x, "x", {DType::F32, DType::BF16});
  return rows_of(env, op, x, "x");
}

Napi::Value stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "batchNormStats";
  check_arg_count(info, 5, op);
  TensorArg x = tensor(info, 0, op, "x"), mean = tensor(info, 1, op, "mean"), var = tensor(info, 2, op, "var"), rstd = tensor(info, 3, op, "rstd");
  const float eps = nonnegative_number(info, 4, op, "eps");
  const RowsView rv = channels_last(env, op, x);
  expect_channel_stats(env, op, mean, "mean", x, rv.n);
  expect_channel_stats(env, op, var, "var", x, rv.n);
  expect_channel_stats(env, op, rstd, "rstd", x, rv.n);
  for (const auto& [t, name] : {std::pair{&mean, "mean"}, std::pair{&var, "var"}, std::pair{&rstd, "rstd"}}) no_overlap(env, op, *t, x, "x");
  no_overlap(env, op, var, mean, "mean");
  no_overlap(env, op, rstd, mean, "mean");
  no_overlap(env, op, rstd, var, "var");
  Stream s = prepare_device(env, x.device(), op);
  CF_BACKEND_CALL(x.device(), batchnorm_stats, x.dtype, x.data(), mean.as<float>(), var.as<float>(), rstd.as<float>(), rv.rows, rv.n, eps, s);
  return env.Undefined();
}

// One norm as a single branch (the backward passes no bias: it does not read it).
BatchNormBranches one_branch(const TensorArg& x, const TensorArg& mean, const TensorArg& rstd, const std::optional<TensorArg>& weight,
                             const std::optional<TensorArg>& bias = std::nullopt) {
  BatchNormBranches br{};
  br.count = 1;
  br.x[0] = x.data();
  br.mean[0] = mean.as<float>();
  br.rstd[0] = rstd.as<float>();
  br.weight[0] = data_or_null(weight);
  br.bias[0] = data_or_null(bias);
  return br;
}

Napi::Value apply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "batchNormApply";
  check_arg_count(info, 7, op);
  TensorArg x = tensor(info, 0, op, "x"), mean = tensor(info, 1, op, "mean"), rstd = tensor(info, 2, op, "rstd");
  std::optional<TensorArg> w = optional_tensor(info, 3, op, "weight"), b = optional_tensor(info, 4, op, "bias");
  std::optional<TensorArg> residual = optional_tensor(info, 5, op, "residual");
  TensorArg y = tensor(info, 6, op, "y");
  const RowsView rv = channels_last(env, op, x);
  expect_channel_stats(env, op, mean, "mean", x, rv.n);
  expect_channel_stats(env, op, rstd, "rstd", x, rv.n);
  expect_channel_param(env, op, w, "weight", x, rv.n);
  expect_channel_param(env, op, b, "bias", x, rv.n);
  if (residual) {
    expect_stream_like_x(env, op, *residual, "residual", x);
    expect_same_dtype(env, op, *residual, "residual", y, "y");
    same_device(env, op, x, "x", y, "y");
    expect_shape(env, op, y, "y", x.shape);
    no_overlap(env, op, y, *residual, "residual");
  } else {
    expect_like_x(env, op, y, "y", x);
  }
  no_overlap(env, op, y, x, "x");
  no_overlap(env, op, y, mean, "mean");
  no_overlap(env, op, y, rstd, "rstd");
  if (w) no_overlap(env, op, y, *w, "weight");
  if (b) no_overlap(env, op, y, *b, "bias");
  const DType pd = param_dtype(env, op, x, w, b);
  Stream s = prepare_device(env, x.device(), op);
  CF_BACKEND_CALL(x.device(), batchnorm_apply, x.dtype, pd, y.dtype, one_branch(x, mean, rstd, w, b), data_or_null(residual), y.data(), rv.rows,
                  rv.n, s);
  return env.Undefined();
}

// A sum's branches from the parallel arrays info[0 .. lists): xs, means, rstds and, for lists
// 4 and 5, weights and biases (entries may be null). Checked as the single norm's arguments,
// every x like xs[0]; inputs keeps each tensor and its name for the callers' overlap checks.
struct SumBranches {
  BatchNormBranches br{};
  TensorArg x0;
  RowsView rv;
  DType param_dtype;
  std::vector<std::pair<TensorArg, std::string>> inputs;
};

SumBranches read_branches(const Napi::CallbackInfo& info, const char* op, int lists) {
  Napi::Env env = info.Env();
  const char* names[] = {"xs", "means", "rstds", "weights", "biases"};
  Napi::Array arrays[5];
  for (int l = 0; l < lists; ++l) arrays[l] = array_arg(info, l, op, names[l]);
  const uint32_t count = arrays[0].Length();
  if (count < 1 || count > kMaxBatchNormBranches)
    fail_arg(env, op, "xs", "an array of 1 to " + std::to_string(kMaxBatchNormBranches) + " tensors", "an array of length " + std::to_string(count));
  for (int l = 1; l < lists; ++l)
    if (arrays[l].Length() != count)
      fail_arg(env, op, names[l], "an array of " + std::to_string(count) + " entries (one per branch)", "an array of length " + std::to_string(arrays[l].Length()));
  SumBranches sb;
  sb.x0 = tensor_value(env, arrays[0].Get(0u), op, "xs[0]");
  sb.rv = channels_last(env, op, sb.x0);
  sb.br.count = static_cast<int>(count);
  std::optional<DType> pd;
  for (uint32_t k = 0; k < count; ++k) {
    std::string name[5];
    for (int l = 0; l < lists; ++l) name[l] = std::string(names[l]) + "[" + std::to_string(k) + "]";
    const TensorArg x = tensor_value(env, arrays[0].Get(k), op, name[0].c_str());
    expect_same_dtype(env, op, sb.x0, "xs[0]", x, name[0].c_str());
    same_device(env, op, sb.x0, "xs[0]", x, name[0].c_str());
    expect_shape(env, op, x, name[0].c_str(), sb.x0.shape);
    sb.inputs.emplace_back(x, name[0]);
    TensorArg stats[2];
    for (int l = 1; l < 3; ++l) {
      stats[l - 1] = tensor_value(env, arrays[l].Get(k), op, name[l].c_str());
      expect_channel_stats(env, op, stats[l - 1], name[l].c_str(), sb.x0, sb.rv.n);
      sb.inputs.emplace_back(stats[l - 1], name[l]);
    }
    std::optional<TensorArg> params[2];
    for (int l = 3; l < lists; ++l) {
      const Napi::Value v = arrays[l].Get(k);
      if (v.IsNull() || v.IsUndefined()) continue;
      params[l - 3] = tensor_value(env, v, op, name[l].c_str());
      expect_channel_param(env, op, params[l - 3], name[l].c_str(), sb.x0, sb.rv.n);
      if (pd && params[l - 3]->dtype != *pd)
        fail_arg(env, op, name[l].c_str(), std::string("the dtype of the other branches' weights and biases, ") + dtype_name(*pd),
                 dtype_name(params[l - 3]->dtype));
      pd = params[l - 3]->dtype;
      sb.inputs.emplace_back(*params[l - 3], name[l]);
    }
    sb.br.x[k] = x.data();
    sb.br.mean[k] = stats[0].as<float>();
    sb.br.rstd[k] = stats[1].as<float>();
    sb.br.weight[k] = data_or_null(params[0]);
    sb.br.bias[k] = data_or_null(params[1]);
  }
  sb.param_dtype = pd.value_or(sb.x0.dtype);
  return sb;
}

// out must not overlap any of the branches' tensors.
void no_overlap_branches(Napi::Env env, const char* op, const TensorArg& out, const char* out_name, const SumBranches& sb) {
  for (const auto& [t, name] : sb.inputs) no_overlap(env, op, out, out_name, t, name.c_str());
}

Napi::Value sum_apply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "batchNormSumApply";
  check_arg_count(info, 6, op);
  const SumBranches sb = read_branches(info, op, 5);
  TensorArg y = tensor(info, 5, op, "y");
  expect_like_x(env, op, y, "y", sb.x0);
  no_overlap_branches(env, op, y, "y", sb);
  Stream s = prepare_device(env, sb.x0.device(), op);
  CF_BACKEND_CALL(sb.x0.device(), batchnorm_apply, sb.x0.dtype, sb.param_dtype, sb.x0.dtype, sb.br, nullptr, y.data(), sb.rv.rows, sb.rv.n, s);
  return env.Undefined();
}

// dy, sumDy and sumDyXhats (one [C] f32 per branch) at info[first ..]: the arguments both of a
// sum's backward passes take. sums lists sumDy and the sumDyXhats with their names.
struct SumGradArgs {
  TensorArg dy, sum_dy;
  BatchNormBranchGrads grads{};
  std::vector<std::pair<TensorArg, std::string>> sums;
};

SumGradArgs read_sum_grad_args(const Napi::CallbackInfo& info, const char* op, const SumBranches& sb, size_t first) {
  Napi::Env env = info.Env();
  SumGradArgs g;
  g.dy = tensor(info, first, op, "dy");
  g.sum_dy = tensor(info, first + 1, op, "sumDy");
  expect_like_x(env, op, g.dy, "dy", sb.x0);
  expect_channel_stats(env, op, g.sum_dy, "sumDy", sb.x0, sb.rv.n);
  g.sums.emplace_back(g.sum_dy, "sumDy");
  Napi::Array arr = array_arg(info, first + 2, op, "sumDyXhats");
  if (arr.Length() != static_cast<uint32_t>(sb.br.count))
    fail_arg(env, op, "sumDyXhats", "an array of " + std::to_string(sb.br.count) + " entries (one per branch)", "an array of length " + std::to_string(arr.Length()));
  for (int k = 0; k < sb.br.count; ++k) {
    const std::string name = "sumDyXhats[" + std::to_string(k) + "]";
    TensorArg t = tensor_value(env, arr.Get(static_cast<uint32_t>(k)), op, name.c_str());
    expect_channel_stats(env, op, t, name.c_str(), sb.x0, sb.rv.n);
    g.grads.sum_dy_xhat[k] = t.as<float>();
    g.sums.emplace_back(t, name);
  }
  return g;
}

Napi::Value sum_backward_reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "batchNormSumBackwardReduce";
  check_arg_count(info, 6, op);
  const SumBranches sb = read_branches(info, op, 3);
  const SumGradArgs g = read_sum_grad_args(info, op, sb, 3);
  const auto& outs = g.sums;
  for (size_t o = 0; o < outs.size(); ++o) {
    const char* name = outs[o].second.c_str();
    no_overlap_branches(env, op, outs[o].first, name, sb);
    no_overlap(env, op, outs[o].first, name, g.dy, "dy");
    for (size_t p = 0; p < o; ++p) no_overlap(env, op, outs[o].first, name, outs[p].first, outs[p].second.c_str());
  }
  Stream s = prepare_device(env, sb.x0.device(), op);
  CF_BACKEND_CALL(sb.x0.device(), batchnorm_backward_reduce, sb.x0.dtype, g.dy.dtype, sb.br, g.dy.data(), g.sum_dy.as<float>(), g.grads, sb.rv.rows, sb.rv.n,
                  s);
  return env.Undefined();
}

Napi::Value sum_backward_input(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "batchNormSumBackwardInput";
  check_arg_count(info, 9, op);
  const SumBranches sb = read_branches(info, op, 4);
  SumGradArgs g = read_sum_grad_args(info, op, sb, 4);
  auto ins = g.sums;
  ins.emplace_back(g.dy, "dy");
  Napi::Array dxs = array_arg(info, 7, op, "dxs");
  if (dxs.Length() != static_cast<uint32_t>(sb.br.count))
    fail_arg(env, op, "dxs", "an array of " + std::to_string(sb.br.count) + " entries (one per branch)", "an array of length " + std::to_string(dxs.Length()));
  std::vector<std::pair<TensorArg, std::string>> outs;
  for (int k = 0; k < sb.br.count; ++k) {
    const Napi::Value v = dxs.Get(static_cast<uint32_t>(k));
    if (v.IsNull() || v.IsUndefined()) continue;
    const std::string name = "dxs[" + std::to_string(k) + "]";
    TensorArg dx = tensor_value(env, v, op, name.c_str());
    expect_like_x(env, op, dx, name.c_str(), sb.x0);
    no_overlap_branches(env, op, dx, name.c_str(), sb);
    for (const auto& [t, in_name] : ins) no_overlap(env, op, dx, name.c_str(), t, in_name.c_str());
    for (const auto& [t, out_name] : outs) no_overlap(env, op, dx, name.c_str(), t, out_name.c_str());
    g.grads.dx[k] = dx.data();
    outs.emplace_back(dx, name);
  }
  const bool batch_stats = boolean(info, 8, op, "batchStats");
  Stream s = prepare_device(env, sb.x0.device(), op);
  CF_BACKEND_CALL(sb.x0.device(), batchnorm_backward_input, sb.x0.dtype, sb.param_dtype, g.dy.dtype, sb.br, g.dy.data(), g.sum_dy.as<float>(), g.grads,
                  sb.rv.rows, sb.rv.n, batch_stats, s);
  return env.Undefined();
}

Napi::Value backward_reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "batchNormBackwardReduce";
  check_arg_count(info, 6, op);
  TensorArg x = tensor(info, 0, op, "x"), dy = tensor(info, 1, op, "dy"), mean = tensor(info, 2, op, "mean"), rstd = tensor(info, 3, op, "rstd");
  TensorArg sum_dy = tensor(info, 4, op, "sumDy"), sum_dy_xhat = tensor(info, 5, op, "sumDyXhat");
  const RowsView rv = channels_last(env, op, x);
  expect_stream_like_x(env, op, dy, "dy", x);
  for (const auto& [t, name] : {std::pair{&mean, "mean"}, std::pair{&rstd, "rstd"}, std::pair{&sum_dy, "sumDy"}, std::pair{&sum_dy_xhat, "sumDyXhat"}})
    expect_channel_stats(env, op, *t, name, x, rv.n);
  for (const auto& [t, name] : {std::pair{&sum_dy, "sumDy"}, std::pair{&sum_dy_xhat, "sumDyXhat"}}) {
    no_overlap(env, op, *t, x, "x");
    no_overlap(env, op, *t, dy, "dy");
    no_overlap(env, op, *t, mean, "mean");
    no_overlap(env, op, *t, rstd, "rstd");
  }
  no_overlap(env, op, sum_dy_xhat, sum_dy, "sumDy");
  Stream s = prepare_device(env, x.device(), op);
  const BatchNormBranches br = one_branch(x, mean, rstd, std::nullopt);
  BatchNormBranchGrads grads{};
  grads.sum_dy_xhat[0] = sum_dy_xhat.as<float>();
  CF_BACKEND_CALL(x.device(), batchnorm_backward_reduce, x.dtype, dy.dtype, br, dy.data(), sum_dy.as<float>(), grads, rv.rows, rv.n, s);
  return env.Undefined();
}

Napi::Value backward_input(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "batchNormBackwardInput";
  check_arg_count(info, 9, op);
  TensorArg x = tensor(info, 0, op, "x"), dy = tensor(info, 1, op, "dy"), mean = tensor(info, 2, op, "mean"), rstd = tensor(info, 3, op, "rstd");
  std::optional<TensorArg> w = optional_tensor(info, 4, op, "weight");
  TensorArg sum_dy = tensor(info, 5, op, "sumDy"), sum_dy_xhat = tensor(info, 6, op, "sumDyXhat"), dx = tensor(info, 7, op, "dx");
  const bool batch_stats = boolean(info, 8, op, "batchStats");
  const RowsView rv = channels_last(env, op, x);
  expect_stream_like_x(env, op, dy, "dy", x);
  expect_like_x(env, op, dx, "dx", x);
  for (const auto& [t, name] : {std::pair{&mean, "mean"}, std::pair{&rstd, "rstd"}, std::pair{&sum_dy, "sumDy"}, std::pair{&sum_dy_xhat, "sumDyXhat"}})
    expect_channel_stats(env, op, *t, name, x, rv.n);
  expect_channel_param(env, op, w, "weight", x, rv.n);
  no_overlap(env, op, dx, x, "x");
  no_overlap(env, op, dx, dy, "dy");
  for (const auto& [t, name] : {std::pair{&mean, "mean"}, std::pair{&rstd, "rstd"}, std::pair{&sum_dy, "sumDy"}, std::pair{&sum_dy_xhat, "sumDyXhat"}})
    no_overlap(env, op, dx, *t, name);
  if (w) no_overlap(env, op, dx, *w, "weight");
  const DType pd = w ? w->dtype : x.dtype;
  Stream s = prepare_device(env, x.device(), op);
  const BatchNormBranches br = one_branch(x, mean, rstd, w);
  BatchNormBranchGrads grads{};
  grads.sum_dy_xhat[0] = sum_dy_xhat.as<float>();
  grads.dx[0] = dx.data();
  CF_BACKEND_CALL(x.device(), batchnorm_backward_input, x.dtype, pd, dy.dtype, br, dy.data(), sum_dy.as<float>(), grads, rv.rows, rv.n,
                  batch_stats, s);
  return env.Undefined();
}

}  // namespace

void register_batchnorm(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "batchNormStats", stats);
  CF_EXPORT(exports, "batchNormApply", apply);
  CF_EXPORT(exports, "batchNormSumApply", sum_apply);
  CF_EXPORT(exports, "batchNormSumBackwardReduce", sum_backward_reduce);
  CF_EXPORT(exports, "batchNormSumBackwardInput", sum_backward_input);
  CF_EXPORT(exports, "batchNormBackwardReduce", backward_reduce);
  CF_EXPORT(exports, "batchNormBackwardInput", backward_input);
}

}  // namespace cf::addon
