"""How long each tier of the tests takes: `make test` (README's command, the fast tier) and `make test-slow`.

    python -m lab.tiers             # as long as the two tiers: about 15 minutes here

Runs each tier as its make target does (pytest, its markers from pyproject.toml), in this checkout,
and records its wall time and pytest's counts. The render's own tests are left out of the fast
tier here (a few seconds): they check the docs against the records, this one among them. Time it
on an idle machine.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

from lab import record, render
from mnistbench.entry import run_command

TIERS = {"fast (make test)": [], "slow (make test-slow)": ["-m", "slow"]}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    figures = {}
    for name, markers in TIERS.items():
        print(f"tiers: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                *markers,
                "--ignore=lab/tests/test_render.py",
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", summary)}
        if done.returncode != 0:
            raise SystemExit(f"tiers: error: the {name} tier failed: {summary}")
        figures[name] = {"seconds": round(seconds, 1), **counts}
    path = record.write("tiers", figures)
    print(render.tiers(record.load("tiers")))
    print(f"tiers: {path}")


if __name__ == "__main__":
    run_command("tiers", main)
