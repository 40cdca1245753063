"""Stage train: fit the model on data/prepared/train.pt, report on val.pt, write the checkpoint.

    dvc repro train     # or: python -m stages.train --data data/prepared --model models/model.pt \
                        #        --metrics metrics/train.json --live dvclive ...

Each epoch's train and validation loss and accuracy go through DVCLive as the epoch ends
(mnistbench/live.py): --live/metrics.json (the latest epoch, what `dvc exp show` shows while
`dvc exp run` trains) and one history file per metric under --live/plots/metrics/.
Everything this stage writes is reproducible to the byte except --time, the measured training time.
"""

import argparse
import statistics
from pathlib import Path

from mnistbench.data import load_normalized
from mnistbench.entry import run_stage
from mnistbench.files import write_json
from mnistbench.live import epoch_logger
from mnistbench.models import learned_numbers, save_checkpoint
from mnistbench.params import load_params
from mnistbench.runtime import configure_torch, run_info
from mnistbench.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding train.pt and val.pt")
    parser.add_argument("--model", type=Path, required=True, help="checkpoint to write")
    parser.add_argument("--metrics", type=Path, required=True, help="final-epoch metrics JSON to write")
    parser.add_argument(
        "--live", type=Path, required=True, help="DVCLive's folder: per-epoch metrics and their history"
    )
    parser.add_argument("--run-info", type=Path, required=True, help="environment record (JSON) to write")
    parser.add_argument("--time", type=Path, required=True, help="measured training time (JSON) to write")
    args = parser.parse_args()
    params = load_params()
    mean, std = params.train.normalize_mean, params.train.normalize_std
    device = configure_torch(params.train.threads, params.train.device)

    train, val = (load_normalized(args.data / f"{split}.pt", mean, std, device) for split in ("train", "val"))
    with epoch_logger(args.live) as log_epoch:  # DVCLive starts once an epoch ends: a failure before leaves its folder
        model, history, seconds = fit(params.model, params.train, train, val, device, on_epoch=log_epoch)

    save_checkpoint(args.model, model, params.model, mean, std)
    write_json(args.run_info, run_info(device))
    last = history[-1]
    write_json(
        args.metrics,
        {
            **{
                split: {"loss": round(last[f"{split}_loss"], 6), "accuracy": round(last[f"{split}_accuracy"], 6)}
                for split in ("train", "val")
            },
            "parameters": learned_numbers(model),
        },
    )
    write_json(
        args.time,
        {
            "train_seconds": round(sum(seconds), 2),  # the training passes, validation excluded
            "epoch_seconds_median": round(statistics.median(seconds), 3),
            "device": device.type,
            "threads": params.train.threads,
        },
    )


if __name__ == "__main__":
    run_stage("train", main)
