"""mnistbench.replicates: n seeds trained together start where n single runs start, stay with
them to float rounding, rerun to the same bits, and are summarized with exact arithmetic."""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch

from conftest import model_params, synthetic_digits
from mnistbench.params import TrainParams
from mnistbench.replicates import StackedMLP, fit_replicates, initial_models, seed_block, summarize
from mnistbench.train import configure_torch, fit, normalize, setup

DEVICE = configure_torch(1, "cpu")
TRAIN = TrainParams(seed=5, epochs=2, batch_size=64, lr=1e-3, schedule="constant", augment_shift=0,
                    augment_rotate=0, normalize_mean=0.13, normalize_std=0.3, device="cpu", threads=1)


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic_digits(600, seed=3)  # 600 = 9 full batches + a partial one of 24
    x = normalize(images, TRAIN.normalize_mean, TRAIN.normalize_std)
    return (x[:550], labels[:550]), (x[550:], labels[550:])


def quiet(_: str) -> None:
    pass


def test_seed_block_follows_train_seed():
    assert seed_block(TRAIN, 3) == [5, 6, 7]


def test_each_seed_starts_from_the_single_runs_initial_weights():
    seeds = [5, 6, 7]
    stacked = StackedMLP(initial_models(model_params(), seeds, DEVICE), "relu", 0.0)
    for i, seed in enumerate(seeds):
        single = setup(model_params(), dataclasses.replace(TRAIN, seed=seed), DEVICE, train_size=550).model
        expected = single.state_dict()
        got = stacked.state_dict_of(i)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)


@pytest.mark.parametrize("overrides", [{}, {"schedule": "cosine"}, {"augment_shift": 2.0, "augment_rotate": 10.0}])
def test_batched_seeds_follow_their_single_runs_to_float_rounding(data, overrides):
    """Same init, shuffle, augmentation draws and Adam state per seed: after 20 steps the weights
    differ from the single runs' only by kernel rounding (~1e-6), far below what one step moves
    them (~1e-3); a mixed-up seed, order or optimizer state would show as ~1e-2."""
    train, val = data
    params = dataclasses.replace(TRAIN, **overrides)
    models = fit_replicates(model_params(), params, [5, 6], train, val, DEVICE, log=quiet)
    for model, seed in zip(models, [5, 6]):
        single, _, _ = fit(model_params(), dataclasses.replace(params, seed=seed), train, val, DEVICE, log=quiet)
        for name, expected in single.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], expected, rtol=0, atol=2e-5)


def test_linear_and_dropout_models_train_and_rerun_to_the_same_bits(data):
    train, val = data
    for mp in (model_params(arch="linear"), model_params(dropout=0.2, activation="gelu")):
        runs = [fit_replicates(mp, TRAIN, [0, 1, 2], train, val, DEVICE, log=quiet) for _ in range(2)]
        for a, b in zip(*runs):
            assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
        assert not torch.equal(runs[0][0].state_dict()["layers.0.weight"], runs[0][1].state_dict()["layers.0.weight"])


def test_cnn_replicates_are_the_single_runs_bit_for_bit(data):
    train, val = data
    mp = model_params(arch="cnn", channels=(4,), hidden=(16,))
    params = dataclasses.replace(TRAIN, epochs=1)
    models = fit_replicates(mp, params, [5, 6], train, val, DEVICE, log=quiet)
    for model, seed in zip(models, [5, 6]):
        single, _, _ = fit(mp, dataclasses.replace(params, seed=seed), train, val, DEVICE, log=quiet)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in single.state_dict().items())


def test_summarize_by_hand():
    s = summarize([0.97, 0.98, 0.99, 0.96])
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.975) and s["min"] == 0.96 and s["max"] == 0.99
    sd = statistics.stdev([0.97, 0.98, 0.99, 0.96])  # 0.0129099...
    assert s["sd"] == round(sd, 6)
    half = 3.182446305284263 * sd / 2  # t(0.975, df=3) * sd / sqrt(4)
    assert (s["ci95_low"], s["ci95_high"]) == (round(0.975 - half, 6), round(0.975 + half, 6))
