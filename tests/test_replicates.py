"""mnistbench.replicates: each replicate is, to the bit, the single run of its seed, whether the
seeds train in this process or in worker processes; a dead worker is one clear error; summaries
are exact arithmetic."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import statistics
import threading
import time

import pytest
import torch

from mnistbench import evaluate as ev
from mnistbench.data import normalize
from mnistbench.models import predict_logits
from mnistbench.replicates import WorkerError, fit_replicates, quiet, seed_block, summarize
from mnistbench.runtime import configure_torch
from mnistbench.train import fit
from tests.helpers import model_params, synthetic_digits, train_params

DEVICE = configure_torch(1, "cpu")
TRAIN = train_params(seed=5, epochs=2, normalize_mean=0.13, normalize_std=0.3)


def splits():
    images, labels = synthetic_digits(700, seed=3)  # 550 = 8 full batches + a partial one of 38
    x = normalize(images, TRAIN.normalize_mean, TRAIN.normalize_std)
    return (x[:550], labels[:550]), (x[550:600], labels[550:600]), (x[600:], labels[600:])


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_seed_block_follows_train_seed():
    assert seed_block(TRAIN, 3) == [5, 6, 7]


@pytest.mark.parametrize(
    "model, overrides",
    [
        ({}, {}),
        ({}, {"schedule": "cosine", "augment_shift": 2.0, "augment_rotate": 10.0}),
        ({"arch": "linear"}, {}),
        ({"dropout": 0.2, "activation": "gelu"}, {}),
        ({"arch": "cnn", "channels": (4,), "hidden": (16,)}, {"epochs": 1}),
    ],
)
def test_each_replicate_is_its_seeds_single_run_bit_for_bit(model, overrides):
    data = splits()
    mp, params = model_params(**model), dataclasses.replace(TRAIN, **overrides)
    results = fit_replicates(mp, params, [5, 6], data, DEVICE, jobs=1, log=quiet)
    for (scores, state_dict, predicted), seed in zip(results, [5, 6]):
        single, _, _ = fit(mp, dataclasses.replace(params, seed=seed), data[0], data[1], DEVICE, log=quiet)
        logits = predict_logits(single, data[2][0], 1000)
        assert same(state_dict, single.state_dict())
        assert scores == ev.score(data[2][1].numpy(), logits)[0]
        assert predicted.dtype == torch.uint8 and torch.equal(predicted, logits.argmax(1).to(torch.uint8))
    assert not same(results[0].state_dict, results[1].state_dict)


def test_worker_processes_give_the_same_bits_and_scores_as_one_process():
    data = splits()
    seeds = [5, 6, 7]
    here = fit_replicates(model_params(), TRAIN, seeds, data, DEVICE, jobs=1, log=quiet)
    lines = []
    there = fit_replicates(model_params(), TRAIN, seeds, splits(), DEVICE, jobs=2, log=lines.append)
    assert [r.scores for r in there] == [r.scores for r in here]
    assert all(same(a.state_dict, b.state_dict) and torch.equal(a.predicted, b.predicted) for a, b in zip(here, there))
    assert len(lines) == 3 and lines[-1].endswith("(3/3 seeds done)")


def test_a_killed_worker_is_one_clear_error_naming_the_seeds_left():
    data = splits()
    params = dataclasses.replace(TRAIN, epochs=100_000)  # never done: both seeds are still training when one is killed
    outcome = {}

    def run():
        try:
            fit_replicates(model_params(), params, [5, 6], data, DEVICE, jobs=2, log=quiet)
        except WorkerError as e:
            outcome["error"] = str(e)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while not multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(8)  # past the workers' start-up (torch's import): they are training
    victim = multiprocessing.active_children()[0]
    os.kill(victim.pid, signal.SIGKILL)
    thread.join(timeout=120)
    for child in multiprocessing.active_children():  # on failure, no worker left training forever
        child.kill()
    assert not thread.is_alive()
    assert outcome["error"].startswith("a worker process died before seeds [5, 6] were trained")


def test_summarize_by_hand():
    s = summarize([0.97, 0.98, 0.99, 0.96])
    assert s["n"] == 4 and s["mean"] == pytest.approx(0.975) and s["min"] == 0.96 and s["max"] == 0.99
    sd = statistics.stdev([0.97, 0.98, 0.99, 0.96])  # 0.0129099...
    assert s["sd"] == round(sd, 6)
    half = 3.182446305284263 * sd / 2  # t(0.975, df=3) * sd / sqrt(4)
    assert (s["ci95_low"], s["ci95_high"]) == (round(0.975 - half, 6), round(0.975 + half, 6))
