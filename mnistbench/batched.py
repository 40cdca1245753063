"""Many seeds of an MLP trained at once as one batched model: the replicates stage on a GPU.

    state_dicts, test_logits = fit_batched(model_params, train_params, seeds, (train, val, test), device)

A GPU runs one small model's step in a few dozen kernel launches and leaves most of itself idle,
so seeds one after another cost n times one run there. Here every layer's weights are stacked
over the seeds, (S, in, out), and each step runs the S products as one `torch.baddbmm`, the S
losses as one `cross_entropy` and the S Adam updates as one fused step, while each seed keeps
everything a single run of it has: its initial weights (build_model under torch.manual_seed(seed),
as mnistbench.train.setup builds them), its shuffle order and augmentation draws (its own
generators, seeded as setup seeds them) and its own Adam moments. Dropout, where set, draws from
the global generator seeded with the first seed.

What it is not: bit-equal to single runs. Batched products sum in another order than single ones,
so a seed agrees with its single run to float rounding after a step and drifts from there, as any
two kernels do; its accuracy is another draw of the same distribution (tests/test_batched.py).
Its bits are the same run to run on the same device and torch. On the CPU it is no faster than
worker processes (docs/results.md), and MKL's batched products differ between Intel and AMD, so
the replicates stage uses it on CUDA only, where no bits are portable anyway (docs/reproducibility.md).
Only `mlp` and `linear` are batched; a CNN's seeds run one after another.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from mnistbench.model import build_model
from mnistbench.optim import Adam, CosineDecay
from mnistbench.params import ModelParams, TrainParams
from mnistbench.train import EVAL_BATCH_SIZE, augmentation

ARCHS = ("mlp", "linear")
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}
Splits = tuple[tuple[torch.Tensor, torch.Tensor], ...]


@dataclasses.dataclass
class Stack:
    """S seeds' dense layers: weights (S, in, out) and biases (S, 1, out), leaves that train."""
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    names: list[tuple[str, str]]  # each layer's state_dict keys in the single model
    activation: str
    dropout: float

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """(S, B, in) -> (S, B, 10) logits."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = ACTIVATIONS[self.activation](x)
                if self.dropout > 0:
                    x = F.dropout(x, self.dropout, training=train)
        return x

    def state_dict(self, s: int) -> dict[str, torch.Tensor]:
        """Seed s's weights under the single model's keys and layouts (out, in): loads into build_model."""
        out = {}
        for (wname, bname), w, b in zip(self.names, self.weights, self.biases):
            out[wname] = w[s].detach().t().contiguous()
            out[bname] = b[s, 0].detach().clone()
        return out


def stack(model_params: ModelParams, seeds: list[int], device: torch.device) -> Stack:
    """Each seed's initial weights exactly as the train stage draws them, stacked."""
    per_seed = []
    for seed in seeds:
        torch.manual_seed(seed)
        per_seed.append(build_model(model_params).state_dict())
    names = [(k, k[:-len("weight")] + "bias") for k in per_seed[0] if k.endswith(".weight")]
    weights = [torch.stack([sd[w].t() for sd in per_seed]).contiguous().to(device).requires_grad_()
               for w, _ in names]
    biases = [torch.stack([sd[b] for sd in per_seed]).unsqueeze(1).contiguous().to(device).requires_grad_()
              for _, b in names]
    return Stack(weights, biases, names, model_params.activation, model_params.dropout)


class Steps:
    """One training step of the stack on a batch of indices (S * B,) and their draws, if any. On
    CUDA, every full batch replays one CUDA graph of the whole step (forward, backward, Adam):
    eagerly, a step of these small products is some 60 kernel launches and Python between them,
    2 ms whatever the number of seeds (measured: docs/results.md). The first WARMUP steps run
    eagerly on a side stream, as torch's CUDA graph recipe asks, and are real steps; a partial
    last batch runs eagerly. Replays launch the same kernels as eager steps, in the same order."""

    WARMUP = 3

    def __init__(self, model: Stack, optimizer: Adam, augment, x: torch.Tensor, y: torch.Tensor, size: int,
                 batch: int, graph: bool):
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


def fit_batched(model_params: ModelParams, params: TrainParams, seeds: list[int], data: Splits,
                device: torch.device, graph: bool = True) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """Train the seeds together; returns their state_dicts (CPU, in seed order) and their logits
    on the test split, (S, N, 10) on the CPU. The validation split is not used: replicates keep
    no per-epoch history. graph: replay CUDA graphs on CUDA (class Steps), where the learning
    rate is constant (a graph holds it as a constant)."""
    if model_params.arch not in ARCHS:
        raise ValueError(f"batched training covers {', '.join(ARCHS)}, not {model_params.arch}")
    (x, y), _, (x_test, _) = data
    n, size, batch = len(y), len(seeds), params.batch_size
    model = stack(model_params, seeds, device)
    torch.manual_seed(seeds[0])  # dropout's masks
    optimizer = Adam(model.parameters(), lr=params.lr)
    scheduler = None
    if params.schedule == "cosine":
        scheduler = CosineDecay(optimizer, total_steps=params.epochs * math.ceil(n / batch))
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]  # as train.setup: CPU, same everywhere
    augments = [augmentation(params, seed) for seed in seeds]
    step = Steps(model, optimizer, augments[0], x, y, size, batch,
                 graph=graph and device.type == "cuda" and scheduler is None)
    for _ in range(params.epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)  # (S, n)
        draws = None
        if augments[0] is not None:
            draws = torch.stack([a.draw(n, torch.device("cpu")) for a in augments]).to(device)  # (S, n, 3)
        for start in range(0, n, batch):
            step(order[:, start:start + batch].reshape(-1),  # (S * B,)
                 None if draws is None else draws[:, start:start + batch].reshape(-1, 3))
            if scheduler is not None:
                scheduler.step()
    with torch.no_grad():
        logits = torch.cat([model(x_test[i:i + EVAL_BATCH_SIZE].expand(size, -1, -1), train=False)
                            for i in range(0, len(x_test), EVAL_BATCH_SIZE)], dim=1)
    return [{k: v.cpu() for k, v in model.state_dict(s).items()} for s in range(size)], logits.cpu()
