// embedding(weight, ids, out) and embeddingBackward(dy, ids, dweight).
// weight / dweight: [vocab, dim] f32 or bf16; ids: i32 of any shape [...]; out / dy: [..., dim].
#include "args.h"
#include "embedding.h"
#include "register.h"

namespace cf::addon {
namespace {

std::vector<int64_t> rows_shape(const TensorArg& ids, int64_t dim) {
  std::vector<int64_t> s = ids.shape;
  s.push_back(dim);
  return s;
}

// Checks shared by both directions: table is [vocab, dim] float, ids i32 with room for the
// extra dim, rows is [...ids, dim] of the table's dtype, all on one device, no aliasing of
// the written tensor.
void check_common(Napi::Env env, const char* op, const TensorArg& table, const char* tn, const TensorArg& ids, const TensorArg& rows,
                  const char* rn, const TensorArg& written, const TensorArg& read, const char* readn) {
  expect_dtype(env, op, table, tn, {DType::F32, DType::BF16});
  expect_rank(env, op, table, tn, 2, 2);
  expect_dtype(env, op, ids, "ids", {DType::I32});
  expect_rank(env, op, ids, "ids", 0, kMaxRank - 1);
  expect_same_dtype(env, op, table, tn, rows, rn);
  same_device(env, op, table, tn, ids, "ids");
  same_device(env, op, table, tn, rows, rn);
  expect_shape(env, op, rows, rn, rows_shape(ids, table.shape[1]));
  if (table.shape[0] > 2147483647LL)
    fail_arg(env, op, (std::string(tn) + ".shape").c_str(), "at most 2^31 - 1 rows (ids are i32)", table.shape_str());
  no_overlap(env, op, written, read, readn);
  no_overlap(env, op, written, ids, "ids");
}

Napi::Value embedding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "embedding";
  check_arg_count(info, 3, op);
  TensorArg weight = tensor(info, 0, op, "weight"), ids = tensor(info, 1, op, "ids"), out = tensor(info, 2, op, "out");
  check_common(env, op, weight, "weight", ids, out, "out", out, weight, "weight");
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), embedding_forward, weight.dtype, weight.data(), ids.as<int32_t>(), out.data(), ids.numel,
                  weight.shape[0], weight.shape[1], s);
  return env.Undefined();
}

Napi::Value embedding_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "embeddingBackward";
  check_arg_count(info, 3, op);
  TensorArg dy = tensor(info, 0, op, "dy"), ids = tensor(info, 1, op, "ids"), dweight = tensor(info, 2, op, "dweight");
  check_common(env, op, dweight, "dweight", ids, dy, "dy", dweight, dy, "dy");
  Stream s = prepare_device(env, dweight.device(), op);
  CF_BACKEND_CALL(dweight.device(), embedding_backward, dweight.dtype, dy.data(), ids.as<int32_t>(), dweight.data(), ids.numel,
                  dweight.shape[0], dweight.shape[1], s);
  return env.Undefined();
}

}  // namespace

void register_embedding(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "embedding", embedding);
  CF_EXPORT(exports, "embeddingBackward", embedding_backward);
}

}  // namespace cf::addon
