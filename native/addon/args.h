// Argument parsing and validation for the N-API glue. Every exported function checks its
// arguments here before touching memory and throws a JS Error shaped
// "<op>: expected <what> for <arg>, got <value>", the same shape lib/tensor/check.ts uses.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "core.h"

namespace cf::addon {

// A block of memory on one device; JS holds it as a type-tagged External.
struct Storage {
  void* ptr = nullptr;
  size_t nbytes = 0;
  Device device;
  bool freed = false;
};

// A tensor argument: storage, element offset, dtype and shape, validated against the storage.
struct TensorArg {
  Storage* storage = nullptr;
  int64_t offset = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int64_t numel = 1;

  Device device() const { return storage->device; }
  void* data() const { return static_cast<char*>(storage->ptr) + offset * static_cast<int64_t>(dtype_size(dtype)); }
  template <typename T> T* as() const { return static_cast<T*>(data()); }
  int rank() const { return static_cast<int>(shape.size()); }
  int64_t dim(int i) const { return shape[i < 0 ? i + rank() : i]; }
  std::string shape_str() const;
};

[[noreturn]] void fail(Napi::Env env, const std::string& msg);
[[noreturn]] void fail_arg(Napi::Env env, const char* op, const char* arg, const std::string& expected,
                           const std::string& got);
std::string describe(Napi::Value v);
std::string shape_str(const std::vector<int64_t>& shape);

// Returns the memory to its allocator; idempotent.
void release_storage(Storage* s);
Napi::External<Storage> make_storage(Napi::Env env, Storage* s);
Storage* get_storage(Napi::Env env, Napi::Value v, const char* op, const char* arg);
void check_arg_count(const Napi::CallbackInfo& info, size_t n, const char* op);

TensorArg tensor(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg);
// A tensor given as a value (an element of an array argument) rather than a positional argument.
TensorArg tensor_value(Napi::Env env, Napi::Value v, const char* op, const char* arg);
// Argument i as an array (of tensors or numbers, read by the caller).
Napi::Array array_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg);
double number(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg);
double finite_number(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg);
int64_t integer(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg, int64_t lo, int64_t hi);
bool boolean(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg);
std::string string(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg);
std::vector<int64_t> int_list(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg);
Device parse_device(Napi::Env env, const std::string& s, const char* op, const char* arg);
// Argument i names a CUDA device ('cuda' or 'cuda:N'); anything else, 'cpu' included, is an error.
Device cuda_device(const Napi::CallbackInfo& info, size_t i, const char* op, const char* arg);
DType parse_dtype(Napi::Env env, const std::string& s, const char* op, const char* arg);

// Checks shared by most ops.
void same_device(Napi::Env env, const char* op, const TensorArg& a, const char* an, const TensorArg& b, const char* bn);
void expect_dtype(Napi::Env env, const char* op, const TensorArg& t, const char* arg, std::initializer_list<DType> ok);
void expect_same_dtype(Napi::Env env, const char* op, const TensorArg& a, const char* an, const TensorArg& b, const char* bn);
// w has x's dtype, or f32 beside bf16 x (CF_SAME_OR_WIDER_DTYPES): a norm's parameters, a sum's output.
void expect_same_or_wider(Napi::Env env, const char* op, const TensorArg& x, const char* xn, const TensorArg& p, const char* pn);
void expect_shape(Napi::Env env, const char* op, const TensorArg& t, const char* arg, const std::vector<int64_t>& shape);
void expect_rank(Napi::Env env, const char* op, const TensorArg& t, const char* arg, int lo, int hi);
// Output must not overlap an input unless it is exactly the same memory (in-place ops).
void no_partial_overlap(Napi::Env env, const char* op, const TensorArg& out, const TensorArg& in, const char* in_name);
void no_overlap(Napi::Env env, const char* op, const TensorArg& out, const TensorArg& in, const char* in_name);
// The same for an output not named "out".
void no_overlap(Napi::Env env, const char* op, const TensorArg& out, const char* out_name, const TensorArg& in, const char* in_name);

// The stream and device context for an op on `d`; throws a clear error when `d` is CUDA
// and the addon was built without it.
Stream prepare_device(Napi::Env env, const Device& d, const char* op);

// Wraps an exported function: cf::Error and std::exception become JS Errors.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "clipforge: out of host memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

#define CF_EXPORT(exports, name, fn) \
  (exports).Set(name, Napi::Function::New((exports).Env(), ::cf::addon::guarded<fn>, name))

}  // namespace cf::addon

// Calls the op's implementation for the backend of `dev`: cf::cpu::fn(...) or
// cf::cuda::fn(...) followed by a launch check. Arguments are the same for both.
#ifdef CLIPFORGE_WITH_CUDA
#include "runtime.h"
#define CF_BACKEND_CALL(dev, fn, ...)                      \
  do {                                                     \
    if ((dev).kind == ::cf::DeviceKind::CUDA) {            \
      ::cf::cuda::fn(__VA_ARGS__);                         \
      ::cf::cuda::check_launch(#fn);                       \
    } else {                                               \
      ::cf::cpu::fn(__VA_ARGS__);                          \
    }                                                      \
  } while (0)
#else
#define CF_BACKEND_CALL(dev, fn, ...) ::cf::cpu::fn(__VA_ARGS__)
#endif
