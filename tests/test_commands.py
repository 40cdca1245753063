"""The commands (`mnistbench <command>`, commands/) on a user's mistakes: one line on stderr naming
what is wrong and what to do, exit 1 (2 for a bad argument, and for gate, which cannot decide),
never a traceback, nothing written. The lab's commands have the same tests in lab/tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mnistbench import data
from mnistbench.entry import out_of_memory
from tests.helpers import ROOT, set_params, synthetic_digits

BAD_PARAMS = "params.yaml: train.lr = 'abc': must be a number, e.g. 0.001 or 1e-3"
NO_GIT = "exited 128: fatal: not a git repository"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

CASES = [  # the command and its arguments, what is wrong, the end of its one line
    (["gate"], "params", BAD_PARAMS),
    (["reproduced"], "git", NO_GIT),
    (["plots-template"], "git", "no dvc.yaml here: run this in the repository's root"),
    (["leaderboard"], "git", "ERROR: you are not inside of a DVC repository"),
    (["grid", "-S", "train.lr=0.1,0.2"], "git", "no commit yet"),
    (["benchmark", "--jobs", "2"], "git", "no benchmark/dvc.yaml here: run it from the repository's root"),
]


def run(command: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    """`mnistbench <command>` as a user types it (the console script's code: python -m commands)."""
    return subprocess.run(
        [sys.executable, "-m", "commands", *command],
        cwd=cwd,
        env={**ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command, fault, says", CASES, ids=[f"{c[0]}-{f}" for c, f, _ in CASES])
def test_a_command_on_bad_input_says_one_line_and_writes_nothing(tmp_path, command, fault, says):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")  # a folder that is no git repository, no data
    if fault == "params":
        set_params(tmp_path / "params.yaml", train__lr="abc")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run(command, tmp_path, DATA_MIRROR=str(tmp_path / "no-mirror"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == (2 if command[0] in ("gate", "reproduced") else 1), result.stderr  # 2: cannot tell
    assert len(lines) == 1 and lines[0].startswith(f"{command[0]}: error: ") and says in lines[0], result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_every_command_has_help_and_an_unknown_one_lists_them(tmp_path):
    from commands.__main__ import COMMANDS

    listing = run(["--help"], tmp_path)
    assert listing.returncode == 0 and all(f"  {name} " in listing.stdout for name in COMMANDS)
    for name in COMMANDS:
        shown = run([name, "--help"], tmp_path)
        assert shown.returncode == 0 and shown.stdout.startswith(f"usage: mnistbench {name} "), shown.stderr
    unknown = run(["gaet"], tmp_path)
    assert unknown.returncode == 1 and unknown.stderr.strip() == (
        f"mnistbench: error: no command 'gaet'; the commands: {', '.join(COMMANDS)}"
    )


def tiny_prepared(folder):
    """train.pt and val.pt of a few synthetic digits, as the prepare stage writes them."""
    folder.mkdir()
    for split, n, seed in (("train", 96, 1), ("val", 40, 2)):
        data.save_split(folder / f"{split}.pt", *synthetic_digits(n, seed))


def test_a_model_too_large_for_memory_ends_the_train_stage_in_one_line(tmp_path):
    """params.yaml cannot bound memory (validate passes a width of 10^11); the train stage says so
    in one line, not torch's allocator traceback, and writes no model."""
    tiny_prepared(tmp_path / "prepared")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", train__device="cpu", model__mlp__hidden=[100_000_000_000])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.train",
            "--data",
            "prepared",
            "--model",
            "model.pt",
            "--metrics",
            "train.json",
            "--live",
            "live",
            "--run-info",
            "info.json",
            "--time",
            "time.json",
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "train: error: out of memory (313,600.0 GB asked); a smaller model (the widths in model.<arch>) or batch "
        "(train.batch_size, evaluate.batch_size) needs less"
    ], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "prepared"]


def test_out_of_memory_is_told_from_other_errors():
    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name: CUDA's, where torch has no CUDA
        pass

    cuda = OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.2 GiB")
    assert out_of_memory(cuda) == " (2.00 GiB asked)"
    assert out_of_memory(MemoryError()) == ""
    assert (
        out_of_memory(
            RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 2500000000 bytes.")
        )
        == " (2.5 GB asked)"
    )
    assert out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None


def test_an_output_path_that_is_a_folder_is_refused_in_one_line(tmp_path):
    """It failed in os.replace with a traceback that named the temporary file (leaderboard --output metrics)."""
    from mnistbench.files import write_text

    (tmp_path / "metrics").mkdir()
    with pytest.raises(IsADirectoryError) as refused:
        write_text(tmp_path / "metrics", "| table |\n")
    assert str(refused.value) == f"[Errno 21] is a directory; give a file's path: '{tmp_path / 'metrics'}'"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics"] and not list((tmp_path / "metrics").iterdir())
