"""Did a rerun reproduce the committed results? Compares the workspace with a git revision.

    mnistbench reproduced [--rev HEAD]    # exit 0: same bytes; 1: differs (listed)

Results are dvc.lock and everything under metrics/, plots/ and dvclive/ (and, for each further
pipeline of the repository, its dvc.lock and its metrics/ and plots/), to the byte: measured
times are not results, and the stages write them to timings/, outside git and dvc.lock.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from mnistbench.entry import run_command

RESULTS = ("dvc.lock", "metrics", "plots", "dvclive")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def results() -> list[str]:
    """The paths holding results: this pipeline's, and those of each dvc.yaml in a folder below."""
    found = list(RESULTS)
    for pipeline in sorted(Path(".").glob("*/dvc.yaml")):
        folder = pipeline.parent.as_posix()
        found += [f"{folder}/dvc.lock", f"{folder}/metrics", f"{folder}/plots"]
    return found


def differences(rev: str = "HEAD") -> list[str]:
    """What differs between `rev` and the workspace, as lines for a person; empty when reproduced."""
    paths = results()
    changed = [
        f"{line[3:]} ({'new' if line.startswith('??') else 'changed'})"
        for line in _git("status", "--porcelain", "--untracked-files=all", "--", *paths).splitlines()
    ]
    changed += [
        f"{path} (changed)"
        for path in _git("diff", "--name-only", rev, "--", *paths).splitlines()
        if f"{path} (changed)" not in changed
    ]
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision holding the expected results (default HEAD)")
    args = parser.parse_args()
    changed = differences(args.rev)
    if changed:
        print("reproduced: FAIL: results differ from " + args.rev + ":\n  " + "\n  ".join(changed))
        raise SystemExit(1)
    print(f"reproduced: {', '.join(results())} match {args.rev} byte for byte")


if __name__ == "__main__":
    run_command("reproduced", main)
