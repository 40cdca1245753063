"""The faults battery: each long stage (train, evaluate, replicates) under a real `dvc repro` on tiny
data, a fault injected mid-run (tests/faults.py), and after it: no process of the run alive two
seconds later (by process id), dvc ended within two seconds of a signal, no temp file left, the one
line the stage printed, and the workspace back to the committed bytes, by the printed restore
command or by the next `dvc repro`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mnistbench.entry import RESTORE
from tests import faults
from tests.faults import CASES, LONG, Scenario
from tests.helpers import e2e_repo, set_params, sh, workspace_bytes

pytestmark = pytest.mark.slow

SAYS = {  # how the stage's one line starts: a stage still importing says "... while starting; it wrote nothing"
    "sigterm the stage": "{stage}: terminated (SIGTERM)",
    "sigterm dvc": "{stage}: terminated (SIGTERM)",
    "sigint to the group": "{stage}: interrupted",
    "kill a worker": "{stage}: error: a worker process died before seeds [",
}
THEN = ("; outputs already written are complete, the rest were not written", " while starting; it wrote nothing")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path, env, _ = e2e_repo(tmp_path_factory.mktemp("faults"))
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "the first dvc repro")
    return path, env, workspace_bytes(path)


# DVC runs a stage as `$SHELL -c '<cmd>'`, /bin/sh where SHELL is unset (cron, systemd, containers, CI
# runners). Debian's /bin/sh is dash, which forks the command and waits instead of exec'ing it, so a
# shell stands between dvc and the stage: every case runs so; bash, which execs it, is checked too.
SHELLED = [(c, f, "/bin/sh") for c, f in CASES] + [
    ("train", "sigterm dvc", "/bin/bash"),
    ("replicates", "kill a worker", "/bin/bash"),
]


@pytest.mark.parametrize("case, fault, shell", SHELLED, ids=[f"{c}: {f} ({Path(s).name})" for c, f, s in SHELLED])
def test_a_fault_mid_stage_leaves_nothing_running_nothing_half_written_and_the_committed_bytes_back(
    repo, case, fault, shell
):
    path, env, committed = repo
    env = dict(env, SHELL=shell)
    stage = case.split(",")[0]
    params = (path / "params.yaml").read_text()
    set_params(path / "params.yaml", **dict(LONG[case]))
    try:
        result = faults.run(path, env, Scenario(stage, fault))
    except BaseException:  # put the shared repository back for the next case
        subprocess.run(f"git checkout HEAD -- params.yaml && {RESTORE}", shell=True, cwd=path, env=env)
        raise
    finally:
        (path / "params.yaml").write_text(params)  # the user's edit, undone by the user

    assert result.left == set(), f"processes of the run still alive {faults.GRACE} s after the fault: {result.left}"
    assert result.seconds_to_exit <= faults.GRACE and result.seconds_to_clean <= faults.GRACE, result
    assert result.temp_files == []
    assert result.returncode != 0
    if fault in SAYS:
        said = SAYS[fault].format(stage=stage)
        assert any(
            line.startswith(said) and (fault == "kill a worker" or line[len(said) :] in THEN) for line in result.lines
        ), result.lines
        assert faults.restore_command(result.lines) == RESTORE, result.lines  # the stage's own hint
    if fault in ("sigkill the stage", "kill a worker"):  # no hint from a killed process: the next repro mends it
        again = sh(path, env, "dvc", "repro")  # runs the stage again, or restores it from DVC's run cache
        assert f"Running stage '{stage}'" in again.stdout or f"Stage '{stage}' is cached" in again.stdout
    else:
        subprocess.run(
            faults.restore_command(result.lines), shell=True, cwd=path, env=env, check=True, capture_output=True
        )
    assert workspace_bytes(path) == committed
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout


@pytest.fixture
def mountable(tmp_path):
    if not faults.can_mount(tmp_path):
        pytest.skip("needs to mount a tmpfs (root with CAP_SYS_ADMIN) for a full or read-only disk")


@pytest.mark.parametrize(
    "options, says",
    [
        ("size=64k", "no space left on device; free space and rerun"),
        (
            "ro",
            "read-only file system; the file system is read-only: remount it read-write, or run where the "
            "outputs can be written",
        ),
    ],
)
def test_a_full_or_read_only_disk_under_the_model_is_one_line_naming_it(repo, mountable, options, says):
    path, env, committed = repo
    params = (path / "params.yaml").read_text()
    set_params(path / "params.yaml", train__seed=7)  # train reruns, and writes models/model.pt
    try:
        with faults.mounted(path / "models", options):
            ran = sh(path, env, "dvc", "repro", "train", check=False)
            left = [p.name for p in (path / "models").iterdir()]
    finally:
        (path / "params.yaml").write_text(params)
    assert ran.returncode != 0
    lines = (ran.stdout + ran.stderr).splitlines()
    assert f"train: error: cannot write models/model.pt: {says}" in lines, lines
    assert faults.restore_command(lines) == RESTORE
    assert not any(name.endswith(".tmp") for name in left), left
    subprocess.run(RESTORE, shell=True, cwd=path, env=env, check=True, capture_output=True)
    assert workspace_bytes(path) == committed
