"""The gate on real MNIST, the way CI and users run it: `dvc exp run -S ...` in this repository's
own workspace, then `python -m commands.gate --baseline HEAD` against the committed replicates.

Needs the committed pipeline reproduced in this checkout (data/prepared present): `.ci/run` runs it
after `make pipeline` with MNISTBENCH_GATE_ON_MNIST=1; elsewhere it is skipped. Each case retrains
train, evaluate and replicates (about a minute each here) and puts the workspace back afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from commands.gate import FAIL, PASS
from tests.helpers import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("MNISTBENCH_GATE_ON_MNIST") != "1",
        reason="runs dvc exp run on real MNIST in this checkout: .ci/run sets "
        "MNISTBENCH_GATE_ON_MNIST=1 after `make pipeline`",
    ),
]
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", DVC_NO_ANALYTICS="1")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True)


@pytest.fixture
def workspace_put_back():
    yield
    run("git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock", "metrics", "plots", "dvclive")
    run("dvc", "checkout", "-q")


@pytest.mark.parametrize(
    "change, code",
    [
        ("train.seed=100", PASS),  # neutral: another block of seeds, 100..109
        ("train.epochs=3", FAIL),  # a real regression of about 0.5 pp
        ("train.lr=0.5", FAIL),  # a broken one
    ],
)
def test_gate_on_an_experiment(workspace_put_back, change, code):
    assert run("dvc", "status", "--quiet").returncode == 0, "reproduce the committed pipeline first"
    exp = run("dvc", "exp", "run", "-S", change)
    assert exp.returncode == 0, exp.stdout[-2000:] + exp.stderr[-2000:]
    gate = run(sys.executable, "-m", "commands.gate", "--baseline", "HEAD")
    print(gate.stdout)
    assert gate.returncode == code, gate.stdout + gate.stderr
