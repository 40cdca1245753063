"""commands.reproduced: the CI's byte-for-byte comparison, in a real git repository."""

import subprocess

import pytest

from commands import reproduced

LOCK = """schema: '2.0'
stages:
  train:
    cmd: python -m stages.train
    outs:
    - path: metrics/train.json
      hash: md5
      md5: {train}
      size: 10
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git = lambda *a: subprocess.run(["git", *a], check=True, capture_output=True)
    git("init", "-q")
    git("config", "user.name", "t")
    git("config", "user.email", "t@example.invalid")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "plots").mkdir()
    (tmp_path / "dvclive/plots/metrics/val").mkdir(parents=True)
    (tmp_path / "dvclive/plots/metrics/val/loss.tsv").write_text("step\tloss\n0\t0.5\n")
    (tmp_path / "dvc.lock").write_text(LOCK.format(train="a" * 32))
    (tmp_path / "metrics/train.json").write_text('{"accuracy": 0.98}\n')
    (tmp_path / "plots/replicates.csv").write_text("epoch\n1\n")
    (tmp_path / "benchmark/metrics").mkdir(parents=True)  # a second pipeline, in its own folder
    (tmp_path / "benchmark/dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "benchmark/dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "benchmark/metrics/cells.json").write_text('{"mlp": 0.97}\n')
    (tmp_path / ".gitignore").write_text("/timings/\n")
    git("add", "-A")
    git("commit", "-qm", "results")
    return tmp_path


def test_the_same_bytes_and_new_measured_times_count_as_reproduced(repo):
    (repo / "timings").mkdir()
    (repo / "timings/train.json").write_text('{"train_seconds": 9.7}\n')  # outside git and dvc.lock
    assert reproduced.differences() == []


def test_a_changed_result_or_its_hash_is_reported_in_every_pipeline(repo):
    (repo / "plots/replicates.csv").write_text("epoch\n2\n")
    (repo / "plots/new.png").write_bytes(b"x")
    (repo / "dvclive/plots/metrics/val/loss.tsv").write_text("step\tloss\n0\t0.4\n")  # DVCLive's history too
    (repo / "dvc.lock").write_text(LOCK.format(train="d" * 32))
    (repo / "benchmark/metrics/cells.json").write_text('{"mlp": 0.96}\n')
    assert sorted(reproduced.differences()) == [
        "benchmark/metrics/cells.json (changed)",
        "dvc.lock (changed)",
        "dvclive/plots/metrics/val/loss.tsv (changed)",
        "plots/new.png (new)",
        "plots/replicates.csv (changed)",
    ]


def test_the_command_exits_1_and_lists_what_differs(repo, monkeypatch, capsys):
    (repo / "metrics/train.json").write_text('{"accuracy": 0.97}\n')
    monkeypatch.setattr("sys.argv", ["reproduced"])
    with pytest.raises(SystemExit) as exit_:
        reproduced.main()
    assert exit_.value.code == 1
    assert "metrics/train.json (changed)" in capsys.readouterr().out
