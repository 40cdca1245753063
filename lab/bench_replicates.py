"""What n seeds cost against one: the replicates stage's training beside one single run.

    python -m lab.bench_replicates                 # default: 10 seeds, params.yaml's training
    python -m lab.bench_replicates --seeds 10 --epochs 3 --rounds 3
    python -m lab.bench_replicates --device cuda --seeds 100    # on a GPU: the seeds batched

Times, in one process and interleaved round by round, (a) one seed trained and scored as the train
and evaluate stages do it (mnistbench.replicates.train_one), at 1 and at 2 torch threads, and (b)
`--seeds` seeds as the replicates stage trains them (mnistbench.replicates.fit_replicates), `--jobs`
worker processes at train.threads threads each, their start-up included. Reports the median wall
time of each over the rounds and the ratio of (b) to the best of (a). On a GPU (`--device cuda`),
(a) is one seed on the GPU and (b) the seeds trained at once as one batched model, as the stage
trains an MLP's seeds there (mnistbench/batched.py); each timing ends with the results on the CPU.
On the CPU, for an MLP, (c) times that batched training too, at 2 threads: the stage's design on a
GPU, and the evidence for not using it on the CPU. Run `dvc repro prepare`
first, and time on an idle machine: a second busy process on 2 cores slows both many times over.
Writes lab/records/bench_replicates.json (bench_replicates_cuda.json on a GPU) and prints its table.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from lab import record, render
from mnistbench.batched import fit_batched, unstackable
from mnistbench.data import load_normalized
from mnistbench.entry import run_command
from mnistbench.params import ParamsError, load_params
from mnistbench.replicates import fit_replicates, quiet, seed_block, train_one
from mnistbench.runtime import configure_torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds of (b) (default 10)")
    parser.add_argument("--jobs", type=int, help="worker processes of (b) (default: replicates.jobs)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: train.epochs)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; medians over them (default 3)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: train.device")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    args = parser.parse_args()
    params = load_params()
    if min(n for n in (args.seeds, args.rounds, args.jobs, args.epochs) if n is not None) < 1:
        parser.error("--seeds, --jobs, --epochs and --rounds must be at least 1")
    jobs = args.jobs or params.replicates.jobs
    train_params = dataclasses.replace(params.train, epochs=args.epochs or params.train.epochs)
    try:
        device = configure_torch(train_params.threads, args.device or params.train.device)
    except ParamsError as e:
        parser.error(str(e).replace("params.yaml: train.device", "--device") if args.device else str(e))
    mean, std = train_params.normalize_mean, train_params.normalize_std
    data = tuple(load_normalized(args.data / f"{split}.pt", mean, std, device) for split in ("train", "val", "test"))
    seeds = seed_block(train_params, args.seeds)

    runs = {}
    for threads in (1, 2) if device.type == "cpu" else (train_params.threads,):
        name = f"1 seed, {threads} thread(s)" if device.type == "cpu" else f"1 seed on {device.type}"
        runs[name] = (threads, lambda: train_one(params.model, train_params, seeds[0], data, device))
    many = f"{args.seeds} seeds, {jobs} process(es) at {train_params.threads} thread(s) each"
    if device.type == "cuda":
        many = f"{args.seeds} seeds on {device.type}, " + (
            "one after another" if unstackable(params.model) else "batched"
        )
    runs[many] = (
        train_params.threads,
        lambda: fit_replicates(params.model, train_params, seeds, data, device, jobs=jobs, log=quiet),
    )
    batched_run = f"{args.seeds} seeds batched in 1 process at 2 threads (mnistbench.batched; the stage's GPU design)"
    if device.type == "cpu" and unstackable(params.model) is None:
        runs[batched_run] = (2, lambda: fit_batched(params.model, train_params, seeds, data, device))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(args.rounds):
        for name, (threads, run) in runs.items():
            torch.set_num_threads(threads)
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
            print(f"round {round_ + 1}: {name}: {times[name][-1]:.2f} s", flush=True)

    medians = {name: statistics.median(values) for name, values in times.items()}
    one = min(v for name, v in medians.items() if name not in (many, batched_run))
    figures = {
        "arch": params.model.arch,
        "epochs": train_params.epochs,
        "batch": train_params.batch_size,
        "seeds": args.seeds,
        "jobs": jobs,
        "threads": train_params.threads,
        "device": device.type,
        "rounds": args.rounds,
        "runs": {name: {"median": medians[name], "all": times[name]} for name in runs},
        "many": many,
        "ratio": medians[many] / one,
        "batched_ratio": medians[batched_run] / one if batched_run in medians else None,
    }
    name = "bench_replicates" if device.type == "cpu" else "bench_replicates_cuda"
    path = record.write(name, figures)
    print(render.bench_replicates(record.load(name)))
    print(f"bench_replicates: {path}")


if __name__ == "__main__":
    run_command("bench_replicates", main)
