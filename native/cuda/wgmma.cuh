// Hopper (sm_90a) building blocks for the warp-specialized GEMM: TMA tile loads, mbarriers,
// and warpgroup MMA (wgmma) reading both operands from shared memory.
//
// Shared-memory operand layout: every tile is 128-byte swizzled (TMA's SWIZZLE_128B, wgmma's
// layout type 1). Rows of 128 bytes (64 bf16) are grouped by 8 into 1024-byte atoms; within an
// atom, 16-byte chunk c of row r is stored at chunk c ^ r. The XOR is taken from the address
// bits (chunk bits 4..6, row bits 7..9), so atoms must start 1024-byte aligned.
//
// wgmma descriptors (PTX ISA, "Matrix Descriptor Format"): start address >> 4 in bits 0..13,
// leading byte offset (LBO) >> 4 in 16..29, stride byte offset (SBO) >> 4 in 32..45, swizzle
// mode in 62..63 (1 = 128B). For an operand of R rows (M for A, N for B) and 16 k, element
// (r, k) before the swizzle sits at
//   K-major  (k contiguous, rows 128 bytes apart):   start + (r / 8) SBO + (r % 8) 128 + 2 k
//   MN-major (r contiguous, k rows 128 bytes apart):  start + (r / 64) LBO + 2 (r % 64) + (k / 8) SBO + (k % 8) 128
// (K-major ignores LBO). The MN-major form is the "transposed" operand (imm-trans 1).
//
// wgmma.m64nNk16 accumulator fragment (f32): thread i of the warpgroup, w = i / 32, g = lane / 4,
// t = lane % 4, holds for j < N / 8: d[4j + e] = D(16 w + g, 8 j + 2 t + e) and
// d[4j + 2 + e] = D(16 w + g + 8, 8 j + 2 t + e), e in {0, 1}.
#pragma once
#include <cstdint>
#include <string>

#include "core.h"

#ifndef CLIPFORGE_CUDA_EMULATION
#include <cuda.h>
#endif

namespace cf::cuda {

// TMA (cp.async.bulk.tensor) needs compute capability 9.0 and this file's sm_90a build.
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ < 900 || !defined(__CUDA_ARCH_FEAT_SM90_ALL))
#define CF_SM90_DEVICE_CODE 0
#else
#define CF_SM90_DEVICE_CODE 1
#endif

#ifdef CLIPFORGE_CUDA_EMULATION
using TmaDesc = ::cf_emu::TmaDesc;
using ::cf_emu::encode_tma_bf16;
using ::cf_emu::fence_barrier_init;
using ::cf_emu::mbar_arrive;
using ::cf_emu::mbar_arrive_expect_tx;
using ::cf_emu::mbar_init;
using ::cf_emu::mbar_wait;
using ::cf_emu::setmaxnreg_dec;
using ::cf_emu::setmaxnreg_inc;
using ::cf_emu::smem_u32;
using ::cf_emu::tma_load_3d;
using ::cf_emu::wgmma_bf16;
using ::cf_emu::wgmma_commit;
using ::cf_emu::wgmma_fence;
using ::cf_emu::wgmma_wait;
inline unsigned char* dynamic_smem() { return ::cf_emu::dynamic_shared<unsigned char>(); }
#else
using TmaDesc = CUtensorMap;

// Host: describes a bf16 tensor of dims[0] (contiguous) x dims[1] x dims[2] elements whose
// dims 1 and 2 are strides[0] and strides[1] bytes apart, loaded in boxes of box[0] x box[1] x
// box[2] with the 128-byte swizzle; elements outside the tensor read as zero. Returns an empty
// string, or what the driver refused.
std::string encode_tma_bf16(TmaDesc* desc, const void* base, const uint64_t (&dims)[3], const uint64_t (&strides)[2],
                            const uint32_t (&box)[3]);

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// The block's dynamic shared memory, for kernels defined in headers (the emulator rewrites
// `extern __shared__` declarations in .cu files only).
__device__ __forceinline__ unsigned char* dynamic_smem() {
  extern __shared__ unsigned char cf_dynamic_smem[];
  return cf_dynamic_smem;
}

#if CF_SM90_DEVICE_CODE
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count));
}
// Makes the initialized barriers visible to the async proxy (TMA's complete_tx).
__device__ __forceinline__ void fence_barrier_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}
// Arrives and adds `bytes` to the transaction count the current phase waits for.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
}
// Returns once the phase of the given parity has completed (a fresh barrier is in phase 0, so
// waiting for parity 1 returns at once).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n"
      "}\n" ::"r"(smem_u32(bar)),
      "r"(parity)
      : "memory");
}
// Box (c0, c1, c2) of a 3-D tensor map into shared memory; completes `bar`'s transaction bytes.
__device__ __forceinline__ void tma_load_3d(void* dst, const TmaDesc* desc, uint64_t* bar, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::"r"(
          smem_u32(dst)),
      "l"(reinterpret_cast<uint64_t>(desc)), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Returns when at most N committed groups are still running.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// The accumulator operands of wgmma m64nNk16, N / 2 of them: "+f"(d[0]), "+f"(d[1]), ...
#define CF_D8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define CF_D32(i) CF_D8(i), CF_D8(i + 8), CF_D8(i + 16), CF_D8(i + 24)

// D (64 x N, f32) = (accumulate ? D : 0) + A (64 x 16) · B (16 x N), both operands bf16 in shared
// memory; TA / TB: the operand is MN-major (imm-trans 1), else K-major.
template <int N, bool TA, bool TB>
__device__ __forceinline__ void wgmma_bf16(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(N == 128 || N == 256, "wgmma_bf16: N is 128 or 256");
  const int scale_d = accumulate ? 1 : 0;
  if constexpr (N == 128) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "%64, %65, p, 1, 1, %67, %68;\n"
        "}\n"
        : CF_D32(0), CF_D32(32)
        : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(TA ? 1 : 0), "n"(TB ? 1 : 0));
  } else {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
        "%128, %129, p, 1, 1, %131, %132;\n"
        "}\n"
        : CF_D32(0), CF_D32(32), CF_D32(64), CF_D32(96)
        : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(TA ? 1 : 0), "n"(TB ? 1 : 0));
  }
}
#undef CF_D8
#undef CF_D32
#endif  // CF_SM90_DEVICE_CODE
#endif  // CLIPFORGE_CUDA_EMULATION

// After wgmma_wait: the accumulators are rewritten by an (empty) volatile asm that cannot move
// above the wait, so the compiler cannot read them before the asynchronous products land.
template <int N>
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[N]) {
#ifndef CLIPFORGE_CUDA_EMULATION
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
#endif
}

// The descriptor of a 128-byte-swizzled operand tile at `tile` (see the top of this file).
__device__ __forceinline__ uint64_t wgmma_desc(const void* tile, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return static_cast<uint64_t>((smem_u32(tile) & 0x3ffff) >> 4) | static_cast<uint64_t>((lbo_bytes >> 4) & 0x3fff) << 16 |
         static_cast<uint64_t>((sbo_bytes >> 4) & 0x3fff) << 32 | uint64_t(1) << 62;
}

}  // namespace cf::cuda
