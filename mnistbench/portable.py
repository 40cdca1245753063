"""Linear layers whose float bits are the same on Intel and AMD CPUs, at the least cost in speed.

    model = convert(model)             # every nn.Linear in it becomes a PortableLinear
    layer = PortableLinear(784, 128)   # an nn.Linear: same parameters, state_dict and checkpoints

mnistbench.models.build_model converts every model it builds, so an architecture is written with
plain nn.Linear layers and still gets these bits.

Why: torch's CPU matrix products go to MKL's sgemm, and MKL computes with other kernels on AMD
than on Intel. On AMD it ignores the MKL_CBWR branch (AVX2, AVX, SSE4_2, AUTO... all gave the
same bits there) except COMPATIBLE, and no Intel branch gives AMD's bits: measured with torch
2.13 (MKL 2024.2) natively on an AMD EPYC (Zen 3) and under `qemu-x86_64 -cpu Haswell` /
`EPYC-Rome`, `x @ w.t()` for (64, 784) x (128, 784) differs, as do most layouts of the same
product. Only MKL_CBWR=COMPATIBLE (SSE2 kernels, Intel's documented cross-vendor branch) is
the same everywhere, and it is slow for large layers (about 3x MKL's own AVX2 path on the
784 -> 128 layer: `python -m lab.bench` measures what the choice costs). oneDNN's inner-product kernels
(brgemm, JIT-generated per ISA, pinned to AVX2 by ONEDNN_MAX_CPU_ISA in mnistbench/__init__.py)
gave the same bits natively and under every emulated CPU, and run the large layers about as
fast as MKL's AVX2 path; their fixed cost per call makes them slower than MKL COMPATIBLE for
small layers. So a layer with at least ONEDNN_MIN_WEIGHTS
weights runs on oneDNN; a smaller one stays on F.linear (MKL, COMPATIBLE); the choice depends on
the layer's shape alone, and both paths are portable, so where the line lies only moves speed.

Private API, contained here: torch.ops.mkldnn._linear_pointwise (what torch's inductor uses for
CPU linear layers) is the one oneDNN inner product torch offers on dense tensors; it has no
autograd formula, so _OneDNNLinear supplies one, with the two backward products on the same
kernel (gy @ w and gy.t() @ x, as views: no copies) and the bias gradient as gy.sum(0), as
autograd computes it for F.linear. tests/test_portable.py checks it against F.linear and its
gradients, which also catches a torch upgrade changing the op. Off the CPU, for other dtypes, or
where torch has no oneDNN, the layer is a plain nn.Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ONEDNN_MIN_WEIGHTS = 16_384  # in_features * out_features; 128 x 64 is about even, 128 x 128 faster on oneDNN


def _onednn_linear_op():
    try:
        return torch.ops.mkldnn._linear_pointwise.default
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return None


_LINEAR = _onednn_linear_op()


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (N, in) @ weight (out, in).t() + bias on oneDNN; weight may be a transposed view."""
    return _LINEAR(x, weight, bias, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = _onednn(grad, weight.t(), None) if ctx.needs_input_grad[0] else None  # (N, out) @ (out, in)
        grad_w = _onednn(grad.t(), x.t(), None) if ctx.needs_input_grad[1] else None  # (out, N) @ (N, in)
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def uses_onednn(layer: nn.Linear, x: torch.Tensor) -> bool:
    return (
        _LINEAR is not None
        and x.device.type == "cpu"
        and x.dim() == 2
        and x.dtype == torch.float32
        and layer.weight.dtype == torch.float32
        and layer.in_features * layer.out_features >= ONEDNN_MIN_WEIGHTS
    )


class PortableLinear(nn.Linear):
    """nn.Linear, computed on oneDNN on the CPU when the layer is large enough (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if uses_onednn(self, x):
            return _OneDNNLinear.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def convert(module: nn.Module) -> nn.Module:
    """`module` with every nn.Linear in it (exactly nn.Linear: a subclass keeps its own forward)
    replaced by a PortableLinear holding the same Parameter objects, as
    nn.SyncBatchNorm.convert_sync_batchnorm converts batch norms. The new layers are made on the
    meta device, so no weight is drawn again and no random number consumed: a converted model
    has the same parameters, in the same order, under the same state_dict keys."""
    for name, child in module.named_children():
        setattr(module, name, convert(child))
    if type(module) is not nn.Linear:
        return module
    layer = PortableLinear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
    layer.weight, layer.bias = module.weight, module.bias
    return layer.train(module.training)


def describe() -> str:
    """What run_info records about the linear layers' kernels."""
    if _LINEAR is None:
        return "F.linear (torch has no oneDNN)"
    return f"oneDNN inner product from {ONEDNN_MIN_WEIGHTS} weights on the CPU, else F.linear"
