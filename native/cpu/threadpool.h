// A fixed pool of worker threads for the CPU kernels, sized to the machine's cores
// (CLIPFORGE_NUM_THREADS overrides). parallel_for splits [0, n) into chunks of at least
// `grain` items; the calling thread works too. Calls from inside a worker run serially,
// so kernels may nest parallel_for without deadlock.
#pragma once
#include <cstdint>
#include <functional>

namespace cf::cpu {

int num_threads();
void set_num_threads(int n);
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

}  // namespace cf::cpu
