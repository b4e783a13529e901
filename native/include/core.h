// clipforge native core types, shared by the CPU and CUDA backends and the addon.
// Every op header in this folder declares one signature per backend, in namespaces
// cf::cpu and cf::cuda, taking raw pointers, shapes, dtypes, attributes and a stream
// (an opaque cudaStream_t; nullptr on the CPU).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

// Always inlined: the elementwise kernels call the shared math (a switch over every op) with
// a compile-time op, and only inlining folds the switch and lets the loop vectorize. Left to
// itself GCC keeps the call, which made a ReLU backward 10x slower than an add.
#if defined(__CUDACC__)
#define CF_HD __host__ __device__ __forceinline__
#elif defined(_MSC_VER)
#define CF_HD __forceinline
#else
#define CF_HD inline __attribute__((always_inline))
#endif

namespace cf {

enum class DType : int32_t { F32 = 0, BF16 = 1, I32 = 2 };

inline size_t dtype_size(DType t) { return t == DType::BF16 ? 2 : 4; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
  }
  return "?";
}

enum class DeviceKind : int32_t { CPU = 0, CUDA = 1 };
struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

using Stream = void*;

// bfloat16 storage: the top 16 bits of an IEEE float. Conversion rounds to nearest even,
// NaN stays NaN.
struct bf16 {
  uint16_t bits;
};

CF_HD float bf16_to_float(bf16 v) {
  uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

CF_HD bf16 float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return bf16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

// Element access by dtype for kernels written once for f32 and bf16 storage.
template <typename T> struct Elem;
template <> struct Elem<float> {
  static CF_HD float load(const float* p, int64_t i) { return p[i]; }
  static CF_HD void store(float* p, int64_t i, float v) { p[i] = v; }
};
template <> struct Elem<bf16> {
  static CF_HD float load(const bf16* p, int64_t i) { return bf16_to_float(p[i]); }
  static CF_HD void store(bf16* p, int64_t i, float v) { p[i] = float_to_bf16(v); }
};

constexpr int kMaxRank = 8;

// Runs the statements with T bound to the storage type of a floating dtype (f32 or bf16).
#define CF_FLOAT_DTYPE(dtype, T, ...)                                      \
  do {                                                                     \
    if ((dtype) == ::cf::DType::F32) {                                     \
      using T = float;                                                     \
      __VA_ARGS__;                                                         \
    } else if ((dtype) == ::cf::DType::BF16) {                             \
      using T = ::cf::bf16;                                                \
      __VA_ARGS__;                                                         \
    } else {                                                               \
      throw ::cf::Error(std::string("unsupported dtype ") + ::cf::dtype_name(dtype)); \
    }                                                                      \
  } while (0)

// Runs the statements with T bound to one float dtype's storage type and W to a second
// dtype's that is the same or, beside bf16, f32: a norm's f32 parameters beside a bf16 product's
// output under autocast (BatchNorm, GRN), a bf16 tensor's sums written in f32 (reduce). The
// addons refuse the other mixes before a kernel runs; this throws if one gets through.
#define CF_SAME_OR_WIDER_DTYPES(dtype, wide_dtype, T, W, ...) \
  CF_FLOAT_DTYPE(dtype, T, CF_WIDER_OF_BOUND(T, dtype, wide_dtype, W, __VA_ARGS__))

// Two dtypes each of which is dtype's or f32 beside bf16 (say, parameters and a residual
// stream): T, W1 and W2 bound for each of the combinations.
#define CF_SAME_OR_WIDER_DTYPES_2(dtype, wide1, wide2, T, W1, W2, ...) \
  CF_SAME_OR_WIDER_DTYPES(dtype, wide1, T, W1, CF_WIDER_OF_BOUND(T, dtype, wide2, W2, __VA_ARGS__))

// W bound to wide's storage type beside T, already bound to dtype's.
#define CF_WIDER_OF_BOUND(T, dtype, wide, W, ...)                                                    \
  do {                                                                                               \
    if ((wide) == (dtype)) {                                                                         \
      using W = T;                                                                                   \
      __VA_ARGS__;                                                                                   \
    } else if ((dtype) == ::cf::DType::BF16 && (wide) == ::cf::DType::F32) {                         \
      using W = float;                                                                               \
      __VA_ARGS__;                                                                                   \
    } else {                                                                                         \
      throw ::cf::Error(std::string("unsupported dtypes ") + ::cf::dtype_name(dtype) + " and " +     \
                        ::cf::dtype_name(wide) + " (expected the same, or bf16 and f32)");           \
    }                                                                                                \
  } while (0)

// A failure inside a kernel or runtime call (not an argument error: those are caught
// before any kernel runs). The addon turns it into a JS Error.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace cf
