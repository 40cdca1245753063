"""Many seeds of a dense model trained at once as one batched model: the replicates stage on a GPU.

    reason = unstackable(model_params)         # None: these seeds can train batched
    state_dicts, test_logits = fit_batched(model_params, train_params, seeds, (train, val, test), device)

A GPU runs one small model's step in a few dozen kernel launches and leaves most of itself idle,
so seeds one after another cost n times one run there. Here every linear layer's weights are
stacked over the seeds, (S, in, out), and each step runs the S products as one `torch.baddbmm`,
the S losses as one `cross_entropy` and the S optimizer updates as one step, while each seed keeps
everything a single run of it has: its initial weights (build_model under torch.manual_seed(seed),
as mnistbench.train.setup builds them), its shuffle order and augmentation draws (its own
generators, seeded as setup seeds them) and its own optimizer state. Dropout, where set, draws
from the global generator seeded with the first seed.

What can be stacked: a model that is a chain of linear layers, activations (ReLU, GELU, Tanh) and
dropout, as the registered mlp and linear are; anything else (a convolution, a batch norm, a
forward that is not the chain of its layers) gets a reason from unstackable, and the replicates
stage trains those seeds one after another instead, saying so.

What it is not: bit-equal to single runs. Batched products sum in another order than single ones,
so a seed agrees with its single run to float rounding after a step and drifts from there, as any
two kernels do; its accuracy is another draw of the same distribution (tests/test_batched.py).
Its bits are the same run to run on the same device and torch. On the CPU it is no faster than
worker processes, and MKL's batched products differ between Intel and AMD, so the replicates
stage uses it on CUDA only, where no bits are portable anyway (docs/reproducibility.md).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from mnistbench.models import IN_FEATURES, build_model
from mnistbench.optim import FusedAdam, build_optimizer, build_schedule
from mnistbench.params import ModelParams, TrainParams
from mnistbench.train import EVAL_BATCH_SIZE, augmentation

ACTIVATIONS = {nn.ReLU: F.relu, nn.Tanh: torch.tanh}
Splits = tuple[tuple[torch.Tensor, torch.Tensor], ...]


def _ops(model: nn.Module) -> list[tuple[str, object]] | str:
    """The model's leaf modules as ("linear", (weight key, bias key)), ("act", fn) and
    ("dropout", p) steps, or the reason they are not such a chain."""
    names = {id(p): name for name, p in model.named_parameters()}
    ops: list[tuple[str, object]] = []
    for module in (m for m in model.modules() if not list(m.children())):
        if isinstance(module, nn.Linear):
            if module.bias is None:
                return "a linear layer without a bias"
            ops.append(("linear", (names[id(module.weight)], names[id(module.bias)])))
        elif type(module) in ACTIVATIONS:
            ops.append(("act", ACTIVATIONS[type(module)]))
        elif type(module) is nn.GELU and module.approximate == "none":
            ops.append(("act", F.gelu))
        elif type(module) is nn.Dropout:
            ops.append(("dropout", module.p))
        elif type(module) not in (nn.Flatten, nn.Identity):
            return f"a {type(module).__name__} layer"
    if not ops or ops[-1][0] != "linear" or ops[0][0] != "linear":
        return "no linear layer at each end"
    return ops


@dataclasses.dataclass
class Stack:
    """S seeds' chain: each linear layer's weights (S, in, out) and biases (S, 1, out), leaves that train."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    ops: list[tuple[str, object]]  # _ops of the single model

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """(S, B, 784) -> (S, B, 10) logits."""
        layer = 0
        for kind, arg in self.ops:
            if kind == "linear":
                x = torch.baddbmm(self.biases[layer], x, self.weights[layer])
                layer += 1
            elif kind == "act":
                x = arg(x)
            elif arg > 0:
                x = F.dropout(x, arg, training=train)
        return x

    def state_dict(self, s: int) -> dict[str, torch.Tensor]:
        """Seed s's weights under the single model's keys and layouts (out, in): loads into build_model."""
        out = {}
        keys = [arg for kind, arg in self.ops if kind == "linear"]
        for (wname, bname), w, b in zip(keys, self.weights, self.biases):
            out[wname] = w[s].detach().t().contiguous()
            out[bname] = b[s, 0].detach().clone()
        return out


def unstackable(model_params: ModelParams) -> str | None:
    """Why this architecture's seeds cannot train as one batched model, or None when they can:
    its model must be a chain of linear layers, activations and dropout, and its forward the
    chain's (checked on a probe batch against the stacked forward)."""
    torch.manual_seed(0)
    model = build_model(model_params).eval()
    ops = _ops(model)
    if isinstance(ops, str):
        return f"{model_params.arch} has {ops}"
    probe = torch.randn(8, IN_FEATURES, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        single = model(probe)
        stacked = _stack([model.state_dict()], ops, torch.device("cpu"))(probe[None], train=False)[0]
    if single.shape != stacked.shape or not torch.allclose(single, stacked, rtol=1e-4, atol=1e-5):
        return f"{model_params.arch}'s forward is not the chain of its layers"
    return None


def _stack(state_dicts: list[dict[str, torch.Tensor]], ops, device: torch.device) -> Stack:
    keys = [arg for kind, arg in ops if kind == "linear"]
    weights = [torch.stack([sd[w].t() for sd in state_dicts]).contiguous().to(device).requires_grad_() for w, _ in keys]
    biases = [
        torch.stack([sd[b] for sd in state_dicts]).unsqueeze(1).contiguous().to(device).requires_grad_()
        for _, b in keys
    ]
    return Stack(weights, biases, ops)


def stack(model_params: ModelParams, seeds: list[int], device: torch.device) -> Stack:
    """Each seed's initial weights exactly as the train stage draws them, stacked."""
    reason = unstackable(model_params)
    if reason is not None:
        raise ValueError(f"batched training needs a chain of linear layers: {reason}")
    per_seed = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = build_model(model_params)
        per_seed.append(model.state_dict())
    return _stack(per_seed, _ops(model), device)


class Steps:
    """One training step of the stack on a batch of indices (S * B,) and their draws, if any. On
    CUDA, every full batch replays one CUDA graph of the whole step (forward, backward, Adam):
    eagerly, a step of these small products is some 60 kernel launches and Python between them,
    whatever the number of seeds. The first WARMUP steps run eagerly on a side stream, as torch's
    CUDA graph recipe asks, and are real steps; a partial last batch runs eagerly. Replays launch
    the same kernels as eager steps, in the same order."""

    WARMUP = 3

    def __init__(
        self, model: Stack, optimizer, augment, x: torch.Tensor, y: torch.Tensor, size: int, batch: int, graph: bool
    ):
        self.model, self.optimizer, self.augment, self.x, self.y, self.size = model, optimizer, augment, x, y, size
        self.batch, self.graph, self.done, self.replay = batch, graph, 0, None
        self.idx = self.draws = None  # the graph's input buffers, once it is captured

    def eager(self, idx: torch.Tensor, draws: torch.Tensor | None) -> None:
        xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
        if draws is not None:
            xb = self.augment(xb, draws)
        logits = self.model(xb.view(self.size, -1, self.x.shape[1]), train=True)
        # the sum of each seed's mean loss: every seed's gradient is its own batch's
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb, reduction="sum") / (len(idx) // self.size)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def __call__(self, idx: torch.Tensor, draws: torch.Tensor | None) -> None:
        full = len(idx) == self.size * self.batch
        if not (self.graph and full):
            return self.eager(idx, draws)
        if self.replay is None and self.done < self.WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.eager(idx, draws)
            torch.cuda.current_stream().wait_stream(side)
            self.done += 1
            return None
        if self.replay is None:
            self.idx = torch.empty_like(idx)
            self.draws = None if draws is None else torch.empty_like(draws)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.eager(self.idx, self.draws)
            self.replay = graph.replay
        self.idx.copy_(idx)
        if draws is not None:
            self.draws.copy_(draws)
        self.replay()
        return None


def fit_batched(
    model_params: ModelParams,
    params: TrainParams,
    seeds: list[int],
    data: Splits,
    device: torch.device,
    graph: bool = True,
) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """Train the seeds together; returns their state_dicts (CPU, in seed order) and their logits
    on the test split, (S, N, 10) on the CPU. The validation split is not used: replicates keep
    no per-epoch history. graph: replay CUDA graphs on CUDA (class Steps), where the learning
    rate is constant (a graph holds it as a constant) and the optimizer is FusedAdam (its step
    counters live on the device)."""
    (x, y), _, (x_test, _) = data
    n, size, batch = len(y), len(seeds), params.batch_size
    model = stack(model_params, seeds, device)
    torch.manual_seed(seeds[0])  # dropout's masks
    optimizer = build_optimizer(params, model.parameters())
    scheduler = build_schedule(params, optimizer, steps_per_epoch=math.ceil(n / batch))
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]  # as train.setup: CPU, same everywhere
    augments = [augmentation(params, seed) for seed in seeds]
    graphable = device.type == "cuda" and scheduler is None and isinstance(optimizer, FusedAdam)
    step = Steps(model, optimizer, augments[0], x, y, size, batch, graph=graph and graphable)
    for _ in range(params.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)  # (S, n)
        draws = None
        if augments[0] is not None:
            draws = torch.stack([a.draw(n, torch.device("cpu")) for a in augments]).to(device)  # (S, n, 3)
        for start in range(0, n, batch):
            step(
                order[:, start : start + batch].reshape(-1),  # (S * B,)
                None if draws is None else draws[:, start : start + batch].reshape(-1, 3),
            )
            if scheduler is not None:
                scheduler.step()
    with torch.no_grad():
        logits = torch.cat(
            [
                model(x_test[i : i + EVAL_BATCH_SIZE].expand(size, -1, -1), train=False)
                for i in range(0, len(x_test), EVAL_BATCH_SIZE)
            ],
            dim=1,
        )
    return [{k: v.cpu() for k, v in model.state_dict(s).items()} for s in range(size)], logits.cpu()
