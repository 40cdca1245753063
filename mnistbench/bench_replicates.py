"""What n seeds cost against one: the replicates stage's batched training beside one single run.

    python -m mnistbench.bench_replicates                 # default: 10 seeds, params.yaml's training
    python -m mnistbench.bench_replicates --seeds 10 --epochs 2 --rounds 3 --output bench_replicates.md

Times, in one process and interleaved round by round, (a) one seed trained as the train stage
trains it (mnistbench.train.fit) and (b) `--seeds` seeds trained together as the replicates stage
trains them (mnistbench.replicates.fit_stacked), each at 1 and at 2 torch threads, on the prepared
training set (run `dvc repro prepare` first). Reports the median wall time of each over the rounds
and the ratio of the best of (b) to the best of (a): each side at the thread count that serves
it best. Time it on an idle machine: a second busy process on 2 cores slows both many times over.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
from pathlib import Path

import torch

from mnistbench.files import write_text
from mnistbench.params import load_params
from mnistbench.replicates import fit_stacked, seed_block
from mnistbench.train import configure_torch, fit, load_normalized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds trained together (default 10)")
    parser.add_argument("--epochs", type=int, help="epochs per run (default: train.epochs)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; medians over them (default 3)")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    params = load_params()
    if params.model.arch == "cnn":
        parser.error("the replicates of a cnn train one after another: n times one run; nothing to compare")
    train_params = dataclasses.replace(params.train, epochs=args.epochs or params.train.epochs)
    device = configure_torch(1, params.train.device)
    mean, std = train_params.normalize_mean, train_params.normalize_std
    train, val = (load_normalized(args.data / f"{split}.pt", mean, std, device) for split in ("train", "val"))
    seeds = seed_block(train_params, args.seeds)

    def single() -> None:
        fit(params.model, train_params, train, val, device, log=lambda _: None)

    def batched() -> None:
        fit_stacked(params.model, train_params, seeds, train, device, log=lambda _: None)

    times: dict[tuple[str, int], list[float]] = {}
    for round_ in range(args.rounds):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, run in (("1 seed", single), (f"{args.seeds} seeds together", batched)):
                started = time.perf_counter()
                run()
                times.setdefault((name, threads), []).append(time.perf_counter() - started)
                print(f"round {round_ + 1}: {name}, {threads} thread(s): {times[name, threads][-1]:.2f} s", flush=True)

    medians = {key: statistics.median(values) for key, values in times.items()}
    one = min(v for (name, _), v in medians.items() if name == "1 seed")
    many = min(v for (name, _), v in medians.items() if name != "1 seed")
    lines = [f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {train_params.epochs} epochs "
             f"of {params.model.arch} {list(params.model.hidden)}, batch {train_params.batch_size}; "
             f"medians of {args.rounds} interleaved rounds", "",
             "| training | threads | wall time (s), median | per epoch (s) | all rounds (s) |", "|---|---|---|---|---|"]
    for (name, threads), values in times.items():
        lines.append(f"| {name} | {threads} | {medians[name, threads]:.2f} | {medians[name, threads] / train_params.epochs:.3f} | "
                     + ", ".join(f"{v:.2f}" for v in values) + " |")
    lines += ["", f"{args.seeds} seeds together cost **{many / one:.2f}x** one seed (each at its best thread count): "
                  f"{many / args.seeds / one:.2f} of a single run per seed."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        write_text(args.output, text)


if __name__ == "__main__":
    main()
