// N-D transpose copy (rank <= kMaxRank): y[i_0, ..., i_{r-1}] = x[j] where the input index j
// has j[perm[k]] = i_k, so y.shape[k] = x.shape[perm[k]]. A pure copy, so any dtype works by
// its element size (f32, bf16, i32).
// Floor: memory bound, bytes = 2 * numel * sizeof(T).
//
// Both backends first simplify the problem with plan_permute: size-1 dims are dropped and
// input dims that stay adjacent and in order in the output are merged, so
// [B, S, H, D] -> [B, H, S, D] becomes a rank-4 problem with runs of D, and a permutation
// that keeps memory order becomes a rank-1 copy.
#pragma once
#include "core.h"

namespace cf {

struct PermutePlan {
  int rank = 0;                   // after simplification
  int64_t shape[kMaxRank] = {};   // input dims, row-major
  int perm[kMaxRank] = {};        // output dim k is input dim perm[k]
  int64_t numel = 0;
};

// `perm` must be a permutation of [0, rank) (the addon checks).
inline PermutePlan plan_permute(int rank, const int64_t* shape, const int32_t* perm) {
  PermutePlan p;
  p.numel = 1;
  for (int d = 0; d < rank; ++d) p.numel *= shape[d];
  // Drop size-1 dims: they do not move memory.
  int remap[kMaxRank];
  int kept = 0;
  int64_t kshape[kMaxRank];
  for (int d = 0; d < rank; ++d) {
    remap[d] = shape[d] == 1 ? -1 : kept;
    if (shape[d] != 1) kshape[kept++] = shape[d];
  }
  int kperm[kMaxRank];
  int kp = 0;
  for (int k = 0; k < rank; ++k)
    if (remap[perm[k]] >= 0) kperm[kp++] = remap[perm[k]];
  // Runs of output dims whose input dims are consecutive and increasing merge into one dim.
  int run_first[kMaxRank], run_last[kMaxRank];  // input dims covered by each run, output order
  int runs = 0;
  for (int k = 0; k < kept; ++k) {
    if (runs > 0 && kperm[k] == run_last[runs - 1] + 1) {
      run_last[runs - 1] = kperm[k];
    } else {
      run_first[runs] = kperm[k];
      run_last[runs] = kperm[k];
      ++runs;
    }
  }
  // New input dim of each run: its rank among the runs ordered by first input dim.
  p.rank = runs;
  for (int a = 0; a < runs; ++a) {
    int pos = 0;
    for (int b = 0; b < runs; ++b)
      if (run_first[b] < run_first[a]) ++pos;
    int64_t size = 1;
    for (int d = run_first[a]; d <= run_last[a]; ++d) size *= kshape[d];
    p.shape[pos] = size;
    p.perm[a] = pos;
  }
  return p;
}

}  // namespace cf

#define CF_PERMUTE_OPS(NS)                                                                                  \
  namespace cf::NS {                                                                                        \
  /* y = x permuted by perm; shape is x's shape (rank dims), y's shape is shape[perm[k]] */                \
  void permute(DType dtype, const void* x, void* y, int rank, const int64_t* shape, const int32_t* perm,   \
               Stream stream);                                                                              \
  }

CF_PERMUTE_OPS(cpu)
CF_PERMUTE_OPS(cuda)
#undef CF_PERMUTE_OPS
