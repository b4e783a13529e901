// Backend discovery and control: which backends exist, the devices found, streams and
// synchronization. The CUDA half is only defined when the addon was built with CUDA.
#pragma once
#include <string>

#include "core.h"

namespace cf::cuda {

struct DeviceInfo {
  std::string name;
  int64_t total_memory = 0;
  int major = 0, minor = 0;
  int multiprocessors = 0;
};

// Number of usable GPUs; 0 with `why_none` filled when there are none (no driver, no
// device, driver too old, ...). Never throws.
int device_count(std::string* why_none);
DeviceInfo device_info(int device);
void set_device(int device);
// The stream ops on `device` are enqueued on (one per device, created on first use).
Stream current_stream(int device);
// Waits for all work on the device's stream and throws cf::Error on a pending CUDA error.
void synchronize(int device);
// Checks for an error from the last launch; with CLIPFORGE_CUDA_SYNC_CHECK also syncs.
void check_launch(const char* what);
std::string runtime_version();

}  // namespace cf::cuda
