// AdamW over a list of parameter tensors in one launch (formula in adamw.h). The host splits
// every tensor into chunks of kChunk elements; block b updates chunk tasks[b] of tensor
// tensors[tasks[b].tensor]. The tensor and task tables travel to the device in one copy:
// they are written into a pinned staging buffer (reused once the copy out of it has completed,
// which an event tells) and copied asynchronously into a block from the
// caching allocator, which is handed back on the same stream right after the launch. The
// staging buffers form a ring of kStagingSlots, so the host may run that many steps ahead of
// the device before a step waits for an old copy to finish.
// Floor: memory bound; 28 + sizeof(grad) bytes per element.
#include <mutex>
#include <vector>

#include "adamw.h"
#include "check.cuh"
#include "memory.h"

namespace cf::cuda {
namespace {

constexpr int64_t kChunk = 1 << 16;
constexpr int kThreads = 512;

struct Task {
  int32_t tensor;
  int32_t chunk;
};

template <typename G>
__global__ void __launch_bounds__(kThreads) adamw_kernel(const AdamWTensor* tensors, const Task* tasks, AdamWBetas b) {
  const Task task = tasks[blockIdx.x];
  const AdamWTensor t = tensors[task.tensor];
  const G* g = static_cast<const G*>(t.grad);
  const int64_t begin = static_cast<int64_t>(task.chunk) * kChunk;
  const int64_t end = begin + kChunk < t.numel ? begin + kChunk : t.numel;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    float p = t.param[i], m = t.exp_avg[i], v = t.exp_avg_sq[i];
    adamw_element(p, Elem<G>::load(g, i), m, v, t, b);
    t.param[i] = p;
    t.exp_avg[i] = m;
    t.exp_avg_sq[i] = v;
  }
}

struct Staging {
  void* host = nullptr;
  size_t capacity = 0;
  cudaEvent_t copied = nullptr;
};

constexpr int kStagingSlots = 4;

struct DeviceStaging {
  Staging slots[kStagingSlots];
  int next = 0;
};

std::mutex g_mutex;
std::vector<DeviceStaging> g_staging;

}  // namespace

void adamw_multi(DType grad_dtype, const AdamWTensor* tensors, int64_t count, const AdamWBetas& betas, Stream s) {
  std::vector<Task> tasks;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t chunks = (tensors[k].numel + kChunk - 1) / kChunk;
    for (int64_t c = 0; c < chunks; ++c) tasks.push_back({static_cast<int32_t>(k), static_cast<int32_t>(c)});
  }
  if (tasks.empty()) return;
  const size_t tensor_bytes = static_cast<size_t>(count) * sizeof(AdamWTensor);
  const size_t bytes = tensor_bytes + tasks.size() * sizeof(Task);
  const int device = current_device();

  std::lock_guard<std::mutex> lk(g_mutex);
  if (static_cast<int>(g_staging.size()) <= device) g_staging.resize(device + 1);
  DeviceStaging& ring = g_staging[device];
  Staging& st = ring.slots[ring.next];
  ring.next = (ring.next + 1) % kStagingSlots;
  if (st.copied) CF_CUDA_CHECK(cudaEventSynchronize(st.copied));
  else CF_CUDA_CHECK(cudaEventCreateWithFlags(&st.copied, cudaEventDisableTiming));
  if (st.capacity < bytes) {
    if (st.host) CF_CUDA_CHECK(cudaFreeHost(st.host));
    st.host = nullptr;
    st.capacity = 0;
    CF_CUDA_CHECK(cudaMallocHost(&st.host, bytes * 2));
    st.capacity = bytes * 2;
  }
  char* host = static_cast<char*>(st.host);
  memcpy(host, tensors, tensor_bytes);
  memcpy(host + tensor_bytes, tasks.data(), tasks.size() * sizeof(Task));

  char* table = static_cast<char*>(alloc(device, bytes, s));
  try {
    CF_CUDA_CHECK(cudaMemcpyAsync(table, host, bytes, cudaMemcpyHostToDevice, as_cuda(s)));
    CF_CUDA_CHECK(cudaEventRecord(st.copied, as_cuda(s)));
    const auto* dev_tensors = reinterpret_cast<const AdamWTensor*>(table);
    const auto* dev_tasks = reinterpret_cast<const Task*>(table + tensor_bytes);
    const unsigned grid = static_cast<unsigned>(tasks.size());
    CF_FLOAT_DTYPE(grad_dtype, G, adamw_kernel<G><<<grid, kThreads, 0, as_cuda(s)>>>(dev_tensors, dev_tasks, betas));
  } catch (...) {
    free(device, table, s);
    throw;
  }
  free(device, table, s);
}

}  // namespace cf::cuda
