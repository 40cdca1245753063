"""docs/extending.md, executed: its code appended where it says, its commands run as written, on a
copy of this repository and tiny data. Adding LeNet-5 touches one Python file."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from mnistbench import batched, models
from mnistbench.portable import PortableLinear
from tests.helpers import ROOT, e2e_repo, model_params, sh

DOC = (ROOT / "docs/extending.md").read_text()


def appended() -> list[tuple[str, str]]:
    """(file, code) of each 'Append to `file`:' block, in the doc's order."""
    return re.findall(r"Append to `([^`]+)`:\n\n```python\n(.*?)```", DOC, re.S)


def commands() -> list[str]:
    """Every command of the doc's bash blocks, in order."""
    return [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", DOC, re.S)
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_the_doc_touches_one_python_file_for_the_model_and_one_for_the_optimizer():
    files = [path for path, _ in appended()]
    assert files == ["mnistbench/models.py", "mnistbench/optim.py"]
    assert all(command.startswith(("dvc exp run -S ", "git checkout params.yaml")) for command in commands())


def test_the_docs_lenet_is_built_counted_converted_and_left_out_of_batching(monkeypatch):
    monkeypatch.setattr(models, "ARCHITECTURES", dict(models.ARCHITECTURES))  # the registration is undone after
    monkeypatch.setattr(models, "USES", dict(models.USES))
    exec(appended()[0][1], vars(models))
    params = model_params(arch="lenet")
    assert models.parameter_count(params) == 61_706  # 156 + 2,416 + 48,120 + 10,164 + 850
    model = models.build_model(params)
    assert model(torch.zeros(3, 784)).shape == (3, 10)
    linear_layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linear_layers) == 3 and all(type(m) is PortableLinear for m in linear_layers)
    assert batched.unstackable(params) == "lenet has a Conv2d layer"


@pytest.mark.slow
def test_following_the_doc_adds_lenet_and_the_optimizers_end_to_end(tmp_path):
    path, env, _ = e2e_repo(tmp_path)
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "the pipeline")
    for file, code in appended():
        with open(path / file, "a") as f:
            f.write("\n\n" + code)
    changed = sh(path, env, "git", "diff", "--numstat").stdout.split("\n")
    lenet_lines = next(int(line.split()[0]) for line in changed if line.endswith("mnistbench/models.py"))
    assert [line.split()[2] for line in changed if line] == ["mnistbench/models.py", "mnistbench/optim.py"]
    assert lenet_lines == len(appended()[0][1].splitlines()) + 2  # the class, and the blank lines before it
    sh(path, env, "git", "commit", "-qam", "LeNet-5 and RMSprop, as docs/extending.md adds them")

    names, experiments = [], [c for c in commands() if c.startswith("dvc exp run")]
    for command in commands():
        ran = sh(path, env, *command.split())
        if command in experiments:
            for stage in ("train", "evaluate", "replicates"):
                assert f"Running stage '{stage}'" in ran.stdout, command
            names.append(re.search(r"Ran experiment\(s\): (\S+)", ran.stdout).group(1))

    shown = json.loads(sh(path, env, "dvc", "exp", "show", "--json").stdout)
    runs = {exp["name"]: exp["revs"][0]["data"] for node in shown for exp in node.get("experiments") or []}
    for name, command in zip(names, experiments):
        data = runs[name]
        params = data["params"]["params.yaml"]["data"]
        metrics = {k: v.get("data", {}) for k, v in data["metrics"].items()}
        for assignment in command.split(" -S ")[1:]:
            key, value = assignment.split("=")
            section, field = key.split(".")
            assert str(params[section][field]) == value
        assert metrics["metrics/replicates.json"]["accuracy"]["n"] == 3
        assert metrics["metrics/test.json"]["accuracy"] > 0.1  # it learned something: chance is 0.1
        expected = 61_706 if params["model"]["arch"] == "lenet" else 109_386
        assert metrics["metrics/train.json"]["parameters"] == expected

    # `python -m commands`, the console script's code from this copy (the installed `mnistbench` runs
    # the checkout it was installed from, where LeNet is not registered)
    board = sh(path, env, sys.executable, "-m", "commands", "leaderboard").stdout
    assert sum(line.split(" | ")[2] == "lenet" for line in board.splitlines() if line.startswith("| ")) == 2

    sh(path, env, "dvc", "exp", "apply", names[0])  # the one-epoch LeNet: predict loads its checkpoint
    from PIL import Image

    Image.new("L", (40, 40), 255).save(path / "blank.png")
    predicted = subprocess.run(
        [sys.executable, "-m", "commands", "predict", "blank.png"], cwd=path, env=env, capture_output=True, text=True
    )
    assert predicted.returncode == 0 and predicted.stdout.startswith("blank.png: "), predicted.stderr
