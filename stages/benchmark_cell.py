"""Stage cell of the benchmark: one model on one dataset, trained on its seeds and scored on the test set.

    dvc repro benchmark/dvc.yaml:cell@mlp-mnist   # or: python -m stages.benchmark_cell --params ... --model mlp ...

The cell's configuration is benchmark/params.yaml's (mnistbench/protocol.py): its model section,
seeds and epochs, the shared training, the dataset's normalization. Each seed is trained exactly as
the main pipeline's replicates stage trains one (mnistbench.replicates), so the same bytes on Intel
and AMD. Writes each seed's prediction for every test image (--predictions: compact, DVC-cached, so
any later statistic needs no retraining) and the cell's summary (--metrics): test accuracy and
macro-F1 as n, mean, sd, min, max, the 95% interval over seeds (`seeds_low`, `seeds_high`) and the
one that also covers the test set's sampling (`total_low`, `total_high`; mnistbench/stats.py). A
deterministic estimator's cell is one draw (n 1, sd 0, `"deterministic": true`).
--first-seed trains another seed block of the same cell (the benchmark's control).
"""

import argparse
import time
from pathlib import Path

import torch

from mnistbench import estimators
from mnistbench.benchmark import cell_metrics
from mnistbench.entry import run_stage
from mnistbench.files import save_tensors, write_json
from mnistbench.params import ParamsError
from mnistbench.protocol import load_protocol
from mnistbench.replicates import cell_setup, fit_replicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="the benchmark's protocol")
    parser.add_argument("--model", required=True, help="a model the protocol lists")
    parser.add_argument("--dataset", required=True, help="a dataset the protocol lists")
    parser.add_argument("--data", type=Path, required=True, help="folder of the dataset's train.pt, val.pt, test.pt")
    parser.add_argument("--first-seed", type=int, help="train the seed block starting here instead (the control)")
    parser.add_argument("--predictions", type=Path, required=True, help="per-seed test predictions to write")
    parser.add_argument("--metrics", type=Path, required=True, help="the cell's summary (JSON) to write")
    parser.add_argument("--time", type=Path, required=True, help="measured time (JSON) to write")
    args = parser.parse_args()
    protocol = load_protocol(args.params)
    if args.model not in protocol.models or args.dataset not in protocol.datasets:
        raise ParamsError(
            f"{args.params}: no cell {args.model}-{args.dataset}: models {list(protocol.models)}, "
            f"datasets {list(protocol.datasets)}"
        )
    protocol.check_draws(str(args.params), estimators)
    model, train, device, splits = cell_setup(protocol, args.model, args.dataset, args.data, args.first_seed)
    seeds = protocol.seeds(args.model, args.first_seed)
    labels = splits[2][1].cpu().to(torch.uint8)

    started = time.perf_counter()
    results = fit_replicates(model, train, seeds, splits, device, jobs=protocol.jobs)
    seconds = time.perf_counter() - started
    predicted = torch.stack([r.predicted for r in results])  # (S, N) uint8

    save_tensors(args.predictions, {"seeds": torch.tensor(seeds), "predicted": predicted, "labels": labels})
    metrics = cell_metrics(seeds, predicted, labels)  # from the predictions alone: spot-check recomputes it
    write_json(args.metrics, metrics)
    accuracy = metrics["accuracy"]
    write_json(
        args.time,
        {
            "train_seconds": round(seconds, 2),
            "seeds": len(seeds),
            "jobs": protocol.jobs,
            "threads": train.threads,
            "device": device.type,
        },
    )
    print(
        f"cell {args.model}-{args.dataset}: test accuracy {accuracy['mean']:.4f}"
        + (
            " (one draw: deterministic)"
            if len(seeds) == 1
            else f" ± {accuracy['sd']:.4f} (mean ± sd of {len(seeds)} seeds)"
        )
        + f"; {seconds:.1f} s"
    )


if __name__ == "__main__":
    run_stage("benchmark_cell", main)
