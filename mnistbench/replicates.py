"""The configured model trained on n seeds: accuracy as a distribution, not one draw.

    seeds = seed_block(params.train, params.replicates.n)       # train.seed .. train.seed + n - 1
    results = fit_replicates(params.model, params.train, seeds, (train, val, test), device, jobs=2)
    scores = [r.scores for r in results]                        # [{"accuracy", "macro_f1", "loss"}, ...]
    summary = summarize([row["accuracy"] for row in scores])     # n, mean, sd, min, max, 95% CI

On the CPU each seed is trained by mnistbench.train.fit, the train stage's own code, so replicate
k is to the bit the model that `dvc exp run -S train.seed=k` trains, and it inherits that model's
promise of the same bytes on any x86-64 CPU (mnistbench/portable.py). `jobs` seeds train at once,
each in its own worker process (spawned: torch's OpenMP does not survive a fork) at train.threads
threads, the splits shared with it through shared memory; the bits do not depend on the number
of jobs. No worker outlives the stage: each dies with its parent (PR_SET_PDEATHSIG, on Linux),
and the parent kills them when it stops for any reason (Ctrl-C, SIGTERM, an error); a worker that
dies (killed, out of memory) ends the stage with one line naming the seeds left.

Why processes and not one batched model on the CPU: the seeds' weights stacked (mnistbench/batched.py)
run their products on MKL, whose kernels differ between Intel and AMD CPUs unless
MKL_CBWR=COMPATIBLE, and then they are no faster per seed than single runs, and match single runs
only to float rounding. On a GPU, where seeds one after another leave it idle and no bits are
portable anyway, that design is what trains a dense model's seeds.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable
from typing import NamedTuple

import torch

from mnistbench import batched, estimators
from mnistbench.entry import die_with
from mnistbench.models import predict_logits
from mnistbench.params import ModelParams, TrainParams
from mnistbench.train import EVAL_BATCH_SIZE, fit

DECIMALS = 6  # as the evaluate stage's metrics
Splits = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (train, val, test), each (x, y)


def seed_block(train: TrainParams, n: int) -> list[int]:
    """The replicates' seeds: train.seed, train.seed + 1, ..., train.seed + n - 1 (params.py
    refuses a block past the largest seed)."""
    return list(range(train.seed, train.seed + n))


def seeds_to_train(model: ModelParams, seeds: list[int]) -> list[int]:
    """The seeds worth training: all of them, or the first alone for a deterministic estimator
    (k-NN, lbfgs logistic regression), which every seed would give to the bit."""
    deterministic = estimators.is_estimator(model.arch) and not estimators.is_randomized(model.arch)
    return seeds[:1] if deterministic else seeds


class Replicate(NamedTuple):
    """One seed's result: its test scores, its weights and its prediction for each test image."""

    scores: dict  # accuracy, macro_f1, loss
    state_dict: dict[str, torch.Tensor]
    predicted: torch.Tensor  # (N,) uint8: the predicted class of each test image, in the split's order


class WorkerError(RuntimeError):
    """A worker process died (killed, or out of memory) before its seeds were done."""


def quiet(_: str) -> None:
    pass


def train_one(
    model_params: ModelParams, params: TrainParams, seed: int, data: Splits, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Seed `seed` trained exactly as the train stage trains it (mnistbench.train.fit): its logits
    on the test split (CPU) and its state_dict. Scoring is left to the caller: scikit-learn and
    matplotlib (mnistbench.evaluate) would add seconds to each worker process's start."""
    train, val, test = data
    model, _, _ = fit(model_params, dataclasses.replace(params, seed=seed), train, val, device, log=quiet)
    return predict_logits(model.eval(), test[0], EVAL_BATCH_SIZE).cpu(), model.state_dict()


def _worker(conn, parent: int, data: Splits, threads: int) -> None:
    """A worker process: trains the seeds its parent sends down `conn`, one at a time, until killed."""
    die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C signals the whole process group: the parent decides
    torch.set_num_threads(threads)  # train.threads, as the train stage: some products' bits depend on it
    while True:
        model_params, params, seed = conn.recv()
        conn.send((seed, train_one(model_params, params, seed, data, torch.device("cpu"))))


def _in_workers(
    model_params: ModelParams,
    params: TrainParams,
    seeds: list[int],
    data: Splits,
    jobs: int,
    done: Callable[[int, tuple], None],
) -> None:
    """Train `seeds` in `jobs` worker processes, handing each result to done(seed, result) as it
    arrives. However this returns or raises, every worker has been killed by then."""
    from multiprocessing.connection import wait

    import torch.multiprocessing as mp  # registers torch's reducers: the splits go to workers as shared memory

    context = mp.get_context("spawn")
    workers, todo, busy = [], list(seeds), {}
    try:
        for _ in range(jobs):
            ours, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(theirs, os.getpid(), data, params.threads), daemon=True)
            process.start()
            theirs.close()
            workers.append((process, ours))
        for _, conn in workers:
            if todo:
                busy[conn] = todo.pop(0)
                conn.send((model_params, params, busy[conn]))
        sentinels = {process.sentinel: (process, conn) for process, conn in workers}
        finished: set[int] = set()
        while busy:
            ready = wait([*busy, *sentinels])
            for conn in [r for r in ready if r in busy]:
                try:
                    seed, result = conn.recv()
                except EOFError:  # its process died: its sentinel says so below
                    continue
                del busy[conn]
                finished.add(seed)
                done(seed, result)
                if todo:
                    busy[conn] = todo.pop(0)
                    conn.send((model_params, params, busy[conn]))
            for sentinel in [r for r in ready if r in sentinels]:
                process, conn = sentinels.pop(sentinel)
                if conn in busy:
                    raise WorkerError(
                        f"a worker process died before seeds {sorted(set(seeds) - finished)} were "
                        "trained (killed, or out of memory: lower replicates.jobs)"
                    )
    finally:  # normal end, an error, Ctrl-C or SIGTERM: no worker trains on
        for process, _ in workers:
            process.kill()
        for process, conn in workers:
            process.join()
            conn.close()


def fit_replicates(
    model_params: ModelParams,
    params: TrainParams,
    seeds: list[int],
    data: Splits,
    device: torch.device,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[Replicate]:
    """A Replicate per seed, in seed order: each seed trained and scored as a single run,
    `jobs` seeds at a time in worker processes on the CPU. On a GPU, a dense model's seeds train
    at once as one batched model (mnistbench.batched: to float rounding, not to the bit, the single
    runs), any other model's one after another in this process."""
    from mnistbench import evaluate as ev  # scikit-learn: in this process only

    y_true = data[2][1].cpu().clone().numpy()  # its own copy: handing the splits to workers moves their storage
    results: dict[int, Replicate] = {}

    def done(seed: int, result: tuple[torch.Tensor, dict]) -> None:
        logits, state_dict = result
        scores = ev.score(y_true, logits)[0]  # as the evaluate stage scores the single model
        results[seed] = Replicate(scores, state_dict, logits.argmax(1).to(torch.uint8))
        log(f"seed {seed}: test accuracy {scores['accuracy']:.4f} ({len(results)}/{len(seeds)} seeds done)")

    if device.type == "cuda" and not estimators.is_estimator(model_params.arch):
        reason = batched.unstackable(model_params)
        if reason is None:
            state_dicts, logits = batched.fit_batched(model_params, params, seeds, data, device)
            for seed, seed_logits, state_dict in zip(seeds, logits, state_dicts):
                done(seed, (seed_logits, state_dict))
            return [results[seed] for seed in seeds]
        log(f"replicates: {reason}, so its seeds train one after another on the GPU, not batched")
    jobs = min(jobs, len(seeds)) if device.type == "cpu" else 1
    if jobs == 1:
        for seed in seeds:
            done(seed, train_one(model_params, params, seed, data, device))
    else:
        _in_workers(model_params, params, seeds, data, jobs, done)
    return [results[seed] for seed in seeds]


def summarize(values: list[float]) -> dict:
    """The replicates' summary: mnistbench.stats.summarize (scipy: imported where a summary is made)."""
    from mnistbench import stats

    return stats.summarize(values)


def cell_setup(protocol, model_name: str, dataset: str, data, first_seed: int | None = None):
    """A cell as its stage trains it (and spot-check retrains it): its model section and training
    config, the device configured for them, and the dataset's train, val and test splits from
    `data`, normalized by the protocol (mnistbench.protocol.Protocol)."""
    from mnistbench.data import load_normalized
    from mnistbench.runtime import configure_torch

    model, train = protocol.cell(model_name, dataset, first_seed)
    device = configure_torch(train.threads, train.device)
    splits = tuple(
        load_normalized(data / f"{split}.pt", train.normalize_mean, train.normalize_std, device)
        for split in ("train", "val", "test")
    )
    return model, train, device, splits
