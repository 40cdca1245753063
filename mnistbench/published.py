"""Published test accuracies of the benchmark's reference recipes, and the verdict on each.

benchmark/published.yaml transcribes every figure as its source prints it ("0.959", "0.95" percent
error), with the source (paper and table, or repository and file), the recipe, how many runs the
figure averages and the protocol differences that matter. load() checks it (one line naming the
figure and the key otherwise); verdict() compares a figure with the benchmark cell that runs its
recipe (benchmark/metrics/<cell>-<dataset>.json: n seeds, mean, sd).

The verdict. A published figure is a draw of its recipe on the same 10,000 test images as ours,
or the mean of `draws` such runs: the test set is common to both, so its sampling error (0.15 pp
at 99%) does not separate them; what does is the seed-to-seed spread, estimated by our cell's sd.
If the recipe is the same, published - our mean ~ N(0, sd^2 (1/draws + 1/n)), a t with n - 1
degrees of freedom: the figure holds when a two-sided test at 0.05 finds no gap, after granting it
half a unit of its last printed digit (0.959 stands for [0.9585, 0.9595]). Else we are above or
below it by a gap that is real: a difference of recipe, not chance. A deterministic cell (one
draw, sd 0: k-NN, lbfgs logistic regression) has no spread: the figure holds only within its
printed precision, and any gap is the protocol's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from scipy import stats

from mnistbench.params import ParamsError

PUBLISHED_FILE = Path("benchmark/published.yaml")
FORMS = {  # how a source prints a figure -> (the accuracy as a fraction, the scale of one printed unit)
    "accuracy": (lambda v: v, 1.0),
    "accuracy_percent": (lambda v: v / 100, 0.01),
    "error_percent": (lambda v: 1 - v / 100, 0.01),
}
TEXT_KEYS = ("cell", "dataset", "printed", "as", "source", "recipe", "differences")
ALPHA = 0.05


@dataclass(frozen=True)
class Figure:
    cell: str  # the benchmark cell that runs this recipe (a model of benchmark/params.yaml)
    dataset: str
    printed: str  # as the source prints it
    form: str  # accuracy | accuracy_percent | error_percent
    draws: int  # runs the figure averages
    source: str
    recipe: str
    differences: str  # the protocol differences that matter ("none" if none)

    @property
    def accuracy(self) -> float:
        return FORMS[self.form][0](float(self.printed))

    @property
    def half_unit(self) -> float:
        """Half a unit of the last printed digit, as an accuracy: 0.959 -> 0.0005; 0.95 (%) -> 0.00005."""
        decimals = len(self.printed.partition(".")[2])
        return 0.5 * 10.0**-decimals * FORMS[self.form][1]


def load(path: str | Path = PUBLISHED_FILE, datasets: list[str] | None = None) -> list[Figure]:
    """The figures of a published-figures file; ParamsError, one line naming the figure and the key,
    for anything missing, unknown, of the wrong type or outside [0, 1]."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: missing; restore it with `git checkout -- {path}`") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}; fix it or `git checkout -- {path}`") from None
    if not isinstance(tree, dict) or set(tree) != {"figures"} or not isinstance(tree["figures"], list):
        raise ParamsError(f"{path}: must be one key, figures:, a list of figures")
    figures = [_figure(entry, f"{path}: figures[{i}]", datasets) for i, entry in enumerate(tree["figures"])]
    seen = set()
    for i, f in enumerate(figures):
        if (f.cell, f.dataset, f.source) in seen:
            raise ParamsError(f"{path}: figures[{i}]: {f.cell} on {f.dataset} from {f.source!r} is listed twice")
        seen.add((f.cell, f.dataset, f.source))
    return figures


def _figure(entry, where: str, datasets: list[str] | None) -> Figure:
    if not isinstance(entry, dict):
        raise ParamsError(f"{where}: must be a mapping of {', '.join((*TEXT_KEYS, 'draws'))}")
    for name in (*TEXT_KEYS, "draws"):
        if entry.get(name) in (None, ""):
            what = "name the paper and table, or the repository and file" if name == "source" else "add it"
            raise ParamsError(f"{where}: {name}: missing; {what}")
    unknown = sorted(set(entry) - {*TEXT_KEYS, "draws"})
    if unknown:
        raise ParamsError(f"{where}: unknown key {unknown[0]!r}; a figure has {', '.join((*TEXT_KEYS, 'draws'))}")
    for name in TEXT_KEYS:
        if not isinstance(entry[name], str):
            raise ParamsError(
                f"{where}: {name} = {entry[name]!r}: must be text"
                + ('; quote the figure as its source prints it, e.g. printed: "0.959"' if name == "printed" else "")
            )
    label = f"{where} ({entry['cell']} on {entry['dataset']})"
    if datasets is not None and entry["dataset"] not in datasets:
        raise ParamsError(f"{label}: dataset {entry['dataset']!r}: not one of {', '.join(datasets)}")
    if entry["as"] not in FORMS:
        raise ParamsError(f"{label}: as = {entry['as']!r}: must be one of {', '.join(FORMS)}")
    if not re.fullmatch(r"\d+(\.\d+)?", entry["printed"]):
        raise ParamsError(f'{label}: printed = {entry["printed"]!r}: must be a number as printed, e.g. "0.959"')
    if type(entry["draws"]) is not int or entry["draws"] < 1:
        raise ParamsError(f"{label}: draws = {entry['draws']!r}: must be an integer >= 1 (runs the figure averages)")
    figure = Figure(
        entry["cell"], entry["dataset"], entry["printed"], entry["as"], entry["draws"],
        entry["source"], entry["recipe"], entry["differences"],
    )  # fmt: skip
    if not 0.0 <= figure.accuracy <= 1.0:
        raise ParamsError(
            f"{label}: printed = {entry['printed']!r} as {entry['as']}: accuracy {figure.accuracy:g} "
            "is outside [0, 1]; check the figure and its form (accuracy, accuracy_percent, error_percent)"
        )
    return figure


@dataclass(frozen=True)
class Verdict:
    holds: bool
    gap: float  # published - our mean, as an accuracy
    p: float | None  # the two-sided test's p (None for a deterministic cell)
    low: float  # where the published figure may lie and still hold: our mean's interval for it
    high: float

    def words(self) -> str:
        if self.holds:
            return "holds"
        side = "above" if self.gap < 0 else "below"  # where we are, relative to the figure
        return f"we are {side} it by {abs(self.gap) * 100:.2f} pp" + (
            f" (p = {self.p:.2g})" if self.p is not None else ""
        )


def verdict(figure: Figure, n: int, mean: float, sd: float) -> Verdict:
    """The figure against our cell of n seeds (mean, sd): see the module's docstring."""
    gap, h = figure.accuracy - mean, figure.half_unit
    if n < 2 or sd == 0.0:  # deterministic: only the printed precision separates them
        return Verdict(abs(gap) <= h + 1e-12, gap, None, mean - h, mean + h)
    se = sd * math.sqrt(1 / figure.draws + 1 / n)
    beyond = max(abs(gap) - h, 0.0)
    p = float(2 * stats.t.sf(beyond / se, n - 1))
    reach = stats.t.ppf(1 - ALPHA / 2, n - 1) * se + h
    return Verdict(p >= ALPHA, gap, p, mean - reach, mean + reach)
