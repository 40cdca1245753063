"""The lab's commands (`python -m lab.<command>`) on a user's mistakes: one line on stderr naming
what is wrong and what to do, exit 1 (2 for a bad argument), never a traceback, nothing written;
and sweep as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from mnistbench import data
from tests.helpers import ROOT, set_params, synthetic_digits

BAD_PARAMS = "params.yaml: train.lr = 'abc': must be a number, e.g. 0.001 or 1e-3"
NO_DATA = "data/prepared/train.pt: prepared data not found; run `dvc repro` (or `dvc pull`) to make it"
NO_GIT = "exited 128: fatal: not a git repository"

CASES = [  # command and its arguments, what is wrong, the end of its one line
    (["bench"], "params", BAD_PARAMS),
    (["bench_replicates"], "params", BAD_PARAMS),
    (["gate_power"], "params", BAD_PARAMS),
    (["sweep"], "params", BAD_PARAMS),
    (["time_to_accuracy"], "params", BAD_PARAMS),
    (["bench_replicates"], "data", NO_DATA),
    (["gate_power"], "data", NO_DATA),
    (["sweep"], "data", NO_DATA),
    (["bench_grid"], "git", NO_GIT),
]


@pytest.mark.parametrize("command, fault, says", CASES, ids=[f"{c[0]}-{f}" for c, f, _ in CASES])
def test_a_command_on_bad_input_says_one_line_and_writes_nothing(tmp_path, command, fault, says):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")  # a folder that is no git repository, no data
    if fault == "params":
        set_params(tmp_path / "params.yaml", train__lr="abc")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = subprocess.run(
        [sys.executable, "-m", f"lab.{command[0]}", *command[1:]],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LAB_RECORDS": str(tmp_path / "records"),
            "DATA_MIRROR": str(tmp_path / "no-mirror"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"{command[0]}: error: ") and says in lines[0], result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def tiny_prepared(folder):
    """train.pt and val.pt of a few synthetic digits, as the prepare stage writes them."""
    folder.mkdir()
    for split, n, seed in (("train", 96, 1), ("val", 40, 2)):
        data.save_split(folder / f"{split}.pt", *synthetic_digits(n, seed))


BAD_ARGUMENTS = [  # argparse's usage line, then one line naming the argument: exit 2
    (["sweep", "--seeds", "0"], "must be at least 1"),
    (["time_to_accuracy", "--seeds", "1"], "--seeds must be at least 2 (a mean over seeds needs two)"),
    (["sweep", "--epochs", "0"], "must be at least 1"),
    (["bench_replicates", "--seeds", "0"], "must be at least 1"),
    (["bench_replicates", "--jobs", "0"], "must be at least 1"),
    (["bench_replicates", "--rounds", "0"], "must be at least 1"),
    (["bench", "--threads", "0"], "--threads must be at least 1"),
    (
        ["bench_grid", "--runs", "0"],
        "--runs must be at least 1 and --jobs at least 2 (the Ray side runs that many at once)",
    ),
    (
        ["bench_grid", "--jobs", "1"],
        "--runs must be at least 1 and --jobs at least 2 (the Ray side runs that many at once)",
    ),
    (["gate_power", "--significance", "2"], "--significance 2: must lie between 0 and 1, e.g. 0.01"),
    (["gate_power", "--draws", "0"], "--draws and --jobs must be at least 1"),
]


@pytest.mark.parametrize("command, says", BAD_ARGUMENTS, ids=[" ".join(c) for c, _ in BAD_ARGUMENTS])
def test_a_bad_argument_is_refused_before_anything_runs(tmp_path, command, says):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = subprocess.run(
        [sys.executable, "-m", f"lab.{command[0]}", *command[1:]],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LAB_RECORDS": str(tmp_path / "records")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(says), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_gate_power_refuses_a_bad_regression_and_a_corrupt_cache_before_training(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAB_RECORDS": str(tmp_path / "records")}
    run = [sys.executable, "-m", "lab.gate_power"]
    bad = subprocess.run(
        [*run, "--regression", "train.epochs=abc"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "gate_power: error: --regression train.epochs=abc: train.epochs = 'abc': must be an integer"
    ], bad.stderr
    (tmp_path / "cache.json").write_text('{"half-written')
    corrupt = subprocess.run(
        [*run, "--cache", "cache.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert corrupt.returncode == 1 and len(corrupt.stderr.strip().splitlines()) == 1, corrupt.stderr
    assert corrupt.stderr.startswith("gate_power: error: cache.json: not the JSON this command writes (")
    assert (tmp_path / "cache.json").read_text() == '{"half-written'


def test_sweep_prints_each_seeds_validation_curve_and_their_mean_and_min_per_epoch(tmp_path):
    tiny_prepared(tmp_path / "prepared")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", train__device="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "lab.sweep", "--seeds", "2", "--epochs", "3", "--data", "prepared"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LAB_RECORDS": str(tmp_path / "records")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    curves = [[float(a) for a in line.split(": ")[1].split()] for line in lines if line.startswith("seed ")]
    assert [line.split(":")[0] for line in lines if line.startswith("seed ")] == ["seed 0", "seed 1"]
    assert len(curves) == 2 and all(len(c) == 3 and all(0 <= a <= 1 for a in c) for c in curves)
    rows = [line.split(" | ") for line in lines if line[:3] in ("| 1", "| 2", "| 3")]
    assert [int(r[0].strip("| ")) for r in rows] == [1, 2, 3]
    for (_, mean, low), accs in zip(rows, zip(*curves)):
        assert float(mean) == pytest.approx(sum(accs) / 2, abs=1e-4) and float(low.strip(" |")) == min(accs)
