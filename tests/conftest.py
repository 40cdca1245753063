"""Shared fixtures: tiny MNIST-format mirrors written in the real IDX format, gzipped.

Images are synthetic but learnable: class c lights up a 6x6 block at a position that depends on
c, plus noise, so a few training steps measurably reduce the loss.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
import torch

from mnistbench.data import RawFile, digests
from mnistbench.params import ModelParams


def model_params(**overrides) -> ModelParams:
    """The model section with the seed's MLP defaults, as a test would write it in params.yaml."""
    values = dict(arch="mlp", hidden=(128, 64), activation="relu", dropout=0.0, channels=(32, 64))
    return ModelParams(**{**values, **overrides})

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 28, 28) uint8 images and (n,) int64 labels 0..9, every class present when n >= 10."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.int64)
    for i, c in enumerate(labels.tolist()):
        r, col = 2 + (c // 5) * 12, 1 + (c % 5) * 5
        images[i, r:r + 6, col:col + 6] = 255
    return images.to(torch.uint8), labels


def idx_images(images: torch.Tensor) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", 2051, n, rows, cols) + images.numpy().tobytes()


def idx_labels(labels: torch.Tensor) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.to(torch.uint8).numpy().tobytes()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def write_mirror(root: Path, n_train: int = 300, n_test: int = 100, dataset: str = "mnist",
                 seed: int = 1) -> tuple[RawFile, ...]:
    """Write `<root>/<dataset>/<4 files>`; return their checksums, as the tests' pinned table."""
    train, test = synthetic_digits(n_train, seed=seed), synthetic_digits(n_test, seed=seed + 1)
    blobs = (gz(idx_images(train[0])), gz(idx_labels(train[1])), gz(idx_images(test[0])), gz(idx_labels(test[1])))
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, blob in zip(NAMES, blobs):
        (folder / name).write_bytes(blob)
        md5, sha256 = digests(folder / name)
        files.append(RawFile(name, md5, sha256))
    return tuple(files)


@pytest.fixture
def mirror(tmp_path) -> tuple[Path, tuple[RawFile, ...]]:
    root = tmp_path / "mirror"
    return root, write_mirror(root)
