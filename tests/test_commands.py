"""The `python -m mnistbench.<command>` tools on a user's mistakes: one line on stderr naming what
is wrong and what to do, exit 1 (2 for a bad argument, and for check, which cannot decide), never a
traceback, nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, set_params

BAD_PARAMS = "params.yaml: train.lr = 'abc': must be a number, e.g. 0.001 or 1e-3"
NO_DATA = "data/prepared/train.pt: prepared data not found; run `dvc repro` (or `dvc pull`) to make it"
NO_GIT = "exited 128: fatal: not a git repository"

CASES = [  # command and its arguments, what is wrong, the end of its one line
    (["bench"], "params", BAD_PARAMS),
    (["bench_replicates"], "params", BAD_PARAMS),
    (["gate_power"], "params", BAD_PARAMS),
    (["sweep"], "params", BAD_PARAMS),
    (["check"], "params", BAD_PARAMS),
    (["bench_replicates"], "data", NO_DATA),
    (["gate_power"], "data", NO_DATA),
    (["sweep"], "data", NO_DATA),
    (["bench_grid"], "git", NO_GIT),
    (["reproduced"], "git", NO_GIT),
    (["plots_page"], "git", "no dvc.yaml here: run this in the repository's root, after `dvc repro`"),
]


@pytest.mark.parametrize("command, fault, says", CASES, ids=[f"{c[0]}-{f}" for c, f, _ in CASES])
def test_a_command_on_bad_input_says_one_line_and_writes_nothing(tmp_path, command, fault, says):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")  # a folder that is no git repository, no data
    if fault == "params":
        set_params(tmp_path / "params.yaml", train__lr="abc")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = subprocess.run([sys.executable, "-m", f"mnistbench.{command[0]}", *command[1:]], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "DATA_MIRROR": str(tmp_path / "no-mirror")},
                            capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == (2 if command[0] == "check" else 1), result.stderr  # check: 2, cannot decide
    assert len(lines) == 1 and lines[0].startswith(f"{command[0]}: error: ") and says in lines[0], result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("command", [["sweep", "--seeds", "0"], ["sweep", "--epochs", "0"],
                                     ["bench_replicates", "--seeds", "0"], ["bench_replicates", "--jobs", "0"]])
def test_a_count_below_one_is_refused_before_anything_runs(tmp_path, command):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = subprocess.run([sys.executable, "-m", f"mnistbench.{command[0]}", *command[1:]], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith("must be at least 1")
