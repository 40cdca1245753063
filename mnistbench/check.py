"""Regression gate: fail when test accuracy drops against a baseline revision.

    python -m mnistbench.check                      # baseline: merge base with main, else HEAD
    python -m mnistbench.check --baseline HEAD~1 --output gate.md

Compares the workspace's metrics with those at the baseline through DVC's own
`dvc metrics diff --json --all`, and applies the `check` section of params.yaml:
test accuracy may drop by at most `check.max_accuracy_drop` and must stay at or above
`check.min_accuracy`. Prints a Markdown table (metric, baseline, current, change, verdict).

Exit status: 0 passes, 1 fails (a regression), 2 cannot decide (no metrics at the baseline, an
unreadable metrics file, DVC or git failing), with a message saying why.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mnistbench.params import CheckParams, ParamsError, load_params

PASS, FAIL, UNDECIDED = 0, 1, 2
METRICS_FILE = "metrics/test.json"  # declared in dvc.yaml by the evaluate stage
GATED = "accuracy"
SHOWN = (("accuracy", "test accuracy"), ("macro_f1", "test macro-F1"), ("loss", "test loss"))


@dataclass(frozen=True)
class Verdict:
    code: int
    reason: str


def decide(baseline: float | None, current: float | None, rules: CheckParams) -> Verdict:
    """The gate's whole rule, on plain numbers (None: the value could not be read)."""
    if current is None:
        return Verdict(UNDECIDED, f"the workspace has no readable {METRICS_FILE}; run `dvc repro` first")
    failures = []
    if baseline is not None and baseline - current > rules.max_accuracy_drop + 1e-12:  # 1e-12: float noise
        failures.append(f"test accuracy dropped {baseline - current:.4f} ({baseline:.4f} -> {current:.4f}), "
                        f"more than the tolerance {rules.max_accuracy_drop:.4f}")
    if current < rules.min_accuracy:
        failures.append(f"test accuracy {current:.4f} is below the floor {rules.min_accuracy:.4f}")
    if failures:  # the floor needs no baseline: a result under it fails even without one
        return Verdict(FAIL, "; ".join(failures))
    if baseline is None:
        return Verdict(UNDECIDED, f"the baseline has no readable {METRICS_FILE} to compare with")
    return Verdict(PASS, f"test accuracy {current:.4f} (baseline {baseline:.4f}; tolerance "
                         f"{rules.max_accuracy_drop:.4f}, floor {rules.min_accuracy:.4f})")


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_diff(diff: dict) -> dict[str, tuple[float | None, float | None]]:
    """{metric: (baseline, current)} for METRICS_FILE out of `dvc metrics diff --json --all`."""
    entries = diff.get(METRICS_FILE, {})
    return {key: (_number(entries.get(key, {}).get("old")), _number(entries.get(key, {}).get("new")))
            for key, _ in SHOWN}


def table(values: dict[str, tuple[float | None, float | None]], verdict: Verdict, baseline_rev: str) -> str:
    def fmt(x: float | None) -> str:
        return "missing" if x is None else f"{x:.4f}"

    label = {PASS: "pass", FAIL: "**FAIL**", UNDECIDED: "**cannot decide**"}[verdict.code]
    rows = [f"### Accuracy gate: {label}", "",
            f"| metric | baseline ({baseline_rev}) | current | change | verdict |", "|---|---|---|---|---|"]
    for key, name in SHOWN:
        old, new = values.get(key, (None, None))
        change = f"{new - old:+.4f}" if old is not None and new is not None else "n/a"
        rows.append(f"| {name} | {fmt(old)} | {fmt(new)} | {change} | {label if key == GATED else 'info'} |")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision to compare with (default: merge base with main, else HEAD)")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)
    try:
        rules = load_params(args.params).check
    except ParamsError as e:
        print(f"check: error: {e}", file=sys.stderr)
        return UNDECIDED
    baseline = args.baseline or default_baseline()
    try:
        values = read_diff(metrics_diff(baseline))
        verdict = decide(*values[GATED], rules)
    except (RuntimeError, json.JSONDecodeError, AttributeError) as e:
        values, verdict = {}, Verdict(UNDECIDED, f"`dvc metrics diff {baseline}` failed: {e}")
    report = table(values, verdict, baseline)
    print(report)
    if args.output:
        args.output.write_text(report)
    return verdict.code


if __name__ == "__main__":
    raise SystemExit(main())
