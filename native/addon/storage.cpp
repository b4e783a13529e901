// Storage handles, host<->device transfers, memory statistics and backend information.
#include <unistd.h>

#include <cmath>

#include "../cpu/threadpool.h"
#include "args.h"
#include "memory.h"
#include "register.h"
#ifdef CLIPFORGE_WITH_CUDA
#include "runtime.h"
#endif

namespace cf::addon {
namespace {

double host_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 1e18;
}

std::string device_name(const Device& d) {
  return d.kind == DeviceKind::CPU ? std::string("cpu") : "cuda:" + std::to_string(d.index);
}

#ifdef CLIPFORGE_WITH_CUDA
int cuda_devices(std::string* why) {
  static std::string reason;
  static int n = cuda::device_count(&reason);
  if (why) *why = reason;
  return n;
}
#endif

Napi::Value alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "alloc";
  const double nbytes = number(info, 0, op, "nbytes");
  if (!(nbytes >= 0 && std::floor(nbytes) == nbytes && nbytes <= 9007199254740991.0))
    fail_arg(env, op, "nbytes", "a non-negative integer", describe(info[0]));
  const Device d = parse_device(env, string(info, 1, op, "device"), op, "device");
  auto* s = new Storage();
  s->nbytes = static_cast<size_t>(nbytes);
  s->device = d;
  try {
    if (d.kind == DeviceKind::CPU) {
      if (nbytes > host_memory_bytes())
        fail(env, "alloc: " + std::to_string(static_cast<int64_t>(nbytes)) + " bytes is more than this machine's memory");
      s->ptr = cpu::alloc(s->nbytes);
    } else {
#ifdef CLIPFORGE_WITH_CUDA
      std::string why;
      const int n = cuda_devices(&why);
      if (d.index >= n) fail(env, "alloc: no device " + device_name(d) + " (" + (n ? std::to_string(n) + " found" : why) + ")");
      s->ptr = cuda::alloc(d.index, s->nbytes, prepare_device(env, d, op));
#else
      fail(env, "alloc: this clipforge build has no CUDA backend (" CLIPFORGE_NO_CUDA_REASON ")");
#endif
    }
  } catch (...) {
    delete s;
    throw;
  }
  return make_storage(env, s);
}

Napi::Value free_storage(const Napi::CallbackInfo& info) {
  release_storage(get_storage(info.Env(), info[0], "free", "handle"));
  return info.Env().Undefined();
}

Napi::Value storage_bytes(const Napi::CallbackInfo& info) {
  Storage* s = get_storage(info.Env(), info[0], "storageBytes", "handle");
  return Napi::Number::New(info.Env(), static_cast<double>(s->nbytes));
}

// Moves `nbytes` between a host buffer and a tensor's memory on any device.
void host_transfer(const TensorArg& t, void* host, size_t nbytes, bool to_device) {
  if (t.device().kind == DeviceKind::CPU) {
    if (to_device) memcpy(t.data(), host, nbytes);
    else memcpy(host, t.data(), nbytes);
    return;
  }
#ifdef CLIPFORGE_WITH_CUDA
  Stream s = cuda::current_stream(t.device().index);
  cuda::set_device(t.device().index);
  if (to_device) cuda::copy_bytes(t.device().index, t.data(), host, nbytes, 0, s);
  else cuda::copy_bytes(t.device().index, host, t.data(), nbytes, 1, s);
#endif
}

Napi::Value upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "upload";
  TensorArg t = tensor(info, 0, op, "tensor");
  if (!info[1].IsTypedArray()) fail_arg(env, op, "data", "a typed array", describe(info[1]));
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  const napi_typedarray_type kind = ta.TypedArrayType();
  if (static_cast<int64_t>(ta.ElementLength()) != t.numel)
    fail(env, std::string(op) + ": expected " + std::to_string(t.numel) + " values for a tensor of shape " + t.shape_str() +
                  ", got " + std::to_string(ta.ElementLength()));
  void* src = static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  const bool ok = (t.dtype == DType::F32 && kind == napi_float32_array) || (t.dtype == DType::I32 && kind == napi_int32_array) ||
                  (t.dtype == DType::BF16 && (kind == napi_float32_array || kind == napi_uint16_array));
  if (!ok) fail(env, std::string(op) + ": data of this typed array type cannot fill a " + dtype_name(t.dtype) + " tensor");
  if (t.dtype == DType::BF16 && kind == napi_float32_array) {
    std::vector<bf16> tmp(t.numel);
    const float* f = static_cast<const float*>(src);
    for (int64_t i = 0; i < t.numel; ++i) tmp[i] = float_to_bf16(f[i]);
    host_transfer(t, tmp.data(), tmp.size() * 2, true);
  } else {
    host_transfer(t, src, t.numel * dtype_size(t.dtype), true);
  }
  return env.Undefined();
}

Napi::Value download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TensorArg t = tensor(info, 0, "download", "tensor");
  if (t.dtype == DType::I32) {
    Napi::Int32Array out = Napi::Int32Array::New(env, t.numel);
    host_transfer(t, out.Data(), t.numel * 4, false);
    return out;
  }
  Napi::Float32Array out = Napi::Float32Array::New(env, t.numel);
  if (t.dtype == DType::F32) {
    host_transfer(t, out.Data(), t.numel * 4, false);
  } else {
    std::vector<bf16> tmp(t.numel);
    host_transfer(t, tmp.data(), t.numel * 2, false);
    float* o = out.Data();
    for (int64_t i = 0; i < t.numel; ++i) o[i] = bf16_to_float(tmp[i]);
  }
  return out;
}

// copy(src, dst): same dtype and element count, any pair of devices.
Napi::Value copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "copy";
  TensorArg src = tensor(info, 0, op, "src"), dst = tensor(info, 1, op, "dst");
  expect_same_dtype(env, op, src, "src", dst, "dst");
  if (src.numel != dst.numel)
    fail(env, std::string(op) + ": expected src and dst with the same number of elements, got " + src.shape_str() + " and " +
                  dst.shape_str());
  no_partial_overlap(env, op, dst, src, "src");
  const size_t nbytes = src.numel * dtype_size(src.dtype);
  if (src.device().kind == DeviceKind::CPU && dst.device().kind == DeviceKind::CPU) {
    if (dst.data() != src.data()) memcpy(dst.data(), src.data(), nbytes);
  } else if (src.device().kind == DeviceKind::CPU) {
    host_transfer(dst, src.data(), nbytes, true);
  } else if (dst.device().kind == DeviceKind::CPU) {
    host_transfer(src, dst.data(), nbytes, false);
  } else {
#ifdef CLIPFORGE_WITH_CUDA
    if (src.device() != dst.device()) {
      // Across GPUs: finish the source's pending work, then a peer copy on the destination stream.
      cuda::synchronize(src.device().index);
    }
    Stream s = prepare_device(env, dst.device(), op);
    cuda::copy_bytes(dst.device().index, dst.data(), src.data(), nbytes, 2, s);
#endif
  }
  return env.Undefined();
}

Napi::Object stats_object(Napi::Env env, const MemoryStats& m) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("allocatedBytes", static_cast<double>(m.allocated_bytes));
  o.Set("peakAllocatedBytes", static_cast<double>(m.peak_allocated_bytes));
  o.Set("reservedBytes", static_cast<double>(m.reserved_bytes));
  o.Set("liveBlocks", static_cast<double>(m.live_blocks));
  o.Set("allocCalls", static_cast<double>(m.alloc_calls));
  o.Set("systemAllocs", static_cast<double>(m.system_allocs));
  o.Set("cacheHits", static_cast<double>(m.cache_hits));
  return o;
}

Napi::Value memory_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cpu", stats_object(env, cpu::memory_stats()));
  Napi::Array cuda_stats = Napi::Array::New(env);
#ifdef CLIPFORGE_WITH_CUDA
  const int n = cuda_devices(nullptr);
  for (int i = 0; i < n; ++i) cuda_stats.Set(static_cast<uint32_t>(i), stats_object(env, cuda::memory_stats(i)));
#endif
  o.Set("cuda", cuda_stats);
  return o;
}

Napi::Value empty_cache(const Napi::CallbackInfo& info) {
  cpu::empty_cache();
#ifdef CLIPFORGE_WITH_CUDA
  const int n = cuda_devices(nullptr);
  for (int i = 0; i < n; ++i) cuda::empty_cache(i);
#endif
  return info.Env().Undefined();
}

Napi::Value synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Device d = parse_device(env, string(info, 0, "synchronize", "device"), "synchronize", "device");
  if (d.kind == DeviceKind::CUDA) {
#ifdef CLIPFORGE_WITH_CUDA
    if (d.index >= cuda_devices(nullptr)) fail(env, "synchronize: no device " + device_name(d));
    cuda::synchronize(d.index);
#else
    fail(env, "synchronize: this clipforge build has no CUDA backend");
#endif
  }
  return env.Undefined();
}

Napi::Value backend_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  Napi::Array backends = Napi::Array::New(env);
  backends.Set(0u, "cpu");
  Napi::Array devices = Napi::Array::New(env);
#ifdef CLIPFORGE_WITH_CUDA
  backends.Set(1u, "cuda");
  std::string why;
  const int n = cuda_devices(&why);
  for (int i = 0; i < n; ++i) {
    const cuda::DeviceInfo d = cuda::device_info(i);
    Napi::Object dev = Napi::Object::New(env);
    dev.Set("index", i);
    dev.Set("name", d.name);
    dev.Set("totalMemory", static_cast<double>(d.total_memory));
    dev.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
    dev.Set("multiprocessors", d.multiprocessors);
    devices.Set(static_cast<uint32_t>(i), dev);
  }
  o.Set("cudaVersion", cuda::runtime_version());
  if (n == 0) o.Set("cudaUnavailable", why);
#else
  o.Set("cudaUnavailable", CLIPFORGE_NO_CUDA_REASON);
#endif
  o.Set("backends", backends);
  o.Set("devices", devices);
  o.Set("threads", cpu::num_threads());
  return o;
}

Napi::Value set_num_threads(const Napi::CallbackInfo& info) {
  cpu::set_num_threads(static_cast<int>(integer(info, 0, "setNumThreads", "n", 1, 1024)));
  return info.Env().Undefined();
}

}  // namespace

void register_storage(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "alloc", alloc);
  CF_EXPORT(exports, "free", free_storage);
  CF_EXPORT(exports, "storageBytes", storage_bytes);
  CF_EXPORT(exports, "upload", upload);
  CF_EXPORT(exports, "download", download);
  CF_EXPORT(exports, "copy", copy);
  CF_EXPORT(exports, "memoryStats", memory_stats);
  CF_EXPORT(exports, "emptyCache", empty_cache);
  CF_EXPORT(exports, "synchronize", synchronize);
  CF_EXPORT(exports, "info", backend_info);
  CF_EXPORT(exports, "setNumThreads", set_num_threads);
}

}  // namespace cf::addon
