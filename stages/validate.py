"""Stage validate: check the whole params.yaml before any other stage runs.

    dvc repro validate   # or: python -m stages.validate --out data/params.ok

DVC deletes a stage's outputs before it runs the stage, so a stage that checks its own params
checks too late to keep them. Every other stage depends on this stage's output, so DVC runs it
first, and a bad value stops `dvc repro` / `dvc exp run` here with one line naming the key,
before any other stage's outputs are touched. Its output (persist: true in dvc.yaml, so DVC never
deletes it) holds the same bytes whatever the valid params are: it never makes another stage rerun.
Imports no torch (unless train.device is cuda: only torch can tell whether this machine has one): a
changed parameter pays this stage's start-up (about 0.1 s) before the real work.
"""

import argparse
import json
import os
from pathlib import Path

import mnistbench
from mnistbench.cli import run_stage
from mnistbench.params import check_device, check_val_size, load_params

DATASETS_FILE = Path(mnistbench.__file__).with_name("datasets.json")
VALID = "params.yaml passed stages.validate\n"  # the output's bytes, whatever the params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="file to write once params.yaml is valid")
    args = parser.parse_args()
    params = load_params()  # every section, whatever sections params.py declares
    train_size = json.loads(DATASETS_FILE.read_text())[params.prepare.dataset]["train_size"]
    check_val_size(params.prepare.val_size, train_size)
    check_device(params.train.device)  # else DVC would delete the model, then train would refuse

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(VALID)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    run_stage("validate", main, outputs_kept=True)
