"""The benchmark's two loops, in-process on the tiny mirror: both train, time and score."""

import os
import shutil
import subprocess
import sys

import torch

from lab import bench
from mnistbench import data, portable
from tests.helpers import ROOT, set_params, synthetic_digits


def test_both_loops_train_on_the_same_images_and_report_what_the_table_needs(tmp_path, mirror, monkeypatch):
    root, files = mirror
    workdir = tmp_path / "work"
    train_images, train_labels, test_images, test_labels = data.fetch(workdir, [str(root)], files)
    data.save_split(workdir / "train.pt", train_images, train_labels)
    data.save_split(workdir / "test.pt", test_images, test_labels)

    seed = bench.worker_seed(str(workdir), epochs=2, threads=1)
    ours = bench.worker_project(str(workdir), epochs=3, batch_size=32, threads=1)
    monkeypatch.setattr(portable, "ONEDNN_MIN_WEIGHTS", portable.ONEDNN_MIN_WEIGHTS)  # the vendor worker lifts it
    vendor = bench.worker_vendor(str(workdir), epochs=2, batch_size=32, threads=1)

    assert seed["samples"] == ours["samples"] == vendor["samples"] == 300
    assert portable.ONEDNN_MIN_WEIGHTS == float("inf") and "mkl_cbwr" in vendor
    assert len(seed["seconds"]) == 2 and len(ours["seconds"]) == 3
    assert all(s > 0 for s in seed["seconds"] + ours["seconds"])
    assert ours["accuracy"] > 0.5 and 0.0 <= seed["accuracy"] <= 1.0  # synthetic classes; chance is 0.1
    assert ours["threads"] == 1 and ours["device"] in ("cpu", "cuda")
    assert 0 < ours["imported_rss_mib"] <= ours["peak_rss_mib"]


def test_bench_replicates_times_one_seed_and_the_seeds_side_by_side_and_reports_the_ratio(tmp_path):
    """`python -m lab.bench_replicates` as a user runs it, on tiny prepared splits: every row
    timed, the ratio computed from the medians, the machine named, the table written."""
    prepared = tmp_path / "data/prepared"
    prepared.mkdir(parents=True)
    # 1,280 training images, 20 steps a run: each run takes well over the table's 0.01 s rounding
    # (with 96 images, a run rounded to 0.00 s once in CI)
    for split, n, seed in (("train", 1280, 1), ("val", 20, 2), ("test", 40, 3)):
        data.save_split(prepared / f"{split}.pt", *synthetic_digits(n, seed))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", train__device="cpu")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "lab.bench_replicates", "--seeds", "2", "--jobs", "2", "--epochs", "1"]
    result = subprocess.run(
        [*run, "--rounds", "2", "--output", "out.md"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "out.md").read_text()
    assert table.startswith(f"{bench.cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 epochs of mlp")
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table.splitlines() if line.startswith("| ")
    }
    names = [
        "1 seed, 1 thread(s)",
        "1 seed, 2 thread(s)",
        "2 seeds, 2 process(es) at 1 thread(s) each",
        "2 seeds batched in 1 process at 2 threads (mnistbench.batched; the stage's GPU design)",
    ]
    assert [n for n in rows if n != "training"] == names
    medians = {n: float(rows[n][0]) for n in names}
    rounds = {n: [float(v) for v in rows[n][1].rstrip(" |").split(", ")] for n in names}
    assert all(len(rounds[n]) == 2 and min(rounds[n]) > 0 for n in names)
    ratio = float(table.split("2 seeds cost **")[1].split("x**")[0])  # of the medians, unrounded
    one, many = min(medians[names[0]], medians[names[1]]), medians[names[2]]  # rounded to 0.01 s in the table
    assert (many - 0.005) / (one + 0.005) <= ratio <= (many + 0.005) / max(one - 0.005, 1e-9)
    bad = subprocess.run([*run, "--seeds", "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith("must be at least 1")
