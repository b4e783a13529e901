// The CUDA emulator's scheduler, shared memory, warp collectives and runtime API
// (see cuda_emu.h for what it models and checks).
#include <sys/mman.h>
#include <ucontext.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
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
  std::unique_ptr<unsigned char[]> dynamic;
  size_t dynamic_bytes = 0;
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
    if (!any) return;
    if (l.progress == before) {
      l.error = std::string("kernel ") + l.kernel + ", block (" + std::to_string(blockIdx.x) + ", " + std::to_string(blockIdx.y) + ", " +
                std::to_string(blockIdx.z) + "): " + deadlock_report(b);
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
  if (dynamic_smem) l.block.dynamic.reset(new unsigned char[dynamic_smem]);
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
  if (attr != cudaDevAttrMultiProcessorCount) return record(cudaErrorInvalidValue, "invalid argument: device attribute");
  *v = 132;
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
