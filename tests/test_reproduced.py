"""commands.reproduced: the two tiers in a real git repository. Tier 1 (the same stack): the same
bytes, a difference a bug; tier 2 (a field that decides the bits differs): a TOST of each
distribution against the committed one. Bad records: one line, exit 2. The tier on a stack that
really differs in bits is tested end to end in tests/test_pipeline.py."""

import json
import subprocess
import sys

import numpy as np
import pytest

from commands import reproduced
from mnistbench import stats
from tests.helpers import ROOT

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
RUN_INFO = {
    "torch": "2.13.0+cu130",
    "machine": "x86_64",
    "device": "cpu",
    "threads": 1,
    "cpu_capability": "AVX2",
    "mkl_cbwr": "COMPATIBLE",
    "onednn_max_cpu_isa": "AVX2",
    "openblas_coretype": "Haswell",
    "scikit_learn": "1.9.1",
    "linear": "oneDNN inner product from 16384 weights on the CPU, else F.linear",
    "deterministic_algorithms": False,
}


def replicates(mean: float, sd: float, n: int, **extra) -> str:
    return json.dumps({"accuracy": {"n": n, "mean": mean, "sd": sd}, **extra}) + "\n"


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
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())  # the gate's section: the margin
    (tmp_path / "metrics/train.json").write_text('{"accuracy": 0.98}\n')
    (tmp_path / "metrics/run_info.json").write_text(json.dumps(RUN_INFO))
    (tmp_path / "metrics/replicates.json").write_text(replicates(0.9764, 0.0014, 10))
    (tmp_path / "plots/replicates.csv").write_text("epoch\n1\n")
    (tmp_path / "benchmark/metrics").mkdir(parents=True)  # a second pipeline, in its own folder
    (tmp_path / "benchmark/dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "benchmark/dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "benchmark/params.yaml").write_text("train:\n  device: cpu\n  threads: 1\n")
    (tmp_path / "benchmark/metrics/mlp-mnist.json").write_text(replicates(0.9764, 0.0014, 10))
    (tmp_path / ".gitignore").write_text("/timings/\n")
    git("add", "-A")
    git("commit", "-qm", "results")
    return tmp_path


def run(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["reproduced", *args])
    with pytest.raises(SystemExit) as exit_:
        reproduced.main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def another_stack(repo, **fields) -> None:
    (repo / "metrics/run_info.json").write_text(json.dumps({**RUN_INFO, **fields}))


def test_the_same_bytes_and_new_measured_times_count_as_reproduced(repo, monkeypatch, capsys):
    (repo / "timings").mkdir()
    (repo / "timings/train.json").write_text('{"train_seconds": 9.7}\n')  # outside git and dvc.lock
    assert reproduced.differences() == []
    code, out, _ = run(monkeypatch, capsys)
    assert code == 0 and out.startswith("reproduced: tier 1, the same stack as HEAD (torch 2.13.0, cpu, 1 thread(s)")


def test_a_changed_result_or_its_hash_is_reported_in_every_pipeline(repo):
    (repo / "plots/replicates.csv").write_text("epoch\n2\n")
    (repo / "plots/new.png").write_bytes(b"x")
    (repo / "dvclive/plots/metrics/val/loss.tsv").write_text("step\tloss\n0\t0.4\n")  # DVCLive's history too
    (repo / "dvc.lock").write_text(LOCK.format(train="d" * 32))
    (repo / "benchmark/metrics/mlp-mnist.json").write_text(replicates(0.9760, 0.0014, 10))
    assert sorted(reproduced.differences()) == [
        "benchmark/metrics/mlp-mnist.json (changed)",
        "dvc.lock (changed)",
        "dvclive/plots/metrics/val/loss.tsv (changed)",
        "plots/new.png (new)",
        "plots/replicates.csv (changed)",
    ]


def test_on_the_same_stack_a_difference_is_a_bug_exit_1_listing_it(repo, monkeypatch, capsys):
    (repo / "metrics/train.json").write_text('{"accuracy": 0.97}\n')
    another_stack(repo, torch="2.13.0+cpu")  # PyTorch's CPU-only build: the same release, the same bits
    code, out, _ = run(monkeypatch, capsys)
    assert code == 1
    assert "tier 1, the same stack as HEAD in every field that decides the bits, yet results differ: a bug" in out
    assert "metrics/train.json (changed)" in out


def test_on_another_stack_equivalent_distributions_pass_naming_the_fields(repo, monkeypatch, capsys):
    another_stack(repo, cpu_capability="AVX512", mkl_cbwr="AUTO")
    (repo / "metrics/replicates.json").write_text(replicates(0.9761, 0.0016, 10))
    (repo / "metrics/train.json").write_text('{"accuracy": 0.9751}\n')  # other bytes: expected here
    code, out, _ = run(monkeypatch, capsys)
    assert code == 0, out
    assert "tier 2: the stack differs from HEAD's: the main pipeline's in cpu_capability ('AVX2' -> 'AVX512')" in out
    assert "mkl_cbwr ('COMPATIBLE' -> 'AUTO')" in out and "3 result file(s) differ" in out
    assert "| replicates | 0.9764 ± 0.0014 (10) | 0.9761 ± 0.0016 (10) | -0.03 [" in out
    assert "| benchmark mlp-mnist | 0.9764 ± 0.0014 (10) | 0.9764 ± 0.0014 (10) | +0.00 [" in out
    assert out.rstrip().endswith("reproduced: equivalent: every distribution is within its margin of the committed one")


def test_on_another_stack_a_real_drop_is_not_shown_equivalent(repo, monkeypatch, capsys):
    another_stack(repo, device="cuda", cuda={"gpu": "H100", "version": "13.0", "cudnn": 91000})
    (repo / "metrics/replicates.json").write_text(replicates(0.9700, 0.0014, 10))  # 0.64 pp lower
    code, out, _ = run(monkeypatch, capsys)
    assert code == 1
    assert "device ('cpu' -> 'cuda')" in out and "| not shown equivalent |" in out
    assert "reproduced: FAIL: not shown equivalent: replicates;" in out


def test_the_margin_is_the_drop_the_gate_detects_90_percent_of_the_time(repo, monkeypatch, capsys):
    another_stack(repo, threads=2)
    code, out, _ = run(monkeypatch, capsys)
    margin = max(0.001, stats.detectable_drop(0.0014, 10, 0.0014, 10, 0.01))
    assert f"| ±{margin * 100:.2f} |" in out and code == 0


@pytest.mark.parametrize(
    "damage, says",
    [
        ("missing", "metrics/run_info.json: missing in the workspace; run `dvc repro` first"),
        ("malformed", "metrics/run_info.json: not valid JSON; rerun `dvc repro train` to write it again"),
        ("another pipeline's", "metrics/run_info.json: not this pipeline's run record (no field torch)"),
        ("not at rev", "HEAD:metrics/run_info.json: not in git at HEAD"),
        ("one seed committed", "HEAD:metrics/replicates.json: 1 seed(s), and the equivalence test needs at least 2"),
    ],
)
def test_a_bad_record_or_distribution_is_one_line_and_exit_2(repo, monkeypatch, capsys, damage, says):
    git = lambda *a: subprocess.run(["git", *a], check=True, capture_output=True)
    if damage == "missing":
        (repo / "metrics/run_info.json").unlink()
    elif damage == "malformed":
        (repo / "metrics/run_info.json").write_text('{"torch": ')
    elif damage == "another pipeline's":
        (repo / "metrics/run_info.json").write_text('{"python": "3.11"}')
    elif damage == "not at rev":
        git("rm", "-q", "--cached", "metrics/run_info.json")
        git("commit", "-qm", "no record")
    else:
        (repo / "metrics/replicates.json").write_text(replicates(0.97, 0.0, 1))
        git("commit", "-qam", "one seed")
        another_stack(repo, threads=2)
        (repo / "metrics/replicates.json").write_text(replicates(0.97, 0.001, 3))
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    code, out, err = run(monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"reproduced: error: {says}") and len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts} == before


def test_a_deterministic_method_is_compared_exactly_against_the_margin(repo, monkeypatch, capsys):
    git = lambda *a: subprocess.run(["git", *a], check=True, capture_output=True)
    (repo / "metrics/replicates.json").write_text(replicates(0.9688, 0.0, 1, deterministic=True))
    git("commit", "-qam", "knn")
    another_stack(repo, openblas_coretype="SkylakeX")
    (repo / "metrics/replicates.json").write_text(replicates(0.9689, 0.0, 1, deterministic=True))
    code, out, _ = run(monkeypatch, capsys)
    assert code == 0 and "| replicates | 0.9688 ± 0.0000 (1) | 0.9689 ± 0.0000 (1) | +0.01 [+0.01, +0.01]" in out


@pytest.mark.parametrize("shift", [0.0, 0.001, -0.0025])
def test_tost_agrees_with_statsmodels(shift):
    from statsmodels.stats.weightstats import ttost_ind

    rng = np.random.default_rng(7)
    a, b = rng.normal(0.976, 0.0015, 10), rng.normal(0.976 + shift, 0.002, 12)
    margin = 0.003
    ours = stats.tost(a.mean(), a.std(ddof=1), len(a), b.mean(), b.std(ddof=1), len(b), margin)
    p, _, _ = ttost_ind(b, a, -margin, margin, usevar="unequal")
    assert ours.p == pytest.approx(p, rel=1e-9)
    assert ours.equivalent == (p < 0.05)


def test_tost_power_is_alpha_at_the_margin_and_high_at_no_change():
    assert stats.tost_power(0.0014, 10, 0.0014, 10, 0.003, shift=0.003) <= 0.05 + 1e-9
    assert stats.tost_power(0.0014, 10, 0.0014, 10, 0.003, shift=0.0) > 0.95


def test_the_command_runs_as_a_user_runs_it_outside_a_repository(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "commands", "reproduced"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2 and result.stderr.startswith("reproduced: error: "), result.stderr
