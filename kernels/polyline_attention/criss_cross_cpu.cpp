// Criss-cross polyline attention (PPMA's chunk mode) on the CPU, compiled: every axial attention of the op runs
// as one task of small loops over a single grid line, so its L x L probabilities stay in the core's cache
// instead of the (B, n, H, W, W) and (B, n, W, H, H) tensors that the PyTorch path writes and reads back a dozen
// times. Nothing of size N^1.5 is kept: the probabilities are recomputed where they are needed again.
//
// Built by `python -m kernels.build_cpu` (install_requirements.sh runs it); cpp_impl.py loads it and the
// op falls back to criss_cross.py when it is not built. Math (criss_cross.py has the same in PyTorch):
//   A_w = softmax(scale q k^T + Lw) per row, A_h the same per column, L(i, j) = (c_i - c_j) sgn(i - j) with c
//   the cumulative log decay along the line (ca along W, cb along H);
//   out = 1/2 A_h (A_w v) + 1/2 A_w (A_h v).
// Tensors are (P, H, W, ...) with P = batch x heads, contiguous, in scalar_t (fp32, or fp64 for gradient checks).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../cpu_math.h"
#include "../cpu_inputs.h"
#include "../cpu_tiles.h"

namespace {

using namespace cpu_tiles;

struct Grid {
  int64_t P, H, W, d, dv;
};

// One axial line of the grid: token t of the line is token base + t * stride of the (P, H, W) grid.
struct Line {
  int64_t base, stride, L;
  int64_t tok(int64_t t) const { return base + t * stride; }
};

Line row_line(const Grid& g, int64_t r) { return {r * g.W, 1, g.W}; }  // r = p * H + i

Line col_line(const Grid& g, int64_t c) {  // c = p * W + j
  const int64_t p = c / g.W, j = c % g.W;
  return {p * g.H * g.W + j, g.W, g.H};
}

// Per-thread scratch, sized for the longest line; L x L matrices have rows of padded(L) (whole register tiles).
template <typename T>
struct Scratch {
  int64_t ld;
  std::vector<T> a, da, xt, acc, cum;
  Scratch(int64_t L, int64_t cols)
      : ld(padded(L)), a(L * ld), da(L * ld), xt(cols * ld, T(0)), acc(L * cols), cum(ld, T(0)) {}
};

// m (L x L, rows ld apart) = coef x y^T over the line (x, y: tokens x cols), added to m when accumulate. The
// padding columns of m get zeros (those of yt are zero).
template <typename T>
void outer(const T* x, const T* y, int64_t cols, const Line& ln, T coef, bool accumulate, T* m, T* yt, int64_t ld) {
  transpose_into(y + ln.base * cols, ln.L, cols, ln.stride * cols, yt, ld);
  gemm(ln.L, ld, cols, x + ln.base * cols, ln.stride * cols, int64_t(1), yt, ld, m, ld, coef, accumulate);
}

// a (L x L, rows ld apart) = softmax_j(scale q_i . k_j + (c_i - c_j) sgn(i - j)) over the line; the padding
// columns get logit -inf, so that every loop runs over whole register widths and they come out 0.
template <typename T>
CPU_MATH_TARGETS void probs(const T* q, const T* k, const T* cum, T scale, int64_t d, const Line& ln,
                            Scratch<T>& s) {
  const int64_t L = ln.L, ld = s.ld;
  const T ninf = -std::numeric_limits<T>::infinity();
  T* __restrict__ c = s.cum.data();
  for (int64_t t = 0; t < L; ++t) c[t] = cum[ln.tok(t)];
  outer(q, k, d, ln, T(1), false, s.a.data(), s.xt.data(), ld);
  for (int64_t i = 0; i < L; ++i) {
    T* __restrict__ row = s.a.data() + i * ld;
    const T ci = c[i];
#pragma omp simd
    for (int64_t j = 0; j < ld; ++j) {
      const T x = row[j] * scale + (ci - c[j]) * (T(j < i) - T(j > i));
      row[j] = j < L ? x : ninf;
    }
    softmax_row(row, ld);
  }
}

// out_i = coef sum_j a(i, j) x_j (transposed: coef sum_j a(j, i) x_j) on the line's tokens, added when accumulate.
template <typename T>
void apply(const T* a, int64_t ld, bool transposed, const T* x, int64_t cols, const Line& ln, T coef,
           bool accumulate, T* out, T* acc) {
  const int64_t L = ln.L;
  gemm(L, cols, L, a, transposed ? int64_t(1) : ld, transposed ? ld : int64_t(1), x + ln.base * cols,
       ln.stride * cols, acc, cols, T(1), false);
  for (int64_t i = 0; i < L; ++i) {
    T* o = out + ln.tok(i) * cols;
    const T* ai = acc + i * cols;
    if (accumulate) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) o[c] += coef * ai[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) o[c] = coef * ai[c];
    }
  }
}

// da = a * (da - rowsum(da * a)): the gradient of the logits from that of the probabilities.
template <typename T>
CPU_MATH_TARGETS void softmax_grad(const T* __restrict__ a, T* __restrict__ da, int64_t L, int64_t ld) {
  for (int64_t i = 0; i < L; ++i) {
    const T* ai = a + i * ld;
    T* gi = da + i * ld;
    const T dot = row_dot(gi, ai, L);
#pragma omp simd
    for (int64_t j = 0; j < L; ++j) gi[j] = ai[j] * (gi[j] - dot);
  }
}

// dc_m = sum_j (ds(m, j) + ds(j, m)) sgn(m - j): the gradient of the cumulative log decays on the line.
template <typename T>
CPU_MATH_TARGETS void mask_grad(const T* __restrict__ ds, int64_t ld, const Line& ln, T* __restrict__ dcum,
                                T* __restrict__ acc) {
  const int64_t L = ln.L;
  std::fill(acc, acc + L, T(0));
  for (int64_t i = 0; i < L; ++i) {
    const T* r = ds + i * ld;
    acc[i] += row_dot<T>(r, nullptr, i) - row_dot<T>(r + i + 1, nullptr, L - i - 1);
    // ds(i, m) as the (j, m) term of every other m: sgn(m - i)
#pragma omp simd
    for (int64_t m = 0; m < i; ++m) acc[m] -= r[m];
#pragma omp simd
    for (int64_t m = i + 1; m < L; ++m) acc[m] += r[m];
  }
  for (int64_t t = 0; t < L; ++t) dcum[ln.tok(t)] = acc[t];
}

Grid grid_of(const at::Tensor& q, const at::Tensor& v) {
  return {q.size(0), q.size(1), q.size(2), q.size(3), v.size(3)};
}

// Runs fn(line, scratch) for every row (by_rows) or every column of the grid, a range of lines per thread.
template <typename T, typename Fn>
void each_line(const Grid& g, bool by_rows, Fn&& fn) {
  const int64_t count = by_rows ? g.P * g.H : g.P * g.W;
  const int64_t L = std::max(g.H, g.W), cols = std::max(g.d, g.dv);
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    Scratch<T> s(L, cols);
    for (int64_t r = begin; r < end; ++r) fn(by_rows ? row_line(g, r) : col_line(g, r), s);
  });
}

// out = 1/2 A_h (A_w v) + 1/2 A_w (A_h v): columns first (Z2 = A_h v), then rows (Y1 = A_w v and the
// A_w Z2 half), then columns again (the A_h Y1 half, A_h recomputed).
at::Tensor cc_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& ca,
                  const at::Tensor& cb, double scale) {
  cpu_inputs::check("criss_cross_cpu", q, k, v, ca, cb);
  const Grid g = grid_of(q, v);
  auto out = at::empty_like(v), z2 = at::empty_like(v), y1 = at::empty_like(v);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "criss_cross_cpu_fwd", [&] {
    using T = scalar_t;
    const T *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
    const T *cap = ca.data_ptr<T>(), *cbp = cb.data_ptr<T>();
    T *op = out.data_ptr<T>(), *z2p = z2.data_ptr<T>(), *y1p = y1.data_ptr<T>();
    const T sc = static_cast<T>(scale);
    each_line<T>(g, false, [&](const Line& ln, Scratch<T>& s) {
      probs(qp, kp, cbp, sc, g.d, ln, s);
      apply(s.a.data(), s.ld, false, vp, g.dv, ln, T(1), false, z2p, s.acc.data());
    });
    each_line<T>(g, true, [&](const Line& ln, Scratch<T>& s) {
      probs(qp, kp, cap, sc, g.d, ln, s);
      apply(s.a.data(), s.ld, false, vp, g.dv, ln, T(1), false, y1p, s.acc.data());
      apply(s.a.data(), s.ld, false, z2p, g.dv, ln, T(0.5), false, op, s.acc.data());
    });
    each_line<T>(g, false, [&](const Line& ln, Scratch<T>& s) {
      probs(qp, kp, cbp, sc, g.d, ln, s);
      apply(s.a.data(), s.ld, false, y1p, g.dv, ln, T(0.5), true, op, s.acc.data());
    });
  });
  return out;
}

// The gradient of one axial attention from that of its probabilities (in s.da): logits, then q, k and the
// cumulative decays of the line; dq / dk are written by the first pass over them and added to by the second.
template <typename T>
void attention_grads(const T* qp, const T* kp, T sc, const Grid& g, const Line& ln, bool first, Scratch<T>& s,
                     T* dqp, T* dkp, T* dcum) {
  softmax_grad(s.a.data(), s.da.data(), ln.L, s.ld);
  apply(s.da.data(), s.ld, false, kp, g.d, ln, sc, !first, dqp, s.acc.data());
  apply(s.da.data(), s.ld, true, qp, g.d, ln, sc, !first, dkp, s.acc.data());
  mask_grad(s.da.data(), s.ld, ln, dcum, s.acc.data());
}

// With g' = g / 2, Y1 = A_w v, Z2 = A_h v:  dY1 = A_h^T g', dZ2 = A_w^T g',
//   dA_w = dY1 v^T + g' Z2^T,  dA_h = g' Y1^T + dZ2 v^T,  dv = A_w^T dY1 + A_h^T dZ2.
// Columns (Z2, dY1), rows (Y1, dZ2 and everything of A_w), columns again (everything of A_h).
std::vector<at::Tensor> cc_bwd(const at::Tensor& grad, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& ca, const at::Tensor& cb, double scale) {
  cpu_inputs::check("criss_cross_cpu", q, k, v, ca, cb);
  cpu_inputs::check_like_v("criss_cross_cpu", "the output gradient", grad, v);
  const Grid g = grid_of(q, v);
  auto z2 = at::empty_like(v), dy1 = at::empty_like(v), y1 = at::empty_like(v), dz2 = at::empty_like(v);
  auto dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  auto dca = at::empty_like(ca), dcb = at::empty_like(cb);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "criss_cross_cpu_bwd", [&] {
    using T = scalar_t;
    const T *gp = grad.data_ptr<T>(), *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
    const T *cap = ca.data_ptr<T>(), *cbp = cb.data_ptr<T>();
    T *z2p = z2.data_ptr<T>(), *dy1p = dy1.data_ptr<T>(), *y1p = y1.data_ptr<T>(), *dz2p = dz2.data_ptr<T>();
    T *dqp = dq.data_ptr<T>(), *dkp = dk.data_ptr<T>(), *dvp = dv.data_ptr<T>();
    T *dcap = dca.data_ptr<T>(), *dcbp = dcb.data_ptr<T>();
    const T sc = static_cast<T>(scale), half = T(0.5);
    each_line<T>(g, false, [&](const Line& ln, Scratch<T>& s) {
      probs(qp, kp, cbp, sc, g.d, ln, s);
      apply(s.a.data(), s.ld, false, vp, g.dv, ln, T(1), false, z2p, s.acc.data());
      apply(s.a.data(), s.ld, true, gp, g.dv, ln, half, false, dy1p, s.acc.data());
    });
    each_line<T>(g, true, [&](const Line& ln, Scratch<T>& s) {
      probs(qp, kp, cap, sc, g.d, ln, s);
      apply(s.a.data(), s.ld, false, vp, g.dv, ln, T(1), false, y1p, s.acc.data());
      apply(s.a.data(), s.ld, true, gp, g.dv, ln, half, false, dz2p, s.acc.data());
      apply(s.a.data(), s.ld, true, dy1p, g.dv, ln, T(1), false, dvp, s.acc.data());
      outer(dy1p, vp, g.dv, ln, T(1), false, s.da.data(), s.xt.data(), s.ld);
      outer(gp, z2p, g.dv, ln, half, true, s.da.data(), s.xt.data(), s.ld);
      attention_grads(qp, kp, sc, g, ln, true, s, dqp, dkp, dcap);
    });
    each_line<T>(g, false, [&](const Line& ln, Scratch<T>& s) {
      probs(qp, kp, cbp, sc, g.d, ln, s);
      apply(s.a.data(), s.ld, true, dz2p, g.dv, ln, T(1), true, dvp, s.acc.data());
      outer(gp, y1p, g.dv, ln, half, false, s.da.data(), s.xt.data(), s.ld);
      outer(dz2p, vp, g.dv, ln, T(1), true, s.da.data(), s.xt.data(), s.ld);
      attention_grads(qp, kp, sc, g, ln, false, s, dqp, dkp, dcbp);
    });
  });
  return {dq, dk, dv, dca, dcb};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Criss-cross polyline attention (PPMA chunk mode) compiled for the CPU";
  m.def("fwd", &cc_fwd, "out (P, H, W, dv) from q, k (P, H, W, d), v, the cumulative log decays ca, cb, scale");
  m.def("bwd", &cc_bwd, "(dq, dk, dv, dca, dcb) from the output gradient, q, k, v, ca, cb, scale");
}
