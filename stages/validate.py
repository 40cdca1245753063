"""Stage validate: check the whole params.yaml before any other stage runs.

    dvc repro validate   # or: python -m stages.validate --out data/params.ok

DVC deletes a stage's outputs before it runs the stage, so a stage that checks its own params
checks too late to keep them. Every other stage depends on this stage's output, so DVC runs it
first, and a bad value stops `dvc repro` / `dvc exp run` here with one line naming the key,
before any other stage's outputs are touched. Its output (persist: true in dvc.yaml, so DVC never
deletes it) holds the same bytes whatever the valid params are: it never makes another stage rerun.

Besides params.yaml's own rules (mnistbench/params.py) it refuses what only code or this machine
can tell: a `model.arch`, `train.optimizer` or `train.schedule` that is not registered, a key of
their sections that its entry does not read or whose value breaks the entry's rule (the keys each
declares: mnistbench/registry.py), a model whose parameters alone pass this machine's memory,
`train.device: cuda` without a GPU, and a DATA_MIRROR of folders that lack the dataset's files.
The registries live beside their code, which imports torch, whose import costs more than the rest
of this stage, so they are checked only where the train stage will run them anew: where the model
section (or mnistbench/models.py), the optimizer's and schedule's choices and sections (or
mnistbench/optim.py) or train.device differ from what dvc.lock recorded for the train stage; the
mirror only where prepare's params differ from dvc.lock's (else prepare keeps its outputs).
"""

import argparse
import hashlib
import json
import os
from functools import cache
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

import mnistbench
from mnistbench.entry import run_stage
from mnistbench.mirrors import parse_mirrors, unobtainable
from mnistbench.params import Params, ParamsError, as_dict, check_val_size, load_params

DATASETS_FILE = Path(mnistbench.__file__).with_name("datasets.json")
VALID = "params.yaml passed stages.validate\n"  # the output's bytes, whatever the params


@cache
def locked(stage: str) -> dict:
    """What dvc.lock recorded for `stage`: {"params": {key: value}, "deps": {path: md5}}; empty
    where dvc.lock or the stage is missing or unreadable (then everything counts as changed)."""
    try:
        entry = YAML(typ="safe").load(Path("dvc.lock").read_text())["stages"][stage]
        return {
            "params": entry.get("params", {}).get("params.yaml", {}),
            "deps": {dep["path"]: dep.get("md5") for dep in entry.get("deps", [])},
        }
    except (OSError, YAMLError, KeyError, TypeError):
        return {}


def recorded(params: dict, key: str):
    """The value dvc.lock recorded for `key` (e.g. train.lr), whether the stage lists the key
    itself or its whole section (`- train` in dvc.yaml); None where it recorded neither."""
    if key in params:
        return params[key]
    section, _, name = key.partition(".")
    return params[section].get(name) if isinstance(params.get(section), dict) else None


def differs(stage: str, section: str, values: dict, code: tuple[str, ...] = ()) -> bool:
    """Whether `values` ({key: value} of params.yaml's `section`) or the files `code` differ from
    what dvc.lock recorded for `stage`: then `dvc repro` reruns it, after deleting its outputs."""
    lock = locked(stage)
    if not lock:
        return True
    for path in code:  # the module this stage imports, under the path dvc.lock names it by
        imported = Path(mnistbench.__file__).parent.parent / path
        if lock["deps"].get(path) != hashlib.md5(imported.read_bytes()).hexdigest():
            return True
    return any(recorded(lock["params"], f"{section}.{key}") != value for key, value in values.items())


def check_mirror(params: Params, names: list[str], value: str | None) -> None:
    dataset, roots = params.prepare.dataset, parse_mirrors(value)
    missing = unobtainable(dataset, names, roots)
    if missing and differs(
        "prepare", "prepare", as_dict(params.prepare)
    ):  # else prepare keeps its outputs, whatever the mirror holds
        relative = (
            ""
            if all(os.path.isabs(root) for root in roots)
            else (f" (relative roots are read from {os.getcwd()}: a queued or --temp experiment runs in a copy there)")
        )
        raise ParamsError(
            f"params.yaml: prepare.dataset = {dataset!r} but no folder in DATA_MIRROR={value} holds "
            f"{dataset}/{missing}, which prepare needs{relative}; add one that does, or unset "
            f"DATA_MIRROR to download"
        )


def check_code(params: Params) -> None:
    """The checks that need torch: the device always (only `cuda` imports torch), the model's and
    the optimizer's and schedule's registries where the train stage will meet them anew."""
    if params.train.device == "cuda":
        from mnistbench.runtime import check_device

        check_device(params.train.device)
    registry = "mnistbench/registry.py"
    if differs(
        "train", "model", as_dict(params.model), code=("mnistbench/models.py", "mnistbench/estimators.py", registry)
    ):
        from mnistbench import models

        models.MODELS.check_all(params.model.arch, params.model.sections, others="arch")
        models.check_memory(params.model)
        if models.estimators.is_estimator(params.model.arch):  # scikit-learn's own check of its parameters
            models.estimators.check(params.model)
    chosen = {"optimizer": params.train.optimizer, "schedule": params.train.schedule, **params.train.sections}
    if differs("train", "train", chosen, code=("mnistbench/optim.py", registry)):
        from mnistbench import optim

        optim.check(params.train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="file to write once params.yaml is valid")
    args = parser.parse_args()
    params = load_params()  # every section, whatever sections params.py declares
    declared = json.loads(DATASETS_FILE.read_text())[params.prepare.dataset]
    check_val_size(params.prepare.val_size, declared["train_size"])
    check_mirror(params, list(declared["files"]), os.environ.get("DATA_MIRROR"))
    check_code(params)
    write_valid(args.out)


def write_valid(out: Path) -> None:
    """The stage's output, always the same bytes, written atomically (no torch: not files.py)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(VALID)
    os.replace(tmp, out)


if __name__ == "__main__":
    run_stage("validate", main, outputs_kept=True)
