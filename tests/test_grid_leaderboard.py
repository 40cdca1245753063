"""The sequential sweep's parsing and the leaderboard's table (end to end: test_pipeline.py)."""

import pytest

from commands import grid, leaderboard


def test_values_split_on_commas_outside_lists():
    assert grid.split_values("0.1,0.2, 0.3") == ["0.1", "0.2", "0.3"]
    assert grid.split_values("[16,32],[32,64]") == ["[16,32]", "[32,64]"]
    assert grid.parse_override("model.channels=[16,32],[8]") == ("model.channels", ["[16,32]", "[8]"])


@pytest.mark.parametrize("bad", ["train.lr", "=0.1", "train.lr=", "train.lr=0.1,,0.2"])
def test_a_malformed_override_is_one_line_naming_it(bad):
    with pytest.raises(SystemExit, match="expected key=value"):
        grid.parse_override(bad)


def test_every_combination_first_key_slowest():
    runs = grid.combinations([("model.arch", ["mlp", "cnn"]), ("train.lr", ["0.1", "0.2"])])
    assert runs == [
        ["model.arch=mlp", "train.lr=0.1"],
        ["model.arch=mlp", "train.lr=0.2"],
        ["model.arch=cnn", "train.lr=0.1"],
        ["model.arch=cnn", "train.lr=0.2"],
    ]


def test_dry_run_prints_the_commands(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["grid", "--dry-run", "-S", "train.lr=0.1,0.2"])
    grid.main()
    assert capsys.readouterr().out.splitlines() == ["dvc exp run -S train.lr=0.1", "dvc exp run -S train.lr=0.2"]


def node(rev, name, accuracy, arch="mlp", dataset="mnist", experiments=None, seconds=8.2, replicates=None):
    """A `dvc exp show --json` node; replicates: (mean, sd, n) of metrics/replicates.json, if any."""
    return {
        "rev": rev,
        "name": name,
        "experiments": experiments,
        "data": {
            "rev": rev,
            "params": {
                "params.yaml": {
                    "data": {
                        "prepare": {"dataset": dataset},
                        "model": {
                            "arch": arch,
                            "hidden": [128, 64],
                            "activation": "relu",
                            "dropout": 0.0,
                            "channels": [32, 64],
                        },
                        "train": {
                            "epochs": 11,
                            "batch_size": 64,
                            "lr": 0.001,
                            "schedule": "constant",
                            "augment_shift": 0,
                            "augment_rotate": 0,
                        },
                    }
                }
            },
            "metrics": {
                "metrics/test.json": {"data": {"accuracy": accuracy, "macro_f1": accuracy - 0.001}},
                "metrics/train.json": {"data": {"parameters": 109386}},
                **(
                    {"metrics/replicates.json": {"data": {"accuracy": dict(zip(("mean", "sd", "n"), replicates))}}}
                    if replicates
                    else {}
                ),
            },
        },
    }


def test_leaderboard_ranks_runs_and_experiments_by_their_replicates_mnist_first():
    shown = [
        {"rev": "workspace", "name": None, "data": node("workspace", None, 0.5)["data"], "experiments": None},
        node(
            "a" * 40,
            "main",
            0.98,
            replicates=(0.9766, 0.0023, 10),
            experiments=[
                # a lucky single draw does not outrank a better mean
                {"name": "lucky", "revs": [node("e" * 40, "lucky", 0.999, replicates=(0.9701, 0.0041, 10))]},
                {
                    "name": "cnn-run",
                    "revs": [
                        node("b" * 40, "cnn-run", 0.994, arch="cnn", seconds=153.0, replicates=(0.9931, 0.0008, 3))
                    ],
                },
                {"name": "fashion", "revs": [node("c" * 40, "fashion", 0.91, arch="cnn", dataset="fashion-mnist")]},
            ],
        ),
    ]
    found = leaderboard.runs(shown)
    assert [r["name"] for r in found] == ["main", "lucky", "cnn-run", "fashion"]  # the workspace is not a run
    table = leaderboard.markdown([leaderboard.row(r) for r in found]).splitlines()
    assert table[0].startswith("| experiment | dataset | model |")
    assert table[2].startswith(
        "| cnn-run (bbbbbbb) | mnist | cnn channels=32-64 hidden=128-64 activation=relu dropout=0.0 |"
    )
    assert table[2].endswith("| 0.9931 ± 0.0008 (3) | **best** | 0.9940 | 0.9930 | 109,386 |")
    assert table[3].startswith(
        "| main (aaaaaaa) | mnist | mlp hidden=128-64 activation=relu dropout=0.0 | 11 ep, batch 64, adam lr 0.001 "
        "| 0.9766 ± 0.0023 (10) |"
    )
    assert table[4].startswith("| lucky (eeeeeee) |")
    assert "| 0.9766 ± 0.0023 (10) | below (Holm p = " in table[3] and "| below (Holm p = " in table[4]
    assert table[5].startswith("| fashion (ccccccc) | fashion-mnist |") and "| - | 0.9100 |" in table[5]


def test_a_gap_the_seeds_noise_could_make_ties_the_best():
    shown = [
        node(
            "a" * 40,
            "main",
            0.98,
            replicates=(0.9766, 0.0023, 10),
            experiments=[
                {"name": "close", "revs": [node("b" * 40, "close", 0.97, replicates=(0.9760, 0.0025, 10))]},
                {"name": "far", "revs": [node("c" * 40, "far", 0.97, replicates=(0.9700, 0.0020, 10))]},
            ],
        )
    ]
    table = leaderboard.markdown([leaderboard.row(r) for r in leaderboard.runs(shown)])
    rows = {line.split(" | ")[0].lstrip("| ").split(" ")[0]: line for line in table.splitlines()[2:]}
    assert (
        "| **best** |" in rows["main"] and "| ties (Holm p = " in rows["close"] and "| below (Holm p = " in rows["far"]
    )


def test_a_run_from_before_the_replicates_stage_shows_dashes():
    row = leaderboard.row(leaderboard.runs([node("d" * 40, "old", 0.97)])[0])
    assert row["single model"] == "0.9700" and row["test accuracy, mean ± sd (n seeds)"] == "-"


def test_a_model_is_shown_by_its_arch_and_its_own_keys_named():
    """Values without names ("resmlp 256 3") told nothing; another arch's section is not shown."""
    model = {"arch": "cnn", "mlp": {"hidden": [128]}, "cnn": {"channels": [16, 32], "hidden": [64], "dropout": 0.2}}
    assert leaderboard.describe_model(model) == "cnn channels=16-32 hidden=64 dropout=0.2"
    assert leaderboard.describe_model({"arch": "linear", "mlp": {"hidden": [128]}}) == "linear"


def test_a_run_from_before_each_arch_had_its_section_shows_the_keys_its_arch_reads():
    """The flat layout of old: every arch's keys in one section. An arch no longer registered shows its name alone."""
    assert leaderboard.describe_model({"arch": "lenet", "hidden": [128, 64], "channels": [32, 64]}) == "lenet"
    assert leaderboard.describe_model({"arch": "linear", "hidden": [128, 64]}) == "linear"
    assert (
        leaderboard.describe_model({"arch": "mlp", "hidden": [32], "activation": "gelu", "dropout": 0.2})
        == "mlp hidden=32 activation=gelu dropout=0.2"
    )


def test_grid_refuses_a_repository_without_a_commit(tmp_path, monkeypatch):
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["grid", "-S", "train.lr=0.1,0.2"])
    with pytest.raises(SystemExit, match="no commit yet"):
        grid.main()


def test_ctrl_c_still_puts_the_workspace_back_and_exits_130(monkeypatch, capsys):
    import subprocess

    restored = []
    monkeypatch.setattr(grid, "dirty", lambda paths: [])
    monkeypatch.setattr(grid, "restore", lambda: restored.append(True))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0))  # HEAD exists

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", interrupted)
    monkeypatch.setattr("sys.argv", ["grid", "-S", "train.lr=0.1,0.2"])
    with pytest.raises(SystemExit) as exit_:
        grid.main()
    assert exit_.value.code == 130 and restored == [True]
    assert "grid: 0 of 2 run; interrupted; the workspace is back at HEAD" in capsys.readouterr().out
