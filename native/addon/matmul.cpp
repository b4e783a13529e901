// matmul(a, b, bias, out, transA, transB, accumulate, epilogue?, aux?):
//   out[..., M, N] = (accumulate ? out : 0) + op(a)[..., M, K] · op(b)[..., K, N] + bias[N]
// a is [..., M, K] ([..., K, M] when transA), b is [..., K, N] ([..., N, K] when transB).
// An operand of rank 2 is shared by every batch item; one of higher rank has out's leading
// (batch) dims. bias may be null. out must not share memory with any input.
// epilogue (matmul.h), default 'none': 'gelu' / 'quickGelu' store the activation of the
// product + bias in out and the product + bias in aux (out's shape and dtype; null skips it);
// 'geluBackward' / 'quickGeluBackward' store product * act'(aux), aux the pre-activation (no
// bias). Not with accumulate.
#include <limits>

#include "args.h"
#include "matmul.h"
#include "register.h"
#include "rows.h"

namespace cf::addon {
namespace {

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

std::string flag(bool v) { return v ? "true" : "false"; }

// Argument i: the epilogue's name (undefined: none).
GemmEpilogue epilogue_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  GemmEpilogue e;
  if (info.Length() <= i || info[i].IsUndefined()) return e;
  const std::string name = string(info, i, op, "epilogue");
  const bool backward = name == "geluBackward" || name == "quickGeluBackward";
  if (name == "gelu" || name == "geluBackward") e.op = UnaryOp::GeluErf;
  else if (name == "quickGelu" || name == "quickGeluBackward") e.op = UnaryOp::QuickGelu;
  else if (name != "none") fail_arg(info.Env(), op, "epilogue", "'none', 'gelu', 'quickGelu', 'geluBackward' or 'quickGeluBackward'", "'" + name + "'");
  if (name != "none") e.kind = backward ? GemmEpilogueKind::ActivationGrad : GemmEpilogueKind::Activation;
  return e;
}

Napi::Value matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "matmul";
  TensorArg a = tensor(info, 0, op, "a"), b = tensor(info, 1, op, "b");
  std::optional<TensorArg> bias = optional_tensor(info, 2, op, "bias");
  TensorArg out = tensor(info, 3, op, "out");
  const bool ta = boolean(info, 4, op, "transA"), tb = boolean(info, 5, op, "transB");
  const bool accumulate = boolean(info, 6, op, "accumulate");
  GemmEpilogue epilogue = epilogue_arg(info, 7, op);
  const std::optional<TensorArg> aux = info.Length() > 8 ? optional_tensor(info, 8, op, "aux") : std::nullopt;

  expect_dtype(env, op, a, "a", {DType::F32, DType::BF16});
  for (auto [t, name] : {std::pair<const TensorArg*, const char*>{&b, "b"}, {&out, "out"}}) {
    expect_same_dtype(env, op, a, "a", *t, name);
    same_device(env, op, a, "a", *t, name);
  }
  expect_rank(env, op, a, "a", 2, kMaxRank);
  expect_rank(env, op, b, "b", 2, kMaxRank);

  const int64_t M = ta ? a.dim(-1) : a.dim(-2), K = ta ? a.dim(-2) : a.dim(-1);
  const int64_t kb = tb ? b.dim(-1) : b.dim(-2), N = tb ? b.dim(-2) : b.dim(-1);
  if (kb != K) {
    const std::string want = tb ? "[..., N, " + std::to_string(K) + "]" : "[..., " + std::to_string(K) + ", N]";
    fail_arg(env, op, "b.shape", want + " (K = " + std::to_string(K) + " from a " + a.shape_str() + ", transA " + flag(ta) +
                                     ", transB " + flag(tb) + ")",
             b.shape_str());
  }
  // Batch dims come from the operand of higher rank; both batched means the same batch dims.
  const TensorArg& lead = a.rank() >= b.rank() ? a : b;
  const std::vector<int64_t> batch_dims(lead.shape.begin(), lead.shape.end() - 2);
  if (a.rank() > 2 && b.rank() > 2 && std::vector<int64_t>(a.shape.begin(), a.shape.end() - 2) != batch_dims)
    fail_arg(env, op, "b.shape", "batch dims " + shape_str(std::vector<int64_t>(a.shape.begin(), a.shape.end() - 2)) +
                                     " like a " + a.shape_str() + " (or rank 2, shared)",
             b.shape_str());
  std::vector<int64_t> out_shape = batch_dims;
  out_shape.push_back(M);
  out_shape.push_back(N);
  expect_shape(env, op, out, "out", out_shape);
  int64_t batch = 1;
  for (int64_t d : batch_dims) batch *= d;
  for (auto [v, what] : {std::pair<int64_t, const char*>{M, "M"}, {N, "N"}, {K, "K"}, {batch, "the batch size"}})
    if (v > kMaxDim)
      fail(env, std::string(op) + ": expected " + what + " <= " + std::to_string(kMaxDim) + ", got " + std::to_string(v) + " (a " +
                    a.shape_str() + ", b " + b.shape_str() + ")");

  if (bias) {
    expect_same_dtype(env, op, a, "a", *bias, "bias");
    same_device(env, op, a, "a", *bias, "bias");
    expect_shape(env, op, *bias, "bias", {N});
    no_overlap(env, op, out, *bias, "bias");
  }
  no_overlap(env, op, out, a, "a");
  no_overlap(env, op, out, b, "b");
  if (epilogue.kind != GemmEpilogueKind::None && accumulate) fail_arg(env, op, "accumulate", "false with an epilogue", "true");
  if (epilogue.kind == GemmEpilogueKind::ActivationGrad) {
    if (bias) fail_arg(env, op, "bias", "null with a backward epilogue", "a tensor");
    if (!aux) fail_arg(env, op, "aux", "the pre-activation tensor with a backward epilogue", "null");
  }
  if (aux) {
    if (epilogue.kind == GemmEpilogueKind::None) fail_arg(env, op, "aux", "null without an epilogue", "a tensor");
    expect_same_dtype(env, op, out, "out", *aux, "aux");
    same_device(env, op, out, "out", *aux, "aux");
    expect_shape(env, op, *aux, "aux", out_shape);
    no_overlap(env, op, out, "out", *aux, "aux");
    no_overlap(env, op, *aux, "aux", a, "a");
    no_overlap(env, op, *aux, "aux", b, "b");
    if (bias) no_overlap(env, op, *aux, "aux", *bias, "bias");
    epilogue.aux = aux->data();
  }

  GemmShape s;
  s.batch = batch;
  s.m = M;
  s.n = N;
  s.k = K;
  s.trans_a = ta;
  s.trans_b = tb;
  s.stride_a = a.rank() > 2 ? M * K : 0;
  s.stride_b = b.rank() > 2 ? K * N : 0;
  s.accumulate = accumulate;
  s.epilogue = epilogue;
  Stream st = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), gemm, out.dtype, a.data(), b.data(), bias ? bias->data() : nullptr, out.data(), s, st);
  return env.Undefined();
}

// gemmKernel(which?): selects the CPU micro-kernel ('auto', 'avx2' or 'generic') when given;
// returns the name of the one in use.
Napi::Value gemm_kernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "gemmKernel";
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    const std::string which = string(info, 0, op, "which");
    if (which != "auto" && which != "avx2" && which != "generic")
      fail_arg(env, op, "which", "'auto', 'avx2' or 'generic'", "'" + which + "'");
    if (!cpu::select_gemm_kernel(which)) fail(env, std::string(op) + ": this CPU cannot run the '" + which + "' kernel");
  }
  return Napi::String::New(env, cpu::gemm_kernel_name());
}

// cudaGemmKernel(device, which?): 'mma.sync' makes every bf16 GEMM on CUDA (and the contrastive
// losses' tile products) take the sm_80 kernels, 'auto' lets Hopper GPUs use TMA + wgmma;
// returns the kernel `device` runs now.
Napi::Value cuda_gemm_kernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "cudaGemmKernel";
  const Device d = cuda_device(info, 0, op, "device");
  std::string which;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    which = string(info, 1, op, "which");
    if (which != "auto" && which != "mma.sync") fail_arg(env, op, "which", "'auto' or 'mma.sync'", "'" + which + "'");
  }
  prepare_device(env, d, op);
#ifdef CLIPFORGE_WITH_CUDA
  if (!which.empty()) cuda::force_mma_sync_gemm(which == "mma.sync");
  return Napi::String::New(env, cuda::gemm_kernel_name(d.index));
#else
  return env.Undefined();  // prepare_device has thrown: no CUDA backend
#endif
}

}  // namespace

void register_matmul(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "matmul", matmul);
  CF_EXPORT(exports, "gemmKernel", gemm_kernel);
  CF_EXPORT(exports, "cudaGemmKernel", cuda_gemm_kernel);
}

}  // namespace cf::addon
