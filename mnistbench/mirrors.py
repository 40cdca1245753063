"""Where a dataset's raw files come from: the roots of DATA_MIRROR.

    DATA_MIRROR=../shared/datasets:https://example.org/datasets dvc repro

Roots are separated by `:` like PATH (a URL keeps its own colons); each is a folder or a URL prefix
holding `<dataset>/<file>`. Unset, torchvision's canonical mirrors are used (mnistbench/data.py
downloads and verifies). Torch-free, so that stages.validate can tell, before DVC deletes prepare's
outputs, that prepare could not obtain its files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

# A URL keeps its own colons (scheme, port); anything else splits on ':' like PATH.
_ROOT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/:]*(?::\d+)?[^:]*|[^:]+")


def parse_mirrors(value: str | None) -> list[str]:
    return [root.strip() for root in _ROOT.findall(value or "") if root.strip()]


def is_url(root: str) -> bool:
    return "://" in root


def absolute(value: str) -> str:
    """DATA_MIRROR with each folder root made absolute, for runs in another folder (a Ray grid's
    clones): `../shared/datasets` means the folder beside the repository, not beside the clone."""
    return ":".join(root if is_url(root) else os.path.abspath(root) for root in parse_mirrors(value))


def unobtainable(dataset: str, names: Iterable[str], mirrors: list[str]) -> str | None:
    """The first of `dataset`'s files that no root can give, where every root is a folder (nothing
    to download from: prepare would fail); None where each file is in some folder, or a URL root
    or torchvision's mirrors may have it. Presence only: prepare verifies the content."""
    if not mirrors or any(is_url(root) for root in mirrors):
        return None
    return next((name for name in names if not any((Path(root) / dataset / name).is_file() for root in mirrors)), None)
