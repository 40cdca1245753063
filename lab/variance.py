"""Where the default MLP's variance comes from: initialization and order, the validation split, the test set.

    DATA_MIRROR=../shared/datasets python -m lab.variance          # about 3 minutes here
    python -m lab.variance --runs 10

Bouthillier et al. (2021) split a benchmark's variance by its sources; here, for params.yaml's
model and training on MNIST:
  - train.seed (initialization and the order of batches): `--runs` seeds on the committed split;
  - prepare.split_seed (which 5,000 training images are held out): `--runs` splits, train.seed fixed;
  - the test set's sampling: each of the first source's models scored on bootstrap resamples of
    the 10,000 test images (seeded), beside the binomial sqrt(p(1 - p) / N).
Writes lab/records/variance.json: each source's sd, its share of their sum of variances, and what
it means for the gate, which compares two seed blocks on the same split and test set.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np

from lab import record, render
from mnistbench import data, stats
from mnistbench.entry import run_command
from mnistbench.mirrors import parse_mirrors
from mnistbench.params import load_params
from mnistbench.replicates import fit_replicates, quiet
from mnistbench.runtime import configure_torch

BOOTSTRAP = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="seeds, and splits, to train (default 10)")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2 (a spread needs two)")
    params = load_params()
    device = configure_torch(params.train.threads, "cpu")
    mean, std = params.train.normalize_mean, params.train.normalize_std
    with tempfile.TemporaryDirectory(prefix="mnist-variance-") as workdir:
        images, labels, test_images, test_labels = data.fetch(
            Path(workdir), parse_mirrors(os.environ.get("DATA_MIRROR")), data.pinned("mnist").files
        )
    test = (data.normalize(test_images, mean, std), test_labels)

    def splits(split_seed: int):
        train, val = data.split(images, labels, params.prepare.val_size, split_seed)
        return (
            (data.normalize(train["images"], mean, std), train["labels"]),
            (data.normalize(val["images"], mean, std), val["labels"]),
            test,
        )

    seeds = list(range(params.train.seed, params.train.seed + args.runs))
    print(f"variance: {args.runs} seeds on split {params.prepare.split_seed} ...", flush=True)
    by_seed = fit_replicates(
        params.model,
        params.train,
        seeds,
        splits(params.prepare.split_seed),
        device,
        jobs=params.replicates.jobs,
        log=quiet,
    )
    by_split = []
    for split_seed in range(params.prepare.split_seed, params.prepare.split_seed + args.runs):
        print(f"variance: split {split_seed}, seed {params.train.seed} ...", flush=True)
        one = fit_replicates(
            params.model, params.train, [params.train.seed], splits(split_seed), device, jobs=1, log=quiet
        )
        by_split.append(one[0])
    correct = np.stack([(r.predicted == test_labels.to(r.predicted.dtype)).numpy() for r in by_seed])  # (S, N)
    rng = np.random.default_rng(0)
    n_test = correct.shape[1]
    boot = [correct[:, rng.integers(0, n_test, n_test)].mean(1) for _ in range(BOOTSTRAP)]  # (B, S)
    test_sd = float(np.mean(np.std(boot, axis=0, ddof=1)))  # each model's accuracy over test resamples
    p = float(correct.mean())
    sources = {
        "train.seed (initialization, order)": statistics.stdev(r.scores["accuracy"] for r in by_seed),
        "prepare.split_seed (the validation split)": statistics.stdev(r.scores["accuracy"] for r in by_split),
        "the test set's sampling (bootstrap over test images)": test_sd,
    }
    total = sum(sd**2 for sd in sources.values())
    seed_sd = sources["train.seed (initialization, order)"]
    n_gate = params.replicates.n
    needed = next(
        (n for n in range(2, 1001) if stats.detectable_drop(seed_sd, n, seed_sd, n, params.gate.significance) <= 0.002),
        None,
    )
    figures = {
        "runs": args.runs,
        "test_images": n_test,
        "mean_accuracy": p,
        "binomial_sd": math.sqrt(p * (1 - p) / n_test),
        "sources": {name: {"sd": sd, "share": sd**2 / total} for name, sd in sources.items()},
        "gate": {
            "n": n_gate,
            "significance": params.gate.significance,
            "detectable_drop": stats.detectable_drop(seed_sd, n_gate, seed_sd, n_gate, params.gate.significance),
            "n_for_0.2pp": needed,
        },
    }
    path = record.write("variance", figures)
    print(render.variance(record.load("variance")))
    print(f"variance: {path}")


if __name__ == "__main__":
    run_command("variance", main)
