"""Training on in-memory tensors: batches are index slices of a seeded permutation, no DataLoader.

model, history, seconds = fit(model_params, train_params, (x_train, y_train), (x_val, y_val), device)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnistbench import estimators
from mnistbench.data import IMAGE_SIZE
from mnistbench.models import build_model
from mnistbench.optim import build_optimizer, build_schedule
from mnistbench.params import ModelParams, TrainParams

EVAL_BATCH_SIZE = 4096  # images per no-grad forward pass when scoring: memory only, same results


class Augment:
    """Light augmentation on a whole batch at once: each image gets its own random shift (up to
    `shift` pixels along each axis) and rotation (up to `degrees`), bilinear, with the background
    value filling what comes into view. Draws come from a CPU generator, one (n, 3) tensor per
    epoch, so the result is the same on every device and needs no per-batch host transfer."""

    def __init__(self, shift: float, degrees: float, background: float, seed: int):
        self.shift, self.degrees, self.background = shift, degrees, background
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, n: int, device: torch.device) -> torch.Tensor:
        """Uniform [-1, 1) per image for (rotation, x shift, y shift)."""
        return (torch.rand(n, 3, generator=self.generator) * 2 - 1).to(device)

    def __call__(self, x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """(B, 784) normalized images and their (B, 3) draws -> (B, 784) moved images."""
        angle = draws[:, 0] * math.radians(self.degrees)
        # affine_grid works in [-1, 1] coordinates: one pixel is 2 / 28 of them
        tx, ty = (draws[:, 1:] * (self.shift * 2 / IMAGE_SIZE)).unbind(1)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
        images = x.view(-1, 1, IMAGE_SIZE, IMAGE_SIZE) - self.background  # background -> 0, the padding value
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return (moved + self.background).view(len(x), -1)


def train_epoch(
    model: nn.Module,
    optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    scheduler=None,
    augment: Augment | None = None,
) -> tuple[float, float]:
    """One pass in a fresh seeded order; returns (mean loss, accuracy) over the pass. The
    scheduler, if any, steps after every optimizer step; augment, if any, moves every batch."""
    model.train()
    n = len(y)
    order = torch.randperm(n, generator=generator).to(x.device)
    draws = augment.draw(n, x.device) if augment is not None else None
    loss_sum = torch.zeros((), device=x.device)  # summed on the device: no per-step host sync
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)  # (B, 784), (B,); faster than x[idx]
        if augment is not None:
            xb = augment(xb, draws[start : start + batch_size])
        logits = model(xb)  # (B, 10)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == yb).sum()
    return loss_sum.item() / n, correct.item() / n


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = model(x[start : start + batch_size])
        yb = y[start : start + batch_size]
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += int((logits.argmax(1) == yb).sum())
    return loss_sum / len(y), correct / len(y)


@dataclass
class Run:
    """Everything a training run starts from, seeded."""

    model: nn.Module
    optimizer: torch.optim.Optimizer  # or mnistbench.optim.FusedAdam: the same interface
    scheduler: object | None  # train.schedule's stepper (mnistbench/optim.py); None: constant learning rate
    generator: torch.Generator  # the per-epoch shuffle
    augment: Augment | None  # None: no augmentation


AUGMENT_SEED_OFFSET = 1_000_003  # its own stream: turning augmentation on leaves the shuffle order as it was


def setup(model_params: ModelParams, params: TrainParams, device: torch.device, train_size: int) -> Run:
    torch.manual_seed(params.seed)
    model = build_model(model_params).to(device)
    optimizer = build_optimizer(params, model.parameters())
    scheduler = build_schedule(params, optimizer, steps_per_epoch=-(-train_size // params.batch_size))
    generator = torch.Generator().manual_seed(params.seed)  # CPU: same order on every device
    return Run(model, optimizer, scheduler, generator, augmentation(params, params.seed))


def augmentation(params: TrainParams, seed: int) -> Augment | None:
    """The run's augmentation, on its own stream seeded from `seed`; None when switched off."""
    if params.augment_shift == 0 and params.augment_rotate == 0:
        return None
    background = (0.0 - params.normalize_mean) / params.normalize_std  # a black pixel, normalized
    return Augment(params.augment_shift, params.augment_rotate, background, seed + AUGMENT_SEED_OFFSET)


def fit(
    model_params: ModelParams,
    params: TrainParams,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[nn.Module, list[dict], list[float]]:
    """Train from a seeded init on normalized (x, y) pairs already on `device`; returns the model,
    one history row per epoch (losses and accuracies: reproducible to the bit) and the seconds
    each epoch's training pass took (a measurement: never the same twice). on_epoch, if given,
    gets each history row as soon as its epoch ends (the train stage logs it with DVCLive)."""
    if estimators.is_estimator(model_params.arch):  # a scikit-learn estimator: one fit, no epochs
        return fit_estimator(model_params, params.seed, train, val, log, on_epoch)
    run = setup(model_params, params, device, train_size=len(train[1]))
    model = run.model
    history, epoch_seconds = [], []
    for epoch in range(1, params.epochs + 1):
        started = time.perf_counter()
        train_loss, train_accuracy = train_epoch(
            model, run.optimizer, *train, params.batch_size, run.generator, run.scheduler, run.augment
        )
        seconds = time.perf_counter() - started
        epoch_seconds.append(seconds)
        val_loss, val_accuracy = loss_and_accuracy(model, *val, batch_size=EVAL_BATCH_SIZE)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
            }
        )
        if on_epoch is not None:
            on_epoch(history[-1])
        log(
            f"epoch {epoch:>3}/{params.epochs}  train loss {train_loss:.4f} acc {train_accuracy:.4f}  "
            f"val loss {val_loss:.4f} acc {val_accuracy:.4f}  {seconds:.2f} s"
        )
    return model, history, epoch_seconds


ESTIMATOR_TRAIN_SCORED = 5_000  # training images an estimator's train loss and accuracy are measured on


def fit_estimator(model_params: ModelParams, seed: int, train, val, log: Callable[[str], None], on_epoch=None):
    """Fit the estimator on the training split; one history row and the seconds the fit took, as
    fit returns for a torch model. Its train loss and accuracy are measured on the first 5,000
    training images (as many as the validation split): on all 55,000, k-NN's predictions alone
    would cost more than its fit and the validation together."""
    model = build_model(model_params)
    started = time.perf_counter()
    model.fit(*train, seed=seed)
    seconds = time.perf_counter() - started
    x, y = (t[:ESTIMATOR_TRAIN_SCORED] for t in train)
    train_loss, train_accuracy = loss_and_accuracy(model, x, y, batch_size=EVAL_BATCH_SIZE)
    val_loss, val_accuracy = loss_and_accuracy(model, *val, batch_size=EVAL_BATCH_SIZE)
    row = dict(
        epoch=1, train_loss=train_loss, train_accuracy=train_accuracy, val_loss=val_loss, val_accuracy=val_accuracy
    )
    if on_epoch is not None:
        on_epoch(row)
    log(
        f"{model_params.arch}: fit in {seconds:.2f} s  train loss {train_loss:.4f} acc {train_accuracy:.4f}  "
        f"val loss {val_loss:.4f} acc {val_accuracy:.4f}"
    )
    return model, [row], [seconds]
