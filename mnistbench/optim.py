"""The optimizers (params.yaml `train.optimizer`), registered by name, and the learning-rate schedule.

    optimizer = build_optimizer(params.train, model.parameters())
    schedule = build_schedule(params.train, optimizer, total_steps)   # None: constant
    ... loss.backward(); optimizer.step(); schedule.step(); optimizer.zero_grad()

    adam    Adam, train.weight_decay as L2 (torch.optim.Adam)
    adamw   Adam with decoupled weight decay (torch.optim.AdamW)
    sgd     SGD with train.momentum (torch.optim.SGD)

Every optimizer has torch.optim's interface (param_groups, step, zero_grad, state_dict), which
is all the training loop and the schedule use. To add one, register a builder that takes the
train section and the parameters (docs/extending.md):

    @register("rmsprop")
    def rmsprop(params: TrainParams, parameters):
        return torch.optim.RMSprop(parameters, lr=params.lr, weight_decay=params.weight_decay)

Adam and AdamW run on the fused kernels torch.optim.Adam(fused=True) and AdamW(fused=True) run,
through FusedAdam below rather than torch.optim itself, for speed: in torch 2.13 every
torch.optim.Optimizer method goes through torch._dynamo's disable wrapper, so creating one imports
torch._dynamo (about a second, paid by every train stage) and each step pays the wrapper again
(`python -m lab.bench` measures an epoch both ways). The arithmetic is the same ATen kernel with
the same arguments, so the weights are bit-identical to torch.optim's (tests/test_optim.py checks
it, which also catches a torch upgrade changing the kernels' signature).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from mnistbench.params import ParamsError, TrainParams

Builder = Callable[[TrainParams, Iterable[torch.Tensor]], "torch.optim.Optimizer | FusedAdam"]
OPTIMIZERS: dict[str, Builder] = {}  # train.optimizer -> its builder, filled by @register


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        OPTIMIZERS[name] = builder
        return builder

    return add


def check(params: TrainParams, source: str = "params.yaml") -> None:
    """ParamsError listing the registered optimizers when train.optimizer is none of them."""
    if params.optimizer not in OPTIMIZERS:
        raise ParamsError(
            f"{source}: train.optimizer = {params.optimizer!r}: must be one of "
            f"{', '.join(OPTIMIZERS)} (the optimizers registered in mnistbench/optim.py)"
        )


def build_optimizer(params: TrainParams, parameters: Iterable[torch.Tensor]):
    check(params)
    return OPTIMIZERS[params.optimizer](params, parameters)


def build_schedule(params: TrainParams, optimizer, total_steps: int) -> CosineDecay | None:
    """train.schedule: None for constant; cosine decays every group's lr to 0 over total_steps."""
    return CosineDecay(optimizer, total_steps) if params.schedule == "cosine" else None


class FusedAdam:
    """torch.optim.Adam(fused=True), or AdamW(fused=True) with decoupled=True: the same kernels,
    state and state_dict, without torch.optim's per-call wrappers (module docstring). One device
    and dtype per parameter group, as this project's models have; amsgrad and maximize are not
    offered."""

    def __init__(
        self,
        parameters: Iterable[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ):
        self.param_groups = [
            {
                "params": list(parameters),
                "lr": lr,
                "betas": betas,
                "eps": eps,
                "weight_decay": weight_decay,
                "amsgrad": False,
                "maximize": False,
                "foreach": None,
                "capturable": False,
                "differentiable": False,
                "fused": True,
                "decoupled_weight_decay": decoupled,
            }
        ]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}  # made at a parameter's first step, as torch's

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]  # as torch.optim: skip the others
            if not params:
                continue
            for p in params:
                if p not in self.state:  # float32 step counters on the parameter's device, as for fused=True
                    self.state[p] = {
                        "step": torch.zeros((), dtype=torch.float32, device=p.device),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
            states = [self.state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
            kernel(
                params,
                [p.grad for p in params],
                [s["exp_avg"] for s in states],
                [s["exp_avg_sq"] for s in states],
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=group["betas"][0],
                beta2=group["betas"][1],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
            )

    def state_dict(self) -> dict:
        """torch.optim's layout: parameters numbered in group order; torch.optim.Adam loads it."""
        index = {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        return {
            "state": {index[p]: dict(s) for p, s in self.state.items()},
            "param_groups": [
                {**{k: v for k, v in g.items() if k != "params"}, "params": [index[p] for p in g["params"]]}
                for g in self.param_groups
            ],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        for group, saved in zip(self.param_groups, state_dict["param_groups"], strict=True):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {
            params[i]: {k: v.to(params[i].device).clone() for k, v in s.items()} for i, s in state_dict["state"].items()
        }


@register("adam")
def adam(params: TrainParams, parameters: Iterable[torch.Tensor]) -> FusedAdam:
    return FusedAdam(parameters, lr=params.lr, weight_decay=params.weight_decay)


@register("adamw")
def adamw(params: TrainParams, parameters: Iterable[torch.Tensor]) -> FusedAdam:
    return FusedAdam(parameters, lr=params.lr, weight_decay=params.weight_decay, decoupled=True)


@register("sgd")
def sgd(params: TrainParams, parameters: Iterable[torch.Tensor]) -> torch.optim.SGD:
    return torch.optim.SGD(parameters, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)


class CosineDecay:
    """Each parameter group's learning rate from its start value down to 0 over `total_steps`
    calls to step(): torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    with eta_min 0, computed by the same recursion, so each learning rate is the same float. It
    writes param_groups[i]["lr"], as torch's schedulers do, so it drives any optimizer here."""

    def __init__(self, optimizer, total_steps: int):
        self.optimizer, self.total, self.t = optimizer, total_steps, 0
        self.base = [group["lr"] for group in optimizer.param_groups]

    def step(self) -> None:
        self.t += 1
        t, T = self.t, self.total
        for group, base in zip(self.optimizer.param_groups, self.base):
            lr = group["lr"]
            if (t - 1 - T) % (2 * T) == 0:  # past the end: torch's schedule climbs back; kept for exactness
                group["lr"] = lr + (base - 0.0) * (1 - math.cos(math.pi / T)) / 2
            else:
                group["lr"] = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - 0.0) + 0.0
