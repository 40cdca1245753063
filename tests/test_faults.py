"""Faults: a stage killed or interrupted mid-way, a write the OS refuses. The previous outputs
must survive intact (or there are none), nothing half-written may stay, the error is one line."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mnistbench import data, files
from tests.helpers import ROOT, set_params

TRAIN_ARGS = [
    "--data",
    "data/prepared",
    "--model",
    "models/model.pt",
    "--metrics",
    "metrics/train.json",
    "--live",
    "dvclive",
    "--run-info",
    "metrics/run_info.json",
    "--time",
    "timings/train.json",
]
PREVIOUS = b"previous model, must survive"


@pytest.fixture
def workspace(tmp_path, mirror):
    """A stage's working folder: params.yaml, prepared tiny data, and a previous model.pt."""
    root, pinned = mirror
    train_images, train_labels, test_images, test_labels = data.fetch(tmp_path / "raw", [str(root)], pinned)
    train, val = data.split(train_images, train_labels, val_size=50, seed=0)
    for name, split in (("train", train), ("val", val), ("test", {"images": test_images, "labels": test_labels})):
        data.save_split(tmp_path / "data/prepared" / f"{name}.pt", split["images"], split["labels"])
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    set_params(tmp_path / "params.yaml", train__device="cpu", train__epochs=100_000)  # runs until stopped
    (tmp_path / "models").mkdir()
    (tmp_path / "models/model.pt").write_bytes(PREVIOUS)
    return tmp_path


def start_train(workspace: Path, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "stages.train", *TRAIN_ARGS],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for_first_epoch(process: subprocess.Popen) -> None:
    line = process.stdout.readline()
    assert line.startswith("epoch"), line + process.stderr.read()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def test_sigkill_mid_training_leaves_the_previous_model(workspace):
    process = start_train(workspace)
    wait_for_first_epoch(process)
    process.kill()
    process.wait(timeout=30)
    assert (workspace / "models/model.pt").read_bytes() == PREVIOUS
    assert not (workspace / "metrics").exists() and leftovers(workspace) == []


def test_ctrl_c_mid_training_stops_with_one_line_and_writes_nothing(workspace):
    process = start_train(workspace)
    wait_for_first_epoch(process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert stderr.strip().splitlines() == [
        "train: interrupted; outputs already written are complete, the rest were not written"
    ]
    assert (workspace / "models/model.pt").read_bytes() == PREVIOUS
    assert not (workspace / "metrics").exists() and leftovers(workspace) == []


def _limit_file_size():
    # The kernel then refuses any write past 100 KB with EFBIG, as a full disk refuses with ENOSPC.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))


def test_a_write_the_os_refuses_gives_one_line_and_keeps_the_previous_file(workspace):
    set_params(workspace / "params.yaml", train__epochs=1)  # the checkpoint (~430 KB) is over the limit
    process = start_train(workspace, preexec_fn=_limit_file_size)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    lines = stderr.strip().splitlines()
    assert lines == [
        "train: error: cannot write models/model.pt: file too large; a file-size limit is set "
        "(ulimit -f): raise it, then rerun"
    ]
    assert (workspace / "models/model.pt").read_bytes() == PREVIOUS
    assert leftovers(workspace) == []


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")

    def refuse(*_):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError, match="Read-only"):
        files.write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_a_temp_left_by_a_killed_writer_is_swept_by_the_next_write(tmp_path):
    (tmp_path / ".model.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".other.pt.abc123.tmp").write_bytes(b"not ours to remove")
    files.write_bytes(tmp_path / "model.pt", b"whole")
    assert (tmp_path / "model.pt").read_bytes() == b"whole"
    assert leftovers(tmp_path) == [".other.pt.abc123.tmp"]


@pytest.mark.parametrize(
    "errno_, step",
    [
        (28, "write"),
        (28, "fsync"),
        (30, "mkstemp"),
        (13, "mkstemp"),
        (30, "replace"),
    ],
)
def test_an_output_the_os_refuses_at_any_step_is_a_write_error_naming_it_and_leaves_no_temp(
    tmp_path, monkeypatch, errno_, step
):
    """ENOSPC (28), EROFS (30) or EACCES (13) wherever it strikes: the previous file stays, no temp
    file is left, and the error names the output (its temp file's name is no use to anyone)."""
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")

    def refuse(*args, **kwargs):
        raise OSError(errno_, os.strerror(errno_))

    if step == "write":
        real = os.fdopen

        class Full:
            def __init__(self, fd, mode):
                self.file = real(fd, mode)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.file.close()

            def write(self, data):
                refuse()

        monkeypatch.setattr(files.os, "fdopen", Full)
    else:
        monkeypatch.setattr(files.tempfile if step == "mkstemp" else files.os, step, refuse)
    with pytest.raises(files.WriteError) as refused:
        files.write_bytes(target, b"new")
    assert refused.value.errno == errno_ and refused.value.filename == str(target)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "errno_, says",
    [
        (28, "cannot write models/model.pt: no space left on device; free space and rerun"),
        (
            30,
            "cannot write models/model.pt: read-only file system; the file system is read-only: remount it "
            "read-write, or run where the outputs can be written",
        ),
        (13, "cannot write models/model.pt: permission denied; make the folder writable for this user, then rerun"),
    ],
)
def test_the_one_line_for_a_refused_output_says_what_to_do(errno_, says):
    from mnistbench.entry import os_error

    assert os_error(files.WriteError(errno_, os.strerror(errno_), "models/model.pt")) == says


WITHOUT_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]  # root, bound by file modes


def can_drop_the_override() -> bool:
    return subprocess.run([*WITHOUT_OVERRIDE, sys.executable, "-c", "pass"], capture_output=True).returncode == 0


@pytest.mark.skipif(
    os.geteuid() != 0 or not can_drop_the_override(),
    reason="needs root and setpriv (util-linux) to run the stage without CAP_DAC_OVERRIDE",
)
def test_a_folder_the_stage_may_not_write_is_one_line_and_the_previous_model_stays(workspace):
    """EACCES, for real: the train stage without root's override of file modes, models/ read-only
    to it (another user's, mode 555)."""
    set_params(workspace / "params.yaml", train__epochs=1)
    os.chown(workspace / "models", 65534, 65534)
    os.chmod(workspace / "models", 0o555)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.run(
        [*WITHOUT_OVERRIDE, sys.executable, "-m", "stages.train", *TRAIN_ARGS],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 1
    assert process.stderr.strip().splitlines() == [
        "train: error: cannot write models/model.pt: permission denied; make the folder writable for this user, "
        "then rerun"
    ]
    assert (workspace / "models/model.pt").read_bytes() == PREVIOUS and leftovers(workspace) == []
