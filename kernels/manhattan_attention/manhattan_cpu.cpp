// RMT's Manhattan-decay attention on the CPU, compiled, flash-style:
//   out = softmax(scale q k^T + M) v,   M(query (iq, jq), key (ik, jk)) = g (|iq - ik| + |jq - jk|),
// g = log gamma < 0 a constant of the plane (batch x head, or batch x head x line for the axial passes, which are
// planes of one grid row). A task is one plane and walks its query rows: a grid row of queries forms its scores
// against every key in a (W x N) block kept in cache, the decay computed on the fly, so neither the (N x N) mask
// nor the probabilities are written to memory. The forward keeps the log-sum-exp of every query; the backward
// recomputes the probabilities from it (dq, dk, dv; the decay is a fixed buffer and has no gradient).
//
// Built by `python -m kernels.build_cpu`; cpp_impl.py loads it. Tensors: q, k (P, H, W, d), v, out, the output
// gradient (P, H, W, dv), lse (P, H, W), g (P), contiguous, in scalar_t (fp32, or fp64 for gradient checks).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <vector>

#include "../cpu_inputs.h"
#include "../cpu_math.h"
#include "../cpu_tiles.h"

namespace {

using namespace cpu_tiles;

// Per-thread scratch: K^T and V^T of the plane (d x ld, dv x ld), the (W x ld) score / probability block of a
// query row and its gradient block, the key columns as floats.
template <typename T>
struct Scratch {
  std::vector<T> kt, vt, p, dp, col;
  Scratch(const Plane& s)
      : kt(s.d * s.ld, T(0)), vt(s.dv * s.ld, T(0)), p(s.W * s.ld), dp(s.W * s.ld), col(s.W) {
    for (int64_t j = 0; j < s.W; ++j) col[j] = T(j);
  }
};

// w.p (W x ld) = scale Q_row K^T + M for the queries of grid row iq (kt must hold the plane's K^T); padding -inf.
template <typename T>
CPU_MATH_TARGETS void row_logits(const T* q_row, T g, T scale, int64_t iq, const Plane& s, Scratch<T>& w) {
  const int64_t W = s.W, ld = s.ld;
  const T ninf = -std::numeric_limits<T>::infinity();
  gemm(W, ld, s.d, q_row, s.d, int64_t(1), w.kt.data(), ld, w.p.data(), ld, scale, false);
  const T* __restrict__ col = w.col.data();
  for (int64_t jq = 0; jq < W; ++jq) {
    T* __restrict__ r = w.p.data() + jq * ld;
    const T cq = T(jq);
    for (int64_t ik = 0; ik < s.H; ++ik) {
      const T row_term = g * T(std::abs(iq - ik));
      T* __restrict__ a = r + ik * W;
#pragma omp simd
      for (int64_t jk = 0; jk < W; ++jk) a[jk] += row_term + g * std::abs(cq - col[jk]);
    }
    for (int64_t j = s.N; j < ld; ++j) r[j] = ninf;
  }
}

// w.p = the probabilities of the queries of grid row iq, their log-sum-exps in lse_row (W).
template <typename T>
CPU_MATH_TARGETS void row_probs(const T* q_row, T g, T scale, int64_t iq, const Plane& s, Scratch<T>& w,
                                T* lse_row) {
  row_logits(q_row, g, scale, iq, s, w);
  for (int64_t jq = 0; jq < s.W; ++jq) lse_row[jq] = softmax_row(w.p.data() + jq * s.ld, s.ld);
}

void check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g) {
  cpu_inputs::check_planes("manhattan_cpu", q, k, v, {&g});
  TORCH_CHECK(g.dim() == 1 && g.size(0) == q.size(0), "manhattan_cpu: the log decay must be (P,)");
}

std::vector<at::Tensor> manhattan_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& g, double scale) {
  check_inputs(q, k, v, g);
  const Plane s = make_plane(q.size(1), q.size(2), q.size(3), v.size(3));
  auto out = at::empty_like(v);
  auto lse = at::empty(q.sizes().slice(0, 3), q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "manhattan_cpu_fwd", [&] {
    using T = scalar_t;
    const T *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>(), *gp = g.data_ptr<T>();
    T *op = out.data_ptr<T>(), *lp = lse.data_ptr<T>();
    at::parallel_for(0, q.size(0), 1, [&](int64_t begin, int64_t end) {
      Scratch<T> w(s);
      for (int64_t p = begin; p < end; ++p) {
        transpose_into(kp + p * s.N * s.d, s.N, s.d, s.d, w.kt.data(), s.ld);
        for (int64_t iq = 0; iq < s.H; ++iq) {
          const int64_t row = p * s.N + iq * s.W;
          row_probs(qp + row * s.d, gp[p], T(scale), iq, s, w, lp + row);
          gemm(s.W, s.dv, s.N, w.p.data(), s.ld, int64_t(1), vp + p * s.N * s.dv, s.dv, op + row * s.dv, s.dv, T(1),
               false);
        }
      }
    });
  });
  return {out, lse};
}

// dS = P (dP - rowsum(dO o)) in place in w.p, P recomputed as exp(logit - lse); dP in w.dp.
template <typename T>
CPU_MATH_TARGETS void score_grads(const T* g_row, const T* o_row, const Plane& s, Scratch<T>& w) {
  for (int64_t jq = 0; jq < s.W; ++jq) {
    T* __restrict__ r = w.p.data() + jq * s.ld;
    const T* __restrict__ dp = w.dp.data() + jq * s.ld;
    const T delta = row_dot(g_row + jq * s.dv, o_row + jq * s.dv, s.dv);
#pragma omp simd
    for (int64_t j = 0; j < s.ld; ++j) r[j] *= dp[j] - delta;
  }
}

template <typename T>
CPU_MATH_TARGETS void probabilities(const T* lse_row, const Plane& s, Scratch<T>& w) {
  for (int64_t jq = 0; jq < s.W; ++jq) {
    T* __restrict__ r = w.p.data() + jq * s.ld;
    const T m = lse_row[jq];
#pragma omp simd
    for (int64_t j = 0; j < s.ld; ++j) r[j] = cpu_math::exp_(r[j] - m);
  }
}

// One plane's gradients, query row by query row: dv += P^T dO, dP = dO V^T, dS, dq = scale dS K,
// dk += scale dS^T Q.
template <typename T>
void plane_grads(const T* go, const T* q, const T* k, const T* v, const T* o, const T* lse, T g, T scale,
                 const Plane& s, Scratch<T>& w, T* dq, T* dk, T* dv) {
  const int64_t W = s.W, ld = s.ld, d = s.d, dvn = s.dv;
  transpose_into(k, s.N, d, d, w.kt.data(), ld);
  transpose_into(v, s.N, dvn, dvn, w.vt.data(), ld);
  for (int64_t iq = 0; iq < s.H; ++iq) {
    const T* q_row = q + iq * W * d;
    const T* g_row = go + iq * W * dvn;
    row_logits(q_row, g, scale, iq, s, w);
    probabilities(lse + iq * W, s, w);
    gemm(s.N, dvn, W, w.p.data(), int64_t(1), ld, g_row, dvn, dv, dvn, T(1), true);
    gemm(W, ld, dvn, g_row, dvn, int64_t(1), w.vt.data(), ld, w.dp.data(), ld, T(1), false);
    score_grads(g_row, o + iq * W * dvn, s, w);
    gemm(W, d, s.N, w.p.data(), ld, int64_t(1), k, d, dq + iq * W * d, d, scale, false);
    gemm(s.N, d, W, w.p.data(), int64_t(1), ld, q_row, d, dk, d, scale, true);
  }
}

std::vector<at::Tensor> manhattan_bwd(const at::Tensor& grad, const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
                                      const at::Tensor& g, double scale) {
  check_inputs(q, k, v, g);
  cpu_inputs::check_like_v("manhattan_cpu", "the output gradient", grad, v);
  cpu_inputs::check_like_v("manhattan_cpu", "the output", out, v);
  TORCH_CHECK(lse.sizes() == q.sizes().slice(0, 3) && lse.is_contiguous() && lse.scalar_type() == q.scalar_type(),
              "manhattan_cpu: the log-sum-exp must be contiguous (P, H, W)");
  const Plane s = make_plane(q.size(1), q.size(2), q.size(3), v.size(3));
  auto dq = at::empty_like(q), dk = at::zeros_like(k), dv = at::zeros_like(v);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "manhattan_cpu_bwd", [&] {
    using T = scalar_t;
    const T *gop = grad.data_ptr<T>(), *qp = q.data_ptr<T>(), *kp = k.data_ptr<T>(), *vp = v.data_ptr<T>();
    const T *op = out.data_ptr<T>(), *lp = lse.data_ptr<T>(), *gp = g.data_ptr<T>();
    T *dqp = dq.data_ptr<T>(), *dkp = dk.data_ptr<T>(), *dvp = dv.data_ptr<T>();
    at::parallel_for(0, q.size(0), 1, [&](int64_t begin, int64_t end) {
      Scratch<T> w(s);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t qo = p * s.N * s.d, vo = p * s.N * s.dv;
        plane_grads(gop + vo, qp + qo, kp + qo, vp + vo, op + vo, lp + p * s.N, gp[p], T(scale), s, w, dqp + qo,
                    dkp + qo, dvp + vo);
      }
    });
  });
  return {dq, dk, dv};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "RMT's Manhattan-decay attention compiled for the CPU";
  m.def("fwd", &manhattan_fwd, "(out, lse) from q, k (P, H, W, d), v (P, H, W, dv), the log decay g (P), scale");
  m.def("bwd", &manhattan_bwd, "(dq, dk, dv) from the output gradient, q, k, v, out, lse, g, scale");
}
