"""End to end: the real dvc.yaml, stages and library, run by `dvc` on a tiny mirror in a
temporary git repository. The checksums the pipeline verifies are the tiny files' own.

The tests share one repository, as one user's session does, so later ones see earlier ones'
experiments; each also runs alone (`pytest tests/test_pipeline.py -k grid`): the fixture commits
the first `dvc repro`'s results, and none counts on what another left."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnistbench.entry import RESTORE
from tests.helpers import e2e_repo, set_params, sh, workspace_bytes

ROOT = Path(__file__).resolve().parent.parent


def readme_command(start: str) -> list[str]:
    """The README's command line that starts with `start`, its comment dropped, as arguments."""
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(start))
    return shlex.split(line.split("  #")[0])


pytestmark = pytest.mark.slow

OUTPUTS = [
    "data/prepared/train.pt",
    "data/prepared/val.pt",
    "data/prepared/test.pt",
    "models/model.pt",
    "metrics/train.json",
    "metrics/run_info.json",
    "metrics/test.json",
    "metrics/per_class.json",
    "dvclive/metrics.json",
    "dvclive/plots/metrics/train/loss.tsv",
    "dvclive/plots/metrics/val/accuracy.tsv",
    "plots/predictions.csv",
    "plots/confusion_matrix.png",
    "plots/classification_report.png",
    "plots/misclassified.png",
    "metrics/replicates.json",
    "plots/replicates.csv",
    "metrics/replicates_run_info.json",
]
MEASURED = [
    "timings/train.json",
    "timings/evaluate.json",
    "timings/replicates.json",
]  # never the same twice: not in git


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path, env, first = e2e_repo(tmp_path_factory.mktemp("e2e"))
    sh(path, env, "git", "add", "-A")  # `dvc exp run` needs a commit to run from
    sh(path, env, "git", "commit", "-qm", "the first dvc repro")
    return path, env, first


def test_repro_runs_all_stages_and_writes_every_output(repo):
    path, _, first = repo
    for stage in ("prepare", "train", "evaluate", "replicates"):
        assert f"Running stage '{stage}'" in first.stdout
    missing = [out for out in OUTPUTS + MEASURED if not (path / out).is_file()]
    assert not missing
    test_metrics = json.loads((path / "metrics/test.json").read_text())
    assert set(test_metrics) == {"accuracy", "macro_f1", "loss"}
    assert test_metrics["accuracy"] > 0.5  # the synthetic classes are easy; chance is 0.1
    assert (path / "plots/predictions.csv").read_text().count("\n") == 1 + 100
    # DVCLive's files: one history row per epoch (step 0 = epoch 1), the last epoch as the summary, no timestamps
    assert (path / "dvclive/plots/metrics/val/accuracy.tsv").read_text().splitlines()[:2][0] == "step\taccuracy"
    assert len((path / "dvclive/plots/metrics/train/loss.tsv").read_text().splitlines()) == 1 + 2
    live = json.loads((path / "dvclive/metrics.json").read_text())
    assert live["step"] == 1 and set(live) == {"train", "val", "step"}
    assert live["train"] == {k: v for k, v in json.loads((path / "metrics/train.json").read_text())["train"].items()}
    assert sorted(p.name for p in (path / "dvclive").rglob("*") if p.is_file() and p.name != ".gitignore") == [
        "accuracy.tsv",
        "accuracy.tsv",
        "loss.tsv",
        "loss.tsv",
        "metrics.json",
    ]  # DVCLive wrote nothing else
    assert json.loads((path / "metrics/train.json").read_text())["parameters"] == 109_386
    assert json.loads((path / "timings/train.json").read_text())["train_seconds"] > 0
    assert json.loads((path / "timings/evaluate.json").read_text())["latency_ms_per_image"] > 0
    timing = json.loads((path / "timings/replicates.json").read_text())
    assert timing["train_seconds"] > 0 and {k: timing[k] for k in ("seeds", "device", "jobs", "threads")} == {
        "seeds": 3,
        "device": "cpu",
        "jobs": 2,
        "threads": 1,
    }
    summary = json.loads((path / "metrics/replicates.json").read_text())
    assert summary["seeds"] == {"first": 0, "last": 2} and summary["accuracy"]["n"] == 3
    per_seed = (path / "plots/replicates.csv").read_text().splitlines()
    assert per_seed[0] == "seed,accuracy,macro_f1,loss" and [r.split(",")[0] for r in per_seed[1:]] == ["0", "1", "2"]
    accuracies = [float(r.split(",")[1]) for r in per_seed[1:]]
    assert summary["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 3, abs=1e-6)
    assert summary["accuracy"]["min"] == min(accuracies) > 0.5
    test = json.loads((path / "metrics/test.json").read_text())  # replicate 0 is the train stage's model, seed 0
    assert per_seed[1].split(",")[1:] == [f"{test[k]:.6f}" for k in ("accuracy", "macro_f1", "loss")]


def test_nothing_reruns_when_nothing_changed_and_git_status_is_clean_after_a_repro(repo):
    """A newcomer's first `dvc repro` must leave the committed tree as it was: measured times go to
    timings/, which git ignores, so every README command works next (a grid refuses a dirty tree)."""
    path, env, _ = repo
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout
    sh(path, env, "dvc", "repro", "-f")
    assert sh(path, env, "git", "status", "--porcelain").stdout == ""
    again = sh(path, env, "dvc", "repro")
    assert "Running stage" not in again.stdout


def test_exp_run_with_a_new_lr_reruns_train_evaluate_and_replicates_only(repo):
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "baseline", "--allow-empty")
    exp = sh(path, env, "dvc", "exp", "run", "-S", "train.lr=0.01")
    for stage in ("train", "evaluate", "replicates"):
        assert f"Running stage '{stage}'" in exp.stdout
    assert "Running stage 'prepare'" not in exp.stdout
    params = json.loads(sh(path, env, "dvc", "params", "diff", "--json").stdout)
    lr = params["params.yaml"]["train.lr"]
    assert (lr["old"], lr["new"]) == (0.001, 0.01)
    metrics = json.loads(sh(path, env, "dvc", "metrics", "diff", "--json", "--all").stdout)
    assert {"metrics/test.json", "metrics/train.json", "metrics/replicates.json"} <= set(metrics)
    assert "accuracy.mean" in metrics["metrics/replicates.json"]
    # README's narrower diff: the test scores, nothing else
    scores = json.loads(sh(path, env, *readme_command("dvc metrics diff --targets"), "--json", "--all").stdout)
    assert set(scores) == {"metrics/test.json", "metrics/replicates.json"}
    assert set(scores["metrics/test.json"]) == {"accuracy", "macro_f1", "loss"}


def test_exp_run_of_the_replicates_alone_leaves_the_single_model_as_it_was(repo):
    path, env, _ = repo
    exp = sh(path, env, "dvc", "exp", "run", "-S", "replicates.n=4")
    assert "Running stage 'replicates'" in exp.stdout
    assert "Running stage 'train'" not in exp.stdout and "Running stage 'evaluate'" not in exp.stdout
    assert json.loads((path / "metrics/replicates.json").read_text())["accuracy"]["n"] == 4


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
    set_params(path / "params.yaml", train__lr=0.5)  # as an experiment left them, or a user's edits
    with open(path / "dvc.lock", "a") as lock:
        lock.write("# edited\n")
    refused = sh(path, env, sys.executable, "-m", "commands.grid", "-S", "train.lr=0.02,0.03", check=False)
    assert refused.returncode == 1 and "uncommitted changes in dvc.lock" in refused.stderr
    assert "params.yaml" in refused.stderr and "commit or stash them first" in refused.stderr
    sh(path, env, "git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock", "metrics", "plots", "dvclive")
    sh(path, env, "dvc", "checkout", "-q")
    leaderboard = [sys.executable, "-m", "commands.leaderboard"]
    earlier = [
        line
        for line in sh(path, env, *leaderboard).stdout.splitlines()
        if line.startswith("| ") and "experiment" not in line
    ]  # HEAD, and other tests' experiments

    grid = sh(path, env, sys.executable, "-m", "commands.grid", "-S", "train.lr=0.02,0.03", "-S", "train.epochs=1")
    assert "grid: [1/2] dvc exp run -S train.lr=0.02 -S train.epochs=1" in grid.stdout
    assert "grid: 2 of 2 run; the workspace is back at HEAD" in grid.stdout and "FAILED" not in grid.stdout
    assert (
        sh(
            path, env, "git", "status", "--porcelain", "--", "params.yaml", "dvc.lock", "metrics", "plots", "dvclive"
        ).stdout
        == ""
    )
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout

    board = sh(path, env, *leaderboard, "--output", "board.md").stdout
    rows = [line for line in board.splitlines() if line.startswith("| ") and "experiment" not in line]
    assert len(rows) == len(earlier) + 2, board  # the two grid runs beside what was there
    assert all(" ± " in r for r in rows)  # the replicates' mean ± sd (n) beside the single model
    assert sum("1 ep, batch 64, adam lr 0.02" in r for r in rows) == 1 and sum("lr 0.03" in r for r in rows) == 1
    assert all("| 109,386 |" in r for r in rows)
    assert (path / "board.md").read_text() == board


def test_queued_experiments_run_with_one_worker_and_show_side_by_side_and_a_bad_one_fails_alone(repo):
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "queue baseline", "--allow-empty")
    sh(path, env, "dvc", "exp", "run", "--queue", "-S", "train.lr=0.004,0.005", "-S", "train.epochs=1")
    sh(path, env, "dvc", "exp", "run", "--queue", "-n", "bad-epochs", "-S", "train.epochs=0")
    before = workspace_bytes(path)
    sh(path, env, "dvc", "queue", "start")  # one worker: -j 1 is the default
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = sh(path, env, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 2 and status.count("Failed") == 1, status
    logs = sh(path, env, "dvc", "queue", "logs", "bad-epochs")
    assert "validate: error: params.yaml: train.epochs = 0: must be >= 1" in (logs.stdout + logs.stderr).splitlines()
    assert workspace_bytes(path) == before
    shown = json.loads(sh(path, env, "dvc", "exp", "show", "--json").stdout)
    experiments = [
        rev for node in shown for exp in node.get("experiments") or [] for rev in exp["revs"] if not rev.get("error")
    ]  # the failed one is listed, with an error and no results
    lrs = sorted(rev["data"]["params"]["params.yaml"]["data"]["train"]["lr"] for rev in experiments)
    assert lrs == [0.004, 0.005]
    assert all("accuracy" in rev["data"]["metrics"]["metrics/test.json"]["data"] for rev in experiments)
    # README's readable `dvc exp show`: the params that differ and the three accuracies, nothing else
    header = sh(path, env, *readme_command("dvc exp show --only-changed"), "--csv").stdout.splitlines()[0].split(",")
    assert header == ["Experiment", "accuracy", "accuracy.mean", "accuracy.sd", "train.epochs", "train.lr"], header


def test_push_and_pull_restore_data_and_model_without_rerunning(repo, tmp_path):
    path, env, _ = repo
    sh(path, env, "dvc", "remote", "add", "-f", "-d", "store", str(tmp_path / "remote"))
    sh(path, env, "dvc", "push")
    model = (path / "models/model.pt").read_bytes()
    shutil.rmtree(path / ".dvc/cache")
    for output in [p for folder in ("data", "models") for p in (path / folder).rglob("*") if p.is_file()]:
        if output.name != ".gitignore":  # DVC writes those when it saves outputs, not on pull: git's, like a clone's
            output.unlink()
    sh(path, env, "dvc", "pull")
    assert (path / "models/model.pt").read_bytes() == model
    assert (path / "data/prepared/train.pt").is_file()
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout


def test_dvc_artifacts_get_fetches_the_registered_model_from_a_clone_and_its_remote(repo, tmp_path):
    """dvc.yaml declares models/model.pt as the artifact `digit-classifier`; once a version is
    registered (a GTO tag, as `gto register` makes) and the model pushed, `dvc artifacts get`
    fetches those bytes from a clone of the repository and a local-directory remote."""
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "a model to register", "--allow-empty")
    remote, clone, out = tmp_path / "remote", tmp_path / "clone", tmp_path / "fetched.pt"
    sh(path, env, "dvc", "remote", "add", "--local", "registry", str(remote))  # .dvc/config.local: nothing committed
    try:
        sh(path, env, "dvc", "push", "-r", "registry", "models/model.pt")
    finally:
        sh(path, env, "dvc", "remote", "remove", "--local", "registry")
    sh(
        path,
        env,
        "git",
        "tag",
        "-a",
        "digit-classifier@v0.1.0",
        "-m",
        "Registering artifact digit-classifier version v0.1.0",
    )
    try:
        sh(tmp_path, env, "git", "clone", "-q", str(path), str(clone))
        config = tmp_path / "remote.conf"  # what a remote in the repository's .dvc/config would say
        config.write_text(f"[core]\n    remote = registry\n['remote \"registry\"']\n    url = {remote}\n")
        sh(
            tmp_path,
            env,
            "dvc",
            "artifacts",
            "get",
            str(clone),
            "digit-classifier",
            "-o",
            str(out),
            "--config",
            str(config),
        )
    finally:
        sh(path, env, "git", "tag", "-d", "digit-classifier@v0.1.0")
    assert hashlib.md5(out.read_bytes()).hexdigest() == hashlib.md5((path / "models/model.pt").read_bytes()).hexdigest()


def repro_until_training(path: Path, env: dict) -> subprocess.Popen:
    """`dvc repro` in its own process group, returned once a stage prints its first epoch."""
    process = subprocess.Popen(
        ["dvc", "repro"],
        cwd=path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for line in process.stdout:
        if line.startswith("epoch"):
            break
    return process


def test_a_killed_repro_is_followed_by_a_clean_one_with_the_same_bytes(repo):
    path, env, _ = repo
    before = {out: (path / out).read_bytes() for out in OUTPUTS}
    lock = (path / "dvc.lock").read_text()
    params = (path / "params.yaml").read_text()
    set_params(path / "params.yaml", train__epochs=100_000)  # runs until killed
    process = repro_until_training(path, env)
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the stage under it, mid-training
    process.wait(timeout=30)
    assert not (path / "models/model.pt").exists()  # DVC removed it; the killed stage wrote none

    (path / "params.yaml").write_text(params)
    again = sh(path, env, "dvc", "repro")
    assert "Running stage 'train'" in again.stdout
    # Training again gives the same bytes, so evaluate's deps are unchanged and DVC skips it.
    assert "Running stage 'evaluate'" not in again.stdout
    assert {out: (path / out).read_bytes() for out in OUTPUTS} == before
    assert (path / "dvc.lock").read_text() == lock
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout
    assert not list((path / "models").glob(".*.tmp"))
    info = json.loads((path / "metrics/run_info.json").read_text())
    assert info["threads"] == 1 and info["device"] == "cpu" and info["cpu_capability"] == "AVX2"
    assert info["mkl_cbwr"] == "COMPATIBLE" and info["onednn_max_cpu_isa"] == "AVX2" and "oneDNN" in info["linear"]


def test_dvc_exp_show_shows_a_running_experiments_current_epoch(repo):
    """The train stage logs each epoch with DVCLive as it ends, so `dvc exp show` during a
    `dvc exp run` shows the epoch reached and its metrics, not the last finished run's."""
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "before a long experiment", "--allow-empty")
    before = workspace_bytes(path)
    process = subprocess.Popen(
        ["dvc", "exp", "run", "-S", "train.epochs=100000"],
        cwd=path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("epoch   4/"):  # epochs 1-4 done: DVCLive's step 3 written
                break
        for _ in range(5):  # DVCLive rewrites the file in place each epoch (here every 0.03 s): a read
            shown = json.loads(
                sh(path, env, "dvc", "exp", "show", "--json", "--no-pager").stdout
            )  # can catch it half-written
            workspace = next(row for row in shown if row["rev"] == "workspace")
            if "data" in workspace["data"]["metrics"]["dvclive/metrics.json"]:
                break
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=60)
    live = workspace["data"]["metrics"]["dvclive/metrics.json"]["data"]
    assert live["step"] >= 3 and 0 < live["val"]["accuracy"] <= 1
    assert workspace["data"]["params"]["params.yaml"]["data"]["train"]["epochs"] == 100000
    sh(path, env, "git", "checkout", "HEAD", "--", "params.yaml")
    subprocess.run(RESTORE, shell=True, cwd=path, env=env, check=True, capture_output=True)
    assert workspace_bytes(path) == before


def test_an_interrupted_stage_says_the_command_that_brings_the_previous_results_back(repo):
    path, env, _ = repo
    # Runs before the failing `dvc exp run`s below: after one, git's index at times held HEAD's blob
    # with a changed file's stat (DVC 3.67.1 here), so `git add -A` missed the changed dvc.lock.
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "results to come back to", "--allow-empty")
    before = workspace_bytes(path)
    params = (path / "params.yaml").read_text()
    set_params(path / "params.yaml", train__epochs=100_000)  # runs until interrupted
    process = repro_until_training(path, env)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals dvc and the stage under it
    output = process.communicate(timeout=60)[0]
    assert process.returncode != 0
    assert "train: interrupted; outputs already written are complete, the rest were not written" in output
    hint = next(line for line in output.splitlines() if line.startswith("train: DVC deleted"))
    assert not (path / "models/model.pt").exists()

    restore = hint.split("`")[1]
    assert restore == "git checkout HEAD -- dvc.lock metrics plots dvclive && dvc checkout --force"
    subprocess.run(restore, shell=True, cwd=path, env=env, check=True, capture_output=True)
    assert workspace_bytes(path) == before
    assert (path / "params.yaml").read_text() != params  # the user's edit stays theirs
    (path / "params.yaml").write_text(params)
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status").stdout


# A bad params.yaml, however `dvc` is run: refused by the validate stage, which every other stage
# depends on, before DVC deletes any other stage's outputs.
EPOCHS_0 = "validate: error: params.yaml: train.epochs = 0: must be >= 1"
UNKNOWN_KEY = (
    "validate: error: params.yaml: unknown key train.learning_rate; allowed in train: seed, epochs, "
    "batch_size, optimizer, lr, schedule, augment_shift, augment_rotate, "
    "normalize_mean, normalize_std, device, threads, and a section per registered entry (a mapping)"
)
VAL_SIZE = "validate: error: prepare.val_size = 300: must be between 1 and 299 (the training set has 300 images)"
NO_CUDA = "validate: error: params.yaml: train.device = 'cuda' but torch sees no CUDA device; use auto or cpu"


@pytest.mark.parametrize(
    "edit, command, message",
    [
        ({"train__epochs": 0}, ["dvc", "repro"], EPOCHS_0),
        ({"train__learning_rate": 0.1}, ["dvc", "repro"], UNKNOWN_KEY),
        (
            {"train__lr": "fast"},
            ["dvc", "repro", "train"],
            "validate: error: params.yaml: train.lr = 'fast': must be a number, e.g. 0.001 or 1e-3",
        ),
        ({"prepare__val_size": 300}, ["dvc", "repro", "evaluate"], VAL_SIZE),
        ({}, ["dvc", "exp", "run", "-S", "train.epochs=0"], EPOCHS_0),
        ({}, ["dvc", "exp", "run", "-S", "+train.learning_rate=0.1"], UNKNOWN_KEY),
        ({}, ["dvc", "exp", "run", "-S", "prepare.val_size=300"], VAL_SIZE),
        ("malformed", ["dvc", "repro"], "ERROR: unable to read: 'params.yaml', YAML file structure is corrupted"),
        pytest.param(
            {},
            ["dvc", "exp", "run", "-S", "train.device=cuda"],
            NO_CUDA,
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: cuda is valid here"),
        ),
        (
            {},
            ["dvc", "exp", "run", "-S", "model.mlp.hidden=[100000000000]"],
            "validate: error: params.yaml: model.mlp.hidden = [100000000000]: 79,500,000,000,010 parameters need "
            "1,272,000 GB",
        ),
        (
            {},
            ["dvc", "exp", "run", "-S", "+model.mlp.channels=[8]"],
            "validate: error: params.yaml: model.mlp.channels: mlp reads no key channels; cnn reads it",
        ),
        (
            {},
            ["dvc", "exp", "run", "-S", "train.optimizer=sgd", "-S", "train.sgd.momentum=1.5"],
            "validate: error: params.yaml: train.sgd.momentum = 1.5: must be < 1.0",
        ),
    ],
    ids=[
        "repro-epochs",
        "repro-unknown-key",
        "repro-train-lr",
        "repro-evaluate-val-size",
        "exp-epochs",
        "exp-unknown-key",
        "exp-val-size",
        "repro-malformed",
        "exp-cuda-without-a-gpu",
        "exp-model-too-large",
        "exp-key-of-another-arch",
        "exp-optimizer-key",
    ],
)
def test_bad_params_stop_dvc_before_any_output_is_deleted(repo, edit, command, message):
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")  # `dvc exp run` needs a commit to run from
    sh(path, env, "git", "commit", "-qm", "before a bad params.yaml", "--allow-empty")
    params = (path / "params.yaml").read_text()
    before = workspace_bytes(path)
    if edit == "malformed":  # DVC itself refuses to read it
        (path / "params.yaml").write_text(params.replace("  lr: 0.001", "  lr: [0.001"))
    elif edit:
        set_params(path / "params.yaml", **edit)
    try:
        result = sh(path, env, *command, check=False)
    finally:
        (path / "params.yaml").write_text(params)
    assert result.returncode != 0
    assert any(line.startswith(message) for line in result.stderr.splitlines()), result.stderr
    assert "Running stage 'prepare'" not in result.stdout and "Running stage 'train'" not in result.stdout
    assert "DVC deleted" not in result.stderr  # validate's output is persist: nothing of it to bring back
    assert workspace_bytes(path) == before


def test_a_dataset_the_mirror_lacks_stops_dvc_before_prepare_deletes_its_outputs(repo):
    """Found by trying it with DATA_MIRROR=../shared/datasets (MNIST only) and -S prepare.dataset=kmnist:
    validate passed, DVC deleted data/prepared, then prepare failed. validate now looks first."""
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "before a dataset the mirror lacks", "--allow-empty")
    before = workspace_bytes(path)
    fashion = Path(env["DATA_MIRROR"]) / "fashion-mnist"
    fashion.rename(fashion.with_name("elsewhere"))
    try:
        result = sh(path, env, "dvc", "exp", "run", "-S", "prepare.dataset=fashion-mnist", check=False)
    finally:
        fashion.with_name("elsewhere").rename(fashion)
    assert result.returncode != 0
    assert (
        f"validate: error: params.yaml: prepare.dataset = 'fashion-mnist' but no folder in DATA_MIRROR="
        f"{env['DATA_MIRROR']} holds fashion-mnist/train-images-idx3-ubyte.gz"
    ) in result.stderr, result.stderr
    assert "Running stage 'prepare'" not in result.stdout
    assert workspace_bytes(path) == before


def test_another_kernel_path_is_tier_two_its_fields_named_and_its_replicates_compared(repo):
    """A stack that really differs in bits, run the way a user would: ATen's unvectorized kernels,
    MKL's and oneDNN's own choice (a value in the environment wins over mnistbench's pins). The
    bytes differ; `mnistbench reproduced` says tier 2, names the fields, and its exit status is
    its verdict on the replicates."""
    path, env, _ = repo
    other = dict(env, ATEN_CPU_CAPABILITY="default", MKL_CBWR="AUTO", ONEDNN_MAX_CPU_ISA="ALL")
    sh(path, other, "dvc", "repro", "-f", "train", "replicates")
    try:
        run_info = json.loads((path / "metrics/run_info.json").read_text())
        assert run_info["cpu_capability"] == "DEFAULT" and run_info["mkl_cbwr"] == "AUTO"
        from ruamel.yaml import YAML

        def model_md5(text: str) -> str:
            outs = YAML(typ="safe").load(text)["stages"]["train"]["outs"]
            return next(out["md5"] for out in outs if out["path"] == "models/model.pt")

        committed = sh(path, env, "git", "show", "HEAD:dvc.lock").stdout
        assert model_md5((path / "dvc.lock").read_text()) != model_md5(committed)  # really other bits
        ran = sh(path, env, sys.executable, "-m", "commands", "reproduced", check=False)
        assert "reproduced: tier 2: the stack differs from HEAD's: the main pipeline's in " in ran.stdout
        assert (
            "cpu_capability ('AVX2' -> 'DEFAULT')" in ran.stdout and "mkl_cbwr ('COMPATIBLE' -> 'AUTO')" in ran.stdout
        )
        assert "| replicates | " in ran.stdout
        equivalent = ran.stdout.rstrip().endswith("every distribution is within its margin of the committed one")
        assert ran.returncode == (0 if equivalent else 1), ran.stdout
    finally:
        sh(path, env, "git", "checkout", "HEAD", "--", "dvc.lock", "metrics", "plots", "dvclive")
        sh(path, env, "dvc", "checkout", "--force", "-q")
    again = sh(path, env, sys.executable, "-m", "commands", "reproduced", check=False)
    assert again.returncode == 0 and again.stdout.startswith("reproduced: tier 1, the same stack as HEAD")
