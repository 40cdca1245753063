"""Fixtures; the helpers they use live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnistbench.data import RawFile
from tests.helpers import e2e_repo, sh, write_mirror


@pytest.fixture
def mirror(tmp_path) -> tuple[Path, tuple[RawFile, ...]]:
    """A tiny mirror folder holding mnist/<its 4 files>, and their checksums."""
    root = tmp_path / "mirror"
    return root, write_mirror(root)


@pytest.fixture(scope="session")
def e2e(tmp_path_factory) -> tuple[Path, dict]:
    """A repository of this project's pipeline on tiny data after its first `dvc repro`, committed:
    (its path, the environment to run dvc in). Shared: a test that changes it must put it back."""
    path, env, _ = e2e_repo(tmp_path_factory.mktemp("e2e-shared"))
    sh(path, env, "git", "add", "-A")
    sh(path, env, "git", "commit", "-qm", "the first dvc repro")
    return path, env
