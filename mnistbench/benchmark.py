"""The benchmark's comparisons, table and picture, from its cells' per-seed test predictions.

    cells = {name: read_cell(name, Path("benchmark")) for name in protocol.names()}
    results = compare_cells(protocol, cells)     # per dataset: every pair, the best, its ties
    markdown = table(protocol, results)           # benchmark/results.md
    png = interval_plot(protocol, results)        # benchmark/plots/intervals.png
    files = compare_outputs(protocol, cells, results)  # the compare stage's three files, as bytes

Within each dataset every pair of cells is compared (mnistbench.stats.compare): the difference of
the means with its 95% interval over seeds (Welch) and over seeds and test images (paired), Welch's
p-value, Holm-adjusted over the dataset's pairs, and P(A > B) with its bootstrap interval. A cell
is *indistinguishable from the best* (the highest mean) when the Holm-adjusted test does not reject
at ALPHA, or the test-set-aware interval of its gap to the best holds 0: a gap counts as real only
when neither the seeds nor the test set's sampling could have made it. The control, the same model
and dataset on a disjoint seed block, is one more comparison, outside the family: it must tie.
A deterministic estimator's cell (k-NN, lbfgs logistic regression) is one draw, a constant on this
test set: against it the seeds' test is one-sample (Welch's with that side's variance 0), and only
the test set's sampling can make two such cells tie.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistbench import stats
from mnistbench.files import FileFormatError, json_bytes, load_tensors
from mnistbench.protocol import Protocol

SUMMARY_FIELDS = ("n", "mean", "sd", "min", "max", "seeds_low", "seeds_high", "total_low", "total_high")
DECIMALS = 6


class CellError(ValueError):
    """A cell's files are not what its stage writes, or do not match the other cells'; one line."""


def summary(values, interval_total: stats.Interval) -> dict:
    """n, mean, sd, min, max and the two 95% intervals, rounded as every metric here."""
    s = stats.summarize(list(values))
    seeds = stats.seed_interval(values)
    return {
        "n": s["n"],
        "mean": s["mean"],
        "sd": s["sd"],
        "min": s["min"],
        "max": s["max"],
        "seeds_low": round(seeds.low, DECIMALS),
        "seeds_high": round(seeds.high, DECIMALS),
        "total_low": round(interval_total.low, DECIMALS),
        "total_high": round(interval_total.high, DECIMALS),
    }


def cell_metrics(seeds: list[int], predicted, labels) -> dict:
    """A cell's metrics file from its predictions alone: each seed's test accuracy and macro-F1
    (scored as the evaluate stage scores a model), their summaries and intervals; a deterministic
    cell's one draw says so. predicted: (S, N) uint8 classes; labels: (N,) (tensors or arrays)."""
    from mnistbench.evaluate import class_scores

    rows, truth = np.asarray(predicted), np.asarray(labels)
    scores = [class_scores(truth, row) for row in rows]
    deterministic = {"deterministic": True} if len(seeds) == 1 else {}  # one draw: every seed gives it
    return {
        "accuracy": summary([s["accuracy"] for s in scores], stats.total_interval(rows == truth)),
        "macro_f1": summary([s["macro_f1"] for s in scores], stats.total_interval_f1(rows, truth)),
        "seeds": {"first": seeds[0], "last": seeds[-1]},
        **deterministic,
    }


@dataclass(frozen=True)
class CellData:
    name: str
    accuracies: np.ndarray  # (S,)
    correct: np.ndarray  # (S, N) bool
    labels: np.ndarray  # (N,)
    metrics: dict  # the cell's metrics file
    seeds: list[int]  # as its predictions file records them
    predicted: object  # (S, N) uint8 tensor: each seed's class for each test image


def read_cell(name: str, folder: Path) -> CellData:
    """Cell `name`'s files under `folder` (predictions/NAME.pt, metrics/NAME.json), checked."""
    metrics = folder / "metrics" / f"{name}.json"
    try:
        values = json.loads(metrics.read_text())
    except (OSError, ValueError) as e:
        raise CellError(
            f"cell {name}: {metrics} is unreadable ({e}); rerun `dvc repro benchmark/dvc.yaml:cell@{name}`"
        ) from None
    return load_cell(name, folder / "predictions" / f"{name}.pt", values)


def load_cell(name: str, predictions: Path, metrics: dict) -> CellData:
    """A cell's predictions (per seed, per test image) and its metrics, checked against each other."""
    try:
        blob = load_tensors(predictions, f"cell {name}'s predictions")
    except FileFormatError as e:
        raise CellError(f"cell {name}: {e}") from None
    keys = ("predicted", "labels", "seeds")
    predicted, labels, seeds = (blob.get(k) if isinstance(blob, dict) else None for k in keys)
    if (
        predicted is None
        or labels is None
        or seeds is None
        or predicted.dim() != 2
        or predicted.shape[1:] != labels.shape
        or seeds.shape != predicted.shape[:1]
    ):
        raise CellError(
            f"cell {name}: {predictions} holds no (seeds, images) predictions for its seeds and labels; "
            f"rerun `dvc repro benchmark/dvc.yaml:cell@{name}`"
        )
    for metric in ("accuracy", "macro_f1"):
        entry = metrics.get(metric) if isinstance(metrics, dict) else None
        for field in SUMMARY_FIELDS:
            value = entry.get(field) if isinstance(entry, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CellError(
                    f"cell {name}: its metrics' {metric}.{field} is "
                    f"{'missing' if value is None else f'not a number ({value!r})'}"
                )
    draws = 1 if metrics.get("deterministic") is True else 2  # one draw of a deterministic method
    if predicted.shape[0] < draws or metrics["accuracy"]["n"] != predicted.shape[0]:
        raise CellError(
            f"cell {name}: {predicted.shape[0]} seeds of predictions against n = "
            f"{metrics['accuracy']['n']} in its metrics (a cell needs 2 seeds at least, "
            "or is one deterministic draw)"
        )
    correct = (predicted == labels).numpy()
    return CellData(name, correct.mean(1), correct, labels.numpy(), metrics, seeds.tolist(), predicted)


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    comparison: stats.Comparison
    p_holm: float

    @property
    def real(self) -> bool:
        """The gap is real: the adjusted test rejects and the test-set-aware interval excludes 0."""
        return self.p_holm < stats.ALPHA and 0.0 not in self.comparison.total


def _compare(a: CellData, b: CellData) -> stats.Comparison:
    if a.correct.shape[1] != b.correct.shape[1] or not np.array_equal(a.labels, b.labels):
        raise CellError(
            f"cells {a.name} and {b.name} were scored on other test sets ({a.correct.shape[1]} and "
            f"{b.correct.shape[1]} images, or other labels); rerun both"
        )
    return stats.compare(a.accuracies, b.accuracies, a.correct, b.correct)


def compare_cells(protocol: Protocol, cells: dict[str, CellData], control: CellData | None = None) -> dict:
    """Per dataset: its cells best first, every pair (Holm over the dataset's pairs), the cells
    indistinguishable from the best; and the control against its cell."""
    results = {}
    for dataset in protocol.datasets:
        names = sorted((f"{m}-{dataset}" for m in protocol.models), key=lambda n: -cells[n].accuracies.mean())
        raw = [(a, b, _compare(cells[a], cells[b])) for i, a in enumerate(names) for b in names[i + 1 :]]
        adjusted = stats.holm([c.p for _, _, c in raw])
        pairs = [Pair(a, b, c, p) for (a, b, c), p in zip(raw, adjusted)]
        best = names[0]
        ties = [n for n in names[1:] if not next(p for p in pairs if p.a == best and p.b == n).real]
        results[dataset] = {"cells": names, "pairs": pairs, "best": best, "ties": ties}
    if control is not None:
        name = f"{protocol.control.model}-{protocol.control.dataset}"
        comparison = _compare(control, cells[name])
        results["control"] = Pair(f"{name} (seeds {protocol.control.seed}+)", name, comparison, comparison.p)
    return results


def _round(x: float) -> float:
    return round(float(x), DECIMALS)


def _pair_json(pair: Pair) -> dict:
    c = pair.comparison
    return {
        "difference": _round(c.difference),
        "seeds_low": _round(c.seeds.low),
        "seeds_high": _round(c.seeds.high),
        "total_low": _round(c.total.low),
        "total_high": _round(c.total.high),
        "p": _round(c.p),
        "p_holm": _round(pair.p_holm),
        "p_a_better": _round(c.p_a_better),
        "p_a_better_low": _round(c.p_a_better_interval.low),
        "p_a_better_high": _round(c.p_a_better_interval.high),
        "real": pair.real,
    }


def as_json(results: dict) -> dict:
    """The comparisons as the metrics file benchmark/metrics/comparisons.json: numbers for
    `dvc metrics diff`, each pair under "A vs B"."""
    out = {}
    for dataset, r in results.items():
        if dataset == "control":
            out["control"] = _pair_json(r)
            continue
        out[dataset] = {
            "best": r["best"],
            "ties_with_best": r["ties"],
            "pairs": {f"{p.a} vs {p.b}": _pair_json(p) for p in r["pairs"]},
        }
    return out


def compare_outputs(protocol: Protocol, cells: dict[str, CellData], results: dict) -> dict[str, bytes]:
    """The compare stage's files as bytes, by their names under benchmark/: the comparisons
    (comparisons.json), the table (results.md) and the interval plot (plots/intervals.png)."""
    return {
        "comparisons.json": json_bytes(as_json(results)),
        "results.md": table(protocol, cells, results).encode(),
        "plots/intervals.png": interval_plot(protocol, cells, results),
    }


def pp(x: float) -> str:
    return f"{x * 100:+.2f}"


def table(protocol: Protocol, cells: dict[str, CellData], results: dict, whole: bool = True) -> str:
    """Markdown: per dataset, each cell's accuracy with its intervals and tier; with `whole`, also
    macro-F1, every pair's comparison and the control."""
    lines = []
    for dataset in protocol.datasets:
        r = results[dataset]
        lines += [
            f"**{dataset}**",
            "",
            "| model | test accuracy, mean ± sd (n seeds) | 95% over seeds | 95% over seeds and test images "
            + ("| macro-F1, mean ± sd | 95% over seeds and test images " if whole else "")
            + "| tier |",
            "|---|---|---|---|" + ("---|---|" if whole else "") + "---|",
        ]
        for name in r["cells"]:
            a, f = cells[name].metrics["accuracy"], cells[name].metrics["macro_f1"]
            tier = "**best**" if name == r["best"] else ("ties the best" if name in r["ties"] else "below the best")
            n = "1, deterministic" if cells[name].metrics.get("deterministic") is True else a["n"]
            row = (
                f"| {name.removesuffix('-' + dataset)} | {a['mean']:.4f} ± {a['sd']:.4f} ({n}) | "
                f"{a['seeds_low']:.4f}–{a['seeds_high']:.4f} | {a['total_low']:.4f}–{a['total_high']:.4f} | "
            )
            if whole:
                row += f"{f['mean']:.4f} ± {f['sd']:.4f} | {f['total_low']:.4f}–{f['total_high']:.4f} | "
            lines.append(row + f"{tier} |")
        lines.append("")
        if whole:
            lines += [
                "| A − B (pp) | difference | 95% over seeds | 95% over seeds and test images | Welch p | "
                "Holm p | P(A > B) [95%] | real? |",
                "|---|---|---|---|---|---|---|---|",
            ]
            lines += [_pair_row(p, dataset) for p in r["pairs"]] + [""]
    if whole and "control" in results:
        p = results["control"]
        lines += [
            "**control**: the same model and dataset on a disjoint seed block",
            "",
            "| A − B (pp) | difference | 95% over seeds | 95% over seeds and test images | Welch p | "
            "p | P(A > B) [95%] | real? |",
            "|---|---|---|---|---|---|---|---|",
            _pair_row(p, ""),
            "",
        ]
    return "\n".join(lines)


def _pair_row(p: Pair, dataset: str) -> str:
    c = p.comparison
    short = (lambda n: n.removesuffix("-" + dataset)) if dataset else (lambda n: n)
    return (
        f"| {short(p.a)} − {short(p.b)} | {pp(c.difference)} | {pp(c.seeds.low)} to {pp(c.seeds.high)} | "
        f"{pp(c.total.low)} to {pp(c.total.high)} | {c.p:.2g} | {p.p_holm:.2g} | {c.p_a_better:.2f} "
        f"[{c.p_a_better_interval.low:.2f}, {c.p_a_better_interval.high:.2f}] | {'yes' if p.real else 'no'} |"
    )


def interval_plot(protocol: Protocol, cells: dict[str, CellData], results: dict) -> bytes:
    """Per dataset, each cell's mean test accuracy (dot), its 95% interval over seeds (thick) and over
    seeds and test images (thin), best at the top."""
    from mnistbench.evaluate import plt, png  # matplotlib, headless

    fig, axes = plt.subplots(
        1, len(protocol.datasets), figsize=(5 * len(protocol.datasets), 0.6 * len(protocol.models) + 1.4), squeeze=False
    )
    for ax, dataset in zip(axes[0], protocol.datasets):
        names = results[dataset]["cells"][::-1]
        for y, name in enumerate(names):
            a = cells[name].metrics["accuracy"]
            ax.plot([a["total_low"], a["total_high"]], [y, y], color="tab:blue", linewidth=1)
            ax.plot([a["seeds_low"], a["seeds_high"]], [y, y], color="tab:blue", linewidth=5, alpha=0.6)
            ax.plot([a["mean"]], [y], "o", color="black", markersize=4)
        ax.set_yticks(range(len(names)), [n.removesuffix("-" + dataset) for n in names])
        ax.set_title(dataset, fontsize=10)
        ax.set_xlabel("test accuracy")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Mean test accuracy; thick: 95% over seeds; thin: 95% over seeds and test images", fontsize=9)
    fig.tight_layout()
    return png(fig)
