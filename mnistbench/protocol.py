"""The benchmark's protocol, benchmark/params.yaml, read and validated: which models on which
datasets, each cell's seeds, epochs and training.

    protocol = load_protocol("benchmark/params.yaml")    # raises ParamsError naming the bad key
    model, train = protocol.cell("cnn", "fashion-mnist")  # ModelParams, TrainParams of that cell
    protocol.seeds("cnn")                                  # [0, 1, 2, 3, 4]

Every section is checked by params.py's own rules (a model section as params.yaml's `model:`, the
training as its `train:`), plus what only the protocol can get wrong: a listed model or dataset
with no entry, a cell of fewer than 2 seeds (no spread, so no interval and no test), a deterministic
scikit-learn estimator (k-NN, lbfgs logistic regression) given more than one: it is one draw, which
every seed would give to the bit, so its entry holds `n: 1` and no epochs. A cell whose recipe
trains otherwise (pytorch/examples' Adadelta and StepLR) holds its own `train:` keys, merged over
the shared section (an optimizer's or schedule's section key by key); seed, device and threads are
the protocol's alone. Every entry of `model:` is checked, listed in `models:` or not. Torch-free, so
the benchmark's validate stage is as light as the main one's; the registries check the keys of
each cell's model, optimizer and schedule there (stages/benchmark_validate.py), and a cell's model
section holds its own architecture's keys only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from mnistbench.params import (
    INT_MAX,
    ModelParams,
    ParamsError,
    PrepareParams,
    TrainParams,
    load_tree,
    section,
)

DATASETS_FILE = Path(__file__).with_name("datasets.json")
SEEDS_MAX = 1000
TRAIN_KEYS = [
    f.name
    for f in dataclasses.fields(TrainParams)
    if f.name not in ("epochs", "normalize_mean", "normalize_std") and not f.metadata.get("sections")
]


SHARED_ONLY = ("seed", "device", "threads")  # the protocol's, never a cell's: seed blocks, the bytes' machine


@dataclass(frozen=True)
class Cell:
    n: int  # seeds: 1 for a deterministic estimator's one draw
    epochs: int | None  # None for a scikit-learn estimator
    model: ModelParams
    train: dict = dataclasses.field(default_factory=dict)  # its training where it differs from the shared train:


@dataclass(frozen=True)
class Control:
    model: str
    dataset: str
    seed: int  # the first seed of its block


@dataclass(frozen=True)
class Protocol:
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    prepare: dict  # val_size, split_seed: each dataset's PrepareParams adds its name
    normalize: dict[str, tuple[float, float]]
    cells: dict[str, Cell]  # every entry of model:, listed in models or not
    train: dict  # the train section but for epochs and normalization (the cell's and the dataset's)
    jobs: int
    control: Control

    def prepare_params(self, dataset: str) -> PrepareParams:
        return PrepareParams(dataset=dataset, **self.prepare)

    def cell(self, model: str, dataset: str, first_seed: int | None = None) -> tuple[ModelParams, TrainParams]:
        mean, std = self.normalize[dataset]
        cell = self.cells[model]
        train = merged(self.train, cell.train)
        train.update(epochs=cell.epochs or 1, normalize_mean=mean, normalize_std=std)  # an estimator reads no epochs
        if first_seed is not None:
            train["seed"] = first_seed
        return self.cells[model].model, section(TrainParams, train, "train", "benchmark/params.yaml")

    def seeds(self, model: str, first_seed: int | None = None) -> list[int]:
        start = self.train["seed"] if first_seed is None else first_seed
        return list(range(start, start + self.cells[model].n))

    def check_draws(self, source: str, estimators) -> None:
        """Each entry as its arch needs, by the registry (mnistbench.estimators, passed in: torch,
        which this module stays free of): a torch model trains epochs on 2 seeds at least; a
        scikit-learn estimator trains no epochs, and a deterministic one (k-NN, lbfgs logistic
        regression) is one draw, which every seed would give to the bit: n: 1."""
        for name, cell in self.cells.items():
            arch, where = cell.model.arch, f"{source}: model.{name}"
            fitted = estimators.is_estimator(arch)
            if fitted and cell.train:
                raise ParamsError(f"{where}.train: {arch} is a scikit-learn estimator, which reads no training keys")
            if fitted and cell.epochs is not None:
                raise ParamsError(
                    f"{where}.epochs: {arch} is a scikit-learn estimator, which trains no epochs; remove it"
                )
            if not fitted and cell.epochs is None:
                raise ParamsError(f"{where}.epochs: missing; {arch} trains for epochs (an integer >= 1)")
            if fitted and not estimators.is_randomized(arch):
                if cell.n != 1:
                    raise ParamsError(
                        f"{where}.n = {cell.n}: {arch} is deterministic, every seed gives the same bits; set n: 1"
                    )
            elif cell.n < 2:
                raise ParamsError(f"{where}.n = {cell.n}: must be 2 at least (a cell needs 2 seeds for a spread)")
        if self.cells[self.control.model].n < 2:
            raise ParamsError(
                f"{source}: control.model = {self.control.model!r} is one deterministic draw: "
                "the control needs a model with seeds, to tie with itself on others"
            )

    def names(self) -> list[str]:
        """Every cell's name, `<model>-<dataset>`, datasets in their listed order."""
        return [f"{m}-{d}" for d in self.datasets for m in self.models]


def _mapping(tree, key: str, source: str) -> dict:
    value = tree.get(key) if isinstance(tree, dict) else None
    if not isinstance(value, dict):
        raise ParamsError(f"{source}: {key} must be a mapping of keys")
    return value


def _names(tree: dict, key: str, source: str, allowed: list[str] | None = None) -> tuple[str, ...]:
    value = tree.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ParamsError(f"{source}: {key} must be a list of names, e.g. [mnist, fashion-mnist]")
    if len(set(value)) != len(value):
        raise ParamsError(f"{source}: {key} lists a name twice: {value}")
    unknown = [v for v in value if allowed is not None and v not in allowed]
    if unknown:
        raise ParamsError(f"{source}: {key} names {unknown[0]!r}, which is none of {', '.join(allowed)}")
    return tuple(value)


def _count(value, key: str, source: str, low: int, high: int = INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParamsError(f"{source}: {key} = {value!r}: must be an integer from {low} to {high}")
    return value


def merged(shared: dict, own: dict) -> dict:
    """The shared train section with a cell's own keys over it; an optimizer's or schedule's
    section merges key by key (a cell may change sgd.momentum alone)."""
    out = copy.deepcopy(shared)
    for key, value in own.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _cell(entry, name: str, source: str, shared: dict) -> Cell:
    """A model's entry: n seeds, epochs (none for a scikit-learn estimator), its section and, where
    its recipe trains otherwise, its own train keys. Whether its arch is an estimator, and a
    deterministic one, the registry says: check_draws."""
    if not isinstance(entry, dict) or not {"n", "section"} <= set(entry) <= {"n", "epochs", "section", "train"}:
        raise ParamsError(
            f"{source}: model.{name} must hold n (seeds), epochs (none for a scikit-learn estimator) "
            "and section (the model section of params.yaml), and may hold train (its own training keys)"
        )
    n = _count(entry["n"], f"model.{name}.n", source, 1, SEEDS_MAX)
    epochs = _count(entry["epochs"], f"model.{name}.epochs", source, 1) if "epochs" in entry else None
    own = entry.get("train", {})
    if not isinstance(own, dict):
        raise ParamsError(f"{source}: model.{name}.train must be a mapping of train's keys, e.g. {{lr: 0.002}}")
    for key, value in own.items():
        where = f"{source}: model.{name}.train.{key}"
        if key in SHARED_ONLY:
            raise ParamsError(f"{where}: the protocol's for every cell (train.{key}); not a cell's own")
        if key in shared and isinstance(shared[key], dict) != isinstance(value, dict):
            raise ParamsError(
                f"{where}: must be {'a mapping' if isinstance(shared[key], dict) else 'a value'}, as train.{key}"
            )
        if not isinstance(value, dict) and key not in TRAIN_KEYS:
            own_keys = [k for k in TRAIN_KEYS if k not in SHARED_ONLY]
            raise ParamsError(f"{where}: train has no such key; a cell's own: {', '.join(own_keys)} and sections")
    train = merged(shared, own)
    section(
        TrainParams, {**train, "epochs": 1, "normalize_mean": 0.0, "normalize_std": 1.0}, f"model.{name}.train", source
    )
    return Cell(n, epochs, section(ModelParams, entry["section"], f"model.{name}.section", source), dict(own))


def known_datasets() -> list[str]:
    """The datasets mnistbench/datasets.json pins, by name."""
    return sorted(json.loads(DATASETS_FILE.read_text()).keys() - {"_comment"})


def load_protocol(path: str | Path = "benchmark/params.yaml") -> Protocol:
    source = str(path)
    tree = load_tree(path)
    if not isinstance(tree, dict):
        raise ParamsError(f"{source}: the top level must be a mapping of keys")
    known = known_datasets()
    expected = {"datasets", "models", "prepare", "normalize", "model", "train", "jobs", "control"}
    unknown = sorted(set(tree) - expected)
    if unknown or expected - set(tree):
        key = unknown[0] if unknown else sorted(expected - set(tree))[0]
        raise ParamsError(
            f"{source}: {'unknown' if unknown else 'missing'} key {key}; the keys: {', '.join(sorted(expected))}"
        )
    datasets = _names(tree, "datasets", source, known)
    models = _names(tree, "models", source)
    prepare = _mapping(tree, "prepare", source)
    section(PrepareParams, {**prepare, "dataset": datasets[0]}, "prepare", source)  # its rules, for any dataset
    normalize = {}
    for name in datasets:
        pair = _mapping(tree, "normalize", source).get(name)
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair) and pair[1] > 0
        ):
            raise ParamsError(f"{source}: normalize.{name} = {pair!r}: must be [mean, std] of its pixels, std > 0")
        normalize[name] = (float(pair[0]), float(pair[1]))
    train = _mapping(tree, "train", source)
    plain = [k for k, v in train.items() if not isinstance(v, dict)]  # the others: optimizers' and schedules' sections
    if sorted(plain) != sorted(TRAIN_KEYS):
        missing, extra = sorted(set(TRAIN_KEYS) - set(plain)), sorted(set(plain) - set(TRAIN_KEYS))
        raise ParamsError(
            f"{source}: train: "
            + (
                f"missing key train.{missing[0]}"
                if missing
                else f"unknown key train.{extra[0]} (epochs are each model's)"
            )
        )
    section(TrainParams, {**train, "epochs": 1, "normalize_mean": 0.0, "normalize_std": 1.0}, "train", source)
    entries = _mapping(tree, "model", source)
    listed = [name for name in models if name not in entries]
    if listed:
        raise ParamsError(f"{source}: models lists {listed[0]!r}, which has no entry under model:; add one")
    cells = {name: _cell(entry, name, source, train) for name, entry in entries.items()}  # listed or not: all valid
    jobs = _count(tree["jobs"], "jobs", source, 1, 64)
    control = _mapping(tree, "control", source)
    if control.get("model") not in models or control.get("dataset") not in datasets:
        raise ParamsError(
            f"{source}: control must name one of the models and datasets listed "
            f"(model: {control.get('model')!r}, dataset: {control.get('dataset')!r})"
        )
    first = _count(control.get("seed"), "control.seed", source, 0)
    n = cells[control["model"]].n
    if first < train["seed"] + n and train["seed"] < first + n:
        raise ParamsError(
            f"{source}: control.seed = {first}: its block of {n} seeds overlaps the cell's "
            f"({train['seed']}..{train['seed'] + n - 1}); the control needs other seeds"
        )
    return Protocol(
        datasets,
        models,
        dict(prepare),
        normalize,
        cells,
        dict(train),
        jobs,
        Control(control["model"], control["dataset"], first),
    )
