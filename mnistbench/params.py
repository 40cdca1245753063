"""Typed, validated view of params.yaml, the only home of hyperparameters.

    from mnistbench.params import load_params
    params = load_params("params.yaml")      # raises ParamsError naming the bad key
    params.train.lr                          # 0.001 (a float, as DVC reads it)

params.yaml is read with ruamel.yaml (YAML 1.2), the parser DVC itself uses, so `1e-3` is the
float 0.001 here exactly as in `dvc params diff`; PyYAML (YAML 1.1) would read it as a string.
Every key must be declared below and present in the file: no defaults live in code.

Torch-free, so that stages.validate checks a changed params.yaml in a tenth of a second. The
choices that are registries of code, `model.arch` (mnistbench/models.py), `train.optimizer` and
`train.schedule` (mnistbench/optim.py), hold the keys of their own in a section under the entry's
name (model.mlp.hidden, train.sgd.momentum: mnistbench/registry.py). Here those sections are kept
as read, as ModelParams.sections and TrainParams.sections; the registries check them, where a model
or an optimizer is built and in stages.validate where they changed.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError


class ParamsError(ValueError):
    """A user error in params.yaml; its message is one line naming the key."""


SEED_MAX = 2**63 - 1  # torch.manual_seed's largest seed that is also a valid int64 (it wraps above)
INT_MAX = 2**63 - 1  # every integer: torch takes int64
THREADS_MAX = 1024  # torch.set_num_threads takes a C int; past any machine's cores, a typo


def _spec(
    help: str,
    *,
    min=None,
    max=None,
    min_exclusive=None,
    max_exclusive=None,
    choices=None,
    min_items=None,
    max_items=None,
):
    return field(
        metadata=dict(
            help=help,
            min=min,
            max=max,
            min_exclusive=min_exclusive,
            max_exclusive=max_exclusive,
            choices=choices,
            min_items=min_items,
            max_items=max_items,
        )
    )


@dataclass(frozen=True)
class PrepareParams:
    dataset: str = _spec("the dataset (mnistbench/datasets.json)", choices=("mnist", "fashion-mnist", "kmnist"))
    val_size: int = _spec("training images held out for validation (of 60,000)", min=1)
    split_seed: int = _spec("seed of the permutation that picks the validation images", min=0)


def _sections(help: str):
    """The field that collects a section's mappings named after registered entries (model.mlp: the
    keys of mlp), kept as read: the registry that owns them checks them (mnistbench/registry.py)."""
    return field(default_factory=dict, metadata=dict(help=help, sections=True))


@dataclass(frozen=True)
class ModelParams:
    arch: str = _spec("the classifier: an architecture registered in mnistbench/models.py")
    sections: dict = _sections("model.<arch>: each architecture's own keys (mnistbench/models.py)")


@dataclass(frozen=True)
class TrainParams:
    seed: int = _spec("seed of the weight init and of the per-epoch shuffle", min=0, max=SEED_MAX)
    epochs: int = _spec("passes over the training set", min=1)
    batch_size: int = _spec("images per optimizer step", min=1)
    optimizer: str = _spec("the optimizer: one registered in mnistbench/optim.py")
    lr: float = _spec("the optimizer's learning rate (at the start of the schedule)", min_exclusive=0.0)
    schedule: str = _spec("the learning rate over the run: a schedule registered in mnistbench/optim.py")
    augment_shift: float = _spec("largest random shift of a training image, in pixels (0: none)", min=0.0, max=8.0)
    augment_rotate: float = _spec(
        "largest random rotation of a training image, in degrees (0: none)", min=0.0, max=45.0
    )
    normalize_mean: float = _spec("mean pixel value (of [0, 1] pixels) subtracted before the model")
    normalize_std: float = _spec("pixel standard deviation divided out before the model", min_exclusive=0.0)
    device: str = _spec(
        "where to train: auto is the CPU, where the committed results were made; cuda the GPU",
        choices=("auto", "cpu", "cuda"),
    )
    threads: int = _spec("torch CPU threads; the count can change the float bits of the result", min=1, max=THREADS_MAX)
    sections: dict = _sections("train.<optimizer>, train.<schedule>: their own keys (mnistbench/optim.py)")


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = _spec("test images per forward pass (memory only; results do not depend on it)", min=1)
    misclassified_shown: int = _spec("misclassified test digits drawn in plots/misclassified.png", min=0)


@dataclass(frozen=True)
class ReplicatesParams:
    n: int = _spec("seeds trained by the replicates stage: train.seed, train.seed + 1, ...", min=2, max=1000)
    jobs: int = _spec(
        "seeds trained at once, each in its own process at train.threads threads (never changes the bits)",
        min=1,
        max=64,
    )


@dataclass(frozen=True)
class GateParams:
    significance: float = _spec(
        "one-sided Welch t-test level: a mean drop with a smaller p-value fails", min_exclusive=0.0, max=0.5
    )
    min_drop: float = _spec(
        "mean test-accuracy drop below which the gate passes even when significant", min=0.0, max=1.0
    )
    min_accuracy: float = _spec(
        "mean test accuracy of the replicates below which the gate fails, whatever the baseline", min=0.0, max=1.0
    )


@dataclass(frozen=True)
class Params:
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    replicates: ReplicatesParams
    gate: GateParams


def load_params(path: str | Path = "params.yaml") -> Params:
    return from_dict(load_tree(path), path=str(path))


def load_tree(path: str | Path = "params.yaml"):
    """params.yaml as read, unchecked: what override applies `-S key=value` to before from_dict."""
    path = Path(path)
    try:
        return YAML(typ="safe", pure=True).load(path.read_text())
    except OSError as e:
        raise ParamsError(f"{path}: cannot read it ({e.strerror})") from None
    except YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ParamsError(f"{path}: not valid YAML{line}: {getattr(e, 'problem', None) or e}") from None


def from_dict(tree, path: str = "params.yaml") -> Params:
    params = _build(Params, tree, prefix="", path=path)
    last = params.train.seed + params.replicates.n - 1
    if last > SEED_MAX:  # the only rule across keys: the replicates' seed block must stay seedable
        raise ParamsError(
            f"{path}: train.seed = {params.train.seed} with replicates.n = {params.replicates.n} "
            f"needs seeds up to {last}, past the largest seed {SEED_MAX}; lower train.seed"
        )
    return params


def section(cls, tree, name: str, source: str):
    """One section (e.g. ModelParams from a checkpoint's metadata), validated like params.yaml."""
    return _build(cls, tree, prefix=name + ".", path=source)


def override(tree: dict, assignment: str) -> dict:
    """A copy of params.yaml's tree with one `key=value` applied as `dvc exp run -S` applies it: the
    value read as YAML (3, 1e-3, [64, 32], cosine), and only to a key that exists. Check the result
    with from_dict. Raises KeyError(key) when there is no `=` or params.yaml has no such key."""
    key, sep, value = assignment.partition("=")
    changed = copy.deepcopy(tree)
    *parents, leaf = key.split(".")
    node = changed
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not sep or not isinstance(node, dict) or leaf not in node:
        raise KeyError(key)
    node[leaf] = YAML(typ="safe", pure=True).load(value)
    return changed


def check_val_size(val_size: int, train_size: int) -> None:
    """prepare.val_size against the training set's size, which params.yaml alone cannot bound: the
    size is the dataset's (datasets.json). Here, not in data.py, so `stages.validate` needs no torch."""
    if not 0 < val_size < train_size:
        raise ParamsError(
            f"prepare.val_size = {val_size}: must be between 1 and {train_size - 1} "
            f"(the training set has {train_size} images)"
        )


def _build(cls, tree, prefix: str, path: str):
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(tree, dict):
        raise ParamsError(f"{path}: {where} must be a mapping of keys, got {show(tree)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("sections")}
    collect = next((f.name for f in dataclasses.fields(cls) if f.metadata.get("sections")), None)
    unknown = sorted(set(tree) - set(fields), key=str)
    if collect:  # a mapping is a registered entry's section: its registry checks it
        unknown = [name for name in unknown if not (isinstance(name, str) and isinstance(tree[name], dict))]
    if unknown:
        sections = ", and a section per registered entry (a mapping)" if collect else ""
        raise ParamsError(
            f"{path}: unknown key {prefix}{unknown[0]}; allowed in {where}: {', '.join(fields)}{sections}"
        )
    missing = [name for name in fields if name not in tree]
    if missing:
        raise ParamsError(
            f"{path}: missing key {prefix}{missing[0]}: {fields[missing[0]].metadata.get('help', 'a section')}"
        )
    values = {}
    for name, f in fields.items():
        key = prefix + name
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], tree[name], prefix=key + ".", path=path)
        else:
            values[name] = check_value(key, tree[name], hints[name], f.metadata, path)
    if collect:
        values[collect] = {name: copy.deepcopy(value) for name, value in tree.items() if name not in fields}
    return cls(**values)


def check_value(key: str, value, hint, rules, path: str):
    """One value against its type hint and rules (params.py's and registry.py's): typed, or ParamsError."""

    def fail(expected: str):
        return ParamsError(f"{path}: {key} = {show(value)}: {expected}")

    if typing.get_origin(hint) is tuple:  # tuple[int, ...]: a YAML list of ints
        if not isinstance(value, (list, tuple)):
            raise fail("must be a list of integers, e.g. [128, 64]")
        if len(value) < (rules["min_items"] or 0):
            raise fail(f"must have at least {rules['min_items']} item(s)")
        if rules["max_items"] is not None and len(value) > rules["max_items"]:
            raise fail(f"must have at most {rules['max_items']} items")
        item_rules = dict(rules, min_items=None, max_items=None)
        return tuple(check_value(f"{key}[{i}]", item, int, item_rules, path) for i, item in enumerate(value))
    # bool is a subclass of int in Python; `shuffle: 1` or `epochs: true` must not pass as each other.
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise fail("must be an integer")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("must be a number, e.g. 0.001 or 1e-3")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise fail("must be a finite number")
    if hint is bool and not isinstance(value, bool):
        raise fail("must be true or false")
    if hint is str and not isinstance(value, str):
        raise fail("must be a string")
    if rules["choices"] is not None and value not in rules["choices"]:
        raise fail(f"must be one of {', '.join(rules['choices'])}")
    if rules["min"] is not None and value < rules["min"]:
        raise fail(f"must be >= {rules['min']}")
    if rules["max"] is not None and value > rules["max"]:
        raise fail(f"must be <= {rules['max']}")
    if hint is int and value > INT_MAX:
        raise fail(f"must be <= {INT_MAX} (a 64-bit integer)")
    if rules["min_exclusive"] is not None and value <= rules["min_exclusive"]:
        raise fail(f"must be > {rules['min_exclusive']}")
    if rules["max_exclusive"] is not None and value >= rules["max_exclusive"]:
        raise fail(f"must be < {rules['max_exclusive']}")
    return value


def show(value) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def as_dict(params) -> dict:
    """Plain dict (lists, not tuples) of a params section as params.yaml holds it (the registered
    entries' sections beside the other keys), for logs and comparisons with dvc.lock."""
    plain = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.metadata.get("sections"):
            plain.update(copy.deepcopy(value))
        else:
            plain[f.name] = list(value) if isinstance(value, tuple) else value
    return plain


__all__ = [
    "Params",
    "ParamsError",
    "load_params",
    "load_tree",
    "from_dict",
    "section",
    "as_dict",
    "check_value",
    "show",
    "PrepareParams",
    "ModelParams",
    "TrainParams",
    "EvaluateParams",
    "ReplicatesParams",
    "GateParams",
    "SEED_MAX",
]
