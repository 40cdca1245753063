import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from commands.gate import FAIL, PASS, REPLICATES, UNDECIDED, Sample, decide, gate, table, welch
from mnistbench.params import GateParams
from tests.helpers import ROOT

RULES = GateParams(significance=0.01, min_drop=0.001, min_accuracy=0.97)
BASE = Sample(10, 0.9766, 0.0023)


@pytest.mark.parametrize(
    "current, code",
    [
        (Sample(10, 0.9790, 0.0020), PASS),  # better
        (Sample(10, 0.9760, 0.0023), PASS),  # a neutral redraw: 0.06 pp lower, p about 0.3
        (Sample(10, 0.9736, 0.0023), FAIL),  # 0.3 pp lower: p about 0.004
        (Sample(10, 0.9716, 0.0023), FAIL),  # 0.5 pp lower
        (Sample(100, 0.9760, 0.0001), PASS),  # significant (p < 1e-6) but under the meaningful drop of 0.1 pp
        (Sample(3, 0.9690, 0.0010), FAIL),  # under the floor
        (None, UNDECIDED),  # workspace unreadable
    ],
)
def test_decide(current, code):
    assert decide(BASE, current, RULES).code == code


def test_decide_without_baseline():
    assert decide(None, Sample(10, 0.9766, 0.0023), RULES).code == UNDECIDED
    assert decide(None, Sample(10, 0.9600, 0.0023), RULES).code == FAIL  # the floor needs no baseline


def test_welch_agrees_with_scipy_on_raw_samples():
    """The summary-statistics Welch test against scipy's own on the samples behind them."""
    from scipy import stats

    a = [0.9800, 0.9791, 0.9748, 0.9761, 0.9777, 0.9729, 0.9735, 0.9760, 0.9745, 0.9789]
    b = [0.9731, 0.9752, 0.9702, 0.9744, 0.9716, 0.9738, 0.9760, 0.9721]
    summary = lambda xs: Sample(len(xs), statistics.fmean(xs), statistics.stdev(xs))  # noqa: E731
    c = welch(summary(a), summary(b))
    ref = stats.ttest_ind(b, a, equal_var=False, alternative="less")
    assert c.p_lower == pytest.approx(ref.pvalue, rel=1e-9)
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert c.ci95 == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.difference == pytest.approx(statistics.fmean(b) - statistics.fmean(a))


def test_welch_without_spread():
    assert welch(Sample(3, 0.98, 0.0), Sample(3, 0.97, 0.0)).p_lower == 0.0
    assert welch(Sample(3, 0.98, 0.0), Sample(3, 0.98, 0.0)).p_lower == 1.0


def diff_of(old: dict, new: dict) -> dict:
    keys = set(old) | set(new)
    return {REPLICATES: {k: {"old": old.get(k), "new": new.get(k)} for k in keys}}


def flat(n=10, mean=0.9766, sd=0.0023) -> dict:
    return {f"{m}.{f}": v for m in ("accuracy", "macro_f1", "loss") for f, v in (("n", n), ("mean", mean), ("sd", sd))}


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            flat(),
            {**flat(), "accuracy.sd": None},
            "the workspace has metrics/replicates.json whose accuracy.sd is missing",
        ),
        (flat(), {**flat(), "accuracy.mean": "high"}, "whose accuracy.mean is not a number ('high')"),
        (
            {**flat(), "accuracy.n": 1},
            flat(),
            "the baseline has metrics/replicates.json with n = 1 and sd = 0.0023 (needs n >= 2",
        ),
        ({}, flat(), "the baseline has no readable metrics/replicates.json"),
    ],
)
def test_unreadable_fields_cannot_decide(old, new, words):
    *_, verdict = gate(
        diff_of(old, new) if old else {REPLICATES: {k: {"old": None, "new": v} for k, v in new.items()}}, RULES
    )
    assert verdict.code == UNDECIDED
    assert words in verdict.reason


def test_table_names_the_numbers_and_the_reason():
    diff = diff_of(flat(), flat(mean=0.9700, sd=0.0020))
    diff["metrics/test.json"] = {"accuracy": {"old": 0.98, "new": 0.975}}
    samples, single, verdict = gate(diff, RULES)
    text = table(samples, single, verdict, "abc123")
    assert verdict.code == FAIL
    assert "| test accuracy | 0.9766 ± 0.0023 (10) | 0.9700 ± 0.0020 (10) | -0.0066 [-0.0086, -0.0046] |" in text
    assert "| **FAIL** |" in text
    assert (
        "| test accuracy of the single model (metrics/test.json, one draw) | 0.9800 | 0.9750 | -0.0050 |  | info |"
        in text
    )
    assert "mean test accuracy dropped 0.0066 (0.9766 -> 0.9700" in text


# --- the real command, with the real `dvc metrics diff`, in a temporary git repository ---


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def write_metrics(repo: Path, mean: float, sd: float = 0.0023, n: int = 10) -> None:
    """The replicates' summary as the stage writes it, and a single-model accuracy beside it."""
    (repo / "metrics").mkdir(exist_ok=True)
    summary = {"n": n, "mean": mean, "sd": sd, "min": mean - 2 * sd, "max": mean + 2 * sd}
    (repo / "metrics/replicates.json").write_text(
        json.dumps({"accuracy": summary, "macro_f1": summary, "loss": {**summary, "mean": 0.09}})
    )
    (repo / "metrics/test.json").write_text(json.dumps({"accuracy": mean + 0.001, "macro_f1": mean, "loss": 0.1}))
    (repo / "metrics/per_class.json").write_text(json.dumps({str(c): {"support": 1000} for c in range(10)}))
    (repo / "plots").mkdir(exist_ok=True)  # the seeds, in git as the replicates stage keeps them
    offsets = [(i - (n - 1) / 2) * sd / 3 for i in range(n)]
    (repo / "plots/replicates.csv").write_text(
        "seed,accuracy,macro_f1,loss\n" + "".join(f"{i},{mean + o:.6f},{mean:.6f},0.1\n" for i, o in enumerate(offsets))
    )


@pytest.fixture(scope="module")
def history_repo(tmp_path_factory):
    """A repo whose first commit has no metrics, second has replicates at 0.9766 ± 0.0023 (main)."""
    repo = tmp_path_factory.mktemp("gate") / "repo"
    repo.mkdir()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "gate test")
    git(repo, "config", "user.email", "gate@example.invalid")
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True, env=env)
    (repo / "dvc.yaml").write_text("metrics:\n  - metrics/test.json\n  - metrics/replicates.json\n")
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "no metrics yet")
    write_metrics(repo, 0.9766)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "accuracy 0.9766 +- 0.0023")

    def gate(*args):
        return subprocess.run(
            [sys.executable, "-m", "commands.gate", *args],
            cwd=repo,
            capture_output=True,
            text=True,
            env=dict(env, PYTHONPATH=str(ROOT)),
        )

    return repo, gate


@pytest.fixture
def history(history_repo):
    """The module's repo, put back on main with a clean work tree after each test."""
    yield history_repo
    repo = history_repo[0]
    git(repo, "checkout", "-qf", "main")
    git(repo, "clean", "-qfdx")


@pytest.mark.slow
@pytest.mark.parametrize(
    "mean, code, words",
    [
        (
            0.9800,
            PASS,
            "| test accuracy | 0.9766 ± 0.0023 (10) | 0.9800 ± 0.0023 (10) | +0.0034 [+0.0012, +0.0056] | 1 | pass |",
        ),
        (
            0.9756,
            PASS,
            "| test accuracy | 0.9766 ± 0.0023 (10) | 0.9756 ± 0.0023 (10) | -0.0010 [-0.0032, +0.0012] | 0.17 "
            "| pass |",
        ),
        (0.9716, FAIL, "mean test accuracy dropped 0.0050 (0.9766 -> 0.9716, p = 6.3e-05 < 0.01"),
        (0.9650, FAIL, "below the floor 0.9700"),
    ],
)
def test_gate_against_the_previous_commit(history, mean, code, words):
    repo, gate = history
    write_metrics(repo, mean)
    result = gate("--baseline", "HEAD", "--output", "gate.md")
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stdout
    assert (repo / "gate.md").read_text() == result.stdout.rstrip("\n") + "\n"
    # beside the test: P(current < baseline) from the baseline's seeds in git, and the test-set interval
    assert re.search(r"\| (pass|\*\*FAIL\*\*) \| \d\.\d\d \[\d\.\d\d, \d\.\d\d\] \| \[[+-]", result.stdout), (
        result.stdout
    )
    assert "90% of the time" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "baseline, words",
    [
        ("HEAD~1", "the baseline has no readable metrics/replicates.json"),  # a commit from before the metrics
        ("no-such-rev", "unknown Git revision 'no-such-rev'"),
    ],
)
def test_gate_cannot_decide_without_baseline_metrics(history, baseline, words):
    _, gate = history
    result = gate("--baseline", baseline)
    assert result.returncode == UNDECIDED
    assert words in result.stdout


@pytest.mark.slow
def test_gate_defaults_to_the_merge_base_with_main(history):
    repo, gate = history
    git(repo, "checkout", "-qb", "feature")
    write_metrics(repo, 0.9716)
    git(repo, "commit", "-qam", "worse")
    result = gate()
    assert result.returncode == FAIL
    base = subprocess.run(["git", "rev-parse", "--short=12", "main"], cwd=repo, capture_output=True, text=True)
    assert f"baseline ({base.stdout.strip()})" in result.stdout


def test_beside_the_test_the_table_shows_p_lower_the_test_set_interval_and_the_detectable_drop():
    """P(current < baseline) from the per-seed values, the change's interval widened by each side's
    binomial error on N test images, and the drop a one-sided Welch test at the level detects 90%
    of the time (mnistbench.stats, checked against scipy and statsmodels in tests/test_stats.py)."""
    from commands.gate import beside
    from mnistbench import stats

    old_seeds = [0.9781, 0.9766, 0.9752, 0.9790, 0.9744, 0.9771, 0.9760, 0.9783, 0.9749, 0.9768]
    new_seeds = [v - 0.003 for v in old_seeds]
    old = Sample(10, statistics.fmean(old_seeds), statistics.stdev(old_seeds))
    new = Sample(10, statistics.fmean(new_seeds), statistics.stdev(new_seeds))
    extra = beside(old, new, old_seeds, new_seeds, 10_000, 0.01)
    assert extra.p_lower == stats.p_outperform(old_seeds, new_seeds) > 0.9
    low, high = extra.total
    seeds_only = welch(old, new).ci95
    assert low < seeds_only[0] and high > seeds_only[1]  # the test set's share widens it
    assert extra.detectable == pytest.approx(stats.detectable_drop(old.sd, 10, new.sd, 10, 0.01))
    text = table({"accuracy": (old, new)}, (None, None), decide(old, new, RULES), "HEAD", extra, 0.01)
    assert f"| {extra.p_lower:.2f} [" in text and f"[{low:+.4f}, {high:+.4f}] |" in text
    assert f"a drop of {extra.detectable:.4f} ({extra.detectable * 100:.2f} pp) fails the one-sided Welch test" in text
    missing = beside(old, new, None, new_seeds, None, 0.01)  # a baseline from before plots/replicates.csv was in git
    assert missing.p_lower is None and missing.total is None
    assert "| n/a | n/a |" in table(
        {"accuracy": (old, new)}, (None, None), decide(old, new, RULES), "HEAD", missing, 0.01
    )
