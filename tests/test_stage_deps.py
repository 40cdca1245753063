"""dvc.yaml lists, among each stage's deps, every module of this repo the stage's script imports,
directly or through others (lazy imports in functions included): a change to any code a stage
runs must make `dvc repro` run it again (mnistbench/portable.py once was missing)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
STAGES = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]
BENCHMARK = {
    f"benchmark/dvc.yaml:{name}": stage  # its stages run from the repository's root (wdir: ..)
    for name, stage in YAML(typ="safe").load((ROOT / "benchmark/dvc.yaml").read_text())["stages"].items()
}


def local_imports(path: Path) -> set[str]:
    """Paths (relative to ROOT) of this repo's modules that `path` imports anywhere in its code.
    (The standard library's modulefinder would do it, but fails on namespace packages: ruamel.)"""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            for candidate in (ROOT / (name.replace(".", "/") + ".py"), ROOT / name.replace(".", "/") / "__init__.py"):
                if name.split(".")[0] in ("mnistbench", "stages", "commands", "lab") and candidate.is_file():
                    found.add(candidate.relative_to(ROOT).as_posix())
    package = path.relative_to(ROOT).parts[0]
    if package in ("mnistbench", "stages"):
        found.add(f"{package}/__init__.py")  # importing any of the package's modules runs its __init__
    return found


def closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += local_imports(ROOT / module)
    return seen


SCRIPTS = {
    name: "stages/" + re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1) + ".py"
    for name, stage in {**STAGES, **BENCHMARK}.items()
    if "python -m stages." in stage["cmd"]
}


def deps(name: str) -> set[str]:
    return {d if isinstance(d, str) else next(iter(d)) for d in {**STAGES, **BENCHMARK}[name]["deps"]}


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_stage_depends_on_exactly_the_code_it_runs(name):
    runs = closure(SCRIPTS[name])
    missing = sorted(runs - deps(name))
    assert not missing, f"dvc.yaml: stage {name} runs {missing} but does not list them among its deps"
    extra = sorted(d for d in deps(name) if d.endswith(".py") and d not in runs)
    assert not extra, f"dvc.yaml: stage {name} lists {extra} among its deps but never imports them"
    assert not any(module.startswith(("commands/", "lab/")) for module in runs), "a stage imports a command or the lab"


def test_the_library_holds_only_what_the_stages_import():
    """mnistbench/ is the pipeline's library: a module no stage imports belongs in commands/ or lab/."""
    imported = set().union(*(closure(script) for script in SCRIPTS.values()))
    library = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mnistbench").glob("*.py")}
    assert library - imported == set()


# --- params: every key a stage reads is in its `params:` ---

UNTRACKED = {"replicates.jobs": "how many seeds train at once never changes a bit (tests/test_replicates.py)"}


def listed(name: str) -> set[str]:
    """The keys and sections a stage's `params:` names (`- train`: the whole section)."""
    return {p if isinstance(p, str) else next(iter(p)) for p in STAGES[name].get("params", [])}


@pytest.fixture
def traced(tmp_path, monkeypatch, mirror):
    """A folder where each stage runs on tiny data, and a function running one stage's main() in this
    process that returns the params.yaml keys it read: attribute reads on the sections load_params
    returned, once it returned (validation's own reads do not count, nor a checkpoint's model section)."""
    import dataclasses
    import importlib
    import sys

    from mnistbench import data, params
    from tests.helpers import set_params

    root, files = mirror
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_MIRROR", str(root))
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    set_params(
        tmp_path / "params.yaml",
        prepare__val_size=50,
        train__epochs=1,
        train__device="cpu",
        replicates__n=2,
        replicates__jobs=1,
        evaluate__misclassified_shown=3,
    )
    monkeypatch.setattr(data, "pinned", lambda name: data.Dataset(name, 300, 100, files))  # the tiny files' checksums
    reads: set[str] = set()
    recording = [False]
    loaded_ids: set[int] = set()  # the sections load_params returned
    for field in dataclasses.fields(params.Params):
        cls, section = field.type if isinstance(field.type, type) else getattr(params, field.type), field.name
        names = {f.name for f in dataclasses.fields(cls)}

        def read(self, attr, _section=section, _names=names, _get=cls.__getattribute__):
            if recording[0] and attr in _names and id(self) in loaded_ids:
                reads.add(f"{_section}.{attr}")
            return _get(self, attr)

        monkeypatch.setattr(cls, "__getattribute__", read)

    def run(name: str) -> set[str]:
        module = importlib.import_module(f"stages.{SCRIPTS[name].removeprefix('stages/').removesuffix('.py')}")
        real = params.load_params

        def load(*args, **kwargs):
            loaded = real(*args, **kwargs)
            loaded_ids.update(id(getattr(loaded, f.name)) for f in dataclasses.fields(params.Params))
            recording[0] = True
            return loaded

        monkeypatch.setattr(module, "load_params", load)
        monkeypatch.setattr(sys, "argv", [name, *STAGES[name]["cmd"].split("python -m stages." + name, 1)[1].split()])
        reads.clear()
        loaded_ids.clear()
        recording[0] = False
        module.main()
        recording[0] = False
        return set(reads)

    return run


def test_each_stage_lists_every_params_key_it_reads(traced):
    """Forget a key in dvc.yaml and a change of it would not rerun the stage: `dvc repro` would
    report the pipeline up to date while its results came from other params."""
    for name in (
        "prepare",
        "train",
        "evaluate",
        "replicates",
    ):  # dvc.yaml's, in pipeline order: each makes the next's inputs
        read = traced(name)
        assert read, f"stage {name} read no params: the tracing is broken"
        covered = listed(name)
        unlisted = sorted(k for k in read if k not in covered and k.split(".")[0] not in covered and k not in UNTRACKED)
        assert not unlisted, f"dvc.yaml: stage {name} reads {unlisted} but its params: does not list them"
        unread = sorted(k for k in covered if "." in k and k not in read)
        assert not unread, f"dvc.yaml: stage {name} lists {unread} but never reads them (a change would rerun it)"
    assert "validate" not in SCRIPTS or listed("validate") == {"params.yaml"}  # validate reads the whole file
