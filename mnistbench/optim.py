"""The optimizers (params.yaml `train.optimizer`) and learning-rate schedules (`train.schedule`),
registered by name with the keys each reads (train.<name>: mnistbench/registry.py).

    optimizer = build_optimizer(params.train, model.parameters())
    schedule = build_schedule(params.train, optimizer, steps_per_epoch)   # None: constant
    ... loss.backward(); optimizer.step(); schedule.step(); optimizer.zero_grad()

    adam      Adam, train.adam.weight_decay as L2 (torch.optim.Adam)
    adamw     Adam with decoupled weight decay, train.adamw.weight_decay (torch.optim.AdamW)
    sgd       SGD with train.sgd.momentum and weight_decay (torch.optim.SGD)
    adadelta  Adadelta with train.adadelta.rho and weight_decay (torch.optim.Adadelta): pytorch/examples' MNIST
    constant  the learning rate train.lr throughout
    cosine    cosine decay from train.lr to 0 over the run, per step
    steplr    train.lr times train.steplr.gamma every train.steplr.step_size epochs (torch's StepLR)

Every optimizer has torch.optim's interface (param_groups, step, zero_grad, state_dict), which
is all the training loop and the schedules use. To add one, register a builder that takes the
parameters, train.lr and the keys it declares, and give the keys values in params.yaml under its
name (docs/extending.md):

    @register("rmsprop", alpha=key(float, "smoothing constant", min=0.0, max=1.0))
    def rmsprop(parameters, lr: float, alpha: float):
        return torch.optim.RMSprop(parameters, lr=lr, alpha=alpha)

A schedule is a builder registered with @schedule that takes the optimizer, the steps of an epoch,
the epochs and its keys, and returns an object whose step() runs after every optimizer step (or
None: constant). It writes param_groups[i]["lr"], as torch's schedulers do.

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
from collections.abc import Iterable

import torch

from mnistbench.params import TrainParams
from mnistbench.registry import Registry, key

OPTIMIZERS = Registry("train", "optimizer", "optimizer", "mnistbench/optim.py")
SCHEDULES = Registry("train", "schedule", "schedule", "mnistbench/optim.py")
register = OPTIMIZERS.register
schedule = SCHEDULES.register


def check(params: TrainParams, source: str = "params.yaml") -> None:
    """The optimizer and the schedule registered, and every optimizer's and schedule's section of
    train valid: ParamsError, one line, naming the key or listing the registered ones."""
    fields = ", ".join(k for k in TrainParams.__dataclass_fields__ if k != "sections")
    OPTIMIZERS.check_all(params.optimizer, params.sections, source, fields, siblings=(SCHEDULES,))
    SCHEDULES.check_all(params.schedule, params.sections, source, fields, siblings=(OPTIMIZERS,))


def optimizer_keys(params: TrainParams, source: str = "params.yaml") -> dict:
    return OPTIMIZERS.keys(params.optimizer, params.sections, source)


def schedule_keys(params: TrainParams, source: str = "params.yaml") -> dict:
    return SCHEDULES.keys(params.schedule, params.sections, source)


def build_optimizer(params: TrainParams, parameters: Iterable[torch.Tensor]):
    return OPTIMIZERS.entry(params.optimizer).build(parameters, lr=params.lr, **optimizer_keys(params))


def build_schedule(params: TrainParams, optimizer, steps_per_epoch: int):
    """The schedule's stepper, stepped after every optimizer step; None for a constant rate."""
    build = SCHEDULES.entry(params.schedule).build
    return build(optimizer, steps_per_epoch, params.epochs, **schedule_keys(params))


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


def _weight_decay(how: str):
    return key(float, f"weight decay: {how} (0: none)", min=0.0)


@register("adam", weight_decay=_weight_decay("L2, added to the gradient"))
def adam(parameters: Iterable[torch.Tensor], lr: float, weight_decay: float) -> FusedAdam:
    return FusedAdam(parameters, lr=lr, weight_decay=weight_decay)


@register("adamw", weight_decay=_weight_decay("decoupled, applied to the weights"))
def adamw(parameters: Iterable[torch.Tensor], lr: float, weight_decay: float) -> FusedAdam:
    return FusedAdam(parameters, lr=lr, weight_decay=weight_decay, decoupled=True)


@register(
    "sgd",
    momentum=key(float, "momentum (0: plain SGD)", min=0.0, max_exclusive=1.0),
    weight_decay=_weight_decay("L2, added to the gradient"),
)
def sgd(parameters: Iterable[torch.Tensor], lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)


@register(
    "adadelta",
    rho=key(float, "decay of the running averages of squared gradients and updates", min=0.0, max=1.0),
    weight_decay=_weight_decay("L2, added to the gradient"),
)
def adadelta(parameters: Iterable[torch.Tensor], lr: float, rho: float, weight_decay: float) -> torch.optim.Adadelta:
    return torch.optim.Adadelta(parameters, lr=lr, rho=rho, weight_decay=weight_decay)


@schedule("constant")
def constant(optimizer, steps_per_epoch: int, epochs: int) -> None:
    return None


@schedule("cosine")
def cosine(optimizer, steps_per_epoch: int, epochs: int) -> CosineDecay:
    return CosineDecay(optimizer, total_steps=steps_per_epoch * epochs)


@schedule(
    "steplr",
    step_size=key(int, "epochs between two decays", min=1),
    gamma=key(float, "factor of each decay", min_exclusive=0.0, max=1.0),
)
def steplr(optimizer, steps_per_epoch: int, epochs: int, step_size: int, gamma: float) -> StepDecay:
    return StepDecay(optimizer, steps_per_epoch, step_size, gamma)


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


class StepDecay:
    """Each parameter group's learning rate times `gamma` every `step_size` epochs:
    torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma) stepped once an epoch, as
    pytorch/examples' mnist/main.py steps it, by the same recursion (lr * gamma at each boundary),
    so each learning rate is the same float. step() runs after every optimizer step; the rate
    changes when an epoch's last step is done."""

    def __init__(self, optimizer, steps_per_epoch: int, step_size: int, gamma: float):
        self.optimizer, self.per_epoch, self.step_size, self.gamma = optimizer, steps_per_epoch, step_size, gamma
        self.t = 0

    def step(self) -> None:
        self.t += 1
        if self.t % self.per_epoch == 0 and (self.t // self.per_epoch) % self.step_size == 0:
            for group in self.optimizer.param_groups:
                group["lr"] = group["lr"] * self.gamma
