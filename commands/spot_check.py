"""Vouch for the committed benchmark without retraining all of it: its lock, its statistics, a seed of each cell.

    mnistbench spot-check                 # one seed of every cell, chosen by HEAD's commit
    mnistbench spot-check --seeds all     # every seed: the whole benchmark's training again

Retraining the whole benchmark costs more than CI's budget leaves once its reference cells are in;
this checks the committed results in three steps, each of which a wrong result fails:

1. **the lock**: `dvc repro` of the benchmark's validate and prepare stages (the data, from the
   mirror), then `dvc status benchmark/dvc.yaml` must be up to date: every cell's code, params and
   data are those its dvc.lock entry records, and its committed outputs (predictions and metrics,
   both in git) have the hashes the lock records. A code change committed without a rerun, or an
   output edited after it, fails here.
2. **every statistic**: each cell's metrics file is recomputed from its committed predictions
   (mnistbench.benchmark.cell_metrics, as the cell stage writes it) and must be equal, and the
   compare stage's comparisons, table and plot are recomputed from them and must be the same bytes.
3. **the predictions, sampled**: one seed of every cell (and of the control), chosen by hashing
   the commit with the cell's name, is retrained exactly as the cell stage trains it, and its
   predicted class for every test image must equal the committed row to the byte. A cell whose
   committed predictions are not what this code trains differs on every seed, so any seed catches
   it; one wrong seed of n is caught with probability 1/n per commit, and the seed changes with
   every commit.

Exit 0: vouched for; 1: a difference (one line naming the cell, the seed or the file, and the
command that fixes it); 2: cannot tell (no git, no dvc, no data mirror).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from mnistbench.entry import run_command

PIPELINE = "benchmark/dvc.yaml"
PROTOCOL = Path("benchmark/params.yaml")
FOLDER = Path("benchmark")


class Differs(Exception):
    """The committed benchmark is not what this code produces: one line, exit 1."""


def cannot_tell(why: str) -> SystemExit:
    print(f"spot-check: cannot tell: {why}", file=sys.stderr)
    return SystemExit(2)


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True)


def commit() -> str:
    head = _run("git", "rev-parse", "HEAD")
    if head.returncode != 0:
        raise cannot_tell("not in a git clone with a commit; the seeds are chosen by the commit")
    return head.stdout.strip()


def chosen_seed(seeds: list[int], revision: str, cell: str) -> int:
    """The seed of `cell` to retrain at this commit: the commit and the cell's name hashed."""
    digest = hashlib.sha256(f"{revision}:{cell}".encode()).digest()
    return seeds[int.from_bytes(digest[:8], "big") % len(seeds)]


def check_lock(dvc: str) -> None:
    """Step 1: the data from the mirror, then every stage of the benchmark as its lock records it."""
    ran = _run(dvc, "repro", f"{PIPELINE}:prepare")
    if ran.returncode != 0:
        lines = (ran.stderr.strip() or ran.stdout.strip() or "dvc repro failed").splitlines()
        raise cannot_tell(f"preparing the benchmark's data failed: {lines[-1]}")
    status = _run(dvc, "status", "--json", PIPELINE)
    if status.returncode != 0:
        raise cannot_tell(f"dvc status failed: {(status.stderr.strip().splitlines() or ['no output'])[-1]}")
    changed = json.loads(status.stdout or "{}")
    if changed:
        stages = ", ".join(sorted(s.removeprefix(f"{PIPELINE}:") for s in changed))
        raise Differs(
            f"benchmark/dvc.lock does not match the committed code, params or outputs of: {stages}; "
            f"run `dvc repro {PIPELINE}` and commit its results"
        )


def check_statistics(protocol) -> dict:
    """Step 2: each cell's metrics from its predictions, then the compare stage's outputs.
    Returns every cell (the control's under "control"), as read for step 3."""
    from mnistbench import benchmark

    cells = {}
    for name in [*protocol.names(), "control"]:
        cell = benchmark.read_cell(name, FOLDER)
        if benchmark.cell_metrics(cell.seeds, cell.predicted, cell.labels) != cell.metrics:
            raise Differs(
                f"benchmark/metrics/{name}.json is not what its committed predictions give; "
                f"run `dvc repro {PIPELINE}` and commit its results"
            )
        cells[name] = cell
    data = {name: cell for name, cell in cells.items() if name != "control"}
    results = benchmark.compare_cells(protocol, data, cells["control"])
    for name, again in benchmark.compare_outputs(protocol, data, results).items():
        if again != (FOLDER / name).read_bytes():
            raise Differs(
                f"benchmark/{name} is not what the committed predictions give; "
                f"run `dvc repro {PIPELINE}:compare` and commit it"
            )
    return cells


def retrain(protocol, name: str, seed: int):
    """One seed of one cell, as stages/benchmark_cell.py trains it: its (N,) uint8 predictions."""
    from mnistbench.replicates import cell_setup, fit_replicates

    model_name, dataset, first = (
        (protocol.control.model, protocol.control.dataset, protocol.control.seed)
        if name == "control"
        else (*name.split("-", 1), None)
    )
    model, train, device, splits = cell_setup(protocol, model_name, dataset, FOLDER / "data" / dataset, first)
    (result,) = fit_replicates(model, train, [seed], splits, device, jobs=1, log=lambda _: None)
    return result.predicted


def main() -> None:
    parser = argparse.ArgumentParser(prog="mnistbench spot-check", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", choices=("one", "all"), default="one", help="retrain one seed of each cell (default) or all"
    )
    args = parser.parse_args()
    try:
        vouch(args.seeds)
    except Differs as e:
        raise SystemExit(f"spot-check: differs: {e}") from None


def vouch(which: str) -> None:
    import torch

    from commands.ray_grid import dvc_executable
    from mnistbench import estimators
    from mnistbench.protocol import load_protocol

    revision = commit()
    protocol = load_protocol(PROTOCOL)
    protocol.check_draws(str(PROTOCOL), estimators)
    check_lock(dvc_executable())
    print(f"spot-check: {PIPELINE}'s lock matches the committed code, params, data and outputs")
    cells = check_statistics(protocol)
    print("spot-check: every cell's metrics and the comparisons, table and plot recomputed from the predictions")
    for name, cell in cells.items():
        for seed in cell.seeds if which == "all" else [chosen_seed(cell.seeds, revision, name)]:
            row = cell.predicted[cell.seeds.index(seed)]
            if not torch.equal(retrain(protocol, name, seed), row):
                raise Differs(
                    f"cell {name}, seed {seed}: retrained, its predictions differ from the committed ones; "
                    f"run `dvc repro -f {PIPELINE}:{'control' if name == 'control' else 'cell@' + name}` and "
                    "commit, or `mnistbench reproduced` if this machine is another stack"
                )
            print(f"spot-check: cell {name}, seed {seed} ({len(cell.seeds)} in all): retrained, the same bytes")
    print(f"spot-check: the committed benchmark is vouched for at {revision[:12]}")


if __name__ == "__main__":
    run_command("spot-check", main)
