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
confidence interval, the p-value and the verdict; the single model's accuracy (metrics/test.json,
one draw) is shown beside it for information.

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


def table(samples: dict, single: tuple[float | None, float | None], verdict: Verdict, baseline_rev: str) -> str:
    def fmt(x) -> str:
        return str(x) if isinstance(x, Sample) else "missing"

    label = {PASS: "pass", FAIL: "**FAIL**", UNDECIDED: "**cannot decide**"}[verdict.code]
    rows = [
        f"### Accuracy gate: {label}",
        "",
        f"| metric, mean ± sd (n seeds) | baseline ({baseline_rev}) | current | change [95% CI] "
        "| p (one-sided) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in SHOWN:
        old, new = samples.get(key, (None, None))
        change, p = "n/a", ""
        if isinstance(old, Sample) and isinstance(new, Sample):
            c = verdict.comparison if key == GATED and verdict.comparison else welch(old, new)
            change = f"{c.difference:+.4f} [{c.ci95[0]:+.4f}, {c.ci95[1]:+.4f}]"
            p = f"{c.p_lower:.2g}" if key == GATED else ""
        rows.append(f"| {name} | {fmt(old)} | {fmt(new)} | {change} | {p} | {label if key == GATED else 'info'} |")
    old, new = single
    shown = [("missing" if x is None else f"{x:.4f}") for x in (old, new)]
    change = f"{new - old:+.4f}" if old is not None and new is not None else "n/a"
    rows.append(
        f"| test accuracy of the single model ({SINGLE}, one draw) | {shown[0]} | {shown[1]} | {change} |  | info |"
    )
    return "\n".join(rows + ["", verdict.reason, ""])


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
    report = table(samples, single, verdict, baseline)
    print(report)
    if args.output:
        args.output.write_text(report)
    return verdict.code


if __name__ == "__main__":
    raise SystemExit(main())
