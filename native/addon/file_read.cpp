// readFileInto(tensor, fd, position): fills a tensor's memory with the raw bytes of an open
// file from `position` (numel x dtype size bytes, no conversion). On the CPU the bytes go
// straight from the page cache into the tensor's storage (one copy, where reading into a
// JS buffer and uploading takes two); on CUDA they pass through a bounded host buffer.
// Checkpoint readers use it for tensors whose file dtype is the tensor's dtype.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "args.h"
#include "memory.h"
#include "register.h"

namespace cf::addon {
namespace {

// Reads exactly `nbytes` at `position` into `dst`, or throws naming the byte where it stopped.
void pread_exact(Napi::Env env, int fd, char* dst, size_t nbytes, int64_t position) {
  size_t done = 0;
  while (done < nbytes) {
    const size_t want = std::min<size_t>(nbytes - done, size_t{1} << 30);
    const ssize_t n = ::pread(fd, dst + done, want, static_cast<off_t>(position + static_cast<int64_t>(done)));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(env, "readFileInto: reading at byte " + std::to_string(position + static_cast<int64_t>(done)) + " failed: " + std::strerror(errno));
    }
    if (n == 0)
      fail(env, "readFileInto: the file ends at byte " + std::to_string(position + static_cast<int64_t>(done)) + ", " +
                    std::to_string(nbytes - done) + " bytes short of the tensor");
    done += static_cast<size_t>(n);
  }
}

Napi::Value read_file_into(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* op = "readFileInto";
  check_arg_count(info, 3, op);
  TensorArg t = tensor(info, 0, op, "tensor");
  const int fd = static_cast<int>(integer(info, 1, op, "fd", 0, 1 << 30));
  const int64_t position = integer(info, 2, op, "position", 0, int64_t{1} << 52);
  const size_t nbytes = static_cast<size_t>(t.numel) * dtype_size(t.dtype);
  if (t.device().kind == DeviceKind::CPU) {
    pread_exact(env, fd, static_cast<char*>(t.data()), nbytes, position);
    return env.Undefined();
  }
#ifdef CLIPFORGE_WITH_CUDA
  const Stream s = prepare_device(env, t.device(), op);
  // Host->device copies from pageable memory return once the bytes are staged, so one
  // bounded buffer is reused chunk after chunk.
  std::vector<char> staging(std::min<size_t>(nbytes, size_t{64} << 20));
  for (size_t done = 0; done < nbytes; done += staging.size()) {
    const size_t n = std::min(staging.size(), nbytes - done);
    pread_exact(env, fd, staging.data(), n, position + static_cast<int64_t>(done));
    cuda::copy_bytes(t.device().index, static_cast<char*>(t.data()) + done, staging.data(), n, 0, s);
  }
#else
  prepare_device(env, t.device(), op);
#endif
  return env.Undefined();
}

}  // namespace

void register_file_read(Napi::Env, Napi::Object exports) {
  CF_EXPORT(exports, "readFileInto", read_file_into);
}

}  // namespace cf::addon
