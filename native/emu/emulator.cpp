// The CUDA emulator's scheduler, shared memory, warp collectives, Hopper instructions and
// runtime API (see cuda_emu.h for what it models and checks).
#include <sys/mman.h>
#include <ucontext.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_emu.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CF_EMU_ASAN 1
#endif

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace cf_emu {
namespace {

// Switching between a block's fibers. On x86-64 a few instructions that save the callee-saved
// registers and the stack pointer (ucontext's swapcontext also saves the signal mask, a system
// call per switch that made it several times slower); elsewhere ucontext.
#if defined(__x86_64__)
extern "C" void cf_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .hidden cf_emu_switch
  .globl cf_emu_switch
  .type cf_emu_switch, @function
cf_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cf_emu_switch, .-cf_emu_switch
)");

struct Context {
  void* sp = nullptr;
};
// A new context's stack holds six zeroed registers for cf_emu_switch to pop, then entry as
// the return address, then a null return address for entry itself (so that entry starts with
// the stack alignment of a called function).
void start_context(Context& c, char* stack, size_t bytes, void (*entry)()) {
  auto* top = reinterpret_cast<void**>(reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t(15));
  *--top = nullptr;
  *--top = reinterpret_cast<void*>(entry);
  for (int i = 0; i < 6; ++i) *--top = nullptr;
  c.sp = top;
}
void jump(Context& from, Context& to) { cf_emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};
void start_context(Context& c, char* stack, size_t bytes, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
void jump(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;
constexpr size_t kStaticSmemLimit = 48 * 1024;
constexpr size_t kDynamicSmemDefault = 48 * 1024;
constexpr size_t kSmemOptInMax = 227 * 1024;  // sm_90: 232448 bytes per block
// An mbarrier's arrival count and its transaction count (either sign) fit in 20 bits.
constexpr int64_t kMbarrierLimit = (int64_t(1) << 20) - 1;
constexpr unsigned kWarpgroup = 128;

struct Copy {
  void* dst;
  const void* src;
};

struct Fiber {
  Context ctx;
  dim3 tid;
  unsigned linear = 0;
  bool done = false;
  const char* waiting = nullptr;  // what it waits at, for the deadlock report
  std::vector<Copy> open_group;
  std::vector<std::vector<Copy>> in_flight;
  // wgmma: the thread's operations are numbered in issue order, the same numbers across its
  // warpgroup. A committed group not waited for yet is kept as the number issued at its commit.
  uint64_t wgmma_issued = 0;
  uint64_t wgmma_waited = 0;  // operations covered by a completed wait_group
  std::vector<uint64_t> wgmma_groups;
  bool wgmma_fenced = false;
};

// A cp.async.bulk.tensor copy waiting to land. The tensor map is copied: the kernel parameter
// it came from belongs to the issuing thread, which may have exited when the copy lands.
struct TmaCopy {
  unsigned char* dst;
  TmaDesc desc;
  int coords[3];
};

struct MBarrier {
  uint32_t count = 0;    // arrivals per phase
  uint32_t pending = 0;  // arrivals the current phase still waits for
  int64_t tx = 0;        // bytes it still waits for; negative when copies complete before expect_tx
  uint64_t phase = 0;    // phases completed
  std::vector<TmaCopy> copies;
};

// One wgmma.mma_async of a warpgroup: the operands all its threads gave, and each thread's
// accumulators.
struct WgmmaOp {
  uint64_t desc_a, desc_b;
  int n;
  bool trans_a, trans_b, accumulate;
  unsigned issued;  // threads that have issued it
  float* d[kWarpgroup];
};

struct Warpgroup {
  std::deque<WgmmaOp> ops;  // issued by at least one thread, not executed
  uint64_t executed = 0;    // the number of ops.front()
};

struct WarpBarrier {
  unsigned mask = 0;
  unsigned arrived = 0;
  uint64_t generation = 0;
  const char* what = nullptr;
};

struct Warp {
  unsigned present = 0;  // lanes that exist in this block
  unsigned exited = 0;
  std::vector<WarpBarrier> barriers;  // one per disjoint mask waiting at once
  alignas(16) unsigned char slots[32][kSlotBytes];
};

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Exactly `bytes` long, so that AddressSanitizer sees an access past the array.
struct SharedAlloc {
  std::unique_ptr<unsigned char, FreeDeleter> p;
  size_t bytes;
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  unsigned live = 0;
  unsigned arrived = 0;
  uint64_t generation = 0;
  const char* barrier_file = nullptr;
  int barrier_line = 0;
  std::map<std::string, SharedAlloc> statics;
  size_t static_bytes = 0;
  std::unique_ptr<unsigned char, FreeDeleter> dynamic;
  size_t dynamic_bytes = 0;
  std::map<const void*, MBarrier> mbarriers;  // by the address of the shared-memory word
  std::vector<Warpgroup> warpgroups;           // empty unless the block is whole warpgroups
};

struct Launch {
  const std::function<void()>* body = nullptr;
  Block block;
  Fiber* current = nullptr;
  Context scheduler;
  std::string error;
  uint64_t progress = 0;
  const char* kernel = "";
  bool reverse = false;  // run threads last to first (CLIPFORGE_EMU_SCHEDULE=reverse)
  const void* scheduler_stack = nullptr;  // for AddressSanitizer's fiber annotations
  size_t scheduler_stack_bytes = 0;
};

thread_local Launch* g_launch = nullptr;
thread_local std::vector<char*> g_stack_pool;

Launch& L() { return *g_launch; }

std::string where() {
  const Fiber* f = L().current;
  char buf[160];
  std::snprintf(buf, sizeof buf, "kernel %s, block (%u, %u, %u), thread (%u, %u, %u)", L().kernel, blockIdx.x, blockIdx.y, blockIdx.z,
                f ? f->tid.x : 0, f ? f->tid.y : 0, f ? f->tid.z : 0);
  return buf;
}

void switch_to_scheduler() {
  Fiber* f = L().current;
#ifdef CF_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, L().scheduler_stack, L().scheduler_stack_bytes);
  jump(f->ctx, L().scheduler);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  jump(f->ctx, L().scheduler);
#endif
}

std::string block_name() {
  return std::string("kernel ") + L().kernel + ", block (" + std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) + ", " +
         std::to_string(blockIdx.z) + ")";
}

void wait_until(const char* what, const uint64_t* generation, uint64_t seen) {
  Fiber* f = L().current;
  f->waiting = what;
  while (*generation == seen) switch_to_scheduler();
  f->waiting = nullptr;
}

unsigned warp_of(const Fiber* f) { return f->linear / 32; }

void thread_exited() {
  Launch& l = L();
  Fiber* f = l.current;
  if (!f->open_group.empty() || !f->in_flight.empty()) {
    cp_async_commit();
    cp_async_wait_group(0);
  }
  // Its accumulator registers would be written after it is gone.
  if (f->wgmma_issued != f->wgmma_waited && l.error.empty())
    l.error = where() + ": exits with wgmma operations it has not waited for (wgmma.commit_group, then wgmma.wait_group)";
  f->done = true;
  ++l.progress;
  Block& b = l.block;
  --b.live;
  Warp& w = b.warps[warp_of(f)];
  w.exited |= 1u << (f->linear % 32);
  for (const WarpBarrier& wb : w.barriers)
    if (wb.arrived && (wb.mask & w.exited)) l.error = where() + ": exited while lanes of its warp wait for it in " + wb.what;
  if (b.arrived > 0 && b.arrived == b.live) {
    b.arrived = 0;
    ++b.generation;
  }
}

void fiber_main() {
#ifdef CF_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &L().scheduler_stack, &L().scheduler_stack_bytes);
#endif
  (*L().body)();
  thread_exited();
#ifdef CF_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, L().scheduler_stack, L().scheduler_stack_bytes);
#endif
  Context finished;
  jump(finished, L().scheduler);
}

char* stack_at(size_t i) {
  while (g_stack_pool.size() <= i) {
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    g_stack_pool.push_back(static_cast<char*>(p));
  }
  return g_stack_pool[i];
}

void resume(Fiber& f) {
  Launch& l = L();
  l.current = &f;
  threadIdx = f.tid;
#ifdef CF_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, stack_at(f.linear), kStackBytes);
  jump(l.scheduler, f.ctx);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  jump(l.scheduler, f.ctx);
#endif
  l.current = nullptr;
}

std::string deadlock_report(const Block& b) {
  std::string s = "deadlock: no thread can go on;";
  int shown = 0;
  for (const Fiber& f : b.fibers) {
    if (f.done) continue;
    if (shown++ == 4) {
      s += " ...";
      break;
    }
    s += " thread (" + std::to_string(f.tid.x) + ", " + std::to_string(f.tid.y) + ", " + std::to_string(f.tid.z) + ") waits in " +
         (f.waiting ? f.waiting : "?") + ";";
  }
  return s;
}

void run_block(dim3 block_dim) {
  Launch& l = L();
  Block& b = l.block;
  const unsigned n = block_dim.x * block_dim.y * block_dim.z;
  b.fibers.assign(n, Fiber{});
  b.warps.assign((n + 31) / 32, Warp{});
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.linear = i;
    f.tid = dim3(i % block_dim.x, (i / block_dim.x) % block_dim.y, i / (block_dim.x * block_dim.y));
    b.warps[i / 32].present |= 1u << (i % 32);
    start_context(f.ctx, stack_at(i), kStackBytes, fiber_main);
  }
  b.live = n;
  b.arrived = 0;
  b.statics.clear();
  b.static_bytes = 0;
  if (b.dynamic_bytes) std::memset(b.dynamic.get(), 0xff, b.dynamic_bytes);
  b.mbarriers.clear();
  b.warpgroups.clear();
  if (n % kWarpgroup == 0) b.warpgroups.resize(n / kWarpgroup);
  for (;;) {
    const uint64_t before = l.progress;
    bool any = false;
    for (unsigned k = 0; k < n; ++k) {
      Fiber& f = b.fibers[l.reverse ? n - 1 - k : k];
      if (f.done) continue;
      any = true;
      resume(f);
      if (!l.error.empty()) return;
    }
    if (!any) {
      for (const auto& bar : b.mbarriers)
        if (!bar.second.copies.empty()) {
          l.error = block_name() + ": a TMA copy completes on an mbarrier that no thread waited on after the copy was issued";
          break;
        }
      return;
    }
    if (l.progress == before) {
      l.error = block_name() + ": " + deadlock_report(b);
      return;
    }
  }
}

std::mutex g_mutex;
std::map<const void*, int> g_max_dynamic_smem;
thread_local cudaError_t g_last_error = cudaSuccess;
thread_local std::string g_last_message;
size_t g_allocated = 0;
std::map<void*, size_t> g_allocations;
constexpr size_t kDeviceMemory = size_t(16) << 30;

cudaError_t record(cudaError_t e, std::string message) {
  if (e != cudaSuccess) {
    g_last_error = e;
    g_last_message = std::move(message);
  }
  return e;
}

}  // namespace

[[noreturn]] void fail(const char* what) {
  Launch& l = L();
  if (l.error.empty()) l.error = where() + ": " + what;
  for (;;) switch_to_scheduler();
}

unsigned lane_id() { return L().current->linear % 32; }

void run_kernel(const char* name, const void* fn, dim3 grid, dim3 block, size_t dynamic_smem, const std::function<void()>& body) {
  if (g_launch) {
    record(cudaErrorLaunchFailure, std::string("kernel ") + name + " launched from device code");
    return;
  }
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  std::string bad;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0) bad = "a zero grid or block dimension";
  else if (threads > kMaxThreads || block.z > 64) bad = "block of " + std::to_string(threads) + " threads (at most 1024, z at most 64)";
  else if (grid.y > 65535 || grid.z > 65535) bad = "grid y or z over 65535";
  else if (grid.x > 2147483647u) bad = "grid x over 2^31 - 1";
  if (!bad.empty()) {
    record(cudaErrorInvalidConfiguration, std::string("invalid configuration argument: kernel ") + name + ": " + bad);
    return;
  }
  if (dynamic_smem > kDynamicSmemDefault) {
    int opt_in = 0;
    {
      std::lock_guard<std::mutex> lk(g_mutex);
      auto it = g_max_dynamic_smem.find(fn);
      if (fn && it != g_max_dynamic_smem.end()) opt_in = it->second;
    }
    if (!fn || static_cast<size_t>(opt_in) < dynamic_smem || dynamic_smem > kSmemOptInMax) {
      record(cudaErrorInvalidValue, std::string("invalid argument: kernel ") + name + " launched with " + std::to_string(dynamic_smem) +
                                        " bytes of dynamic shared memory; cudaFuncSetAttribute allowed " + std::to_string(opt_in) +
                                        (fn ? "" : " (the emulator needs the kernel's template arguments at the launch to check)"));
      return;
    }
  }
  Launch l;
  l.body = &body;
  l.kernel = name;
  static const bool reverse = [] {
    const char* order = std::getenv("CLIPFORGE_EMU_SCHEDULE");
    return order && std::strcmp(order, "reverse") == 0;
  }();
  l.reverse = reverse;
  l.block.dynamic_bytes = dynamic_smem;
  if (dynamic_smem) {
    // Aligned as the 128-byte swizzle's 1024-byte pattern needs (shared addresses count from here).
    void* raw = nullptr;
    if (posix_memalign(&raw, 1024, dynamic_smem) != 0) {
      record(cudaErrorMemoryAllocation, "out of memory");
      return;
    }
    l.block.dynamic.reset(static_cast<unsigned char*>(raw));
  }
  g_launch = &l;
  blockDim = block;
  gridDim = grid;
  for (unsigned z = 0; z < grid.z && l.error.empty(); ++z)
    for (unsigned y = 0; y < grid.y && l.error.empty(); ++y)
      for (unsigned x = 0; x < grid.x && l.error.empty(); ++x) {
        blockIdx = dim3(x, y, z);
        run_block(block);
        if (l.error.empty() && l.block.static_bytes + dynamic_smem > kSmemOptInMax)
          l.error = std::string("kernel ") + name + " uses " + std::to_string(l.block.static_bytes + dynamic_smem) + " bytes of shared memory";
      }
  g_launch = nullptr;
#ifdef CF_EMU_ASAN
  // Fibers abandoned mid-call leave their frames' redzones poisoned on stacks the next launch reuses.
  if (!l.error.empty())
    for (char* stack : g_stack_pool) ASAN_UNPOISON_MEMORY_REGION(stack, kStackBytes);
#endif
  if (!l.error.empty()) record(cudaErrorLaunchFailure, "unspecified launch failure: " + l.error);
}

void* shared_bytes(const char* site, size_t bytes, size_t align) {
  Block& b = L().block;
  auto it = b.statics.find(site);
  if (it == b.statics.end()) {
    void* raw = nullptr;
    if (posix_memalign(&raw, align < sizeof(void*) ? sizeof(void*) : align, bytes ? bytes : 1) != 0) fail("out of host memory for shared memory");
    SharedAlloc a{std::unique_ptr<unsigned char, FreeDeleter>(static_cast<unsigned char*>(raw)), bytes};
    std::memset(a.p.get(), 0xff, bytes);
    b.static_bytes += bytes;
    if (b.static_bytes > kStaticSmemLimit) fail("static shared memory over 48 KB");
    it = b.statics.emplace(site, std::move(a)).first;
  } else if (it->second.bytes != bytes) {
    fail("one __shared__ declaration with two sizes in one block");
  }
  return it->second.p.get();
}

void* dynamic_shared_bytes() { return L().block.dynamic.get(); }

void launch_bounds(long long max_threads) {
  const long long threads = static_cast<long long>(blockDim.x) * blockDim.y * blockDim.z;
  if (threads > max_threads) {
    const std::string msg = "launched with " + std::to_string(threads) + " threads per block, over its __launch_bounds__ of " + std::to_string(max_threads);
    fail(msg.c_str());
  }
}

void sync_block(const char* file, int line) {
  Launch& l = L();
  Block& b = l.block;
  if (b.arrived == 0) {
    b.barrier_file = file;
    b.barrier_line = line;
  } else if (b.barrier_line != line || std::strcmp(b.barrier_file, file) != 0) {
    const std::string msg = "__syncthreads at " + std::string(file) + ":" + std::to_string(line) + " while other threads of the block wait at " +
                            b.barrier_file + ":" + std::to_string(b.barrier_line);
    fail(msg.c_str());
  }
  ++l.progress;
  const uint64_t seen = b.generation;
  if (++b.arrived == b.live) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  wait_until("__syncthreads", &b.generation, seen);
}

namespace {
// Waits until every lane in mask has called this with the same mask and the same what.
void warp_barrier(unsigned mask, const char* what) {
  Launch& l = L();
  Fiber* f = l.current;
  Warp& w = l.block.warps[warp_of(f)];
  const unsigned lane = f->linear % 32;
  if (!(mask >> lane & 1u)) fail((std::string(what) + " called by a lane outside its mask").c_str());
  if (mask & ~w.present) fail((std::string(what) + " names lanes the block does not have").c_str());
  if (mask & w.exited) fail((std::string(what) + " names a lane that has exited").c_str());
  size_t index = w.barriers.size();
  for (size_t i = 0; i < w.barriers.size(); ++i) {
    const WarpBarrier& c = w.barriers[i];
    if (c.mask == mask) index = i;
    else if (c.arrived && (c.mask & mask)) fail((std::string(what) + ": lanes of one warp wait with overlapping, different masks").c_str());
  }
  if (index == w.barriers.size()) w.barriers.push_back(WarpBarrier{mask, 0, 0, what});
  WarpBarrier& wb = w.barriers[index];
  if (wb.arrived == 0) wb.what = what;
  else if (std::strcmp(wb.what, what) != 0) fail((std::string(what) + " while other lanes of the warp wait in " + wb.what).c_str());
  wb.arrived |= 1u << lane;
  ++l.progress;
  if (wb.arrived == mask) {
    wb.arrived = 0;
    ++wb.generation;
    return;
  }
  // By index: the vector may grow (another mask) while this lane waits.
  const uint64_t seen = wb.generation;
  f->waiting = what;
  while (w.barriers[index].generation == seen) switch_to_scheduler();
  f->waiting = nullptr;
}
}  // namespace

void sync_warp(unsigned mask) { warp_barrier(mask, "__syncwarp"); }

const unsigned char* collective_begin(unsigned mask, const void* in, size_t bytes, const char* what) {
  if (bytes > kSlotBytes) fail("a warp collective exchanges more than kSlotBytes per lane");
  Launch& l = L();
  Fiber* f = l.current;
  Warp& w = l.block.warps[warp_of(f)];
  std::memcpy(w.slots[f->linear % 32], in, bytes);
  warp_barrier(mask, what);
  return &w.slots[0][0];
}

void collective_done(unsigned mask) {
  warp_barrier(mask, "(end of a warp collective)");
}

void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16) fail("ldmatrix row address not 16-byte aligned");
  const unsigned lane = lane_id();
  const unsigned char* all = collective_begin(0xffffffffu, &p, sizeof p, "ldmatrix.x4");
  auto row = [&](unsigned l) {
    const unsigned char* q;
    std::memcpy(&q, all + kSlotBytes * l, sizeof q);
    return q;
  };
  for (int i = 0; i < 4; ++i) std::memcpy(&r[i], row(i * 8 + lane / 4) + (lane % 4) * 4, 4);
  collective_done(0xffffffffu);
}

void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16) fail("ldmatrix row address not 16-byte aligned");
  const unsigned lane = lane_id();
  const unsigned char* all = collective_begin(0xffffffffu, &p, sizeof p, "ldmatrix.x4.trans");
  auto element = [&](unsigned l, unsigned col) {
    const unsigned char* q;
    std::memcpy(&q, all + kSlotBytes * l, sizeof q);
    uint16_t v;
    std::memcpy(&v, q + col * 2, 2);
    return static_cast<uint32_t>(v);
  };
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = element(i * 8 + 2 * (lane % 4), lane / 4);
    const uint32_t hi = element(i * 8 + 2 * (lane % 4) + 1, lane / 4);
    r[i] = lo | hi << 16;
  }
  collective_done(0xffffffffu);
}

void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  struct Frags {
    uint32_t a[4], b[2];
  } mine{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  const unsigned lane = lane_id();
  const unsigned char* all = collective_begin(0xffffffffu, &mine, sizeof mine, "mma.sync.m16n8k16");
  auto frags = [&](unsigned l) {
    Frags f;
    std::memcpy(&f, all + kSlotBytes * l, sizeof f);
    return f;
  };
  auto half = [](uint32_t reg, int k) {
    const uint32_t bits = (k % 2 ? reg >> 16 : reg & 0xffffu) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  };
  // A(r, k) lives in lane (r % 8) * 4 + (k % 8) / 2, register (r >= 8) + 2 (k >= 8);
  // B(k, n) in lane n * 4 + (k % 8) / 2, register (k >= 8).
  auto A = [&](int r, int k) { return half(frags((r % 8) * 4 + (k % 8) / 2).a[(r >= 8) + 2 * (k >= 8)], k); };
  auto B = [&](int k, int n) { return half(frags(n * 4 + (k % 8) / 2).b[k >= 8], k); };
  const int g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int r = g + 8 * (i / 2), n = 2 * t + i % 2;
    double acc = c[i];
    for (int k = 0; k < 16; ++k) acc += static_cast<double>(A(r, k)) * B(k, n);
    c[i] = static_cast<float>(acc);
  }
  collective_done(0xffffffffu);
}

void cp_async16(void* dst, const void* src) {
  if (reinterpret_cast<uintptr_t>(dst) % 16 || reinterpret_cast<uintptr_t>(src) % 16) fail("cp.async of 16 bytes at an address not 16-byte aligned");
  L().current->open_group.push_back(Copy{dst, src});
}

void cp_async_commit() {
  Fiber* f = L().current;
  f->in_flight.push_back(std::move(f->open_group));
  f->open_group.clear();
}

void cp_async_wait_group(int newest_in_flight) {
  Fiber* f = L().current;
  while (f->in_flight.size() > static_cast<size_t>(newest_in_flight)) {
    for (const Copy& c : f->in_flight.front()) std::memcpy(c.dst, c.src, 16);
    f->in_flight.erase(f->in_flight.begin());
  }
}

// ---- Hopper: TMA, mbarriers, wgmma ---------------------------------------------------------

namespace {

bool in_range(const void* p, size_t bytes, const void* base, size_t size) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), lo = reinterpret_cast<uintptr_t>(base);
  return base && a >= lo && a - lo <= size && bytes <= size - (a - lo);
}

bool in_dynamic_shared(const void* p, size_t bytes) {
  const Block& b = L().block;
  return in_range(p, bytes, b.dynamic.get(), b.dynamic_bytes);
}

bool in_shared(const void* p, size_t bytes) {
  if (in_dynamic_shared(p, bytes)) return true;
  for (const auto& s : L().block.statics)
    if (in_range(p, bytes, s.second.p.get(), s.second.bytes)) return true;
  return false;
}

// The 128-byte swizzle (TMA's SWIZZLE_128B, wgmma's layout type 1): 16-byte chunk bits 4..6 of
// a shared address XOR row bits 7..9.
size_t swizzle128(size_t a) { return a ^ (((a >> 7) & 7) << 4); }

MBarrier& mbarrier_at(const uint64_t* bar, const char* what) {
  auto& all = L().block.mbarriers;
  auto it = all.find(bar);
  if (it == all.end()) fail((std::string(what) + " on an address that no mbarrier.init of this block initialized").c_str());
  return it->second;
}

void complete_phase_if_done(MBarrier& m) {
  if (m.pending == 0 && m.tx == 0) {
    ++m.phase;
    m.pending = m.count;
  }
}

// Writes the barrier's queued TMA boxes into shared memory, each followed by its complete_tx.
void land(MBarrier& m) {
  if (m.copies.empty()) return;
  Launch& l = L();
  unsigned char* smem = l.block.dynamic.get();
  const std::vector<TmaCopy> copies = std::move(m.copies);
  m.copies.clear();
  for (const TmaCopy& c : copies) {
    const TmaDesc& t = c.desc;
    const size_t dst = static_cast<size_t>(c.dst - smem);
    size_t o = 0;
    for (uint32_t i2 = 0; i2 < t.box[2]; ++i2)
      for (uint32_t i1 = 0; i1 < t.box[1]; ++i1)
        for (uint32_t i0 = 0; i0 < t.box[0]; ++i0, o += 2) {
          const int64_t x = int64_t(c.coords[0]) + i0, y = int64_t(c.coords[1]) + i1, z = int64_t(c.coords[2]) + i2;
          uint16_t v = 0;  // outside the tensor: zero
          if (x >= 0 && y >= 0 && z >= 0 && uint64_t(x) < t.dims[0] && uint64_t(y) < t.dims[1] && uint64_t(z) < t.dims[2]) {
            const uint64_t at = uint64_t(x) * 2 + uint64_t(y) * t.strides[0] + uint64_t(z) * t.strides[1];
            std::memcpy(&v, static_cast<const unsigned char*>(t.base) + at, 2);
          }
          std::memcpy(smem + swizzle128(dst + o), &v, 2);
        }
    m.tx -= static_cast<int64_t>(o);
    if (m.tx < -kMbarrierLimit) fail("TMA copies complete more than 2^20 - 1 bytes on an mbarrier ahead of its expect_tx");
    if (m.pending == 0 && m.tx < 0) fail("TMA copies complete more bytes on an mbarrier than mbarrier.expect_tx announced for the phase");
    complete_phase_if_done(m);
  }
  ++l.progress;
}

void arrive(uint64_t* bar, uint32_t tx_bytes, const char* what) {
  MBarrier& m = mbarrier_at(bar, what);
  // A phase with all its arrivals waits only for copies, which on a GPU may have landed by now,
  // making this an arrival on the next phase.
  if (m.pending == 0) land(m);
  if (m.pending == 0) fail((std::string(what) + ": more arrivals in one phase than the count mbarrier.init gave").c_str());
  m.tx += tx_bytes;
  if (m.tx > kMbarrierLimit) fail((std::string(what) + ": the phase's transaction count goes over 2^20 - 1 bytes").c_str());
  --m.pending;
  complete_phase_if_done(m);
  ++L().progress;
}

void check_wgmma_descriptor(uint64_t desc, const char* operand) {
  if (desc >> 62 != 1) {
    const std::string msg = std::string("wgmma descriptor of ") + operand + " with swizzle mode " + std::to_string(desc >> 62) +
                            ", not 1 (the 128-byte swizzle wgmma.cuh lays tiles out with)";
    fail(msg.c_str());
  }
  if ((desc >> 49) & 7)
    fail("wgmma descriptor with a matrix base offset (bits 49..51): wgmma.cuh starts every swizzle pattern on a 1024-byte boundary");
}

// Element (r, k) of a wgmma operand of `rows` rows and 16 k (see wgmma.cuh for the layouts).
void load_wgmma_operand(float (*out)[16], uint64_t desc, bool mn_major, int rows, const char* operand) {
  const Block& b = L().block;
  const size_t start = (desc & 0x3fff) << 4, lbo = ((desc >> 16) & 0x3fff) << 4, sbo = ((desc >> 32) & 0x3fff) << 4;
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < 16; ++k) {
      const size_t a = swizzle128(mn_major ? start + (r / 64) * lbo + 2 * (r % 64) + (k / 8) * sbo + (k % 8) * 128
                                           : start + (r / 8) * sbo + (r % 8) * 128 + 2 * k);
      if (a + 2 > b.dynamic_bytes) {
        const std::string msg = std::string("wgmma operand ") + operand + " element (" + std::to_string(r) + ", k " + std::to_string(k) +
                                ") at shared address " + std::to_string(a) + ", past the " + std::to_string(b.dynamic_bytes) +
                                " bytes of dynamic shared memory";
        fail(msg.c_str());
      }
      uint16_t v;
      std::memcpy(&v, b.dynamic.get() + a, 2);
      out[r][k] = cf::bf16_to_float(cf::bf16{v});
    }
}

// D (64 x N) = (accumulate ? D : 0) + A B^T for the whole warpgroup at once: on the GPU the
// product reads shared memory once, before any of its threads passes the wait.
void execute_wgmma(const WgmmaOp& op) {
  float a[64][16], b[256][16];
  load_wgmma_operand(a, op.desc_a, op.trans_a, 64, "A");
  load_wgmma_operand(b, op.desc_b, op.trans_b, op.n, "B");
  for (unsigned i = 0; i < kWarpgroup; ++i) {
    float* d = op.d[i];
    const int w = i / 32, g = (i % 32) / 4, t = i % 4;
    for (int j = 0; j < op.n / 8; ++j)
      for (int h = 0; h < 2; ++h)
        for (int e = 0; e < 2; ++e) {
          const int m = 16 * w + g + 8 * h, n = 8 * j + 2 * t + e;
          float& out = d[4 * j + 2 * h + e];
          double acc = op.accumulate ? out : 0.0;
          for (int k = 0; k < 16; ++k) acc += static_cast<double>(a[m][k]) * b[n][k];
          out = static_cast<float>(acc);
        }
  }
}

// Executes the warpgroup's operations numbered below `end`, each once all 128 threads have
// issued it.
void run_wgmma_through(uint64_t end) {
  Launch& l = L();
  Fiber* f = l.current;
  if (f->wgmma_waited >= end) return;
  Warpgroup& wg = l.block.warpgroups[f->linear / kWarpgroup];
  while (wg.executed < end) {
    if (wg.ops.front().issued < kWarpgroup) {
      f->waiting = "wgmma.wait_group (for the rest of the warpgroup to issue its wgmma)";
      switch_to_scheduler();
      continue;
    }
    execute_wgmma(wg.ops.front());
    wg.ops.pop_front();
    ++wg.executed;
    ++l.progress;
  }
  f->waiting = nullptr;
  f->wgmma_waited = end;
}

}  // namespace

std::string encode_tma_bf16(TmaDesc* desc, const void* base, const uint64_t (&dims)[3], const uint64_t (&strides)[2],
                            const uint32_t (&box)[3]) {
  *desc = TmaDesc{};
  const std::string refused = "cuTensorMapEncodeTiled: ";
  if (reinterpret_cast<uintptr_t>(base) % 16) return refused + "globalAddress not 16-byte aligned";
  for (int i = 0; i < 3; ++i)
    if (dims[i] == 0 || dims[i] > (uint64_t(1) << 32))
      return refused + "globalDim[" + std::to_string(i) + "] = " + std::to_string(dims[i]) + " outside [1, 2^32]";
  for (int i = 0; i < 2; ++i)
    if (strides[i] % 16 || strides[i] >= (uint64_t(1) << 40))
      return refused + "globalStrides[" + std::to_string(i) + "] = " + std::to_string(strides[i]) + " bytes, not a multiple of 16 below 2^40";
  for (int i = 0; i < 3; ++i)
    if (box[i] == 0 || box[i] > 256) return refused + "boxDim[" + std::to_string(i) + "] = " + std::to_string(box[i]) + " outside [1, 256]";
  if (box[0] * 2 % 16) return refused + "boxDim[0] of " + std::to_string(box[0] * 2) + " bytes, not a multiple of 16";
  if (box[0] * 2 > 128) return refused + "boxDim[0] of " + std::to_string(box[0] * 2) + " bytes, over the 128-byte swizzle span";
  desc->base = base;
  std::copy(dims, dims + 3, desc->dims);
  std::copy(strides, strides + 2, desc->strides);
  std::copy(box, box + 3, desc->box);
  desc->encoded = 1;
  return "";
}

// The copy is queued on the barrier and lands when a thread waits on it, so data read
// without the wait is still the 0xff of unwritten shared memory.
void tma_load_3d(void* dst, const TmaDesc* desc, uint64_t* bar, int c0, int c1, int c2) {
  Launch& l = L();
  if (!desc->encoded) fail("cp.async.bulk.tensor with a tensor map that encode_tma_bf16 did not accept");
  // The swizzle moves 16-byte chunks within 128-byte rows, so the box covers whole rows.
  const size_t bytes = size_t(desc->box[0]) * desc->box[1] * desc->box[2] * 2, span = (bytes + 127) / 128 * 128;
  if (!in_dynamic_shared(dst, span)) fail("cp.async.bulk.tensor destination box not inside dynamic shared memory");
  if (smem_u32(dst) % 1024) fail("cp.async.bulk.tensor destination not 1024-byte aligned (the 128-byte swizzle repeats every 1024 bytes)");
  MBarrier& m = mbarrier_at(bar, "cp.async.bulk.tensor");
  for (const auto& other : l.block.mbarriers)
    if (in_range(other.first, 8, dst, span)) fail("cp.async.bulk.tensor destination box overlaps an mbarrier");
  m.copies.push_back(TmaCopy{static_cast<unsigned char*>(dst), *desc, {c0, c1, c2}});
  ++l.progress;
}

void mbar_init(uint64_t* bar, uint32_t count) {
  if (reinterpret_cast<uintptr_t>(bar) % 8 || !in_shared(bar, 8))
    fail("mbarrier.init on an address that is not an 8-byte aligned word of shared memory");
  if (count == 0 || count > kMbarrierLimit) fail("mbarrier.init with a count outside [1, 2^20 - 1]");
  MBarrier& m = L().block.mbarriers[bar];
  if (!m.copies.empty()) fail("mbarrier.init on a barrier with TMA copies in flight");
  m = MBarrier{count, count, 0, 0, {}};
  ++L().progress;
}

void mbar_arrive(uint64_t* bar) { arrive(bar, 0, "mbarrier.arrive"); }

void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) { arrive(bar, bytes, "mbarrier.arrive.expect_tx"); }

// mbarrier.try_wait.parity in a loop: done once the phase of that parity has completed, i.e.
// the current phase has the other parity. Queued copies land first, as they may have on a GPU.
void mbar_wait(uint64_t* bar, uint32_t parity) {
  if (parity > 1) fail("mbarrier.try_wait.parity with a parity other than 0 or 1");
  Fiber* f = L().current;
  MBarrier& m = mbarrier_at(bar, "mbarrier.try_wait.parity");
  for (;;) {
    land(m);
    if ((m.phase & 1) != parity) break;
    f->waiting = "mbarrier.try_wait.parity";
    switch_to_scheduler();
  }
  f->waiting = nullptr;
}

uint32_t smem_u32(const void* p) {
  if (!in_dynamic_shared(p, 1))
    fail("shared address of a pointer outside dynamic shared memory (the emulator gives shared addresses to dynamic shared memory only)");
  return static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(L().block.dynamic.get()));
}

void wgmma_fence() { L().current->wgmma_fenced = true; }

// Queued for the warpgroup: the product is computed at the wait_group that covers it.
void wgmma_issue(float* d, int n, bool trans_a, bool trans_b, uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  Launch& l = L();
  Fiber* f = l.current;
  if (l.block.warpgroups.empty()) fail("wgmma in a block that is not whole warpgroups (a multiple of 128 threads)");
  if (!f->wgmma_fenced) fail("wgmma.mma_async before the thread's first wgmma.fence");
  check_wgmma_descriptor(desc_a, "A");
  check_wgmma_descriptor(desc_b, "B");
  Warpgroup& wg = l.block.warpgroups[f->linear / kWarpgroup];
  const size_t at = static_cast<size_t>(f->wgmma_issued++ - wg.executed);
  if (at == wg.ops.size()) wg.ops.push_back(WgmmaOp{desc_a, desc_b, n, trans_a, trans_b, accumulate, 0, {}});
  WgmmaOp& op = wg.ops[at];
  if (op.desc_a != desc_a || op.desc_b != desc_b || op.n != n || op.trans_a != trans_a || op.trans_b != trans_b || op.accumulate != accumulate)
    fail("threads of one warpgroup issue different wgmma operations (descriptors, N, transposes or accumulate differ)");
  op.d[f->linear % kWarpgroup] = d;
  ++op.issued;
  ++l.progress;
}

void wgmma_commit() {
  Fiber* f = L().current;
  f->wgmma_groups.push_back(f->wgmma_issued);
}

void wgmma_wait_group(int newest_pending) {
  Fiber* f = L().current;
  while (f->wgmma_groups.size() > static_cast<size_t>(newest_pending)) {
    run_wgmma_through(f->wgmma_groups.front());
    f->wgmma_groups.erase(f->wgmma_groups.begin());
  }
}

void device_bytes_usable(void* block, size_t usable, size_t total) {
#ifdef CF_EMU_ASAN
  ASAN_UNPOISON_MEMORY_REGION(block, usable);
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(block) + usable, total - usable);
#else
  (void)total;
#endif
  std::memset(block, 0xff, usable);
}

cudaError_t set_function_attribute(const void* fn, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || static_cast<size_t>(value) > kSmemOptInMax)
    return record(cudaErrorInvalidValue, "invalid argument: cudaFuncSetAttribute(" + std::to_string(value) + ")");
  std::lock_guard<std::mutex> lk(g_mutex);
  g_max_dynamic_smem[fn] = value;
  return cudaSuccess;
}

}  // namespace cf_emu

using cf_emu::record;

cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device != 0) return record(cudaErrorInvalidDevice, "invalid device ordinal");
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "clipforge CUDA emulator (CPU)");
  p->totalGlobalMem = cf_emu::kDeviceMemory;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int device) {
  if (device != 0) return record(cudaErrorInvalidDevice, "invalid device ordinal");
  switch (attr) {
    case cudaDevAttrMultiProcessorCount:
      *v = 132;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *v = 9;  // as cudaGetDeviceProperties reports
      break;
    default:
      return record(cudaErrorInvalidValue, "invalid argument: device attribute");
  }
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : record(cudaErrorInvalidDevice, "invalid device ordinal"); }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = cf_emu::g_last_error;
  cf_emu::g_last_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return cf_emu::g_last_message.c_str();
  }
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  static int token;
  *s = reinterpret_cast<cudaStream_t>(&token);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  static int token;
  *e = reinterpret_cast<cudaEvent_t>(&token);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaMalloc(void** p, size_t bytes) {
  std::lock_guard<std::mutex> lk(cf_emu::g_mutex);
  if (cf_emu::g_allocated + bytes > cf_emu::kDeviceMemory || posix_memalign(p, 256, bytes ? bytes : 1) != 0) {
    *p = nullptr;
    return record(cudaErrorMemoryAllocation, "out of memory");
  }
  cf_emu::g_allocated += bytes;
  cf_emu::g_allocations[*p] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  std::lock_guard<std::mutex> lk(cf_emu::g_mutex);
  auto it = cf_emu::g_allocations.find(p);
  if (it == cf_emu::g_allocations.end()) return record(cudaErrorInvalidValue, "invalid argument: cudaFree of an unknown pointer");
  cf_emu::g_allocated -= it->second;
  cf_emu::g_allocations.erase(it);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : record(cudaErrorMemoryAllocation, "out of memory");
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::mutex> lk(cf_emu::g_mutex);
  *total_bytes = cf_emu::kDeviceMemory;
  *free_bytes = cf_emu::kDeviceMemory - cf_emu::g_allocated;
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
  if (bytes) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) {
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
