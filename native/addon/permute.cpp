// permute(x, out, dims): out = x with its dims reordered, out.shape[k] = x.shape[dims[k]].
// f32, bf16 and i32 (a copy); dims must be a permutation of [0, rank).
#include "args.h"
#include "permute.h"
#include "register.h"

namespace cf::addon {
namespace {

Napi::Value permute(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "permute";
  check_arg_count(info, 3, op);
  TensorArg x = tensor(info, 0, op, "x"), out = tensor(info, 1, op, "out");
  const std::vector<int64_t> dims = int_list(info, 2, op, "dims");
  expect_same_dtype(env, op, x, "x", out, "out");
  same_device(env, op, x, "x", out, "out");
  const int r = x.rank();
  bool ok = static_cast<int>(dims.size()) == r;
  bool seen[kMaxRank] = {};
  for (size_t k = 0; ok && k < dims.size(); ++k) {
    ok = dims[k] >= 0 && dims[k] < r && !seen[dims[k]];
    if (ok) seen[dims[k]] = true;
  }
  if (!ok) fail_arg(env, op, "dims", "a permutation of [0, " + std::to_string(r) + ")", shape_str(dims));
  std::vector<int64_t> want(r);
  int32_t perm[kMaxRank];
  for (int k = 0; k < r; ++k) {
    want[k] = x.shape[dims[k]];
    perm[k] = static_cast<int32_t>(dims[k]);
  }
  expect_shape(env, op, out, "out", want);
  no_overlap(env, op, out, x, "x");
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), permute, x.dtype, x.data(), out.data(), r, x.shape.data(), perm, s);
  return env.Undefined();
}

}  // namespace

void register_permute(Napi::Env, Napi::Object exports) { CF_EXPORT(exports, "permute", permute); }

}  // namespace cf::addon
