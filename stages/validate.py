"""Stage validate: check the whole params.yaml before any other stage runs.

    dvc repro validate   # or: python -m stages.validate --out data/params.ok

DVC deletes a stage's outputs before it runs the stage, so a stage that checks its own params
checks too late to keep them. Every other stage depends on this stage's output, so DVC runs it
first, and a bad value stops `dvc repro` / `dvc exp run` here with one line naming the key,
before any other stage's outputs are touched. Its output (persist: true in dvc.yaml, so DVC never
deletes it) holds the same bytes whatever the valid params are: it never makes another stage rerun.
It also refuses what this machine cannot run: train.device cuda without a GPU, a model whose
parameters alone pass this machine's memory, and, where prepare's params differ from those
dvc.lock recorded (so prepare will rerun), a DATA_MIRROR of folders only that lack one of the
dataset's files (prepare would fail, with its outputs deleted).
Imports no torch (unless train.device is cuda: only torch can tell whether this machine has one): a
changed parameter pays this stage's start-up (about 0.1 s) before the real work.
"""

import argparse
import dataclasses
import json
import os
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

import mnistbench
from mnistbench.cli import run_stage
from mnistbench.mirrors import parse_mirrors, unobtainable
from mnistbench.params import ParamsError, PrepareParams, check_device, check_memory, check_val_size, load_params

DATASETS_FILE = Path(mnistbench.__file__).with_name("datasets.json")
VALID = "params.yaml passed stages.validate\n"  # the output's bytes, whatever the params


def prepare_reruns(prepare: PrepareParams, lock: Path = Path("dvc.lock")) -> bool:
    """Whether prepare's params differ from those dvc.lock recorded for it, or none are recorded:
    then `dvc repro` reruns prepare, and DVC deletes its outputs first."""
    try:
        recorded = YAML(typ="safe").load(lock.read_text())["stages"]["prepare"]["params"]["params.yaml"]
        return any(recorded[f"prepare.{key}"] != value for key, value in dataclasses.asdict(prepare).items())
    except (OSError, YAMLError, KeyError, TypeError):
        return True


def check_mirror(prepare: PrepareParams, names: list[str], value: str | None) -> None:
    dataset, roots = prepare.dataset, parse_mirrors(value)
    missing = unobtainable(dataset, names, roots)
    if missing and prepare_reruns(prepare):  # else prepare keeps its outputs, whatever the mirror holds
        relative = "" if all(os.path.isabs(root) for root in roots) else (
            f" (relative roots are read from {os.getcwd()}: a queued or --temp experiment runs in a copy there)")
        raise ParamsError(f"params.yaml: prepare.dataset = {dataset!r} but no folder in DATA_MIRROR={value} holds "
                          f"{dataset}/{missing}, which prepare needs{relative}; add one that does, or unset "
                          f"DATA_MIRROR to download")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="file to write once params.yaml is valid")
    args = parser.parse_args()
    params = load_params()  # every section, whatever sections params.py declares
    declared = json.loads(DATASETS_FILE.read_text())[params.prepare.dataset]
    check_val_size(params.prepare.val_size, declared["train_size"])
    check_mirror(params.prepare, list(declared["files"]), os.environ.get("DATA_MIRROR"))  # files first: dvc.lock costs 60 ms
    check_device(params.train.device)  # else DVC would delete the model, then train would refuse
    check_memory(params.model)  # likewise: a width typed with zeros too many

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(VALID)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    run_stage("validate", main, outputs_kept=True)
