"""Stage validate of the benchmark: check benchmark/params.yaml before any cell runs.

    dvc repro benchmark/dvc.yaml   # or: python -m stages.benchmark_validate --params benchmark/params.yaml ...

As the main pipeline's validate stage does for params.yaml (stages/validate.py): every other stage
of the benchmark depends on this one's output, whose bytes never change, so a bad protocol stops
`dvc repro` here, in one line naming the key, before DVC deletes any cell's outputs. It checks
params.py's rules on every section, a cell of fewer than 2 seeds (a deterministic estimator: one
draw, no epochs), an architecture, optimizer or schedule that is not registered or a key of theirs
that breaks its rule (each cell's training: the shared section with its own keys over it), a model
too large for this machine's memory, a DATA_MIRROR of folders that lack a listed dataset's files,
and the published figures the cells are compared with (benchmark/published.yaml:
mnistbench/published.py).
"""

import argparse
import json
import os
from pathlib import Path

from mnistbench import published
from mnistbench.entry import run_stage
from mnistbench.mirrors import parse_mirrors, unobtainable
from mnistbench.params import ParamsError, check_val_size
from mnistbench.protocol import DATASETS_FILE, known_datasets, load_protocol
from stages.validate import write_valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="the benchmark's protocol")
    parser.add_argument(
        "--published", type=Path, required=True, help="the published figures (benchmark/published.yaml)"
    )
    parser.add_argument("--out", type=Path, required=True, help="file to write once it is valid")
    args = parser.parse_args()
    protocol = load_protocol(args.params)
    declared = json.loads(DATASETS_FILE.read_text())
    published.load(args.published, datasets=known_datasets())
    mirror = os.environ.get("DATA_MIRROR")
    for dataset in protocol.datasets:
        check_val_size(protocol.prepare["val_size"], declared[dataset]["train_size"])
        missing = unobtainable(dataset, list(declared[dataset]["files"]), parse_mirrors(mirror))
        if missing:
            raise ParamsError(
                f"{args.params}: datasets lists {dataset!r} but no folder in DATA_MIRROR={mirror} "
                f"holds {dataset}/{missing}; add a folder that does, or take {dataset} off the list"
            )
    from mnistbench import estimators, models, optim  # torch: the architectures and optimizers are registries of code

    for name, cell in protocol.cells.items():
        source = f"{args.params}: model.{name}.section"
        models.MODELS.entry(cell.model.arch, source)
        others = sorted(set(cell.model.sections) - {cell.model.arch})
        if others:  # the cell's label and its dvc.lock params are its own model's keys only
            raise ParamsError(
                f"{args.params}: model.{name}.section.{others[0]}: a cell's section holds the keys of its own "
                f"arch only (model.{name}.section.{cell.model.arch})"
            )
        models.MODELS.check_all(cell.model.arch, cell.model.sections, source)
        models.check_memory(cell.model)
    protocol.check_draws(str(args.params), estimators)
    for name in protocol.cells:  # each cell's training: the shared section with its own keys over it
        optim.check(protocol.cell(name, protocol.datasets[0])[1], f"{args.params}: model.{name}.train")
    write_valid(args.out)


if __name__ == "__main__":
    run_stage("benchmark_validate", main, outputs_kept=True)
