"""DVC's experiment queue, as README documents it: queued runs started by one worker."""

import json
import time

import pytest

from test_pipeline import repo, sh  # noqa: F401  (the module-scoped e2e repository fixture)

pytestmark = pytest.mark.slow


def test_queued_experiments_run_with_one_worker_and_show_side_by_side(repo):  # noqa: F811
    path, env, _ = repo
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "baseline")
    sh(path, env, "dvc", "exp", "run", "--queue", "-S", "train.lr=0.004,0.005", "-S", "train.epochs=1")
    sh(path, env, "dvc", "queue", "start")  # one worker: -j 1 is the default
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = sh(path, env, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 2, status
    shown = json.loads(sh(path, env, "dvc", "exp", "show", "--json").stdout)
    experiments = [rev for node in shown for exp in node.get("experiments") or [] for rev in exp["revs"]]
    lrs = sorted(rev["data"]["params"]["params.yaml"]["data"]["train"]["lr"] for rev in experiments)
    assert lrs == [0.004, 0.005]
    assert all("accuracy" in rev["data"]["metrics"]["metrics/test.json"]["data"] for rev in experiments)
