// Kernels that show what the CUDA emulator checks, built only into the emulator addon and
// exposed as emuSelfTest(name) -> { error, values } for test/emu/emulator.emu.ts. Several are
// wrong on purpose: the test asserts that the emulator reports them.
#include <napi.h>

#include <string>
#include <vector>

#include "mma.cuh"

namespace {

using cf::bf16;

__global__ void shuffle_sum(float* out) {
  float v = static_cast<float>(threadIdx.x + 1);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  out[threadIdx.x] = v;
}

__global__ void divergent_barrier() {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

__global__ void deadlock() {
  if (threadIdx.x == 0) __syncwarp(0x3u);
  else __syncthreads();
}

__global__ void shuffle_with_exited_lane(float* out) {
  if (threadIdx.x == 1) return;
  out[0] = __shfl_xor_sync(0x3u, 1.0f, 1);
}

__global__ void read_unwritten_shared(float* out) {
  __shared__ float s[32];
  out[threadIdx.x] = s[threadIdx.x];
}

// Thread t reads what thread t + 1 wrote, with or without the barrier that orders them.
__global__ void neighbour(float* out, bool barrier) {
  __shared__ float s[64];
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  if (barrier) __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}

// Each thread copies 4 floats in each of two cp.async groups: out holds what shared memory
// shows before any wait, after wait<1> (the first group only) and after wait<0>.
__global__ void async_copies(const float* src, float* out) {
  __shared__ __align__(16) float s[2][32 * 4];
  const int t = threadIdx.x;
  cf::cuda::cp_async16(&s[0][t * 4], src + t * 4);
  cf::cuda::cp_async_commit();
  cf::cuda::cp_async16(&s[1][t * 4], src + 128 + t * 4);
  cf::cuda::cp_async_commit();
  out[t] = s[0][t * 4];
  cf::cuda::cp_async_wait<1>();
  out[32 + t] = s[0][t * 4];
  out[64 + t] = s[1][t * 4];
  cf::cuda::cp_async_wait<0>();
  out[96 + t] = s[1][t * 4];
}

// C (16 x 8) = A (16 x 16) B (16 x 8) through ldmatrix fragments and mma.sync, twice: with B
// stored n-major (SmemFrags::b) and k-major (SmemFrags::bt). a is row-major, b is k-major.
__global__ void mma_tile(const float* a, const float* b, float* out) {
  constexpr int kLd = 24;
  __shared__ __align__(16) bf16 sa[16 * kLd];
  __shared__ __align__(16) bf16 sb_nk[16 * kLd];
  __shared__ __align__(16) bf16 sb_kn[16 * kLd];
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) {
    const int r = i / 16, c = i % 16;
    sa[r * kLd + c] = cf::float_to_bf16(a[i]);
    sb_kn[r * kLd + c] = cf::float_to_bf16(c < 8 ? b[r * 8 + c] : 0.0f);
    sb_nk[r * kLd + c] = cf::float_to_bf16(r < 8 ? b[c * 8 + r] : 0.0f);
  }
  __syncwarp();
  uint32_t fa[4], fb[4], fbt[4];
  cf::cuda::SmemFrags<kLd>::a(fa, sa, 0, 0, lane);
  cf::cuda::SmemFrags<kLd>::b(fb, sb_nk, 0, 0, lane);
  cf::cuda::SmemFrags<kLd>::bt(fbt, sb_kn, 0, 0, lane);
  float c[4] = {0, 0, 0, 0}, ct[4] = {0, 0, 0, 0};
  cf::cuda::mma_bf16(c, fa, fb[0], fb[1]);
  cf::cuda::mma_bf16(ct, fa, fbt[0], fbt[1]);
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int r = g + 8 * (i / 2), n = 2 * t + i % 2;
    out[r * 8 + n] = c[i];
    out[128 + r * 8 + n] = ct[i];
  }
}

template <int kUnused>
__global__ void big_dynamic_shared(float* out) {
  extern __shared__ float dyn[];
  dyn[threadIdx.x] = 1.0f;
  out[threadIdx.x] = dyn[threadIdx.x];
}

__global__ void __launch_bounds__(64) bounded(float* out) { out[threadIdx.x] = 0.0f; }

std::string take_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

struct Result {
  std::string error;
  std::vector<float> values;
};

// Runs fn(device buffer of n floats, filled from init), then reads the buffer back.
template <typename F>
Result with_buffer(size_t n, const std::vector<float>& init, F&& fn) {
  float* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), n * sizeof(float));
  std::vector<float> host(n, 0.0f);
  std::copy(init.begin(), init.end(), host.begin());
  cudaMemcpyAsync(d, host.data(), n * sizeof(float), cudaMemcpyHostToDevice, nullptr);
  Result r;
  r.error = fn(d);
  cudaMemcpyAsync(host.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost, nullptr);
  cudaFree(d);
  r.values = host;
  return r;
}

Result run(const std::string& name) {
  if (name == "shuffle_sum")
    return with_buffer(32, {}, [](float* d) {
      shuffle_sum<<<1, 32>>>(d);
      return take_error();
    });
  if (name == "divergent_barrier") {
    divergent_barrier<<<1, 64>>>();
    return {take_error(), {}};
  }
  if (name == "deadlock") {
    deadlock<<<1, 64>>>();
    return {take_error(), {}};
  }
  if (name == "shuffle_with_exited_lane")
    return with_buffer(1, {}, [](float* d) {
      shuffle_with_exited_lane<<<1, 32>>>(d);
      return take_error();
    });
  if (name == "read_unwritten_shared")
    return with_buffer(32, {}, [](float* d) {
      read_unwritten_shared<<<1, 32>>>(d);
      return take_error();
    });
  if (name == "neighbour" || name == "neighbour_with_barrier") {
    const bool barrier = name == "neighbour_with_barrier";
    return with_buffer(64, {}, [barrier](float* d) {
      neighbour<<<1, 64>>>(d, barrier);
      return take_error();
    });
  }
  if (name == "async_copies") {
    std::vector<float> init(256 + 128);
    for (int i = 0; i < 256; ++i) init[i] = static_cast<float>(i);
    return with_buffer(256 + 128, init, [](float* d) {
      async_copies<<<1, 32>>>(d, d + 256);
      return take_error();
    });
  }
  if (name == "mma_tile") {
    std::vector<float> init(256 + 128 + 256);
    for (int i = 0; i < 256; ++i) init[i] = static_cast<float>((i * 7) % 11 - 5);
    for (int i = 0; i < 128; ++i) init[256 + i] = static_cast<float>((i * 5) % 9 - 4);
    return with_buffer(init.size(), init, [](float* d) {
      mma_tile<<<1, 32>>>(d, d + 256, d + 384);
      return take_error();
    });
  }
  if (name == "launch_limits") {
    Result r;
    float* d = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&d), 128 * sizeof(float));
    big_dynamic_shared<0><<<dim3(1, 70000), 32>>>(d);
    r.error += take_error() + "\n";
    big_dynamic_shared<0><<<1, 2048>>>(d);
    r.error += take_error() + "\n";
    big_dynamic_shared<0><<<0, 32>>>(d);
    r.error += take_error() + "\n";
    big_dynamic_shared<0><<<1, 32, 64 * 1024>>>(d);
    r.error += take_error() + "\n";
    cudaFuncSetAttribute(big_dynamic_shared<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
    big_dynamic_shared<0><<<1, 32, 64 * 1024>>>(d);
    r.error += take_error() + "\n";
    bounded<<<1, 128>>>(d);
    r.error += take_error();
    cudaFree(d);
    return r;
  }
  return {"no self-test named " + name, {}};
}

Napi::Value emu_self_test(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "emuSelfTest(name: string)");
  const Result r = run(info[0].As<Napi::String>().Utf8Value());
  Napi::Object out = Napi::Object::New(env);
  out.Set("error", r.error.empty() ? env.Null() : Napi::String::New(env, r.error));
  Napi::Float32Array values = Napi::Float32Array::New(env, r.values.size());
  std::copy(r.values.begin(), r.values.end(), values.Data());
  out.Set("values", values);
  return out;
}

}  // namespace

namespace cf::addon {
void register_emu_selftest(Napi::Env env, Napi::Object exports) { exports.Set("emuSelfTest", Napi::Function::New(env, emu_self_test)); }
}  // namespace cf::addon
