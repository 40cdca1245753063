"""Regression gate: fail when the replicates' mean test accuracy really dropped against a baseline.

    mnistbench gate                      # baseline: merge base with main, else HEAD
    mnistbench gate --baseline HEAD~1 --output gate.md

One training run is one draw (the default MLP's test accuracy varies by 0.2 pp from seed to seed),
so the gate compares distributions: the n seeds of the replicates stage at the baseline revision
and in the workspace, read through DVC's own `dvc metrics diff --json --all` from
metrics/replicates.json (n, mean and sd of test accuracy). The `gate` section of params.yaml:
  - a one-sided Welch t-test of "the current mean is lower"; the change fails when its p-value is
    below `gate.significance` and the mean dropped by at least `gate.min_drop`;
  - the current mean must stay at or above `gate.min_accuracy`, whatever the baseline.
Prints a Markdown table: baseline and current mean ± sd (n), the difference with its 95%
confidence interval, the p-value and the verdict; beside them, for information, P(current <
baseline) (the Mann-Whitney probability that a current seed scores below a baseline seed, from
plots/replicates.csv, kept in git for this), the change's interval over seeds and the test set's
sampling, the smallest drop the test detects 90% of the time at these n and sds, and the single
model's accuracy (metrics/test.json, one draw).

Exit status: 0 passes, 1 fails (a regression), 2 cannot decide (no replicates at the baseline or in
the workspace, a missing or non-numeric field, DVC or git failing), with a message saying why.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mnistbench.params import GateParams, ParamsError, load_params

PASS, FAIL, UNDECIDED = 0, 1, 2
REPLICATES = "metrics/replicates.json"  # declared in dvc.yaml by the replicates stage
SINGLE = "metrics/test.json"  # the evaluate stage's one model: shown, not gated
PER_SEED = "plots/replicates.csv"  # in git (cache: false): the baseline's seeds, for P(current < baseline)
PER_CLASS = "metrics/per_class.json"  # its supports sum to the test set's size
GATED = "accuracy"
SHOWN = (("accuracy", "test accuracy"), ("macro_f1", "test macro-F1"), ("loss", "test loss"))


@dataclass(frozen=True)
class Sample:
    """A metric over the replicates' seeds."""

    n: int
    mean: float
    sd: float

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.sd:.4f} ({self.n})"


@dataclass(frozen=True)
class Comparison:
    """current - baseline, Welch's way (unequal variances)."""

    difference: float
    ci95: tuple[float, float]
    p_lower: float  # one-sided p-value of "the current mean is lower than the baseline's"


@dataclass(frozen=True)
class Verdict:
    code: int
    reason: str
    comparison: Comparison | None = None


def welch(baseline: Sample, current: Sample) -> Comparison:
    """Welch's t-test of current < baseline from summary statistics, and the two-sided 95% CI of
    the difference with the Welch-Satterthwaite degrees of freedom (checked in the tests against
    scipy.stats.ttest_ind(equal_var=False) on the raw samples)."""
    from scipy import stats  # 0.3 s to import: only when there is something to compare

    difference = current.mean - baseline.mean
    vb, vc = baseline.sd**2 / baseline.n, current.sd**2 / current.n
    se = math.sqrt(vb + vc)
    if se == 0:  # both sides without spread: the difference is exact
        return Comparison(difference, (difference, difference), 0.0 if difference < 0 else 1.0)
    df = (vb + vc) ** 2 / (vb**2 / (baseline.n - 1) + vc**2 / (current.n - 1))
    half = stats.t.ppf(0.975, df) * se
    return Comparison(difference, (difference - half, difference + half), float(stats.t.cdf(difference / se, df)))


def decide(
    baseline: Sample | None, current: Sample | None, rules: GateParams, missing: str = f"no readable {REPLICATES}"
) -> Verdict:
    """The gate's whole rule, on summary statistics (None: that side could not be read, for the
    reason `missing`)."""
    if current is None:
        return Verdict(UNDECIDED, f"the workspace has {missing}; run `dvc repro` first")
    failures = []
    comparison = welch(baseline, current) if baseline is not None else None
    if comparison is not None:
        drop = -comparison.difference
        if comparison.p_lower < rules.significance and drop >= rules.min_drop - 1e-12:  # 1e-12: float noise
            failures.append(
                f"mean test accuracy dropped {drop:.4f} ({baseline.mean:.4f} -> {current.mean:.4f}, "
                f"p = {comparison.p_lower:.2g} < {rules.significance:g}; at least {rules.min_drop:.4f} fails)"
            )
    if current.mean < rules.min_accuracy:
        failures.append(f"mean test accuracy {current.mean:.4f} is below the floor {rules.min_accuracy:.4f}")
    if failures:  # the floor needs no baseline: a result under it fails even without one
        return Verdict(FAIL, "; ".join(failures), comparison)
    if comparison is None:
        return Verdict(UNDECIDED, f"the baseline has {missing} to compare with")
    return Verdict(
        PASS,
        f"no significant drop: mean test accuracy {current.mean:.4f} against {baseline.mean:.4f} "
        f"(p = {comparison.p_lower:.2g}; fails below {rules.significance:g} with a drop of at least "
        f"{rules.min_drop:.4f}; floor {rules.min_accuracy:.4f})",
        comparison,
    )


def _number(value) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def read_sample(entries: dict, metric: str, side: str) -> Sample | str:
    """The Sample of `metric` ('accuracy', ...) on one side ('old' or 'new') of the metrics diff
    entries of REPLICATES, or a reason why it cannot be read."""
    if all((entries.get(f"{metric}.{field}") or {}).get(side) is None for field in ("n", "mean", "sd")):
        return f"no readable {REPLICATES}"  # no such file on that side (or no such metric in it)
    values = {}
    for field in ("n", "mean", "sd"):
        value = _number((entries.get(f"{metric}.{field}") or {}).get(side))
        if value is None:
            shown = (entries.get(f"{metric}.{field}") or {}).get(side)
            return f"{REPLICATES} whose {metric}.{field} is " + (
                "missing" if shown is None else f"not a number ({shown!r})"
            )
        values[field] = value
    if values["n"] < 2 or values["n"] != int(values["n"]) or values["sd"] < 0:
        return f"{REPLICATES} with n = {values['n']:g} and sd = {values['sd']:g} (needs n >= 2 seeds, sd >= 0)"
    return Sample(int(values["n"]), values["mean"], values["sd"])


def read_diff(diff: dict) -> tuple[dict[str, tuple[Sample | str, Sample | str]], tuple[float | None, float | None]]:
    """({metric: (baseline, current)} of the replicates, (baseline, current) single-model
    accuracy) out of `dvc metrics diff --json --all`; a str in place of a Sample says why not."""
    if not diff.get(REPLICATES):
        empty = f"no readable {REPLICATES}"
        samples = {key: (empty, empty) for key, _ in SHOWN}
    else:
        entries = diff[REPLICATES]
        samples = {key: (read_sample(entries, key, "old"), read_sample(entries, key, "new")) for key, _ in SHOWN}
    single = diff.get(SINGLE, {}).get(GATED, {})
    return samples, (_number(single.get("old")), _number(single.get("new")))


@dataclass(frozen=True)
class Beside:
    """What the gate shows beside its Welch test, for the gated metric (mnistbench/stats.py)."""

    p_lower: float | None  # P(a current seed scores below a baseline seed), Mann-Whitney
    p_lower_interval: tuple[float, float] | None  # its 95% bootstrap interval over seeds
    total: tuple[float, float] | None  # 95% interval of the change over seeds and the test set's sampling
    detectable: float | None  # the drop a one-sided Welch test at the gate's level detects 90% of the time


def beside(
    old: Sample,
    new: Sample,
    old_seeds: list[float] | None,
    new_seeds: list[float] | None,
    test_images: int | None,
    significance: float,
) -> Beside:
    """The test-set-aware interval is the unpaired binomial bound (each side's p(1 - p) / N): the
    baseline's per-image predictions are not in git, and pairing the images could only narrow it."""
    from mnistbench import stats

    p = interval = total = None
    if old_seeds and new_seeds and len(old_seeds) >= 2 and len(new_seeds) >= 2:
        c = stats.compare(old_seeds, new_seeds)
        p, interval = c.p_a_better, (c.p_a_better_interval.low, c.p_a_better_interval.high)
    if test_images:
        half = stats.t_half_width(
            [
                (old.sd**2 / old.n, old.n - 1),
                (new.sd**2 / new.n, new.n - 1),
                (old.mean * (1 - old.mean) / test_images, test_images - 1),
                (new.mean * (1 - new.mean) / test_images, test_images - 1),
            ]
        )
        change = new.mean - old.mean
        total = (change - half, change + half)
    detectable = stats.detectable_drop(old.sd, old.n, new.sd, new.n, significance) if old.n > 1 < new.n else None
    return Beside(p, interval, total, detectable)


def table(
    samples: dict,
    single: tuple[float | None, float | None],
    verdict: Verdict,
    baseline_rev: str,
    extra: Beside | None = None,
    significance: float | None = None,
) -> str:
    def fmt(x) -> str:
        return str(x) if isinstance(x, Sample) else "missing"

    label = {PASS: "pass", FAIL: "**FAIL**", UNDECIDED: "**cannot decide**"}[verdict.code]
    rows = [
        f"### Accuracy gate: {label}",
        "",
        f"| metric, mean ± sd (n seeds) | baseline ({baseline_rev}) | current | change [95% CI] "
        "| p (one-sided) | verdict | P(current < baseline) [95%] | change [95%, seeds and test set] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, name in SHOWN:
        old, new = samples.get(key, (None, None))
        change, p = "n/a", ""
        if isinstance(old, Sample) and isinstance(new, Sample):
            c = verdict.comparison if key == GATED and verdict.comparison else welch(old, new)
            change = f"{c.difference:+.4f} [{c.ci95[0]:+.4f}, {c.ci95[1]:+.4f}]"
            p = f"{c.p_lower:.2g}" if key == GATED else ""
        more = " | |"
        if key == GATED and extra is not None:
            lower = (
                f"{extra.p_lower:.2f} [{extra.p_lower_interval[0]:.2f}, {extra.p_lower_interval[1]:.2f}]"
                if extra.p_lower is not None
                else "n/a"
            )
            total = f"[{extra.total[0]:+.4f}, {extra.total[1]:+.4f}]" if extra.total else "n/a"
            more = f" {lower} | {total} |"
        rows.append(
            f"| {name} | {fmt(old)} | {fmt(new)} | {change} | {p} | {label if key == GATED else 'info'} |" + more
        )
    old, new = single
    shown = [("missing" if x is None else f"{x:.4f}") for x in (old, new)]
    change = f"{new - old:+.4f}" if old is not None and new is not None else "n/a"
    rows.append(
        f"| test accuracy of the single model ({SINGLE}, one draw) | {shown[0]} | {shown[1]} | {change} |  | info | | |"
    )
    notes = ["", verdict.reason]
    if extra is not None and extra.detectable is not None:
        notes.append(
            f"At these n and sds, a drop of {extra.detectable:.4f} ({extra.detectable * 100:.2f} pp) fails the "
            f"one-sided Welch test at {significance:g} 90% of the time; a smaller one may pass unseen. "
            "The last column also covers the test set's sampling (unpaired binomial bound)."
        )
    return "\n".join(rows + notes + [""])


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def default_baseline() -> str:
    for main in ("main", "origin/main"):
        base = _git("merge-base", "HEAD", main)
        if base:
            return base[:12]
    return "HEAD"


def metrics_diff(baseline: str) -> dict:
    """`dvc metrics diff --json --all BASELINE` (baseline vs workspace); raises RuntimeError."""
    cmd = [sys.executable, "-m", "dvc", "metrics", "diff", "--json", "--all", baseline]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(" ".join((result.stderr or result.stdout).split()) or f"exit {result.returncode}")
    return json.loads(result.stdout or "{}")


def per_seed(rev: str | None) -> list[float] | None:
    """The replicates' per-seed test accuracies (plots/replicates.csv) at a git revision, or in the
    workspace for None; None where there is no such file (before it was kept in git)."""
    text = (
        _git("show", f"{rev}:{PER_SEED}") if rev else (Path(PER_SEED).read_text() if Path(PER_SEED).is_file() else None)
    )
    if not text:
        return None
    rows = [line.split(",") for line in text.strip().splitlines()]
    try:
        column = rows[0].index("accuracy")
        return [float(row[column]) for row in rows[1:]]
    except (ValueError, IndexError):
        return None


def test_images() -> int | None:
    """How many test images the workspace's model was scored on (metrics/per_class.json's supports)."""
    try:
        return sum(int(c["support"]) for c in json.loads(Path(PER_CLASS).read_text()).values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def gate(diff: dict, rules: GateParams) -> tuple[dict, tuple, Verdict]:
    samples, single = read_diff(diff)
    old, new = samples[GATED]
    if isinstance(new, str):
        return samples, single, decide(None, None, rules, missing=new)
    if isinstance(old, str):
        return samples, single, decide(None, new, rules, missing=old)
    return samples, single, decide(old, new, rules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision to compare with (default: merge base with main, else HEAD)")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        rules = load_params(args.params).gate
    except ParamsError as e:
        print(f"gate: error: {e}", file=sys.stderr)
        return UNDECIDED
    baseline = args.baseline or default_baseline()
    try:
        samples, single, verdict = gate(metrics_diff(baseline), rules)
    except (RuntimeError, json.JSONDecodeError, AttributeError) as e:
        samples, single, verdict = {}, (None, None), Verdict(UNDECIDED, f"`dvc metrics diff {baseline}` failed: {e}")
    extra = None
    old, new = samples.get(GATED, (None, None))
    if isinstance(old, Sample) and isinstance(new, Sample):
        extra = beside(old, new, per_seed(baseline), per_seed(None), test_images(), rules.significance)
    report = table(samples, single, verdict, baseline, extra, rules.significance)
    print(report)
    if args.output:
        args.output.write_text(report)
    return verdict.code


if __name__ == "__main__":
    raise SystemExit(main())
