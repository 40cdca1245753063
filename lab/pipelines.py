"""What each pipeline costs: `dvc repro -f` of the main pipeline and of the benchmark, timed here.

    DATA_MIRROR=../shared/datasets:/usr/share/datasets python -m lab.pipelines   # about 12 minutes here
    python -m lab.pipelines --only main

Runs in this workspace, as a user would (`dvc repro -f dvc.yaml`, then `dvc repro -f
benchmark/dvc.yaml`), so it also rewrites their outputs: the same bytes, as CI checks. Records the
wall time of each, each stage's training time (the stages write them to timings/), and each
benchmark cell's share of the benchmark's training. Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from lab import record
from mnistbench.entry import run_command

PIPELINES = {"main": "dvc.yaml", "benchmark": "benchmark/dvc.yaml"}


def timed(pipeline: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(["dvc", "repro", "-f", pipeline], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pipelines: error: `dvc repro -f {pipeline}` failed: {done.stderr.strip()[-500:]}")
    return round(time.perf_counter() - started, 1)


def stage_seconds(folder: Path) -> dict[str, float]:
    return {
        p.stem: json.loads(p.read_text())["train_seconds"]
        for p in sorted(folder.glob("*.json"))
        if "train_seconds" in json.loads(p.read_text())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(PIPELINES), help="time one pipeline (default: both)")
    args = parser.parse_args()
    if not Path("dvc.yaml").is_file():
        raise SystemExit("pipelines: error: no dvc.yaml here: run this in the repository's root")
    figures = {}
    if args.only:  # the other pipeline's figures stay as last measured
        try:
            figures = {k: v for k, v in record.load("pipelines")["figures"].items() if k != args.only}
        except record.RecordError:
            pass
    for name, pipeline in PIPELINES.items():
        if args.only in (None, name):
            print(f"pipelines: dvc repro -f {pipeline} ...", file=sys.stderr, flush=True)
            figures[name] = {"seconds": timed(pipeline)}
    if "main" in figures:
        figures["main"]["stages"] = stage_seconds(Path("timings"))
    if "benchmark" in figures:
        cells = stage_seconds(Path("timings/benchmark"))
        total = sum(cells.values())
        figures["benchmark"]["cells"] = {
            name: {"seconds": s, "share": round(s / total, 3)} for name, s in cells.items()
        }
    path = record.write("pipelines", figures)
    print(json.dumps(figures, indent=1))
    print(f"pipelines: {path}")


if __name__ == "__main__":
    run_command("pipelines", main)
