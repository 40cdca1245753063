"""lab.gate_power's arithmetic, on pools of known distributions (no training)."""

from __future__ import annotations

import random

import pytest
from ruamel.yaml import YAML

from lab.gate_power import clopper_pearson, fail_rate, override
from mnistbench.params import GateParams, ParamsError, load_params
from tests.helpers import ROOT

RULES = GateParams(significance=0.01, min_drop=0.001, min_accuracy=0.9)


def normal_pool(mean: float, sd: float, size: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(size)]


def test_override_sets_one_key_with_its_type():
    params = load_params(ROOT / "params.yaml")
    tree = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    assert override(tree, "model.mlp.hidden=[64,32]").model.sections["mlp"]["hidden"] == [64, 32]
    assert override(tree, "train.epochs=3").train.epochs == 3
    assert override(tree, "train.schedule=cosine").train.schedule == "cosine"
    assert override(tree, "train.lr=1e-3").train.lr == 0.001
    assert override(tree, "train.epochs=3").model == params.model
    assert tree == YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())  # left as it was


@pytest.mark.parametrize(
    "assignment, says",
    [
        ("train.epochs=abc", "--regression train.epochs=abc: train.epochs = 'abc': must be an integer"),
        ("train.epochs=0", "--regression train.epochs=0: train.epochs = 0: must be >= 1"),
        ("model.mlp.dropout=2", "--regression model.mlp.dropout=2: model.mlp.dropout = 2.0: must be <= 0.9"),
        ("train.nope=3", "--regression train.nope=3: expected KEY=VALUE with a key of params.yaml"),
        ("epochs", "--regression epochs: expected KEY=VALUE with a key of params.yaml"),
    ],
)
def test_a_bad_regression_is_refused_by_params_rules_before_any_training(assignment, says):
    tree = YAML(typ="safe", pure=True).load((ROOT / "params.yaml").read_text())
    with pytest.raises(ParamsError) as refused:
        override(tree, assignment)
    assert str(refused.value).startswith(says)


def test_neutral_pairs_fail_about_as_often_as_the_significance_level():
    pool = normal_pool(0.9766, 0.0023, 400, seed=1)
    fails = fail_rate(pool, None, 10, 2000, RULES, random.Random(0))
    assert fails / 2000 < 0.025  # 1% nominal; the minimum drop only lowers it


@pytest.mark.parametrize("drop, at_least", [(0.005, 0.95), (0.0, 0.0)])
def test_a_real_drop_is_found(drop, at_least):
    base, other = normal_pool(0.9766, 0.0023, 200, seed=2), normal_pool(0.9766 - drop, 0.0023, 200, seed=3)
    rate = fail_rate(base, other, 10, 500, RULES, random.Random(0)) / 500
    assert rate >= at_least and (drop > 0 or rate < 0.03)


def test_clopper_pearson_by_known_values():
    assert clopper_pearson(0, 20) == (0.0, pytest.approx(0.168433, abs=1e-6))
    low, high = clopper_pearson(10, 20)
    assert low == pytest.approx(0.2719578, abs=1e-6) and high == pytest.approx(
        0.7280422, abs=1e-6
    )  # R: binom.test(10, 20)
