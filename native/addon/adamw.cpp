// adamw(params, grads, expAvgs, expAvgSqs, lrs, weightDecays, steps, beta1, beta2, eps):
// one AdamW update (native/include/adamw.h) of every listed parameter in place. The lists
// have one entry per parameter: params, expAvgs, expAvgSqs f32, grads f32 or bf16 (one dtype
// for the whole call), all of one shape per entry and on one device; lrs, weightDecays and
// steps (the step number after this update, >= 1) are numbers per entry. No two buffers may
// share memory.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "adamw.h"
#include "args.h"
#include "register.h"

namespace cf::addon {
namespace {

std::vector<double> number_list(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg, uint32_t n) {
  Napi::Array a = array_arg(info, i, op, arg);
  if (a.Length() != n)
    fail_arg(info.Env(), op, arg, "an array of " + std::to_string(n) + " numbers (one per parameter)",
             "an array of length " + std::to_string(a.Length()));
  std::vector<double> out(n);
  for (uint32_t k = 0; k < n; ++k) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber()) fail_arg(info.Env(), op, (std::string(arg) + "[" + std::to_string(k) + "]").c_str(), "a number", describe(v));
    out[k] = v.As<Napi::Number>().DoubleValue();
  }
  return out;
}

struct Span {
  const char* begin;
  const char* end;
  std::string name;
};

// Every buffer must be disjoint from every other: sorted by start, each must begin at or
// after the furthest end seen so far.
void all_disjoint(Napi::Env env, const char* op, std::vector<Span> spans) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  const Span* furthest = nullptr;
  for (const Span& s : spans) {
    if (furthest && s.begin < furthest->end) fail(env, std::string(op) + ": " + s.name + " shares memory with " + furthest->name);
    if (!furthest || s.end > furthest->end) furthest = &s;
  }
}

Napi::Value adamw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "adamw";
  Napi::Array params = array_arg(info, 0, op, "params");
  const uint32_t n = params.Length();
  const char* list_names[] = {"params", "grads", "expAvgs", "expAvgSqs"};
  Napi::Array lists[4] = {params, array_arg(info, 1, op, "grads"), array_arg(info, 2, op, "expAvgs"), array_arg(info, 3, op, "expAvgSqs")};
  for (int l = 1; l < 4; ++l) {
    if (lists[l].Length() != n)
      fail_arg(env, op, list_names[l], "an array of " + std::to_string(n) + " tensors (one per parameter)",
               "an array of length " + std::to_string(lists[l].Length()));
  }
  const std::vector<double> lrs = number_list(info, 4, op, "lrs", n);
  const std::vector<double> wds = number_list(info, 5, op, "weightDecays", n);
  const std::vector<double> steps = number_list(info, 6, op, "steps", n);
  const double beta1 = finite_number(info, 7, op, "beta1");
  const double beta2 = finite_number(info, 8, op, "beta2");
  const double eps = finite_number(info, 9, op, "eps");
  if (!(beta1 >= 0 && beta1 < 1)) fail_arg(env, op, "beta1", "a number in [0, 1)", std::to_string(beta1));
  if (!(beta2 >= 0 && beta2 < 1)) fail_arg(env, op, "beta2", "a number in [0, 1)", std::to_string(beta2));
  if (!(eps >= 0)) fail_arg(env, op, "eps", "a number >= 0", std::to_string(eps));

  std::vector<AdamWTensor> entries(n);
  std::vector<Span> spans;
  DType grad_dtype = DType::F32;
  TensorArg first;
  for (uint32_t k = 0; k < n; ++k) {
    const std::string idx = "[" + std::to_string(k) + "]";
    TensorArg t[4];
    for (int l = 0; l < 4; ++l) {
      const std::string name = list_names[l] + idx;
      t[l] = tensor_value(env, lists[l].Get(k), op, name.c_str());
      if (l == 1) expect_dtype(env, op, t[l], name.c_str(), {DType::F32, DType::BF16});
      else expect_dtype(env, op, t[l], name.c_str(), {DType::F32});
      if (l > 0) expect_shape(env, op, t[l], name.c_str(), t[0].shape);
      if (k == 0 && l == 0) first = t[0];
      same_device(env, op, first, "params[0]", t[l], name.c_str());
      if (t[l].numel > 0) {
        const char* b = static_cast<const char*>(t[l].data());
        spans.push_back({b, b + t[l].numel * static_cast<int64_t>(dtype_size(t[l].dtype)), name});
      }
    }
    if (k == 0) grad_dtype = t[1].dtype;
    else if (t[1].dtype != grad_dtype)
      fail(env, std::string(op) + ": expected every gradient of dtype " + dtype_name(grad_dtype) + ", got " +
                    dtype_name(t[1].dtype) + " for grads" + idx);
    const double lr = lrs[k], wd = wds[k], step = steps[k];
    if (!(std::isfinite(lr) && lr >= 0)) fail_arg(env, op, ("lrs" + idx).c_str(), "a finite number >= 0", std::to_string(lr));
    if (!(std::isfinite(wd) && wd >= 0)) fail_arg(env, op, ("weightDecays" + idx).c_str(), "a finite number >= 0", std::to_string(wd));
    if (!(step >= 1 && step <= 9007199254740991.0 && std::floor(step) == step))
      fail_arg(env, op, ("steps" + idx).c_str(), "an integer >= 1", std::to_string(step));
    entries[k] = AdamWTensor{t[0].as<float>(), t[1].data(), t[2].as<float>(), t[3].as<float>(), t[0].numel,
                             static_cast<float>(1.0 - lr * wd), static_cast<float>(lr / (1.0 - std::pow(beta1, step))),
                             static_cast<float>(std::sqrt(1.0 - std::pow(beta2, step)))};
  }
  all_disjoint(env, op, std::move(spans));
  if (n == 0) return env.Undefined();
  const Device device = first.device();
  Stream s = prepare_device(env, device, op);
  CF_BACKEND_CALL(device, adamw_multi, grad_dtype, entries.data(), static_cast<int64_t>(n),
                  AdamWBetas{static_cast<float>(1.0 - beta1), static_cast<float>(beta2), static_cast<float>(1.0 - beta2), static_cast<float>(eps)}, s);
  return env.Undefined();
}

}  // namespace

void register_adamw(Napi::Env, Napi::Object exports) { CF_EXPORT(exports, "adamw", adamw); }

}  // namespace cf::addon
