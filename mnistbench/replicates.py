"""The configured model trained on n seeds at once: accuracy as a distribution, not one draw.

    seeds = seed_block(params.train, params.replicates.n)       # train.seed .. train.seed + n - 1
    models = fit_replicates(params.model, params.train, seeds, train, val, device)  # one per seed
    rows = score_all(models, test)                             # [{"accuracy", "macro_f1", "loss"}, ...]
    summary = summarize([row["accuracy"] for row in rows])       # n, mean, sd, min, max, 95% CI

Every seed starts exactly where a single run with that `train.seed` starts: the same initial
weights, the same shuffle order and augmentation draws each epoch, its own Adam state. So the n
replicates are n draws of what the train stage produces.

MLP and linear models train together as one batched model: each layer's weights are stacked into
an (S, in, out) tensor and every step is a few batched matrix multiplies (`torch.baddbmm`) over
the S seeds' own batches, then one fused Adam step over all of them. Per seed the arithmetic is the
single run's, but in other kernels, so replicate k agrees with a single run of seed k to float
rounding, not to the bit (tests/test_replicates.py checks the start exactly and the rest closely).
A CNN's seeds train one after another with mnistbench.train.fit: n times one run, and each
replicate is bit-identical to what the train stage makes of that seed.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mnistbench import evaluate as ev
from mnistbench.model import MLP, build_model
from mnistbench.optim import Adam, CosineDecay
from mnistbench.params import ModelParams, TrainParams
from mnistbench.train import EVAL_BATCH_SIZE, augmentation, fit

ACTIVATIONS = {"relu": torch.relu, "gelu": F.gelu, "tanh": torch.tanh}
DECIMALS = 6  # as the evaluate stage's metrics


def seed_block(train: TrainParams, n: int) -> list[int]:
    """The replicates' seeds: train.seed, train.seed + 1, ..., train.seed + n - 1 (params.py
    refuses a block past the largest seed)."""
    return list(range(train.seed, train.seed + n))


class StackedMLP(nn.Module):
    """S MLPs of one shape as one module: (S, B, 784) -> (S, B, 10), seed s on row s.

    Weights are kept (S, in, out), the transpose of nn.Linear's (out, in), so that the forward pass
    is baddbmm(bias, x, W) with no transposed operand."""

    def __init__(self, models: list[MLP], activation: str, dropout: float):
        super().__init__()
        linears = [[(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)] for model in models]
        self.names = [name for name, _ in linears[0]]  # layers.0, layers.2, ...: MLP's state_dict keys
        self.weights = nn.ParameterList(torch.stack([layers[i][1].weight.detach().t() for layers in linears]).contiguous()
                                        for i in range(len(self.names)))  # (S, in, out)
        self.biases = nn.ParameterList(torch.stack([layers[i][1].bias.detach() for layers in linears])[:, None].contiguous()
                                       for i in range(len(self.names)))  # (S, 1, out)
        self.activation, self.dropout = ACTIVATIONS[activation], dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (S, B, 784), each seed its own batch."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)  # (S, B, out)
            if i < last:
                x = self.activation(x)
                if self.dropout > 0:
                    x = F.dropout(x, self.dropout, self.training)
        return x

    def state_dict_of(self, s: int) -> dict[str, torch.Tensor]:
        """Seed s's weights in MLP's own state_dict layout."""
        out = {}
        for name, w, b in zip(self.names, self.weights, self.biases):
            out[f"{name}.weight"] = w[s].detach().t().contiguous()
            out[f"{name}.bias"] = b[s, 0].detach().clone()
        return out


def initial_models(model_params: ModelParams, seeds: list[int], device: torch.device) -> list[nn.Module]:
    """Each seed's model as mnistbench.train.setup builds it: torch.manual_seed(seed), then build."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(build_model(model_params).to(device))
    return models


def fit_stacked(model_params: ModelParams, params: TrainParams, seeds: list[int],
                train: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                log: Callable[[str], None] = print) -> StackedMLP:
    """Train an MLP or linear model on every seed at once; returns the stacked result (eval mode)."""
    x, y = train
    n, s = len(y), len(seeds)
    stacked = StackedMLP(initial_models(model_params, seeds, device), model_params.activation, model_params.dropout)
    optimizer = Adam(stacked.parameters(), lr=params.lr)
    steps_per_epoch = -(-n // params.batch_size)
    scheduler = CosineDecay(optimizer, params.epochs * steps_per_epoch) if params.schedule == "cosine" else None
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]  # CPU: each seed's own shuffle
    augments = [augmentation(params, seed) for seed in seeds]  # each seed's own stream, as its single run
    augments = augments if augments[0] is not None else None
    stacked.train()
    for epoch in range(1, params.epochs + 1):
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)  # (S, N)
        draws = torch.stack([a.draw(n, device) for a in augments]) if augments else None  # (S, N, 3)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n, params.batch_size):
            idx = order[:, start:start + params.batch_size]  # (S, B): seed s's batch on row s
            b = idx.shape[1]
            flat = idx.reshape(-1)
            xb, yb = x.index_select(0, flat), y.index_select(0, flat)  # (S*B, 784), (S*B,)
            if draws is not None:
                xb = augments[0](xb, draws[:, start:start + b].reshape(-1, 3))  # the draws decide the moves
            logits = stacked(xb.view(s, b, -1))  # (S, B, 10)
            # the sum over seeds of each seed's mean loss: each seed's gradient is its own run's
            loss = F.cross_entropy(logits.view(s * b, -1), yb, reduction="sum") / b
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach() * b
        log(f"epoch {epoch:>3}/{params.epochs}  train loss {loss_sum.item() / (n * s):.4f} (mean of {s} seeds)")
    return stacked.eval()


def fit_replicates(model_params: ModelParams, params: TrainParams, seeds: list[int],
                   train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                   device: torch.device, log: Callable[[str], None] = print) -> list[nn.Module]:
    """One trained model per seed, in eval mode: batched for mlp and linear, sequential for cnn."""
    if model_params.arch == "cnn":
        models = []
        for seed in seeds:
            log(f"seed {seed}")
            model, _, _ = fit(model_params, dataclasses.replace(params, seed=seed), train, val, device, log=log)
            models.append(model.eval())
        return models
    stacked = fit_stacked(model_params, params, seeds, train, device, log)
    models = []
    for i in range(len(seeds)):
        model = build_model(model_params).to(device)
        model.load_state_dict(stacked.state_dict_of(i))
        models.append(model.eval())
    return models


def score_all(models: list[nn.Module], test: tuple[torch.Tensor, torch.Tensor]) -> list[dict]:
    """Each model's test accuracy, macro-F1 and loss, computed as the evaluate stage computes them."""
    x, y = test
    y_true = y.cpu().numpy()
    return [ev.score(y_true, ev.predict_logits(model, x, EVAL_BATCH_SIZE).cpu())[0] for model in models]


def summarize(values: list[float]) -> dict:
    """n, mean, sample sd, min, max and the 95% confidence interval of the mean (Student's t)."""
    from scipy import stats  # 0.3 s to import: only where a summary is made

    n = len(values)
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {k: round(v, DECIMALS) if isinstance(v, float) else v for k, v in {
        "n": n, "mean": mean, "sd": sd, "min": min(values), "max": max(values),
        "ci95_low": mean - half, "ci95_high": mean + half}.items()}
