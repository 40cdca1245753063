"""dvc.yaml lists, among each stage's deps, every module of this repo the stage's script imports,
directly or through others (lazy imports in functions included): a change to any code a stage
runs must make `dvc repro` run it again (mnistbench/linear.py once was missing)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
STAGES = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text())["stages"]


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
                if name.split(".")[0] in ("mnistbench", "stages") and candidate.is_file():
                    found.add(candidate.relative_to(ROOT).as_posix())
    if path.relative_to(ROOT).parts[0] == "mnistbench":
        found.add("mnistbench/__init__.py")  # importing any mnistbench module runs the package's
    return found


def closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += local_imports(ROOT / module)
    return seen


@pytest.mark.parametrize("name", [name for name, stage in STAGES.items() if "python -m stages." in stage["cmd"]])
def test_each_stage_depends_on_all_the_code_it_runs(name):
    script = "stages/" + re.search(r"python -m stages\.(\w+)", STAGES[name]["cmd"]).group(1) + ".py"
    deps = {d if isinstance(d, str) else next(iter(d)) for d in STAGES[name]["deps"]}
    missing = sorted(closure(script) - deps)
    assert not missing, f"dvc.yaml: stage {name} runs {missing} but does not list them among its deps"
