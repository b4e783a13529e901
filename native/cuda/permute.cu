// N-D transpose copy on CUDA: y = x with its dims reordered by perm (y.shape[k] =
// x.shape[perm[k]]), for 2- and 4-byte elements. Floor: memory bound, 2 * numel * sizeof(T)
// bytes.
//
// After plan_permute:
//  - innermost input dim stays innermost: an index-mapping kernel where each thread moves
//    one unit of the contiguous run, the unit being the widest of 16, 8, 4 or 2 bytes that
//    divides the run and both base addresses; reads and writes are both coalesced;
//  - innermost input dim moves: a 32 x 32 shared-memory tile transpose (reads coalesced
//    along the input's innermost dim, writes along the output's), with the row pitch padded
//    to an odd number of 4-byte words so the column reads have no bank conflicts. When one
//    of the two swapped dims is shorter than a half tile, most of a tile would idle, so the
//    index-mapping kernel runs instead (its strided side then hits the same cache lines).
#include <cstdint>

#include "check.cuh"
#include "permute.h"

namespace cf::cuda {
namespace {

struct Map {
  int rank;
  int64_t out_shape[kMaxRank];
  int64_t in_stride[kMaxRank];  // input stride of each output dim
};

template <typename U, typename I>
__global__ void permute_map(const U* x, U* y, Map m, I total) {
  for (I i = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; i < total; i += static_cast<I>(gridDim.x) * blockDim.x) {
    I rem = i, off = 0;
    for (int d = m.rank - 1; d >= 0; --d) {
      const I n = static_cast<I>(m.out_shape[d]);
      const I q = rem / n;
      off += (rem - q * n) * static_cast<I>(m.in_stride[d]);
      rem = q;
    }
    y[i] = x[off];
  }
}

constexpr int kTile = 32;
constexpr int kRows = 8;

struct Tiles {
  int64_t na, nb;  // output's innermost dim (A) and the dim the input's innermost went to (B)
  int64_t sa;      // input stride of A (B has input stride 1, A has output stride 1)
  int64_t sb;      // output stride of B
  int nbd;         // batch dims: every other dim
  int64_t bshape[kMaxRank], bin[kMaxRank], bout[kMaxRank];
  int64_t batches;
};

template <typename T>
__global__ void permute_tiles(const T* x, T* y, Tiles t) {
  // Odd pitch in 4-byte words: 33 words for 4-byte T, 17 for 2-byte T.
  constexpr int kPitch = kTile + 4 / static_cast<int>(sizeof(T));
  __shared__ T tile[kTile * kPitch];
  const int64_t tiles_b = (t.nb + kTile - 1) / kTile;
  const int64_t a0 = static_cast<int64_t>(blockIdx.x) * kTile;
  for (int64_t batch = blockIdx.z; batch < t.batches; batch += gridDim.z) {
    int64_t rem = batch, xo = 0, yo = 0;
    for (int q = t.nbd - 1; q >= 0; --q) {
      const int64_t c = rem % t.bshape[q];
      rem /= t.bshape[q];
      xo += c * t.bin[q];
      yo += c * t.bout[q];
    }
    for (int64_t tb = blockIdx.y; tb < tiles_b; tb += gridDim.y) {
      const int64_t b0 = tb * kTile;
      // Load: consecutive threads read consecutive b (the input's innermost dim).
      for (int r = threadIdx.y; r < kTile; r += kRows) {
        const int64_t a = a0 + r, b = b0 + threadIdx.x;
        if (a < t.na && b < t.nb) tile[r * kPitch + threadIdx.x] = x[xo + a * t.sa + b];
      }
      __syncthreads();
      // Store: consecutive threads write consecutive a (the output's innermost dim).
      for (int r = threadIdx.y; r < kTile; r += kRows) {
        const int64_t b = b0 + r, a = a0 + threadIdx.x;
        if (a < t.na && b < t.nb) y[yo + b * t.sb + a] = tile[threadIdx.x * kPitch + r];
      }
      __syncthreads();
    }
  }
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

template <typename U>
void launch_map(const void* x, void* y, const Map& m, int64_t total, cudaStream_t s) {
  if (total <= 0x7fffffff)
    permute_map<U, uint32_t><<<grid_1d(total, 256), 256, 0, s>>>(static_cast<const U*>(x), static_cast<U*>(y), m, static_cast<uint32_t>(total));
  else
    permute_map<U, int64_t><<<grid_1d(total, 256), 256, 0, s>>>(static_cast<const U*>(x), static_cast<U*>(y), m, total);
}

template <typename T>
void launch_tiles(const void* x, void* y, const Tiles& t, cudaStream_t s) {
  const int64_t ta = (t.na + kTile - 1) / kTile, tb = (t.nb + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(ta), static_cast<unsigned>(tb < 65535 ? tb : 65535),
                  static_cast<unsigned>(t.batches < 65535 ? t.batches : 65535));
  permute_tiles<T><<<grid, dim3(kTile, kRows), 0, s>>>(static_cast<const T*>(x), static_cast<T*>(y), t);
}

}  // namespace

void permute(DType dtype, const void* x, void* y, int rank, const int64_t* shape, const int32_t* perm, Stream stream) {
  const PermutePlan p = plan_permute(rank, shape, perm);
  if (p.numel == 0) return;
  const cudaStream_t s = as_cuda(stream);
  const size_t es = dtype_size(dtype);
  if (p.rank <= 1) {
    CF_CUDA_CHECK(cudaMemcpyAsync(y, x, p.numel * es, cudaMemcpyDeviceToDevice, s));
    return;
  }
  // Output shape and the input stride of each output dim.
  Map m;
  m.rank = p.rank;
  int64_t in_strides[kMaxRank];
  int64_t st = 1;
  for (int d = p.rank - 1; d >= 0; --d) {
    in_strides[d] = st;
    st *= p.shape[d];
  }
  for (int k = 0; k < p.rank; ++k) {
    m.out_shape[k] = p.shape[p.perm[k]];
    m.in_stride[k] = in_strides[p.perm[k]];
  }
  const int ra = p.rank - 1;
  if (p.perm[ra] == ra) {
    // Widen the element to the largest unit that divides the contiguous run.
    const size_t run = static_cast<size_t>(m.out_shape[ra]) * es;
    size_t u = 16;
    while (u > es && !(run % u == 0 && aligned(x, u) && aligned(y, u))) u /= 2;
    const int64_t scale = static_cast<int64_t>(u / es);
    for (int k = 0; k < ra; ++k) m.in_stride[k] /= scale;
    m.out_shape[ra] /= scale;
    const int64_t total = p.numel / scale;
    if (u == 16) launch_map<uint4>(x, y, m, total, s);
    else if (u == 8) launch_map<uint2>(x, y, m, total, s);
    else if (u == 4) launch_map<uint32_t>(x, y, m, total, s);
    else launch_map<uint16_t>(x, y, m, total, s);
    return;
  }
  int jb = 0;
  while (m.in_stride[jb] != 1) ++jb;
  Tiles t;
  t.na = m.out_shape[ra];
  t.nb = m.out_shape[jb];
  t.sa = m.in_stride[ra];
  t.nbd = 0;
  t.batches = 1;
  int64_t out_stride = 1;
  int64_t out_strides[kMaxRank];
  for (int k = ra; k >= 0; --k) {
    out_strides[k] = out_stride;
    out_stride *= m.out_shape[k];
  }
  t.sb = out_strides[jb];
  for (int k = 0; k < p.rank; ++k) {
    if (k == ra || k == jb) continue;
    t.bshape[t.nbd] = m.out_shape[k];
    t.bin[t.nbd] = m.in_stride[k];
    t.bout[t.nbd] = out_strides[k];
    ++t.nbd;
    t.batches *= m.out_shape[k];
  }
  if (t.na < kTile / 2 || t.nb < kTile / 2) {
    if (es == 2) launch_map<uint16_t>(x, y, m, p.numel, s);
    else launch_map<uint32_t>(x, y, m, p.numel, s);
  } else if (es == 2) {
    launch_tiles<uint16_t>(x, y, t, s);
  } else {
    launch_tiles<uint32_t>(x, y, t, s);
  }
}

}  // namespace cf::cuda
