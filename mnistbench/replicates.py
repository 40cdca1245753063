"""The configured model trained on n seeds: accuracy as a distribution, not one draw.

    seeds = seed_block(params.train, params.replicates.n)       # train.seed .. train.seed + n - 1
    results = fit_replicates(params.model, params.train, seeds, (train, val, test), device, jobs=2)
    scores = [scores for scores, _ in results]                  # [{"accuracy", "macro_f1", "loss"}, ...]
    summary = summarize([row["accuracy"] for row in scores])     # n, mean, sd, min, max, 95% CI

On the CPU each seed is trained by mnistbench.train.fit, the train stage's own code, so replicate k is to the
bit the model that `dvc exp run -S train.seed=k` trains, and it inherits that model's promise of
the same bytes on any x86-64 CPU (mnistbench/linear.py). `jobs` seeds train at once, each in its own
worker process (spawned: torch's OpenMP does not survive a fork) at train.threads threads, the
splits shared with it through shared memory; the bits do not depend on the number of jobs.

Why processes and not one batched model on the CPU: the seeds' weights stacked as (S, in, out) and trained
with batched matrix products (`torch.baddbmm`, one fused Adam step) was this module's first design.
Its batched products run on MKL, whose kernels differ between Intel and AMD CPUs unless
MKL_CBWR=COMPATIBLE, and then they are no faster per seed than single runs: measured side by side
(docs/results.md, "Replicates"), 10 seeds batched at 2 threads and 10 seeds in 2 processes took the same
time, and the batched replicates matched single runs only to float rounding, CNNs not at all.
On a GPU, where seeds one after another leave it idle and no bits are portable anyway, that design
is what trains an MLP's seeds (mnistbench/batched.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from typing import Callable

import torch

from mnistbench import batched
from mnistbench.model import predict_logits
from mnistbench.params import ModelParams, TrainParams
from mnistbench.train import EVAL_BATCH_SIZE, fit

DECIMALS = 6  # as the evaluate stage's metrics
Splits = tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (train, val, test), each (x, y)


def seed_block(train: TrainParams, n: int) -> list[int]:
    """The replicates' seeds: train.seed, train.seed + 1, ..., train.seed + n - 1 (params.py
    refuses a block past the largest seed)."""
    return list(range(train.seed, train.seed + n))


class WorkerError(RuntimeError):
    """A worker process died (killed, or out of memory) before its seeds were done."""


def quiet(_: str) -> None:
    pass


def train_one(model_params: ModelParams, params: TrainParams, seed: int, data: Splits,
              device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Seed `seed` trained exactly as the train stage trains it (mnistbench.train.fit): its logits
    on the test split (CPU) and its state_dict. Scoring is left to the caller: scikit-learn and
    matplotlib (mnistbench.evaluate) would add 2 s to each worker process's start."""
    train, val, test = data
    model, _, _ = fit(model_params, dataclasses.replace(params, seed=seed), train, val, device, log=quiet)
    return predict_logits(model.eval(), test[0], EVAL_BATCH_SIZE).cpu(), model.state_dict()


_WORKER: dict = {}  # in a worker process: the splits, shared with the parent (torch.multiprocessing)


def _start_worker(data: Splits, threads: int) -> None:
    torch.set_num_threads(threads)  # train.threads, as the train stage: some products' bits depend on it
    _WORKER["data"] = data


def _train_in_worker(model_params: ModelParams, params: TrainParams, seed: int) -> tuple[torch.Tensor, dict]:
    return train_one(model_params, params, seed, _WORKER["data"], torch.device("cpu"))


def fit_replicates(model_params: ModelParams, params: TrainParams, seeds: list[int], data: Splits,
                   device: torch.device, jobs: int = 1,
                   log: Callable[[str], None] = print) -> list[tuple[dict, dict[str, torch.Tensor]]]:
    """(scores, state_dict) per seed, in seed order: each seed trained and scored as a single run,
    `jobs` seeds at a time in worker processes on the CPU. On a GPU, an MLP's seeds train at once
    as one batched model (mnistbench.batched: to float rounding, not to the bit, the single runs), and
    a CNN's one after another in this process."""
    from mnistbench import evaluate as ev  # scikit-learn: in this process only

    jobs = min(jobs, len(seeds)) if device.type == "cpu" else 1
    y_true = data[2][1].cpu().clone().numpy()  # its own copy: handing the splits to workers moves their storage
    results: dict[int, tuple[dict, dict]] = {}

    def done(seed: int, result: tuple[torch.Tensor, dict]) -> None:
        logits, state_dict = result
        results[seed] = ev.score(y_true, logits)[0], state_dict  # as the evaluate stage scores the single model
        log(f"seed {seed}: test accuracy {results[seed][0]['accuracy']:.4f} ({len(results)}/{len(seeds)} seeds done)")

    if device.type == "cuda" and model_params.arch in batched.ARCHS:
        state_dicts, logits = batched.fit_batched(model_params, params, seeds, data, device)
        for seed, seed_logits, state_dict in zip(seeds, logits, state_dicts):
            done(seed, (seed_logits, state_dict))
        return [results[seed] for seed in seeds]
    if jobs == 1:
        for seed in seeds:
            done(seed, train_one(model_params, params, seed, data, device))
        return [results[seed] for seed in seeds]
    import torch.multiprocessing as mp  # registers torch's reducers: the splits go to workers as shared memory
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_start_worker,
                             initargs=(data, params.threads)) as pool:
        try:
            # Every worker started before the seeds are submitted: ProcessPoolExecutor.submit wakes its
            # manager thread before it spawns the process it adds, so the manager can go on waiting
            # without that worker's sentinel and hang for good if that worker dies (CPython 3.11,
            # seen in CI). Once each worker has answered, submitting spawns nothing.
            for warm in [pool.submit(os.getpid) for _ in range(jobs)]:
                warm.result()
            futures = {pool.submit(_train_in_worker, model_params, params, seed): seed for seed in seeds}
            for future in as_completed(futures):
                done(futures[future], future.result())
        except BrokenProcessPool:
            raise WorkerError(f"a worker process died before seeds {sorted(set(seeds) - set(results))} were trained "
                              f"(killed, or out of memory: lower replicates.jobs)") from None
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return [results[seed] for seed in seeds]


def summarize(values: list[float]) -> dict:
    """n, mean, sample sd, min, max and the 95% confidence interval of the mean (Student's t)."""
    from scipy import stats  # 0.3 s to import: only where a summary is made

    n = len(values)
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return {k: round(v, DECIMALS) if isinstance(v, float) else v for k, v in {
        "n": n, "mean": mean, "sd": sd, "min": min(values), "max": max(values),
        "ci95_low": mean - half, "ci95_high": mean + half}.items()}
