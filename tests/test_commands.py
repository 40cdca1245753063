"""The `python -m mnistbench.<command>` tools on a user's mistakes: one line on stderr naming what
is wrong and what to do, exit 1 (2 for a bad argument, and for check, which cannot decide), never a
traceback, nothing written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, set_params, synthetic_digits
from mnistbench import data
from mnistbench.cli import out_of_memory

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
    (["leaderboard"], "git", "ERROR: you are not inside of a DVC repository"),
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


def tiny_prepared(folder):
    """train.pt and val.pt of a few synthetic digits, as the prepare stage writes them."""
    folder.mkdir()
    for split, n, seed in (("train", 96, 1), ("val", 40, 2)):
        data.save_split(folder / f"{split}.pt", *synthetic_digits(n, seed))


BAD_ARGUMENTS = [  # argparse's usage line, then one line naming the argument: exit 2
    (["sweep", "--seeds", "0"], "must be at least 1"), (["sweep", "--epochs", "0"], "must be at least 1"),
    (["bench_replicates", "--seeds", "0"], "must be at least 1"), (["bench_replicates", "--jobs", "0"], "must be at least 1"),
    (["bench_replicates", "--rounds", "0"], "must be at least 1"), (["bench", "--threads", "0"], "--threads must be at least 1"),
    (["bench_grid", "--runs", "0"], "--runs must be at least 1 and --jobs at least 2 (the Ray side runs that many at once)"),
    (["bench_grid", "--jobs", "1"], "--runs must be at least 1 and --jobs at least 2 (the Ray side runs that many at once)"),
    (["gate_power", "--significance", "2"], "--significance 2: must lie between 0 and 1, e.g. 0.01"),
    (["gate_power", "--draws", "0"], "--draws and --jobs must be at least 1"),
]


@pytest.mark.parametrize("command, says", BAD_ARGUMENTS, ids=[" ".join(c) for c, _ in BAD_ARGUMENTS])
def test_a_bad_argument_is_refused_before_anything_runs(tmp_path, command, says):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = subprocess.run([sys.executable, "-m", f"mnistbench.{command[0]}", *command[1:]], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(says), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_gate_power_refuses_a_bad_regression_and_a_corrupt_cache_before_training(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "mnistbench.gate_power"]
    bad = subprocess.run([*run, "--regression", "train.epochs=abc"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "gate_power: error: --regression train.epochs=abc: train.epochs = 'abc': must be an integer"], bad.stderr
    (tmp_path / "cache.json").write_text('{"half-written')
    corrupt = subprocess.run([*run, "--cache", "cache.json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
    assert corrupt.returncode == 1 and len(corrupt.stderr.strip().splitlines()) == 1, corrupt.stderr
    assert corrupt.stderr.startswith("gate_power: error: cache.json: not the JSON this command writes (")
    assert (tmp_path / "cache.json").read_text() == '{"half-written'


def test_sweep_prints_each_seeds_validation_curve_and_their_mean_and_min_per_epoch(tmp_path):
    tiny_prepared(tmp_path / "prepared")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", train__device="cpu")
    result = subprocess.run([sys.executable, "-m", "mnistbench.sweep", "--seeds", "2", "--epochs", "3", "--data", "prepared"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    curves = [[float(a) for a in line.split(": ")[1].split()] for line in lines if line.startswith("seed ")]
    assert [line.split(":")[0] for line in lines if line.startswith("seed ")] == ["seed 0", "seed 1"]
    assert len(curves) == 2 and all(len(c) == 3 and all(0 <= a <= 1 for a in c) for c in curves)
    rows = [line.split(" | ") for line in lines if line[:3] in ("| 1", "| 2", "| 3")]
    assert [int(r[0].strip("| ")) for r in rows] == [1, 2, 3]
    for (_, mean, low), accs in zip(rows, zip(*curves)):
        assert float(mean) == pytest.approx(sum(accs) / 2, abs=1e-4) and float(low.strip(" |")) == min(accs)


def test_a_model_too_large_for_memory_ends_the_train_stage_in_one_line(tmp_path):
    """params.yaml cannot bound memory (validate passes a width of 10^11); the train stage says so
    in one line, not torch's allocator traceback, and writes no model."""
    tiny_prepared(tmp_path / "prepared")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", train__device="cpu", model__hidden=[100_000_000_000])
    result = subprocess.run([sys.executable, "-m", "stages.train", "--data", "prepared", "--model", "model.pt",
                             "--metrics", "train.json", "--live", "live", "--run-info", "info.json", "--time", "time.json"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "train: error: out of memory (313,600.0 GB asked); a smaller model (model.hidden, model.channels) or batch "
        "(train.batch_size, evaluate.batch_size) needs less"], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "prepared"]


def test_out_of_memory_is_told_from_other_errors():
    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name: CUDA's, where torch has no CUDA
        pass

    cuda = OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.2 GiB")
    assert out_of_memory(cuda) == " (2.00 GiB asked)"
    assert out_of_memory(MemoryError()) == ""
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2500000000 bytes.")) == " (2.5 GB asked)"
    assert out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None


def test_an_output_path_that_is_a_folder_is_refused_in_one_line(tmp_path):
    """It failed in os.replace with a traceback that named the temporary file (leaderboard --output metrics)."""
    from mnistbench.files import write_text

    (tmp_path / "metrics").mkdir()
    with pytest.raises(IsADirectoryError) as refused:
        write_text(tmp_path / "metrics", "| table |\n")
    assert str(refused.value) == f"[Errno 21] is a directory; give a file's path: '{tmp_path / 'metrics'}'"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics"] and not list((tmp_path / "metrics").iterdir())
