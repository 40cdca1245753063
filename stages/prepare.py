"""Stage prepare: obtain and verify the raw dataset, split off validation, write tensors.

    dvc repro prepare          # or: python -m stages.prepare --out data/prepared
    DATA_MIRROR=../shared/datasets dvc repro prepare   # offline mirror (see mnistbench/data.py)

The dataset is params.yaml's prepare.dataset: mnist, fashion-mnist or kmnist; for the benchmark
(benchmark/dvc.yaml), each of its datasets in turn: `--benchmark benchmark/params.yaml --dataset NAME`.

Writes train.pt, val.pt, test.pt: dicts of images (N, 28, 28) uint8 and labels (N,) int64.
"""

import argparse
import os
import tempfile
from pathlib import Path

from mnistbench import data
from mnistbench.entry import run_stage
from mnistbench.mirrors import parse_mirrors
from mnistbench.params import check_val_size, load_params
from mnistbench.protocol import load_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for train.pt, val.pt, test.pt")
    parser.add_argument(
        "--benchmark",
        type=Path,
        metavar="PARAMS",
        help="the benchmark's protocol to read instead of params.yaml (benchmark/dvc.yaml), with --dataset",
    )
    parser.add_argument("--dataset", help="with --benchmark: the dataset to prepare")
    args = parser.parse_args()
    if (args.benchmark is None) != (args.dataset is None):
        parser.error("--benchmark and --dataset go together")
    params = load_protocol(args.benchmark).prepare_params(args.dataset) if args.benchmark else load_params().prepare

    dataset = data.pinned(params.dataset)
    check_val_size(params.val_size, dataset.train_size)  # before any download
    mirrors = parse_mirrors(os.environ.get("DATA_MIRROR"))
    with tempfile.TemporaryDirectory(prefix=f"{dataset.name}-raw-") as workdir:
        train_images, train_labels, test_images, test_labels = data.fetch(
            Path(workdir), mirrors, dataset.files, dataset.name
        )
    data.check_sizes(dataset, train_labels, test_labels)
    train, val = data.split(train_images, train_labels, params.val_size, params.split_seed)

    data.save_split(args.out / "train.pt", **train)
    data.save_split(args.out / "val.pt", **val)
    data.save_split(args.out / "test.pt", test_images, test_labels)
    print(
        f"prepare: {dataset.name}: {len(train['labels'])} train, {len(val['labels'])} val, "
        f"{len(test_labels)} test images -> {args.out}"
    )


if __name__ == "__main__":
    run_stage("prepare", main)
