"""`mnistbench benchmark --jobs N [--address]`: the benchmark's cells as Ray tasks, each a real `dvc
repro` of its stage in its own clone, restored here from DVC's run cache; on tiny data, on this
machine and on a two-node Ray cluster that sees the repository only through a bare git remote and a
DVC remote; the same bytes as `dvc repro` alone; Ctrl-C loses no finished cell; bad input refused
before anything runs."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from ruamel.yaml import YAML

from tests.helpers import add_remotes, sh, two_node_cluster
from tests.test_benchmark import TINY, bench_repo, results_bytes, tiny_protocol
from tests.test_grid_ray import grid_processes

pytestmark = pytest.mark.slow
BENCHMARK = [sys.executable, "-m", "commands.benchmark"]
CELLS = [f"cell@{m}-{d}" for m in TINY["model"] for d in TINY["datasets"]] + ["control"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path, env = bench_repo(tmp_path_factory.mktemp("benchmark-ray"))
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "the benchmark, not run yet")
    env.pop("RAY_ADDRESS", None)  # never a cluster a developer's shell points at
    return path, env


def commit_protocol(path, env, message: str, **changes) -> None:
    tiny_protocol(path / "benchmark/params.yaml", **changes)
    sh(path, env, "git", "commit", "-qam", message)


def done_lines(out: str) -> dict[str, str]:
    """cell -> how its task ended ('ran', 'restored from the run cache'), from the progress lines."""
    return dict(re.findall(r"^benchmark: \[\d+/\d+\] (\S+) in [\d.]+ s on \S+: (.+)$", out, re.M))


def restored_here(out: str) -> list[str]:
    return re.findall(r"Stage 'benchmark/dvc.yaml:((?:cell@|control)\S*)' is cached - skipping run", out)


def test_every_cell_trains_in_a_clone_and_lands_here_with_the_bytes_of_dvc_repro(repo):
    path, env = repo
    ray = sh(path, env, *BENCHMARK, "--jobs", "2")
    assert "benchmark: Ray on this machine: 2 CPUs on 1 node(s)" in ray.stdout, ray.stdout
    assert done_lines(ray.stdout) == dict.fromkeys(CELLS, "ran"), ray.stdout  # every cell trained on Ray ...
    assert sorted(restored_here(ray.stdout)) == sorted(CELLS), ray.stdout  # ... and none here: restored
    assert "Running stage 'benchmark/dvc.yaml:compare'" in ray.stdout and "warning" not in ray.stderr
    assert ray.stdout.rstrip().endswith(
        f"benchmark: {len(CELLS)} cells on Ray, restored here; the results in benchmark/: commit them"
    )
    on_ray = results_bytes(path)
    assert all(f"benchmark/metrics/{c.removeprefix('cell@')}.json" in on_ray for c in CELLS)

    forced = sh(path, env, "dvc", "repro", "-f", "benchmark/dvc.yaml")  # every cell trained here, 2 seeds at once
    assert all(f"Running stage 'benchmark/dvc.yaml:{c}'" in forced.stdout for c in CELLS)
    assert results_bytes(path) == on_ray  # clones, one seed at a time: the same bytes
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "the benchmark's results")

    again = sh(path, env, *BENCHMARK, "--jobs", "2")
    assert done_lines(again.stdout) == dict.fromkeys(CELLS, "restored from the run cache"), again.stdout
    assert results_bytes(path) == on_ray and sh(path, env, "git", "status", "--porcelain").stdout == ""


@pytest.mark.parametrize(
    "args, env_change, message",
    [
        (["--jobs", "0"], {}, "--jobs 0: must be at least 1"),
        (
            ["--jobs", "2"],
            {"DATA_MIRROR": "kmnist-less"},
            "benchmark: error: benchmark/params.yaml: datasets lists 'mnist' but no folder in DATA_MIRROR=kmnist-less",
        ),
        (["--address", "127.0.0.1:9"], {}, "benchmark: error: no Ray cluster answers at 127.0.0.1:9"),
        (["--address", "auto", "--git-remote", "nowhere"], {}, "benchmark: error: no git remote 'nowhere'"),
    ],
)
def test_bad_input_is_one_line_before_any_cell_runs(repo, args, env_change, message):
    path, env = repo
    before = results_bytes(path)
    refused = sh(path, {**env, **env_change}, *BENCHMARK, *args, check=False)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode != 0 and message in lines[-1], refused.stderr
    assert len(lines) == 1 or lines[0].startswith("usage:")  # argparse's errors follow its usage
    assert "Ray" not in refused.stdout and results_bytes(path) == before


def test_uncommitted_changes_are_refused_the_cells_would_not_see_them(repo):
    path, env = repo
    protocol = path / "benchmark/params.yaml"
    text = protocol.read_text()
    protocol.write_text(text.replace("lr: 0.001", "lr: 0.002"))
    try:
        refused = sh(path, env, *BENCHMARK, "--jobs", "2", check=False)
        assert refused.returncode == 1 and refused.stderr.startswith(
            "benchmark: error: uncommitted changes in benchmark/params.yaml; each cell clones the last commit"
        ), refused.stderr
    finally:
        protocol.write_text(text)


def test_cells_on_cuda_need_a_gpu_where_ray_runs_them(repo):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: Ray would schedule the cells on it")
    path, env = repo
    commit_protocol(path, env, "cuda", **{"train.device": "cuda"})
    try:
        refused = sh(path, env, *BENCHMARK, "--jobs", "2", check=False)
    finally:
        sh(path, env, "git", "reset", "-q", "--hard", "HEAD~1")
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith(
        "benchmark: error: train.device is cuda, so each run needs 1 GPU, and Ray on this machine has 0"
    ), refused.stderr
    assert "started" not in refused.stdout


def test_ctrl_c_keeps_every_finished_cell_and_leaves_nothing_running(repo):
    path, env = repo
    commit_protocol(path, env, "lr 0.002", **{"train.lr": 0.002})  # every cell must train again
    before = results_bytes(path)
    run = subprocess.Popen(
        [*BENCHMARK, "--jobs", "2"], cwd=path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = []
    for line in run.stdout:  # the first cell finishes; the next ones train on
        lines.append(line)
        if re.match(rf"benchmark: \[\d+/{len(CELLS)}\] \S+ in ", line):
            break
    time.sleep(3)  # the cells started meanwhile are training, not being handed to a worker (a Ray race)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    out = "".join(lines) + out
    assert run.returncode == 130, out + err
    assert re.search(
        rf"benchmark: \d+ of {len(CELLS)} cells finished; interrupted; they are in DVC's run cache", err
    ), err
    deadline = time.monotonic() + 20
    while grid_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert grid_processes() == []  # no dvc, no stage training on in an abandoned clone
    assert results_bytes(path) == before and sh(path, env, "git", "status", "--porcelain").stdout == ""

    finished = [c for c, how in done_lines(out).items() if how == "ran"]
    rerun = sh(path, env, *BENCHMARK, "--jobs", "2")
    how = done_lines(rerun.stdout)
    assert finished and all(how[c] == "restored from the run cache" for c in finished), rerun.stdout
    assert sorted(restored_here(rerun.stdout)) == sorted(CELLS) and results_bytes(path) != before
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "lr 0.002: the results")


def test_a_two_node_cluster_sees_the_repository_only_through_its_git_and_dvc_remotes(repo, tmp_path):
    path, env = repo
    add_remotes(path, env, tmp_path)
    commit_protocol(path, env, "lr 0.02", **{"train.lr": 0.02})
    metrics = {c: (path / f"benchmark/metrics/{c.removeprefix('cell@')}.json").read_text() for c in CELLS}

    with two_node_cluster() as cluster:
        address = ["--jobs", "2", "--address", cluster]
        no_git = sh(path, env, *BENCHMARK, *address, check=False)
        sh(path, env, "git", "push", "-q", "origin", "HEAD:main")
        no_dvc = sh(path, env, *BENCHMARK, *address, check=False)
        sh(path, env, "dvc", "push", "-q")
        ray = sh(path, env, *BENCHMARK, *address)
    assert no_git.returncode == 1 and "is not on the git remote origin: `git push` it first" in no_git.stderr
    assert no_dvc.returncode == 1 and "the default DVC remote" in no_dvc.stderr and "dvc push" in no_dvc.stderr
    assert "2 CPUs on 2 node(s)" in ray.stdout, ray.stdout
    assert done_lines(ray.stdout) == dict.fromkeys(CELLS, "ran"), ray.stdout
    assert "here: dvc repro --pull benchmark/dvc.yaml" in ray.stdout
    assert sorted(restored_here(ray.stdout)) == sorted(CELLS), ray.stdout  # pulled through the DVC remote
    now = {c: (path / f"benchmark/metrics/{c.removeprefix('cell@')}.json").read_text() for c in CELLS}
    assert any(json.loads(now[c]) != json.loads(metrics[c]) for c in CELLS)  # lr 0.02: its results, here
    lock = YAML(typ="safe").load((path / "benchmark/dvc.lock").read_text())["stages"]
    assert all(lock[c]["params"]["benchmark/params.yaml"]["train"]["lr"] == 0.02 for c in CELLS)
    assert "benchmark/dvc.yaml" not in sh(path, env, "dvc", "status", "benchmark/dvc.yaml").stdout  # up to date
