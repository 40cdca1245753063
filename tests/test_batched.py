"""mnistbench.batched: many seeds as one batched model (the replicates stage on a GPU). Each seed
starts from its single run's exact weights and follows it to float rounding; a run repeats to the
bit; the replicates stage takes this path on CUDA only (checked where a GPU is present)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from mnistbench import batched, models
from mnistbench.data import normalize
from mnistbench.models import build_model, predict_logits
from mnistbench.replicates import fit_replicates, quiet
from mnistbench.runtime import configure_torch
from mnistbench.train import fit
from tests.helpers import model_params, synthetic_digits, train_params

CPU = configure_torch(1, "cpu")
TRAIN = train_params(seed=5, epochs=1, normalize_mean=0.13, normalize_std=0.3)
SEEDS = [5, 6, 7]


def splits(device: torch.device = CPU):
    images, labels = synthetic_digits(700, seed=3)  # 550 = 8 full batches + a partial one of 38
    x = normalize(images, TRAIN.normalize_mean, TRAIN.normalize_std).to(device)
    labels = labels.to(device)
    return (x[:550], labels[:550]), (x[550:600], labels[550:600]), (x[600:], labels[600:])


@pytest.mark.parametrize("model", [{}, {"arch": "linear"}, {"hidden": (32, 16, 8), "activation": "tanh"}])
def test_each_seed_starts_from_its_single_runs_exact_weights(model):
    mp = model_params(**model)
    stacked = batched.stack(mp, SEEDS, CPU)
    for s, seed in enumerate(SEEDS):
        torch.manual_seed(seed)
        single = build_model(mp).state_dict()
        got = stacked.state_dict(s)
        assert got.keys() == single.keys() and all(torch.equal(got[k], single[k]) for k in single)
        build_model(mp).load_state_dict(got)  # the layouts a checkpoint needs


@pytest.mark.parametrize(
    "model, overrides",
    [
        ({}, {}),
        ({"arch": "linear"}, {}),
        ({"activation": "gelu"}, {"schedule": "cosine", "augment_shift": 2.0, "augment_rotate": 10.0, "epochs": 2}),
    ],
)
def test_each_seed_follows_its_single_run_to_float_rounding(model, overrides):
    """Same init, same batches in the same order, same Adam: only the products' summation order
    differs, so after 9-18 steps each seed's weights and test logits are its single run's to ~1e-5."""
    data = splits()
    mp, params = model_params(**model), dataclasses.replace(TRAIN, **overrides)
    state_dicts, logits = batched.fit_batched(mp, params, SEEDS, data, CPU)
    assert logits.shape == (len(SEEDS), len(data[2][1]), 10)
    for s, seed in enumerate(SEEDS):
        single, _, _ = fit(mp, dataclasses.replace(params, seed=seed), data[0], data[1], CPU, log=quiet)
        for key, value in single.state_dict().items():
            torch.testing.assert_close(state_dicts[s][key], value, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits[s], predict_logits(single, data[2][0], 1000), rtol=1e-4, atol=1e-4)
    assert not torch.equal(logits[0], logits[1])


def test_a_batched_run_repeats_to_the_bit_dropout_included():
    data = splits()
    mp = model_params(dropout=0.2)
    first = batched.fit_batched(mp, TRAIN, SEEDS, data, CPU)
    second = batched.fit_batched(mp, TRAIN, SEEDS, data, CPU)
    assert torch.equal(first[1], second[1])
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first[0], second[0]) for k in a)


def test_a_cnn_is_refused_by_name():
    assert batched.unstackable(model_params(arch="cnn", channels=(4,))) == "cnn has a Conv2d layer"
    with pytest.raises(ValueError, match="batched training needs a chain of linear layers: cnn has a Conv2d layer"):
        batched.fit_batched(model_params(arch="cnn", channels=(4,)), TRAIN, SEEDS, splits(), CPU)


@pytest.mark.parametrize(
    "layers, reason",
    [
        (lambda: [nn.Linear(784, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10)], "has a BatchNorm1d layer"),
        (lambda: [nn.Linear(784, 16, bias=False), nn.ReLU(), nn.Linear(16, 10)], "has a linear layer without a bias"),
        (lambda: [nn.Linear(784, 16), nn.SiLU(), nn.Linear(16, 10)], "has a SiLU layer"),
    ],
)
def test_a_model_that_is_not_a_chain_of_dense_layers_gets_its_reason(monkeypatch, layers, reason):
    """What a user's architecture may hold: the replicates then train its seeds one by one, saying why."""

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(*layers())

        def forward(self, x):
            return self.layers(x)

    monkeypatch.setattr(models.MODELS, "entries", dict(models.MODELS.entries))  # undone after
    models.register("custom")(Model)
    assert batched.unstackable(model_params(arch="custom")) == f"custom {reason}"


def test_a_forward_that_is_not_its_layers_chain_is_caught_on_a_probe_batch(monkeypatch):
    class Residual(nn.Module):  # the same leaves as an MLP, another forward
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(784, 784), nn.Linear(784, 10)

        def forward(self, x):
            return self.b(x + torch.relu(self.a(x)))

    monkeypatch.setattr(models.MODELS, "entries", dict(models.MODELS.entries))  # undone after
    models.register("residual")(Residual)
    assert batched.unstackable(model_params(arch="residual")) == "residual's forward is not the chain of its layers"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_on_cuda_a_cnn_trains_seed_by_seed_and_says_so():
    cuda = configure_torch(1, "cuda")
    lines = []
    params = dataclasses.replace(TRAIN, device="cuda")
    results = fit_replicates(
        model_params(arch="cnn", channels=(4,), hidden=(8,)),
        params,
        SEEDS[:2],
        splits(cuda),
        cuda,
        jobs=2,
        log=lines.append,
    )
    assert len(results) == 2
    assert (
        lines[0] == "replicates: cnn has a Conv2d layer, so its seeds train one after another on the GPU, not batched"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_on_cuda_the_replicates_train_batched_and_repeat_to_the_bit():
    cuda = configure_torch(1, "cuda")
    data = splits(cuda)
    params = dataclasses.replace(TRAIN, epochs=2, device="cuda")
    first = fit_replicates(model_params(), params, SEEDS, data, cuda, jobs=2, log=quiet)
    second = fit_replicates(model_params(), params, SEEDS, data, cuda, jobs=2, log=quiet)
    assert [r.scores for r in first] == [r.scores for r in second]
    assert all(torch.equal(a[k], b[k]) for (_, a, _), (_, b, _) in zip(first, second) for k in a)
    on_cpu = fit_replicates(
        model_params(), dataclasses.replace(params, device="cpu"), SEEDS, splits(), CPU, jobs=1, log=quiet
    )
    for (_, gpu, _), (_, cpu, _) in zip(first, on_cpu):  # batched on the GPU, single runs on the CPU
        for key in cpu:
            torch.testing.assert_close(gpu[key], cpu[key], rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
@pytest.mark.parametrize("overrides", [{}, {"augment_shift": 2.0, "augment_rotate": 10.0}])
def test_on_cuda_graph_replays_give_the_eager_steps_bits(overrides):
    cuda = configure_torch(1, "cuda")
    data, params = splits(cuda), dataclasses.replace(TRAIN, epochs=2, device="cuda", **overrides)
    replayed = batched.fit_batched(model_params(), params, SEEDS, data, cuda, graph=True)
    eager = batched.fit_batched(model_params(), params, SEEDS, data, cuda, graph=False)
    assert torch.equal(replayed[1], eager[1])
    assert all(torch.equal(a[k], b[k]) for a, b in zip(replayed[0], eager[0]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_on_cuda_dropout_in_graphs_repeats_to_the_bit():
    cuda = configure_torch(1, "cuda")
    data, params = splits(cuda), dataclasses.replace(TRAIN, epochs=2, device="cuda")
    first = batched.fit_batched(model_params(dropout=0.2), params, SEEDS, data, cuda)
    second = batched.fit_batched(model_params(dropout=0.2), params, SEEDS, data, cuda)
    assert torch.equal(first[1], second[1])
