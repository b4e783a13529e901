// Philox-4x32-10 counter-based generator (Salmon et al., SC'11). Element i of a random
// tensor is a pure function of (seed, offset + i), so the CPU and CUDA backends produce the
// same numbers, in any order and any thread layout.
#pragma once
#include <cmath>

#include "core.h"

namespace cf {

struct Philox4 {
  uint32_t v[4];
};

CF_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

CF_HD Philox4 philox(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    const uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits.
CF_HD float philox_uniform(uint64_t seed, uint64_t counter) {
  return static_cast<float>(philox(seed, counter).v[0] >> 8) * (1.0f / 16777216.0f);
}

// Standard normal by Box-Muller on the first two words (the second output is dropped so
// that each element depends on its own counter only).
CF_HD float philox_normal(uint64_t seed, uint64_t counter) {
  const Philox4 r = philox(seed, counter);
  const float u1 = static_cast<float>((r.v[0] >> 8) + 1) * (1.0f / 16777216.0f);
  const float u2 = static_cast<float>(r.v[1] >> 8) * (1.0f / 16777216.0f);
  return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}

}  // namespace cf
