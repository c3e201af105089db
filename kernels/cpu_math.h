// Shared by the kernels' compiled CPU paths (selective scan, polyline attention): the targets their
// loops are compiled for, and elementwise functions that the compiler vectorises inside `omp simd` loops
// (libm's are one call per element): fp32 polynomials with Cephes' coefficients, within a few ulp of libm;
// fp64 overloads call libm (fp64 is for gradient checks, not speed). Needs -fno-trapping-math, without which
// GCC keeps the selects below as branches and does not vectorise.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

// Functions marked CPU_MATH_TARGETS are compiled for AVX-512, AVX2 + FMA and the baseline, and the loader picks
// one for the CPU it runs on (GCC's function multiversioning): the build machine's CPU does not matter, and the
// fp32 exp / log in the wide versions run 3-5 times faster than in SSE2.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && __GNUC__ >= 11
#define CPU_MATH_TARGETS __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CPU_MATH_TARGETS
#endif

namespace cpu_math {

// forced: a function compiled for the baseline is not otherwise inlined into the AVX2 / AVX-512 clones
#define CPU_MATH_INLINE inline __attribute__((always_inline))

// exp for fp32 that vectorises: exp(x) = 2^n e^r, n = round(x / ln 2), |r| <= ln 2 / 2, e^r by Cephes' degree-5
// polynomial (about 1 ulp); 0 below -87 and inf above 88.72 as libm (to a few ulp at the ends), NaN kept.
CPU_MATH_INLINE float exp_(float x) {
  float xc = x < -87.0f ? -87.0f : x;
  xc = xc > 88.72f ? 88.72f : xc;
  // round to nearest by adding and subtracting 1.5 * 2^23 (SSE2 has no vector floor)
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 126) << 23;  // 2^(n-1): n = 128 stays finite
  float half_scale;
  std::memcpy(&half_scale, &bits, sizeof(bits));
  float y = er * half_scale * 2.0f;
  y = x < -87.0f ? 0.0f : y;
  y = x > 88.72f ? std::numeric_limits<float>::infinity() : y;
  return x != x ? x : y;
}
// log(x) for x >= 1 (fp32) that vectorises: x = m 2^e, m in [sqrt(1/2), sqrt(2)), Cephes' logf polynomial
CPU_MATH_INLINE float log_ge1(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  int32_t e = ((bits >> 23) & 0xff) - 126;  // x = m' 2^e with m' in [0.5, 1)
  int32_t mb = (bits & 0x007fffff) | 0x3f000000;
  float m;
  std::memcpy(&m, &mb, sizeof(mb));
  const bool small = m < 0.70710678f;
  e = small ? e - 1 : e;
  m = small ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float p = 7.0376836292e-2f;
  p = p * m - 1.1514610310e-1f;
  p = p * m + 1.1676998740e-1f;
  p = p * m - 1.2420140846e-1f;
  p = p * m + 1.4249322787e-1f;
  p = p * m - 1.6668057665e-1f;
  p = p * m + 2.0000714765e-1f;
  p = p * m - 2.4999993993e-1f;
  p = p * m + 3.3333331174e-1f;
  float y = p * m * z;
  const float fe = static_cast<float>(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return m + y + 0.693359375f * fe;
}
// softplus(v) = log1p(exp(v)), v above 20 (torch's threshold); log1p(y) = log(1 + y) y / ((1 + y) - 1) corrects
// the rounding of 1 + y (Goldberg), y itself when 1 + y rounds to 1
CPU_MATH_INLINE float softplus(float v) {
  const float y = exp_(v);
  const float w = 1.0f + y;
  const float d = w - 1.0f;
  const float l = d == 0.0f ? y : log_ge1(w) * (y / d);
  return v > 20.0f ? v : l;
}
// 1 - exp(-x) = -expm1(-x) for x >= 0: a series below 0.35 (no cancellation), 1 - exp(-x) above
CPU_MATH_INLINE float one_minus_exp_neg(float x) {
  const float s = x * (1.0f - x * (0.5f - x * (1.0f / 6 - x * (1.0f / 24 - x * (1.0f / 120 - x * (1.0f / 720 - x * (1.0f / 5040)))))));
  return x < 0.35f ? s : 1.0f - exp_(-x);
}

CPU_MATH_INLINE double exp_(double x) { return std::exp(x); }
CPU_MATH_INLINE double softplus(double v) { return v > 20.0 ? v : std::log1p(std::exp(v)); }
CPU_MATH_INLINE double one_minus_exp_neg(double x) { return -std::expm1(-x); }

}  // namespace cpu_math
