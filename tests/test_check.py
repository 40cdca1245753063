import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from mnistbench.check import FAIL, PASS, UNDECIDED, decide, read_diff, table
from mnistbench.params import CheckParams

RULES = CheckParams(max_accuracy_drop=0.002, min_accuracy=0.975)


@pytest.mark.parametrize("baseline, current, code", [
    (0.9800, 0.9810, PASS),       # improvement
    (0.9800, 0.9800, PASS),       # unchanged
    (0.9800, 0.9780, PASS),       # drop exactly at the tolerance
    (0.9800, 0.9779, FAIL),       # just beyond it
    (0.9760, 0.9749, FAIL),       # within tolerance but under the floor
    (None, 0.9800, UNDECIDED),    # nothing to compare with
    (None, 0.9000, FAIL),         # under the floor needs no baseline
    (0.9800, None, UNDECIDED),    # workspace unreadable
])
def test_decide(baseline, current, code):
    assert decide(baseline, current, RULES).code == code


def test_read_diff_takes_nulls_as_missing():
    diff = {"metrics/test.json": {"accuracy": {"old": None, "new": 0.98}, "loss": {"old": 0.1, "new": 0.2, "diff": 0.1}}}
    assert read_diff(diff) == {"accuracy": (None, 0.98), "macro_f1": (None, None), "loss": (0.1, 0.2)}


def test_table_names_the_numbers_and_the_reason():
    values = {"accuracy": (0.98, 0.9), "macro_f1": (0.97, 0.89), "loss": (0.1, 0.4)}
    verdict = decide(0.98, 0.9, RULES)
    text = table(values, verdict, "abc123")
    assert "| test accuracy | 0.9800 | 0.9000 | -0.0800 | **FAIL** |" in text
    assert "| test loss | 0.1000 | 0.4000 | +0.3000 | info |" in text
    assert "below the floor 0.9750" in text


# --- the real command, with the real `dvc metrics diff`, in a temporary git repository ---

def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def write_metrics(repo: Path, accuracy: float) -> None:
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics/test.json").write_text(json.dumps({"accuracy": accuracy, "macro_f1": accuracy, "loss": 0.1}))


@pytest.fixture(scope="module")
def history_repo(tmp_path_factory):
    """A repo whose first commit has no metrics, second has accuracy 0.9800 (main)."""
    repo = tmp_path_factory.mktemp("gate") / "repo"
    repo.mkdir()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "gate test")
    git(repo, "config", "user.email", "gate@example.invalid")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True, env=env)
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics/test.json\n")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "no metrics yet")
    write_metrics(repo, 0.98)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "accuracy 0.98")

    def gate(*args):
        return subprocess.run([sys.executable, "-m", "mnistbench.check", *args], cwd=repo, capture_output=True,
                              text=True, env=dict(env, PYTHONPATH=str(ROOT)))
    return repo, gate


@pytest.fixture
def history(history_repo):
    """The module's repo, put back on main with a clean work tree after each test."""
    yield history_repo
    repo = history_repo[0]
    git(repo, "checkout", "-qf", "main")
    git(repo, "clean", "-qfdx")


@pytest.mark.slow
@pytest.mark.parametrize("accuracy, code, words", [
    (0.9850, PASS, "| test accuracy | 0.9800 | 0.9850 | +0.0050 | pass |"),
    (0.9790, PASS, "| test accuracy | 0.9800 | 0.9790 | -0.0010 | pass |"),
    (0.9750, FAIL, "dropped 0.0050 (0.9800 -> 0.9750), more than the tolerance 0.0020"),
    (0.9700, FAIL, "below the floor 0.9750"),
])
def test_gate_against_the_previous_commit(history, accuracy, code, words):
    repo, gate = history
    write_metrics(repo, accuracy)
    result = gate("--baseline", "HEAD", "--output", "gate.md")
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stdout
    assert (repo / "gate.md").read_text() == result.stdout.rstrip("\n") + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("baseline, words", [
    ("HEAD~1", "the baseline has no readable metrics/test.json"),  # a commit from before the metrics
    ("no-such-rev", "unknown Git revision 'no-such-rev'"),
])
def test_gate_cannot_decide_without_baseline_metrics(history, baseline, words):
    _, gate = history
    result = gate("--baseline", baseline)
    assert result.returncode == UNDECIDED
    assert words in result.stdout


@pytest.mark.slow
def test_gate_defaults_to_the_merge_base_with_main(history):
    repo, gate = history
    git(repo, "checkout", "-qb", "feature")
    write_metrics(repo, 0.95)
    git(repo, "commit", "-qam", "worse")
    result = gate()
    assert result.returncode == FAIL
    base = subprocess.run(["git", "rev-parse", "--short=12", "main"], cwd=repo, capture_output=True, text=True)
    assert f"baseline ({base.stdout.strip()})" in result.stdout
