"""Training speed, side by side with the seed's DataLoader loop, in one run.

    python -m lab.bench                      # about 2 minutes; DATA_MIRROR as for prepare
    python -m lab.bench --threads 2          # both loops at 2 torch threads
    python -m lab.bench --against ../old     # and this step beside another checkout's, alternately

Writes lab/records/bench.json (lab/record.py) and prints its tables (lab/render.py).

Both loops train the same MLP (params.yaml: model, train) with Adam and cross-entropy at batch 64
on the same 60,000 training images, fetched and verified as in prepare, at the same torch thread
count (train.threads, or --threads), and are scored on the 10,000 test images:
  (a) the seed's loop: torchvision MNIST with ToTensor() + Normalize() per sample, through
      DataLoader(batch_size=64, shuffle=True), plain Adam, loss.item() every step;
  (b) this project's step (mnistbench.train): the data as one tensor, index_select batches of a
      seeded permutation, fused Adam, no per-step host sync;
  (b') the same step on the fastest kernels, which are not portable: MKL's AVX2 GEMM for every
      linear layer (MKL_CBWR=AVX2, no oneDNN). MKL runs other kernels on AMD
      than on Intel there, so its bytes depend on the CPU's vendor (mnistbench/portable.py); (b)
      gives the same bytes on both, and this row is what that costs.
Each measurement runs in a fresh process, so peak memory (max RSS, imports included) is its own.
Per-epoch times are medians over the epochs after the first (warm-up). Also reported: this
project's time per epoch at batch 64/256/1024, total time for 1/5/10 epochs, and the fixed cost
a `dvc repro` pays before training (DVC's own check; each stage's interpreter start and imports).
Time it on an idle machine: a second busy process on 2 cores slows these loops many times over.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lab import record, render
from mnistbench import data, portable
from mnistbench.data import load_normalized
from mnistbench.entry import run_command
from mnistbench.mirrors import parse_mirrors
from mnistbench.models import build_model
from mnistbench.params import load_params
from mnistbench.runtime import configure_torch
from mnistbench.train import EVAL_BATCH_SIZE, loss_and_accuracy, setup, train_epoch

SEED_EPOCHS = 3  # the seed's loop takes seconds per epoch: 1 warm-up + 2 timed


def _peak_rss_mib() -> float:
    """Peak resident memory of this process. VmHWM, not getrusage's ru_maxrss: Linux carries
    ru_maxrss across exec, so a worker would report its parent's peak."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # KiB
    except (OSError, StopIteration):  # not Linux: ru_maxrss is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def worker_seed(workdir: str, epochs: int, threads: int) -> dict:
    """(a): the seed's train.py loop, with this project's model size, lr and seed."""
    from sklearn.metrics import accuracy_score
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    params = load_params()
    configure_torch(threads, "cpu")
    imported = _peak_rss_mib()
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((params.train.normalize_mean,), (params.train.normalize_std,))]
    )
    train_set = datasets.MNIST(workdir, train=True, transform=transform)  # verified raw files in workdir
    test_set = datasets.MNIST(workdir, train=False, transform=transform)
    train_loader = DataLoader(train_set, batch_size=params.train.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=params.train.batch_size, shuffle=False)
    torch.manual_seed(params.train.seed)
    model = build_model(params.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.lr)
    criterion = torch.nn.CrossEntropyLoss()
    seconds = []
    for _ in range(epochs):
        started, running_loss = time.perf_counter(), 0.0
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(images.view(len(images), -1)), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        seconds.append(time.perf_counter() - started)
    predicted, actual = [], []
    with torch.no_grad():
        for images, labels in test_loader:
            predicted.append(torch.max(model(images.view(len(images), -1)), 1)[1])
            actual.append(labels)
    accuracy = accuracy_score(torch.cat(actual).numpy(), torch.cat(predicted).numpy())
    return {
        "seconds": seconds,
        "samples": len(train_set),
        "accuracy": float(accuracy),
        "threads": threads,
        "peak_rss_mib": _peak_rss_mib(),
        "imported_rss_mib": imported,
    }


def worker_project(workdir: str, epochs: int, batch_size: int, threads: int) -> dict:
    """(b): mnistbench.train's step on the same 60,000 images, read as the train stage reads them."""
    params = load_params()
    run = dataclasses.replace(params.train, batch_size=batch_size, epochs=epochs, threads=threads)
    device = configure_torch(run.threads, run.device)
    imported = _peak_rss_mib()
    mean, std = run.normalize_mean, run.normalize_std
    x, y = load_normalized(Path(workdir) / "train.pt", mean, std, device)  # (60000, 784), (60000,)
    x_test, y_test = load_normalized(Path(workdir) / "test.pt", mean, std, device)
    state = setup(params.model, run, device, train_size=len(y))
    model = state.model
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        # ends in .item(): synced
        train_epoch(model, state.optimizer, x, y, run.batch_size, state.generator, state.scheduler, state.augment)
        seconds.append(time.perf_counter() - started)
    _, accuracy = loss_and_accuracy(model, x_test, y_test, EVAL_BATCH_SIZE)
    return {
        "seconds": seconds,
        "samples": len(y),
        "accuracy": accuracy,
        "threads": run.threads,
        "peak_rss_mib": _peak_rss_mib(),
        "imported_rss_mib": imported,
        "device": device.type,
    }


def worker_vendor(workdir: str, epochs: int, batch_size: int, threads: int) -> dict:
    """(b'): (b) with every linear layer on F.linear; run with MKL_CBWR=AVX2 in the environment."""
    portable.ONEDNN_MIN_WEIGHTS = float("inf")
    return worker_project(workdir, epochs, batch_size, threads) | {"mkl_cbwr": os.environ.get("MKL_CBWR")}


VENDOR_ENV = {"MKL_CBWR": "AVX2"}  # (b')'s MKL branch: read when torch loads, so set for its process


def _run(*args: str, env: dict | None = None, cwd: Path | None = None) -> dict:
    """A measurement in a fresh process: this checkout's, or another's (`cwd`, as --against names
    it: its own bench module, lab/bench.py or, before the lab, mnistbench/bench.py)."""
    module = "lab.bench" if cwd is None or (Path(cwd) / "lab/bench.py").is_file() else "mnistbench.bench"
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    if result.returncode != 0:
        raise SystemExit(f"bench: worker {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _wall(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, capture_output=True)  # exit status ignored: `dvc status` is 1 when stale
    return time.perf_counter() - started


def _per_epoch(result: dict) -> float:
    return statistics.median(result["seconds"][1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="torch threads for both loops (default: train.threads)")
    parser.add_argument(
        "--against",
        type=Path,
        metavar="CHECKOUT",
        help="another checkout of this project "
        "(`git worktree add ../old REV`): its step timed beside this one's, alternately",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --against: alternate rounds, medians (default 3)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.against is not None and not (args.against / "params.yaml").is_file():
        parser.error(f"--against {args.against}: not a checkout of this project (no params.yaml)")
    if args.worker:  # a measurement in its own process: print one JSON line
        kind, workdir, *numbers = args.worker.split(",")
        worker = {"seed": worker_seed, "project": worker_project, "vendor": worker_vendor}[kind]
        print(json.dumps(worker(workdir, *map(int, numbers))))
        return

    params = load_params()
    batch, threads = params.train.batch_size, args.threads or params.train.threads
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as workdir:
        # Fetched and verified once, as prepare does; (a) reads the raw files through torchvision,
        # (b) the same 60,000 + 10,000 images as tensors, as the train stage reads its data.
        train_images, train_labels, test_images, test_labels = data.fetch(
            Path(workdir), parse_mirrors(os.environ.get("DATA_MIRROR")), data.pinned("mnist").files
        )
        data.save_split(Path(workdir) / "train.pt", train_images, train_labels)
        data.save_split(Path(workdir) / "test.pt", test_images, test_labels)
        print("bench: (a) seed loop ...", file=sys.stderr, flush=True)
        seed = _run("--worker", f"seed,{workdir},{SEED_EPOCHS},{threads}")
        print("bench: (b) this project, 10 epochs ...", file=sys.stderr, flush=True)
        ours = _run("--worker", f"project,{workdir},10,{batch},{threads}")
        print("bench: (b') vendor-specific kernels, 10 epochs ...", file=sys.stderr, flush=True)
        vendor = _run("--worker", f"vendor,{workdir},10,{batch},{threads}", env=VENDOR_ENV)
        other_threads = 2 if threads == 1 else 1
        print(f"bench: (b) at {other_threads} threads ...", file=sys.stderr, flush=True)
        ours_other = _run("--worker", f"project,{workdir},4,{batch},{other_threads}")
        sizes = {}
        for size in (64, 256, 1024):
            if size != batch:
                print(f"bench: batch {size} ...", file=sys.stderr, flush=True)
            sizes[size] = ours if size == batch else _run("--worker", f"project,{workdir},4,{size},{threads}")
    # imports, then the exit a stage makes (cli.run_stage: os._exit, no interpreter teardown)
    startup = {
        stage: statistics.median(
            _wall([sys.executable, "-c", f"import os, stages.{stage}; os._exit(0)"]) for _ in range(3)
        )
        for stage in ("prepare", "train", "evaluate")
    }
    dvc_check = statistics.median(_wall([sys.executable, "-m", "dvc", "status", "-q"]) for _ in range(3))

    against = None
    if args.against:
        with tempfile.TemporaryDirectory(prefix="mnist-bench-") as workdir:
            data.save_split(Path(workdir) / "train.pt", train_images, train_labels)
            data.save_split(Path(workdir) / "test.pt", test_images, test_labels)
            here, there = [], []
            for round_ in range(args.rounds):  # alternately, so a host that slows down slows both alike
                print(f"bench: round {round_ + 1}: this checkout, then {args.against} ...", file=sys.stderr, flush=True)
                here.append(_per_epoch(_run("--worker", f"project,{workdir},10,{batch},{threads}")))
                there.append(_per_epoch(_run("--worker", f"project,{workdir},10,{batch},{threads}", cwd=args.against)))
        against = {
            "checkout": str(args.against),
            "rounds": args.rounds,
            "epoch_seconds": statistics.median(here),
            "their_epoch_seconds": statistics.median(there),
            "all": {"here": here, "there": there},
            "ratio": statistics.median(here) / statistics.median(there),
        }

    def result(r: dict, epochs: int) -> dict:
        per_epoch = _per_epoch(r)
        return {
            "threads": r["threads"],
            "epoch_seconds": per_epoch,
            "images_per_second": r["samples"] / per_epoch,
            "peak_rss_mib": r["peak_rss_mib"],
            "imported_rss_mib": r["imported_rss_mib"],
            "accuracy": r["accuracy"],
            "epochs": epochs,
        }

    figures = {
        "batch": batch,
        "threads": threads,
        "images": seed["samples"],
        "seed_loop": result(seed, SEED_EPOCHS),
        "project": result(ours, 10),
        "vendor": result(vendor, 10) | {"mkl_cbwr": vendor["mkl_cbwr"]},
        "project_other_threads": result(ours_other, 4),
        "speedup": (ours["samples"] / _per_epoch(ours)) / (seed["samples"] / _per_epoch(seed)),
        "batch_sizes": {str(size): result(r, len(r["seconds"])) for size, r in sizes.items()},
        "training_seconds": {str(n): sum(ours["seconds"][:n]) for n in (1, 5, 10)},
        "dvc_status_seconds": dvc_check,
        "startup_seconds": startup,
        "against": against,
    }
    path = record.write("bench", figures)
    print(render.bench(record.load("bench")))
    print(f"bench: {path}", file=sys.stderr)


if __name__ == "__main__":
    run_command("bench", main)
