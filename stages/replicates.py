"""Stage replicates: the configured model on n seeds, each scored on the test set.

    dvc repro replicates    # or: python -m stages.replicates --data data/prepared \
                            #        --summary metrics/replicates.json --per-seed plots/replicates.csv ...

Seeds train.seed .. train.seed + replicates.n - 1, each trained exactly as the train stage trains
it (replicate k is, to the bit, what `dvc exp run -S train.seed=k` trains), replicates.jobs at a
time in worker processes (mnistbench/replicates.py). Writes the per-seed test accuracy, macro-F1
and loss, and their summary (n, mean, sd, min, max, the 95% interval of the mean over seeds): what
the gate compares; for accuracy also the 95% interval over seeds and the test set's sampling
(`total95_low`, `total95_high`: mnistbench/stats.py), the one to quote for new images.
Everything it writes is reproducible to the byte except --time, the measured time.
"""

import argparse
import time
from pathlib import Path

import torch

from mnistbench import stats
from mnistbench.data import load_normalized
from mnistbench.entry import run_stage
from mnistbench.files import write_json, write_text
from mnistbench.params import load_params
from mnistbench.replicates import fit_replicates, seed_block, seeds_to_train, summarize
from mnistbench.runtime import configure_torch, run_info

SCORES = ("accuracy", "macro_f1", "loss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding train.pt, val.pt and test.pt")
    parser.add_argument("--summary", type=Path, required=True, help="summary metrics JSON to write")
    parser.add_argument("--per-seed", type=Path, required=True, help="per-seed CSV to write")
    parser.add_argument("--run-info", type=Path, required=True, help="environment record (JSON) to write")
    parser.add_argument("--time", type=Path, required=True, help="measured time (JSON) to write")
    args = parser.parse_args()
    params = load_params()
    mean, std = params.train.normalize_mean, params.train.normalize_std
    device = configure_torch(params.train.threads, params.train.device)
    seeds = seeds_to_train(params.model, seed_block(params.train, params.replicates.n))
    if len(seeds) < params.replicates.n:
        print(f"replicates: {params.model.arch} is deterministic: every seed gives the same model, so it trains once")

    data = tuple(load_normalized(args.data / f"{split}.pt", mean, std, device) for split in ("train", "val", "test"))
    started = time.perf_counter()
    results = fit_replicates(params.model, params.train, seeds, data, device, jobs=params.replicates.jobs)
    seconds = time.perf_counter() - started
    rows = [r.scores for r in results]

    summary = {key: summarize([row[key] for row in rows]) for key in SCORES}
    labels = data[2][1].cpu()
    correct = torch.stack([r.predicted.to(labels.dtype) == labels for r in results]).numpy()  # (seeds, images)
    total = stats.total_interval(correct)  # also the test set's sampling: what a claim about new images needs
    summary["accuracy"] |= {"total95_low": round(total.low, 6), "total95_high": round(total.high, 6)}
    deterministic = {"deterministic": True} if len(seeds) < params.replicates.n else {}
    write_json(args.summary, summary | {"seeds": {"first": seeds[0], "last": seeds[-1]}} | deterministic)
    write_text(
        args.per_seed,
        "seed,"
        + ",".join(SCORES)
        + "\n"
        + "".join(f"{seed}," + ",".join(f"{row[key]:.6f}" for key in SCORES) + "\n" for seed, row in zip(seeds, rows)),
    )
    write_json(args.run_info, run_info(device))
    timing = {"train_seconds": round(seconds, 2), "seeds": len(seeds), "device": device.type}
    if device.type == "cpu":  # worker processes and their threads: on a GPU the seeds train in this process
        timing |= {"jobs": min(params.replicates.jobs, len(seeds)), "threads": params.train.threads}
    write_json(args.time, timing)
    accuracy = summary["accuracy"]
    print(
        f"replicates: test accuracy {accuracy['mean']:.4f} ± {accuracy['sd']:.4f} (mean ± sd of {len(seeds)} seeds, "
        f"{accuracy['min']:.4f}-{accuracy['max']:.4f}); {seconds:.1f} s of training and scoring"
    )


if __name__ == "__main__":
    run_stage("replicates", main)
