"""Obtain, verify, split and store MNIST and its look-alikes; load the stored splits as tensors.

The datasets (params.yaml `prepare.dataset`) are declared in datasets.json: mnist, fashion-mnist
and kmnist, all 28x28 grayscale in 10 classes, 60,000 training and 10,000 test images.

Raw files come through torchvision's dataset classes (their mirrors, MD5 check, IDX parsing).
Where they come from is set by DATA_MIRROR: roots separated by `:`, each a directory or a URL
prefix holding `<dataset>/<file>`, e.g. DATA_MIRROR=../shared/datasets:/usr/share/datasets or
DATA_MIRROR=https://example.org/datasets:/mnt/mirror. Unset, torchvision's canonical mirrors are
used. Wherever a file comes from, the SHA-256 of its decompressed content must match
datasets.json, so a recompressed copy passes and different content does not (where no SHA-256 is
pinned, the .gz must match the published MD5).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistbench.files import FileFormatError, load_tensors, save_tensors

DATASETS_FILE = Path(__file__).with_name("datasets.json")
IMAGE_SIZE = 28
NUM_CLASSES = 10


class DataError(RuntimeError):
    """Raw data could not be obtained or failed verification; the message says which file and why."""


@dataclass(frozen=True)
class RawFile:
    name: str
    md5: str  # of the published .gz (torchvision's pin)
    sha256: str | None  # of the decompressed content; None where none could be pinned


@dataclass(frozen=True)
class Dataset:
    name: str
    train_size: int
    test_size: int
    files: tuple[RawFile, ...]
    classes: tuple[str, ...] = tuple(str(c) for c in range(NUM_CLASSES))


def pinned(dataset: str = "mnist", manifest: Path = DATASETS_FILE) -> Dataset:
    """A dataset's declared sizes, class names and pinned raw files, from datasets.json."""
    entry = json.loads(Path(manifest).read_text())[dataset]
    files = tuple(RawFile(name, sums["md5"], sums["sha256"]) for name, sums in entry["files"].items())
    return Dataset(dataset, entry["train_size"], entry["test_size"], files, tuple(entry["classes"]))


# Each dataset's torchvision class: its canonical mirrors, and the folder under the root it reads.
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


def check_val_size(val_size: int, train_size: int) -> None:
    if not 0 < val_size < train_size:
        raise DataError(f"prepare.val_size = {val_size}: must be between 1 and {train_size - 1} "
                        f"(the training set has {train_size} images)")


def check_sizes(dataset: Dataset, train_labels: torch.Tensor, test_labels: torch.Tensor) -> None:
    if (len(train_labels), len(test_labels)) != (dataset.train_size, dataset.test_size):
        raise DataError(f"{dataset.name}: parsed {len(train_labels)} training and {len(test_labels)} test images, "
                        f"datasets.json declares {dataset.train_size} and {dataset.test_size}")


# A URL keeps its own colons (scheme, port); anything else splits on ':' like PATH.
_ROOT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/:]*(?::\d+)?[^:]*|[^:]+")


def parse_mirrors(value: str | None) -> list[str]:
    return [root.strip() for root in _ROOT.findall(value or "") if root.strip()]


def is_url(root: str) -> bool:
    return "://" in root


def digests(path: Path) -> tuple[str, str]:
    """What datasets.json pins for a .gz file: the MD5 of the file as it is, and the SHA-256 of its
    gzip-decompressed content."""
    with gzip.open(path, "rb") as f:
        content = hashlib.file_digest(f, "sha256").hexdigest()
    return digest(path, "md5"), content


def digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.new(algorithm, usedforsecurity=False)).hexdigest()


def verify(gz: Path, expected: RawFile, shown: Path) -> str | None:
    """None when a .gz, already extracted beside itself as torchvision leaves it, holds the pinned
    content, else why not (one line naming `shown`). The content's SHA-256 is taken from the
    extracted file, not by decompressing again; where none is pinned, the .gz's MD5 decides."""
    if expected.sha256 is None:
        md5 = digest(gz, "md5")
        return None if md5 == expected.md5 else \
            f"{shown}: MD5 {md5}, expected {expected.md5} (no content SHA-256 is pinned for it)"
    sha256 = digest(gz.with_suffix(""), "sha256")
    return None if sha256 == expected.sha256 else \
        f"{shown}: SHA-256 of the content {sha256}, expected {expected.sha256} (size {shown.stat().st_size} bytes)"


def fetch(workdir: Path, mirrors: list[str], files: tuple[RawFile, ...], dataset: str = "mnist"):
    """Obtain and verify the raw files of `dataset` in `workdir`; return (train_images,
    train_labels, test_images, test_labels) as uint8 (N, 28, 28) and int64 (N,) tensors."""
    # Imported here, not at the top: only prepare needs it, and it adds ~1.4 s to torch's import
    # (2.98 s vs 1.59 s here), which train and evaluate would otherwise pay on every run.
    import torchvision
    from torchvision.datasets.utils import extract_archive

    base = getattr(torchvision.datasets, TORCHVISION_CLASSES[dataset])
    dataset_cls = type(base.__name__, (base,), {
        "resources": [(f.name, f.md5) for f in files],
        # torchvision cannot read file:// URLs, so directory mirrors are copied in below instead.
        "mirrors": [root.rstrip("/") + f"/{dataset}/" for root in mirrors if is_url(root)]
        if mirrors else list(base.mirrors),
    })
    raw = Path(workdir) / dataset_cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)

    problems, missing, verified = {f.name: [] for f in files}, [], set()
    for f in files:
        for root in (r for r in mirrors if not is_url(r)):
            src = Path(root) / dataset / f.name
            if not src.is_file():
                problems[f.name].append(f"{src}: no such file")
                continue
            shutil.copyfile(src, raw / f.name)
            try:
                extract_archive(str(raw / f.name))  # next to it, without .gz: what torchvision parses
                problem = verify(raw / f.name, f, shown=src)
            except (OSError, EOFError, zlib.error) as e:  # not gzip, truncated, damaged
                problem = f"{src}: not a complete gzip file ({e}; size {src.stat().st_size} bytes)"
            if problem:
                problems[f.name].append(problem)
                (raw / f.name).unlink()
                (raw / f.name).with_suffix("").unlink(missing_ok=True)
                continue
            verified.add(f.name)
            break
        else:
            missing.append(f.name)

    if missing:
        first = missing[0]
        if not dataset_cls.mirrors:
            raise DataError(f"{first} not found intact in DATA_MIRROR={':'.join(mirrors)}: {'; '.join(problems[first])}")
        try:  # downloads the missing files; verifies MD5 of every file, present or downloaded
            dataset_cls(str(workdir), train=True, download=True)
        except RuntimeError as e:
            reason = " ".join(str(e).split())
            also = "; ".join(p for name in missing for p in problems[name])
            raise DataError(f"{reason}{f' (also: {also})' if also else ''}") from None
    for f in files:  # the content of every downloaded file too
        problem = None if f.name in verified else verify(raw / f.name, f, shown=raw / f.name)
        if problem:
            raise DataError(problem)

    try:
        train, test = (dataset_cls(str(workdir), train=flag) for flag in (True, False))
    except (RuntimeError, AssertionError, ValueError) as e:
        raise DataError(f"{raw}: verified files do not parse as IDX data ({e})") from None
    return train.data, train.targets, test.data, test.targets


def split(images: torch.Tensor, labels: torch.Tensor, val_size: int, seed: int):
    """Seeded split into (train, val), each a dict of images (N, 28, 28) uint8 and labels (N,) int64.
    Both keep the original order; training reshuffles every epoch anyway."""
    n = len(labels)
    check_val_size(val_size, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values
    return ({"images": images[train_idx].contiguous(), "labels": labels[train_idx].contiguous()},
            {"images": images[val_idx].contiguous(), "labels": labels[val_idx].contiguous()})


def save_split(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    save_tensors(path, {"images": images.to(torch.uint8).contiguous(), "labels": labels.to(torch.int64).contiguous()})


def load_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of a prepared split, checked."""
    obj = load_tensors(path, "prepared data")
    images, labels = (obj.get(k) if isinstance(obj, dict) else None for k in ("images", "labels"))
    if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)):
        raise FileFormatError(f"{path}: not a prepared split (expected tensors 'images' and 'labels'); rerun `dvc repro prepare`")
    if images.dtype != torch.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dim() != 3:
        raise FileFormatError(f"{path}: images are {images.dtype} {tuple(images.shape)}, expected uint8 (N, 28, 28); rerun `dvc repro prepare`")
    if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise FileFormatError(f"{path}: labels are {labels.dtype} {tuple(labels.shape)}, expected int64 ({len(images)},); rerun `dvc repro prepare`")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < NUM_CLASSES):
        raise FileFormatError(f"{path}: labels outside 0..9; rerun `dvc repro prepare`")
    return images, labels
