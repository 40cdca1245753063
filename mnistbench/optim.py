"""Adam on the fused kernel that torch.optim.Adam(fused=True) runs, without torch.optim's wrappers.

    optimizer = Adam(model.parameters(), lr=0.001)
    schedule = CosineDecay(optimizer, total_steps)   # optional
    ... loss.backward(); optimizer.step(); schedule.step(); optimizer.zero_grad()

Why not torch.optim itself: in torch 2.13 every torch.optim.Optimizer method goes through
torch._dynamo's disable wrapper. Creating one imports torch._dynamo (1.0 s here, paid by every
train stage), and each step pays the wrapper again: for the default MLP at batch 64 on one thread,
an epoch took 0.71-0.73 s through torch.optim.Adam(fused=True) and 0.59-0.61 s through this class.
The arithmetic is the same ATen kernel (torch._fused_adam_) with the same arguments, and the
cosine schedule is CosineAnnealingLR's own recursion, so weights and learning rates come out
bit-identical to torch.optim's: tests/test_optim.py checks both against torch.optim, which also
guards against a torch upgrade changing the kernel's signature.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch


class Adam:
    """torch.optim.Adam(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, fused=True),
    one parameter group, no state_dict (the project never resumes an optimizer)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # float32 step counters on each parameter's device, as torch.optim keeps them for fused=True
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]  # as torch.optim: skip the others
        steps = [self.steps[i] for i in live]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_([self.params[i] for i in live], [self.params[i].grad for i in live],
                           [self.exp_avgs[i] for i in live], [self.exp_avg_sqs[i] for i in live], [], steps,
                           amsgrad=False, lr=self.lr, beta1=self.betas[0], beta2=self.betas[1],
                           weight_decay=0.0, eps=self.eps, maximize=False)


class CosineDecay:
    """The learning rate from its start value down to 0 over `total_steps` calls to step():
    torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps) with eta_min 0,
    computed by the same recursion, so each learning rate is the same float."""

    def __init__(self, optimizer: Adam, total_steps: int):
        self.optimizer, self.total, self.base, self.t = optimizer, total_steps, optimizer.lr, 0

    def step(self) -> None:
        self.t += 1
        t, T, lr = self.t, self.total, self.optimizer.lr
        if (t - 1 - T) % (2 * T) == 0:  # past the end: torch's schedule climbs back; kept for exactness
            self.optimizer.lr = lr + (self.base - 0.0) * (1 - math.cos(math.pi / T)) / 2
        else:
            self.optimizer.lr = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - 0.0) + 0.0
