// Kernels that show what the CUDA emulator checks, built only into the emulator addon and
// exposed as emuSelfTest(name) -> { error, values } for test/emu/emulator.emu.ts. Several are
// wrong on purpose: the test asserts that the emulator reports them.
#include <napi.h>

#include <map>
#include <string>
#include <vector>

#include "mma.cuh"
#include "wgmma.cuh"

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

// ---- Hopper (wgmma.cuh) ---------------------------------------------------------------------

// Byte offset of element (r, k), k < 32, in a 128-byte-swizzled operand tile, written from the
// atom picture at the top of wgmma.cuh (16-byte chunk c of an atom's row r is stored at chunk
// c ^ r) rather than from the address formulas the emulator uses. K-major: row r holds its 32 k
// in the first 64 bytes of a 128-byte row, 8 rows to a 1024-byte atom (128 bytes per r).
// MN-major: k row k holds 64 r, 8 k rows to an atom, 4 atoms (32 k) to a group of 64 r (64
// bytes per r).
constexpr uint32_t kTileSbo = 1024, kTileMnLbo = 4 * 1024;
__device__ uint32_t tile_offset(bool mn_major, int r, int k) {
  if (mn_major) {
    const int row = k % 8, chunk = (r % 64) / 8;
    return (r / 64) * kTileMnLbo + (k / 8) * kTileSbo + row * 128 + (chunk ^ row) * 16 + (r % 8) * 2;
  }
  const int row = r % 8, chunk = k / 8;
  return (r / 8) * kTileSbo + row * 128 + (chunk ^ row) * 16 + (k % 8) * 2;
}

// D (64 x N) = A (64 x 32) B (N x 32)^T by two wgmma of 16 k each; a and b are row-major, out
// gets D row-major from the accumulator fragments. With `clobber` every thread zeroes A after
// issuing and before waiting: the product reads shared memory at the wait, so D is zero.
template <int N, bool TA, bool TB>
__global__ void wgmma_tile(const float* a, const float* b, float* out, bool clobber) {
  extern __shared__ __align__(1024) unsigned char smem[];
  unsigned char* sa = smem;
  unsigned char* sb = smem + 64 * 128;
  const int tid = threadIdx.x;
  for (int i = tid; i < 64 * 32; i += 128) *reinterpret_cast<bf16*>(sa + tile_offset(TA, i / 32, i % 32)) = cf::float_to_bf16(a[i]);
  for (int i = tid; i < N * 32; i += 128) *reinterpret_cast<bf16*>(sb + tile_offset(TB, i / 32, i % 32)) = cf::float_to_bf16(b[i]);
  __syncthreads();
  // k 16..31: 32 bytes further along the rows (K-major) or two atoms further (MN-major).
  const int next_a = TA ? 2 * kTileSbo : 32, next_b = TB ? 2 * kTileSbo : 32;
  float d[N / 2];
  cf::cuda::wgmma_fence();
  cf::cuda::wgmma_bf16<N, TA, TB>(d, cf::cuda::wgmma_desc(sa, kTileMnLbo, kTileSbo), cf::cuda::wgmma_desc(sb, kTileMnLbo, kTileSbo), false);
  cf::cuda::wgmma_bf16<N, TA, TB>(d, cf::cuda::wgmma_desc(sa + next_a, kTileMnLbo, kTileSbo),
                                  cf::cuda::wgmma_desc(sb + next_b, kTileMnLbo, kTileSbo), true);
  cf::cuda::wgmma_commit();
  if (clobber) {
    __syncthreads();
    for (int i = tid; i < 64 * 32; i += 128) *reinterpret_cast<bf16*>(sa + tile_offset(TA, i / 32, i % 32)) = cf::float_to_bf16(0.0f);
    __syncthreads();
  }
  cf::cuda::wgmma_wait<0>();
  const int w = tid / 32, g = (tid % 32) / 4, t = tid % 4;
  for (int j = 0; j < N / 8; ++j)
    for (int e = 0; e < 2; ++e) {
      out[(16 * w + g) * N + 8 * j + 2 * t + e] = d[4 * j + e];
      out[(16 * w + g + 8) * N + 8 * j + 2 * t + e] = d[4 * j + 2 + e];
    }
}

// The TMA test's tensor (80 x 5 x 3 bf16, dims[0] contiguous) and box: 64 x 4 x 2 at
// (32, -1, 2), so the box's columns 48.., its row 0 and its second slice are outside.
constexpr uint64_t kTensorDims[3] = {80, 5, 3};
constexpr uint64_t kTensorStrides[2] = {80 * 2, 80 * 5 * 2};
constexpr uint32_t kBox[3] = {64, 4, 2};
constexpr int kBoxElems = 64 * 4 * 2;

// Byte offset of box byte o in shared memory: the 16-byte chunk c of 128-byte row r is at c ^ (r % 8).
__device__ uint32_t swizzled(uint32_t o) { return o / 128 * 128 + ((o % 128 / 16) ^ (o / 128 % 8)) * 16 + o % 16; }

// out[i]: box element i (i0 + 64 (i1 + 4 i2)) after the mbarrier wait; with read_before_wait,
// out[kBoxElems + i] is what thread 0 saw there between issuing the copy and waiting.
__global__ void tma_box(const __grid_constant__ cf::cuda::TmaDesc desc, float* out, bool read_before_wait) {
  extern __shared__ __align__(1024) unsigned char smem[];
  __shared__ uint64_t bar;
  const int tid = threadIdx.x;
  if (tid == 0) {
    cf::cuda::mbar_init(&bar, 1);
    cf::cuda::fence_barrier_init();
  }
  __syncthreads();
  if (tid == 0) {
    cf::cuda::mbar_arrive_expect_tx(&bar, kBoxElems * 2);
    cf::cuda::tma_load_3d(smem, &desc, &bar, 32, -1, 2);
    if (read_before_wait)
      for (int i = 0; i < kBoxElems; ++i) out[kBoxElems + i] = cf::bf16_to_float(*reinterpret_cast<const bf16*>(smem + swizzled(2 * i)));
  }
  cf::cuda::mbar_wait(&bar, 0);
  for (int i = tid; i < kBoxElems; i += blockDim.x) out[i] = cf::bf16_to_float(*reinterpret_cast<const bf16*>(smem + swizzled(2 * i)));
}

// 64 threads through two phases of a barrier of count 64. Each thread counts itself in before
// arriving and records the count it sees after the wait: 64 everywhere unless a wait returned
// early. First, parity 1 on the fresh barrier: the phase before phase 0, complete.
__global__ void mbarrier_phases(float* out) {
  __shared__ uint64_t bar;
  __shared__ int arrived[2];
  const int tid = threadIdx.x;
  if (tid == 0) {
    cf::cuda::mbar_init(&bar, 64);
    arrived[0] = arrived[1] = 0;
  }
  __syncthreads();
  cf::cuda::mbar_wait(&bar, 1);
  for (int phase = 0; phase < 2; ++phase) {
    atomicAdd(&arrived[phase], 1);
    cf::cuda::mbar_arrive(&bar);
    cf::cuda::mbar_wait(&bar, phase);
    out[phase * 64 + tid] = static_cast<float>(arrived[phase]);
  }
}

__global__ void mbarrier_never_completes() {
  __shared__ uint64_t bar;
  if (threadIdx.x == 0) cf::cuda::mbar_init(&bar, 1);
  __syncthreads();
  cf::cuda::mbar_wait(&bar, 0);
}

// Each `what` misuses wgmma once: 0 a descriptor without the swizzle, 1 no wgmma.fence, 2 no
// wait_group, 3 thread 5 gives another descriptor, 4 operand B past the end of dynamic shared
// memory, 5 only warp 0 issues. Launched with 64 threads, any `what` is a partial warpgroup.
__global__ void wgmma_misuse(int what) {
  extern __shared__ __align__(1024) unsigned char smem[];
  float d[64];
  uint64_t desc = cf::cuda::wgmma_desc(smem, 16, 1024);
  if (what == 0) desc &= ~(uint64_t(3) << 62);
  if (what == 3 && threadIdx.x == 5) desc = cf::cuda::wgmma_desc(smem + 32, 16, 1024);
  if (what == 4) desc = cf::cuda::wgmma_desc(smem + 4096, 16, 1024);
  if (what == 5 && threadIdx.x >= 32) return;
  if (what != 1) cf::cuda::wgmma_fence();
  cf::cuda::wgmma_bf16<128, false, false>(d, desc, desc, false);
  cf::cuda::wgmma_commit();
  if (what != 2) cf::cuda::wgmma_wait<0>();
}

// Each `what` misuses TMA or an mbarrier once, in a block of one thread: 0 a wait on a barrier
// never initialized, 1 a destination off the 1024-byte alignment, 2 a copy no thread waits for,
// 3 an arrival past the count, 4 expect_tx short of the box's bytes, 5 the shared address of
// static shared memory.
__global__ void tma_misuse(const __grid_constant__ cf::cuda::TmaDesc desc, int what) {
  extern __shared__ __align__(1024) unsigned char smem[];
  __shared__ uint64_t bar;
  if (what == 0) {
    cf::cuda::mbar_wait(&bar, 0);
    return;
  }
  cf::cuda::mbar_init(&bar, 1);
  if (what == 1) cf::cuda::tma_load_3d(smem + 128, &desc, &bar, 0, 0, 0);
  if (what == 2) {
    cf::cuda::mbar_arrive_expect_tx(&bar, kBoxElems * 2);
    cf::cuda::tma_load_3d(smem, &desc, &bar, 0, 0, 0);
  }
  if (what == 3) {
    cf::cuda::mbar_arrive_expect_tx(&bar, kBoxElems * 2);
    cf::cuda::mbar_arrive(&bar);
  }
  if (what == 4) {
    cf::cuda::mbar_arrive_expect_tx(&bar, kBoxElems);
    cf::cuda::tma_load_3d(smem, &desc, &bar, 0, 0, 0);
    cf::cuda::mbar_wait(&bar, 0);
  }
  if (what == 5) cf::cuda::smem_u32(&bar);
}

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

template <int N, bool TA, bool TB>
Result run_wgmma_tile(bool clobber) {
  std::vector<float> init(64 * 32 + N * 32 + 64 * N);
  for (int i = 0; i < 64 * 32; ++i) init[i] = static_cast<float>((i / 32 * 7 + i % 32 * 3) % 9 - 4);
  for (int i = 0; i < N * 32; ++i) init[64 * 32 + i] = static_cast<float>((i / 32 * 5 + i % 32 * 11) % 7 - 3);
  return with_buffer(init.size(), init, [clobber](float* d) {
    wgmma_tile<N, TA, TB><<<1, 128, (64 + N) * 128>>>(d, d + 64 * 32, d + 64 * 32 + N * 32, clobber);
    return take_error();
  });
}

// The TMA tests' tensor, element (x, y, z) = 1 + (x + 7 y + 13 z) % 97, and its tensor map.
struct Tensor3 {
  bf16* data = nullptr;
  cf::cuda::TmaDesc desc;
  std::string error;
  Tensor3() {
    std::vector<bf16> host(kTensorDims[0] * kTensorDims[1] * kTensorDims[2]);
    for (size_t i = 0; i < host.size(); ++i) {
      const size_t x = i % 80, y = i / 80 % 5, z = i / 400;
      host[i] = cf::float_to_bf16(static_cast<float>(1 + (x + 7 * y + 13 * z) % 97));
    }
    cudaMalloc(reinterpret_cast<void**>(&data), host.size() * sizeof(bf16));
    cudaMemcpyAsync(data, host.data(), host.size() * sizeof(bf16), cudaMemcpyHostToDevice, nullptr);
    error = cf::cuda::encode_tma_bf16(&desc, data, kTensorDims, kTensorStrides, kBox);
  }
  ~Tensor3() { cudaFree(data); }
};

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
  static const std::map<std::string, Result (*)(bool)> tiles = {
      {"wgmma_128_kk", run_wgmma_tile<128, false, false>}, {"wgmma_128_km", run_wgmma_tile<128, false, true>},
      {"wgmma_128_mk", run_wgmma_tile<128, true, false>},  {"wgmma_128_mm", run_wgmma_tile<128, true, true>},
      {"wgmma_256_kk", run_wgmma_tile<256, false, false>}, {"wgmma_256_km", run_wgmma_tile<256, false, true>},
      {"wgmma_256_mk", run_wgmma_tile<256, true, false>},  {"wgmma_256_mm", run_wgmma_tile<256, true, true>},
  };
  if (tiles.count(name)) return tiles.at(name)(false);
  if (name == "wgmma_clobbered") return run_wgmma_tile<128, false, false>(true);
  if (name == "tma_box" || name == "tma_read_before_wait") {
    const Tensor3 t;
    if (!t.error.empty()) return {t.error, {}};
    const bool early = name == "tma_read_before_wait";
    return with_buffer(2 * kBoxElems, {}, [&t, early](float* d) {
      tma_box<<<1, 32, kBoxElems * 2>>>(t.desc, d, early);
      return take_error();
    });
  }
  if (name == "mbarrier_phases")
    return with_buffer(128, {}, [](float* d) {
      mbarrier_phases<<<1, 64>>>(d);
      return take_error();
    });
  if (name == "mbarrier_never_completes") {
    mbarrier_never_completes<<<1, 32>>>();
    return {take_error(), {}};
  }
  if (name == "hopper_errors") {
    Result r;
    for (int what = 0; what < 6; ++what) {
      wgmma_misuse<<<1, 128, 16384>>>(what);
      r.error += take_error() + "\n";
    }
    wgmma_misuse<<<1, 64, 16384>>>(6);
    r.error += take_error() + "\n";
    const Tensor3 t;
    for (int what = 0; what < 6; ++what) {
      tma_misuse<<<1, 1, 2048>>>(t.desc, what);
      r.error += take_error() + "\n";
    }
    cf::cuda::TmaDesc desc;
    const uint64_t odd_stride[2] = {168, 840}, dims0[3] = {80, 0, 3};
    const uint32_t wide[3] = {72, 4, 2}, empty[3] = {64, 0, 2};
    r.error += cf::cuda::encode_tma_bf16(&desc, t.data, kTensorDims, odd_stride, kBox) + "\n";
    r.error += cf::cuda::encode_tma_bf16(&desc, t.data + 1, kTensorDims, kTensorStrides, kBox) + "\n";
    r.error += cf::cuda::encode_tma_bf16(&desc, t.data, dims0, kTensorStrides, kBox) + "\n";
    r.error += cf::cuda::encode_tma_bf16(&desc, t.data, kTensorDims, kTensorStrides, wide) + "\n";
    r.error += cf::cuda::encode_tma_bf16(&desc, t.data, kTensorDims, kTensorStrides, empty);
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
