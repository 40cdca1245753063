"""A Markdown leaderboard of committed runs and DVC experiments, best test accuracy first.

    mnistbench leaderboard                 # HEAD and the experiments based on it
    mnistbench leaderboard --all-commits   # every commit and experiment DVC knows
    mnistbench leaderboard --output LEADERBOARD.md

Reads `dvc exp show --json`: params from params.yaml, results from metrics/replicates.json (test
accuracy over the replicates' seeds, mean ± sd (n): what rows are ranked by), metrics/test.json
(the single model's, one draw) and metrics/train.json, so nothing is rerun. Within each dataset,
each run is tested against the best (Welch on the seeds' summaries, Holm-adjusted): "ties" marks
a gap the seeds' noise could have made.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from mnistbench.entry import run_command
from mnistbench.files import write_text

COLUMNS = [
    "experiment",
    "dataset",
    "model",
    "training",
    "test accuracy, mean ± sd (n seeds)",
    "against the best",
    "single model",
    "macro-F1 (single)",
    "parameters",
]


def runs(exp_show: list) -> list[dict]:
    """Every committed run and experiment in `dvc exp show --json` output that has params and
    metrics, as {"name", "rev", "params", "metrics"}; the workspace is left out."""
    found = []

    def visit(node: dict, name: str | None) -> None:
        data = node.get("data") or {}
        rev = node.get("rev") or data.get("rev")
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
        metrics = {path: (entry or {}).get("data") or {} for path, entry in (data.get("metrics") or {}).items()}
        if rev != "workspace" and params and metrics:
            found.append(
                {"name": node.get("name") or name or rev[:7], "rev": rev, "params": params, "metrics": metrics}
            )
        for exp in node.get("experiments") or []:
            for child in exp.get("revs") or []:
                visit(child, exp.get("name"))

    for node in exp_show:
        visit(node, None)
    return found


def describe_model(model: dict) -> str:
    """The arch and its own keys, named (models.MODELS): `mlp hidden=128-64 activation=relu
    dropout=0.0`, `linear`. A run from before each architecture had its own section shows the keys
    of the flat section that its arch reads now; an arch no longer registered, its name alone."""
    from mnistbench.registry import described

    arch = model.get("arch", "?")
    own = model.get(arch)
    if not isinstance(own, dict):
        from mnistbench.models import MODELS  # torch: a second, once per leaderboard

        declared = MODELS.entries[arch].keys if arch in MODELS else {}
        own = {k: model[k] for k in declared if k in model}
    return described(arch, own)


def describe_training(train: dict) -> str:
    """Epochs, batch, the optimizer with lr and its non-zero keys, the schedule with its keys
    unless constant, the augmentation: `11 ep, batch 64, sgd lr 0.05 momentum=0.9`."""
    from mnistbench.registry import described

    optimizer = train.get("optimizer", "adam")  # runs from before train.optimizer: Adam
    own = train.get(optimizer)
    if not isinstance(own, dict):  # a run from before each optimizer had its own section
        own = {k: train[k] for k in ("momentum", "weight_decay") if k in train}
    shown = {k: v for k, v in own.items() if v}
    text = f"{train.get('epochs')} ep, batch {train.get('batch_size')}, {optimizer} lr {train.get('lr')}"
    if shown:
        text += " " + described(optimizer, shown).partition(" ")[2]
    schedule = train.get("schedule", "constant")
    if schedule != "constant":
        text += " " + described(schedule, train.get(schedule) if isinstance(train.get(schedule), dict) else {})
    if train.get("augment_shift") or train.get("augment_rotate"):
        text += f", shift {train.get('augment_shift', 0):g} px, rotate {train.get('augment_rotate', 0):g}°"
    return text


def row(run: dict) -> dict:
    params, metrics = run["params"], run["metrics"]
    test, trained = metrics.get("metrics/test.json", {}), metrics.get("metrics/train.json", {})
    replicates = metrics.get("metrics/replicates.json", {}).get("accuracy") or {}
    spread = "-"
    if all(isinstance(replicates.get(k), (int, float)) for k in ("mean", "sd", "n")):
        spread = f"{replicates['mean']:.4f} ± {replicates['sd']:.4f} ({replicates['n']})"
    return {
        "experiment": f"{run['name']} ({run['rev'][:7]})" if run["name"] != run["rev"][:7] else run["name"],
        "dataset": (params.get("prepare") or {}).get("dataset", "mnist"),  # runs from before datasets: mnist
        "model": describe_model(params.get("model") or {}),
        "training": describe_training(params.get("train") or {}),
        # ranked by the replicates' mean; runs from before the replicates stage by their one draw
        "accuracy": replicates["mean"] if spread != "-" else test.get("accuracy"),
        "replicates": replicates if spread != "-" else None,
        "test accuracy, mean ± sd (n seeds)": spread,
        "single model": _fmt(test.get("accuracy"), "{:.4f}"),
        "macro-F1 (single)": _fmt(test.get("macro_f1"), "{:.4f}"),
        "parameters": _fmt(trained.get("parameters"), "{:,}"),
    }


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def against_the_best(rows: list[dict]) -> None:
    """Fill each row's "against the best" column: within each dataset, every run with replicates
    against the one of the highest mean, by Welch's test on their summaries, Holm-adjusted over
    the dataset's runs (mnistbench/stats.py). A run ties the best when the adjusted p is at least
    0.05: its gap could be the seeds' noise. Runs without replicates (one draw) are not ranked so."""
    from mnistbench import stats

    for dataset in {r["dataset"] for r in rows}:
        ranked = sorted(
            (r for r in rows if r["dataset"] == dataset and r.get("replicates")), key=lambda r: -r["replicates"]["mean"]
        )
        if not ranked:
            continue
        best, others = ranked[0]["replicates"], ranked[1:]
        p = [
            stats.welch_from_stats(
                best["mean"],
                best["sd"],
                best["n"],
                o["replicates"]["mean"],
                o["replicates"]["sd"],
                o["replicates"]["n"],
            )
            for o in others
        ]
        ranked[0]["against the best"] = "**best**"
        for row, adjusted in zip(others, stats.holm(p)):
            row["against the best"] = f"{'ties' if adjusted >= stats.ALPHA else 'below'} (Holm p = {adjusted:.2g})"


def markdown(rows: list[dict]) -> str:
    for r in rows:
        r.setdefault("against the best", "-")
    against_the_best(rows)
    rows = sorted(rows, key=lambda r: (r["dataset"] != "mnist", r["dataset"], -(r["accuracy"] or 0)))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-commits", action="store_true", help="every commit, not just HEAD, and its experiments")
    parser.add_argument("--output", help="also write the table to this Markdown file")
    args = parser.parse_args()
    command = ["dvc", "exp", "show", "--json", *(["--all-commits"] if args.all_commits else [])]
    shown = subprocess.run(command, capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(
            f"leaderboard: error: {' '.join(command)} exited {shown.returncode}: {' '.join(shown.stderr.split())[:300]}"
        )
    found = runs(json.loads(shown.stdout))
    if not found:
        raise SystemExit(
            "leaderboard: error: no committed run or experiment with params and metrics; "
            "run `dvc repro` and commit, or `dvc exp run`"
        )
    table = markdown([row(r) for r in found])
    sys.stdout.write(table)
    if args.output:
        write_text(args.output, table)


if __name__ == "__main__":
    run_command("leaderboard", main)
