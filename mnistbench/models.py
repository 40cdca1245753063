"""The classifiers (params.yaml `model.arch`), registered by name, and their checkpoint format.

    mlp     the seed's 784-128-64-10 ReLU MLP by default (model.hidden, activation, dropout)
    linear  multinomial logistic regression, 784 -> 10: the classic floor
    cnn     conv blocks (3x3 conv, ReLU, 2x2 max-pool; model.channels), then the MLP head

To add an architecture, write one nn.Module class here that takes the model section of
params.yaml, registered under the name `model.arch` will use (docs/extending.md):

    @register("lenet")
    class LeNet5(nn.Module):
        def __init__(self, params: ModelParams): ...
        def forward(self, x): ...            # (B, 784) normalized pixels -> (B, 10) logits

Write it in plain torch: build_model converts every nn.Linear to the portable kernels
(mnistbench/portable.py), and everything else derives from the registry: the choices validate
accepts, the parameter count of its memory check, checkpoints, predict and the replicates.

A checkpoint is a dict of plain types plus a state_dict, so it loads with
torch.load(weights_only=True):
    {"format": 2, "model": {<the model section of params.yaml>}, "normalize": {"mean": .., "std": ..},
     "state_dict": {...}}
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mnistbench import portable
from mnistbench.data import IMAGE_SIZE, NUM_CLASSES
from mnistbench.files import FileFormatError, load_tensors, save_tensors
from mnistbench.params import ModelParams, ParamsError, as_dict, section

IN_FEATURES = IMAGE_SIZE * IMAGE_SIZE  # 784
CHECKPOINT_FORMAT = 2  # 2: "model" holds the whole model section (1 held only "hidden")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}

ARCHITECTURES: dict[str, type[nn.Module]] = {}  # model.arch -> its class, filled by @register
USES: dict[str, tuple[str, ...]] = {}  # model.arch -> the model.* keys it reads besides arch


def register(name: str, uses: tuple[str, ...] = ()) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: the architecture `model.arch: name` builds. `uses` names the keys of the
    model section it reads (model.hidden, ...): what the leaderboard shows of it."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        ARCHITECTURES[name] = cls
        USES[name] = uses
        return cls

    return add


def dense(in_features: int, hidden: tuple[int, ...], activation: str, dropout: float) -> nn.Sequential:
    """Linear + activation (+ dropout when > 0) per hidden width, then the 10-way output layer."""
    layers, width = [], in_features
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        if dropout > 0:  # no module at all at 0: the seed's layer names and numbers stay as they were
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


@register("mlp", uses=("hidden", "activation", "dropout"))
class MLP(nn.Module):
    """(B, 784) normalized pixels -> (B, 10) logits; softmax is left to the loss."""

    def __init__(self, params: ModelParams):
        super().__init__()
        self.layers = dense(IN_FEATURES, params.hidden, params.activation, params.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register("linear")
class Linear(nn.Module):
    """Multinomial logistic regression: (B, 784) -> (B, 10), one linear layer."""

    def __init__(self, params: ModelParams):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(IN_FEATURES, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register("cnn", uses=("channels", "hidden", "activation", "dropout"))
class CNN(nn.Module):
    """(B, 784) -> (B, 1, 28, 28) -> conv blocks, each halving the side -> MLP head -> (B, 10)."""

    def __init__(self, params: ModelParams):
        super().__init__()
        blocks, in_channels, side = [], 1, IMAGE_SIZE
        for c in params.channels:
            blocks += [nn.Conv2d(in_channels, c, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, side = c, side // 2
        self.features = nn.Sequential(*blocks)
        head = dense(in_channels * side * side, params.hidden, params.activation, params.dropout)
        self.layers = nn.Sequential(nn.Flatten(), *head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.features(x.view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)))


def architecture(params: ModelParams, source: str = "params.yaml") -> type[nn.Module]:
    """The class registered as params.arch; ParamsError listing the registered ones if none is."""
    if params.arch not in ARCHITECTURES:
        raise ParamsError(
            f"{source}: model.arch = {params.arch!r}: must be one of "
            f"{', '.join(ARCHITECTURES)} (the architectures registered in mnistbench/models.py)"
        )
    return ARCHITECTURES[params.arch]


def build_model(params: ModelParams) -> nn.Module:
    """The architecture's freshly initialized model (torch's global generator draws its weights),
    its linear layers on the portable kernels."""
    return portable.convert(architecture(params)(params))


def parameter_count(params: ModelParams) -> int:
    """How many parameters build_model(params) holds, counted on the meta device: no memory is
    allocated and no weight drawn, whatever the widths."""
    with torch.device("meta"):
        model = architecture(params)(params)
    return sum(p.numel() for p in model.parameters())


def check_memory(params: ModelParams) -> None:
    """The model against this machine's memory: training holds 16 bytes a parameter at the least
    (float32 weights, gradients and Adam's two moments). Else, under DVC, the train stage would
    fail only after DVC had deleted the model."""
    count = parameter_count(params)
    needed = 16 * count
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): the stage finds out
        return
    if needed > total:
        shapes = [
            f"model.{key} = {list(getattr(params, key))}"
            for key in USES[params.arch]
            if isinstance(getattr(params, key), tuple)
        ]
        shown = ", ".join(shapes) or f"model.arch = {params.arch!r}"
        raise ParamsError(
            f"params.yaml: {shown}: {count:,} parameters need {needed / 1e9:,.0f} GB "
            f"to train (float32 weights, gradients, Adam's moments), more than this machine's "
            f"{total / 1e9:,.0f} GB; use smaller widths"
        )


def save_checkpoint(path: Path, model: nn.Module, params: ModelParams, mean: float, std: float) -> None:
    save_tensors(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "model": as_dict(params),
            "normalize": {"mean": mean, "std": std},
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        },
    )


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """The model (eval mode, CPU) and the checkpoint's normalize dict; refuses anything else."""
    ckpt = load_tensors(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise FileFormatError(
            f"{path}: not a checkpoint of this project (format {CHECKPOINT_FORMAT}); rerun `dvc repro train`"
        )
    try:
        params = section(ModelParams, ckpt.get("model"), "model", source=f"{path} (checkpoint)")
        normalize = {"mean": float(ckpt["normalize"]["mean"]), "std": float(ckpt["normalize"]["std"])}
    except ParamsError as e:
        raise FileFormatError(f"checkpoint metadata is malformed: {e}; rerun `dvc repro train`") from None
    except (KeyError, TypeError, ValueError) as e:
        raise FileFormatError(
            f"{path}: checkpoint metadata is malformed ({type(e).__name__}: {e}); rerun `dvc repro train`"
        ) from None
    if params.arch not in ARCHITECTURES:
        raise FileFormatError(
            f"{path}: a checkpoint of model.arch = {params.arch!r}, which is not registered "
            f"in mnistbench/models.py (registered: {', '.join(ARCHITECTURES)}); register it "
            "again, or rerun `dvc repro train`"
        )
    model = build_model(params)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:  # no state_dict; missing/unexpected keys, other shapes
        reason = " ".join(str(e).split())[:300]
        raise FileFormatError(
            f"{path}: weights do not fit the model its metadata describes "
            f"({params.arch}, hidden={list(params.hidden)}): {reason}"
        ) from None
    return model.eval(), normalize


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, 784) normalized pixels -> (N, 10) logits, `batch_size` images per forward pass."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
