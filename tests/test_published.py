"""The published figures (benchmark/published.yaml, mnistbench/published.py): the committed
transcription loads and covers what the benchmark checks; a bad file is one line naming the figure
and the key; the verdict's test is the t test it says it is, holds 95% of the time for a figure
drawn from our own recipe, and grants a deterministic cell nothing but the printed precision."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import stats

from mnistbench import published
from mnistbench.params import ParamsError
from mnistbench.protocol import known_datasets
from tests.helpers import ROOT

DATASETS = known_datasets()
GOOD = {
    "cell": "knn",
    "dataset": "mnist",
    "printed": "0.959",
    "as": "accuracy",
    "draws": 1,
    "source": "Xiao et al. 2017, Table 3",
    "recipe": "KNeighborsClassifier(n_neighbors=5, p=1, weights='distance')",
    "differences": "none",
}


def write(tmp_path, *figures) -> str:
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"figures": list(figures)}))
    return str(path)


def test_the_committed_benchmark_checks_8_figures_of_two_sources_on_both_datasets():
    """Each figure whose cell the committed protocol runs, on a dataset it lists, has its verdict."""
    from mnistbench.protocol import load_protocol

    protocol = load_protocol(ROOT / "benchmark/params.yaml")
    checked = [
        f
        for f in published.load(ROOT / published.PUBLISHED_FILE, DATASETS)
        if f.cell in protocol.models and f.dataset in protocol.datasets
    ]
    assert all((ROOT / f"benchmark/metrics/{f.cell}-{f.dataset}.json").exists() for f in checked)
    assert len(checked) >= 8 and {f.dataset for f in checked} >= {"mnist", "fashion-mnist"}
    assert len({f.source.split(",")[0] for f in checked}) >= 2


def test_the_committed_figures_load_and_span_two_sources_and_both_datasets():
    figures = published.load(ROOT / published.PUBLISHED_FILE, DATASETS)
    assert len(figures) >= 8
    assert {f.dataset for f in figures} >= {"mnist", "fashion-mnist"}
    assert len({f.source.split(",")[0] for f in figures}) >= 2
    assert all(0.5 < f.accuracy <= 1.0 for f in figures)


@pytest.mark.parametrize(
    "printed, form, accuracy, half_unit",
    [
        ("0.959", "accuracy", 0.959, 0.0005),
        ("97.14", "accuracy_percent", 0.9714, 0.00005),
        ("0.95", "error_percent", 0.9905, 0.00005),
    ],
)
def test_a_figure_is_read_as_its_source_prints_it(tmp_path, printed, form, accuracy, half_unit):
    (figure,) = published.load(write(tmp_path, dict(GOOD, printed=printed, **{"as": form})))
    assert figure.accuracy == pytest.approx(accuracy) and figure.half_unit == pytest.approx(half_unit)


@pytest.mark.parametrize(
    "change, says",
    [
        ({"source": ""}, "figures[0]: source: missing; name the paper and table, or the repository and file"),
        ({"source": None}, "figures[0]: source: missing; name the paper and table"),
        (
            {"printed": "101", "as": "accuracy_percent"},
            "printed = '101' as accuracy_percent: accuracy 1.01 is outside [0, 1]",
        ),
        ({"printed": "1.5"}, "(knn on mnist): printed = '1.5' as accuracy: accuracy 1.5 is outside [0, 1]"),
        ({"printed": 0.959}, "printed = 0.959: must be text; quote the figure as its source prints it"),
        ({"printed": "96%"}, "printed = '96%': must be a number as printed"),
        ({"as": "percent"}, "as = 'percent': must be one of accuracy, accuracy_percent, error_percent"),
        ({"draws": 0}, "draws = 0: must be an integer >= 1"),
        ({"dataset": "cifar"}, "dataset 'cifar': not one of fashion-mnist, kmnist, mnist"),
        ({"year": 2017}, "figures[0]: unknown key 'year'"),
    ],
)
def test_a_bad_figure_is_one_line_naming_it_and_the_key(tmp_path, change, says):
    figure = {k: v for k, v in dict(GOOD, **change).items() if v is not None}
    with pytest.raises(ParamsError) as refused:
        published.load(write(tmp_path, figure), DATASETS)
    message = str(refused.value)
    assert says in message and message.startswith(str(tmp_path)) and "\n" not in message


def test_a_bad_file_is_one_line(tmp_path):
    path = tmp_path / "published.yaml"
    for text, says in [("figures: [", "not valid YAML"), ("- 1", "must be one key, figures:"), (None, "missing")]:
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
        with pytest.raises(ParamsError, match=says):
            published.load(path)
    with pytest.raises(ParamsError, match="listed twice"):
        published.load(write(tmp_path, GOOD, GOOD))


def test_the_verdict_is_a_one_sample_t_test_when_the_figure_averages_many_runs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        seeds = 0.98 + 0.002 * rng.standard_normal(5)
        figure = published.Figure("cnn", "mnist", f"{rng.uniform(0.975, 0.985):.9f}", "accuracy", 10**12, "s", "r", "d")
        got = published.verdict(figure, len(seeds), seeds.mean(), seeds.std(ddof=1))
        assert got.p == pytest.approx(stats.ttest_1samp(seeds, figure.accuracy).pvalue, rel=1e-3)
        assert got.holds == (got.p >= 0.05) == (got.low <= figure.accuracy <= got.high)


def test_a_figure_drawn_from_our_own_recipe_holds_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    holds = 0
    for _ in range(4000):
        seeds, draw = 0.98 + 0.002 * rng.standard_normal(5), 0.98 + 0.002 * rng.standard_normal()
        figure = published.Figure("cnn", "mnist", f"{draw:.9f}", "accuracy", 1, "s", "r", "d")
        holds += published.verdict(figure, 5, seeds.mean(), seeds.std(ddof=1)).holds
    assert 0.94 < holds / 4000 < 0.96


def test_a_deterministic_cell_holds_a_figure_within_its_printed_precision_only():
    figure = published.Figure("knn", "mnist", "0.959", "accuracy", 1, "s", "r", "d")
    assert published.verdict(figure, 1, 0.9594, 0.0).holds
    missed = published.verdict(figure, 1, 0.9612, 0.0)
    assert not missed.holds and missed.p is None and missed.words() == "we are above it by 0.22 pp"
