// Tensor-core building blocks shared by the bf16 kernels (matmul, attention, contrastive loss):
// mma.sync m16n8k16 (bf16 in, f32 accumulate, sm_80 and later), ldmatrix fragment loads and
// cp.async copies into shared memory.
//
// mma.m16n8k16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16"), g = lane / 4,
// t = lane % 4; each 32-bit register holds two b16, the lower index in the low half:
//   A (16 x 16): a0 (row g, cols 2t, 2t+1), a1 (row g+8), a2 (row g, cols 2t+8, 2t+9), a3 (row g+8, cols 2t+8..)
//   B (16 x 8):  b0 (k 2t, 2t+1; n g), b1 (k 2t+8, 2t+9; n g)
//   C (16 x 8):  c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same cols)
// so two adjacent C tiles, packed to bf16, are exactly the A fragment of a next product whose k
// runs over the C tiles' columns.
//
// ldmatrix.x4: lane l gives the address of row l % 8 of 8 x 8 matrix l / 8 (16 contiguous
// bytes) and receives in r[i] elements (l / 4, 2 (l % 4)) and (l / 4, 2 (l % 4) + 1) of matrix
// i; with .trans, elements (2 (l % 4), l / 4) and (2 (l % 4) + 1, l / 4), i.e. the fragment of
// the matrix's transpose.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "core.h"

namespace cf::cuda {

#ifdef CLIPFORGE_CUDA_EMULATION
// The CPU emulator (native/emu) carries out these warp-collective instructions itself.
using ::cf_emu::cp_async16;
using ::cf_emu::cp_async_commit;
using ::cf_emu::cp_async_wait;
using ::cf_emu::cp_async_wait_all;
using ::cf_emu::ldmatrix_x4;
using ::cf_emu::ldmatrix_x4_trans;
using ::cf_emu::mma_bf16;
#else
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
// Groups: the copies issued since the last commit form one group; wait<n> returns when at most
// n groups are still in flight (so a double buffer waits for all but the newest).
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Fragments out of a row-major bf16 tile in shared memory whose rows are kLd elements apart.
// Pad rows by 8 elements (kLd = width + 8, width a multiple of 16): rows are then an odd number
// of 16-byte units apart, so the 8 rows an ldmatrix reads lie in 8 different groups of 4 banks.
template <int kLd>
struct SmemFrags {
  // A fragment of rows [r0, r0 + 16) x cols [c0, c0 + 16): matrices (rows +0, cols +0),
  // (+8, +0), (+0, +8), (+8, +8) give a0..a3.
  static __device__ __forceinline__ void a(uint32_t (&f)[4], const bf16* s, int r0, int c0, int lane) {
    ldmatrix_x4(f, s + (r0 + (lane & 15)) * kLd + c0 + (lane >> 4) * 8);
  }
  // B fragments of two n8 tiles, B(k, n) = s[n][k]: n in [n0, n0 + 16), k in [k0, k0 + 16).
  // f[0], f[1] belong to the n tile at n0, f[2], f[3] to the one at n0 + 8.
  static __device__ __forceinline__ void b(uint32_t (&f)[4], const bf16* s, int n0, int k0, int lane) {
    ldmatrix_x4(f, s + (n0 + (lane & 7) + (lane >> 4) * 8) * kLd + k0 + ((lane >> 3) & 1) * 8);
  }
  // Same with B(k, n) = s[k][n] (row-contiguous operand), transposed by ldmatrix.
  static __device__ __forceinline__ void bt(uint32_t (&f)[4], const bf16* s, int k0, int n0, int lane) {
    ldmatrix_x4_trans(f, s + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * kLd + n0 + (lane >> 4) * 8);
  }
};

}  // namespace cf::cuda
