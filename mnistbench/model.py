"""The seed's classifier, a ReLU MLP, and its checkpoint format.

A checkpoint is a dict of plain types plus a state_dict, so it loads with
torch.load(weights_only=True):
    {"format": 1, "model": {"hidden": [128, 64]}, "normalize": {"mean": .., "std": ..},
     "state_dict": {...}}
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mnistbench.data import IMAGE_SIZE, NUM_CLASSES
from mnistbench.files import FileFormatError, load_tensors, save_tensors
from mnistbench.params import ModelParams

IN_FEATURES = IMAGE_SIZE * IMAGE_SIZE  # 784
CHECKPOINT_FORMAT = 1


class MLP(nn.Module):
    """(B, 784) normalized pixels -> (B, 10) logits; softmax is left to the loss."""

    def __init__(self, hidden: tuple[int, ...]):
        super().__init__()
        layers, width = [], IN_FEATURES
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, NUM_CLASSES))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build_model(params: ModelParams) -> MLP:
    return MLP(params.hidden)


def save_checkpoint(path: Path, model: nn.Module, params: ModelParams, mean: float, std: float) -> None:
    save_tensors(path, {
        "format": CHECKPOINT_FORMAT,
        "model": {"hidden": list(params.hidden)},
        "normalize": {"mean": mean, "std": std},
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    })


def load_checkpoint(path: Path) -> tuple[MLP, dict]:
    """The model (eval mode, CPU) and the checkpoint's normalize dict; refuses anything else."""
    ckpt = load_tensors(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise FileFormatError(f"{path}: not a checkpoint of this project (format {CHECKPOINT_FORMAT}); rerun `dvc repro train`")
    try:
        hidden = tuple(int(h) for h in ckpt["model"]["hidden"])
        normalize = {"mean": float(ckpt["normalize"]["mean"]), "std": float(ckpt["normalize"]["std"])}
        model = MLP(hidden)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError) as e:
        raise FileFormatError(f"{path}: checkpoint metadata is malformed ({type(e).__name__}: {e}); rerun `dvc repro train`") from None
    except RuntimeError as e:  # load_state_dict: missing/unexpected keys or shape mismatch
        reason = " ".join(str(e).split())[:300]
        raise FileFormatError(f"{path}: weights do not fit an MLP with hidden={list(hidden)}: {reason}") from None
    return model.eval(), normalize
