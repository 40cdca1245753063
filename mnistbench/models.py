"""The classifiers (params.yaml `model.arch`), registered by name with the keys each reads, and
their checkpoint format.

    mlp     the seed's 784-128-64-10 ReLU MLP by default (model.mlp: hidden, activation, dropout)
    linear  multinomial logistic regression, 784 -> 10: the classic floor (no keys)
    cnn     conv blocks (3x3 conv, ReLU, 2x2 max-pool; model.cnn.channels), then the MLP head

To add an architecture, write one nn.Module class here, registered under the name `model.arch`
will use with the keys it reads, and give those keys values in params.yaml under that name
(docs/extending.md):

    @register("resmlp", width=key(int, "width of each block", min=1), blocks=key(int, "blocks", min=1))
    class ResMLP(nn.Module):
        def __init__(self, width: int, blocks: int): ...
        def forward(self, x): ...            # (B, 784) normalized pixels -> (B, 10) logits

    model:                                   # params.yaml
      arch: resmlp
      resmlp: {width: 256, blocks: 3}

Write it in plain torch: build_model converts every nn.Linear to the portable kernels
(mnistbench/portable.py), and everything else derives from the registry: the architectures and
keys validate accepts, the parameter count of its memory check, checkpoints, predict, the
replicates and the leaderboard's label.

A checkpoint is a dict of plain types plus a state_dict, so it loads with
torch.load(weights_only=True). It records the keys the model was built with:
    {"format": 3, "model": {"arch": "mlp", "keys": {"hidden": [128, 64], ...}},
     "normalize": {"mean": .., "std": ..}, "state_dict": {...}}
Format 2 (one flat model section shared by every architecture) still loads: its arch's keys are
taken from it. A checkpoint made before its architecture read a key loads where the key declares
`old=`, the value that reproduces the model as it was, and says so; else it is refused, naming the
key. A key added to another architecture changes nothing for it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from mnistbench import estimators, portable
from mnistbench.data import IMAGE_SIZE, NUM_CLASSES
from mnistbench.estimators import Estimator, estimator
from mnistbench.files import FileFormatError, load_tensors, save_tensors
from mnistbench.params import ModelParams, ParamsError
from mnistbench.registry import MISSING, Registry, as_plain, described, key

IN_FEATURES = IMAGE_SIZE * IMAGE_SIZE  # 784
CHECKPOINT_FORMAT = 3  # 3: the arch and its own keys; 2: one flat section of every arch's keys
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}

MODELS = Registry("model", "arch", "architecture", "mnistbench/models.py")
register = MODELS.register

# Keys more than one architecture reads, declared once.
HIDDEN = key(tuple[int, ...], "widths of the fully connected hidden layers", min=1, min_items=1)
ACTIVATION = key(str, "activation after each hidden layer", choices=tuple(ACTIVATIONS))
DROPOUT = key(float, "dropout probability after each hidden layer (0: none)", min=0.0, max=0.9)


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


@register("mlp", hidden=HIDDEN, activation=ACTIVATION, dropout=DROPOUT)
class MLP(nn.Module):
    """(B, 784) normalized pixels -> (B, 10) logits; softmax is left to the loss."""

    def __init__(self, hidden: tuple[int, ...], activation: str, dropout: float):
        super().__init__()
        self.layers = dense(IN_FEATURES, hidden, activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register("linear")
class Linear(nn.Module):
    """Multinomial logistic regression: (B, 784) -> (B, 10), one linear layer."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(IN_FEATURES, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvNet(nn.Module):
    """A model whose `features` (convolutions) see the (B, 784) pixels as (B, 1, 28, 28) images and
    whose `layers` (the head, from nn.Flatten) give the (B, 10) logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.features(x.view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)))


@register(
    "cnn",
    channels=key(
        tuple[int, ...], "output channels of each 3x3 conv + 2x2 max-pool block", min=1, min_items=1, max_items=3
    ),
    hidden=HIDDEN,
    activation=ACTIVATION,
    dropout=DROPOUT,
)
class CNN(ConvNet):
    """(B, 784) -> (B, 1, 28, 28) -> conv blocks, each halving the side -> MLP head -> (B, 10)."""

    def __init__(self, channels: tuple[int, ...], hidden: tuple[int, ...], activation: str, dropout: float):
        super().__init__()
        blocks, in_channels, side = [], 1, IMAGE_SIZE
        for c in channels:
            blocks += [nn.Conv2d(in_channels, c, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels, side = c, side // 2
        self.features = nn.Sequential(*blocks)
        head = dense(in_channels * side * side, hidden, activation, dropout)
        self.layers = nn.Sequential(nn.Flatten(), *head)


@register(
    "lenet5",
    activation=key(str, "after each conv and hidden layer: tanh as in 1998, or relu", choices=("tanh", "relu")),
    pool=key(str, "subsampling: avg as in 1998 (without its trainable scale), or max", choices=("avg", "max")),
)
class LeNet5(ConvNet):
    """LeCun et al. 1998's LeNet-5 on 28x28 images: C1 6@5x5 (padding 2: the paper pads digits to
    32x32), S2 2x2, C3 16@5x5, S4 2x2, C5 120, F6 84, 10 outputs. What differs from the paper: C3 is
    fully connected to S2 (the paper's table connects each map to 3-6 of them); S2 and S4 have no
    trainable coefficient and bias; the squashing is tanh, not 1.7159 tanh(2x/3); the output is a
    linear layer under cross-entropy, not RBF units under the paper's MAP-style loss."""

    def __init__(self, activation: str, pool: str):
        super().__init__()
        act, sub = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation], {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[pool]
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),
            act(),
            sub(2),  # C1, S2: (B, 6, 14, 14)
            nn.Conv2d(6, 16, kernel_size=5),
            act(),
            sub(2),  # C3, S4: (B, 16, 5, 5)
        )
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, NUM_CLASSES)
        )


@register("pytorch_example")
class PytorchExample(ConvNet):
    """pytorch/examples' mnist/main.py Net, layer for layer: conv 32@3x3, ReLU, conv 64@3x3, ReLU,
    2x2 max-pool, dropout 0.25, 9216 -> 128, ReLU, dropout 0.5, 128 -> 10. Its log_softmax and
    nll_loss are the cross-entropy the training loop takes of these logits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25)
        )
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, NUM_CLASSES)
        )


# scikit-learn estimators, registered through the same seam (mnistbench/estimators.py): their keys
# are the estimator's parameters, typed here and range-checked by scikit-learn itself. Imports are
# inside each builder, so a torch model's stages never pay for them.


@estimator(
    "logreg",
    randomized=False,
    C=key(float, "inverse strength of the L2 penalty"),
    max_iter=key(int, "lbfgs iterations at most"),
)
def logreg(C: float, max_iter: int):
    """Multinomial logistic regression (lbfgs) on standardized pixels: deterministic."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


@estimator(
    "knn",
    randomized=False,
    n_neighbors=key(int, "neighbours that vote"),
    weights=key(str, "uniform: one vote each; distance: weighted by 1/distance"),
    p=key(int, "the Minkowski distance's power: 1 Manhattan, 2 Euclidean"),
)
def knn(n_neighbors: int, weights: str, p: int):
    """k nearest neighbours on the pixels: deterministic."""
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=n_neighbors, weights=weights, p=p)


@estimator(
    "forest",
    randomized=True,
    n_estimators=key(int, "trees"),
    max_depth=key(int, "each tree's depth at most"),
    criterion=key(str, "split quality: gini, entropy or log_loss"),
)
def forest(n_estimators: int, max_depth: int, criterion: str):
    """A random forest on the pixels: randomized (train.seed is its random_state)."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, criterion=criterion)


@estimator(
    "sk_mlp",
    randomized=True,
    hidden=key(tuple[int, ...], "hidden_layer_sizes: the hidden widths", min=1, min_items=1),
    activation=key(str, "relu, tanh, logistic or identity"),
    max_iter=key(int, "epochs of adam at most"),
)
def sk_mlp(hidden: tuple[int, ...], activation: str, max_iter: int):
    """scikit-learn's MLPClassifier (adam, batch 200, L2 1e-4: its defaults) on standardized pixels,
    as Xiao et al. 2017 benchmark it: randomized (train.seed is its random_state)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=hidden, activation=activation, max_iter=max_iter)
    )


@estimator(
    "svc",
    randomized=False,
    C=key(float, "the penalty of a margin violation"),
    kernel=key(str, "rbf, linear, poly or sigmoid"),
)
def svc(C: float, kernel: str):
    """scikit-learn's SVC on standardized pixels, as Xiao et al. 2017 benchmark it (gamma 'scale'):
    deterministic. No probabilities (Platt's scaling would fit it six times): its prediction scores
    as probability 1, so its loss is not a calibrated one. An RBF SVC on 55,000 images is the
    costliest baseline here: O(n^2) kernel evaluations."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(C=C, kernel=kernel))


def model_keys(params: ModelParams, source: str = "params.yaml") -> dict:
    """The chosen architecture's keys, validated: ParamsError naming the key, or listing the
    registered architectures when params.arch is none of them."""
    return MODELS.keys(params.arch, params.sections, source)


def construct(arch: str, keys: dict) -> nn.Module:
    """The architecture's own module, plain torch (torch's global generator draws its weights)."""
    return MODELS.entry(arch).build(**keys)


def build_model(params: ModelParams) -> nn.Module:
    """The architecture's freshly initialized model, its linear layers on the portable kernels."""
    return portable.convert(construct(params.arch, model_keys(params)))


def parameter_count(params: ModelParams) -> int:
    """How many parameters build_model(params) holds, counted on the meta device: no memory is
    allocated and no weight drawn, whatever the widths."""
    with torch.device("meta"):
        model = construct(params.arch, model_keys(params))
    return sum(p.numel() for p in model.parameters())


def learned_numbers(model: nn.Module) -> int:
    """A model's parameters; an estimator's fitted arrays (mnistbench/estimators.py)."""
    if isinstance(model, Estimator):
        return model.learned_numbers()
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
        keys = model_keys(params)
        shapes = [f"model.{params.arch}.{k} = {list(v)}" for k, v in keys.items() if isinstance(v, tuple)]
        shown = ", ".join(shapes) or f"model.arch = {params.arch!r}"
        raise ParamsError(
            f"params.yaml: {shown}: {count:,} parameters need {needed / 1e9:,.0f} GB "
            f"to train (float32 weights, gradients, Adam's moments), more than this machine's "
            f"{total / 1e9:,.0f} GB; use smaller widths"
        )


def save_checkpoint(path: Path, model: nn.Module, params: ModelParams, mean: float, std: float) -> None:
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": {"arch": params.arch, "keys": as_plain(model_keys(params))},
        "normalize": {"mean": mean, "std": std},
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    if isinstance(model, Estimator):  # its fitted state, as skops bytes (mnistbench/estimators.py)
        ckpt["estimator"] = estimators.dumps(model)
    save_tensors(path, ckpt)


def checkpoint_keys(path: Path, ckpt: dict) -> tuple[str, dict]:
    """The arch and the keys a checkpoint was built with, checked against the arch's keys now:
    FileFormatError saying what changed where they differ (module docstring)."""
    model = ckpt.get("model")
    if ckpt.get("format") == 2 and isinstance(model, dict):  # the flat section: its arch's keys are in it
        arch = model.get("arch")
        recorded = {k: v for k, v in model.items() if arch in MODELS and k in MODELS.entries[arch].keys}
    elif isinstance(model, dict) and isinstance(model.get("keys"), dict):
        arch, recorded = model.get("arch"), dict(model["keys"])
    else:
        raise FileFormatError(f"{path}: checkpoint metadata has no model arch and keys; rerun `dvc repro train`")
    if not isinstance(arch, str) or arch not in MODELS:
        raise FileFormatError(
            f"{path}: a checkpoint of model.arch = {arch!r}, which is not registered "
            f"in mnistbench/models.py (registered: {MODELS.names()}); register it "
            "again, or rerun `dvc repro train`"
        )
    declared = MODELS.entries[arch].keys
    gone = [k for k in recorded if k not in declared]
    if gone:
        raise FileFormatError(
            f"{path}: a checkpoint of {arch} built with model.{arch}.{gone[0]} = {recorded[gone[0]]!r}, which "
            f"{arch} no longer reads (mnistbench/models.py); rerun `dvc repro train`"
        )
    for name, declared_key in declared.items():
        if name in recorded:
            continue
        if declared_key.old is MISSING:
            raise FileFormatError(
                f"{path}: a checkpoint of {arch} made before {arch} read model.{arch}.{name} "
                f"({declared_key.help}); rerun `dvc repro train`, or declare the value that rebuilds such "
                f"a model as old= of that key in mnistbench/models.py"
            )
        recorded[name] = declared_key.old
        print(
            f"note: {path}: made before {arch} read model.{arch}.{name}; loaded with {declared_key.old!r}, "
            "what it did then",
            file=sys.stderr,
        )
    try:
        keys = MODELS.check_section(MODELS.entries[arch], recorded, f"model.{arch}", f"{path} (checkpoint)")
    except ParamsError as e:
        raise FileFormatError(f"{e}; rerun `dvc repro train`") from None
    return arch, keys


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    """The model (eval mode, CPU) and the checkpoint's normalize dict; refuses anything else."""
    ckpt = load_tensors(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (2, CHECKPOINT_FORMAT):
        raise FileFormatError(
            f"{path}: not a checkpoint of this project (format {CHECKPOINT_FORMAT}); rerun `dvc repro train`"
        )
    arch, keys = checkpoint_keys(path, ckpt)
    try:
        normalize = {"mean": float(ckpt["normalize"]["mean"]), "std": float(ckpt["normalize"]["std"])}
    except (KeyError, TypeError, ValueError) as e:
        raise FileFormatError(
            f"{path}: checkpoint metadata is malformed ({type(e).__name__}: {e}); rerun `dvc repro train`"
        ) from None
    model = portable.convert(construct(arch, keys))
    if isinstance(model, Estimator):
        if not isinstance(ckpt.get("estimator"), torch.Tensor):
            raise FileFormatError(f"{path}: a checkpoint of the estimator {arch} holds no fitted estimator")
        return estimators.loads(ckpt["estimator"], model.randomized, path).eval(), normalize
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:  # no state_dict; missing/unexpected keys, other shapes
        reason = " ".join(str(e).split())[:300]
        raise FileFormatError(
            f"{path}: weights do not fit the model its metadata describes ({described(arch, keys)}): {reason}"
        ) from None
    return model.eval(), normalize


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N, 784) normalized pixels -> (N, 10) logits, `batch_size` images per forward pass."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
