// crossEntropy(logits, labels, out, lse, reduction, ignoreIndex, labelSmoothing) and
// crossEntropyBackward(logits, labels, lse, dy, dlogits, reduction, ignoreIndex,
// labelSmoothing). logits [..., C], labels i32 [...], lse f32 [...]; out and dy are [...]
// for reduction 'none' and [] for 'mean' and 'sum'. Label values are checked by the CPU
// kernel (it throws) and flagged as NaN by the CUDA kernel (see cross_entropy.h).
#include "args.h"
#include "cross_entropy.h"
#include "register.h"
#include "rows.h"

namespace cf::addon {
namespace {

struct Attrs {
  CrossEntropyReduction reduction = CrossEntropyReduction::Mean;
  int32_t ignore_index = -100;
  float smoothing = 0.0f;
};

Attrs attrs(const Napi::CallbackInfo& info, size_t i, const char* op) {
  Attrs a;
  const std::string red = string(info, i, op, "reduction");
  if (red == "mean") a.reduction = CrossEntropyReduction::Mean;
  else if (red == "sum") a.reduction = CrossEntropyReduction::Sum;
  else if (red == "none") a.reduction = CrossEntropyReduction::None;
  else fail_arg(info.Env(), op, "reduction", "'mean', 'sum' or 'none'", "'" + red + "'");
  a.ignore_index = static_cast<int32_t>(integer(info, i + 1, op, "ignoreIndex", -2147483647LL - 1, 2147483647LL));
  const double s = number(info, i + 2, op, "labelSmoothing");
  if (!(s >= 0.0 && s <= 1.0)) fail_arg(info.Env(), op, "labelSmoothing", "a number in [0, 1]", describe(info[i + 2]));
  a.smoothing = static_cast<float>(s);
  return a;
}

// Checks logits [..., C] (float), labels [...] (i32) and lse [...] (f32) on one device.
RowsView check_inputs(Napi::Env env, const char* op, const TensorArg& logits, const TensorArg& labels, const TensorArg& lse) {
  expect_dtype(env, op, logits, "logits", {DType::F32, DType::BF16});
  const RowsView rv = rows_of(env, op, logits, "logits");
  expect_dtype(env, op, labels, "labels", {DType::I32});
  same_device(env, op, logits, "logits", labels, "labels");
  expect_shape(env, op, labels, "labels", row_shape(logits));
  expect_row_stats(env, op, lse, "lse", logits, "logits");
  return rv;
}

std::vector<int64_t> loss_shape(const TensorArg& logits, CrossEntropyReduction r) {
  return r == CrossEntropyReduction::None ? row_shape(logits) : std::vector<int64_t>{};
}

Napi::Value cross_entropy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "crossEntropy";
  TensorArg logits = tensor(info, 0, op, "logits"), labels = tensor(info, 1, op, "labels");
  TensorArg out = tensor(info, 2, op, "out"), lse = tensor(info, 3, op, "lse");
  const Attrs a = attrs(info, 4, op);
  const RowsView rv = check_inputs(env, op, logits, labels, lse);
  expect_same_dtype(env, op, logits, "logits", out, "out");
  same_device(env, op, logits, "logits", out, "out");
  expect_shape(env, op, out, "out", loss_shape(logits, a.reduction));
  no_overlap(env, op, out, logits, "logits");
  no_overlap(env, op, out, labels, "labels");
  no_overlap(env, op, out, lse, "lse");
  no_overlap(env, op, lse, logits, "logits");
  no_overlap(env, op, lse, labels, "labels");
  Stream s = prepare_device(env, logits.device(), op);
  CF_BACKEND_CALL(logits.device(), cross_entropy_forward, logits.dtype, logits.data(), labels.as<int32_t>(), out.data(),
                  lse.as<float>(), rv.rows, rv.n, a.reduction, a.ignore_index, a.smoothing, s);
  return env.Undefined();
}

Napi::Value cross_entropy_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "crossEntropyBackward";
  TensorArg logits = tensor(info, 0, op, "logits"), labels = tensor(info, 1, op, "labels"), lse = tensor(info, 2, op, "lse");
  TensorArg dy = tensor(info, 3, op, "dy"), dlogits = tensor(info, 4, op, "dlogits");
  const Attrs a = attrs(info, 5, op);
  const RowsView rv = check_inputs(env, op, logits, labels, lse);
  expect_same_dtype(env, op, logits, "logits", dy, "dy");
  expect_same_dtype(env, op, logits, "logits", dlogits, "dlogits");
  same_device(env, op, logits, "logits", dy, "dy");
  same_device(env, op, logits, "logits", dlogits, "dlogits");
  expect_shape(env, op, dy, "dy", loss_shape(logits, a.reduction));
  expect_shape(env, op, dlogits, "dlogits", logits.shape);
  no_overlap(env, op, dlogits, logits, "logits");
  no_overlap(env, op, dlogits, labels, "labels");
  no_overlap(env, op, dlogits, lse, "lse");
  no_overlap(env, op, dlogits, dy, "dy");
  Stream s = prepare_device(env, logits.device(), op);
  CF_BACKEND_CALL(logits.device(), cross_entropy_backward, logits.dtype, logits.data(), labels.as<int32_t>(), lse.as<float>(),
                  dy.data(), dlogits.data(), rv.rows, rv.n, a.reduction, a.ignore_index, a.smoothing, s);
  return env.Undefined();
}

}  // namespace

void register_cross_entropy(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "crossEntropy", cross_entropy);
  CF_EXPORT(exports, "crossEntropyBackward", cross_entropy_backward);
}

}  // namespace cf::addon
