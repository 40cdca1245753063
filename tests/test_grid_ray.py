"""`commands.grid --jobs N [--address]`: the grid's runs as Ray tasks, each a real `dvc exp run` in
its own clone, each back as an experiment of the repository; on this machine, on a two-node Ray
cluster that sees the repository only through a bare git remote and a DVC remote, with a worker
killed mid-run, with two grids at once, and with bad input refused before anything runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import add_remotes, e2e_repo, sh, two_node_cluster

pytestmark = pytest.mark.slow
GRID = [sys.executable, "-m", "commands.grid"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path, env, _ = e2e_repo(tmp_path_factory.mktemp("ray"))
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "baseline")
    env.pop("RAY_ADDRESS", None)  # never a cluster a developer's shell points at
    return path, env


def experiments(path: Path, env: dict) -> dict[str, dict]:
    """name -> {params, metrics} of every experiment of HEAD, as `dvc exp show` sees it."""
    shown = json.loads(sh(path, env, "dvc", "exp", "show", "--json").stdout)
    found = {}
    for node in shown:
        for exp in node.get("experiments") or []:
            for rev in exp["revs"]:
                if not rev.get("error"):
                    found[exp["name"]] = {
                        "params": rev["data"]["params"]["params.yaml"]["data"],
                        "metrics": rev["data"]["metrics"],
                    }
    return found


def tracked_state(path: Path, env: dict) -> str:
    return sh(path, env, "git", "status", "--porcelain").stdout + sh(path, env, "git", "rev-parse", "HEAD").stdout


def test_two_runs_at_once_come_back_as_experiments_and_a_rerun_restores_them(repo):
    path, env = repo
    before, state = set(experiments(path, env)), tracked_state(path, env)
    grid = sh(path, env, *GRID, "--jobs", "2", "-S", "train.lr=0.02,0.03", "-S", "train.epochs=1")
    assert "grid: Ray on this machine: 2 CPUs on 1 node(s)" in grid.stdout
    assert "grid: 2 of 2 run; each finished run is an experiment of this repository" in grid.stdout
    new = {k: v for k, v in experiments(path, env).items() if k not in before}
    assert sorted(v["params"]["train"]["lr"] for v in new.values()) == [0.02, 0.03]
    assert all(v["params"]["train"]["epochs"] == 1 and v["params"]["replicates"]["jobs"] == 1 for v in new.values())
    assert all("accuracy" in v["metrics"]["metrics/test.json"]["data"] for v in new.values())
    assert all(v["metrics"]["metrics/replicates.json"]["data"]["accuracy"]["n"] == 3 for v in new.values())
    assert tracked_state(path, env) == state  # the workspace was never touched

    again = sh(path, env, *GRID, "--jobs", "2", "-S", "train.lr=0.02,0.03", "-S", "train.epochs=1")
    assert again.stdout.count("3 stage(s) restored from the run cache") == 2, (
        again.stdout
    )  # train, evaluate, replicates
    board = sh(path, env, sys.executable, "-m", "commands.leaderboard").stdout
    assert sum("1 ep, batch 64, adam lr 0.02" in line for line in board.splitlines()) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["-S", "train.lrr=0.1"], "grid: error: -S train.lrr=0.1: params.yaml has no key train.lrr"),
        (["-S", "train.lr=0.1,-1"], "grid: error: -S train.lr=-1: params.yaml: train.lr = -1.0: must be > 0.0"),
        (["--address", "127.0.0.1:9", "-S", "train.lr=0.1"], "grid: error: no Ray cluster answers at 127.0.0.1:9"),
        (
            ["--address", "auto", "--git-remote", "nowhere", "-S", "train.lr=0.1"],
            "grid: error: no git remote 'nowhere'",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_run(repo, args, message):
    path, env = repo
    before, state = set(experiments(path, env)), tracked_state(path, env)
    refused = sh(path, env, *GRID, "--jobs", "2", *args, check=False)
    assert refused.returncode != 0 and refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert refused.stderr.startswith(message), refused.stderr
    assert set(experiments(path, env)) == before and tracked_state(path, env) == state


def test_uncommitted_changes_are_refused_the_runs_would_not_see_them(repo):
    path, env = repo
    (path / "mnistbench" / "models.py").write_text((path / "mnistbench" / "models.py").read_text() + "\n# edited\n")
    try:
        refused = sh(path, env, *GRID, "--jobs", "2", "-S", "train.lr=0.1", check=False)
        assert refused.returncode == 1 and "uncommitted changes in mnistbench/models.py" in refused.stderr
        assert "each run clones the last commit" in refused.stderr
    finally:
        sh(path, env, "git", "checkout", "--", "mnistbench/models.py")


def dvc_runs(under: str = "mnistbench-grid-") -> list[tuple[int, int]]:
    """(pid, parent pid) of each `dvc exp run` working in a grid's clone."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"exp" in cmd and b"run" in cmd and under in os.readlink(proc / "cwd"):
                found.append((int(proc.name), int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_killed_worker_is_retried_and_every_run_comes_back_once(repo):
    path, env = repo
    before = set(experiments(path, env))
    grid = subprocess.Popen(
        [*GRID, "--jobs", "2", "-S", "train.seed=11,12", "-S", "train.epochs=3"],
        cwd=path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(dvc_runs()) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    _, worker = dvc_runs()[0]
    os.kill(worker, signal.SIGKILL)  # the Ray worker process running one of the two runs
    out, _ = grid.communicate(timeout=300)
    assert grid.returncode == 0, out
    assert grid_processes() == []  # the killed worker's dvc and stage died with it
    new = {k: v for k, v in experiments(path, env).items() if k not in before}
    assert sorted(v["params"]["train"]["seed"] for v in new.values()) == [11, 12], out  # retried, not doubled
    clones = Path(env.get("TMPDIR") or tempfile.gettempdir())
    assert not list(clones.glob(f"mnistbench-grid-{worker}-*"))  # its clone, which it never removed, is swept


def grid_processes() -> list[int]:
    """Every process (dvc, its stages) still working in a grid's clone."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and "mnistbench-grid-" in os.readlink(proc / "cwd"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_ctrl_c_keeps_the_finished_run_and_leaves_nothing_running(repo):
    path, env = repo
    before, state = set(experiments(path, env)), tracked_state(path, env)
    grid = subprocess.Popen(
        [*GRID, "--jobs", "2", "-S", "train.epochs=1,100000", "-S", "train.seed=31"],
        cwd=path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in grid.stdout:  # the 1-epoch run finishes; the other trains on
        lines.append(line)
        if re.match(r"grid: \[1/2\] \S+ in ", line):
            break
    time.sleep(2)
    grid.send_signal(signal.SIGINT)
    out = "".join(lines) + grid.communicate(timeout=120)[0]
    assert grid.returncode == 130, out
    assert "grid: 1 of 2 run; interrupted" in out, out
    new = {k: v for k, v in experiments(path, env).items() if k not in before}
    assert [v["params"]["train"]["epochs"] for v in new.values()] == [1]
    deadline = time.monotonic() + 20
    while grid_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert grid_processes() == []  # no dvc, no stage training on in an abandoned clone
    assert tracked_state(path, env) == state


def test_two_grids_at_once_both_succeed_and_a_grid_in_turn_refuses_meanwhile(repo):
    path, env = repo
    before = set(experiments(path, env))
    grids = [
        subprocess.Popen(
            [*GRID, "--jobs", "2", "-S", f"train.seed={21 + i},{23 + i}", "-S", "train.epochs=1"],
            cwd=path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    time.sleep(6)  # both past their checks, holding the grid lock
    in_turn = sh(path, env, *GRID, "-S", "train.lr=0.1", check=False)
    outs = [g.communicate(timeout=400)[0] for g in grids]
    assert all(g.returncode == 0 for g in grids), outs
    assert in_turn.returncode == 1 and in_turn.stderr.startswith(
        "grid: error: another grid is running in this repository"
    )
    new = {k: v for k, v in experiments(path, env).items() if k not in before}
    assert sorted(v["params"]["train"]["seed"] for v in new.values()) == [21, 22, 23, 24]


def test_a_two_node_cluster_sees_the_repository_only_through_its_git_and_dvc_remotes(repo, tmp_path):
    path, env = repo
    bare = add_remotes(path, env, tmp_path)
    state = tracked_state(path, env)
    before = set(experiments(path, env))

    with two_node_cluster() as cluster:
        no_git = sh(path, env, *GRID, "--jobs", "2", "--address", cluster, "-S", "train.lr=0.1", check=False)
        sh(path, env, "git", "push", "-q", "origin", "HEAD:main")
        no_dvc = sh(path, env, *GRID, "--jobs", "2", "--address", cluster, "-S", "train.lr=0.1", check=False)
        sh(path, env, "dvc", "push", "-q")
        # a remote the driver reaches and the workers do not: a path relative to the repository
        sh(path, env, "git", "remote", "set-url", "origin", os.path.relpath(bare, path))
        unreachable = sh(path, env, *GRID, "--jobs", "2", "--address", cluster, "-S", "train.lr=0.1", check=False)
        sh(path, env, "git", "remote", "set-url", "origin", str(bare))
        started = time.monotonic()
        grid = sh(
            path,
            env,
            *GRID,
            "--jobs",
            "2",
            "--address",
            cluster,
            "-S",
            "train.lr=0.04,0.05",
            "-S",
            "train.epochs=1",
        )
        print(f"two-node grid of 2 runs: {time.monotonic() - started:.1f} s")
    assert no_git.returncode == 1 and "is not on the git remote origin: `git push` it first" in no_git.stderr, (
        no_git.stderr
    )
    assert no_dvc.returncode == 1 and "the default DVC remote" in no_dvc.stderr and "dvc push" in no_dvc.stderr, (
        no_dvc.stderr
    )
    assert unreachable.returncode == 1 and unreachable.stderr.startswith(
        f"grid: error: cannot clone the git remote {os.path.relpath(bare, path)} from "
    ), unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1
    assert "2 CPUs on 2 node(s)" in grid.stdout and "grid: 2 of 2 run" in grid.stdout, grid.stdout
    new = {k: v for k, v in experiments(path, env).items() if k not in before}
    assert sorted(v["params"]["train"]["lr"] for v in new.values()) == [0.04, 0.05]
    assert all("accuracy" in v["metrics"]["metrics/test.json"]["data"] for v in new.values())
    remote_refs = sh(path, env, "git", "ls-remote", str(bare), "refs/exps/*").stdout
    assert all(name in remote_refs for name in new)  # they travelled through the bare remote
    assert tracked_state(path, env).splitlines()[-1] == state.splitlines()[-1]


def test_a_relative_data_mirror_reaches_the_clones_that_prepare_again(repo):
    """DATA_MIRROR=../shared/datasets is relative to where the grid starts; each Ray run is a clone in
    a temporary folder, where the same words name no folder: the grid passes the roots made absolute."""
    path, env = repo
    relative = {**env, "DATA_MIRROR": os.path.relpath(env["DATA_MIRROR"], path)}
    grid = sh(path, relative, *GRID, "--jobs", "2", "-S", "prepare.val_size=40,60", "-S", "train.epochs=1")
    assert "grid: 2 of 2 run; each finished run is an experiment of this repository" in grid.stdout, grid.stdout
    runs = [v for v in experiments(path, env).values() if v["params"]["prepare"]["val_size"] in (40, 60)]
    assert sorted(v["params"]["prepare"]["val_size"] for v in runs) == [40, 60]
