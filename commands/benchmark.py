"""The benchmark, `dvc repro benchmark/dvc.yaml`, with its cells spread over Ray: on this machine or a cluster.

    mnistbench benchmark                                  # dvc repro benchmark/dvc.yaml, cell after cell
    mnistbench benchmark --jobs 2                         # the cells as Ray tasks on this machine, 2 at once
    mnistbench benchmark --jobs 8 --address HEAD_IP:6379  # on a Ray cluster (docs/benchmark.md)
    mnistbench benchmark --dry-run                        # the cells and their commands; nothing runs

With --jobs N > 1 or --address, each cell of benchmark/params.yaml (`cell@<model>-<dataset>`, and
`control`) is a Ray task that runs `dvc repro benchmark/dvc.yaml:<cell>` in its own clone of HEAD
(commands/ray_grid.py, as the grid's runs do), training the cell's seeds one at a time (`jobs: 1`
in the clone, which decides no bits: the tasks are the parallelism). A finished cell is an entry of
DVC's run cache: on this machine in the repository's own cache, on a cluster pushed with its
outputs to the default DVC remote. Then `dvc repro benchmark/dvc.yaml` here (with `--pull` on a
cluster) restores every cell from the run cache instead of training it, and runs `compare`:
benchmark/ then holds the bytes `dvc repro` alone would have written. Commit them.

Nothing lost: on Ctrl-C or a failed cell it stops before the repro here, and the cells that
finished stay in the run cache, so the same command again restores them and trains the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from commands import ray_grid  # stdlib only at import: Ray loads in run_grid alone
from commands.grid import dirty

PIPELINE = "benchmark/dvc.yaml"
PROTOCOL = "benchmark/params.yaml"
PUBLISHED = "benchmark/published.yaml"
RERUN = "the same command again restores them and trains only the rest"
TIMINGS = "timings/benchmark"  # each cell's last measured time here (stages/benchmark_cell.py --time)


def cells() -> list[str]:
    """The protocol's cells as stage names of benchmark/dvc.yaml, the longest first where a time was
    measured here before (so the last to finish is a short one); one line if the protocol is bad."""
    from mnistbench.params import ParamsError
    from mnistbench.protocol import load_protocol

    try:
        protocol = load_protocol(PROTOCOL)
    except ParamsError as e:
        raise SystemExit(f"benchmark: error: {e}") from None
    names = [f"cell@{model}-{dataset}" for model in protocol.models for dataset in protocol.datasets] + ["control"]

    def measured(name: str) -> float:
        try:
            with open(os.path.join(TIMINGS, f"{name.removeprefix('cell@')}.json")) as f:
                return float(json.load(f)["train_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0

    return sorted(names, key=measured, reverse=True)  # stable: the protocol's order where none was measured


def check_protocol() -> None:
    """The benchmark's own validate stage, run here first: a bad protocol or a missing dataset is
    one line before any Ray task starts (each clone would fail the same way)."""
    with tempfile.TemporaryDirectory() as tmp:
        checked = subprocess.run(
            [sys.executable, "-m", "stages.benchmark_validate", "--params", PROTOCOL, "--published", PUBLISHED]
            + ["--out", f"{tmp}/ok"],  # benchmark/dvc.yaml's validate command
            capture_output=True,
            text=True,
        )
    if checked.returncode != 0:
        line = (checked.stderr.strip().splitlines() or ["the protocol's check failed"])[-1]
        raise SystemExit(f"benchmark: error: {re.sub(r'^benchmark_validate: error: ', '', line)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ray_grid.add_arguments(parser, "cells", "`dvc repro` here, in turn", "clones from")
    parser.add_argument("--dry-run", action="store_true", help="print the cells and the dvc commands, run nothing")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    if not os.path.exists(PIPELINE):
        raise SystemExit(f"benchmark: error: no {PIPELINE} here: run it from the repository's root")
    if args.jobs == 1 and not args.address:
        if args.dry_run:
            print(f"dvc repro {PIPELINE}")
            return
        try:
            os.execvp(ray_grid.dvc_executable(), ["dvc", "repro", PIPELINE])
        except FileNotFoundError:
            raise SystemExit("benchmark: error: no dvc beside this Python or on PATH: `make install` first") from None
    repro = ["dvc", "repro", *(["--pull"] if args.address else [])]  # on a cluster: through the DVC remote
    names = cells()
    if args.dry_run:
        print("\n".join(f"in a clone of HEAD: {' '.join(repro)} {PIPELINE}:{name}" for name in names))
        print(f"here: {' '.join(repro)} {PIPELINE}")
        return
    if subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True).returncode != 0:
        raise SystemExit("benchmark: error: no commit yet; the cells run from a commit: commit the pipeline first")
    changed = dirty(["."])
    if changed:
        raise SystemExit(
            f"benchmark: error: uncommitted changes in {', '.join(changed)}; each cell clones the "
            "last commit and would not see them: commit or stash them first"
        )
    check_protocol()
    spread(names, args, repro)


def spread(names: list[str], args, repro: list[str]) -> None:
    from mnistbench.protocol import load_protocol

    train = load_protocol(PROTOCOL).train
    target = ray_grid.target_for("benchmark", args.address, args.git_remote)
    jobs = [
        ray_grid.Job(
            name,
            "stage",
            targets=(f"{PIPELINE}:{name}",),
            edits=((PROTOCOL, "jobs", 1),),
            cpus=train["threads"],
            gpus=1 if train["device"] == "cuda" else 0,
        )
        for name in names
    ]
    try:
        outcomes, interrupted = ray_grid.run_grid(
            jobs, target, args.jobs, args.address or None, lambda line: print(line, flush=True), prog="benchmark"
        )
    except ray_grid.RemoteError as e:
        raise SystemExit(f"benchmark: error: {e}") from None
    except KeyboardInterrupt:  # while Ray started or stopped: no cell was running
        print("benchmark: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finished = sum(1 for o in outcomes if o and o["ok"])
    failed = [f"{job.label}: {o['detail']}" for job, o in zip(jobs, outcomes) if o and not o["ok"]]
    if interrupted or failed:
        print(
            f"\nbenchmark: {finished} of {len(jobs)} cells finished{'; interrupted' if interrupted else ''}; "
            f"they are in DVC's run cache: {RERUN}",
            file=sys.stderr,
        )
        for line in failed:
            print(f"  FAILED {line}", file=sys.stderr)
        raise SystemExit(130 if interrupted else 1)
    print(f"benchmark: every cell finished; here: {' '.join(repro)} {PIPELINE}", flush=True)
    ran = []
    try:
        with subprocess.Popen(
            [ray_grid.dvc_executable(), *repro[1:], PIPELINE],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as process:
            for line in process.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                ran += re.findall(r"Running stage '(?:benchmark/dvc\.yaml:)?((?:cell@|control)[^']*)'", line)
    except KeyboardInterrupt:  # the terminal's Ctrl-C reached dvc too, which stops its stage
        print("benchmark: interrupted; the cells are in DVC's run cache: run it again", file=sys.stderr)
        raise SystemExit(130) from None
    if process.returncode != 0:
        raise SystemExit(
            f"benchmark: error: `{' '.join(repro)} {PIPELINE}` here failed (exit {process.returncode}); "
            "the cells are in DVC's run cache: fix what it says and run it again"
        )
    if ran:  # the run cache missed them: they trained here after all (correct, but not spread)
        print(f"benchmark: warning: trained here, not restored from the run cache: {', '.join(ran)}", file=sys.stderr)
    print(f"benchmark: {len(jobs)} cells on Ray, restored here; the results in benchmark/: commit them")


if __name__ == "__main__":
    main()
