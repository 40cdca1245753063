"""docs/extending.md, executed: its code appended where it says, its params.yaml sections added
where it says, its commands run as written and in its order, on a copy of this repository and tiny
data. Adding an architecture with two keys of its own touches its Python file and params.yaml."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from mnistbench import batched, models, optim
from mnistbench.params import ModelParams, ParamsError
from mnistbench.portable import PortableLinear
from tests.helpers import ROOT, e2e_repo, sh

DOC = (ROOT / "docs/extending.md").read_text()
STEP = re.compile(
    r"(?:Append to `(?P<file>[^`]+)`:|Add to `params\.yaml`, under `(?P<section>\w+):`:)?\n\n"
    r"```(?P<lang>python|yaml|bash)\n(?P<body>.*?)```",
    re.S,
)


def steps() -> list[tuple[str, str, str]]:
    """The doc's steps in order: ("append", file, code), ("add", section, yaml lines) and
    ("run", command, "") for each command of a bash block; the layout's illustration is no step."""
    found = []
    for m in STEP.finditer(DOC):
        if m["file"]:
            found.append(("append", m["file"], m["body"]))
        elif m["section"]:
            found.append(("add", m["section"], m["body"]))
        elif m["lang"] == "bash":
            found += [("run", line.strip(), "") for line in m["body"].splitlines() if line.strip()]
    return found


def code(file: str) -> str:
    return next(body for kind, where, body in steps() if kind == "append" and where == file)


def add_section(params: str, section: str, lines: str) -> str:
    """params.yaml's text with `lines` appended at the end of its top-level `section`."""
    at = re.search(rf"(?m)^{section}:\n(?:[ #].*\n|\n)*", params).end()
    return params[:at] + lines + params[at:]


@pytest.fixture
def registered(monkeypatch):
    """The doc's architecture and optimizer registered, undone after the test."""
    monkeypatch.setattr(models.MODELS, "entries", dict(models.MODELS.entries))
    monkeypatch.setattr(optim.OPTIMIZERS, "entries", dict(optim.OPTIMIZERS.entries))
    exec(code("mnistbench/models.py"), vars(models))
    exec(code("mnistbench/optim.py"), vars(optim))


def test_the_doc_touches_one_python_file_and_params_yaml_for_each_piece():
    edits = [(kind, where) for kind, where, _ in steps() if kind != "run"]
    assert edits == [
        ("append", "mnistbench/models.py"),  # the residual MLP
        ("add", "model"),
        ("append", "mnistbench/optim.py"),  # RMSprop
        ("add", "train"),
        ("append", "mnistbench/models.py"),  # scikit-learn's MLP
        ("add", "model"),
    ]
    commands = [command for kind, command, _ in steps() if kind == "run"]
    assert all(c.startswith(("dvc exp run -S ", "git checkout params.yaml", "git commit -qam ")) for c in commands)


def test_the_docs_resmlp_reads_its_keys_from_its_section_and_is_counted_converted_and_left_out_of_batching(
    registered,
):
    section = re.search(r"resmlp:.*?\n((?:    .*\n)+)", code_yaml("model")).group(1)
    keys = dict(line.split("#")[0].strip().split(": ") for line in section.splitlines())
    assert keys == {"width": "256", "blocks": "2"}
    params = ModelParams("resmlp", {"resmlp": {"width": 16, "blocks": 2}})
    assert models.parameter_count(params) == (784 * 16 + 16) + 2 * (16 * 16 + 16 + 2 * 16) + (16 * 10 + 10)
    model = models.build_model(params)
    assert model(torch.zeros(3, 784)).shape == (3, 10)
    linear_layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linear_layers) == 4 and all(type(m) is PortableLinear for m in linear_layers)
    assert batched.unstackable(params) == "resmlp has a BatchNorm1d layer"
    with pytest.raises(ParamsError, match=r"model\.resmlp\.blocks = 0: must be >= 1"):
        models.build_model(ModelParams("resmlp", {"resmlp": {"width": 16, "blocks": 0}}))
    readers = ", ".join(models.MODELS.readers("hidden"))  # mlp, cnn, ...: whichever are registered
    with pytest.raises(ParamsError, match=rf"model\.resmlp\.hidden: resmlp reads no key hidden; {readers} read it"):
        models.build_model(ModelParams("resmlp", {"resmlp": {"width": 16, "blocks": 2, "hidden": [8]}}))


def code_yaml(section: str) -> str:
    return next(body for kind, where, body in steps() if kind == "add" and where == section)


@pytest.mark.slow
def test_following_the_doc_adds_a_model_and_an_optimizer_with_keys_of_their_own_end_to_end(tmp_path):
    path, env, _ = e2e_repo(tmp_path)
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "the pipeline")
    names, experiments, counted = [], [], False
    for kind, where, body in steps():
        if kind == "append":
            with open(path / where, "a") as f:
                f.write("\n\n" + body)
            continue
        if kind == "add":
            (path / "params.yaml").write_text(add_section((path / "params.yaml").read_text(), where, body))
            continue
        if not counted:  # the architecture's whole change, before its commit: two files
            numstat = [line.split("\t") for line in sh(path, env, "git", "diff", "--numstat").stdout.splitlines()]
            assert {file: (int(added), int(removed)) for added, removed, file in numstat} == {
                "mnistbench/models.py": (len(code("mnistbench/models.py").splitlines()) + 2, 0),
                "params.yaml": (len(code_yaml("model").splitlines()), 0),
            }
            counted = True
        ran = sh(path, env, "bash", "-c", where)
        if where.startswith("dvc exp run"):
            for stage in ("train", "evaluate", "replicates"):
                assert f"Running stage '{stage}'" in ran.stdout, where
            names.append(re.search(r"Ran experiment\(s\): (\S+)", ran.stdout).group(1))
            experiments.append(where)

    shown = json.loads(sh(path, env, "dvc", "exp", "show", "--json", "--all-commits").stdout)  # two commits' runs
    runs = {exp["name"]: exp["revs"][0]["data"] for node in shown for exp in node.get("experiments") or []}
    for name, command in zip(names, experiments, strict=True):
        data = runs[name]
        params = data["params"]["params.yaml"]["data"]
        metrics = {k: v.get("data", {}) for k, v in data["metrics"].items()}
        for assignment in command.split(" -S ")[1:]:
            key, value = assignment.split("=")
            node = params
            for part in key.split("."):
                node = node[part]
            assert str(node) == value, (key, node)
        arch = params["model"]["arch"]
        replicates = metrics["metrics/replicates.json"]
        assert metrics["metrics/test.json"]["accuracy"] > 0.1  # it learned something: chance is 0.1
        if arch == "knn":  # deterministic: one draw, said so
            assert replicates["accuracy"]["n"] == 1 and replicates["deterministic"] is True
            assert metrics["metrics/train.json"]["parameters"] >= 250 * 784  # its training images
            continue
        assert replicates["accuracy"]["n"] == 3 and "deterministic" not in replicates
        if arch == "resmlp":
            width, blocks = params["model"]["resmlp"]["width"], params["model"]["resmlp"]["blocks"]
            expected = (784 * width + width) + blocks * (width * width + 3 * width) + (width * 10 + 10)
        elif arch == "sgd_logreg":
            expected = 10 * 784 + 10 + 2 * 784  # its weights, and the scaler's mean and scale
        else:
            expected = 109_386
        assert metrics["metrics/train.json"]["parameters"] >= expected

    # `python -m commands`, the console script's code from this copy (the installed `mnistbench` runs
    # the checkout it was installed from, where the doc's model is not registered)
    board = sh(path, env, sys.executable, "-m", "commands", "leaderboard", "--all-commits").stdout
    labels = [line.split(" | ")[2] for line in board.splitlines() if line.startswith("| ")]
    assert labels.count("resmlp width=256 blocks=2") == 1 and labels.count("resmlp width=256 blocks=3") == 1
    assert any("sgd lr 0.05 momentum=0.9" in line for line in board.splitlines())
    assert any("adadelta lr 1.0 rho=0.9 steplr step_size=1 gamma=0.7" in line for line in board.splitlines())

    refused = sh(path, env, "dvc", "exp", "run", "-S", "model.arch=resmlp", "-S", "model.resmlp.blocks=0", check=False)
    assert refused.returncode != 0
    assert "validate: error: params.yaml: model.resmlp.blocks = 0: must be >= 1" in refused.stderr
    sh(path, env, "git", "checkout", "params.yaml")

    from PIL import Image

    Image.new("L", (40, 40), 255).save(path / "blank.png")
    for name in (names[0], names[-1]):  # the one-epoch residual MLP, then k-NN: predict loads each checkpoint
        sh(path, env, "dvc", "exp", "apply", name)
        predicted = subprocess.run(
            [sys.executable, "-m", "commands", "predict", "blank.png"],
            cwd=path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert predicted.returncode == 0 and predicted.stdout.startswith("blank.png: "), predicted.stderr
