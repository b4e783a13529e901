// sliceCopy(src, dst, axis, srcStart, dstStart, count): copies the slab
// src[..., srcStart : srcStart + count, ...] into dst[..., dstStart : dstStart + count, ...]
// along `axis`. src and dst have the same rank, dtype and device, and equal sizes on every
// other axis. slice, concat, split and slice's backward are built on it in lib/tensor/ops/slice.ts.
#include <algorithm>

#include "args.h"
#include "register.h"
#include "slice.h"

namespace cf::addon {
namespace {

Napi::Value slice_copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "sliceCopy";
  check_arg_count(info, 6, op);
  TensorArg src = tensor(info, 0, op, "src"), dst = tensor(info, 1, op, "dst");
  expect_same_dtype(env, op, src, "src", dst, "dst");
  same_device(env, op, src, "src", dst, "dst");
  expect_rank(env, op, src, "src", 1, kMaxRank);
  expect_rank(env, op, dst, "dst", src.rank(), src.rank());
  const int r = src.rank();
  int64_t a = integer(info, 2, op, "axis", -r, r - 1);
  const int axis = static_cast<int>(a < 0 ? a + r : a);
  for (int d = 0; d < r; ++d)
    if (d != axis && src.shape[d] != dst.shape[d])
      fail(env, std::string(op) + ": expected src and dst of equal sizes except on axis " + std::to_string(axis) + ", got " +
                    src.shape_str() + " and " + dst.shape_str());
  const int64_t src_len = src.shape[axis], dst_len = dst.shape[axis];
  const int64_t src_start = integer(info, 3, op, "srcStart", 0, src_len);
  const int64_t dst_start = integer(info, 4, op, "dstStart", 0, dst_len);
  const int64_t count = integer(info, 5, op, "count", 0, std::min(src_len - src_start, dst_len - dst_start));
  no_overlap(env, op, dst, src, "src");
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= src.shape[d];
  for (int d = axis + 1; d < r; ++d) inner *= src.shape[d];
  Stream s = prepare_device(env, dst.device(), op);
  CF_BACKEND_CALL(dst.device(), slice_copy, src.dtype, src.data(), src_len, src_start, dst.data(), dst_len, dst_start, outer, count,
                  inner, s);
  return env.Undefined();
}

}  // namespace

void register_slice(Napi::Env, Napi::Object exports) { CF_EXPORT(exports, "sliceCopy", slice_copy); }

}  // namespace cf::addon
