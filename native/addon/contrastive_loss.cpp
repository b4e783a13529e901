// Contrastive losses (native/include/contrastive_loss.h):
//   clipLossForward(a, b, logScale, rowOffset, colOffset, wRow, wCol, loss, lseRow?, lseCol?)
//   clipLossBackward(a, b, logScale, lseRow?, lseCol?, rowOffset, colOffset, wRow, wCol, dloss, da?, db?, dLogScale?)
//   siglipLoss(a, b, logScale, bias, offset, weight, loss, da?, db?, dLogScale?, dBias?)
//   cudaLossChunkRows(device, rows)   rows of A per chunk of the Hopper path (0: by size), for tests
// A CLIP term is computed when its lse tensor is given (null/undefined leaves it out); a
// gradient is computed when its output is given (SigLIP's in the same pass as the loss, for
// dloss = 1). Scalars (logScale, bias, loss, dloss and scalar gradients) have shape [] or [1].
#include <optional>

#include "args.h"
#include "contrastive_loss.h"
#include "register.h"
#include "rows.h"

namespace cf::addon {
namespace {

constexpr int64_t kMaxRows = 2147483647;  // row indices of the CUDA kernels are 32-bit grid coordinates
constexpr int64_t kMaxDim = 65536;

void expect_scalar(Napi::Env env, const char* op, const TensorArg& t, const char* arg) {
  if (!(t.rank() == 0 || (t.rank() == 1 && t.shape[0] == 1)))
    fail_arg(env, op, (std::string(arg) + ".shape").c_str(), "[] or [1]", t.shape_str());
}

// The features a [na, d] and b [nb, d]: same float dtype and device, sizes within the limits.
void check_features(Napi::Env env, const char* op, const TensorArg& a, const TensorArg& b) {
  expect_dtype(env, op, a, "a", {DType::F32, DType::BF16});
  expect_same_dtype(env, op, a, "a", b, "b");
  same_device(env, op, a, "a", b, "b");
  expect_rank(env, op, a, "a", 2, 2);
  expect_rank(env, op, b, "b", 2, 2);
  if (a.shape[1] != b.shape[1])
    fail_arg(env, op, "b.shape", "[N, " + std::to_string(a.shape[1]) + "] (the feature size of a)", b.shape_str());
  for (const auto* t : {&a, &b}) {
    const char* name = t == &a ? "a.shape" : "b.shape";
    if (t->shape[0] < 1 || t->shape[0] > kMaxRows)
      fail_arg(env, op, name, "between 1 and " + std::to_string(kMaxRows) + " rows", t->shape_str());
  }
  if (a.shape[1] < 1 || a.shape[1] > kMaxDim)
    fail_arg(env, op, "a.shape", "a feature size between 1 and " + std::to_string(kMaxDim), a.shape_str());
}

// A scalar parameter (log-scale or bias): float dtype, [] or [1], on the features' device.
void check_param(Napi::Env env, const char* op, const TensorArg& p, const char* arg, const TensorArg& a) {
  expect_dtype(env, op, p, arg, {DType::F32, DType::BF16});
  expect_scalar(env, op, p, arg);
  same_device(env, op, p, arg, a, "a");
}

// An f32 output or saved tensor of the given shape on the features' device, apart from the inputs.
void check_f32(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const TensorArg& a, std::optional<std::vector<int64_t>> shape) {
  expect_dtype(env, op, t, arg, {DType::F32});
  same_device(env, op, t, arg, a, "a");
  if (shape) expect_shape(env, op, t, arg, *shape);
  else expect_scalar(env, op, t, arg);
}

void check_offset(Napi::Env env, const char* op, const char* arg, int64_t offset, int64_t rows, int64_t cols, const char* what) {
  if (offset < 0 || offset > cols - rows)
    fail_arg(env, op, arg, std::string("an integer in [0, ") + std::to_string(std::max<int64_t>(cols - rows, 0)) + "] so that every " + what +
                               " has its label (" + std::to_string(rows) + " labels among " + std::to_string(cols) + ")",
             std::to_string(offset));
}

void disjoint(Napi::Env env, const char* op, const std::vector<std::pair<const TensorArg*, const char*>>& outs,
              const std::vector<std::pair<const TensorArg*, const char*>>& ins) {
  for (size_t i = 0; i < outs.size(); ++i) {
    for (const auto& in : ins) no_overlap(env, op, *outs[i].first, *in.first, in.second);
    for (size_t j = i + 1; j < outs.size(); ++j) no_overlap(env, op, *outs[i].first, *outs[j].first, outs[j].second);
  }
}

Napi::Value clip_loss_forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "clipLossForward";
  check_arg_count(info, 8, op);
  TensorArg a = tensor(info, 0, op, "a"), b = tensor(info, 1, op, "b"), ls = tensor(info, 2, op, "logScale");
  check_features(env, op, a, b);
  check_param(env, op, ls, "logScale", a);
  ClipLossSpec spec;
  spec.na = a.shape[0];
  spec.nb = b.shape[0];
  spec.d = a.shape[1];
  spec.row_offset = integer(info, 3, op, "rowOffset", 0, kMaxRows);
  spec.col_offset = integer(info, 4, op, "colOffset", 0, kMaxRows);
  spec.w_row = finite_number(info, 5, op, "wRow");
  spec.w_col = finite_number(info, 6, op, "wCol");
  TensorArg loss = tensor(info, 7, op, "loss");
  check_f32(env, op, loss, "loss", a, std::nullopt);
  auto lse_row = optional_tensor(info, 8, op, "lseRow");
  auto lse_col = optional_tensor(info, 9, op, "lseCol");
  spec.rows = lse_row.has_value();
  spec.cols = lse_col.has_value();
  if (!spec.rows && !spec.cols) fail(env, std::string(op) + ": expected lseRow, lseCol or both (the terms to compute), got neither");
  std::vector<std::pair<const TensorArg*, const char*>> outs = {{&loss, "loss"}};
  if (spec.rows) {
    check_f32(env, op, *lse_row, "lseRow", a, std::vector<int64_t>{spec.na});
    check_offset(env, op, "rowOffset", spec.row_offset, spec.na, spec.nb, "row of a");
    outs.push_back({&*lse_row, "lseRow"});
  }
  if (spec.cols) {
    check_f32(env, op, *lse_col, "lseCol", a, std::vector<int64_t>{spec.nb});
    check_offset(env, op, "colOffset", spec.col_offset, spec.nb, spec.na, "row of b");
    outs.push_back({&*lse_col, "lseCol"});
  }
  disjoint(env, op, outs, {{&a, "a"}, {&b, "b"}, {&ls, "logScale"}});
  Stream s = prepare_device(env, a.device(), op);
  CF_BACKEND_CALL(a.device(), clip_loss_forward, a.dtype, a.data(), b.data(), ls.dtype, ls.data(), spec, loss.as<float>(),
                  spec.rows ? lse_row->as<float>() : nullptr, spec.cols ? lse_col->as<float>() : nullptr, s);
  return env.Undefined();
}

Napi::Value clip_loss_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "clipLossBackward";
  check_arg_count(info, 10, op);
  TensorArg a = tensor(info, 0, op, "a"), b = tensor(info, 1, op, "b"), ls = tensor(info, 2, op, "logScale");
  check_features(env, op, a, b);
  check_param(env, op, ls, "logScale", a);
  auto lse_row = optional_tensor(info, 3, op, "lseRow");
  auto lse_col = optional_tensor(info, 4, op, "lseCol");
  ClipLossSpec spec;
  spec.na = a.shape[0];
  spec.nb = b.shape[0];
  spec.d = a.shape[1];
  spec.rows = lse_row.has_value();
  spec.cols = lse_col.has_value();
  spec.row_offset = integer(info, 5, op, "rowOffset", 0, kMaxRows);
  spec.col_offset = integer(info, 6, op, "colOffset", 0, kMaxRows);
  spec.w_row = finite_number(info, 7, op, "wRow");
  spec.w_col = finite_number(info, 8, op, "wCol");
  TensorArg dloss = tensor(info, 9, op, "dloss");
  check_f32(env, op, dloss, "dloss", a, std::nullopt);
  if (!spec.rows && !spec.cols) fail(env, std::string(op) + ": expected lseRow, lseCol or both (the terms to differentiate), got neither");
  if (spec.rows) {
    check_f32(env, op, *lse_row, "lseRow", a, std::vector<int64_t>{spec.na});
    check_offset(env, op, "rowOffset", spec.row_offset, spec.na, spec.nb, "row of a");
  }
  if (spec.cols) {
    check_f32(env, op, *lse_col, "lseCol", a, std::vector<int64_t>{spec.nb});
    check_offset(env, op, "colOffset", spec.col_offset, spec.nb, spec.na, "row of b");
  }
  auto da = optional_tensor(info, 10, op, "da");
  auto db = optional_tensor(info, 11, op, "db");
  auto dls = optional_tensor(info, 12, op, "dLogScale");
  std::vector<std::pair<const TensorArg*, const char*>> outs;
  if (da) {
    check_f32(env, op, *da, "da", a, a.shape);
    outs.push_back({&*da, "da"});
  }
  if (db) {
    check_f32(env, op, *db, "db", a, b.shape);
    outs.push_back({&*db, "db"});
  }
  if (dls) {
    check_f32(env, op, *dls, "dLogScale", a, std::nullopt);
    outs.push_back({&*dls, "dLogScale"});
  }
  std::vector<std::pair<const TensorArg*, const char*>> ins = {{&a, "a"}, {&b, "b"}, {&ls, "logScale"}, {&dloss, "dloss"}};
  if (lse_row) ins.push_back({&*lse_row, "lseRow"});
  if (lse_col) ins.push_back({&*lse_col, "lseCol"});
  disjoint(env, op, outs, ins);
  Stream s = prepare_device(env, a.device(), op);
  CF_BACKEND_CALL(a.device(), clip_loss_backward, a.dtype, a.data(), b.data(), ls.dtype, ls.data(), spec,
                  spec.rows ? lse_row->as<float>() : nullptr, spec.cols ? lse_col->as<float>() : nullptr, dloss.as<float>(),
                  da ? da->as<float>() : nullptr, db ? db->as<float>() : nullptr, dls ? dls->as<float>() : nullptr, s);
  return env.Undefined();
}

// The arguments both SigLIP functions share: a, b, logScale, bias, offset, weight.
struct SiglipArgs {
  TensorArg a, b, ls, bias;
  SiglipLossSpec spec;
};

SiglipArgs siglip_args(const Napi::CallbackInfo& info, const char* op) {
  Napi::Env env = info.Env();
  SiglipArgs r;
  r.a = tensor(info, 0, op, "a");
  r.b = tensor(info, 1, op, "b");
  r.ls = tensor(info, 2, op, "logScale");
  r.bias = tensor(info, 3, op, "bias");
  check_features(env, op, r.a, r.b);
  check_param(env, op, r.ls, "logScale", r.a);
  check_param(env, op, r.bias, "bias", r.a);
  r.spec.na = r.a.shape[0];
  r.spec.nb = r.b.shape[0];
  r.spec.d = r.a.shape[1];
  r.spec.offset = integer(info, 4, op, "offset", 0, kMaxRows);
  check_offset(env, op, "offset", r.spec.offset, r.spec.na, r.spec.nb, "row of a");
  r.spec.weight = finite_number(info, 5, op, "weight");
  return r;
}

Napi::Value siglip_loss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "siglipLoss";
  check_arg_count(info, 7, op);
  SiglipArgs g = siglip_args(info, op);
  TensorArg loss = tensor(info, 6, op, "loss");
  check_f32(env, op, loss, "loss", g.a, std::nullopt);
  auto da = optional_tensor(info, 7, op, "da");
  auto db = optional_tensor(info, 8, op, "db");
  auto dls = optional_tensor(info, 9, op, "dLogScale");
  auto dbias = optional_tensor(info, 10, op, "dBias");
  std::vector<std::pair<const TensorArg*, const char*>> outs = {{&loss, "loss"}};
  if (da) {
    check_f32(env, op, *da, "da", g.a, g.a.shape);
    outs.push_back({&*da, "da"});
  }
  if (db) {
    check_f32(env, op, *db, "db", g.a, g.b.shape);
    outs.push_back({&*db, "db"});
  }
  if (dls) {
    check_f32(env, op, *dls, "dLogScale", g.a, std::nullopt);
    outs.push_back({&*dls, "dLogScale"});
  }
  if (dbias) {
    check_f32(env, op, *dbias, "dBias", g.a, std::nullopt);
    outs.push_back({&*dbias, "dBias"});
  }
  disjoint(env, op, outs, {{&g.a, "a"}, {&g.b, "b"}, {&g.ls, "logScale"}, {&g.bias, "bias"}});
  Stream s = prepare_device(env, g.a.device(), op);
  CF_BACKEND_CALL(g.a.device(), siglip_loss, g.a.dtype, g.a.data(), g.b.data(), g.ls.dtype, g.ls.data(), g.bias.dtype, g.bias.data(), g.spec,
                  loss.as<float>(), da ? da->as<float>() : nullptr, db ? db->as<float>() : nullptr, dls ? dls->as<float>() : nullptr,
                  dbias ? dbias->as<float>() : nullptr, s);
  return env.Undefined();
}

Napi::Value cuda_loss_chunk_rows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "cudaLossChunkRows";
  const Device d = cuda_device(info, 0, op, "device");
  const int64_t rows = integer(info, 1, op, "rows", 0, 1 << 20);
  if (rows % 128 != 0) fail_arg(env, op, "rows", "a multiple of 128", std::to_string(rows));
  prepare_device(env, d, op);
#ifdef CLIPFORGE_WITH_CUDA
  cuda::set_loss_chunk_rows(rows);
#endif
  return env.Undefined();
}

}  // namespace

void register_contrastive_loss(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "clipLossForward", clip_loss_forward);
  CF_EXPORT(exports, "clipLossBackward", clip_loss_backward);
  CF_EXPORT(exports, "siglipLoss", siglip_loss);
  CF_EXPORT(exports, "cudaLossChunkRows", cuda_loss_chunk_rows);
}

}  // namespace cf::addon
