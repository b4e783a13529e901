// Which x86-64 SIMD level the CPU kernels may use, decided once at run time. Hot kernels are
// compiled twice, for the baseline and with __attribute__((target("avx2,fma"))), and call
// has_avx2_fma() to pick one; elsewhere (other architectures, other compilers) only the
// baseline exists.
#pragma once

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CF_X86_DISPATCH 1
#endif

namespace cf::cpu {

#ifdef CF_X86_DISPATCH
inline bool has_avx2_fma() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}
#else
inline bool has_avx2_fma() { return false; }
#endif

}  // namespace cf::cpu
