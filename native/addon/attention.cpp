// Fused attention (see attention.h):
//   attentionForward(q, k, v, out, lse, causal, scale)
//   attentionBackward(q, k, v, out, dout, lse, dq, dk, dv, causal, scale)
//       q, k, v, out, dout, dq, dk, dv: [B, H, S, D]
//   attentionPackedForward(qkv, out, lse, causal, scale)
//   attentionPackedBackward(qkv, out, dout, lse, dqkv, causal, scale)
//       qkv, dqkv: [B, S, 3, H, D]; out, dout: [B, S, H, D]
// lse is f32 [B, H, S]; everything else shares one float dtype (f32 or bf16) and device.
#include <cmath>
#include <string>
#include <utility>

#include "args.h"
#include "attention.h"
#include "register.h"

namespace cf::addon {
namespace {

constexpr int64_t kMaxInt32 = 2147483647;

struct Common {
  AttentionDims dims;
  bool causal = false;
  float scale = 1.0f;
};

bool causal_arg(const Napi::CallbackInfo& info, size_t i, const char* op) { return boolean(info, i, op, "causal"); }

float scale_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const double s = finite_number(info, i, op, "scale");
  if (std::abs(s) > 3.0e38) fail_arg(info.Env(), op, "scale", "a number within the f32 range", std::to_string(s));
  return static_cast<float>(s);
}

// Sizes every backend indexes safely: S and B*H fit CUDA grid dimensions and 32-bit row
// counts; D >= 1, and on CUDA at most kAttentionCudaMaxDim.
void check_dims(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const AttentionDims& d) {
  const std::string what = std::string(arg) + ".shape";
  if (d.dim < 1) fail_arg(env, op, what.c_str(), "a head dim of at least 1", t.shape_str());
  if (d.seq > kMaxInt32 || d.batch * d.heads > kMaxInt32)
    fail_arg(env, op, what.c_str(), "at most 2^31 - 1 positions and batch * heads", t.shape_str());
  if (t.device().kind == DeviceKind::CUDA && d.dim > kAttentionCudaMaxDim)
    fail_arg(env, op, what.c_str(), "a head dim of at most " + std::to_string(kAttentionCudaMaxDim) + " on CUDA", t.shape_str());
}

// `t` is a float tensor of `shape`, with x's dtype and device.
void expect_like(Napi::Env env, const char* op, const TensorArg& t, const char* tn, const TensorArg& x, const char* xn,
                 const std::vector<int64_t>& shape) {
  expect_same_dtype(env, op, x, xn, t, tn);
  same_device(env, op, x, xn, t, tn);
  expect_shape(env, op, t, tn, shape);
}

void expect_lse(Napi::Env env, const char* op, const TensorArg& lse, const TensorArg& x, const char* xn, const AttentionDims& d) {
  expect_dtype(env, op, lse, "lse", {DType::F32});
  same_device(env, op, x, xn, lse, "lse");
  expect_shape(env, op, lse, "lse", {d.batch, d.heads, d.seq});
}

AttentionLayout plain_layout(const AttentionDims& d) { return {d.heads * d.seq * d.dim, d.seq * d.dim, d.dim}; }
AttentionLayout packed_layout(const AttentionDims& d) { return {d.seq * 3 * d.heads * d.dim, d.dim, 3 * d.heads * d.dim}; }
AttentionLayout bshd_layout(const AttentionDims& d) { return {d.seq * d.heads * d.dim, d.dim, d.heads * d.dim}; }

const void* at(const TensorArg& t, int64_t elements) {
  return static_cast<const char*>(t.data()) + elements * static_cast<int64_t>(dtype_size(t.dtype));
}
void* at_mut(const TensorArg& t, int64_t elements) {
  return static_cast<char*>(t.data()) + elements * static_cast<int64_t>(dtype_size(t.dtype));
}

bool overlapping(const TensorArg& a, const TensorArg& b) {
  if (a.storage != b.storage) return false;
  const char* a0 = static_cast<const char*>(a.data());
  const char* b0 = static_cast<const char*>(b.data());
  return a0 < b0 + b.numel * dtype_size(b.dtype) && b0 < a0 + a.numel * dtype_size(a.dtype);
}

using Named = std::pair<const TensorArg*, const char*>;

// The written tensors must not share memory with anything read, nor with each other.
void no_aliasing(Napi::Env env, const char* op, std::initializer_list<Named> written, std::initializer_list<Named> read) {
  auto check = [&](const Named& w, const Named& o) {
    if (overlapping(*w.first, *o.first))
      fail_arg(env, op, w.second, std::string("memory not shared with ") + o.second, "an overlapping tensor");
  };
  for (auto w = written.begin(); w != written.end(); ++w) {
    for (const Named& r : read) check(*w, r);
    for (auto o = written.begin(); o != w; ++o) check(*w, *o);
  }
}

AttentionDims plain_dims(Napi::Env env, const char* op, const TensorArg& q) {
  expect_dtype(env, op, q, "q", {DType::F32, DType::BF16});
  expect_rank(env, op, q, "q", 4, 4);
  AttentionDims d{q.shape[0], q.shape[1], q.shape[2], q.shape[3]};
  check_dims(env, op, q, "q", d);
  return d;
}

AttentionDims packed_dims(Napi::Env env, const char* op, const TensorArg& qkv) {
  expect_dtype(env, op, qkv, "qkv", {DType::F32, DType::BF16});
  if (qkv.rank() != 5 || qkv.shape[2] != 3) fail_arg(env, op, "qkv.shape", "[B, S, 3, H, D]", qkv.shape_str());
  AttentionDims d{qkv.shape[0], qkv.shape[3], qkv.shape[1], qkv.shape[4]};
  check_dims(env, op, qkv, "qkv", d);
  return d;
}

Napi::Value forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "attentionForward";
  check_arg_count(info, 7, op);
  TensorArg q = tensor(info, 0, op, "q"), k = tensor(info, 1, op, "k"), v = tensor(info, 2, op, "v");
  TensorArg out = tensor(info, 3, op, "out"), lse = tensor(info, 4, op, "lse");
  const bool causal = causal_arg(info, 5, op);
  const float scale = scale_arg(info, 6, op);
  const AttentionDims d = plain_dims(env, op, q);
  expect_like(env, op, k, "k", q, "q", q.shape);
  expect_like(env, op, v, "v", q, "q", q.shape);
  expect_like(env, op, out, "out", q, "q", q.shape);
  expect_lse(env, op, lse, q, "q", d);
  no_aliasing(env, op, {{&out, "out"}, {&lse, "lse"}}, {{&q, "q"}, {&k, "k"}, {&v, "v"}});
  const AttentionLayout l = plain_layout(d);
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), attention_forward, q.dtype, d, causal, scale, q.data(), k.data(), v.data(), l, out.data(), l,
                  lse.as<float>(), s);
  return env.Undefined();
}

Napi::Value backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "attentionBackward";
  check_arg_count(info, 11, op);
  TensorArg q = tensor(info, 0, op, "q"), k = tensor(info, 1, op, "k"), v = tensor(info, 2, op, "v");
  TensorArg out = tensor(info, 3, op, "out"), dout = tensor(info, 4, op, "dout"), lse = tensor(info, 5, op, "lse");
  TensorArg dq = tensor(info, 6, op, "dq"), dk = tensor(info, 7, op, "dk"), dv = tensor(info, 8, op, "dv");
  const bool causal = causal_arg(info, 9, op);
  const float scale = scale_arg(info, 10, op);
  const AttentionDims d = plain_dims(env, op, q);
  for (const Named& t : {Named{&k, "k"}, {&v, "v"}, {&out, "out"}, {&dout, "dout"}, {&dq, "dq"}, {&dk, "dk"}, {&dv, "dv"}})
    expect_like(env, op, *t.first, t.second, q, "q", q.shape);
  expect_lse(env, op, lse, q, "q", d);
  no_aliasing(env, op, {{&dq, "dq"}, {&dk, "dk"}, {&dv, "dv"}},
              {{&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}, {&dout, "dout"}, {&lse, "lse"}});
  const AttentionLayout l = plain_layout(d);
  Stream s = prepare_device(env, q.device(), op);
  CF_BACKEND_CALL(q.device(), attention_backward, q.dtype, d, causal, scale, q.data(), k.data(), v.data(), l, out.data(),
                  dout.data(), l, lse.as<float>(), dq.data(), dk.data(), dv.data(), s);
  return env.Undefined();
}

Napi::Value packed_forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "attentionPackedForward";
  check_arg_count(info, 5, op);
  TensorArg qkv = tensor(info, 0, op, "qkv"), out = tensor(info, 1, op, "out"), lse = tensor(info, 2, op, "lse");
  const bool causal = causal_arg(info, 3, op);
  const float scale = scale_arg(info, 4, op);
  const AttentionDims d = packed_dims(env, op, qkv);
  expect_like(env, op, out, "out", qkv, "qkv", {d.batch, d.seq, d.heads, d.dim});
  expect_lse(env, op, lse, qkv, "qkv", d);
  no_aliasing(env, op, {{&out, "out"}, {&lse, "lse"}}, {{&qkv, "qkv"}});
  const int64_t hd = d.heads * d.dim;
  Stream s = prepare_device(env, out.device(), op);
  CF_BACKEND_CALL(out.device(), attention_forward, qkv.dtype, d, causal, scale, qkv.data(), at(qkv, hd), at(qkv, 2 * hd),
                  packed_layout(d), out.data(), bshd_layout(d), lse.as<float>(), s);
  return env.Undefined();
}

Napi::Value packed_backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "attentionPackedBackward";
  check_arg_count(info, 7, op);
  TensorArg qkv = tensor(info, 0, op, "qkv"), out = tensor(info, 1, op, "out"), dout = tensor(info, 2, op, "dout");
  TensorArg lse = tensor(info, 3, op, "lse"), dqkv = tensor(info, 4, op, "dqkv");
  const bool causal = causal_arg(info, 5, op);
  const float scale = scale_arg(info, 6, op);
  const AttentionDims d = packed_dims(env, op, qkv);
  const std::vector<int64_t> bshd = {d.batch, d.seq, d.heads, d.dim};
  expect_like(env, op, out, "out", qkv, "qkv", bshd);
  expect_like(env, op, dout, "dout", qkv, "qkv", bshd);
  expect_like(env, op, dqkv, "dqkv", qkv, "qkv", qkv.shape);
  expect_lse(env, op, lse, qkv, "qkv", d);
  no_aliasing(env, op, {{&dqkv, "dqkv"}}, {{&qkv, "qkv"}, {&out, "out"}, {&dout, "dout"}, {&lse, "lse"}});
  const int64_t hd = d.heads * d.dim;
  Stream s = prepare_device(env, qkv.device(), op);
  CF_BACKEND_CALL(qkv.device(), attention_backward, qkv.dtype, d, causal, scale, qkv.data(), at(qkv, hd), at(qkv, 2 * hd),
                  packed_layout(d), out.data(), dout.data(), bshd_layout(d), lse.as<float>(), dqkv.data(), at_mut(dqkv, hd),
                  at_mut(dqkv, 2 * hd), s);
  return env.Undefined();
}

}  // namespace

void register_attention(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "attentionForward", forward);
  CF_EXPORT(exports, "attentionBackward", backward);
  CF_EXPORT(exports, "attentionPackedForward", packed_forward);
  CF_EXPORT(exports, "attentionPackedBackward", packed_backward);
}

}  // namespace cf::addon
