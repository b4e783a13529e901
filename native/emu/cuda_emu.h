// A CPU emulator for the part of CUDA that native/cuda uses, so that the CUDA backend's
// kernels can run, and be compared with the CPU backend, on a machine without a GPU.
//
// scripts/cuda-emu.mjs rewrites each .cu file into C++ (launches `k<<<g, b, smem, s>>>(args)`
// become cf_emu::launch calls, `__shared__` declarations become per-block allocations) and
// this header supplies the rest: the device-language keywords, the built-in variables, the
// intrinsics, the warp-collective instructions of mma.cuh, the Hopper instructions of wgmma.cuh
// (TMA tile loads, mbarriers, wgmma), and the runtime API.
//
// Every thread of a block is a fiber; blocks run one after another on the calling thread, and
// a thread runs until its next barrier, warp collective or wait on an mbarrier or wgmma (the
// points where CUDA threads may rely on each other's writes), then the next thread runs.
//
// Checked, as a GPU would refuse them: block and grid limits, zero dimensions, a block larger
// than the kernel's __launch_bounds__, dynamic shared memory over 48 KB without the opt-in or
// over the device's maximum.
// Checked, as only tools would on a GPU: a __syncthreads reached at different places in one
// block; warp collectives whose lanes disagree on the mask or name exited lanes; deadlocks;
// misaligned ldmatrix and cp.async addresses; shared memory or a new tensor read before it is
// written (both start as 0xff bytes, a NaN in f32 and bf16); cp.async data read before its
// wait (copies land only at the wait); TMA data read before the mbarrier wait (a box lands only
// when a thread waits on its barrier), and TMA copies no thread waits for; mbarriers used
// before mbarrier.init, arrived at more often than their count, or completed with more bytes
// than expect_tx announced; wgmma issued by part of a warpgroup only or with operands that
// differ between its threads, before a wgmma.fence, with a descriptor other than wgmma.cuh's
// 128-byte swizzle, or not waited for when the thread exits; wgmma operands changed before
// wgmma.wait_group (the product reads shared memory at the first wait that covers it); and, in
// the AddressSanitizer build, any access past a tensor or a shared-memory array (each is its
// own host allocation, the allocator's rounding poisoned).
// Not modelled: timing, memory fences, the rounding of the GPU's math functions, and races
// the schedule hides. The schedule is deterministic; CLIPFORGE_EMU_SCHEDULE=reverse runs a
// block's threads last to first, so a result that changes between the two orders shows a
// missing barrier.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

#include "core.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

struct __attribute__((aligned(8))) float2 {
  float x, y;
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};
struct __attribute__((aligned(8))) uint2 {
  unsigned x, y;
};
struct __attribute__((aligned(16))) uint4 {
  unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
using std::isfinite;
using std::isinf;
using std::isnan;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
// A product rounded on its own, never fused into a following add (the volatile store keeps the
// host compiler from contracting it, as __fmul_rn keeps nvcc from doing so).
inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;
  return r;
}
// CUDA's integer and float min/max overloads, as one template on the common type.
template <typename A, typename B, typename = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B, typename = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}

// cuda_bf16.h: only the packed pair and its round-to-nearest-even constructor are used.
struct __nv_bfloat162 {
  uint16_t x, y;
};
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) { return {cf::float_to_bf16(lo).bits, cf::float_to_bf16(hi).bits}; }

// ---- runtime API ---------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrComputeCapabilityMajor = 75 };
struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int major, minor, multiProcessorCount;
};

cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetLastError();
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s);
namespace cf_emu {
cudaError_t set_function_attribute(const void* fn, cudaFuncAttribute attr, int value);
}
template <typename F>
cudaError_t cudaFuncSetAttribute(F* fn, cudaFuncAttribute attr, int value) {
  return cf_emu::set_function_attribute(reinterpret_cast<const void*>(fn), attr, value);
}

// ---- the emulator --------------------------------------------------------------------------
namespace cf_emu {

// Runs body once per thread of every block; fn identifies the kernel for its attributes
// (null when the launch names a template kernel without its arguments). Errors are reported
// through cudaGetLastError, as a failed launch would be.
void run_kernel(const char* name, const void* fn, dim3 grid, dim3 block, size_t dynamic_smem, const std::function<void()>& body);

template <typename Body>
void launch(const char* name, const void* fn, Body&& body, dim3 grid, dim3 block, size_t dynamic_smem = 0, cudaStream_t = nullptr) {
  run_kernel(name, fn, grid, block, dynamic_smem, std::function<void()>(std::forward<Body>(body)));
}

// The caching allocator's blocks: the first `usable` of `total` bytes belong to a live
// tensor. They are filled with 0xff bytes (NaN), as device memory holds whatever was there
// before, so an output element no kernel writes shows. Under AddressSanitizer the rest is
// poisoned, so a kernel that reads past a tensor, or a freed one, is reported even though the
// block itself is still allocated.
void device_bytes_usable(void* block, size_t usable, size_t total);

// Shared memory of the running block: one allocation per declaration site, filled with 0xff.
void* shared_bytes(const char* site, size_t bytes, size_t align);
void* dynamic_shared_bytes();
template <typename T>
T& shared(const char* site, size_t align) {
  return *static_cast<T*>(shared_bytes(site, sizeof(T), align > alignof(T) ? align : alignof(T)));
}
template <typename T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_bytes());
}

void sync_block(const char* file, int line);
// Called by every thread of a kernel declared with __launch_bounds__(max_threads).
void launch_bounds(long long max_threads);
void sync_warp(unsigned mask);
[[noreturn]] void fail(const char* what);

// Exchanges `bytes` (at most kSlotBytes) of each lane in mask: after the call, lane l's `in`
// is at all + kSlotBytes * l. The caller reads it there and then calls collective_done, after
// which it may change.
constexpr size_t kSlotBytes = 64;
const unsigned char* collective_begin(unsigned mask, const void* in, size_t bytes, const char* what);
void collective_done(unsigned mask);
unsigned lane_id();

template <typename T>
T shfl_xor(unsigned mask, T v, int lane_mask, int width) {
  static_assert(sizeof(T) <= 16, "shuffled values are at most 16 bytes");
  const unsigned lane = lane_id();
  const unsigned src = lane ^ static_cast<unsigned>(lane_mask);
  const unsigned char* all = collective_begin(mask, &v, sizeof(T), "__shfl_xor_sync");
  T r = v;
  if ((src ^ lane) < static_cast<unsigned>(width)) {
    if (!(mask >> src & 1u)) fail("__shfl_xor_sync reads a lane outside its mask");
    std::memcpy(&r, all + kSlotBytes * src, sizeof(T));
  }
  collective_done(mask);
  return r;
}

// mma.cuh's instructions (see the layouts there and in the PTX ISA).
void ldmatrix_x4(uint32_t (&r)[4], const void* p);
void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p);
void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
void cp_async16(void* dst, const void* src);
void cp_async_commit();
void cp_async_wait_group(int newest_in_flight);
inline void cp_async_wait_all() {
  cp_async_commit();
  cp_async_wait_group(0);
}
template <int N>
void cp_async_wait() {
  cp_async_wait_group(N);
}

// wgmma.cuh's instructions (see the layouts there, and the PTX ISA's mbarrier,
// cp.async.bulk.tensor and wgmma sections). Dynamic shared memory is allocated 1024-byte
// aligned and a "shared address" is an offset from its base, so the 128-byte swizzle (address
// bits 4..6 XOR bits 7..9) repeats on 1024-byte boundaries as on the GPU.

// What cuTensorMapEncodeTiled would put in a CUtensorMap for a 3-D bf16 tensor with the
// 128-byte swizzle, in CUtensorMap's size and alignment.
struct alignas(64) TmaDesc {
  const void* base;
  uint64_t dims[3];     // elements; dims[0] contiguous
  uint64_t strides[2];  // bytes between steps of dims 1 and 2
  uint32_t box[3];      // elements
  uint32_t encoded;     // set once encode_tma_bf16 has accepted the tensor
  unsigned char unused[64];
};
static_assert(sizeof(TmaDesc) == 128, "TmaDesc has CUtensorMap's size");

// Host: "" or what cuTensorMapEncodeTiled would refuse.
std::string encode_tma_bf16(TmaDesc* desc, const void* base, const uint64_t (&dims)[3], const uint64_t (&strides)[2],
                            const uint32_t (&box)[3]);
void tma_load_3d(void* dst, const TmaDesc* desc, uint64_t* bar, int c0, int c1, int c2);

void mbar_init(uint64_t* bar, uint32_t count);
// The emulator's barriers live in the emulator, not in the shared-memory word, so there is
// nothing to make visible.
inline void fence_barrier_init() {}
void mbar_arrive(uint64_t* bar);
void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes);
void mbar_wait(uint64_t* bar, uint32_t parity);

// Register reallocation has no effect on a CPU; only the operand's range is checked.
template <int N>
void setmaxnreg_inc() {
  static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg takes a multiple of 8 in [24, 256]");
}
template <int N>
void setmaxnreg_dec() {
  static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg takes a multiple of 8 in [24, 256]");
}

uint32_t smem_u32(const void* p);

// A wgmma is queued for its warpgroup and computed, for all 128 threads at once, at the first
// wait_group that covers it once every thread of the warpgroup has issued it.
void wgmma_fence();
void wgmma_commit();
void wgmma_wait_group(int newest_pending);
template <int N>
void wgmma_wait() {
  wgmma_wait_group(N);
}
void wgmma_issue(float* d, int n, bool trans_a, bool trans_b, uint64_t desc_a, uint64_t desc_b, bool accumulate);
template <int N, bool TA, bool TB>
void wgmma_bf16(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(N == 128 || N == 256, "wgmma_bf16: N is 128 or 256");
  wgmma_issue(d, N, TA, TB, desc_a, desc_b, accumulate);
}

inline unsigned warp_mask() { return 0xffffffffu; }
inline unsigned warp_mask(unsigned mask) { return mask; }

template <typename T>
T atomic_add(T* p, T v) {
  const T old = *p;  // blocks run on one host thread, so a plain update is atomic
  *p = old + v;
  return old;
}

}  // namespace cf_emu

#define __syncthreads() ::cf_emu::sync_block(__FILE__, __LINE__)
#define __syncwarp(...) ::cf_emu::sync_warp(::cf_emu::warp_mask(__VA_ARGS__))
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return cf_emu::shfl_xor(mask, v, lane_mask, width);
}
template <typename T>
T atomicAdd(T* p, T v) {
  return cf_emu::atomic_add(p, v);
}
