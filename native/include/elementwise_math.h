// Scalar math for the elementwise ops, shared by the CPU and CUDA kernels so both
// backends compute the same function.
#pragma once
#include <cmath>

#include "elementwise.h"

namespace cf {

CF_HD float unary_fn(UnaryOp op, float x, float p0, float p1) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return expf(x);
    case UnaryOp::Log: return logf(x);
    case UnaryOp::Sqrt: return sqrtf(x);
    case UnaryOp::Rsqrt: return 1.0f / sqrtf(x);
    case UnaryOp::Abs: return fabsf(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Reciprocal: return 1.0f / x;
    case UnaryOp::Sigmoid: return 1.0f / (1.0f + expf(-x));
    case UnaryOp::Tanh: return tanhf(x);
    case UnaryOp::Relu: return x > 0.0f ? x : 0.0f;
    case UnaryOp::GeluErf: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case UnaryOp::GeluTanh: {
      const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + tanhf(u));
    }
    case UnaryOp::QuickGelu: return x / (1.0f + expf(-1.702f * x));
    case UnaryOp::Affine: return p0 * x + p1;
    case UnaryOp::Pow: return powf(x, p0);
    case UnaryOp::Clamp: return fminf(fmaxf(x, p0), p1);
    default: return NAN;
  }
}

// d unary_fn(x) / dx
CF_HD float unary_grad(UnaryOp op, float x, float p0, float p1) {
  switch (op) {
    case UnaryOp::Neg: return -1.0f;
    case UnaryOp::Exp: return expf(x);
    case UnaryOp::Log: return 1.0f / x;
    case UnaryOp::Sqrt: return 0.5f / sqrtf(x);
    case UnaryOp::Rsqrt: return -0.5f / (x * sqrtf(x));
    case UnaryOp::Abs: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case UnaryOp::Square: return 2.0f * x;
    case UnaryOp::Reciprocal: return -1.0f / (x * x);
    case UnaryOp::Sigmoid: {
      const float s = 1.0f / (1.0f + expf(-x));
      return s * (1.0f - s);
    }
    case UnaryOp::Tanh: {
      const float t = tanhf(x);
      return 1.0f - t * t;
    }
    case UnaryOp::Relu: return x > 0.0f ? 1.0f : 0.0f;
    case UnaryOp::GeluErf: {
      const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
      const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
      return cdf + x * pdf;
    }
    case UnaryOp::GeluTanh: {
      const float k = 0.79788456080286536f;
      const float u = k * (x + 0.044715f * x * x * x);
      const float t = tanhf(u);
      return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case UnaryOp::QuickGelu: {
      const float s = 1.0f / (1.0f + expf(-1.702f * x));
      return s + 1.702f * x * s * (1.0f - s);
    }
    case UnaryOp::Affine: return p0;
    case UnaryOp::Pow: return p0 == 0.0f ? 0.0f : p0 * powf(x, p0 - 1.0f);
    case UnaryOp::Clamp: return (x >= p0 && x <= p1) ? 1.0f : 0.0f;
    default: return NAN;
  }
}

CF_HD float binary_fn(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
    case BinaryOp::Maximum: return a >= b ? a : b;
    case BinaryOp::Minimum: return a <= b ? a : b;
    default: return NAN;
  }
}

// dy * d binary_fn(a, b) / d(side); ties of maximum/minimum send the gradient to a.
CF_HD float binary_grad(BinaryOp op, int side, float a, float b, float dy) {
  switch (op) {
    case BinaryOp::Add: return dy;
    case BinaryOp::Sub: return side == 0 ? dy : -dy;
    case BinaryOp::Mul: return side == 0 ? dy * b : dy * a;
    case BinaryOp::Div: return side == 0 ? dy / b : -dy * a / (b * b);
    case BinaryOp::Maximum: return (side == 0) == (a >= b) ? dy : 0.0f;
    case BinaryOp::Minimum: return (side == 0) == (a <= b) ? dy : 0.0f;
    default: return NAN;
  }
}

}  // namespace cf
