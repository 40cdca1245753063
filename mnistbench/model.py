"""The classifiers (params.yaml `model.arch`) and their checkpoint format.

    mlp     the seed's 784-128-64-10 ReLU MLP by default (hidden widths, activation, dropout)
    linear  multinomial logistic regression, 784 -> 10: the classic floor
    cnn     conv blocks (3x3 conv, ReLU, 2x2 max-pool; `channels`), then the MLP head (`hidden`)

A checkpoint is a dict of plain types plus a state_dict, so it loads with
torch.load(weights_only=True):
    {"format": 2, "model": {<the model section of params.yaml>}, "normalize": {"mean": .., "std": ..},
     "state_dict": {...}}
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mnistbench.data import IMAGE_SIZE, NUM_CLASSES
from mnistbench.files import FileFormatError, load_tensors, save_tensors
from mnistbench.linear import PortableLinear
from mnistbench.params import ModelParams, ParamsError, as_dict, section

IN_FEATURES = IMAGE_SIZE * IMAGE_SIZE  # 784
CHECKPOINT_FORMAT = 2  # 2: "model" holds the whole model section (1 held only "hidden")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def dense_layers(in_features: int, hidden: tuple[int, ...], activation: str, dropout: float) -> list[nn.Module]:
    """Linear + activation (+ dropout when > 0) per hidden width, then the 10-way output layer.
    PortableLinear is an nn.Linear that gives the same bits on Intel and AMD (mnistbench/linear.py)."""
    layers, width = [], in_features
    for h in hidden:
        layers += [PortableLinear(width, h), ACTIVATIONS[activation]()]
        if dropout > 0:  # no module at all at 0: the seed's layer names and numbers stay as they were
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(PortableLinear(width, NUM_CLASSES))
    return layers


class MLP(nn.Module):
    """(B, 784) normalized pixels -> (B, 10) logits; softmax is left to the loss."""

    def __init__(self, hidden: tuple[int, ...], activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.layers = nn.Sequential(*dense_layers(IN_FEATURES, hidden, activation, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CNN(nn.Module):
    """(B, 784) -> (B, 1, 28, 28) -> conv blocks, each halving the side -> MLP head -> (B, 10)."""

    def __init__(self, channels: tuple[int, ...], hidden: tuple[int, ...], activation: str, dropout: float):
        super().__init__()
        blocks, in_channels, side = [], 1, IMAGE_SIZE
        for c in channels:
            blocks += [nn.Conv2d(in_channels, c, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, side = c, side // 2
        self.features = nn.Sequential(*blocks)
        self.layers = nn.Sequential(nn.Flatten(), *dense_layers(in_channels * side * side, hidden, activation, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.features(x.view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)))


def build_model(params: ModelParams) -> nn.Module:
    if params.arch == "linear":
        return MLP(hidden=())  # no hidden layer: 784 -> 10
    if params.arch == "cnn":
        return CNN(params.channels, params.hidden, params.activation, params.dropout)
    return MLP(params.hidden, params.activation, params.dropout)


def save_checkpoint(path: Path, model: nn.Module, params: ModelParams, mean: float, std: float) -> None:
    save_tensors(path, {
        "format": CHECKPOINT_FORMAT,
        "model": as_dict(params),
        "normalize": {"mean": mean, "std": std},
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    })


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """The model (eval mode, CPU) and the checkpoint's normalize dict; refuses anything else."""
    ckpt = load_tensors(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise FileFormatError(f"{path}: not a checkpoint of this project (format {CHECKPOINT_FORMAT}); rerun `dvc repro train`")
    try:
        params = section(ModelParams, ckpt.get("model"), "model", source=f"{path} (checkpoint)")
        normalize = {"mean": float(ckpt["normalize"]["mean"]), "std": float(ckpt["normalize"]["std"])}
        model = build_model(params)
        model.load_state_dict(ckpt["state_dict"])
    except ParamsError as e:
        raise FileFormatError(f"checkpoint metadata is malformed: {e}; rerun `dvc repro train`") from None
    except (KeyError, TypeError, ValueError) as e:
        raise FileFormatError(f"{path}: checkpoint metadata is malformed ({type(e).__name__}: {e}); rerun `dvc repro train`") from None
    except RuntimeError as e:  # load_state_dict: missing/unexpected keys or shape mismatch
        reason = " ".join(str(e).split())[:300]
        raise FileFormatError(f"{path}: weights do not fit the model its metadata describes "
                              f"({params.arch}, hidden={list(params.hidden)}): {reason}") from None
    return model.eval(), normalize


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
