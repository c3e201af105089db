// Full-mode polyline attention (PPMA's "whole" mode) on the CPU, compiled, flash-style: a task is one plane
// (batch x head) and walks its query rows; for a grid row of queries it forms the scores against every key in a
// (W x N) block, both masked softmaxes and their average in cache, and multiplies by v once. Nothing of size N x N
// is written to memory; the backward recomputes the block from q and k.
//
// Built by `python -m kernels.build_cpu`; full_cpp.py loads it and the op falls back to tiled.py when it is not
// built. Math (tiled.py has the same in PyTorch), for query (iq, jq) and key (ik, jk), with the 1-D masks
// L(c)(x, y) = (c_x - c_y) sgn(x - y) of the cumulative log decays (ca along W, cb along H):
//   M1 = La_iq(jq, jk) + Lb_jk(iq, ik),   M2 = M1 transposed = La_ik(jq, jk) + Lb_jq(iq, ik),
//   out = (1/2 softmax(scale S + M1) + 1/2 softmax(scale S + M2)) v.
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

template <typename T>
T sgn(int64_t x) {
  return T(x > 0) - T(x < 0);
}

// Per-thread scratch: K^T and V^T of the plane (d x ld, dv x ld), the two (W x ld) logit / probability blocks
// of a query row, the gradient block, the column term of M1 for the query row and the row's own mask gradients.
template <typename T>
struct Scratch {
  std::vector<T> kt, vt, p1, p2, dp, lb1, row_a, row_b;
  Scratch(const Plane& s)
      : kt(s.d * s.ld, T(0)), vt(s.dv * s.ld, T(0)), p1(s.W * s.ld), p2(s.W * s.ld), dp(s.W * s.ld),
        lb1(s.ld, T(0)), row_a(s.W), row_b(s.W) {}
};

// p1, p2 (W x ld) = the two softmaxes of the query row iq (q_row: its W queries); kt must hold the plane's K^T.
template <typename T>
CPU_MATH_TARGETS void row_probs(const T* q_row, const T* ca, const T* cb, T scale, int64_t iq, const Plane& s,
                                Scratch<T>& w) {
  const int64_t H = s.H, W = s.W, N = s.N, ld = s.ld;
  const T ninf = -std::numeric_limits<T>::infinity();
  gemm(W, ld, s.d, q_row, s.d, int64_t(1), w.kt.data(), ld, w.p1.data(), ld, T(1), false);
  T* __restrict__ lb1 = w.lb1.data();  // Lb_jk(iq, ik) for every key: independent of the query's column
  for (int64_t ik = 0; ik < H; ++ik) {
    const T si = sgn<T>(iq - ik);
#pragma omp simd
    for (int64_t jk = 0; jk < W; ++jk) lb1[ik * W + jk] = (cb[iq * W + jk] - cb[ik * W + jk]) * si;
  }
  for (int64_t jq = 0; jq < W; ++jq) {
    T* __restrict__ r1 = w.p1.data() + jq * ld;
    T* __restrict__ r2 = w.p2.data() + jq * ld;
    const T caq = ca[iq * W + jq], cbq = cb[iq * W + jq];
    for (int64_t ik = 0; ik < H; ++ik) {
      const T si = sgn<T>(iq - ik), lb2 = (cbq - cb[ik * W + jq]) * si;
      const T* __restrict__ car = ca + ik * W;
      const T* __restrict__ cai = ca + iq * W;
      const T cak = car[jq];
      T* __restrict__ a1 = r1 + ik * W;
      T* __restrict__ a2 = r2 + ik * W;
      const T* __restrict__ l1 = lb1 + ik * W;
#pragma omp simd
      for (int64_t jk = 0; jk < W; ++jk) {
        const T sj = T(jq > jk) - T(jq < jk);
        const T s0 = a1[jk] * scale;
        a1[jk] = s0 + ((caq - cai[jk]) * sj + l1[jk]);
        a2[jk] = s0 + ((cak - car[jk]) * sj + lb2);
      }
    }
    for (int64_t j = N; j < ld; ++j) r1[j] = r2[j] = ninf;
    softmax_row(r1, ld);
    softmax_row(r2, ld);
  }
}

template <typename T>
CPU_MATH_TARGETS void average(const T* a, const T* __restrict__ b, T* out, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = T(0.5) * a[j] + T(0.5) * b[j];
}

at::Tensor full_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& ca,
                    const at::Tensor& cb, double scale) {
  cpu_inputs::check("full_cpu", q, k, v, ca, cb);
  const Plane s = make_plane(q.size(1), q.size(2), q.size(3), v.size(3));
  auto out = at::empty_like(v);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "polyline_full_cpu_fwd", [&] {
    using T = scalar_t;
    const T *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
    const T *cap = ca.data_ptr<T>(), *cbp = cb.data_ptr<T>();
    T* op = out.data_ptr<T>();
    at::parallel_for(0, q.size(0), 1, [&](int64_t begin, int64_t end) {
      Scratch<T> w(s);
      for (int64_t p = begin; p < end; ++p) {
        const T *qpl = qp + p * s.N * s.d, *vpl = vp + p * s.N * s.dv;
        const T *capl = cap + p * s.N, *cbpl = cbp + p * s.N;
        transpose_into(kp + p * s.N * s.d, s.N, s.d, s.d, w.kt.data(), s.ld);
        for (int64_t iq = 0; iq < s.H; ++iq) {
          row_probs(qpl + iq * s.W * s.d, capl, cbpl, T(scale), iq, s, w);
          average(w.p1.data(), w.p2.data(), w.p1.data(), s.W * s.ld);
          gemm(s.W, s.dv, s.N, w.p1.data(), s.ld, int64_t(1), vpl, s.dv, op + (p * s.N + iq * s.W) * s.dv, s.dv,
               T(1), false);
        }
      }
    });
  });
  return out;
}

// The mask gradients of one query (jq) of row iq from dS1 (r1) and dS2 (r2) over all keys (ik, jk):
//   M1 = (ca[iq,jq] - ca[iq,jk]) sj + (cb[iq,jk] - cb[ik,jk]) si,
//   M2 = (ca[ik,jq] - ca[ik,jk]) sj + (cb[iq,jq] - cb[ik,jq]) si,   sj = sgn(jq - jk), si = sgn(iq - ik).
// row_a / row_b collect the row-iq terms of every key column (added to dca / dcb once per query row).
template <typename T>
CPU_MATH_TARGETS void mask_grads(const T* __restrict__ r1, const T* __restrict__ r2, int64_t iq, int64_t jq,
                                 const Plane& s, T* __restrict__ dca, T* __restrict__ dcb, T* __restrict__ row_a,
                                 T* __restrict__ row_b) {
  const int64_t W = s.W;
  T own_a = 0, own_b = 0;
  for (int64_t ik = 0; ik < s.H; ++ik) {
    const T si = sgn<T>(iq - ik);
    const T* d1 = r1 + ik * W;
    const T* d2 = r2 + ik * W;
    T* dcar = dca + ik * W;
    T* dcbr = dcb + ik * W;
    T a2q = 0, b2q = 0;
#pragma omp simd reduction(+ : own_a, a2q, b2q)
    for (int64_t jk = 0; jk < W; ++jk) {
      const T sj = T(jq > jk) - T(jq < jk);
      own_a += d1[jk] * sj;
      row_a[jk] -= d1[jk] * sj;
      row_b[jk] += d1[jk] * si;
      dcbr[jk] -= d1[jk] * si;
      a2q += d2[jk] * sj;
      dcar[jk] -= d2[jk] * sj;
      b2q += d2[jk];
    }
    dcar[jq] += a2q;
    own_b += b2q * si;
    dcbr[jq] -= b2q * si;
  }
  dca[iq * W + jq] += own_a;
  dcb[iq * W + jq] += own_b;
}

// dS_t = 1/2 P_t (dP - rowsum(dP P_t)) for both softmaxes of every query of row iq (in place in p1, p2), their
// mask gradients, then p1 = dS1 + dS2 (the gradient of the shared scores).
template <typename T>
CPU_MATH_TARGETS void score_grads(int64_t iq, const Plane& s, Scratch<T>& w, T* dca, T* dcb) {
  const int64_t ld = s.ld;
  std::fill(w.row_a.begin(), w.row_a.end(), T(0));
  std::fill(w.row_b.begin(), w.row_b.end(), T(0));
  for (int64_t jq = 0; jq < s.W; ++jq) {
    T* __restrict__ r1 = w.p1.data() + jq * ld;
    T* __restrict__ r2 = w.p2.data() + jq * ld;
    const T* __restrict__ dp = w.dp.data() + jq * ld;
    const T c1 = row_dot(dp, r1, ld), c2 = row_dot(dp, r2, ld);
#pragma omp simd
    for (int64_t j = 0; j < ld; ++j) {
      r1[j] = T(0.5) * r1[j] * (dp[j] - c1);
      r2[j] = T(0.5) * r2[j] * (dp[j] - c2);
    }
    mask_grads(r1, r2, iq, jq, s, dca, dcb, w.row_a.data(), w.row_b.data());
#pragma omp simd
    for (int64_t j = 0; j < ld; ++j) r1[j] += r2[j];
  }
  for (int64_t jk = 0; jk < s.W; ++jk) {
    dca[iq * s.W + jk] += w.row_a[jk];
    dcb[iq * s.W + jk] += w.row_b[jk];
  }
}

// One plane's gradients, query row by query row (the block recomputed): dv += P^T dO with P = (P1 + P2) / 2,
// dP = dO v^T, the score and mask gradients, dq = scale dS k, dk += scale dS^T q.
template <typename T>
void plane_grads(const T* g, const T* q, const T* k, const T* v, const T* ca, const T* cb, T scale, const Plane& s,
                 Scratch<T>& w, T* dq, T* dk, T* dv, T* dca, T* dcb) {
  const int64_t W = s.W, ld = s.ld, d = s.d, dvn = s.dv;
  transpose_into(k, s.N, d, d, w.kt.data(), ld);
  transpose_into(v, s.N, dvn, dvn, w.vt.data(), ld);
  for (int64_t iq = 0; iq < s.H; ++iq) {
    const T* q_row = q + iq * W * d;
    const T* g_row = g + iq * W * dvn;
    row_probs(q_row, ca, cb, scale, iq, s, w);
    T* pa = w.dp.data();  // (P1 + P2) / 2 first, then dP
    average(w.p1.data(), w.p2.data(), pa, W * ld);
    gemm(s.N, dvn, W, pa, int64_t(1), ld, g_row, dvn, dv, dvn, T(1), true);
    gemm(W, ld, dvn, g_row, dvn, int64_t(1), w.vt.data(), ld, w.dp.data(), ld, T(1), false);
    score_grads(iq, s, w, dca, dcb);
    gemm(W, d, s.N, w.p1.data(), ld, int64_t(1), k, d, dq + iq * W * d, d, scale, false);
    gemm(s.N, d, W, w.p1.data(), int64_t(1), ld, q_row, d, dk, d, scale, true);
  }
}

std::vector<at::Tensor> full_bwd(const at::Tensor& grad, const at::Tensor& q, const at::Tensor& k,
                                 const at::Tensor& v, const at::Tensor& ca, const at::Tensor& cb, double scale) {
  cpu_inputs::check("full_cpu", q, k, v, ca, cb);
  cpu_inputs::check_like_v("full_cpu", "the output gradient", grad, v);
  const Plane s = make_plane(q.size(1), q.size(2), q.size(3), v.size(3));
  auto dq = at::empty_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v);
  auto dca = at::zeros_like(ca), dcb = at::zeros_like(cb);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "polyline_full_cpu_bwd", [&] {
    using T = scalar_t;
    const T *gp = grad.data_ptr<T>(), *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
    const T *cap = ca.data_ptr<T>(), *cbp = cb.data_ptr<T>();
    T *dqp = dq.data_ptr<T>(), *dkp = dk.data_ptr<T>(), *dvp = dv.data_ptr<T>();
    T *dcap = dca.data_ptr<T>(), *dcbp = dcb.data_ptr<T>();
    at::parallel_for(0, q.size(0), 1, [&](int64_t begin, int64_t end) {
      Scratch<T> w(s);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t qo = p * s.N * s.d, vo = p * s.N * s.dv, co = p * s.N;
        plane_grads(gp + vo, qp + qo, kp + qo, vp + vo, cap + co, cbp + co, T(scale), s, w, dqp + qo, dkp + qo,
                    dvp + vo, dcap + co, dcbp + co);
      }
    });
  });
  return {dq, dk, dv, dca, dcb};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Full-mode polyline attention (PPMA whole mode) compiled for the CPU";
  m.def("fwd", &full_fwd, "out (P, H, W, dv) from q, k (P, H, W, d), v, the cumulative log decays ca, cb, scale");
  m.def("bwd", &full_bwd, "(dq, dk, dv, dca, dcb) from the output gradient, q, k, v, ca, cb, scale");
}
