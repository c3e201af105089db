// Selective scan on the CPU, compiled: delta' = softplus(delta + bias), the forward recurrence and its adjoint
// with every gradient formed on the way, in loops over time; a block of channels per task of ATen's thread pool
// (torch.set_num_threads decides how many run at once).
//
// Built by `python -m kernels.build_cpu` (install_requirements.sh runs it); kernels/selective_scan/cpp_impl.py
// loads it, and the op falls back to the chunked PyTorch path when it is not built. Math (see naive.py):
//   h_t = decay_t h_{t-1} + dt_t B_t u_t,     decay_t = exp(dt_t a),     lam_t = g_t + decay_{t+1} lam_{t+1}
//   d(dt_t a) = lam_t decay_t h_{t-1}       (from the previous state: no cancellation, see chunked.py)
// The decays are recomputed in the backward (saving them would double the op's memory). Arithmetic in
// scalar_t: fp32, or fp64 for gradient checks (the Python side converts the inputs).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../cpu_math.h"

namespace {

using cpu_math::exp_;

// Rows of about this many scalar steps make one task: enough work to pay for a hand-off between threads.
constexpr int64_t kGrainSteps = 8192;

// A task runs K channels side by side. Each channel's recurrence is a chain of dependent multiply-adds
// (latency-bound when run alone); K independent chains keep the FPU busy. Everything that is not the
// recurrence runs in loops over time that the compiler vectorises (`omp simd`). The K rows of a batch element
// are contiguous in memory and share B's row.
constexpr int64_t K = 8;

struct Sizes {
  int64_t batch, D, N, L;
};

// dt_t = softplus(delta_t + bias) (or without the softplus) for one row.
template <typename T>
CPU_MATH_TARGETS void discretize_row(const T* __restrict__ delta, T bias, bool softplus, T* __restrict__ dt,
                                     int64_t L) {
  if (softplus) {
#pragma omp simd
    for (int64_t t = 0; t < L; ++t) dt[t] = cpu_math::softplus(delta[t] + bias);
  } else {
#pragma omp simd
    for (int64_t t = 0; t < L; ++t) dt[t] = delta[t] + bias;
  }
}

// decay_t = exp(dt_t a) for one row.
template <typename T>
CPU_MATH_TARGETS void decay_row(const T* __restrict__ dt, T a, T* __restrict__ decay, int64_t L) {
#pragma omp simd
  for (int64_t t = 0; t < L; ++t) decay[t] = exp_(dt[t] * a);
}

// x_t = dt_t B_t u_t for one row (the recurrence's input, written where the states go).
template <typename T>
CPU_MATH_TARGETS void input_row(const T* __restrict__ dt, const T* __restrict__ Bn, const T* __restrict__ u,
                                T* __restrict__ x, int64_t L) {
#pragma omp simd
  for (int64_t t = 0; t < L; ++t) x[t] = dt[t] * Bn[t] * u[t];
}

// ddt_t *= softplus'(v_t) = sigmoid(v_t) = 1 - exp(-dt_t) (1 above the threshold, to rounding) for one row;
// returns the row's sum (its share of ddelta_bias).
template <typename T>
CPU_MATH_TARGETS T softplus_grad_row(const T* __restrict__ dt, T* __restrict__ ddt, int64_t L) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t t = 0; t < L; ++t) {
    ddt[t] *= cpu_math::one_minus_exp_neg(dt[t]);
    sum += ddt[t];
  }
  return sum;
}

// h for channels d0 .. d0+k-1 of batch element b (dt already written): h_t = dt_t B_t u_t first (vectorised),
// then h_t += decay_t h_{t-1} in place, the k chains interleaved. decay: scratch of k * L.
template <typename T, int64_t k>
void forward_block(const T* dt, const T* u, const T* A, const T* B, T* h, int64_t b, int64_t d0, Sizes s,
                   T* decay) {
  const int64_t N = s.N, L = s.L, r0 = b * s.D + d0;
  for (int64_t n = 0; n < N; ++n) {
    const T* Bn = B + (b * N + n) * L;
    T* hr = h + (r0 * N + n) * L;  // row j at hr + j * N * L
    for (int64_t j = 0; j < k; ++j) {
      const T* dtj = dt + (r0 + j) * L;
      const T* uj = u + (r0 + j) * L;
      T* hj = hr + j * N * L;
      decay_row(dtj, A[(d0 + j) * N + n], decay + j * L, L);
      input_row(dtj, Bn, uj, hj, L);
    }
    T state[k] = {};
    for (int64_t t = 0; t < L; ++t) {
      for (int64_t j = 0; j < k; ++j) {
        state[j] = decay[j * L + t] * state[j] + hr[j * N * L + t];
        hr[j * N * L + t] = state[j];
      }
    }
  }
}

// Gradients (before softplus') of channel d0 + j's row r for state n, from its adjoint lam: ddt and du are
// accumulated over the states, dB (this thread's copy) over the channels; returns this row's share of dA.
template <typename T>
CPU_MATH_TARGETS T gradient_row(const T* __restrict__ lam, const T* __restrict__ decay, const T* __restrict__ h,
               const T* __restrict__ dt, const T* __restrict__ u, const T* __restrict__ Bn, T a,
               T* __restrict__ ddt, T* __restrict__ du, T* __restrict__ dBn, int64_t L) {
  {  // t = 0: d(dt_0 a) = 0 (h_{-1} = 0); peeled so that the loop below has no branch and vectorises
    const T lamB = lam[0] * Bn[0];
    ddt[0] += lamB * u[0];
    du[0] += lamB * dt[0];
    dBn[0] += lam[0] * dt[0] * u[0];
  }
  T dA = 0;
#pragma omp simd reduction(+ : dA)
  for (int64_t t = 1; t < L; ++t) {
    const T dla = lam[t] * decay[t] * h[t - 1];  // d(dt_t a)
    const T lamB = lam[t] * Bn[t];
    ddt[t] += dla * a + lamB * u[t];
    du[t] += lamB * dt[t];
    dBn[t] += lam[t] * dt[t] * u[t];
    dA += dla * dt[t];
  }
  return dA;
}

// Gradients of channels d0 .. d0+k-1 of batch element b: the adjoint chains run first (interleaved), then
// one vectorised loop per channel forms the gradients; softplus' is applied last. decay, lam: scratch of k * L.
template <typename T, int64_t k>
void backward_block(const T* g, const T* h, const T* dt, const T* u, const T* A, const T* B, bool softplus,
                    int64_t b, int64_t d0, Sizes s, T* ddt, T* du, T* dA, T* dbias, T* dB_acc, T* decay, T* lam) {
  const int64_t N = s.N, L = s.L, r0 = b * s.D + d0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t off = (r0 * N + n) * L;  // row j of g and h at off + j * N * L
    const T* gn = g + off;
    T carry[k];
    for (int64_t j = 0; j < k; ++j) {
      decay_row(dt + (r0 + j) * L, A[(d0 + j) * N + n], decay + j * L, L);
      lam[j * L + L - 1] = carry[j] = gn[j * N * L + L - 1];
    }
    for (int64_t t = L - 2; t >= 0; --t) {
      for (int64_t j = 0; j < k; ++j) {
        carry[j] = gn[j * N * L + t] + decay[j * L + t + 1] * carry[j];
        lam[j * L + t] = carry[j];
      }
    }
    const T* Bn = B + (b * N + n) * L;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = r0 + j;
      dA[(d0 + j) * N + n] += gradient_row(lam + j * L, decay + j * L, h + off + j * N * L, dt + r * L, u + r * L,
                                           Bn, A[(d0 + j) * N + n], ddt + r * L, du + r * L,
                                           dB_acc + (b * N + n) * L, L);
    }
  }
  for (int64_t j = 0; j < k; ++j) {
    T* ddtj = ddt + (r0 + j) * L;
    if (softplus) {
      dbias[d0 + j] += softplus_grad_row(dt + (r0 + j) * L, ddtj, L);
    } else {
      T sum = 0;
      for (int64_t t = 0; t < L; ++t) sum += ddtj[t];
      dbias[d0 + j] += sum;
    }
  }
}

inline int64_t blocks_per_batch(int64_t D) { return (D + K - 1) / K; }

// Runs fn(width, d) on the block of channels that starts at d0: once with width K for a full block, or once per
// channel with width 1 for the last, shorter one (width is a compile-time constant, std::integral_constant).
template <typename Fn>
void for_block(int64_t d0, int64_t D, Fn&& fn) {
  if (d0 + K <= D) {
    fn(std::integral_constant<int64_t, K>{}, d0);
  } else {
    for (int64_t d = d0; d < D; ++d) fn(std::integral_constant<int64_t, 1>{}, d);
  }
}

// (h (b, D, N, L), delta' (b, D, L)) from delta, u (b, D, L), A (D, N), B (b, N, L) and bias (D) or None.
std::vector<at::Tensor> scan_fwd(const at::Tensor& delta, const c10::optional<at::Tensor>& bias, bool softplus,
                                 const at::Tensor& A, const at::Tensor& u, const at::Tensor& B) {
  const Sizes s{u.size(0), u.size(1), A.size(1), u.size(2)};
  auto h = at::empty({s.batch, s.D, s.N, s.L}, u.options());
  auto dt = at::empty_like(u);
  const int64_t nblk = blocks_per_batch(s.D);
  const int64_t grain = std::max<int64_t>(1, kGrainSteps / std::max<int64_t>(1, K * s.N * s.L));
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_cpu_fwd", [&] {
    const scalar_t* bias_p = bias.has_value() ? bias->data_ptr<scalar_t>() : nullptr;
    const scalar_t *delta_p = delta.data_ptr<scalar_t>(), *u_p = u.data_ptr<scalar_t>();
    const scalar_t *A_p = A.data_ptr<scalar_t>(), *B_p = B.data_ptr<scalar_t>();
    scalar_t *h_p = h.data_ptr<scalar_t>(), *dt_p = dt.data_ptr<scalar_t>();
    at::parallel_for(0, s.batch * nblk, grain, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> decay(K * s.L);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / nblk, d0 = (task % nblk) * K;
        for (int64_t d = d0; d < std::min(d0 + K, s.D); ++d) {
          const int64_t r = b * s.D + d;
          discretize_row(delta_p + r * s.L, bias_p ? bias_p[d] : scalar_t(0), softplus, dt_p + r * s.L, s.L);
        }
        for_block(d0, s.D, [&](auto width, int64_t d) {
          forward_block<scalar_t, decltype(width)::value>(dt_p, u_p, A_p, B_p, h_p, b, d, s, decay.data());
        });
      }
    });
  });
  return {h, dt};
}

// (du, ddelta, dA, dB, ddelta_bias) of sum(g * h) from delta', the states h and the inputs. A task is a
// block of channels over every batch element (so dA and ddelta_bias need no lock); dB sums over channels, so
// each thread accumulates its own copy.
std::vector<at::Tensor> scan_bwd(const at::Tensor& g, const at::Tensor& dt, const at::Tensor& u,
                                 const at::Tensor& A, const at::Tensor& B, const at::Tensor& h, bool softplus) {
  const Sizes s{u.size(0), u.size(1), A.size(1), u.size(2)};
  auto ddt = at::zeros_like(u);
  auto du = at::zeros_like(u);
  auto dA = at::zeros_like(A);
  auto dbias = at::zeros({s.D}, u.options());
  const int64_t threads = at::get_num_threads();
  auto dB_parts = at::zeros({threads, s.batch, s.N, s.L}, u.options());
  const int64_t nblk = blocks_per_batch(s.D);
  const int64_t grain = std::max<int64_t>(1, kGrainSteps / std::max<int64_t>(1, K * s.batch * s.N * s.L));
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_cpu_bwd", [&] {
    const scalar_t *g_p = g.data_ptr<scalar_t>(), *h_p = h.data_ptr<scalar_t>(), *dt_p = dt.data_ptr<scalar_t>();
    const scalar_t *u_p = u.data_ptr<scalar_t>(), *A_p = A.data_ptr<scalar_t>(), *B_p = B.data_ptr<scalar_t>();
    scalar_t *ddt_p = ddt.data_ptr<scalar_t>(), *du_p = du.data_ptr<scalar_t>(), *dA_p = dA.data_ptr<scalar_t>();
    scalar_t *dbias_p = dbias.data_ptr<scalar_t>(), *parts_p = dB_parts.data_ptr<scalar_t>();
    at::parallel_for(0, nblk, grain, [&](int64_t begin, int64_t end) {
      const int64_t tid = at::get_thread_num();
      TORCH_CHECK(tid < threads, "selective_scan_cpu_bwd: thread ", tid, " of ", threads);
      scalar_t* dB_acc = parts_p + tid * s.batch * s.N * s.L;
      std::vector<scalar_t> decay(K * s.L), lam(K * s.L);
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t d0 = blk * K;
        for (int64_t b = 0; b < s.batch; ++b) {
          for_block(d0, s.D, [&](auto width, int64_t d) {
            backward_block<scalar_t, decltype(width)::value>(g_p, h_p, dt_p, u_p, A_p, B_p, softplus, b, d, s, ddt_p,
                                                             du_p, dA_p, dbias_p, dB_acc, decay.data(), lam.data());
          });
        }
      }
    });
  });
  return {du, ddt, dA, dB_parts.sum(0), dbias};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Selective scan (Spatial-Mamba, state-returning) compiled for the CPU";
  m.def("fwd", &scan_fwd, "(h (b, D, N, L), delta' (b, D, L)) from delta, bias, softplus, A, u, B");
  m.def("bwd", &scan_bwd, "(du, ddelta, dA, dB, ddelta_bias) from g, delta', u, A, B, h, softplus");
}
