// Argument checks of the compiled CPU polyline kernels (cpp_impl.py prepares the tensors; these catch any other
// caller): q, k (P, H, W, d), v and the output gradient (P, H, W, dv), the cumulative log decays (P, H, W), all
// contiguous CPU tensors of one floating dtype.
#pragma once

#include <torch/extension.h>

namespace cpu_inputs {

inline void check(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& ca,
                  const at::Tensor& cb) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4 && v.sizes().slice(0, 3) == q.sizes().slice(0, 3),
              op, ": q, k (P, H, W, d) and v (P, H, W, dv) expected");
  TORCH_CHECK(ca.sizes() == q.sizes().slice(0, 3) && cb.sizes() == ca.sizes(), op,
              ": the cumulative decays must be (P, H, W)");
  for (const auto* t : {&q, &k, &v, &ca, &cb}) {
    TORCH_CHECK(t->is_contiguous() && t->scalar_type() == q.scalar_type() && t->device().is_cpu(), op,
                ": contiguous CPU tensors of one floating dtype expected");
  }
}

inline void check_grad(const char* op, const at::Tensor& grad, const at::Tensor& v) {
  TORCH_CHECK(grad.sizes() == v.sizes() && grad.is_contiguous() && grad.scalar_type() == v.scalar_type(), op,
              ": the output gradient must be contiguous and shaped like v");
}

}  // namespace cpu_inputs
