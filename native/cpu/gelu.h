// The CPU's vectorized GELU (erf form), shared by the elementwise kernels and GRN's GELU form
// (elementwise.cpp has the method and its accuracy).
#pragma once
#include "core.h"

namespace cf::cpu {

// value[i] = GELU(x[i]) = x Φ(x); when grad is not null, grad[i] = GELU'(x[i]) = Φ(x) + x φ(x).
template <typename T>
void gelu_erf_values(const T* x, float* value, float* grad, int64_t n);

}  // namespace cf::cpu
