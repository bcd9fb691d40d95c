"""The hidden layers' activation of the VAE problems: tanh, computed faster than torch.tanh on a CPU."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: elements of a block of _SigmoidTanh's four passes (512 KB of float32: within a core's L2 cache)
TANH_BLOCK = 1 << 17


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) as 2 sigmoid(2x) - 1 in eager code, its derivative tanh's own kernel on the output
    (1 - y^2, differentiable again: REBAR and RELAX take second derivatives through the decoder)."""

    generate_vmap_rule = True  # the encoder's vector-Jacobian products are vmapped (torch.func)

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.numel() <= TANH_BLOCK or torch._C._functorch.is_functorch_wrapped_tensor(x):  # vmap: no out= ops
            return torch.sigmoid(x * 2).mul_(2).sub_(1)
        flat, y = x.reshape(-1), torch.empty(x.shape, dtype=x.dtype, device=x.device)
        for part, out in zip(flat.split(TANH_BLOCK), y.view(-1).split(TANH_BLOCK), strict=True):
            torch.mul(part, 2, out=out).sigmoid_().mul_(2).sub_(1)  # four passes over a block in the cache
        return y

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Tanh):
    """nn.Tanh, computed as 2 sigmoid(2x) - 1 in float32 on a CPU (other dtypes and devices: torch.tanh).

    The CPU's vectorized tanh (eager torch.tanh, and inductor's, the same routine) is slow here:
    on [512, 256] float32, one thread, 338 us forward against 118 us for the sigmoid form's four
    kernels (49 against 85 us on [128, 256], 4.6 against 10.8 ms on [16384, 256]); in torch.profiler,
    one thread, torch.tanh and its backward took a quarter of a binary VAE's reinforce training step and
    measure-valued's tanh 38% of its step (the steps' side-by-side speed-ups: docs/performance.md). The
    backward is tanh's own kernel on the output. The two forms differ
    by at most a few units in the last place of 1 (a test bounds the value and the derivative). In
    float64 the eager sigmoid form is no faster on large tensors, and torch.tanh is kept. Compiled on a
    CPU (any dtype), the sigmoid form is written in plain ops, which inductor fuses into one loop
    (4.0 ms for inductor's tanh on [8192, 256] float32, 1.9 ms for the fused form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.compiler.is_compiling():
            return torch.sigmoid(2 * x) * 2 - 1
        if x.device.type == "cpu" and x.dtype == torch.float32:
            return _SigmoidTanh.apply(x)
        return torch.tanh(x)
