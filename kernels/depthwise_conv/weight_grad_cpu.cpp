// Weight and bias gradients of a depthwise 2-D convolution (stride 1, dilation 1, zero padding) on the CPU,
// compiled:
//   dw[c, i, j] = sum over (b, y, x) of g[b, c, y, x] * input[b, c, y + i - ph, x + j - pw],   db[c] = sum of g[b, c]
// (terms outside the input are zero padding). oneDNN's kernel for this is fast for 3 x 3 but takes ~25 times
// longer per tap for 5 x 5 and 7 x 7 (PPMA / RMT's LePE, MPViT's conv relative position encoding), and a backward
// that asks it for the bias gradient runs that kernel too: it was most of those convolutions' backward on the CPU.
//
// Layout: both tensors channels-last in memory (channel stride 1), any other strides; the channels of a pixel are
// the vector lanes. A task takes a range of output rows (b, y) and sums, per tap and block of kV channels, over
// the row's output columns in registers, into its own (kh kw + 1, C) buffer (the last row: the bias gradient);
// the buffers are added at the end.
//
// Built by `python -m kernels.build_cpu`; cpp_impl.py loads it. Tensors in scalar_t (fp32, or fp64 for gradient
// checks).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../cpu_math.h"

namespace {

constexpr int64_t kV = 16;  // channels summed in registers at once (one AVX-512 register of fp32)

struct Geometry {
  int64_t B, C, H, W, Ho, Wo, kh, kw, ph, pw;
  int64_t xs[3], gs[3];  // element strides of (batch, row, column); the channel stride is 1
};

// acc[c] += sum over output columns o in [lo, hi) of g[o][c] * x[o + shift][c] (x = nullptr: of g[o][c]) for the
// channels c < L at g, x (L > 0: a trip count the compiler sees, so that the sums stay in registers) or c < n (L 0)
template <typename T, int64_t L>
CPU_MATH_INLINE void tap_sum(const T* __restrict__ g, int64_t gsw, const T* __restrict__ x, int64_t xsw, int64_t shift,
                             int64_t lo, int64_t hi, int64_t n, T* __restrict__ acc) {
  T a[kV] = {};
  for (int64_t o = lo; o < hi; ++o) {
    const T* __restrict__ gp = g + o * gsw;
    if (x) {
      const T* __restrict__ xp = x + (o + shift) * xsw;
#pragma omp simd
      for (int64_t c = 0; c < (L ? L : n); ++c) a[c] += gp[c] * xp[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < (L ? L : n); ++c) a[c] += gp[c];
    }
  }
#pragma omp simd
  for (int64_t c = 0; c < (L ? L : n); ++c) acc[c] += a[c];
}

// tap_sum over all C channels: blocks of kV lanes, then one of kV / 2 (MPViT's channel counts are not multiples of
// 16), then the rest
template <typename T>
CPU_MATH_INLINE void channels_sum(const T* g, int64_t gsw, const T* x, int64_t xsw, int64_t shift, int64_t lo,
                                  int64_t hi, int64_t C, T* acc) {
  int64_t c0 = 0;
  for (; c0 + kV <= C; c0 += kV) tap_sum<T, kV>(g + c0, gsw, x ? x + c0 : x, xsw, shift, lo, hi, kV, acc + c0);
  if (c0 + kV / 2 <= C) {
    tap_sum<T, kV / 2>(g + c0, gsw, x ? x + c0 : x, xsw, shift, lo, hi, kV / 2, acc + c0);
    c0 += kV / 2;
  }
  if (c0 < C) tap_sum<T, 0>(g + c0, gsw, x ? x + c0 : x, xsw, shift, lo, hi, C - c0, acc + c0);
}

// The taps' sums over output rows [r0, r1) (row r = b Ho + y) into acc (kh kw, C), the bias's into acc + kh kw C
// (when with_bias).
template <typename T>
CPU_MATH_TARGETS void rows_weight_grad(const T* x, const T* g, const Geometry& s, int64_t r0, int64_t r1,
                                       bool with_bias, T* acc) {
  T* bias_acc = acc + s.kh * s.kw * s.C;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / s.Ho, y = r % s.Ho;
    const T* g_row = g + b * s.gs[0] + y * s.gs[1];
    if (with_bias) channels_sum<T>(g_row, s.gs[2], nullptr, 0, 0, 0, s.Wo, s.C, bias_acc);
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t iy = y + i - s.ph;
      if (iy < 0 || iy >= s.H) continue;
      const T* x_row = x + b * s.xs[0] + iy * s.xs[1];
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t shift = j - s.pw;  // output column o reads input column o + shift
        const int64_t lo = std::max<int64_t>(0, -shift), hi = std::min<int64_t>(s.Wo, s.W - shift);
        channels_sum<T>(g_row, s.gs[2], x_row, s.xs[2], shift, lo, hi, s.C, acc + (i * s.kw + j) * s.C);
      }
    }
  }
}

Geometry geometry(const at::Tensor& x, const at::Tensor& g, int64_t kh, int64_t kw, int64_t ph, int64_t pw) {
  TORCH_CHECK(x.dim() == 4 && g.dim() == 4 && x.device().is_cpu() && g.device().is_cpu() &&
                  g.scalar_type() == x.scalar_type(),
              "depthwise_conv weight_grad: 4-D CPU input and output gradient of one dtype expected");
  TORCH_CHECK((x.stride(1) == 1 && g.stride(1) == 1) || x.size(1) == 1,  // (one channel: its stride is never used)
              "depthwise_conv weight_grad: channels-last tensors expected");
  TORCH_CHECK(kh > 0 && kw > 0 && ph >= 0 && pw >= 0, "depthwise_conv weight_grad: bad kernel size or padding");
  Geometry s{x.size(0), x.size(1), x.size(2), x.size(3), x.size(2) + 2 * ph - kh + 1, x.size(3) + 2 * pw - kw + 1,
             kh, kw, ph, pw, {x.stride(0), x.stride(2), x.stride(3)}, {g.stride(0), g.stride(2), g.stride(3)}};
  TORCH_CHECK(g.size(0) == s.B && g.size(1) == s.C && g.size(2) == s.Ho && g.size(3) == s.Wo,
              "depthwise_conv weight_grad: the output gradient's shape does not match the input's, kernel and padding");
  return s;
}

// dw (C, 1, kh, kw) and db (C,) (empty unless with_bias), in the input's dtype
std::vector<at::Tensor> weight_grad(const at::Tensor& x, const at::Tensor& g, int64_t kh, int64_t kw, int64_t ph,
                                    int64_t pw, bool with_bias) {
  const Geometry s = geometry(x, g, kh, kw, ph, pw);
  const int64_t taps = kh * kw, slots = taps + 1, rows = s.B * s.Ho;
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  auto dw = at::empty({s.C, 1, kh, kw}, x.options());
  auto db = at::empty({with_bias ? s.C : 0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "depthwise_conv_weight_grad", [&] {
    using T = scalar_t;
    std::vector<T> acc(tasks * slots * s.C, T(0));
    const T *xp = x.data_ptr<T>(), *gp = g.data_ptr<T>();
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        rows_weight_grad(xp, gp, s, rows * t / tasks, rows * (t + 1) / tasks, with_bias,
                         acc.data() + t * slots * s.C);
    });
    T *wp = dw.data_ptr<T>(), *bp = db.data_ptr<T>();
    for (int64_t c = 0; c < s.C; ++c) {
      for (int64_t k = 0; k < (with_bias ? slots : taps); ++k) {
        T sum = 0;
        for (int64_t t = 0; t < tasks; ++t) sum += acc[(t * slots + k) * s.C + c];
        (k < taps ? wp[c * taps + k] : bp[c]) = sum;
      }
    }
  });
  return {dw, db};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "weight and bias gradients of a depthwise convolution (stride 1), compiled for the CPU";
  m.def("weight_grad", &weight_grad,
        "(dw (C, 1, kh, kw), db (C,) or empty) from the input and the output gradient (B, C, H, W) / (B, C, Ho, Wo), "
        "channels-last, kh, kw, ph, pw and with_bias");
}
