// N-D transpose copy on the CPU: y = x with its dims reordered by perm (y.shape[k] =
// x.shape[perm[k]]), for any element size. Floor: memory bound, 2 * numel * sizeof(T) bytes.
//
// After plan_permute there are two cases:
//  - the innermost input dim stays innermost ([B, S, H, D] -> [B, H, S, D]): every output
//    row is one contiguous run of the input, copied with memcpy while an odometer walks the
//    input offset of the next row;
//  - the innermost input dim moves (a last-two-dims swap): 64 x 64 tiles over the output's
//    innermost dim and the dim the input's innermost one went to, transposed through a local
//    buffer so that memory is only read and written in contiguous runs.
#include <algorithm>
#include <cstring>

#include "permute.h"
#include "threadpool.h"

namespace cf::cpu {
namespace {

struct Layout {
  int rank;
  int64_t out_shape[kMaxRank];
  int64_t in_stride[kMaxRank];  // input stride of each output dim
  int64_t out_stride[kMaxRank];
};

Layout layout_of(const PermutePlan& p) {
  Layout l;
  l.rank = p.rank;
  int64_t in_strides[kMaxRank];
  int64_t s = 1;
  for (int d = p.rank - 1; d >= 0; --d) {
    in_strides[d] = s;
    s *= p.shape[d];
  }
  s = 1;
  for (int k = p.rank - 1; k >= 0; --k) {
    l.out_shape[k] = p.shape[p.perm[k]];
    l.in_stride[k] = in_strides[p.perm[k]];
    l.out_stride[k] = s;
    s *= l.out_shape[k];
  }
  return l;
}

// Innermost dim unchanged: rows of `run` elements.
void copy_runs(const char* x, char* y, const Layout& l, size_t es) {
  const int outer = l.rank - 1;
  const int64_t run = l.out_shape[outer];
  const size_t run_bytes = static_cast<size_t>(run) * es;
  const int64_t rows = l.out_stride[0] * l.out_shape[0] / run;
  parallel_for(rows, std::max<int64_t>(1, (1 << 15) / static_cast<int64_t>(run_bytes)), [&](int64_t b, int64_t e) {
    int64_t idx[kMaxRank];
    int64_t off = 0, rem = b;
    for (int d = outer - 1; d >= 0; --d) {
      idx[d] = rem % l.out_shape[d];
      rem /= l.out_shape[d];
      off += idx[d] * l.in_stride[d];
    }
    for (int64_t r = b; r < e; ++r) {
      memcpy(y + r * run_bytes, x + off * static_cast<int64_t>(es), run_bytes);
      for (int d = outer - 1; d >= 0; --d) {
        off += l.in_stride[d];
        if (++idx[d] < l.out_shape[d]) break;
        off -= idx[d] * l.in_stride[d];
        idx[d] = 0;
      }
    }
  });
}

// Innermost dim moves. A: the output's innermost dim (input stride sa); B: output dim jb,
// which is the input's innermost dim (output stride sb). Other dims are batch dims.
template <typename T>
void copy_tiles(const T* x, T* y, const Layout& l) {
  constexpr int64_t kTile = 64;
  const int ra = l.rank - 1;
  int jb = 0;
  while (l.in_stride[jb] != 1) ++jb;
  const int64_t na = l.out_shape[ra], nb = l.out_shape[jb], sa = l.in_stride[ra], sb = l.out_stride[jb];
  int batch_dims[kMaxRank];
  int nbd = 0;
  int64_t batches = 1;
  for (int k = 0; k < l.rank; ++k)
    if (k != ra && k != jb) {
      batch_dims[nbd++] = k;
      batches *= l.out_shape[k];
    }
  const int64_t ta = (na + kTile - 1) / kTile, tb = (nb + kTile - 1) / kTile;
  parallel_for(batches * tb * ta, 4, [&](int64_t begin, int64_t end) {
    T buf[kTile * kTile];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t ia = t % ta, ib = (t / ta) % tb;
      int64_t bi = t / (ta * tb), xo = 0, yo = 0;
      for (int q = nbd - 1; q >= 0; --q) {
        const int k = batch_dims[q];
        const int64_t c = bi % l.out_shape[k];
        bi /= l.out_shape[k];
        xo += c * l.in_stride[k];
        yo += c * l.out_stride[k];
      }
      const int64_t a0 = ia * kTile, a1 = std::min(na, a0 + kTile);
      const int64_t b0 = ib * kTile, b1 = std::min(nb, b0 + kTile);
      // Through a local tile: both the reads (input rows along b) and the writes (output rows
      // along a) are contiguous runs, and no strided access touches memory whose stride is a
      // power of two (which would map every row to the same few L1 sets).
      const int64_t wa = a1 - a0, wb = b1 - b0;
      for (int64_t a = 0; a < wa; ++a) {
        const T* xr = x + xo + (a0 + a) * sa + b0;
        for (int64_t b = 0; b < wb; ++b) buf[b * kTile + a] = xr[b];
      }
      for (int64_t b = 0; b < wb; ++b) memcpy(y + yo + (b0 + b) * sb + a0, buf + b * kTile, wa * sizeof(T));
    }
  });
}

}  // namespace

void permute(DType dtype, const void* xv, void* yv, int rank, const int64_t* shape, const int32_t* perm, Stream) {
  const PermutePlan p = plan_permute(rank, shape, perm);
  if (p.numel == 0) return;
  const size_t es = dtype_size(dtype);
  const char* x = static_cast<const char*>(xv);
  char* y = static_cast<char*>(yv);
  if (p.rank <= 1) {
    const int64_t bytes = p.numel * static_cast<int64_t>(es);
    parallel_for(bytes, 1 << 18, [&](int64_t b, int64_t e) { memcpy(y + b, x + b, e - b); });
    return;
  }
  const Layout l = layout_of(p);
  if (p.perm[p.rank - 1] == p.rank - 1) {
    copy_runs(x, y, l, es);
  } else if (es == 2) {
    copy_tiles(static_cast<const uint16_t*>(xv), static_cast<uint16_t*>(yv), l);
  } else {
    copy_tiles(static_cast<const uint32_t*>(xv), static_cast<uint32_t*>(yv), l);
  }
}

}  // namespace cf::cpu
