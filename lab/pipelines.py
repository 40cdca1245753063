"""What each pipeline costs: `dvc repro -f` of the main pipeline and of the benchmark, timed here.

    DATA_MIRROR=../shared/datasets:/usr/share/datasets python -m lab.pipelines   # about half an hour here
    python -m lab.pipelines --only main

Runs in this workspace, as a user would (`dvc repro -f dvc.yaml`, then `dvc repro -f
benchmark/dvc.yaml`), so it also rewrites their outputs: the same bytes, as CI checks. Records the
wall time and the CPU time of each (every process dvc ran, as the OS counts it: getrusage of the
children), each stage's training time (the stages write them to timings/), and each benchmark
cell's training time, seeds and processes. Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from lab import record
from mnistbench.entry import run_command

PIPELINES = {"main": "dvc.yaml", "benchmark": "benchmark/dvc.yaml"}


def timed(pipeline: str) -> dict[str, float]:
    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    started, cpu_before = time.perf_counter(), cpu()
    done = subprocess.run(["dvc", "repro", "-f", pipeline], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pipelines: error: `dvc repro -f {pipeline}` failed: {done.stderr.strip()[-500:]}")
    return {"seconds": round(time.perf_counter() - started, 1), "cpu_seconds": round(cpu() - cpu_before, 1)}


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
            figures[name] = timed(pipeline)
    if "main" in figures:
        figures["main"]["stages"] = stage_seconds(Path("timings"))
    if "benchmark" in figures:
        cells = {p.stem: json.loads(p.read_text()) for p in sorted(Path("timings/benchmark").glob("*.json"))}
        total = sum(c["train_seconds"] for c in cells.values())
        figures["benchmark"]["cells"] = {
            name: {
                "seconds": c["train_seconds"],
                "share": round(c["train_seconds"] / total, 3),
                "seeds": c["seeds"],
                "processes": min(c["jobs"], c["seeds"]),  # seeds trained at once, one process each
            }
            for name, c in cells.items()
        }
    path = record.write("pipelines", figures)
    print(json.dumps(figures, indent=1))
    print(f"pipelines: {path}")


if __name__ == "__main__":
    run_command("pipelines", main)
