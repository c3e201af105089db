// Argument checks of the compiled CPU attention kernels (their Python side prepares the tensors; these catch any
// other caller): q, k (P, H, W, d) and v (P, H, W, dv) planes plus each op's own inputs, all contiguous CPU
// tensors of one floating dtype; the output gradient (and a saved output) shaped like v.
#pragma once

#include <initializer_list>
#include <vector>

#include <torch/extension.h>

namespace cpu_inputs {

inline void check_planes(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         std::initializer_list<const at::Tensor*> others) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.dim() == 4 && v.sizes().slice(0, 3) == q.sizes().slice(0, 3),
              op, ": q, k (P, H, W, d) and v (P, H, W, dv) expected");
  std::vector<const at::Tensor*> all{&q, &k, &v};
  all.insert(all.end(), others.begin(), others.end());
  for (const auto* t : all) {
    TORCH_CHECK(t->is_contiguous() && t->scalar_type() == q.scalar_type() && t->device().is_cpu(), op,
                ": contiguous CPU tensors of one floating dtype expected");
  }
}

// The polyline kernels: the cumulative log decays ca, cb are (P, H, W).
inline void check(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& ca,
                  const at::Tensor& cb) {
  check_planes(op, q, k, v, {&ca, &cb});
  TORCH_CHECK(ca.sizes() == q.sizes().slice(0, 3) && cb.sizes() == ca.sizes(), op,
              ": the cumulative decays must be (P, H, W)");
}

// what: "the output gradient", "the output"
inline void check_like_v(const char* op, const char* what, const at::Tensor& t, const at::Tensor& v) {
  TORCH_CHECK(t.sizes() == v.sizes() && t.is_contiguous() && t.scalar_type() == v.scalar_type(), op, ": ", what,
              " must be contiguous and shaped like v");
}

}  // namespace cpu_inputs
