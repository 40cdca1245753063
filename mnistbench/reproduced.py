"""Did a rerun reproduce the committed results? Compares the workspace with a git revision.

    python -m mnistbench.reproduced [--rev HEAD]    # exit 0: same bytes; 1: differs (listed)

Results are dvc.lock and everything under metrics/, plots/ and dvclive/, to the byte, except the
measurements under metrics/time/ (training time, latency), which no two runs share. In dvc.lock
the measured files' own entries (their md5 and size) are left out of the comparison; every other
line, every other stage's hashes included, must be identical.
"""

from __future__ import annotations

import argparse
import subprocess

from ruamel.yaml import YAML

from mnistbench.cli import run_command

MEASURED = "metrics/time/"
RESULTS = ("metrics", "plots", "dvclive")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def results_only(lock_text: str) -> dict:
    """dvc.lock as data, without the entries of measured outputs."""
    lock = YAML(typ="safe", pure=True).load(lock_text) or {}
    for stage in (lock.get("stages") or {}).values():
        stage["outs"] = [out for out in stage.get("outs", []) if not str(out.get("path", "")).startswith(MEASURED)]
    return lock


def differences(rev: str = "HEAD") -> list[str]:
    """What differs between `rev` and the workspace, as lines for a person; empty when reproduced."""
    changed = [line for line in _git("status", "--porcelain", "--untracked-files=all", "--", *RESULTS).splitlines()
               if not line[3:].startswith(MEASURED)]
    changed = [f"{line[3:]} ({'new' if line.startswith('??') else 'changed'})" for line in changed]
    changed += [f"{path} (changed)" for path in _git("diff", "--name-only", rev, "--", *RESULTS).splitlines()
                if not path.startswith(MEASURED) and f"{path} (changed)" not in changed]
    committed = _git("show", f"{rev}:dvc.lock")
    with open("dvc.lock") as f:
        if results_only(committed) != results_only(f.read()):
            changed.append("dvc.lock (changed beyond the measured entries)")
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision holding the expected results (default HEAD)")
    args = parser.parse_args()
    changed = differences(args.rev)
    if changed:
        print("reproduced: FAIL: results differ from " + args.rev + ":\n  " + "\n  ".join(changed))
        raise SystemExit(1)
    print(f"reproduced: dvc.lock, metrics/, plots/ and dvclive/ match {args.rev} byte for byte (measurements under {MEASURED} aside)")


if __name__ == "__main__":
    run_command("reproduced", main)
