"""Classify image files with the trained model.

    mnistbench predict digit.png photo.jpg        # after `dvc repro` (or `dvc pull`)
    mnistbench predict --model models/model.pt scans/*.png

Any PNG or JPEG of any size is turned into a 28x28 MNIST-style digit: grayscale; inverted when
the digit is dark on a light background (MNIST digits are light on black); cropped to the ink;
scaled so its longer side is 20 pixels; placed in 28x28 with its centre of mass at the centre.
Prints, per file, the predicted digit and the ten class probabilities. Exit status 1 if any file
could not be read (each gets one line on stderr), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mnistbench.data import IMAGE_SIZE, normalize
from mnistbench.files import FileFormatError
from mnistbench.models import load_checkpoint

MAX_PIXELS = 40_000_000  # refuse larger images unread: a small file can decode to gigabytes
FORMATS = ("PNG", "JPEG")
DIGIT_BOX = 20  # MNIST: the digit's longer side is scaled to 20 px, then centred in 28 x 28


class ImageError(ValueError):
    """A file handed to predict is not a usable image; the message is one line."""


def open_image(path: Path) -> Image.Image:
    if path.is_dir():
        raise ImageError(f"{path}: is a directory; give image files")
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
            if image.format not in FORMATS:
                raise ImageError(f"{path}: a {image.format} image; give PNG or JPEG")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{path}: {width}x{height} pixels is over the limit of {MAX_PIXELS:,} "
                    f"(a decompression bomb?); scale it down first"
                )
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: not a readable PNG or JPEG image ({e})") from None
    except OSError as e:  # truncated or corrupt pixel data
        raise ImageError(f"{path}: image data is damaged ({e})") from None
    return image


def to_mnist(image: Image.Image) -> torch.Tensor:
    """Any image -> (28, 28) uint8, a light digit on black, MNIST-style."""

    def border(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])

    gray = np.asarray(image.convert("L"), dtype=np.float32)  # (H, W), 0 = black
    if border(gray).mean() > 127:  # dark digit on light paper: invert to MNIST's polarity
        gray = 255 - gray
    gray = np.clip(gray - np.median(border(gray)), 0, 255)  # the background to 0
    ink = np.argwhere(gray > 0.2 * gray.max()) if gray.max() > 0 else np.empty((0, 2))
    if len(ink) == 0:
        return torch.zeros(IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)  # blank page: nothing to centre
    (top, left), (bottom, right) = ink.min(0), ink.max(0) + 1
    digit = Image.fromarray(gray[top:bottom, left:right].astype(np.uint8))
    scale = DIGIT_BOX / max(digit.size)
    digit = digit.resize((max(1, round(digit.width * scale)), max(1, round(digit.height * scale))), Image.LANCZOS)
    box = np.asarray(digit, dtype=np.float32)
    rows, cols = np.indices(box.shape)
    mass = box.sum()
    centre_row, centre_col = (rows * box).sum() / mass, (cols * box).sum() / mass
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    top = int(round(IMAGE_SIZE / 2 - centre_row))
    left = int(round(IMAGE_SIZE / 2 - centre_col))
    top = min(max(top, 0), IMAGE_SIZE - box.shape[0])  # keep the whole digit on the canvas
    left = min(max(left, 0), IMAGE_SIZE - box.shape[1])
    canvas[top : top + box.shape[0], left : left + box.shape[1]] = box
    return torch.from_numpy(np.clip(canvas, 0, 255).round().astype(np.uint8))


@torch.no_grad()
def probabilities(model: torch.nn.Module, normalize_: dict, digits: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 10) class probabilities."""
    return torch.softmax(model(normalize(digits, normalize_["mean"], normalize_["std"])), dim=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="PNG or JPEG files")
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"), help="checkpoint (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        model, normalize_ = load_checkpoint(args.model)
    except FileFormatError as e:
        print(f"predict: error: {e}", file=sys.stderr)
        return 1
    failed = False
    for path in args.images:
        try:
            digit = to_mnist(open_image(path))
        except ImageError as e:
            print(f"predict: error: {e}", file=sys.stderr)
            failed = True
            continue
        p = probabilities(model, normalize_, digit[None])[0]
        print(f"{path}: {int(p.argmax())}  (" + " ".join(f"{c}:{p[c]:.3f}" for c in range(len(p))) + ")")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
