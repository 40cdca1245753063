"""Validation accuracy per epoch over several seeds: how the default epoch count was chosen.

    python -m lab.sweep --seeds 5 --epochs 15 --record    # after `dvc repro prepare`; lab/records/sweep.json

Reads only train.pt and val.pt (never the test set) and params.yaml for everything else; prints
the mean and min validation accuracy over seeds after each epoch. ~1 minute per seed at 15 epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

from lab import record
from mnistbench.data import load_normalized
from mnistbench.entry import run_command
from mnistbench.params import load_params
from mnistbench.runtime import configure_torch
from mnistbench.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    parser.add_argument("--record", action="store_true", help="also write lab/records/sweep.json")
    args = parser.parse_args()
    if args.seeds < 1 or args.epochs < 1:
        parser.error("--seeds and --epochs must be at least 1")
    params = load_params()
    device = configure_torch(params.train.threads, params.train.device)
    mean, std = params.train.normalize_mean, params.train.normalize_std

    train, val = (load_normalized(args.data / f"{split}.pt", mean, std, device) for split in ("train", "val"))
    curves = []
    for seed in range(args.seeds):
        run = dataclasses.replace(params.train, seed=seed, epochs=args.epochs)
        _, history, _ = fit(params.model, run, train, val, device, log=lambda _: None)
        curves.append([row["val_accuracy"] for row in history])
        print(f"seed {seed}: " + " ".join(f"{a:.4f}" for a in curves[-1]), flush=True)
    print("\n| epoch | mean val accuracy | min val accuracy |\n|---|---|---|")
    for epoch, accs in enumerate(zip(*curves), start=1):
        print(f"| {epoch} | {statistics.mean(accs):.4f} | {min(accs):.4f} |")
    if args.record:
        figures = {
            "seeds": args.seeds,
            "epochs": args.epochs,
            "curves": curves,
            "mean": [statistics.mean(a) for a in zip(*curves)],
            "min": [min(a) for a in zip(*curves)],
        }
        print(f"sweep: {record.write('sweep', figures)}")


if __name__ == "__main__":
    run_command("sweep", main)
