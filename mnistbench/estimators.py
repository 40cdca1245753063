"""scikit-learn estimators as architectures: `model.arch: knn` trains a scikit-learn pipeline through
the same stages, metrics, plots, replicates, checkpoints and `mnistbench predict` as a torch model.

    @estimator("knn", n_neighbors=key(int, "neighbours that vote", min=1), randomized=False)
    def knn(n_neighbors: int):
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=n_neighbors))

One registration in models.MODELS, like a torch architecture: its keys live in params.yaml under
its name (model.knn.n_neighbors), validate checks them by their declared rules and then asks the
estimator itself (scikit-learn's own check of its parameters, on a fit of 20 images), so a value
it rejects stops `dvc repro` before DVC deletes anything.

The built model is an Estimator: an nn.Module whose forward is the estimator's log-probabilities
(predict_proba, clipped at 1e-7 before the log, as sklearn's log_loss clips; a classifier with no
predict_proba, such as SVC, gives its prediction probability 1), so evaluate, the
replicates' scoring and predict need no branch. Its input is what a torch model gets, the
normalized pixels (train.normalize_mean, normalize_std); a pipeline's own preprocessing
(StandardScaler) comes after that. Training (mnistbench.train.fit) is one call of the estimator's
fit on the training split, reported as one epoch.

Seeds: a randomized estimator (a forest, sklearn's MLP) gets train.seed as every `random_state`
of its pipeline, so its replicates are seeds like a torch model's; a deterministic one
(randomized=False: k-NN, lbfgs logistic regression) trains once in the replicates stage, which
says so, and its summary is that one draw (sd 0 over seeds: only the test set's sampling remains).

Checkpoints: the fitted pipeline is saved with skops (skops.io.dumps), which stores an object as
its class name and state, never as pickle, inside the usual weights-only checkpoint as a uint8
tensor. Loading reconstructs only scikit-learn's and numpy's types (skops.io.get_untrusted_types
lists the rest, and any other type is refused, naming it): a user's checkpoint runs no code.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from mnistbench.params import ModelParams, ParamsError
from mnistbench.registry import Key

TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.sparse.")  # the types a checkpoint may rebuild
PROBABILITY_FLOOR = 1e-7  # sklearn's log_loss clips at the dtype's eps; a fixed floor keeps float32 finite


class Estimator(nn.Module):
    """A scikit-learn classifier as a model: forward is its log-probabilities, (B, 784) -> (B, 10)."""

    def __init__(self, pipeline, randomized: bool):
        super().__init__()
        self.pipeline, self.randomized = pipeline, randomized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.detach().cpu().numpy()
        with threadpool_limits(torch.get_num_threads()):  # train.threads, as for torch
            if hasattr(self.pipeline, "predict_proba"):
                proba = self.pipeline.predict_proba(pixels)
            else:  # a classifier without probabilities (SVC): its prediction, probability 1
                proba = np.eye(len(self.pipeline.classes_))[
                    np.searchsorted(self.pipeline.classes_, self.pipeline.predict(pixels))
                ]
        return torch.from_numpy(np.log(np.clip(proba, PROBABILITY_FLOOR, 1.0))).float()

    def fit(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> Estimator:
        if self.randomized:
            self.pipeline.set_params(**{k: seed for k in self.pipeline.get_params() if k.endswith("random_state")})
        with threadpool_limits(torch.get_num_threads()):
            self.pipeline.fit(x.detach().cpu().numpy(), y.cpu().numpy())
        return self

    def learned_numbers(self) -> int:
        """The fitted state's size: every fitted array (sklearn's trailing-underscore attributes) of
        every step, trees' nodes included; what metrics/train.json reports as parameters."""
        total = 0
        for step in getattr(self.pipeline, "steps", [(None, self.pipeline)]):
            total += _numbers(step[1])
        return total


def _numbers(obj, depth: int = 0) -> int:
    if isinstance(obj, np.ndarray):
        return obj.size if obj.dtype != object else sum(_numbers(o, depth + 1) for o in obj.ravel())
    if isinstance(obj, (list, tuple)) and depth < 3:
        return sum(_numbers(o, depth + 1) for o in obj)
    tree = getattr(obj, "tree_", None)
    if tree is not None:  # a fitted decision tree: each node's feature, threshold, children and class counts
        return int(tree.node_count) * (4 + tree.value.shape[-1])
    if hasattr(obj, "get_params") and depth < 3:  # what fit stored: every attribute but the parameters
        params = obj.get_params(deep=False)
        return sum(_numbers(v, depth + 1) for k, v in vars(obj).items() if k not in params)
    return 0


def estimator(name: str, *, randomized: bool, **keys: Key) -> Callable:
    """Decorator of a function that builds the (unfitted) scikit-learn pipeline from its keys:
    registers `name` as an architecture (models.MODELS) whose model is an Estimator."""
    from mnistbench.models import MODELS

    def add(build: Callable) -> Callable:
        def model(**values) -> Estimator:
            return Estimator(build(**values), randomized)

        model.__doc__ = build.__doc__
        model.randomized = randomized
        MODELS.register(name, **keys)(model)
        return build

    return add


def is_estimator(arch: str) -> bool:
    from mnistbench.models import MODELS

    return arch in MODELS and hasattr(MODELS.entries[arch].build, "randomized")


def is_randomized(arch: str) -> bool:
    from mnistbench.models import MODELS

    return getattr(MODELS.entries[arch].build, "randomized", True)


def check(params: ModelParams, source: str = "params.yaml") -> None:
    """The estimator's own check of its parameters (scikit-learn validates them at fit), on a fit
    of 20 synthetic images: ParamsError in one line naming the key where it rejects one."""
    import warnings

    from mnistbench.models import construct, model_keys

    keys = model_keys(params, source)
    model = construct(params.arch, keys)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 784)).astype(np.float32), np.arange(20) % 10
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fit of 20 images may not converge: not a bad value
            model.fit(torch.from_numpy(x), torch.from_numpy(y), seed=0)
    except (ValueError, TypeError) as e:
        message = " ".join(str(e).split())
        named = next((k for k in keys if f"'{k}'" in message), None)
        where = f"model.{params.arch}.{named} = {keys[named]!r}" if named else f"model.{params.arch}"
        raise ParamsError(f"{source}: {where}: scikit-learn refused it: {message}") from None


def dumps(model: Estimator) -> torch.Tensor:
    """The fitted pipeline as skops bytes, in a uint8 tensor (a checkpoint holds tensors and plain
    types), made the same bytes for the same estimator (canonical below)."""
    import skops.io

    return torch.frombuffer(bytearray(canonical(skops.io.dumps(model.pipeline))), dtype=torch.uint8)


def canonical(archive: bytes) -> bytes:
    """A skops archive that depends on the estimator alone. skops names each object by id(), its
    memory address (the "__id__" of schema.json's nodes and the .npy files' names), and stamps each
    file with the time: the same fitted model gave other bytes on every run, and DVC would see a
    changed model. Here the ids become 1, 2, ... in order of first appearance and the times 1980-01-01;
    an id only ties a node to its file and to the other references of the same object within the
    archive, so skops loads the same estimator (tests/test_estimators.py checks both)."""
    import io
    import json
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(archive))
    schema = json.loads(source.read("schema.json"))
    ids: dict[str, str] = {}

    def renumber(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "__id__":
                    node[k] = int(ids.setdefault(str(v), str(len(ids) + 1)))
                elif k == "file" and isinstance(v, str) and v.endswith(".npy"):
                    node[k] = ids.setdefault(v[: -len(".npy")], str(len(ids) + 1)) + ".npy"
                else:
                    renumber(v)
        elif isinstance(node, list):
            for item in node:
                renumber(item)

    renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            name = "schema.json" if info.filename == "schema.json" else ids[info.filename[: -len(".npy")]] + ".npy"
            data = json.dumps(schema, indent=2).encode() if name == "schema.json" else source.read(info.filename)
            fixed = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            target.writestr(fixed, data)
    return out.getvalue()


def loads(blob: torch.Tensor, randomized: bool, path) -> Estimator:
    """The Estimator a checkpoint holds; FileFormatError naming a type that is not scikit-learn's or
    numpy's (skops would otherwise have to rebuild it) or bytes skops cannot read."""
    import skops.io

    from mnistbench.files import FileFormatError

    data = blob.numpy().tobytes()
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
        foreign = [t for t in untrusted if not t.startswith(TRUSTED_MODULES)]
        if foreign:
            raise FileFormatError(
                f"{path}: refused to load checkpoint: its estimator asks to rebuild {foreign[0]}, which is not a "
                "scikit-learn or numpy type"
            )
        pipeline = skops.io.loads(data, trusted=untrusted)
    except FileFormatError:
        raise
    except Exception as e:  # noqa: BLE001 (skops raises whatever its reader meets in a corrupt archive)
        raise FileFormatError(
            f"{path}: its estimator is unreadable ({type(e).__name__}); rerun `dvc repro train`"
        ) from None
    return Estimator(pipeline, randomized)
