"""The benchmark pipeline (benchmark/dvc.yaml), run by dvc on tiny data in a temporary repository:
every cell of models x datasets (kmnist from a mirror of synthetic files), the control, the
comparisons; reproduced byte for byte; every bad input one line, before any cell's outputs go."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnistbench.entry import restore_command
from mnistbench.files import save_tensors
from tests import faults
from tests.helpers import ROOT, e2e_repo, sh

pytestmark = pytest.mark.slow

TINY = {  # the protocol on 250 training images: a few seeds, one or two epochs; k-NN one draw
    "datasets": ["mnist", "fashion-mnist", "kmnist"],
    "models": ["linear", "mlp", "cnn", "knn"],
    "model": {
        "linear": {"n": 3, "epochs": 2},
        "mlp": {"n": 3, "epochs": 2},
        "cnn": {
            "n": 2,
            "epochs": 1,
            "section": {"cnn": {"channels": [4], "hidden": [8], "activation": "relu", "dropout": 0.0}},
        },
        "knn": {"n": 1},
    },
    "prepare": {"val_size": 50},
}


def tiny_protocol(path: Path, **changes) -> None:
    from ruamel.yaml import YAML

    yaml = YAML()
    tree = yaml.load(path.read_text())
    tree["datasets"], tree["models"] = TINY["datasets"], TINY["models"]
    tree["prepare"].update(TINY["prepare"])
    for name, entry in TINY["model"].items():
        section = entry.get("section", {})
        tree["model"][name].update({k: v for k, v in entry.items() if k != "section"})
        tree["model"][name]["section"].update(copy.deepcopy(section))  # a change below must not reach TINY
    for key, value in changes.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    with open(path, "w") as f:
        yaml.dump(tree, f)


def results_bytes(repo: Path) -> dict[str, str]:
    files = [
        p
        for folder in ("metrics", "predictions", "plots")
        for p in (repo / "benchmark" / folder).rglob("*")
        if p.is_file()
    ]
    files += [repo / "benchmark" / name for name in ("results.md", "comparisons.json", "dvc.lock")]
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def bench_repo(base: Path) -> tuple[Path, dict]:
    """e2e_repo's repository with the benchmark's pipeline on the tiny protocol, kmnist's mirror
    added to DATA_MIRROR; the benchmark not run yet."""
    path, env, _ = e2e_repo(base)
    shutil.copytree(
        ROOT / "benchmark",
        path / "benchmark",
        ignore=shutil.ignore_patterns(
            "data", "predictions", "metrics", "plots", "results.md", "comparisons.json", "dvc.lock", ".gitignore"
        ),
    )
    tiny_protocol(path / "benchmark/params.yaml")
    return path, dict(env, DATA_MIRROR=f"{env['DATA_MIRROR']}:{base / 'kmnist-mirror'}")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    path, env = bench_repo(tmp_path_factory.mktemp("benchmark"))
    first = sh(path, env, "dvc", "repro", "benchmark/dvc.yaml")
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "the benchmark")
    return path, env, first


def test_every_cell_runs_and_the_comparisons_say_which_gaps_are_real(bench):
    path, _, first = bench
    cells = [f"{m}-{d}" for d in TINY["datasets"] for m in TINY["models"]]
    for name in cells:
        assert f"Running stage 'benchmark/dvc.yaml:cell@{name}'" in first.stdout
        metrics = json.loads((path / f"benchmark/metrics/{name}.json").read_text())
        a = metrics["accuracy"]
        assert a["n"] == TINY["model"][name.split("-")[0]]["n"] and a["min"] <= a["mean"] <= a["max"]
        assert a["seeds_low"] <= a["mean"] <= a["seeds_high"] and a["total_low"] <= a["mean"] <= a["total_high"]
        blob = torch.load(path / f"benchmark/predictions/{name}.pt", weights_only=True)
        assert blob["predicted"].dtype == torch.uint8 and blob["predicted"].shape == (a["n"], 100)
        accuracy = (blob["predicted"] == blob["labels"]).float().mean(1)  # the predictions are the scores'
        assert accuracy.mean().item() == pytest.approx(a["mean"], abs=1e-6)
    comparisons = json.loads((path / "benchmark/comparisons.json").read_text())
    for dataset in TINY["datasets"]:
        assert len(comparisons[dataset]["pairs"]) == 6 and comparisons[dataset]["best"].endswith(dataset)
        knn = json.loads((path / f"benchmark/metrics/knn-{dataset}.json").read_text())
        assert knn["deterministic"] is True and knn["accuracy"]["sd"] == 0  # one draw, said so
        a = knn["accuracy"]
        assert a["seeds_low"] == a["mean"] == a["seeds_high"] and a["total_low"] <= a["mean"] <= a["total_high"]
    assert set(comparisons["control"]) >= {"difference", "p", "p_a_better", "real"}
    table = (path / "benchmark/results.md").read_text()
    assert table.count("| model | test accuracy, mean ± sd (n seeds) |") == 3 and "**control**" in table
    assert table.count(" (1, deterministic) | ") == 3
    assert (path / "benchmark/plots/intervals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_reruns_and_a_forced_repro_gives_the_same_bytes(bench):
    path, env, _ = bench
    assert "Running stage" not in sh(path, env, "dvc", "repro", "benchmark/dvc.yaml").stdout
    before = results_bytes(path)
    sh(path, env, "dvc", "repro", "-f", "benchmark/dvc.yaml")
    assert results_bytes(path) == before


def test_the_main_pipelines_repro_and_experiments_leave_the_benchmark_alone(bench):
    path, env, _ = bench
    exp = sh(path, env, "dvc", "exp", "run", "-S", "train.lr=0.01")
    assert "benchmark/dvc.yaml" not in exp.stdout and "Running stage 'train'" in exp.stdout
    diff = json.loads(sh(path, env, "dvc", "metrics", "diff", "--json", "--all").stdout)
    assert "benchmark/metrics/mlp-mnist.json" in diff  # every cell is in `dvc metrics diff`
    sh(path, env, "git", "checkout", "HEAD", "--", "params.yaml")
    sh(path, env, "dvc", "checkout", "--force", "-q")


@pytest.mark.parametrize(
    "change, says",
    [
        ({"model.mlp.n": 1}, "benchmark/params.yaml: model.mlp.n = 1: must be 2 at least (a cell needs 2 seeds"),
        (
            {"model.knn.n": 3},
            "benchmark/params.yaml: model.knn.n = 3: knn is deterministic, every seed gives the same bits; set n: 1",
        ),
        ({"model.knn.epochs": 2}, "model.knn.epochs: knn is a scikit-learn estimator, which trains no epochs"),
        ({"model.mlp.epochs": None}, "model.mlp.epochs = None: must be an integer from 1"),
        ({"datasets": ["mnist", "cifar"]}, "benchmark/params.yaml: datasets names 'cifar', which is none of"),
        ({"model.cnn.section.arch": "resnet"}, "model.cnn.section: model.arch = 'resnet': must be one of "),
        ({"model.cnn.section.cnn.channels": [0]}, "model.cnn.section: model.cnn.channels[0] = 0: must be >= 1"),
        (
            {"model.mlp.section.cnn": {"channels": [4]}},
            "model.mlp.section.cnn: a cell's section holds the keys of its own arch only",
        ),
        ({"control.seed": 1}, "control.seed = 1: its block of 3 seeds overlaps the cell's (0..2)"),
        ("no kmnist mirror", "datasets lists 'kmnist' but no folder in DATA_MIRROR="),
        ("a figure without a source", "benchmark/published.yaml: figures[0]: source: missing; name the paper"),
    ],
)
def test_a_bad_protocol_stops_the_benchmark_before_any_cells_outputs_go(bench, change, says):
    path, env, _ = bench
    before = results_bytes(path)
    params, figures = (path / "benchmark/params.yaml").read_text(), (path / "benchmark/published.yaml").read_text()
    if change == "a figure without a source":
        (path / "benchmark/published.yaml").write_text(figures.replace("    source:", "    was:", 1))
        ran = sh(path, env, "dvc", "repro", "benchmark/dvc.yaml", check=False)
    elif change == "no kmnist mirror":
        env = dict(env, DATA_MIRROR=env["DATA_MIRROR"].rsplit(":", 1)[0])
        sh(path, env, "dvc", "repro", "-f", "benchmark/dvc.yaml:validate", check=False)  # it must look now
        ran = sh(path, env, "dvc", "repro", "-f", "benchmark/dvc.yaml:validate", check=False)
    else:
        tiny_protocol(path / "benchmark/params.yaml", **change)
        ran = sh(path, env, "dvc", "repro", "benchmark/dvc.yaml", check=False)
    (path / "benchmark/params.yaml").write_text(params)
    (path / "benchmark/published.yaml").write_text(figures)
    assert ran.returncode != 0
    lines = [line for line in ran.stderr.splitlines() if line.startswith("benchmark_validate: error: ")]
    assert len(lines) == 1 and says in lines[0], ran.stderr
    assert "Running stage 'benchmark/dvc.yaml:cell" not in ran.stdout
    assert results_bytes(path) == before


@pytest.mark.parametrize(
    "fault, says",
    [
        ("truncated", "cell mlp-mnist: benchmark/predictions/mlp-mnist.pt: cell mlp-mnist's predictions is unreadable"),
        ("other test set", "cells mlp-mnist and knn-mnist were scored on other test sets (90 and 100 images"),
        ("non-numeric", "cell mlp-mnist: its metrics' accuracy.sd is not a number ('wide')"),
    ],
)
def test_a_cell_with_bad_files_is_one_line_naming_it_and_no_other_cells_outputs_go(bench, fault, says):
    path, env, _ = bench
    predictions, metrics = path / "benchmark/predictions/mlp-mnist.pt", path / "benchmark/metrics/mlp-mnist.json"
    saved = predictions.read_bytes(), metrics.read_text()
    before = results_bytes(path)
    if fault == "truncated":
        predictions.write_bytes(saved[0][: len(saved[0]) // 2])
    elif fault == "other test set":
        blob = torch.load(predictions, weights_only=True)
        save_tensors(predictions, {**blob, "predicted": blob["predicted"][:, :90], "labels": blob["labels"][:90]})
    else:
        metrics.write_text(saved[1].replace('"sd": ', '"sd": "wide", "was": ', 1))
    try:
        ran = sh(path, env, "dvc", "repro", "benchmark/dvc.yaml:compare", "--single-item", "-f", check=False)
    finally:
        predictions.write_bytes(saved[0])
        metrics.write_text(saved[1])
    assert ran.returncode != 0
    lines = [line for line in ran.stderr.splitlines() if line.startswith("benchmark_compare: error: ")]
    assert len(lines) == 1 and says in lines[0], ran.stderr
    sh(path, env, "git", "checkout", "HEAD", "--", "benchmark")
    sh(path, env, "dvc", "checkout", "--force", "-q")
    assert results_bytes(path) == before


CELL = "benchmark/dvc.yaml:cell@mlp-mnist"


@pytest.mark.parametrize("fault", ["sigint to the group", "sigterm dvc", "kill a worker"])
def test_a_fault_in_a_cell_leaves_nothing_running_and_its_hint_brings_the_committed_results_back(bench, fault):
    """The faults battery (tests/test_fault_battery.py) on a benchmark cell, a seed that never ends,
    dvc running the stage through /bin/sh: the hint names the benchmark's own files."""
    path, env, _ = bench
    committed = results_bytes(path)
    protocol = (path / "benchmark/params.yaml").read_text()
    tiny_protocol(path / "benchmark/params.yaml", **{"model.mlp.n": 4, "model.mlp.epochs": 100_000})
    try:
        result = faults.run(path, dict(env, SHELL="/bin/sh"), faults.Scenario("benchmark_cell", fault, CELL))
    finally:
        (path / "benchmark/params.yaml").write_text(protocol)
    assert result.left == set(), f"processes of the run still alive {faults.GRACE} s after the fault: {result.left}"
    assert result.seconds_to_exit <= faults.GRACE and result.seconds_to_clean <= faults.GRACE, result
    assert result.temp_files == [] and result.returncode != 0
    said = {"sigint to the group": "interrupted", "sigterm dvc": "terminated (SIGTERM)"}.get(fault, "error: a worker")
    assert any(line.startswith(f"benchmark_cell: {said}") for line in result.lines), result.lines
    hint = faults.restore_command(result.lines)
    assert hint == restore_command(CELL) and "benchmark/dvc.lock" in hint, result.lines
    assert not (path / "benchmark/metrics/mlp-mnist.json").exists()  # DVC deleted it before the run
    subprocess.run(hint, shell=True, cwd=path, env=env, check=True, capture_output=True)
    assert results_bytes(path) == committed
    assert "Data and pipelines are up to date." in sh(path, env, "dvc", "status", "benchmark/dvc.yaml").stdout


def spot_check(path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return sh(path, env, sys.executable, "-m", "commands", "spot-check", *args, check=False)


def test_spot_check_vouches_for_the_committed_benchmark_and_changes_nothing(bench):
    path, env, _ = bench
    before = sh(path, env, "git", "status", "--porcelain").stdout, results_bytes(path)
    ran = spot_check(path, env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count("retrained, the same bytes") == len(TINY["datasets"]) * len(TINY["models"]) + 1
    assert "the committed benchmark is vouched for at" in ran.stdout
    assert (sh(path, env, "git", "status", "--porcelain").stdout, results_bytes(path)) == before


@pytest.mark.parametrize("fault", ["a wrong seed, locked and rescored", "metrics edited, locked", "metrics edited"])
def test_spot_check_fails_a_wrong_committed_result_in_one_line(bench, fault):
    """Each way a wrong result could be committed: a seed's predictions that this code does not
    train (its statistics and the lock made to agree with them), metrics that its predictions do
    not give (the lock agreeing), an output the lock does not record."""
    from mnistbench.benchmark import cell_metrics
    from mnistbench.files import write_json

    path, env, _ = bench
    head = sh(path, env, "git", "rev-parse", "HEAD").stdout.strip()
    predictions, metrics = path / "benchmark/predictions/mlp-mnist.pt", path / "benchmark/metrics/mlp-mnist.json"
    try:
        if fault == "a wrong seed, locked and rescored":
            blob = torch.load(predictions, weights_only=True)
            blob["predicted"][1, :5] = (blob["predicted"][1, :5] + 1) % 10
            save_tensors(predictions, blob)
            write_json(metrics, cell_metrics(blob["seeds"].tolist(), blob["predicted"], blob["labels"]))
            sh(path, env, "dvc", "commit", "-f", "-q", "benchmark/dvc.yaml:cell@mlp-mnist")
            sh(path, env, "dvc", "repro", "-q", "benchmark/dvc.yaml:compare")
            says = "spot-check: differs: cell mlp-mnist, seed 1: retrained, its predictions differ from the committed"
        else:
            metrics.write_text(metrics.read_text().replace('"sd": ', '"sd": 1e-09, "was": ', 1))
            if fault == "metrics edited, locked":  # the cell's lock entry and the compare stage's made to agree
                sh(path, env, "dvc", "commit", "-f", "-q", "benchmark/dvc.yaml:cell@mlp-mnist")
                sh(path, env, "dvc", "commit", "-f", "-q", "benchmark/dvc.yaml:compare")
                says = "spot-check: differs: benchmark/metrics/mlp-mnist.json is not what its committed predictions"
            else:
                says = "spot-check: differs: benchmark/dvc.lock does not match the committed code, params or outputs of"
        sh(path, env, "git", "commit", "-qam", fault)
        ran = spot_check(path, env, "--seeds", "all")
    finally:
        sh(path, env, "git", "reset", "-q", "--hard", head)
    said = [line for line in ran.stderr.splitlines() if line.startswith("spot-check")]  # scipy may warn too
    assert ran.returncode == 1 and len(said) == 1 and said[0].startswith(says), ran.stderr
