"""The benchmark's two loops, in-process on the tiny mirror: both train, time and score."""

import json
import os
import shutil
import statistics
import subprocess
import sys

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


def test_bench_replicates_times_one_seed_and_the_seeds_side_by_side_and_records_the_ratio(tmp_path):
    """`python -m lab.bench_replicates` as a user runs it, on tiny prepared splits: every run timed
    in every round, the ratio computed from the medians, all of it in its record, the machine named."""
    prepared = tmp_path / "data/prepared"
    prepared.mkdir(parents=True)
    for split, n, seed in (("train", 1280, 1), ("val", 20, 2), ("test", 40, 3)):
        data.save_split(prepared / f"{split}.pt", *synthetic_digits(n, seed))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path / "params.yaml", train__device="cpu")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LAB_RECORDS": str(tmp_path / "records")}
    run = [sys.executable, "-m", "lab.bench_replicates", "--seeds", "2", "--jobs", "2", "--epochs", "1"]
    result = subprocess.run([*run, "--rounds", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data_ = json.loads((tmp_path / "records/bench_replicates.json").read_text())
    assert data_["command"] == "python -m lab.bench_replicates --seeds 2 --jobs 2 --epochs 1 --rounds 2"
    assert data_["machine"]["cpu"] and data_["machine"]["cores"] == os.cpu_count()
    f = data_["figures"]
    names = [
        "1 seed, 1 thread(s)",
        "1 seed, 2 thread(s)",
        "2 seeds, 2 process(es) at 1 thread(s) each",
        "2 seeds batched in 1 process at 2 threads (mnistbench.batched; the stage's GPU design)",
    ]
    assert list(f["runs"]) == names
    assert all(len(f["runs"][n]["all"]) == 2 and min(f["runs"][n]["all"]) > 0 for n in names)
    assert all(f["runs"][n]["median"] == statistics.median(f["runs"][n]["all"]) for n in names)
    one = min(f["runs"][names[0]]["median"], f["runs"][names[1]]["median"])
    assert f["ratio"] == f["runs"][names[2]]["median"] / one
    assert "| 2 seeds, 2 process(es) at 1 thread(s) each |" in result.stdout  # its table, rendered
    bad = subprocess.run([*run, "--seeds", "0"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith("must be at least 1")
