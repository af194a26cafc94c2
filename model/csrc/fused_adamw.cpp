// AdamW through ATen's fused kernel (`torch.optim.AdamW(fused=True)`): one pass over each
// parameter reads the weight, gradient and both moments and writes the weight and moments.
// tch does not expose the op (it takes lists of tensors that it mutates), so this file
// binds it for tiller's optimizer (model/src/train/fused.rs).
//
// A tch `Tensor` holds an `at::Tensor*` (libtch's `tensor` type), which is what the
// pointer arrays below carry.

#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adamw.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <vector>

namespace {
std::vector<at::Tensor> gather(at::Tensor **tensors, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}
}  // namespace

extern "C" {

// Updates `n` parameters in place. `step` is a 0-d f32 tensor holding the step number
// (already incremented), shared by every parameter. Returns null on success, else an
// error message the caller frees with free().
char *tiller_fused_adamw(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs,
                         at::Tensor **exp_avg_sqs, at::Tensor *step, int64_t n, double lr,
                         double beta1, double beta2, double weight_decay, double eps) {
  try {
    std::vector<at::Tensor> steps(n, *step);
    at::_fused_adamw_(gather(params, n), gather(grads, n), gather(exp_avgs, n),
                      gather(exp_avg_sqs, n), {}, steps, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  }
}

}  // extern "C"
