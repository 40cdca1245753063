"""The benchmark's two loops, in-process on the tiny mirror: both train, time and score."""

from mnistbench import bench, data, linear


def test_both_loops_train_on_the_same_images_and_report_what_the_table_needs(tmp_path, mirror, monkeypatch):
    root, files = mirror
    workdir = tmp_path / "work"
    train_images, train_labels, test_images, test_labels = data.fetch(workdir, [str(root)], files)
    data.save_split(workdir / "train.pt", train_images, train_labels)
    data.save_split(workdir / "test.pt", test_images, test_labels)

    seed = bench.worker_seed(str(workdir), epochs=2, threads=1)
    ours = bench.worker_project(str(workdir), epochs=3, batch_size=32, threads=1)
    monkeypatch.setattr(linear, "ONEDNN_MIN_WEIGHTS", linear.ONEDNN_MIN_WEIGHTS)  # the vendor worker lifts it
    vendor = bench.worker_vendor(str(workdir), epochs=2, batch_size=32, threads=1)

    assert seed["samples"] == ours["samples"] == vendor["samples"] == 300
    assert linear.ONEDNN_MIN_WEIGHTS == float("inf") and "mkl_cbwr" in vendor
    assert len(seed["seconds"]) == 2 and len(ours["seconds"]) == 3
    assert all(s > 0 for s in seed["seconds"] + ours["seconds"])
    assert ours["accuracy"] > 0.5 and 0.0 <= seed["accuracy"] <= 1.0  # synthetic classes; chance is 0.1
    assert ours["threads"] == 1 and ours["device"] in ("cpu", "cuda")
    assert 0 < ours["imported_rss_mib"] <= ours["peak_rss_mib"]
