"""The benchmark's protocol, benchmark/params.yaml, read and validated: which models on which
datasets, each cell's seeds, epochs and training.

    protocol = load_protocol("benchmark/params.yaml")    # raises ParamsError naming the bad key
    model, train = protocol.cell("cnn", "fashion-mnist")  # ModelParams, TrainParams of that cell
    protocol.seeds("cnn")                                  # [0, 1, 2, 3, 4]

Every section is checked by params.py's own rules (a model section as params.yaml's `model:`, the
training as its `train:`), plus what only the protocol can get wrong: a listed model or dataset
with no entry, a cell of fewer than 2 seeds (no spread, so no interval and no test). Torch-free, so
the benchmark's validate stage is as light as the main one's; the registries check the keys of
each cell's model, optimizer and schedule there (stages/benchmark_validate.py), and a cell's model
section holds its own architecture's keys only.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Cell:
    n: int  # seeds
    epochs: int
    model: ModelParams


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
    cells: dict[str, Cell]
    train: dict  # the train section but for epochs and normalization (the cell's and the dataset's)
    jobs: int
    control: Control

    def prepare_params(self, dataset: str) -> PrepareParams:
        return PrepareParams(dataset=dataset, **self.prepare)

    def cell(self, model: str, dataset: str, first_seed: int | None = None) -> tuple[ModelParams, TrainParams]:
        mean, std = self.normalize[dataset]
        train = {**self.train, "epochs": self.cells[model].epochs, "normalize_mean": mean, "normalize_std": std}
        if first_seed is not None:
            train["seed"] = first_seed
        return self.cells[model].model, section(TrainParams, train, "train", "benchmark/params.yaml")

    def seeds(self, model: str, first_seed: int | None = None) -> list[int]:
        start = self.train["seed"] if first_seed is None else first_seed
        return list(range(start, start + self.cells[model].n))

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
        raise ParamsError(
            f"{source}: {key} = {value!r}: must be an integer from {low} to {high}"
            + (" (a cell needs 2 seeds for a spread)" if key.endswith(".n") else "")
        )
    return value


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
    entries = _mapping(tree, "model", source)
    cells = {}
    for name in models:
        entry = entries.get(name)
        if not isinstance(entry, dict) or set(entry) != {"n", "epochs", "section"}:
            raise ParamsError(
                f"{source}: model.{name} must hold n (seeds), epochs and section (the model section of params.yaml)"
            )
        cells[name] = Cell(
            _count(entry["n"], f"model.{name}.n", source, 2, SEEDS_MAX),
            _count(entry["epochs"], f"model.{name}.epochs", source, 1),
            section(ModelParams, entry["section"], f"model.{name}.section", source),
        )
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
