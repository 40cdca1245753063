"""The faults battery, measured: how long each long stage takes to end after a fault, and what is left.

    python -m lab.faults              # about 3 minutes here; --rounds 3 for medians of 3
    python -m lab.faults --rounds 3

Runs the scenarios tests/test_fault_battery.py asserts (tests/faults.py: SIGKILL, SIGTERM, Ctrl-C
to the process group, SIGTERM to dvc, a worker killed; train, evaluate and the replicates, MLP and
CNN) in a temporary repository on tiny data, and records for each the seconds from the fault to
dvc's exit and to the last process's, the processes left after 2 s and the temp files left, and
whether the restore command (or the next `dvc repro`) brought the committed bytes back. Writes
lab/records/faults.json; docs/robustness.md renders it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path

from lab import record, render
from mnistbench.entry import RESTORE, run_command
from tests import faults
from tests.helpers import e2e_repo, set_params, sh, workspace_bytes


def scenario(path: Path, env: dict, committed: dict, case: str, fault: str) -> dict:
    params = (path / "params.yaml").read_text()
    set_params(path / "params.yaml", **dict(faults.LONG[case]))
    try:
        result = faults.run(path, env, faults.Scenario(case.split(",")[0], fault))
    finally:
        (path / "params.yaml").write_text(params)
    restore = faults.restore_command(result.lines)
    if restore:
        subprocess.run(restore, shell=True, cwd=path, env=env, capture_output=True)
    else:
        sh(path, env, "dvc", "repro")
    back = workspace_bytes(path) == committed
    if not back:  # put it back for the next scenario, whatever happened
        subprocess.run(f"git checkout HEAD -- params.yaml && {RESTORE}", shell=True, cwd=path, env=env)
    return {
        "seconds_to_exit": result.seconds_to_exit,
        "seconds_to_clean": result.seconds_to_clean,
        "processes": result.processes,
        "left": len(result.left),
        "temp_files": len(result.temp_files),
        "restored_by": "its restore command" if restore else "the next dvc repro",
        "bytes_back": back,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="each scenario this many times; medians (default 1)")
    parser.add_argument(
        "--shell",
        default="/bin/sh",
        help="the SHELL dvc runs stages with (default /bin/sh: dash on Debian, which stays between dvc and the stage)",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="mnistbench-faults-") as base:
        path, env, _ = e2e_repo(Path(base))
        env = dict(env, SHELL=args.shell)
        sh(path, env, "git", "add", "-A")
        sh(path, env, "git", "commit", "-qm", "the first dvc repro")
        committed = workspace_bytes(path)
        rows = []
        for case, fault in faults.CASES:
            runs = [scenario(path, env, committed, case, fault) for _ in range(args.rounds)]
            rows.append(
                {
                    "stage": case,
                    "fault": fault,
                    **runs[-1],
                    "seconds_to_exit": statistics.median(r["seconds_to_exit"] for r in runs),
                    "seconds_to_clean": statistics.median(r["seconds_to_clean"] for r in runs),
                    "left": max(r["left"] for r in runs),
                    "temp_files": max(r["temp_files"] for r in runs),
                    "bytes_back": all(r["bytes_back"] for r in runs),
                }
            )
            print(f"faults: {case}: {fault}: {rows[-1]['seconds_to_clean']:.2f} s, {rows[-1]['left']} left", flush=True)
    path = record.write(
        "faults", {"rounds": args.rounds, "shell": args.shell, "grace_seconds": faults.GRACE, "rows": rows}
    )
    print(render.faults(record.load("faults")))
    print(f"faults: {path}")


if __name__ == "__main__":
    run_command("faults", main)
