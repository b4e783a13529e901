#include "args.h"
#include "memory.h"

#include <cmath>
#include <sstream>

#ifdef CLIPFORGE_WITH_CUDA
#include "runtime.h"
#endif

namespace cf::addon {
namespace {
// Identifies Externals made by this addon, so no other External is taken for a Storage.
const napi_type_tag kStorageTag = {0x6c1f0a2e9d3b4c51ULL, 0xa4e7c2b18f3d6e09ULL};
constexpr int64_t kMaxSafeInt = 9007199254740991LL;
}  // namespace

void release_storage(Storage* s) {
  if (s->freed) return;
  s->freed = true;
  if (s->device.kind == DeviceKind::CPU) {
    cpu::free(s->ptr, s->nbytes);
  } else {
#ifdef CLIPFORGE_WITH_CUDA
    cuda::free(s->device.index, s->ptr, cuda::current_stream(s->device.index));
#endif
  }
  s->ptr = nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TensorArg::shape_str() const { return cf::addon::shape_str(shape); }

void fail(Napi::Env env, const std::string& msg) { throw Napi::Error::New(env, msg); }

void fail_arg(Napi::Env env, const char* op, const char* arg, const std::string& expected, const std::string& got) {
  fail(env, std::string(op) + ": expected " + expected + " for " + arg + ", got " + got);
}

std::string describe(Napi::Value v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return v.As<Napi::Boolean>().Value() ? "true" : "false";
    case napi_number: {
      std::ostringstream os;
      os << v.As<Napi::Number>().DoubleValue();
      return os.str();
    }
    case napi_string: {
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return "'" + s + "'";
    }
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_bigint: return "a bigint";
    case napi_object: return v.IsArray() ? "an array" : "an object";
  }
  return "a value";
}

Napi::External<Storage> make_storage(Napi::Env env, Storage* s) {
  auto ext = Napi::External<Storage>::New(env, s, [](Napi::Env, Storage* st) {
    // GC backstop: memory not released explicitly is released when the handle dies.
    try {
      release_storage(st);
    } catch (...) {
    }
    delete st;
  });
  napi_type_tag_object(env, ext, &kStorageTag);
  return ext;
}

Storage* get_storage(Napi::Env env, Napi::Value v, const char* op, const char* arg) {
  bool tagged = false;
  if (v.Type() == napi_external) napi_check_object_type_tag(env, v, &kStorageTag, &tagged);
  if (!tagged) fail_arg(env, op, arg, "a clipforge storage handle", describe(v));
  return v.As<Napi::External<Storage>>().Data();
}

void check_arg_count(const Napi::CallbackInfo& info, size_t n, const char* op) {
  if (info.Length() < n)
    fail(info.Env(), std::string(op) + ": expected " + std::to_string(n) + " arguments, got " + std::to_string(info.Length()));
}

static Napi::Value arg_at(const Napi::CallbackInfo& info, size_t i) { return i < info.Length() ? info[i] : info.Env().Undefined(); }

DType parse_dtype(Napi::Env env, const std::string& s, const char* op, const char* arg) {
  if (s == "f32") return DType::F32;
  if (s == "bf16") return DType::BF16;
  if (s == "i32") return DType::I32;
  fail_arg(env, op, arg, "dtype 'f32', 'bf16' or 'i32'", "'" + s + "'");
}

Device parse_device(Napi::Env env, const std::string& s, const char* op, const char* arg) {
  if (s == "cpu") return Device{DeviceKind::CPU, 0};
  if (s == "cuda") return Device{DeviceKind::CUDA, 0};
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() < 9) {
    int idx = 0;
    for (size_t i = 5; i < s.size(); ++i) {
      if (s[i] < '0' || s[i] > '9') fail_arg(env, op, arg, "device 'cpu', 'cuda' or 'cuda:N'", "'" + s + "'");
      idx = idx * 10 + (s[i] - '0');
    }
    return Device{DeviceKind::CUDA, idx};
  }
  fail_arg(env, op, arg, "device 'cpu', 'cuda' or 'cuda:N'", "'" + s + "'");
}

Device cuda_device(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  const std::string name = string(info, i, op, arg);
  const Device d = parse_device(info.Env(), name, op, arg);
  if (d.kind != DeviceKind::CUDA) fail_arg(info.Env(), op, arg, "a CUDA device", "'" + name + "'");
  return d;
}

TensorArg tensor(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  return tensor_value(info.Env(), arg_at(info, i), op, arg);
}

Napi::Array array_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  Napi::Value v = i < info.Length() ? info[i] : info.Env().Undefined();
  if (!v.IsArray()) fail_arg(info.Env(), op, arg, "an array", describe(v));
  return v.As<Napi::Array>();
}

TensorArg tensor_value(Napi::Env env, Napi::Value v, const char* op, const char* arg) {
  if (!v.IsObject()) fail_arg(env, op, arg, "a Tensor", describe(v));
  Napi::Object o = v.As<Napi::Object>();
  TensorArg t;
  t.storage = get_storage(env, o.Get("handle"), op, arg);
  if (t.storage->freed) fail(env, std::string(op) + ": " + arg + " has been disposed");
  Napi::Value dt = o.Get("dtype");
  if (!dt.IsString()) fail_arg(env, op, (std::string(arg) + ".dtype").c_str(), "a dtype string", describe(dt));
  t.dtype = parse_dtype(env, dt.As<Napi::String>().Utf8Value(), op, arg);
  Napi::Value off = o.Get("offset");
  const double offd = off.IsNumber() ? off.As<Napi::Number>().DoubleValue() : -1;
  if (!(offd >= 0 && offd <= static_cast<double>(kMaxSafeInt) && std::floor(offd) == offd))
    fail_arg(env, op, (std::string(arg) + ".offset").c_str(), "a non-negative integer", describe(off));
  t.offset = static_cast<int64_t>(offd);
  Napi::Value sh = o.Get("shape");
  if (!sh.IsArray()) fail_arg(env, op, (std::string(arg) + ".shape").c_str(), "an array of sizes", describe(sh));
  Napi::Array arr = sh.As<Napi::Array>();
  if (arr.Length() > static_cast<uint32_t>(kMaxRank))
    fail_arg(env, op, (std::string(arg) + ".shape").c_str(), "at most " + std::to_string(kMaxRank) + " dimensions",
             std::to_string(arr.Length()));
  t.shape.resize(arr.Length());
  double numel = 1;
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    Napi::Value d = arr.Get(k);
    const double dv = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (!(dv >= 0 && dv <= static_cast<double>(kMaxSafeInt) && std::floor(dv) == dv))
      fail_arg(env, op, (std::string(arg) + ".shape").c_str(), "non-negative integer sizes", describe(d));
    t.shape[k] = static_cast<int64_t>(dv);
    numel *= dv;
  }
  const double bytes = (offd + numel) * static_cast<double>(dtype_size(t.dtype));
  if (bytes > static_cast<double>(t.storage->nbytes))
    fail(env, std::string(op) + ": " + arg + " of shape " + shape_str(t.shape) + " at offset " + std::to_string(t.offset) +
                  " does not fit its storage of " + std::to_string(t.storage->nbytes) + " bytes");
  t.numel = static_cast<int64_t>(numel);
  return t;
}

double number(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  Napi::Value v = arg_at(info, i);
  if (!v.IsNumber()) fail_arg(info.Env(), op, arg, "a number", describe(v));
  return v.As<Napi::Number>().DoubleValue();
}

double finite_number(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  const double d = number(info, i, op, arg);
  if (!std::isfinite(d)) fail_arg(info.Env(), op, arg, "a finite number", describe(arg_at(info, i)));
  return d;
}

int64_t integer(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg, int64_t lo, int64_t hi) {
  Napi::Value v = arg_at(info, i);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi) && std::floor(d) == d))
    fail_arg(info.Env(), op, arg, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", describe(v));
  return static_cast<int64_t>(d);
}

bool boolean(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  Napi::Value v = arg_at(info, i);
  if (!v.IsBoolean()) fail_arg(info.Env(), op, arg, "a boolean", describe(v));
  return v.As<Napi::Boolean>().Value();
}

std::string string(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  Napi::Value v = arg_at(info, i);
  if (!v.IsString()) fail_arg(info.Env(), op, arg, "a string", describe(v));
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> int_list(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg) {
  Napi::Value v = arg_at(info, i);
  if (!v.IsArray()) fail_arg(info.Env(), op, arg, "an array of integers", describe(v));
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > 64) fail_arg(info.Env(), op, arg, "at most 64 integers", std::to_string(a.Length()));
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    if (!(std::fabs(d) <= static_cast<double>(kMaxSafeInt) && std::floor(d) == d))
      fail_arg(info.Env(), op, arg, "an array of integers", "an element " + describe(e));
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

void same_device(Napi::Env env, const char* op, const TensorArg& a, const char* an, const TensorArg& b, const char* bn) {
  if (a.device() != b.device()) {
    auto name = [](const Device& d) {
      return d.kind == DeviceKind::CPU ? std::string("cpu") : "cuda:" + std::to_string(d.index);
    };
    fail(env, std::string(op) + ": expected " + an + " and " + bn + " on the same device, got " + name(a.device()) + " and " +
                  name(b.device()));
  }
}

void expect_dtype(Napi::Env env, const char* op, const TensorArg& t, const char* arg, std::initializer_list<DType> ok) {
  std::string want;
  for (DType d : ok) {
    if (d == t.dtype) return;
    want += (want.empty() ? "" : " or ") + std::string(dtype_name(d));
  }
  fail_arg(env, op, (std::string(arg) + ".dtype").c_str(), want, dtype_name(t.dtype));
}

void expect_same_dtype(Napi::Env env, const char* op, const TensorArg& a, const char* an, const TensorArg& b, const char* bn) {
  if (a.dtype != b.dtype)
    fail(env, std::string(op) + ": expected " + an + " and " + bn + " of the same dtype, got " + dtype_name(a.dtype) + " and " +
                  dtype_name(b.dtype));
}

void expect_same_or_wider(Napi::Env env, const char* op, const TensorArg& x, const char* xn, const TensorArg& p, const char* pn) {
  if (p.dtype == x.dtype || (x.dtype == DType::BF16 && p.dtype == DType::F32)) return;
  fail(env, std::string(op) + ": expected " + pn + " of " + xn + "'s dtype " + dtype_name(x.dtype) + (x.dtype == DType::BF16 ? " or f32" : "") +
                ", got " + dtype_name(p.dtype));
}

void expect_shape(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const std::vector<int64_t>& shape) {
  if (t.shape != shape) fail_arg(env, op, (std::string(arg) + ".shape").c_str(), shape_str(shape), t.shape_str());
}

void expect_rank(Napi::Env env, const char* op, const TensorArg& t, const char* arg, int lo, int hi) {
  if (t.rank() < lo || t.rank() > hi) {
    std::string want = lo == hi ? "rank " + std::to_string(lo) : "rank " + std::to_string(lo) + " to " + std::to_string(hi);
    fail_arg(env, op, (std::string(arg) + ".shape").c_str(), want, t.shape_str());
  }
}

static bool overlaps(const TensorArg& a, const TensorArg& b) {
  if (a.storage != b.storage) return false;
  const char* a0 = static_cast<const char*>(a.data());
  const char* a1 = a0 + a.numel * dtype_size(a.dtype);
  const char* b0 = static_cast<const char*>(b.data());
  const char* b1 = b0 + b.numel * dtype_size(b.dtype);
  return a0 < b1 && b0 < a1;
}

void no_partial_overlap(Napi::Env env, const char* op, const TensorArg& out, const TensorArg& in, const char* in_name) {
  if (!overlaps(out, in)) return;
  if (out.data() == in.data() && out.numel == in.numel && out.dtype == in.dtype) return;
  fail(env, std::string(op) + ": out partially overlaps " + in_name);
}

void no_overlap(Napi::Env env, const char* op, const TensorArg& out, const TensorArg& in, const char* in_name) {
  no_overlap(env, op, out, "out", in, in_name);
}

void no_overlap(Napi::Env env, const char* op, const TensorArg& out, const char* out_name, const TensorArg& in, const char* in_name) {
  if (overlaps(out, in)) fail(env, std::string(op) + ": " + out_name + " must not share memory with " + in_name);
}

Stream prepare_device(Napi::Env env, const Device& d, const char* op) {
  if (d.kind == DeviceKind::CPU) return nullptr;
#ifdef CLIPFORGE_WITH_CUDA
  cuda::set_device(d.index);
  return cuda::current_stream(d.index);
#else
  fail(env, std::string(op) + ": this clipforge build has no CUDA backend");
#endif
}

}  // namespace cf::addon
