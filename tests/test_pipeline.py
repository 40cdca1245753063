"""End to end: the real dvc.yaml, stages and library, run by `dvc` on a tiny mirror in a
temporary git repository. The checksums the pipeline verifies are the tiny files' own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from conftest import ROOT, write_mirror
from mnistbench.reproduced import results_only

pytestmark = pytest.mark.slow

TRACKED = ["dvc.yaml", "params.yaml", ".dvcignore", "stages", "mnistbench"]
OUTPUTS = ["data/prepared/train.pt", "data/prepared/val.pt", "data/prepared/test.pt", "models/model.pt",
           "metrics/train.json", "metrics/run_info.json", "metrics/test.json", "metrics/per_class.json", "plots/history.csv",
           "plots/predictions.csv", "plots/confusion_matrix.png", "plots/classification_report.png",
           "plots/misclassified.png"]
MEASURED = ["metrics/time/train.json", "metrics/time/evaluate.json"]  # times: never the same twice


def sh(repo: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def set_params(path: Path, **values) -> None:
    yaml = YAML()  # round-trip: keeps comments and layout, as a user's edit would
    tree = yaml.load(path.read_text())
    for key, value in values.items():
        section, name = key.split("__")
        tree[section][name] = value
    with open(path, "w") as f:
        yaml.dump(tree, f)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    repo, mirror = base / "repo", base / "mirror"
    repo.mkdir()
    for name in TRACKED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    files = write_mirror(mirror, n_train=300, n_test=100)
    fashion = write_mirror(mirror, n_train=300, n_test=100, dataset="fashion-mnist", seed=5)
    (repo / "mnistbench" / "datasets.json").write_text(json.dumps({name: {
        "train_size": 300, "test_size": 100, "classes": [f"class {c}" for c in range(10)],
        "files": {f.name: {"md5": f.md5, "sha256": f.sha256} for f in pinned}}
        for name, pinned in (("mnist", files), ("fashion-mnist", fashion))}))
    set_params(repo / "params.yaml", prepare__val_size=50, train__epochs=2, train__device="cpu",
               evaluate__misclassified_shown=5)

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DATA_MIRROR=str(mirror), DVC_NO_ANALYTICS="1", GIT_CONFIG_NOSYSTEM="1")
    env.pop("PYTHONPATH", None)  # stages must find the package from the repo root, as for a user
    sh(repo, env, "git", "init", "-q", "-b", "main")
    sh(repo, env, "git", "config", "user.name", "e2e test")
    sh(repo, env, "git", "config", "user.email", "e2e@example.invalid")
    sh(repo, env, "dvc", "init", "-q")
    sh(repo, env, "dvc", "config", "core.analytics", "false")
    sh(repo, env, "dvc", "config", "core.check_update", "false")
    first = sh(repo, env, "dvc", "repro")
    return repo, env, first


def test_repro_runs_all_stages_and_writes_every_output(repo):
    path, _, first = repo
    for stage in ("prepare", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first.stdout
    missing = [out for out in OUTPUTS + MEASURED if not (path / out).is_file()]
    assert not missing
    test_metrics = json.loads((path / "metrics/test.json").read_text())
    assert set(test_metrics) == {"accuracy", "macro_f1", "loss"}
    assert test_metrics["accuracy"] > 0.5  # the synthetic classes are easy; chance is 0.1
    assert (path / "plots/predictions.csv").read_text().count("\n") == 1 + 100
    assert (path / "plots/history.csv").read_text().splitlines()[0] == \
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy"
    assert json.loads((path / "metrics/train.json").read_text())["parameters"] == 109_386
    assert json.loads((path / "metrics/time/train.json").read_text())["train_seconds"] > 0
    assert json.loads((path / "metrics/time/evaluate.json").read_text())["latency_ms_per_image"] > 0


def test_nothing_reruns_when_nothing_changed(repo):
    path, env, _ = repo
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout
    again = sh(path, env, "dvc", "repro")
    assert "Running stage" not in again.stdout


def test_exp_run_with_a_new_lr_reruns_train_and_evaluate_only(repo):
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "baseline")
    exp = sh(path, env, "dvc", "exp", "run", "-S", "train.lr=0.01")
    assert "Running stage 'train'" in exp.stdout and "Running stage 'evaluate'" in exp.stdout
    assert "Running stage 'prepare'" not in exp.stdout
    params = json.loads(sh(path, env, "dvc", "params", "diff", "--json").stdout)
    lr = params["params.yaml"]["train.lr"]
    assert (lr["old"], lr["new"]) == (0.001, 0.01)
    metrics = json.loads(sh(path, env, "dvc", "metrics", "diff", "--json").stdout)
    assert {"metrics/test.json", "metrics/train.json"} <= set(metrics)


def test_exp_run_on_another_dataset_reruns_every_stage_with_its_class_names(repo):
    path, env, _ = repo
    exp = sh(path, env, "dvc", "exp", "run", "-S", "prepare.dataset=fashion-mnist")
    for stage in ("prepare", "train", "evaluate"):
        assert f"Running stage '{stage}'" in exp.stdout
    assert "prepare: fashion-mnist: 250 train, 50 val, 100 test images" in exp.stdout
    params = json.loads(sh(path, env, "dvc", "params", "diff", "--json").stdout)["params.yaml"]
    assert params["prepare.dataset"] == {"old": "mnist", "new": "fashion-mnist"}


def test_grid_runs_every_combination_in_turn_then_puts_the_workspace_back(repo):
    path, env, _ = repo
    refused = sh(path, env, sys.executable, "-m", "mnistbench.grid", "-S", "train.lr=0.02,0.03", check=False)
    assert refused.returncode == 1 and "uncommitted changes in dvc.lock" in refused.stderr
    assert "params.yaml" in refused.stderr and "commit or stash them first" in refused.stderr
    sh(path, env, "git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock", "metrics", "plots")
    sh(path, env, "dvc", "checkout", "-q")

    grid = sh(path, env, sys.executable, "-m", "mnistbench.grid", "-S", "train.lr=0.02,0.03", "-S", "train.epochs=1")
    assert "grid: [1/2] dvc exp run -S train.lr=0.02 -S train.epochs=1" in grid.stdout
    assert "grid: 2 of 2 run; the workspace is back at HEAD" in grid.stdout and "FAILED" not in grid.stdout
    assert sh(path, env, "git", "status", "--porcelain", "--", "params.yaml", "dvc.lock", "metrics", "plots").stdout == ""
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout

    board = sh(path, env, sys.executable, "-m", "mnistbench.leaderboard", "--output", "board.md").stdout
    rows = [line for line in board.splitlines() if line.startswith("| ") and "experiment" not in line]
    # the baseline commit, the two grid runs and the lr and dataset experiments before them
    assert len(rows) == 5, board
    assert sum("1 ep, batch 64, lr 0.02" in r for r in rows) == 1 and sum("lr 0.03" in r for r in rows) == 1
    assert sum("| fashion-mnist |" in r for r in rows) == 1 and all("| 109,386 |" in r for r in rows)
    assert (path / "board.md").read_text() == board


def test_queued_experiments_run_with_one_worker_and_show_side_by_side(repo):
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "queue baseline", "--allow-empty")
    sh(path, env, "dvc", "exp", "run", "--queue", "-S", "train.lr=0.004,0.005", "-S", "train.epochs=1")
    sh(path, env, "dvc", "queue", "start")  # one worker: -j 1 is the default
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = sh(path, env, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 2, status
    shown = json.loads(sh(path, env, "dvc", "exp", "show", "--json").stdout)
    experiments = [rev for node in shown for exp in node.get("experiments") or [] for rev in exp["revs"]]
    lrs = sorted(rev["data"]["params"]["params.yaml"]["data"]["train"]["lr"] for rev in experiments)
    assert lrs == [0.004, 0.005]
    assert all("accuracy" in rev["data"]["metrics"]["metrics/test.json"]["data"] for rev in experiments)


def test_push_and_pull_restore_data_and_model_without_rerunning(repo, tmp_path):
    path, env, _ = repo
    sh(path, env, "dvc", "remote", "add", "-f", "-d", "store", str(tmp_path / "remote"))
    sh(path, env, "dvc", "push")
    model = (path / "models/model.pt").read_bytes()
    for folder in ("data", "models", ".dvc/cache"):
        shutil.rmtree(path / folder)
    sh(path, env, "dvc", "pull")
    assert (path / "models/model.pt").read_bytes() == model
    assert (path / "data/prepared/train.pt").is_file()
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout


def test_a_killed_repro_is_followed_by_a_clean_one_with_the_same_bytes(repo):
    path, env, _ = repo
    before = {out: (path / out).read_bytes() for out in OUTPUTS}
    lock = (path / "dvc.lock").read_text()
    params = (path / "params.yaml").read_text()
    set_params(path / "params.yaml", train__epochs=100_000)  # runs until killed
    process = subprocess.Popen(["dvc", "repro"], cwd=path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    for line in process.stdout:
        if line.startswith("epoch"):
            break
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the stage under it, mid-training
    process.wait(timeout=30)
    assert not (path / "models/model.pt").exists()  # DVC removed it; the killed stage wrote none

    (path / "params.yaml").write_text(params)
    again = sh(path, env, "dvc", "repro")
    assert "Running stage 'train'" in again.stdout
    # Training again gives the same bytes, so evaluate's deps are unchanged and DVC skips it.
    assert "Running stage 'evaluate'" not in again.stdout
    assert {out: (path / out).read_bytes() for out in OUTPUTS} == before
    # The same dvc.lock but for the measured times' own hashes.
    assert results_only((path / "dvc.lock").read_text()) == results_only(lock)
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout
    assert not list((path / "models").glob(".*.tmp"))
    info = json.loads((path / "metrics/run_info.json").read_text())
    assert info["threads"] == 1 and info["device"] == "cpu" and info["cpu_capability"] == "AVX2"
    assert info["mkl_cbwr"] == "COMPATIBLE" and info["onednn_max_cpu_isa"] == "AVX2" and "oneDNN" in info["linear"]
