"""Obtain, verify, split and store MNIST and its look-alikes; load the stored splits as tensors.

The datasets (params.yaml `prepare.dataset`) are declared in datasets.json: mnist, fashion-mnist
and kmnist, all 28x28 grayscale in 10 classes, 60,000 training and 10,000 test images.

Downloads go through each dataset's torchvision class (its mirrors, its MD5 check); the IDX files
are parsed here (parse_idx), which keeps torchvision's slow import out of prepare. Where files
come from is set by DATA_MIRROR (mnistbench/mirrors.py): roots separated by `:`, each a directory or a
URL prefix holding `<dataset>/<file>`, e.g. DATA_MIRROR=../shared/datasets:/usr/share/datasets or
DATA_MIRROR=https://example.org/datasets:/mnt/mirror. Unset, torchvision's canonical mirrors are
used. Wherever a file comes from, the SHA-256 of its decompressed content must match
datasets.json, so a recompressed copy passes and different content does not (where no SHA-256 is
pinned, the .gz must match the published MD5).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistbench.files import FileFormatError, load_tensors, save_tensors
from mnistbench.mirrors import is_url
from mnistbench.params import check_val_size

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


def check_sizes(dataset: Dataset, train_labels: torch.Tensor, test_labels: torch.Tensor) -> None:
    if (len(train_labels), len(test_labels)) != (dataset.train_size, dataset.test_size):
        raise DataError(
            f"{dataset.name}: parsed {len(train_labels)} training and {len(test_labels)} test images, "
            f"datasets.json declares {dataset.train_size} and {dataset.test_size}"
        )


def digests(path: Path) -> tuple[str, str]:
    """What datasets.json pins for a .gz file: the MD5 of the file as it is, and the SHA-256 of its
    gzip-decompressed content."""
    packed = path.read_bytes()
    return hashlib.md5(packed, usedforsecurity=False).hexdigest(), hashlib.sha256(gzip.decompress(packed)).hexdigest()


def verified_content(gz: Path, expected: RawFile, shown: Path) -> bytes:
    """The decompressed content of a .gz, if it is the pinned content (its SHA-256; where none is
    pinned, the .gz's MD5 decides); else DataError, one line naming `shown`."""
    packed = gz.read_bytes()
    try:
        content = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as e:  # not gzip, truncated, damaged
        raise DataError(f"{shown}: not a complete gzip file ({e}; size {len(packed)} bytes)") from None
    if expected.sha256 is None:
        md5 = hashlib.md5(packed, usedforsecurity=False).hexdigest()
        if md5 != expected.md5:
            raise DataError(f"{shown}: MD5 {md5}, expected {expected.md5} (no content SHA-256 is pinned for it)")
    elif (sha256 := hashlib.sha256(content).hexdigest()) != expected.sha256:
        raise DataError(
            f"{shown}: SHA-256 of the content {sha256}, expected {expected.sha256} (size {len(packed)} bytes)"
        )
    return content


IDX_UBYTE = 0x08  # IDX type code of unsigned bytes: the only type these datasets use


def parse_idx(content: bytes, ndim: int, shown: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes as a uint8 tensor: images (N, 28, 28) when ndim is 3, labels
    (N,) when 1. The format: bytes 0, 0, the type code, ndim; each dimension as a big-endian
    uint32; then the data. What torchvision's MNIST classes read (read_sn3_pascalvincent_tensor),
    read here because `import torchvision` loads torch._dynamo, about a second of prepare's run;
    tests/test_data.py checks both readers agree."""
    header = 4 + 4 * ndim
    if len(content) < header or content[:4] != bytes((0, 0, IDX_UBYTE, ndim)):
        raise DataError(
            f"{shown}: not an IDX file of {ndim}-dimensional unsigned bytes "
            f"(starts with {content[:4].hex() or 'nothing'})"
        )
    shape = struct.unpack(f">{ndim}I", content[4:header])
    if ndim == 3 and shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{shown}: images are {shape[1]}x{shape[2]} pixels, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    if len(content) - header != math.prod(shape):
        raise DataError(
            f"{shown}: its header declares {math.prod(shape)} bytes of data {shape}, it holds {len(content) - header}"
        )
    return torch.frombuffer(bytearray(content), dtype=torch.uint8, offset=header).view(shape)


def download(workdir: Path, urls: list[str], files: tuple[RawFile, ...], dataset: str) -> Path:
    """Download `files` into torchvision's raw folder under workdir through the dataset's
    torchvision class: each tried on every mirror in turn, its published MD5 checked; `urls` empty
    means torchvision's canonical mirrors. Returns the raw folder."""
    import torchvision  # here only: its import is slow (torch._dynamo), paid when prepare downloads

    base = getattr(torchvision.datasets, TORCHVISION_CLASSES[dataset])
    dataset_cls = type(
        base.__name__,
        (base,),
        {
            "resources": [(f.name, f.md5) for f in files],
            "mirrors": urls or list(base.mirrors),
            "_load_data": lambda self: (None, None),  # parsed by fetch, after its own content check
        },
    )
    try:
        dataset_cls(str(workdir), train=True, download=True)
    except RuntimeError as e:
        raise DataError(" ".join(str(e).split())) from None
    return Path(workdir) / base.__name__ / "raw"


def fetch(workdir: Path, mirrors: list[str], files: tuple[RawFile, ...], dataset: str = "mnist"):
    """Obtain and verify the raw files of `dataset`; return (train_images, train_labels,
    test_images, test_labels) as uint8 (N, 28, 28) and int64 (N,) tensors. Directory mirrors are
    read in place; files none of them holds intact are downloaded into workdir (URL mirrors, else
    torchvision's). The verified content is left decompressed in workdir where torchvision's class
    reads it (`torchvision.datasets.MNIST(workdir)` finds the files there)."""
    raw = Path(workdir) / TORCHVISION_CLASSES[dataset] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    contents, problems = {}, {f.name: [] for f in files}
    for f in files:
        for root in (r for r in mirrors if not is_url(r)):
            src = Path(root) / dataset / f.name
            if not src.is_file():
                problems[f.name].append(f"{src}: no such file")
                continue
            try:
                contents[f.name] = verified_content(src, f, shown=src)
                break
            except DataError as e:
                problems[f.name].append(str(e))

    missing = [f for f in files if f.name not in contents]
    if missing:
        urls = [root.rstrip("/") + f"/{dataset}/" for root in mirrors if is_url(root)]
        if mirrors and not urls:
            first = missing[0].name
            raise DataError(
                f"{first} not found intact in DATA_MIRROR={':'.join(mirrors)}: {'; '.join(problems[first])}"
            )
        try:
            downloaded = download(workdir, urls, tuple(missing), dataset)
        except DataError as e:
            also = "; ".join(p for f in missing for p in problems[f.name])
            offline = (
                ""
                if mirrors
                else (f"; offline, set DATA_MIRROR to a folder holding {dataset}/<its files> (mnistbench/data.py)")
            )
            raise DataError(f"{e}{f' (also: {also})' if also else ''}{offline}") from None
        for f in missing:  # the content of every downloaded file too
            contents[f.name] = verified_content(downloaded / f.name, f, shown=downloaded / f.name)

    for name, content in contents.items():
        (raw / name).with_suffix("").write_bytes(content)
    parsed = [
        parse_idx(contents[f.name], 3 if "-images-" in f.name else 1, shown=Path(dataset) / f.name) for f in files
    ]  # train images, train labels, test images, test labels: torchvision's order
    train_images, train_labels, test_images, test_labels = parsed
    return train_images, train_labels.long(), test_images, test_labels.long()


def split(images: torch.Tensor, labels: torch.Tensor, val_size: int, seed: int):
    """Seeded split into (train, val), each a dict of images (N, 28, 28) uint8 and labels (N,) int64.
    Both keep the original order; training reshuffles every epoch anyway."""
    n = len(labels)
    check_val_size(val_size, n)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values
    return (
        {"images": images[train_idx].contiguous(), "labels": labels[train_idx].contiguous()},
        {"images": images[val_idx].contiguous(), "labels": labels[val_idx].contiguous()},
    )


def save_split(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    save_tensors(path, {"images": images.to(torch.uint8).contiguous(), "labels": labels.to(torch.int64).contiguous()})


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 784) float32, pixels scaled to [0, 1] then standardized. In place
    on one float buffer: out of place, each temporary would be another copy of the whole set."""
    x = images.reshape(len(images), -1).to(torch.float32)
    return x.div_(255.0).sub_(mean).div_(std)


def load_normalized(path: Path, mean: float, std: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A prepared split as model input on `device`: (N, 784) float32 and (N,) int64."""
    images, labels = load_split(path)
    return normalize(images, mean, std).to(device), labels.to(device)


def load_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of a prepared split, checked."""
    obj = load_tensors(path, "prepared data")
    images, labels = (obj.get(k) if isinstance(obj, dict) else None for k in ("images", "labels"))
    if not (isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor)):
        raise FileFormatError(
            f"{path}: not a prepared split (expected tensors 'images' and 'labels'); rerun `dvc repro prepare`"
        )
    if images.dtype != torch.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dim() != 3:
        raise FileFormatError(
            f"{path}: images are {images.dtype} {tuple(images.shape)}, expected uint8 (N, 28, 28); "
            "rerun `dvc repro prepare`"
        )
    if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise FileFormatError(
            f"{path}: labels are {labels.dtype} {tuple(labels.shape)}, expected int64 ({len(images)},); "
            "rerun `dvc repro prepare`"
        )
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < NUM_CLASSES):
        raise FileFormatError(f"{path}: labels outside 0..9; rerun `dvc repro prepare`")
    return images, labels
