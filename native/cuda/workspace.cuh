// Scratch device memory for a kernel's partial results (dwconv's weight-gradient partials, the
// split-K GEMM's f32 slices, the loss's per-row terms, embedding's f32 gradient table).
#pragma once
#include "check.cuh"
#include "memory.h"

namespace cf::cuda {

// Workspace from the caching allocator, returned to it (stream-ordered) when it goes out of scope.
struct Workspace {
  int dev;
  Stream stream;
  void* ptr = nullptr;
  Workspace(int d, size_t bytes, Stream s) : dev(d), stream(s) {
    if (bytes) ptr = cf::cuda::alloc(d, bytes, s);
  }
  ~Workspace() {
    // A failure to return the block cannot be reported from a destructor; a CUDA error
    // behind it surfaces at the next synchronization.
    if (ptr) try {
        cf::cuda::free(dev, ptr, stream);
      } catch (...) {
      }
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <typename U>
  U* as() const {
    return static_cast<U*>(ptr);
  }
};

}  // namespace cf::cuda
