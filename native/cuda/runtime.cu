// CUDA device discovery, per-device streams, synchronization and launch checks.
#include <mutex>
#include <vector>

#include "check.cuh"
#include "runtime.h"

namespace cf::cuda {
namespace {
std::mutex g_mutex;
std::vector<cudaStream_t> g_streams;
}  // namespace

int device_count(std::string* why_none) {
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) {
    cudaGetLastError();
    if (why_none) *why_none = "no NVIDIA driver found";
    return 0;
  }
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why_none) *why_none = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    return 0;
  }
  if (n == 0 && why_none) *why_none = "no CUDA device found";
  return n;
}

DeviceInfo device_info(int device) {
  cudaDeviceProp p;
  CF_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  DeviceInfo d;
  d.name = p.name;
  d.total_memory = static_cast<int64_t>(p.totalGlobalMem);
  d.major = p.major;
  d.minor = p.minor;
  d.multiprocessors = p.multiProcessorCount;
  return d;
}

void set_device(int device) { CF_CUDA_CHECK(cudaSetDevice(device)); }

Stream current_stream(int device) {
  std::lock_guard<std::mutex> lk(g_mutex);
  if (static_cast<int>(g_streams.size()) <= device) g_streams.resize(device + 1, nullptr);
  if (!g_streams[device]) {
    CF_CUDA_CHECK(cudaSetDevice(device));
    CF_CUDA_CHECK(cudaStreamCreateWithFlags(&g_streams[device], cudaStreamNonBlocking));
  }
  return g_streams[device];
}

void synchronize(int device) {
  CF_CUDA_CHECK(cudaSetDevice(device));
  CF_CUDA_CHECK(cudaStreamSynchronize(as_cuda(current_stream(device))));
  CF_CUDA_CHECK(cudaGetLastError());
}

void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
#ifdef CLIPFORGE_CUDA_SYNC_CHECK
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
#endif
  if (e != cudaSuccess) throw Error(std::string(what) + ": CUDA kernel failed: " + cudaGetErrorString(e));
}

std::string runtime_version() {
  int rt = 0, drv = 0;
  cudaRuntimeGetVersion(&rt);
  cudaDriverGetVersion(&drv);
  auto fmt = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
  return "runtime " + fmt(rt) + ", driver " + (drv ? fmt(drv) : std::string("none"));
}

}  // namespace cf::cuda
