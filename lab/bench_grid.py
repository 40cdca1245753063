"""What Ray buys a grid: the same grid in turn (--jobs 1) and as Ray tasks (--jobs N), one after the other.

    python -m lab.bench_grid                          # 4 runs of the single model (dvc exp run evaluate)
    python -m lab.bench_grid --runs 4 --target all --output bench_grid.md   # whole pipelines

Both sides run `python -m commands.grid` in a scratch clone of HEAD that shares this
repository's DVC cache (the prepared data is checked out, not rebuilt), on `--runs` seeds of the
configuration in params.yaml; each side gets its own seeds, new at each invocation (from the
clock: S+1.. and S+1001.., S = seconds since 1970 × 10,000), so nothing is restored from the run
cache, which the clone shares. The in-turn side goes first. Reports the wall
times, their ratio, Ray's start-up (ray.init, as the grid prints it) and the largest resident
memory of one Ray task's process tree (its Ray worker, `dvc exp run` and the stage's Python),
sampled every 0.5 s, and of Ray's own processes. Needs HEAD's outputs in the DVC cache (`dvc repro`
first) and an idle machine: a second busy process on 2 cores slows both sides many times over.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from lab import record, render
from mnistbench.entry import run_command

RAY_DAEMONS = ("raylet", "gcs_server", "ray/dashboard", "log_monitor", "monitor.py", "runtime_env", "ray_client")


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, resident bytes, command line) of every process readable in /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                rss = int((entry / "statm").read_text().split()[1]) * page
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found[int(entry.name)] = (parent, rss, cmd)
            except (OSError, ValueError, IndexError):
                pass
    return found


class MemorySampler(threading.Thread):
    """Largest resident memory of one Ray task's process tree, and of Ray's own daemons, over the run."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop, self.task_max, self.ray_max = threading.Event(), 0, 0

    def run(self) -> None:
        while not self.stop.wait(0.5):
            procs = _processes()
            children: dict[int, list[int]] = {}
            for pid, (parent, _, _) in procs.items():
                children.setdefault(parent, []).append(pid)

            def tree(pid: int, procs=procs, children=children) -> int:
                return procs[pid][1] + sum(tree(c) for c in children.get(pid, []))

            tasks = [tree(pid) for pid, (_, _, cmd) in procs.items() if cmd.startswith("ray::run_in_clone")]
            self.task_max = max([self.task_max, *tasks])
            self.ray_max = max(
                self.ray_max, sum(rss for _, rss, cmd in procs.values() if any(d in cmd for d in RAY_DAEMONS))
            )


def side(clone: Path, jobs: int, seeds: list[int], target: str | None, env: dict) -> tuple[float, str]:
    command = [
        sys.executable,
        "-m",
        "commands.grid",
        "--jobs",
        str(jobs),
        "-S",
        "train.seed=" + ",".join(map(str, seeds)),
    ]
    command += ["--target", target] if target else []
    print("bench_grid: " + " ".join(command[1:]), flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(
            f"bench_grid: error: the grid failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="runs per side (default 4)")
    parser.add_argument("--jobs", type=int, default=2, help="the Ray side's --jobs (default 2: this machine's cores)")
    parser.add_argument(
        "--target",
        default="evaluate",
        help="stage each run goes up to (default evaluate: the single model; all: the whole pipeline)",
    )
    args = parser.parse_args()
    if args.runs < 1 or args.jobs < 2:
        parser.error("--runs must be at least 1 and --jobs at least 2 (the Ray side runs that many at once)")
    args.target = None if args.target == "all" else args.target
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    cache = subprocess.run(["dvc", "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    scratch = Path(tempfile.mkdtemp(prefix="mnistbench-bench-grid-"))
    try:
        clone = scratch / "repo"
        subprocess.run(["git", "clone", "-q", ".", str(clone)], check=True)
        for command in (
            ["git", "checkout", "-q", head],
            ["dvc", "cache", "dir", "--local", os.path.abspath(cache)],
            ["dvc", "checkout", "-q"],
        ):
            subprocess.run(command, cwd=clone, env=env, check=True, capture_output=True)
        base = int(time.time()) * 10_000
        in_turn, _ = side(clone, 1, [base + 1 + i for i in range(args.runs)], args.target, env)
        sampler = MemorySampler()
        sampler.start()
        on_ray, out = side(clone, args.jobs, [base + 1001 + i for i in range(args.runs)], args.target, env)
        sampler.stop.set()
        sampler.join()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ready = re.search(r"ready in ([\d.]+) s", out)
    figures = {
        "runs": args.runs,
        "jobs": args.jobs,
        "target": args.target,
        "in_turn_seconds": in_turn,
        "ray_seconds": on_ray,
        "speedup": in_turn / on_ray,
        "ray_start_seconds": float(ready.group(1)) if ready else None,
        "task_max_mib": sampler.task_max / 2**20,
        "ray_max_mib": sampler.ray_max / 2**20,
    }
    path = record.write("bench_grid", figures)
    print(render.bench_grid(record.load("bench_grid")))
    print(f"bench_grid: {path}")


if __name__ == "__main__":
    run_command("bench_grid", main)
