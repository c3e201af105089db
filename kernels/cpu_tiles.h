// Small dense blocks for the compiled CPU attention kernels (polyline, Manhattan): matrix products with the result
// in register tiles, and row reductions, written so that GCC vectorises them (see kernels/cpu_math.h for the
// targets they are compiled for).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu_math.h"

namespace cpu_tiles {

// Register tile of the small matrix products: kRows rows x kCols columns of the result kept in registers (4 x 16
// fp32 = four AVX-512 registers), so that each loaded row of the right operand feeds kRows multiply-adds.
constexpr int64_t kRows = 4, kCols = 16;

inline int64_t padded(int64_t L) { return (L + kCols - 1) / kCols * kCols; }

// One attention plane (batch x head) of the flash-style kernels: an H x W grid of N tokens, head dims d (q, k) and
// dv (v); ld is N padded to whole register tiles (the row length of the score blocks).
struct Plane {
  int64_t H, W, N, d, dv, ld;
};

inline Plane make_plane(int64_t H, int64_t W, int64_t d, int64_t dv) { return {H, W, H * W, d, dv, padded(H * W)}; }

// c (R x C, rows ldc apart) = coef sum_t A(r, t) B(t, :) (+ c when accumulate); A(r, t) = a[r ars + t acs],
// B(t, :) = b + t ldb. R and C are compile-time, so the accumulators stay in registers.
template <typename T, int64_t R, int64_t C>
CPU_MATH_INLINE void tile(const T* __restrict__ a, int64_t ars, int64_t acs, const T* __restrict__ b, int64_t ldb,
                          int64_t K, T* __restrict__ c, int64_t ldc, T coef, bool accumulate) {
  T acc[R][C] = {};
  for (int64_t t = 0; t < K; ++t) {
    const T* bt = b + t * ldb;
    for (int64_t r = 0; r < R; ++r) {
      const T w = a[r * ars + t * acs];
#pragma omp simd
      for (int64_t j = 0; j < C; ++j) acc[r][j] += w * bt[j];
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    T* cr = c + r * ldc;
#pragma omp simd
    for (int64_t j = 0; j < C; ++j) cr[j] = (accumulate ? cr[j] : T(0)) + coef * acc[r][j];
  }
}

template <typename T, int64_t R>
CPU_MATH_INLINE void tile_row(const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, int64_t N, int64_t K,
                              T* c, int64_t ldc, T coef, bool accumulate) {
  int64_t j = 0;
  for (; j + kCols <= N; j += kCols) tile<T, R, kCols>(a, ars, acs, b + j, ldb, K, c + j, ldc, coef, accumulate);
  for (; j < N; ++j) tile<T, R, 1>(a, ars, acs, b + j, ldb, K, c + j, ldc, coef, accumulate);
}

// c (M x N) = coef A B (+ c): the one small matrix product of the polyline kernels, for every operand layout.
template <typename T>
CPU_MATH_TARGETS void gemm(int64_t M, int64_t N, int64_t K, const T* a, int64_t ars, int64_t acs, const T* b,
                           int64_t ldb, T* c, int64_t ldc, T coef, bool accumulate) {
  int64_t i = 0;
  for (; i + kRows <= M; i += kRows)
    tile_row<T, kRows>(a + i * ars, ars, acs, b, ldb, N, K, c + i * ldc, ldc, coef, accumulate);
  for (; i < M; ++i) tile_row<T, 1>(a + i * ars, ars, acs, b, ldb, N, K, c + i * ldc, ldc, coef, accumulate);
}

// Reductions over a row: kCols partial sums, which GCC vectorises (it leaves `omp simd reduction` loops scalar
// here). dot(x, y) with y = nullptr is the plain sum.
template <typename T>
CPU_MATH_INLINE T row_dot(const T* __restrict__ x, const T* __restrict__ y, int64_t n) {
  T part[kCols] = {};
  int64_t j = 0;
  for (; j + kCols <= n; j += kCols) {
    for (int64_t c = 0; c < kCols; ++c) part[c] += y ? x[j + c] * y[j + c] : x[j + c];
  }
  T sum = 0;
  for (; j < n; ++j) sum += y ? x[j] * y[j] : x[j];
  for (int64_t c = 0; c < kCols; ++c) sum += part[c];
  return sum;
}

template <typename T>
CPU_MATH_INLINE T row_max(const T* __restrict__ x, int64_t n) {
  T part[kCols];
  for (int64_t c = 0; c < kCols; ++c) part[c] = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
  for (; j + kCols <= n; j += kCols) {
    for (int64_t c = 0; c < kCols; ++c) part[c] = std::max(part[c], x[j + c]);
  }
  T mx = -std::numeric_limits<T>::infinity();
  for (; j < n; ++j) mx = x[j] > mx ? x[j] : mx;
  for (int64_t c = 0; c < kCols; ++c) mx = part[c] > mx ? part[c] : mx;
  return mx;
}

// xt (cols x rows, rows of xt ld apart) = x transposed, x's rows row_stride apart: the inner loops of the
// products then run along the tokens.
template <typename T>
void transpose_into(const T* __restrict__ x, int64_t rows, int64_t cols, int64_t row_stride, T* __restrict__ xt,
                    int64_t ld) {
  for (int64_t t = 0; t < rows; ++t) {
    const T* xr = x + t * row_stride;
    for (int64_t c = 0; c < cols; ++c) xt[c * ld + t] = xr[c];
  }
}

// softmax over a row of ld logits (ld a multiple of kCols; padding at -inf comes out 0); returns the row's
// log-sum-exp (for a backward that recomputes the probabilities as exp(logit - lse))
template <typename T>
CPU_MATH_INLINE T softmax_row(T* __restrict__ row, int64_t ld) {
  const T mx = row_max(row, ld);
#pragma omp simd
  for (int64_t j = 0; j < ld; ++j) row[j] = cpu_math::exp_(row[j] - mx);
  const T sum = row_dot<T>(row, nullptr, ld), inv = T(1) / sum;
#pragma omp simd
  for (int64_t j = 0; j < ld; ++j) row[j] *= inv;
  return mx + std::log(sum);
}

}  // namespace cpu_tiles
